"""Converter for the `stellarml.calibration.LabelCalibration` forms."""

import numpy as np
from asdf.extension import Converter

from ._common import check_finite, materialize

__all__ = ["LabelCalibrationConverter"]

#: Per form: constructor settings and learned attributes stored in the node.
#: Fitted entries that a calibration applies to labels: they must be finite.
_APPLIED = ("coefficients", "centers", "scale")

_LAYOUT = {
    "trend": (
        ("terms", "degree", "clip", "max_iter"),
        ("coefficients_", "covariance_", "centers_", "ranges_", "scatter_", "n_used_"),
    ),
    "width": (
        ("labels", "n_bootstrap", "seed"),
        ("scale_", "scale_interval_", "coverage_before_", "coverage_after_"),
    ),
    "group": (
        ("label", "terms", "degree", "clip", "max_iter"),
        (
            "coefficients_",
            "covariance_",
            "centers_",
            "ranges_",
            "spread_before_",
            "spread_after_",
            "n_groups_",
        ),
    ),
}


def _yaml(value):
    """Tuples -> lists and numpy scalars -> Python, recursively (arrays stay arrays)."""
    if isinstance(value, dict):
        return {str(k): _yaml(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_yaml(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class LabelCalibrationConverter(Converter):
    """Serialise a fitted calibration (tag ``label_calibration-1.0.0``).

    The node holds ``kind`` (``"trend"``, ``"width"``, ``"group"`` or
    ``"chain"``), ``settings`` (the constructor's arguments), ``fitted`` (the
    learned attributes, coefficient covariances as arrays), ``label_order``
    (the order of the corrected labels), ``provenance``
    (reference set, number and identifiers of the stars...) and, for a chain,
    ``steps`` (tagged calibrations). Only fitted calibrations are written.

    Examples
    --------
    asdf uses it for any fitted calibration in a tree, here the one a shipped
    model carries (a chain of a trend and a width calibration):

    >>> import re, tempfile
    >>> from pathlib import Path
    >>> import asdf
    >>> from stellarml import read_model
    >>> from stellarml.io.asdf.converters import LabelCalibrationConverter
    >>> LabelCalibrationConverter.tags
    ('asdf://stellarml.org/stellarml/tags/label_calibration-1.*',)
    >>> calibration = read_model("phdl-optical-r2000").calibration
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "calibration.asdf"
    ...     asdf.AsdfFile({"x": calibration}).write_to(path)
    ...     tags = re.findall(b"!<(asdf:[^>]+)>", path.read_bytes())
    ...     with asdf.open(path) as af:
    ...         back = af["x"]
    >>> len(tags), set(tags)  # the chain and its two steps
    (3, {b'asdf://stellarml.org/stellarml/tags/label_calibration-1.0.0'})
    >>> type(back).__name__, [step.kind for step in back.steps]
    ('ChainedCalibration', ['trend', 'width'])
    >>> back.describe() == calibration.describe()
    True

    An unfitted calibration is refused:

    >>> import io
    >>> from stellarml.calibration import TrendCalibration
    >>> try:
    ...     asdf.AsdfFile({"x": TrendCalibration({"teff": []})}).write_to(io.BytesIO())
    ... except ValueError as err:
    ...     print(err)
    cannot write an unfitted TrendCalibration
    """

    tags = ("asdf://stellarml.org/stellarml/tags/label_calibration-1.*",)
    types = (
        "stellarml.calibration.TrendCalibration",
        "stellarml.calibration.WidthCalibration",
        "stellarml.calibration.GroupCalibration",
        "stellarml.calibration.ChainedCalibration",
    )

    def to_yaml_tree(self, obj, tag, ctx):
        if not obj.is_fitted:
            raise ValueError(f"cannot write an unfitted {type(obj).__name__}")
        node = {"kind": obj.kind, "provenance": _yaml(obj.provenance_)}
        if obj.kind == "chain":
            node["steps"] = list(obj.steps)
            return node
        settings, fitted = _LAYOUT[obj.kind]
        node["settings"] = {key: _yaml(getattr(obj, key)) for key in settings}
        node["fitted"] = {key.rstrip("_"): _yaml(getattr(obj, key)) for key in fitted}
        node["label_order"] = list(obj.label_names)  # YAML mappings do not keep their order
        return node

    def from_yaml_tree(self, node, tag, ctx):
        from stellarml import calibration

        kind = node["kind"]
        if kind == "chain":
            obj = calibration.ChainedCalibration(list(node["steps"]))
        else:
            classes = {
                "trend": calibration.TrendCalibration,
                "width": calibration.WidthCalibration,
                "group": calibration.GroupCalibration,
            }
            if kind not in classes:
                raise ValueError(f"unknown calibration kind {kind!r}")
            settings, fitted = _LAYOUT[kind]
            stored = materialize(node["settings"])
            obj = classes[kind](**{key: stored[key] for key in settings if key in stored})
            values = materialize(node["fitted"])
            check_finite(
                {k: v for k, v in values.items() if k in _APPLIED},
                f"the {kind} calibration's fitted",
            )
            order = list(node.get("label_order") or [])
            for key in fitted:
                value = _restore(key, values[key.rstrip("_")])
                if isinstance(value, dict) and order and set(value) == set(order):
                    value = {label: value[label] for label in order}
                setattr(obj, key, value)
        obj.provenance_ = materialize(node.get("provenance") or {})
        return obj


def _restore(key, value):
    """Learned attributes as the calibration classes keep them."""
    if key in ("coefficients_", "covariance_"):
        if isinstance(value, dict):
            return {k: np.asarray(v, dtype=np.float64) for k, v in value.items()}
        return np.asarray(value, dtype=np.float64)
    if key == "ranges_":
        if value and all(isinstance(v, dict) for v in value.values()):
            return {k: {p: tuple(r) for p, r in v.items()} for k, v in value.items()}
        return {k: tuple(v) for k, v in value.items()}
    if key == "scale_interval_":
        return {k: tuple(v) for k, v in value.items()}
    return value
