"""k-fold cross-validated accuracy on the MILES *training* stars, before and after fine-tuning.

    python benchmarks/kfold_miles.py [--pretrained PATH] [--folds 5] [--seed 42]

The pre-trained model (synthetic library only, written by
``scripts/build_default_model.py``) is copied for each fold, evaluated on the
held-out fold ("before"), fine-tuned on the other folds exactly as the
default model is (the ``[fine_tune]`` table of its configuration) and
evaluated again ("after"). Predictions go through the public path,
``derive_labels(library.to_spectrum(), model)``. Only the stars of
``miles_train_labels.csv`` are used; the other MILES stars are never read.
Reports the bias (median residual, model - reference) and robust sigma
(1.4826 x MAD) per label for FGK dwarfs, FGK giants and M stars.
"""

import argparse
import time

import numpy as np
import torch

from stellarml import derive_labels
from stellarml.flags import FATAL
from stellarml.io.asdf import read_model
from stellarml.models import RemapModel
from stellarml.training.pipeline import build_finetune_library, fine_tune, in_bins

from _common import GROUPS, OUT, environment, robust_stats, save


def predict(model, library):
    table = derive_labels(library.to_spectrum(), model=model, device="cpu")
    out = {}
    fatal = (np.asarray(table["flags"]) & int(FATAL)) != 0
    for name in model.label_names:
        col = table[name]
        values = np.array(getattr(col, "value", col), dtype=float)
        values[fatal] = np.nan
        out[name] = values
    out["flags"] = np.asarray(table["flags"])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrained", default=OUT / "remap-optical-r2000-pretrained.asdf")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--freeze", default=None, help="override [fine_tune] freeze")
    p.add_argument("--epochs", type=int, default=None, help="override [fine_tune] epochs")
    p.add_argument("--lr", type=float, default=None, help="override [fine_tune] lr")
    p.add_argument("--tag", default="", help="suffix of the output file name")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    pretrained = read_model(args.pretrained)
    cfg = pretrained.provenance_["config"]
    for key in ("freeze", "epochs", "lr"):
        if getattr(args, key) is not None:
            cfg["fine_tune"][key] = getattr(args, key)
    names = pretrained.label_names
    miles = build_finetune_library(cfg)
    miles = miles[in_bins(pretrained, miles)]
    ref = miles.label_array(names)
    ids = np.asarray(miles.labels["id"]).astype(str)
    n = len(miles)
    pred = {stage: {k: np.full(n, np.nan) for k in names} for stage in ("before", "after")}
    fold_of = np.full(n, -1)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(n)
    t0 = time.perf_counter()
    for k, test_idx in enumerate(np.array_split(order, args.folds)):
        fold_of[test_idx] = k
        test = miles[np.sort(test_idx)]
        model = RemapModel.from_tree(pretrained.to_tree(), device="cpu")
        before = predict(model, test)
        fine_tune(model, cfg, ids=None, exclude_ids=list(ids[test_idx]), progress=False)
        held = set(model.provenance_["fine_tune_library"]["ids"]) & set(ids[test_idx])
        assert not held, f"fold {k}: test stars used in fine-tuning: {sorted(held)[:5]}"
        after = predict(model, test)
        for name in names:
            pred["before"][name][np.sort(test_idx)] = before[name]
            pred["after"][name][np.sort(test_idx)] = after[name]
        print(f"fold {k + 1}/{args.folds} done ({time.perf_counter() - t0:.0f} s)", flush=True)

    teff, logg = ref[:, names.index("teff")], ref[:, names.index("logg")]
    results = {}
    for stage in ("before", "after"):
        results[stage] = {}
        for group, select in GROUPS.items():
            sel = select(teff, logg)
            results[stage][group] = {}
            for j, name in enumerate(names):
                bias, sigma, count = robust_stats(pred[stage][name][sel] - ref[sel, j])
                results[stage][group][name] = {"bias": bias, "robust_sigma": sigma, "n": count}
    payload = {
        "command": "python benchmarks/kfold_miles.py " + " ".join(argv or []),
        "pretrained": str(args.pretrained),
        "folds": args.folds,
        "seed": args.seed,
        "fine_tune": {k: cfg["fine_tune"].get(k) for k in ("freeze", "epochs", "lr")},
        "n_stars": n,
        "environment": environment(),
        "wall_time_s": time.perf_counter() - t0,
        "results": results,
        "per_star": {
            "id": ids.tolist(),
            "fold": fold_of.tolist(),
            "reference": {name: ref[:, j].tolist() for j, name in enumerate(names)},
            "before": {k: v.tolist() for k, v in pred["before"].items()},
            "after": {k: v.tolist() for k, v in pred["after"].items()},
        },
    }
    path = save(f"kfold_miles{args.tag}.json", payload)
    for stage in ("before", "after"):
        print(f"\n{stage} fine-tuning (bias / robust sigma, n)")
        for group, res in results[stage].items():
            cells = [
                f"{name} {r['bias']:+.3g} / {r['robust_sigma']:.3g} (n={r['n']})"
                for name, r in res.items()
            ]
            print(f"  {group:11s} " + "; ".join(cells))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
