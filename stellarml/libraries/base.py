"""`SpectralLibrary`: a set of spectra on one wavelength grid with their stellar labels."""

import itertools
import math
import numbers

import astropy.units as u
import numpy as np
from astropy.table import QTable, Table

from ..labels import LABELS, get_label
from . import augment as _augment

__all__ = ["SpectralLibrary"]

#: Flux elements (spectra x input pixels) processed at once by `SpectralLibrary.degrade`,
#: `SpectralLibrary.augment` and `SpectralLibrary.prepare` when no ``chunk_size`` is given:
#: 2**22 elements are 32 MiB per float64 temporary (e.g. ~2000 spectra of 2000 pixels).
CHUNK_ELEMENTS = 2**22

_MEDIA = ("air", "vacuum")

#: `SpectralLibrary.broaden_rotation` on a grid not uniform in ln(lambda): the
#: log-uniform grid it broadens on has this many pixels per finest input pixel.
ROTATION_OVERSAMPLE = 4


def _as_label_table(labels, *, assign_units=False, label_names=None):
    """Validate ``labels`` and return a new `~astropy.table.QTable` in registry units.

    ``assign_units`` gives unitless label columns their registry unit (used by
    `SpectralLibrary.from_arrays`); otherwise a unitless label column is an error.
    """
    if isinstance(labels, np.ndarray) and labels.dtype.names is None:
        if label_names is None:
            raise ValueError("labels given as a plain array need label_names=[...]")
        arr = np.asarray(labels)
        if arr.ndim != 2 or arr.shape[1] != len(label_names):
            raise ValueError(
                f"labels array must have shape (n, {len(label_names)}) for label_names "
                f"{list(label_names)}, got {arr.shape}"
            )
        labels = {name: arr[:, j] for j, name in enumerate(label_names)}
    elif label_names is not None:
        raise ValueError("label_names is only used when labels is a plain (n, k) array")
    if isinstance(labels, Table | dict) or (
        isinstance(labels, np.ndarray) and labels.dtype.names is not None
    ):
        table = QTable(labels, copy=True)
    else:
        raise TypeError(
            f"labels must be an astropy Table/QTable, a dict of columns or an (n, k) array, "
            f"got {type(labels).__name__}"
        )
    names = [name for name in LABELS if name in table.colnames]
    if not names:
        raise ValueError(
            f"labels have no known label column (columns: {table.colnames}; "
            f"known labels: {', '.join(LABELS)})"
        )
    for name in names:
        spec = get_label(name)
        col = table[name]
        if getattr(col, "mask", None) is not None and np.any(col.mask):
            raise ValueError(f"label column {name!r} has masked (missing) values")
        col = getattr(col, "unmasked", col)
        if isinstance(col, u.Quantity):
            try:
                values = col.to_value(spec.unit)
            except u.UnitsError:
                raise u.UnitsError(
                    f"label column {name!r} has unit {col.unit!s}, not convertible to {spec.unit!s}"
                ) from None
        elif assign_units:
            values = np.asarray(col)
        else:
            raise u.UnitsError(
                f"label column {name!r} has no unit; expected {spec.unit!s} "
                "(SpectralLibrary.from_arrays assigns the registry units)"
            )
        if not np.issubdtype(np.asarray(values).dtype, np.number) or np.ndim(values) != 1:
            raise TypeError(f"label column {name!r} must be 1-D numeric")
        values = np.asarray(values, dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(
                f"label column {name!r} has {int(bad.sum())} non-finite values "
                f"(first at row {int(np.flatnonzero(bad)[0])})"
            )
        table[name] = values * spec.unit
    if "id" in table.colnames:
        table["id"] = np.asarray(table["id"]).astype(str)
    return table


def _as_wavelength(wavelength, *, assume_angstrom=False):
    """Return a strictly increasing, finite 1-D float64 array in Angstrom."""
    if isinstance(wavelength, u.Quantity):
        try:
            wave = wavelength.to_value(u.AA, equivalencies=u.spectral())
        except u.UnitsError:
            raise u.UnitsError(
                f"wavelength has unit {wavelength.unit!s}, not a spectral unit"
            ) from None
    elif assume_angstrom:
        wave = np.asarray(wavelength)
    else:
        raise u.UnitsError("wavelength must be a Quantity with a spectral unit (e.g. Angstrom)")
    wave = np.array(wave, dtype=np.float64)
    if wave.ndim != 1 or wave.size < 2:
        raise ValueError(f"wavelength must be 1-D with at least 2 pixels, got shape {wave.shape}")
    if wave[0] > wave[-1]:
        raise ValueError("wavelength must be increasing (frequency axes are not supported)")
    if not np.all(np.isfinite(wave)):
        raise ValueError("wavelength has non-finite values")
    if np.any(np.diff(wave) <= 0):
        raise ValueError("wavelength must be strictly increasing (no duplicates)")
    return wave


def _as_flux(flux, n, npix, name="flux"):
    arr = np.asarray(flux.value if isinstance(flux, u.Quantity) else flux)
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n_spectra, n_pixels) array, got shape {arr.shape}")
    if arr.shape != (n, npix):
        raise ValueError(
            f"{name} shape {arr.shape} does not match {n} label rows x {npix} wavelength pixels"
        )
    return arr


