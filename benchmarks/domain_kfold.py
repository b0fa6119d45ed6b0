"""Out-of-fold domain distances of the MILES training stars: how often does the domain flag fire?

    python benchmarks/domain_kfold.py [--pretrained PATH] [--folds 5] [--seed 42]

The shipped model was fine-tuned on the MILES training stars, so the
distances of those stars to its domain reference (and the threshold set from
them, a quantile of leave-one-out distances within the reference) are
optimistic. This script measures them as a new star of the same population
would see them: the pre-trained ensemble is copied for each fold, fine-tuned
on the other folds exactly as the default model is (the same calls as
``benchmarks/kfold_miles.py``), and the held-out stars' embedding distances
to that fold model's reference are divided by that fold model's own
threshold. The 0.99 quantile of these out-of-fold ratios (the maximum over
members, as `~stellarml.models.RemapEnsemble` combines them) is the factor
by which the in-sample thresholds must grow; the false-alarm rate of the
factor is measured by cross-validation over folds (the factor of each fold
is chosen on the other folds' stars only). Writes ``out/domain_kfold.json``
and ``out/domain_kfold.npz`` (per-star ratios, out-of-fold PDFs, member
medians).

    python benchmarks/domain_kfold.py --apply stellarml/data/remap-optical-r2000.asdf

multiplies each member's in-sample threshold of that model file by the factor
of ``out/domain_kfold.json`` and rewrites the file (weights, reference and
everything else unchanged; the in-sample threshold, factor and this command
are recorded in each member's ``provenance_["domain"]``, so applying twice
gives the same thresholds).
"""

import argparse
import copy
import time

import numpy as np
import torch

from stellarml.io.asdf import read_model
from stellarml.models.domain import nearest_distance, out_of_fold_threshold_scale
from stellarml.recipes import load_config
from stellarml.recipes.calibration import load_reference
from stellarml.recipes.remap import build_finetune_library, fine_tune, in_bins

from _common import OUT, ROOT, report

