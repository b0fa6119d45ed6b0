"""Tests of PolynomialEmulatorLibrary on the real Doppler emulator and small npz files."""

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable

from stellarml.libraries import PolynomialEmulatorLibrary, SpectralLibrary
from stellarml.libraries.emulated import DESIGNS

SUN = {"teff": [5777.0], "logg": [4.44], "fe_h": [0.0]}


@pytest.fixture(scope="module")
def emulator(data_dir):
    return PolynomialEmulatorLibrary.from_file(
        data_dir / "doppler" / "coolstars_cubic_emulator.npz"
    )


def _write_small(path, **changes):
    """A 50-pixel linear emulator in the real file's layout (flux = 1 - 0.1 x_teff)."""
    exps = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.int8)
    theta = np.zeros((50, 4))
    theta[:, 0] = 1.0
    theta[:, 1] = -0.1
    grid = np.array([[t, g, m] for t in (4000, 5000, 6000) for g in (1, 3) for m in (-1, 0)])
    data = {
        "wavelength_air_angstrom": np.linspace(5000, 5049, 50),
        "theta": theta,
        "s2": np.full(50, 1e-4),
        "exponents": exps,
        "training_labels": grid.astype(float),
        "label_names": np.array(["teff", "logg", "fe_h"]),
        "fiducials": np.array([5000.0, 2.0, -0.5]),
        "scales": np.array([1000.0, 1.0, 0.5]),
        "continuum_theta": np.ones((3, 4)),
    }
    data.update(changes)
    for key in [k for k, v in data.items() if v is None]:
        del data[key]
    np.savez(path, **data)
    return path


def test_real_file_layout_and_provenance(emulator, data_dir):
    assert emulator.label_names == ["teff", "logg", "fe_h"]
    assert emulator.label_ranges == {
        "teff": (3500.0, 8000.0),
        "logg": (0.0, 5.0),
        "fe_h": (-2.5, 0.5),
    }
    assert emulator.wavelength.unit == u.AA and emulator.wavelength.size == 150001
    assert emulator.medium == "air" and emulator.resolution is None and emulator.fwhm is None
    assert len(emulator.meta["sha256"]) == 64
    assert "continuum_theta" in emulator.extras
    assert emulator.s2.shape == (150001,)


def test_solar_spectrum_has_deep_halpha_and_unit_continuum(emulator):
    lib = emulator.generate(SUN, wavelength_range=(6500, 6620) * u.AA)
    assert isinstance(lib, SpectralLibrary) and len(lib) == 1
    wave, flux = lib.wavelength.to_value(u.AA), lib.flux[0]
    core = np.abs(wave - 6562.8) < 0.3
    assert flux[core].min() < 0.45
    near = np.abs(wave - 6562.8) < 5
    assert abs(wave[near][np.argmin(flux[near])] - 6562.8) < 0.2
    assert 0.95 < np.median(flux) < 1.02
    assert lib.labels["teff"].unit == u.K and lib.labels["logg"].unit == u.dex
    assert lib.ivar is None and lib.medium == "air"
    assert lib.meta["sha256"] == emulator.meta["sha256"]


