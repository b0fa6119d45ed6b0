"""Array-level augmentation of spectral libraries: noise, RV jitter, continuum distortion.

Noise comes from an S/N (`add_noise`) or from an error spectrum (`add_noise_from_error`,
e.g. a real instrument's, see `stellarml.spectra.error_from_spectrum`). `draw_vsini`
draws the rotation velocities of `stellarml.libraries.SpectralLibrary.broaden_rotation`.

All functions work on a batch: ``flux`` is a ``(n, npix)`` array sharing one
wavelength grid (Angstrom), and every operation is vectorised over the batch.
Random numbers come from a `numpy.random.Generator` built from ``seed`` (an int,
a Generator, or None for fresh entropy), so results are reproducible.

These are the building blocks of `stellarml.libraries.SpectralLibrary.add_noise`
and `stellarml.libraries.SpectralLibrary.augment`.
"""

import astropy.units as u
import numpy as np
from numpy.polynomial import legendre

from ..spectra import C_KMS, doppler_shift_wavelength

__all__ = [
    "VSINI_DISTRIBUTIONS",
    "add_noise",
    "add_noise_from_error",
    "continuum_distortion",
    "doppler_shift_flux",
    "draw_snr",
    "draw_vsini",
]

#: Distributions `draw_vsini` can draw a vsini range from.
VSINI_DISTRIBUTIONS = ("uniform", "log-uniform")


def _rng(seed):
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _batch(flux, name="flux"):
    flux = np.asarray(flux)
    if flux.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (n_spectra, n_pixels) array, got shape {flux.shape}"
        )
    if not np.issubdtype(flux.dtype, np.floating):
        flux = flux.astype(np.float64)
    return flux


def _per_spectrum(values, n, name):
    """``values`` as one float per spectrum ``(n,)`` (a scalar is repeated)."""
    if values.ndim == 0:
        return np.full(n, float(values))
    if values.shape != (n,):
        raise ValueError(
            f"{name} must be a number, a (lo, hi) tuple or one value per spectrum ({n}), "
            f"got shape {values.shape}"
        )
    return values


def draw_snr(snr, n, *, seed=None):
    """Turn an S/N specification into one S/N value per spectrum.

    Parameters
    ----------
    snr : float, tuple of two floats, or array-like of shape (n,)
        A number gives every spectrum that S/N. A *tuple* ``(lo, hi)`` draws
        each spectrum's S/N uniformly in ``[lo, hi]``. Any other sequence or
        array is taken as one S/N per spectrum (use a tuple only for a range).
        S/N is per pixel and must be positive and finite.
    n : int
        Number of spectra.
    seed : int, `numpy.random.Generator` or None
        Random seed (only used for a range).

    Returns
    -------
    snr : ndarray of shape (n,)
        S/N per spectrum (float64).

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.libraries.augment import draw_snr
    >>> draw_snr(50.0, 3)
    array([50., 50., 50.])
    >>> np.round(draw_snr((20.0, 100.0), 3, seed=1), 1)  # a range: drawn uniformly
    array([60.9, 96. , 31.5])
    """
    if isinstance(snr, tuple):
        if len(snr) != 2:
            raise ValueError(f"an S/N range must be a (lo, hi) tuple, got {snr!r}")
        lo, hi = (float(v) for v in snr)
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
            raise ValueError(f"S/N range must satisfy 0 < lo <= hi (finite), got ({lo}, {hi})")
        return _rng(seed).uniform(lo, hi, size=n)
    values = _per_spectrum(np.asarray(snr, dtype=float), n, "snr")
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError("snr values must be positive and finite")
    return values


def _kms_values(value, name):
    """Float64 array [km/s] from a number, sequence or velocity Quantity."""
    if isinstance(value, u.Quantity):
        try:
            return np.asarray(value.to_value(u.km / u.s), dtype=float)
        except u.UnitConversionError:
            raise u.UnitsError(f"{name} has unit {value.unit!s}; expected a velocity") from None
    return np.asarray(value, dtype=float)


