"""Label shift of the shipped default model against the fraction of masked pixels.

    python benchmarks/mask_shift.py [--stars 40] [--seeds 3] [--chunk 40]

Real MILES spectra (the first ``--stars`` stars of ``miles_train_labels.csv`` with all three
labels, in file order; no reserved star is read) are masked on their own pixel grid, at
fractions 0, 1, 2, 5, 10, 20 and 40 % of their pixels:

* ``scattered``: single pixels drawn at random;
* ``chunks``: contiguous runs of ``--chunk`` input pixels (0.9 Angstrom each) at random
  places until the fraction is reached.

Each masked spectrum goes through the ordinary preparation (`stellarml.spectra.prepare`
with the model's settings). Its *grid masked fraction* is the fraction of model-grid pixels
with zero inverse variance, the quantity ``MANY_MASKED_PIXELS`` is set on. The shift of
each label's median from the unmasked spectrum's is compared with that spectrum's stated
error, ``(err_lo + err_hi) / 2`` (the model's uncalibrated summary, as `predict` gives it).

Two input fillings of zero-weight pixels are compared (the network's weight channel is 0
for them either way): ``continuum`` (the flux channel at the continuum, 1: what the
`~stellarml.models.layers.InputEncoding` does) and ``interp`` (the flux channel linearly
interpolated between the neighbouring good pixels).

MILES spectra have no uncertainties: their inverse variance is the DER_SNR estimate, as in
`stellarml.derive_labels`. These stars are among those the shipped model was fine-tuned
on, so this measures how masks move the model's answer, not its accuracy.
"""

import argparse
import csv
import itertools
import time
import warnings

import numpy as np
import torch
from specutils import Spectrum

from _common import report
from stellarml import read_model
from stellarml.data import model_path
from stellarml.flags import LabelFlag
from stellarml.spectra import der_snr_ivar, prepare

FRACTIONS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.10, 0.20, 0.40)
#: Bins of the grid masked fraction for the pooled statistics.
GRID_BINS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 1.0)
LABELS = ("teff", "logg", "fe_h")


def miles_stars(data_dir, n):
    import stellarml.io  # noqa: F401  (registers the MILES loader)

    rows = list(csv.DictReader(open(data_dir / "miles" / "miles_train_labels.csv")))
    rows = [r for r in rows if all(r[k].strip() for k in LABELS)]
    spectra, ids = [], []
    for r in rows:
        path = data_dir / "miles" / f"MILES_res2.50_star_m{r['miles_id']}V.fits"
        if path.exists():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                spectra.append(Spectrum.read(path, format="MILES"))
            ids.append(r["miles_id"])
        if len(spectra) == n:
            break
    return spectra, ids


def draw_mask(npix, fraction, kind, chunk, rng):
    """Boolean mask of ``round(fraction * npix)`` input pixels."""
    target = round(fraction * npix)
    mask = np.zeros(npix, dtype=bool)
    if target == 0:
        return mask
    if kind == "scattered":
        mask[rng.choice(npix, target, replace=False)] = True
        return mask
    while mask.sum() < target:
        start = rng.integers(0, npix - chunk)
        mask[start : start + min(chunk, target - mask.sum() + chunk)] = True
    excess = mask.sum() - target
    if excess > 0:  # trim the last run so that the count is exact
        on = np.flatnonzero(mask)
        mask[on[-excess:]] = False
    return mask


def fill_interp(flux, ivar):
    """Flux with zero-weight pixels linearly interpolated between good neighbours."""
    out = flux.copy()
    x = np.arange(flux.shape[1])
    for i in range(flux.shape[0]):
        good = ivar[i] > 0
        if good.any() and not good.all():
            out[i, ~good] = np.interp(x[~good], x[good], flux[i, good])
    return out


def predict(model, flux, ivar, fill):
    """Medians and stated errors; ``fill`` decides the flux channel at zero-weight pixels."""
    if fill == "interp":
        bad = ivar <= 0
        flux = fill_interp(flux, ivar)
        # a weight the encoder keeps (its flux channel is used) but that is 0 in practice:
        # tanh(sqrt(1e-12) / snr_scale) = 3e-8
        ivar = np.where(bad, np.float32(1e-12), ivar)
    res = model.predict_prepared(flux, ivar, return_pdf=False)["summary"]
    med = {k: res[k]["median"] for k in LABELS}
    err = {k: 0.5 * (res[k]["err_lo"] + res[k]["err_hi"]) for k in LABELS}
    return med, err


