"""Preparation of many spectra on one grid: one `prepare` call against one call per spectrum.

    python benchmarks/prepare_batching.py [--copies 8] [--repeat 3]

The 25 LAMOST spectra of ``../shared/data`` (read once, ``--copies`` times
over) prepared for the default model by `stellarml.io.files.prepare_inputs`
(one call for all) and by `stellarml.spectra.prepare` called per spectrum;
best of ``--repeat``, spectra/s.
"""

import argparse
import os
import time
from pathlib import Path

from stellarml import read_model
from stellarml.io.files import prepare_inputs, read_spectrum_file
from stellarml.spectra import prepare

from _common import ROOT


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    data = Path(os.environ.get("STELLARML_DATA_DIR", ROOT.parent / "shared" / "data"))
    model = read_model()
    files = sorted((data / "lamost").glob("*.fits")) * args.copies
    spectra = [read_spectrum_file(f, format="LAMOST-LRS") for f in files]

    def best(fn):
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return len(spectra) / min(times)

    one = best(lambda: prepare_inputs(spectra, model.preparation))
    each = best(lambda: [prepare(s, model.preparation) for s in spectra])
    print(f"{len(spectra)} spectra: one call {one:.0f}/s, one call per spectrum {each:.0f}/s")


if __name__ == "__main__":
    main()
