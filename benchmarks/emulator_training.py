"""Train the MLP and transformer emulators, with and without the gradient prior (PhDLspec).

    python benchmarks/emulator_training.py                      # the recorded run
    python benchmarks/emulator_training.py --n-train 200 --epochs 50   # a quick look

The library is the Doppler cool-star polynomial emulator
(``$STELLARML_DATA_DIR/doppler/coolstars_cubic_emulator.npz``, 3 labels)
degraded to R = 2000 on a vacuum log-lambda grid from 3800 to 7000 Angstrom
(``--dloglam``; the default 2.3e-4 is LAMOST's 1e-4 in log10, 2654 pixels):
the grid is converted to air (the library's medium) and the polynomial
coefficients are broadened and resampled once
(`~stellarml.libraries.PolynomialEmulatorLibrary.degrade`). Training and
held-out labels are drawn with the ``"training"`` design (near the
library's grid points, in the box of ``--teff``/``--logg``/``--feh``) with
different seeds; the spectra are noise-free and every pixel has weight 1.

Reference differential spectra are the exact derivatives of the polynomial
(`stellarml.training.reference_jacobians`), per scaled label unit, at the
training labels (``--n-ref`` of them). For each architecture the same
initial weights are trained with ``gradient_weight`` 0 and ``--gradient-weight``.

Reported, on the held-out spectra:

* ``rms``: residual RMS over all pixels and spectra [normalised flux]
  (target <= 0.002);
* ``jacobian_error``: per label ``||J_emu - J_ref|| / ||J_ref||``
  (Frobenius norm over held-out points and pixels; target <= 0.05).

Cost: the gradient prior differentiates through ``torch.func.jacfwd``; per
step that costs about 4x a plain step for the MLP and about 10x for the
transformer (``--ref-batch`` reference points, 3 tangents each). The default
run took 614 s on 2 shared cores (load average 4-5, so other work slowed it);
``--ref-batch 8`` halves the prior's cost at a slightly larger error.
"""

import argparse
import time

import astropy.units as u
import numpy as np
import torch
from _common import report

from stellarml._utils import data_dir
from stellarml.libraries import PolynomialEmulatorLibrary
from stellarml.models.emulator import MLPEmulator, TransformerEmulator
from stellarml.spectra import log_lambda_grid, vacuum_to_air
from stellarml.training import jacobian_error, reference_jacobians, train_emulator


def build_library(dloglam, resolution):
    """(vacuum grid [Angstrom], degraded polynomial library on its air equivalent)."""
    lib = PolynomialEmulatorLibrary.from_file(
        data_dir() / "doppler" / "coolstars_cubic_emulator.npz"
    )
    grid = log_lambda_grid(3800.0, 7000.0, dloglam)
    air = vacuum_to_air(grid) if lib.medium == "air" else grid
    return grid, lib.degrade(resolution=resolution, wavelength=air * u.AA)


def draw(library, n, ranges, seed):
    table = library.sample_labels(n, ranges=ranges, design="training", seed=seed)
    labels = np.column_stack([table[k].value for k in library.label_names])
    return labels, library.generate(labels, dtype=np.float64).flux


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dloglam", type=float, default=2.3e-4)
    p.add_argument("--resolution", type=float, default=2000.0)
    p.add_argument("--teff", type=float, nargs=2, default=(4000.0, 6500.0))
    p.add_argument("--logg", type=float, nargs=2, default=(1.0, 5.0))
    p.add_argument("--feh", type=float, nargs=2, default=(-1.5, 0.4))
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--n-ref", type=int, default=None, help="default: all training labels")
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--gradient-weight", type=float, default=1.0)
    p.add_argument("--ref-batch", type=int, default=16)
    p.add_argument("--mlp-hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--tr-chunk", type=int, default=64)
    p.add_argument("--tr-d-model", type=int, default=32)
    p.add_argument("--tr-layers", type=int, default=2)
    p.add_argument("--tr-heads", type=int, default=4)
    p.add_argument("--models", nargs="+", default=["mlp", "transformer"])
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    grid, library = build_library(args.dloglam, args.resolution)
    names = library.label_names
    box = np.array([args.teff, args.logg, args.feh])
    lo, hi = box[:, 0], box[:, 1]
    ranges = dict(zip(names, map(tuple, box), strict=True))
    labels, flux = draw(library, args.n_train, ranges, args.seed + 1)
    test_labels, test_flux = draw(library, args.n_test, ranges, args.seed + 2)
    n_ref = args.n_train if args.n_ref is None else args.n_ref
    ref_labels = labels[:n_ref]
    ref_train = reference_jacobians(library, ref_labels, (lo, hi))
    ref_test = reference_jacobians(library, test_labels, (lo, hi))
    print(f"{grid.size} px, {args.n_train} training / {args.n_test} held-out spectra")

    make = {
        "mlp": lambda: MLPEmulator(names, lo, hi, grid, hidden=tuple(args.mlp_hidden)),
        "transformer": lambda: TransformerEmulator(
            names,
            lo,
            hi,
            grid,
            chunk=args.tr_chunk,
            d_model=args.tr_d_model,
            n_heads=args.tr_heads,
            n_layers=args.tr_layers,
        ),
    }
    runs = {}
    for kind in args.models:
        for weight in (0.0, args.gradient_weight):
            torch.manual_seed(args.seed)
            emu = make[kind]()
            start = time.perf_counter()
            history = train_emulator(
                emu,
                labels,
                flux,
                reference_labels=ref_labels,
                reference_jacobians=ref_train,
                gradient_weight=weight,
                epochs=args.epochs,
                batch_size=args.batch_size,
                reference_batch_size=args.ref_batch,
                learning_rate=args.lr,
                seed=args.seed,
                validation=(test_labels, test_flux),
                validate_every=max(1, args.epochs // 10),
            )
            train_s = time.perf_counter() - start
            with torch.no_grad():
                x = emu.scale(torch.as_tensor(test_labels, dtype=torch.float32))
                resid = emu(x).numpy() - test_flux
            jac = torch.cat([emu.jacobian(x[i : i + 32]).detach() for i in range(0, len(x), 32)])
            err = jacobian_error(jac, ref_test)
            key = f"{kind} gradient_weight={weight:g}"
            runs[key] = {
                "rms": float(np.sqrt(np.mean(resid**2))),
                "rms_p99_abs": float(np.percentile(np.abs(resid), 99)),
                "jacobian_error": dict(zip(names, err.round(4).tolist(), strict=True)),
                "train_rms": history["flux_rms"][-1],
                "best_epoch": history["best_epoch"],
                "n_parameters": int(sum(p.numel() for p in emu.parameters())),
                "train_time_s": train_s,
                "val_rms_curve": [round(v, 6) for v in history["val_flux_rms"]],
            }
            print(key, {k: v for k, v in runs[key].items() if k != "val_rms_curve"}, flush=True)
    report(
        "emulator_training.json",
        "emulator_training.py",
        argv,
        t0,
        {
            "grid": {
                "n_pixels": int(grid.size),
                "vacuum_angstrom": [float(grid[0]), float(grid[-1])],
                "dloglam": args.dloglam,
                "resolution": args.resolution,
            },
            "box": {k: list(v) for k, v in ranges.items()},
            "n_train": args.n_train,
            "n_ref": n_ref,
            "n_test": args.n_test,
            "settings": {
                k: getattr(args, k)
                for k in ("epochs", "batch_size", "lr", "gradient_weight", "ref_batch", "seed")
            },
            "targets": {"rms": 0.002, "jacobian_error": 0.05},
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
