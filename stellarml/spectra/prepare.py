"""Preparing spectra for a model: one code path for training and inference.

`prepare_arrays` takes plain arrays on one input grid, `prepare` takes any
specutils input. Both run the same steps (see ``docs/spectra.rst``):

1. validate the input, zero-weighting bad pixels (masked, non-finite flux,
   zero/negative/non-finite uncertainty) and flagging hopeless spectra;
2. rest frame (``lambda_rest = lambda_obs / (1 + rv/c)``) and input medium to
   the model's medium (Morton 2000);
3. Gaussian LSF degradation from the input resolution to the model's constant
   resolving power, and
4. flux-conserving resampling onto the model grid with exact inverse-variance
   propagation; steps 2-4 are one cached sparse operator (the model grid is
   mapped into the input frame, where the input LSF is described);
5. continuum normalisation (`normalize_continuum`);
6. flags: ``NO_WAVELENGTH_OVERLAP``, ``TOO_FEW_GOOD_PIXELS``, ``BAD_INPUT``
   (fatal, their rows are all zero), ``NO_UNCERTAINTY``, ``RESOLUTION_ASSUMED``,
   ``MEDIUM_ASSUMED`` and ``MANY_MASKED_PIXELS`` (more than `MAX_MASKED_FRACTION`
   of the grid without data); what was assumed is also logged (astropy's logger),
   once per call.
"""

import dataclasses
import hashlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from astropy import log
from astropy import units as u
from specutils import Spectrum, SpectrumCollection

from ..flags import FATAL, LabelFlag
from .broadening import FWHM_TO_SIGMA, _kernel_sigma, _lsf_sigma
from .continuum import _continuum, _sigma_pixels, _smoother
from .doppler import C_KMS, air_to_vacuum, vacuum_to_air
from .parts import SpectrumParts, _combine_parts, _PartsBlock, _percent
from .resample import (
    OPERATOR_CACHE,
    _apply_operator,
    _edges_from_centers,
    _good_pixels,
    _input_bins,
    _ivar_from_uncertainty,
)

__all__ = [
    "RV_SOURCES",
    "PreparationSettings",
    "PreparedBatch",
    "prepare",
    "prepare_arrays",
    "warn_assumptions",
]

_MEDIA = ("air", "vacuum")
#: Where a row's radial velocity comes from: the caller's ``rv=`` ("given"), the
#: spectrum (its ``radial_velocity``/``redshift``; "header" when a reader took it from
#: the file, ``meta["rv_source"] == "header"``, else "given"), an estimate
#: (`~stellarml.derive_labels`, "estimated"), or nowhere ("none": 0 was applied).
RV_SOURCES = ("given", "header", "estimated", "none")
#: Asymmetric clipping (below, above) of the continuum, as in `normalize_continuum`.
CONTINUUM_CLIP = (2.0, 3.0)
#: Rows with a larger fraction of model-grid pixels without information (masked, in a gap
#: or beyond the input's range) are flagged ``MANY_MASKED_PIXELS``. Measured on the shipped
#: default model (``benchmarks/mask_shift.py``, ``benchmarks/RESULTS.md``): beyond this
#: fraction the labels of real MILES spectra move by more than their stated errors.
MAX_MASKED_FRACTION = 0.002


def _grid_quantity(wavelength):
    """Validate a model grid: 1-D, Angstrom, strictly increasing, uniform in ln lambda."""
    if isinstance(wavelength, u.Quantity):
        try:
            value = wavelength.to_value(u.AA)
        except u.UnitConversionError:
            raise u.UnitsError(
                f"settings wavelength has unit {wavelength.unit!s}; a length is needed"
            ) from None
    else:
        value = wavelength
    value = np.array(value, dtype=np.float64)
    if value.ndim != 1 or value.size < 2:
        raise ValueError(f"settings wavelength must be 1-D with >= 2 pixels, got {value.shape}")
    if not np.all(np.isfinite(value)) or not np.all(value > 0):
        raise ValueError("settings wavelength must be finite and positive")
    dlog = np.diff(np.log(value))
    if not np.all(dlog > 0):
        raise ValueError("settings wavelength must be strictly increasing")
    if np.ptp(dlog) > 1e-4 * np.mean(dlog):
        raise ValueError(
            "settings wavelength must be uniform in ln(lambda); "
            "build it with stellarml.spectra.log_lambda_grid"
        )
    return value * u.AA


