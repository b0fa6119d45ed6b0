"""How far apart two builds of one model are: per-star label differences on real spectra.

    python benchmarks/rebuild_spread.py OTHER.asdf [--model remap-optical-r2000]

Both models (by default the shipped one against ``OTHER``, e.g. a rebuild by
``scripts/build_default_model.py --output OTHER.asdf`` on another machine)
predict the 581 MILES training stars inside the bins (their spectra only, no
labels are scored) and the project's example spectra, raw and calibrated.
Reports, per label, the median, robust sigma (1.4826 x MAD) and largest absolute
value of the difference OTHER - MODEL, and the typical half-width of MODEL's
16-84 % interval for scale. This is the build-to-build noise of the recipe:
training is seeded, but float32 kernels round differently on other CPUs and a
network's training amplifies that.
"""

import argparse
import copy
import time

import numpy as np

from stellarml import derive_labels
from stellarml.data import example_spectra
from stellarml.io.asdf import read_model
from stellarml.recipes.remap import build_finetune_library, in_bins

from _common import report, robust_stats


def _labels(table, names):
    return {n: np.asarray(table[n].value, dtype=float) for n in names}


def _half_width(table, names):
    return {
        n: float(np.nanmedian(0.5 * (table[f"{n}_p84"].value - table[f"{n}_p16"].value)))
        for n in names
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("other")
    p.add_argument("--model", default="remap-optical-r2000")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    model, other = read_model(args.model), read_model(args.other)
    names = model.label_names
    cfg = copy.deepcopy(model.provenance_["config"])
    miles = build_finetune_library(cfg)
    miles = miles[in_bins(model, miles)]
    inputs = {"miles": miles.to_spectrum(), "examples": example_spectra()[0]}
    results = {}
    for group, spectra in inputs.items():
        for calibrate in (False, True):
            a = derive_labels(spectra, model=model, calibrate=calibrate, device="cpu")
            b = derive_labels(spectra, model=other, calibrate=calibrate, device="cpu")
            la, lb = _labels(a, names), _labels(b, names)
            key = f"{group} {'calibrated' if calibrate else 'raw'}"
            results[key] = {"n": len(a), "half_width": _half_width(a, names)}
            parts = []
            for n in names:
                d = lb[n] - la[n]
                med, sigma, _ = robust_stats(d)
                results[key][n] = {
                    "median": med,
                    "sigma": sigma,
                    "max_abs": float(np.nanmax(abs(d))),
                }
                parts.append(
                    f"{n} {med:+.3g} / {sigma:.3g} (max {np.nanmax(abs(d)):.3g}; "
                    f"half-width {results[key]['half_width'][n]:.3g})"
                )
            print(f"{key:20s} n={len(a)}: " + "; ".join(parts))
    if model.calibration is not None and other.calibration is not None:
        for label, c in other.calibration.describe()["corrections"].items():
            r = model.calibration.describe()["corrections"][label]
            print(
                f"calibration {label}: offset {r['coefficients'][0]:+.4g} ± {r['errors'][0]:.2g}"
                f" vs {c['coefficients'][0]:+.4g} ± {c['errors'][0]:.2g}; width "
                f"{r['width_scale']:.3f} vs {c['width_scale']:.3f}"
            )
    report("rebuild_spread.json", "rebuild_spread.py", argv, t0, {"results": results})


if __name__ == "__main__":
    main()
