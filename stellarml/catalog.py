"""The output table of derived labels: columns, units, UCDs, flags and provenance.

`build_label_table` turns per-label PDF summaries into a `LabelTable` (an
`~astropy.table.QTable`) with, for every label ``L``:

``L``, ``L_err_lo``, ``L_err_hi``, ``L_p16``, ``L_p50``, ``L_p84``, ``L_mode``
    `~astropy.units.Quantity` columns in the label's unit, masked where the row
    has a fatal flag (`stellarml.flags.FATAL`) or the value is not finite.

followed by ``snr``, ``rv`` [km/s], the model's diagnostics (e.g.
``domain_distance``, ``chi2``, ``L_crlb``; registered in
`stellarml.labels.DIAGNOSTICS`), ``flags`` (int32 `~stellarml.flags.LabelFlag`
bitmask), ``flag_names`` and, when given, ``message``. Every column carries a
``description`` and an IVOA UCD1+ in ``column.meta["ucd"]``, which astropy writes
into the VOTable ``FIELD``.

VOTable specifics (see :doc:`/output_tables`): ``table.write(path,
format="votable")`` on a `LabelTable` goes through `write_label_votable`, which

* writes units that VOUnit does not know (``dex``) as VOUnit *quoted* units
  (``unit="'dex'"``) instead of emitting astropy's ``W50`` warning, and
* writes ``table.meta`` as ``INFO`` elements of the ``RESOURCE`` (strings as
  they are, other values as JSON with ``xtype="json"``).

``LabelTable.read(path, format="votable")`` (`read_label_votable`) undoes both,
so units, masks, UCDs, descriptions and meta round-trip.
"""

import json
import math
import os
import re
import warnings

import astropy.units as u
import numpy as np
from astropy.table import Column, MaskedColumn, QTable
from astropy.utils.masked import Masked

from ._utils import stellarml_version, utc_now
from .flags import FATAL, describe_flags
from .labels import LabelSpec, get_diagnostic, get_label

__all__ = [
    "LabelTable",
    "build_label_table",
    "column_ucds",
    "read_label_ecsv",
    "read_label_votable",
    "write_label_votable",
]

#: Per-label statistic columns: (suffix, summary key, description template, UCD template).
#: ``{ucd}`` is the label's UCD and ``{desc}`` its description. UCD1+ has no
#: word for "mode"; ``stat.value`` ("miscellaneous value") is used, and the
#: description says what it is.
_STAT_COLUMNS = (
    ("", "value", "{desc}: adopted value (median of the posterior PDF)", "{ucd}"),
    (
        "_err_lo",
        "err_lo",
        "{desc}: lower uncertainty, median minus 16th percentile of the PDF",
        "stat.error;{ucd}",
    ),
    (
        "_err_hi",
        "err_hi",
        "{desc}: upper uncertainty, 84th percentile minus median of the PDF",
        "stat.error;{ucd}",
    ),
    ("_p16", "p16", "{desc}: 16th percentile of the posterior PDF", "{ucd};stat.percentile"),
    (
        "_p50",
        "median",
        "{desc}: median (50th percentile) of the posterior PDF",
        "{ucd};stat.median",
    ),
    ("_p84", "p84", "{desc}: 84th percentile of the posterior PDF", "{ucd};stat.percentile"),
    (
        "_mode",
        "mode",
        "{desc}: mode (most probable value) of the posterior PDF",
        "{ucd};stat.value",
    ),
)

#: Summary keys every label must provide.
_REQUIRED_KEYS = ("median", "p16", "p84", "mode")

_ID_DESCRIPTION = "Identifier of the input spectrum"
_SNR_DESCRIPTION = (
    "Median signal-to-noise ratio per input pixel over the good pixels "
    "(masked when the input had no uncertainty)"
)
_RV_DESCRIPTION = (
    "Radial velocity removed before the analysis: lambda_rest = lambda_obs / (1 + rv/c), "
    "i.e. c z (optical convention)"
)
_RV_ERR_DESCRIPTION = "Uncertainty of rv (1 sigma; masked when not known)"
_RV_SOURCE_DESCRIPTION = (
    "Origin of rv: given (by the caller), header (from the input file), "
    "estimated (measured by stellarml), none (unknown; 0 used)"
)
_FLAGS_DESCRIPTION = "Quality flags: bitmask of stellarml.flags.LabelFlag (0 = no warning)"
_FLAG_NAMES_DESCRIPTION = "Names of the quality flags set, comma-separated"
_MESSAGE_DESCRIPTION = "Why the spectrum could not be analysed (empty when it was)"

