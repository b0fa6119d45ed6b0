"""The emulator (PhDLspec-style) recipe: a configuration in, a trained emulator model out.

``stellarml train CONFIG`` with ``[model] method = "phdl"``. An emulator
(labels → prepared, pseudo-continuum-normalised flux) is trained on
*observed* spectra with known labels (the MILES training stars), with the
gradient prior of PhDLspec: its Jacobian is pulled towards the differential
spectra of a synthetic library at reference points, so that the physics of
the library holds where the observed stars are sparse. Spectra are then
fitted with it (`stellarml.fitting`). The grid and preparation are the REMAP
recipe's (`stellarml.recipes.remap.build_preparation`), so the models of one
domain read spectra identically. Paths may use ``{data_dir}``.

``[model]``
    ``method = "phdl"``, ``name``, ``labels``, ``seed``, ``fitter``
    (``"gradient"``, ``"cmaes"`` or ``"mcmc"``), and the tables
    ``[model.box]`` (``label = [lo, hi]``: the emulator's training box;
    training stars outside it are left out, fits are held inside it),
    ``[model.emulator]`` (``class``, a key of
    `stellarml.models.emulator.EMULATORS` other than ``PayneEmulator``, and
    its architecture arguments), ``[model.training]``
    (`~stellarml.training.train_emulator` arguments), ``[model.fit]``
    (``continuum_degree``, ``rv``, and ``[model.fit.<fitter>]`` settings).
``[preparation]``
    As in `stellarml.recipes.remap`.
``[library]``
    The labelled observed training spectra: ``name = "miles"`` (the MILES
    training list, only), ``directory``, ``noise_floor`` (a standard
    deviation in normalised flux added in quadrature to each star's DER_SNR
    noise estimate in the training weights, so that no star dominates),
    ``ids`` / ``exclude_ids`` (MILES ids to restrict to / leave out).
``[gradient_prior]`` (optional; absent or ``weight = 0``: no prior)
    ``emulator`` (a polynomial library npz, as ``[pretrain]`` of REMAP),
    ``n_points`` reference points drawn with ``design`` (``"training"``: near
    the library's own training labels) inside the box, ``seed``, ``step``
    (finite-difference half-step, fraction of the box) and ``weight``
    (``λ_g`` of `~stellarml.training.train_emulator`). The library is
    degraded to the model's resolution and its spectra are prepared exactly
    as observed ones, so its differential spectra are derivatives of the
    same normalised flux the emulator gives.
``[model_error]`` (optional)
    ``folds`` and ``seed``: the emulator's own error per pixel is estimated
    from k-fold residuals of the training stars (each star's residual from
    an emulator trained without its fold, its noise subtracted in
    quadrature) and stored as the model's ``model_error``.
``[calibration]`` (optional)
    As in `stellarml.recipes.calibration`; the folds are trainings without
    each fold of reference stars (`stellarml.recipes.calibration.cross_fit`).
"""

import copy

import numpy as np

from ..io.asdf.model_io import write_model
from .calibration import (
    check_calibration_config,
    check_tables,
    cross_fit,
    fit_cross_fitted,
    override_labels,
    reference_stars,
)
from .remap import build_preparation, degrade_to_preparation

__all__ = [
    "build_emulator",
    "build_model",
    "calibrate",
    "check_config",
    "cross_fitted_posteriors",
    "estimate_model_error",
    "gradient_prior",
    "train",
    "train_emulator_on",
    "training_stars",
]

_REQUIRED = {
    "model": ("name", "box"),
    "preparation": ("dloglam",),
    "library": (),
}


