"""Tests of model files: round trip, provenance, and the bad-file battery."""

import hashlib
import os

import asdf
import numpy as np
import pytest

from stellarml.io.asdf.model_io import (
    ModelFileError,
    ModelFileNotFoundError,
    UnsupportedModelVersionError,
    file_hash,
    read_model,
    write_model,
)

N_SPECTRA, N_PIX = 48, 96


@pytest.fixture(scope="module")
def toy():
    """A tiny RemapModel fitted for one epoch on toy arrays, and a few spectra."""
    from stellarml.models.remap import RemapModel
    from stellarml.spectra import PreparationSettings, log_lambda_grid

    rng = np.random.default_rng(1)
    wave = log_lambda_grid(5000.0, 5100.0, np.log(5100.0 / 5000.0) / (N_PIX - 1))
    labels = np.column_stack(
        [
            rng.uniform(4000, 7000, N_SPECTRA),
            rng.uniform(1, 5, N_SPECTRA),
            rng.uniform(-2, 0.5, N_SPECTRA),
        ]
    )
    x = np.arange(wave.size)
    depth = 0.3 * (7000.0 - labels[:, :1]) / 3000.0
    flux = 1.0 - depth * np.exp(-0.5 * ((x - wave.size / 2) / 3.0) ** 2)
    flux = (flux + 0.01 * rng.standard_normal(flux.shape)).astype(np.float32)
    ivar = np.full(flux.shape, 1e4, dtype=np.float32)
    model = RemapModel(
        preparation=PreparationSettings(wavelength=wave, resolution=2000.0),
        architecture={
            "stem_channels": 4,
            "stage_channels": (4, 8),
            "stage_blocks": (1, 1),
            "pool_length": 4,
            "embedding_dim": 8,
        },
        training={
            "max_epochs": 1,
            "batch_size": 16,
            "progress": False,
            "domain_reference_size": 16,
        },
        name="toy-remap",
        device="cpu",
    )
    model.fit_prepared(flux, ivar, labels, epochs=1)
    return model, flux[:6], ivar[:6]


