"""Registries of the stellar labels and per-spectrum diagnostics that stellarml knows about.

Every label has a canonical name (the column name in output tables), a unit,
an IVOA UCD, a human description and the physically allowed range. Models,
libraries and catalogues look labels up here so that units and UCDs are the
same everywhere.

Diagnostics (`DiagnosticSpec`) are the per-spectrum numbers a model reports
beside its labels, such as a domain distance, a chi-square or a Cramér–Rao
bound; a model puts them into its `~stellarml.posterior.LabelPosterior` and
the catalogue turns every registered diagnostic it finds into a column.

``logg`` is stored in plain ``dex``: it is log10 of the surface gravity in
cm s^-2. The function unit ``u.dex(u.cm / u.s**2)`` would be more explicit but
serialises neither to ASDF nor to VOTable.
"""

from dataclasses import dataclass

import astropy.units as u

__all__ = [
    "DIAGNOSTICS",
    "LABELS",
    "DiagnosticSpec",
    "LabelSpec",
    "get_diagnostic",
    "get_label",
    "register_diagnostic",
    "register_label",
]


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

    Examples
    --------
    >>> import astropy.units as u
    >>> from stellarml.labels import LabelSpec
    >>> spec = LabelSpec("li_fe", u.dex, "phys.abund.X", "[Li/Fe]", (-2.0, 4.0))
    >>> spec.unit
    Unit("dex")
    >>> spec.check([0.5, 5.0, float("nan")])
    array([ True, False, False])
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

#: (symbol, element name, physical range in dex) of the registered [X/Fe] labels besides
#: ``mg_fe``: +-2 dex, wider for carbon (carbon-enhanced metal-poor stars reach [C/Fe] ~ +4)
#: and the neutron-capture elements (r/s-process-enhanced stars reach ~ +2.5).
_ELEMENT_RATIOS = (
    ("C", "Carbon", (-2.0, 4.0)),
    ("N", "Nitrogen", (-2.0, 3.0)),
    ("O", "Oxygen", (-2.0, 2.0)),
    ("Na", "Sodium", (-2.0, 2.0)),
    ("Al", "Aluminium", (-2.0, 2.0)),
    ("Si", "Silicon", (-2.0, 2.0)),
    ("K", "Potassium", (-2.0, 2.0)),
    ("Ca", "Calcium", (-2.0, 2.0)),
    ("Sc", "Scandium", (-2.0, 2.0)),
    ("Ti", "Titanium", (-2.0, 2.0)),
    ("V", "Vanadium", (-2.0, 2.0)),
    ("Cr", "Chromium", (-2.0, 2.0)),
    ("Mn", "Manganese", (-2.0, 2.0)),
    ("Co", "Cobalt", (-2.0, 2.0)),
    ("Ni", "Nickel", (-2.0, 2.0)),
    ("Cu", "Copper", (-2.0, 2.0)),
    ("Zn", "Zinc", (-2.0, 2.0)),
    ("Sr", "Strontium", (-2.0, 3.0)),
    ("Y", "Yttrium", (-2.0, 3.0)),
    ("Zr", "Zirconium", (-2.0, 3.0)),
    ("Ba", "Barium", (-2.0, 3.0)),
    ("La", "Lanthanum", (-2.0, 3.0)),
    ("Ce", "Cerium", (-2.0, 3.0)),
    ("Nd", "Neodymium", (-2.0, 3.0)),
    ("Sm", "Samarium", (-2.0, 3.0)),
    ("Eu", "Europium", (-2.0, 3.0)),
)