def measure(model, spectra, *, seeds, chunk, fills=("continuum", "interp"), fractions=FRACTIONS):
    """Shift statistics of ``model`` on ``spectra``: (by input fraction, by grid fraction)."""
    base = prepare(spectra, model.preparation)
    assert not np.any(base.flags & ~int(LabelFlag.NO_UNCERTAINTY)), "unexpected flags"
    base_ivar, _ = der_snr_ivar(base.flux, base.ivar)
    base_masked = (base.ivar == 0).mean(axis=1)
    results = {}
    rows = {fill: [] for fill in fills}
    for fill in fills:
        med0, err0 = predict(model, base.flux, base_ivar, fill)
        for kind in ("scattered", "chunks"):
            for frac in fractions[1:]:
                shifts = {k: [] for k in LABELS}
                grid_frac = []
                for seed in range(seeds):
                    rng = np.random.default_rng(1000 * seed + round(frac * 1000))
                    masked = []
                    for s in spectra:
                        m = draw_mask(s.flux.size, frac, kind, chunk, rng)
                        masked.append(
                            Spectrum(
                                flux=s.flux, spectral_axis=s.spectral_axis, mask=m, meta=s.meta
                            )
                        )
                    b = prepare(masked, model.preparation)
                    iv, _ = der_snr_ivar(b.flux, b.ivar)
                    med, _ = predict(model, b.flux, iv, fill)
                    grid_frac.append((b.ivar == 0).mean(axis=1) - base_masked)
                    for k in LABELS:
                        shifts[k].append((med[k] - med0[k]) / err0[k])
                z = {k: np.abs(np.concatenate(v)) for k, v in shifts.items()}
                g = np.concatenate(grid_frac)
                rows[fill].append(np.column_stack([g, *(z[k] for k in LABELS)]))
                results[f"{fill}/{kind}/{frac:.3f}"] = r = {
                    "grid_masked_fraction_mean": float(g.mean()),
                    "grid_masked_fraction_max": float(g.max()),
                    **{
                        f"{k}_abs_shift_over_err_{q}": float(np.percentile(z[k], q))
                        for k in LABELS
                        for q in (50, 90)
                    },
                    **{f"{k}_frac_beyond_err": float((z[k] > 1).mean()) for k in LABELS},
                }
                print(
                    f"{fill:9s} {kind:9s} {frac:5.3f} grid {g.mean():.3f} | "
                    + " | ".join(
                        f"{k} p50 {r[f'{k}_abs_shift_over_err_50']:.2f} "
                        f"p90 {r[f'{k}_abs_shift_over_err_90']:.2f} "
                        f">1 {r[f'{k}_frac_beyond_err']:.2f}"
                        for k in LABELS
                    ),
                    flush=True,
                )
    # pooled over both kinds of mask, binned by the grid masked fraction the flag uses
    binned = {}
    for fill, parts in rows.items():
        a = np.concatenate(parts)
        for lo, hi in itertools.pairwise(GRID_BINS):
            sel = (a[:, 0] > lo) & (a[:, 0] <= hi) if lo > 0 else (a[:, 0] <= hi)
            if not sel.any():
                continue
            entry = {"n": int(sel.sum())}
            for j, k in enumerate(LABELS, start=1):
                entry[f"{k}_p90"] = float(np.percentile(a[sel, j], 90))
                entry[f"{k}_frac_beyond_err"] = float((a[sel, j] > 1).mean())
            binned[f"{fill}/{lo:g}-{hi:g}"] = entry
            print(
                f"{fill:9s} grid fraction ({lo:g}, {hi:g}] n {entry['n']:4d} | "
                + " | ".join(
                    f"{k} p90 {entry[f'{k}_p90']:.2f} >1 {entry[f'{k}_frac_beyond_err']:.2f}"
                    for k in LABELS
                ),
                flush=True,
            )
    return results, binned


def main(argv=None):
    from pathlib import Path

    from _common import ROOT

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stars", type=int, default=40)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--chunk", type=int, default=40)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    model = read_model(model_path("remap-optical-r2000"))
    spectra, ids = miles_stars(Path(args.data), args.stars)
    results, binned = measure(model, spectra, seeds=args.seeds, chunk=args.chunk)
    report(
        "mask_shift.json",
        "mask_shift.py",
        argv,
        t0,
        {
            "stars": ids,
            "seeds": args.seeds,
            "chunk": args.chunk,
            "results": results,
            "by_grid_fraction": binned,
        },
    )


if __name__ == "__main__":
    main()
