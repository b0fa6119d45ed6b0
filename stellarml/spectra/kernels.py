"""Physical broadening kernels, instrumental LSFs with variable R, and instrument masks.

Velocity broadening
-------------------
Rotation and macroturbulence broaden a spectrum by a convolution *in velocity*:
a surface element moving at line-of-sight velocity ``v`` contributes the rest
spectrum at ``lambda * exp(-v / c)``. On a grid uniform in ``ln(lambda)`` (the
grids of `~stellarml.spectra.log_lambda_grid`, of the model preparation and of
most survey products) one pixel is one fixed velocity step
``dv = c * d(ln lambda)``, so the broadening is an exact discrete convolution.
The input is treated as piecewise constant over pixel bins, as in
`~stellarml.spectra.gaussian_broaden`, and every kernel weight is the kernel
integrated analytically over a pixel, ``w_k = F((k + 1/2) dv) - F((k - 1/2) dv)``
with ``F`` the kernel's cumulative distribution: exact for kernels narrower
than a pixel, and the weights sum to 1 by construction. Batches with one
velocity per spectrum are convolved together with FFTs. On grids that are not
log-uniform the same weights are evaluated between every output pixel and the
input pixel edges (``v = c ln(edge / lambda_out)``), a sparse operator built
once per distinct velocity.

Kernels (Gray 2005, *The Observation and Analysis of Stellar Photospheres*,
3rd ed.):

* Rotation, `rotational_kernel` (Gray eq. 18.14), with linear limb darkening
  ``I(mu) = I_0 (1 - epsilon + epsilon mu)``::

      G(v) = [2 (1 - eps) sqrt(1 - x**2) + (pi eps / 2) (1 - x**2)]
             / [pi vsini (1 - eps / 3)],     x = v / vsini, |x| <= 1.

* Radial-tangential macroturbulence, `macroturbulence_kernel` (Gray eq. 17.6
  with equal radial and tangential fractions and ``zeta_R = zeta_T = zeta``).
  The disk integral has the closed form::

      M(v) = 2 / (sqrt(pi) zeta) * [exp(-a**2) - sqrt(pi) a erfc(a)],  a = |v| / zeta,

  derived from ``(2 / (sqrt(pi) zeta)) int_0^1 exp(-(a/u)**2) du``; it is
  cuspy at ``v = 0`` with exponential wings, and integrates to 1.

Edges and bad pixels (non-finite flux, ``ivar <= 0``) get zero weight and each
output pixel is renormalised over the weight that falls on good input, as in
`~stellarml.spectra.gaussian_broaden`; pixels with less than half the kernel
on good input are empty (flux 0 and ivar 0 when ``ivar`` is given, NaN
otherwise).

Instrument masks
----------------
`mask_from_spectrum` copies the pattern of bad pixels (mask, zero inverse
variance, non-finite flux) and wavelength gaps of a real observed spectrum onto
another wavelength grid by overlap, and `transfer_mask` does the same for a
plain pixel mask (e.g. the APOGEE pixel mask). `apply_mask` zeroes the inverse
variance there, so training spectra lose the same pixels as the survey's.
`error_from_spectrum` turns a real spectrum's uncertainties into an error
spectrum for `stellarml.libraries.augment.add_noise_from_error`.
"""

import numpy as np
import scipy.fft
import scipy.sparse as sp
from astropy import units as u
from scipy.special import erf, erfc

from .broadening import gaussian_broaden
from .doppler import C_KMS, air_to_vacuum, vacuum_to_air
from .resample import (
    MIN_COVERAGE,
    _as_batch,
    _check_grid,
    _edges_from_centers,
    _good_pixels,
    _ivar_from_uncertainty,
)

__all__ = [
    "DEFAULT_LIMB_DARKENING",
    "LOG_GRID_RTOL",
    "apply_mask",
    "error_from_spectrum",
    "instrumental_broaden",
    "macroturbulence_broaden",
    "macroturbulence_cdf",
    "macroturbulence_kernel",
    "mask_from_spectrum",
    "rotational_broaden",
    "rotational_cdf",
    "rotational_kernel",
    "transfer_mask",
]

#: Default linear limb-darkening coefficient epsilon (Gray 2005: ~0.6 for the Sun in the optical).
DEFAULT_LIMB_DARKENING = 0.6

#: A grid counts as uniform in ln(lambda) (FFT convolution path) when every
#: ``d ln(lambda)`` is within this fraction of their mean: 1e-3 of a pixel
#: tolerates wavelengths stored in float32 (LAMOST, SDSS).
LOG_GRID_RTOL = 1e-3

#: Macroturbulence kernels are truncated at this many zeta (the mass beyond is < 1e-9).
_MACRO_REACH = 4.5

#: Flux elements per FFT chunk (n_rows x padded length).
_FFT_CHUNK_ELEMENTS = 2**22


def _kms(value, name):
    """Float64 array of velocities in km/s from a number, array or Quantity."""
    if isinstance(value, u.Quantity):
        try:
            value = value.to_value(u.km / u.s)
        except u.UnitConversionError:
            raise u.UnitsError(f"{name} has unit {value.unit!s}; expected a velocity") from None
    return np.asarray(value, dtype=np.float64)


