"""Shared helpers of the benchmark scripts (not part of the package)."""

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import stellarml

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"

#: Star groups by reference labels (Teff [K], logg [dex]).
GROUPS = {
    "FGK dwarfs": lambda t, g: (t >= 4000) & (t < 7000) & (g >= 3.8),
    "FGK giants": lambda t, g: (t >= 4000) & (t < 5500) & (g < 3.5),
    "M stars": lambda t, g: t < 4000,
    "all": lambda t, g: np.ones_like(t, dtype=bool),
}


def robust_stats(residual):
    """(bias, robust sigma, n): median and 1.4826 x MAD of the finite residuals."""
    r = np.asarray(residual, dtype=float)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return float("nan"), float("nan"), 0
    med = float(np.median(r))
    return med, float(1.4826 * np.median(np.abs(r - med))), int(r.size)


def environment():
    """Machine and versions, recorded with every result."""
    return {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": __import__("os").cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "stellarml": stellarml.__version__,
    }


def save(name, payload):
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(payload, indent=2, default=float))
    return path


def report(name, script, argv, t0, fields):
    """Save ``fields`` as ``out/<name>`` with the command line, environment and wall time."""
    args = list(argv if argv is not None else sys.argv[1:])
    payload = {
        "command": " ".join([f"python benchmarks/{script}", *args]),
        **fields,
        "environment": environment(),
        "wall_time_s": time.perf_counter() - t0,
    }
    path = save(name, payload)
    print(f"wrote {path}")
    return path