def check_config(cfg):
    """Raise `ValueError` naming what an emulator configuration lacks or gets wrong.

    `stellarml.recipes.load_config` calls it for ``[model] method = "phdl"``.

    Parameters
    ----------
    cfg : dict
        The configuration: ``[model]`` with ``name``, ``labels``, ``[model.box]``
        (``[lo, hi]`` per label, in the label's unit), ``[model.emulator]``
        (``class``: ``"MLPEmulator"`` or ``"TransformerEmulator"``, and its
        settings), ``[model.training]``, ``[model.fit]``; ``[preparation]``;
        ``[library]`` (the MILES training list); optional ``[gradient_prior]``,
        ``[model_error]`` and ``[calibration]``.

    Raises
    ------
    ValueError
        For a missing table or key, a label without its box, an empty box, an
        emulator class that cannot be trained, an unknown fitter or library.

    Examples
    --------
    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import build_preparation
    >>> cfg = load_config({
    ...     "model": {"method": "phdl", "name": "tiny-phdl", "labels": ["teff", "logg", "fe_h"],
    ...               "box": {"teff": [3800.0, 7000.0], "logg": [0.5, 5.0], "fe_h": [-2.0, 0.5]},
    ...               "emulator": {"class": "MLPEmulator", "hidden": [8]},
    ...               "training": {"epochs": 2, "batch_size": 8}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "library": {"directory": str(data_dir / "miles"),
    ...                 "ids": ["0001", "0003", "0004", "0010", "0016", "0021"]},
    ...     "gradient_prior": {
    ...         "n_points": 4, "weight": 1e-3,
    ...         "emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz")},
    ... })
    >>> from stellarml.recipes.phdl import check_config
    >>> cfg["model"]["emulator"]["class"] = "PayneEmulator"  # a fixed, published emulator
    >>> try:
    ...     check_config(cfg)
    ... except ValueError as err:
    ...     print(err)
    [model.emulator] class must be one of ['MLPEmulator', ...], got 'PayneEmulator'
    """
    from ..fitting import FITTERS
    from ..models.emulator import EMULATORS

    check_tables(cfg, _REQUIRED)
    m = cfg["model"]
    labels = tuple(m.get("labels", ("teff", "logg", "fe_h")))
    box = m["box"]
    absent = [name for name in labels if name not in box]
    if absent:
        raise ValueError(f"[model.box] lacks {', '.join(absent)}")
    for name in labels:
        lo, hi = (float(v) for v in box[name])
        if not lo < hi:
            raise ValueError(f"[model.box] {name} must be [lo, hi] with lo < hi, got {box[name]}")
    cls = dict(m.get("emulator", {})).get("class", "MLPEmulator")
    if cls not in EMULATORS or cls == "PayneEmulator":
        trainable = [k for k in EMULATORS if k != "PayneEmulator"]
        raise ValueError(f"[model.emulator] class must be one of {trainable}, got {cls!r}")
    if m.get("fitter", "gradient") not in FITTERS:
        raise ValueError(f"[model] fitter must be one of {list(FITTERS)}, got {m.get('fitter')!r}")
    if cfg["library"].get("name", "miles") != "miles":
        raise ValueError(f"unsupported [library] name {cfg['library'].get('name')!r}; use 'miles'")
    check_calibration_config(cfg)


def _labels(cfg):
    return tuple(cfg["model"].get("labels", ("teff", "logg", "fe_h")))


def _box(cfg):
    labels = _labels(cfg)
    lo = np.array([float(cfg["model"]["box"][n][0]) for n in labels])
    hi = np.array([float(cfg["model"]["box"][n][1]) for n in labels])
    return lo, hi


def build_emulator(cfg, preparation, *, seed=None):
    """A new (untrained) emulator of ``[model.emulator]`` on the preparation grid.

    Parameters
    ----------
    cfg : dict
        The configuration (``[model.emulator]``, ``[model.box]``, ``[model] seed``).
    preparation : `~stellarml.spectra.PreparationSettings`
        The model's grid: the emulator predicts flux on its pixels.
    seed : int, optional
        Seed of the initial weights (default ``[model] seed``, else 0).

    Returns
    -------
    emulator : `~stellarml.models.emulator.SpectrumEmulator`
        Labels scaled to the box, untrained.

    Examples
    --------
    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import build_preparation
    >>> cfg = load_config({
    ...     "model": {"method": "phdl", "name": "tiny-phdl", "labels": ["teff", "logg", "fe_h"],
    ...               "box": {"teff": [3800.0, 7000.0], "logg": [0.5, 5.0], "fe_h": [-2.0, 0.5]},
    ...               "emulator": {"class": "MLPEmulator", "hidden": [8]},
    ...               "training": {"epochs": 2, "batch_size": 8}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "library": {"directory": str(data_dir / "miles"),
    ...                 "ids": ["0001", "0003", "0004", "0010", "0016", "0021"]},
    ...     "gradient_prior": {
    ...         "n_points": 4, "weight": 1e-3,
    ...         "emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz")},
    ... })
    >>> preparation = build_preparation(cfg)
    >>> from stellarml.recipes.phdl import build_emulator
    >>> emulator = build_emulator(cfg, preparation)
    >>> type(emulator).__name__, emulator.label_names, emulator.n_pixels
    ('MLPEmulator', ('teff', 'logg', 'fe_h'), 195)
    """
    import torch

    from ..models.emulator import EMULATORS

    spec = dict(cfg["model"].get("emulator", {}))
    cls = EMULATORS[spec.pop("class", "MLPEmulator")]
    for key, value in list(spec.items()):
        if isinstance(value, list):
            spec[key] = tuple(value)
    lo, hi = _box(cfg)
    torch.manual_seed(int(cfg["model"].get("seed", 0) if seed is None else seed))
    wave = preparation.wavelength.to_value("AA")
    return cls(_labels(cfg), lo, hi, wave, **spec)


