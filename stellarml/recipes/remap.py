"""The deep-REMAP recipe: a configuration in, a trained model out (``stellarml train CONFIG``).

The configuration names every choice — grid, synthetic library, sampling
design, network, loss, training and fine-tuning — so that a model, including
the shipped default, can be rebuilt by anyone with one command. Paths may use
``{data_dir}``, replaced by `stellarml._utils.data_dir` (``STELLARML_DATA_DIR``).

A configuration has these tables (see ``scripts/remap-optical-r2000.toml``):

``[model]``
    ``method = "remap"``, ``name``, ``labels``, ``seed``, and optional ``[model.bins]``
    (``label = [lo, hi, width]``), ``[model.architecture]``, ``[model.loss]``,
    ``[model.training]`` overriding the `~stellarml.models.RemapModel` defaults,
    and ``ensemble`` (number of members, default 1): with N > 1 the result is
    a `~stellarml.models.RemapEnsemble` of N models, member k pre-trained with
    ``seed + k`` (and its own synthetic library, ``[pretrain] seed + k``) and
    each fine-tuned the same way.
``[preparation]``
    ``wavelength_min``, ``wavelength_max`` [Angstrom] -- or, for an
    instrument's windows, ``windows`` or ``windows_from``
    (`stellarml.recipes.instrument`) --, ``dloglam`` (step in ln lambda),
    ``medium``, ``resolution`` (R), and optional
    `~stellarml.spectra.PreparationSettings` fields.
``[pretrain]``
    ``emulator`` (path to a polynomial emulator npz), ``n_spectra``,
    ``design``, ``seed``, optional ``ranges`` (``label = [lo, hi]``),
    ``wavelength_margin`` [Angstrom], ``rv_jitter`` [km/s],
    ``continuum_distortion``, and for rotating stars ``vsini = [lo, hi]``
    [km/s] with optional ``vsini_distribution`` (``"uniform"``, the
    default, or ``"log-uniform"``) and ``limb_darkening`` (linear epsilon,
    default 0.6): every spectrum is rotationally broadened at its own
    vsini (`~stellarml.libraries.SpectralLibrary.broaden_rotation`) before
    the RV jitter and continuum distortion, and the library gains a
    ``vsini`` label; ``wavelength_margin`` must exceed the largest vsini's
    Doppler width.
``[calibration]`` (optional)
    Reference stars and the correction (`stellarml.recipes.calibration`):
    after fine-tuning, the reference stars are predicted out of fold (by
    ``folds`` models each fine-tuned without one fold of them, from the same
    pre-trained model) and the correction is fitted on those predictions
    (`calibrate`).
``[fine_tune]`` (optional)
    ``library = "miles"``, ``directory``, ``freeze``, ``epochs``, ``lr``,
    ``runs`` (weight-averaged fine-tuning runs), ``validation_fraction``,
    ``[fine_tune.loss]`` (loss overrides for fine-tuning only), and
    ``exclude_ids``/``ids`` (lists of MILES ids); see
    `~stellarml.models.RemapModel.fine_tune_prepared`.
"""

import copy

import astropy.units as u
import numpy as np

from ..io.asdf.model_io import write_model
from .calibration import (
    check_calibration_config,
    check_tables,
    cross_fit,
    fit_cross_fitted,
    load_reference,
    override_labels,
    reference_stars,
)
from .instrument import (
    DEFAULT_COVERAGE_SHARE,
    mask_outside_windows,
    preparation_windows,
    window_fraction,
)

__all__ = [
    "build_finetune_library",
    "build_model",
    "build_preparation",
    "build_pretrain_library",
    "calibrate",
    "check_config",
    "cross_fitted_posteriors",
    "fine_tune",
    "fine_tune_and_calibrate",
    "in_bins",
    "member_config",
    "train",
]

_REQUIRED = {
    "model": ("name",),
    "preparation": ("dloglam",),
    "pretrain": (),
}


