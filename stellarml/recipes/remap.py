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
    ``wavelength_min``, ``wavelength_max`` [Angstrom], ``dloglam`` (step in
    ln lambda), ``medium``, ``resolution`` (R), and optional
    `~stellarml.spectra.PreparationSettings` fields.
``[pretrain]``
    ``emulator`` (path to a polynomial emulator npz), ``n_spectra``,
    ``design``, ``seed``, optional ``ranges`` (``label = [lo, hi]``),
    ``wavelength_margin`` [Angstrom], ``rv_jitter`` [km/s],
    ``continuum_distortion``.
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

__all__ = [
    "build_finetune_library",
    "build_model",
    "build_preparation",
    "build_pretrain_library",
    "check_config",
    "fine_tune",
    "in_bins",
    "member_config",
    "train",
]

_REQUIRED = {
    "model": ("name",),
    "preparation": ("wavelength_min", "wavelength_max", "dloglam"),
    "pretrain": (),
}


def check_config(cfg):
    """Raise `ValueError` naming what a REMAP configuration lacks or gets wrong."""
    for section, keys in _REQUIRED.items():
        if section not in cfg:
            raise ValueError(f"training configuration lacks the [{section}] table")
        missing = [k for k in keys if k not in cfg[section]]
        if missing:
            raise ValueError(f"[{section}] lacks {', '.join(missing)}")
    n = cfg["model"].get("ensemble", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"[model] ensemble must be a positive integer, got {n!r}")


def member_config(cfg, k):
    """The configuration of ensemble member ``k``: model and library seeds shifted by ``k``.

    Member 0 is the configuration itself, unchanged.
    """
    member = copy.deepcopy(cfg)
    if k == 0:
        return member
    seed = int(member["model"].get("seed", 0))
    member["model"]["seed"] = seed + k
    member["pretrain"]["seed"] = int(member["pretrain"].get("seed", seed)) + k
    return member


def build_preparation(cfg):
    """`~stellarml.spectra.PreparationSettings` from the ``[preparation]`` table."""
    from ..spectra import PreparationSettings, log_lambda_grid

    prep = dict(cfg["preparation"])
    grid = log_lambda_grid(
        float(prep.pop("wavelength_min")),
        float(prep.pop("wavelength_max")),
        float(prep.pop("dloglam")),
    )
    return PreparationSettings(wavelength=grid * u.AA, **prep)


def build_model(cfg, preparation):
    """An unfitted `~stellarml.models.RemapModel` from the ``[model]`` table."""
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


def build_pretrain_library(cfg, preparation):
    """The synthetic pre-training library of the ``[pretrain]`` table.

    The emulator is degraded once (its coefficients are broadened to the
    model's resolving power, on a window ``wavelength_margin`` wider than the
    model grid, converted to the emulator's medium), then sampled.
    """
    from ..libraries import PolynomialEmulatorLibrary
    from ..spectra import air_to_vacuum, vacuum_to_air

    p = cfg["pretrain"]
    emulator = PolynomialEmulatorLibrary.from_file(p["emulator"])
    grid = preparation.wavelength.to_value(u.AA)
    lo, hi = grid[0], grid[-1]
    if preparation.medium != emulator.medium:
        convert = vacuum_to_air if emulator.medium == "air" else air_to_vacuum
        lo, hi = convert(np.array([lo, hi]))
    margin = float(p.get("wavelength_margin", 60.0))
    degraded = emulator.degrade(
        resolution=preparation.resolution, wavelength_range=(lo - margin, hi + margin) * u.AA
    )
    ranges = {k: tuple(v) for k, v in p.get("ranges", {}).items()} or None
    library = degraded.sample(
        int(p.get("n_spectra", 20000)),
        ranges=ranges,
        design=p.get("design", "training"),
        seed=int(p.get("seed", cfg["model"].get("seed", 0))),
    )
    rv_jitter = float(p.get("rv_jitter", 0.0))
    distortion = float(p.get("continuum_distortion", 0.0))
    if rv_jitter or distortion:
        library = library.augment(
            rv_jitter=rv_jitter,
            continuum_distortion=distortion,
            seed=int(p.get("seed", 0)) + 1,
        )
    return library


def build_finetune_library(cfg, *, ids=None, exclude_ids=None):
    """The observed fine-tuning library of the ``[fine_tune]`` table (MILES training stars).

    Parameters
    ----------
    ids, exclude_ids : sequence of str, optional
        Restrict to / leave out these MILES ids (used for k-fold evaluation);
        they combine with ``ids``/``exclude_ids`` in the configuration.
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
    """Boolean mask of library rows whose labels all lie inside the model's bins."""
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
    if pretrained_output is not None:
        model.provenance_["config"] = cfg
        write_model(model, pretrained_output)
    if cfg.get("fine_tune"):
        fine_tune(model, cfg, exclude_ids=fine_tune_exclude_ids, progress=progress)
    model.provenance_["config"] = cfg
    if output is not None:
        write_model(model, output)
    return model


def fine_tune(model, cfg, *, ids=None, exclude_ids=None, progress=True):
    """Fine-tune ``model`` on the ``[fine_tune]`` library; records the MILES ids used."""
    f = cfg["fine_tune"]
    observed = build_finetune_library(cfg, ids=ids, exclude_ids=exclude_ids)
    inside = in_bins(model, observed)
    outside = [str(i) for i in np.asarray(observed.labels["id"])[~inside]]
    observed = observed[inside]
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
        "ids": [str(i) for i in np.asarray(observed.labels["id"])],
        "outside_bins_ids": outside,
        "dropped": observed.meta.get("dropped", []),
    }
    for target in (model, *getattr(model, "members", ())):
        target.provenance_["fine_tune_library"] = copy.deepcopy(record)
    return model
