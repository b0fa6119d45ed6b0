"""Rotational broadening of libraries: `SpectralLibrary.broaden_rotation` and `draw_vsini`."""

import astropy.units as u
import numpy as np
import pytest

from stellarml.libraries import SpectralLibrary
from stellarml.libraries.augment import draw_vsini
from stellarml.spectra import C_KMS, log_lambda_grid, rotational_broaden, rotational_kernel


def _lines(wave, centres, sigma, depth=0.5):
    """Continuum 1 with Gaussian absorption lines of width ``sigma`` [Angstrom]."""
    flux = np.ones_like(wave)
    for c in centres:
        flux -= depth * np.exp(-0.5 * ((wave - c) / sigma) ** 2)
    return flux


def _library(wave, flux, ivar=None, n=None):
    flux = np.atleast_2d(flux)
    n = flux.shape[0] if n is None else n
    flux = np.broadcast_to(flux, (n, wave.size)).copy()
    return SpectralLibrary.from_arrays(
        {"teff": np.linspace(4000.0, 6000.0, n)}, wave, flux, ivar, resolution=1500.0
    )


# ---------------------------------------------------------------------- draw_vsini
def test_draw_vsini_forms():
    assert np.array_equal(draw_vsini(10, 3), [10.0, 10.0, 10.0])
    assert np.array_equal(draw_vsini([0, 5, 50], 3), [0.0, 5.0, 50.0])
    assert np.array_equal(draw_vsini(2.0 * u.km / u.s, 2), [2.0, 2.0])
    assert np.allclose(draw_vsini([1000.0, 2000.0] * u.m / u.s, 2), [1.0, 2.0])
    drawn = draw_vsini((0.0, 300.0), 2000, seed=4)
    assert drawn.min() >= 0 and drawn.max() <= 300 and 140 < drawn.mean() < 160
    assert np.array_equal(drawn, draw_vsini((0.0, 300.0), 2000, seed=4))
    assert not np.array_equal(drawn, draw_vsini((0.0, 300.0), 2000, seed=5))
    quantity_range = draw_vsini((0 * u.km / u.s, 300 * u.km / u.s), 2000, seed=4)
    assert np.array_equal(drawn, quantity_range)
    logu = draw_vsini((1.0, 100.0), 4000, distribution="log-uniform", seed=1)
    assert logu.min() >= 1 and logu.max() <= 100
    assert abs(np.median(logu) - 10.0) < 1.0  # the geometric middle
    assert np.array_equal(draw_vsini((7.0, 7.0), 3, seed=0), [7.0, 7.0, 7.0])


@pytest.mark.parametrize(
    ("vsini", "kw", "match"),
    [
        ((10.0, 5.0), {}, "lo <= hi"),
        ((-1.0, 5.0), {}, "lo <= hi"),
        ((0.0, np.inf), {}, "finite"),
        ((0.0, np.nan), {}, "finite"),
        ((1.0, 2.0, 3.0), {}, "tuple"),
        (-3.0, {}, "finite and >= 0"),
        (np.nan, {}, "finite and >= 0"),
        ([1.0, 2.0], {}, "one value per spectrum"),
        ((0.0, 10.0), {"distribution": "log-uniform"}, "lo > 0"),
        ((1.0, 10.0), {"distribution": "gaussian"}, "distribution"),
    ],
)
def test_draw_vsini_rejects(vsini, kw, match):
    with pytest.raises(ValueError, match=match):
        draw_vsini(vsini, 3, **kw)


def test_draw_vsini_rejects_non_velocity():
    with pytest.raises(u.UnitsError, match="velocity"):
        draw_vsini(3.0 * u.AA, 3)


# ---------------------------------------------------------------------- broadening a line
def test_line_widens_by_the_kernel_and_keeps_its_equivalent_width():
    wave = log_lambda_grid(5000.0, 5200.0, 2e-6)  # 0.6 km/s pixels
    sigma = 1.4  # Angstrom: R ~ 1500 at 5100
    flux = _lines(wave, [5100.0], sigma)
    vsini = np.array([0.0, 20.0, 60.0, 120.0, 240.0])
    spun = _library(wave, flux, n=vsini.size).broaden_rotation(vsini)
    out = spun.wavelength.to_value(u.AA)
    depth = 1.0 - spun.flux
    dlam = np.gradient(out)
    ew = (depth * dlam).sum(axis=1)
    assert np.allclose(ew, ew[0], rtol=2e-4)  # equivalent width conserved
    assert np.all(np.diff(depth.max(axis=1)) < 0)  # shallower and shallower
    keep = np.isin(wave, out)
    assert np.array_equal(spun.flux[0], flux[keep])  # vsini = 0: unchanged
    # second moment in velocity: the line's own plus the rotation profile's
    vel = C_KMS * np.log(out / 5100.0)
    var = (depth * vel**2).sum(axis=1) / depth.sum(axis=1)
    grid = np.linspace(-1.0, 1.0, 20001)
    for v, measured in zip(vsini[1:], var[1:], strict=True):
        x = grid * v
        kernel = rotational_kernel(x, v)
        expected = var[0] + np.trapezoid(kernel * x**2, x)
        assert measured == pytest.approx(expected, rel=2e-3)