def _check_epsilon(epsilon):
    epsilon = float(epsilon)
    if not (np.isfinite(epsilon) and 0.0 <= epsilon <= 1.0):
        raise ValueError(f"limb-darkening coefficient epsilon must be in [0, 1], got {epsilon}")
    return epsilon


def _check_width(value, name, n=None):
    """Non-negative finite velocity widths, broadcast to (n,) when n is given."""
    value = _kms(value, name)
    if not np.all(np.isfinite(value) & (value >= 0)):
        raise ValueError(f"{name} must be finite and >= 0 km/s")
    if n is None:
        return value
    if value.ndim == 0:
        return np.full(n, float(value))
    if value.shape != (n,):
        raise ValueError(f"{name} must be one value or one per spectrum ({n}), got {value.shape}")
    return value


# ---------------------------------------------------------------------- kernels
def rotational_kernel(velocity, vsini, epsilon=DEFAULT_LIMB_DARKENING):
    """Rotational broadening profile of Gray (2005, eq. 18.14), per unit velocity.

    Parameters
    ----------
    velocity : float, array-like or `~astropy.units.Quantity`
        Line-of-sight velocity offsets [km/s].
    vsini : float or `~astropy.units.Quantity`
        Projected equatorial rotation velocity [km/s], > 0.
    epsilon : float, optional
        Linear limb-darkening coefficient in [0, 1].

    Returns
    -------
    numpy.ndarray
        Kernel values [(km/s)^-1], zero for ``|v| > vsini``; it integrates to 1.

    Raises
    ------
    ValueError
        If ``vsini`` is not positive and finite or ``epsilon`` is outside [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.spectra import rotational_kernel
    >>> v = np.linspace(-30.0, 30.0, 601)  # [km/s]
    >>> g = rotational_kernel(v, 20.0)
    >>> print(round(float(np.trapezoid(g, v)), 3))  # normalised
    1.0
    >>> print(np.round(rotational_kernel([0.0, 10.0, 25.0], 20.0), 4))  # [(km/s)^-1]
    [0.0347 0.0278 0.    ]
    """
    v = _kms(velocity, "velocity")
    vsini = float(_kms(vsini, "vsini"))
    if not (np.isfinite(vsini) and vsini > 0):
        raise ValueError(f"vsini must be positive and finite, got {vsini}")
    eps = _check_epsilon(epsilon)
    x2 = np.minimum((v / vsini) ** 2, 1.0)
    value = (2.0 * (1.0 - eps) * np.sqrt(1.0 - x2) + 0.5 * np.pi * eps * (1.0 - x2)) / (
        np.pi * vsini * (1.0 - eps / 3.0)
    )
    return np.where(np.abs(v) < vsini, value, 0.0)


def rotational_cdf(velocity, vsini, epsilon=DEFAULT_LIMB_DARKENING):
    """Cumulative distribution of `rotational_kernel`, ``int_{-inf}^{v} G(v') dv'``.

    Parameters
    ----------
    velocity : float or array-like
        Velocity [km/s]; broadcasts against ``vsini``.
    vsini : float or array-like
        Projected rotation velocity [km/s]; 0 gives the step function ``v > 0``.
    epsilon : float, optional
        Linear limb-darkening coefficient in [0, 1].

    Returns
    -------
    numpy.ndarray
        Values in [0, 1].
    """
    v = _kms(velocity, "velocity")
    vsini = _kms(vsini, "vsini")
    eps = _check_epsilon(epsilon)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.clip(np.abs(v) / vsini, 0.0, 1.0)
    x = np.where(vsini > 0, x, np.where(v == 0, 0.0, 1.0))
    half = (
        (1.0 - eps) * (x * np.sqrt(1.0 - x * x) + np.arcsin(x))
        + 0.5 * np.pi * eps * (x - x**3 / 3.0)
    ) / (np.pi * (1.0 - eps / 3.0))
    return 0.5 + np.sign(v) * half


def macroturbulence_kernel(velocity, vmacro):
    """Radial-tangential macroturbulence profile (Gray 2005), per unit velocity.

    Equal radial and tangential area fractions and velocity dispersions
    ``zeta_RT = vmacro``; the disk integral in closed form,
    ``M(v) = 2 / (sqrt(pi) zeta) [exp(-a^2) - sqrt(pi) a erfc(a)]``, ``a = |v| / zeta``.

    Parameters
    ----------
    velocity : float, array-like or `~astropy.units.Quantity`
        Velocity offsets [km/s].
    vmacro : float or `~astropy.units.Quantity`
        Macroturbulent velocity zeta_RT [km/s], > 0.

    Returns
    -------
    numpy.ndarray
        Kernel values [(km/s)^-1]; the kernel integrates to 1.

    Raises
    ------
    ValueError
        If ``vmacro`` is not positive and finite.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.spectra import macroturbulence_kernel
    >>> v = np.linspace(-100.0, 100.0, 4001)  # [km/s]
    >>> m = macroturbulence_kernel(v, 5.0)
    >>> print(round(float(np.trapezoid(m, v)), 3))  # normalised
    1.0
    >>> print(np.round(macroturbulence_kernel([0.0, 5.0, 15.0], 5.0), 4))  # cusp, wings
    [0.2257 0.0201 0.    ]
    """
    v = _kms(velocity, "velocity")
    zeta = float(_kms(vmacro, "vmacro"))
    if not (np.isfinite(zeta) and zeta > 0):
        raise ValueError(f"vmacro must be positive and finite, got {zeta}")
    a = np.abs(v) / zeta
    return 2.0 / (np.sqrt(np.pi) * zeta) * (np.exp(-a * a) - np.sqrt(np.pi) * a * erfc(a))


