"""Radial velocities of specutils spectra, and preparation that measures the unknown ones.

`measure_rv` matches spectra against a small set of shipped synthetic templates
(`rv_templates`) with `~stellarml.spectra.estimate_rv`, after putting both through
the same preparation as any model input. `prepare_with_rv` is
`~stellarml.spectra.prepare` plus that measurement for the spectra whose radial
velocity is not known: what `stellarml.derive_labels` and the ``stellarml`` command
use. Nothing here depends on a label model or its method.
"""

import collections
import functools
from pathlib import Path

import numpy as np
from astropy import log
from astropy import units as u

from ..flags import FATAL, LabelFlag
from .broadening import log_lambda_grid
from .doppler import C_KMS, _as_angstrom, estimate_rv
from .prepare import PreparationSettings, _prepare_spectra, prepare_arrays, warn_assumptions

__all__ = [
    "MIN_LINE_SIGNIFICANCE",
    "RV_TEMPLATES_FILE",
    "MeasuredRV",
    "measure_rv",
    "prepare_with_rv",
    "rv_templates",
]


#: The template set of `measure_rv`, built by ``scripts/build_rv_templates.py``.
RV_TEMPLATES_FILE = Path(__file__).resolve().parents[1] / "data" / "rv-templates.npz"

_Templates = collections.namedtuple("RVTemplates", "wavelength flux labels resolution source")

#: How much better than a featureless continuum (flux 1) the best template must fit
#: for a measured velocity to be reliable: the chi2 drop in units of the best fit's
#: reduced chi2 (an F-like statistic, independent of how the noise is scaled).
MIN_LINE_SIGNIFICANCE = 25.0

#: Result of `measure_rv` (one value per row of each field).
MeasuredRV = collections.namedtuple("MeasuredRV", "rv rv_err template chi2 reliable messages")
MeasuredRV.__doc__ = """Radial velocities measured by `measure_rv`.

Attributes
----------
rv : numpy.ndarray, (n,) float
    Radial velocity [km/s] (``lambda_rest = lambda_obs / (1 + rv/c)``); NaN
    where unreliable.
rv_err : numpy.ndarray, (n,) float
    Its 1-sigma uncertainty [km/s] (NaN likewise).
template : numpy.ndarray, (n,) int
    Index of the best-matching template in `rv_templates` (-1 if none).
chi2 : numpy.ndarray, (n,) float
    Reduced chi2 of the best template at ``rv``.
reliable : numpy.ndarray, (n,) bool
    False where no velocity could be measured (see ``messages``).
messages : list of str
    Why a row is not reliable ("" where it is).

Examples
--------
A `measure_rv` result: the solar-like template redshifted by 50 km/s, and
the same star searched over too narrow a range:

>>> import astropy.units as u
>>> from specutils import Spectrum
>>> from stellarml.spectra import C_KMS, MeasuredRV, measure_rv, rv_templates
>>> t = rv_templates()
>>> keep = (t.wavelength > 4900) & (t.wavelength < 5500)
>>> star = Spectrum(
...     flux=t.flux[5, keep] * u.one,
...     spectral_axis=t.wavelength[keep] * (1 + 50 / C_KMS) * u.AA,
...     meta={"medium": "vacuum", "resolution": 5000.0},
... )
>>> result = measure_rv(star, wavelength_range=(4900, 5500))
>>> isinstance(result, MeasuredRV), result._fields
(True, ('rv', 'rv_err', 'template', 'chi2', 'reliable', 'messages'))
>>> print(f"{result.rv[0]:.0f} km/s", result.template, result.reliable)
50 km/s [5] [ True]
>>> narrow = measure_rv(star, wavelength_range=(4900, 5500), rv_range=(-40, 40))
>>> print(narrow.rv, narrow.reliable, narrow.messages[0])
[nan] [False] no chi2 minimum inside -40..40 km/s for any template
"""


