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
    """Raise `ValueError` naming what a DTL configuration lacks or gets wrong."""
    check_tables(cfg, _REQUIRED)
    a = cfg.get("adapt")
    if a is not None and a.get("library", "miles") != "miles":
        raise ValueError(f"unsupported adaptation library {a.get('library')!r}; use 'miles'")
    build_model(cfg, None).get_config()  # unknown or invalid settings fail here


def build_model(cfg, preparation):
    """An unfitted `~stellarml.models.DTLModel` from the ``[model]`` table."""
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
    exclude_ids : sequence of str, optional
        MILES ids to leave out (e.g. a held-out fold), on top of the
        configuration's ``exclude_ids``.

    Returns
    -------
    library : `~stellarml.libraries.ObservedLibrary`
        The stars of the training list with a spectrum and a Teff (the
        reader needs one label column; no label is used).
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