def test_generate_matches_the_polynomial_and_accepts_label_forms(emulator):
    window = (5000, 5010) * u.AA
    table = QTable(
        {"teff": [5000.0, 6000.0] * u.K, "logg": [3.0, 4.0] * u.dex, "fe_h": [-1, 0] * u.dex}
    )
    table["id"] = ["a", "b"]
    a = emulator.generate(table, wavelength_range=window, dtype=np.float64)
    b = emulator.generate(np.array([[5000, 3, -1], [6000, 4, 0]]), wavelength_range=window)
    assert list(a.labels["id"]) == ["a", "b"]
    assert np.allclose(a.flux, b.flux, atol=1e-5)
    # Direct evaluation of the Cannon polynomial at one pixel.
    pix = np.searchsorted(emulator.wavelength.to_value(u.AA), 5000.0)
    x = (np.array([5000, 3, -1]) - emulator.fiducials) / emulator.scales
    terms = np.prod(x**emulator.exponents, axis=1)
    assert a.flux[0, 0] == pytest.approx(emulator.theta[pix] @ terms, rel=1e-12)
    # Chunking does not change the result (beyond BLAS rounding).
    c = emulator.generate(table, wavelength_range=window, dtype=np.float64, chunk_size=1)
    assert np.allclose(a.flux, c.flux, rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        emulator.generate(table, wavelength_range=window, chunk_size=0)


def test_generate_refuses_to_extrapolate(emulator):
    hot = {"teff": [9000.0], "logg": [4.0], "fe_h": [0.0]}
    with pytest.raises(ValueError, match="teff outside the emulator's training range"):
        emulator.generate(hot, wavelength_range=(5000, 5001) * u.AA)
    lib = emulator.generate(hot, wavelength_range=(5000, 5001) * u.AA, extrapolate=True)
    assert len(lib) == 1
    with pytest.raises(ValueError, match="lack"):
        emulator.generate({"teff": [5000.0], "logg": [4.0]})
    with pytest.raises(ValueError, match="does not model"):
        emulator.generate({**SUN, "vsini": [3.0]})
    with pytest.raises(ValueError, match="fewer than 2 emulator pixels"):
        emulator.generate(SUN, wavelength_range=(2000, 2500) * u.AA)


@pytest.mark.parametrize("design", DESIGNS)
def test_designs_are_seeded_and_inside_the_ranges(emulator, design):
    ranges = {"teff": (4000, 6000) * u.K, "logg": (1.0, 4.0)}
    a = emulator.sample_labels(256, design=design, seed=5, ranges=ranges)
    b = emulator.sample_labels(256, design=design, seed=5, ranges=ranges)
    c = emulator.sample_labels(256, design=design, seed=6, ranges=ranges)
    values = np.column_stack([a[name].value for name in emulator.label_names])
    assert np.array_equal(values, np.column_stack([b[n].value for n in emulator.label_names]))
    assert not np.array_equal(values, np.column_stack([c[n].value for n in emulator.label_names]))
    assert values[:, 0].min() >= 4000 and values[:, 0].max() <= 6000
    assert values[:, 1].min() >= 1 and values[:, 1].max() <= 4
    assert values[:, 2].min() >= -2.5 and values[:, 2].max() <= 0.5
    # Every design fills its box: each third of the Teff range gets spectra.
    counts = np.histogram(values[:, 0], bins=3, range=(4000, 6000))[0]
    assert counts.min() > 30


def test_space_filling_designs_are_stratified(emulator):
    lhs = emulator.sample_labels(100, design="latin", seed=0)
    # Latin hypercube: exactly one point in each of the 100 Teff strata.
    strata = np.floor((lhs["teff"].value - 3500) / 4500 * 100).astype(int)
    assert np.array_equal(np.sort(strata), np.arange(100))
    sob = emulator.sample_labels(128, design="sobol", seed=0)
    strata = np.floor((sob["logg"].value - 0) / 5 * 128).astype(int)
    assert np.array_equal(np.sort(strata), np.arange(128))


def test_training_design_stays_near_the_training_grid(emulator):
    labels = emulator.sample_labels(4000, design="training", seed=2)
    values = np.column_stack([labels[n].value for n in emulator.label_names])
    scaled_train = emulator.training_labels / [500.0, 0.5, 0.5]
    scaled = values / [500.0, 0.5, 0.5]
    nearest = np.sqrt(((scaled[:, None, :] - scaled_train[None]) ** 2).sum(-1)).min(axis=1)
    assert np.percentile(nearest, 95) < 1.0

    # The grid has no hot giants (Teff >= 6000 K needs log g >= 3.5, 2.5 at 8000 K);
    # a uniform box puts ~1/6 of its spectra there, the training design almost none.
    def hot_giants(teff, logg):
        return np.mean((teff > 6500) & (logg < 2.0))

    uniform = emulator.sample_labels(4000, design="uniform", seed=2)
    assert hot_giants(values[:, 0], values[:, 1]) < 0.005
    assert hot_giants(uniform["teff"].value, uniform["logg"].value) > 0.12


def test_sample_records_the_design(emulator):
    lib = emulator.sample(8, design="sobol", seed=3, wavelength_range=(5000, 5002) * u.AA)
    assert len(lib) == 8 and lib.npix == 21
    assert lib.meta["sampling"]["design"] == "sobol" and lib.meta["sampling"]["seed"] == 3
    with pytest.raises(ValueError, match="unknown design"):
        emulator.sample_labels(4, design="grid")
    with pytest.raises(ValueError, match="outside the emulator's training range"):
        emulator.sample_labels(4, ranges={"teff": (3000, 5000)})
    with pytest.raises(ValueError, match="lacks"):
        emulator.sample_labels(4, ranges={"vsini": (0, 5)})


def test_small_file_round_trip(tmp_path):
    emu = PolynomialEmulatorLibrary.from_file(_write_small(tmp_path / "small.npz"))
    lib = emu.generate({"teff": [4000.0, 6000.0], "logg": [1.0, 3.0], "fe_h": [0.0, -1.0]})
    assert np.allclose(lib.flux[0], 1.1) and np.allclose(lib.flux[1], 0.9)
    assert emu.extras["continuum_theta"].shape == (3, 4)


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"theta": None}, ValueError, "missing emulator arrays: theta"),
        ({"wavelength_air_angstrom": None}, ValueError, "wavelength_air_angstrom or"),
        ({"theta": np.ones((49, 4))}, ValueError, r"'theta' has shape \(49, 4\)"),
        ({"exponents": np.ones((4, 3))}, TypeError, "'exponents' must be integers"),
        ({"exponents": np.ones((4, 2), dtype=int)}, ValueError, r"shape \(n_terms, 3\)"),
        ({"label_names": np.array([1, 2, 3])}, TypeError, "label_names"),
        ({"label_names": np.array(["teff", "logg", "zz"])}, ValueError, "unknown label 'zz'"),
        ({"scales": np.array([1.0, 0.0, 1.0])}, ValueError, "non-zero"),
        ({"fiducials": np.ones(2)}, ValueError, r"'fiducials' must have shape \(3,\)"),
        ({"s2": np.ones(3)}, ValueError, r"'s2' must have shape \(50,\)"),
        ({"training_labels": np.ones((5, 2))}, ValueError, "training_labels"),
        ({"theta": np.full((50, 4), np.nan)}, ValueError, "non-finite"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, changes, error, match):
    path = _write_small(tmp_path / "bad.npz", **changes)
    with pytest.raises(error, match=match):
        PolynomialEmulatorLibrary.from_file(path)


