"""Does the default model say when its input is not a star, or was prepared wrongly?

    python benchmarks/not_a_star.py [--n 60] [--seed 7]

Builds test inputs as a user would hand them to `stellarml.derive_labels`
(specutils spectra on a BOSS-like vacuum grid, 3650-7400 A, R = 2000 stated,
with inverse-variance uncertainties), runs the shipped model on them and
records, per input, the scores the flags are set from: the domain distance
(``domain_distance``: the largest member distance over that member's
threshold) and the flags. Classes (``--n`` inputs each, random parameters
from ``--seed``):

* ``star``: Doppler-emulator stars at the emulator's own training labels
  inside the model's bins, S/N 15-100, prepared correctly (normal stars);
* ``noise``: pure Gaussian noise, around 0 or around a constant;
* ``flat``, ``power_law`` (index -3..3), ``blackbody`` (3000-30000 K):
  featureless continua with noise, S/N 20-200;
* ``emission``: a power-law or flat continuum plus Gaussian emission lines
  (H alpha..H delta, [O III] 4959/5007, [O II] 3727, [N II], [S II]),
  equivalent widths 5-200 A, sigma 1-5 A, at z = 0-0.03 (shifted);
* ``redshift``: emulator stars shifted by z = 0.01 (3000 km/s) and not
  corrected (no rv given);
* ``low_resolution``: emulator stars broadened to R = 300-500 but stated
  as R = 2000;
* ``miles_hot`` and ``miles_cool``: the real MILES training-list stars with
  Teff >= 10000 K or < 3000 K (outside the model's bins, so never used in
  fine-tuning; far outside the training grid).

The inputs are split in halves by a seeded permutation: ``--split tune``
reports the first half (for choosing thresholds), the default
``--split test`` the second (what RESULTS.md quotes), ``all`` both. The real
spectra of ordinary stars (the BOSS G1V star, the 25 LAMOST spectra, the 8
demo spectra) are reported separately. Writes ``out/not_a_star.json``.
"""

import argparse
import glob
import os
import time

import astropy.units as u
import numpy as np
import torch
from astropy.nddata import InverseVariance
from specutils import Spectrum

from stellarml import derive_labels, read_model
from stellarml.flags import LabelFlag
from stellarml.libraries import PolynomialEmulatorLibrary
from stellarml.spectra import log_lambda_grid, vacuum_to_air

from _common import report

DATA = os.environ.get("STELLARML_DATA_DIR", "../shared/data")
RESOLUTION = 2000.0


def _grid():
    return log_lambda_grid(3650.0, 7400.0, 1e-4 * np.log(10))


def _spectrum(wave, flux, ivar, resolution=RESOLUTION):
    return Spectrum(
        flux=np.asarray(flux, dtype=np.float64) * u.dimensionless_unscaled,
        spectral_axis=wave * u.AA,
        uncertainty=InverseVariance(np.asarray(ivar, dtype=np.float64)),
        meta={"medium": "vacuum", "resolution": float(resolution)},
    )


def _noisy(rng, flux, snr):
    """Flux with Gaussian noise of sigma = median(|flux|) / snr per pixel."""
    sigma = np.full(flux.shape, np.median(np.abs(flux)) / snr)
    return flux + sigma * rng.standard_normal(flux.shape), 1.0 / sigma**2


def _stars(emulator, model, rng, n, *, resolution=RESOLUTION, z=0.0):
    """Emulator stars at its training labels inside the model's bins, as observed."""
    bins = model.label_bins()
    labels = emulator.training_labels
    inside = np.all(
        [(labels[:, k] > b.lo) & (labels[:, k] < b.hi) for k, b in enumerate(bins.values())],
        axis=0,
    )
    pick = labels[inside][rng.choice(int(inside.sum()), n, replace=False)]
    wave = _grid()
    degraded = emulator.degrade(resolution=resolution, wavelength=vacuum_to_air(wave) * u.AA)
    from astropy.table import QTable

    table = QTable(
        {"teff": pick[:, 0] * u.K, "logg": pick[:, 1] * u.dex, "fe_h": pick[:, 2] * u.dex}
    )
    lib = degraded.generate(table)
    snr = rng.uniform(15, 100, n)
    out = []
    for k in range(n):
        flux, ivar = _noisy(rng, np.asarray(lib.flux[k], dtype=float), snr[k])
        out.append(_spectrum(wave * (1 + z), flux, ivar))
    return out


