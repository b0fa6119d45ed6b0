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

import astropy.units as u
import numpy as np
from astropy.table import QTable, Table

from ..calibration import ChainedCalibration, TrendCalibration, WidthCalibration
from ..labels import get_label

__all__ = [
    "build_calibration",
    "check_calibration_config",
    "check_tables",
    "cross_fit",
    "fit_cross_fitted",
    "load_reference",
    "override_labels",
    "reference_stars",
]

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


def check_tables(cfg, required):
    """Raise `ValueError` naming the first table or key of ``required`` that ``cfg`` lacks.

    Parameters
    ----------
    cfg : dict
        The configuration.
    required : dict
        Table name -> the keys that table must have (the recipes' ``_REQUIRED``).

    Raises
    ------
    ValueError
        If a table is missing (``training configuration lacks the [table] table``) or
        lacks keys (``[table] lacks key, ...``).

    Examples
    --------
    >>> from stellarml.recipes.calibration import check_tables
    >>> required = {"model": ("name",), "preparation": ("dloglam",)}
    >>> check_tables({"model": {"name": "x"}, "preparation": {"dloglam": 3e-4}}, required)
    >>> try:
    ...     check_tables({"model": {"name": "x"}, "preparation": {}}, required)
    ... except ValueError as err:
    ...     print(err)
    [preparation] lacks dloglam
    """
    for section, keys in required.items():
        if section not in cfg:
            raise ValueError(f"training configuration lacks the [{section}] table")
        missing = [k for k in keys if k not in cfg[section]]
        if missing:
            raise ValueError(f"[{section}] lacks {', '.join(missing)}")


