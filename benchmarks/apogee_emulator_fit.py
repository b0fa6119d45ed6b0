"""Fit the real APOGEE spectrum of the reference data with the real APOGEE emulator.

    python benchmarks/apogee_emulator_fit.py            # labels, chi2/nu, CRLB; fits per second

The emulator (binspec layout, 5 labels) and the spectrum (2M13012770+5754582,
normalised, with errors) are in ``$STELLARML_DATA_DIR/apogee``. Pixels with
errors above 1 (the file marks bad pixels with errors of ~100) or flagged in
``apogee_mask.npz`` get ivar = 0. Speed: GradientFitter (3 starts) on batches
of noisy emulator spectra at S/N 100, wall time, torch threads as set.
"""

import argparse
import sys
import time

import numpy as np
import torch
from _common import report

from stellarml._utils import data_dir
from stellarml.fitting import GradientFitter, cramer_rao_bound
from stellarml.models.emulator import PayneEmulator


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    folder = data_dir() / "apogee"
    emu = PayneEmulator.from_npz(
        folder / "binspec_apogee_emulator.npz", folder / "apogee_wavelength.npz"
    )
    with np.load(folder / "apogee_combined_2M13012770+5754582.npz") as d:
        flux, err = d["spectrum"].astype(float), d["spec_err"].astype(float)
    with np.load(folder / "apogee_mask.npz") as d:
        mask = d["apogee_mask"].astype(bool)
    good = np.isfinite(flux) & np.isfinite(err) & (err > 0) & (err < 1.0) & ~mask
    ivar = np.where(good, 1.0 / np.where(good, err, 1.0) ** 2, 0.0)
    fitter = GradientFitter(n_starts=4)
    result = fitter(emu, flux[None], ivar[None])
    crlb = cramer_rao_bound(emu, result.labels, ivar[None])[0]
    star = {
        "labels": dict(zip(emu.label_names, result.labels[0].round(4).tolist(), strict=True)),
        "crlb": dict(zip(emu.label_names, crlb.round(5).tolist(), strict=True)),
        "chi2_per_dof": float(result.chi2[0] / result.dof[0]),
        "good_pixels": int(good.sum()),
        "converged": bool(result.converged[0]),
        "iterations": int(result.fit_info["n_iter"][0]),
    }
    print(star)
    rng = np.random.default_rng(0)
    lo, hi = emu.label_lo.numpy(), emu.label_hi.numpy()
    speed = {}
    for n in args.batch:
        truth = lo + (hi - lo) * rng.uniform(0.25, 0.75, (n, 5))
        with torch.no_grad():
            clean = emu.flux(torch.tensor(truth, dtype=torch.float32)).double().numpy()
        spectra = clean + rng.standard_normal(clean.shape) / 100.0
        iv = np.full(clean.shape, 100.0**2)
        rates = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            GradientFitter(n_starts=3)(emu, spectra, iv)
            rates.append(n / (time.perf_counter() - t))
        speed[str(n)] = [round(r, 1) for r in rates]
        print(f"batch {n}: {rates} fits/s")
    report(
        "apogee_emulator_fit.json",
        "apogee_emulator_fit.py",
        argv if argv is not None else sys.argv[1:],
        t0,
        {"star": star, "gradient_fits_per_s": speed},
    )


if __name__ == "__main__":
    main()
