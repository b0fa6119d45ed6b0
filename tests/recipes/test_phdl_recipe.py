"""The emulator recipe: a TOML configuration in, a calibrated emulator model out."""

import numpy as np
import pytest
from astropy.table import Table

from stellarml import derive_labels
from stellarml.io.asdf import read_model
from stellarml.libraries import ObservedLibrary
from stellarml.models.emulator import EmulatorModel, MLPEmulator
from stellarml.recipes import load_config, train_from_config

TINY = """
[model]
method = "phdl"
name = "tiny-phdl"
labels = ["teff", "logg", "fe_h"]
seed = 3
[model.box]
teff = [3800.0, 7000.0]
logg = [0.5, 5.0]
fe_h = [-2.0, 0.5]
[model.emulator]
class = "MLPEmulator"
hidden = [16]
[model.training]
epochs = 4
batch_size = 16
[model.fit]
continuum_degree = 1
[model.fit.gradient]
n_starts = 2
[preparation]
wavelength_min = 4800.0
wavelength_max = 5400.0
dloglam = 3.0e-4
medium = "vacuum"
resolution = 1500.0
[library]
name = "miles"
directory = "{data_dir}/miles"
ids = {ids!r}
noise_floor = 0.005
[gradient_prior]
emulator = "{data_dir}/doppler/coolstars_cubic_emulator.npz"
n_points = 40
seed = 3
weight = 1.0e-3
[model_error]
folds = 2
seed = 3
[calibration]
reference = "{data_dir}/benchmarks/gbs_v3_miles_train.csv"
id_column = "miles_id"
folds = 3
seed = 3
fine_tune_on_reference = true
reference_weight = 2
degree = 1
width = true
[calibration.trend]
teff = []
logg = []
fe_h = []
"""


def training_ids(data_dir, n=90):
    """The first ``n`` ids of the MILES training list (the only stars ever read)."""
    table = Table.read(data_dir / "miles" / "miles_train_labels.csv", converters={"miles_id": str})
    return sorted(str(i).zfill(4) for i in table["miles_id"])[:n]


@pytest.fixture
def tiny_config(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("STELLARML_DATA_DIR", str(data_dir))
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.replace("{ids!r}", repr(training_ids(data_dir))))
    return path


def test_train_calibrate_write_and_fit(tiny_config, tmp_path, data_dir):
    out = tmp_path / "phdl.asdf"
    ids = training_ids(data_dir)
    held = ids[5:7]
    model = train_from_config(tiny_config, output=out, progress=False, exclude_ids=held)
    assert isinstance(model, EmulatorModel) and isinstance(model.emulator, MLPEmulator)
    prov = model.provenance_
    used = prov["training_library"]["ids"]
    assert not set(held) & set(used) and set(used) <= set(ids)
    # stars outside the box are recorded, not silently lost
    assert prov["training_library"]["outside_box_ids"]
    assert prov["gradient_prior_points"] == 40
    error = model.fit_options["model_error"]
    assert error.shape == (model.emulator.n_pixels,) and np.all(error >= 0)
    cal = model.calibration.describe()
    assert cal["corrections"]["teff"]["n"] == 55  # every GBS star, each out of fold
    folds = cal["provenance"]["cross_fitting"]["fold_of_star"]
    assert sorted(set(folds.values())) == [0, 1, 2]
    back = read_model(out)
    assert back.calibration.describe()["corrections"] == cal["corrections"]
    spectra = ObservedLibrary.from_miles(data_dir / "miles", ids=held)
    a = derive_labels(spectra.to_spectrum(), model=model)
    b = derive_labels(spectra.to_spectrum(), model=back)
    # the model error is stored as float32: the optimum moves by a tiny fraction of the error
    shift = np.abs(np.asarray(a["teff"]) - np.asarray(b["teff"]))
    assert np.all(shift < 0.02 * np.asarray(a["teff_err_hi"]))
    assert a.meta["calibration_n"] == 55
    assert "teff_crlb" in a.colnames


def test_config_errors(tiny_config):
    cfg = load_config(tiny_config)
    del cfg["model"]["box"]["fe_h"]
    with pytest.raises(ValueError, match=r"\[model.box\] lacks fe_h"):
        load_config(cfg)
    cfg = load_config(tiny_config)
    cfg["model"]["emulator"]["class"] = "PayneEmulator"
    with pytest.raises(ValueError, match="class must be one of"):
        load_config(cfg)
    cfg = load_config(tiny_config)
    cfg["model"]["box"]["teff"] = [7000.0, 3800.0]
    with pytest.raises(ValueError, match="lo < hi"):
        load_config(cfg)
    cfg = load_config(tiny_config)
    cfg["gradient_prior"]["emulator"] = cfg["gradient_prior"]["emulator"]
    cfg["model"]["labels"] = ["teff", "logg", "fe_h", "mg_fe"]
    cfg["model"]["box"]["mg_fe"] = [-0.2, 0.6]
    with pytest.raises(ValueError, match="mg_fe"):
        train_from_config(cfg, progress=False)
