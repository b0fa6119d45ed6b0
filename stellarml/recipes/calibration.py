"""The ``[calibration]`` table of a training configuration: reference stars and the correction.

A model is calibrated on reference stars whose labels are known better than
its training labels (the Gaia FGK Benchmark Stars for the default model). The
table names them and the correction::

    [calibration]
    reference = "{data_dir}/benchmarks/gbs_v3_miles_train.csv"  # CSV: id column, labels, errors
    name = "Gaia FGK Benchmark Stars v3"     # recorded in models and tables
    id_column = "miles_id"                   # default "miles_id"
    folds = 11                               # cross-fitting folds over the reference stars
    seed = 42
    fine_tune_on_reference = false           # fine-tune on the reference labels where known
    reference_weight = 1                     # ... each such star counted this many times
    degree = 1
    width = true                             # also scale interval widths to 68 % coverage
    [calibration.trend]                      # label = [predictor labels]; [] = offset only
    teff = ["teff"]
    logg = []
    fe_h = []

The correction is fitted on out-of-fold predictions of the reference stars
(each star predicted by a model fine-tuned without it), so that it corrects
the model as it behaves on stars it has not seen; see the method's recipe
(e.g. `stellarml.recipes.remap.calibrate`).
"""

import numpy as np
from astropy.table import QTable, Table

from ..calibration import ChainedCalibration, TrendCalibration, WidthCalibration
from ..labels import get_label

__all__ = ["build_calibration", "check_calibration_config", "load_reference"]

_KNOWN = {
    "reference",
    "name",
    "id_column",
    "folds",
    "seed",
    "fine_tune_on_reference",
    "reference_weight",
    "degree",
    "width",
    "trend",
}


def check_calibration_config(cfg):
    """Raise `ValueError` naming what the ``[calibration]`` table gets wrong."""
    c = cfg.get("calibration")
    if c is None:
        return
    unknown = sorted(set(c) - _KNOWN)
    if unknown:
        raise ValueError(f"unknown [calibration] settings {unknown}; known: {sorted(_KNOWN)}")
    if "reference" not in c:
        raise ValueError("[calibration] lacks reference (a CSV of reference labels)")
    folds = c.get("folds", 5)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"[calibration] folds must be an integer >= 2, got {folds!r}")
    weight = c.get("reference_weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
        raise ValueError(f"[calibration] reference_weight must be an integer >= 1, got {weight!r}")
    for label, predictors in dict(c.get("trend", {})).items():
        for name in (label, *predictors):
            get_label(name)


def _miles_id(value):
    text = str(value).strip()
    return text.zfill(4) if text.isdigit() else text


def load_reference(cfg, labels):
    """The reference stars of the ``[calibration]`` table.

    Parameters
    ----------
    cfg : dict
        The configuration.
    labels : sequence of str
        The model's labels.

    Returns
    -------
    reference : `~astropy.table.QTable`
        ``id`` (MILES ids zero-padded to four digits), one Quantity column per
        label the CSV has (NaN = unknown) and ``<label>_err`` from the CSV's
        ``e_<label>`` or ``<label>_err`` columns (NaN when not given).
    """
    c = cfg["calibration"]
    id_column = c.get("id_column", "miles_id")
    table = Table.read(c["reference"], format="ascii.csv", converters={id_column: str})
    if id_column not in table.colnames:
        raise ValueError(f"{c['reference']} has no id column {id_column!r}")
    out = QTable()
    out["id"] = [_miles_id(v) for v in table[id_column]]
    if len(set(out["id"])) != len(out):
        raise ValueError(f"{c['reference']} lists some stars twice")

    def floats(col):
        return np.array(np.ma.filled(np.ma.asarray(col, dtype=float), np.nan), dtype=float)

    for label in labels:
        if label not in table.colnames:
            continue
        unit = get_label(label).unit
        out[label] = floats(table[label]) * unit
        for name in (f"e_{label}", f"{label}_err"):
            if name in table.colnames:
                out[f"{label}_err"] = floats(table[name]) * unit
                break
        else:
            out[f"{label}_err"] = np.full(len(table), np.nan) * unit
    if not any(label in out.colnames for label in labels):
        raise ValueError(f"{c['reference']} has no column for any of the labels {list(labels)}")
    return out


def build_calibration(cfg, labels):
    """The unfitted `~stellarml.calibration.LabelCalibration` the ``[calibration]`` table asks for.

    A `~stellarml.calibration.TrendCalibration` of the ``trend`` table (by
    default an offset for every label), followed by a
    `~stellarml.calibration.WidthCalibration` unless ``width = false``.
    """
    c = cfg["calibration"]
    trend = {k: list(v) for k, v in dict(c.get("trend", {})).items()} or {n: [] for n in labels}
    steps = [TrendCalibration(trend, degree=int(c.get("degree", 1)))]
    if c.get("width", True):
        steps.append(WidthCalibration(labels=list(labels)))
    return steps[0] if len(steps) == 1 else ChainedCalibration(steps)