def check_config(cfg):
    """Raise `ValueError` naming what a REMAP configuration lacks or gets wrong.

    Parameters
    ----------
    cfg : dict
        The configuration (see the module documentation).

    Raises
    ------
    ValueError
        If a required table or key is missing, the grid is given twice or not
        at all, a window is invalid, ``[model] ensemble`` is not a positive
        integer, ``[calibration]`` comes without ``[fine_tune]``, or the
        ``[calibration]`` table is wrong (the message says what).

    Examples
    --------
    >>> from stellarml.recipes.remap import check_config
    >>> cfg = {"model": {"name": "tiny", "ensemble": 0},
    ...        "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                        "dloglam": 3e-4},
    ...        "pretrain": {}}
    >>> try:
    ...     check_config(cfg)
    ... except ValueError as err:
    ...     print(err)
    [model] ensemble must be a positive integer, got 0
    >>> cfg["model"]["ensemble"] = 3
    >>> check_config(cfg)  # passes
    """
    check_tables(cfg, _REQUIRED)
    prep = cfg["preparation"]
    if "windows_from" in prep:  # read when the grid is built ({data_dir} is expanded then)
        files = prep["windows_from"]
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise ValueError(
                "[preparation] windows_from must be a non-empty list of spectrum file paths"
            )
        if "windows" in prep or "wavelength_min" in prep or "wavelength_max" in prep:
            preparation_windows(prep)  # raises: the grid is given twice
    else:
        preparation_windows(prep)
    n = cfg["model"].get("ensemble", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"[model] ensemble must be a positive integer, got {n!r}")
    if "calibration" in cfg and not cfg.get("fine_tune"):
        raise ValueError("[calibration] needs a [fine_tune] table (its folds are fine-tunings)")
    check_calibration_config(cfg)


def member_config(cfg, k):
    """The configuration of ensemble member ``k``: model and library seeds shifted by ``k``.

    Member 0 is the configuration itself, unchanged.

    Parameters
    ----------
    cfg : dict
        The configuration (not changed).
    k : int
        The member's index, from 0.

    Returns
    -------
    member : dict
        A deep copy with ``[model] seed`` and ``[pretrain] seed`` (default: the
        model's seed) increased by ``k``.

    Examples
    --------
    >>> from stellarml.recipes.remap import member_config
    >>> cfg = {"model": {"name": "ens", "seed": 42}, "pretrain": {"seed": 7}}
    >>> member_config(cfg, 2)
    {'model': {'name': 'ens', 'seed': 44}, 'pretrain': {'seed': 9}}
    >>> member_config(cfg, 0) == cfg
    True
    """
    member = copy.deepcopy(cfg)
    if k == 0:
        return member
    seed = int(member["model"].get("seed", 0))
    member["model"]["seed"] = seed + k
    member["pretrain"]["seed"] = int(member["pretrain"].get("seed", seed)) + k
    return member


def build_preparation(cfg):
    """`~stellarml.spectra.PreparationSettings` from the ``[preparation]`` table.

    The grid is uniform in ln lambda with step ``dloglam``, from
    ``wavelength_min`` (or the first window's start) up to ``wavelength_max``
    (or the last window's end); with windows, ``min_overlap_fraction`` and
    ``min_good_fraction`` default to `~stellarml.recipes.instrument.DEFAULT_COVERAGE_SHARE`
    times the share of the grid inside them. The other keys are passed to
    `~stellarml.spectra.PreparationSettings`.

    Parameters
    ----------
    cfg : dict
        The configuration (its ``[preparation]`` table; not changed).

    Returns
    -------
    preparation : `~stellarml.spectra.PreparationSettings`
        With ``wavelength`` the grid [Angstrom].

    Raises
    ------
    ValueError
        If the grid is given twice or not at all, a window is invalid or a
        ``windows_from`` file cannot be read.

    Examples
    --------
    >>> from stellarml.recipes.remap import build_preparation
    >>> prep = build_preparation({"preparation": {
    ...     "wavelength_min": 5000.0, "wavelength_max": 5300.0, "dloglam": 3e-4,
    ...     "medium": "vacuum", "resolution": 1500.0}})
    >>> print(prep.wavelength.size, prep.wavelength[0], prep.resolution, prep.medium)
    195 5000.0 Angstrom 1500.0 vacuum

    Two windows: the grid spans both, and half of its inside share is asked for:

    >>> prep = build_preparation({"preparation": {
    ...     "windows": [[5000.0, 5100.0], [5300.0, 5400.0]], "dloglam": 3e-4}})
    >>> print(prep.wavelength.size, round(prep.min_good_fraction, 3))
    257 0.251
    """
    from ..spectra import PreparationSettings, log_lambda_grid

    prep = dict(cfg["preparation"])
    windows = preparation_windows(prep)
    for key in ("windows", "windows_from"):
        prep.pop(key, None)
    if windows is None:
        lo, hi = float(prep.pop("wavelength_min")), float(prep.pop("wavelength_max"))
    else:
        lo, hi = float(windows[0, 0]), float(windows[-1, 1])
    grid = log_lambda_grid(lo, hi, float(prep.pop("dloglam")))
    if windows is not None:
        share = DEFAULT_COVERAGE_SHARE * window_fraction(grid, windows)
        prep.setdefault("min_overlap_fraction", share)
        prep.setdefault("min_good_fraction", share)
    return PreparationSettings(wavelength=grid * u.AA, **prep)