@dataclasses.dataclass(eq=False)
class PreparationSettings:
    """How spectra are put on a model's grid (stored with the model).

    Parameters
    ----------
    wavelength : `~astropy.units.Quantity`
        The model grid (1-D, strictly increasing, uniform in ln lambda) [Angstrom];
        a plain array is taken to be in Angstrom.
    medium : {'vacuum', 'air'}
        Medium of the grid's wavelengths.
    resolution : float or None
        Constant resolving power R of the model; None = no LSF matching (the
        input is only resampled).
    continuum_width : float
        Gaussian sigma of the continuum smoothing [Angstrom].
    continuum_iterations : int
        Clip-and-refit rounds of the continuum.
    min_good_fraction : float
        Rows with a smaller fraction of good pixels on the grid are flagged
        ``TOO_FEW_GOOD_PIXELS``.
    min_overlap_fraction : float
        Rows whose input covers a smaller fraction of the grid are flagged
        ``NO_WAVELENGTH_OVERLAP``.

    Raises
    ------
    ValueError
        If the grid is not 1-D, finite, positive, strictly increasing and
        uniform in ln lambda, or another field is out of its range.
    astropy.units.UnitsError
        If ``wavelength`` is a Quantity that is not a length.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.spectra import PreparationSettings, log_lambda_grid
    >>> settings = PreparationSettings(log_lambda_grid(5000.0, 5400.0, 1e-4), resolution=2000.0)
    >>> print(settings.wavelength.size, settings.wavelength.unit, settings.medium)
    770 Angstrom vacuum
    >>> PreparationSettings.from_dict(settings.to_dict()) == settings
    True
    >>> try:
    ...     PreparationSettings(np.linspace(5000.0, 5400.0, 100))  # linear, not log-uniform
    ... except ValueError as err:
    ...     print(err)
    settings wavelength must be uniform in ln(lambda); ...
    """

    wavelength: u.Quantity
    medium: str = "vacuum"
    resolution: float | None = None
    continuum_width: float = 50.0
    continuum_iterations: int = 3
    min_good_fraction: float = 0.5
    min_overlap_fraction: float = 0.5

    def __post_init__(self):
        self.wavelength = _grid_quantity(self.wavelength)
        if self.medium not in _MEDIA:
            raise ValueError(f"medium must be 'air' or 'vacuum', got {self.medium!r}")
        if self.resolution is not None:
            r = float(self.resolution)
            if not (np.isfinite(r) and r > 0):
                raise ValueError(f"resolution must be a positive number or None, got {r}")
            self.resolution = r
        w = float(self.continuum_width)
        if not (np.isfinite(w) and w > 0):
            raise ValueError(f"continuum_width must be positive [Angstrom], got {w}")
        self.continuum_width = w
        it = self.continuum_iterations
        if isinstance(it, bool) or int(it) != it or it < 0:
            raise ValueError(f"continuum_iterations must be a non-negative integer, got {it}")
        self.continuum_iterations = int(it)
        for name in ("min_good_fraction", "min_overlap_fraction"):
            v = float(getattr(self, name))
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {v}")
            setattr(self, name, v)

    def to_dict(self):
        """Plain dictionary (JSON/ASDF friendly; ``wavelength`` stays a Quantity).

        Returns
        -------
        dict
        """
        return {
            "wavelength": self.wavelength.copy(),
            "medium": self.medium,
            "resolution": self.resolution,
            "continuum_width": self.continuum_width,
            "continuum_iterations": self.continuum_iterations,
            "min_good_fraction": self.min_good_fraction,
            "min_overlap_fraction": self.min_overlap_fraction,
        }

    @classmethod
    def from_dict(cls, d):
        """Inverse of `to_dict` (``wavelength`` may be a Quantity or an Angstrom array).

        Parameters
        ----------
        d : dict

        Returns
        -------
        PreparationSettings
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise TypeError(f"unknown PreparationSettings fields: {sorted(unknown)}")
        if "wavelength" not in d:
            raise TypeError("PreparationSettings needs 'wavelength'")
        return cls(**d)

    def __eq__(self, other):
        if not isinstance(other, PreparationSettings):
            return NotImplemented
        a, b = self.to_dict(), other.to_dict()
        wa, wb = a.pop("wavelength"), b.pop("wavelength")
        return a == b and wa.shape == wb.shape and bool(np.all(wa == wb))

    __hash__ = None


@dataclasses.dataclass
class PreparedBatch:
    """Spectra on a model grid, ready for a network.

    Attributes
    ----------
    flux : numpy.ndarray, (n, npix) float32
        Continuum-normalised flux, 0 where ``ivar == 0``.
    ivar : numpy.ndarray, (n, npix) float32
        Inverse variance of the normalised flux; 0 = no information.
    flags : numpy.ndarray, (n,) int64
        `~stellarml.flags.LabelFlag` bitmask; rows with a FATAL bit are all zero.
    snr : numpy.ndarray, (n,) float64
        Median signal-to-noise ratio per input pixel over good pixels within
        the grid's range (NaN without uncertainties).
    rv : numpy.ndarray, (n,) float64
        Radial velocity applied [km/s]: the rest frame is
        ``lambda_obs / (1 + rv / c)``, so a spectrum's ``redshift`` z gives
        ``rv = c z``.
    messages : list of str
        Why a row is fatally flagged ("" if it is not).
    rv_err : numpy.ndarray, (n,) float64
        Uncertainty of ``rv`` [km/s]; NaN when not known.
    rv_source : numpy.ndarray, (n,) str
        One of `RV_SOURCES` per row.

    Examples
    --------
    A batch is what `prepare` (or `prepare_arrays`) returns; here three
    spectra of one 2-D `~specutils.Spectrum`, at three radial velocities:

    >>> import numpy as np
    >>> import astropy.units as u
    >>> from astropy.nddata import StdDevUncertainty
    >>> from specutils import Spectrum
    >>> from stellarml.spectra import PreparationSettings, PreparedBatch, log_lambda_grid, prepare
    >>> settings = PreparationSettings(log_lambda_grid(5000.0, 5400.0, 1e-4), resolution=2000.0)
    >>> wave = np.linspace(4950.0, 5450.0, 1001)  # [Angstrom]
    >>> rng = np.random.default_rng(0)
    >>> line = 1 - 0.5 * np.exp(-0.5 * ((wave - 5170) / 1.0) ** 2)
    >>> spectra = Spectrum(
    ...     flux=(3.0 * line + rng.normal(0, 0.06, (3, wave.size))) * u.Jy,
    ...     spectral_axis=wave * u.AA,
    ...     uncertainty=StdDevUncertainty(np.full((3, wave.size), 0.06) * u.Jy),
    ...     meta={"medium": "vacuum", "resolution": 5000.0},
    ... )
    >>> batch = prepare(spectra, settings, rv=[0.0, 10.0, 20.0] * u.km / u.s)
    >>> print(len(batch), batch.flux.shape, batch.flux.dtype, batch.flags)
    3 (3, 770) float32 [0 0 0]
    >>> print(batch.rv, batch.rv_source, np.round(batch.snr))
    [ 0. 10. 20.] ['given' 'given' 'given'] [50. 50. 50.]
    >>> len(PreparedBatch.concatenate([batch, batch[1:]]))
    5
    >>> flux, ivar = batch.to_tensors()
    >>> print(tuple(flux.shape), flux.dtype)
    (3, 770) torch.float32
    """

    flux: np.ndarray
    ivar: np.ndarray
    flags: np.ndarray
    snr: np.ndarray
    rv: np.ndarray
    messages: list
    rv_err: np.ndarray = None
    rv_source: np.ndarray = None

    def __post_init__(self):
        n = int(np.shape(self.flags)[0])
        if self.rv_err is None:
            self.rv_err = np.full(n, np.nan)
        if self.rv_source is None:
            self.rv_source = np.full(n, "given", dtype="<U9")
        self.rv_err = np.asarray(self.rv_err, dtype=np.float64)
        self.rv_source = np.asarray(self.rv_source, dtype="<U9")

    def __len__(self):
        return int(self.flags.shape[0])

    def __getitem__(self, index):
        """Rows selected by an int, slice, boolean mask or integer array -> PreparedBatch."""
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return PreparedBatch(
            flux=self.flux[idx],
            ivar=self.ivar[idx],
            flags=self.flags[idx],
            snr=self.snr[idx],
            rv=self.rv[idx],
            messages=[self.messages[i] for i in idx],
            rv_err=self.rv_err[idx],
            rv_source=self.rv_source[idx],
        )

    @classmethod
    def concatenate(cls, batches):
        """Join batches (on the same grid) row-wise, in order.

        Parameters
        ----------
        batches : sequence of PreparedBatch

        Returns
        -------
        PreparedBatch
        """
        batches = list(batches)
        if not batches:
            raise ValueError("need at least one PreparedBatch to concatenate")
        npix = {b.flux.shape[1] for b in batches}
        if len(npix) != 1:
            raise ValueError(f"batches have different grid sizes: {sorted(npix)}")
        return cls(
            flux=np.concatenate([b.flux for b in batches]),
            ivar=np.concatenate([b.ivar for b in batches]),
            flags=np.concatenate([b.flags for b in batches]),
            snr=np.concatenate([b.snr for b in batches]),
            rv=np.concatenate([b.rv for b in batches]),
            messages=[m for b in batches for m in b.messages],
            rv_err=np.concatenate([b.rv_err for b in batches]),
            rv_source=np.concatenate([b.rv_source for b in batches]),
        )

    def to_tensors(self, device="cpu"):
        """Flux and inverse variance as float32 torch tensors.

        Parameters
        ----------
        device : str or torch.device, optional
            ``"cpu"``, ``"cuda"``, ``"auto"``...

        Returns
        -------
        flux, ivar : torch.Tensor, (n, npix) float32
        """
        import torch

        from .._utils import resolve_device

        dev = resolve_device(device)
        flux = torch.from_numpy(np.ascontiguousarray(self.flux, dtype=np.float32)).to(dev)
        ivar = torch.from_numpy(np.ascontiguousarray(self.ivar, dtype=np.float32)).to(dev)
        return flux, ivar


def _empty_batch(n, npix, rv_source="none"):
    return PreparedBatch(
        flux=np.zeros((n, npix), dtype=np.float32),
        ivar=np.zeros((n, npix), dtype=np.float32),
        flags=np.zeros(n, dtype=np.int64),
        snr=np.full(n, np.nan),
        rv=np.zeros(n),
        messages=[""] * n,
        rv_err=np.full(n, np.nan),
        rv_source=np.full(n, rv_source, dtype="<U9"),
    )


def _row_nanmedian(x):
    """Median of each row ignoring NaN (NaN for rows without values)."""
    if x.shape[1] == 0:
        return np.full(x.shape[0], np.nan)
    s = np.sort(x, axis=1)
    k = np.count_nonzero(~np.isnan(x), axis=1)
    rows = np.arange(x.shape[0])
    lo = np.clip((k - 1) // 2, 0, None)
    hi = np.clip(k // 2, 0, None)
    lo = np.minimum(lo, x.shape[1] - 1)
    hi = np.minimum(hi, x.shape[1] - 1)
    med = 0.5 * (s[rows, lo] + s[rows, hi])
    return np.where(k > 0, med, np.nan)


def _to_medium(wave, from_medium, to_medium):
    if from_medium == to_medium:
        return wave
    return air_to_vacuum(wave) if to_medium == "vacuum" else vacuum_to_air(wave)


class _GridMapper:
    """The model grid mapped into the frame of one input grid, per radial velocity."""

    def __init__(self, wave, settings, medium, resolution, fwhm, assumed):
        self.wave = wave
        self.edges_in, self.real = _input_bins(wave)
        grid = settings.wavelength.to_value(u.AA)
        # the model grid in the medium of the input (the Doppler factor is applied per rv)
        self.edges_med = _to_medium(_edges_from_centers(grid), settings.medium, medium)
        self.centers_med = _to_medium(grid, settings.medium, medium)
        self.resolution_out = settings.resolution
        self.sigma_in_px = None
        if settings.resolution is not None and not assumed:
            self.sigma_in_px = _lsf_sigma(
                wave, resolution=resolution, fwhm=fwhm, name="input LSF", allow_sharp=True
            )

    def __call__(self, v, store=True):
        """(operator, overlap fraction, first and last input column in range) for rv ``v``.

        The overlap is the fraction of model pixels covered by input pixels
        (`~stellarml.spectra.resample.MIN_COVERAGE` of their weight, masks
        ignored): pixels in gaps of the input grid do not count.
        """
        factor = 1.0 + v / C_KMS
        edges = self.edges_med * factor
        centers = self.centers_med * factor
        if self.resolution_out is None:
            sigma = np.zeros(centers.size)
        else:
            sigma_out = centers / self.resolution_out * FWHM_TO_SIGMA
            if self.sigma_in_px is None:  # input LSF assumed equal to the model's
                sigma = np.zeros(centers.size)
            else:
                sigma_in = np.interp(centers, self.wave, self.sigma_in_px)
                sigma = _kernel_sigma(sigma_out, sigma_in, centers, strict=False)
        op = OPERATOR_CACHE.get(
            self.edges_in, edges[:-1], edges[1:], sigma, store=store, real=self.real
        )
        c0, c1 = np.searchsorted(self.wave, [edges[0], edges[-1]])
        return op, float(op.covered.mean()), int(c0), int(c1)


def _prepare_chunk(rows, flux, ivar, var, good, rv, mapper, smooth, iterations):
    """Resample, normalise and measure the rows ``rows`` (all live) of a batch.

    Returns pixel-major float32 (npix, m) flux and ivar, and per-row overlap,
    snr and good fraction.
    """
    velocities, inverse = np.unique(rv[rows], return_inverse=True)
    inverse = np.ravel(inverse)
    m = rows.size
    overlap = np.empty(m)
    snr = np.full(m, np.nan)
    store = velocities.size <= 8
    flux_g = ivar_g = None
    for k, v in enumerate(velocities):
        sel = np.flatnonzero(inverse == k) if velocities.size > 1 else slice(None)
        r = rows[sel]
        op, overlap[sel], c0, c1 = mapper(v, store=store)
        f_o, i_o = _apply_operator(op, flux[r], None if var is None else var[r], good[r])
        if velocities.size == 1:
            flux_g, ivar_g = f_o.T, i_o.T
        else:
            if flux_g is None:
                flux_g = np.empty((op.shape[0], m))
                ivar_g = np.empty((op.shape[0], m))
            flux_g[:, sel], ivar_g[:, sel] = f_o.T, i_o.T
        if ivar is not None:
            g = good[r, c0:c1]
            with np.errstate(invalid="ignore"):
                sn = flux[r, c0:c1] * np.sqrt(np.where(g, ivar[r, c0:c1], 0.0))
            snr[sel] = _row_nanmedian(np.where(g, sn, np.nan).astype(np.float32))
    good_g = ivar_g > 0
    cont = _continuum(smooth, flux_g.T, ivar_g.T, good_g.T, iterations, CONTINUUM_CLIP).T
    ok_px = good_g & (cont > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm_flux = np.where(ok_px, flux_g / cont, 0.0).astype(np.float32)
    norm_ivar = np.where(ok_px, ivar_g * cont * cont, 0.0).astype(np.float32)
    good_frac = np.count_nonzero(norm_ivar > 0, axis=0) / norm_ivar.shape[0]
    return norm_flux, norm_ivar, overlap, snr, good_frac


#: Rows per chunk in `_prepare_core`: bounds the memory of large batches and keeps the
#: working arrays in cache (128 was fastest for 1000 x 4300 -> 2000 pixel batches).
_CHUNK_ROWS = 128


def _prepare_chunks(chunks, args):
    """`_prepare_chunk` of every chunk, in order, on as many threads as torch uses.

    The chunks are independent and their numpy/scipy work releases the GIL, so
    threads scale (1.3-1.7x on two cores for 4096 spectra, ``benchmarks/RESULTS.md``);
    the results do not depend on the number of threads. ``torch.set_num_threads``
    therefore limits the whole of `stellarml.derive_labels`, preparation included.
    """
    import torch  # here, like the rest of this module: importing it stays torch-free

    workers = min(len(chunks), max(1, torch.get_num_threads()))
    if workers <= 1:
        return [_prepare_chunk(rows, *args) for rows in chunks]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stellarml-prepare") as pool:
        return list(pool.map(lambda rows: _prepare_chunk(rows, *args), chunks))


def _prepare_core(wave, flux, ivar, mask, settings, *, medium, resolution, fwhm, rv):
    """The shared preparation of a batch on one validated input grid.

    wave (npix_in,) strictly increasing Angstrom; flux (n, npix_in); ivar same
    or None; mask bool same or None; rv (n,) km/s.
    """
    n = flux.shape[0]
    grid = settings.wavelength.to_value(u.AA)
    npix = grid.size
    out = _empty_batch(n, npix, rv_source="given")
    out.rv = rv.astype(np.float64).copy()
    flags = out.flags
    messages = out.messages
    if ivar is None:
        flags |= int(LabelFlag.NO_UNCERTAINTY)
    assumed = settings.resolution is not None and resolution is None and fwhm is None
    if assumed:
        flags |= int(LabelFlag.RESOLUTION_ASSUMED)
    if n == 0:
        return out

    good, var = _good_pixels(flux, ivar, mask)
    fatal = np.zeros(n, dtype=bool)

    def flag(rows, bit, message):
        rows = rows & ~fatal
        for i in np.flatnonzero(rows):
            messages[i] = message
        flags[rows] |= int(bit)
        fatal[rows] = True

    flag(
        ~np.isfinite(rv) | (np.abs(rv) >= C_KMS),
        LabelFlag.BAD_INPUT,
        "radial velocity is not finite",
    )
    no_good = ~good.any(axis=1)
    if no_good.any():
        finite_flux = np.isfinite(flux[no_good])
        bad_rows = np.flatnonzero(no_good)
        sub = np.zeros(n, dtype=bool)
        sub[bad_rows] = ~finite_flux.any(axis=1)
        flag(sub, LabelFlag.BAD_INPUT, "flux has no finite values")
        if ivar is not None:
            iv = ivar[no_good]
            sub[:] = False
            sub[bad_rows] = ~((np.isfinite(iv) & (iv > 0) & finite_flux).any(axis=1))
            flag(
                sub,
                LabelFlag.BAD_INPUT,
                "no pixel has a valid uncertainty (all zero, negative or non-finite)",
            )
        if mask is not None:
            sub[:] = False
            sub[bad_rows] = mask[no_good].all(axis=1)
            flag(sub, LabelFlag.TOO_FEW_GOOD_PIXELS, "all pixels are masked")
        flag(no_good, LabelFlag.TOO_FEW_GOOD_PIXELS, "no good pixels")

    live = np.flatnonzero(~fatal)
    if live.size == 0:
        return out

    mapper = _GridMapper(wave, settings, medium, resolution, fwhm, assumed)
    smooth = _smoother(npix, _sigma_pixels(grid, settings.continuum_width))
    velocities = np.unique(rv[live])
    if velocities.size <= 8:
        for v in velocities:  # build (and cache) the shared operators once
            mapper(v)
    chunks = [live[i : i + _CHUNK_ROWS] for i in range(0, live.size, _CHUNK_ROWS)]
    args = (flux, ivar, var, good, rv, mapper, smooth, settings.continuum_iterations)
    results = _prepare_chunks(chunks, args)

    lo_in, hi_in = wave[0], wave[-1]
    for rows, (norm_flux, norm_ivar, overlap, snr, good_frac) in zip(chunks, results, strict=True):
        out.snr[rows] = snr
        no_overlap = overlap < settings.min_overlap_fraction
        few = ~no_overlap & (good_frac < settings.min_good_fraction)
        for j in np.flatnonzero(no_overlap):
            i = rows[j]
            messages[i] = (
                f"the spectrum ({lo_in:.1f}-{hi_in:.1f} Angstrom, {medium}, rv {rv[i]:.1f} "
                f"km/s) covers {_percent(overlap[j])} of the model grid ({grid[0]:.1f}-"
                f"{grid[-1]:.1f} Angstrom, {settings.medium}); at least "
                f"{_percent(settings.min_overlap_fraction)} is needed"
            )
            flags[i] |= int(LabelFlag.NO_WAVELENGTH_OVERLAP)
        for j in np.flatnonzero(few):
            i = rows[j]
            messages[i] = (
                f"only {_percent(good_frac[j])} of the model grid has good pixels; at least "
                f"{_percent(settings.min_good_fraction)} are needed"
            )
            flags[i] |= int(LabelFlag.TOO_FEW_GOOD_PIXELS)
        ok = ~(no_overlap | few)
        many = ok & (1.0 - good_frac > MAX_MASKED_FRACTION)
        flags[rows[many]] |= int(LabelFlag.MANY_MASKED_PIXELS)
        if ok.all():
            out.flux[rows] = norm_flux.T
            out.ivar[rows] = norm_ivar.T
        else:
            out.flux[rows[ok]] = norm_flux[:, ok].T
            out.ivar[rows[ok]] = norm_ivar[:, ok].T
    return out


def _check_medium(medium):
    if not isinstance(medium, str) or medium.lower() not in _MEDIA:
        raise ValueError(f"medium must be 'air' or 'vacuum', got {medium!r}")
    return medium.lower()


def _wave_angstrom(wavelength, name="wavelength"):
    """Wavelength values [Angstrom] from a Quantity (any spectral unit) or plain array."""
    if isinstance(wavelength, u.Quantity):
        unit = wavelength.unit
        value = np.asarray(wavelength.view(np.ndarray), dtype=np.float64)
        if unit == u.AA:
            return value
        if unit.physical_type == "length":
            return value * unit.to(u.AA)
        if not unit.is_equivalent(u.AA, equivalencies=u.spectral()):
            raise u.UnitsError(
                f"{name} has unit {unit!s}; a wavelength, frequency, energy or "
                "wavenumber axis is needed"
            )
        return (value * unit).to_value(u.AA, equivalencies=u.spectral())
    return np.asarray(wavelength, dtype=np.float64)


def _lsf_args(resolution, fwhm, npix, where):
    """Validate an input LSF; return (resolution R, fwhm Angstrom) as floats or arrays."""
    if resolution is not None and fwhm is not None:
        raise ValueError(f"{where}: give either resolution or fwhm, not both")
    if resolution is not None:
        if isinstance(resolution, u.Quantity):
            resolution = resolution.to_value(u.dimensionless_unscaled)
        r = np.asarray(resolution, dtype=np.float64)
        if r.shape not in ((), (npix,)):
            raise ValueError(f"{where}: resolution must be a number or one value per pixel")
        if not np.all((r > 0) & ~np.isnan(r)):
            raise ValueError(f"{where}: resolution must be positive (inf: infinitely sharp)")
        return (float(r) if r.ndim == 0 else r), None
    if fwhm is not None:
        if isinstance(fwhm, u.Quantity):
            try:
                fwhm = fwhm.to_value(u.AA)
            except u.UnitConversionError:
                raise u.UnitsError(
                    f"{where}: fwhm has unit {fwhm.unit!s}; a length is needed"
                ) from None
        f = np.asarray(fwhm, dtype=np.float64)
        if f.shape not in ((), (npix,)):
            raise ValueError(f"{where}: fwhm must be a number or one value per pixel")
        if not np.all(np.isfinite(f) & (f >= 0)):
            raise ValueError(f"{where}: fwhm must be finite and >= 0 (0: infinitely sharp)")
        return None, (float(f) if f.ndim == 0 else f)
    return None, None


def _rv_array(rv, n, where="rv"):
    if isinstance(rv, u.Quantity):
        try:
            rv = rv.to_value(u.km / u.s)
        except u.UnitConversionError:
            raise u.UnitsError(f"{where} has unit {rv.unit!s}; a velocity is needed") from None
    rv = np.asarray(rv, dtype=np.float64)
    if rv.ndim == 0:
        return np.full(n, float(rv))
    if rv.shape != (n,):
        raise ValueError(
            f"{where} must be a number or one value per spectrum ({n}), got shape {rv.shape}"
        )
    return rv.copy()


def prepare_arrays(
    wavelength,
    flux,
    ivar,
    settings,
    *,
    mask=None,
    medium="vacuum",
    resolution=None,
    fwhm=None,
    rv=0.0,
):
    """Put a batch of spectra on one input grid onto the model grid.

    This is the single code path used for training libraries and for
    observed spectra (`prepare` calls it too): rest frame and medium, LSF
    degradation to ``settings.resolution``, flux-conserving resampling with
    inverse-variance propagation, continuum normalisation and flags. See
    ``docs/spectra.rst`` for every step.

    Parameters
    ----------
    wavelength : array-like or `~astropy.units.Quantity`, shape (npix_in,)
        Input pixel centres [Angstrom, or any spectral unit as a Quantity],
        strictly monotonic (decreasing grids are reversed), shared by the batch.
    flux : array-like, shape (n, npix_in) or (npix_in,)
        Flux density; any unit (a Quantity's unit is dropped).
    ivar : array-like or None, same shape as ``flux``
        Inverse variance [flux unit**-2]. Zero, negative or non-finite values
        mark bad pixels. None: unit weights, ``NO_UNCERTAINTY`` flag, ``snr`` NaN.
    settings : PreparationSettings
        The model's grid and preparation parameters.
    mask : array-like of bool, optional
        True marks bad input pixels.
    medium : {'vacuum', 'air'}
        Medium of ``wavelength``.
    resolution : float or array-like, optional
        Input resolving power R (a number or one per pixel).
    fwhm : float, array-like or `~astropy.units.Quantity`, optional
        Input LSF FWHM [Angstrom] (a number or one per pixel). With neither,
        the input LSF is assumed equal to the model's (no degradation,
        ``RESOLUTION_ASSUMED`` flag when the model has a resolution). Where
        the input is broader than the model, no extra broadening is applied.
    rv : float, array-like or `~astropy.units.Quantity`, optional
        Radial velocity [km/s], one for all or one per spectrum.

    Returns
    -------
    PreparedBatch
        One row per input spectrum, in order.

    Raises
    ------
    TypeError
        If ``settings`` is not a `PreparationSettings`.
    ValueError, astropy.units.UnitsError
        For a malformed grid (fewer than 2 pixels, non-finite, not strictly
        monotonic), shape mismatches, an invalid medium, LSF or rv.

    Examples
    --------
    Two air-wavelength spectra at R = 5000 with uncertainties, and one
    without:

    >>> import numpy as np
    >>> from stellarml.flags import describe_flags
    >>> from stellarml.spectra import PreparationSettings, log_lambda_grid, prepare_arrays
    >>> settings = PreparationSettings(log_lambda_grid(5000.0, 5400.0, 1e-4), resolution=2000.0)
    >>> wave = np.linspace(4950.0, 5450.0, 1001)  # [Angstrom], air
    >>> flux = 1 - 0.5 * np.exp(-0.5 * ((wave - 5170) / 1.0) ** 2)
    >>> ivar = np.full((2, wave.size), 2500.0)  # sigma = 0.02
    >>> batch = prepare_arrays(
    ...     wave, np.stack([flux, 2 * flux]), ivar, settings, medium="air", resolution=5000.0
    ... )
    >>> print(batch.flux.shape, batch.flags, np.round(batch.snr))
    (2, 770) [0 0] [ 50. 100.]
    >>> print(round(float(batch.flux[0].min()), 2))  # the line, degraded to R = 2000
    0.65
    >>> batch = prepare_arrays(wave, flux, None, settings, medium="air", resolution=5000.0)
    >>> print(describe_flags(batch.flags[0]))
    ['NO_UNCERTAINTY']
    """
    if not isinstance(settings, PreparationSettings):
        raise TypeError(f"settings must be a PreparationSettings, not {type(settings).__name__}")
    wave = _wave_angstrom(wavelength)
    if wave.ndim != 1:
        raise ValueError(f"wavelength must be 1-D, got shape {wave.shape}")
    if wave.size < 2:
        raise ValueError(f"wavelength has {wave.size} pixel(s); at least 2 are needed")
    if not np.all(np.isfinite(wave)) or not np.all(wave > 0):
        raise ValueError("wavelength must be finite and positive")
    flux = np.asarray(flux.value if isinstance(flux, u.Quantity) else flux, dtype=np.float64)
    if flux.ndim == 1:
        flux = flux[None, :]
    if flux.ndim != 2 or flux.shape[1] != wave.size:
        raise ValueError(
            f"flux has shape {flux.shape}; expected (n, {wave.size}) to match wavelength"
        )
    if ivar is not None:
        ivar = np.asarray(ivar.value if isinstance(ivar, u.Quantity) else ivar, dtype=np.float64)
        ivar = ivar.reshape(flux.shape) if ivar.size == flux.size else ivar
        if ivar.shape != flux.shape:
            raise ValueError(f"ivar has shape {ivar.shape}; expected {flux.shape} like flux")
    if mask is not None:
        mask = np.asarray(mask)
        mask = mask.reshape(flux.shape) if mask.size == flux.size else mask
        if mask.shape != flux.shape:
            raise ValueError(f"mask has shape {mask.shape}; expected {flux.shape} like flux")
        mask = mask != 0
    medium = _check_medium(medium)
    resolution, fwhm = _lsf_args(resolution, fwhm, wave.size, "prepare_arrays")
    rv = _rv_array(rv, flux.shape[0])
    step = np.diff(wave)
    if np.all(step < 0):
        wave = wave[::-1]
        flux = flux[:, ::-1]
        ivar = None if ivar is None else ivar[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
        resolution = resolution[::-1] if np.ndim(resolution) == 1 else resolution
        fwhm = fwhm[::-1] if np.ndim(fwhm) == 1 else fwhm
    elif not np.all(step > 0):
        raise ValueError("wavelength must be strictly monotonic (no duplicates, sorted)")
    return _prepare_core(
        wave, flux, ivar, mask, settings, medium=medium, resolution=resolution, fwhm=fwhm, rv=rv
    )


class _BadInput(Exception):
    """A spectrum that becomes a flagged row (not an error for the whole call)."""

    def __init__(self, message, flag=LabelFlag.BAD_INPUT):
        super().__init__(message)
        self.flag = flag


class _Block:
    """Rows from one specutils object, validated, on one grid."""

    __slots__ = (
        "error",
        "flux",
        "fwhm",
        "ivar",
        "key",
        "label",
        "mask",
        "medium",
        "medium_assumed",
        "nrows",
        "resolution",
        "rv",
        "rv_err",
        "rv_source",
        "wave",
    )

    def __init__(self, label, nrows):
        self.label = label
        self.nrows = nrows
        self.error = None
        self.rv, self.rv_err, self.rv_source = 0.0, np.nan, "none"
        self.medium_assumed = False


def _iter_spectra(obj, path, depth=0):
    """Yield (label, spectrum) pairs in order, flattening lists and collections.

    A `~stellarml.spectra.SpectrumParts` (the parts of one star) is yielded
    whole, as one item: it gives one row.
    """
    if depth > 50:
        raise ValueError(f"input nesting is too deep at {path}")
    if isinstance(obj, Spectrum | SpectrumParts):
        yield path, obj
    elif isinstance(obj, SpectrumCollection):
        for i in range(len(obj)):
            yield f"{path}[{i}]", obj[i]
    elif isinstance(obj, (list, tuple)):  # includes SpectrumList
        for i, item in enumerate(obj):
            yield from _iter_spectra(item, f"{path}[{i}]", depth + 1)
    else:
        raise TypeError(
            f"prepare() needs specutils spectra (Spectrum, SpectrumList, SpectrumCollection or "
            f"lists of them); got {type(obj).__name__} at {path}"
            + ("; use prepare_arrays for plain arrays" if isinstance(obj, np.ndarray) else "")
        )


def _spectrum_rows(spec):
    """Rows one input gives: 1 for a 1-D spectrum or a star's parts, n for an (n, npix) batch."""
    if isinstance(spec, SpectrumParts):
        return 1
    ndim = spec.flux.ndim
    if ndim <= 1:
        return 1
    spec_index = getattr(spec, "spectral_axis_index", ndim - 1) if ndim == 2 else 0
    return int(spec.flux.shape[1 - spec_index])