@functools.cache
def rv_templates():
    """The rest-frame templates `measure_rv` matches spectra against.

    Nine synthetic spectra from the Doppler cool-star emulator (the synthetic
    library stellarml's default model is pre-trained on): Teff 3700-7800 K,
    log g 2.4-4.7, [Fe/H] -1.5 to 0, broadened to R = 5000, on a vacuum grid
    uniform in ln(lambda) with 20 km/s pixels over 3010-17990 Angstrom,
    continuum-normalised (the emulator's own normalisation). Built by
    ``scripts/build_rv_templates.py``.

    Returns
    -------
    templates : namedtuple
        ``wavelength`` (npix,) [Angstrom, vacuum], ``flux`` (9, npix),
        ``labels`` (9, 3) [K, dex, dex], ``resolution`` (R) and ``source``.
    """
    with np.load(RV_TEMPLATES_FILE, allow_pickle=False) as data:
        return _Templates(
            wavelength=np.asarray(data["wavelength"], dtype=np.float64),
            flux=np.asarray(data["flux"], dtype=np.float64),
            labels=np.asarray(data["labels"], dtype=np.float64),
            resolution=float(data["resolution"]),
            source=str(data["source"]),
        )


def measure_rv(
    spectra,
    *,
    wavelength_range=None,
    resolution=None,
    fwhm=None,
    medium=None,
    max_resolution=None,
    rv_range=(-600.0, 600.0),
):
    """Radial velocities of specutils spectra by chi2 matching against `rv_templates`.

    Each spectrum and each template go through the same preparation
    (`stellarml.spectra.prepare`: medium to vacuum, LSF degraded to a common
    resolving power, flux-conserving resampling onto a grid uniform in
    ln(lambda) over ``wavelength_range``, continuum normalisation), with the
    spectrum's radial velocity set to 0. `estimate_rv` then finds the
    velocity of every template; the template with the lowest reduced chi2
    gives the result. Nothing here depends on a label model.

    Parameters
    ----------
    spectra : Spectrum, SpectrumList, SpectrumCollection or (nested) list
        Anything `~stellarml.spectra.prepare` accepts; one result per row.
    wavelength_range : (float, float) or `~astropy.units.Quantity`, optional
        Window to measure in [Angstrom, vacuum]; default: the templates' full
        3010-17990 Angstrom (the input's coverage decides what is used).
    resolution, fwhm, medium : optional
        The input's LSF and medium, as in `~stellarml.spectra.prepare`
        (default: from each spectrum's ``meta``).
    max_resolution : float, optional
        Resolving power to degrade spectra and templates to when lower than
        the templates' (R = 5000); e.g. the model's resolution.
    rv_range : (float, float), optional
        Velocity search range [km/s].

    Returns
    -------
    MeasuredRV
        ``rv``, ``rv_err`` [km/s], ``template``, ``chi2``, ``reliable``,
        ``messages``, one per input row, in order.

    Examples
    --------
    >>> import astropy.units as u
    >>> from specutils import Spectrum
    >>> from stellarml.spectra import measure_rv, rv_templates
    >>> t = rv_templates()
    >>> keep = (t.wavelength > 4000) & (t.wavelength < 6500)
    >>> star = Spectrum(  # the solar-like template, redshifted by z = 1e-4
    ...     flux=t.flux[5, keep] * u.one,
    ...     spectral_axis=t.wavelength[keep] * 1.0001 * u.AA,
    ...     meta={"medium": "vacuum", "resolution": 5000.0},
    ... )
    >>> result = measure_rv(star)
    >>> print(f"{result.rv[0]:.0f} km/s")
    30 km/s
    """
    from ..flags import FATAL
    from .prepare import _prepare_spectra

    templates = rv_templates()
    r_common = templates.resolution
    if max_resolution is not None and 0 < float(max_resolution) < r_common:
        r_common = float(max_resolution)
    lo_t, hi_t = templates.wavelength[0], templates.wavelength[-1]
    if wavelength_range is None:
        lo, hi = lo_t, hi_t
    else:
        lo, hi = (float(v) for v in _as_angstrom(wavelength_range, "wavelength_range"))
    # room for the template to be shifted over the whole velocity range
    pad = 1.0 + max(abs(v) for v in rv_range) / C_KMS
    lo, hi = max(lo, lo_t * pad), min(hi, hi_t / pad)
    if not hi > lo:
        raise ValueError(
            f"wavelength_range {wavelength_range} does not overlap the RV templates "
            f"({lo_t:.0f}-{hi_t:.0f} Angstrom)"
        )
    # five pixels per resolution element, never finer than the templates' pixels
    dln = max(1.0 / (5.0 * r_common), float(np.mean(np.diff(np.log(templates.wavelength)))))
    grid = log_lambda_grid(lo, hi, dln)
    settings = PreparationSettings(
        wavelength=grid * u.AA,
        medium="vacuum",
        resolution=r_common,
        min_good_fraction=0.2,
        min_overlap_fraction=0.2,
    )
    tmpl = prepare_arrays(
        templates.wavelength,
        templates.flux,
        None,
        settings,
        medium="vacuum",
        resolution=templates.resolution,
    )
    batch = _prepare_spectra(
        spectra, settings, rv=0.0, resolution=resolution, fwhm=fwhm, medium=medium
    )
    n = len(batch)
    best = np.full(n, np.inf)
    out_rv, out_err = np.full(n, np.nan), np.full(n, np.nan)
    which = np.full(n, -1, dtype=np.int64)
    live = (np.asarray(batch.flags) & int(FATAL)) == 0
    if live.any():
        flux, ivar = batch.flux[live], batch.ivar[live]
        for k in range(tmpl.flux.shape[0]):
            t = np.where(tmpl.ivar[k] > 0, tmpl.flux[k], np.nan)
            rv_k, err_k, chi2_k = estimate_rv(
                flux, ivar, grid, t, rv_range=rv_range, return_chi2=True
            )
            chi2_k = np.where(np.isfinite(chi2_k), chi2_k, np.inf)
            better = chi2_k < best[live]
            idx = np.flatnonzero(live)[better]
            best[idx] = chi2_k[better]
            out_rv[idx], out_err[idx], which[idx] = rv_k[better], err_k[better], k
    found = np.isfinite(out_rv) & np.isfinite(out_err)
    # A velocity needs lines: the best template must fit clearly better than a
    # featureless continuum (noise alone always has some chi2 minimum).
    gain = np.full(n, np.nan)
    if found.any():
        idx = np.flatnonzero(found)
        w = np.where(batch.ivar[idx] > 0, batch.ivar[idx], 0.0)
        dof = np.maximum(np.count_nonzero(w, axis=1) - 1, 1)
        chi2_flat = np.sum(w * np.where(w > 0, batch.flux[idx] - 1.0, 0.0) ** 2, axis=1)
        gain[idx] = (chi2_flat - best[idx] * dof) / np.maximum(best[idx], 1e-300)
    reliable = found & (gain >= MIN_LINE_SIGNIFICANCE)
    messages = [""] * n
    for i in np.flatnonzero(~reliable):
        if not live[i]:
            messages[i] = batch.messages[i]
        elif not found[i]:
            messages[i] = (
                f"no chi2 minimum inside {rv_range[0]:g}..{rv_range[1]:g} km/s for any template"
            )
        else:
            messages[i] = (
                "the best template fits no better than a featureless continuum "
                f"(chi2 gain {gain[i]:.3g} < {MIN_LINE_SIGNIFICANCE:g} times the residual "
                "variance): no lines to measure a velocity from"
            )
    return MeasuredRV(
        rv=np.where(reliable, out_rv, np.nan),
        rv_err=np.where(reliable, out_err, np.nan),
        template=which,
        chi2=np.where(np.isfinite(best), best, np.nan),
        reliable=reliable,
        messages=messages,
    )


