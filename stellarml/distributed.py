"""Label catalogues of many spectra on a Dask cluster: `derive_catalog`.

The inputs (file paths or spectra) are cut into partitions of
``partition_size`` inputs; each partition is one Dask task that reads,
prepares and labels its inputs with the same code as `~stellarml.derive_labels`
and the command line (`stellarml.io.files.prepare_inputs`). The model is sent
to every worker once (``client.scatter(..., broadcast=True)``). At most a few
partitions per worker thread are in flight at a time, so memory stays bounded
whatever the number of inputs. Rows come back one block per input, in input
order, with the input's index (``input``) and, for files, its path (``file``).

With ``output`` the partitions are written to disk as they finish, next to a
manifest; a second call with the same inputs, model and options skips the
partitions already written (resuming an interrupted run).
"""

import collections
import hashlib
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np

from .io.files import _is_path, input_names

__all__ = ["derive_catalog"]

#: Output formats: astropy format name and file suffix of one partition.
PART_FORMATS = {
    "ecsv": ("ascii.ecsv", ".ecsv"),
    "fits": ("fits", ".fits"),
    "parquet": ("parquet", ".parquet"),
    "votable": ("votable", ".xml"),
}
_SUFFIX_FORMATS = {".ecsv": "ecsv", ".fits": "fits", ".parquet": "parquet", ".xml": "votable"}
_SUFFIX_FORMATS[".vot"] = "votable"
_MANIFEST = "manifest.json"
_MANIFEST_VERSION = 1


