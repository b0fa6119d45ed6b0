"""Fit the real APOGEE spectrum of the reference data with the real APOGEE emulator, every fitter.

    python benchmarks/apogee_emulator_fit.py     # labels, chi2/nu, CRLB, MCMC intervals; fits/s

The emulator (binspec layout, 5 labels) and the spectrum (2M13012770+5754582,
normalised, with errors) are in ``$STELLARML_DATA_DIR/apogee``. Pixels with
errors above 1 (the file marks bad pixels with errors of ~100) or flagged in
``apogee_mask.npz`` get ivar = 0. The star is fitted by each fitter twice:
labels only, and with a residual RV (+-50 km/s) and a degree-3 Legendre
continuum as nuisance parameters.

Speed: each fitter on batches of noisy emulator spectra at S/N 100 (labels in
the inner half of the box), wall time, torch threads as set: GradientFitter
(3 starts), CMAESFitter (defaults) and MCMCFitter (defaults: 32 walkers, 500
burn-in + 2000 steps, on fewer spectra).
"""

import argparse
import sys
import time

import numpy as np
import torch
from _common import report

from stellarml._utils import data_dir
from stellarml.fitting import CMAESFitter, GradientFitter, MCMCFitter
from stellarml.models.emulator import PayneEmulator


def load():
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
    return emu, flux, ivar, good


def fit_star(emu, flux, ivar, fitter, **options):
    t = time.perf_counter()
    result = fitter(emu, flux[None], ivar[None], **options)
    out = {
        "labels": dict(zip(emu.label_names, result.labels[0].round(4).tolist(), strict=True)),
        "errors": dict(zip(emu.label_names, result.errors[0].round(5).tolist(), strict=True)),
        "crlb": dict(zip(emu.label_names, result.crlb[0].round(5).tolist(), strict=True)),
        "chi2_per_dof": round(float(result.reduced_chi2[0]), 4),
        "converged": bool(result.converged[0]),
        "seconds": round(time.perf_counter() - t, 3),
    }
    if result.rv is not None:
        out["rv"] = [round(float(result.rv[0]), 4), round(float(result.rv_err[0]), 4)]
    if result.samples is not None:
        q = np.percentile(result.samples[0], [16, 50, 84], axis=0)
        out["p16_p50_p84"] = {n: q[:, j].round(4).tolist() for j, n in enumerate(emu.label_names)}
        out["chain_over_tau"] = round(float(fitter.fit_info["chain_over_tau"][0]), 1)
        out["acceptance"] = round(float(fitter.fit_info["acceptance_fraction"][0]), 3)
    for key in ("stop", "n_evaluations"):
        if key in fitter.fit_info:
            v = fitter.fit_info[key]
            first = np.asarray(v).ravel()[0] if np.ndim(v) else v
            out[key] = first.item() if isinstance(first, np.generic) else first
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    p.add_argument("--mcmc-batch", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    emu, flux, ivar, good = load()
    fitters = {
        "gradient": lambda: GradientFitter(n_starts=4),
        "cmaes": lambda: CMAESFitter(),
        "mcmc": lambda: MCMCFitter(),
    }
    nuisance = {"rv": (-50.0, 50.0), "continuum_degree": 3}
    star = {"good_pixels": int(good.sum())}
    for name, make in fitters.items():
        for tag, options in (("labels", {}), ("rv+continuum", nuisance)):
            star[f"{name} {tag}"] = fit_star(emu, flux, ivar, make(), **options)
            print(name, tag, star[f"{name} {tag}"])
    rng = np.random.default_rng(0)
    lo, hi = emu.label_lo.numpy(), emu.label_hi.numpy()
    speed = {}
    for name, make in fitters.items():
        sizes = [args.mcmc_batch] if name == "mcmc" else args.batch
        for n in sizes:
            truth = lo + (hi - lo) * rng.uniform(0.25, 0.75, (n, 5))
            with torch.no_grad():
                clean = emu.flux(torch.tensor(truth, dtype=torch.float32)).double().numpy()
            spectra = clean + rng.standard_normal(clean.shape) / 100.0
            iv = np.full(clean.shape, 100.0**2)
            rates = []
            for _ in range(1 if name == "mcmc" else args.repeat):
                fitter = make()
                if name == "gradient":
                    fitter = GradientFitter(n_starts=3)
                t = time.perf_counter()
                fitter(emu, spectra, iv)
                rates.append(round(n / (time.perf_counter() - t), 4))
            speed[f"{name} batch {n}"] = rates
            print(f"{name} batch {n}: {rates} fits/s")
    report(
        "apogee_emulator_fit.json",
        "apogee_emulator_fit.py",
        argv if argv is not None else sys.argv[1:],
        t0,
        {"star": star, "fits_per_s": speed},
    )


if __name__ == "__main__":
    main()