def test_non_log_grid_matches_the_exact_convolution():
    wave = np.arange(5000.0, 5100.0, 0.1)  # linear in wavelength, like the Doppler emulator
    flux = _lines(wave, np.arange(5010.0, 5095.0, 4.3), 1.5, depth=0.3)
    vsini = np.array([0.0, 1.0, 3.0, 6.0, 40.0, 150.0])
    spun = _library(wave, flux, n=vsini.size).broaden_rotation(vsini)
    assert spun.meta["rotation"]["log_resampled"]
    keep = np.isin(wave, spun.wavelength.to_value(u.AA))
    exact = rotational_broaden(wave, np.tile(flux, (vsini.size, 1)), vsini)[:, keep]
    assert np.array_equal(spun.flux[0], flux[keep])
    np.testing.assert_allclose(spun.flux, exact, atol=2e-4)  # line depths 0.3


@pytest.mark.parametrize("log_grid", [True, False])
def test_edges_are_trimmed_not_invented(log_grid):
    """The truth is the broadened spectrum of a longer grid: the trimmed edges must equal it."""
    rng = np.random.default_rng(0)
    if log_grid:
        wide = log_lambda_grid(4950.0, 5150.0, 1e-5)
    else:
        wide = np.arange(4950.0, 5150.0, 0.1)
    flux = _lines(wide, rng.uniform(4950.0, 5150.0, 60), 1.2, depth=0.4)
    vsini = np.array([300.0, 120.0, 10.0])
    truth = rotational_broaden(wide, np.tile(flux, (3, 1)), vsini)
    inner = (wide >= 5000.0) & (wide <= 5100.0)
    spun = _library(wide[inner], flux[inner], n=3).broaden_rotation(vsini)
    out = spun.wavelength.to_value(u.AA)
    # the largest vsini's Doppler width is cut off both ends
    assert out[0] >= 5000.0 * np.exp(300.0 / C_KMS) and out[-1] <= 5100.0 * np.exp(-300.0 / C_KMS)
    assert out[0] - 5000.0 < 5.2 + 1.0 and 5100.0 - out[-1] < 5.2 + 1.0  # and little more
    keep = np.isin(wide, out)
    np.testing.assert_allclose(spun.flux, truth[:, keep], atol=1e-9 if log_grid else 2e-4)


def test_labels_units_seed_and_meta():
    wave = log_lambda_grid(5000.0, 5100.0, 1e-5)
    lib = _library(wave, _lines(wave, [5050.0], 1.0), n=20)
    a = lib.broaden_rotation((0.0, 300.0), seed=3, epsilon=0.3)
    b = lib.broaden_rotation((0.0, 300.0), seed=3, epsilon=0.3, chunk_size=7)
    c = lib.broaden_rotation((0.0, 300.0), seed=4, epsilon=0.3)
    assert a.labels["vsini"].unit == u.km / u.s
    assert a.label_names == ["teff", "vsini"]
    values = a.labels["vsini"].to_value(u.km / u.s)
    assert values.min() >= 0 and values.max() <= 300
    assert np.array_equal(a.labels["teff"], lib.labels["teff"])  # other labels kept
    assert np.array_equal(values, b.labels["vsini"].value)
    np.testing.assert_allclose(a.flux, b.flux, atol=1e-12)  # chunks do not matter
    assert not np.array_equal(values, c.labels["vsini"].value)
    assert a.resolution == 1500.0 and a.medium == lib.medium
    rec = a.meta["rotation"]
    assert rec["vsini_range_kms"] == [0.0, 300.0] and rec["distribution"] == "uniform"
    assert rec["epsilon"] == 0.3 and rec["seed"] == 3 and not rec["log_resampled"]
    assert lib.label_names == ["teff"]  # the input is not modified
    # no rotation at all: nothing trimmed, flux unchanged
    still = lib.broaden_rotation(0.0)
    assert still.npix == lib.npix and np.array_equal(still.flux, lib.flux)


def test_ivar_is_propagated():
    wave = log_lambda_grid(5000.0, 5100.0, 1e-5)
    flux = _lines(wave, [5050.0], 1.0)
    ivar = np.full((2, wave.size), 1e4)
    noisy = _library(wave, flux, ivar=ivar, n=2).broaden_rotation(np.array([0.0, 100.0]))
    clean = _library(wave, flux, n=2).broaden_rotation(np.array([0.0, 100.0]))
    np.testing.assert_allclose(noisy.flux, clean.flux, atol=1e-12)
    assert np.allclose(noisy.ivar[0], 1e4)
    assert np.all(noisy.ivar[1] > 1e4)  # averaging over the kernel: smaller (diagonal) variance


def test_bad_input_rejected():
    wave = log_lambda_grid(5000.0, 5100.0, 1e-5)
    lib = _library(wave, _lines(wave, [5050.0], 1.0), n=3)
    with pytest.raises(ValueError, match="lo <= hi"):
        lib.broaden_rotation((100.0, 10.0))
    with pytest.raises(ValueError, match=">= 0"):
        lib.broaden_rotation(np.array([10.0, -1.0, 3.0]))
    with pytest.raises(ValueError, match="finite"):
        lib.broaden_rotation((0.0, np.inf))
    with pytest.raises(ValueError, match="epsilon"):
        lib.broaden_rotation(10.0, epsilon=1.5)
    with pytest.raises(ValueError, match="already has a vsini"):
        lib.broaden_rotation(10.0).broaden_rotation(10.0)
    with pytest.raises(ValueError, match="too short"):
        lib.broaden_rotation(5000.0)  # 83 Angstrom of Doppler width on a 100 Angstrom grid