@pytest.fixture(scope="module")
def model_file(toy, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "toy.asdf"
    write_model(toy[0], path)
    return path


def _edited(model_file, tmp_path, old, new):
    """A copy of ``model_file`` with ``old`` replaced by ``new`` in the YAML (same length)."""
    data = model_file.read_bytes()
    assert len(old) == len(new) and data.count(old) >= 1
    path = tmp_path / "edited.asdf"
    path.write_bytes(data.replace(old, new, 1))
    return path


def _predict(model, flux, ivar):
    return model.predict_prepared(flux, ivar, device="cpu")["summary"]


def test_round_trip(toy, model_file):
    model, flux, ivar = toy
    back = read_model(model_file)
    assert type(back) is type(model)
    assert back.name == "toy-remap"
    assert back.label_names == model.label_names
    assert back.preparation == model.preparation
    assert back.label_bins() == model.label_bins()
    assert back.get_config() == model.get_config()
    assert back.label_specs == model.label_specs
    assert back.provenance_ == model.provenance_
    assert back.calibration is None
    assert back.n_pix_ == model.n_pix_
    for key, value in model.net_.state_dict().items():
        np.testing.assert_array_equal(back.net_.state_dict()[key].numpy(), value.numpy())
    np.testing.assert_array_equal(back.domain_reference_, model.domain_reference_)
    assert back.domain_threshold_ == model.domain_threshold_
    assert back.history_ == model.history_
    a, b = _predict(model, flux, ivar), _predict(back, flux, ivar)
    for name in model.label_names:
        for key in ("median", "p16", "p84", "mode"):
            np.testing.assert_array_equal(a[name][key], b[name][key])


def test_files_of_older_manifests_still_read(toy, model_file, tmp_path, recwarn):
    # the extension URI a file records is only informative: files written under an older
    # manifest read without warnings (real older files: tests/io/test_legacy_files.py)
    old = _edited(
        model_file, tmp_path, b"extensions/stellarml-1.2.0", b"extensions/stellarml-1.0.0"
    )
    back = read_model(old)
    assert not [w for w in recwarn if "stellarml" in str(w.message)]
    model, flux, ivar = toy
    a, b = _predict(model, flux, ivar), _predict(back, flux, ivar)
    np.testing.assert_array_equal(a["teff"]["median"], b["teff"]["median"])


def test_source_and_hash(toy, model_file, tmp_path):
    model = toy[0]
    expected = hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert file_hash(model_file) == expected
    back = read_model(str(model_file))
    assert back.source_ == {"path": str(model_file.resolve()), "sha256": expected}
    path = tmp_path / "again.asdf"
    digest = write_model(model, path)
    assert digest == file_hash(path)
    assert model.source_ == {"path": str(path.resolve()), "sha256": digest}


def test_file_layout(model_file):
    with asdf.open(model_file) as af:
        assert af["model"] is not None
        from stellarml import __version__

        assert af["stellarml_version"] == __version__
        assert af["date"].endswith("+00:00")
    text = model_file.read_bytes().split(b"\n...\n")[0].decode()
    assert "model: !<asdf://stellarml.org/stellarml/tags/remap_model-1.1.0>" in text
    assert "calibration: null" in text
    assert "!<asdf://stellarml.org/stellarml/tags/label_spec-1.0.0>" in text
    assert "preparation: !<asdf://stellarml.org/stellarml/tags/preparation_settings-1.0.0>" in text
    assert "!<tag:astropy.org:astropy/units/unit-1.0.0> dex" in text
    assert "pickle" not in text and "torch" not in text.split("provenance")[0]
    # weights are binary blocks, not inline YAML lists
    assert "stem.conv.weight: !core/ndarray-1.1.0\n      source:" in text


def test_atomic_write_and_compression(toy, tmp_path):
    model, flux, ivar = toy
    path = tmp_path / "m.asdf"
    write_model(model, path, compression="zlib")
    assert sorted(os.listdir(tmp_path)) == ["m.asdf"]
    # readable by others like any file the user writes (not mkstemp's 0600)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    back = read_model(path)
    np.testing.assert_array_equal(
        _predict(back, flux, ivar)["teff"]["median"], _predict(model, flux, ivar)["teff"]["median"]
    )
    before = path.read_bytes()
    name = model.name
    model.name = ""  # violates the schema (minLength 1): nothing may be written
    try:
        with pytest.raises(
            ModelFileError, match=r"does not conform to its schema: '' is too short \(at name\)"
        ):
            write_model(model, path)
    finally:
        model.name = name
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.asdf"]


def test_write_rejects_non_models(tmp_path):
    with pytest.raises(TypeError, match="cannot write a dict as a stellarml model: it is not"):
        write_model({"weights": np.ones(3)}, tmp_path / "x.asdf")
    assert not (tmp_path / "x.asdf").exists()


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileNotFoundError, match="model file not found") as info:
        read_model(tmp_path / "nope.asdf")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


def test_unknown_name():
    from stellarml.data import available_models

    with pytest.raises(
        ModelFileNotFoundError, match="no shipped model named 'no-such-model'"
    ) as info:
        read_model("no-such-model")
    for name in available_models():
        assert name in str(info.value)
    assert "available:" in str(info.value)


def test_bad_argument_type():
    with pytest.raises(TypeError, match="expected a path or a model name, got int"):
        read_model(3)


@pytest.mark.parametrize(
    "content",
    [b"hello world\n", b"SIMPLE  =                    T" + b" " * 50, b"PK\x03\x04zipfile", b""],
)
def test_not_asdf(tmp_path, content):
    path = tmp_path / "x.asdf"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="is not an ASDF file"):
        read_model(path)


@pytest.mark.parametrize("keep", [0.3, 0.97])
def test_truncated(model_file, tmp_path, keep):
    """Cut inside the YAML tree (0.3 of a small file) or inside the last blocks."""
    data = model_file.read_bytes()
    yaml_end = data.index(b"\n...\n")
    cut = int(yaml_end * keep) if keep < 0.5 else int(len(data) * keep)
    path = tmp_path / "truncated.asdf"
    path.write_bytes(data[:cut])
    with pytest.raises(ModelFileError, match="corrupted or truncated"):
        read_model(path)


def test_corrupted_block(model_file, tmp_path):
    data = bytearray(model_file.read_bytes())
    # flip bytes in the data of the first block (after its 6-byte header size field)
    start = data.index(b"\xd3BLK") + 60
    data[start : start + 16] = bytes(255 - b for b in data[start : start + 16])
    path = tmp_path / "corrupt.asdf"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"corrupted or truncated.*checksum"):
        read_model(path)


