"""Throughput of ``derive_labels`` (spectra per second), end to end and per stage.

    python benchmarks/throughput.py [--n 4096] [--threads 2] [--device cpu] [--repeat 3]
                                    [--no-calibration] [--precision fp32|bf16|fp16]
                                    [--rv known|measured]

Input: ``n`` copies of the project's example spectra (BOSS-like vacuum grid,
3070 pixels, R = 2000, InverseVariance) as one 2-D `Spectrum`, run through
the shipped default model. Reports the best of ``repeat`` timings of the whole
call and of its two stages (preparation; network + table), with the model's
calibration applied unless ``--no-calibration``, in the inference precision
``--precision`` (default fp32; bf16 on CPU or CUDA, fp16 on CUDA only).
The example spectra carry no radial velocity: ``--rv known`` (default) passes
``rv=0`` as a survey whose files give the RV would, ``--rv measured`` lets
``derive_labels`` measure it (`stellarml.spectra.measure_rv`).
"""

import argparse
import sys
import time

import numpy as np
import torch
from astropy.nddata import InverseVariance
from specutils import Spectrum

from stellarml import derive_labels, read_model
from stellarml.analysis import _compute_label_table
from stellarml.data import example_spectra
from stellarml.spectra import prepare

from _common import environment, save


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--model", default=None)
    p.add_argument("--no-calibration", action="store_true", help="time the raw outputs")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--rv", default="known", choices=["known", "measured"])
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = read_model(args.model) if args.model else read_model()
    spectra, _ = example_spectra()
    reps = -(-args.n // spectra.shape[0])
    flux = np.tile(spectra.flux.value, (reps, 1))[: args.n]
    ivar = np.tile(spectra.uncertainty.array, (reps, 1))[: args.n]
    big = Spectrum(
        flux=flux * spectra.flux.unit,
        spectral_axis=spectra.spectral_axis,
        uncertainty=InverseVariance(ivar),
        meta=dict(spectra.meta),
    )
    calibrate = not args.no_calibration
    prec = {"precision": args.precision, "rv": 0.0 if args.rv == "known" else None}
    derive_labels(big[:64], model=model, device=args.device, **prec)  # warm-up

    def best(fn):
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = fn()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return min(times), out

    t_total, table = best(
        lambda: derive_labels(
            big,
            model=model,
            device=args.device,
            batch_size=args.batch_size,
            calibrate=calibrate,
            **prec,
        )
    )
    t_prep, batch = best(lambda: prepare(big, model.preparation, rv=0.0))
    t_net, _ = best(
        lambda: _compute_label_table(
            model,
            batch,
            device=args.device,
            batch_size=args.batch_size,
            calibrate=calibrate,
            precision=args.precision,
        )
    )
    assert len(table) == args.n
    res = {
        "command": "python benchmarks/throughput.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "n_spectra": args.n,
        "n_pixels_in": int(flux.shape[1]),
        "device": args.device,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "rv": args.rv,
        "calibrated": calibrate and getattr(model, "calibration", None) is not None,
        "environment": environment(),
        "total_s": t_total,
        "spectra_per_s": args.n / t_total,
        "prepare_spectra_per_s": args.n / t_prep,
        "network_and_table_spectra_per_s": args.n / t_net,
    }
    if args.device.startswith("cuda"):
        res["gpu"] = torch.cuda.get_device_name(0)
    suffix = "" if args.precision == "fp32" else f"_{args.precision}"
    suffix += "" if args.rv == "known" else "_rv_measured"
    path = save(f"throughput_{args.device.replace(':', '')}{suffix}.json", res)
    print(
        f"derive_labels: {res['spectra_per_s']:.0f} spectra/s end to end "
        f"(prepare {res['prepare_spectra_per_s']:.0f}/s, network+table "
        f"{res['network_and_table_spectra_per_s']:.0f}/s) on {args.device}, "
        f"{args.threads} threads, {args.precision}; wrote {path}"
    )


if __name__ == "__main__":
    main()