_COLUMN_UCDS = {
    "id": "meta.id;meta.main",
    "snr": "stat.snr",
    "rv": "spect.dopplerVeloc.opt",
    "rv_err": "stat.error;spect.dopplerVeloc.opt",
    "rv_source": "meta.code;spect.dopplerVeloc.opt",
    "flags": "meta.code.qual",
    "flag_names": "meta.code.qual",
    "message": "meta.note",
}


class LabelTable(QTable):
    """A `~astropy.table.QTable` of derived stellar labels.

    It behaves exactly like a `~astropy.table.QTable`; the only difference is
    its VOTable I/O: ``table.write(path, format="votable")`` uses
    `write_label_votable` and ``LabelTable.read(path, format="votable")`` uses
    `read_label_votable`, so that ``dex`` units and ``table.meta`` survive the
    VOTable format. Built by `build_label_table`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from stellarml.catalog import LabelTable, build_label_table
    >>> from stellarml.posterior import GaussianPosterior
    >>> post = GaussianPosterior([[5000.0, 4.4]], [[100.0**2, 0.1**2]], ["teff", "logg"])
    >>> table = build_label_table(["teff", "logg"], post.summaries(), flags=[0], snr=[50.0],
    ...                           rv=[12.0], meta={"model": "toy"})
    >>> isinstance(table, LabelTable)
    True
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "labels.xml"
    ...     table.write(path, format="votable")
    ...     back = LabelTable.read(path, format="votable")
    >>> back["logg"].unit, back["teff"].info.meta["ucd"], back.meta["model"]
    (Unit("dex"), 'phys.temperature.effective', 'toy')
    """


def column_ucds(label_names, diagnostics=()):
    """UCD1+ of every column `build_label_table` makes for ``label_names``.

    Parameters
    ----------
    label_names : sequence of str
        Registered label names (see `stellarml.labels.LABELS`).
    diagnostics : sequence of str, optional
        Registered diagnostic names (see `stellarml.labels.DIAGNOSTICS`).

    Returns
    -------
    ucds : dict
        Column name -> UCD, in column order (without ``id`` and ``message``,
        which only appear when given).

    Raises
    ------
    KeyError
        If a label or diagnostic is not registered.

    Examples
    --------
    >>> from stellarml.catalog import column_ucds
    >>> ucds = column_ucds(["teff"], ["crlb"])
    >>> list(ucds)[:3]
    ['teff', 'teff_err_lo', 'teff_err_hi']
    >>> ucds["teff_err_lo"]
    'stat.error;phys.temperature.effective'
    >>> ucds["teff_p16"], ucds["flags"]
    ('phys.temperature.effective;stat.percentile', 'meta.code.qual')
    >>> ucds["teff_crlb"]  # a per-label diagnostic
    'stat.error;phys.temperature.effective'
    """
    out = {}
    for name in label_names:
        spec = get_label(name) if isinstance(name, str) else name
        for suffix, _, _, ucd in _STAT_COLUMNS:
            out[spec.name + suffix] = ucd.format(ucd=spec.ucd)
    for name in ("snr", "rv", "rv_err", "rv_source"):
        out[name] = _COLUMN_UCDS[name]
    specs = [get_label(name) if isinstance(name, str) else name for name in label_names]
    for name in diagnostics:
        for column, _, ucd, _, _ in _diagnostic_columns(get_diagnostic(name), specs):
            out[column] = ucd
    for name in ("flags", "flag_names"):
        out[name] = _COLUMN_UCDS[name]
    return out


def _diagnostic_columns(spec, label_specs):
    """(column name, label or None, UCD, description, unit) of one diagnostic's columns."""
    if not spec.per_label:
        return [(spec.name, None, spec.ucd, spec.description, spec.unit)]
    return [
        (
            f"{label.name}_{spec.name}",
            label.name,
            spec.ucd.format(ucd=label.ucd),
            spec.description.format(desc=label.description),
            label.unit if spec.unit is None else spec.unit,
        )
        for label in label_specs
    ]


