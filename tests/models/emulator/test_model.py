"""EmulatorModel: the real APOGEE emulator as a LabelModel, through derive_labels."""

import astropy.units as u
import numpy as np
import pytest
import torch
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

from stellarml import derive_labels
from stellarml.flags import LabelFlag
from stellarml.io.asdf import read_model, write_model
from stellarml.models import LabelModel
from stellarml.models.emulator import EmulatorModel, MLPEmulator, PayneEmulator, lattice_grid


@pytest.fixture(scope="module")
def apogee(data_dir):
    folder = data_dir / "apogee"
    emu = PayneEmulator.from_npz(
        folder / "binspec_apogee_emulator.npz", folder / "apogee_wavelength.npz"
    )
    with np.load(folder / "apogee_combined_2M13012770+5754582.npz") as d:
        flux, err = d["spectrum"].astype(float), d["spec_err"].astype(float)
    with np.load(folder / "apogee_mask.npz") as d:
        mask = d["apogee_mask"].astype(bool)
    # the file marks bad pixels with errors of ~100
    bad = ~(np.isfinite(flux) & np.isfinite(err) & (err > 0) & (err < 1.0)) | mask
    spec = Spectrum(
        flux=flux * u.dimensionless_unscaled,
        spectral_axis=emu.wavelength * u.AA,
        uncertainty=StdDevUncertainty(err),
        mask=bad,
        meta={"medium": "vacuum"},
    )
    return emu, spec


def test_lattice_grid_fills_the_detector_gaps(apogee):
    emu, _ = apogee
    grid, pixels = lattice_grid(emu.wavelength)
    np.testing.assert_allclose(grid[pixels], emu.wavelength, rtol=1e-7)
    step = np.diff(np.log(grid))
    np.testing.assert_allclose(step, step[0], rtol=1e-6)
    assert grid.size > emu.n_pixels  # the two gaps between the three detectors
    with pytest.raises(ValueError, match="one ln-lambda lattice"):
        lattice_grid(np.array([5000.0, 5000.5, 5001.7]))


def test_derive_labels_on_a_real_apogee_spectrum(apogee):
    emu, spec = apogee
    model = EmulatorModel(emu, name="apogee-payne", fit_options={"continuum_degree": 2})
    assert isinstance(model, LabelModel)
    table = derive_labels(spec, model=model)
    row = {name: np.asarray(table[name])[0] for name in table.colnames}
    # a cool dwarf: the labels of the direct fit in benchmarks/RESULTS.md within ~50 K / 0.05 dex
    assert row["teff"] == pytest.approx(4911.0, abs=60.0)
    assert row["logg"] == pytest.approx(4.53, abs=0.05)
    assert row["fe_h"] == pytest.approx(-0.19, abs=0.05)
    assert table["teff"].unit == u.K and table["teff_crlb"].unit == u.K
    # the bound is what S/N ~100 over ~6000 pixels allows; the errors are at least that
    assert 1.0 < row["teff_crlb"] < 20.0
    assert row["teff_err_hi"] >= 0.99 * row["teff_crlb"]
    assert row["dof"] > 5000 and 1.0 < row["chi2"] / row["dof"] < 10.0
    assert not row["flags"] & int(LabelFlag.FIT_NOT_CONVERGED)
    assert table.meta["model_fitter"] == "gradient"


def test_methods_and_bad_rows_in_a_batch(apogee):
    emu, spec = apogee
    model = EmulatorModel(
        emu,
        fitter_settings={"mcmc": {"n_walkers": 12, "n_steps": 60, "n_burn": 20}},
    )
    dead = Spectrum(
        flux=np.full(spec.flux.shape, np.nan) * u.dimensionless_unscaled,
        spectral_axis=spec.spectral_axis,
        meta={"medium": "vacuum"},
    )
    table = derive_labels([spec, dead], model=model, method="cmaes")
    assert len(table) == 2
    assert table["flags"][1] & int(LabelFlag.BAD_INPUT)
    assert table["teff"].mask.tolist() == [False, True]
    mcmc = derive_labels(spec, model=model, method="mcmc")
    # 60 steps is far too short a chain: the row says so
    assert mcmc["flags"][0] & int(LabelFlag.FIT_NOT_CONVERGED)
    p16, p50, p84 = (np.asarray(mcmc[f"teff_{q}"])[0] for q in ("p16", "p50", "p84"))
    assert p16 < p50 < p84
    with pytest.raises(ValueError, match="supports method"):
        derive_labels(spec, model=model, method="simplex")


def test_bad_settings_are_refused(apogee):
    emu, _ = apogee
    with pytest.raises(ValueError, match="unknown fitting method"):
        EmulatorModel(emu, fitter="newton")
    with pytest.raises(ValueError, match="unknown fit_options"):
        EmulatorModel(emu, fit_options={"continuum": 2})
    with pytest.raises(ValueError, match="invalid settings"):
        EmulatorModel(emu, fitter_settings={"gradient": {"n_strats": 3}})


def test_asdf_round_trip(apogee, tmp_path):
    emu, spec = apogee
    error = np.full(emu.n_pixels, 0.004)
    model = EmulatorModel(
        emu,
        name="apogee-payne",
        fitter="cmaes",
        fitter_settings={"mcmc": {"n_walkers": 16, "acceptance": (0.15, 0.6)}},
        fit_options={"rv": (-20.0, 20.0), "priors": {"vmacro": (6.0, 3.0)}, "model_error": error},
    )
    path = tmp_path / "apogee.asdf"
    write_model(model, path)
    back = read_model(path)
    assert isinstance(back, EmulatorModel) and isinstance(back.emulator, PayneEmulator)
    assert back.fitter == "cmaes" and back.label_names == model.label_names
    assert back.fitter_settings["mcmc"]["n_walkers"] == 16
    assert back.fit_options["rv"] == (-20.0, 20.0)
    assert back.fit_options["priors"]["vmacro"] == (6.0, 3.0)
    np.testing.assert_allclose(back.fit_options["model_error"], error, rtol=1e-6)
    np.testing.assert_array_equal(back.pixels, model.pixels)
    a = derive_labels(spec, model=model, method="gradient")
    b = derive_labels(spec, model=back, method="gradient")
    for name in ("teff", "logg", "fe_h", "teff_crlb", "rv", "chi2"):
        np.testing.assert_allclose(np.asarray(b[name]), np.asarray(a[name]), rtol=1e-6)
    # a trained-architecture emulator too (weights are its state dict)
    mlp = MLPEmulator(
        ("teff", "logg"),
        [4000.0, 1.0],
        [6000.0, 5.0],
        5000.0 * np.exp(1e-4 * np.arange(64)),
        hidden=(16, 16),
    )
    write_model(EmulatorModel(mlp, name="toy"), tmp_path / "mlp.asdf")
    again = read_model(tmp_path / "mlp.asdf").emulator
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (4, 2)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_array_equal(again(torch.tensor(x)).numpy(), mlp(torch.tensor(x)).numpy())


def test_models_that_do_not_fit_refuse_a_method(apogee):
    _, spec = apogee
    with pytest.raises(ValueError, match="does not take a method"):
        derive_labels(spec, model=read_model("remap-optical-r2000"), method="gradient")
