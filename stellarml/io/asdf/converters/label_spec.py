"""Converter for `stellarml.labels.LabelSpec`."""

from asdf.extension import Converter

from ._common import safe_units

__all__ = ["LabelSpecConverter"]


class LabelSpecConverter(Converter):
    """Serialise a `~stellarml.labels.LabelSpec` (name, unit, UCD, description, range).

    The unit is written with asdf-astropy's unit tags: VOUnit-compatible units
    (``K``, ``km / s``) get ``tag:stsci.edu:asdf/unit/unit-1.0.0``, the others
    (``dex``) ``tag:astropy.org:astropy/units/unit-1.0.0``. See
    `~stellarml.io.asdf.converters._common.safe_units` for why the choice is
    checked here rather than left to asdf-astropy alone.

    Examples
    --------
    asdf uses it for any `~stellarml.labels.LabelSpec` in a tree:

    >>> import re, tempfile
    >>> from pathlib import Path
    >>> import asdf
    >>> from stellarml.io.asdf.converters import LabelSpecConverter
    >>> from stellarml.labels import LABELS
    >>> LabelSpecConverter.tags
    ('asdf://stellarml.org/stellarml/tags/label_spec-1.*',)
    >>> spec = LABELS["fe_h"]
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "spec.asdf"
    ...     asdf.AsdfFile({"x": spec}).write_to(path)
    ...     text = path.read_text()
    ...     with asdf.open(path) as af:
    ...         back = af["x"]
    >>> print(re.search("x: (.+)", text).group(1))
    !<asdf://stellarml.org/stellarml/tags/label_spec-1.0.0>
    >>> print(re.search("unit: (.+)", text).group(1))  # dex: the astropy unit tag
    !<tag:astropy.org:astropy/units/unit-1.0.0> dex
    >>> back == spec, back.unit, back.physical_range
    (True, Unit("dex"), (-5.0, 1.5))
    """

    tags = ("asdf://stellarml.org/stellarml/tags/label_spec-1.*",)
    types = ("stellarml.labels.LabelSpec",)

    def to_yaml_tree(self, obj, tag, ctx):
        return {
            "name": obj.name,
            "unit": safe_units(obj.unit, ctx),
            "ucd": obj.ucd,
            "description": obj.description,
            "physical_range": [float(v) for v in obj.physical_range],
        }

    def from_yaml_tree(self, node, tag, ctx):
        from stellarml.labels import LabelSpec

        return LabelSpec(
            name=str(node["name"]),
            unit=node["unit"],
            ucd=str(node["ucd"]),
            description=str(node["description"]),
            physical_range=tuple(float(v) for v in node["physical_range"]),
        )
