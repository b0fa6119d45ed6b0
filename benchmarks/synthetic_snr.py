"""Accuracy on held-out synthetic spectra as a function of S/N.

    python benchmarks/synthetic_snr.py [--n 2000] [--seed 7]

Draws ``n`` new label sets from the Doppler emulator's range (uniform design,
seed different from the training draw), simulates a BOSS-like instrument
(vacuum log-lambda grid 3650-7400 Angstrom, R = 2000) with Gaussian noise at
S/N = 5, 10, 20, 50, 100 per pixel, and runs ``derive_labels`` with the
pre-trained model (synthetic only) and the shipped fine-tuned default.
Reports bias and robust sigma per label (model - truth). These are
self-consistent (same synthetic library) figures, not accuracies on real stars.
"""

import argparse
import time

import astropy.units as u
import numpy as np
import torch
from astropy.nddata import InverseVariance
from specutils import Spectrum

from stellarml import derive_labels, read_model
from stellarml._utils import data_dir
from stellarml.libraries import PolynomialEmulatorLibrary
from stellarml.spectra import log_lambda_grid, vacuum_to_air

from _common import OUT, report, robust_stats

SNRS = (5.0, 10.0, 20.0, 50.0, 100.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--pretrained", default=OUT / "remap-optical-r2000-pretrained.asdf")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    emulator = PolynomialEmulatorLibrary.from_file(
        data_dir() / "doppler" / "coolstars_cubic_emulator.npz"
    )
    grid = log_lambda_grid(3650.0, 7400.0, 1e-4 * np.log(10))
    degraded = emulator.degrade(resolution=2000.0, wavelength=vacuum_to_air(grid) * u.AA)
    clean = degraded.sample(args.n, design="uniform", seed=args.seed)
    truth = clean.label_array(["teff", "logg", "fe_h"])
    models = {"pretrained": read_model(args.pretrained), "default": read_model()}
    results = {}
    for snr in SNRS:
        noisy = clean.add_noise(snr, seed=args.seed + int(snr))
        spec = Spectrum(
            flux=noisy.flux * u.dimensionless_unscaled,
            spectral_axis=grid * u.AA,
            uncertainty=InverseVariance(noisy.ivar),
            meta={"resolution": 2000.0, "medium": "vacuum"},
        )
        for name, model in models.items():
            table = derive_labels(spec, model=model, device="cpu")
            res = {}
            for j, label in enumerate(("teff", "logg", "fe_h")):
                bias, sigma, count = robust_stats(np.asarray(table[label]) - truth[:, j])
                res[label] = {"bias": bias, "robust_sigma": sigma, "n": count}
            results.setdefault(name, {})[f"snr{int(snr)}"] = res
            cells = [f"{k} {v['bias']:+.3g}/{v['robust_sigma']:.3g}" for k, v in res.items()]
            print(f"S/N {snr:5.0f} {name:10s} " + "; ".join(cells), flush=True)
    report(
        "synthetic_snr.json",
        "synthetic_snr.py",
        argv,
        t0,
        {"n": args.n, "seed": args.seed, "results": results},
    )


if __name__ == "__main__":
    main()