def build_model(cfg, preparation):
    """An unfitted `~stellarml.models.RemapModel` from the ``[model]`` table.

    Parameters
    ----------
    cfg : dict
        The configuration (its ``[model]`` table: ``name``, ``labels``,
        ``bins`` as ``label = [lo, hi, width]`` in the label's unit,
        ``architecture``, ``loss``, ``training``, ``seed``, ``device``).
    preparation : `~stellarml.spectra.PreparationSettings` or None
        The model's preparation (`build_preparation`).

    Returns
    -------
    model : `~stellarml.models.RemapModel`
        Not fitted (one member; `train` builds the ensemble).

    Examples
    --------
    >>> from stellarml.recipes.remap import build_model, build_preparation
    >>> cfg = {"model": {"name": "tiny", "bins": {"teff": [4000.0, 7000.0, 100.0]}},
    ...        "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                        "dloglam": 3e-4}}
    >>> model = build_model(cfg, build_preparation(cfg))
    >>> model.name, model.label_names
    ('tiny', ('teff', 'logg', 'fe_h'))
    >>> edges = model.bin_edges("teff")  # K
    >>> print(edges[0], edges[-1], edges.size)
    4000.0 7000.0 31
    """
    from ..models import RemapModel

    m = cfg["model"]
    bins = {k: tuple(float(x) for x in v) for k, v in m.get("bins", {}).items()} or None
    return RemapModel(
        labels=tuple(m.get("labels", ("teff", "logg", "fe_h"))),
        bins=bins,
        preparation=preparation,
        architecture=m.get("architecture"),
        loss=m.get("loss"),
        training=m.get("training"),
        name=m["name"],
        seed=int(m.get("seed", 0)),
        device=m.get("device", "auto"),
    )


def degrade_to_preparation(emulator, preparation, margin):
    """An emulator degraded to a model's resolving power on its grid plus a margin.

    Parameters
    ----------
    emulator : `~stellarml.libraries.PolynomialEmulatorLibrary`
    preparation : `~stellarml.spectra.PreparationSettings`
    margin : float
        Angstrom added on both sides of the model grid (in the emulator's medium).

    Returns
    -------
    degraded : `~stellarml.libraries.PolynomialEmulatorLibrary`
    window : tuple of float
        The model grid's ends in the emulator's medium [Angstrom], without the margin.
    """
    from ..spectra import air_to_vacuum, vacuum_to_air

    grid = preparation.wavelength.to_value(u.AA)
    lo, hi = grid[0], grid[-1]
    if preparation.medium != emulator.medium:
        convert = vacuum_to_air if emulator.medium == "air" else air_to_vacuum
        lo, hi = convert(np.array([lo, hi]))
    degraded = emulator.degrade(
        resolution=preparation.resolution, wavelength_range=(lo - margin, hi + margin) * u.AA
    )
    return degraded, (float(lo), float(hi))