def derive_catalog(
    inputs,
    model=None,
    *,
    client=None,
    scheduler=None,
    n_workers=None,
    output=None,
    format=None,
    partition_size=512,
    device="cpu",
    batch_size=1024,
    resolution=None,
    input_format=None,
    calibrate=True,
    precision="fp32",
    resume=True,
    retries=1,
    progress=True,
):
    """Derive labels for many spectra with a `dask.distributed` cluster.

    Parameters
    ----------
    inputs : sequence of str, path-like or `~specutils.Spectrum`
        Spectrum files (read with ``Spectrum.read``) and/or spectra, in any
        mix. A file that cannot be read becomes a row flagged ``BAD_INPUT``.
    model : `~stellarml.models.LabelModel`, str or path-like, optional
        As for `~stellarml.derive_labels` (default: the shipped default model).
    client : `distributed.Client`, optional
        The cluster to use. Default: a client of ``scheduler`` if given, else
        a new `~distributed.LocalCluster` of ``n_workers`` processes with one
        thread each, closed at the end.
    scheduler : str, optional
        Address of a running scheduler (``"tcp://host:8786"``).
    n_workers : int, optional
        Worker processes of the local cluster (default: the number of cores,
        at most 4).
    output : str or path-like, optional
        Where to write the catalogue. A path with a table suffix (``.ecsv``,
        ``.fits``, ``.parquet``, ``.xml``) gets one table, assembled from
        partitions kept in ``<output>.parts/`` until it is written; any other
        path is a directory of partitions ``part-00000.<suffix>`` (``format``,
        default ECSV) with a ``manifest.json``, for runs too large for one
        table. Without ``output`` the table is returned.
    format : {"ecsv", "fits", "parquet", "votable"}, optional
        Format of the partitions (and of the table); default from the suffix
        of ``output``, else ECSV. Every format keeps the units, UCDs,
        descriptions and ``meta`` (Parquet needs ``pyarrow``).
    partition_size : int, optional
        Inputs per task (default 512).
    device : str, optional
        Device of the workers' models (default ``"cpu"``).
    batch_size : int, optional
        Spectra per forward pass.
    resolution : float, optional
        Resolving power of every input (else each spectrum's own metadata).
    input_format : str, optional
        The specutils loader of every file (e.g. ``"LAMOST-LRS"``). Default:
        identified per file, which costs most of the reading time.
    calibrate : bool, optional
        Apply the model's calibration (default).
    precision : {"fp32", "bf16", "fp16"}, optional
        Arithmetic of the network, as for `~stellarml.derive_labels`.
    resume : bool, optional
        With ``output``: keep partitions that an earlier run with the same
        inputs, model and options wrote (default). `False` starts afresh.
    retries : int, optional
        A task whose worker fails is run again this many times, and a file
        that fails to read is tried this many more times (default 1). A
        partition that still fails gives flagged rows for its inputs.
    progress : bool, optional
        Show a progress bar (the Dask dashboard shows the tasks as well).

    Returns
    -------
    `~stellarml.catalog.LabelTable` or dict
        Without ``output``, the table (as `~stellarml.derive_labels` gives,
        with ``input`` and ``file`` columns first). With ``output``, a summary:
        ``{"output", "rows", "partitions", "written", "skipped", "failed",
        "unreadable"}`` (``failed``: partitions whose task kept failing;
        ``unreadable``: rows of files that could not be read).

    Raises
    ------
    ImportError
        If ``dask[distributed]`` is not installed.
    ValueError
        For an unknown format, a non-positive ``partition_size``, or an
        ``output`` that holds a different run.
    TypeError
        For an input that is neither a path nor a spectrum.

    Examples
    --------
    The shipped example spectra and default model on a one-worker in-process
    cluster (a real run passes file paths, and a cluster of many processes):

    >>> from distributed import Client
    >>> from stellarml import read_model
    >>> from stellarml.data import example_spectra
    >>> from stellarml.distributed import derive_catalog
    >>> spectra, truth = example_spectra()
    >>> with Client(processes=False, n_workers=1, threads_per_worker=1,
    ...             dashboard_address=":0") as client:
    ...     table = derive_catalog([spectra[:2], spectra[2:4]], read_model(), client=client,
    ...                            partition_size=1, progress=False)
    >>> len(table), table["input"].tolist(), table.colnames[:3]
    (4, [0, 0, 1, 1], ['input', 'file', 'teff'])
    >>> table["teff"].unit
    Unit("K")
    """
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - dask is a test dependency
        raise ImportError(
            "derive_catalog needs dask.distributed: pip install 'stellarml[dask]'"
        ) from exc
    from .analysis import _check_model_precision, _resolve_model

    inputs = list(inputs)
    if not inputs:
        raise ValueError("derive_catalog: no inputs")
    _check_inputs(inputs)
    if isinstance(partition_size, bool) or int(partition_size) != partition_size:
        raise ValueError(f"partition_size must be a positive integer, got {partition_size!r}")
    partition_size = int(partition_size)
    if partition_size < 1:
        raise ValueError(f"partition_size must be a positive integer, got {partition_size!r}")
    model = _resolve_model(model)
    _check_model_precision(model, precision)
    fmt, single = _output_layout(output, format)
    options = {
        "device": str(device),
        "batch_size": int(batch_size),
        "resolution": None if resolution is None else float(resolution),
        "input_format": input_format,
        "calibrate": bool(calibrate),
        "precision": str(precision),
        "retries": int(retries),
    }
    parts = [inputs[i : i + partition_size] for i in range(0, len(inputs), partition_size)]
    starts = list(range(0, len(inputs), partition_size))
    part_dir = None
    todo = list(range(len(parts)))
    if output is not None:
        part_dir = Path(f"{output}.parts") if single else Path(output)
        manifest = _manifest(inputs, model, options, partition_size, fmt)
        todo = _prepare_part_dir(part_dir, manifest, len(parts), fmt, resume=resume)

    own_client = client is None
    cluster = None
    if own_client:
        if scheduler is not None:
            client = distributed.Client(scheduler)
        else:
            n = int(n_workers) if n_workers else min(4, os.cpu_count() or 1)
            cluster = distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
            )
            client = distributed.Client(cluster)
    try:
        results = _run(
            client, model, parts, starts, todo, options, part_dir, fmt, progress=progress
        )
    finally:
        if own_client:
            client.close()
            if cluster is not None:
                cluster.close()
    failed = sum(1 for r in results.values() if r.get("failed"))
    if output is None:
        return _join([results[i]["table"] for i in range(len(parts))], model)
    summary = {
        "output": str(output),
        "rows": 0,
        "partitions": len(parts),
        "written": len(todo),
        "skipped": len(parts) - len(todo),
        "failed": failed,
        "unreadable": 0,
    }
    if single:
        table = _join([_read_part(part_dir, i, fmt) for i in range(len(parts))], model)
        _write(table, Path(output), fmt)
        summary["rows"] = len(table)
        summary["unreadable"] = _unreadable(table)
        shutil.rmtree(part_dir)  # ours: partitions, manifest, leftovers of interrupted writes
    else:
        done = json.loads((part_dir / _MANIFEST).read_text())
        counts = {"rows": done.get("rows", {}), "unreadable": done.get("unreadable", {})}
        for key, values in counts.items():
            values.update({str(i): r[key] for i, r in results.items()})
        for i in range(len(parts)):  # partitions of a run interrupted before it noted them
            if str(i) not in counts["rows"] or str(i) not in counts["unreadable"]:
                part = _read_part(part_dir, i, fmt)
                counts["rows"][str(i)], counts["unreadable"][str(i)] = len(part), _unreadable(part)
        for key, values in counts.items():
            done[key] = values
            summary[key] = int(sum(values.values()))
        _write_json(part_dir / _MANIFEST, done)
    return summary


