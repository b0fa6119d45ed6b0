"""Converter for `stellarml.spectra.prepare.PreparationSettings`."""

from asdf.extension import Converter

from ._common import materialize, safe_units

__all__ = ["PreparationSettingsConverter"]


class PreparationSettingsConverter(Converter):
    """Serialise the preparation settings of a model (grid, medium, LSF, continuum).

    The tree is ``PreparationSettings.to_dict()``; the wavelength grid is always
    written as a Quantity in Angstrom (an ASDF block), so the grid survives
    bit-for-bit.
    """

    tags = ("asdf://stellarml.org/stellarml/tags/preparation_settings-1.*",)
    types = ("stellarml.spectra.prepare.PreparationSettings",)

    def to_yaml_tree(self, obj, tag, ctx):
        import astropy.units as u
        import numpy as np

        node = safe_units(dict(obj.to_dict()), ctx)
        wavelength = node["wavelength"]
        if isinstance(wavelength, u.Quantity):
            node["wavelength"] = wavelength.to(u.AA)
        else:
            node["wavelength"] = np.asarray(wavelength, dtype=float) * u.AA
        return node

    def from_yaml_tree(self, node, tag, ctx):
        from stellarml.spectra.prepare import PreparationSettings

        return PreparationSettings.from_dict(materialize(node))