def build_label_table(
    label_specs,
    summaries,
    flags,
    snr,
    rv,
    meta,
    ids=None,
    *,
    messages=None,
    diagnostics=None,
    rv_err=None,
    rv_source=None,
):
    """Build the output table of derived labels.

    Parameters
    ----------
    label_specs : sequence of `~stellarml.labels.LabelSpec` or str
        The labels, in output order (names are looked up in the registry).
    summaries : dict
        ``{label name: {key: array (n,)}}`` with keys ``"median"``, ``"p16"``,
        ``"p84"`` and ``"mode"`` (required), and optionally ``"err_lo"``,
        ``"err_hi"`` (default ``median - p16`` and ``p84 - median``) and
        ``"value"`` (the adopted value, e.g. after a calibration; default the
        median). Plain arrays are taken to be in the label's unit; Quantities are
        converted to it. Other keys (e.g. ``"mean"``) are ignored.
    flags : array-like of int, shape (n,)
        `~stellarml.flags.LabelFlag` bitmask per spectrum. Rows with a
        `~stellarml.flags.FATAL` bit get masked label values.
    snr : array-like of float, shape (n,)
        Median S/N per input pixel; non-finite values (no uncertainty) are masked.
    rv : array-like of float or `~astropy.units.Quantity`, shape (n,)
        Radial velocity removed from each spectrum [km/s when a plain number].
    meta : dict or None
        Provenance for ``table.meta`` (model name/version/file hash, library and
        calibration provenance...). Values must be strings, numbers, booleans,
        None, or lists/dicts of these (numpy scalars and arrays are converted
        to Python). ``stellarml_version`` and ``date`` (creation time, ISO 8601
        UTC) are added when missing.
    ids : sequence of str, optional
        Identifiers of the spectra; adds a first column ``id``.
    messages : sequence of str, optional
        Human-readable reason per row for fatal flags (``""`` when fine); adds
        a last column ``message``.
    rv_err : array-like of float or `~astropy.units.Quantity`, shape (n,), optional
        Uncertainty of ``rv`` [km/s when a plain number]; non-finite values are
        masked. Default: all masked (unknown).
    rv_source : sequence of str, shape (n,), optional
        Origin of each ``rv``: one of ``"given"``, ``"header"``,
        ``"estimated"``, ``"none"`` (`stellarml.spectra.RV_SOURCES`). Default:
        ``"given"``.
    diagnostics : dict, optional
        ``{name: values}`` of diagnostics registered in
        `stellarml.labels.DIAGNOSTICS`: ``(n,)`` arrays, or ``{label: (n,)}``
        for per-label ones (columns ``<label>_<name>``, in the label's unit).
        Non-finite values and rows with a fatal flag are masked.

    Returns
    -------
    table : `LabelTable`
        One row per spectrum, in input order. Column list, units and UCDs are
        documented in :doc:`/output_tables`.

    Raises
    ------
    ValueError
        If array lengths disagree, a summary or summary key is missing, flags
        are negative or do not fit in int32, or units do not convert.
    TypeError
        If ``meta`` holds a value that cannot be written to ECSV/VOTable.

    Examples
    --------
    Two spectra, the second of which could not be analysed (a fatal flag
    masks its labels):

    >>> import numpy as np
    >>> from stellarml.catalog import build_label_table
    >>> from stellarml.flags import LabelFlag
    >>> from stellarml.posterior import GaussianPosterior
    >>> post = GaussianPosterior([[5000.0, 4.4], [5800.0, 4.0]], [[100.0**2, 0.1**2]] * 2,
    ...                          ["teff", "logg"])
    >>> table = build_label_table(
    ...     ["teff", "logg"], post.summaries(), flags=[0, int(LabelFlag.BAD_INPUT)],
    ...     snr=[50.0, np.nan], rv=[12.0, 0.0], meta={"model": "toy"}, ids=["a", "b"],
    ...     messages=["", "no flux"])
    >>> table.colnames[:4], table.colnames[-3:]
    (['id', 'teff', 'teff_err_lo', 'teff_err_hi'], ['flags', 'flag_names', 'message'])
    >>> table["teff"].unit, table["logg"].unit, table["rv"].unit
    (Unit("K"), Unit("dex"), Unit("km / s"))
    >>> round(float(table["teff_err_hi"][0].value), 1), table["teff"].mask
    (99.4, array([False,  True]))
    >>> table["flag_names"].tolist(), table["logg"].info.meta["ucd"]
    (['', 'BAD_INPUT'], 'phys.gravity')
    """
    flags = np.asarray(flags)
    if flags.ndim != 1:
        raise ValueError(f"flags must be 1-D, got shape {flags.shape}")
    n = flags.shape[0]
    if n and not np.issubdtype(flags.dtype, np.integer):
        raise ValueError(f"flags must be integers, got dtype {flags.dtype}")
    flags = flags.astype(np.int64)
    if np.any(flags < 0) or np.any(flags > np.iinfo(np.int32).max):
        raise ValueError("flags must be non-negative and fit in int32")
    fatal = (flags & int(FATAL)) != 0

    specs = [get_label(s) if isinstance(s, str) else s for s in label_specs]
    for spec in specs:
        if not isinstance(spec, LabelSpec):
            raise TypeError(f"label_specs must hold LabelSpec or str, got {type(spec).__name__}")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate labels in label_specs: {names}")

    table = LabelTable()
    if ids is not None:
        ids = np.asarray(ids).astype(str).reshape(-1)
        _check_length("ids", ids, n)
        table["id"] = Column(ids)
        _describe(table["id"], _ID_DESCRIPTION, _COLUMN_UCDS["id"])

    for spec in specs:
        if spec.name not in summaries:
            raise ValueError(
                f"no summary for label {spec.name!r}; summaries has {sorted(summaries)}"
            )
        stats = _label_stats(spec, summaries[spec.name], n)
        for suffix, key, description, ucd in _STAT_COLUMNS:
            values = stats[key]
            mask = fatal | ~np.isfinite(values)
            col = Masked(np.where(mask, np.nan, values) * spec.unit, mask=mask)
            table[spec.name + suffix] = col
            _describe(
                table[spec.name + suffix],
                description.format(desc=spec.description),
                ucd.format(ucd=spec.ucd),
            )

    snr = np.asarray(snr, dtype=float)
    _check_length("snr", snr, n)
    table["snr"] = MaskedColumn(snr, mask=~np.isfinite(snr), dtype=float)
    _describe(table["snr"], _SNR_DESCRIPTION, _COLUMN_UCDS["snr"])

    rv = _as_values(rv, u.km / u.s, "rv")
    _check_length("rv", rv, n)
    table["rv"] = Masked(rv * (u.km / u.s), mask=~np.isfinite(rv))
    _describe(table["rv"], _RV_DESCRIPTION, _COLUMN_UCDS["rv"])
    rv_err = np.full(n, np.nan) if rv_err is None else _as_values(rv_err, u.km / u.s, "rv_err")
    _check_length("rv_err", rv_err, n)
    bad = ~np.isfinite(rv_err)
    table["rv_err"] = Masked(np.where(bad, np.nan, rv_err) * (u.km / u.s), mask=bad)
    _describe(table["rv_err"], _RV_ERR_DESCRIPTION, _COLUMN_UCDS["rv_err"])
    rv_source = (
        np.full(n, "given") if rv_source is None else np.asarray(rv_source).astype(str).ravel()
    )
    _check_length("rv_source", rv_source, n)
    from .spectra.prepare import RV_SOURCES

    unknown = sorted(set(rv_source.tolist()) - set(RV_SOURCES))
    if unknown:
        raise ValueError(f"rv_source values must be among {RV_SOURCES}, got {unknown}")
    table["rv_source"] = Column(rv_source)
    _describe(table["rv_source"], _RV_SOURCE_DESCRIPTION, _COLUMN_UCDS["rv_source"])

    for name, values in (diagnostics or {}).items():
        spec = get_diagnostic(name)
        for column, label, ucd, description, unit in _diagnostic_columns(spec, specs):
            if label is None:
                data = values
            elif label in values:
                data = values[label]
            else:
                continue
            data = _as_values(data, unit, column)
            _check_length(column, data, n)
            mask = fatal | ~np.isfinite(data)
            table[column] = Masked(np.where(mask, np.nan, data) * unit, mask=mask)
            _describe(table[column], description, ucd)

    table["flags"] = Column(flags.astype(np.int32))
    _describe(table["flags"], _FLAGS_DESCRIPTION, _COLUMN_UCDS["flags"])
    # one describe_flags call per distinct value, not per row
    values, inverse = np.unique(flags, return_inverse=True)
    names_of_values = np.array([",".join(describe_flags(v)) for v in values] or [""], dtype=str)
    table["flag_names"] = Column(names_of_values[inverse.reshape(-1)] if n else np.zeros(0, str))
    _describe(table["flag_names"], _FLAG_NAMES_DESCRIPTION, _COLUMN_UCDS["flag_names"])

    if messages is not None:
        messages = np.asarray(messages).astype(str).reshape(-1)
        _check_length("messages", messages, n)
        table["message"] = Column(messages)
        _describe(table["message"], _MESSAGE_DESCRIPTION, _COLUMN_UCDS["message"])

    table.meta.update(_clean_meta(dict(meta or {})))
    table.meta.setdefault("stellarml_version", stellarml_version())
    table.meta.setdefault("date", utc_now())
    return table