# ---------------------------------------------------------------------- running


def _run(client, model, parts, starts, todo, options, part_dir, fmt, *, progress):
    """Submit the partitions in ``todo`` (a bounded window at a time); collect as they finish."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    model_future = client.scatter(model, broadcast=True, hash=False)
    run = uuid.uuid4().hex[:8]  # task names on the dashboard: stellarml-derive-<partition>-<run>
    nthreads = sum(client.nthreads().values()) or 1
    window = 2 * nthreads
    results = {}
    pending = collections.deque(todo)
    bar = tqdm(total=len(todo), unit="partition", disable=not progress, desc="stellarml")

    def submit(i):
        return client.submit(
            _derive_partition,
            model_future,
            parts[i],
            starts[i],
            options,
            None if part_dir is None else str(part_dir),
            fmt,
            i,
            key=f"stellarml-derive-{i:05d}-{run}",
            retries=options["retries"],
            pure=False,
        )

    futures = {}
    running = as_completed()
    while pending and len(futures) < window:
        i = pending.popleft()
        f = submit(i)
        futures[f.key] = i
        running.add(f)
    for future in running:
        i = futures.pop(future.key)
        try:
            results[i] = future.result()
        except Exception as exc:  # the worker failed even after the retries
            results[i] = _failed_partition(model, parts[i], starts[i], exc, part_dir, fmt, i)
        future.release()
        bar.update(1)
        if pending:
            j = pending.popleft()
            f = submit(j)
            futures[f.key] = j
            running.add(f)
    bar.close()
    return results


def _derive_partition(model, items, start, options, part_dir, fmt, index):
    """One task: read, prepare and label ``items``; write or return the table."""
    import torch

    from .analysis import _compute_label_table
    from .io.files import prepare_inputs

    try:
        from distributed import get_worker

        torch.set_num_threads(max(1, int(get_worker().state.nthreads)))
    except (ImportError, ValueError):  # pragma: no cover - not on a worker
        pass
    batch, rows = prepare_inputs(
        items,
        model.preparation,
        resolution=options["resolution"],
        format=options["input_format"],
        retries=options["retries"],
    )
    table, _ = _compute_label_table(
        model,
        batch,
        device=options["device"],
        batch_size=options["batch_size"],
        calibrate=options["calibrate"],
        precision=options["precision"],
    )
    _add_input_columns(table, items, start, rows)
    return _finish_partition(table, part_dir, fmt, index)


def _failed_partition(model, items, start, exc, part_dir, fmt, index):
    """Rows flagged BAD_INPUT for the inputs of a partition whose task kept failing."""
    from .analysis import _compute_label_table
    from .flags import LabelFlag
    from .spectra.prepare import _empty_batch, input_rows

    rows = np.asarray([1 if _is_path(x) else input_rows(x) for x in items], dtype=int)
    batch = _empty_batch(int(rows.sum()), model.preparation.wavelength.size)
    batch.flags |= int(LabelFlag.BAD_INPUT)
    batch.messages = [f"the task failed: {type(exc).__name__}: {exc}"] * len(batch)
    table, _ = _compute_label_table(model, batch, device="cpu", batch_size=1024)
    _add_input_columns(table, items, start, rows)
    result = _finish_partition(table, part_dir, fmt, index)
    result["failed"] = True
    return result


def _finish_partition(table, part_dir, fmt, index):
    result = {"rows": len(table), "unreadable": _unreadable(table)}
    if part_dir is None:
        return {**result, "table": table}
    _write(table, _part_path(Path(part_dir), index, fmt), fmt)
    return result


def _unreadable(table):
    """Rows of files that could not be read."""
    return int(sum(str(m).startswith("could not read ") for m in table["message"]))


def _add_input_columns(table, items, start, rows):
    from astropy.table import Column

    index = np.repeat(np.arange(start, start + len(items), dtype=np.int64), rows)
    names = input_names(items, rows)
    table.add_column(
        Column(names, name="file", description="Input file ('' for an in-memory spectrum)"),
        index=0,
    )
    table.add_column(
        Column(index, name="input", description="Index of the input (0-based, in input order)"),
        index=0,
    )
    for name, ucd in (("input", "meta.id"), ("file", "meta.file")):
        table[name].meta["ucd"] = ucd


# ---------------------------------------------------------------------- files


def _output_layout(output, format):
    """(partition format, whether ``output`` is one table)."""
    single = output is not None and Path(output).suffix.lower() in _SUFFIX_FORMATS
    if format is None:
        fmt = _SUFFIX_FORMATS[Path(output).suffix.lower()] if single else "ecsv"
    else:
        fmt = {"ascii.ecsv": "ecsv"}.get(str(format).lower(), str(format).lower())
    if fmt not in PART_FORMATS:
        raise ValueError(f"unknown format {format!r}; use one of {', '.join(PART_FORMATS)}")
    if single and _SUFFIX_FORMATS[Path(output).suffix.lower()] != fmt:
        raise ValueError(f"format {fmt!r} does not match the suffix of {output}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise ImportError("Parquet output needs pyarrow: pip install pyarrow") from exc
    return fmt, single


def _part_path(part_dir, index, fmt):
    return Path(part_dir) / f"part-{index:05d}{PART_FORMATS[fmt][1]}"


def _write(table, path, fmt):
    """Write atomically: a partial file never looks finished."""
    from astropy.io.fits.verify import VerifyWarning
    from astropy.utils.exceptions import AstropyUserWarning

    from .catalog import write_label_votable

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if fmt == "votable":
        write_label_votable(table, tmp, overwrite=True)
    elif fmt == "fits":
        with warnings.catch_warnings():
            # FITS has no 'dex': astropy keeps it in its serialised column metadata, which
            # astropy readers restore and other FITS readers show as a unitless column
            warnings.filterwarnings(
                "ignore", "The unit 'dex' could not be saved", AstropyUserWarning
            )
            # meta keys longer than 8 characters become HIERARCH cards, as intended
            warnings.filterwarnings("ignore", "Keyword name .* HIERARCH card", VerifyWarning)
            _fits_table(table).write(tmp, format="fits", overwrite=True)
    else:
        table.write(tmp, format=PART_FORMATS[fmt][0], overwrite=True)
    os.replace(tmp, path)


def _read_part(part_dir, index, fmt):
    from astropy.table import QTable

    from .catalog import read_label_ecsv, read_label_votable

    path = _part_path(part_dir, index, fmt)
    if fmt == "votable":
        return read_label_votable(path)
    if fmt == "ecsv":
        return read_label_ecsv(path)
    table = QTable.read(path, format=PART_FORMATS[fmt][0])
    if fmt == "fits":  # undo _fits_table
        for key in table.meta.pop(_FITS_JSON_KEYS, "").split():
            table.meta[key] = json.loads(table.meta[key])
        if "DATE" in table.meta:
            table.meta["date"] = table.meta.pop("DATE")
    return table


#: FITS header key listing the ``meta`` entries written as JSON text.
_FITS_JSON_KEYS = "stellarml_json_keys"


def _fits_table(table):
    """A view of ``table`` whose ``meta`` a FITS header can hold: nested values as JSON text.

    FITS header values are scalars; astropy would drop ``meta`` entries that
    hold dicts or lists (the calibration's corrections). They are written as
    JSON strings instead, and the key ``stellarml_json_keys`` lists them.
    """
    meta, encoded = {}, []
    for key, value in table.meta.items():
        if isinstance(value, dict | list | tuple):
            meta[key] = json.dumps(value, sort_keys=True, default=str)
            encoded.append(key)
        else:
            meta[key] = value
    if encoded:
        meta[_FITS_JSON_KEYS] = " ".join(encoded)
    out = table.copy(copy_data=False)
    out.meta = meta
    return out


def _join(tables, model):
    from astropy.table import vstack

    from .catalog import LabelTable

    table = vstack(tables, join_type="exact", metadata_conflicts="silent")
    table.meta = dict(tables[0].meta)
    return LabelTable(table, copy=False) if not isinstance(table, LabelTable) else table


def _manifest(inputs, model, options, partition_size, fmt):
    h = hashlib.sha256()
    for item in inputs:
        h.update((str(item) if _is_path(item) else _spectrum_token(item)).encode())
        h.update(b"\0")
    source = getattr(model, "source_", None) or {}
    return {
        "version": _MANIFEST_VERSION,
        "inputs": len(inputs),
        "inputs_sha256": h.hexdigest(),
        "model": getattr(model, "name", type(model).__name__),
        "model_sha256": source.get("sha256") if isinstance(source, dict) else None,
        "partition_size": partition_size,
        "format": fmt,
        "options": options,
    }


def _prepare_part_dir(part_dir, manifest, n_parts, fmt, *, resume):
    """Partitions still to compute; checks that a resumed directory holds the same run."""
    path = part_dir / _MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        same = {k: v for k, v in old.items() if k not in ("rows", "unreadable")} == manifest
        if resume and not same:
            raise ValueError(
                f"{part_dir} holds partitions of another run (inputs, model or options differ); "
                "use another output, or resume=False to replace them"
            )
        if not resume:
            for i in range(n_parts):
                _part_path(part_dir, i, fmt).unlink(missing_ok=True)
            old = {}
        manifest = {
            **manifest,
            "rows": old.get("rows", {}),
            "unreadable": old.get("unreadable", {}),
        }
    elif part_dir.exists() and any(part_dir.iterdir()):
        raise ValueError(f"{part_dir} exists and is not a stellarml partition directory")
    _write_json(path, manifest)
    return [i for i in range(n_parts) if not _part_path(part_dir, i, fmt).exists()]


def _check_inputs(inputs):
    from specutils import Spectrum, SpectrumCollection

    for i, item in enumerate(inputs):
        if not (_is_path(item) or isinstance(item, Spectrum | SpectrumCollection | list | tuple)):
            raise TypeError(
                f"derive_catalog: input {i} is a {type(item).__name__}; give file paths or "
                "specutils spectra"
            )


def _write_json(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _spectrum_token(spectrum):
    """A content hash of an in-memory spectrum (for the manifest and task keys)."""
    from .spectra.prepare import _iter_spectra

    h = hashlib.sha256()
    for _, spec in _iter_spectra(spectrum, "spectra"):
        h.update(np.ascontiguousarray(spec.spectral_axis.value).tobytes())
        h.update(np.ascontiguousarray(spec.flux.value).tobytes())
    return h.hexdigest()