def build_pretrain_library(cfg, preparation):
    """The synthetic pre-training library of the ``[pretrain]`` table.

    The emulator is degraded once (its coefficients are broadened to the
    model's resolving power, on a window ``wavelength_margin`` wider than the
    model grid, converted to the emulator's medium), then sampled. With
    instrument windows (`stellarml.recipes.instrument`) the pixels outside
    them get no data (`~stellarml.recipes.instrument.mask_outside_windows`).
    With ``vsini = [lo, hi]`` the sampled spectra are rotationally broadened
    (`~stellarml.libraries.SpectralLibrary.broaden_rotation`, seed
    ``[pretrain] seed + 2``) on that wider grid, before the augmentation;
    the broadening trims the margin by the largest vsini's Doppler width, so
    no model pixel is broadened from flux beyond the emulated window.

    Parameters
    ----------
    cfg : dict
        The configuration (its ``[pretrain]`` table).
    preparation : `~stellarml.spectra.PreparationSettings`
        The model's preparation (`build_preparation`).

    Returns
    -------
    library : `~stellarml.libraries.SpectralLibrary`
        ``n_spectra`` synthetic spectra on the emulator's wavelengths [Angstrom,
        in its medium], ``wavelength_margin`` beyond the model grid at each end,
        at the preparation's resolving power.

    Raises
    ------
    ValueError
        For a bad ``vsini`` range (not two numbers, negative, non-finite,
        ``lo > hi``) or a ``wavelength_margin`` too small for it.

    Examples
    --------
    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import build_preparation, build_pretrain_library
    >>> cfg = load_config({
    ...     "model": {"method": "remap", "name": "tiny", "device": "cpu",
    ...               "training": {"max_epochs": 1}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "pretrain": {"emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz"),
    ...                  "n_spectra": 32},
    ... })
    >>> library = build_pretrain_library(cfg, build_preparation(cfg))
    >>> len(library), library.label_names, library.medium, library.resolution
    (32, ['teff', 'logg', 'fe_h'], 'air', 1500.0)
    >>> print(library.wavelength[[0, -1]].round(1))  # the grid 5000-5300 A, 60 A margins, in air
    [4938.7 5358.1] Angstrom
    """
    from ..libraries import PolynomialEmulatorLibrary

    p = cfg["pretrain"]
    emulator = PolynomialEmulatorLibrary.from_file(p["emulator"])
    margin = float(p.get("wavelength_margin", 60.0))
    degraded, (lo, hi) = degrade_to_preparation(emulator, preparation, margin)
    grid = preparation.wavelength.to_value(u.AA)
    vsini = _vsini_range(p, margin, hi)
    seed = int(p.get("seed", cfg["model"].get("seed", 0)))
    ranges = {k: tuple(v) for k, v in p.get("ranges", {}).items()} or None
    library = degraded.sample(
        int(p.get("n_spectra", 20000)),
        ranges=ranges,
        design=p.get("design", "training"),
        seed=seed,
    )
    if vsini is not None:
        library = library.broaden_rotation(
            vsini,
            distribution=p.get("vsini_distribution", "uniform"),
            epsilon=p.get("limb_darkening"),
            seed=seed + 2,
        )
        covered = library.wavelength.to_value(u.AA)
        edges = lo * np.sqrt(grid[0] / grid[1]), hi * np.sqrt(grid[-1] / grid[-2])
        if covered[0] > edges[0] or covered[-1] < edges[1]:  # a safety net behind _vsini_range
            raise ValueError(
                f"[pretrain] wavelength_margin = {margin:g} Angstrom is too small for vsini up "
                f"to {vsini[1]:g} km/s: the broadened library covers {covered[0]:.1f}-"
                f"{covered[-1]:.1f} Angstrom, the model grid {lo:.1f}-{hi:.1f}"
            )
    rv_jitter = float(p.get("rv_jitter", 0.0))
    distortion = float(p.get("continuum_distortion", 0.0))
    if rv_jitter or distortion:
        library = library.augment(
            rv_jitter=rv_jitter,
            continuum_distortion=distortion,
            seed=int(p.get("seed", 0)) + 1,
        )
    windows = preparation_windows(cfg["preparation"])
    if windows is not None:  # no data between an instrument's windows, as in its spectra
        mask_outside_windows(library, windows, preparation.medium)
    return library


def _vsini_range(p, margin, hi):
    """The ``[pretrain] vsini`` range as a (lo, hi) tuple [km/s], or None; checked."""
    from ..spectra import C_KMS

    if "vsini" not in p:
        for key in ("vsini_distribution", "limb_darkening"):
            if key in p:
                raise ValueError(f"[pretrain] {key} needs a vsini = [lo, hi] range (km/s)")
        return None
    value = p["vsini"]
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(
            f"[pretrain] vsini must be a [lo, hi] pair of numbers (km/s), got {value!r}"
        )
    lo_v, hi_v = float(value[0]), float(value[1])
    if not (np.isfinite(lo_v) and np.isfinite(hi_v) and 0 <= lo_v <= hi_v):
        raise ValueError(
            f"[pretrain] vsini = [lo, hi] needs 0 <= lo <= hi, finite (km/s); got {value!r}"
        )
    reach = hi_v / C_KMS * (hi + margin)  # Doppler width of the largest vsini [Angstrom]
    if reach >= margin:
        raise ValueError(
            f"[pretrain] wavelength_margin = {margin:g} Angstrom is too small for vsini up to "
            f"{hi_v:g} km/s (its Doppler width at the red end is {reach:.1f} Angstrom)"
        )
    return (lo_v, hi_v)


