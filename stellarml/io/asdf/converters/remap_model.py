"""Converter for `stellarml.models.remap.RemapModel`."""

from asdf.extension import Converter

from ._common import materialize, safe_units

__all__ = ["RemapModelConverter"]


class RemapModelConverter(Converter):
    """Serialise a trained REMAP model.

    The tree is ``RemapModel.to_tree()``: configuration dicts, label
    definitions, preparation settings, provenance, and the network weights as
    plain numpy arrays (written as ASDF binary blocks; never pickle or
    ``torch.save``). Reading calls ``RemapModel.from_tree``. The model class is
    referenced by name so that asdf can load this extension without importing
    torch.
    """

    tags = ("asdf://stellarml.org/stellarml/tags/remap_model-1.*",)
    types = ("stellarml.models.remap.RemapModel",)

    def to_yaml_tree(self, obj, tag, ctx):
        return safe_units(dict(obj.to_tree()), ctx)

    def from_yaml_tree(self, node, tag, ctx):
        from stellarml.models.remap import RemapModel

        return RemapModel.from_tree(materialize(node))
