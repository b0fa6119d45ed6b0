"""Doppler shifts, air/vacuum wavelength conversion and radial velocities.

All functions here work on plain float arrays of wavelengths in Angstrom (a
`~astropy.units.Quantity` is accepted too and converted), vectorised over
batches. `stellarml.spectra.measure_rv` (`stellarml.spectra.rv`) applies
`estimate_rv` to specutils spectra.
"""

import numpy as np
from astropy import units as u

__all__ = [
    "C_KMS",
    "air_to_vacuum",
    "doppler_shift_wavelength",
    "estimate_rv",
    "vacuum_to_air",
]

#: Speed of light in vacuum [km/s].
C_KMS = 299792.458

#: Below this wavelength [Angstrom] air wavelengths are not used (IAU convention):
#: the conversions leave such values unchanged.
_AIR_MIN_WAVELENGTH = 2000.0


def _as_angstrom(wavelength, name="wavelength"):
    """Plain float64 array of wavelengths in Angstrom (Quantity accepted)."""
    if isinstance(wavelength, u.Quantity):
        try:
            wavelength = wavelength.to_value(u.AA, equivalencies=u.spectral())
        except u.UnitConversionError:
            raise u.UnitsError(
                f"{name} has unit {wavelength.unit!s}, which cannot be converted to Angstrom"
            ) from None
    return np.asarray(wavelength, dtype=np.float64)


def _as_kms(velocity, name="rv"):
    """Plain float64 array of velocities in km/s (Quantity accepted)."""
    if isinstance(velocity, u.Quantity):
        try:
            velocity = velocity.to_value(u.km / u.s)
        except u.UnitConversionError:
            raise u.UnitsError(
                f"{name} has unit {velocity.unit!s}, which is not a velocity"
            ) from None
    return np.asarray(velocity, dtype=np.float64)


def doppler_shift_wavelength(wavelength, rv_kms, *, relativistic=False):
    """Shift observed wavelengths to the rest frame of a source moving at ``rv_kms``.

    The first-order (non-relativistic) Doppler formula is used by default,
    ``lambda_rest = lambda_obs / (1 + v / c)``, which is the convention of
    spectroscopic radial velocities and of specutils' ``radial_velocity``. The
    relativistic formula ``lambda_obs * sqrt((1 - v/c) / (1 + v/c))`` differs by
    ``v**2 / (2 c**2)``, i.e. 2e-6 at 600 km/s.

    Parameters
    ----------
    wavelength : array-like or `~astropy.units.Quantity`
        Observed wavelengths [Angstrom], any shape.
    rv_kms : float, array-like or `~astropy.units.Quantity`
        Radial velocity of the source [km/s], positive = receding. An array of
        shape ``(n,)`` with ``wavelength`` of shape ``(npix,)`` gives ``(n, npix)``.
    relativistic : bool, optional
        Use the special-relativistic formula instead of the first-order one.

    Returns
    -------
    numpy.ndarray or `~astropy.units.Quantity`
        Rest-frame wavelengths, in the input's unit when a Quantity was given
        (else Angstrom).

    Examples
    --------
    >>> from stellarml.spectra import doppler_shift_wavelength
    >>> print(round(float(doppler_shift_wavelength(5000.0, 299.792458)), 6))
    4995.004995
    """
    unit = wavelength.unit if isinstance(wavelength, u.Quantity) else None
    wave = np.asarray(wavelength.value if unit is not None else wavelength, dtype=np.float64)
    rv = _as_kms(rv_kms)
    if rv.ndim == 1 and wave.ndim == 1 and rv.size != wave.size:
        rv = rv[:, None]
    beta = rv / C_KMS
    if np.any(np.abs(beta) >= 1):
        raise ValueError("radial velocity must be smaller than the speed of light")
    factor = np.sqrt((1.0 + beta) / (1.0 - beta)) if relativistic else 1.0 + beta
    rest = wave / factor
    return rest * unit if unit is not None else rest


def _refraction_index_vacuum(wavelength_vac):
    """Refractive index of standard air at vacuum wavelength [Angstrom] (Morton 2000, eq. 8)."""
    s2 = (1e4 / wavelength_vac) ** 2
    return 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)