def build_finetune_library(cfg, *, ids=None, exclude_ids=None):
    """The observed fine-tuning library of the ``[fine_tune]`` table (MILES training stars).

    Parameters
    ----------
    cfg : dict
        The configuration (its ``[fine_tune]`` table: ``directory``, ``ids``,
        ``exclude_ids``; ``[model] labels`` are required of every star).
    ids, exclude_ids : sequence of str, optional
        Restrict to / leave out these MILES ids (used for k-fold evaluation);
        ``ids`` replaces the configuration's ``ids``, ``exclude_ids`` adds to
        its ``exclude_ids`` (``"4"`` means ``"0004"``).

    Returns
    -------
    library : `~stellarml.libraries.ObservedLibrary`
        The stars of the MILES training list with a spectrum and every label
        (`~stellarml.libraries.ObservedLibrary.from_miles`).

    Raises
    ------
    ValueError
        If the configuration has no ``[fine_tune]`` table or names another library.

    Examples
    --------
    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import build_finetune_library
    >>> cfg = load_config({
    ...     "model": {"method": "remap", "name": "tiny", "device": "cpu",
    ...               "training": {"max_epochs": 1}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "pretrain": {"emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz"),
    ...                  "n_spectra": 32},
    ...     "fine_tune": {"directory": str(data_dir / "miles"), "epochs": 1,
    ...                   "validation_fraction": 0.0,
    ...                   "ids": ["0001", "0003", "0004", "0005", "0006", "0008"]},
    ... })
    >>> library = build_finetune_library(cfg, exclude_ids=["4"])
    >>> sorted(str(i) for i in library.labels["id"])
    ['0001', '0003', '0005', '0006', '0008']
    """
    from ..libraries import ObservedLibrary

    f = cfg.get("fine_tune")
    if not f:
        raise ValueError("configuration has no [fine_tune] table")
    if f.get("library", "miles") != "miles":
        raise ValueError(f"unsupported fine-tuning library {f.get('library')!r}; use 'miles'")
    labels = tuple(cfg["model"].get("labels", ("teff", "logg", "fe_h")))
    keep = ids if ids is not None else f.get("ids")
    library = ObservedLibrary.from_miles(f.get("directory"), require=labels, ids=keep)
    excluded = {str(i).zfill(4) for i in (list(f.get("exclude_ids", [])) + list(exclude_ids or []))}
    if excluded:
        library = library[~np.isin(np.asarray(library.labels["id"]), sorted(excluded))]
    return library


def in_bins(model, library):
    """Boolean mask of library rows whose labels all lie inside the model's bins.

    Parameters
    ----------
    model : `~stellarml.models.RemapModel` or `~stellarml.models.RemapEnsemble`
        Fitted or not (its bins are set at construction).
    library : `~stellarml.libraries.SpectralLibrary`
        With a column for each of the model's labels.

    Returns
    -------
    inside : `numpy.ndarray` of bool
        ``(len(library),)``; bin edges count as inside.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.libraries import SpectralLibrary
    >>> from stellarml.recipes.remap import build_model, in_bins
    >>> model = build_model({"model": {"name": "narrow", "labels": ["teff"],
    ...                                "bins": {"teff": [5000.0, 6000.0, 50.0]}}}, None)
    >>> library = SpectralLibrary.from_arrays(
    ...     {"teff": [4800.0, 5000.0, 5500.0, 6500.0]}, np.arange(5000.0, 5010.0), np.ones((4, 10)))
    >>> in_bins(model, library)
    array([False,  True,  True, False])
    """
    arr = library.label_array(model.label_names)
    ok = np.ones(len(library), dtype=bool)
    for k, name in enumerate(model.label_names):
        edges = model.bin_edges(name)
        ok &= (arr[:, k] >= edges[0]) & (arr[:, k] <= edges[-1])
    return ok


def train(cfg, *, output=None, progress=True, fine_tune_exclude_ids=None, pretrained_output=None):
    """Train (and fine-tune) a REMAP model as a configuration says.

    Parameters
    ----------
    cfg : dict
        The configuration (see the module documentation), as
        `stellarml.recipes.load_config` returns it.
    output : str or path-like, optional
        Write the trained model to this ASDF file.
    progress : bool
        Show progress bars.
    fine_tune_exclude_ids : sequence of str, optional
        MILES ids to keep out of fine-tuning (held out for evaluation).
    pretrained_output : str or path-like, optional
        Also write the model as it is after pre-training, before fine-tuning
        (the starting point of k-fold fine-tuning benchmarks).

    Returns
    -------
    model : `~stellarml.models.RemapModel` or `~stellarml.models.RemapEnsemble`
        An ensemble when ``[model] ensemble`` is above 1.

    Raises
    ------
    ValueError
        If the configuration is incomplete or wrong (`check_config`).

    Examples
    --------
    A tiny model (32 synthetic spectra, one epoch, six MILES stars) trains in
    about a second; the shipped configurations in ``scripts/`` take hours:

    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import train
    >>> cfg = load_config({
    ...     "model": {"method": "remap", "name": "tiny", "device": "cpu",
    ...               "training": {"max_epochs": 1}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "pretrain": {"emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz"),
    ...                  "n_spectra": 32},
    ...     "fine_tune": {"directory": str(data_dir / "miles"), "epochs": 1,
    ...                   "validation_fraction": 0.0,
    ...                   "ids": ["0001", "0003", "0004", "0005", "0006", "0008"]},
    ... })
    >>> model = train(cfg, progress=False)
    >>> type(model).__name__, model.label_names
    ('RemapModel', ('teff', 'logg', 'fe_h'))
    >>> sorted(model.provenance_["fine_tune_library"]["ids"])
    ['0001', '0003', '0004', '0005', '0006', '0008']
    """
    check_config(cfg)
    preparation = build_preparation(cfg)
    members = []
    for k in range(int(cfg["model"].get("ensemble", 1))):
        member_cfg = member_config(cfg, k)
        member = build_model(member_cfg, preparation)
        library = build_pretrain_library(member_cfg, preparation)
        member.fit(library, progress=progress)
        del library
        member.provenance_["config"] = member_cfg
        members.append(member)
    if len(members) == 1:
        model = members[0]
    else:
        from ..models import RemapEnsemble

        model = RemapEnsemble(members, name=cfg["model"]["name"])
    model.provenance_["config"] = cfg
    if pretrained_output is not None:
        write_model(model, pretrained_output)
    pretrained = copy.deepcopy(model) if cfg.get("calibration") else None
    if cfg.get("fine_tune"):
        fine_tune_and_calibrate(
            model, cfg, pretrained=pretrained, exclude_ids=fine_tune_exclude_ids, progress=progress
        )
    model.provenance_["config"] = cfg
    if output is not None:
        write_model(model, output)
    return model


