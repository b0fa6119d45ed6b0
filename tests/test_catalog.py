"""Tests of the output label table: columns, UCDs, masks, ECSV and VOTable round trips."""

import datetime
import re
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io.votable import parse
from astropy.io.votable.ucd import check_ucd
from astropy.table import Column, MaskedColumn, QTable
from astropy.utils.masked import Masked

from stellarml.catalog import (
    LabelTable,
    build_label_table,
    column_ucds,
    read_label_ecsv,
    read_label_votable,
    write_label_votable,
)
from stellarml.flags import FATAL, LabelFlag
from stellarml.labels import get_label

DOCS = Path(__file__).resolve().parents[1] / "docs"

LABELS = ("teff", "logg", "fe_h", "vsini")


def _summaries(n, rng):
    """PDF summaries as the model returns them (NaN for rows it did not see)."""
    centres = {"teff": 5500.0, "logg": 4.0, "fe_h": -0.5, "vsini": 20.0}
    widths = {"teff": 100.0, "logg": 0.1, "fe_h": 0.05, "vsini": 3.0}
    out = {}
    for name in LABELS:
        median = centres[name] + widths[name] * rng.standard_normal(n)
        lo = widths[name] * (0.5 + rng.random(n))
        hi = widths[name] * (0.5 + rng.random(n))
        out[name] = {
            "median": median,
            "p16": median - lo,
            "p84": median + hi,
            "mode": median + 0.1 * widths[name],
            "mean": median,
        }
    return out


@pytest.fixture
def table():
    rng = np.random.default_rng(3)
    n = 6
    flags = np.array([0, int(LabelFlag.LOW_SNR), int(LabelFlag.BAD_INPUT), 0, 0, 0])
    flags[3] = int(LabelFlag.NO_WAVELENGTH_OVERLAP | LabelFlag.RESOLUTION_ASSUMED)
    flags[4] = int(LabelFlag.NO_UNCERTAINTY | LabelFlag.PDF_AT_GRID_EDGE)
    summaries = _summaries(n, rng)
    for stats in summaries.values():
        for key in stats:
            stats[key][(flags & int(FATAL)) != 0] = np.nan
    snr = np.array([35.0, 4.0, np.nan, 20.0, np.nan, 80.0])
    rv = np.array([12.5, -3.0, 0.0, 0.0, 101.0, -45.0])
    meta = {
        "model_name": "remap-test",
        "model_sha256": "ab" * 32,
        "model_provenance": {"library": {"name": "emulated", "n": 300}, "epochs": 2},
        "calibration": None,
        "n_spectra": np.int64(6),
    }
    messages = ["", "", "flux has no unit", "no overlap", "", ""]
    ids = [f"star{i:02d}" for i in range(n)]
    return build_label_table(
        [get_label(name) for name in LABELS],
        summaries,
        flags,
        snr,
        rv,
        meta,
        ids=ids,
        messages=messages,
        rv_err=[0.5, np.nan, np.nan, 2.0, 1.5, np.inf],
        rv_source=["header", "given", "none", "estimated", "header", "given"],
    )


def test_columns_units_and_order(table):
    assert isinstance(table, QTable) and isinstance(table, LabelTable)
    expected = ["id"]
    for name in LABELS:
        expected += [name + s for s in ("", "_err_lo", "_err_hi", "_p16", "_p50", "_p84", "_mode")]
    expected += ["snr", "rv", "rv_err", "rv_source", "flags", "flag_names", "message"]
    assert table.colnames == expected
    for name in LABELS:
        for suffix in ("", "_err_lo", "_err_hi", "_p16", "_p50", "_p84", "_mode"):
            assert table[name + suffix].unit == get_label(name).unit
            assert isinstance(table[name + suffix], Masked)
    assert table["logg"].unit == u.dex
    assert table["rv"].unit == u.km / u.s
    assert table["rv_err"].unit == u.km / u.s and isinstance(table["rv_err"], Masked)
    assert isinstance(table["rv_source"], Column) and table["rv_source"].dtype.kind == "U"
    assert table["flags"].dtype == np.int32
    assert isinstance(table["snr"], MaskedColumn)
    assert isinstance(table["flag_names"], Column)