def _refraction_index_air(wavelength_air):
    """Refractive index of standard air at air wavelength [Angstrom] (Piskunov's VALD inversion)."""
    s2 = (1e4 / wavelength_air) ** 2
    return (
        1.0
        + 8.336624212083e-5
        + 2.408926869968e-2 / (130.1065924522 - s2)
        + 1.599740894897e-4 / (38.92568793293 - s2)
    )


def vacuum_to_air(wavelength_aa):
    """Convert vacuum wavelengths to standard air (IAU convention, Morton 2000).

    Uses the refractive index of Morton (2000, ApJS 130, 403, eq. 8), which is
    based on Ciddor (1996) and is the formula adopted by the IAU and VALD:
    ``lambda_air = lambda_vac / n(lambda_vac)``. Wavelengths below 2000
    Angstrom are returned unchanged (air wavelengths are not used there).

    Parameters
    ----------
    wavelength_aa : array-like or `~astropy.units.Quantity`
        Vacuum wavelengths [Angstrom], any shape.

    Returns
    -------
    numpy.ndarray or float
        Air wavelengths [Angstrom], same shape (a float for scalar input).

    Examples
    --------
    >>> from stellarml.spectra import vacuum_to_air
    >>> print(round(float(vacuum_to_air(6564.614)), 3))  # H-alpha
    6562.801
    """
    wave = _as_angstrom(wavelength_aa)
    out = np.where(wave >= _AIR_MIN_WAVELENGTH, wave / _refraction_index_vacuum(wave), wave)
    return float(out) if out.ndim == 0 else out


def air_to_vacuum(wavelength_aa):
    """Convert standard-air wavelengths to vacuum (IAU convention, Morton 2000).

    ``lambda_vac = lambda_air * n(lambda_air)`` with the inversion of the
    Morton (2000) formula by N. Piskunov (as used by VALD3); it inverts
    `vacuum_to_air` to better than 1e-8 Angstrom over 2000-100000 Angstrom.
    Wavelengths below 2000 Angstrom are returned unchanged.

    Parameters
    ----------
    wavelength_aa : array-like or `~astropy.units.Quantity`
        Air wavelengths [Angstrom], any shape.

    Returns
    -------
    numpy.ndarray or float
        Vacuum wavelengths [Angstrom], same shape (a float for scalar input).

    Examples
    --------
    >>> from stellarml.spectra import air_to_vacuum
    >>> print(round(float(air_to_vacuum(6562.801)), 3))  # H-alpha
    6564.614
    """
    wave = _as_angstrom(wavelength_aa)
    out = np.where(wave >= _AIR_MIN_WAVELENGTH, wave * _refraction_index_air(wave), wave)
    return float(out) if out.ndim == 0 else out


def _shift_rows(template, shift):
    """Values of ``template`` (..., npix) at pixel positions ``i - shift`` (linear interpolation).

    Returns the shifted array and a boolean array telling where both neighbours
    exist (elsewhere the value is 0).
    """
    npix = template.shape[-1]
    pos = np.arange(npix) - shift
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    valid = (lo >= 0) & (lo + 1 <= npix - 1)
    # exact integer positions at the last pixel are valid too
    at_end = (lo == npix - 1) & (frac == 0.0)
    valid |= at_end
    lo_c = np.clip(lo, 0, npix - 1)
    hi_c = np.clip(lo + 1, 0, npix - 1)
    shifted = (1.0 - frac) * template[..., lo_c] + frac * template[..., hi_c]
    shifted = np.where(valid, shifted, 0.0)
    return shifted, valid