def fine_tune_and_calibrate(model, cfg, *, pretrained=None, exclude_ids=None, progress=True):
    """Fine-tune ``model`` as ``[fine_tune]`` says, then calibrate it if ``[calibration]`` asks.

    ``pretrained`` is the model before fine-tuning (needed for calibration:
    the out-of-fold fine-tunings start from it). With ``fine_tune_on_reference``
    the reference stars' labels replace the library's where known.

    Parameters
    ----------
    model : `~stellarml.models.RemapModel` or `~stellarml.models.RemapEnsemble`
        The pre-trained model, fine-tuned (and calibrated) in place.
    cfg : dict
        The configuration (``[fine_tune]``, optional ``[calibration]``).
    pretrained : same type as ``model``, optional
        A copy of ``model`` before fine-tuning; required with ``[calibration]``.
    exclude_ids : sequence of str, optional
        MILES ids kept out of fine-tuning and calibration (held out for evaluation).
    progress : bool
        Progress bars.

    Returns
    -------
    model
        The same object.

    Raises
    ------
    ValueError
        With ``[calibration]`` but no ``pretrained`` (after fine-tuning).

    Examples
    --------
    >>> import copy
    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import fine_tune_and_calibrate, train
    >>> cfg = load_config({
    ...     "model": {"method": "remap", "name": "tiny", "device": "cpu",
    ...               "training": {"max_epochs": 1}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "pretrain": {"emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz"),
    ...                  "n_spectra": 32},
    ...     "fine_tune": {"directory": str(data_dir / "miles"), "epochs": 1,
    ...                   "validation_fraction": 0.0,
    ...                   "ids": ["0001", "0003", "0004", "0005", "0006", "0008"]},
    ... })
    >>> pretrained = train({k: v for k, v in cfg.items() if k != "fine_tune"}, progress=False)
    >>> model = fine_tune_and_calibrate(copy.deepcopy(pretrained), cfg, progress=False)
    >>> print(len(model.provenance_["fine_tune_library"]["ids"]), model.calibration)
    6 None
    """
    c = cfg.get("calibration")
    overrides = None
    if c and c.get("fine_tune_on_reference", False):
        overrides = load_reference(cfg, model.label_names)
    fine_tune(
        model,
        cfg,
        exclude_ids=exclude_ids,
        progress=progress,
        label_overrides=overrides,
        override_weight=int(c.get("reference_weight", 1)) if c else 1,
    )
    if c:
        if pretrained is None:
            raise ValueError("calibration needs the pre-trained model to cross-fit from")
        calibrate(model, pretrained, cfg, exclude_ids=exclude_ids, progress=progress)
    return model