def macroturbulence_cdf(velocity, vmacro):
    """Cumulative distribution of `macroturbulence_kernel`.

    ``F(v) = 1/2 + sign(v) [erf(a) / 2 - a^2 erfc(a) + a exp(-a^2) / sqrt(pi)]``
    with ``a = |v| / vmacro``.

    Parameters
    ----------
    velocity : float or array-like
        Velocity [km/s]; broadcasts against ``vmacro``.
    vmacro : float or array-like
        Macroturbulent velocity [km/s]; 0 gives the step function.

    Returns
    -------
    numpy.ndarray
        Values in [0, 1].
    """
    v = _kms(velocity, "velocity")
    zeta = _kms(vmacro, "vmacro")
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.abs(v) / zeta
    a = np.where(zeta > 0, a, np.where(v == 0, 0.0, np.inf))
    a_fin = np.where(np.isfinite(a), a, 0.0)
    half = 0.5 * erf(a_fin) - a_fin**2 * erfc(a_fin) + a_fin * np.exp(-(a_fin**2)) / np.sqrt(np.pi)
    half = np.where(np.isfinite(a), half, 0.5)
    return 0.5 + np.sign(v) * half


# ---------------------------------------------------------------------- convolution engine
def _log_step(wave):
    """Mean d ln(lambda) if the grid is log-uniform within `LOG_GRID_RTOL`, else None."""
    dlog = np.diff(np.log(wave))
    mean = float(dlog.mean())
    if np.all(np.abs(dlog - mean) <= LOG_GRID_RTOL * mean):
        return mean
    return None