def input_rows(spectra):
    """Number of rows `prepare` gives for ``spectra`` (anything it accepts).

    A `~stellarml.spectra.SpectrumParts` (the parts of one star) counts one row.

    Examples
    --------
    >>> from stellarml.data import example_spectra
    >>> from stellarml.spectra.prepare import input_rows
    >>> spectra, _ = example_spectra()
    >>> input_rows(spectra) == spectra.flux.shape[0] == input_rows([spectra[0], spectra[1]]) + 6
    True
    """
    return sum(_spectrum_rows(spec) for _, spec in _iter_spectra(spectra, "spectra"))


def _spectrum_rv(spec):
    """(rv [km/s], rv_err [km/s], source) of one specutils spectrum.

    A spectrum whose ``radial_velocity`` or ``redshift`` was set gives
    ``rv = c z`` with z its ``redshift`` (specutils relates the two
    relativistically), so that the rest frame ``lambda_obs / (1 + z)`` is exact;
    one without either gives (0, NaN, "none"). ``meta["rv_source"] == "header"``
    (set by the stellarml readers) and ``meta["rv_err"]`` are carried along.
    """
    axis = spec.spectral_axis
    # specutils keeps None in SpectralAxis._radial_velocity until a radial velocity
    # or redshift is set; the public property reads 0 km/s for both cases.
    known = getattr(axis, "_radial_velocity", None) is not None
    if not known and not hasattr(axis, "_radial_velocity"):
        known = bool(spec.radial_velocity != 0)
    if not known:
        return 0.0, np.nan, "none"
    rv = C_KMS * float(spec.redshift)
    meta = spec.meta if isinstance(spec.meta, dict) else {}
    source = "header" if meta.get("rv_source") == "header" else "given"
    err = meta.get("rv_err")
    if isinstance(err, u.Quantity):
        err = err.to_value(u.km / u.s)
    try:
        err = float(err) if err is not None else np.nan
    except (TypeError, ValueError):
        err = np.nan
    return rv, (err if np.isfinite(err) and err >= 0 else np.nan), source