def register_label(spec):
    """Add a `LabelSpec` to the registry (overwriting one with the same name).

    Parameters
    ----------
    spec : `LabelSpec`
        The label; it is registered under ``spec.name``.

    Returns
    -------
    spec : `LabelSpec`
        The same object.

    Raises
    ------
    TypeError
        If ``spec`` is not a `LabelSpec`.

    Examples
    --------
    The registry is global: an example registers a name no one else uses and
    removes it again.

    >>> import astropy.units as u
    >>> from stellarml.labels import LABELS, LabelSpec, get_label, register_label
    >>> spec = LabelSpec(
    ...     "li_fe_example", u.dex, "phys.abund.X", "Lithium abundance [Li/Fe]", (-2.0, 4.0)
    ... )
    >>> register_label(spec) is spec
    True
    >>> get_label("li_fe_example").description
    'Lithium abundance [Li/Fe]'
    >>> _ = register_label(spec)  # registering the same name again replaces the entry
    >>> del LABELS["li_fe_example"]
    """
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
    LabelSpec("mg_fe", u.dex, "phys.abund.Mg", "Magnesium abundance [Mg/Fe]", (-2.0, 2.0)),
    # Element-to-iron ratios [X/Fe] (used e.g. by `stellarml.libraries.LineListLibrary`).
    # "phys.abund.X" is the UCD1+ word for the abundance of a named element; the element is
    # in the description ("phys.abund.Ca" and the like are not in the controlled vocabulary).
    *(
        LabelSpec(
            f"{symbol.lower()}_fe", u.dex, "phys.abund.X", f"{name} abundance [{symbol}/Fe]", rng
        )
        for symbol, name, rng in _ELEMENT_RATIOS
    ),
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

    Parameters
    ----------
    name : str
        Canonical label name (e.g. ``"teff"``, ``"logg"``, ``"fe_h"``).

    Returns
    -------
    spec : `LabelSpec`

    Raises
    ------
    KeyError
        With the list of known labels, if ``name`` is not registered.

    Examples
    --------
    >>> from stellarml.labels import get_label
    >>> teff = get_label("teff")
    >>> teff.unit, teff.ucd, teff.physical_range
    (Unit("K"), 'phys.temperature.effective', (2000.0, 60000.0))
    >>> try:
    ...     get_label("temperature")
    ... except KeyError as err:
    ...     print(err.args[0].split(";")[0])
    unknown label 'temperature'
    """
    try:
        return LABELS[name]
    except KeyError:
        raise KeyError(
            f"unknown label {name!r}; known labels: {', '.join(sorted(LABELS))}"
        ) from None


@dataclass(frozen=True)
class DiagnosticSpec:
    """Description of one per-spectrum diagnostic a model can report.

    Parameters
    ----------
    name : str
        Column name (``"chi2"``); for a per-label diagnostic the column of
        label ``L`` is ``L_<name>`` (``teff_crlb``).
    unit : `~astropy.units.UnitBase` or None
        Unit of the values; `None` for a per-label diagnostic in the label's
        unit, `~astropy.units.dimensionless_unscaled` for a pure number.
    ucd : str
        IVOA UCD1+ of the column; ``{ucd}`` is replaced by the label's UCD for
        a per-label diagnostic.
    description : str
        Column description; ``{desc}`` is replaced by the label's description
        for a per-label diagnostic.
    per_label : bool
        One value per label and spectrum (``{label: (n,)}``) instead of one per
        spectrum.
    combine : {"mean", "max", "min"}
        How the members of an ensemble combine
        (`~stellarml.posterior.LabelPosterior.combine`).

    Raises
    ------
    ValueError
        If ``combine`` is not one of the three rules.

    Examples
    --------
    >>> import astropy.units as u
    >>> from stellarml.labels import DiagnosticSpec
    >>> spec = DiagnosticSpec("n_lines", u.dimensionless_unscaled, "meta.number",
    ...                       "Number of lines fitted", combine="min")
    >>> spec.per_label, spec.combine
    (False, 'min')
    >>> try:
    ...     DiagnosticSpec("n_lines", None, "meta.number", "Lines", combine="median")
    ... except ValueError as err:
    ...     print(err)
    combine must be 'mean', 'max' or 'min', got 'median'
    """

    name: str
    unit: object
    ucd: str
    description: str
    per_label: bool = False
    combine: str = "mean"

    def __post_init__(self):
        if self.combine not in ("mean", "max", "min"):
            raise ValueError(f"combine must be 'mean', 'max' or 'min', got {self.combine!r}")


DIAGNOSTICS = {}


def register_diagnostic(spec):
    """Add a `DiagnosticSpec` to the registry (overwriting one with the same name).

    Parameters
    ----------
    spec : `DiagnosticSpec`
        The diagnostic; it is registered under ``spec.name``.

    Returns
    -------
    spec : `DiagnosticSpec`
        The same object.

    Raises
    ------
    TypeError
        If ``spec`` is not a `DiagnosticSpec`.

    Examples
    --------
    The registry is global: an example registers a name no one else uses and
    removes it again.

    >>> import astropy.units as u
    >>> from stellarml.labels import DIAGNOSTICS, DiagnosticSpec, register_diagnostic
    >>> spec = DiagnosticSpec("n_lines_example", u.dimensionless_unscaled, "meta.number",
    ...                       "Number of lines fitted")
    >>> register_diagnostic(spec) is spec
    True
    >>> "n_lines_example" in DIAGNOSTICS
    True
    >>> del DIAGNOSTICS["n_lines_example"]
    """
    if not isinstance(spec, DiagnosticSpec):
        raise TypeError(f"expected a DiagnosticSpec, got {type(spec).__name__}")
    DIAGNOSTICS[spec.name] = spec
    return spec


def get_diagnostic(name):
    """Return the `DiagnosticSpec` registered under ``name``.

    Parameters
    ----------
    name : str
        Diagnostic name (e.g. ``"chi2"``, ``"domain_distance"``, ``"crlb"``).

    Returns
    -------
    spec : `DiagnosticSpec`

    Raises
    ------
    KeyError
        With the list of known diagnostics, if ``name`` is not registered.

    Examples
    --------
    >>> from stellarml.labels import get_diagnostic
    >>> crlb = get_diagnostic("crlb")
    >>> crlb.per_label, crlb.unit  # one column per label, in the label's unit
    (True, None)
    >>> get_diagnostic("domain_distance").combine
    'max'
    """
    try:
        return DIAGNOSTICS[name]
    except KeyError:
        raise KeyError(
            f"unknown diagnostic {name!r}; known diagnostics: {', '.join(sorted(DIAGNOSTICS))}"
        ) from None


for _diag in (
    DiagnosticSpec(
        "domain_distance",
        u.dimensionless_unscaled,
        "stat.value",
        "Distance of the spectrum to the model's training set, in units of the "
        "out-of-domain threshold (above 1: outside the training domain)",
        combine="max",
    ),
    DiagnosticSpec(
        "chi2",
        u.dimensionless_unscaled,
        "stat.fit.chi2",
        "Chi-square of the best-fitting model spectrum over the good pixels",
    ),
    DiagnosticSpec(
        "dof",
        u.dimensionless_unscaled,
        "stat.fit.dof",
        "Degrees of freedom of the fit (good pixels minus fitted parameters)",
    ),
    DiagnosticSpec(
        "reconstruction_error",
        u.dimensionless_unscaled,
        "stat.fit.residual",
        "Root-mean-square reconstruction residual of the spectrum, in units of its noise",
        combine="max",
    ),
    DiagnosticSpec(
        "crlb",
        None,
        "stat.error;{ucd}",
        "{desc}: Cramer-Rao lower bound on the uncertainty",
        per_label=True,
    ),
):
    register_diagnostic(_diag)