def check_calibration_config(cfg):
    """Raise `ValueError` naming what the ``[calibration]`` table gets wrong.

    A configuration without a ``[calibration]`` table passes.

    Parameters
    ----------
    cfg : dict
        The configuration.

    Raises
    ------
    ValueError
        For an unknown setting, a missing ``reference``, ``folds`` not an
        integer >= 2 or ``reference_weight`` not an integer >= 1.
    KeyError
        For an unknown label in the ``trend`` table (`stellarml.labels.get_label`).

    Examples
    --------
    >>> from stellarml.recipes.calibration import check_calibration_config
    >>> check_calibration_config({"calibration": {"reference": "gbs.csv", "folds": 11}})
    >>> try:
    ...     check_calibration_config({"calibration": {"reference": "gbs.csv", "folds": 1}})
    ... except ValueError as err:
    ...     print(err)
    [calibration] folds must be an integer >= 2, got 1
    """
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
        The configuration; ``[calibration] reference`` is the CSV and
        ``id_column`` (default ``"miles_id"``) its id column.
    labels : sequence of str
        The model's labels.

    Returns
    -------
    reference : `~astropy.table.QTable`
        ``id`` (MILES ids zero-padded to four digits), one Quantity column per
        label the CSV has (NaN = unknown) and ``<label>_err`` from the CSV's
        ``e_<label>`` or ``<label>_err`` columns (NaN when not given), in the
        label's unit (`stellarml.labels.get_label`: K for ``teff``, dex for
        ``logg`` and ``fe_h``).

    Raises
    ------
    ValueError
        If the CSV has no id column, lists a star twice or has none of the labels.

    Examples
    --------
    The Gaia FGK Benchmark Stars among the MILES training stars (their [Fe/H]
    has no quoted error):

    >>> from stellarml.recipes.calibration import load_reference
    >>> gbs = data_dir / "benchmarks" / "gbs_v3_miles_train.csv"
    >>> cfg = {"calibration": {"reference": str(gbs)}}
    >>> reference = load_reference(cfg, ["teff", "logg", "fe_h"])
    >>> len(reference), reference.colnames
    (55, ['id', 'teff', 'teff_err', 'logg', 'logg_err', 'fe_h', 'fe_h_err'])
    >>> print(reference["id"][0], reference["teff"][0], reference["teff_err"][0])
    0001 5445.0 K 30.0 K
    >>> print(reference["fe_h"][0], reference["fe_h_err"][0])
    -0.79 dex nan dex
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

    Parameters
    ----------
    cfg : dict
        The configuration (its ``[calibration]`` table: ``trend``, ``degree``, ``width``).
    labels : sequence of str
        The model's labels.

    Returns
    -------
    calibration : `~stellarml.calibration.LabelCalibration`
        Unfitted: a `~stellarml.calibration.TrendCalibration`, or a
        `~stellarml.calibration.ChainedCalibration` of it and the width step.

    Examples
    --------
    >>> from stellarml.recipes.calibration import build_calibration
    >>> calibration = build_calibration({"calibration": {"reference": "gbs.csv"}}, ["teff", "logg"])
    >>> print(calibration.summary())
    trend against a reference (teff: offset; logg: offset; degree 1), then interval widths
    scaled to 68 % coverage (teff, logg)
    >>> table = {"reference": "gbs.csv", "width": False, "trend": {"teff": ["teff"], "fe_h": []}}
    >>> print(build_calibration({"calibration": table}, ["teff", "fe_h"]).summary())
    trend against a reference (teff: offset + teff; fe_h: offset; degree 1)
    """
    c = cfg["calibration"]
    trend = {k: list(v) for k, v in dict(c.get("trend", {})).items()} or {n: [] for n in labels}
    steps = [TrendCalibration(trend, degree=int(c.get("degree", 1)))]
    if c.get("width", True):
        steps.append(WidthCalibration(labels=list(labels)))
    return steps[0] if len(steps) == 1 else ChainedCalibration(steps)


def override_labels(library, overrides, labels):
    """Replace library labels by ``overrides`` (in place); returns ``{label: [ids]}`` replaced.

    Parameters
    ----------
    library : `~stellarml.libraries.SpectralLibrary`
        With an ``id`` label column.
    overrides : `~astropy.table.Table` or None
        ``id`` and label columns (Quantities are converted to the library's
        unit, plain numbers are taken to be in it); NaN keeps the library's
        value, and ids the library does not have are ignored.
    labels : sequence of str
        The labels to replace (those ``overrides`` lacks are left alone).

    Returns
    -------
    replaced : dict
        Label -> the ids whose value was replaced (empty for ``overrides=None``).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from stellarml.libraries import SpectralLibrary
    >>> from stellarml.recipes.calibration import override_labels
    >>> lib = SpectralLibrary.from_arrays(
    ...     {"id": ["0001", "0003", "0004"], "teff": [5400.0, 4700.0, 6100.0]},
    ...     np.arange(5000.0, 5010.0), np.ones((3, 10)))
    >>> better = Table({"id": ["0003", "0004", "9999"], "teff": [4750.0, np.nan, 5000.0]})
    >>> override_labels(lib, better, ["teff", "logg"])
    {'teff': ['0003']}
    >>> print(lib.labels["teff"])
    [5400. 4750. 6100.] K
    """
    if overrides is None:
        return {}
    ids = [str(i) for i in np.asarray(library.labels["id"])]
    row_of = {i: k for k, i in enumerate(ids)}
    replaced = {}
    for label in labels:
        if label not in overrides.colnames:
            continue
        col = library.labels[label]
        values = np.array(getattr(col, "value", col), dtype=float)
        new = overrides[label]
        if getattr(new, "unit", None) is not None and hasattr(col, "unit"):
            new = u.Quantity(new).to_value(col.unit)
        new = np.asarray(new, dtype=float)  # plain numbers: already in the library's unit
        done = []
        for star, value in zip(overrides["id"], new, strict=True):
            if np.isfinite(value) and str(star) in row_of:
                values[row_of[str(star)]] = value
                done.append(str(star))
        library.labels[label] = values * col.unit if hasattr(col, "unit") else values
        replaced[label] = done
    return replaced


def cross_fit(train_without, spectra, reference, *, folds, seed, use_reference=False):
    """Out-of-fold posteriors of reference stars: each predicted by a model trained without it.

    The reference stars are split into ``folds`` folds (a permutation drawn
    with ``seed``). For each fold, ``train_without`` trains a model on the
    method's training stars minus that fold's (and, with ``use_reference``,
    with the other folds' reference labels replacing the training labels),
    and the model predicts the fold's spectra through
    `stellarml.derive_labels` (uncalibrated). Every reference star is
    therefore predicted as a new star would be. Shared by the methods'
    recipes (`stellarml.recipes.remap.cross_fitted_posteriors`,
    `stellarml.recipes.phdl`).

    Parameters
    ----------
    train_without : callable
        ``train_without(exclude_ids, overrides) -> (model, used_ids)``:
        ``exclude_ids`` the fold's MILES ids, ``overrides`` the other folds'
        rows of ``reference`` (or None); ``used_ids`` the ids the model was
        trained on (checked to exclude the fold).
    spectra : `~stellarml.libraries.SpectralLibrary`
        The reference stars' spectra (with an ``id`` label column).
    reference : `~astropy.table.Table`
        ``id`` and labels (`load_reference`).
    folds, seed : int
        Number of folds and seed of the fold assignment.
    use_reference : bool
        Pass the other folds' reference labels as ``overrides``.

    Returns
    -------
    posterior : `~stellarml.posterior.LabelPosterior`
        One row per reference star, in the order of ``reference``.
    fold : `numpy.ndarray`
        ``(n,)`` the fold of each star.
    table : `~astropy.table.QTable`
        The label table of the predictions (uncalibrated), in the same order.

    Raises
    ------
    ValueError
        If a reference star has no spectrum, or there are fewer stars than folds.
    RuntimeError
        If a fold's stars reached its model's training.

    Examples
    --------
    A tiny pre-trained model, and a ``train_without`` that returns it for every
    fold (a recipe's fine-tunes a copy without the fold's stars):

    >>> from astropy.table import Table
    >>> from stellarml.libraries import ObservedLibrary
    >>> from stellarml.recipes import train_from_config
    >>> from stellarml.recipes.calibration import cross_fit
    >>> model = train_from_config({
    ...     "model": {"method": "remap", "name": "tiny", "device": "cpu",
    ...               "training": {"max_epochs": 1}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "pretrain": {"emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz"),
    ...                  "n_spectra": 32},
    ... }, progress=False)
    >>> ids = ["0001", "0003", "0004", "0005"]
    >>> spectra = ObservedLibrary.from_miles(data_dir / "miles", require=["teff"], ids=ids)
    >>> def train_without(exclude_ids, overrides):
    ...     return model, []  # the model, and the ids it was trained on
    >>> posterior, fold, table = cross_fit(
    ...     train_without, spectra, Table({"id": ids}), folds=2, seed=0)
    >>> print(len(posterior), fold, table["teff"].unit)
    4 [...] K
    >>> sorted(fold.tolist())
    [0, 0, 1, 1]
    """
    from astropy.table import vstack

    from ..analysis import derive_labels
    from ..posterior import LabelPosterior

    ids = np.array([str(i) for i in reference["id"]])
    n = ids.size
    if n < folds:
        raise ValueError(f"{n} reference stars cannot make {folds} folds")
    found = [str(i) for i in np.asarray(spectra.labels["id"])]
    missing = sorted(set(ids) - set(found))
    if missing:
        raise ValueError(
            f"reference stars not in the MILES training list with spectrum and labels: {missing}"
        )
    order = np.random.default_rng(seed).permutation(n)
    fold = np.empty(n, dtype=int)
    posteriors, tables, rows = [], [], []
    for k, test in enumerate(np.array_split(order, folds)):
        test = np.sort(test)
        fold[test] = k
        overrides = reference[np.setdiff1d(np.arange(n), test)] if use_reference else None
        model, used = train_without(list(ids[test]), overrides)
        seen = set(used) & set(ids[test])
        if seen:
            raise RuntimeError(f"fold {k}: held-out stars reached training: {sorted(seen)}")
        held = spectra[np.array([found.index(i) for i in ids[test]])]
        table, posterior = derive_labels(
            held.to_spectrum(), model=model, calibrate=False, return_posterior=True
        )
        posteriors.append(posterior)
        tables.append(table)
        rows.append(test)
    order_back = np.argsort(np.concatenate(rows))
    posterior = LabelPosterior.concatenate(posteriors)[order_back]
    table = vstack(tables, metadata_conflicts="silent")[order_back]
    return posterior, fold, table


def reference_stars(cfg, labels, exclude_ids=None):
    """The ``[calibration]`` reference stars (`load_reference`) without ``exclude_ids``.

    Parameters
    ----------
    cfg : dict
        The configuration.
    labels : sequence of str
        The model's labels.
    exclude_ids : sequence of str or int, optional
        MILES ids to leave out (e.g. stars held out of fine-tuning); ``"1"``
        and ``1`` mean ``"0001"``.

    Returns
    -------
    reference : `~astropy.table.QTable`
        As `load_reference` returns it, less those rows.

    Examples
    --------
    >>> from stellarml.recipes.calibration import reference_stars
    >>> gbs = data_dir / "benchmarks" / "gbs_v3_miles_train.csv"
    >>> cfg = {"calibration": {"reference": str(gbs)}}
    >>> reference = reference_stars(cfg, ["teff"], exclude_ids=["1", "0016"])
    >>> len(reference), reference.colnames, str(reference["id"][0])
    (53, ['id', 'teff', 'teff_err'], '0025')
    """
    reference = load_reference(cfg, labels)
    if exclude_ids:
        excluded = [_miles_id(i) for i in exclude_ids]
        keep = ~np.isin(np.asarray(reference["id"]).astype(str), excluded)
        reference = reference[keep]
    return reference


def fit_cross_fitted(cfg, labels, reference, posterior, fold):
    """The ``[calibration]`` correction fitted on out-of-fold posteriors (`cross_fit`).

    Parameters
    ----------
    cfg : dict
        The configuration.
    labels : sequence of str
        The model's labels.
    reference : `~astropy.table.Table`
        The reference stars, in the order of ``posterior``.
    posterior : `~stellarml.posterior.LabelPosterior`
        Their out-of-fold posteriors.
    fold : `numpy.ndarray`
        The fold of each star.

    Returns
    -------
    calibration : `~stellarml.calibration.LabelCalibration`
        Fitted, with the cross-fitting recorded in its provenance.

    Examples
    --------
    Six stars whose out-of-fold predictions are 100 K too cool:

    >>> import numpy as np, astropy.units as u
    >>> from astropy.table import QTable
    >>> from stellarml.posterior import GaussianPosterior
    >>> from stellarml.recipes.calibration import fit_cross_fitted
    >>> teff = np.array([4500.0, 5000.0, 5500.0, 6000.0, 6500.0, 5200.0])
    >>> posterior = GaussianPosterior((teff - 100.0)[:, None], np.full((6, 1), 50.0**2), ["teff"])
    >>> reference = QTable({"id": ["0001", "0003", "0004", "0005", "0006", "0008"],
    ...                     "teff": teff * u.K})
    >>> fold = np.array([0, 1, 0, 1, 0, 1])
    >>> cfg = {"calibration": {"reference": "toy.csv", "name": "toy", "folds": 2,
    ...                        "width": False, "trend": {"teff": []}}}
    >>> calibration = fit_cross_fitted(cfg, ["teff"], reference, posterior, fold)
    >>> print(calibration.summary(), np.round(calibration.coefficients_["teff"], 6))
    trend against a reference (teff: offset; degree 1) [100.]
    >>> calibration.provenance_["cross_fitting"]["fold_of_star"]["0003"]
    1
    """
    c = cfg["calibration"]
    calibration = build_calibration(cfg, labels)
    calibration.fit(
        posterior, reference, ids=np.asarray(reference["id"]), name=c.get("name", c["reference"])
    )
    calibration.provenance_["cross_fitting"] = {
        "folds": int(c.get("folds", 5)),
        "seed": int(c.get("seed", 0)),
        "fine_tune_on_reference": bool(c.get("fine_tune_on_reference", False)),
        "reference_weight": int(c.get("reference_weight", 1)),
        "fold_of_star": dict(
            zip(np.asarray(reference["id"]).astype(str).tolist(), fold.tolist(), strict=True)
        ),
    }
    return calibration
