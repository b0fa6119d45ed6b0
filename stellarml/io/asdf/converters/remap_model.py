"""Converter for `stellarml.models.RemapModel`."""

import math

import numpy as np

from ._base import LabelModelConverter
from ._common import InvalidModelContent

__all__ = ["RemapModelConverter"]


def _lists(d):
    """Tuples -> lists, recursively (YAML has no tuples)."""
    return {
        k: (list(v) if isinstance(v, tuple) else _lists(v) if isinstance(v, dict) else v)
        for k, v in d.items()
    }


class RemapModelConverter(LabelModelConverter):
    """Serialise a trained REMAP model.

    The node holds the common model entries (see `LabelModelConverter`) and
    ``bins`` (``{label: [lo, hi, width]}``), the resolved ``architecture``,
    ``loss`` and ``training`` configuration, ``seed``, ``n_pix``, ``weights``
    and ``embedding_loss_state`` (state dicts as plain numpy arrays, written
    as ASDF binary blocks: never pickle or ``torch.save``), ``history``,
    ``metrics``, ``domain_reference`` and ``domain_threshold``. Tag 1.1.0
    adds ``calibration``; 1.0.0 files read as uncalibrated models. Reading
    refuses non-finite weights, reference embeddings and thresholds
    (``InvalidModelContent``).

    Examples
    --------
    asdf uses it for any fitted `~stellarml.models.RemapModel` in a tree, here
    one member of the shipped ``remap-optical-r2000`` ensemble:

    >>> import re, tempfile
    >>> from pathlib import Path
    >>> import asdf, torch
    >>> from stellarml import read_model
    >>> from stellarml.io.asdf.converters import RemapModelConverter
    >>> RemapModelConverter.tags
    ('asdf://stellarml.org/stellarml/tags/remap_model-1.*',)
    >>> member = read_model("remap-optical-r2000").members[0]
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "remap.asdf"
    ...     asdf.AsdfFile({"x": member}).write_to(path)
    ...     tag = re.search(b"x: !<([^>]+)>", path.read_bytes()).group(1).decode()
    ...     with asdf.open(path) as af:
    ...         back = af["x"]
    >>> print(tag)
    asdf://stellarml.org/stellarml/tags/remap_model-1.1.0
    >>> type(back).__name__, back.n_pix_, back.label_bins()["teff"]
    ('RemapModel', 2037, LabelBins(lo=3000.0, hi=8500.0, width=50.0))
    >>> back.domain_threshold_ == member.domain_threshold_
    True
    >>> before, after = member.weight_arrays()["network"], back.weight_arrays()["network"]
    >>> all((before[key] == after[key]).all() for key in before)
    True
    """

    tags = ("asdf://stellarml.org/stellarml/tags/remap_model-1.*",)
    types = ("stellarml.models.remap.model.RemapModel",)

    def method_node(self, obj, tag, ctx):
        from stellarml._utils import plain_tree

        obj._check_fitted()
        config = obj.get_config()
        weights = obj.weight_arrays()
        threshold = obj.domain_threshold_
        reference = obj.domain_reference_
        if threshold is not None and not (math.isfinite(threshold) and threshold >= 0):
            raise ValueError(
                f"the domain threshold is {threshold!r}: a model file needs a finite "
                "threshold >= 0 (or None, no domain check)"
            )
        return {
            "bins": {n: list(b.as_tuple()) for n, b in obj.label_bins().items()},
            "architecture": _lists(config["architecture"]),
            "loss": _lists(config["loss"]),
            "training": _lists(config["training"]),
            "seed": int(obj.seed),
            "n_pix": int(obj.n_pix_),
            "weights": weights["network"],
            "embedding_loss_state": weights["embedding_loss"],
            "history": plain_tree(obj.history_),
            "metrics": plain_tree(obj.metrics_),
            "domain_reference": None
            if reference is None
            else np.asarray(reference, dtype=np.float32),
            "domain_threshold": None if threshold is None else float(threshold),
        }

    def build_model(self, node, label_names, tag, ctx):
        from stellarml.models.remap import RemapModel

        required = ("bins", "architecture", "loss", "training", "n_pix", "weights")
        missing = [k for k in required if k not in node]
        if missing:
            raise ValueError(f"not a RemapModel node: missing {missing}")
        model = RemapModel(
            labels=tuple(label_names),
            bins={k: tuple(float(x) for x in v) for k, v in dict(node["bins"]).items()},
            preparation=node.get("preparation"),
            architecture=dict(node["architecture"]),
            loss=dict(node["loss"]),
            training=dict(node["training"]),
            name=str(node.get("name", "remap")),
            seed=int(node.get("seed", 0)),
        )
        try:
            model.load_weights(node["n_pix"], node["weights"], node.get("embedding_loss_state"))
        except ValueError as exc:
            if "non-finite" in str(exc):
                raise InvalidModelContent(str(exc)) from None
            raise
        model.history_ = list(node.get("history") or [])
        model.metrics_ = dict(node.get("metrics") or {})
        ref = node.get("domain_reference")
        model.domain_reference_ = None if ref is None else np.asarray(ref, dtype=np.float32)
        if ref is not None and not np.isfinite(model.domain_reference_).all():
            bad = int((~np.isfinite(model.domain_reference_)).sum())
            raise InvalidModelContent(
                f"the domain reference embeddings hold {bad} non-finite values"
            )
        threshold = node.get("domain_threshold")
        if threshold is not None and not (
            isinstance(threshold, int | float) and math.isfinite(threshold) and threshold >= 0
        ):
            raise InvalidModelContent(
                f"the domain threshold is {threshold!r}, not a finite number >= 0 "
                "(an infinite or NaN threshold would switch the domain check off)"
            )
        model.domain_threshold_ = None if threshold is None else float(threshold)
        return model