def fine_tune(
    model,
    cfg,
    *,
    ids=None,
    exclude_ids=None,
    progress=True,
    label_overrides=None,
    override_weight=1,
):
    """Fine-tune ``model`` on the ``[fine_tune]`` library; records the MILES ids used.

    Parameters
    ----------
    model : `~stellarml.models.RemapModel` or `~stellarml.models.RemapEnsemble`
        The (pre-trained) model, fine-tuned in place.
    cfg : dict
        The configuration.
    ids, exclude_ids : sequence of str, optional
        See `build_finetune_library`.
    progress : bool
        Progress bars.
    label_overrides : `~astropy.table.Table`, optional
        ``id`` and label columns (NaN = keep the library's value): these
        labels replace the library's for those stars (e.g. benchmark-star
        labels); recorded as ``label_overrides`` in the provenance.
    override_weight : int
        Each star whose labels were replaced appears this many times in the
        fine-tuning set (its loss weighs that much more).

    Returns
    -------
    model
        The same object.

    Raises
    ------
    ValueError
        If ``override_weight`` is not a positive integer, or the ``[fine_tune]``
        table is missing or names another library.

    Examples
    --------
    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import fine_tune, train
    >>> cfg = load_config({
    ...     "model": {"method": "remap", "name": "tiny", "device": "cpu",
    ...               "training": {"max_epochs": 1}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "pretrain": {"emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz"),
    ...                  "n_spectra": 32},
    ...     "fine_tune": {"directory": str(data_dir / "miles"), "epochs": 1,
    ...                   "validation_fraction": 0.0,
    ...                   "ids": ["0001", "0003", "0004", "0005", "0006", "0008"]},
    ... })
    >>> pretrained = train({k: v for k, v in cfg.items() if k != "fine_tune"}, progress=False)
    >>> model = fine_tune(pretrained, cfg, exclude_ids=["0008"], progress=False)
    >>> sorted(model.provenance_["fine_tune_library"]["ids"])
    ['0001', '0003', '0004', '0005', '0006']
    >>> "fine_tune" in model.metrics_
    True
    """
    f = cfg["fine_tune"]
    observed = build_finetune_library(cfg, ids=ids, exclude_ids=exclude_ids)
    replaced = override_labels(observed, label_overrides, model.label_names)
    inside = in_bins(model, observed)
    outside = [str(i) for i in np.asarray(observed.labels["id"])[~inside]]
    observed = observed[inside]
    unique_ids = [str(i) for i in np.asarray(observed.labels["id"])]
    weight = int(override_weight)
    if weight < 1:
        raise ValueError(f"override_weight must be a positive integer, got {override_weight!r}")
    if weight > 1 and replaced:
        done = sorted({i for ids_ in replaced.values() for i in ids_})
        extra = np.flatnonzero(np.isin(unique_ids, done))
        observed = observed[np.concatenate([np.arange(len(observed)), np.tile(extra, weight - 1)])]
    model.fine_tune(
        observed,
        freeze=f.get("freeze"),
        epochs=f.get("epochs"),
        lr=f.get("lr"),
        runs=f.get("runs"),
        loss=f.get("loss"),
        validation_fraction=f.get("validation_fraction"),
        progress=progress,
    )
    record = {
        "name": "MILES (training list)",
        "ids": unique_ids,
        "outside_bins_ids": outside,
        "dropped": observed.meta.get("dropped", []),
    }
    if label_overrides is not None:
        record["label_overrides"] = replaced
        record["override_weight"] = weight
    for target in (model, *getattr(model, "members", ())):
        target.provenance_["fine_tune_library"] = copy.deepcopy(record)
    return model