def _continuum(rng, wave, kind):
    if kind == "flat":
        return np.full(wave.shape, rng.uniform(0.5, 50))
    if kind == "power_law":
        return (wave / 5500.0) ** rng.uniform(-3, 3)
    t = rng.uniform(3000, 30000)  # blackbody, F_lambda shape
    x = 1.4388e8 / (wave * t)
    b = 1.0 / (wave**5 * np.expm1(x))
    return b / np.median(b)


#: Rest wavelengths (vacuum, Angstrom) of the emission lines.
_LINES = {
    "Ha": 6564.6,
    "Hb": 4862.7,
    "Hg": 4341.7,
    "Hd": 4102.9,
    "OIII5007": 5008.2,
    "OIII4959": 4960.3,
    "OII3727": 3728.5,
    "NII6585": 6585.3,
    "SII6718": 6718.3,
}


def _emission(rng, wave):
    cont = _continuum(rng, wave, rng.choice(["flat", "power_law"]))
    z = rng.uniform(0, 0.03)
    flux = cont.copy()
    for _name, rest in _LINES.items():
        if rng.random() < 0.3 and _name not in ("Ha", "Hb", "OIII5007"):
            continue
        ew, sigma = rng.uniform(5, 200), rng.uniform(1, 5)
        center = rest * (1 + z)
        flux += (
            np.interp(center, wave, cont)
            * ew
            / (sigma * np.sqrt(2 * np.pi))
            * np.exp(-0.5 * ((wave - center) / sigma) ** 2)
        )
    return flux


def build_inputs(model, n, seed):
    rng = np.random.default_rng(seed)
    emulator = PolynomialEmulatorLibrary.from_file(f"{DATA}/doppler/coolstars_cubic_emulator.npz")
    emulator.training_labels = np.load(f"{DATA}/doppler/coolstars_cubic_emulator.npz")[
        "training_labels"
    ]
    wave = _grid()
    classes = {"star": _stars(emulator, model, rng, n)}
    noise = []
    for _ in range(n):
        level = rng.choice([0.0, rng.uniform(0.1, 10)])
        sigma = rng.uniform(0.05, 2.0) * (level if level else 1.0)
        noise.append(
            _spectrum(
                wave, level + sigma * rng.standard_normal(wave.size), np.full(wave.size, sigma**-2)
            )
        )
    classes["noise"] = noise
    for kind in ("flat", "power_law", "blackbody"):
        classes[kind] = [
            _spectrum(wave, *_noisy(rng, _continuum(rng, wave, kind), rng.uniform(20, 200)))
            for _ in range(n)
        ]
    classes["emission"] = [
        _spectrum(wave, *_noisy(rng, _emission(rng, wave), rng.uniform(20, 200))) for _ in range(n)
    ]
    classes["redshift"] = _stars(emulator, model, rng, n, z=0.01)
    low = []
    for r in rng.uniform(300, 500, n):
        (s,) = _stars(emulator, model, rng, 1, resolution=float(r))
        s.meta["resolution"] = RESOLUTION  # stated wrongly
        low.append(s)
    classes["low_resolution"] = low
    return classes


def miles_far(model):
    """MILES training-list stars far outside the bins (never fine-tuned on)."""
    from stellarml.recipes.remap import build_finetune_library

    cfg = model.provenance_["config"]
    cfg = {**cfg, "fine_tune": {**cfg["fine_tune"], "directory": f"{DATA}/miles"}}
    lib = build_finetune_library(cfg)
    teff = lib.label_array(["teff"])[:, 0]
    return {"miles_hot": lib[teff >= 10000], "miles_cool": lib[teff < 3000]}


