"""Radial velocities measured by stellarml against the pipelines' values on real spectra.

`stellarml.spectra.measure_rv` (chi2 against the nine shipped synthetic templates,
``stellarml/data/rv-templates.npz``) is run on spectra whose header RV is ignored
(every spectrum is measured at rv 0), and compared with

* the 25 LAMOST DR10 spectra in ``../shared/data/lamost``: ``c Z`` from the headers,
* the BOSS spectrum ``spec-3586-55181-0500.fits``: ``c Z`` (HDU 2, ZWARNING 0),
* the two APOGEE apVisit spectra: ``VRAD``; the two apStar spectra: 0 (they are in the
  stars' rest frame),
* every 10th MILES training star: 0 (MILES spectra are published in the rest frame).

The optical spectra are measured the way `stellarml.derive_labels` does it for the
default model (its 3800-7000 Angstrom window, degraded to its R = 1500), and also over
3700-9000 Angstrom at the templates' R = 5000; APOGEE over 15150-16950 Angstrom at
R = 5000. It also times `prepare` against `prepare_with_rv` (which measures) on the
25 LAMOST spectra for the default model. Nothing is fitted or tuned here: the
templates and the method were fixed before this was run. Writes
``benchmarks/out/rv_estimation.json``.

    python benchmarks/rv_estimation.py
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from _common import ROOT, report, robust_stats
from specutils import Spectrum

import stellarml.io  # noqa: F401  (registers the loaders)
from stellarml.spectra import measure_rv
from stellarml.spectra.doppler import C_KMS


def _strip_rv(spec):
    """The spectrum without its radial velocity (meta kept, rv_source dropped)."""
    meta = {k: v for k, v in spec.meta.items() if k not in ("rv_source", "rv_err")}
    return Spectrum(
        flux=spec.flux,
        spectral_axis=spec.spectral_axis.value * spec.spectral_axis.unit,
        uncertainty=spec.uncertainty,
        mask=spec.mask,
        meta=meta,
    )


def _summary(name, measured, reference, err, ids):
    d = measured.rv - reference
    bias, sigma, _ = robust_stats(d)
    row = {
        "set": name,
        "n": len(reference),
        "n_measured": int(np.count_nonzero(measured.reliable)),
        "median_diff_kms": bias,
        "robust_sigma_kms": sigma,
        "median_abs_diff_kms": float(np.nanmedian(np.abs(d))),
        "max_abs_diff_kms": float(np.nanmax(np.abs(d))),
        "median_rv_err_kms": float(np.nanmedian(measured.rv_err)),
        "median_reference_err_kms": (
            float(np.nanmedian(err)) if np.any(np.isfinite(err)) else None
        ),
        "per_spectrum": [
            {
                "id": str(i),
                "reference_kms": float(r),
                "reference_err_kms": None if e is None or not np.isfinite(e) else float(e),
                "measured_kms": float(m),
                "measured_err_kms": float(me),
                "template": int(t),
            }
            for i, r, e, m, me, t in zip(
                ids, reference, err, measured.rv, measured.rv_err, measured.template, strict=True
            )
        ],
    }
    print(
        f"{name:42s} n={row['n']:3d} measured={row['n_measured']:3d} "
        f"median diff {bias:+6.1f} km/s, robust sigma {sigma:5.1f}, "
        f"median |diff| {row['median_abs_diff_kms']:5.1f}, "
        f"max |diff| {row['max_abs_diff_kms']:5.1f}, "
        f"median rv_err {row['median_rv_err_kms']:4.1f}, "
        f"median pipeline error {row['median_reference_err_kms']}"
    )
    return row


def _cost_of_measuring(spectra):
    """Best-of-3 wall times [s] of prepare and prepare_with_rv for the default model."""
    from stellarml import read_model
    from stellarml.spectra import prepare, prepare_with_rv

    settings = read_model().preparation
    out = {}
    for name, func in (("prepare_s", prepare), ("prepare_with_rv_s", prepare_with_rv)):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            func(spectra, settings)
            times.append(time.perf_counter() - t)
        out[name] = min(times)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data-dir", default=None, help="default: $STELLARML_DATA_DIR or ../shared/data"
    )
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    data = Path(
        args.data_dir or os.environ.get("STELLARML_DATA_DIR", ROOT.parent / "shared" / "data")
    )
    rows = []

    lamost_files = sorted((data / "lamost").glob("*.fits"))
    lamost = [Spectrum.read(f) for f in lamost_files]
    boss = Spectrum.read(data / "sdss" / "spec-3586-55181-0500.fits")
    optical = {
        "LAMOST DR10 (c Z)": (
            lamost,
            np.array([C_KMS * s.meta["z"] for s in lamost]),
            np.array([s.meta.get("rv_err", np.nan) for s in lamost]),
            [f.stem for f in lamost_files],
        ),
        "BOSS spec-3586-55181-0500 (c Z)": (
            [boss],
            np.array([C_KMS * boss.meta["z"]]),
            np.array([boss.meta["rv_err"]]),
            ["spec-3586-55181-0500"],
        ),
    }
    miles_files = sorted((data / "miles").glob("*.fits"))[::10]
    miles = [Spectrum.read(f) for f in miles_files]
    optical["MILES every 10th star (rest frame: 0)"] = (
        miles,
        np.zeros(len(miles)),
        np.full(len(miles), np.nan),
        [f.stem for f in miles_files],
    )
    for name, (spectra, ref, err, ids) in optical.items():
        stripped = [_strip_rv(s) for s in spectra]
        for window, r_max, how in (
            ((3800.0, 7000.0), 1500.0, "as derive_labels, default model"),
            ((3700.0, 9000.0), None, "3700-9000 A, R 5000"),
        ):
            m = measure_rv(stripped, wavelength_range=window, max_resolution=r_max)
            rows.append(_summary(f"{name} [{how}]", m, ref, err, ids))

    sdss = data / "sdss"
    visits = sorted(sdss.glob("apVisit-*.fits"))
    stars = sorted(sdss.glob("apStar-*.fits"))
    apogee = [Spectrum.read(f) for f in visits + stars]
    ref = np.array([s.radial_velocity.to_value("km/s") for s in apogee])
    err = np.array([s.meta.get("rv_err", np.nan) for s in apogee])
    m = measure_rv([_strip_rv(s) for s in apogee], wavelength_range=(15150.0, 16950.0))
    rows.append(
        _summary(
            "APOGEE apVisit (VRAD) + apStar (0) [15150-16950 A, R 5000]",
            m,
            ref,
            err,
            [f.stem for f in visits + stars],
        )
    )
    timing = _cost_of_measuring([_strip_rv(s) for s in lamost])
    print(
        f"preparing the 25 stripped LAMOST spectra for the default model, best of 3: "
        f"prepare {timing['prepare_s']:.3f} s, prepare_with_rv {timing['prepare_with_rv_s']:.3f} s"
    )
    report("rv_estimation.json", "rv_estimation.py", argv, t0, {"results": rows, "timing": timing})
    return 0


if __name__ == "__main__":
    sys.exit(main())
