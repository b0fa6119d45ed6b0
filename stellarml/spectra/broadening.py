"""Wavelength grids and Gaussian line-spread-function (LSF) degradation.

An LSF is described either by a resolving power ``R = lambda / FWHM``
(constant in ln lambda) or by a FWHM in Angstrom (constant in lambda); either
may also be an array giving its value per pixel. ``None`` for an input LSF
means "infinitely sharp".
"""

import numpy as np
from astropy import units as u

from .resample import (
    OPERATOR_CACHE,
    _apply_operator,
    _as_batch,
    _check_grid,
    _edges_from_centers,
    _good_pixels,
)

__all__ = ["FWHM_TO_SIGMA", "LSF_TOLERANCE", "gaussian_broaden", "log_lambda_grid"]

#: Gaussian sigma per unit FWHM, ``1 / (2 sqrt(2 ln 2))``.
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))

#: Relative amount [fraction of the target FWHM] by which an input LSF may be
#: broader than the target before `gaussian_broaden` refuses: such pixels are
#: left unbroadened. 1 % is well below how precisely spectrograph LSFs are known.
LSF_TOLERANCE = 0.01


def _value_in(value, unit, name):
    """Float (array) from a number, array or Quantity in ``unit``."""
    if isinstance(value, u.Quantity):
        try:
            value = value.to_value(unit)
        except u.UnitConversionError:
            raise u.UnitsError(
                f"{name} has unit {value.unit!s}; expected a quantity in {unit!s}"
            ) from None
    return np.asarray(value, dtype=np.float64)


def log_lambda_grid(wmin, wmax, dloglam):
    """Wavelength grid uniform in natural-log wavelength.

    Parameters
    ----------
    wmin, wmax : float or `~astropy.units.Quantity`
        First wavelength and upper limit [Angstrom]; the last pixel is the
        largest ``wmin * exp(k * dloglam)`` not above ``wmax``.
    dloglam : float
        Step in ``ln(lambda)`` (a velocity step of ``c * dloglam``).

    Returns
    -------
    numpy.ndarray
        Pixel centres [Angstrom].

    Examples
    --------
    >>> from stellarml.spectra import log_lambda_grid
    >>> grid = log_lambda_grid(3800.0, 7000.0, 3e-4)
    >>> print(grid.size, grid[0], round(float(grid[-1]), 3))
    2037 3800.0 6999.236
    """
    wmin = float(_value_in(wmin, u.AA, "wmin"))
    wmax = float(_value_in(wmax, u.AA, "wmax"))
    dloglam = float(dloglam)
    if not (np.isfinite(wmin) and np.isfinite(wmax) and wmin > 0 and wmax > wmin):
        raise ValueError(f"need 0 < wmin < wmax, got wmin={wmin}, wmax={wmax}")
    if not (np.isfinite(dloglam) and dloglam > 0):
        raise ValueError(f"dloglam must be positive, got {dloglam}")
    npix = int(np.floor(np.log(wmax / wmin) / dloglam + 1e-9)) + 1
    if npix < 2:
        raise ValueError(f"dloglam={dloglam} is too large for the range {wmin}-{wmax} Angstrom")
    return wmin * np.exp(dloglam * np.arange(npix))


def _lsf_sigma(wavelength, *, resolution=None, fwhm=None, name="LSF", allow_sharp=False):
    """Gaussian sigma [Angstrom] of an LSF at the given wavelengths.

    Parameters
    ----------
    wavelength : numpy.ndarray
        Wavelengths [Angstrom].
    resolution : float or array-like, optional
        Resolving power R (scalar, or one value per wavelength).
    fwhm : float, array-like or `~astropy.units.Quantity`, optional
        FWHM [Angstrom] (scalar, or one value per wavelength).
    name : str
        Used in error messages.
    allow_sharp : bool
        Accept ``R = inf`` and ``FWHM = 0`` (an infinitely sharp input).

    Returns
    -------
    numpy.ndarray
        Sigma [Angstrom], same shape as ``wavelength``; zeros when both are None.
    """
    if resolution is not None and fwhm is not None:
        raise ValueError(f"give either a resolution or a FWHM for the {name}, not both")
    if resolution is None and fwhm is None:
        return np.zeros_like(wavelength, dtype=np.float64)
    if resolution is not None:
        r = _value_in(resolution, u.dimensionless_unscaled, f"{name} resolution")
        ok = (r > 0) & (np.isfinite(r) | (allow_sharp & (r == np.inf)))
        if not np.all(ok):
            raise ValueError(f"{name} resolving power must be positive and finite")
        return np.broadcast_to(wavelength / r * FWHM_TO_SIGMA, np.shape(wavelength)).copy()
    f = _value_in(fwhm, u.AA, f"{name} FWHM")
    ok = np.isfinite(f) & ((f > 0) | (allow_sharp & (f == 0)))
    if not np.all(ok):
        raise ValueError(f"{name} FWHM must be positive and finite")
    return np.broadcast_to(f * FWHM_TO_SIGMA, np.shape(wavelength)).copy()


