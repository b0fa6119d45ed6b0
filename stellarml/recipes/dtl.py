"""The DTL recipe: a configuration in, a trained (and adapted) DTL model out.

``stellarml train CONFIG`` with ``[model] method = "dtl"``. The grid, the
synthetic library and its preparation are those of the REMAP recipe (the
same ``[preparation]`` and ``[pretrain]`` tables, built by
`stellarml.recipes.remap.build_preparation` and
`~stellarml.recipes.remap.build_pretrain_library`), so that a DTL model and a
REMAP model of one domain read spectra identically. Paths may use
``{data_dir}``.

``[model]``
    ``method = "dtl"``, ``name``, ``labels``, ``seed``, ``device``, and
    optional ``[model.architecture]``, ``[model.training]``,
    ``[model.ensemble]`` overriding the `~stellarml.models.DTLModel`
    defaults (``stellarml.models.dtl.config``).
``[preparation]``, ``[pretrain]``
    As in `stellarml.recipes.remap`.
``[adapt]`` (optional)
    The unlabelled observed spectra the autoencoders are fine-tuned on:
    ``library = "miles"`` (the MILES training list; its labels are never
    read), ``directory``, ``ids``/``exclude_ids`` (MILES ids).
"""

import numpy as np

from ..io.asdf.model_io import write_model
from .calibration import check_tables
from .remap import build_preparation, build_pretrain_library

__all__ = ["build_adapt_library", "build_model", "check_config", "train"]

_REQUIRED = {
    "model": ("name",),
    "preparation": ("wavelength_min", "wavelength_max", "dloglam"),
    "pretrain": (),
}


def check_config(cfg):
    """Raise `ValueError` naming what a DTL configuration lacks or gets wrong.

    Parameters
    ----------
    cfg : dict
        The configuration (see the module documentation).

    Raises
    ------
    ValueError
        If a required table or key is missing, ``[adapt]`` names a library
        other than MILES, or ``[model.architecture]``, ``[model.training]`` or
        ``[model.ensemble]`` has an unknown or invalid setting.

    Examples
    --------
    >>> from stellarml.recipes.dtl import check_config
    >>> cfg = {"model": {"name": "tiny-dtl", "architecture": {"depth": 3}},
    ...        "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                        "dloglam": 3e-4},
    ...        "pretrain": {}}
    >>> try:
    ...     check_config(cfg)
    ... except ValueError as err:
    ...     print(err)
    unknown architecture settings ['depth']; known: [...]
    >>> cfg["model"]["architecture"] = {"widths": [64]}
    >>> check_config(cfg)  # passes
    """
    check_tables(cfg, _REQUIRED)
    a = cfg.get("adapt")
    if a is not None and a.get("library", "miles") != "miles":
        raise ValueError(f"unsupported adaptation library {a.get('library')!r}; use 'miles'")
    build_model(cfg, None).get_config()  # unknown or invalid settings fail here


def build_model(cfg, preparation):
    """An unfitted `~stellarml.models.DTLModel` from the ``[model]`` table.

    Parameters
    ----------
    cfg : dict
        The configuration (its ``[model]`` table: ``name``, ``labels``,
        ``architecture``, ``training``, ``ensemble``, ``seed``, ``device``,
        default ``"cpu"``).
    preparation : `~stellarml.spectra.PreparationSettings` or None
        The model's preparation (`stellarml.recipes.remap.build_preparation`).

    Returns
    -------
    model : `~stellarml.models.DTLModel`
        Not fitted.

    Examples
    --------
    >>> from stellarml.recipes.dtl import build_model
    >>> model = build_model({"model": {"name": "tiny-dtl", "labels": ["teff", "logg"]}}, None)
    >>> type(model).__name__, model.name, model.label_names
    ('DTLModel', 'tiny-dtl', ('teff', 'logg'))
    """
    from ..models import DTLModel

    m = cfg["model"]
    return DTLModel(
        labels=tuple(m.get("labels", ("teff", "logg", "fe_h"))),
        preparation=preparation,
        architecture=m.get("architecture"),
        training=m.get("training"),
        ensemble=m.get("ensemble"),
        name=m["name"],
        seed=int(m.get("seed", 0)),
        device=m.get("device", "cpu"),
    )


