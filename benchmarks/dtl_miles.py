"""DTL on MILES training stars it never saw: k-fold, label-free adaptation, against the
synthetic-only regressors and against the label-using variant, with the domain-gap statistic
before and after adaptation.

    python benchmarks/dtl_miles.py [--config TOML] [--folds 3] [--seed 42]
                                   [--n-spectra N] [--permutations 200]

One `DTLModel` is trained on the synthetic library of ``--config`` (default
``scripts/dtl-optical-r2000.toml``: the default REMAP model's grid,
preparation and Doppler-emulator library). The MILES training stars are cut
into ``--folds`` folds; for each fold the model is adapted on the spectra of
the *other* folds (labels never read) and predicts the held-out fold through
the public path, ``derive_labels(library.to_spectrum(), model)``. The same
model unadapted ("synthetic-only") predicts every star too: the same
regressors without adaptation. Residuals (model - reference) are reported
as the bias (median) and robust sigma (1.4826 x MAD) per label for FGK
dwarfs, FGK giants and M stars against the MILES labels, and for the Gaia
FGK benchmark stars among them against their GBS v3 labels (each star
predicted by the model adapted without its fold: k-fold, never tuned on).
"adapted + labels" is the label-using variant: the fold's adapted model with
its regressors also trained on the MILES labels of the other folds
(`DTLModel.fine_tune_prepared`).
The gap statistic (MMD^2 with a permutation p-value, and the mean nearest
synthetic-latent distance) of each held-out fold is recorded before and after
adaptation, per autoencoder. Only ``miles_train_labels.csv`` stars are read.
"""

import argparse
import time

import numpy as np
import torch
from astropy.table import Table

from stellarml import derive_labels
from stellarml._utils import data_dir, plain_tree
from stellarml.flags import FATAL
from stellarml.io.asdf import read_model
from stellarml.models.dtl import domain_gap
from stellarml.recipes import load_config
from stellarml.recipes.dtl import build_model
from stellarml.recipes.remap import build_preparation, build_pretrain_library

from _common import GROUPS, ROOT, report, robust_stats

LABELS = ("teff", "logg", "fe_h")


def predict(model, library):
    table = derive_labels(library.to_spectrum(), model=model, device="cpu")
    fatal = (np.asarray(table["flags"]) & int(FATAL)) != 0
    out = {}
    for name in LABELS:
        values = np.array(getattr(table[name], "value", table[name]), dtype=float)
        values[fatal] = np.nan
        out[name] = values
    out["outside"] = (np.asarray(table["flags"]) & 8) != 0
    return out


