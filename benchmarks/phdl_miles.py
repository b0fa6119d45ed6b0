"""The emulator model on MILES stars it never saw: k-fold, with and without the gradient prior.

    python benchmarks/phdl_miles.py [--config scripts/phdl-optical-r2000.toml] [--folds 5]
                                    [--seed 42] [--weights 0 1e-3] [--threads 1]

The MILES training stars inside the emulator's box (``[model.box]`` of the
configuration) are cut into ``--folds`` folds. For each fold and each
gradient-prior weight an emulator is trained on the other folds exactly as
the recipe trains the shipped one (`stellarml.recipes.phdl`: noise-weighted
flux loss, gradient prior from the Doppler polynomial library, per-pixel
emulator error from 3-fold residuals *inside the training folds*), wrapped
as an `~stellarml.models.emulator.EmulatorModel`, and the held-out fold is
fitted through the public path, ``derive_labels(library.to_spectrum(),
model)``, uncalibrated. Residuals (fit - MILES label): bias (median) and
robust sigma (1.4826 x MAD) per group as in section 1 of RESULTS.md, plus
the fraction of rows flagged FIT_NOT_CONVERGED or PDF_AT_GRID_EDGE. Only the
stars of ``miles_train_labels.csv`` are read.
"""

import argparse
import copy
import time

import numpy as np
import torch

from stellarml import derive_labels
from stellarml.flags import FATAL, LabelFlag
from stellarml.libraries import ObservedLibrary
from stellarml.recipes import load_config
from stellarml.recipes import phdl
from stellarml.recipes.remap import build_preparation

from _common import GROUPS, ROOT, report, robust_stats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=ROOT / "scripts" / "phdl-optical-r2000.toml")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 1e-3])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    base = load_config(args.config)
    base.pop("calibration", None)
    preparation = build_preparation(base)
    names = phdl._labels(base)
    stars = phdl.training_stars(base, preparation)
    ids = stars["ids"]
    library = ObservedLibrary.from_miles(
        base["library"].get("directory"), require=names, ids=list(ids)
    )
    lib_ids = np.array([str(i) for i in np.asarray(library.labels["id"])])
    ref = library.label_array(names)
    order = np.random.default_rng(args.seed).permutation(len(ids))
    folds = np.array_split(order, args.folds)
    results = {}
    for weight in args.weights:
        cfg = copy.deepcopy(base)
        cfg["gradient_prior"]["weight"] = float(weight)
        prior = phdl.gradient_prior(cfg, preparation)
        pred = np.full((len(ids), len(names)), np.nan)
        flags = np.zeros(len(ids), dtype=np.int64)
        chi2 = np.full(len(ids), np.nan)
        for k, test in enumerate(folds):
            train = np.setdiff1d(np.arange(len(ids)), test)
            part = {key: stars[key][train] for key in ("labels", "flux", "weights", "ivar")}
            part["ids"] = ids[train]
            emulator, _ = phdl.train_emulator_on(cfg, preparation, part, prior)
            error, _ = phdl.estimate_model_error(cfg, preparation, part, prior)
            model = phdl.build_model(cfg, preparation, emulator, model_error=error)
            rows = np.array([np.flatnonzero(lib_ids == i)[0] for i in ids[test]])
            table = derive_labels(library[rows].to_spectrum(), model=model, calibrate=False)
            for j, name in enumerate(names):
                pred[test, j] = np.ma.filled(np.ma.asarray(table[name].value), np.nan)
            flags[test] = np.asarray(table["flags"])
            chi2[test] = np.asarray(table["chi2"]) / np.asarray(table["dof"])
            print(
                f"weight {weight:g}: fold {k + 1}/{args.folds} ({time.perf_counter() - t0:.0f} s)"
            )
        pred[(flags & int(FATAL)) != 0] = np.nan
        truth = ref[np.array([np.flatnonzero(lib_ids == i)[0] for i in ids])]
        res = {}
        for group, select in GROUPS.items():
            sel = select(truth[:, 0], truth[:, 1])
            res[group] = {"n": int(sel.sum())}
            for j, name in enumerate(names):
                bias, sigma, count = robust_stats(pred[sel, j] - truth[sel, j])
                res[group][name] = {"bias": bias, "robust_sigma": sigma, "n": count}
            res[group]["not_converged"] = float(
                np.mean((flags[sel] & int(LabelFlag.FIT_NOT_CONVERGED)) != 0)
            )
            res[group]["at_edge"] = float(
                np.mean((flags[sel] & int(LabelFlag.PDF_AT_GRID_EDGE)) != 0)
            )
            res[group]["median_reduced_chi2"] = float(np.nanmedian(chi2[sel]))
        results[f"{weight:g}"] = res
        for group, r in res.items():
            cells = " / ".join(f"{r[n]['bias']:+.3g} / {r[n]['robust_sigma']:.3g}" for n in names)
            print(f"weight {weight:g} {group} ({r['n']}): {cells}; edge {r['at_edge']:.2f}")
    report(
        "phdl_miles.json",
        "phdl_miles.py",
        argv,
        t0,
        {"folds": args.folds, "seed": args.seed, "n_stars": len(ids), "results": results},
    )


if __name__ == "__main__":
    main()
