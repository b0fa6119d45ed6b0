"""The ``stellarml`` command: derive labels, train models, inspect models, run the demo."""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

__all__ = ["main"]

#: Exit status of ``stellarml derive`` when some input files could not be read (the table
#: is written, their rows flagged ``BAD_INPUT``; ``--allow-unreadable`` exits 0 instead).
EXIT_UNREADABLE = 3

_FORMATS = {".xml": "votable", ".vot": "votable", ".ecsv": "ascii.ecsv", ".fits": "fits"}


def _table_format(path, fmt):
    if fmt:
        return fmt
    try:
        return _FORMATS[Path(path).suffix.lower()]
    except KeyError:
        raise SystemExit(
            f"stellarml: cannot tell the table format from {path!r}; use --format "
            f"(one of: votable, ascii.ecsv, fits)"
        ) from None


def _write_table(table, path, fmt):
    table.write(path, format=_table_format(path, fmt), overwrite=True)


def _check_output(path, fmt, inputs, *, folder_ok):
    """Refuse a bad output path before any work: unknown format, no folder, an input file.

    With ``folder_ok`` (the Dask path) a path without a suffix is a folder of partitions.
    """
    out = Path(path)
    if out.suffix or not folder_ok:
        _table_format(path, fmt)  # exits with the list of formats
    folder = out.parent if out.suffix else out
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise SystemExit(f"stellarml: cannot write {path}: {folder} is not a writable folder")
    resolved = out.resolve()
    for name in inputs:
        if Path(name).resolve() == resolved:
            raise SystemExit(f"stellarml: the output {path} is one of the input files")


def _cmd_derive(args):
    from .analysis import _check_model_precision, _resolve_model
    from .models.base import check_method

    distributed = args.workers is not None or args.scheduler is not None
    if distributed and args.method is not None:
        raise SystemExit("stellarml: --method is not available with --workers/--scheduler")
    if distributed and (args.rv is not None or args.medium is not None):
        raise SystemExit(
            "stellarml: --rv and --medium are not available with --workers/--scheduler; "
            "the Dask path takes each spectrum's own (or estimates the RV)"
        )
    _check_output(args.output, args.format, args.files, folder_ok=distributed)
    model = _resolve_model(args.model)
    _check_model_precision(model, args.precision)
    try:
        check_method(model, args.method)
    except ValueError as exc:
        raise SystemExit(f"stellarml: {exc}") from None
    if distributed:
        return _derive_distributed(args, model)
    from astropy.table import Column

    from .analysis import _compute_label_table
    from .io.files import input_names, prepare_inputs

    batch, rows = prepare_inputs(
        args.files,
        model.preparation,
        resolution=args.resolution,
        format=args.input_format,
        rv=args.rv,
        medium=args.medium,
    )
    table, _ = _compute_label_table(
        model,
        batch,
        device=args.device,
        batch_size=args.batch_size,
        calibrate=not args.no_calibration,
        precision=args.precision,
        method=args.method,
    )
    files = input_names(args.files, rows)  # a star's joined camera files: "a + b + ..."
    table.add_column(Column(files, name="file", description="Input file"), index=0)
    _write_table(table, args.output, args.format)
    unreadable = [msg for msg in batch.messages if msg.startswith("could not read ")]
    for msg in unreadable:
        print(f"stellarml: warning: {msg}", file=sys.stderr)
    print(f"wrote {len(table)} rows to {args.output}")
    if unreadable:
        print(
            f"stellarml: {len(unreadable)} of {len(args.files)} files could not be read "
            "(rows flagged BAD_INPUT)",
            file=sys.stderr,
        )
        return 0 if args.allow_unreadable else EXIT_UNREADABLE
    return 0


def _derive_distributed(args, model):
    from .distributed import derive_catalog

    result = derive_catalog(
        args.files,
        model=model,
        scheduler=args.scheduler,
        n_workers=args.workers,
        output=args.output,
        format=args.format,
        partition_size=args.partition_size,
        device=args.device,
        batch_size=args.batch_size,
        resolution=args.resolution,
        input_format=args.input_format,
        calibrate=not args.no_calibration,
        precision=args.precision,
        progress=not args.quiet,
    )
    print(f"wrote {result['rows']} rows to {args.output}")
    return 0 if not result["unreadable"] or args.allow_unreadable else EXIT_UNREADABLE


def _cmd_info(args):
    from .analysis import _resolve_model

    model = _resolve_model(args.model)
    print(json.dumps(model.describe(), indent=2, default=str))
    return 0


def _cmd_train(args):
    from .recipes import train_from_config

    model = train_from_config(args.config, output=args.output, progress=not args.quiet)
    print(f"trained {model.name}; wrote {args.output}")
    return 0


def _cmd_adapt(args):
    from .analysis import _resolve_model, write_model
    from .io.files import prepare_inputs

    model = _resolve_model(args.model)
    if not callable(getattr(model, "adapt_prepared", None)):
        raise SystemExit(
            f"stellarml adapt: {model.name!r} is a {model.method} model, which cannot be "
            "adapted without labels (a DTL model can)"
        )
    batch, rows = prepare_inputs(args.files, model.preparation, resolution=args.resolution)
    for msg in batch.messages:
        if msg:
            print(f"stellarml: warning: left out of the adaptation: {msg}", file=sys.stderr)
    adapted = model.adapt_prepared(
        batch.flux,
        batch.ivar,
        flags=batch.flags,
        ids=np.repeat(np.asarray([str(f) for f in args.files], dtype=str), rows),
        progress=not args.quiet,
        source={"name": "stellarml adapt", "n": len(args.files)},
    )
    write_model(adapted, args.output)
    n = adapted.provenance_["adapt"]["n_spectra"]
    print(f"adapted {model.name} on {n} of {len(batch)} spectra; wrote {args.output}")
    return 0