def _finish(num, den, vnum, has_ivar, dtype):
    """Renormalised flux and inverse variance from weighted sums (n, npix)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ok = (den >= MIN_COVERAGE) & np.isfinite(num)
        flux = np.where(ok, num / np.where(ok, den, 1.0), 0.0 if has_ivar else np.nan)
        if not has_ivar:
            return flux.astype(dtype, copy=False), None
        ivar = np.where(ok & (vnum > 0), den * den / np.where(vnum > 0, vnum, 1.0), 0.0)
        ivar = np.where(np.isfinite(ivar), ivar, 0.0)
    return flux.astype(dtype, copy=False), ivar.astype(dtype, copy=False)


def _fft_convolve(flux, good, var, params, cdf, reach, dv):
    """Per-row velocity convolution on a log-uniform grid (FFT).

    Returns (num, den, vnum): sums of weight*flux, weight, weight^2*var over good pixels.
    """
    npix = flux.shape[1]
    half = int(np.ceil(np.max(reach) / dv)) + 1
    k = np.arange(-half, half + 1, dtype=np.float64)
    weights = cdf((k + 0.5)[None, :] * dv, params[:, None]) - cdf(
        (k - 0.5)[None, :] * dv, params[:, None]
    )
    length = scipy.fft.next_fast_len(npix + 2 * half, real=True)
    kernel_ft = scipy.fft.rfft(weights, n=length, axis=1)

    def convolve(arr, kft):
        conv = scipy.fft.irfft(scipy.fft.rfft(arr, n=length, axis=1) * kft, length, axis=1)
        return conv[:, half : half + npix]

    num = convolve(np.where(good, flux, 0.0), kernel_ft)
    den = convolve(good.astype(np.float64), kernel_ft)
    vnum = None
    if var is not None:
        vnum = convolve(np.where(good, var, 0.0), scipy.fft.rfft(weights**2, n=length, axis=1))
    return num, den, vnum


def _sparse_operator(wave, param, cdf, reach):
    """Sparse (npix, npix) velocity-convolution operator on an arbitrary grid."""
    edges = _edges_from_centers(wave)
    npix = wave.size
    factor = np.exp(reach / C_KMS)
    start = np.clip(np.searchsorted(edges, wave / factor, side="right") - 1, 0, npix - 1)
    stop = np.clip(np.searchsorted(edges, wave * factor, side="left"), 1, npix)
    width = int((stop - start).max())
    offsets = np.arange(width + 1)
    idx = np.minimum(start[:, None] + offsets, npix)  # edge indices
    vel = C_KMS * np.log(edges[idx] / wave[:, None])
    cum = cdf(vel, param)
    w = cum[:, 1:] - cum[:, :-1]
    cols = start[:, None] + offsets[:-1]
    keep = (cols < stop[:, None]) & (w > 1e-15)
    rows = np.broadcast_to(np.arange(npix)[:, None], keep.shape)[keep]
    return sp.csr_matrix((w[keep], (rows, cols[keep])), shape=(npix, npix))


def _velocity_broaden(wavelength, flux, params, ivar, cdf, reach_factor, name):
    if isinstance(wavelength, u.Quantity):
        wavelength = wavelength.to_value(u.AA, equivalencies=u.spectral())
    wave = _check_grid(wavelength, "wavelength")
    dtype = np.asarray(flux).dtype if np.asarray(flux).dtype.kind == "f" else np.float64
    flux2, ivar2, _, single = _as_batch(flux, ivar, None, wave.size)
    n = flux2.shape[0]
    params = _check_width(params, name, n)
    good, var = _good_pixels(flux2, ivar2, None)
    has_ivar = ivar is not None
    out_flux = np.empty(flux2.shape, dtype=dtype)
    out_ivar = np.empty(flux2.shape, dtype=dtype) if has_ivar else None
    still = params == 0
    if still.any():  # no broadening: keep the pixels, empty the bad ones
        rows = np.flatnonzero(still)
        f, i = _finish(
            np.where(good[rows], flux2[rows], 0.0),
            good[rows].astype(float),
            None if var is None else np.where(good[rows], var[rows], 0.0),
            has_ivar,
            dtype,
        )
        out_flux[rows] = f
        if has_ivar:
            out_ivar[rows] = i
    moving = np.flatnonzero(~still)
    if moving.size:
        step = _log_step(wave)
        reach = params * reach_factor
        if step is not None:
            dv = C_KMS * step
            half = int(np.ceil(reach[moving].max() / dv)) + 1
            rows_per = max(1, _FFT_CHUNK_ELEMENTS // (wave.size + 2 * half))
            for c0 in range(0, moving.size, rows_per):
                rows = moving[c0 : c0 + rows_per]
                num, den, vnum = _fft_convolve(
                    flux2[rows],
                    good[rows],
                    None if var is None else var[rows],
                    params[rows],
                    cdf,
                    reach[rows],
                    dv,
                )
                f, i = _finish(num, den, vnum, has_ivar, dtype)
                out_flux[rows] = f
                if has_ivar:
                    out_ivar[rows] = i
        else:
            for value in np.unique(params[moving]):
                rows = moving[params[moving] == value]
                op = _sparse_operator(wave, value, cdf, value * reach_factor)
                g = good[rows].astype(np.float64)
                num = np.asarray(op @ np.where(good[rows], flux2[rows], 0.0).T).T
                den = np.asarray(op @ g.T).T
                vnum = (
                    None
                    if var is None
                    else np.asarray(op.multiply(op) @ np.where(good[rows], var[rows], 0.0).T).T
                )
                f, i = _finish(num, den, vnum, has_ivar, dtype)
                out_flux[rows] = f
                if has_ivar:
                    out_ivar[rows] = i
    if not has_ivar:
        return out_flux[0] if single else out_flux
    return (out_flux[0], out_ivar[0]) if single else (out_flux, out_ivar)


def rotational_broaden(wavelength, flux, vsini, *, epsilon=DEFAULT_LIMB_DARKENING, ivar=None):
    """Broaden spectra by stellar rotation (Gray 2005 kernel, linear limb darkening).

    Parameters
    ----------
    wavelength : array-like or `~astropy.units.Quantity`, shape (npix,)
        Strictly increasing wavelengths [Angstrom]. Exact (FFT) convolution in
        velocity when uniform in ln(lambda); a sparse operator per distinct
        ``vsini`` otherwise.
    flux : array-like, shape (npix,) or (n, npix)
        Flux, any unit.
    vsini : float, array-like of shape (n,) or `~astropy.units.Quantity`
        Projected rotation velocity [km/s] (>= 0; 0 leaves a spectrum as it is),
        one for all spectra or one per spectrum.
    epsilon : float, optional
        Linear limb-darkening coefficient in [0, 1] (default 0.6).
    ivar : array-like, optional
        Inverse variance of ``flux``; when given the propagated inverse variance
        (diagonal of the output covariance) is returned too.

    Returns
    -------
    flux_out : numpy.ndarray
        Broadened flux, same shape and float dtype (float64 for integer input).
    ivar_out : numpy.ndarray
        Only when ``ivar`` is given.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.spectra import log_lambda_grid, rotational_broaden
    >>> wave = log_lambda_grid(5000.0, 5100.0, 1e-5)      # 3 km/s pixels
    >>> flux = 1 - 0.5 * np.exp(-0.5 * ((wave - 5050) / 0.05) ** 2)
    >>> out = rotational_broaden(wave, flux, 30.0)
    >>> print(round(float(flux.min()), 3), round(float(out.min()), 3))
    0.5 0.915
    """
    eps = _check_epsilon(epsilon)

    def cdf(v, p):
        return rotational_cdf(v, p, eps)

    return _velocity_broaden(wavelength, flux, vsini, ivar, cdf, 1.0, "vsini")


def macroturbulence_broaden(wavelength, flux, vmacro, *, ivar=None):
    """Broaden spectra by radial-tangential macroturbulence (Gray 2005).

    Parameters
    ----------
    wavelength : array-like or `~astropy.units.Quantity`, shape (npix,)
        Strictly increasing wavelengths [Angstrom].
    flux : array-like, shape (npix,) or (n, npix)
        Flux, any unit.
    vmacro : float, array-like of shape (n,) or `~astropy.units.Quantity`
        Macroturbulent velocity zeta_RT [km/s] (>= 0), one or one per spectrum.
    ivar : array-like, optional
        Inverse variance of ``flux`` [flux unit**-2]; the propagated one is returned too.

    Returns
    -------
    flux_out : numpy.ndarray
        Broadened flux, same shape and float dtype (float64 for integer input).
    ivar_out : numpy.ndarray
        Only when ``ivar`` is given.

    Raises
    ------
    ValueError
        If ``vmacro`` is negative or non-finite, or has neither one value nor one
        per spectrum, or the grid is not strictly increasing.

    Examples
    --------
    One line, left as it is (``vmacro=0``) and broadened by 10 km/s:

    >>> import numpy as np
    >>> from stellarml.spectra import log_lambda_grid, macroturbulence_broaden
    >>> wave = log_lambda_grid(5040.0, 5060.0, 1e-5)  # 3 km/s pixels
    >>> flux = 1 - 0.5 * np.exp(-0.5 * ((wave - 5050) / 0.05) ** 2)
    >>> out = macroturbulence_broaden(wave, np.stack([flux, flux]), [0.0, 10.0])
    >>> print(out.shape, np.round(out.min(axis=1), 3))
    (2, 397) [0.512 0.727]
    """
    return _velocity_broaden(
        wavelength, flux, vmacro, ivar, macroturbulence_cdf, _MACRO_REACH, "vmacro"
    )


def _lsf_values(value, wave, name):
    """Evaluate a callable LSF description on the grid; pass other values through."""
    if value is None or not callable(value):
        return value
    result = value(wave)
    if isinstance(result, u.Quantity) and name.startswith("fwhm"):
        result = result.to_value(u.AA, equivalencies=u.spectral())
    result = np.asarray(result, dtype=np.float64)
    if result.ndim == 0:
        result = np.full(wave.shape, float(result))
    if result.shape != wave.shape:
        raise ValueError(
            f"{name}(wavelength) must return one value per pixel {wave.shape}, got {result.shape}"
        )
    return result


def instrumental_broaden(
    wavelength,
    flux,
    *,
    resolution=None,
    fwhm=None,
    resolution_in=None,
    fwhm_in=None,
    ivar=None,
):
    """Gaussian instrumental broadening with a constant or wavelength-dependent LSF.

    A thin front end to `~stellarml.spectra.gaussian_broaden`, which already
    convolves with a per-pixel Gaussian width (exact on any grid); this adds
    *callables*: ``resolution=lambda lam: 1800 * (lam / 6000)`` describes an
    instrument whose R grows with wavelength.

    Parameters
    ----------
    wavelength : array-like or `~astropy.units.Quantity`, shape (npix,)
        Strictly increasing wavelengths [Angstrom].
    flux : array-like, shape (npix,) or (n, npix)
        Flux, any unit.
    resolution : float, array-like of shape (npix,) or callable, optional
        Target resolving power R = lambda / FWHM; a callable gets the wavelengths
        [Angstrom] and returns R per pixel.
    fwhm : float, array-like, `~astropy.units.Quantity` or callable, optional
        Target FWHM [Angstrom] likewise. Give exactly one of ``resolution``, ``fwhm``.
    resolution_in, fwhm_in : same types, optional
        LSF of the input; None (or R = inf) means infinitely sharp.
    ivar : array-like, optional
        Inverse variance of ``flux`` [flux unit**-2]; the propagated one is returned too.

    Returns
    -------
    flux_out : numpy.ndarray
        Broadened flux, same shape as ``flux``.
    ivar_out : numpy.ndarray
        Only when ``ivar`` is given.

    Raises
    ------
    ValueError
        If the input LSF is broader than the target anywhere (a spectrum cannot
        be sharpened), or a callable returns the wrong shape.

    Examples
    --------
    >>> import numpy as np
    >>> import astropy.units as u
    >>> from stellarml.spectra import instrumental_broaden
    >>> wave = np.linspace(5000.0, 5100.0, 401)  # [Angstrom]
    >>> flux = 1 - 0.5 * np.exp(-0.5 * ((wave - 5050) / 0.05) ** 2)
    >>> print(round(float(instrumental_broaden(wave, flux, resolution=5000.0).min()), 3))
    0.885
    >>> out = instrumental_broaden(wave, flux, resolution=lambda lam: 5000.0 * lam / 5050.0)
    >>> print(round(float(out.min()), 3))  # R growing with wavelength, 5000 at the line
    0.885
    >>> out = instrumental_broaden(wave, flux, fwhm=1.0 * u.AA, resolution_in=20000.0)
    >>> print(round(float(out.min()), 3))
    0.88
    >>> try:
    ...     instrumental_broaden(wave, flux, resolution=20000.0, resolution_in=5000.0)
    ... except ValueError as err:
    ...     print(str(err)[:52])
    the input LSF is broader than the target at 5000.00
    """
    if isinstance(wavelength, u.Quantity):
        wavelength = wavelength.to_value(u.AA, equivalencies=u.spectral())
    wave = _check_grid(wavelength, "wavelength")
    return gaussian_broaden(
        wave,
        flux,
        resolution_out=_lsf_values(resolution, wave, "resolution"),
        fwhm_out=_lsf_values(fwhm, wave, "fwhm"),
        resolution_in=_lsf_values(resolution_in, wave, "resolution_in"),
        fwhm_in=_lsf_values(fwhm_in, wave, "fwhm_in"),
        ivar=ivar,
    )


# ---------------------------------------------------------------------- masks
def _source_edges(wave, gap_factor):
    """Pixel-bin edges of a source grid and a boolean per *gap* between pixels.

    A step ``d(ln lambda)`` more than ``gap_factor`` times the median of its
    neighbours (+-5 pixels) is a gap (e.g. between CCDs): the two pixels get
    bins as wide as their other neighbour's spacing and the space between is
    marked as a gap.
    """
    dlog = np.diff(np.log(wave))
    pad = np.pad(dlog, 5, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(pad, 11)
    local = np.median(windows, axis=1)
    gaps = dlog > gap_factor * local
    edges = _edges_from_centers(wave)
    lo_edges = edges.copy()
    hi_edges = edges.copy()
    # For a gap between pixels i and i+1 the upper edge of i and lower edge of i+1 are
    # pulled in to half a local pixel from their centres.
    where = np.flatnonzero(gaps)
    half = 0.5 * local[where]
    hi_edges[where + 1] = wave[where] * np.exp(half)  # upper edge of pixel i
    lo_edges[where + 1] = wave[where + 1] * np.exp(-half)  # lower edge of pixel i+1
    return lo_edges[:-1], hi_edges[1:], gaps


def transfer_mask(source_wavelength, source_mask, wavelength, *, outside=True, gap_factor=3.0):
    """Copy a pixel mask onto another wavelength grid by overlap.

    A target pixel is masked when its bin overlaps a masked source pixel bin,
    falls (partly) into a gap of the source grid, or, with ``outside=True``,
    reaches beyond the source's wavelength coverage.

    Parameters
    ----------
    source_wavelength : array-like or `~astropy.units.Quantity`, shape (m,)
        Strictly increasing source wavelengths [Angstrom], same medium as ``wavelength``.
    source_mask : array-like of bool, shape (m,)
        True where the source pixel is bad (telluric, bad column, gap...).
    wavelength : array-like or `~astropy.units.Quantity`, shape (npix,)
        Target wavelengths [Angstrom].
    outside : bool, optional
        Mask target pixels beyond the source coverage (default True).
    gap_factor : float, optional
        A source step in ln(lambda) larger than this many times the local median
        step is a gap (default 3).

    Returns
    -------
    numpy.ndarray of bool, shape (npix,)
        True = masked.

    Raises
    ------
    ValueError
        If ``source_mask`` does not match ``source_wavelength`` or a grid is not
        strictly increasing.

    Examples
    --------
    One bad 1 Angstrom source pixel at 5050 Angstrom masks the three 0.5 Angstrom
    target pixels it overlaps; target pixels beyond the source's range are masked too:

    >>> import numpy as np
    >>> from stellarml.spectra import transfer_mask
    >>> source = np.linspace(5000.0, 5100.0, 101)
    >>> bad = source == 5050.0
    >>> target = np.linspace(4990.0, 5110.0, 241)
    >>> masked = transfer_mask(source, bad, target)
    >>> print(target[masked & (target > 5000) & (target < 5100)])
    [5049.5 5050.  5050.5]
    >>> print(int(masked.sum()))  # 40 pixels outside 5000-5100 Angstrom, 3 bad
    43

    A gap in the source grid (between CCDs) is masked as well:

    >>> source = np.concatenate([np.arange(5000.0, 5040.0), np.arange(5060.0, 5100.0)])
    >>> target = np.arange(5000.0, 5100.0)
    >>> masked = transfer_mask(source, np.zeros(source.size, bool), target)
    >>> print(target[masked][[0, -1]])
    [5040. 5059.]
    """
    src = _check_grid(
        source_wavelength.to_value(u.AA, equivalencies=u.spectral())
        if isinstance(source_wavelength, u.Quantity)
        else source_wavelength,
        "source_wavelength",
    )
    smask = np.asarray(source_mask)
    if smask.shape != src.shape:
        raise ValueError(
            f"source_mask has shape {smask.shape}; expected {src.shape} like source_wavelength"
        )
    smask = smask.astype(bool)
    wave = _check_grid(
        wavelength.to_value(u.AA, equivalencies=u.spectral())
        if isinstance(wavelength, u.Quantity)
        else wavelength,
        "wavelength",
    )
    t_edges = _edges_from_centers(wave)
    a, b = t_edges[:-1], t_edges[1:]
    lo, hi, gaps = _source_edges(src, float(gap_factor))
    # bad intervals: masked source bins and gaps between source pixels
    bad_lo = np.concatenate([lo[smask], hi[:-1][gaps]])
    bad_hi = np.concatenate([hi[smask], lo[1:][gaps]])
    order = np.argsort(bad_lo)
    bad_lo, bad_hi = bad_lo[order], bad_hi[order]
    masked = np.zeros(wave.size, dtype=bool)
    if bad_lo.size:
        # intervals are disjoint and sorted; the first bad interval ending after a
        # target bin's start overlaps it if it also starts before the bin's end
        hi_sorted = np.maximum.accumulate(bad_hi)
        first = np.searchsorted(hi_sorted, a, side="right")
        has = first < bad_lo.size
        masked[has] = bad_lo[first[has]] < b[has]
    if outside:
        masked |= (a < lo[0]) | (b > hi[-1])
    return masked


def _spectrum_arrays(spectrum):
    """Wavelength [Angstrom], bad-pixel mask, flux and ivar of a 1-D Spectrum."""
    flux = np.asarray(spectrum.flux.value, dtype=np.float64)
    if flux.ndim != 1:
        raise ValueError(f"a 1-D spectrum is needed, got flux of shape {flux.shape}")
    wave = spectrum.spectral_axis.to_value(u.AA, equivalencies=u.spectral())
    ivar = None
    if spectrum.uncertainty is not None:
        ivar = _ivar_from_uncertainty(spectrum.uncertainty, spectrum.flux.unit)
    bad = ~np.isfinite(flux)
    if ivar is not None:
        bad |= ivar <= 0
    if spectrum.mask is not None:
        bad |= np.asarray(spectrum.mask).astype(bool)
    if wave[0] > wave[-1]:
        wave, bad, flux = wave[::-1], bad[::-1], flux[::-1]
        ivar = None if ivar is None else ivar[::-1]
    return wave, bad, flux, ivar


def _members(spectrum):
    from specutils import Spectrum, SpectrumList

    if isinstance(spectrum, Spectrum):
        return [spectrum]
    if isinstance(spectrum, SpectrumList | list | tuple) and all(
        isinstance(s, Spectrum) for s in spectrum
    ):
        if not spectrum:
            raise ValueError("an empty list of spectra has no mask")
        return list(spectrum)
    raise TypeError(f"expected a specutils Spectrum or SpectrumList, got {type(spectrum).__name__}")


def _to_medium(wave, from_medium, to_medium):
    for medium in (from_medium, to_medium):
        if medium not in ("air", "vacuum"):
            raise ValueError(f"medium must be 'air' or 'vacuum', got {medium!r}")
    if from_medium == to_medium:
        return wave
    return air_to_vacuum(wave) if to_medium == "vacuum" else vacuum_to_air(wave)


def mask_from_spectrum(spectrum, wavelength, *, medium="vacuum", outside=True, gap_factor=3.0):
    """The bad-pixel and gap pattern of a real observed spectrum, on another grid.

    Parameters
    ----------
    spectrum : `~specutils.Spectrum` or `~specutils.SpectrumList`
        A 1-D observed spectrum (e.g. a LAMOST file read with ``Spectrum.read``),
        or a list of them (echelle orders, CCDs: a target pixel is good when
        any member covers it with good pixels). Bad pixels are ``spectrum.mask``,
        zero or invalid uncertainties and non-finite flux; the medium of its
        wavelengths is ``spectrum.meta["medium"]`` (default "vacuum").
    wavelength : array-like or `~astropy.units.Quantity`, shape (npix,)
        Target wavelengths [Angstrom].
    medium : {"vacuum", "air"}, optional
        Medium of ``wavelength``; the spectrum's wavelengths are converted to it.
    outside : bool, optional
        Mask target pixels beyond the spectrum's coverage (default True).
    gap_factor : float, optional
        See `transfer_mask`.

    Returns
    -------
    numpy.ndarray of bool, shape (npix,)
        True = masked.

    Raises
    ------
    TypeError
        If ``spectrum`` is not a specutils spectrum or a list of them.
    ValueError
        If a spectrum is not 1-D, or a medium is neither "air" nor "vacuum".

    Examples
    --------
    >>> import numpy as np
    >>> import astropy.units as u
    >>> from astropy.nddata import StdDevUncertainty
    >>> from specutils import Spectrum
    >>> from stellarml.spectra import mask_from_spectrum, vacuum_to_air
    >>> wave = np.linspace(5000.0, 5100.0, 101)  # 1 Angstrom pixels, vacuum
    >>> observed = Spectrum(
    ...     flux=np.full(101, 2.0) * u.Jy,
    ...     spectral_axis=wave * u.AA,
    ...     uncertainty=StdDevUncertainty(np.full(101, 0.02) * u.Jy),
    ...     mask=wave == 5030.0,  # one bad pixel
    ...     meta={"medium": "vacuum"},
    ... )
    >>> grid = np.linspace(4990.0, 5090.0, 201)  # the training grid
    >>> masked = mask_from_spectrum(observed, grid)
    >>> print(int(masked.sum()), grid[masked & (grid > 5000)])  # 20 below 5000 Angstrom
    23 [5029.5 5030.  5030.5]
    >>> air = mask_from_spectrum(observed, vacuum_to_air(grid), medium="air")
    >>> bool(np.array_equal(air, masked))
    True
    """
    masks = []
    for member in _members(spectrum):
        wave, bad, _, _ = _spectrum_arrays(member)
        wave = _to_medium(wave, member.meta.get("medium", "vacuum"), medium)
        masks.append(transfer_mask(wave, bad, wavelength, outside=outside, gap_factor=gap_factor))
    return np.logical_and.reduce(masks)


def apply_mask(flux, ivar, mask, *, fill=None):
    """Give masked pixels zero inverse variance (and optionally a fill flux).

    Parameters
    ----------
    flux : array-like, shape (npix,) or (n, npix)
        Flux.
    ivar : array-like, same shape as ``flux``
        Inverse variance; required: a mask only means something for spectra
        with uncertainties (add noise first, e.g. with
        `stellarml.libraries.augment.add_noise`).
    mask : array-like of bool, shape (npix,) or like ``flux``
        True = masked (one mask for all spectra, or one per spectrum).
    fill : float, optional
        Flux value written into masked pixels (e.g. 0, as in survey gaps);
        default: flux left as it is.

    Returns
    -------
    flux_out, ivar_out : numpy.ndarray
        Copies with the mask applied (dtypes kept).

    Raises
    ------
    ValueError
        If ``ivar`` is None or its shape differs from ``flux``'s, or the mask
        has neither shape ``(npix,)`` nor ``flux``'s.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.spectra import apply_mask
    >>> mask = np.array([False, True, False, False, True])  # one mask for both spectra
    >>> flux, ivar = apply_mask(np.ones((2, 5)), np.full((2, 5), 100.0), mask, fill=0.0)
    >>> print(flux)
    [[1. 0. 1. 1. 0.]
     [1. 0. 1. 1. 0.]]
    >>> print(ivar[0])
    [100.   0. 100. 100.   0.]
    """
    if ivar is None:
        raise ValueError(
            "apply_mask needs ivar: masked pixels are marked by ivar = 0 (add noise first)"
        )
    flux = np.asarray(flux)
    ivar = np.asarray(ivar)
    if ivar.shape != flux.shape:
        raise ValueError(f"ivar shape {ivar.shape} does not match flux shape {flux.shape}")
    mask = np.asarray(mask).astype(bool)
    if mask.shape not in (flux.shape, flux.shape[-1:]):
        raise ValueError(
            f"mask shape {mask.shape} must be (npix,) = {flux.shape[-1:]} or {flux.shape}"
        )
    ivar_out = np.where(mask, 0, ivar).astype(ivar.dtype, copy=False)
    flux_out = flux.copy() if fill is None else np.where(mask, fill, flux).astype(flux.dtype)
    return flux_out, ivar_out


def error_from_spectrum(spectrum, wavelength, *, medium="vacuum"):
    """A real spectrum's error spectrum, relative to its median flux, on another grid.

    The result ``sigma(lambda) / median(flux)`` keeps the *shape* of the
    instrument's noise (throughput, sky lines, chip edges) and its overall S/N
    level; `stellarml.libraries.augment.add_noise_from_error` with
    ``relative=True`` multiplies it by each library spectrum's median flux.
    Values are interpolated linearly in wavelength; pixels the spectrum does
    not cover or where it has no information are ``inf`` (use with a mask).

    Parameters
    ----------
    spectrum : `~specutils.Spectrum`
        1-D observed spectrum with an uncertainty (any astropy uncertainty class
        convertible to a variance).
    wavelength : array-like or `~astropy.units.Quantity`, shape (npix,)
        Target wavelengths [Angstrom].
    medium : {"vacuum", "air"}, optional
        Medium of ``wavelength``.

    Returns
    -------
    numpy.ndarray, shape (npix,)
        Fractional error per pixel (dimensionless), ``inf`` where unknown.

    Raises
    ------
    ValueError
        If the spectrum has no uncertainty or no positive median flux.

    Examples
    --------
    A spectrum at flux 2 Jy whose error doubles from 0.02 to 0.04 Jy at 5060 Angstrom:

    >>> import numpy as np
    >>> import astropy.units as u
    >>> from astropy.nddata import StdDevUncertainty
    >>> from specutils import Spectrum
    >>> from stellarml.spectra import error_from_spectrum
    >>> wave = np.linspace(5000.0, 5100.0, 101)
    >>> sigma = np.where(wave < 5060, 0.02, 0.04)
    >>> observed = Spectrum(
    ...     flux=np.full(101, 2.0) * u.Jy,
    ...     spectral_axis=wave * u.AA,
    ...     uncertainty=StdDevUncertainty(sigma * u.Jy),
    ...     meta={"medium": "vacuum"},
    ... )
    >>> grid = np.arange(4990.0, 5100.0, 0.5)
    >>> error = error_from_spectrum(observed, grid)
    >>> print(grid[[0, 70, 170]], error[[0, 70, 170]])  # relative to the median flux
    [4990. 5025. 5075.] [ inf 0.01 0.02]

    ``inf`` marks pixels the spectrum does not cover (here below 5000 Angstrom).
    """
    (member,) = _members(spectrum)
    if member.uncertainty is None:
        raise ValueError("the spectrum has no uncertainty to take an error spectrum from")
    wave, bad, flux, ivar = _spectrum_arrays(member)
    wave = _to_medium(wave, member.meta.get("medium", "vacuum"), medium)
    median = float(np.median(flux[~bad])) if (~bad).any() else np.nan
    if not (np.isfinite(median) and median > 0):
        raise ValueError("the spectrum has no positive median flux over its good pixels")
    target = _check_grid(
        wavelength.to_value(u.AA, equivalencies=u.spectral())
        if isinstance(wavelength, u.Quantity)
        else wavelength,
        "wavelength",
    )
    good = ~bad
    sigma = 1.0 / np.sqrt(ivar[good]) / median
    # interpolate over good pixels only; empty wherever the transferred mask says so
    out = np.interp(target, wave[good], sigma)
    unusable = transfer_mask(wave, bad, target)
    return np.where(unusable, np.inf, out)