def training_stars(cfg, preparation, *, exclude_ids=None, overrides=None, override_weight=1):
    """The labelled observed training spectra, prepared, with their training weights.

    Parameters
    ----------
    cfg : dict
        The configuration (``[library]``, ``[model.box]``).
    preparation : `~stellarml.spectra.PreparationSettings`
        How the spectra are prepared (the model's grid).
    exclude_ids : sequence of str, optional
        MILES ids left out (with those of ``[library] exclude_ids``).
    overrides : `~astropy.table.Table`, optional
        ``id`` and label columns replacing the library's labels (e.g.
        benchmark-star labels; NaN keeps the library's).
    override_weight : int, optional
        Weight of each star whose labels were replaced.

    Returns
    -------
    stars : dict
        ``ids`` ``(n,)``, ``labels`` ``(n, L)`` physical, ``flux`` ``(n, npix)``
        (1 where there is no data), ``weights`` ``(n, npix)`` (0 where there is
        no data), ``ivar`` ``(n, npix)`` (the noise estimate), and the record
        ``outside_box`` / ``unusable`` (ids left out, and why).

    Examples
    --------
    Star 0021 (a hot star) lies outside the box: it is recorded, not lost.

    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import build_preparation
    >>> cfg = load_config({
    ...     "model": {"method": "phdl", "name": "tiny-phdl", "labels": ["teff", "logg", "fe_h"],
    ...               "box": {"teff": [3800.0, 7000.0], "logg": [0.5, 5.0], "fe_h": [-2.0, 0.5]},
    ...               "emulator": {"class": "MLPEmulator", "hidden": [8]},
    ...               "training": {"epochs": 2, "batch_size": 8}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "library": {"directory": str(data_dir / "miles"),
    ...                 "ids": ["0001", "0003", "0004", "0010", "0016", "0021"]},
    ...     "gradient_prior": {
    ...         "n_points": 4, "weight": 1e-3,
    ...         "emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz")},
    ... })
    >>> preparation = build_preparation(cfg)
    >>> from stellarml.recipes.phdl import training_stars
    >>> stars = training_stars(cfg, preparation, exclude_ids=["4"])
    >>> stars["ids"].tolist(), stars["flux"].shape, stars["outside_box"]
    (['0010', '0016', '0001', '0003'], (4, 195), ['0021'])
    """
    from ..flags import FATAL
    from ..libraries import ObservedLibrary
    from ..spectra.noise import estimate_missing_noise

    lib_cfg = cfg["library"]
    labels = _labels(cfg)
    library = ObservedLibrary.from_miles(
        lib_cfg.get("directory"), require=labels, ids=lib_cfg.get("ids")
    )
    excluded = {str(i).zfill(4) for i in [*lib_cfg.get("exclude_ids", []), *(exclude_ids or [])]}
    if excluded:
        library = library[~np.isin(np.asarray(library.labels["id"]), sorted(excluded))]
    replaced = override_labels(library, overrides, labels)
    values = library.label_array(labels)
    lo, hi = _box(cfg)
    inside = np.all((values >= lo) & (values <= hi), axis=1)
    ids = np.array([str(i) for i in np.asarray(library.labels["id"])])
    outside = ids[~inside].tolist()
    library, values, ids = library[inside], values[inside], ids[inside]
    batch = estimate_missing_noise(library.prepare(preparation))
    usable = (np.asarray(batch.flags, dtype=np.int64) & int(FATAL)) == 0
    unusable = ids[~usable].tolist()
    ivar = np.asarray(batch.ivar[usable], dtype=np.float64)
    flux = np.where(ivar > 0, np.asarray(batch.flux[usable], dtype=np.float64), 1.0)
    floor = float(lib_cfg.get("noise_floor", 0.0))
    weights = np.where(ivar > 0, ivar / (1.0 + ivar * floor**2), 0.0)
    ids, values = ids[usable], values[usable]
    weight = int(override_weight)
    if weight < 1:
        raise ValueError(f"override_weight must be a positive integer, got {override_weight!r}")
    done = sorted({i for v in replaced.values() for i in v})
    weights[np.isin(ids, done)] *= weight
    return {
        "ids": ids,
        "labels": values,
        "flux": flux,
        "weights": weights,
        "ivar": ivar,
        "outside_box": outside,
        "unusable": unusable,
        "label_overrides": replaced,
        "override_weight": weight,
    }


