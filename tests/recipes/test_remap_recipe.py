"""TOML training configurations: method dispatch, parsing, building, a tiny end-to-end train."""

import copy

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table

from stellarml.io.asdf import read_model
from stellarml.recipes import load_config, train_from_config
from stellarml.recipes.remap import (
    build_finetune_library,
    build_model,
    build_preparation,
    build_pretrain_library,
    in_bins,
)

TINY = """
[model]
method = "remap"
name = "tiny"
labels = ["teff", "logg", "fe_h"]
seed = 3
device = "cpu"
[model.architecture]
stem_channels = 8
stage_channels = [8, 8, 16, 16]
stage_blocks = [1, 1, 1, 1]
embedding_dim = 16
[model.training]
max_epochs = 1
batch_size = 64
progress = false
[preparation]
wavelength_min = 4800.0
wavelength_max = 5400.0
dloglam = 3.0e-4
medium = "vacuum"
resolution = 1500.0
[pretrain]
emulator = "{data_dir}/doppler/coolstars_cubic_emulator.npz"
n_spectra = 128
design = "latin"
seed = 3
[fine_tune]
library = "miles"
directory = "{data_dir}/miles"
freeze = "stem"
epochs = 1
runs = 2
validation_fraction = 0.0
ids = ["0001", "0003", "0004", "0005", "0006", "0008", "0009", "0010"]
[fine_tune.loss]
sigma_bins = 2.0
"""


@pytest.fixture
def tiny_config(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("STELLARML_DATA_DIR", str(data_dir))
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def test_load_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nname=1")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ValueError, match=r"\[preparation\]"):
        load_config({"model": {"method": "remap", "name": "x"}, "pretrain": {}})
    with pytest.raises(ValueError, match="lacks dloglam"):
        load_config(
            {
                "model": {"method": "remap", "name": "x"},
                "preparation": {"wavelength_min": 1, "wavelength_max": 2},
                "pretrain": {},
            }
        )


def test_build_preparation_grid(tiny_config, data_dir):
    cfg = load_config(tiny_config)
    assert cfg["pretrain"]["emulator"].startswith(str(data_dir))
    prep = build_preparation(cfg)
    grid = prep.wavelength.to_value(u.AA)
    assert grid[0] == pytest.approx(4800.0, rel=1e-6)
    np.testing.assert_allclose(np.diff(np.log(grid)), 3.0e-4, rtol=1e-6)
    assert prep.resolution == 1500.0 and prep.medium == "vacuum"


def test_finetune_library_ids_and_exclusion(tiny_config):
    cfg = load_config(tiny_config)
    lib = build_finetune_library(cfg, exclude_ids=["3", "0004"])
    # rows stay in the CSV's order
    assert sorted(lib.labels["id"]) == ["0001", "0005", "0006", "0008", "0009", "0010"]
    model = build_model(cfg, build_preparation(cfg))
    assert in_bins(model, lib).all()


def test_pretrain_library_with_vsini(tiny_config):
    cfg = load_config(tiny_config)
    p = cfg["pretrain"]
    p.update(n_spectra=24, rv_jitter=3.0, continuum_distortion=0.03)
    prep = build_preparation(cfg)
    plain = build_pretrain_library(cfg, prep)
    p["vsini"] = [0.0, 0.0]  # no rotation: the same library plus a vsini column of zeros
    still = build_pretrain_library(cfg, prep)
    assert np.array_equal(still.flux, plain.flux)
    assert np.all(still.labels["vsini"] == 0 * u.km / u.s)
    p.update(vsini=[50.0, 250.0], vsini_distribution="log-uniform", limb_darkening=0.4)
    spun = build_pretrain_library(cfg, prep)
    values = spun.labels["vsini"].to_value(u.km / u.s)
    assert spun.labels["vsini"].unit == u.km / u.s and values.min() >= 50 and values.max() <= 250
    rot = spun.meta["rotation"]
    assert rot["vsini_range_kms"] == [50.0, 250.0] and rot["distribution"] == "log-uniform"
    assert rot["epsilon"] == 0.4 and rot["seed"] == 5  # [pretrain] seed + 2
    # broadened before the augmentation (which sees the trimmed grid), same labels otherwise
    assert len(spun.meta["augmentation"]) == 1
    assert spun.meta["augmentation"][0]["rv_kms"].shape == (24,)
    assert np.array_equal(spun.label_array(["teff"]), plain.label_array(["teff"]))
    # the trimmed library still covers the model grid, and lines are shallower
    grid = prep.wavelength.to_value(u.AA)
    wave = spun.wavelength.to_value(u.AA)
    assert wave[0] < grid[0] - 30 and wave[-1] > grid[-1] + 30  # 60 A margin less < 10 A
    batch, ref = spun.prepare(prep), plain.prepare(prep)
    assert np.array_equal(batch.flags, ref.flags)  # NO_UNCERTAINTY only, as without vsini
    assert np.all(np.std(batch.flux, axis=1) < np.std(ref.flux, axis=1))
    assert np.array_equal(build_pretrain_library(cfg, prep).flux, spun.flux)  # seeded


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"vsini": [-5.0, 100.0]}, "0 <= lo <= hi"),
        ({"vsini": [200.0, 100.0]}, "0 <= lo <= hi"),
        ({"vsini": [0.0, float("inf")]}, "finite"),
        ({"vsini": 100.0}, r"\[lo, hi\] pair"),
        ({"vsini": [0.0, 100.0, 200.0]}, r"\[lo, hi\] pair"),
        ({"vsini": [0.0, 300.0], "wavelength_margin": 5.0}, "wavelength_margin = 5 "),
        ({"vsini_distribution": "uniform"}, "needs a vsini"),
        ({"vsini": [0.0, 100.0], "vsini_distribution": "normal"}, "distribution"),
        ({"vsini": [0.0, 100.0], "vsini_distribution": "log-uniform"}, "lo > 0"),
        ({"vsini": [0.0, 100.0], "limb_darkening": 2.0}, "epsilon"),
    ],
)
def test_pretrain_vsini_rejected(tiny_config, extra, match):
    cfg = load_config(tiny_config)
    cfg["pretrain"].update(n_spectra=4, **extra)
    with pytest.raises(ValueError, match=match):
        build_pretrain_library(cfg, build_preparation(cfg))