def _kernel_sigma(sigma_out, sigma_in, wavelength, *, strict=True):
    """Sigma of the Gaussian that degrades ``sigma_in`` to ``sigma_out`` [Angstrom].

    Where the input is broader than the target by more than `LSF_TOLERANCE`
    a `ValueError` naming both is raised (``strict=True``); otherwise (or
    within the tolerance) the kernel sigma there is 0.
    """
    too_broad = sigma_in > sigma_out * (1.0 + LSF_TOLERANCE)
    if strict and np.any(too_broad):
        k = int(np.flatnonzero(np.broadcast_to(too_broad, np.shape(wavelength)))[0])
        lam = float(np.broadcast_to(wavelength, np.shape(too_broad))[k])
        fin = float(np.broadcast_to(sigma_in, np.shape(too_broad))[k]) / FWHM_TO_SIGMA
        fout = float(np.broadcast_to(sigma_out, np.shape(too_broad))[k]) / FWHM_TO_SIGMA
        raise ValueError(
            f"the input LSF is broader than the target at {lam:.2f} Angstrom: input FWHM "
            f"{fin:.4g} Angstrom (R={lam / fin:.5g}) vs target FWHM {fout:.4g} Angstrom "
            f"(R={lam / fout:.5g}); a spectrum cannot be sharpened"
        )
    return np.sqrt(np.maximum(sigma_out**2 - sigma_in**2, 0.0))


def gaussian_broaden(
    wavelength,
    flux,
    *,
    resolution_out=None,
    resolution_in=None,
    fwhm_out=None,
    fwhm_in=None,
    ivar=None,
):
    """Degrade spectra to a broader Gaussian line-spread function.

    The flux is convolved with a Gaussian of
    ``sigma(lambda) = sqrt(sigma_out(lambda)**2 - sigma_in(lambda)**2)``,
    evaluated at every output pixel, so wavelength-dependent LSFs are exact on
    any grid (a sparse variable-width kernel; constant R on a log-lambda grid
    and constant FWHM on a linear grid are just special cases). The input is
    treated as piecewise constant over pixel bins, so each kernel weight is
    the Gaussian integrated over an input pixel (exact even for kernels
    narrower than a pixel; sigma 0 is the identity). Kernels are truncated at
    4 sigma and renormalised, also at the spectrum edges and around bad
    pixels (non-finite flux, ``ivar <= 0``), which get zero weight.

    Parameters
    ----------
    wavelength : array-like or `~astropy.units.Quantity`, shape (npix,)
        Pixel centres [Angstrom], strictly increasing.
    flux : array-like, shape (npix,) or (n, npix)
        Flux density, any unit.
    resolution_out, fwhm_out : float or array-like
        Target LSF as resolving power R, or FWHM [Angstrom] (exactly one).
    resolution_in, fwhm_in : float or array-like, optional
        Input LSF likewise; both None (or ``R = inf``, ``FWHM = 0``) means
        infinitely sharp.
    ivar : array-like, optional
        Inverse variance of ``flux`` [flux unit**-2]. When given, the output
        inverse variance is returned too: ``var_out = sum_i K_ji**2 var_i /
        (sum_i K_ji)**2``, the exact diagonal of the output covariance. It is
        an approximation in that the off-diagonal covariance the convolution
        creates between neighbouring pixels is dropped.

    Returns
    -------
    flux_out : numpy.ndarray
        Broadened flux, same shape. Pixels without enough good input are 0 if
        ``ivar`` was given, NaN otherwise.
    ivar_out : numpy.ndarray
        Only when ``ivar`` is given: their inverse variance (0 = no information).

    Raises
    ------
    ValueError
        If the input LSF is broader than the target by more than
        `LSF_TOLERANCE` anywhere (the message names both), if the target is
        missing or given twice, or for malformed grids and shapes.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.spectra import gaussian_broaden
    >>> wave = np.arange(5000.0, 5100.0, 0.1)
    >>> flux = np.ones_like(wave)
    >>> flux[500] = 0.0                            # a one-pixel line
    >>> out = gaussian_broaden(wave, flux, fwhm_out=1.0)
    >>> print(round(float(out[500]), 4), round(float(1 - out.mean()), 6))
    0.9063 0.001
    """
    if resolution_out is None and fwhm_out is None:
        raise ValueError("give the target LSF as resolution_out (R) or fwhm_out (Angstrom)")
    if isinstance(wavelength, u.Quantity):
        wavelength = wavelength.to_value(u.AA, equivalencies=u.spectral())
    wave = _check_grid(wavelength, "wavelength")
    flux2, ivar2, _, single = _as_batch(flux, ivar, None, wave.size)
    sigma_out = _lsf_sigma(wave, resolution=resolution_out, fwhm=fwhm_out, name="target LSF")
    sigma_in = _lsf_sigma(
        wave, resolution=resolution_in, fwhm=fwhm_in, name="input LSF", allow_sharp=True
    )
    sigma = _kernel_sigma(sigma_out, sigma_in, wave, strict=True)
    op = OPERATOR_CACHE.get(_edges_from_centers(wave), wave, wave, sigma)
    good, var = _good_pixels(flux2, ivar2, None)
    flux_out, ivar_out = _apply_operator(op, flux2, var, good)
    if ivar is None:
        flux_out = np.where(ivar_out > 0, flux_out, np.nan)
        return flux_out[0] if single else flux_out
    if single:
        return flux_out[0], ivar_out[0]
    return flux_out, ivar_out
