"""`stellarml.distributed.derive_catalog` on a real 2-worker `LocalCluster`.

The inputs are 100 links to the 25 real LAMOST spectra of ``../shared/data``
(distinct paths, so every file is read on its own) and five corrupt files.
"""

import json
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from stellarml import read_model  # noqa: E402
from stellarml.analysis import _compute_label_table  # noqa: E402
from stellarml.cli import EXIT_UNREADABLE, main  # noqa: E402
from stellarml.distributed import _failed_partition, derive_catalog  # noqa: E402
from stellarml.flags import LabelFlag  # noqa: E402
from stellarml.io.files import prepare_inputs  # noqa: E402

N_CORRUPT = 5


@pytest.fixture(scope="module")
def inputs(data_dir, tmp_path_factory):
    real = sorted((data_dir / "lamost").glob("*.fits"))
    assert len(real) == 25
    root = tmp_path_factory.mktemp("survey")
    paths = []
    for k in range(4):
        for p in real:
            link = root / f"{k}_{p.name}"
            link.symlink_to(p)
            paths.append(str(link))
    corrupt = {
        "empty.fits": b"",
        "garbage.fits": b"\x00\x01 not a FITS file" * 100,
        "text.fits": b"SIMPLE  = this is not a header\n",
        "truncated.fits": (real[0].read_bytes()[:2880]),
    }
    for name, data in corrupt.items():
        (root / name).write_bytes(data)
    # interleave the corrupt files, and one that does not exist
    bad = [str(root / n) for n in corrupt] + [str(root / "missing.fits")]
    assert len(bad) == N_CORRUPT
    for j, path in enumerate(bad):
        paths.insert(7 + 19 * j, path)
    return paths, set(bad)


@pytest.fixture(scope="module")
def model():
    return read_model()


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def single(inputs, model):
    """The single-process result: the command line's own path."""
    batch, rows = prepare_inputs(inputs[0], model.preparation)
    table, _ = _compute_label_table(model, batch, device="cpu", batch_size=1024)
    return table, rows


def _assert_same(a, b, columns):
    for name in columns:
        x, y = a[name], b[name]
        np.testing.assert_array_equal(np.ma.getmaskarray(x), np.ma.getmaskarray(y), err_msg=name)
        xv = np.asarray(np.ma.filled(getattr(x, "value", x), 0))
        yv = np.asarray(np.ma.filled(getattr(y, "value", y), 0))
        np.testing.assert_array_equal(xv, yv, err_msg=name)


def _label_columns(table):
    return [c for c in table.colnames if c not in ("input", "file")]


def test_rows_order_flags_and_single_process_identity(inputs, model, client, single):
    paths, bad = inputs
    table = derive_catalog(paths, model=model, client=client, partition_size=16, progress=False)
    assert len(paths) == 105
    assert len(table) == len(paths)  # one row per file here
    np.testing.assert_array_equal(table["input"], np.arange(len(paths)))
    assert list(table["file"]) == paths
    flagged = {f for f, fl in zip(table["file"], table["flags"], strict=True) if fl & 4}
    assert flagged == bad
    for row in table[np.isin(table["file"], sorted(bad))]:
        assert row["message"].startswith(f"could not read {row['file']}")
        assert np.ma.is_masked(row["teff"])
    assert not any(np.ma.is_masked(t) for t in table["teff"][~np.isin(table["file"], sorted(bad))])
    reference, rows = single
    assert np.all(rows == 1)
    _assert_same(table, reference, _label_columns(reference))
    assert table["teff"].unit == "K"
    assert table["input"].meta["ucd"] == "meta.id"
    assert table.meta["model_name"] == reference.meta["model_name"]


