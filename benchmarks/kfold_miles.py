"""k-fold cross-validated accuracy on the MILES *training* stars, before and after fine-tuning.

    python benchmarks/kfold_miles.py [--pretrained PATH] [--member K] [--config TOML]
                                     [--folds 5] [--seed 42] [--reference-weight W]

The pre-trained model (synthetic library only, written by
``scripts/build_default_model.py``; one network or a deep ensemble) is copied
for each fold, evaluated on the held-out fold ("before"), fine-tuned on the
other folds exactly as the default model is (the ``[fine_tune]`` table of
``--config``, by default the default model's
``scripts/remap-optical-r2000.toml``; with its ``[calibration]``
``fine_tune_on_reference``, the training folds' Gaia benchmark stars carry
their GBS labels, each counted ``reference_weight`` times;
``--reference-weight 0`` fine-tunes on the MILES labels alone) and evaluated
again ("after"), against the MILES labels, uncalibrated.
Predictions go through the public path,
``derive_labels(library.to_spectrum(), model)``. Only the stars of
``miles_train_labels.csv`` are used; the other MILES stars are never read.
Reports the bias (median residual, model - reference) and robust sigma
(1.4826 x MAD) per label for FGK dwarfs, FGK giants and M stars. For an
ensemble it also scores each fine-tuned member alone ("member<k>"), on the
same folds, so the gain of averaging is measured, not assumed.
"""

import argparse
import copy
import time

import numpy as np
import torch

from stellarml import derive_labels
from stellarml.flags import FATAL
from stellarml.io.asdf import read_model
from stellarml.recipes import load_config
from stellarml.recipes.calibration import load_reference
from stellarml.recipes.remap import build_finetune_library, fine_tune, in_bins

from _common import GROUPS, OUT, ROOT, report, robust_stats


