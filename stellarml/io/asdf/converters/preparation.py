"""Converter for `stellarml.spectra.prepare.PreparationSettings`."""

from asdf.extension import Converter

from ._common import materialize, safe_units

__all__ = ["PreparationSettingsConverter"]


class PreparationSettingsConverter(Converter):
    """Serialise the preparation settings of a model (grid, medium, LSF, continuum).

    The tree is ``PreparationSettings.to_dict()``; the wavelength grid is always
    written as a Quantity in Angstrom (an ASDF block), so the grid survives
    bit-for-bit.

    Examples
    --------
    asdf uses it for any `~stellarml.spectra.PreparationSettings` in a tree:

    >>> import re, tempfile
    >>> from pathlib import Path
    >>> import asdf
    >>> import astropy.units as u
    >>> from stellarml.io.asdf.converters import PreparationSettingsConverter
    >>> from stellarml.spectra import PreparationSettings, log_lambda_grid
    >>> PreparationSettingsConverter.tags
    ('asdf://stellarml.org/stellarml/tags/preparation_settings-1.*',)
    >>> grid = (log_lambda_grid(5000.0, 5100.0, 1e-4) * u.AA).to(u.nm)  # 199 px, in nm
    >>> settings = PreparationSettings(wavelength=grid, resolution=2000.0)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "settings.asdf"
    ...     asdf.AsdfFile({"x": settings}).write_to(path)
    ...     tag = re.search(b"x: !<([^>]+)>", path.read_bytes()).group(1).decode()
    ...     with asdf.open(path) as af:
    ...         back = af["x"]
    >>> print(tag)
    asdf://stellarml.org/stellarml/tags/preparation_settings-1.0.0
    >>> back == settings, back.wavelength.unit, back.wavelength.shape, back.resolution
    (True, Unit("Angstrom"), (199,), 2000.0)
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