def test_values_errors_and_masks(table):
    rng = np.random.default_rng(3)
    summaries = _summaries(6, rng)
    good = np.array([True, True, False, False, True, True])
    med = summaries["teff"]["median"]
    np.testing.assert_allclose(table["teff"].unmasked.value[good], med[good])
    np.testing.assert_allclose(table["teff_p50"].unmasked.value[good], med[good])
    np.testing.assert_allclose(
        table["teff_err_lo"].unmasked.value[good], (med - summaries["teff"]["p16"])[good]
    )
    np.testing.assert_allclose(
        table["teff_err_hi"].unmasked.value[good], (summaries["teff"]["p84"] - med)[good]
    )
    assert np.all(table["teff_err_lo"].unmasked.value[good] > 0)
    for name in table.colnames[1:-7]:
        np.testing.assert_array_equal(table[name].mask, ~good)
    np.testing.assert_array_equal(table["snr"].mask, [False, False, True, False, True, False])
    assert not np.any(table["rv"].mask)
    # unknown (NaN) and non-finite rv errors are masked; the others kept, in km/s
    np.testing.assert_array_equal(table["rv_err"].mask, [False, True, True, False, False, True])
    np.testing.assert_allclose(table["rv_err"].unmasked.value[[0, 3, 4]], [0.5, 2.0, 1.5])
    assert list(table["rv_source"]) == ["header", "given", "none", "estimated", "header", "given"]
    assert list(table["flag_names"]) == [
        "",
        "LOW_SNR",
        "BAD_INPUT",
        "NO_WAVELENGTH_OVERLAP,RESOLUTION_ASSUMED",
        "PDF_AT_GRID_EDGE,NO_UNCERTAINTY",
        "",
    ]
    assert table["message"][2] == "flux has no unit"


def test_explicit_errors_and_value_and_quantities():
    summaries = {
        "teff": {
            "median": [5000.0, 6000.0] * u.K,
            "p16": [4.9, 5.9] * u.kK,
            "p84": [5100.0, 6100.0] * u.K,
            "mode": [5000.0, 6000.0] * u.K,
            "err_lo": [7.0, 8.0] * u.K,
            "err_hi": [9.0, 10.0] * u.K,
            "value": [5050.0, 6050.0] * u.K,
        }
    }
    t = build_label_table(["teff"], summaries, [0, 0], [1.0, 2.0], [0.0, 1.0] * u.m / u.s, {})
    np.testing.assert_allclose(t["teff"].unmasked.value, [5050.0, 6050.0])
    np.testing.assert_allclose(t["teff_p16"].unmasked.value, [4900.0, 5900.0])
    np.testing.assert_allclose(t["teff_err_lo"].unmasked.value, [7.0, 8.0])
    np.testing.assert_allclose(t["teff_err_hi"].unmasked.value, [9.0, 10.0])
    np.testing.assert_allclose(t["rv"].unmasked.to_value(u.km / u.s), [0.0, 0.001])


def test_ucds_and_descriptions(table):
    ucds = column_ucds(LABELS)
    assert ucds["teff"] == "phys.temperature.effective"
    assert ucds["teff_err_lo"] == "stat.error;phys.temperature.effective"
    assert ucds["teff_p16"] == "phys.temperature.effective;stat.percentile"
    assert ucds["logg_p50"] == "phys.gravity;stat.median"
    assert ucds["fe_h_mode"] == "phys.abund.Fe;stat.value"
    assert ucds["snr"] == "stat.snr"
    assert ucds["rv"] == "spect.dopplerVeloc.opt"
    assert ucds["rv_err"] == "stat.error;spect.dopplerVeloc.opt"
    assert ucds["rv_source"] == "meta.code;spect.dopplerVeloc.opt"
    assert ucds["flags"] == "meta.code.qual"
    for name in table.colnames:
        col = table[name]
        ucd = col.info.meta["ucd"]
        if name in ucds:
            assert ucd == ucds[name]
        # valid UCD1+ syntax *and* words from the controlled vocabulary
        assert check_ucd(ucd, check_controlled_vocabulary=True), (name, ucd)
        assert col.info.description and len(col.info.description) > 10