def _check_lsf(resolution, fwhm):
    if resolution is not None and fwhm is not None:
        raise ValueError("give the line-spread function as resolution (R) or fwhm, not both")
    if resolution is not None:
        resolution = float(resolution)
        if not (np.isfinite(resolution) and resolution > 0):
            raise ValueError(f"resolution must be a positive finite R, got {resolution}")
    if fwhm is not None:
        if not isinstance(fwhm, u.Quantity):
            raise u.UnitsError("fwhm must be a Quantity with a length unit (e.g. 2.5 * u.AA)")
        fwhm = fwhm.to(u.AA)
        if fwhm.ndim != 0 or not (np.isfinite(fwhm.value) and fwhm.value > 0):
            raise ValueError(f"fwhm must be one positive finite length, got {fwhm}")
    return resolution, fwhm


def _rows_per_chunk(chunk_size, npix):
    """Spectra per chunk: ``chunk_size`` checked, or ``CHUNK_ELEMENTS // npix``."""
    if chunk_size is None:
        return max(1, CHUNK_ELEMENTS // npix)
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    return int(chunk_size)


def _interpolation_operator(x_in, x_out):
    """Sparse (len(x_out), len(x_in)) linear interpolation; x_out inside x_in."""
    import scipy.sparse as sp

    j = np.clip(np.searchsorted(x_in, x_out, side="right") - 1, 0, x_in.size - 2)
    t = (x_out - x_in[j]) / (x_in[j + 1] - x_in[j])
    rows = np.repeat(np.arange(x_out.size), 2)
    cols = np.column_stack([j, j + 1]).ravel()
    vals = np.column_stack([1.0 - t, t]).ravel()
    return sp.csr_matrix((vals, (rows, cols)), shape=(x_out.size, x_in.size))


def _chunks(n, size):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class SpectralLibrary:
    """Spectra on one wavelength grid with one row of stellar labels each.

    A library is the training currency of stellarml: a synthetic grid or an
    observed set with labels that is sampled, degraded to an instrument,
    augmented, split and finally prepared for a model. Operations return new
    libraries; the arrays of a library are not modified in place.

    Parameters
    ----------
    labels : `~astropy.table.QTable`, `~astropy.table.Table` or dict
        One row per spectrum. Columns named after registered labels
        (`stellarml.labels.LABELS`: ``teff``, ``logg``, ``fe_h`` ...) must be
        Quantities convertible to the registry unit (they are converted); they
        must be finite and unmasked. An optional ``id`` column is kept as
        strings; other columns are kept unchanged.
    wavelength : `~astropy.units.Quantity`, shape (npix,)
        Strictly increasing wavelengths (any spectral unit convertible to
        Angstrom), shared by all spectra.
    flux : array-like, shape (n, npix)
        Flux (any float dtype is kept; integers become float64). A Quantity is
        accepted and its value used. Must be finite wherever ``ivar > 0`` (or
        everywhere without ``ivar``).
    ivar : array-like, shape (n, npix), optional
        Inverse variance of ``flux`` (0 = no information). None means the
        spectra carry no uncertainties (e.g. noise-free synthetic spectra, or
        MILES, which publishes none).
    medium : {"vacuum", "air"}
        Medium of ``wavelength``.
    resolution : float, optional
        Resolving power R (constant in ln lambda) of the spectra.
    fwhm : `~astropy.units.Quantity`, optional
        Line-spread-function FWHM (constant in lambda), e.g. ``2.5 * u.AA``.
        Give at most one of ``resolution`` and ``fwhm``; with neither the
        spectra are taken as unbroadened (intrinsic synthetic spectra).
    meta : dict, optional
        Provenance: name, source file and sha256, ids, creation parameters.

    Raises
    ------
    ValueError, TypeError, astropy.units.UnitsError
        On inconsistent shapes, missing or wrong units, non-finite values.

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from stellarml.libraries import SpectralLibrary
    >>> lib = SpectralLibrary.from_arrays(
    ...     {"teff": [5000.0, 6000.0], "logg": [4.5, 4.0]},
    ...     np.linspace(5000, 5010, 11) * u.AA, np.ones((2, 11)))
    >>> len(lib), lib.label_names
    (2, ['teff', 'logg'])
    """

    def __init__(
        self,
        labels,
        wavelength,
        flux,
        ivar=None,
        *,
        medium="vacuum",
        resolution=None,
        fwhm=None,
        meta=None,
    ):
        self._init(labels, wavelength, flux, ivar, medium, resolution, fwhm, meta)

    def _init(self, labels, wavelength, flux, ivar, medium, resolution, fwhm, meta, **kw):
        self.labels = _as_label_table(labels, **kw)
        self._wave = _as_wavelength(wavelength, assume_angstrom=kw.get("assign_units", False))
        n, npix = len(self.labels), self._wave.size
        self.flux = _as_flux(flux, n, npix)
        if ivar is not None:
            ivar = _as_flux(ivar, n, npix, name="ivar")
        # Row chunks keep the temporary boolean arrays small for big libraries.
        for sl in _chunks(n, max(1, 2**24 // npix)):
            if ivar is not None:
                iv = ivar[sl]
                if not (np.isfinite(iv).all() and (iv >= 0).all()):
                    raise ValueError("ivar must be finite and >= 0 everywhere")
                bad = ~np.isfinite(self.flux[sl]) & (iv > 0)
            else:
                bad = ~np.isfinite(self.flux[sl])
            if bad.any():
                rows = np.flatnonzero(bad.any(axis=1)) + sl.start
                raise ValueError(
                    f"flux has non-finite values where ivar > 0 (or without ivar) in spectrum "
                    f"row {int(rows[0])}; set ivar = 0 on bad pixels"
                )
        self.ivar = ivar
        if medium not in _MEDIA:
            raise ValueError(f"medium must be 'air' or 'vacuum', got {medium!r}")
        self.medium = medium
        self.resolution, self.fwhm = _check_lsf(resolution, fwhm)
        if meta is not None and not isinstance(meta, dict):
            raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
        self.meta = dict(meta or {})

    @classmethod
    def from_arrays(cls, labels_table, wavelength, flux, ivar=None, *, label_names=None, **kw):
        """Build a library from plain arrays, assigning registry units where missing.

        Parameters
        ----------
        labels_table : `~astropy.table.Table`, dict or ndarray
            Labels: a table or dict of columns (unitless label columns get the
            unit of `stellarml.labels.get_label`, columns with units are
            converted), or an ``(n, k)`` array with ``label_names``.
        wavelength : array-like or `~astropy.units.Quantity`, shape (npix,)
            Wavelengths; a plain array is taken to be in Angstrom.
        flux, ivar : array-like, shape (n, npix)
            As in `SpectralLibrary`.
        label_names : sequence of str, optional
            Column names when ``labels_table`` is a plain array.
        **kw
            ``medium``, ``resolution``, ``fwhm``, ``meta`` as in `SpectralLibrary`.

        Returns
        -------
        library : `SpectralLibrary` (or the subclass it is called on)
        """
        obj = cls.__new__(cls)
        obj._init(
            labels_table,
            wavelength,
            flux,
            ivar,
            kw.pop("medium", "vacuum"),
            kw.pop("resolution", None),
            kw.pop("fwhm", None),
            kw.pop("meta", None),
            assign_units=True,
            label_names=label_names,
        )
        if kw:
            raise TypeError(f"unexpected keyword arguments: {', '.join(kw)}")
        return obj

    def _replace(self, **changes):
        """A new library of the same class with some attributes replaced."""
        state = {
            "labels": self.labels,
            "wavelength": self.wavelength,
            "flux": self.flux,
            "ivar": self.ivar,
            "medium": self.medium,
            "resolution": self.resolution,
            "fwhm": self.fwhm,
            "meta": self.meta,
        }
        state.update(changes)
        new = type(self).__new__(type(self))
        SpectralLibrary._init(
            new,
            state.pop("labels"),
            state.pop("wavelength"),
            state.pop("flux"),
            state.pop("ivar"),
            state.pop("medium"),
            state.pop("resolution"),
            state.pop("fwhm"),
            state.pop("meta"),
        )
        return new

    # ------------------------------------------------------------------ basic access
    @property
    def wavelength(self):
        """Wavelength grid, `~astropy.units.Quantity` (npix,) in Angstrom."""
        return self._wave * u.AA

    @property
    def label_names(self):
        """Names of the label columns, in registry order (list of str)."""
        return [name for name in LABELS if name in self.labels.colnames]

    @property
    def npix(self):
        """Number of wavelength pixels (int)."""
        return self._wave.size

    def __len__(self):
        return len(self.labels)

    def __repr__(self):
        lsf = (
            f"R={self.resolution:g}"
            if self.resolution is not None
            else (f"FWHM={self.fwhm:g}" if self.fwhm is not None else "unbroadened")
        )
        name = self.meta.get("name", "")
        return (
            f"<{type(self).__name__}{' ' + repr(name) if name else ''}: {len(self)} spectra x "
            f"{self.npix} px, {self._wave[0]:.1f}-{self._wave[-1]:.1f} Angstrom ({self.medium}), "
            f"{lsf}, labels {self.label_names}, ivar {'yes' if self.ivar is not None else 'no'}>"
        )

    def __getitem__(self, index):
        """Subset by an int, a slice, a boolean mask (n,) or an integer array.

        Always returns a library (an int gives a library of one spectrum).
        """
        if isinstance(index, numbers.Integral) and not isinstance(index, bool):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"index {index} out of range for a library of {n} spectra")
            index = [int(index) % n]
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == bool:
                if index.shape != (len(self),):
                    raise IndexError(
                        f"boolean mask of shape {index.shape} does not match {len(self)} spectra"
                    )
            elif index.size == 0:
                index = index.astype(int)
            elif not np.issubdtype(index.dtype, np.integer) or index.ndim != 1:
                raise IndexError(
                    "index a library with an int, a slice, a boolean mask or a 1-D integer array"
                )
        return self._replace(
            labels=self.labels[index],
            flux=self.flux[index],
            ivar=None if self.ivar is None else self.ivar[index],
        )

    def label_array(self, names=None):
        """Labels as a plain array.

        Parameters
        ----------
        names : sequence of str, optional
            Labels to return, in this order. Default: `label_names`.

        Returns
        -------
        values : ndarray of shape (n, k)
            Float64 values in registry units (K for teff, dex for logg ...).
        """
        names = self.label_names if names is None else list(names)
        missing = [name for name in names if name not in self.label_names]
        if missing:
            raise KeyError(f"labels {missing} not in this library (it has {self.label_names})")
        if not names:
            return np.empty((len(self), 0))
        return np.column_stack(
            [self.labels[name].to_value(get_label(name).unit) for name in names]
        ).astype(float)

    def _lsf_meta(self):
        if self.resolution is not None:
            return {"resolution": self.resolution}
        if self.fwhm is not None:
            return {"lsf_fwhm": self.fwhm}
        return {}

    def to_spectrum(self):
        """The library as one 2-D specutils `~specutils.Spectrum`.

        Returns
        -------
        spectrum : `~specutils.Spectrum`
            Flux of shape (n, npix), dimensionless (library fluxes are relative),
            spectral axis in Angstrom, `~astropy.nddata.InverseVariance`
            uncertainty when the library has ``ivar``, and ``meta`` with
            ``medium``, ``resolution`` or ``lsf_fwhm`` (the keys that
            `stellarml.spectra.prepare` reads) and ``labels`` (the label table).
        """
        from astropy.nddata import InverseVariance
        from specutils import Spectrum

        meta = {"medium": self.medium, **self._lsf_meta(), "labels": self.labels}
        return Spectrum(
            flux=self.flux * u.dimensionless_unscaled,
            spectral_axis=self.wavelength,
            uncertainty=None if self.ivar is None else InverseVariance(self.ivar),
            meta=meta,
        )

    # ------------------------------------------------------------------ transformations
    def degrade(self, *, resolution=None, fwhm=None, wavelength=None, chunk_size=None):
        """Broaden to a coarser line-spread function and/or resample to a new grid.

        The spectra are convolved with a Gaussian from their own LSF
        (``self.resolution`` / ``self.fwhm``; unbroadened when neither) to the
        target with `stellarml.spectra.gaussian_broaden`, then resampled
        flux-conservingly onto ``wavelength`` with `stellarml.spectra.resample_flux`
        (which also propagates ``ivar``). Work is done ``chunk_size`` spectra at a
        time to bound memory (default: ``stellarml.libraries.base.CHUNK_ELEMENTS``
        flux values per chunk).

        Parameters
        ----------
        resolution : float, optional
            Target resolving power R.
        fwhm : `~astropy.units.Quantity`, optional
            Target FWHM (length). Give at most one of the two; with neither the
            LSF is unchanged (only resampling; note that binning onto a much
            coarser grid adds some broadening of its own).
        wavelength : `~astropy.units.Quantity`, optional
            New grid (same medium as the library), inside the library's range.
        chunk_size : int, optional
            Spectra processed at once.

        Returns
        -------
        library : `SpectralLibrary`
            Same class and labels, with the new LSF and grid; ``meta["degraded"]``
            records the steps.

        Raises
        ------
        ValueError
            If the target is sharper than the library's LSF (from
            `~stellarml.spectra.gaussian_broaden`), nothing is asked, or the new
            grid reaches outside the library's wavelength range.
        """
        from ..spectra import gaussian_broaden, resample_flux

        target_r, target_fwhm = _check_lsf(resolution, fwhm)
        new_wave = None if wavelength is None else _as_wavelength(wavelength)
        if target_r is None and target_fwhm is None and new_wave is None:
            raise ValueError("degrade() needs a target resolution, fwhm or wavelength grid")
        if new_wave is not None and (new_wave[0] < self._wave[0] or new_wave[-1] > self._wave[-1]):
            raise ValueError(
                f"new wavelength grid {new_wave[0]:.2f}-{new_wave[-1]:.2f} Angstrom reaches "
                f"outside the library's {self._wave[0]:.2f}-{self._wave[-1]:.2f} Angstrom"
            )
        broaden = target_r is not None or target_fwhm is not None
        out_wave = self._wave if new_wave is None else new_wave
        flux_out = np.empty((len(self), out_wave.size), dtype=self.flux.dtype)
        ivar_out = None if self.ivar is None else np.empty_like(flux_out)
        for sl in _chunks(len(self), _rows_per_chunk(chunk_size, self.npix)):
            flux = self.flux[sl]
            ivar = None if self.ivar is None else self.ivar[sl]
            if broaden:
                result = gaussian_broaden(
                    self._wave,
                    flux,
                    resolution_out=target_r,
                    fwhm_out=None if target_fwhm is None else target_fwhm.to_value(u.AA),
                    resolution_in=self.resolution,
                    fwhm_in=None if self.fwhm is None else self.fwhm.to_value(u.AA),
                    ivar=ivar,
                )
                flux, ivar = result if ivar is not None else (result, None)
            if new_wave is not None:
                flux, ivar_r = resample_flux(self._wave, flux, ivar, new_wave)
                ivar = None if ivar is None else ivar_r
            flux_out[sl] = flux
            if ivar_out is not None:
                ivar_out[sl] = ivar
        step = {
            "resolution": target_r,
            "fwhm_angstrom": None if target_fwhm is None else float(target_fwhm.value),
            "wavelength": None
            if new_wave is None
            else [float(new_wave[0]), float(new_wave[-1]), int(new_wave.size)],
        }
        meta = {**self.meta, "degraded": [*self.meta.get("degraded", []), step]}
        return self._replace(
            wavelength=out_wave * u.AA,
            flux=flux_out,
            ivar=ivar_out,
            resolution=target_r if broaden else self.resolution,
            fwhm=target_fwhm if broaden else self.fwhm,
            meta=meta,
        )

    def add_noise(self, snr, *, seed=None):
        """Add white Gaussian noise at a signal-to-noise ratio per pixel.

        Each spectrum gets noise of standard deviation ``median(flux) / snr``
        (see `stellarml.libraries.augment.add_noise`); ``ivar`` is set to the
        resulting inverse variance (combined in quadrature with an existing one).

        Parameters
        ----------
        snr : float, (lo, hi) tuple or array-like of shape (n,)
            One S/N for all, a uniform range (a *tuple*), or one per spectrum.
        seed : int, `numpy.random.Generator` or None
            Random seed.

        Returns
        -------
        library : `SpectralLibrary`
            Noisy copy; ``meta["noise_snr"]`` holds the S/N of every spectrum.
        """
        flux, ivar, snr_values = _augment.add_noise(self.flux, snr, ivar=self.ivar, seed=seed)
        meta = {**self.meta, "noise_snr": snr_values}
        return self._replace(flux=flux, ivar=ivar, meta=meta)

    def augment(
        self, *, rv_jitter=0.0, continuum_distortion=0.0, n_copies=1, seed=None, chunk_size=None
    ):
        """Random Doppler shifts and smooth continuum distortions, optionally in copies.

        Every output spectrum is an input spectrum shifted by a velocity drawn
        from ``Normal(0, rv_jitter)`` (`~stellarml.libraries.augment.doppler_shift_flux`)
        and multiplied by a random positive low-order Legendre multiplier
        (`~stellarml.libraries.augment.continuum_distortion`, degree 3). Labels
        are copied unchanged, so a model learns to ignore residual RV errors and
        continuum shapes. Split *before* augmenting: copies of one star must not
        fall on both sides of a split.

        Parameters
        ----------
        rv_jitter : float or `~astropy.units.Quantity`
            Standard deviation of the velocity shifts (km/s). 0 = no shift.
        continuum_distortion : float
            Standard deviation of each Legendre coefficient of the log multiplier
            (fractional amplitude; 0.05 is a 5 % tilt). 0 = none.
        n_copies : int
            Augmented copies of the library; the output holds ``n_copies * n``
            spectra, copy ``c`` of spectrum ``i`` at row ``c * n + i``.
        seed : int, `numpy.random.Generator` or None
            Random seed.
        chunk_size : int, optional
            Spectra processed at once (default from
            ``stellarml.libraries.base.CHUNK_ELEMENTS``); the result does not
            depend on it.

        Returns
        -------
        library : `SpectralLibrary`
            ``meta["augmentation"]`` records the parameters, and the per-spectrum
            ``rv_kms`` applied.
        """
        if isinstance(rv_jitter, u.Quantity):
            rv_jitter = rv_jitter.to_value(u.km / u.s)
        rv_jitter, continuum_distortion = float(rv_jitter), float(continuum_distortion)
        for name, value in (
            ("rv_jitter", rv_jitter),
            ("continuum_distortion", continuum_distortion),
        ):
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        if int(n_copies) != n_copies or n_copies < 1:
            raise ValueError(f"n_copies must be an integer >= 1, got {n_copies}")
        n_copies = int(n_copies)
        rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
        rows = np.tile(np.arange(len(self)), n_copies)
        rv = rng.normal(0.0, rv_jitter, size=rows.size) if rv_jitter > 0 else np.zeros(rows.size)
        flux = np.empty((rows.size, self.npix), dtype=self.flux.dtype)
        ivar = None if self.ivar is None else np.empty_like(flux)
        # Chunks bound the (chunk, npix) temporaries; the continuum coefficients are
        # drawn chunk after chunk from one stream, so the result does not depend on them.
        for sl in _chunks(rows.size, _rows_per_chunk(chunk_size, self.npix)):
            f = self.flux[rows[sl]]
            iv = None if self.ivar is None else self.ivar[rows[sl]]
            if rv_jitter > 0:
                f, iv = _augment.doppler_shift_flux(self._wave, f, rv[sl], ivar=iv)
            if continuum_distortion > 0:
                mult = _augment.continuum_distortion(
                    self._wave, f.shape[0], continuum_distortion, seed=rng, dtype=f.dtype
                )
                f = f * mult
                iv = None if iv is None else iv / mult**2
            flux[sl] = f
            if ivar is not None:
                ivar[sl] = iv
        record = {
            "rv_jitter_kms": rv_jitter,
            "continuum_distortion": continuum_distortion,
            "continuum_degree": 3,
            "n_copies": n_copies,
            "rv_kms": rv,
        }
        meta = {**self.meta, "augmentation": [*self.meta.get("augmentation", []), record]}
        return self._replace(labels=self.labels[rows], flux=flux, ivar=ivar, meta=meta)

    def broaden_rotation(
        self, vsini, *, distribution="uniform", epsilon=None, seed=None, chunk_size=None
    ):
        """Broaden every spectrum by stellar rotation and add a ``vsini`` label column.

        Spectrum ``i`` is convolved in velocity with the rotation profile of
        Gray (2005) at its own ``vsini[i]`` with linear limb darkening
        ``epsilon`` (`stellarml.spectra.rotational_broaden`). Convolutions
        commute, so broadening a library already degraded to an LSF gives the
        spectrum of a rotating star seen through that LSF. On a grid uniform
        in ln(lambda) the convolution is exact (FFT, all spectra at once, in
        chunks). On any other grid (e.g. the 0.1 Angstrom grid of the Doppler
        emulator) each chunk is resampled flux-conservingly
        (`stellarml.spectra.resample_flux`) onto a log-uniform grid
        ``stellarml.libraries.base.ROTATION_OVERSAMPLE`` (4) times finer than
        the grid's finest step, broadened there by FFT and interpolated
        linearly back to the pixel centres: one FFT for all vsini instead of
        a sparse operator per distinct vsini (0.25 s each for the 33,000
        pixels of an optical library; about 10 ms per spectrum this way).
        Against that exact path the difference is at most 2e-4 of the
        continuum (largest at a vsini of about a pixel) for lines of
        R = 1500 width on 0.1 Angstrom pixels, but reaches per cent for
        spectra with structure at the pixel scale (an unbroadened emulator
        at a vsini of a pixel or less). A spectrum with ``vsini = 0`` is
        copied unchanged.

        No flux is invented at the edges: a pixel whose kernel would reach
        past the ends of the grid cannot be computed, so the grid is trimmed
        by ``max(vsini) / c`` (plus three pixels) in ln(lambda) at both
        ends. Give the library that much wavelength margin beyond the model
        grid (``[pretrain] wavelength_margin`` does). Broaden noise-free
        spectra and add noise afterwards: with ``ivar`` only the diagonal of
        the (now correlated) noise is propagated.

        Parameters
        ----------
        vsini : float, (lo, hi) tuple, array-like of shape (n,) or `~astropy.units.Quantity`
            Projected rotation velocity [km/s], >= 0: one for all, a range
            (a *tuple*) drawn per spectrum from ``distribution``, or one per
            spectrum (see `stellarml.libraries.augment.draw_vsini`).
        distribution : {"uniform", "log-uniform"}
            How a range is drawn (log-uniform needs ``lo > 0``).
        epsilon : float, optional
            Linear limb-darkening coefficient in [0, 1] (default
            `stellarml.spectra.kernels.DEFAULT_LIMB_DARKENING`, 0.6).
        seed : int, `numpy.random.Generator` or None
            Random seed of the draws from a range.
        chunk_size : int, optional
            Spectra processed at once (default from
            ``stellarml.libraries.base.CHUNK_ELEMENTS``); the result does not
            depend on it beyond rounding.

        Returns
        -------
        library : `SpectralLibrary`
            Same class and LSF, on the trimmed grid, with a ``vsini`` label
            column [km/s]; ``meta["rotation"]`` records the parameters.

        Raises
        ------
        ValueError
            For negative or non-finite vsini, a range with ``lo > hi``, an
            unknown distribution, ``epsilon`` outside [0, 1], a library that
            already has a ``vsini`` label (rotation profiles do not add up),
            or a grid too short for the largest vsini.

        Examples
        --------
        >>> import numpy as np, astropy.units as u
        >>> from stellarml.libraries import SpectralLibrary
        >>> from stellarml.spectra import log_lambda_grid
        >>> wave = log_lambda_grid(5000.0, 5100.0, 1e-5)          # 3 km/s pixels
        >>> line = 1 - 0.5 * np.exp(-0.5 * ((wave - 5050) / 0.2) ** 2)
        >>> lib = SpectralLibrary.from_arrays({"teff": [5000.0] * 3}, wave, [line] * 3)
        >>> spun = lib.broaden_rotation(np.array([0.0, 50.0, 200.0]))
        >>> spun.labels["vsini"].unit, np.round(spun.flux.min(axis=1), 2)
        (Unit("km / s"), array([0.5 , 0.8 , 0.95]))
        """
        from ..spectra import C_KMS, log_lambda_grid, resample_flux, rotational_broaden
        from ..spectra.kernels import DEFAULT_LIMB_DARKENING, LOG_GRID_RTOL

        if "vsini" in self.labels.colnames:
            raise ValueError(
                "the library already has a vsini label: a second rotation profile does not "
                "add up to a rotation at another vsini; broaden the unrotated library"
            )
        eps = DEFAULT_LIMB_DARKENING if epsilon is None else float(epsilon)
        if not (np.isfinite(eps) and 0.0 <= eps <= 1.0):
            raise ValueError(f"limb-darkening coefficient epsilon must be in [0, 1], got {eps}")
        values = _augment.draw_vsini(vsini, len(self), distribution=distribution, seed=seed)
        wave = self._wave
        lnw = np.log(wave)
        dlog = np.diff(lnw)
        log_uniform = bool(np.all(np.abs(dlog - dlog.mean()) <= LOG_GRID_RTOL * dlog.mean()))
        vmax = float(values.max()) if values.size else 0.0
        keep = np.ones(wave.size, dtype=bool)
        if vmax > 0:
            pad = vmax / C_KMS + 3 * float(dlog.max())
            keep = (lnw >= lnw[0] + pad) & (lnw <= lnw[-1] - pad)
            if keep.sum() < 2:
                raise ValueError(
                    f"the grid {wave[0]:.2f}-{wave[-1]:.2f} Angstrom is too short for vsini up "
                    f"to {vmax:g} km/s: pixels within vsini of either end cannot be broadened"
                )
        out_wave = wave[keep]
        work = back = None
        if not log_uniform:  # a log-uniform grid inside this one, finer than its finest step
            step = float(dlog.max())
            work = log_lambda_grid(
                wave[0] * np.exp(step), wave[-1] * np.exp(-step), dlog.min() / ROTATION_OVERSAMPLE
            )
            back = _interpolation_operator(work, out_wave)
        flux = np.empty((len(self), out_wave.size), dtype=self.flux.dtype)
        ivar = None if self.ivar is None else np.empty_like(flux)
        size = wave.size if work is None else work.size
        for sl in _chunks(len(self), _rows_per_chunk(chunk_size, size)):
            f = self.flux[sl]
            iv = None if self.ivar is None else self.ivar[sl]
            v = values[sl]
            if work is None:
                result = rotational_broaden(wave, f, v, epsilon=eps, ivar=iv)
                f_out, iv_out = result if iv is not None else (result, None)
                flux[sl] = f_out[:, keep]
                if ivar is not None:
                    ivar[sl] = iv_out[:, keep]
                continue
            flux[sl] = f[:, keep]
            if ivar is not None:
                ivar[sl] = iv[:, keep]
            moving = np.flatnonzero(v > 0)
            if not moving.size:
                continue
            iv_m = None if iv is None else iv[moving]
            fw, ivw = resample_flux(wave, f[moving], iv_m, work)
            if iv is None:  # uncovered work pixels (none inside the grid) count as bad
                fb = rotational_broaden(work, np.where(ivw > 0, fw, np.nan), v[moving], epsilon=eps)
                fo = np.asarray(back @ fb.T).T
            else:
                fb, ivb = rotational_broaden(work, fw, v[moving], epsilon=eps, ivar=ivw)
                bad = ivb <= 0
                var = np.where(bad, 0.0, 1.0 / np.where(bad, 1.0, ivb))
                fo = np.asarray(back @ np.where(bad, 0.0, fb).T).T
                var_o = np.asarray(back.multiply(back) @ var.T).T
                lost = np.asarray(back @ bad.T.astype(np.float64)).T > 0
                ivar[sl.start + moving] = np.where(lost | (var_o <= 0), 0.0, 1.0 / var_o)
                fo = np.where(lost, 0.0, fo)
            flux[sl.start + moving] = fo
        is_range = isinstance(vsini, tuple)
        if is_range:  # the range asked for (draw_vsini has checked it)
            span = [float(_augment._kms_values(x, "vsini")) for x in vsini]
        else:
            span = [float(values.min()), vmax] if values.size else [0.0, 0.0]
        record = {
            "vsini_range_kms": span,
            "distribution": distribution if is_range else None,
            "epsilon": eps,
            "seed": seed if isinstance(seed, int) else None,
            "log_resampled": work is not None,
            "wavelength": [float(out_wave[0]), float(out_wave[-1]), int(out_wave.size)],
        }
        labels = self.labels.copy()
        labels["vsini"] = values * (u.km / u.s)
        return self._replace(
            labels=labels,
            wavelength=out_wave * u.AA,
            flux=flux,
            ivar=ivar,
            meta={**self.meta, "rotation": record},
        )

    def prepare(self, settings, *, chunk_size=None, **kw):
        """Put the library on a model's grid with `stellarml.spectra.prepare_arrays`.

        This is the same code path as inference: rest frame, air/vacuum,
        LSF degradation from the library's LSF to ``settings.resolution``,
        resampling, continuum normalisation and flags. The library's
        ``medium``, ``resolution`` and ``fwhm`` are passed on. An unbroadened
        library (neither ``resolution`` nor ``fwhm``) is first broadened to
        ``settings.resolution`` here (``prepare_arrays`` would otherwise assume
        it already has the model's resolution). Spectra are processed
        ``chunk_size`` at a time (default:
        ``stellarml.libraries.base.CHUNK_ELEMENTS`` input flux values, about
        1000 MILES spectra) and the batches concatenated.

        Parameters
        ----------
        settings : `stellarml.spectra.PreparationSettings`
            The model's grid and preparation settings.
        chunk_size : int, optional
            Spectra per call of ``prepare_arrays``.
        **kw
            Passed to ``prepare_arrays`` (e.g. ``rv``, ``mask``); a per-spectrum
            array (``rv`` of shape (n,), ``mask`` of shape (n, npix)) is sliced
            along with the chunks.

        Returns
        -------
        batch : `stellarml.spectra.PreparedBatch`
            One row per library spectrum, in order.
        """
        from ..spectra import PreparedBatch, gaussian_broaden, prepare_arrays

        chunk_size = _rows_per_chunk(chunk_size, self.npix)
        sharp = self.resolution is None and self.fwhm is None
        lsf = {"resolution": self.resolution, "fwhm": self.fwhm}
        if sharp and settings.resolution is not None:
            lsf = {"resolution": settings.resolution, "fwhm": None}
        n = len(self)
        batches = []
        for sl in _chunks(n, chunk_size):
            flux = self.flux[sl]
            ivar = None if self.ivar is None else self.ivar[sl]
            if sharp and settings.resolution is not None:
                result = gaussian_broaden(
                    self._wave, flux, resolution_out=settings.resolution, ivar=ivar
                )
                flux, ivar = result if ivar is not None else (result, None)
            args = {
                key: (value[sl] if np.ndim(value) >= 1 and np.shape(value)[0] == n else value)
                for key, value in kw.items()
            }
            batches.append(
                prepare_arrays(self._wave, flux, ivar, settings, medium=self.medium, **lsf, **args)
            )
        return batches[0] if len(batches) == 1 else PreparedBatch.concatenate(batches)

    # ------------------------------------------------------------------ splitting
    def split(self, fractions=(0.9, 0.1), *, seed=0):
        """Random disjoint split into parts of the given fractions.

        Parameters
        ----------
        fractions : sequence of float
            Positive fractions summing to 1. Part sizes are rounded so that
            they add up to ``len(self)`` (largest remainders get the extra rows).
        seed : int
            Random seed of the permutation.

        Returns
        -------
        parts : list of `SpectralLibrary`
            One library per fraction, rows in a random order.
        """
        fractions = np.asarray(fractions, dtype=float)
        if fractions.ndim != 1 or fractions.size < 1 or np.any(~(fractions > 0)):
            raise ValueError(f"fractions must be a sequence of positive numbers, got {fractions}")
        if not math.isclose(fractions.sum(), 1.0, abs_tol=1e-9):
            raise ValueError(f"fractions must sum to 1, got {fractions.sum():g}")
        n = len(self)
        raw = fractions * n
        sizes = np.floor(raw).astype(int)
        extra = n - sizes.sum()
        sizes[np.argsort(-(raw - sizes), kind="stable")[:extra]] += 1
        perm = np.random.default_rng(seed).permutation(n)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        return [self[perm[a:b]] for a, b in itertools.pairwise(bounds)]

    def kfold(self, k, *, seed=0, stratify=None):
        """K-fold cross-validation splits.

        Parameters
        ----------
        k : int
            Number of folds, ``2 <= k <= len(self)``.
        seed : int
            Random seed.
        stratify : str or array-like of shape (n,), optional
            A label name or per-spectrum values. The spectra are sorted by that
            value (ties in random order) and each consecutive block of ``k`` is
            dealt out to the ``k`` folds in random order, so every fold spans the
            whole range of the value. Default: plain random folds.

        Yields
        ------
        train, test : `SpectralLibrary`
            For each fold, the other spectra and the fold's spectra. The ``k``
            test sets are disjoint and together hold every spectrum once.
        """
        n = len(self)
        if int(k) != k or not 2 <= k <= n:
            raise ValueError(f"k must be an integer with 2 <= k <= {n} (library size), got {k}")
        k = int(k)
        rng = np.random.default_rng(seed)
        if stratify is None:
            order = rng.permutation(n)
        else:
            if isinstance(stratify, str):
                values = self.label_array([stratify])[:, 0]
            else:
                values = np.asarray(stratify, dtype=float)
                if values.shape != (n,):
                    raise ValueError(
                        f"stratify must be a label name or {n} values, got shape {values.shape}"
                    )
            shuffled = rng.permutation(n)
            order = shuffled[np.argsort(values[shuffled], kind="stable")]
        fold = np.empty(n, dtype=int)
        n_blocks = -(-n // k)
        deal = np.argsort(rng.random((n_blocks, k)), axis=1).ravel()[:n]
        fold[order] = deal
        for i in range(k):
            test = fold == i
            yield self[~test], self[test]