def gradient_prior(cfg, preparation):
    """Reference labels and differential spectra of the ``[gradient_prior]`` library.

    The library (a polynomial emulator file) is degraded to the model's
    resolution and grid; ``n_points`` reference labels are drawn inside both the
    box and the library's range, and their ``d flux / d label`` come from
    finite differences (``step`` in scaled units).

    Parameters
    ----------
    cfg : dict
        The configuration (``[gradient_prior]``: ``emulator``, ``n_points``,
        ``weight``, ``seed``, ``design``, ``step``, ``wavelength_margin`` [Angstrom]).
    preparation : `~stellarml.spectra.PreparationSettings`
        The model's grid.

    Returns
    -------
    labels : `numpy.ndarray` or None
        ``(m, L)`` physical reference labels (None without a prior).
    jacobians : `numpy.ndarray` or None
        ``(m, npix, L)`` ``d flux / d x`` per scaled label unit of the box.

    Raises
    ------
    ValueError
        If the library lacks one of the model's labels.

    Examples
    --------
    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import build_preparation
    >>> cfg = load_config({
    ...     "model": {"method": "phdl", "name": "tiny-phdl", "labels": ["teff", "logg", "fe_h"],
    ...               "box": {"teff": [3800.0, 7000.0], "logg": [0.5, 5.0], "fe_h": [-2.0, 0.5]},
    ...               "emulator": {"class": "MLPEmulator", "hidden": [8]},
    ...               "training": {"epochs": 2, "batch_size": 8}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "library": {"directory": str(data_dir / "miles"),
    ...                 "ids": ["0001", "0003", "0004", "0010", "0016", "0021"]},
    ...     "gradient_prior": {
    ...         "n_points": 4, "weight": 1e-3,
    ...         "emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz")},
    ... })
    >>> preparation = build_preparation(cfg)
    >>> from stellarml.recipes.phdl import gradient_prior
    >>> labels, jacobians = gradient_prior(cfg, preparation)
    >>> labels.shape, jacobians.shape
    ((4, 3), (4, 195, 3))
    """

    from ..libraries import PolynomialEmulatorLibrary
    from ..training import reference_jacobians

    g = cfg.get("gradient_prior")
    if not g or float(g.get("weight", 0.0)) == 0.0:
        return None, None
    library = PolynomialEmulatorLibrary.from_file(g["emulator"])
    missing = [n for n in _labels(cfg) if n not in library.label_names]
    if missing:
        raise ValueError(
            f"the gradient-prior library {g['emulator']} has no {missing}: it cannot give "
            "their differential spectra"
        )
    degraded, _ = degrade_to_preparation(
        library, preparation, float(g.get("wavelength_margin", 60.0))
    )
    lo, hi = _box(cfg)
    names = _labels(cfg)
    # reference points where both the box and the library are: the library
    # gives no physics beyond its own training range
    own = degraded.label_ranges
    ranges = {
        n: (max(float(a), own[n][0]), min(float(b), own[n][1]))
        for n, a, b in zip(names, lo, hi, strict=True)
    }
    design = g.get("design", "training")
    points = degraded.sample_labels(
        int(g.get("n_points", 400)), ranges=ranges, design=design, seed=int(g.get("seed", 0))
    )
    points = np.column_stack([np.asarray(points[n], dtype=float) for n in names])
    order = [degraded.label_names.index(n) for n in names]

    def generate(values):
        full = np.empty((values.shape[0], len(degraded.label_names)))
        full[:, order] = values
        spectra = degraded.generate(full, extrapolate=True)
        return np.asarray(spectra.prepare(preparation).flux, dtype=np.float64)

    jac = reference_jacobians(
        generate, points, (lo, hi), step=float(g.get("step", 1e-2)), method="fd"
    )
    return points, jac


