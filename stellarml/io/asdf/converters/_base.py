"""The shared base of the model converters: the node every stellarml model has."""

from asdf.extension import Converter

from ...._utils import plain_tree, stellarml_version
from ._common import materialize, safe_units

__all__ = ["LabelModelConverter"]


class LabelModelConverter(Converter):
    r"""Base of the ASDF converters of `~stellarml.models.LabelModel` classes.

    Every model node holds the common entries

    ``name``
        The model name.
    ``stellarml_version``
        The stellarml that wrote it.
    ``labels``
        `~stellarml.labels.LabelSpec` objects (tag ``label_spec-1.*``), checked
        against the label registry when read (same name and unit).
    ``preparation``
        The `~stellarml.spectra.PreparationSettings` (tag
        ``preparation_settings-1.*``).
    ``provenance``
        What the model was trained on and how (plain values).
    ``calibration``
        Its `~stellarml.calibration.LabelCalibration` (tag
        ``label_calibration-1.*``) or null; absent in files written before
        calibrations existed.

    and the method's own entries, which a subclass writes in `method_node`
    and reads in `build_model`. The model classes are referenced by name and
    imported only in `build_model`, so that asdf can load the extension
    without importing torch.

    Examples
    --------
    stellarml's model converters all build on it:

    >>> from stellarml.io.asdf.converters import (
    ...     DTLModelConverter, EmulatorModelConverter, LabelModelConverter,
    ...     RemapEnsembleConverter, RemapModelConverter)
    >>> all(issubclass(c, LabelModelConverter) for c in (
    ...     DTLModelConverter, EmulatorModelConverter, RemapEnsembleConverter, RemapModelConverter))
    True

    The node of a shipped model file (its YAML header): the common entries and
    the method's own (here those of
    `~stellarml.io.asdf.converters.EmulatorModelConverter.method_node`):

    >>> import re
    >>> from stellarml.data import model_path
    >>> header = model_path("phdl-optical-r2000").read_bytes().split(b"\n...")[0].decode()
    >>> node = header.split("\nmodel: ")[1]
    >>> print(node.splitlines()[0])  # the model's tag
    !<asdf://stellarml.org/stellarml/tags/emulator_model-1.0.0>
    >>> keys = sorted(set(re.findall("^  ([a-z_]+):", node, re.M)))
    >>> common = ["calibration", "labels", "name", "preparation", "provenance", "stellarml_version"]
    >>> all(key in keys for key in common)
    True
    >>> [key for key in keys if key not in common]
    ['emulator', 'fit_options', 'fitter', 'fitter_settings', 'model_error']
    """

    def method_node(self, obj, tag, ctx):
        """The method's own entries of the node (dict)."""
        return {}

    def build_model(self, node, label_names, tag, ctx):
        """The model from a materialised node (common entries already checked)."""
        raise TypeError(f"{type(self).__name__} does not build models")

    def to_yaml_tree(self, obj, tag, ctx):
        node = {
            "name": str(obj.name),
            "stellarml_version": stellarml_version(),
            "labels": list(obj.label_specs),
            "preparation": obj.preparation,
            "provenance": plain_tree(dict(obj.provenance_ or {})),
            "calibration": obj.calibration,
        }
        node.update(self.method_node(obj, tag, ctx))
        return safe_units(node, ctx)

    def from_yaml_tree(self, node, tag, ctx):
        tree = materialize(node)
        names = check_labels(tree["labels"])
        model = self.build_model(tree, names, tag, ctx)
        model.provenance_ = dict(tree.get("provenance") or {})
        model.calibration = tree.get("calibration")
        return model


def check_labels(specs):
    """Names of stored `~stellarml.labels.LabelSpec`, checked against the registry."""
    from stellarml.labels import LABELS

    names = []
    for spec in specs:
        known = LABELS.get(spec.name)
        if known is None:
            raise ValueError(
                f"the model predicts label {spec.name!r}, which is not registered in "
                f"stellarml.labels (known: {', '.join(sorted(LABELS))})"
            )
        if known.unit != spec.unit:
            raise ValueError(
                f"label {spec.name!r} is stored in {spec.unit} but stellarml.labels "
                f"defines it in {known.unit}"
            )
        names.append(spec.name)
    return names