def _describe(column, description, ucd):
    column.info.description = description
    column.info.meta = {"ucd": ucd}


def _check_length(name, values, n):
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries but flags has {n}")


def _as_values(values, unit, name):
    """Float array of ``values`` in ``unit`` (plain numbers are taken to be in ``unit``)."""
    if isinstance(values, u.Quantity):
        try:
            return np.asarray(values.to_value(unit), dtype=float).reshape(-1)
        except u.UnitsError as exc:
            raise ValueError(f"{name} has unit {values.unit}, not convertible to {unit}") from exc
    return np.asarray(values, dtype=float).reshape(-1)


def _label_stats(spec, summary, n):
    missing = [key for key in _REQUIRED_KEYS if key not in summary]
    if missing:
        raise ValueError(f"summary of {spec.name!r} lacks {missing}; it has {sorted(summary)}")
    stats = {}
    for key in (*_REQUIRED_KEYS, "err_lo", "err_hi", "value"):
        if key in summary:
            stats[key] = _as_values(summary[key], spec.unit, f"{spec.name} {key}")
            _check_length(f"summary[{spec.name!r}][{key!r}]", stats[key], n)
    stats.setdefault("err_lo", stats["median"] - stats["p16"])
    stats.setdefault("err_hi", stats["p84"] - stats["median"])
    stats.setdefault("value", stats["median"])
    return stats