def train_emulator_on(cfg, preparation, stars, reference, *, seed=None):
    """A new emulator of ``cfg`` trained on ``stars`` (`training_stars`) with ``reference``.

    Parameters
    ----------
    cfg : dict
        The configuration (``[model.training]`` goes to
        `~stellarml.training.train_emulator`; ``[gradient_prior] weight``).
    preparation : `~stellarml.spectra.PreparationSettings`
        The model's grid.
    stars : dict
        ``labels``, ``flux`` and ``weights``, as `training_stars` returns them.
    reference : tuple
        The gradient prior (`gradient_prior`); ``(None, None)`` trains without.
    seed : int, optional
        Seed of weights and batches (default ``[model] seed``, else 0).

    Returns
    -------
    emulator : `~stellarml.models.emulator.SpectrumEmulator`
    history : dict
        `~stellarml.training.train_emulator`'s record.

    Examples
    --------
    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import build_preparation
    >>> cfg = load_config({
    ...     "model": {"method": "phdl", "name": "tiny-phdl", "labels": ["teff", "logg", "fe_h"],
    ...               "box": {"teff": [3800.0, 7000.0], "logg": [0.5, 5.0], "fe_h": [-2.0, 0.5]},
    ...               "emulator": {"class": "MLPEmulator", "hidden": [8]},
    ...               "training": {"epochs": 2, "batch_size": 8}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "library": {"directory": str(data_dir / "miles"),
    ...                 "ids": ["0001", "0003", "0004", "0010", "0016", "0021"]},
    ...     "gradient_prior": {
    ...         "n_points": 4, "weight": 1e-3,
    ...         "emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz")},
    ... })
    >>> preparation = build_preparation(cfg)
    >>> from stellarml.recipes.phdl import gradient_prior, train_emulator_on, training_stars
    >>> stars = training_stars(cfg, preparation)
    >>> emulator, history = train_emulator_on(cfg, preparation, stars, (None, None))
    >>> len(history["loss"]), emulator.training
    (2, False)
    """
    from ..training import train_emulator

    seed = int(cfg["model"].get("seed", 0) if seed is None else seed)
    emulator = build_emulator(cfg, preparation, seed=seed)
    ref_labels, ref_jac = reference
    weight = 0.0 if ref_labels is None else float(cfg["gradient_prior"].get("weight", 0.0))
    settings = dict(cfg["model"].get("training", {}))
    history = train_emulator(
        emulator,
        stars["labels"],
        stars["flux"],
        weights=stars["weights"],
        reference_labels=ref_labels,
        reference_jacobians=ref_jac,
        gradient_weight=weight,
        seed=seed,
        **settings,
    )
    emulator.eval()
    return emulator, history


def build_model(cfg, preparation, emulator, *, model_error=None):
    """The `~stellarml.models.emulator.EmulatorModel` of a trained emulator.

    Parameters
    ----------
    cfg : dict
        The configuration (``[model] name`` and ``fitter``; ``[model.fit]``:
        ``continuum_degree``, ``rv``, and the ``gradient``/``cmaes``/``mcmc``
        fitter settings).
    preparation : `~stellarml.spectra.PreparationSettings`
        How spectra are prepared for it.
    emulator : `~stellarml.models.emulator.SpectrumEmulator`
        The trained emulator.
    model_error : array-like, optional
        ``(npix,)`` emulator error [normalised flux] added to the noise in fits
        (`estimate_model_error`).

    Returns
    -------
    model : `~stellarml.models.emulator.EmulatorModel`
        Not calibrated.

    Examples
    --------
    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import build_preparation
    >>> cfg = load_config({
    ...     "model": {"method": "phdl", "name": "tiny-phdl", "labels": ["teff", "logg", "fe_h"],
    ...               "box": {"teff": [3800.0, 7000.0], "logg": [0.5, 5.0], "fe_h": [-2.0, 0.5]},
    ...               "emulator": {"class": "MLPEmulator", "hidden": [8]},
    ...               "training": {"epochs": 2, "batch_size": 8}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "library": {"directory": str(data_dir / "miles"),
    ...                 "ids": ["0001", "0003", "0004", "0010", "0016", "0021"]},
    ...     "gradient_prior": {
    ...         "n_points": 4, "weight": 1e-3,
    ...         "emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz")},
    ... })
    >>> preparation = build_preparation(cfg)
    >>> from stellarml.recipes.phdl import build_emulator, build_model
    >>> model = build_model(cfg, preparation, build_emulator(cfg, preparation))
    >>> model.name, model.label_names, model.fitter
    ('tiny-phdl', ('teff', 'logg', 'fe_h'), 'gradient')
    """
    from ..models.emulator import EmulatorModel

    m = cfg["model"]
    fit = dict(m.get("fit", {}))
    fitter = m.get("fitter", "gradient")
    settings = {k: dict(fit.pop(k)) for k in ("gradient", "cmaes", "mcmc") if k in fit}
    options = {k: fit[k] for k in ("continuum_degree", "rv") if k in fit}
    if "rv" in options and isinstance(options["rv"], list):
        options["rv"] = tuple(options["rv"])
    if model_error is not None:
        options["model_error"] = np.asarray(model_error, dtype=np.float64)
    return EmulatorModel(
        emulator,
        name=m["name"],
        fitter=fitter,
        fitter_settings=settings,
        fit_options=options,
        preparation=preparation,
    )


