"""How much of the MILES k-fold scatter no spectral method can remove: the shared-error floor.

    python benchmarks/label_floor.py [--cnn out/kfold_miles.json] [--bootstrap 1000]

Three methods that share nothing but the spectra and the reference labels are
evaluated on the same 5 folds (seed 42) of the 581 in-bin MILES training stars:

* ``cnn``: the fine-tuned deep-REMAP network, read from the per-star
  predictions of ``kfold_miles.py`` (``--cnn``);
* ``ridge``: ridge regression on 120 PCA components (``ridge_miles.py``);
* ``cannon``: a quadratic Cannon-style generative model (per-pixel quadratic
  in the labels, fitted on the training folds, with a per-pixel scatter; each
  held-out star's labels are found by a coarse grid search then a weighted
  least-squares refinement).

The residual (prediction - reference) of each method is written as
``r_i = c + u_i``: a part ``c`` that all methods share (errors of the
reference labels, and whatever the spectra cannot tell apart) and a part
``u_i`` of the method's own. If the ``u_i`` are independent of each other
and of ``c``, each pair of methods gives ``cov(r_i, r_j) = var(c)``, and
``sqrt(var(c))`` is the scatter a method with no error of its own would still
show against these reference labels. The covariance is taken robustly,
``(S(r_i + r_j)**2 - S(r_i - r_j)**2) / 4`` with ``S`` = 1.4826 x MAD, the
same estimator as the robust sigma in the other benchmarks, and the 16-84 %
range comes from a bootstrap over stars. Agreement between the three pairs
supports the model; the ``cnn``-``ridge`` and ``cannon``-``ridge`` pairs
assume that two very different methods do not make the same mistakes, which
can only make the floor an over-estimate where they do. Only the stars of
``miles_train_labels.csv`` are read.
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from stellarml.io.asdf import read_model
from stellarml.recipes.remap import build_finetune_library, in_bins

from _common import GROUPS, OUT, report, robust_stats
from ridge_miles import ridge_pca

#: Label scaling of the Cannon model: (x - offset) / scale.
CANNON_OFFSET = np.array([5000.0, 3.0, -0.3])
CANNON_SCALE = np.array([1000.0, 1.0, 0.5])


def quadratic_terms(x):
    """Design vectors [1, x_i, x_i x_j (i <= j)] of scaled labels ``x`` (n, 3) -> (n, 10)."""
    x = np.atleast_2d(x)
    cols = [np.ones(len(x))] + [x[:, i] for i in range(x.shape[1])]
    cols += [x[:, i] * x[:, j] for i, j in itertools.combinations_with_replacement(range(3), 2)]
    return np.stack(cols, axis=1)


def quadratic_jacobian(x):
    """d(design vector)/d(x) for one star: (10, 3)."""
    jac = np.zeros((10, 3))
    jac[1:4] = np.eye(3)
    for k, (i, j) in enumerate(itertools.combinations_with_replacement(range(3), 2)):
        jac[4 + k, i] += x[j]
        jac[4 + k, j] += x[i]
    return jac


def _cannon_residual(x, flux, theta, weight):
    return (quadratic_terms(x)[0] @ theta - flux) * weight


def _cannon_jacobian(x, flux, theta, weight):
    return (quadratic_jacobian(x).T @ theta).T * weight[:, None]


def cannon(flux, labels, order, folds, grid_steps=(23, 16, 21)):
    """Held-out predictions of a quadratic Cannon-style model, fold by fold."""
    n = len(labels)
    x_all = (labels - CANNON_OFFSET) / CANNON_SCALE
    pred = np.full(labels.shape, np.nan)
    lo, hi = labels.min(axis=0), labels.max(axis=0)
    axes = [np.linspace(a, b, s) for a, b, s in zip(lo, hi, grid_steps, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    grid_x = (grid - CANNON_OFFSET) / CANNON_SCALE
    for test in np.array_split(order, folds):
        train = np.setdiff1d(np.arange(n), test)
        design = quadratic_terms(x_all[train])
        theta = np.linalg.lstsq(design, flux[train], rcond=None)[0]  # (10, npix)
        scatter2 = np.var(flux[train] - design @ theta, axis=0) + 1e-8
        weight = 1.0 / np.sqrt(scatter2)
        # coarse start: the best grid point of the model, restricted to the
        # training stars' label box (no label outside it is ever returned)
        model_grid = (quadratic_terms(grid_x) @ theta) * weight  # (ngrid, npix)
        # chi2 up to a per-star constant: |m|^2 - 2 m.f, for all stars in one product
        chi2 = (model_grid**2).sum(axis=1)[:, None] - 2.0 * model_grid @ (flux[test] * weight).T
        for i, best in zip(test, np.argmin(chi2, axis=0), strict=True):
            x0 = grid_x[best]
            fit = least_squares(
                _cannon_residual,
                x0,
                jac=_cannon_jacobian,
                args=(flux[i], theta, weight),
                bounds=((lo - CANNON_OFFSET) / CANNON_SCALE, (hi - CANNON_OFFSET) / CANNON_SCALE),
            )
            pred[i] = fit.x * CANNON_SCALE + CANNON_OFFSET
    return pred


def robust_cov(a, b):
    """Robust covariance of two residual vectors (finite pairs only)."""
    ok = np.isfinite(a) & np.isfinite(b)
    s_plus = robust_stats(a[ok] + b[ok])[1]
    s_minus = robust_stats(a[ok] - b[ok])[1]
    return (s_plus**2 - s_minus**2) / 4.0


def signed_sqrt(v):
    return float(np.sign(v) * np.sqrt(abs(v)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrained", default=OUT / "remap-optical-r2000-pretrained.asdf")
    p.add_argument("--cnn", default=OUT / "kfold_miles.json", help="kfold_miles.py output")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bootstrap", type=int, default=1000)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    model = read_model(args.pretrained)  # its grid, preparation and bins
    names = model.label_names
    miles = build_finetune_library(model.provenance_["config"])
    miles = miles[in_bins(model, miles)]
    ref = miles.label_array(names)
    ids = np.asarray(miles.labels["id"]).astype(str).tolist()
    cnn = json.loads(Path(args.cnn).read_text())
    if cnn["per_star"]["id"] != ids or cnn["folds"] != args.folds or cnn["seed"] != args.seed:
        raise SystemExit(f"{args.cnn}: not the same stars, folds and seed as this run")
    order = np.random.default_rng(args.seed).permutation(len(miles))
    batch = miles.prepare(model.preparation)
    flux = np.where(batch.ivar > 0, batch.flux, 1.0) if batch.ivar is not None else batch.flux
    flux = np.clip(np.nan_to_num(flux.astype(float), nan=1.0), -0.5, 2.0)

    preds = {
        "cnn": np.stack([cnn["per_star"]["after"][name] for name in names], axis=1),
        "ridge": ridge_pca(flux, ref, order, args.folds, 120, 1.0),
        "cannon": cannon(flux, ref, order, args.folds),
    }
    resid = {m: pr - ref for m, pr in preds.items()}
    pairs = list(itertools.combinations(preds, 2))
    rng = np.random.default_rng(args.seed)
    results = {}
    for group, select in GROUPS.items():
        sel = np.flatnonzero(select(ref[:, 0], ref[:, 1]))
        boot = [rng.choice(sel, sel.size) for _ in range(args.bootstrap)]
        results[group] = {"n": int(sel.size)}
        for j, name in enumerate(names):
            entry = {m: robust_stats(r[sel, j])[1] for m, r in resid.items()}
            # slope of the residual against the reference label: a shared pull
            # towards the training mean (shrinkage) shows as a clearly negative
            # slope; errors of the reference labels alone give only about
            # -var(error) / var(label)
            for m, r in resid.items():
                ok = np.isfinite(r[sel, j])
                x = ref[sel, j][ok]
                entry[f"slope_{m}"] = float(np.polyfit(x - x.mean(), r[sel, j][ok], 1)[0])
            for a, b in pairs:
                ra, rb = resid[a][:, j], resid[b][:, j]
                cov = robust_cov(ra[sel], rb[sel])
                draws = [signed_sqrt(robust_cov(ra[s], rb[s])) for s in boot]
                entry[f"floor_{a}_{b}"] = signed_sqrt(cov)
                entry[f"floor_{a}_{b}_p16_p84"] = [float(v) for v in np.percentile(draws, [16, 84])]
            results[group][name] = entry
    print(
        "robust sigma of each method (slope of residual vs reference); "
        "shared floor sqrt(cov) per pair [16-84 % bootstrap]"
    )
    for group, res in results.items():
        print(f"{group} (n={res['n']})")
        for name in names:
            e = res[name]
            own = " ".join(f"{m} {e[m]:.3g} ({e[f'slope_{m}']:+.2f})" for m in preds)
            floors = " ".join(
                f"{a}-{b} {e[f'floor_{a}_{b}']:.3g} "
                f"[{e[f'floor_{a}_{b}_p16_p84'][0]:.3g}, {e[f'floor_{a}_{b}_p16_p84'][1]:.3g}]"
                for a, b in pairs
            )
            print(f"  {name:5s} {own} | floor {floors}")
    report(
        "label_floor.json",
        "label_floor.py",
        argv,
        t0,
        {
            "cnn_predictions": str(args.cnn),
            "folds": args.folds,
            "seed": args.seed,
            "bootstrap": args.bootstrap,
            "n_stars": len(ids),
            "results": results,
            "per_star": {
                "id": ids,
                **{
                    m: {name: pr[:, j].tolist() for j, name in enumerate(names)}
                    for m, pr in preds.items()
                },
            },
        },
    )


if __name__ == "__main__":
    main()
