"""Converter for `stellarml.models.remap.RemapModel`."""

from asdf.extension import Converter

from ._common import materialize, safe_units

__all__ = ["RemapModelConverter"]


class RemapModelConverter(Converter):
    """Serialise a trained REMAP model.

    The node is ``RemapModel.to_tree()`` with three changes that make the file
    self-describing:

    * ``labels`` holds `~stellarml.labels.LabelSpec` objects (tag
      ``label_spec-1.0.0``: name, unit, UCD, description, range) instead of
      names, and the redundant ``units`` strings are dropped;
    * ``preparation`` is a tagged ``preparation_settings-1.0.0`` object;
    * ``stellarml_version`` records the writing stellarml.

    Network weights are plain numpy arrays, written as ASDF binary blocks
    (never pickle or ``torch.save``). Reading checks that every stored label
    matches the label registry (same unit) and calls ``RemapModel.from_tree``.
    The model class is referenced by name so that asdf can load this extension
    without importing torch.
    """

    tags = ("asdf://stellarml.org/stellarml/tags/remap_model-1.*",)
    types = ("stellarml.models.remap.RemapModel",)

    def to_yaml_tree(self, obj, tag, ctx):
        from stellarml import __version__
        from stellarml.spectra.prepare import PreparationSettings

        node = dict(obj.to_tree())
        node.pop("units", None)
        node["labels"] = list(obj.label_specs)
        if isinstance(node.get("preparation"), dict):
            node["preparation"] = PreparationSettings.from_dict(node["preparation"])
        node["stellarml_version"] = __version__
        return safe_units(node, ctx)

    def from_yaml_tree(self, node, tag, ctx):
        from stellarml.labels import LABELS
        from stellarml.models.remap import RemapModel

        tree = materialize(node)
        names = []
        for spec in tree["labels"]:
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
        tree["labels"] = names
        tree["units"] = [spec.unit.to_string() for spec in node["labels"]]
        tree.pop("stellarml_version", None)
        return RemapModel.from_tree(tree)
