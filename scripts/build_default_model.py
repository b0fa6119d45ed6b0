"""Rebuild the shipped default model and the example spectra.

    python scripts/build_default_model.py [--config scripts/remap-optical-r2000.toml]

Writes ``stellarml/data/remap-optical-r2000.asdf`` (pre-trained on the Doppler
synthetic library, fine-tuned on the MILES training stars, calibrated to the
Gaia FGK benchmark stars on out-of-fold predictions; the ASDF records the ids
used) and ``stellarml/data/examples-optical.asdf`` (synthetic spectra
at known labels, degraded to an R = 2000 instrument on a BOSS-like vacuum
log-lambda grid, with noise — the input of ``stellarml demo``). Needs the
reference data (``STELLARML_DATA_DIR``, default ``../shared/data``).
"""

import argparse
import copy
import platform
import time
from pathlib import Path

import asdf
import astropy.units as u
import numpy as np
import torch
from astropy.table import QTable

from stellarml import __version__
from stellarml.io.asdf import read_model, write_model
from stellarml.libraries import PolynomialEmulatorLibrary
from stellarml.models import RemapEnsemble
from stellarml.recipes import load_config, train_from_config
from stellarml.recipes.remap import fine_tune_and_calibrate, member_config
from stellarml.spectra import log_lambda_grid

REPO = Path(__file__).resolve().parents[1]

#: (teff [K], logg [dex], fe_h [dex], S/N per pixel) of the example spectra.
EXAMPLES = [
    (5770.0, 4.4, 0.0, 60.0),  # solar twin
    (6300.0, 4.2, -0.5, 40.0),  # F dwarf
    (4800.0, 2.6, -0.2, 50.0),  # red-clump giant
    (4300.0, 1.8, -1.2, 30.0),  # metal-poor giant
    (5300.0, 4.5, 0.2, 80.0),  # metal-rich G/K dwarf
    (3900.0, 4.7, 0.0, 25.0),  # K/M dwarf
    (6000.0, 4.0, -1.8, 35.0),  # metal-poor turn-off star
    (5000.0, 3.4, -0.4, 20.0),  # subgiant, low S/N
]


def build_examples(cfg, path, seed=2026):
    """Synthetic example spectra at known labels, as an R=2000 instrument would see them."""
    emulator = PolynomialEmulatorLibrary.from_file(cfg["pretrain"]["emulator"])
    # BOSS-like vacuum grid (log10 step 1e-4 = ln step 2.303e-4), 3650-7400 A.
    grid_vac = log_lambda_grid(3650.0, 7400.0, 1e-4 * np.log(10))
    from stellarml.spectra import vacuum_to_air

    grid_air = vacuum_to_air(grid_vac)
    degraded = emulator.degrade(resolution=2000.0, wavelength=grid_air * u.AA)
    labels = QTable(
        {
            "teff": [e[0] for e in EXAMPLES] * u.K,
            "logg": [e[1] for e in EXAMPLES] * u.dex,
            "fe_h": [e[2] for e in EXAMPLES] * u.dex,
        }
    )
    library = degraded.generate(labels)
    snr = np.array([e[3] for e in EXAMPLES])
    noisy = library.add_noise(snr, seed=seed)
    labels["snr"] = snr
    tree = {
        "stellarml_examples": {
            "wavelength": grid_vac * u.AA,
            "flux": np.asarray(noisy.flux, dtype=np.float32),
            "ivar": np.asarray(noisy.ivar, dtype=np.float32),
            "labels": labels,
            "resolution": 2000.0,
            "medium": "vacuum",
            "provenance": {
                "made_by": "scripts/build_default_model.py",
                "emulator": str(cfg["pretrain"]["emulator"]),
                "emulator_sha256": str(emulator.meta.get("sha256", "")),
                "noise_seed": seed,
                "stellarml_version": __version__,
            },
        }
    }
    asdf.AsdfFile(tree).write_to(path, all_array_compression="zlib")


def join_pretrained(cfg, paths):
    """The pre-trained model(s) at ``paths``, checked against ``cfg``: one model or an ensemble."""
    models = [read_model(p) for p in paths]
    wanted = int(cfg["model"].get("ensemble", 1))
    if len(models) == 1 and len(getattr(models[0], "members", [models[0]])) == wanted:
        return models[0]  # one file: the model or the whole ensemble, as --pretrained writes it
    if len(models) != wanted:
        raise SystemExit(f"[model] ensemble = {wanted} but {len(models)} pre-trained files given")
    if len(models) == 1:
        return models[0]
    for k, (path, m) in enumerate(zip(paths, models, strict=True)):
        seeds = (int(m.seed), int(m.provenance_["config"]["pretrain"]["seed"]))
        member = member_config(cfg, k)
        expected = (int(member["model"]["seed"]), int(member["pretrain"]["seed"]))
        if seeds != expected:
            raise SystemExit(f"{path}: seeds (model, library) {seeds}, member {k} needs {expected}")
    return RemapEnsemble(models, name=cfg["model"]["name"], provenance={"config": cfg})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=REPO / "scripts" / "remap-optical-r2000.toml")
    p.add_argument("--output", default=REPO / "stellarml" / "data" / "remap-optical-r2000.asdf")
    p.add_argument("--examples", default=REPO / "stellarml" / "data" / "examples-optical.asdf")
    p.add_argument(
        "--pretrained",
        default=REPO / "benchmarks" / "out" / "remap-optical-r2000-pretrained.asdf",
        help="also write the pre-trained (not fine-tuned) model here, for benchmarks "
        "(with several --from-pretrained files: the ensemble joined from them)",
    )
    p.add_argument(
        "--from-pretrained",
        nargs="+",
        default=None,
        metavar="PATH",
        help="skip pre-training: fine-tune this pre-trained model (as written by --pretrained); "
        "several single-network files are joined into an ensemble, in the order given "
        "(member k must have been pre-trained with seed + k, as [model] ensemble does)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    build_examples(cfg, args.examples)
    t0 = time.perf_counter()
    if args.from_pretrained:
        model = join_pretrained(cfg, args.from_pretrained)
        if len(args.from_pretrained) > 1:  # the joined ensemble, as a full build writes it
            Path(args.pretrained).parent.mkdir(parents=True, exist_ok=True)
            write_model(model, args.pretrained)
        pretrained = copy.deepcopy(model) if cfg.get("calibration") else None
        fine_tune_and_calibrate(model, cfg, pretrained=pretrained, progress=not args.quiet)
        model.provenance_["config"] = cfg
    else:
        Path(args.pretrained).parent.mkdir(parents=True, exist_ok=True)
        model = train_from_config(cfg, progress=not args.quiet, pretrained_output=args.pretrained)
    model.provenance_["build"] = {
        "script": "scripts/build_default_model.py",
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "machine": f"{platform.machine()} {platform.processor()} threads={args.threads}",
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "from_pretrained": [str(p) for p in args.from_pretrained or []],
    }
    write_model(model, args.output)
    print(f"wrote {args.output} ({Path(args.output).stat().st_size / 1e6:.2f} MB)")
    print(model.metrics_)


if __name__ == "__main__":
    main()
