"""The ``[calibration]`` table's helpers: reference stars and label overrides."""

import astropy.units as u
import numpy as np
from astropy.table import QTable, Table

from stellarml.libraries import SpectralLibrary
from stellarml.recipes.calibration import override_labels, reference_stars


def _library():
    return SpectralLibrary.from_arrays(
        {"id": ["0001", "0003", "0004"], "teff": [5400.0, 4700.0, 6100.0]},
        np.arange(5000.0, 5010.0),
        np.ones((3, 10)),
    )


def test_override_labels_takes_plain_numbers_and_quantities():
    # plain numbers (a Table column without a unit) are in the library's unit; this raised
    # AttributeError ('Column' object has no attribute 'to_value') before
    lib = _library()
    plain = Table({"id": ["0003", "0004", "9999"], "teff": [4750.0, np.nan, 5000.0]})
    assert override_labels(lib, plain, ["teff", "logg"]) == {"teff": ["0003"]}
    np.testing.assert_allclose(lib.labels["teff"].to_value(u.K), [5400.0, 4750.0, 6100.0])
    # a Column with a unit and a Quantity column are converted
    lib = _library()
    with_unit = Table({"id": ["0001"], "teff": [5.5]})
    with_unit["teff"].unit = u.kK
    assert override_labels(lib, with_unit, ["teff"]) == {"teff": ["0001"]}
    assert lib.labels["teff"][0] == 5500.0 * u.K
    lib = _library()
    quantity = QTable({"id": ["0004"], "teff": [6000.0] * u.K})
    assert override_labels(lib, quantity, ["teff"]) == {"teff": ["0004"]}
    assert lib.labels["teff"][2] == 6000.0 * u.K
    assert override_labels(lib, None, ["teff"]) == {}


def test_reference_stars_exclude_unpadded_ids(tmp_path):
    # load_reference zero-pads MILES ids; exclude_ids = ["1"] left star 0001 in before
    path = tmp_path / "reference.csv"
    Table({"miles_id": ["0001", "0016", "25"], "teff": [5445.0, 4951.0, 5297.0]}).write(
        path, format="ascii.csv"
    )
    cfg = {"calibration": {"reference": str(path)}}
    assert list(reference_stars(cfg, ["teff"])["id"]) == ["0001", "0016", "0025"]
    kept = reference_stars(cfg, ["teff"], exclude_ids=["1", 16])
    assert list(kept["id"]) == ["0025"]