def test_partitioned_output_resumes_identically(inputs, model, client, tmp_path):
    paths, _ = inputs
    out = tmp_path / "catalog"
    first = derive_catalog(
        paths, model=model, client=client, output=out, partition_size=16, progress=False
    )
    assert first == {
        "output": str(out),
        "rows": 105,
        "partitions": 7,
        "written": 7,
        "skipped": 0,
        "failed": 0,
        "unreadable": N_CORRUPT,
    }
    parts = sorted(out.glob("part-*.ecsv"))
    assert [p.name for p in parts] == [f"part-{i:05d}.ecsv" for i in range(7)]
    whole = {p.name: p.read_bytes() for p in parts}
    # an interrupted run: two partitions never finished, one left a temporary file, and the
    # run stopped before noting the row counts in the manifest
    parts[2].unlink()
    parts[5].unlink()
    (out / ".part-00005.ecsv.tmp123").write_text("partial")
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["rows"], manifest["unreadable"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    again = derive_catalog(
        paths, model=model, client=client, output=out, partition_size=16, progress=False
    )
    assert (again["written"], again["skipped"], again["rows"]) == (2, 5, 105)
    assert again["unreadable"] == N_CORRUPT
    for p in sorted(out.glob("part-*.ecsv")):
        if p.name in ("part-00002.ecsv", "part-00005.ecsv"):
            continue
        assert p.read_bytes() == whole[p.name]  # untouched
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"] == 105 and manifest["model"] == model.name
    from stellarml.catalog import read_label_ecsv

    a = read_label_ecsv(out / "part-00005.ecsv")
    b_path = tmp_path / "b.ecsv"
    b_path.write_bytes(whole["part-00005.ecsv"])
    _assert_same(a, read_label_ecsv(b_path), a.colnames)
    # another run into the same directory is refused, not mixed in
    with pytest.raises(ValueError, match="holds partitions of another run"):
        derive_catalog(paths[:50], model=model, client=client, output=out, progress=False)


@pytest.mark.parametrize("suffix", [".fits", ".xml", ".parquet"])
def test_one_table_keeps_units_descriptions_and_meta(inputs, model, client, tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
        pytest.importorskip("pandas")  # astropy reads Parquet through pandas
    paths, _ = inputs
    out = tmp_path / f"labels{suffix}"
    summary = derive_catalog(
        paths[:30], model=model, client=client, output=out, partition_size=8, progress=False
    )
    assert summary["rows"] == 30 and out.exists()
    assert not Path(f"{out}.parts").exists()
    if suffix == ".xml":
        from stellarml.catalog import read_label_votable

        table = read_label_votable(out)
    else:
        from astropy.table import QTable

        table = QTable.read(out)
    assert len(table) == 30
    assert table["teff"].unit == "K"
    assert "effective temperature" in table["teff"].info.description.lower()
    assert table.meta["model_name"] == model.name
    corrections = table.meta["calibration_corrections"]
    if suffix == ".fits":  # a FITS header holds scalars: nested provenance is JSON text
        assert table.meta["stellarml_json_keys"] == "calibration_corrections"
        corrections = json.loads(corrections)
    assert corrections["teff"]["n"] == 55


def test_cli_workers_match_the_single_process_cli(inputs, client, tmp_path, capsys):
    paths, _ = inputs
    files = paths[:40]
    serial, parallel = tmp_path / "serial.ecsv", tmp_path / "parallel.ecsv"
    # two of these files cannot be read: both paths write the table and exit with status 3
    assert main(["derive", *files, "-o", str(serial)]) == EXIT_UNREADABLE
    address = client.scheduler.address
    argv = ["derive", *files, "-o", str(parallel), "--scheduler", address, "-q"]
    assert main(argv) == EXIT_UNREADABLE
    assert "wrote 40 rows" in capsys.readouterr().out
    from stellarml.catalog import read_label_ecsv

    a, b = read_label_ecsv(serial), read_label_ecsv(parallel)
    assert b.colnames == ["input", *a.colnames]
    _assert_same(a, b, a.colnames)


def test_a_partition_whose_task_keeps_failing_gives_flagged_rows(model):
    items = ["a.fits", "b.fits"]
    result = _failed_partition(model, items, 10, RuntimeError("worker died"), None, "ecsv", 0)
    table = result["table"]
    assert result["failed"] and len(table) == 2
    assert list(table["input"]) == [10, 11]
    assert all(f & LabelFlag.BAD_INPUT for f in table["flags"])
    assert table["message"][0] == "the task failed: RuntimeError: worker died"


def test_bad_arguments_are_refused_before_any_work(model):
    with pytest.raises(ValueError, match="partition_size must be a positive integer"):
        derive_catalog(["x.fits"], model=model, partition_size=0)
    with pytest.raises(ValueError, match="unknown format 'hdf5'"):
        derive_catalog(["x.fits"], model=model, output="out", format="hdf5")
    with pytest.raises(ValueError, match="no inputs"):
        derive_catalog([], model=model)
    with pytest.raises(TypeError, match="input 1 is a int"):
        derive_catalog(["x.fits", 3], model=model)
