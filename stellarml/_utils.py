"""Small helpers shared by the subpackages (not public API)."""

import os
from pathlib import Path

__all__ = ["data_dir", "resolve_device", "seed_everything"]


def data_dir():
    """Folder of the shared reference data (``STELLARML_DATA_DIR``, default ``../shared/data``)."""
    return Path(os.environ.get("STELLARML_DATA_DIR", "../shared/data")).expanduser().resolve()


def resolve_device(device="auto"):
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a `torch.device` into a device.

    ``"auto"`` picks CUDA when it is available, else the CPU. Asking for CUDA
    on a machine without it raises a `RuntimeError` naming the problem.
    """
    import torch

    if isinstance(device, torch.device):
        dev = device
    elif device is None or device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"invalid device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(dev)!r} requested but CUDA is not available")
    return dev


def seed_everything(seed):
    """Seed Python, NumPy and torch; return a `numpy.random.Generator` for ``seed``."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - also seed code that uses the legacy global RNG
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