def build_adapt_library(cfg, *, exclude_ids=None):
    """The unlabelled adaptation spectra of the ``[adapt]`` table (MILES training stars).

    Parameters
    ----------
    cfg : dict
        The configuration (its ``[adapt]`` table: ``directory``, ``ids``,
        ``exclude_ids``).
    exclude_ids : sequence of str, optional
        MILES ids to leave out (e.g. a held-out fold), on top of the
        configuration's ``exclude_ids`` (``"4"`` means ``"0004"``).

    Returns
    -------
    library : `~stellarml.libraries.ObservedLibrary`
        The stars of the training list with a spectrum and a Teff (the
        reader needs one label column; no label is used).

    Raises
    ------
    ValueError
        If the configuration has no ``[adapt]`` table.

    Examples
    --------
    >>> from stellarml.recipes.dtl import build_adapt_library
    >>> cfg = {"adapt": {"directory": str(data_dir / "miles"),
    ...                  "ids": ["0001", "0003", "0004", "0005"]}}
    >>> library = build_adapt_library(cfg, exclude_ids=["4"])
    >>> sorted(str(i) for i in library.labels["id"])
    ['0001', '0003', '0005']
    """
    from ..libraries import ObservedLibrary

    a = cfg.get("adapt")
    if not a:
        raise ValueError("configuration has no [adapt] table")
    # from_miles needs one label column; it is never read (stars without Teff are left out)
    library = ObservedLibrary.from_miles(a.get("directory"), require=("teff",), ids=a.get("ids"))
    excluded = {str(i).zfill(4) for i in list(a.get("exclude_ids", [])) + list(exclude_ids or [])}
    if excluded:
        library = library[~np.isin(np.asarray(library.labels["id"]), sorted(excluded))]
    return library


def train(cfg, *, output=None, progress=True, adapt_exclude_ids=None, pretrained_output=None):
    """Train a DTL model on the synthetic library and adapt it as the configuration says.

    Parameters
    ----------
    cfg : dict
        The configuration, as `stellarml.recipes.load_config` returns it.
    output : str or path-like, optional
        Write the (adapted) model to this ASDF file.
    progress : bool
        Progress bars.
    adapt_exclude_ids : sequence of str, optional
        MILES ids kept out of the adaptation set (held out for evaluation).
    pretrained_output : str or path-like, optional
        Also write the model before adaptation (the synthetic-only baseline).

    Returns
    -------
    model : `~stellarml.models.DTLModel`
        Adapted when the configuration has an ``[adapt]`` table.

    Raises
    ------
    ValueError
        If the configuration is incomplete or wrong (`check_config`).

    Examples
    --------
    A tiny model (64 synthetic spectra, one epoch per stage, adapted on four
    MILES stars) trains in about a second:

    >>> from stellarml.recipes import load_config
    >>> from stellarml.recipes.dtl import train
    >>> cfg = load_config({
    ...     "model": {"method": "dtl", "name": "tiny-dtl", "seed": 3,
    ...               "architecture": {"widths": [16]},
    ...               "training": {"ae_epochs": 1, "cnn_epochs": 1, "fine_tune_epochs": 1},
    ...               "ensemble": {"n_autoencoders": 1, "n_regressors": 1, "keep": 1}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "pretrain": {"emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz"),
    ...                  "n_spectra": 64},
    ...     "adapt": {"directory": str(data_dir / "miles"),
    ...               "ids": ["0001", "0003", "0004", "0005"]},
    ... })
    >>> model = train(cfg, progress=False)
    >>> type(model).__name__, model.is_adapted(), model.label_names
    ('DTLModel', True, ('teff', 'logg', 'fe_h'))
    >>> sorted(model.provenance_["adapt"]["ids"])
    ['0001', '0003', '0004', '0005']
    """
    check_config(cfg)
    preparation = build_preparation(cfg)
    model = build_model(cfg, preparation)
    library = build_pretrain_library(cfg, preparation)
    batch = library.prepare(preparation)
    model.fit_prepared(
        batch.flux,
        library.label_array(list(model.label_names)),
        ivar=batch.ivar,
        flags=batch.flags,
        progress=progress,
        source=getattr(library, "meta", None),
    )
    del library, batch
    model.provenance_["config"] = cfg
    if pretrained_output is not None:
        write_model(model, pretrained_output)
    if cfg.get("adapt"):
        observed = build_adapt_library(cfg, exclude_ids=adapt_exclude_ids)
        model = model.adapt(observed, progress=progress)
        model.provenance_["config"] = cfg
    if output is not None:
        write_model(model, output)
    return model
