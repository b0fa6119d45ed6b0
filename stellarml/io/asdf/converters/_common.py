"""Helpers shared by the converters (not public API)."""

import warnings

import numpy as np

__all__ = ["InvalidModelContent", "check_finite", "materialize", "safe_units"]


class InvalidModelContent(ValueError):
    """A stored value is well-formed but unusable (non-finite weights, thresholds...).

    `stellarml.io.asdf.read_model` reports it as a
    `~stellarml.io.asdf.ModelFileError` saying that the file holds invalid
    values (not that it is corrupted).
    """


def check_finite(values, what):
    """Raise `InvalidModelContent` naming ``what`` if any number in ``values`` is not finite.

    ``values`` is a number, an array or a (nested) dict/list of them; other
    leaves (strings, None) are ignored.
    """
    bad = []

    def walk(value, where):
        if isinstance(value, dict):
            for key, v in value.items():
                walk(v, f"{where}[{key!r}]")
        elif isinstance(value, list | tuple):
            for k, v in enumerate(value):
                walk(v, f"{where}[{k}]")
        elif isinstance(value, bool) or value is None or isinstance(value, str):
            return
        else:
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                return
            if not np.isfinite(arr).all():
                bad.append(where)

    walk(values, what)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise InvalidModelContent(f"{shown} hold(s) non-finite values (NaN or infinity)")


def materialize(node):
    """Copy a YAML tree so that it no longer refers to the open ASDF file.

    ASDF hands converters lazy array proxies (``NDArrayType``) and tagged
    dict/list subclasses. Objects built from the tree must outlive the file,
    so arrays are copied into plain `numpy.ndarray` and containers into plain
    `dict`/`list`. Everything else (numbers, strings, Quantities, units,
    already-converted objects) is returned unchanged.
    """
    if isinstance(node, dict):
        return {key: materialize(value) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [materialize(value) for value in node]
    if isinstance(node, np.ndarray) or type(node).__name__ == "NDArrayType":
        if hasattr(node, "unit"):  # a Quantity: already its own copy
            return node
        return np.array(node, copy=True)
    return node


def _vounit_misread(unit):
    """True if asdf-astropy would write ``unit`` as a VOUnit that does not read back as ``unit``.

    asdf-astropy writes a unit with the ``tag:stsci.edu:asdf/unit/unit-*`` tag
    (VOUnit syntax) whenever ``unit.to_string("vounit")`` succeeds. Once any
    code in the process has parsed the quoted VOUnit ``'dex'`` (reading a
    VOTable with a ``dex`` column does), astropy's VOUnit formatter accepts
    ``u.dex`` and writes ``dex``, which reads back as a different, custom
    unit. This detects that case.
    """
    import astropy.units as u

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        try:
            text = unit.to_string("vounit")
        except (ValueError, u.UnitsError):
            return False  # asdf-astropy uses the astropy tag: fine
        try:
            back = u.Unit(text, format="vounit", parse_strict="silent")
        except (ValueError, u.UnitsError):
            return True
    return back != unit


def safe_units(node, ctx):
    """Return ``node`` with units that asdf-astropy would corrupt pre-tagged.

    Units (and Quantities carrying them) for which `_vounit_misread` is true
    are replaced by tagged nodes using asdf-astropy's own
    ``tag:astropy.org:astropy/units/unit-*`` tag (generic unit string), which
    asdf-astropy reads back exactly. Everything else is left for asdf-astropy.
    Dicts, lists and tuples are walked recursively.
    """
    import astropy.units as u
    from asdf.tagged import tag_object
    from astropy.utils.masked import Masked

    if isinstance(node, dict):
        return {key: safe_units(value, ctx) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [safe_units(value, ctx) for value in node]
    if isinstance(node, u.UnitBase) and _vounit_misread(node):
        return tag_object(_tag_for(ctx, type(node), "astropy.org"), node.to_string())
    if isinstance(node, u.Quantity) and not isinstance(node, Masked) and _vounit_misread(node.unit):
        tree = {"value": node.value, "unit": safe_units(node.unit, ctx)}
        if node.isscalar:
            tree["datatype"] = node.dtype.name
        return tag_object(_tag_for(ctx, u.Quantity, "quantity"), tree)
    return node


def _tag_for(ctx, cls, marker):
    """The concrete tag asdf's converter for ``cls`` supports that contains ``marker``."""
    proxy = ctx.extension_manager.get_converter_for_type(cls)
    return next(tag for tag in proxy.tags if marker in tag)
