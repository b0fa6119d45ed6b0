"""Converter for `stellarml.models.RemapEnsemble`."""

from ._base import LabelModelConverter

__all__ = ["RemapEnsembleConverter"]


class RemapEnsembleConverter(LabelModelConverter):
    """Serialise a deep ensemble of REMAP models.

    The node holds the common model entries (see `LabelModelConverter`) and
    ``members``: the member models themselves, each written with its own
    ``remap_model`` tag (and read back by `RemapModelConverter`). Tag 1.1.0
    adds the common ``labels``, ``preparation`` and ``calibration``; 1.0.0
    files (members, name, provenance) read as uncalibrated ensembles.
    """

    tags = ("asdf://stellarml.org/stellarml/tags/remap_ensemble-1.*",)
    types = ("stellarml.models.remap.ensemble.RemapEnsemble",)

    def method_node(self, obj, tag, ctx):
        return {"members": list(obj.members)}

    def from_yaml_tree(self, node, tag, ctx):
        if "labels" not in node:  # remap_ensemble-1.0.0: the members carry labels and grid
            from stellarml.models.remap import RemapEnsemble

            from ._common import materialize

            return RemapEnsemble(
                list(node["members"]),
                name=node.get("name"),
                provenance=materialize(node.get("provenance") or {}),
            )
        return super().from_yaml_tree(node, tag, ctx)

    def build_model(self, node, label_names, tag, ctx):
        from stellarml.models.remap import RemapEnsemble

        ensemble = RemapEnsemble(
            list(node["members"]), name=node.get("name"), provenance=node.get("provenance")
        )
        if list(ensemble.label_names) != list(label_names):
            raise ValueError(
                f"the ensemble lists labels {list(label_names)} but its members predict "
                f"{list(ensemble.label_names)}"
            )
        return ensemble
