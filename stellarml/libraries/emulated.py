"""`PolynomialEmulatorLibrary`: synthetic libraries from a polynomial (Cannon-style) emulator.

The emulator predicts the normalised flux at every pixel as a polynomial in the
scaled labels ``x = (label - fiducials) / scales``::

    flux[p] = sum_t theta[p, t] * prod_k x[k] ** exponents[t, k]

so a batch of spectra is one matrix product of the ``(n, n_terms)`` design
matrix with ``theta.T``. Because the model is *linear in theta*, any linear
operation on the spectra (Gaussian broadening, flux-conserving resampling) can
be applied once to the columns of ``theta``:
`PolynomialEmulatorLibrary.degrade` returns an emulator that generates spectra
directly at the instrument's resolution and on its grid, identical (to rounding)
to generating at full resolution and degrading each spectrum.
"""

import hashlib
import math
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import QTable

from ..labels import LABELS, get_label
from .base import (
    SpectralLibrary,
    _as_label_table,
    _as_wavelength,
    _check_lsf,
    _chunks,
    _rows_per_chunk,
)

__all__ = ["DESIGNS", "PolynomialEmulatorLibrary", "file_sha256"]

#: Sampling designs understood by `PolynomialEmulatorLibrary.sample_labels`.
DESIGNS = ("uniform", "latin", "sobol", "training")

_REQUIRED_KEYS = (
    "theta",
    "exponents",
    "fiducials",
    "scales",
    "training_labels",
    "label_names",
)
_WAVELENGTH_KEYS = {"wavelength_air_angstrom": "air", "wavelength_vacuum_angstrom": "vacuum"}