def _residual_error(emulator, stars):
    """Per-pixel emulator error from residuals of stars it was not trained on."""
    import torch

    with torch.no_grad():
        x = emulator.scale(torch.as_tensor(stars["labels"], dtype=torch.float32))
        model = emulator(x).double().numpy()
    ivar = stars["ivar"]
    good = ivar > 0
    excess = np.where(good, (stars["flux"] - model) ** 2 - 1.0 / np.where(good, ivar, 1.0), np.nan)
    return excess


def estimate_model_error(cfg, preparation, stars, reference, *, progress=False):
    """The emulator's own error per pixel, from k-fold residuals of the training stars.

    Each star's residual comes from an emulator trained without its fold;
    its estimated noise variance is subtracted, and the per-pixel error is
    the square root of the median excess variance (0 where negative).

    Parameters
    ----------
    cfg : dict
        The configuration (``[model_error]``: ``folds``, ``seed``).
    preparation : `~stellarml.spectra.PreparationSettings`
        The model's grid.
    stars : dict
        The training stars (`training_stars`).
    reference : tuple
        The gradient prior (`gradient_prior`).
    progress : bool, optional
        Print a line per fold.

    Returns
    -------
    sigma : `numpy.ndarray`
        ``(npix,)`` [normalised flux].
    record : dict
        ``folds``, ``seed`` and the ``median`` error [normalised flux].

    Examples
    --------
    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import build_preparation
    >>> cfg = load_config({
    ...     "model": {"method": "phdl", "name": "tiny-phdl", "labels": ["teff", "logg", "fe_h"],
    ...               "box": {"teff": [3800.0, 7000.0], "logg": [0.5, 5.0], "fe_h": [-2.0, 0.5]},
    ...               "emulator": {"class": "MLPEmulator", "hidden": [8]},
    ...               "training": {"epochs": 2, "batch_size": 8}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "library": {"directory": str(data_dir / "miles"),
    ...                 "ids": ["0001", "0003", "0004", "0010", "0016", "0021"]},
    ...     "gradient_prior": {
    ...         "n_points": 4, "weight": 1e-3,
    ...         "emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz")},
    ... })
    >>> preparation = build_preparation(cfg)
    >>> from stellarml.recipes.phdl import estimate_model_error, training_stars
    >>> cfg["model_error"] = {"folds": 2, "seed": 0}
    >>> stars = training_stars(cfg, preparation)
    >>> sigma, record = estimate_model_error(cfg, preparation, stars, (None, None))
    >>> sigma.shape, bool((sigma >= 0).all()), record["folds"]
    ((195,), True, 2)
    """
    me = dict(cfg.get("model_error") or {})
    folds = int(me.get("folds", 5))
    seed = int(me.get("seed", 0))
    n = len(stars["ids"])
    order = np.random.default_rng(seed).permutation(n)
    excess = np.full(stars["flux"].shape, np.nan)
    for k, test in enumerate(np.array_split(order, folds)):
        train_rows = np.setdiff1d(np.arange(n), test)
        part = {key: stars[key][train_rows] for key in ("labels", "flux", "weights")}
        emulator, _ = train_emulator_on(cfg, preparation, part, reference)
        held = {key: stars[key][test] for key in ("labels", "flux", "ivar")}
        excess[test] = _residual_error(emulator, held)
        if progress:
            print(f"model error: fold {k + 1}/{folds} done")
    with np.errstate(all="ignore"):
        med = np.nanmedian(excess, axis=0)
    sigma = np.sqrt(np.clip(np.nan_to_num(med, nan=0.0), 0.0, None))
    return sigma, {"folds": folds, "seed": seed, "median": float(np.median(sigma))}


