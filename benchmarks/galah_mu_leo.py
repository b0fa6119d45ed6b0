"""A model for GALAH's four cameras from the synthetic library, applied to mu Leo.

    python benchmarks/galah_mu_leo.py                 # trains, then derives (~12 min, 1 thread)
    python benchmarks/galah_mu_leo.py --model benchmarks/out/remap-galah-r5000.asdf

Trains ``scripts/remap-galah-r5000.toml`` (``stellarml train``: the windows of mu Leo's
four camera files, R = 5000, synthetic library only, no observed fine-tuning, no
calibration) into ``benchmarks/out/remap-galah-r5000.asdf``, unless ``--model`` names a
file it already wrote. Then derives mu Leo's labels from the four combined cameras
(`stellarml.io.echelle.read_galah_star`, one row):

* at rv = 0 (what `derive_labels` does with these files: the readers give no RV), and
* at the RV `stellarml.spectra.estimate_rv` measures on the combined row against a
  template that knows nothing of mu Leo: the emulator's spectrum at solar labels
  (5772 K, 4.44, 0.0), prepared like the model's training spectra.

Each camera alone is also given to the model (four rows, which must be flagged
``NO_WAVELENGTH_OVERLAP``). A synthetic check tells the model's own error from the
synthetic-to-observed gap: ``--n-synthetic`` emulator spectra drawn like the training
set but with another seed (``--seed``), plus one at mu Leo's GBS labels, with Gaussian
noise of S/N ``--snr`` per input pixel, masked to the windows, through `derive_labels`.
A diagnostic (not a tuning: nothing is chosen from it) derives the labels with each
camera left out in turn. The reference is the Gaia FGK Benchmark Stars v3 (Soubiran
et al. 2024): Teff 4519 +- 23 K, log g 2.43, [Fe/H] 0.27 -- never used by the model or
its training. Writes ``benchmarks/out/galah_mu_leo.json``.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import OUT, ROOT, report, robust_stats

from stellarml import derive_labels, read_model
from stellarml._utils import data_dir
from stellarml.flags import LabelFlag
from stellarml.io.echelle import read_galah_star
from stellarml.libraries import PolynomialEmulatorLibrary
from stellarml.recipes import train_from_config
from stellarml.spectra import SpectrumParts, estimate_rv, prepare

CONFIG = ROOT / "scripts" / "remap-galah-r5000.toml"
EMULATOR = data_dir() / "doppler" / "coolstars_cubic_emulator.npz"
GBS = {"teff": (4519.0, 23.0), "logg": (2.43, None), "fe_h": (0.27, None)}
SOLAR = {"teff": 5772.0, "logg": 4.44, "fe_h": 0.0}


def _row(table):
    out = {"flags": int(table["flags"][0]), "flag_names": str(table["flag_names"][0])}
    out["message"] = str(table["message"][0]) if "message" in table.colnames else ""
    for name in ("teff", "logg", "fe_h"):
        col = table[name]
        if np.ma.is_masked(col[0]):
            out[name] = None
            continue
        unit = col.unit
        out[name] = float(col[0].to_value(unit))
        out[f"{name}_err_lo"] = float(table[f"{name}_err_lo"][0].to_value(unit))
        out[f"{name}_err_hi"] = float(table[f"{name}_err_hi"][0].to_value(unit))
    for name in ("snr", "rv", "domain_distance"):
        if name in table.colnames:
            value = table[name][0]
            out[name] = float(getattr(value, "value", value))
    return out


def synthetic_check(model, n, snr, seed):
    """Labels of noisy emulator spectra (another seed than training) and of mu Leo's labels."""
    from astropy.nddata import InverseVariance
    from astropy.table import Table, vstack
    from specutils import Spectrum

    from stellarml.recipes.instrument import mask_outside_windows, preparation_windows

    settings = model.preparation
    grid = settings.wavelength.value
    emulator = PolynomialEmulatorLibrary.from_file(EMULATOR)
    degraded = emulator.degrade(
        resolution=settings.resolution, wavelength_range=(grid[0] - 30.0, grid[-1] + 30.0)
    )
    labels = degraded.sample_labels(n, design="training", seed=seed)
    labels = vstack([Table(labels), Table({k: [GBS[k][0]] for k in ("teff", "logg", "fe_h")})])
    library = degraded.generate(labels)
    rng = np.random.default_rng(seed)
    sigma = np.abs(library.flux) / snr
    flux = library.flux + sigma * rng.standard_normal(library.flux.shape).astype(np.float32)
    windows = preparation_windows(model.provenance_["config"]["preparation"])
    library = library._replace(flux=flux, ivar=1.0 / np.maximum(sigma, 1e-12) ** 2)
    mask_outside_windows(library, windows, settings.medium)
    spectrum = library.to_spectrum()
    table = derive_labels(
        Spectrum(
            flux=spectrum.flux,
            spectral_axis=spectrum.spectral_axis,
            uncertainty=InverseVariance(library.ivar),
            meta={"medium": library.medium, "resolution": library.resolution},
        ),
        model=model,
    )
    truth = {k: np.asarray(labels[k], dtype=float) for k in ("teff", "logg", "fe_h")}
    out = {"n": n, "snr": snr, "seed": seed}
    giants = (truth["teff"][:n] < 5500) & (truth["logg"][:n] < 3.5)
    for name in ("teff", "logg", "fe_h"):
        pred = np.asarray(table[name].filled(np.nan).value, dtype=float)
        resid = pred - truth[name]
        for group, sel in (("all", np.ones(n, bool)), ("giants", giants)):
            bias, sig, m = robust_stats(resid[:n][sel])
            out[f"{name}_{group}"] = {"bias": bias, "robust_sigma": sig, "n": m}
        out[f"{name}_at_mu_leo_labels"] = float(pred[n])
    flags = np.asarray(table["flags"])
    out["out_of_domain_fraction"] = float(
        np.mean((flags[:n] & int(LabelFlag.OUTSIDE_TRAINING_DOMAIN)) != 0)
    )
    out["mu_leo_labels_row_flags"] = str(table["flag_names"][n])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="an already trained model (skip training)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-synthetic", type=int, default=500)
    p.add_argument("--snr", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=1001, help="seed of the synthetic check")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    fields = {"config": str(CONFIG.relative_to(ROOT)), "reference": "GBS v3", "gbs": GBS}
    if args.model is None:
        path = OUT / "remap-galah-r5000.asdf"
        OUT.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        train_from_config(CONFIG, output=path, progress=False)
        fields["train_wall_time_s"] = time.perf_counter() - t
    else:
        path = Path(args.model)
    model = read_model(path)
    fields["model"] = {"path": str(path), "sha256": model.source_.get("sha256")}
    files = sorted((data_dir() / "galah").glob("131216002601003?.fits"))
    star = read_galah_star(files)

    at_zero = derive_labels(star, model=model)
    # RV from the combined row against a solar-label template of the same preparation
    settings = model.preparation
    grid = settings.wavelength.value
    emulator = PolynomialEmulatorLibrary.from_file(EMULATOR)
    template = emulator.generate(
        {k: np.array([v]) for k, v in SOLAR.items()},
        wavelength_range=(grid[0] - 30.0, grid[-1] + 30.0),
    ).prepare(settings)
    row = prepare(star, settings, rv=0.0)
    rv, rv_err = estimate_rv(row.flux, row.ivar, settings.wavelength, template.flux[0])
    rv, rv_err = float(rv[0]), float(rv_err[0])
    at_rv = derive_labels(star, model=model, rv=rv)
    alone = derive_labels(list(star), model=model)
    flagged = all(int(f) & int(LabelFlag.NO_WAVELENGTH_OVERLAP) for f in alone["flags"])
    fields.update(
        {
            "files": [f.name for f in files],
            "rows_of_the_combined_star": len(at_zero),
            "rv_estimated_kms": rv,
            "rv_estimated_err_kms": rv_err,
            "rv_template": SOLAR,
            "at_rv_0": _row(at_zero),
            "at_rv_estimated": _row(at_rv),
            "cameras_alone_flagged_no_overlap": bool(flagged),
            "cameras_alone_rows": len(alone),
        }
    )
    fields["leave_one_camera_out"] = {
        f"without ccd {k + 1}": _row(
            derive_labels(SpectrumParts([s for j, s in enumerate(star) if j != k]), model=model)
        )
        for k in range(len(star))
    }
    for key, r in fields["leave_one_camera_out"].items():
        print(
            f"{key}: Teff {r['teff']:.0f} K, logg {r['logg']:.2f}, [Fe/H] {r['fe_h']:.2f}, "
            f"flags {r['flag_names'] or 0}"
        )
    fields["synthetic_check"] = synthetic_check(model, args.n_synthetic, args.snr, args.seed)
    for key in ("at_rv_0", "at_rv_estimated"):
        r = fields[key]
        print(
            f"{key}: Teff {r['teff']:.0f} (-{r['teff_err_lo']:.0f} +{r['teff_err_hi']:.0f}) K, "
            f"logg {r['logg']:.2f}, [Fe/H] {r['fe_h']:.2f}, flags {r['flag_names'] or 0}"
        )
    print(f"rv estimated {rv:.1f} +- {rv_err:.1f} km/s; cameras alone flagged: {flagged}")
    print("synthetic check:", fields["synthetic_check"])
    report("galah_mu_leo.json", "galah_mu_leo.py", argv, t0, fields)


if __name__ == "__main__":
    sys.exit(main())