def file_sha256(path):
    """SHA-256 hex digest of a file (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _float_array(value, name, ndim):
    arr = np.asarray(value)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"emulator {name!r} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"emulator {name!r} must be {ndim}-D, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"emulator {name!r} has non-finite values")
    return arr


class PolynomialEmulatorLibrary:
    """Generator of synthetic `SpectralLibrary` objects from a polynomial emulator.

    Not a library itself: `generate` evaluates the emulator at given labels and
    `sample` draws labels with a sampling design first. Build it with
    `from_file` (the npz layout of ``doppler/coolstars_cubic_emulator.npz``).

    Parameters
    ----------
    wavelength : `~astropy.units.Quantity`, shape (npix,)
        Strictly increasing wavelength grid.
    theta : array-like, shape (npix, n_terms)
        Polynomial coefficients per pixel.
    exponents : array-like of int, shape (n_terms, n_labels)
        Exponent of each label in each term (>= 0).
    fiducials, scales : array-like, shape (n_labels,)
        Label offsets and scales: ``x = (label - fiducials) / scales``.
    training_labels : array-like, shape (n_train, n_labels)
        Labels of the spectra the emulator was trained on; they define
        `label_ranges` and the ``"training"`` sampling design.
    label_names : sequence of str
        Registered label names (`stellarml.labels`), one per label column.
    s2 : array-like, shape (npix,), optional
        Intrinsic model variance per pixel (native resolution only).
    medium : {"air", "vacuum"}
        Medium of ``wavelength``.
    resolution : float, optional
        Resolving power of the emulated spectra; with neither this nor
        ``fwhm`` they are unbroadened (synthetic, intrinsic line widths).
    fwhm : `~astropy.units.Quantity`, optional
        LSF FWHM of the emulated spectra.
    meta : dict, optional
        Provenance (file, sha256 ...); copied to every generated library.
    extras : dict, optional
        Other arrays of the emulator file (e.g. ``continuum_*``), kept unused.

    Examples
    --------
    >>> from stellarml.libraries import PolynomialEmulatorLibrary
    >>> emu = PolynomialEmulatorLibrary.from_file(
    ...     data_dir / "doppler" / "coolstars_cubic_emulator.npz")  # doctest: +SKIP
    >>> lib = emu.sample(1000, design="training", seed=1,
    ...                  wavelength_range=(3700, 7100) * u.AA)  # doctest: +SKIP
    """

    def __init__(
        self,
        wavelength,
        theta,
        exponents,
        fiducials,
        scales,
        training_labels,
        label_names,
        *,
        s2=None,
        medium="air",
        resolution=None,
        fwhm=None,
        meta=None,
        extras=None,
    ):
        self._wave = _as_wavelength(wavelength)
        npix = self._wave.size
        names = np.asarray(label_names)
        if names.ndim != 1 or names.dtype.kind not in "US" or names.size == 0:
            raise TypeError(
                f"emulator 'label_names' must be a 1-D array of strings, got {names.dtype} "
                f"with shape {names.shape}"
            )
        names = [str(name) for name in names]
        for name in names:
            try:
                get_label(name)
            except KeyError as exc:
                raise ValueError(f"emulator label {exc.args[0]}") from None
        if len(set(names)) != len(names):
            raise ValueError(f"emulator label_names has duplicates: {names}")
        k = len(names)
        exps = np.asarray(exponents)
        if not np.issubdtype(exps.dtype, np.integer):
            raise TypeError(f"emulator 'exponents' must be integers, got dtype {exps.dtype}")
        if exps.ndim != 2 or exps.shape[1] != k:
            raise ValueError(
                f"emulator 'exponents' must have shape (n_terms, {k}) for labels {names}, "
                f"got {exps.shape}"
            )
        if np.any(exps < 0):
            raise ValueError("emulator 'exponents' must be >= 0")
        theta = _float_array(theta, "theta", 2)
        if theta.shape != (npix, exps.shape[0]):
            raise ValueError(
                f"emulator 'theta' has shape {theta.shape}, expected (npix, n_terms) = "
                f"({npix}, {exps.shape[0]}) from the wavelength grid and 'exponents'"
            )
        fid = _float_array(fiducials, "fiducials", 1)
        scl = _float_array(scales, "scales", 1)
        for name, arr in (("fiducials", fid), ("scales", scl)):
            if arr.shape != (k,):
                raise ValueError(f"emulator {name!r} must have shape ({k},), got {arr.shape}")
        if np.any(scl == 0):
            raise ValueError("emulator 'scales' must be non-zero")
        train = _float_array(training_labels, "training_labels", 2)
        if train.shape[1] != k or train.shape[0] < 1:
            raise ValueError(
                f"emulator 'training_labels' must have shape (n_train, {k}), got {train.shape}"
            )
        if s2 is not None:
            s2 = _float_array(s2, "s2", 1)
            if s2.shape != (npix,):
                raise ValueError(f"emulator 's2' must have shape ({npix},), got {s2.shape}")
        if medium not in ("air", "vacuum"):
            raise ValueError(f"medium must be 'air' or 'vacuum', got {medium!r}")
        self.theta = theta
        self.exponents = exps.astype(np.int64)
        self.fiducials = fid
        self.scales = scl
        self.training_labels = train
        self.s2 = s2
        self.medium = medium
        self.resolution, self.fwhm = _check_lsf(resolution, fwhm)
        self.meta = dict(meta or {})
        self.extras = dict(extras or {})
        self._names = names

    @classmethod
    def from_file(cls, path):
        """Read an emulator from an ``.npz`` file.

        The file holds ``wavelength_air_angstrom`` (or
        ``wavelength_vacuum_angstrom``) (npix,), ``theta`` (npix, n_terms),
        ``exponents`` (n_terms, n_labels) integers, ``fiducials`` and ``scales``
        (n_labels,), ``training_labels`` (n_train, n_labels), ``label_names``
        (n_labels,) strings, optionally ``s2`` (npix,); any other arrays (e.g.
        ``continuum_*``) are kept in ``extras``. Files are read without pickle.

        Parameters
        ----------
        path : str or `~pathlib.Path`
            The ``.npz`` file.

        Returns
        -------
        emulator : `PolynomialEmulatorLibrary`
            With ``meta`` = name, source path, sha256, label names.

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ValueError
            If it is not an npz archive, lacks keys, or arrays have wrong shapes.
        TypeError
            If arrays have the wrong dtype (e.g. float ``exponents``).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"emulator file not found: {path}")
        try:
            archive = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{path} is not a readable .npz emulator file: {exc}") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"{path} is a single .npy array, not an .npz emulator archive")
        with archive:
            try:
                data = {key: archive[key] for key in archive.files}
            except ValueError as exc:  # object arrays would need pickle
                raise ValueError(f"{path}: cannot read arrays without pickle: {exc}") from None
        missing = [key for key in _REQUIRED_KEYS if key not in data]
        wave_keys = [key for key in _WAVELENGTH_KEYS if key in data]
        if not wave_keys:
            missing.append(" or ".join(_WAVELENGTH_KEYS))
        if missing:
            raise ValueError(
                f"{path} is missing emulator arrays: {', '.join(missing)} "
                f"(it has: {', '.join(sorted(data))})"
            )
        if len(wave_keys) > 1:
            raise ValueError(f"{path} has both air and vacuum wavelength arrays")
        wave_key = wave_keys[0]
        wave = data.pop(wave_key)
        if wave.ndim != 1 or not np.issubdtype(wave.dtype, np.floating):
            raise ValueError(
                f"{path}: {wave_key!r} must be a 1-D float array, got {wave.dtype} {wave.shape}"
            )
        kwargs = {key: data.pop(key) for key in _REQUIRED_KEYS}
        s2 = data.pop("s2", None)
        meta = {
            "name": path.stem,
            "source": str(path.resolve()),
            "sha256": file_sha256(path),
            "label_names": [str(n) for n in np.asarray(kwargs["label_names"]).ravel()],
        }
        try:
            return cls(
                wave * u.AA,
                s2=s2,
                medium=_WAVELENGTH_KEYS[wave_key],
                meta=meta,
                extras=data,
                **kwargs,
            )
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{path}: {exc}") from None

    # ------------------------------------------------------------------ properties
    @property
    def wavelength(self):
        """Wavelength grid, `~astropy.units.Quantity` (npix,) in Angstrom, in ``medium``."""
        return self._wave * u.AA

    @property
    def label_names(self):
        """Label names, in the emulator's order (list of str)."""
        return list(self._names)

    @property
    def label_ranges(self):
        """``{name: (lo, hi)}``: min and max of the training labels (registry units, floats)."""
        lo, hi = self.training_labels.min(axis=0), self.training_labels.max(axis=0)
        return {name: (float(a), float(b)) for name, a, b in zip(self._names, lo, hi, strict=True)}

    def __repr__(self):
        ranges = ", ".join(f"{k} {a:g}..{b:g}" for k, (a, b) in self.label_ranges.items())
        lsf = (
            f"R={self.resolution:g}"
            if self.resolution is not None
            else (f"FWHM={self.fwhm:g}" if self.fwhm is not None else "unbroadened")
        )
        return (
            f"<PolynomialEmulatorLibrary {self.meta.get('name', '')!r}: {self._wave.size} px "
            f"{self._wave[0]:.1f}-{self._wave[-1]:.1f} Angstrom ({self.medium}), {lsf}, "
            f"{self.theta.shape[1]} terms, {ranges}>"
        )

    # ------------------------------------------------------------------ evaluation
    def _window(self, wavelength_range):
        """Pixel slice of ``wavelength_range`` ((lo, hi) Quantity or Angstrom numbers)."""
        if wavelength_range is None:
            return slice(0, self._wave.size)
        lo, hi = _range_angstrom(wavelength_range)
        i0 = np.searchsorted(self._wave, lo, side="left")
        i1 = np.searchsorted(self._wave, hi, side="right")
        if i1 - i0 < 2:
            raise ValueError(
                f"wavelength_range {lo:g}-{hi:g} Angstrom holds fewer than 2 emulator pixels "
                f"(grid {self._wave[0]:g}-{self._wave[-1]:g} Angstrom)"
            )
        return slice(int(i0), int(i1))

    def _label_values(self, labels, extrapolate):
        """(n, k) label array in emulator order, and the validated label table."""
        return label_values(labels, self._names, self.label_ranges, "emulator", extrapolate)

    def design_matrix(self, labels):
        """Polynomial terms of the scaled labels.

        Parameters
        ----------
        labels : array-like, shape (n, n_labels)
            Label values in registry units, emulator order.

        Returns
        -------
        terms : ndarray, shape (n, n_terms)
            ``prod_k ((labels - fiducials) / scales)[:, k] ** exponents[t, k]``.
        """
        x = (np.asarray(labels, dtype=float) - self.fiducials) / self.scales
        return np.prod(x[:, None, :] ** self.exponents[None, :, :], axis=2)

    def generate(
        self, labels, *, wavelength_range=None, extrapolate=False, chunk_size=None, dtype=np.float32
    ):
        """Evaluate the emulator at given labels.

        Parameters
        ----------
        labels : `~astropy.table.QTable`, dict or array-like
            A table or dict with a column per emulator label (Quantities are
            converted to registry units, plain numbers are taken in them), or an
            ``(n, n_labels)`` array in `label_names` order. Other non-label
            columns (e.g. ``id``) are carried into the library's table.
        wavelength_range : (lo, hi) `~astropy.units.Quantity` or numbers (Angstrom), optional
            Only emulate this window (default: the whole grid).
        extrapolate : bool, optional
            If False (default), labels outside `label_ranges` raise ValueError;
            if True they are evaluated (polynomials diverge quickly outside the
            training grid: use with care).
        chunk_size : int, optional
            Spectra per matrix product (default:
            ``stellarml.libraries.base.CHUNK_ELEMENTS`` flux values).
        dtype : numpy float dtype, optional
            Dtype of the computation and the output flux (default float32:
            rounding errors ~1e-6, far below the emulator's own error; float32
            also halves memory and time).

        Returns
        -------
        library : `SpectralLibrary`
            Noise-free spectra (``ivar`` None), this emulator's medium and LSF,
            ``meta`` with the emulator provenance.
        """
        values, table = self._label_values(labels, extrapolate)
        window = self._window(wavelength_range)
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"dtype must be a float dtype, got {dtype}")
        # The product is computed in the output dtype, straight into the output array.
        theta_t = np.ascontiguousarray(self.theta[window].T, dtype=dtype)
        npix = theta_t.shape[1]
        flux = np.empty((values.shape[0], npix), dtype=dtype)
        for sl in _chunks(values.shape[0], _rows_per_chunk(chunk_size, npix)):
            np.matmul(self.design_matrix(values[sl]).astype(dtype), theta_t, out=flux[sl])
        meta = {
            **self.meta,
            "generator": "PolynomialEmulatorLibrary.generate",
            "wavelength_range": [float(self._wave[window][0]), float(self._wave[window][-1])],
        }
        return SpectralLibrary(
            table,
            self._wave[window] * u.AA,
            flux,
            medium=self.medium,
            resolution=self.resolution,
            fwhm=self.fwhm,
            meta=meta,
        )

    # ------------------------------------------------------------------ sampling
    def _ranges(self, ranges):
        full = self.label_ranges
        if ranges is None:
            return full
        if not isinstance(ranges, dict):
            raise TypeError(
                f"ranges must be a dict {{label: (lo, hi)}}, got {type(ranges).__name__}"
            )
        unknown = [name for name in ranges if name not in full]
        if unknown:
            raise ValueError(f"ranges has labels {unknown} the emulator lacks ({self._names})")
        out = dict(full)
        for name, rng in ranges.items():
            unit = get_label(name).unit
            if isinstance(rng, u.Quantity):
                lo, hi = rng.to_value(unit)
            else:
                lo, hi = (v.to_value(unit) if isinstance(v, u.Quantity) else float(v) for v in rng)
            flo, fhi = full[name]
            if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
                raise ValueError(f"range of {name} must be finite with lo <= hi, got ({lo}, {hi})")
            if lo < flo or hi > fhi:
                raise ValueError(
                    f"range of {name} ({lo:g}, {hi:g}) reaches outside the emulator's training "
                    f"range ({flo:g}, {fhi:g})"
                )
            out[name] = (float(lo), float(hi))
        return out

    def _grid_steps(self):
        """(n_train, k) local grid step of every training label: mean of the adjacent gaps."""
        steps = np.zeros_like(self.training_labels)
        for j in range(len(self._names)):
            values = np.unique(self.training_labels[:, j])
            if values.size < 2:
                continue
            gaps = np.diff(values)
            left = np.concatenate([[np.nan], gaps])
            right = np.concatenate([gaps, [np.nan]])
            local = np.nanmean(np.vstack([left, right]), axis=0)
            steps[:, j] = local[np.searchsorted(values, self.training_labels[:, j])]
        return steps

    def sample_labels(self, n, *, ranges=None, design="uniform", seed=0, jitter=0.5):
        """Draw label sets for `generate`.

        Parameters
        ----------
        n : int
            Number of label sets.
        ranges : dict, optional
            ``{name: (lo, hi)}`` (numbers in registry units or Quantities) for
            some or all labels; default and the limit: `label_ranges`.
        design : {"uniform", "latin", "sobol", "training"}
            ``"uniform"``: independent uniform draws in the box.
            ``"latin"``: Latin hypercube (`scipy.stats.qmc.LatinHypercube`).
            ``"sobol"``: scrambled Sobol' sequence (`scipy.stats.qmc.Sobol`; the
            first ``n`` points of a ``2**m`` block, balanced when ``n`` is a power
            of 2).
            ``"training"``: near the emulator's training labels: pick a random
            training point inside ``ranges`` and add Gaussian jitter of
            ``jitter`` times the local grid step of each label (the mean of the
            gaps to the neighbouring grid values), reflected back into the range
            at its edges. The training grid of a synthetic library only covers
            physical combinations, so this avoids the corners of the box where
            the polynomial is unconstrained (the Doppler cool-star grid, for
            example, has no hot giants: above 6000 K it starts at log g 3.5).
        seed : int or `numpy.random.Generator`
            Random seed (same seed, same labels).
        jitter : float, optional
            Jitter in grid steps for ``"training"`` (default 0.5).

        Returns
        -------
        labels : `~astropy.table.QTable`
            ``n`` rows, one Quantity column per emulator label in registry units.
        """

        if int(n) != n or n < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        n = int(n)
        if design not in DESIGNS:
            raise ValueError(f"unknown design {design!r}; use one of {DESIGNS}")
        box = self._ranges(ranges)
        lo = np.array([box[name][0] for name in self._names])
        hi = np.array([box[name][1] for name in self._names])
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        k = len(self._names)
        if design != "training":
            values = box_design(design, n, lo, hi, rng)
        else:
            if not (np.isfinite(jitter) and jitter >= 0):
                raise ValueError(f"jitter must be finite and >= 0, got {jitter}")
            inside = np.all((self.training_labels >= lo) & (self.training_labels <= hi), axis=1)
            if not inside.any():
                raise ValueError(f"no training labels inside the ranges {box}")
            points = self.training_labels[inside]
            steps = self._grid_steps()[inside]
            pick = rng.integers(0, points.shape[0], size=n)
            values = points[pick] + jitter * steps[pick] * rng.standard_normal((n, k))
            values = np.where(values < lo, 2 * lo - values, values)
            values = np.where(values > hi, 2 * hi - values, values)
            values = np.clip(values, lo, hi)
        return QTable(
            {name: values[:, j] * get_label(name).unit for j, name in enumerate(self._names)}
        )

    def sample(
        self,
        n,
        *,
        ranges=None,
        design="uniform",
        seed=0,
        wavelength_range=None,
        jitter=0.5,
        chunk_size=None,
    ):
        """Draw labels with a sampling design and emulate their spectra.

        Parameters
        ----------
        n, ranges, design, seed, jitter
            As in `sample_labels`.
        wavelength_range, chunk_size
            As in `generate`.

        Returns
        -------
        library : `SpectralLibrary`
            ``meta["sampling"]`` records the design, seed, ranges and jitter.
        """
        labels = self.sample_labels(n, ranges=ranges, design=design, seed=seed, jitter=jitter)
        library = self.generate(labels, wavelength_range=wavelength_range, chunk_size=chunk_size)
        library.meta["sampling"] = {
            "design": design,
            "n": int(n),
            "seed": seed if isinstance(seed, int) else None,
            "ranges": {k: list(v) for k, v in self._ranges(ranges).items()},
            "jitter": float(jitter) if design == "training" else None,
        }
        return library

    # ------------------------------------------------------------------ degradation
    def degrade(self, *, resolution=None, fwhm=None, wavelength=None, wavelength_range=None):
        """An emulator of the spectra broadened to an LSF and/or on a new grid.

        The emulator is linear in ``theta``, so broadening
        (`stellarml.spectra.gaussian_broaden`) and flux-conserving resampling
        (`stellarml.spectra.resample_flux`) are applied once to the ``n_terms``
        columns of ``theta``; the result generates degraded spectra with one
        small matrix product, exactly as if each full-resolution spectrum had
        been degraded. The convolution is done on a window reaching 6 kernel
        sigma (plus two output pixels) beyond the target, so the edges are
        free of convolution edge effects.

        Parameters
        ----------
        resolution : float, optional
            Target resolving power R.
        fwhm : `~astropy.units.Quantity`, optional
            Target LSF FWHM (length). At most one of the two.
        wavelength : `~astropy.units.Quantity`, optional
            Target grid (in this emulator's medium), inside its range.
        wavelength_range : (lo, hi), optional
            Without ``wavelength``: keep this window of the native grid.

        Returns
        -------
        emulator : `PolynomialEmulatorLibrary`
            With the new ``theta``, grid and LSF; ``s2`` is dropped (it is the
            native-resolution scatter); ``meta["degraded"]`` records the steps.
        """
        from ..spectra import gaussian_broaden, resample_flux

        target_r, target_fwhm = _check_lsf(resolution, fwhm)
        if wavelength is not None and wavelength_range is not None:
            raise ValueError("give wavelength or wavelength_range, not both")
        if target_r is None and target_fwhm is None and wavelength is None:
            raise ValueError("degrade() needs a target resolution, fwhm or wavelength grid")
        if wavelength is not None:
            new_wave = _as_wavelength(wavelength)
            lo, hi = new_wave[0], new_wave[-1]
            edge = 2 * max(new_wave[1] - new_wave[0], new_wave[-1] - new_wave[-2])
        else:
            new_wave = None
            lo, hi = (
                (self._wave[0], self._wave[-1])
                if wavelength_range is None
                else _range_angstrom(wavelength_range)
            )
            edge = 0.0
        if lo < self._wave[0] or hi > self._wave[-1]:
            raise ValueError(
                f"target {lo:.2f}-{hi:.2f} Angstrom reaches outside the emulator's "
                f"{self._wave[0]:.2f}-{self._wave[-1]:.2f} Angstrom"
            )
        if target_r is not None:
            sigma = hi / target_r / (2 * math.sqrt(2 * math.log(2)))
        elif target_fwhm is not None:
            sigma = target_fwhm.to_value(u.AA) / (2 * math.sqrt(2 * math.log(2)))
        else:
            sigma = 0.0
        margin = 6 * sigma + edge
        wide = self._window((max(lo - margin, self._wave[0]), min(hi + margin, self._wave[-1])))
        wave = self._wave[wide]
        coeffs = self.theta[wide].T
        if target_r is not None or target_fwhm is not None:
            coeffs = gaussian_broaden(
                wave,
                coeffs,
                resolution_out=target_r,
                fwhm_out=None if target_fwhm is None else target_fwhm.to_value(u.AA),
                resolution_in=self.resolution,
                fwhm_in=None if self.fwhm is None else self.fwhm.to_value(u.AA),
            )
        if new_wave is not None:
            coeffs, _ = resample_flux(wave, coeffs, None, new_wave)
            out_wave = new_wave
        else:
            keep = (wave >= lo) & (wave <= hi)
            coeffs, out_wave = coeffs[:, keep], wave[keep]
        broadened = target_r is not None or target_fwhm is not None
        step = {
            "resolution": target_r,
            "fwhm_angstrom": None if target_fwhm is None else float(target_fwhm.value),
            "wavelength": [float(out_wave[0]), float(out_wave[-1]), int(out_wave.size)],
        }
        return PolynomialEmulatorLibrary(
            out_wave * u.AA,
            np.asarray(coeffs, dtype=np.float64).T,
            self.exponents,
            self.fiducials,
            self.scales,
            self.training_labels,
            self._names,
            s2=None,
            medium=self.medium,
            resolution=target_r if broadened else self.resolution,
            fwhm=target_fwhm if broadened else self.fwhm,
            meta={**self.meta, "degraded": [*self.meta.get("degraded", []), step]},
            extras=self.extras,
        )


