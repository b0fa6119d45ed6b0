"""Converter for `stellarml.models.DTLModel`."""

import math

import numpy as np

from ._base import LabelModelConverter

__all__ = ["DTLModelConverter"]

_MEMBER_KEYS = ("width", "l1", "pretrained", "latent_mean", "latent_std", "reference", "regressors")


def _float32(state):
    return {k: np.asarray(v, dtype=np.float32) for k, v in dict(state).items()}


class DTLModelConverter(LabelModelConverter):
    """Serialise a trained DTL ensemble as one node.

    The node holds the common model entries (see `LabelModelConverter`) and
    the resolved ``architecture``, ``training`` and ``ensemble``
    configuration, ``seed``, ``n_pix``, ``label_mean``/``label_std``,
    ``input_mean``/``input_std`` (per-pixel input standardisation, when the
    architecture standardises), ``label_range`` (the synthetic labels' box),
    ``metrics`` and ``members``: per autoencoder its ``width``, ``l1``,
    ``pretrained`` weights, ``adapted`` weights (the fine-tuned layers only;
    null before adaptation), latent standardisation, ``reference`` latents,
    out-of-domain ``thresholds`` and the kept ``regressors``. Every weight is
    a float32 ASDF binary block (never pickle); the networks are built only
    when a prediction first needs them. Reading refuses non-finite weights and
    thresholds.

    Examples
    --------
    asdf uses it for any `~stellarml.models.DTLModel` in a tree, here the
    shipped ``dtl-optical-r2000`` (two autoencoders):

    >>> import re, tempfile
    >>> from pathlib import Path
    >>> import asdf
    >>> import numpy as np
    >>> from stellarml import read_model
    >>> from stellarml.io.asdf.converters import DTLModelConverter
    >>> DTLModelConverter.tags
    ('asdf://stellarml.org/stellarml/tags/dtl_model-1.*',)
    >>> model = read_model("dtl-optical-r2000")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "dtl.asdf"
    ...     asdf.AsdfFile({"x": model}).write_to(path)
    ...     tag = re.search(b"x: !<([^>]+)>", path.read_bytes()).group(1).decode()
    ...     with asdf.open(path) as af:
    ...         back = af["x"]
    >>> print(tag)
    asdf://stellarml.org/stellarml/tags/dtl_model-1.0.0
    >>> type(back).__name__, len(back.members_), back.label_names
    ('DTLModel', 2, ('teff', 'logg', 'fe_h'))
    >>> a, b = model.members_[0], back.members_[0]
    >>> a["thresholds"] == b["thresholds"], np.array_equal(a["reference"], b["reference"])
    (True, True)
    """

    tags = ("asdf://stellarml.org/stellarml/tags/dtl_model-1.*",)
    types = ("stellarml.models.dtl.model.DTLModel",)

    def method_node(self, obj, tag, ctx):
        from stellarml._utils import plain_tree

        obj._check_fitted()
        members = []
        for m in obj.members_:
            members.append(
                {
                    "width": int(m["width"]),
                    "l1": float(m["l1"]),
                    "pretrained": _float32(m["pretrained"]),
                    "adapted": None if m["adapted"] is None else _float32(m["adapted"]),
                    "latent_mean": np.asarray(m["latent_mean"], dtype=np.float32),
                    "latent_std": np.asarray(m["latent_std"], dtype=np.float32),
                    "reference": np.asarray(m["reference"], dtype=np.float32),
                    "thresholds": {k: float(v) for k, v in m["thresholds"].items()},
                    "regressors": [_float32(r) for r in m["regressors"]],
                    "regressor_mse": [float(x) for x in m["regressor_mse"]],
                    "regressor_ids": [int(x) for x in m.get("regressor_ids", [])],
                }
            )
        return {
            **{k: plain_tree(v) for k, v in obj.get_config().items()},
            "seed": int(obj.seed),
            "n_pix": int(obj.n_pix_),
            "label_mean": np.asarray(obj.label_mean_, dtype=np.float64),
            "label_std": np.asarray(obj.label_std_, dtype=np.float64),
            "metrics": plain_tree(obj.metrics_),
            "members": members,
            **{
                key: np.asarray(getattr(obj, f"{key}_"), dtype=dtype)
                for key, dtype in (
                    ("input_mean", np.float32),
                    ("input_std", np.float32),
                    ("label_range", np.float64),
                )
                if getattr(obj, f"{key}_", None) is not None
            },
        }

    def build_model(self, node, label_names, tag, ctx):
        from stellarml.models.dtl import DTLModel

        required = ("architecture", "training", "ensemble", "n_pix", "members")
        missing = [k for k in required if k not in node]
        if missing:
            raise ValueError(f"not a DTLModel node: missing {missing}")
        model = DTLModel(
            labels=tuple(label_names),
            preparation=node.get("preparation"),
            architecture=dict(node["architecture"]),
            training=dict(node["training"]),
            ensemble=dict(node["ensemble"]),
            name=str(node.get("name", "dtl")),
            seed=int(node.get("seed", 0)),
        )
        model.get_config()
        model.n_pix_ = int(node["n_pix"])
        model.label_mean_ = np.asarray(node["label_mean"], dtype=np.float64)
        model.label_std_ = np.asarray(node["label_std"], dtype=np.float64)
        members = []
        for k, m in enumerate(node["members"]):
            missing = [key for key in _MEMBER_KEYS if key not in m]
            if missing:
                raise ValueError(f"DTL member {k} lacks {missing}")
            thresholds = {key: float(v) for key, v in dict(m.get("thresholds") or {}).items()}
            if set(thresholds) != {"latent", "reconstruction"} or not all(
                math.isfinite(v) for v in thresholds.values()
            ):
                raise ValueError(f"DTL member {k} has invalid thresholds {thresholds}")
            for key in ("latent_mean", "latent_std", "reference"):
                if not np.isfinite(np.asarray(m[key])).all():
                    raise ValueError(f"DTL member {k}'s {key} holds non-finite values")
            members.append(
                {
                    "width": int(m["width"]),
                    "l1": float(m["l1"]),
                    "pretrained": dict(m["pretrained"]),
                    "adapted": None if m.get("adapted") is None else dict(m["adapted"]),
                    "latent_mean": np.asarray(m["latent_mean"], dtype=np.float32),
                    "latent_std": np.asarray(m["latent_std"], dtype=np.float32),
                    "reference": np.asarray(m["reference"], dtype=np.float32),
                    "thresholds": thresholds,
                    "regressors": [dict(r) for r in m["regressors"]],
                    "regressor_mse": [float(x) for x in m.get("regressor_mse", [])],
                    "regressor_ids": [int(x) for x in m.get("regressor_ids", [])],
                }
            )
        model.members_ = members
        if "label_range" in node:
            model.label_range_ = np.asarray(node["label_range"], dtype=np.float64)
        if model.get_config()["architecture"]["input_scaling"] != "unit":
            for key in ("input_mean", "input_std"):
                value = np.asarray(node.get(key, np.zeros(0)), dtype=np.float32)
                if value.shape != (model.n_pix_,) or not np.isfinite(value).all():
                    raise ValueError(
                        f"a standardising DTL model needs a finite {key} of {model.n_pix_} "
                        f"pixels; got shape {value.shape}"
                    )
                setattr(model, f"{key}_", value)
        model.metrics_ = dict(node.get("metrics") or {})
        for k in range(len(members)):  # weights are checked now, networks built on first use
            for state in (members[k]["pretrained"], members[k]["adapted"] or {}):
                bad = [n for n, v in state.items() if not np.isfinite(np.asarray(v)).all()]
                if bad:
                    raise ValueError(f"DTL member {k} weights {bad[:5]} hold non-finite values")
        return model