def draw_vsini(vsini, n, *, distribution="uniform", seed=None):
    """Turn a vsini specification into one projected rotation velocity per spectrum.

    Parameters
    ----------
    vsini : float, tuple of two floats, array-like of shape (n,) or `~astropy.units.Quantity`
        A number gives every spectrum that vsini [km/s]. A *tuple*
        ``(lo, hi)`` draws each spectrum's vsini from ``distribution`` on
        ``[lo, hi]`` (its elements may be velocity Quantities). Any other
        sequence or array is one vsini per spectrum (use a tuple only for a
        range). Values must be finite and >= 0 km/s.
    n : int
        Number of spectra.
    distribution : {"uniform", "log-uniform"}
        How a range is drawn: uniform in vsini, or uniform in ln(vsini)
        (needs ``lo > 0``). Ignored for a number or per-spectrum values.
    seed : int, `numpy.random.Generator` or None
        Random seed (only used for a range).

    Returns
    -------
    vsini : ndarray of shape (n,)
        Projected rotation velocity per spectrum [km/s] (float64).

    Raises
    ------
    ValueError
        For negative or non-finite values, a range with ``lo > hi`` (or
        ``lo = 0`` with ``"log-uniform"``), an unknown distribution, or a
        wrong number of values.

    Examples
    --------
    >>> import numpy as np
    >>> import astropy.units as u
    >>> from stellarml.libraries.augment import draw_vsini
    >>> np.round(draw_vsini((1.0, 100.0), 4, distribution="log-uniform", seed=0), 1)
    array([18.8,  3.5,  1.2,  1.1])
    >>> draw_vsini(3 * u.km / u.s, 2)
    array([3., 3.])
    >>> try:
    ...     draw_vsini(-5, 2)
    ... except ValueError as err:
    ...     print(err)
    vsini values must be finite and >= 0 km/s
    """
    if distribution not in VSINI_DISTRIBUTIONS:
        raise ValueError(
            f"vsini distribution must be one of {VSINI_DISTRIBUTIONS}, got {distribution!r}"
        )
    if isinstance(vsini, tuple):
        if len(vsini) != 2:
            raise ValueError(f"a vsini range must be a (lo, hi) tuple, got {vsini!r}")
        lo, hi = (float(_kms_values(v, "vsini")) for v in vsini)
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi):
            raise ValueError(
                f"vsini range must satisfy 0 <= lo <= hi (finite, km/s), got ({lo}, {hi})"
            )
        rng = _rng(seed)
        if distribution == "uniform":
            return rng.uniform(lo, hi, size=n)
        if lo <= 0:
            raise ValueError(f"a log-uniform vsini range needs lo > 0 km/s, got ({lo}, {hi})")
        return np.exp(rng.uniform(np.log(lo), np.log(hi), size=n))
    values = _per_spectrum(_kms_values(vsini, "vsini"), n, "vsini")
    if not np.all(np.isfinite(values) & (values >= 0)):
        raise ValueError("vsini values must be finite and >= 0 km/s")
    return values