def test_train_tiny_end_to_end(tiny_config, tmp_path):
    out = tmp_path / "tiny.asdf"
    pre = tmp_path / "pre.asdf"
    model = train_from_config(tiny_config, output=out, progress=False, pretrained_output=pre)
    back = read_model(out)
    assert back.name == "tiny"
    assert sorted(back.provenance_["fine_tune_library"]["ids"]) == [
        "0001",
        "0003",
        "0004",
        "0005",
        "0006",
        "0008",
        "0009",
        "0010",
    ]
    assert back.provenance_["config"]["model"]["seed"] == 3
    assert "fine_tune" not in read_model(pre).metrics_
    assert "fine_tune" in model.metrics_
    # the [fine_tune] settings reached the fine-tuning: two averaged runs, all 8 stars
    record = back.provenance_["fine_tune"][-1]
    assert record["runs"] == 2
    assert record["loss_overrides"] == {"sigma_bins": 2.0}
    assert (record["n_train"], record["n_validation"]) == (8, 0)
    assert back.metrics_["fine_tune"]["split"] == "training"


def test_train_tiny_ensemble(tiny_config, tmp_path):
    text = tiny_config.read_text().replace('device = "cpu"', 'device = "cpu"\nensemble = 2')
    text = text.replace("runs = 2", "runs = 1")
    tiny_config.write_text(text)
    out = tmp_path / "ens.asdf"
    model = train_from_config(tiny_config, output=out, progress=False)
    back = read_model(out)
    assert type(back).__name__ == "RemapEnsemble" and len(back) == 2
    # member k: model and library seeds shifted by k; each fine-tuned on the same stars
    assert [m.seed for m in back.members] == [3, 4]
    assert [m.provenance_["config"]["pretrain"]["seed"] for m in back.members] == [3, 4]
    assert back.provenance_["ensemble"]["member_seeds"] == [3, 4]
    for m in (back, *back.members):
        assert len(m.provenance_["fine_tune_library"]["ids"]) == 8
    w0, w1 = (m.net_.state_dict()["embedding.weight"] for m in model.members)
    assert not np.allclose(w0.numpy(), w1.numpy())
    assert back.provenance_["config"]["model"]["ensemble"] == 2


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_bad_ensemble_size(value):
    cfg = {
        "model": {"method": "remap", "name": "x", "ensemble": value},
        "preparation": {"wavelength_min": 1, "wavelength_max": 2, "dloglam": 1e-3},
        "pretrain": {},
    }
    with pytest.raises(ValueError, match="ensemble must be a positive integer"):
        load_config(cfg)


def test_config_must_name_a_known_method():
    cfg = {
        "model": {"name": "x"},
        "preparation": {"wavelength_min": 1, "wavelength_max": 2, "dloglam": 1e-3},
        "pretrain": {},
    }
    with pytest.raises(ValueError, match=r"\[model\] must name the method.*remap"):
        load_config(cfg)
    cfg["model"]["method"] = "payne"
    with pytest.raises(ValueError, match="unknown method 'payne'"):
        load_config(cfg)
    with pytest.raises(ValueError, match=r"lacks the \[model\] table"):
        load_config({"preparation": {}})