def train(cfg, *, output=None, progress=True, exclude_ids=None):
    """Train an emulator model as a configuration says (and calibrate it if asked).

    Parameters
    ----------
    cfg : dict
        A checked configuration (`stellarml.recipes.load_config`).
    output : str or path-like, optional
        Where to write the model (ASDF).
    progress : bool, optional
        Print the steps.
    exclude_ids : sequence of str, optional
        MILES ids kept out of everything (e.g. a k-fold's test stars).

    Returns
    -------
    model : `~stellarml.models.emulator.EmulatorModel`
        Trained, with its model error and calibration when the configuration
        asks for them; ``provenance_`` records the stars used and left out.

    Examples
    --------
    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import build_preparation
    >>> cfg = load_config({
    ...     "model": {"method": "phdl", "name": "tiny-phdl", "labels": ["teff", "logg", "fe_h"],
    ...               "box": {"teff": [3800.0, 7000.0], "logg": [0.5, 5.0], "fe_h": [-2.0, 0.5]},
    ...               "emulator": {"class": "MLPEmulator", "hidden": [8]},
    ...               "training": {"epochs": 2, "batch_size": 8}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "library": {"directory": str(data_dir / "miles"),
    ...                 "ids": ["0001", "0003", "0004", "0010", "0016", "0021"]},
    ...     "gradient_prior": {
    ...         "n_points": 4, "weight": 1e-3,
    ...         "emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz")},
    ... })
    >>> from stellarml.recipes.phdl import train
    >>> model = train(cfg, progress=False, exclude_ids=["0016"])
    >>> model.provenance_["training_library"]["ids"], model.calibration is None
    (['0010', '0004', '0001', '0003'], True)
    """
    check_config(cfg)
    preparation = build_preparation(cfg)
    reference = gradient_prior(cfg, preparation)
    stars = training_stars(cfg, preparation, exclude_ids=exclude_ids)
    emulator, history = train_emulator_on(cfg, preparation, stars, reference)
    model_error, error_record = None, None
    if cfg.get("model_error"):
        model_error, error_record = estimate_model_error(
            cfg, preparation, stars, reference, progress=progress
        )
    model = build_model(cfg, preparation, emulator, model_error=model_error)
    model.provenance_ = {
        "config": copy.deepcopy(cfg),
        "training_library": {
            "name": "MILES (training list)",
            "ids": stars["ids"].tolist(),
            "outside_box_ids": stars["outside_box"],
            "unusable_ids": stars["unusable"],
        },
        "gradient_prior_points": 0 if reference[0] is None else len(reference[0]),
        "training": _plain_history(history),
        "model_error": error_record,
    }
    if cfg.get("calibration"):
        calibrate(model, cfg, preparation, reference, exclude_ids=exclude_ids)
    if output is not None:
        write_model(model, output)
    return model


def cross_fitted_posteriors(
    cfg, preparation, prior, ref_table, *, exclude_ids=None, model_error=None
):
    """Out-of-fold posteriors of the ``[calibration]`` reference stars.

    Parameters
    ----------
    cfg : dict
        The configuration (``[calibration]``: ``folds``, ``seed``,
        ``fine_tune_on_reference``, ``reference_weight``).
    preparation : `~stellarml.spectra.PreparationSettings`
        The model's grid.
    prior : tuple
        The gradient prior (`gradient_prior`).
    ref_table : `~astropy.table.Table`
        The reference stars (`stellarml.recipes.calibration.load_reference`).
    exclude_ids : sequence of str, optional
        MILES ids kept out of every fold's training.
    model_error : array-like, optional
        The emulator error of the fold models' noise model.

    Returns
    -------
    posterior, fold, table
        As `stellarml.recipes.calibration.cross_fit`.

    Examples
    --------
    Three Gaia benchmark stars, each fitted by an emulator trained without it:

    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import build_preparation
    >>> cfg = load_config({
    ...     "model": {"method": "phdl", "name": "tiny-phdl", "labels": ["teff", "logg", "fe_h"],
    ...               "box": {"teff": [3800.0, 7000.0], "logg": [0.5, 5.0], "fe_h": [-2.0, 0.5]},
    ...               "emulator": {"class": "MLPEmulator", "hidden": [8]},
    ...               "training": {"epochs": 2, "batch_size": 8}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "library": {"directory": str(data_dir / "miles"),
    ...                 "ids": ["0001", "0003", "0004", "0010", "0016", "0021"]},
    ...     "gradient_prior": {
    ...         "n_points": 4, "weight": 1e-3,
    ...         "emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz")},
    ... })
    >>> preparation = build_preparation(cfg)
    >>> from stellarml.recipes.calibration import load_reference
    >>> from stellarml.recipes.phdl import cross_fitted_posteriors
    >>> cfg["calibration"] = {"folds": 3, "seed": 0}
    >>> reference = load_reference(
    ...     {"calibration": {"reference": str(data_dir / "benchmarks" / "gbs_v3_miles_train.csv")}},
    ...     ("teff", "logg", "fe_h"))
    >>> stars = reference[:3]
    >>> cfg["library"]["ids"] += [str(i) for i in stars["id"]]
    >>> posterior, fold, _ = cross_fitted_posteriors(cfg, preparation, (None, None), stars)
    >>> len(posterior), sorted(set(fold.tolist()))
    (3, [0, 1, 2])
    """
    from ..libraries import ObservedLibrary

    c = cfg["calibration"]
    exclude = [str(i) for i in exclude_ids or []]
    ids = [str(i) for i in ref_table["id"]]
    spectra = ObservedLibrary.from_miles(
        cfg["library"].get("directory"), require=_labels(cfg), ids=ids
    )
    weight = int(c.get("reference_weight", 1))

    def train_without(fold_ids, overrides):
        stars = training_stars(
            cfg,
            preparation,
            exclude_ids=[*exclude, *fold_ids],
            overrides=overrides,
            override_weight=weight,
        )
        emulator, _ = train_emulator_on(cfg, preparation, stars, prior)
        return build_model(cfg, preparation, emulator, model_error=model_error), stars["ids"]

    return cross_fit(
        train_without,
        spectra,
        ref_table,
        folds=int(c.get("folds", 5)),
        seed=int(c.get("seed", 0)),
        use_reference=bool(c.get("fine_tune_on_reference", False)),
    )