def add_noise(flux, snr, *, ivar=None, seed=None):
    """Add Gaussian noise at a given signal-to-noise ratio per pixel.

    Each spectrum gets white Gaussian noise of constant standard deviation
    ``sigma = median(flux) / snr`` (the median over that spectrum's pixels), so
    the median S/N per pixel of the result is ``snr``.

    Parameters
    ----------
    flux : array-like of shape (n, npix)
        Noise-free (or already noisy) flux, any units.
    snr : float, (lo, hi) tuple or array-like of shape (n,)
        Target S/N per pixel; see `draw_snr`.
    ivar : array-like of shape (n, npix), optional
        Existing inverse variance of ``flux``. The new noise adds in
        quadrature: ``1/ivar_out = 1/ivar + sigma**2``; pixels with ``ivar == 0``
        stay at 0. Without it the output inverse variance is ``1/sigma**2``.
    seed : int, `numpy.random.Generator` or None
        Random seed.

    Returns
    -------
    noisy : ndarray of shape (n, npix)
        ``flux`` plus noise, same float dtype as ``flux``.
    ivar_out : ndarray of shape (n, npix)
        Inverse variance of ``noisy`` in ``flux`` units**-2, same dtype.
    snr : ndarray of shape (n,)
        The S/N applied to each spectrum (useful for a drawn range).

    Raises
    ------
    ValueError
        If a spectrum has a non-positive median flux (S/N is undefined), or
        on badly shaped input.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.libraries.augment import add_noise
    >>> noisy, ivar, snr = add_noise(np.ones((2, 1000)), 50.0, seed=0)
    >>> np.round(1 / noisy.std(axis=1)), float(ivar[0, 0]), snr  # measured S/N, 1/sigma**2
    (array([51., 49.]), 2500.0, array([50., 50.]))
    """
    flux = _batch(flux)
    rng = _rng(seed)
    snr_values = draw_snr(snr, flux.shape[0], seed=rng)
    median = np.median(flux, axis=1)
    bad = ~(np.isfinite(median) & (median > 0))
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} spectra have a non-positive or non-finite median flux "
            f"(first at row {int(np.flatnonzero(bad)[0])}); S/N is undefined for them"
        )
    sigma = (median / snr_values).astype(flux.dtype)
    noisy = rng.standard_normal(flux.shape, dtype=flux.dtype)  # in place: one big array
    noisy *= sigma[:, None]
    noisy += flux
    var_new = (sigma**2)[:, None]
    if ivar is None:
        ivar_out = np.empty_like(noisy)
        ivar_out[:] = 1.0 / var_new
    else:
        ivar = np.asarray(ivar, dtype=flux.dtype)
        if ivar.shape != flux.shape:
            raise ValueError(f"ivar shape {ivar.shape} does not match flux shape {flux.shape}")
        good = ivar > 0
        with np.errstate(divide="ignore"):
            var = np.where(good, 1.0 / np.where(good, ivar, 1), np.inf) + var_new
        ivar_out = np.where(good, 1.0 / var, 0).astype(flux.dtype)
    return noisy, ivar_out, snr_values


def add_noise_from_error(flux, error, *, relative=False, ivar=None, seed=None):
    """Add Gaussian noise following an error spectrum.

    Pixel ``p`` of spectrum ``i`` gets noise of standard deviation
    ``sigma[i, p] = error[p]`` (or ``error[i, p]``), or with ``relative=True``
    ``error[p] * median(flux[i])``: the error spectrum is then in units of the
    median flux, as returned by `stellarml.spectra.error_from_spectrum` for a
    real observed spectrum, so every library spectrum gets that instrument's
    wavelength-dependent S/N profile. Pixels with an error of 0, inf or NaN
    carry no information (survey files mark bad pixels so): their flux is left
    unchanged and their inverse variance is 0.

    Parameters
    ----------
    flux : array-like of shape (n, npix)
        Flux, any units.
    error : array-like of shape (npix,) or (n, npix)
        Standard deviations (> 0; 0, inf or NaN = no information), in ``flux`` units,
        or relative to the median flux with ``relative=True``.
    relative : bool, optional
        Scale ``error`` by each spectrum's median flux (default False).
    ivar : array-like of shape (n, npix), optional
        Existing inverse variance; the new noise adds in quadrature and pixels
        with ``ivar == 0`` stay at 0.
    seed : int, `numpy.random.Generator` or None
        Random seed.

    Returns
    -------
    noisy : ndarray of shape (n, npix)
        Flux plus noise (dtype of ``flux``).
    ivar_out : ndarray of shape (n, npix)
        Inverse variance of ``noisy`` [flux units**-2], same dtype.

    Raises
    ------
    ValueError
        On shape mismatches, negative errors, or (``relative=True``) a spectrum
        with a non-positive median flux.

    Examples
    --------
    A relative error spectrum (10 % and 20 % of the median flux; 0 marks a bad
    pixel) applied to spectra of median flux 2:

    >>> import numpy as np
    >>> from stellarml.libraries.augment import add_noise_from_error
    >>> error = [0.1, 0.1, 0.0, 0.2, 0.1]
    >>> noisy, ivar = add_noise_from_error(np.full((2, 5), 2.0), error, relative=True, seed=0)
    >>> ivar[0]  # 1 / (0.1 * 2)**2, none for the bad pixel, 1 / (0.2 * 2)**2
    array([25.  , 25.  ,  0.  ,  6.25, 25.  ])
    >>> float(noisy[0, 2])  # its flux is left as it was
    2.0
    """
    flux = _batch(flux)
    error = np.asarray(error, dtype=np.float64)
    if error.shape not in (flux.shape, flux.shape[1:]):
        raise ValueError(
            f"error must have shape (npix,) = {flux.shape[1:]} or {flux.shape}, got {error.shape}"
        )
    if np.any(error < 0):
        raise ValueError("error spectrum values must be >= 0 (inf or NaN = no information)")
    usable = np.isfinite(error) & (error > 0)
    sigma = np.broadcast_to(np.where(usable, error, 0.0), flux.shape)
    if relative:
        median = np.median(flux, axis=1)
        bad = ~(np.isfinite(median) & (median > 0))
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} spectra have a non-positive or non-finite median flux "
                f"(first at row {int(np.flatnonzero(bad)[0])}); relative errors are undefined"
            )
        sigma = sigma * median[:, None]
    usable = np.broadcast_to(usable, flux.shape)
    rng = _rng(seed)
    noisy = (flux + rng.standard_normal(flux.shape) * sigma).astype(flux.dtype)
    with np.errstate(divide="ignore"):
        var = sigma**2
        if ivar is not None:
            ivar = np.asarray(ivar, dtype=np.float64)
            if ivar.shape != flux.shape:
                raise ValueError(f"ivar shape {ivar.shape} does not match flux shape {flux.shape}")
            good = ivar > 0
            var = var + np.where(good, 1.0 / np.where(good, ivar, 1.0), np.inf)
        ivar_out = np.where(usable & (var > 0) & np.isfinite(var), 1.0 / var, 0.0)
    return noisy, ivar_out.astype(flux.dtype)