def _block_from_spectrum(label, spec, resolution, fwhm, medium=None):
    """Validate one specutils spectrum into a _Block (errors recorded, not raised)."""
    flux_q = spec.flux
    ndim = flux_q.ndim
    if ndim > 2:
        raise ValueError(
            f"{label}: flux has {ndim} dimensions; prepare() takes 1-D spectra or 2-D batches "
            "(n, npix) — reshape cubes into a 2-D batch first"
        )
    spec_index = getattr(spec, "spectral_axis_index", ndim - 1) if ndim == 2 else 0
    nrows = _spectrum_rows(spec)
    block = _Block(label, nrows)
    try:
        wave = _wave_angstrom(spec.spectral_axis, "spectral axis")
    except u.UnitsError as exc:
        block.error = _BadInput(f"{label}: {exc}")
        return block
    flux = np.asarray(flux_q.value, dtype=np.float64)
    if ndim == 2 and spec_index == 0:
        flux = flux.T
    flux = flux.reshape(nrows, -1)
    npix = flux.shape[1]
    if npix < 2:
        block.error = _BadInput(f"{label}: the spectrum has {npix} pixel(s); at least 2 are needed")
        return block
    if not np.all(np.isfinite(wave)) or not np.all(wave > 0):
        block.error = _BadInput(f"{label}: the spectral axis has non-finite or non-positive values")
        return block
    step = np.diff(wave)
    reverse = bool(np.all(step < 0))
    if not reverse and not np.all(step > 0):
        ndup = int(np.count_nonzero(step == 0))
        block.error = _BadInput(
            f"{label}: the spectral axis is not strictly monotonic ({ndup} duplicate value(s))"
        )
        return block
    ivar = None
    if spec.uncertainty is not None:
        try:
            ivar = _ivar_from_uncertainty(spec.uncertainty, flux_q.unit)
        except (TypeError, u.UnitsError) as exc:
            block.error = _BadInput(f"{label}: {exc}")
            return block
        if ndim == 2 and spec_index == 0:
            ivar = ivar.T
        ivar = ivar.reshape(nrows, npix)
    mask = None
    if spec.mask is not None:
        mask = np.asarray(spec.mask) != 0
        if ndim == 2 and spec_index == 0:
            mask = mask.T
        mask = mask.reshape(nrows, npix)
    meta = spec.meta if isinstance(spec.meta, dict) else {}
    if medium is None:
        medium = meta.get("medium")
        if medium is None:
            medium, block.medium_assumed = "vacuum", True
        if not isinstance(medium, str) or medium.lower() not in _MEDIA:
            block.error = _BadInput(
                f"{label}: meta['medium'] is {medium!r}; expected 'air' or 'vacuum'"
            )
            return block
    medium = medium.lower()
    try:
        if resolution is None and fwhm is None:
            res_meta = meta.get("resolution")
            fwhm_meta = meta.get("lsf_fwhm") if res_meta is None else None
            res, fw = _lsf_args(res_meta, fwhm_meta, npix, label)
        else:
            res, fw = _lsf_args(resolution, fwhm, npix, label)
    except (ValueError, u.UnitsError, TypeError) as exc:
        block.error = _BadInput(f"{label}: invalid LSF in meta: {exc}")
        return block
    if reverse:
        wave = wave[::-1]
        flux = flux[:, ::-1]
        ivar = None if ivar is None else ivar[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
        res = res[::-1] if np.ndim(res) == 1 else res
        fw = fw[::-1] if np.ndim(fw) == 1 else fw
    block.rv, block.rv_err, block.rv_source = _spectrum_rv(spec)
    block.wave, block.flux, block.ivar, block.mask = wave, flux, ivar, mask
    block.medium, block.resolution, block.fwhm = medium, res, fw
    h = hashlib.blake2b(np.ascontiguousarray(wave).tobytes(), digest_size=16)
    for extra in (res, fw):
        h.update(b"|" + (b"none" if extra is None else np.asarray(extra, np.float64).tobytes()))
    block.key = (h.hexdigest(), medium, ivar is not None, res is None, fw is None)
    return block


def prepare(spectra, settings, *, rv=None, resolution=None, fwhm=None, medium=None):
    """Prepare specutils spectra for a model: one row per input spectrum, in order.

    Accepts a `~specutils.Spectrum` (1-D, or a 2-D batch sharing one
    spectral axis), the deprecated ``Spectrum1D``, `~specutils.SpectrumList`,
    `~specutils.SpectrumCollection`, and (nested) lists or tuples of these,
    flattened in order: each spectrum is a star, one row (a 2-D batch, one
    row per spectrum). A `~stellarml.spectra.SpectrumParts` is the parts of
    **one** star (CCDs, echelle orders), combined into one row on the model
    grid (`stellarml.spectra.parts`). Spectra sharing a grid (and medium, LSF
    and uncertainty presence) are processed together by `prepare_arrays`'
    code path and put back in input order.

    A spectrum that cannot be used becomes a row with a fatal flag and a
    message, and the batch goes on:

    * ``BAD_INPUT``: spectral axis in pixels or velocity, non-finite, or not
      strictly monotonic (duplicates); fewer than 2 pixels; no finite flux;
      no valid uncertainty at all; an uncertainty that cannot be converted
      (unit mismatch, unknown class); an invalid ``meta['medium']`` or LSF.
    * ``TOO_FEW_GOOD_PIXELS``: all pixels masked, or less than
      ``settings.min_good_fraction`` of the grid left with information.
    * ``NO_WAVELENGTH_OVERLAP``: less than ``settings.min_overlap_fraction``
      of the grid covered.

    Single bad pixels (NaN/inf flux, zero, negative or NaN uncertainty,
    masked) are given zero weight. Frequency, energy and wavenumber axes are
    converted to wavelength; decreasing axes are reversed. The flux unit is
    free (the continuum normalisation removes it).

    Parameters
    ----------
    spectra : Spectrum, SpectrumList, SpectrumCollection or (nested) list/tuple
        The input.
    settings : PreparationSettings
        The model's grid and preparation parameters.
    rv : float, array-like or `~astropy.units.Quantity`, optional
        Radial velocity [km/s], one for all or one per output row
        (``rv_source`` "given"; the row of a `~stellarml.spectra.SpectrumParts`
        applies it to each of its parts). Default: each spectrum's (or part's)
        ``redshift`` z as ``rv = c z`` (so the rest frame is
        ``lambda_obs / (1 + z)``, exactly, also for a ``radial_velocity``, which
        specutils turns into z relativistically); 0 where neither is set
        (``rv_source`` "none"; `~stellarml.spectra.prepare_with_rv` measures those).
    resolution : float, optional
        Input resolving power R for every spectrum. Default:
        ``meta['resolution']``.
    fwhm : float or `~astropy.units.Quantity`, optional
        Input LSF FWHM [Angstrom] for every spectrum. Default:
        ``meta['lsf_fwhm']``. Without any LSF information the input is assumed
        to match the model (``RESOLUTION_ASSUMED``).
    medium : {'air', 'vacuum'}, optional
        Wavelength medium of every spectrum. Default: ``meta['medium']``;
        where that is missing, vacuum is assumed and ``MEDIUM_ASSUMED`` set.

    Returns
    -------
    PreparedBatch
        With ``rv``, ``rv_err`` and ``rv_source`` per row. Rows flagged
        ``RESOLUTION_ASSUMED``, ``MEDIUM_ASSUMED`` or ``RV_UNRELIABLE`` are
        counted in one warning each through astropy's logger (``astropy.log``).

    Raises
    ------
    TypeError
        If the input (or an element of a list) is not a specutils spectrum,
        or ``settings`` is not a `PreparationSettings`.
    ValueError
        For flux with more than 2 dimensions, an ``rv`` array of the wrong
        length, or invalid ``resolution``/``fwhm``/``medium`` arguments.

    Examples
    --------
    A star with its radial velocity, and a spectrum that misses the grid (a
    fatal row with a message; the batch goes on):

    >>> import numpy as np
    >>> import astropy.units as u
    >>> from astropy.nddata import InverseVariance
    >>> from specutils import Spectrum
    >>> from stellarml.flags import describe_flags
    >>> from stellarml.spectra import PreparationSettings, log_lambda_grid, prepare
    >>> settings = PreparationSettings(log_lambda_grid(5000.0, 5400.0, 1e-4), resolution=2000.0)
    >>> wave = np.linspace(4950.0, 5450.0, 1001) * u.AA
    >>> flux = (1 - 0.5 * np.exp(-0.5 * ((wave.value - 5170) / 1.0) ** 2)) * u.Jy
    >>> meta = {"medium": "air", "resolution": 5000.0}
    >>> star = Spectrum(
    ...     flux=flux,
    ...     spectral_axis=wave,
    ...     uncertainty=InverseVariance(np.full(1001, 2500.0) / u.Jy**2),
    ...     radial_velocity=25 * u.km / u.s,
    ...     meta=meta,
    ... )
    >>> far = Spectrum(flux=flux, spectral_axis=wave + 1000 * u.AA, meta=meta)
    >>> batch = prepare([star, far], settings)
    >>> print(batch.flux.shape, np.round(batch.rv, 2), batch.rv_source)  # rv [km/s]
    (2, 770) [25.  0.] ['given' 'none']
    >>> print(describe_flags(batch.flags[1]))
    ['NO_WAVELENGTH_OVERLAP', 'NO_UNCERTAINTY']
    >>> print(batch.messages[1])
    spectra[1]: the spectrum (5950.0-6450.0 Angstrom, air, rv 0.0 km/s) covers 0% of ...
    """
    batch = _prepare_spectra(
        spectra, settings, rv=rv, resolution=resolution, fwhm=fwhm, medium=medium
    )
    warn_assumptions(batch)
    return batch


def warn_assumptions(batch):
    """Log (astropy's logger, level WARNING) what `prepare` had to assume for ``batch``.

    One message per assumption, naming how many rows it concerns:
    ``RESOLUTION_ASSUMED``, ``MEDIUM_ASSUMED`` and ``RV_UNRELIABLE``. Nothing is logged when no row
    carries them.

    Parameters
    ----------
    batch : PreparedBatch
        Prepared spectra and their flags.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy import log
    >>> from stellarml.spectra import (
    ...     PreparationSettings, log_lambda_grid, prepare_arrays, warn_assumptions
    ... )
    >>> settings = PreparationSettings(log_lambda_grid(5000.0, 5400.0, 1e-4), resolution=2000.0)
    >>> wave = np.linspace(4950.0, 5450.0, 1001)
    >>> batch = prepare_arrays(wave, np.ones((2, wave.size)), None, settings)  # no resolution
    >>> with log.log_to_list() as messages:
    ...     warn_assumptions(batch)
    >>> print(messages[0].getMessage())
    stellarml: 2 of 2 spectra: the input resolution is unknown ... (flag RESOLUTION_ASSUMED)
    """
    n = len(batch)
    flags = np.asarray(batch.flags, dtype=np.int64)
    for bit, text in (
        (
            LabelFlag.RESOLUTION_ASSUMED,
            "the input resolution is unknown (no resolution/fwhm argument, no "
            "meta['resolution'] or meta['lsf_fwhm']); it was assumed equal to the model's "
            "(flag RESOLUTION_ASSUMED)",
        ),
        (
            LabelFlag.MEDIUM_ASSUMED,
            "the wavelength medium is unknown (no medium argument, no meta['medium']); "
            "vacuum was assumed (flag MEDIUM_ASSUMED)",
        ),
        (
            LabelFlag.RV_UNRELIABLE,
            "no radial velocity was known and none could be measured; they were analysed "
            "at rv = 0 (flag RV_UNRELIABLE)",
        ),
    ):
        k = int(np.count_nonzero(flags & int(bit)))
        if k:
            log.warning(f"stellarml: {k} of {n} spectra: {text}")


def _prepare_spectra(spectra, settings, *, rv=None, resolution=None, fwhm=None, medium=None):
    """`prepare` without the warnings about assumptions."""
    if not isinstance(settings, PreparationSettings):
        raise TypeError(f"settings must be a PreparationSettings, not {type(settings).__name__}")
    if resolution is not None and fwhm is not None:
        raise ValueError("give either resolution or fwhm, not both")
    for name, value in (("resolution", resolution), ("fwhm", fwhm)):
        if value is not None and np.ndim(value) != 0:
            raise ValueError(f"prepare: {name} must be a single number for all spectra")
    _lsf_args(resolution, fwhm, 1, "prepare")
    if medium is not None:
        medium = _check_medium(medium)
    items = list(_iter_spectra(spectra, "spectra"))
    return _prepare_items(items, settings, rv, resolution, fwhm, medium)


def _prepare_items(items, settings, rv, resolution, fwhm, medium=None):
    """`prepare` of (label, Spectrum or SpectrumParts) items, one block of rows each, in order."""
    blocks = [
        _PartsBlock(label, spec)
        if isinstance(spec, SpectrumParts)
        else _block_from_spectrum(label, spec, resolution, fwhm, medium)
        for label, spec in items
    ]
    n = sum(b.nrows for b in blocks)
    npix = settings.wavelength.size
    if rv is not None:
        rv_all = _rv_array(rv, n)
    else:
        rv_all = (
            np.concatenate([np.full(b.nrows, b.rv if b.error is None else 0.0) for b in blocks])
            if blocks
            else np.zeros(0)
        )
    out = _empty_batch(n, npix, rv_source="none" if rv is None else "given")
    out.rv[:] = rv_all
    starts = np.cumsum([0] + [b.nrows for b in blocks])
    groups = {}
    stars = []
    for b, start in zip(blocks, starts[:-1], strict=True):
        if isinstance(b, _PartsBlock):
            stars.append((b, start))
            continue
        rows = slice(start, start + b.nrows)
        if rv is None:
            out.rv_source[rows] = b.rv_source
            out.rv_err[rows] = b.rv_err
        if b.medium_assumed:
            out.flags[rows] |= int(LabelFlag.MEDIUM_ASSUMED)
        if b.error is not None:
            rows = slice(start, start + b.nrows)
            out.flags[rows] |= int(b.error.flag)
            for i in range(start, start + b.nrows):
                out.messages[i] = str(b.error)
            continue
        groups.setdefault(b.key, []).append((b, start))
    for members in groups.values():
        first = members[0][0]
        index = np.concatenate([np.arange(s, s + b.nrows) for b, s in members])
        flux = np.concatenate([b.flux for b, _ in members]) if len(members) > 1 else first.flux
        ivar = None
        if first.ivar is not None:
            ivar = np.concatenate([b.ivar for b, _ in members]) if len(members) > 1 else first.ivar
        mask = None
        if any(b.mask is not None for b, _ in members):
            mask = np.concatenate(
                [b.mask if b.mask is not None else np.zeros(b.flux.shape, bool) for b, _ in members]
            )
        res = _prepare_core(
            first.wave,
            flux,
            ivar,
            mask,
            settings,
            medium=first.medium,
            resolution=first.resolution,
            fwhm=first.fwhm,
            rv=rv_all[index],
        )
        out.flux[index] = res.flux
        out.ivar[index] = res.ivar
        out.flags[index] |= res.flags
        out.snr[index] = res.snr
        out.rv[index] = res.rv
        labels = [
            b.label if b.nrows == 1 else f"{b.label}[row {r}]"
            for b, _ in members
            for r in range(b.nrows)
        ]
        for j, i in enumerate(index):
            if res.messages[j]:
                out.messages[i] = f"{labels[j]}: {res.messages[j]}"
    if stars:
        rv_stars = None if rv is None else rv_all
        _prepare_stars(stars, out, settings, rv_stars, resolution, fwhm, medium)
    fatal_rows = (out.flags & int(FATAL)) != 0
    out.flux[fatal_rows] = 0.0
    out.ivar[fatal_rows] = 0.0
    return out


def _part_coverage(settings, spec, rv):
    """Boolean (npix,): grid pixels inside the wavelength range of ``spec`` at ``rv`` [km/s].

    The test of `prepare`'s overlap fraction (`_GridMapper`): a grid pixel,
    mapped into the part's medium and frame, lies within the part's first and
    last pixel edges. A part whose axis cannot be read covers nothing.
    """
    try:
        wave = np.sort(_wave_angstrom(spec.spectral_axis, "spectral axis"))
    except u.UnitsError:
        return np.zeros(settings.wavelength.size, dtype=bool)
    meta = spec.meta if isinstance(spec.meta, dict) else {}
    medium = meta.get("medium", "vacuum")
    medium = medium.lower() if isinstance(medium, str) and medium.lower() in _MEDIA else "vacuum"
    edges_in = _edges_from_centers(wave)
    grid_edges = _edges_from_centers(settings.wavelength.to_value(u.AA))
    edges = _to_medium(grid_edges, settings.medium, medium)
    edges = edges * (1.0 + rv / C_KMS)
    return (edges[:-1] >= edges_in[0]) & (edges[1:] <= edges_in[-1])


def _prepare_stars(stars, out, settings, rv, resolution, fwhm, medium=None):
    """Fill the rows of ``out`` of the stars ``[(_PartsBlock, row), ...]`` in place.

    The parts of all the stars are prepared in one call (parts on one grid go
    through preparation together) with the coverage thresholds off, then each
    star's parts are combined (`stellarml.spectra.parts`). ``rv``: None (each
    part's own ``radial_velocity``) or the (n_rows,) velocities of ``out``'s rows.
    """
    relaxed = dataclasses.replace(settings, min_overlap_fraction=0.0, min_good_fraction=0.0)
    items = [
        (f"{block.label} part {k}", part)
        for block, _ in stars
        for k, part in enumerate(block.parts)
    ]
    counts = [len(block.parts) for block, _ in stars]
    rv_parts = None
    if rv is not None:
        rv_parts = np.repeat(np.asarray([rv[row] for _, row in stars], dtype=np.float64), counts)
    batch = _prepare_items(items, relaxed, rv_parts, resolution, fwhm, medium)
    npix = settings.wavelength.size
    start = 0
    for (block, row), count in zip(stars, counts, strict=True):
        rows = batch[start : start + count]
        start += count
        covered = np.zeros(npix, dtype=bool)
        for k, part in enumerate(block.parts):
            covered |= _part_coverage(settings, part, float(rows.rv[k]))
        one = _empty_batch(1, npix)
        _combine_parts(block.label, rows, covered, settings, one, MAX_MASKED_FRACTION)
        out.flux[row] = one.flux[0]
        out.ivar[row] = one.ivar[0]
        out.flags[row] = one.flags[0]
        out.snr[row] = one.snr[0]
        out.rv[row] = one.rv[0]
        out.messages[row] = one.messages[0]
        # the star's RV provenance: its parts' when they agree, else none known
        sources = set(rows.rv_source.tolist())
        out.rv_source[row] = sources.pop() if len(sources) == 1 else "none"
        errs = rows.rv_err[np.isfinite(rows.rv_err)]
        out.rv_err[row] = (
            float(np.median(errs)) if errs.size and out.rv_source[row] != "none" else np.nan
        )
