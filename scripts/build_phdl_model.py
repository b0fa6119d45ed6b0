"""Rebuild the shipped emulator model ``phdl-optical-r2000``.

    python scripts/build_phdl_model.py [--config scripts/phdl-optical-r2000.toml] [--threads 1]

Writes ``stellarml/data/phdl-optical-r2000.asdf``: an MLP emulator trained on
the MILES training stars inside its label box (the 55 Gaia FGK benchmark
stars among them with their GBS labels, weighted 5 times) with the gradient
prior of the Doppler polynomial library, its per-pixel error from 3-fold
residuals, and an offset + width calibration fitted on out-of-fold fits of
the benchmark stars (11 folds: each star fitted by an emulator trained
without it). Prints the calibration's out-of-fold statistics. Needs the
reference data (``STELLARML_DATA_DIR``, default ``../shared/data``).
"""

import argparse
import time
from pathlib import Path

import torch

from stellarml.recipes import load_config, train_from_config

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=REPO / "scripts" / "phdl-optical-r2000.toml")
    p.add_argument("--output", default=REPO / "stellarml" / "data" / "phdl-optical-r2000.asdf")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cfg = load_config(args.config)
    model = train_from_config(cfg, output=args.output)
    print(f"wrote {args.output} in {time.perf_counter() - t0:.0f} s")
    cal = model.calibration
    if cal is not None:
        print(cal.describe())


if __name__ == "__main__":
    main()