def stats(pred, ref, groups):
    res = {}
    for group, mask in groups.items():
        res[group] = {}
        for name in LABELS:
            b, s, n = robust_stats(pred[name][mask] - ref[name][mask])
            res[group][name] = {"bias": b, "sigma": s, "n": n}
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=ROOT / "scripts" / "dtl-optical-r2000.toml")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--n-spectra", type=int, default=None, help="override [pretrain] n_spectra")
    p.add_argument("--permutations", type=int, default=200)
    p.add_argument(
        "--pretrained",
        default=None,
        help="a synthetic-only (unadapted) model of --config to start from instead of training "
        "one (e.g. written by recipes.dtl.train(..., pretrained_output=...))",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    from stellarml.libraries import ObservedLibrary

    cfg = load_config(args.config)
    if args.n_spectra:
        cfg["pretrain"]["n_spectra"] = args.n_spectra
    prep = build_preparation(cfg)
    library = build_pretrain_library(cfg, prep)
    batch = library.prepare(prep)
    if args.pretrained:
        model = read_model(args.pretrained)
        if model.is_adapted():
            raise SystemExit(f"{args.pretrained} is adapted; pass the synthetic-only model")
        if plain_tree(model.get_config()) != plain_tree(build_model(cfg, prep).get_config()):
            raise SystemExit(f"{args.pretrained} was not trained with {args.config}")
    else:
        model = build_model(cfg, prep)
        model.fit_prepared(
            batch.flux, library.label_array(list(LABELS)), ivar=batch.ivar, flags=batch.flags
        )
    t_fit = time.perf_counter() - t0
    syn_flux = batch.flux[np.random.default_rng(args.seed).permutation(len(batch))[:1000]]
    del library, batch
    miles = ObservedLibrary.from_miles(cfg["adapt"]["directory"], require=LABELS)
    ids = np.asarray(miles.labels["id"])
    ref = {n: np.asarray(miles.label_array([n]))[:, 0] for n in LABELS}
    fold = np.random.default_rng(args.seed).permutation(len(miles)) % args.folds
    adapted = {n: np.full(len(miles), np.nan) for n in LABELS}
    adapted["outside"] = np.zeros(len(miles), bool)
    labelled = {key: v.copy() for key, v in adapted.items()}
    gaps = []
    for k in range(args.folds):
        held, train = fold == k, fold != k
        fitted = model.adapt(miles[train])
        out = predict(fitted, miles[held])
        for key, v in out.items():
            adapted[key][held] = v
        # the label-using variant: the adapted model's regressors also trained on the
        # MILES labels of the training folds (never of the held-out fold)
        tb = miles[train].prepare(prep)
        tuned = fitted.fine_tune_prepared(
            tb.flux, np.stack([ref[n][train] for n in LABELS], 1), tb.ivar, flags=tb.flags
        )
        for key, v in predict(tuned, miles[held]).items():
            labelled[key][held] = v
        hb = miles[held].prepare(prep)
        good = (hb.flags & int(FATAL)) == 0
        gaps.append(
            domain_gap(
                fitted,
                syn_flux,
                hb.flux[good],
                hb.ivar[good],
                seed=args.seed,
                n_permutations=args.permutations,
            )
        )
        print(f"fold {k}: adapted on {int(train.sum())}, predicted {int(held.sum())}", flush=True)
    baseline = predict(model, miles)
    t, g = ref["teff"], ref["logg"]
    groups = {name: select(t, g) for name, select in GROUPS.items()}
    results = {
        "synthetic-only": stats(baseline, ref, groups),
        "adapted": stats(adapted, ref, groups),
        "adapted + labels": stats(labelled, ref, groups),
    }
    gbs = Table.read(data_dir() / "benchmarks" / "gbs_v3_miles_train.csv")
    gbs_ids = np.asarray([str(i).zfill(4) for i in gbs["miles_id"]])
    row = {i: j for j, i in enumerate(ids)}
    sel = np.array([row[i] for i in gbs_ids if i in row])
    gref = {n: np.asarray(gbs[n], dtype=float)[np.isin(gbs_ids, ids)] for n in LABELS}
    stages = (("synthetic-only", baseline), ("adapted", adapted), ("adapted + labels", labelled))
    for stage, pred in stages:
        results[stage]["GBS"] = {}
        for name in LABELS:
            b, s, n = robust_stats(pred[name][sel] - gref[name])
            results[stage]["GBS"][name] = {"bias": b, "sigma": s, "n": n}
        results[stage]["outside_domain_fraction"] = float(np.mean(pred["outside"]))
    for stage, res in results.items():
        print(stage)
        for group, r in res.items():
            if isinstance(r, dict):
                cells = [
                    f"{n} {v['bias']:+.3g}/{v['sigma']:.3g} (n={v['n']})" for n, v in r.items()
                ]
                print(f"  {group:11s} " + "; ".join(cells))
    for k, gap in enumerate(gaps):
        for a, entry in enumerate(gap):
            print(
                f"fold {k} AE {a}: "
                + "; ".join(
                    f"{key} MMD2 {v['mmd2']:.4f} p={v['p_value']:.3f} "
                    f"mean-min-dist {v['mean_min_distance']:.3f}"
                    for key, v in entry.items()
                )
            )
    report(
        "dtl_miles.json",
        "dtl_miles.py",
        argv,
        t0,
        {
            "seed": args.seed,
            "folds": args.folds,
            "fit_time_s": t_fit,
            "results": results,
            "gap": gaps,
            "fit_metrics": model.metrics_["fit"],
        },
    )


if __name__ == "__main__":
    main()