def cross_fitted_posteriors(
    pretrained,
    cfg,
    reference,
    *,
    folds,
    seed,
    fine_tune_on_reference=False,
    reference_weight=1,
    exclude_ids=None,
    progress=False,
):
    """Out-of-fold posteriors of the reference stars, by k-fold fine-tuning.

    The reference stars are split into ``folds`` folds (a permutation drawn
    with ``seed``); for each fold a copy of ``pretrained`` is fine-tuned as
    ``[fine_tune]`` says on the library without that fold's stars, and
    predicts them (`stellarml.derive_labels`, uncalibrated). Every reference
    star is therefore predicted by a model that has not seen it, as a new
    star would be. Stars of the library that are not reference stars are in
    every fold's training set.

    Parameters
    ----------
    pretrained : `~stellarml.models.RemapModel` or `~stellarml.models.RemapEnsemble`
        The model before fine-tuning (not changed).
    cfg : dict
        The configuration (its ``[fine_tune]`` table).
    reference : `~astropy.table.Table`
        ``id`` (MILES ids) and labels (`stellarml.recipes.calibration.load_reference`).
    folds : int
        Number of folds.
    seed : int
        Seed of the fold assignment.
    fine_tune_on_reference : bool
        Fine-tune on the reference labels of the training folds' reference
        stars instead of the library's.
    reference_weight : int
        With ``fine_tune_on_reference``, how many times each such star counts.
    exclude_ids : sequence of str, optional
        MILES ids kept out of every fold's fine-tuning (stars held out for
        evaluation), on top of the fold's own.
    progress : bool
        Progress bars.

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
        If a reference star is not a MILES training star with a spectrum and
        every label, or there are fewer reference stars than folds.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import cross_fitted_posteriors, train
    >>> cfg = load_config({
    ...     "model": {"method": "remap", "name": "tiny", "device": "cpu",
    ...               "training": {"max_epochs": 1}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "pretrain": {"emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz"),
    ...                  "n_spectra": 32},
    ...     "fine_tune": {"directory": str(data_dir / "miles"), "epochs": 1,
    ...                   "validation_fraction": 0.0,
    ...                   "ids": ["0001", "0003", "0004", "0005", "0006", "0008"]},
    ... })
    >>> pretrained = train({k: v for k, v in cfg.items() if k != "fine_tune"}, progress=False)
    >>> reference = Table({"id": ["0001", "0003", "0004", "0005"]})
    >>> posterior, fold, table = cross_fitted_posteriors(
    ...     pretrained, cfg, reference, folds=2, seed=0)
    >>> print(len(posterior), sorted(fold.tolist()), table["teff"].unit)
    4 [0, 0, 1, 1] K
    """
    from ..libraries import ObservedLibrary

    ids = np.array([str(i) for i in reference["id"]])
    f = cfg["fine_tune"]
    held_out = [str(i) for i in exclude_ids or []]
    spectra = ObservedLibrary.from_miles(
        f.get("directory"), require=pretrained.label_names, ids=list(ids)
    )

    def train_without(exclude, overrides):
        model = copy.deepcopy(pretrained)
        fine_tune(
            model,
            cfg,
            exclude_ids=[*held_out, *exclude],
            progress=progress,
            label_overrides=overrides,
            override_weight=reference_weight,
        )
        return model, model.provenance_["fine_tune_library"]["ids"]

    return cross_fit(
        train_without,
        spectra,
        reference,
        folds=folds,
        seed=seed,
        use_reference=fine_tune_on_reference,
    )


def calibrate(model, pretrained, cfg, *, exclude_ids=None, progress=False):
    """Fit the ``[calibration]`` correction on out-of-fold predictions and attach it to ``model``.

    Parameters
    ----------
    model : `~stellarml.models.RemapModel` or `~stellarml.models.RemapEnsemble`
        The fine-tuned model; ``model.calibration`` is set.
    pretrained : same type
        The model before fine-tuning, the start of every fold's fine-tuning.
    cfg : dict
        The configuration.
    exclude_ids : sequence of str, optional
        Stars kept out of fine-tuning: they are neither calibration stars nor
        in any fold's fine-tuning.
    progress : bool
        Progress bars.

    Returns
    -------
    calibration : `~stellarml.calibration.LabelCalibration`
        Fitted (`stellarml.recipes.calibration.fit_cross_fitted`); also
        ``model.calibration``.

    Examples
    --------
    Calibrated to the Gaia FGK Benchmark Stars, predicted out of two folds:

    >>> import copy
    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.remap import calibrate, fine_tune, train
    >>> cfg = load_config({
    ...     "model": {"method": "remap", "name": "tiny", "device": "cpu",
    ...               "training": {"max_epochs": 1}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "pretrain": {"emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz"),
    ...                  "n_spectra": 32},
    ...     "fine_tune": {"directory": str(data_dir / "miles"), "epochs": 1,
    ...                   "validation_fraction": 0.0,
    ...                   "ids": ["0001", "0003", "0004", "0005", "0006", "0008"]},
    ... })
    >>> pretrained = train({k: v for k, v in cfg.items() if k != "fine_tune"}, progress=False)
    >>> cfg["calibration"] = {
    ...     "reference": str(data_dir / "benchmarks" / "gbs_v3_miles_train.csv"),
    ...     "folds": 2, "width": False}
    >>> model = fine_tune(copy.deepcopy(pretrained), cfg, progress=False)
    >>> calibration = calibrate(model, pretrained, cfg)
    >>> print(calibration.summary())
    trend against a reference (teff: offset; logg: offset; fe_h: offset; degree 1)
    >>> model.calibration is calibration
    True
    """
    c = cfg["calibration"]
    reference = reference_stars(cfg, model.label_names, exclude_ids)
    posterior, fold, _ = cross_fitted_posteriors(
        pretrained,
        cfg,
        reference,
        folds=int(c.get("folds", 5)),
        seed=int(c.get("seed", 0)),
        fine_tune_on_reference=bool(c.get("fine_tune_on_reference", False)),
        reference_weight=int(c.get("reference_weight", 1)),
        exclude_ids=exclude_ids,
        progress=progress,
    )
    calibration = fit_cross_fitted(cfg, model.label_names, reference, posterior, fold)
    model.calibration = calibration
    return calibration