def _range_angstrom(wavelength_range):
    """(lo, hi) floats in Angstrom from a Quantity pair or plain numbers (Angstrom)."""
    if isinstance(wavelength_range, u.Quantity):
        values = wavelength_range.to_value(u.AA, equivalencies=u.spectral())
    else:
        values = [
            v.to_value(u.AA, equivalencies=u.spectral()) if isinstance(v, u.Quantity) else float(v)
            for v in wavelength_range
        ]
    values = np.asarray(values, dtype=float)
    if values.shape != (2,) or not np.all(np.isfinite(values)) or values[0] >= values[1]:
        raise ValueError(f"wavelength_range must be (lo, hi) with lo < hi, got {wavelength_range}")
    return float(values[0]), float(values[1])


def label_values(labels, names, ranges, what, extrapolate=False):
    """Labels as an ``(n, L)`` float64 array in ``names`` order, checked; and their table.

    Shared by the library generators (`PolynomialEmulatorLibrary`,
    `~stellarml.libraries.LineListLibrary`).

    Parameters
    ----------
    labels : `~astropy.table.Table`, dict or array-like
        A table or mapping with one column per label (Quantities or registry
        units), or an ``(n, L)`` / ``(L,)`` array in ``names`` order.
    names : sequence of str
        The generator's labels.
    ranges : dict
        ``{name: (lo, hi)}`` the generator's box, registry units.
    what : str
        What the generator is, for the messages ("emulator", "library").
    extrapolate : bool, optional
        Allow labels outside ``ranges``.

    Raises
    ------
    ValueError
        For missing or unmodelled labels, and, unless ``extrapolate``, labels
        outside the box (the message names the first offending row).
    """
    names = list(names)
    if isinstance(labels, np.ndarray | list | tuple) and not (
        isinstance(labels, np.ndarray) and labels.dtype.names is not None
    ):
        arr = np.asarray(labels, dtype=float)
        if arr.ndim == 1 and arr.size == len(names):
            arr = arr[None, :]
        table = _as_label_table(arr, assign_units=True, label_names=names)
    else:
        table = _as_label_table(labels, assign_units=True)
    extra = [name for name in table.colnames if name in LABELS and name not in names]
    missing = [name for name in names if name not in table.colnames]
    if missing:
        raise ValueError(f"labels lack {missing}; the {what} needs {names}")
    if extra:
        raise ValueError(f"the {what} does not model labels {extra} (it has {names})")
    values = np.column_stack([table[name].to_value(get_label(name).unit) for name in names])
    if not extrapolate:
        for j, name in enumerate(names):
            lo, hi = ranges[name]
            out = (values[:, j] < lo) | (values[:, j] > hi)
            if out.any():
                i = int(np.flatnonzero(out)[0])
                box = "training range" if what == "emulator" else "box"
                raise ValueError(
                    f"{int(out.sum())} spectra have {name} outside the {what}'s {box} "
                    f"{lo:g}..{hi:g} (first: row {i}, {values[i, j]:g}); "
                    "pass extrapolate=True to evaluate anyway"
                )
    return values, table


def box_design(design, n, lo, hi, rng):
    """``(n, k)`` points filling the box ``[lo, hi]`` with a space-filling design.

    Parameters
    ----------
    design : {"uniform", "latin", "sobol"}
        Independent uniform draws, a Latin hypercube, or a scrambled Sobol
        sequence (its first ``n`` points of ``2**ceil(log2 n)``).
    n : int
        Number of points.
    lo, hi : `numpy.ndarray`
        ``(k,)`` edges of the box.
    rng : `numpy.random.Generator`
        The random source.
    """
    from scipy.stats import qmc

    k = lo.size
    if design == "uniform":
        unit = rng.random((n, k))
    elif design == "latin":
        unit = qmc.LatinHypercube(d=k, rng=rng).random(n)
    elif design == "sobol":
        unit = qmc.Sobol(d=k, rng=rng).random_base2(math.ceil(math.log2(n)))[:n]
    else:
        raise ValueError(f"unknown box design {design!r}; use uniform, latin or sobol")
    return lo + (hi - lo) * unit