def test_meta(table):
    assert table.meta["model_name"] == "remap-test"
    assert table.meta["n_spectra"] == 6 and type(table.meta["n_spectra"]) is int
    assert table.meta["model_provenance"]["library"]["n"] == 300
    from stellarml import __version__

    assert table.meta["stellarml_version"] == __version__
    date = datetime.datetime.fromisoformat(table.meta["date"])
    assert date.utcoffset() == datetime.timedelta(0)
    age = datetime.datetime.now(datetime.UTC) - date
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=5)


def assert_tables_equal(a, b):
    """Same columns, classes, dtypes, units, masks, values, descriptions, UCDs and meta."""
    assert a.colnames == b.colnames
    assert type(b) is type(a)
    assert a.meta == b.meta
    for name in a.colnames:
        ca, cb = a[name], b[name]
        assert type(cb) is type(ca), name
        assert cb.dtype == ca.dtype, name
        assert getattr(cb, "unit", None) == getattr(ca, "unit", None), name
        assert cb.info.description == ca.info.description, name
        assert cb.info.meta == ca.info.meta, name
        mask = np.asarray(getattr(ca, "mask", np.zeros(len(ca), bool)))
        np.testing.assert_array_equal(np.asarray(getattr(cb, "mask", mask)), mask, name)
        if ca.dtype.kind == "f":
            va = ca.unmasked if isinstance(ca, Masked) else ca.data
            vb = cb.unmasked if isinstance(cb, Masked) else cb.data
            va, vb = np.asarray(getattr(va, "value", va)), np.asarray(getattr(vb, "value", vb))
            np.testing.assert_array_equal(vb[~mask], va[~mask], name)
        else:
            assert list(cb) == list(ca), name


@pytest.mark.parametrize("tabledata_format", ["tabledata", "binary", "binary2"])
def test_votable_round_trip(table, tmp_path, tabledata_format):
    path = tmp_path / "labels.xml"
    # plain astropy call; pytest turns any warning (e.g. W50 on 'dex') into an error
    table.write(path, format="votable", tabledata_format=tabledata_format)
    back = LabelTable.read(path, format="votable")
    assert_tables_equal(table, back)
    assert back["logg"].unit is u.dex


def test_votable_fields_carry_ucds_units_descriptions(table, tmp_path):
    path = tmp_path / "labels.xml"
    table.write(path, format="votable")
    votable = parse(path)
    fields = {f.name: f for f in votable.get_first_table().fields}
    assert list(fields) == table.colnames
    for name, field in fields.items():
        assert field.ucd == table[name].info.meta["ucd"]
        assert " ".join(field.description.split()) == table[name].info.description
    assert fields["teff"].unit == u.K
    assert fields["rv"].unit == u.km / u.s
    assert fields["flags"].datatype == "int"
    text = path.read_text()
    # dex is not a VOUnit: it is written as a quoted (user-defined) VOUnit
    assert re.search(r'name="logg" ucd="phys.gravity" unit="&apos;dex&apos;"', text)
    assert 'unit="dex"' not in text
    infos = {i.name: i for i in votable.resources[0].infos}
    assert infos["model_name"].value == "remap-test"
    assert infos["model_provenance"].xtype == "json"


def test_votable_readable_by_plain_astropy(table, tmp_path):
    path = tmp_path / "labels.xml"
    write_label_votable(table, path)
    plain = QTable.read(path, format="votable")
    assert plain["teff"].unit == u.K
    # astropy keeps the quoted unit as a user-defined unit named dex
    assert plain["logg"].unit.to_string() == "dex"
    assert plain["teff"].info.meta["ucd"] == "phys.temperature.effective"
    with pytest.raises(OSError, match="already exists"):
        write_label_votable(table, path)
    write_label_votable(table, path, overwrite=True)
    assert_tables_equal(table, read_label_votable(path))


def test_ecsv_round_trip(table, tmp_path):
    path = tmp_path / "labels.ecsv"
    table.write(path)
    back = LabelTable.read(path)
    assert_tables_equal(table, back)
    assert_tables_equal(table, read_label_ecsv(path))
    plain = QTable.read(path)
    assert plain["logg"].unit == u.dex
    assert plain.meta == table.meta


