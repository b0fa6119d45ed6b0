"""How often BIMODAL_PDF fires on the MILES training stars (out-of-fold PDFs).

    python benchmarks/bimodal_miles.py   # reads out/domain_kfold.npz of domain_kfold.py

The PDFs are each star's (uncalibrated) ensemble PDF from a model fine-tuned
without it (``benchmarks/domain_kfold.py``, 5 folds, seed 42), tested with
`stellarml.posterior.bimodal_rows` at its default thresholds.
Writes ``out/bimodal_miles.json``.
"""

import time

import numpy as np

from stellarml.posterior import BIMODAL_MAX_DIP, BIMODAL_MIN_PEAK, bimodal_rows

from _common import GROUPS, OUT, report


def main(argv=None):
    t0 = time.perf_counter()
    oof = np.load(OUT / "domain_kfold.npz")
    names = ("teff", "logg", "fe_h")
    flags = {name: bimodal_rows(oof[f"pdf_{name}"]) for name in names}
    teff, logg = oof["labels"][:, 0], oof["labels"][:, 1]
    result = {}
    for group, select in GROUPS.items():
        sel = select(teff, logg)
        rates = {name: float(flags[name][sel].mean()) for name in names}
        rates["any"] = float(np.any([flags[n][sel] for n in names], axis=0).mean())
        result[group] = {"n": int(sel.sum()), **rates}
        print(group, result[group])
    report(
        "bimodal_miles.json",
        "bimodal_miles.py",
        argv,
        t0,
        {"min_peak": BIMODAL_MIN_PEAK, "max_dip": BIMODAL_MAX_DIP, "rates": result},
    )


if __name__ == "__main__":
    main()