def _clean_meta(value, path="meta"):
    """Return ``value`` with only JSON/YAML-safe Python types; raise TypeError otherwise."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path} keys must be strings, got {key!r}")
            out[key] = _clean_meta(item, f"{path}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_clean_meta(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, np.ndarray) and not isinstance(value, u.Quantity):
        return _clean_meta(value.tolist(), path)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise TypeError(
        f"{path} is a {type(value).__name__}; table meta must hold strings, numbers, "
        "booleans, None, lists or dicts so that it can be written to ECSV and VOTable"
    )


# -- VOTable I/O ----------------------------------------------------------------------

_SIMPLE_UNIT_NAME = re.compile(r"^[A-Za-z_]\w*$")


def _vounit_safe(unit):
    """True if ``unit`` is written and read back by astropy's VOUnit format unchanged."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        try:
            text = unit.to_string("vounit")
            back = u.Unit(text, format="vounit", parse_strict="silent")
        except (ValueError, u.UnitsError):
            return False
    return not text.startswith("'") and back == unit


def _votable_unit(unit):
    """The unit to put in a VOTable FIELD: ``unit`` itself or a quoted VOUnit."""
    if unit is None or _vounit_safe(unit):
        return unit
    name = unit.to_string()
    if _SIMPLE_UNIT_NAME.match(name):
        # VOUnit 1.0, section 2.9: a unit in single quotes is a valid unit
        # string for a unit the standard does not know.
        return u.Unit(f"'{name}'", format="vounit")
    return unit