def estimate_rv(
    flux,
    ivar,
    loglam_grid_wavelength,
    template,
    rv_range=(-600, 600),
    step=None,
    *,
    return_chi2=False,
):
    """Radial velocities of a batch of spectra by chi-square template matching.

    The spectra and the template are on the same log-lambda uniform grid and
    continuum normalised. For each trial velocity ``v`` (from ``rv_range[0]``
    to ``rv_range[1]`` in steps of ``step``) the template is shifted to
    ``lambda * (1 + v/c)`` (linear interpolation in ln lambda) and

    ``chi2(v) = sum_i ivar_i (flux_i - template_v,i)**2``

    is computed over the pixels where both are defined, rescaled to the total
    weight of the spectrum so that trial velocities with slightly different
    overlap compare fairly. The minimum is refined with a parabola through the
    lowest point and its two neighbours; the uncertainty is the
    ``Delta chi2 = 1`` half-width of that parabola scaled by the reduced chi2
    at the minimum (so that template mismatch and unit weights give sensible
    errors). This is the direct lag search equivalent of a cross-correlation,
    with proper inverse-variance weighting; the loop runs over trial
    velocities, never over spectra.

    Parameters
    ----------
    flux : array-like, shape (n, npix) or (npix,)
        Continuum-normalised flux.
    ivar : array-like or None, same shape as ``flux``
        Inverse variance; 0 (or non-finite) marks pixels to ignore. None means
        unit weights for every finite pixel.
    loglam_grid_wavelength : array-like or `~astropy.units.Quantity`, shape (npix,)
        The common wavelength grid [Angstrom], uniform in ln lambda.
    template : array-like, shape (npix,) or (n, npix)
        Continuum-normalised rest-frame template on the same grid (one for all
        spectra, or one per spectrum).
    rv_range : tuple of float, optional
        Velocity search range [km/s].
    step : float, optional
        Velocity step [km/s]; default: one pixel, ``c * dloglam``.
    return_chi2 : bool, optional
        Also return the reduced chi2 at the minimum (to compare templates).

    Returns
    -------
    rv_kms : numpy.ndarray, shape (n,) (or float for 1-D input)
        Radial velocities [km/s]; NaN where no minimum lies strictly inside
        ``rv_range`` or the spectrum has no usable pixels.
    rv_err_kms : numpy.ndarray, shape (n,) (or float)
        Their 1-sigma uncertainties [km/s] (NaN likewise).
    chi2_reduced : numpy.ndarray, shape (n,) (or float)
        Only with ``return_chi2``: chi2 per degree of freedom at the minimum
        (NaN likewise).

    Raises
    ------
    ValueError
        If the grid is not uniform in ln lambda, shapes disagree, or the range
        or step is invalid.

    Examples
    --------
    Three noisy copies of a two-line template, redshifted by -120, 0 and 42 km/s:

    >>> import numpy as np
    >>> from stellarml.spectra import doppler_shift_wavelength, estimate_rv, log_lambda_grid
    >>> wave = log_lambda_grid(5050.0, 5250.0, 5e-5)  # 15 km/s pixels
    >>> def lines(w):
    ...     return 1 - 0.6 * np.exp(-0.5 * ((w - 5100) / 0.4) ** 2) - 0.4 * np.exp(
    ...         -0.5 * ((w - 5200) / 0.4) ** 2
    ...     )
    >>> rng = np.random.default_rng(0)
    >>> rest = doppler_shift_wavelength(wave, [-120.0, 0.0, 42.0])  # (3, npix)
    >>> flux = lines(rest) + rng.normal(0, 0.01, rest.shape)
    >>> rv, rv_err = estimate_rv(flux, np.full(flux.shape, 1e4), wave, lines(wave),
    ...                          rv_range=(-300, 300))
    >>> print(np.round(rv).astype(int), bool(np.all(rv_err < 1)))  # [km/s]
    [-120    0   42] True
    """
    wave = _as_angstrom(loglam_grid_wavelength, "loglam_grid_wavelength")
    flux = np.asarray(flux, dtype=np.float64)
    single = flux.ndim == 1
    flux = np.atleast_2d(flux)
    if wave.ndim != 1 or wave.size < 3:
        raise ValueError("loglam_grid_wavelength must be a 1-D grid of at least 3 pixels")
    npix = wave.size
    if flux.ndim != 2 or flux.shape[1] != npix:
        raise ValueError(
            f"flux has shape {flux.shape}; expected (n, {npix}) to match the wavelength grid"
        )
    loglam = np.log(wave)
    dlog = np.diff(loglam)
    dloglam = float(np.mean(dlog))
    if not np.all(np.isfinite(dlog)) or dloglam <= 0 or np.ptp(dlog) > 1e-4 * dloglam:
        raise ValueError(
            "loglam_grid_wavelength must be strictly increasing and uniform in ln(lambda)"
        )
    if ivar is None:
        weight = np.isfinite(flux).astype(np.float64)
    else:
        ivar = np.atleast_2d(np.asarray(ivar, dtype=np.float64))
        if ivar.shape != flux.shape:
            raise ValueError(f"ivar has shape {ivar.shape}; expected {flux.shape}")
        weight = np.where(np.isfinite(ivar) & (ivar > 0) & np.isfinite(flux), ivar, 0.0)
    flux = np.where(weight > 0, flux, 0.0)
    template = np.asarray(template, dtype=np.float64)
    if template.shape not in ((npix,), flux.shape):
        raise ValueError(f"template has shape {template.shape}; expected ({npix},) or {flux.shape}")
    tmpl_ok = np.isfinite(template)
    template = np.where(tmpl_ok, template, 0.0)
    lo, hi = (float(v) for v in _as_kms(rv_range, "rv_range"))
    if not hi > lo:
        raise ValueError(f"rv_range must be increasing, got {rv_range}")
    step = C_KMS * dloglam if step is None else float(_as_kms(step, "step"))
    if not step > 0:
        raise ValueError(f"step must be positive, got {step}")
    velocities = lo + step * np.arange(int(np.floor((hi - lo) / step + 1e-9)) + 1)
    if velocities.size < 3:
        raise ValueError("rv_range must span at least three velocity steps")

    total_w = weight.sum(axis=1)
    shifts = np.log1p(velocities / C_KMS) / dloglam
    if template.ndim == 1:
        # One template for all spectra: the masks of the trial velocities do not
        # depend on the spectrum, so chi2(v) = sum w m_v (f - t_v)**2 expands into
        # matrix products over the pixels (one BLAS call each instead of a loop
        # over velocities of (n, npix) temporaries).
        shifted = np.empty((velocities.size, npix))
        use = np.empty((velocities.size, npix))
        for k, shift in enumerate(shifts):
            tv, valid = _shift_rows(template, shift)
            ok, _ = _shift_rows(tmpl_ok.astype(np.float64), shift)
            use[k] = valid & (ok > 0.999)
            shifted[k] = tv * use[k]
        wf = weight * flux
        chi2 = (weight * flux**2) @ use.T - 2.0 * (wf @ shifted.T) + weight @ (shifted**2).T
        npts = weight @ use.T
        chi2 = np.maximum(chi2, 0.0)  # rounding of the expansion
    else:
        chi2 = np.empty((flux.shape[0], velocities.size))
        npts = np.empty_like(chi2)
        for k, shift in enumerate(shifts):
            tv, valid = _shift_rows(template, shift)
            ok, _ = _shift_rows(tmpl_ok.astype(np.float64), shift)
            wv = weight * (valid & (ok > 0.999))
            chi2[:, k] = np.sum(wv * (flux - tv) ** 2, axis=1)
            npts[:, k] = wv.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = chi2 * (total_w[:, None] / npts)
    chi2 = np.where(npts > 0, chi2, np.inf)
    kmin = np.argmin(chi2, axis=1)
    rows = np.arange(flux.shape[0])
    inside = (kmin > 0) & (kmin < velocities.size - 1) & (total_w > 0)
    kc = np.clip(kmin, 1, velocities.size - 2)
    c_m, c_0, c_p = chi2[rows, kc - 1], chi2[rows, kc], chi2[rows, kc + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        curv = c_m - 2.0 * c_0 + c_p
        offset = 0.5 * (c_m - c_p) / curv
        chi2_min = c_0 - 0.25 * (c_m - c_p) * offset
        dof = np.maximum(np.count_nonzero(weight, axis=1) - 1, 1)
        red = np.maximum(chi2_min, 0.0) / dof
        err = step * np.sqrt(2.0 / curv * red)
    good = inside & np.isfinite(curv) & (curv > 0) & (np.abs(offset) <= 1)
    rv = np.where(good, velocities[kc] + offset * step, np.nan)
    err = np.where(good, err, np.nan)
    red = np.where(good, red, np.nan)
    if single:
        out = (float(rv[0]), float(err[0]), float(red[0]))
    else:
        out = (rv, err, red)
    return out if return_chi2 else out[:2]