def test_asdf_without_model(tmp_path):
    path = tmp_path / "other.asdf"
    asdf.AsdfFile({"spectrum": np.ones(4), "meta": {"a": 1}}).write_to(path)
    with pytest.raises(
        ModelFileError, match=r"holds no stellarml model.*keys: history, meta, spectrum"
    ):
        read_model(path)


def test_asdf_with_non_model_stellarml_object(tmp_path):
    from stellarml.labels import LABELS

    path = tmp_path / "label.asdf"
    asdf.AsdfFile({"model": LABELS["teff"]}).write_to(path)
    with pytest.raises(ModelFileError, match="holds no stellarml model"):
        read_model(path)


def test_unsupported_tag_version(model_file, tmp_path):
    path = _edited(model_file, tmp_path, b"tags/remap_model-1.1.0", b"tags/remap_model-9.0.0")
    with pytest.raises(UnsupportedModelVersionError, match=r"remap_model-9\.0\.0") as info:
        read_model(path)
    message = str(info.value)
    assert (
        "supported: dtl_model-1.0.0, emulator_model-1.0.0, label_calibration-1.0.0, "
        "label_spec-1.0.0, "
        "preparation_settings-1.0.0, "
        "remap_ensemble-1.0.0, remap_ensemble-1.1.0, remap_model-1.0.0, remap_model-1.1.0"
        in message
    )


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (
            b"n_pix: 96\n",
            b"n_pix: -6\n",
            r"-6 is less than the minimum of 1 \(in remap_model-1.1.0 at model/n_pix\)",
        ),
        (
            b"name: toy-remap\n",
            b"name: 123456789\n",
            r"123456789 is not of type 'string' \(in remap_model-1.1.0 at model/name\)",
        ),
        (
            b"medium: vacuum\n",
            b"medium: plasma\n",
            r"'plasma' is not one of \['air', 'vacuum'\] "
            r"\(in preparation_settings-1.0.0 at model/preparation/medium\)",
        ),
        (
            b"ucd: phys.gravity\n",
            b"ucx: phys.gravity\n",
            r"'ucd' is a required property \(in label_spec-1.0.0 at model/labels/1\)",
        ),
        (
            b"  weights:\n",
            b"  weightz:\n",
            r"'weights' is a required property \(in remap_model-1.1.0 at model\)",
        ),
    ],
)
def test_schema_violations(model_file, tmp_path, old, new, match):
    path = _edited(model_file, tmp_path, old, new)
    with pytest.raises(ModelFileError, match="does not conform to the stellarml schema") as info:
        read_model(path)
    assert info.match(match)


def test_label_unit_disagrees_with_registry(model_file, tmp_path):
    path = _edited(
        model_file, tmp_path, b"unit: !unit/unit-1.0.0 K\n", b"unit: !unit/unit-1.0.0 s\n"
    )
    with pytest.raises(ModelFileError, match=r"label 'teff' is stored in s but stellarml.labels"):
        read_model(path)


def test_non_finite_weights_are_refused(toy, tmp_path):
    import copy

    model = copy.deepcopy(toy[0])
    with __import__("torch").no_grad():
        model.net_.embedding.weight[0, 0] = float("nan")
    path = tmp_path / "nan.asdf"
    write_model(model, path)
    with pytest.raises(ModelFileError, match=r"weights \['embedding.weight'\] hold non-finite"):
        read_model(path)


def test_top_level_write_model_is_model_io(toy, tmp_path):
    from stellarml import write_model as top_level_write

    path = tmp_path / "top.asdf"
    digest = top_level_write(toy[0], path)
    assert read_model(path).source_["sha256"] == digest == file_hash(path)


