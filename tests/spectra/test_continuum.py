"""Tests of the pseudo-continuum normalisation."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from stellarml.spectra import log_lambda_grid, normalize_continuum

GRID = log_lambda_grid(4000.0, 6000.0, 2e-4)


def _lines(wave, rng, nlines=120, depth=(0.05, 0.6)):
    """Normalised absorption-line spectrum with Gaussian lines."""
    centres = rng.uniform(wave[0], wave[-1], nlines)
    depths = rng.uniform(*depth, nlines)
    norm = np.ones_like(wave)
    for c, d in zip(centres, depths, strict=True):
        norm *= 1 - d * np.exp(-0.5 * ((wave - c) / 0.8) ** 2)
    return norm


def test_recovers_smooth_continuum_of_line_spectrum():
    rng = np.random.default_rng(0)
    norm = _lines(GRID, rng)
    cont = 1e-16 * (1.0 + 0.5 * np.sin(GRID / 700.0) + (GRID / 5000.0) ** 2)
    nf, ni, c = normalize_continuum(GRID, norm * cont, None)
    clean = norm > 0.995  # continuum pixels
    inner = (GRID > 4100) & (GRID < 5900)
    # the clipped fit follows the upper envelope to a few tenths of a percent
    assert np.median(np.abs(nf[clean & inner] - 1)) < 0.005
    assert np.all(np.abs(c[inner] / cont[inner] - 1) < 0.03)
    np.testing.assert_allclose(ni, c**2, rtol=1e-6)  # unit weights * continuum**2
    # without clipping the lines drag the fit down
    nf0, _, _ = normalize_continuum(GRID, norm * cont, None, iterations=0)
    assert np.median(nf0[clean & inner]) > np.median(nf[clean & inner])


def test_noisy_spectra_scale_free_and_batched():
    rng = np.random.default_rng(1)
    norm = _lines(GRID, rng)
    cont = 2.0 + GRID / 3000.0
    snr = 100.0
    flux = norm * cont + rng.normal(0.0, 1.0, (3, GRID.size)) * cont / snr
    ivar = np.full_like(flux, 1.0) * (snr / cont) ** 2
    nf, ni, c = normalize_continuum(GRID, flux, ivar)
    inner = (GRID > 4100) & (GRID < 5900)
    assert np.all(np.abs(c[:, inner] / cont[inner] - 1) < 0.01)
    # norm_ivar = ivar * continuum**2, roughly snr**2 here
    np.testing.assert_allclose(ni, ivar * c**2)
    assert np.median(ni) == pytest.approx(snr**2, rel=0.05)
    # rows are independent of the batch they are in
    nf1, _, _ = normalize_continuum(GRID, flux[1], ivar[1])
    np.testing.assert_allclose(nf1, nf[1], rtol=1e-12)
    # the flux unit does not matter (float32 internals are rescaled)
    nfs, nis, cs = normalize_continuum(GRID, flux * 1e-17, ivar * 1e34)
    np.testing.assert_allclose(nfs, nf, rtol=1e-9)
    np.testing.assert_allclose(cs, c * 1e-17, rtol=1e-9)
    np.testing.assert_allclose(nis, ni, rtol=1e-9)


def test_without_clipping_it_is_weighted_gaussian_smoothing():
    rng = np.random.default_rng(2)
    flux = 1.0 + 0.2 * np.sin(GRID / 50.0) + 0.05 * rng.normal(size=GRID.size)
    ivar = rng.uniform(0.5, 2.0, GRID.size)
    width = 40.0
    _, _, c = normalize_continuum(GRID, flux, ivar, width=width, iterations=0)
    mid = GRID.size // 2
    sig_px = width / ((GRID[mid + 1] - GRID[mid - 1]) / 2)
    ref = gaussian_filter1d(ivar * flux, sig_px, mode="constant", truncate=5.0) / (
        gaussian_filter1d(ivar, sig_px, mode="constant", truncate=5.0)
    )
    np.testing.assert_allclose(c, ref, rtol=1e-3)  # block-decimated smoothing: < 0.1 %


def test_bad_pixels_gaps_and_negative_continuum():
    rng = np.random.default_rng(3)
    flux = np.tile(_lines(GRID, rng) * 3.0, (2, 1))
    ivar = np.ones_like(flux)
    ivar[0, 1000:1800] = 0.0  # a 800-pixel gap, many kernel widths
    flux[0, 1000:1800] = np.nan
    flux[1, 50] = np.inf
    flux[1, 60] = 1e6  # positive outlier with full weight: clipped
    nf, ni, c = normalize_continuum(GRID, flux, ivar)
    assert np.all(ni[0, 1000:1800] == 0) and np.all(nf[0, 1000:1800] == 0)
    assert c[0, 1400] == 0.0  # far from any data: undefined
    assert c[0, 1010] > 0  # near the edge of the gap: extrapolated
    assert ni[1, 50] == 0 and nf[1, 50] == 0
    assert abs(np.median(nf[1, 100:1000]) - 1) < 0.05
    assert np.all(np.isfinite(nf)) and np.all(np.isfinite(ni))
    neg = normalize_continuum(GRID, -np.ones(GRID.size), None)
    assert np.all(neg[1] == 0) and np.all(neg[2] == 0)


def test_parameter_validation():
    flux = np.ones(GRID.size)
    with pytest.raises(ValueError, match="width"):
        normalize_continuum(GRID, flux, None, width=0.0)
    with pytest.raises(ValueError, match="iterations"):
        normalize_continuum(GRID, flux, None, iterations=-1)
    with pytest.raises(ValueError, match="clip"):
        normalize_continuum(GRID, flux, None, clip=(0.0, 3.0))
    with pytest.raises(ValueError, match="pixels per spectrum"):
        normalize_continuum(GRID, flux[:-1], None)
    with pytest.raises(ValueError, match="ivar has shape"):
        normalize_continuum(GRID, flux, np.ones(3))