def prepare_with_rv(spectra, settings, *, rv=None, resolution=None, fwhm=None, medium=None):
    """`~stellarml.spectra.prepare`, measuring the radial velocities that are not known.

    Rows whose spectrum has neither ``radial_velocity`` nor ``redshift`` (and
    no ``rv`` argument) are measured with `measure_rv` over the grid's range
    (degraded to at most ``settings.resolution``) and prepared at that
    velocity: ``rv_source`` "estimated", ``rv_err`` its uncertainty. Where
    the measurement fails, a row stays at rv 0 (``rv_source`` "none") and gets
    ``RV_UNRELIABLE``. What was assumed is logged once per call, as by
    `~stellarml.spectra.prepare`.

    Parameters
    ----------
    spectra, settings, rv, resolution, fwhm, medium
        As for `~stellarml.spectra.prepare` (``rv`` [km/s]).

    Returns
    -------
    `~stellarml.spectra.PreparedBatch`
        With ``rv`` and ``rv_err`` [km/s] and ``rv_source`` per row.

    Raises
    ------
    TypeError, ValueError
        As `~stellarml.spectra.prepare`.

    Examples
    --------
    A spectrum without ``radial_velocity`` or ``redshift`` (the solar-like RV
    template, redshifted by 50 km/s and without uncertainties):

    >>> import numpy as np
    >>> import astropy.units as u
    >>> from specutils import Spectrum
    >>> from stellarml.spectra import (
    ...     C_KMS, PreparationSettings, log_lambda_grid, prepare, prepare_with_rv, rv_templates
    ... )
    >>> t = rv_templates()
    >>> keep = (t.wavelength > 4900) & (t.wavelength < 5500)
    >>> star = Spectrum(
    ...     flux=t.flux[5, keep] * u.one,
    ...     spectral_axis=t.wavelength[keep] * (1 + 50 / C_KMS) * u.AA,
    ...     meta={"medium": "vacuum", "resolution": 5000.0},
    ... )
    >>> settings = PreparationSettings(log_lambda_grid(5000.0, 5400.0, 1e-4), resolution=2000.0)
    >>> print(prepare(star, settings).rv_source)  # prepare leaves it at rv = 0
    ['none']
    >>> batch = prepare_with_rv(star, settings)
    >>> print(batch.rv_source, np.round(batch.rv), bool(batch.rv_err[0] < 1))  # [km/s]
    ['estimated'] [50.] True
    """
    batch = _prepare_spectra(
        spectra, settings, rv=rv, resolution=resolution, fwhm=fwhm, medium=medium
    )
    if rv is None:
        batch = _estimate_missing_rv(batch, spectra, settings, resolution, fwhm, medium)
    warn_assumptions(batch)
    return batch


def _estimate_missing_rv(batch, spectra, settings, resolution, fwhm, medium):
    """``batch`` with the rows without a radial velocity measured and prepared again."""
    need = (batch.rv_source == "none") & ((batch.flags & int(FATAL)) == 0)
    if not need.any():
        return batch
    grid = settings.wavelength.to_value(u.AA)
    measured = measure_rv(
        spectra,
        wavelength_range=(grid[0], grid[-1]),
        resolution=resolution,
        fwhm=fwhm,
        medium=medium,
        max_resolution=settings.resolution,
    )
    ok = need & measured.reliable
    out = batch
    if ok.any():
        rv = np.where(ok, measured.rv, batch.rv)
        out = _prepare_spectra(
            spectra, settings, rv=rv, resolution=resolution, fwhm=fwhm, medium=medium
        )
        out.rv_source = np.where(ok, "estimated", batch.rv_source)
        out.rv_err = np.where(ok, measured.rv_err, batch.rv_err)
    out.flags[need & ~measured.reliable] |= int(LabelFlag.RV_UNRELIABLE)
    n_est = int(np.count_nonzero(ok))
    if n_est:
        log.debug(f"stellarml: {n_est} of {len(out)} spectra had no radial velocity; estimated")
    return out
