"""What a model gives on every real survey spectrum in the reference data.

The validation on real surveys (docs/validation.rst): the 25 LAMOST DR10 spectra
against the labels of the LAMOST pipeline's re-implementation (LASP: pipeline values,
not truth), the BOSS G1V star, the Korg high-resolution spectrum of a metal-poor star,
the APOGEE spectra (H band: outside the optical model's window, so they must come back
flagged), and, with ``--galah-model``, mu Leo from its four GALAH cameras (GBS v3:
4519 +- 23 K, log g 2.43, [Fe/H] 0.27).

Nothing here is fitted or tuned: the files are read with stellarml's readers (which
give the RV, resolution and medium), and the model's labels are compared as they come.

Usage::

    python benchmarks/real_surveys.py [--model remap-optical-r2000]
        [--galah-model benchmarks/out/galah/remap-galah.asdf] [--out benchmarks/out/real_surveys]

Writes ``results.json`` and the figures ``lamost_vs_lasp.png`` and ``lamost_kiel.png``
under ``--out``.
"""

import argparse
import json
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.nddata import StdDevUncertainty
from astropy.table import QTable, Table
from specutils import Spectrum

from stellarml import derive_labels, read_model
from stellarml._utils import data_dir, stellarml_version
from stellarml.flags import describe_flags

LABELS = ("teff", "logg", "fe_h")
LASP_COLUMNS = {"teff": "pred_Teff", "logg": "pred_logg", "fe_h": "pred_FeH"}


def _row(table, i):
    out = {"flags": describe_flags(table["flags"][i])}
    for name in (*LABELS, "rv"):
        value = table[name][i]
        masked = bool(np.all(getattr(value, "mask", False))) or not np.isfinite(
            u.Quantity(value).value
        )
        out[name] = None if masked else float(u.Quantity(value).value)
        if name in LABELS and not masked:
            out[f"{name}_err"] = [
                float(u.Quantity(table[f"{name}_err_lo"][i]).value),
                float(u.Quantity(table[f"{name}_err_hi"][i]).value),
            ]
    if "rv_source" in table.colnames:
        out["rv_source"] = str(table["rv_source"][i])
    return out


def _stats(derived, reference):
    d = np.asarray(derived, float)
    r = np.asarray(reference, float)
    ok = np.isfinite(d) & np.isfinite(r)
    diff = d[ok] - r[ok]
    return {
        "n": int(ok.sum()),
        "median_diff": float(np.median(diff)),
        "robust_sigma": float(1.4826 * np.median(np.abs(diff - np.median(diff)))),
        "rms": float(np.sqrt(np.mean(diff**2))),
    }


def _masked_values(column):
    q = u.Quantity(getattr(column, "unmasked", column)).value.astype(float)
    mask = getattr(column, "mask", None)
    if mask is not None:
        q[np.asarray(mask, bool)] = np.nan
    return q


def lamost(model, root, out=None, lasp_file="LASP_CurveFit_inferred.csv"):
    files = sorted((root / "lamost").glob("*.fits"))
    spectra = [Spectrum.read(f) for f in files]
    table = derive_labels(spectra, model=model)
    lasp = Table.read(root / "lamost" / lasp_file)
    by_id = {str(r["ID"]): r for r in lasp}
    ref = QTable()
    for name, col in LASP_COLUMNS.items():
        ref[name] = [by_id[f.name][col] if f.name in by_id else np.nan for f in files]
    ref["teff"] = ref["teff"] * u.K
    ref["logg"] = ref["logg"] * u.dex
    ref["fe_h"] = ref["fe_h"] * u.dex
    flags = np.asarray(table["flags"])
    result = {
        "reference": f"lamost/{lasp_file} (LASP re-implementation: pipeline values)",
        "n_spectra": len(files),
        "n_with_reference": int(np.isfinite(np.asarray(ref["teff"].value)).sum()),
        "n_flagged": int((flags != 0).sum()),
        "flag_counts": {},
        "all_rows": {"rows": {}},
        "unflagged_rows": {},
    }
    for f in flags[flags != 0]:
        for name in describe_flags(f):
            result["flag_counts"][name] = result["flag_counts"].get(name, 0) + 1
    clean = flags == 0
    for name in LABELS:
        d = _masked_values(table[name])
        r = np.asarray(ref[name].value, float)
        result["all_rows"][name] = _stats(d, r)
        result["unflagged_rows"][name] = _stats(d[clean], r[clean])
    # the RVs: ours (from the header Z) against LASP's own fit
    rv_lasp = np.array([by_id[f.name]["pred_Rv"] if f.name in by_id else np.nan for f in files])
    result["rv_vs_lasp"] = _stats(_masked_values(table["rv"]), rv_lasp)
    result["all_rows"]["rows"] = {f.name: _row(table, i) for i, f in enumerate(files)}
    if out is not None:
        _lamost_figures(table, ref, out, lasp_file)
    return result