def doppler_shift_flux(wavelength, flux, rv_kms, *, ivar=None):
    """Doppler-shift a batch of spectra on a fixed wavelength grid.

    The rest-frame spectrum ``f`` moves to ``f_obs(lam) = f(lam / (1 + v/c))``
    (the first-order formula of `stellarml.spectra.doppler_shift_wavelength`),
    evaluated by linear interpolation between the two neighbouring input
    pixels. The variance is propagated exactly for that interpolation,
    ``var = (1-t)**2 var_0 + t**2 var_1``, and a pixel whose source lies
    outside the grid takes the edge flux with inverse variance 0.

    Parameters
    ----------
    wavelength : array-like of shape (npix,)
        Strictly increasing wavelengths in Angstrom, shared by the batch.
    flux : array-like of shape (n, npix)
        Rest-frame flux.
    rv_kms : float or array-like of shape (n,)
        Radial velocity in km/s (positive = redshift).
    ivar : array-like of shape (n, npix), optional
        Inverse variance of ``flux``.

    Returns
    -------
    shifted : ndarray of shape (n, npix)
        Shifted flux (dtype of ``flux``).
    shifted_ivar : ndarray of shape (n, npix) or None
        Propagated inverse variance, or None without ``ivar``.

    Examples
    --------
    A line at 5005 Angstrom moved by 59.96 km/s (1 Angstrom):

    >>> import numpy as np
    >>> from stellarml.libraries.augment import doppler_shift_flux
    >>> wave = np.linspace(5000.0, 5010.0, 101)
    >>> line = 1 - 0.5 * np.exp(-0.5 * ((wave - 5005.0) / 0.2) ** 2)
    >>> shifted, _ = doppler_shift_flux(wave, line[None], 59.96)
    >>> round(float(wave[np.argmin(shifted[0])]), 1)
    5006.0
    """
    flux = _batch(flux)
    n, npix = flux.shape
    wave = np.asarray(wavelength, dtype=float)
    if wave.shape != (npix,):
        raise ValueError(f"wavelength shape {wave.shape} does not match flux pixels ({npix})")
    rv = np.broadcast_to(np.asarray(rv_kms, dtype=float), (n,))
    if not np.all(np.isfinite(rv)) or np.any(np.abs(rv) >= C_KMS):
        raise ValueError("rv_kms must be finite and below the speed of light")
    source = doppler_shift_wavelength(wave, rv)  # (n, npix): where each pixel comes from
    right = np.clip(np.searchsorted(wave, source), 1, npix - 1)
    left = right - 1
    t = (source - wave[left]) / (wave[right] - wave[left])
    outside = (t < 0) | (t > 1)
    t = np.clip(t, 0.0, 1.0).astype(flux.dtype)
    f0 = np.take_along_axis(flux, left, axis=1)
    f1 = np.take_along_axis(flux, right, axis=1)
    shifted = f0 + t * (f1 - f0)
    if ivar is None:
        return shifted, None
    ivar = np.asarray(ivar, dtype=flux.dtype)
    if ivar.shape != flux.shape:
        raise ValueError(f"ivar shape {ivar.shape} does not match flux shape {flux.shape}")
    i0 = np.take_along_axis(ivar, left, axis=1)
    i1 = np.take_along_axis(ivar, right, axis=1)
    w0 = 1.0 - t
    # A neighbour with weight 0 does not matter; one with weight > 0 and ivar 0 kills the pixel.
    dead = ((w0 > 0) & (i0 <= 0)) | ((t > 0) & (i1 <= 0)) | outside
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(w0 > 0, w0**2 / i0, 0) + np.where(t > 0, t**2 / i1, 0)
        shifted_ivar = np.where(dead, 0, 1.0 / var).astype(flux.dtype)
    return shifted, shifted_ivar


