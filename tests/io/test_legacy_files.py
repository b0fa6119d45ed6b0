"""Model files of an earlier stellarml (remap_model-1.0.0, remap_ensemble-1.0.0) still read.

``tests/data/legacy`` holds real files written by stellarml at commit 1fd7a79
(before the model contract and calibrations) and that stellarml's predictions
on fixed inputs; ``make_legacy_files.py`` there says how they were made.
"""

from pathlib import Path

import numpy as np
import pytest

from stellarml import read_model
from stellarml.models import LabelModel

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy"


@pytest.fixture(scope="module")
def expected():
    with np.load(LEGACY / "expected.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize(
    ("filename", "key", "tag"),
    [
        ("toy_remap_model.asdf", "model", b"remap_model-1.0.0"),
        ("toy_remap_ensemble.asdf", "ensemble", b"remap_ensemble-1.0.0"),
    ],
)
def test_legacy_file_reads_and_predicts_as_before(
    filename, key, tag, expected, assert_float32_equal
):
    path = LEGACY / filename
    assert tag in path.read_bytes()
    model = read_model(path)
    assert isinstance(model, LabelModel)
    assert model.calibration is None
    result = model.predict_prepared(expected["flux"], expected["ivar"], device="cpu")
    for name in model.label_names:
        scale = max(5.0, np.abs(expected[f"{key}/{name}/median"]).max())
        for stat in ("median", "mode", "mean", "p16", "p84", "err_lo", "err_hi"):
            got, want = result["summary"][name][stat], expected[f"{key}/{name}/{stat}"]
            assert_float32_equal(got, want, scale, err_msg=f"{name} {stat}")
        assert_float32_equal(result["pdf"][name], expected[f"{key}/{name}/pdf"], 1.0)
    # the distance is a small difference of embeddings (~1e-3 here): it keeps ~4 digits
    dist = expected[f"{key}/domain_distance"]
    np.testing.assert_allclose(result["domain_distance"], dist, rtol=1e-4)


def test_legacy_ensemble_written_again_takes_todays_tags(expected, tmp_path):
    from stellarml import write_model

    model = read_model(LEGACY / "toy_remap_ensemble.asdf")
    # written again, it takes today's tags and still predicts the same
    path = tmp_path / "again.asdf"
    write_model(model, path)
    text = path.read_bytes()
    assert b"remap_ensemble-1.1.0" in text and b"remap_model-1.1.0" in text
    again = read_model(path)
    a = model.predict_prepared(expected["flux"], expected["ivar"], device="cpu")["summary"]
    b = again.predict_prepared(expected["flux"], expected["ivar"], device="cpu")["summary"]
    np.testing.assert_array_equal(a["teff"]["median"], b["teff"]["median"])