def write_label_votable(table, output, *, table_id=None, overwrite=False, tabledata_format=None):
    """Write a label table to a VOTable (the ``"votable"`` writer of `LabelTable`).

    Like astropy's VOTable writer, plus: units VOUnit does not know (``dex``)
    are written as quoted VOUnits (``'dex'``), and ``table.meta`` is written as
    ``INFO`` elements of the ``RESOURCE`` (string values verbatim, other values
    as JSON with ``xtype="json"``). UCDs come from ``column.meta["ucd"]`` and
    descriptions from ``column.description``, as in astropy.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The table, typically from `build_label_table`.
    output : str, path-like or writable file-like
        Where to write.
    table_id : str, optional
        ``ID`` of the ``TABLE`` element.
    overwrite : bool, optional
        Overwrite an existing file (default `False`: raise `OSError`).
    tabledata_format : {"tabledata", "binary", "binary2"}, optional
        Serialisation of the data (default ``"tabledata"``).

    Raises
    ------
    OSError
        If ``output`` exists and ``overwrite`` is `False`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stellarml.catalog import build_label_table, write_label_votable
    >>> from stellarml.posterior import GaussianPosterior
    >>> post = GaussianPosterior([[4.4]], [[0.1**2]], ["logg"])
    >>> table = build_label_table(["logg"], post.summaries(), flags=[0], snr=[50.0], rv=[0.0],
    ...                           meta={"model": "toy", "n_members": 3})
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "labels.xml"
    ...     write_label_votable(table, path)
    ...     text = path.read_text()
    ...     try:
    ...         write_label_votable(table, path)
    ...     except OSError:
    ...         print("exists")
    exists
    >>> 'name="logg" ucd="phys.gravity" unit="&apos;dex&apos;"' in text  # a quoted VOUnit
    True
    >>> '<INFO ID="n_members" name="n_members" value="3" xtype="json"/>' in text
    True
    """
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import Info

    if isinstance(output, str | os.PathLike):
        output = os.fspath(output)
        if os.path.exists(output):
            if not overwrite:
                raise OSError(f"File {output} already exists. Use overwrite=True to replace it.")
            os.remove(output)
    votable = from_table(table, table_id=table_id)
    for field in votable.get_first_table().fields:
        field.unit = _votable_unit(field.unit)
    resource = votable.resources[0]
    for key, value in table.meta.items():
        if isinstance(value, str):
            info = Info(name=key, value=value, config=votable._config)
        else:
            info = Info(name=key, value=json.dumps(value), xtype="json", config=votable._config)
        resource.infos.append(info)
    votable.to_xml(output, tabledata_format=tabledata_format)


def read_label_votable(source, *, table_id=None):
    """Read a VOTable written by `write_label_votable` (the ``"votable"`` reader of `LabelTable`).

    Quoted VOUnits that astropy knows by name (``'dex'``) become the astropy
    unit again, ``INFO`` elements of the ``RESOURCE`` become ``table.meta``
    (``xtype="json"`` values are decoded), and astropy's private
    ``_votable_*`` column-meta keys are dropped. Works on any VOTable.

    Parameters
    ----------
    source : str, path-like or readable file-like
        The VOTable.
    table_id : str, optional
        ``ID`` of the ``TABLE`` to read (default: the first table).

    Returns
    -------
    table : `LabelTable`

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stellarml.catalog import build_label_table, read_label_votable
    >>> from stellarml.posterior import GaussianPosterior
    >>> post = GaussianPosterior([[4.4]], [[0.1**2]], ["logg"])
    >>> table = build_label_table(["logg"], post.summaries(), flags=[0], snr=[50.0], rv=[0.0],
    ...                           meta={"model": "toy", "n_members": 3})
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "labels.xml"
    ...     table.write(path, format="votable")
    ...     back = read_label_votable(path)
    >>> back["logg"].unit, back["logg"].info.meta["ucd"]
    (Unit("dex"), 'phys.gravity')
    >>> back.meta["model"], back.meta["n_members"]
    ('toy', 3)
    """
    from astropy.io.votable import parse

    votable = parse(source)
    if table_id is None:
        element = votable.get_first_table()
    else:
        element = votable.get_table_by_id(table_id)
    plain = element.to_table(use_names_over_ids=True)
    _forget_shadowing_vounits()
    for col in plain.itercols():
        if col.unit is not None:
            col.unit = _astropy_unit(col.unit)
        if col.info.description is not None:
            # astropy wraps long DESCRIPTION texts over several lines
            col.info.description = " ".join(col.info.description.split())
        for key in [k for k in col.info.meta if k.startswith("_votable_")]:
            del col.info.meta[key]
    table = _normalise(LabelTable(plain))
    for info in _resource_of(votable.resources, element).infos:
        if info.xtype == "json":
            table.meta[info.name] = json.loads(info.value)
        else:
            table.meta[info.name] = info.value
    return table