def test_without_ids_and_messages():
    summaries = {"logg": {k: np.array([4.0, 2.0]) for k in ("median", "p16", "p84", "mode")}}
    t = build_label_table(["logg"], summaries, [0, 1], [5.0, 5.0], [0.0, 0.0], None)
    assert t.colnames[0] == "logg" and t.colnames[-1] == "flag_names"
    assert t["logg"].mask.tolist() == [False, True]
    np.testing.assert_array_equal(t["logg_err_lo"].unmasked.value[0], 0.0)


def test_empty_table(tmp_path):
    summaries = {"teff": {k: np.zeros(0) for k in ("median", "p16", "p84", "mode")}}
    t = build_label_table(["teff"], summaries, np.zeros(0, int), [], [], {})
    assert len(t) == 0 and "teff_p84" in t.colnames
    t.write(tmp_path / "empty.xml", format="votable")
    assert len(LabelTable.read(tmp_path / "empty.xml", format="votable")) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"flags": [0, 0, 0]}, ValueError, r"\['median'\] has 2 entries but flags has 3"),
        ({"snr": [1.0]}, ValueError, "snr has 1 entries but flags has 2"),
        ({"flags": [0, -1]}, ValueError, "non-negative"),
        ({"flags": [0.0, 1.5]}, ValueError, "integers"),
        ({"rv": [1.0, 2.0] * u.K}, ValueError, "rv has unit K"),
        ({"ids": ["a"]}, ValueError, "ids has 1 entries"),
        ({"meta": {"wave": np.arange(3) * u.AA}}, TypeError, r"meta\['wave'\] is a Quantity"),
        ({"meta": {1: "x"}}, TypeError, "keys must be strings"),
        ({"label_specs": ["teff", "nope"]}, KeyError, "unknown label 'nope'"),
        ({"label_specs": ["teff", "logg"]}, ValueError, "no summary for label 'logg'"),
        ({"label_specs": ["teff", "teff"]}, ValueError, "duplicate labels"),
        ({"label_specs": [3]}, TypeError, "LabelSpec or str"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = {
        "label_specs": ["teff"],
        "summaries": {"teff": {k: np.ones(2) for k in ("median", "p16", "p84", "mode")}},
        "flags": [0, 0],
        "snr": [1.0, 1.0],
        "rv": [0.0, 0.0],
        "meta": {},
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        build_label_table(**args)


def test_missing_summary_key():
    with pytest.raises(ValueError, match=r"summary of 'teff' lacks \['mode'\]"):
        build_label_table(
            ["teff"], {"teff": {k: np.ones(1) for k in ("median", "p16", "p84")}}, [0], [1], [0], {}
        )


def test_docs_flag_table_matches_labelflag():
    """The flags table in docs/output_tables.rst lists every LabelFlag bit, value and fatality."""
    text = (DOCS / "output_tables.rst").read_text()
    rows = re.findall(
        r"^\s+\*\s+-\s+``(\d+)``\s*\n\s+-\s+``(\w+)``\s*\n\s+-\s+(yes|no)", text, re.M
    )
    documented = {name: (int(value), fatal == "yes") for value, name, fatal in rows}
    actual = {f.name: (int(f), bool(f & FATAL)) for f in LabelFlag}
    assert documented == actual


def test_rv_columns_defaults_and_bad_values():
    summaries = {"teff": {k: np.ones(2) for k in ("median", "p16", "p84", "mode")}}
    t = build_label_table(["teff"], summaries, [0, 0], [1.0, 2.0], [0.0, 1.0], {})
    assert list(t["rv_source"]) == ["given", "given"] and np.all(t["rv_err"].mask)
    t = build_label_table(
        ["teff"], summaries, [0, 0], [1.0, 2.0], [0.0, 1.0], {}, rv_err=[1.0, 2.0] * u.m / u.s
    )
    np.testing.assert_allclose(t["rv_err"].unmasked.to_value(u.km / u.s), [0.001, 0.002])
    with pytest.raises(ValueError, match=r"rv_source values must be among .*'guessed'"):
        build_label_table(
            ["teff"], summaries, [0, 0], [1, 2], [0, 1], {}, rv_source=["given", "guessed"]
        )
    with pytest.raises(ValueError, match="rv_err"):
        build_label_table(["teff"], summaries, [0, 0], [1, 2], [0, 1], {}, rv_err=[1.0])