def miles_out_of_fold(model):
    """Flag rates on the MILES training stars with out-of-fold domain distances.

    The distances come from ``out/domain_kfold.npz`` (``benchmarks/domain_kfold.py``;
    each star's distance to a model fine-tuned without it, over that model's
    in-sample threshold), divided by the shipped factor; the line statistics
    do not depend on the model. The rules are those of
    `stellarml.models.remap.inference`.
    """
    from stellarml.models.domain import line_statistics
    from stellarml.models.remap import inference as rules
    from stellarml.recipes.remap import build_finetune_library, in_bins
    from stellarml.spectra import estimate_missing_noise, prepare

    from _common import OUT

    oof = np.load(OUT / "domain_kfold.npz")
    scale = model.members[0].provenance_["domain"]["threshold_scale"]
    ratio = np.max(oof["ratio"], axis=1) / scale
    lib = build_finetune_library(model.provenance_["config"])
    lib = lib[in_bins(model, lib)]
    assert [str(i) for i in lib.labels["id"]] == [str(i) for i in oof["id"]]
    batch = estimate_missing_noise(prepare(lib.to_spectrum(), model.preparation))
    lines = line_statistics(batch.flux, batch.ivar)
    not_a_star = (
        (ratio > rules.NOT_A_STAR_DISTANCE)
        | (lines["line_rms"] > rules.MAX_LINE_RMS)
        | (
            (lines["line_contrast"] < rules.FEATURELESS_LINE_CONTRAST)
            & (ratio > rules.FEATURELESS_DISTANCE)
        )
    )
    outside = ratio > 1.0
    return {
        "n": int(ratio.size),
        "flagged": float(np.mean(outside | not_a_star)),
        "outside_domain": float(np.mean(outside)),
        "not_a_star": float(np.mean(not_a_star)),
        "median_domain_distance": float(np.median(ratio)),
    }


def real_ordinary():
    """The BOSS G1V star, the 25 LAMOST spectra and the 8 demo spectra, as read by specutils."""
    from stellarml.data import example_spectra

    out = {"demo": example_spectra()[0]}
    out["boss"] = Spectrum.read(f"{DATA}/sdss/spec-3586-55181-0500.fits")
    lamost = sorted(glob.glob(f"{DATA}/lamost/*.fits"))
    out["lamost"] = [Spectrum.read(path) for path in lamost]
    return out


def scores(model, spectra):
    table = derive_labels(spectra, model=model, device="cpu")
    flags = np.asarray(table["flags"], dtype=np.int64)
    dist = np.asarray(np.ma.filled(table["domain_distance"], np.nan), dtype=float)
    return {"flags": flags.tolist(), "domain_distance": dist.tolist()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="remap-optical-r2000")
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--split", choices=("tune", "test", "all"), default="test")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = read_model(args.model)
    classes = build_inputs(model, args.n, args.seed)
    half = np.random.default_rng(args.seed + 1).permutation(args.n)
    chosen = {"tune": half[: args.n // 2], "test": half[args.n // 2 :], "all": half}[args.split]
    results = {}
    for name, spectra in classes.items():
        results[name] = scores(model, [spectra[i] for i in np.sort(chosen)])
    for name, lib in miles_far(model).items():
        m = len(lib)
        pick = np.random.default_rng(args.seed + 2).permutation(m)
        pick = {"tune": pick[: m // 2], "test": pick[m // 2 :], "all": pick}[args.split]
        if pick.size == 0:  # one star: it is in the test half only
            continue
        results[name] = scores(model, lib[np.sort(pick)].to_spectrum())
    real = real_ordinary()
    results["demo"] = scores(model, real["demo"])
    results["boss"] = scores(model, real["boss"])
    results["lamost"] = scores(model, real["lamost"])
    summary = {"miles_out_of_fold": miles_out_of_fold(model)}
    any_bit = int(LabelFlag.OUTSIDE_TRAINING_DOMAIN | LabelFlag.NOT_A_STAR)
    print(f"{'class':16s} {'n':>4s} {'any flag':>9s} {'NOT_A_STAR':>11s} {'median dist':>12s}")
    s = summary["miles_out_of_fold"]
    print(f"{'miles_oof':16s} {s['n']:4d} {s['flagged']:9.2f} {s['not_a_star']:11.2f}")
    for name, r in results.items():
        f = np.asarray(r["flags"])
        d = np.asarray(r["domain_distance"])
        summary[name] = {
            "n": int(f.size),
            "flagged": float(np.mean((f & any_bit) != 0)),
            "outside_domain": float(np.mean((f & int(LabelFlag.OUTSIDE_TRAINING_DOMAIN)) != 0)),
            "not_a_star": float(np.mean((f & int(LabelFlag.NOT_A_STAR)) != 0)),
            "median_domain_distance": float(np.nanmedian(d)) if np.isfinite(d).any() else None,
        }
        s = summary[name]
        print(
            f"{name:16s} {s['n']:4d} {s['flagged']:9.2f} {s['not_a_star']:11.2f} "
            f"{s['median_domain_distance'] or float('nan'):12.2f}"
        )
    report(
        f"not_a_star_{args.split}.json",
        "not_a_star.py",
        argv,
        t0,
        {
            "model": args.model,
            "n": args.n,
            "seed": args.seed,
            "split": args.split,
            "summary": summary,
            "per_input": results,
        },
    )


if __name__ == "__main__":
    main()