#: Out-of-fold quantile the threshold is set at (1 % expected false alarms,
#: leaving room under the 2 % requirement for the sampling error of 581 stars).
QUANTILE = 0.99


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrained", default=OUT / "remap-optical-r2000-pretrained.asdf")
    p.add_argument("--config", default=ROOT / "scripts" / "remap-optical-r2000.toml")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--apply", default=None, metavar="MODEL", help="scale MODEL's thresholds")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.apply:
        apply(args.apply)
        return

    pretrained = read_model(args.pretrained)
    full = load_config(args.config)
    cfg = pretrained.provenance_["config"]
    cfg["fine_tune"] = full["fine_tune"]
    c = full.get("calibration") or {}
    weight = int(c.get("reference_weight", 1)) if c.get("fine_tune_on_reference") else 0
    names = pretrained.label_names
    overrides = load_reference(full, names) if weight > 0 else None
    miles = build_finetune_library(cfg)
    miles = miles[in_bins(pretrained, miles)]
    ids = np.asarray(miles.labels["id"]).astype(str)
    n = len(miles)
    members = list(getattr(pretrained, "members", [pretrained]))
    m = len(members)
    ratio = np.full((n, m), np.nan)
    threshold = np.full((args.folds, m), np.nan)
    fold_of = np.full(n, -1)
    bins = pretrained.label_bins()
    pdf = {name: np.full((n, b.n_bins), np.nan, dtype=np.float32) for name, b in bins.items()}
    member_median = {name: np.full((n, m), np.nan) for name in names}
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(n)
    t0 = time.perf_counter()
    for k, test_idx in enumerate(np.array_split(order, args.folds)):
        test_idx = np.sort(test_idx)
        fold_of[test_idx] = k
        model = copy.deepcopy(pretrained)
        fine_tune(
            model,
            cfg,
            exclude_ids=list(ids[test_idx]),
            progress=False,
            label_overrides=overrides,
            override_weight=max(weight, 1),
        )
        held = set(model.provenance_["fine_tune_library"]["ids"]) & set(ids[test_idx])
        assert not held, f"fold {k}: test stars used in fine-tuning: {sorted(held)[:5]}"
        batch = miles[test_idx].prepare(model.preparation)
        result = model.predict(batch, device="cpu")
        for name in names:
            pdf[name][test_idx] = result["pdf"][name]
        for j, member in enumerate(getattr(model, "members", [model])):
            res = member.predict(batch, device="cpu")
            d = nearest_distance(res["embedding"], member.domain_reference_)
            threshold[k, j] = member.domain_threshold_
            ratio[test_idx, j] = d / member.domain_threshold_
            for name in names:
                member_median[name][test_idx, j] = res["summary"][name]["median"]
        print(f"fold {k + 1}/{args.folds} done ({time.perf_counter() - t0:.0f} s)", flush=True)

    combined = np.max(ratio, axis=1)
    scale = out_of_fold_threshold_scale(combined, QUANTILE)
    cv_alarms = []
    for k in range(args.folds):
        s = out_of_fold_threshold_scale(combined[fold_of != k], QUANTILE)
        cv_alarms.append(int(np.sum(combined[fold_of == k] > s)))
    cv_rate = sum(cv_alarms) / n
    in_sample_rate = float(np.mean(combined > 1.0))
    print(f"out-of-fold ratio quantiles 0.5/0.9/0.99: {np.quantile(combined, [0.5, 0.9, 0.99])}")
    print(f"false alarms at the in-sample thresholds (factor 1): {in_sample_rate:.3f}")
    print(f"factor {scale:.3f}; cross-validated false alarms {sum(cv_alarms)}/{n} = {cv_rate:.4f}")
    np.savez_compressed(
        OUT / "domain_kfold.npz",
        id=ids,
        fold=fold_of,
        ratio=ratio,
        labels=miles.label_array(names),
        **{f"pdf_{name}": v for name, v in pdf.items()},
        **{f"median_{name}": v for name, v in member_median.items()},
    )
    report(
        "domain_kfold.json",
        "domain_kfold.py",
        argv,
        t0,
        {
            "pretrained": str(args.pretrained),
            "folds": args.folds,
            "seed": args.seed,
            "n_stars": n,
            "quantile": QUANTILE,
            "fold_thresholds": threshold.tolist(),
            "false_alarm_rate_factor_1": in_sample_rate,
            "ratio_quantiles": {
                str(q): float(np.quantile(combined, q)) for q in (0.5, 0.9, 0.95, 0.98, 0.99)
            },
            "threshold_scale": scale,
            "cv_false_alarms_per_fold": cv_alarms,
            "cv_false_alarm_rate": cv_rate,
        },
    )


def apply(path):
    """Scale the in-sample thresholds of the model file at ``path`` by the measured factor."""
    import json

    from stellarml.io.asdf import write_model

    result = json.loads((OUT / "domain_kfold.json").read_text())
    scale = float(result["threshold_scale"])
    model = read_model(path)
    for member in getattr(model, "members", [model]):
        record = dict(member.provenance_.get("domain") or {})
        in_sample = float(record.get("in_sample_threshold", member.domain_threshold_))
        member.domain_threshold_ = in_sample * scale
        record.update(
            in_sample_threshold=in_sample,
            threshold_scale=scale,
            quantile=result["quantile"],
            cv_false_alarm_rate=result["cv_false_alarm_rate"],
            method="in-sample threshold x the 0.99 quantile of out-of-fold distance ratios "
            "of the MILES training stars (5 folds, seed 42)",
            command=result["command"] + f" && python benchmarks/domain_kfold.py --apply {path}",
        )
        member.provenance_["domain"] = record
        print(f"threshold {in_sample:.4f} -> {member.domain_threshold_:.4f}")
    write_model(model, path)


if __name__ == "__main__":
    main()