def continuum_distortion(wavelength, n, amplitude, *, degree=3, seed=None, dtype=np.float64):
    """Random smooth multiplicative continuum distortions.

    Each of the ``n`` multipliers is ``exp(sum_k c_k P_k(x))`` for Legendre
    polynomials ``P_k`` of degree ``k = 1 .. degree`` on ``x`` = wavelength mapped
    linearly to ``[-1, 1]``, with independent coefficients
    ``c_k ~ Normal(0, amplitude)``. The exponential keeps the multiplier
    positive; for small ``amplitude`` it is ``1 + sum_k c_k P_k(x)``, i.e. a
    fractional tilt/curvature of about ``amplitude`` per term. The constant
    term is left out: an overall scale is removed by continuum normalisation
    anyway.

    Parameters
    ----------
    wavelength : array-like of shape (npix,)
        Wavelengths (any unit; only their span matters).
    n : int
        Number of multipliers.
    amplitude : float
        Standard deviation of each Legendre coefficient (dimensionless, >= 0).
    degree : int, optional
        Highest Legendre degree (>= 1). Default 3.
    seed : int, `numpy.random.Generator` or None
        Random seed.
    dtype : numpy dtype, optional
        Output dtype.

    Returns
    -------
    multiplier : ndarray of shape (n, npix)
        Positive multiplicative factors.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.libraries.augment import continuum_distortion
    >>> wave = np.linspace(5000.0, 5010.0, 101)
    >>> m = continuum_distortion(wave, 2, 0.05, seed=0)
    >>> m.shape, bool((m > 0).all()), np.round(m[:, [0, -1]], 3)  # a few per cent at the ends
    ((2, 101), True, array([[0.956, 1.032],
           [0.951, 0.997]]))
    """
    wave = np.asarray(wavelength, dtype=float)
    if wave.ndim != 1 or wave.size < 2:
        raise ValueError(f"wavelength must be 1-D with >= 2 pixels, got shape {wave.shape}")
    if not (np.isfinite(amplitude) and amplitude >= 0):
        raise ValueError(f"amplitude must be finite and >= 0, got {amplitude}")
    if int(degree) != degree or degree < 1:
        raise ValueError(f"degree must be an integer >= 1, got {degree}")
    x = 2.0 * (wave - wave[0]) / (wave[-1] - wave[0]) - 1.0
    basis = legendre.legvander(x, int(degree))[:, 1:]  # (npix, degree)
    coeffs = _rng(seed).normal(0.0, float(amplitude), size=(int(n), int(degree)))
    return np.exp(coeffs @ basis.T).astype(dtype)