def predict(model, library):
    table = derive_labels(library.to_spectrum(), model=model, device="cpu")
    out = {}
    fatal = (np.asarray(table["flags"]) & int(FATAL)) != 0
    for name in model.label_names:
        for key in (name, f"{name}_p16", f"{name}_p84"):
            col = table[key]
            values = np.array(getattr(col, "value", col), dtype=float)
            values[fatal] = np.nan
            out[key] = values
    out["flags"] = np.asarray(table["flags"])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrained", default=OUT / "remap-optical-r2000-pretrained.asdf")
    p.add_argument(
        "--config",
        default=ROOT / "scripts" / "remap-optical-r2000.toml",
        help="configuration whose [fine_tune] table is used",
    )
    p.add_argument(
        "--member",
        type=int,
        default=None,
        help="use only member K of a pre-trained ensemble (one network, as it was pre-trained)",
    )
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--freeze", default=None, help="override [fine_tune] freeze")
    p.add_argument("--epochs", type=int, default=None, help="override [fine_tune] epochs")
    p.add_argument("--lr", type=float, default=None, help="override [fine_tune] lr")
    p.add_argument("--runs", type=int, default=None, help="override [fine_tune] runs")
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=None,
        help="override [fine_tune] validation_fraction",
    )
    p.add_argument(
        "--sigma-bins", type=float, default=None, help="override [fine_tune.loss] sigma_bins"
    )
    p.add_argument(
        "--augment-snr",
        nargs="+",
        default=None,
        metavar="SNR",
        help="fine-tuning noise augmentation: 'LO HI' (S/N per pixel) or 'none' "
        "(default: the model's training['augment'], S/N 10-300)",
    )
    p.add_argument(
        "--reference-weight",
        type=int,
        default=None,
        help="fine-tune on the [calibration] reference labels (GBS) where they exist, each "
        "star counted this many times, as the default model is (default: the configuration's "
        "fine_tune_on_reference / reference_weight)",
    )
    p.add_argument("--tag", default="", help="suffix of the output file name")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    pretrained = read_model(args.pretrained)
    if args.member is not None:
        members = getattr(pretrained, "members", [])
        if not 0 <= args.member < len(members):
            p.error(f"--member {args.member}: {args.pretrained} has {len(members)} members")
        pretrained = members[args.member]
    cfg = pretrained.provenance_["config"]
    cfg["fine_tune"] = load_config(args.config)["fine_tune"]
    for key in ("freeze", "epochs", "lr", "runs", "validation_fraction"):
        if getattr(args, key) is not None:
            cfg["fine_tune"][key] = getattr(args, key)
    if args.sigma_bins is not None:
        cfg["fine_tune"]["loss"] = {
            **cfg["fine_tune"].get("loss", {}),
            "sigma_bins": args.sigma_bins,
        }
    augment = None
    if args.augment_snr is not None:
        augment = dict(pretrained.get_config()["training"]["augment"])
        snr = args.augment_snr
        augment["snr"] = None if snr == ["none"] else tuple(float(v) for v in snr)
    names = pretrained.label_names
    full = load_config(args.config)
    c = full.get("calibration") or {}
    weight = args.reference_weight
    if weight is None:
        weight = int(c.get("reference_weight", 1)) if c.get("fine_tune_on_reference") else 0
    overrides = load_reference(full, names) if weight > 0 else None
    miles = build_finetune_library(cfg)
    miles = miles[in_bins(pretrained, miles)]
    ref = miles.label_array(names)
    ids = np.asarray(miles.labels["id"]).astype(str)
    n = len(miles)
    keys = [f"{name}{suffix}" for name in names for suffix in ("", "_p16", "_p84")]
    members = getattr(pretrained, "members", [])
    stages = ["before", "after", *(f"member{k}" for k in range(len(members)))]
    pred = {stage: {k: np.full(n, np.nan) for k in keys} for stage in stages}
    fold_of = np.full(n, -1)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(n)
    t0 = time.perf_counter()
    for k, test_idx in enumerate(np.array_split(order, args.folds)):
        fold_of[test_idx] = k
        test = miles[np.sort(test_idx)]
        model = copy.deepcopy(pretrained)
        if augment is not None:  # a model setting, changed for the fine-tuning only
            for member in getattr(model, "members", [model]):
                member.training = {**(member.training or {}), "augment": augment}
        before = predict(model, test)
        fine_tune(
            model,
            cfg,
            ids=None,
            exclude_ids=list(ids[test_idx]),
            progress=False,
            label_overrides=overrides,
            override_weight=max(weight, 1),
        )
        held = set(model.provenance_["fine_tune_library"]["ids"]) & set(ids[test_idx])
        assert not held, f"fold {k}: test stars used in fine-tuning: {sorted(held)[:5]}"
        scored = {"before": before, "after": predict(model, test)}
        for j, member in enumerate(getattr(model, "members", [])):
            scored[f"member{j}"] = predict(member, test)
        for stage, values in scored.items():
            for key in keys:
                pred[stage][key][np.sort(test_idx)] = values[key]
        print(f"fold {k + 1}/{args.folds} done ({time.perf_counter() - t0:.0f} s)", flush=True)

    teff, logg = ref[:, names.index("teff")], ref[:, names.index("logg")]
    results = {}
    for stage in stages:
        results[stage] = {}
        for group, select in GROUPS.items():
            sel = select(teff, logg)
            results[stage][group] = {}
            for j, name in enumerate(names):
                bias, sigma, count = robust_stats(pred[stage][name][sel] - ref[sel, j])
                lo, hi = pred[stage][f"{name}_p16"][sel], pred[stage][f"{name}_p84"][sel]
                ok = np.isfinite(lo) & np.isfinite(hi)
                inside = (ref[sel, j] >= lo) & (ref[sel, j] <= hi)
                results[stage][group][name] = {
                    "bias": bias,
                    "robust_sigma": sigma,
                    "n": count,
                    # share of stars whose reference label lies inside the 16-84 % interval
                    "coverage_68": float(inside[ok].mean()) if ok.any() else float("nan"),
                    "median_half_width": float(np.nanmedian(0.5 * (hi - lo)[ok])),
                }
    for stage in stages:
        title = f"{stage} fine-tuning" if stage in ("before", "after") else f"{stage} alone"
        print(f"\n{title} (bias / robust sigma [16-84 % coverage], n)")
        for group, res in results[stage].items():
            cells = [
                f"{name} {r['bias']:+.3g} / {r['robust_sigma']:.3g} "
                f"[cov {r['coverage_68']:.2f}] (n={r['n']})"
                for name, r in res.items()
            ]
            print(f"  {group:11s} " + "; ".join(cells))
    report(
        f"kfold_miles{args.tag}.json",
        "kfold_miles.py",
        argv,
        t0,
        {
            "pretrained": str(args.pretrained),
            "member": args.member,
            "folds": args.folds,
            "seed": args.seed,
            "config": str(args.config),
            "fine_tune": {k: v for k, v in cfg["fine_tune"].items() if k != "directory"},
            "augment": augment,
            "reference_weight": weight,
            "n_stars": n,
            "results": results,
            "per_star": {
                "id": ids.tolist(),
                "fold": fold_of.tolist(),
                "reference": {name: ref[:, j].tolist() for j, name in enumerate(names)},
                **{stage: {k: v.tolist() for k, v in pred[stage].items()} for stage in stages},
            },
        },
    )


if __name__ == "__main__":
    main()