def test_train_tiny_with_cross_fitted_calibration(tiny_config, tmp_path, data_dir):
    from astropy.table import Table

    from stellarml import derive_labels

    # reference labels for six of the eight fine-tuning stars: MILES + 150 K, + 0.2 dex
    miles = Table.read(data_dir / "miles" / "miles_train_labels.csv", converters={"miles_id": str})
    rows = [
        list(miles["miles_id"]).index(i) for i in ("0001", "0003", "0004", "0005", "0006", "0008")
    ]
    reference = Table(
        {
            "miles_id": [str(miles["miles_id"][r]) for r in rows],
            "teff": [float(miles["teff"][r]) + 150.0 for r in rows],
            "e_teff": [30.0] * len(rows),
            "fe_h": [float(miles["fe_h"][r]) + 0.2 for r in rows],
        }
    )
    ref_path = tmp_path / "reference.csv"
    reference.write(ref_path, format="ascii.csv")
    text = (
        tiny_config.read_text()
        + f"""
[calibration]
reference = "{ref_path}"
name = "toy reference"
folds = 3
seed = 1
fine_tune_on_reference = true
width = false
[calibration.trend]
teff = []
fe_h = []
"""
    )
    tiny_config.write_text(text)
    out = tmp_path / "calibrated.asdf"
    model = train_from_config(tiny_config, output=out, progress=False)
    back = read_model(out)
    cal = back.calibration
    assert cal is not None and cal.provenance_["reference"] == "toy reference"
    assert cal.provenance_["n"] == 6
    folds = cal.provenance_["cross_fitting"]["fold_of_star"]
    assert sorted(folds) == ["0001", "0003", "0004", "0005", "0006", "0008"]
    assert sorted(set(folds.values())) == [0, 1, 2]
    # the final fine-tuning used the reference labels where it had them
    overrides = back.provenance_["fine_tune"][-1]
    assert back.provenance_["fine_tune_library"]["label_overrides"]["teff"] == sorted(folds)
    assert overrides["n_train"] == 8
    spectra = build_finetune_library(load_config(tiny_config)).to_spectrum()
    raw = derive_labels(spectra, model=back, calibrate=False)
    calibrated = derive_labels(spectra, model=back)
    shift = calibrated["teff"].value - raw["teff"].value
    np.testing.assert_allclose(shift, cal.coefficients_["teff"][0], rtol=1e-9)
    assert calibrated.meta["calibration_n"] == 6
    assert model.calibration.describe() == cal.describe()


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"reference": "x.csv", "fold": 3}, r"unknown \[calibration\] settings \['fold'\]"),
        ({"folds": 3}, r"\[calibration\] lacks reference"),
        ({"reference": "x.csv", "folds": 1}, "folds must be an integer >= 2"),
        ({"reference": "x.csv", "trend": {"teff": ["colour"]}}, "unknown label 'colour'"),
    ],
)
def test_bad_calibration_tables(table, match):
    cfg = {
        "model": {"method": "remap", "name": "x"},
        "preparation": {"wavelength_min": 1, "wavelength_max": 2, "dloglam": 1e-3},
        "pretrain": {},
        "fine_tune": {"library": "miles"},
        "calibration": table,
    }
    with pytest.raises((ValueError, KeyError), match=match):
        load_config(cfg)


def test_calibration_folds_keep_held_out_stars_out(tiny_config, tmp_path, monkeypatch):
    # the stars held out of fine-tuning (fine_tune_exclude_ids) stay out of every
    # calibration fold's fine-tuning too; they reached those fine-tunings before
    from stellarml.recipes import remap

    reference = Table({"miles_id": ["0001", "0003", "0004", "0005"], "teff": [5400.0] * 4})
    ref_path = tmp_path / "reference.csv"
    reference.write(ref_path, format="ascii.csv")
    cfg = load_config(tiny_config)
    cfg["model"]["training"]["max_epochs"] = 1
    cfg["pretrain"]["n_spectra"] = 32
    cfg["fine_tune"].update(epochs=1, runs=1)
    cfg["calibration"] = {
        "reference": str(ref_path),
        "folds": 2,
        "width": False,
        "trend": {"teff": []},
    }
    pretrained = build_model(cfg, build_preparation(cfg))
    pretrained.fit(build_pretrain_library(cfg, pretrained.preparation), progress=False)
    used = []
    real_fine_tune = remap.fine_tune

    def recording(model, cfg, **kw):
        out = real_fine_tune(model, cfg, **kw)
        used.append(set(out.provenance_["fine_tune_library"]["ids"]))
        return out

    monkeypatch.setattr(remap, "fine_tune", recording)
    model = copy.deepcopy(pretrained)
    remap.fine_tune_and_calibrate(
        model, cfg, pretrained=pretrained, exclude_ids=["0009", "0005"], progress=False
    )
    assert len(used) == 3  # the final fine-tuning and two folds
    assert all(not ({"0009", "0005"} & ids) for ids in used)
    assert model.calibration.provenance_["n"] == 3  # 0005 is not a calibration star either
