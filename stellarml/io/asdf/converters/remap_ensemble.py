"""Converter for `stellarml.models.ensemble.RemapEnsemble`."""

from asdf.extension import Converter

from ._common import materialize

__all__ = ["RemapEnsembleConverter"]


class RemapEnsembleConverter(Converter):
    """Serialise a deep ensemble of REMAP models.

    The node holds ``name``, ``stellarml_version``, ``provenance`` and
    ``members``: the member models themselves, each written with its own
    ``remap_model`` tag (and read back by `RemapModelConverter`). The class is
    referenced by name so that asdf can load this extension without importing
    torch.
    """

    tags = ("asdf://stellarml.org/stellarml/tags/remap_ensemble-1.*",)
    types = ("stellarml.models.ensemble.RemapEnsemble",)

    def to_yaml_tree(self, obj, tag, ctx):
        from stellarml import __version__

        return {
            "name": obj.name,
            "stellarml_version": __version__,
            "members": list(obj.members),
            "provenance": obj.to_tree()["provenance"],
        }

    def from_yaml_tree(self, node, tag, ctx):
        from stellarml.models.ensemble import RemapEnsemble

        return RemapEnsemble(
            list(node["members"]),
            name=node.get("name"),
            provenance=materialize(node.get("provenance") or {}),
        )