def test_not_an_npz(tmp_path):
    with pytest.raises(FileNotFoundError):
        PolynomialEmulatorLibrary.from_file(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip file")
    with pytest.raises(ValueError, match=r"not a readable \.npz"):
        PolynomialEmulatorLibrary.from_file(junk)
    single = tmp_path / "single.npy"
    np.save(single, np.ones(3))
    with pytest.raises(ValueError, match=r"single \.npy array"):
        PolynomialEmulatorLibrary.from_file(single)


def test_degraded_emulator_equals_degrading_each_spectrum(emulator):
    from stellarml.spectra import log_lambda_grid

    grid = log_lambda_grid(6450, 6650, 1.5e-4) * u.AA
    labels = emulator.sample_labels(12, design="training", seed=8)
    full = emulator.generate(labels, wavelength_range=(6400, 6700) * u.AA, dtype=np.float64)
    one_by_one = full.degrade(resolution=1500, wavelength=grid)
    fast = emulator.degrade(resolution=1500, wavelength=grid)
    assert fast.resolution == 1500 and fast.s2 is None and fast.theta.shape == (grid.size, 20)
    assert fast.meta["degraded"][0]["resolution"] == 1500.0
    direct = fast.generate(labels, dtype=np.float64)
    assert direct.resolution == 1500 and u.allclose(direct.wavelength, grid)
    assert np.allclose(direct.flux, one_by_one.flux, atol=1e-9)
    # Broadening keeps the mean flux; H-alpha gets shallower.
    sun_native = emulator.generate(SUN, wavelength_range=(6450, 6650) * u.AA)
    sun = fast.generate(SUN)
    assert sun.flux.mean() == pytest.approx(sun_native.flux.mean(), abs=2e-3)
    assert 0.45 < sun.flux.min() < 0.9


def test_degrade_emulator_window_and_errors(emulator):
    window = emulator.degrade(fwhm=2.5 * u.AA, wavelength_range=(5000, 5100) * u.AA)
    wave = window.wavelength.to_value(u.AA)
    assert wave[0] == pytest.approx(5000) and wave[-1] == pytest.approx(5100)
    assert window.fwhm == 2.5 * u.AA and window.theta.shape == (1001, 20)
    with pytest.raises(ValueError, match="reaches outside"):
        emulator.degrade(resolution=2000, wavelength_range=(2000, 4000) * u.AA)
    with pytest.raises(ValueError, match="not both"):
        emulator.degrade(wavelength=wave * u.AA, wavelength_range=(5000, 5100) * u.AA)
    with pytest.raises(ValueError, match="needs a target"):
        emulator.degrade()
    with pytest.raises(ValueError, match="cannot be sharpened"):
        window.degrade(fwhm=1 * u.AA)
