"""Tests of log-lambda grids and Gaussian LSF degradation."""

import astropy.units as u
import numpy as np
import pytest

from stellarml.spectra import gaussian_broaden, log_lambda_grid
from stellarml.spectra.broadening import FWHM_TO_SIGMA, LSF_TOLERANCE


def _moments(wave, depth):
    """Centre and sigma [Angstrom] of an absorption profile ``depth`` (n, npix)."""
    w = depth / depth.sum(axis=-1, keepdims=True)
    mu = (w * wave).sum(axis=-1)
    return mu, np.sqrt((w * (wave - mu[..., None]) ** 2).sum(axis=-1))


def test_log_lambda_grid():
    grid = log_lambda_grid(3800.0, 7000.0, 3e-4)
    assert grid[0] == 3800.0 and grid[-1] <= 7000.0
    assert grid[-1] * np.exp(3e-4) > 7000.0
    np.testing.assert_allclose(np.diff(np.log(grid)), 3e-4, rtol=1e-9)
    np.testing.assert_allclose(log_lambda_grid(380 * u.nm, 0.7 * u.micron, 3e-4), grid)
    for args in [(7000.0, 3800.0, 1e-4), (3800.0, 7000.0, 0.0), (-1.0, 10.0, 1e-4)]:
        with pytest.raises(ValueError):
            log_lambda_grid(*args)
    with pytest.raises(ValueError, match="too large"):
        log_lambda_grid(5000.0, 5001.0, 0.1)


def test_broaden_delta_lines_to_constant_resolution():
    wave = log_lambda_grid(5000.0, 5400.0, 2e-5)  # R_pixel = 50000
    flux = np.ones((2, wave.size))
    centers = [wave[np.argmin(np.abs(wave - c))] for c in (5100.0, 5300.0)]
    for c in centers:
        flux[:, wave == c] = 0.0
    flux[1] *= 3.0  # the operator is linear
    out = gaussian_broaden(wave, flux, resolution_out=2000.0)
    for c in centers:
        win = np.abs(wave - c) < 15
        mu, sig = _moments(wave[win], 1 - out[0, win])
        assert mu == pytest.approx(c, abs=1e-3)
        assert sig == pytest.approx(c / 2000.0 * FWHM_TO_SIGMA, rel=0.005)
    np.testing.assert_allclose(out[1], 3 * out[0], rtol=1e-12)
    # the equivalent width is conserved
    dl = np.gradient(wave)
    assert np.sum((1 - out[0]) * dl) == pytest.approx(np.sum((1 - flux[0]) * dl), rel=1e-4)


def test_broaden_from_input_resolution_and_fwhm():
    # Gaussian lines of an R=20000 spectrum degraded to R=5000 on a log grid
    wave = log_lambda_grid(6000.0, 6100.0, 5e-6)
    c = 6050.0
    sig_in = c / 20000 * FWHM_TO_SIGMA
    flux = 1 - 0.5 * np.exp(-0.5 * ((wave - c) / sig_in) ** 2)
    out = gaussian_broaden(wave, flux, resolution_in=20000, resolution_out=5000)
    _, sig = _moments(wave, 1 - out)
    assert sig == pytest.approx(c / 5000 * FWHM_TO_SIGMA, rel=0.005)
    # constant FWHM on a linear grid, input given as FWHM too (a Quantity is fine)
    lin = np.arange(6000.0, 6100.0, 0.02)
    flux = 1 - 0.5 * np.exp(-0.5 * ((lin - c) / (0.5 * FWHM_TO_SIGMA)) ** 2)
    out = gaussian_broaden(lin * u.AA, flux, fwhm_in=0.5 * u.AA, fwhm_out=2.0)
    _, sig = _moments(lin, 1 - out)
    assert sig == pytest.approx(2.0 * FWHM_TO_SIGMA, rel=0.005)
    # equal input and output LSF: the identity
    np.testing.assert_allclose(gaussian_broaden(lin, flux, fwhm_in=2.0, fwhm_out=2.0), flux)