def test_round_trip_with_every_calibration_form(toy, tmp_path):
    import copy

    from stellarml.calibration import (
        ChainedCalibration,
        GroupCalibration,
        TrendCalibration,
        WidthCalibration,
    )

    model, flux, ivar = copy.deepcopy(toy[0]), toy[1], toy[2]
    rng = np.random.default_rng(3)
    f = np.repeat(flux, 5, axis=0) * (1 + 0.01 * rng.standard_normal((30, flux.shape[1])))
    posterior = model.predict_prepared(f.astype(np.float32), np.repeat(ivar, 5, axis=0))[
        "posterior"
    ]
    reference = {
        "teff": posterior.median("teff") + 50 + 20 * rng.standard_normal(30),
        "teff_err": np.full(30, 10.0),
        "logg": posterior.median("logg") - 0.1 + 0.05 * rng.standard_normal(30),
    }
    model.calibration = ChainedCalibration(
        [
            TrendCalibration({"teff": ["teff"], "logg": []}),
            WidthCalibration(),
            GroupCalibration("fe_h", ["teff"], clip=None),
        ]
    ).fit(posterior, reference, groups=np.repeat(np.arange(6), 5), name="toy stars")
    path = tmp_path / "calibrated.asdf"
    write_model(model, path)
    assert b"!<asdf://stellarml.org/stellarml/tags/label_calibration-1.0.0>" in path.read_bytes()
    back = read_model(path)
    assert back.calibration.describe() == model.calibration.describe()
    a, b = model.calibration(posterior), back.calibration(posterior)
    for name in model.label_names:
        for key, values in a.summaries()[name].items():
            np.testing.assert_array_equal(b.summaries()[name][key], values, err_msg=key)
    with pytest.raises(ModelFileError, match="cannot write an unfitted TrendCalibration"):
        model.calibration = TrendCalibration({"teff": []})
        write_model(model, tmp_path / "unfitted.asdf")


def test_newer_minor_tag_version_says_upgrade(model_file, tmp_path):
    path = _edited(model_file, tmp_path, b"tags/remap_model-1.1.0", b"tags/remap_model-1.7.0")
    with pytest.raises(UnsupportedModelVersionError) as info:
        read_model(path)
    message = str(info.value)
    assert "was written by a newer stellarml" in message
    assert "remap_model-1.7.0" in message and "up to remap_model-1.1.0" in message
    assert "Upgrade stellarml" in message and "not corrupted" in message
    assert "corrupted or truncated" not in message


def _threshold_bytes(model_file):
    import re

    data = model_file.read_bytes()
    found = re.search(rb"domain_threshold: [^\n]*", data).group(0)
    return data, found


@pytest.mark.parametrize("value", [b".nan", b".inf"])
def test_non_finite_threshold_is_refused(model_file, tmp_path, value):
    data, found = _threshold_bytes(model_file)
    path = tmp_path / "threshold.asdf"
    path.write_bytes(data.replace(found, b"domain_threshold: " + value, 1))
    with pytest.raises(ModelFileError, match="holds invalid values") as info:
        read_model(path)
    assert info.match(r"the domain threshold is (nan|inf), not a finite number >= 0")
    assert "corrupted" not in str(info.value)


@pytest.mark.parametrize("value", [b"-.inf", b"-1.0"])
def test_negative_threshold_violates_the_schema(model_file, tmp_path, value):
    data, found = _threshold_bytes(model_file)
    path = tmp_path / "threshold.asdf"
    path.write_bytes(data.replace(found, b"domain_threshold: " + value, 1))
    with pytest.raises(ModelFileError, match="does not conform") as info:
        read_model(path)
    assert info.match(r"at model/domain_threshold")


def test_non_finite_domain_reference_is_refused(toy, tmp_path):
    import copy

    model = copy.deepcopy(toy[0])
    model.domain_reference_ = model.domain_reference_.copy()
    model.domain_reference_[3, 1] = np.inf
    path = tmp_path / "ref.asdf"
    write_model(model, path)
    with pytest.raises(ModelFileError, match="holds invalid values") as info:
        read_model(path)
    assert info.match("the domain reference embeddings hold 1 non-finite values")


def test_non_finite_calibration_is_refused(toy, tmp_path):
    import copy

    from stellarml.calibration import TrendCalibration

    model = copy.deepcopy(toy[0])
    cal = TrendCalibration({"teff": []})
    pred = model.predict_prepared(toy[1], toy[2], device="cpu")["posterior"]
    summary = pred.summaries()["teff"]["median"]
    cal.fit(pred, {"teff": summary - 40.0})
    cal.coefficients_ = {"teff": np.array([np.nan])}
    model.calibration = cal
    path = tmp_path / "cal.asdf"
    write_model(model, path)
    with pytest.raises(ModelFileError, match="holds invalid values") as info:
        read_model(path)
    assert info.match(r"the trend calibration's fitted\['coefficients'\]\['teff'\]")


def test_infinite_threshold_is_not_written(toy, tmp_path):
    import copy

    model = copy.deepcopy(toy[0])
    model.domain_threshold_ = float("inf")
    with pytest.raises(ModelFileError, match="needs a finite threshold"):
        write_model(model, tmp_path / "inf.asdf")
    assert not (tmp_path / "inf.asdf").exists()
