"""Converter for `stellarml.models.RemapEnsemble`."""

from ._base import LabelModelConverter

__all__ = ["RemapEnsembleConverter"]


class RemapEnsembleConverter(LabelModelConverter):
    r"""Serialise a deep ensemble of REMAP models.

    The node holds the common model entries (see `LabelModelConverter`) and
    ``members``: the member models themselves, each written with its own
    ``remap_model`` tag (and read back by `RemapModelConverter`). Tag 1.1.0
    adds the common ``labels``, ``preparation`` and ``calibration``; 1.0.0
    files (members, name, provenance) read as uncalibrated ensembles.

    Examples
    --------
    The tags in the shipped ``remap-optical-r2000`` file (its YAML header): the
    ensemble's, and one per member:

    >>> import re
    >>> from stellarml.data import model_path
    >>> from stellarml.io.asdf.converters import RemapEnsembleConverter
    >>> RemapEnsembleConverter.tags
    ('asdf://stellarml.org/stellarml/tags/remap_ensemble-1.*',)
    >>> header = model_path("remap-optical-r2000").read_bytes().split(b"\n...")[0].decode()
    >>> re.findall("^model: !<([^>]+)>", header, re.M)
    ['asdf://stellarml.org/stellarml/tags/remap_ensemble-1.1.0']
    >>> members = re.findall("^  - !<([^>]+)>", header, re.M)
    >>> len(members), set(members)
    (3, {'asdf://stellarml.org/stellarml/tags/remap_model-1.1.0'})

    `stellarml.read_model` of that file goes through this converter and
    returns a `~stellarml.models.RemapEnsemble` of three
    `~stellarml.models.RemapModel` (a round trip through
    ``asdf.AsdfFile({"x": ensemble})`` works as for `RemapModelConverter`,
    but writes and reads 4.6 MB).
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
