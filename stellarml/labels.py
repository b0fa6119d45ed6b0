"""Registry of the stellar labels that stellarml knows about.

Every label has a canonical name (the column name in output tables), a unit,
an IVOA UCD, a human description and the physically allowed range. Models,
libraries and catalogues look labels up here so that units and UCDs are the
same everywhere.

``logg`` is stored in plain ``dex``: it is log10 of the surface gravity in
cm s^-2. The function unit ``u.dex(u.cm / u.s**2)`` would be more explicit but
serialises neither to ASDF nor to VOTable.
"""

from dataclasses import dataclass

import astropy.units as u

__all__ = ["LABELS", "LabelSpec", "get_label", "register_label"]


@dataclass(frozen=True)
class LabelSpec:
    """Description of one stellar label.

    Parameters
    ----------
    name : str
        Canonical name, used as the output column name (e.g. ``"teff"``).
    unit : `~astropy.units.UnitBase`
        Unit of the label values.
    ucd : str
        IVOA Unified Content Descriptor of the value column.
    description : str
        One-line human description (used for column descriptions).
    physical_range : tuple of float
        ``(min, max)`` of physically sensible values, in ``unit``. Inputs
        outside this range (e.g. reference labels) are rejected.
    """

    name: str
    unit: u.UnitBase
    ucd: str
    description: str
    physical_range: tuple

    def check(self, values):
        """Return a boolean array: which ``values`` lie inside the physical range."""
        import numpy as np

        v = np.asarray(values, dtype=float)
        lo, hi = self.physical_range
        return np.isfinite(v) & (v >= lo) & (v <= hi)


LABELS = {}


def register_label(spec):
    """Add a `LabelSpec` to the registry (overwriting one with the same name)."""
    if not isinstance(spec, LabelSpec):
        raise TypeError(f"expected a LabelSpec, got {type(spec).__name__}")
    LABELS[spec.name] = spec
    return spec


for _spec in (
    LabelSpec(
        "teff", u.K, "phys.temperature.effective", "Effective temperature", (2000.0, 60000.0)
    ),
    LabelSpec(
        "logg",
        u.dex,
        "phys.gravity",
        "Surface gravity, log10(g / (cm s-2))",
        (-1.0, 6.5),
    ),
    LabelSpec("fe_h", u.dex, "phys.abund.Fe", "Iron abundance [Fe/H]", (-5.0, 1.5)),
    LabelSpec("m_h", u.dex, "phys.abund.Z", "Overall metallicity [M/H]", (-5.0, 1.5)),
    LabelSpec("alpha_fe", u.dex, "phys.abund", "Alpha-element enhancement [alpha/Fe]", (-1.0, 1.5)),
    LabelSpec(
        "vsini",
        u.km / u.s,
        "phys.veloc.rotat",
        "Projected rotational velocity v sin i",
        (0.0, 500.0),
    ),
    LabelSpec("vmicro", u.km / u.s, "phys.veloc.microTurb", "Microturbulent velocity", (0.0, 10.0)),
    LabelSpec("vmacro", u.km / u.s, "phys.veloc.macroTurb", "Macroturbulent velocity", (0.0, 50.0)),
):
    register_label(_spec)


def get_label(name):
    """Return the `LabelSpec` registered under ``name``.

    Raises
    ------
    KeyError
        With the list of known labels, if ``name`` is not registered.
    """
    try:
        return LABELS[name]
    except KeyError:
        raise KeyError(
            f"unknown label {name!r}; known labels: {', '.join(sorted(LABELS))}"
        ) from None