def calibrate(model, cfg, preparation, prior, *, exclude_ids=None):
    """Fit the ``[calibration]`` correction on out-of-fold fits and attach it to ``model``.

    The reference stars are split into ``folds``; each fold is fitted by an
    emulator trained without it (with the other folds' reference labels when
    ``fine_tune_on_reference``), as a new star would be.

    Parameters
    ----------
    model : `~stellarml.models.emulator.EmulatorModel`
        The model trained on all stars; its ``calibration`` is set.
    cfg : dict
        The configuration (``[calibration]``).
    preparation : `~stellarml.spectra.PreparationSettings`
        The model's grid.
    prior : tuple
        The gradient prior (`gradient_prior`).
    exclude_ids : sequence of str, optional
        MILES ids kept out of the reference stars and of every fold's training.

    Returns
    -------
    calibration : `~stellarml.calibration.LabelCalibration`
        The fitted correction (also ``model.calibration``).

    Examples
    --------
    Training with a ``[calibration]`` table calls it (minutes for the shipped
    model; here the configuration only is checked):

    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import build_preparation
    >>> cfg = load_config({
    ...     "model": {"method": "phdl", "name": "tiny-phdl", "labels": ["teff", "logg", "fe_h"],
    ...               "box": {"teff": [3800.0, 7000.0], "logg": [0.5, 5.0], "fe_h": [-2.0, 0.5]},
    ...               "emulator": {"class": "MLPEmulator", "hidden": [8]},
    ...               "training": {"epochs": 2, "batch_size": 8}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "library": {"directory": str(data_dir / "miles"),
    ...                 "ids": ["0001", "0003", "0004", "0010", "0016", "0021"]},
    ...     "gradient_prior": {
    ...         "n_points": 4, "weight": 1e-3,
    ...         "emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz")},
    ... })
    >>> from stellarml.recipes.phdl import calibrate, train
    >>> cfg["calibration"] = {
    ...     "reference": str(data_dir / "benchmarks" / "gbs_v3_miles_train.csv"), "folds": 5}
    >>> load_config(cfg)["calibration"]["folds"]
    5
    >>> model = train(cfg)  # doctest: +SKIP
    """
    ref_table = reference_stars(cfg, model.label_names, exclude_ids)
    posterior, fold, _ = cross_fitted_posteriors(
        cfg,
        preparation,
        prior,
        ref_table,
        exclude_ids=exclude_ids,
        model_error=model.fit_options.get("model_error"),
    )
    calibration = fit_cross_fitted(cfg, model.label_names, ref_table, posterior, fold)
    model.calibration = calibration
    return calibration


def _plain_history(history):
    out = {}
    for key, value in dict(history or {}).items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if isinstance(value, list) and len(value) > 50:  # keep the record small
            value = value[:: max(1, len(value) // 50)]
        if isinstance(value, int | float | str | bool | list) or value is None:
            out[key] = value
    return out