def _cmd_demo(args):
    from astropy.table import hstack

    from .analysis import derive_labels
    from .data import example_spectra

    spectra, truth = example_spectra()
    table = derive_labels(
        spectra, model=args.model, device=args.device, calibrate=not args.no_calibration
    )
    shown = table[
        ["teff", "teff_err_lo", "teff_err_hi", "logg", "fe_h", "snr", "flags", "flag_names"]
    ]
    truth_cols = truth[[c for c in truth.colnames if c in ("teff", "logg", "fe_h")]]
    for name in truth_cols.colnames:
        truth_cols.rename_column(name, f"true_{name}")
    comparison = hstack([truth_cols, shown])
    for name in comparison.colnames:  # K to the kelvin, dex to 0.01 dex, S/N to 0.1
        col = comparison[name]
        if col.dtype.kind == "f":
            unit = str(getattr(col, "unit", "") or "")
            col.info.format = {"K": ".0f", "dex": ".2f"}.get(unit, ".1f")
    comparison.pprint(max_lines=-1, max_width=-1)
    if args.output:
        _write_table(table, args.output, None)
        print(f"wrote {len(table)} rows to {args.output}")
    return 0


def _parser():
    from ._utils import stellarml_version

    p = argparse.ArgumentParser(prog="stellarml", description=__doc__)
    p.add_argument("--version", action="version", version=f"stellarml {stellarml_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("derive", help="derive labels for spectrum files")
    d.add_argument("files", nargs="+", help="spectrum files readable by specutils")
    d.add_argument(
        "-o", "--output", required=True, help="output table (.xml VOTable, .ecsv, .fits)"
    )
    d.add_argument("-m", "--model", default=None, help="model ASDF file or shipped model name")
    d.add_argument("--format", default=None, help="astropy table format (default: from suffix)")
    d.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    d.add_argument("--batch-size", type=int, default=1024)
    d.add_argument(
        "--method",
        choices=("gradient", "cmaes", "mcmc"),
        default=None,
        help="fitter of an emulator model (default: the model's own)",
    )
    d.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="arithmetic of the network (bf16: CPU or CUDA; fp16: CUDA only)",
    )
    d.add_argument(
        "--resolution",
        type=float,
        default=None,
        help="resolving power R of every input (default: each file's; unknown: the model's "
        "is assumed and RESOLUTION_ASSUMED set)",
    )
    d.add_argument(
        "--rv",
        type=float,
        default=None,
        metavar="KM_S",
        help="radial velocity of every input in km/s (default: each file's, else measured)",
    )
    d.add_argument(
        "--medium",
        choices=("air", "vacuum"),
        default=None,
        help="wavelength medium of every input (default: each file's; unknown: vacuum is "
        "assumed and MEDIUM_ASSUMED set)",
    )
    d.add_argument(
        "--allow-unreadable",
        action="store_true",
        help=f"exit 0 when some files cannot be read (default: exit {EXIT_UNREADABLE}; "
        "their rows are flagged BAD_INPUT either way)",
    )
    d.add_argument(
        "--input-format",
        default=None,
        help="specutils loader of every file (e.g. LAMOST-LRS; default: identified per file)",
    )
    d.add_argument(
        "--no-calibration",
        action="store_true",
        help="raw model outputs: do not apply the model's calibration",
    )
    d.add_argument(
        "--workers",
        type=int,
        default=None,
        help="run on a local Dask cluster of N worker processes (needs dask[distributed])",
    )
    d.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786)",
    )
    d.add_argument(
        "--partition-size",
        type=int,
        default=512,
        help="files per Dask task (with --workers/--scheduler; default 512)",
    )
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_cmd_derive)

    t = sub.add_parser("train", help="train a model from a TOML configuration (its [model] method)")
    t.add_argument("config", help="TOML configuration file")
    t.add_argument("-o", "--output", required=True, help="output model ASDF file")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=_cmd_train)

    a = sub.add_parser(
        "adapt", help="adapt a DTL model to unlabelled spectrum files (no labels needed)"
    )
    a.add_argument("model", help="model ASDF file or shipped model name")
    a.add_argument("files", nargs="+", help="spectrum files (one spectrum each)")
    a.add_argument("-o", "--output", required=True, help="output (adapted) model ASDF file")
    a.add_argument(
        "--resolution", type=float, default=None, help="resolving power of inputs without one"
    )
    a.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    a.set_defaults(func=_cmd_adapt)

    i = sub.add_parser("info", help="describe a model")
    i.add_argument("model", nargs="?", default=None, help="model ASDF file or shipped model name")
    i.set_defaults(func=_cmd_info)

    e = sub.add_parser("demo", help="run the default model on the shipped example spectra")
    e.add_argument("-o", "--output", default=None, help="also write the table (e.g. labels.xml)")
    e.add_argument("-m", "--model", default=None, help="model ASDF file or shipped model name")
    e.add_argument("--device", default="auto")
    e.add_argument("--no-calibration", action="store_true", help="raw model outputs")
    e.set_defaults(func=_cmd_demo)
    return p


def main(argv=None):
    """Entry point of the ``stellarml`` command."""
    args = _parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
