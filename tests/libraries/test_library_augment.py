"""Tests of the array-level augmentation functions."""

import numpy as np
import pytest

from stellarml.libraries.augment import (
    add_noise,
    continuum_distortion,
    doppler_shift_flux,
    draw_snr,
)
from stellarml.spectra import C_KMS


def test_draw_snr_forms():
    assert np.array_equal(draw_snr(20, 3), [20.0, 20.0, 20.0])
    per = draw_snr([5, 10, 15], 3)
    assert np.array_equal(per, [5.0, 10.0, 15.0])
    drawn = draw_snr((10, 50), 1000, seed=3)
    assert drawn.min() >= 10 and drawn.max() <= 50
    assert 25 < drawn.mean() < 35
    assert np.array_equal(drawn, draw_snr((10, 50), 1000, seed=3))


@pytest.mark.parametrize(
    ("snr", "match"),
    [
        ((10, 5), "lo <= hi"),
        ((0, 5), "lo <= hi"),
        ((1, 2, 3), "tuple"),
        ([1, 2], "one value per spectrum"),
        (-3, "positive"),
        (np.nan, "positive"),
    ],
)
def test_draw_snr_rejects(snr, match):
    with pytest.raises(ValueError, match=match):
        draw_snr(snr, 3)


def test_add_noise_reaches_requested_snr():
    flux = np.full((50, 4000), 2.0, dtype=np.float32)
    noisy, ivar, snr = add_noise(flux, 25.0, seed=1)
    assert noisy.dtype == np.float32 and ivar.dtype == np.float32
    measured = np.median(flux, axis=1) / np.std(noisy - flux, axis=1)
    assert np.allclose(measured, 25.0, rtol=0.05)
    assert np.allclose(ivar, 1 / (2.0 / 25.0) ** 2, rtol=1e-6)
    assert np.array_equal(snr, np.full(50, 25.0))
    again, _, _ = add_noise(flux, 25.0, seed=1)
    assert np.array_equal(noisy, again)


def test_add_noise_per_spectrum_and_existing_ivar():
    flux = np.ones((3, 20000))
    noisy, ivar, _ = add_noise(flux, [10.0, 40.0, 100.0], seed=2)
    assert np.allclose(ivar[:, 0], [100.0, 1600.0, 10000.0])
    assert np.allclose(np.std(noisy - 1, axis=1), [0.1, 0.025, 0.01], rtol=0.03)
    old = np.full_like(flux, 100.0)  # sigma 0.1
    old[0, :5] = 0.0
    _, combined, _ = add_noise(flux, 10.0, ivar=old, seed=2)  # adds sigma 0.1
    assert np.allclose(combined[1], 1 / (0.01 + 0.01))
    assert np.all(combined[0, :5] == 0) and np.all(combined[0, 5:] > 0)


def test_add_noise_rejects_nonpositive_median():
    flux = np.ones((2, 10))
    flux[1] = -1.0
    with pytest.raises(ValueError, match="row 1"):
        add_noise(flux, 10.0)


def test_doppler_shift_moves_a_line_by_the_velocity():
    wave = np.exp(np.linspace(np.log(6400), np.log(6700), 3000))
    centre = 6562.8
    flux = 1 - 0.5 * np.exp(-0.5 * ((wave - centre) / 0.8) ** 2)
    rv = np.array([0.0, 100.0, -250.0])
    shifted, ivar = doppler_shift_flux(wave, np.tile(flux, (3, 1)), rv)
    assert ivar is None
    # Flux-weighted line centre of each shifted spectrum.
    depth = 1 - shifted
    centres = (depth * wave).sum(axis=1) / depth.sum(axis=1)
    assert np.allclose(centres, centre * (1 + rv / C_KMS), atol=0.01)


def test_doppler_shift_propagates_ivar_and_marks_edges():
    wave = np.linspace(5000, 5010, 101)
    flux = np.ones((2, 101))
    ivar = np.full((2, 101), 4.0)
    ivar[1, 50] = 0.0
    shifted, sivar = doppler_shift_flux(wave, flux, [30.0, 0.0], ivar=ivar)
    assert np.allclose(shifted, 1.0)
    source = wave / (1 + 30.0 / C_KMS)
    outside = source < wave[0]
    assert outside.sum() == 6 and np.all(sivar[0, outside] == 0)
    # Interpolating between two pixels averages noise: ivar = 4 / ((1-t)**2 + t**2) >= 4.
    t = np.interp(source[~outside], wave, np.arange(101)) % 1
    assert np.allclose(sivar[0, ~outside], 4 / ((1 - t) ** 2 + t**2))
    assert sivar[1, 50] == 0 and sivar[1, 49] == 4.0
    with pytest.raises(ValueError, match="speed of light"):
        doppler_shift_flux(wave, flux, [C_KMS, 0.0])


def test_continuum_distortion_is_smooth_positive_and_seeded():
    wave = np.linspace(4000, 7000, 2000)
    mult = continuum_distortion(wave, 200, 0.05, seed=4)
    assert mult.shape == (200, 2000) and np.all(mult > 0)
    # Degree-3 Legendre in log: the fourth differences vanish (up to curvature of exp).
    assert np.abs(np.diff(np.log(mult), 4, axis=1)).max() < 1e-9
    rms = np.std(np.log(mult), axis=1)
    assert 0.02 < np.median(rms) < 0.08
    assert np.array_equal(mult, continuum_distortion(wave, 200, 0.05, seed=4))
    assert np.array_equal(continuum_distortion(wave, 2, 0.0), np.ones((2, 2000)))
    with pytest.raises(ValueError, match="degree"):
        continuum_distortion(wave, 2, 0.1, degree=0)