def test_broaden_wavelength_dependent_lsf():
    wave = log_lambda_grid(5000.0, 5200.0, 4e-6)
    flux = np.ones(wave.size)
    idx = [np.argmin(np.abs(wave - c)) for c in (5050.0, 5150.0)]
    flux[idx] = 0.0
    fwhm = np.interp(wave, [5000.0, 5200.0], [1.0, 3.0])  # per-pixel FWHM
    out = gaussian_broaden(wave, flux, fwhm_out=fwhm)
    for i in idx:
        win = np.abs(wave - wave[i]) < 8
        _, sig = _moments(wave[win], 1 - out[win])
        assert sig == pytest.approx(fwhm[i] * FWHM_TO_SIGMA, rel=0.01)


def test_broaden_refuses_sharpening_with_tolerance():
    wave = np.arange(5000.0, 5100.0, 0.1)
    flux = np.ones_like(wave)
    with pytest.raises(ValueError, match=r"input FWHM 3 Angstrom .* target FWHM 2\.5"):
        gaussian_broaden(wave, flux, fwhm_in=3.0, fwhm_out=2.5)
    with pytest.raises(ValueError, match="broader than the target"):
        gaussian_broaden(wave, flux, resolution_in=1000, resolution_out=2000)
    # within the tolerance: accepted, left unbroadened there
    slightly = 2.5 * (1 + 0.5 * LSF_TOLERANCE)
    np.testing.assert_allclose(gaussian_broaden(wave, flux, fwhm_in=slightly, fwhm_out=2.5), flux)
    with pytest.raises(ValueError, match="target LSF"):
        gaussian_broaden(wave, flux)
    with pytest.raises(ValueError, match="not both"):
        gaussian_broaden(wave, flux, fwhm_out=1.0, resolution_out=100.0)
    with pytest.raises(ValueError, match="positive"):
        gaussian_broaden(wave, flux, fwhm_out=-1.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        gaussian_broaden(wave[::-1], flux, fwhm_out=1.0)


def test_broaden_ivar_propagation_matches_monte_carlo():
    rng = np.random.default_rng(0)
    wave = np.arange(5000.0, 5020.0, 0.05)
    sigma = np.linspace(0.05, 0.2, wave.size)  # heteroscedastic noise
    noise = rng.normal(0.0, 1.0, (4000, wave.size)) * sigma
    ivar = np.broadcast_to(sigma**-2, noise.shape)
    out, ivar_out = gaussian_broaden(wave, 1 + noise, fwhm_out=0.4, ivar=ivar)
    mc_var = out.var(axis=0)
    inner = slice(20, -20)
    np.testing.assert_allclose(mc_var[inner] * ivar_out[0, inner], 1.0, atol=0.1)
    assert np.mean(mc_var[inner] * ivar_out[0, inner]) == pytest.approx(1.0, abs=0.02)


def test_broaden_bad_pixels_are_zero_weighted():
    wave = np.arange(5000.0, 5010.0, 0.1)
    flux = np.ones((2, wave.size))
    ivar = np.ones_like(flux)
    flux[0, 40] = np.nan
    flux[1, 40] = 100.0
    ivar[1, 40] = 0.0  # a cosmic ray with zero weight
    out, iv = gaussian_broaden(wave, flux, fwhm_out=0.5, ivar=ivar)
    np.testing.assert_allclose(out, 1.0)
    assert np.all(iv[:, 40] > 0) and np.all(iv[:, 40] < iv[:, 10])
    # a wide gap: no information inside it
    flux2 = np.ones(wave.size)
    flux2[30:70] = np.nan
    out2 = gaussian_broaden(wave, flux2, fwhm_out=0.3)
    assert np.isnan(out2[50]) and out2[10] == pytest.approx(1.0)
    assert gaussian_broaden(wave, flux[1], fwhm_out=0.5).shape == wave.shape
