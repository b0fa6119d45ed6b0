"""The shipped emulator model on the 55 Gaia FGK Benchmark Stars it never saw (11-fold).

    python benchmarks/phdl_gbs.py [--config scripts/phdl-optical-r2000.toml] [--threads 1]

The benchmark stars among the MILES training stars (`gbs_v3_miles_train.csv`:
interferometric Teff, log g from masses and radii) are split into the
``[calibration]`` folds of the configuration (11, seed 42). Each fold is fitted,
through `derive_labels`, by an emulator trained exactly as the shipped one
(`stellarml.recipes.phdl.cross_fitted_posteriors`: on all MILES training stars
in the box but that fold, the other folds' benchmark stars with their GBS labels
weighted 5 times, the gradient prior, and the shipped model's per-pixel
emulator error). These out-of-fold fits are what the shipped calibration was
fitted on; here the calibration (offset + width) is in turn cross-fitted: for
each fold, fitted on the other ten folds' fits and applied to this fold, so no
star is evaluated by a model or a correction it helped fit. Cells as in
section 5 of RESULTS.md (bias / robust sigma, bootstrap 16-84 % range, 68 %
coverage plain / with the GBS error in quadrature). The other MILES benchmark
stars (the independent evaluation set) are never read.
"""

import argparse
import time

import numpy as np
import torch
from calibration_gbs import cross_fitted, stats

from stellarml.calibration import ChainedCalibration, TrendCalibration, WidthCalibration
from stellarml.io.asdf import read_model
from stellarml.recipes import load_config
from stellarml.recipes import phdl
from stellarml.recipes.calibration import load_reference
from stellarml.recipes.remap import build_preparation

from _common import ROOT, report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=ROOT / "scripts" / "phdl-optical-r2000.toml")
    p.add_argument("--model", default="phdl-optical-r2000")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cfg = load_config(args.config)
    shipped = read_model(args.model)
    preparation = build_preparation(cfg)
    prior = phdl.gradient_prior(cfg, preparation)
    reference = load_reference(cfg, phdl._labels(cfg))
    posterior, fold, _ = phdl.cross_fitted_posteriors(
        cfg,
        preparation,
        prior,
        reference,
        model_error=shipped.fit_options.get("model_error"),
    )
    dwarfs = np.asarray(reference["logg"].value) >= 3.8

    def make(_rows):
        return ChainedCalibration(
            [TrendCalibration({"teff": [], "logg": [], "fe_h": []}), WidthCalibration()]
        )

    calibrated = cross_fitted(posterior, reference, fold, make)
    results = {
        "raw": stats(posterior, reference),
        "offset + width (cross-fitted)": stats(calibrated, reference),
        "offset + width, dwarfs": stats(calibrated, reference, dwarfs),
        "offset + width, giants": stats(calibrated, reference, ~dwarfs),
    }
    for name, res in results.items():
        cells = " | ".join(
            f"{v['bias']:+.3g} / {v['robust_sigma']:.3g} "
            f"({v['robust_sigma_16_84'][0]:.3g}-{v['robust_sigma_16_84'][1]:.3g}), "
            f"{v['coverage_68']:.2f} / {v['coverage_68_with_ref_err']:.2f}"
            for v in res.values()
        )
        print(f"{name}: {cells}")
    report(
        "phdl_gbs.json",
        "phdl_gbs.py",
        argv,
        t0,
        {"n_stars": len(reference), "n_dwarfs": int(dwarfs.sum()), "results": results},
    )


if __name__ == "__main__":
    main()
