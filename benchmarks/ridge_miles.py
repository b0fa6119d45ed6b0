"""A linear baseline on the same folds as ``kfold_miles.py``: ridge regression on PCA.

    python benchmarks/ridge_miles.py [--widths 50 100 200 400] [--components 120] [--alpha 1]

The 581 in-bin MILES training stars are prepared exactly as for the default
model (grid, R = 1500, pseudo-continuum), except that the continuum width is
varied; for each width, 5 folds (seed 42, the same split as ``kfold_miles.py``)
fit PCA on the training folds' flux and a ridge regression of the labels on the
leading components, and predict the held-out fold. It reproduces the kind of
"PCA ridge" peer quoted in issue 2 on our own data and preparation, and shows
how much label information each continuum width leaves in the spectra. Only
the stars of ``miles_train_labels.csv`` are read.
"""

import argparse
import dataclasses
import time

import numpy as np

from stellarml.io.asdf import read_model
from stellarml.recipes.remap import build_finetune_library, in_bins

from _common import GROUPS, OUT, report, robust_stats


def ridge_pca(flux, labels, order, folds, components, alpha):
    """Held-out predictions of ridge regression on PCA components, fold by fold."""
    n = len(labels)
    pred = np.full(labels.shape, np.nan)
    for test in np.array_split(order, folds):
        train = np.setdiff1d(np.arange(n), test)
        mean = flux[train].mean(axis=0)
        x = flux[train] - mean
        basis = np.linalg.svd(x, full_matrices=False)[2][:components]
        a = np.hstack([np.ones((train.size, 1)), x @ basis.T])
        a_test = np.hstack([np.ones((test.size, 1)), (flux[test] - mean) @ basis.T])
        penalty = alpha * np.eye(a.shape[1])
        penalty[0, 0] = 0.0  # the intercept is not shrunk
        coef = np.linalg.solve(a.T @ a + penalty, a.T @ labels[train])
        pred[test] = a_test @ coef
    return pred


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrained", default=OUT / "remap-optical-r2000-pretrained.asdf")
    p.add_argument("--widths", type=float, nargs="+", default=[50.0, 100.0, 200.0, 400.0])
    p.add_argument("--components", type=int, default=120)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)

    model = read_model(args.pretrained)  # its grid, preparation and bins
    names = model.label_names
    miles = build_finetune_library(model.provenance_["config"])
    miles = miles[in_bins(model, miles)]
    ref = miles.label_array(names)
    order = np.random.default_rng(args.seed).permutation(len(miles))
    t0 = time.perf_counter()
    results = {}
    for width in args.widths:
        prep = dataclasses.replace(model.preparation, continuum_width=width)
        batch = miles.prepare(prep)
        flux = np.where(batch.ivar > 0, batch.flux, 1.0) if batch.ivar is not None else batch.flux
        flux = np.clip(np.nan_to_num(flux.astype(float), nan=1.0), -0.5, 2.0)
        pred = ridge_pca(flux, ref, order, args.folds, args.components, args.alpha)
        res = {}
        for group, select in GROUPS.items():
            sel = select(ref[:, 0], ref[:, 1])
            res[group] = {}
            for j, name in enumerate(names):
                bias, sigma, count = robust_stats(pred[sel, j] - ref[sel, j])
                res[group][name] = {"bias": bias, "robust_sigma": sigma, "n": count}
        results[str(width)] = res
        cells = " | ".join(
            f"{g} " + " / ".join(f"{r[k]['robust_sigma']:.3g}" for k in names)
            for g, r in res.items()
        )
        print(f"continuum width {width:g} A: {cells}", flush=True)
    report(
        "ridge_miles.json",
        "ridge_miles.py",
        argv,
        t0,
        {
            "components": args.components,
            "alpha": args.alpha,
            "folds": args.folds,
            "seed": args.seed,
            "n_stars": len(miles),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
