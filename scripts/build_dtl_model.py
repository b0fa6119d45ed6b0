"""Rebuild the shipped DTL model ``dtl-optical-r2000``.

    python scripts/build_dtl_model.py [--config scripts/dtl-optical-r2000.toml] [--threads 1]

Writes ``stellarml/data/dtl-optical-r2000.asdf``: the ensemble of
``scripts/dtl-optical-r2000.toml`` (two autoencoders and their regressors
trained on the Doppler-emulator library of the default REMAP model's grid),
adapted without labels on the MILES training spectra. The same model before
adaptation (the synthetic-only baseline) goes to ``--synthetic-output``
(default ``benchmarks/out/dtl-optical-r2000-synthetic.asdf``), from which
``benchmarks/dtl_miles.py --pretrained`` starts. Prints the synthetic-test
errors and the reconstruction errors before and after adaptation. Needs the
reference data (``STELLARML_DATA_DIR``, default ``../shared/data``).
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from stellarml.recipes import load_config, train_from_config

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=REPO / "scripts" / "dtl-optical-r2000.toml")
    p.add_argument("--output", default=REPO / "stellarml" / "data" / "dtl-optical-r2000.asdf")
    p.add_argument(
        "--synthetic-output",
        default=REPO / "benchmarks" / "out" / "dtl-optical-r2000-synthetic.asdf",
    )
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    Path(args.synthetic_output).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = train_from_config(
        load_config(args.config),
        output=args.output,
        pretrained_output=args.synthetic_output,
        progress=False,
    )
    print(f"wrote {args.output} and {args.synthetic_output} in {time.perf_counter() - t0:.0f} s")
    fit = model.metrics_["fit"]
    for k, pairs in enumerate(fit["regressor_mse"]):
        for j, mse in enumerate(pairs):
            kept = [k, j] in fit["kept"]
            rms = ", ".join(f"{n} {np.sqrt(v):.3g}" for n, v in mse.items())
            print(f"autoencoder {k} regressor {j}: synthetic-test RMS {rms}{' (kept)' * kept}")
    adapt = model.metrics_["adapt"]
    print(
        "reconstruction MSE of the adaptation spectra before -> after: "
        + "; ".join(
            f"{b:.3g} -> {a:.3g}"
            for b, a in zip(
                adapt["reconstruction_mse_before"], adapt["reconstruction_mse_after"], strict=True
            )
        )
    )


if __name__ == "__main__":
    main()
