"""Does mask augmentation make REMAP ignore masked pixels? Two reduced builds compared.

    python benchmarks/mask_augment_build.py [--spectra 4000] [--epochs 12] [--stars 40]

Two single models are pre-trained from the shipped recipe
(``scripts/remap-optical-r2000.toml``) reduced in size: one member instead of three,
``--spectra`` synthetic spectra instead of 24000, ``--epochs`` epochs, no fine-tuning and
no calibration (MILES is only evaluated on, never trained on). Seed 42 for both; they
differ only in the training augmentation: ``masks`` adds scattered bad pixels (up to
``mask_fraction = 0.05`` of a spectrum) and up to 3 contiguous masked runs of up to 60
pixels (`stellarml.training.SpectrumAugmenter`, step 4); ``plain`` has none, as the
shipped model. Both then go through ``benchmarks/mask_shift.py``'s measurement (MILES
spectra, scattered and contiguous masks, shifts in units of the stated errors, continuum
filling) and their unmasked MILES labels are scored against the compilation labels.
"""

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

from _common import ROOT, report, robust_stats
from mask_shift import LABELS, measure, miles_stars, predict
from stellarml.recipes import load_config
from stellarml.recipes.remap import train
from stellarml.spectra import der_snr_ivar, prepare

MASKS = {"mask_fraction": 0.05, "mask_chunks": 3, "mask_chunk_pixels": 60}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spectra", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--stars", type=int, default=40)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    base = load_config(ROOT / "scripts" / "remap-optical-r2000.toml")
    base["model"]["ensemble"] = 1
    base["model"]["device"] = "cpu"
    base["model"]["training"].update(max_epochs=args.epochs, patience=None, progress=False)
    base["pretrain"]["n_spectra"] = args.spectra
    base.pop("fine_tune", None)
    base.pop("calibration", None)
    spectra, ids = miles_stars(Path(args.data), args.stars)
    import csv

    table = {
        r["miles_id"]: r
        for r in csv.DictReader(open(Path(args.data) / "miles" / "miles_train_labels.csv"))
    }
    truth = {k: np.array([float(table[i][k]) for i in ids]) for k in LABELS}
    out = {}
    for variant in ("plain", "masks"):
        cfg = copy.deepcopy(base)
        augment = dict(cfg["model"]["training"].get("augment") or {})
        if variant == "masks":
            augment.update(MASKS)
        cfg["model"]["training"]["augment"] = augment or None
        t = time.perf_counter()
        model = train(cfg, progress=False)
        train_s = time.perf_counter() - t
        b = prepare(spectra, model.preparation)
        iv, _ = der_snr_ivar(b.flux, b.ivar)
        med, err = predict(model, b.flux, iv, "continuum")
        accuracy = {}
        for k in LABELS:
            bias, sigma, _ = robust_stats(med[k] - truth[k])
            accuracy[k] = {
                "bias": bias,
                "robust_sigma": sigma,
                "median_err": float(np.median(err[k])),
            }
        print(f"{variant}: trained in {train_s:.0f} s; unmasked vs MILES labels {accuracy}")
        results, binned = measure(model, spectra, seeds=args.seeds, chunk=40, fills=("continuum",))
        out[variant] = {
            "train_s": train_s,
            "accuracy": accuracy,
            "results": results,
            "by_grid_fraction": binned,
        }
    report(
        "mask_augment_build.json",
        "mask_augment_build.py",
        argv,
        t0,
        {"stars": ids, "masks": MASKS, "spectra": args.spectra, "epochs": args.epochs, **out},
    )


if __name__ == "__main__":
    main()