def _lamost_figures(table, ref, out, lasp_file):
    try:
        import matplotlib

        matplotlib.use("Agg")
        from stellarml.visualization import plot_kiel, plot_label_comparison
    except ImportError:  # matplotlib is optional
        return
    fig, _, _ = plot_label_comparison(table, ref)
    fig.suptitle(f"LAMOST DR10 spectra against {lasp_file} (pipeline values, not truth)")
    fig.savefig(out / "lamost_vs_lasp.png", dpi=110)
    ax, _ = plot_kiel(table)
    ax.set_title("LAMOST: Kiel diagram of the derived labels")
    ax.figure.savefig(out / "lamost_kiel.png", dpi=110)


def boss(model, root):
    path = root / "sdss" / "spec-3586-55181-0500.fits"
    spec = Spectrum.read(path)
    table = derive_labels(spec, model=model)
    return {
        "file": path.name,
        "class": spec.meta.get("subclass"),
        "pipeline_rv_km_s": float(spec.meta["z"]) * 299792.458,
        **_row(table, 0),
    }


def korg(model, root, resolution):
    path = root / "korg" / "2MASS_J03443498+0553014.csv"
    t = Table.read(path, format="ascii.basic", delimiter="\t")
    spec = Spectrum(
        spectral_axis=np.asarray(t["waveobs"], float) * u.nm,
        flux=np.asarray(t["flux"], float) * u.one,
        uncertainty=StdDevUncertainty(np.asarray(t["err"], float)),
        meta={"medium": "air"},
    )
    table = derive_labels(spec, model=model, resolution=resolution)
    return {
        "file": path.name,
        "assumed_resolution": resolution,
        "note": "the file gives no resolution or RV: R assumed, RV measured by derive_labels",
        **_row(table, 0),
    }


def apogee(model, root):
    files = sorted((root / "sdss").glob("ap*.fits"))
    table = derive_labels([Spectrum.read(f) for f in files], model=model)
    return {f.name: _row(table, i) for i, f in enumerate(files)}


def galah(model_path, root):
    from stellarml.io.echelle import read_galah_star

    files = sorted((root / "galah").glob("*.fits"))
    star = read_galah_star(files)
    table = derive_labels(star, model=read_model(model_path))
    return {
        "files": [f.name for f in files],
        "reference": "GBS v3: 4519 +- 23 K, log g 2.43, [Fe/H] 0.27",
        "rows": len(table),
        **_row(table, 0),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="remap-optical-r2000")
    parser.add_argument("--galah-model", default=None, help="a GALAH-window model (ASDF)")
    parser.add_argument(
        "--korg-resolution",
        type=float,
        default=30000.0,
        help="resolving power assumed for the Korg spectrum (the file gives none)",
    )
    parser.add_argument("--out", default="benchmarks/out/real_surveys")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = data_dir()
    model = read_model(args.model)
    t0 = time.perf_counter()
    results = {
        "model": args.model,
        "model_sha256": model.source_.get("sha256") if hasattr(model, "source_") else None,
        "stellarml": stellarml_version(),
        "lamost": lamost(model, root, out),
        "lamost_adam": lamost(model, root, None, "LASP_Adam_inferred.csv")["unflagged_rows"],
        "boss": boss(model, root),
        "korg": korg(model, root, args.korg_resolution),
        "apogee": apogee(model, root),
    }
    if args.galah_model:
        results["galah_mu_leo"] = galah(args.galah_model, root)
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    summary = {k: v for k, v in results["lamost"].items() if k != "all_rows"}
    summary["all_rows"] = {k: v for k, v in results["lamost"]["all_rows"].items() if k != "rows"}
    print(json.dumps({**results, "lamost": summary}, indent=1))


if __name__ == "__main__":
    main()
