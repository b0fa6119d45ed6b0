"""Accuracy cost and speed of mixed-precision inference: bf16 (or fp16) against fp32.

    python benchmarks/precision.py [--precision bf16] [--device cpu] [--threads 2]
                                   [--n 4096] [--repeat 3] [--model remap-optical-r2000]

The model (by default the shipped one) predicts, in float32 and in
``--precision``, the MILES training stars inside its bins (their spectra
only, from ``build_finetune_library`` as in ``rebuild_spread.py``; no labels
are scored) and the 25 LAMOST DR spectra in ``$STELLARML_DATA_DIR/lamost``,
raw and calibrated. Reports, per label, the median, robust sigma (1.4826 x MAD)
and largest absolute value of the difference LOW - FP32 of the posterior
medians, the typical half-width of the fp32 16-84 % interval for scale, and
how many rows changed flags (and which bits). Then the throughput of the
network + table stage (`_compute_label_table` on ``n`` prepared copies of the
example spectra) in both precisions, interleaved, best of ``repeat``.
"""

import argparse
import copy
import glob
import os
import time
from pathlib import Path

import numpy as np
import torch
from specutils import Spectrum

from stellarml import derive_labels, read_model
from stellarml.analysis import _compute_label_table
from stellarml.data import example_spectra
from stellarml.flags import LabelFlag
from stellarml.recipes.remap import build_finetune_library, in_bins
from stellarml.spectra import prepare

from _common import ROOT, report, robust_stats


def _data_dir():
    return Path(os.environ.get("STELLARML_DATA_DIR", ROOT.parent / "shared" / "data"))


def _flag_changes(a, b):
    fa, fb = np.asarray(a["flags"], dtype=np.int64), np.asarray(b["flags"], dtype=np.int64)
    bits = {}
    for flag in LabelFlag:
        gained = int((((fb & flag) != 0) & ((fa & flag) == 0)).sum())
        lost = int((((fa & flag) != 0) & ((fb & flag) == 0)).sum())
        if gained or lost:
            bits[flag.name] = {"gained": gained, "lost": lost}
    return {"rows_changed": int((fa != fb).sum()), "bits": bits}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    p.add_argument("--n", type=int, default=4096, help="spectra for the throughput")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--model", default="remap-optical-r2000")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    low = args.precision
    model = read_model(args.model)
    names = model.label_names
    miles = build_finetune_library(copy.deepcopy(model.provenance_["config"]))
    miles = miles[in_bins(model, miles)]
    lamost = [Spectrum.read(f) for f in sorted(glob.glob(str(_data_dir() / "lamost" / "*.fits")))]
    inputs = {"miles": miles.to_spectrum(), "lamost": lamost}
    kw = {"model": model, "device": args.device, "batch_size": args.batch_size}
    results = {}
    for group, spectra in inputs.items():
        for calibrate in (False, True):
            a = derive_labels(spectra, calibrate=calibrate, **kw)
            b = derive_labels(spectra, calibrate=calibrate, precision=low, **kw)
            key = f"{group} {'calibrated' if calibrate else 'raw'}"
            res = {"n": len(a), "flags": _flag_changes(a, b)}
            parts = []
            for n in names:
                for col in (n, f"{n}_p16", f"{n}_p84"):
                    d = np.asarray(b[col].value, float) - np.asarray(a[col].value, float)
                    med, sigma, _ = robust_stats(d)
                    res[col] = {"median": med, "sigma": sigma, "max_abs": float(np.nanmax(abs(d)))}
                hw = 0.5 * (a[f"{n}_p84"].value - a[f"{n}_p16"].value)
                res[n]["half_width"] = float(np.nanmedian(hw))
                r = res[n]
                parts.append(
                    f"{n} {r['median']:+.3g} / {r['sigma']:.3g} (max {r['max_abs']:.3g}; "
                    f"half-width {r['half_width']:.3g})"
                )
            results[key] = res
            print(f"{key:16s} n={len(a)}: " + "; ".join(parts) + f"; flags {res['flags']}")

    # throughput of the network + table stage, both precisions interleaved
    spectra, _ = example_spectra()
    reps = -(-args.n // spectra.shape[0])
    big = prepare(spectra, model.preparation)[np.tile(np.arange(spectra.shape[0]), reps)[: args.n]]
    speeds = {"fp32": [], low: []}
    for prec in speeds:  # warm-up
        _compute_label_table(model, big[:64], device=args.device, batch_size=64, precision=prec)
    for _ in range(args.repeat):
        for prec in speeds:
            t = time.perf_counter()
            _compute_label_table(
                model, big, device=args.device, batch_size=args.batch_size, precision=prec
            )
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            speeds[prec].append(args.n / (time.perf_counter() - t))
    throughput = {prec: {"best": max(v), "all": v} for prec, v in speeds.items()}
    print(
        "network + table: "
        + ", ".join(f"{prec} {v['best']:.0f} spectra/s" for prec, v in throughput.items())
        + f" (best of {args.repeat}, {args.n} spectra, {args.device}, "
        f"{torch.get_num_threads()} threads)"
    )
    fields = {
        "precision": low,
        "device": args.device,
        "model": args.model,
        "labels": results,
        "throughput_spectra_per_s": throughput,
        "n_spectra_throughput": args.n,
        "batch_size": args.batch_size,
    }
    if args.device.startswith("cuda"):
        fields["gpu"] = torch.cuda.get_device_name(0)
    report(f"precision_{low}_{args.device.replace(':', '')}.json", "precision.py", argv, t0, fields)


if __name__ == "__main__":
    main()
