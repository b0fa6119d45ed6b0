"""The shipped default model: its uncalibrated predictions never change, its calibration is applied.

``tests/data/remap_default_uncalibrated.npz`` holds the labels, percentiles,
modes, S/N and flags that the shipped model gives without its calibration for
the project's example spectra, the 25 LAMOST spectra and the BOSS spectrum in
``../shared/data``, written when the model was built (the file changes only
with the model). When the model contract was introduced, the same check on
the model shipped then was bit-identical before and after the change (on one
CPU; across CPUs float32 rounding differs in the last bits, see the
``assert_float32_equal`` fixture).

The inputs are prepared exactly as when the file was written, so that only the model
is pinned here: the example spectra at rv 0 (they are in the rest frame; today
`derive_labels` would measure their RV), the LAMOST spectra at their
``radial_velocity`` (today ``c Z``, which differs by v**2 / 2c), and the BOSS
spectrum as specutils' own loader reads it (today ``Spectrum.read`` takes the
header RV and the resolution from ``WDISP``), at rv 0 in vacuum. What stellarml now
does with these files is tested in ``tests/test_analysis.py``.
"""

import glob
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from specutils import Spectrum

from stellarml import derive_labels, read_model
from stellarml.data import example_spectra

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "remap_default_uncalibrated.npz"


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def inputs(data_dir):
    return {
        "examples": example_spectra()[0],
        "lamost": [
            Spectrum.read(p) for p in sorted(glob.glob(str(data_dir / "lamost" / "*.fits")))
        ],
        "boss": [_read_boss(data_dir / "sdss" / "spec-3586-55181-0500.fits")],
    }


#: How each group was prepared when the golden file was written (see the module doc).
def _golden_options(group, spectra):
    if group == "examples":
        return {"rv": 0.0}
    if group == "lamost":
        return {"rv": [s.radial_velocity.to_value(u.km / u.s) for s in spectra]}
    return {"rv": 0.0, "medium": "vacuum"}


def _read_boss(path):
    # specutils' SDSS loader warns about the BOSS flux unit string; the unit itself is fine
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'1E-17 erg/cm", u.UnitsWarning)
        return Spectrum.read(path, format="SDSS-III/IV spec")


@pytest.mark.parametrize("group", ["examples", "lamost", "boss"])
def test_uncalibrated_predictions_are_unchanged(group, golden, inputs, assert_float32_equal):
    table = derive_labels(
        inputs[group], calibrate=False, device="cpu", **_golden_options(group, inputs[group])
    )
    columns = [k.split("/", 1)[1] for k in golden if k.startswith(group + "/")]
    assert len(columns) == 20
    for column in columns:
        expected = golden[f"{group}/{column}"]
        if column == "flags":
            np.testing.assert_array_equal(np.asarray(table["flags"]), expected)
            continue
        col = table[column]
        values = np.where(np.ma.getmaskarray(col), np.nan, np.asarray(getattr(col, "value", col)))
        label = column.split("_err")[0].split("_p")[0].removesuffix("_mode")
        # scale: the label's largest value, at least the 5 dex reach of the log g, [Fe/H] bins
        scale = max(5.0, np.nanmax(np.abs(golden[f"{group}/{label}"])))
        assert_float32_equal(values, expected, scale, err_msg=column)


def test_calibration_is_on_by_default_and_recorded(inputs):
    model = read_model()
    raw = derive_labels(inputs["examples"], model=model, calibrate=False)
    table = derive_labels(inputs["examples"], model=model)
    if model.calibration is None:
        pytest.skip("the shipped model carries no calibration")
    assert table.meta["calibration_reference"].startswith("Gaia FGK Benchmark Stars")
    assert table.meta["calibration_n"] == 55
    assert not np.allclose(table["teff"].value, raw["teff"].value)
    np.testing.assert_array_equal(table["flags"], raw["flags"])
    assert raw.meta["calibration"].startswith("none: the raw model outputs")