def read_label_ecsv(source, **kwargs):
    """Read an ECSV file as a `LabelTable` (the ``"ascii.ecsv"`` reader of `LabelTable`).

    astropy's ECSV reader, followed by the normalisation described in
    :doc:`/output_tables`: empty strings (which ECSV reads as masked) become
    ``""`` again, and float columns are masked arrays as made by
    `build_label_table`.

    Parameters
    ----------
    source : str, path-like or readable file-like
        The ECSV file.
    **kwargs
        Passed to astropy's ECSV reader.

    Returns
    -------
    table : `LabelTable`

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stellarml.catalog import build_label_table, read_label_ecsv
    >>> from stellarml.posterior import GaussianPosterior
    >>> post = GaussianPosterior([[5000.0], [5800.0]], [[100.0**2]] * 2, ["teff"])
    >>> table = build_label_table(["teff"], post.summaries(), flags=[0, 32], snr=[50.0, 3.0],
    ...                           rv=[0.0, 0.0], meta={"model": "toy"})
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "labels.ecsv"
    ...     table.write(path, format="ascii.ecsv")
    ...     back = read_label_ecsv(path)
    >>> type(back).__name__, back["teff"].unit, back.meta["model"]
    ('LabelTable', Unit("K"), 'toy')
    >>> back["flag_names"].tolist()  # "" stays "", not masked
    ['', 'LOW_SNR']
    """
    return _normalise(LabelTable(QTable.read(source, format="ascii.ecsv", **kwargs)))


def _normalise(table):
    """Column classes as `build_label_table` makes them, whatever the file format did.

    Float columns are masked (`~astropy.utils.masked.Masked` Quantity or
    `~astropy.table.MaskedColumn`); integer and string columns are plain,
    with masked strings (how ECSV and VOTable return ``""``) set to ``""``.
    """
    for name in table.colnames:
        col = table[name]
        kind = col.dtype.kind
        new = None
        if kind == "f":
            if isinstance(col, u.Quantity) and not isinstance(col, Masked):
                new = Masked(col, mask=~np.isfinite(col.value))
            elif isinstance(col, Column) and not isinstance(col, MaskedColumn):
                new = MaskedColumn(col.data, mask=~np.isfinite(col.data), unit=col.unit)
        elif kind in "US" and isinstance(col, MaskedColumn):
            new = Column(col.filled(""), unit=col.unit)
        elif kind in "iu" and isinstance(col, MaskedColumn) and not np.any(col.mask):
            new = Column(col.data, unit=col.unit)
        if new is not None:
            new.info.description = col.info.description
            new.info.meta = col.info.meta
            new.info.format = col.info.format
            table.replace_column(name, new)
    return table


def _resource_of(resources, element):
    for resource in resources:
        if any(table is element for table in resource.tables):
            return resource
        found = _resource_of(resource.resources, element)
        if found is not None:
            return found
    return None


def _astropy_unit(unit):
    name = unit._get_format_name("vounit") if isinstance(unit, u.NamedUnit) else ""
    if len(name) > 2 and name.startswith("'") and name.endswith("'"):
        known = u.Unit(name[1:-1], parse_strict="silent")
        if not isinstance(known, u.UnrecognizedUnit):
            return known
    return unit


def _forget_shadowing_vounits():
    """Undo astropy's VOUnit side effect of parsing a quoted unit such as ``'dex'``.

    Parsing ``'dex'`` defines a custom VOUnit named both ``'dex'`` and ``dex``
    in ``astropy.units.format.VOUnit._custom_units``; from then on, in the
    whole process, ``u.dex.to_string("vounit")`` gives ``dex`` and parsing
    ``dex`` gives the custom unit, so e.g. asdf-astropy writes ``u.dex``
    Quantities that read back as a different unit. The custom units whose
    names shadow units astropy knows are removed again (this module turns them
    back into the astropy units itself, see `_astropy_unit`).
    """
    from astropy.units.format import VOUnit

    custom = getattr(VOUnit, "_custom_units", None)
    if not isinstance(custom, dict):
        return
    for name in list(custom):
        bare = name[1:-1] if len(name) > 2 and name[0] == name[-1] == "'" else name
        known = u.Unit(bare, parse_strict="silent")
        if not isinstance(known, u.UnrecognizedUnit) and custom[name] is not known:
            del custom[name]


def _register_io():
    from astropy.io import registry

    registry.register_writer("votable", LabelTable, write_label_votable)
    registry.register_reader("votable", LabelTable, read_label_votable)
    registry.register_reader("ascii.ecsv", LabelTable, read_label_ecsv)


_register_io()
