"""Recovery of the 31 labels of the line-list library at S/N 30, 50 and 100, as RMS / CRLB.

    python benchmarks/linelist_recovery.py [--n 40] [--snr 30 50 100] [--seed 7] [--threads 2]

The forward model is the line-list library itself (`LineListLibrary`: Teff,
log g, vmicro, [Fe/H] and 27 [X/Fe]), degraded to R = 2000 on a 4600-6900 A
ln-lambda grid (dloglam 2.3e-4), wrapped as a `SpectrumEmulator` whose
Jacobian is the library's exact one; no trained emulator sits in between, so
this measures the fitter and the bound, not an emulator's error. ``--n``
label vectors are drawn uniformly in the inner 60 % of the box; each is
observed with Gaussian noise at each S/N and fitted with `GradientFitter`
(from the box centre, 2 starts). Per label: RMS of (fit - truth) / CRLB at
the truth, over the spectra, for the labels the spectra constrain (median
CRLB below a quarter of the box width; the others are reported with their
median CRLB and are not counted). Target: RMS / CRLB <= 1.2.
"""

import argparse
import sys
import time

import astropy.units as u
import numpy as np
import torch

from stellarml._utils import data_dir
from stellarml.fitting import GradientFitter, cramer_rao_bound
from stellarml.libraries import LineListLibrary
from stellarml.models.emulator import SpectrumEmulator
from stellarml.spectra import log_lambda_grid

from _common import report


class LibraryEmulator(SpectrumEmulator):
    """A line-list library degraded to an instrument, as an emulator (benchmark-only adapter)."""

    def __init__(self, library, wavelength, resolution):
        ranges = library.label_ranges
        names = library.label_names
        super().__init__(
            names, [ranges[n][0] for n in names], [ranges[n][1] for n in names], wavelength
        )
        self.library = library
        self.resolution = float(resolution)
        self._grid = np.asarray(wavelength) * u.AA

    def _labels(self, x):
        return self.unscale(torch.as_tensor(x, dtype=torch.float32)).double().numpy()

    def forward(self, x):
        lib = self.library.generate(
            self._labels(x), extrapolate=True, resolution=self.resolution, wavelength=self._grid
        )
        return torch.as_tensor(np.asarray(lib.flux), dtype=torch.float32)

    def flux_and_jacobian(self, x):
        labels = self._labels(x)
        jac = self.library.jacobian(
            labels, extrapolate=True, resolution=self.resolution, wavelength=self._grid
        )
        width = (self.label_hi - self.label_lo).double().numpy()
        return self.forward(x), torch.as_tensor(jac * width, dtype=torch.float32)

    def jacobian(self, x, *, chunk_size=None):
        return self.flux_and_jacobian(x)[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--snr", type=float, nargs="+", default=[30.0, 50.0, 100.0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    d = data_dir()
    library = LineListLibrary.from_files(
        d / "doppler" / "coolstars_cubic_emulator.npz",
        d / "linelists" / "galah_dr3_linelist.h5",
        (4550.0, 6950.0) * u.AA,
    )
    grid = log_lambda_grid(4600.0, 6900.0, 2.3e-4)
    emu = LibraryEmulator(library, grid, 2000.0)
    rng = np.random.default_rng(args.seed)
    lo, hi = emu.label_lo.numpy(), emu.label_hi.numpy()
    truth = lo + (hi - lo) * rng.uniform(0.2, 0.8, (args.n, emu.n_labels))
    with torch.no_grad():
        clean = emu.flux(torch.tensor(truth, dtype=torch.float32)).double().numpy()
    results = {}
    for snr in args.snr:
        ivar = np.full(clean.shape, snr**2)
        flux = clean + rng.standard_normal(clean.shape) / snr
        t = time.perf_counter()
        fit = GradientFitter(n_starts=2, max_iter=60)(emu, flux, ivar)
        seconds = time.perf_counter() - t
        bound = cramer_rao_bound(emu, truth, ivar)
        z = (fit.labels - truth) / bound
        ratio = np.sqrt(np.nanmean(z**2, axis=0))
        med_bound = np.median(bound, axis=0)
        constrained = med_bound < 0.25 * (hi - lo)
        res = {
            name: {
                "rms_over_crlb": float(ratio[j]),
                "median_crlb": float(med_bound[j]),
                "constrained": bool(constrained[j]),
            }
            for j, name in enumerate(emu.label_names)
        }
        good = ratio[constrained]
        results[f"{snr:g}"] = {
            "labels": res,
            "n_constrained": int(constrained.sum()),
            "n_constrained_within_1.2": int((good <= 1.2).sum()),
            "median_rms_over_crlb": float(np.median(good)),
            "converged_fraction": float(fit.converged.mean()),
            "fits_per_s": args.n / seconds,
        }
        print(
            f"S/N {snr:g}: {constrained.sum()} constrained labels, "
            f"{(good <= 1.2).sum()} with RMS/CRLB <= 1.2, median {np.median(good):.2f}; "
            f"converged {fit.converged.mean():.2f}; {args.n / seconds:.2f} fits/s",
            flush=True,
        )
        for j, name in enumerate(emu.label_names):
            print(f"   {name:8s} RMS/CRLB {ratio[j]:.2f}  median CRLB {med_bound[j]:.4g}")
    report(
        "linelist_recovery.json",
        "linelist_recovery.py",
        argv if argv is not None else sys.argv[1:],
        t0,
        {"n": args.n, "seed": args.seed, "n_pixels": int(grid.size), "results": results},
    )


if __name__ == "__main__":
    main()
