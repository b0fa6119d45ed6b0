"""The Dask path: spectra/s on 1 and 2 workers, and peak memory per worker, files from disk.

    python benchmarks/dask_scaling.py [--files 2000] [--workers 1 2] [--partition-size 256]
                                      [--input-format LAMOST-LRS] [--no-baseline]

Makes ``--files`` links to the 25 real LAMOST DR spectra of ``../shared/data``
(distinct paths: every file is opened and read on its own) in a temporary
folder, then runs `stellarml.distributed.derive_catalog` with the default
model on a `LocalCluster` of N single-threaded worker processes, writing a
partitioned ECSV catalogue (so nothing accumulates in memory), once per N.
Reports wall time (cluster start excluded), spectra/s, and each worker's peak
resident memory (``ru_maxrss``, read in the worker after the run). The same
files through the single-process command-line path (`prepare_inputs` +
`_compute_label_table`, 2 torch threads) give the baseline.
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

import distributed
import torch

from stellarml import read_model
from stellarml.analysis import _compute_label_table
from stellarml.distributed import derive_catalog
from stellarml.io.files import prepare_inputs

from _common import ROOT, report


def _peak_rss_mb():
    """Peak resident memory of this process [MB] (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _links(n, folder, data_dir):
    real = sorted((data_dir / "lamost").glob("*.fits"))
    paths = []
    for i in range(n):
        link = folder / f"{i:07d}_{real[i % len(real)].name}"
        link.symlink_to(real[i % len(real)])
        paths.append(str(link))
    return paths


def main(argv=None):
    import os

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--partition-size", type=int, default=256)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--input-format", default=None, help="e.g. LAMOST-LRS (skips identification)")
    args = p.parse_args(argv)
    data_dir = Path(os.environ.get("STELLARML_DATA_DIR", ROOT.parent / "shared" / "data"))
    model = read_model()
    t0 = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        paths = _links(args.files, tmp / "in", data_dir)
        if not args.no_baseline:
            torch.set_num_threads(2)
            t = time.perf_counter()
            batch, _ = prepare_inputs(paths, model.preparation, format=args.input_format)
            _compute_label_table(model, batch, device="cpu", batch_size=1024)
            dt = time.perf_counter() - t
            results["single process (2 threads)"] = {
                "seconds": dt,
                "spectra_per_s": len(paths) / dt,
                "peak_rss_mb": _peak_rss_mb(),
            }
            print(f"single process: {len(paths) / dt:.1f} spectra/s, peak {_peak_rss_mb():.0f} MB")
        for n in args.workers:
            with (
                distributed.LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
                ) as cluster,
                distributed.Client(cluster) as client,
            ):
                client.wait_for_workers(n)
                t = time.perf_counter()
                summary = derive_catalog(
                    paths,
                    model=model,
                    client=client,
                    output=tmp / f"out{n}",
                    partition_size=args.partition_size,
                    input_format=args.input_format,
                    progress=False,
                )
                dt = time.perf_counter() - t
                peaks = sorted(client.run(_peak_rss_mb).values())
            assert summary["rows"] == len(paths) and summary["failed"] == 0
            results[f"{n} workers"] = {
                "seconds": dt,
                "spectra_per_s": len(paths) / dt,
                "worker_peak_rss_mb": peaks,
            }
            print(
                f"{n} worker(s): {len(paths) / dt:.1f} spectra/s, "
                f"worker peak RSS {', '.join(f'{m:.0f}' for m in peaks)} MB"
            )
    if {"1 workers", "2 workers"} <= set(results):
        ratio = results["2 workers"]["spectra_per_s"] / results["1 workers"]["spectra_per_s"]
        results["scaling_2_over_1"] = ratio
        print(f"2 workers / 1 worker: {ratio:.2f}x")
    name = f"dask_scaling_{args.files}.json"
    report(name, "dask_scaling.py", argv, t0, {"files": args.files, "results": results})


if __name__ == "__main__":
    main()
