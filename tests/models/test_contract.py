"""The LabelModel contract: a numpy-only model through derive_labels, the CLI and model files."""

import json
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import InverseVariance
from scipy.special import ndtri
from specutils import Spectrum

from stellarml import derive_labels, read_model, write_model
from stellarml.calibration import TrendCalibration
from stellarml.catalog import LabelTable
from stellarml.cli import main
from stellarml.flags import LabelFlag
from stellarml.io.asdf.model_io import ModelFileError
from stellarml.models import LabelModel
from stellarml.posterior import GaussianPosterior

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fake_model import FakeModel, fake_extension, fake_model


def spectra(n=4, seed=0):
    """``n`` absorption-line spectra (vacuum, R = 3000, S/N 50) and one featureless one."""
    rng = np.random.default_rng(seed)
    wave = np.linspace(4700.0, 5500.0, 4000)
    depth = np.append(np.linspace(0.2, 0.6, n), 0.0)[:, None]
    lines = np.linspace(4850, 5350, 12)
    profile = np.exp(-0.5 * ((wave[None, :, None] - lines[None, None, :]) / 1.5) ** 2).sum(-1)
    flux = 1.0 - depth * profile
    flux = flux + rng.normal(0, 0.02, flux.shape)
    return Spectrum(
        flux=flux * u.dimensionless_unscaled,
        spectral_axis=wave * u.AA,
        uncertainty=InverseVariance(np.full(flux.shape, 2500.0)),
        meta={"resolution": 3000.0, "medium": "vacuum"},
    )


def test_models_are_label_models():
    from stellarml.models import RemapEnsemble

    assert isinstance(fake_model(), LabelModel)
    assert isinstance(read_model(), LabelModel) and isinstance(read_model(), RemapEnsemble)
    assert not isinstance(object(), LabelModel)
    with pytest.raises(TypeError, match="must be a stellarml model"):
        derive_labels(spectra(), model=object())


def test_fake_model_through_derive_labels():
    model = fake_model()
    spec = spectra()
    far = Spectrum(flux=spec.flux[0], spectral_axis=spec.spectral_axis + 3000 * u.AA)
    table, posterior = derive_labels([spec[0], far, *spec[1:]], model=model, return_posterior=True)
    assert len(table) == 6 and isinstance(posterior, GaussianPosterior) and len(posterior) == 6
    # the model's own posterior, flags and diagnostics reach the table, in input order
    # (derive_labels measures the RVs these spectra lack: prepare_with_rv, not prepare)
    direct = model.predict_posterior(
        __import__("stellarml.spectra", fromlist=["prepare_with_rv"]).prepare_with_rv(
            spec, model.preparation
        )
    )
    np.testing.assert_allclose(table["teff"].value[[0, 2, 3, 4, 5]], direct.median("teff"))
    assert table["teff"].unit == u.K and table["logg"].unit == u.dex
    assert table["teff"].mask[1] and table["flags"][1] & int(LabelFlag.NO_WAVELENGTH_OVERLAP)
    assert not posterior.valid[1]
    assert table["flags"][5] & int(LabelFlag.OUTSIDE_TRAINING_DOMAIN)  # featureless
    assert not table["flags"][0] & int(LabelFlag.OUTSIDE_TRAINING_DOMAIN)
    np.testing.assert_array_equal(posterior.flags, table["flags"])
    assert "chi2" in table.colnames and "teff_crlb" in table.colnames
    assert "logg_crlb" not in table.colnames and "domain_distance" not in table.colnames
    assert table["teff_crlb"].unit == u.K
    assert table["chi2"].info.meta["ucd"] == "stat.fit.chi2"
    assert table["teff_crlb"].info.meta["ucd"] == "stat.error;phys.temperature.effective"
    # a Gaussian posterior: median = mode = mean, p84 - p16 = 2 x 0.9945 sigma
    np.testing.assert_allclose(table["teff_mode"].value[0], table["teff"].value[0])
    sigma = np.sqrt(posterior.covariance[0, 0, 0])
    width = (table["teff_p84"] - table["teff_p16"]).value[0]
    np.testing.assert_allclose(width, 2 * ndtri(0.84) * sigma, rtol=1e-12)
    assert table.meta["model_name"] == "fake" and table.meta["model_method"] == "fake"
    assert table.meta["calibration"].startswith("none: the model has no calibration")


def test_fake_model_file_round_trip_with_calibration(tmp_path):
    model = fake_model()
    spec = spectra(6)
    raw, posterior = derive_labels(spec, model=model, return_posterior=True)
    reference = {"teff": raw["teff"].value[:6] + 75.0, "teff_err": np.full(6, 30.0)}
    model.calibration = TrendCalibration({"teff": []}).fit(
        posterior[:6], reference, name="toy reference"
    )
    path = tmp_path / "fake.asdf"
    with fake_extension():
        write_model(model, path)
        back = read_model(path)
    assert type(back) is FakeModel and back.source_["sha256"]
    np.testing.assert_array_equal(back.coefficients, model.coefficients)
    assert back.preparation == model.preparation
    assert back.provenance_ == model.provenance_
    calibrated = derive_labels(spec, model=back)
    np.testing.assert_allclose(calibrated["teff"].value[:6], reference["teff"], atol=1e-6)
    assert calibrated.meta["calibration_reference"] == "toy reference"
    assert calibrated.meta["calibration_n"] == 6
    uncalibrated = derive_labels(spec, model=back, calibrate=False)
    np.testing.assert_array_equal(uncalibrated["teff"].value, raw["teff"].value)
    assert uncalibrated.meta["calibration"].startswith("none: the raw model outputs")
    # without the extension that knows it, the file holds no model stellarml can use
    with pytest.raises(
        ModelFileError, match=r"tagged asdf://.*fake_model-1.0.0, which no installed"
    ):
        read_model(path)


def test_fake_model_through_the_cli(data_dir, tmp_path, capsys):
    path = tmp_path / "fake.asdf"
    files = [str(data_dir / "lamost" / name) for name in ("3706009.fits", "3703110.fits")]
    out = tmp_path / "labels.ecsv"
    with fake_extension():
        write_model(fake_model(), path)
        assert main(["derive", *files, "-m", str(path), "-o", str(out)]) == 0
        assert main(["info", str(path)]) == 0
    table = LabelTable.read(out, format="ascii.ecsv")
    assert list(table["file"]) == files
    assert np.isfinite(table["teff"].value).all() and "chi2" in table.colnames
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["class"] == "FakeModel"
