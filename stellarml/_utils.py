"""Small helpers shared by the subpackages (not public API)."""

import datetime
import os
from pathlib import Path

__all__ = [
    "data_dir",
    "plain_tree",
    "resolve_device",
    "seed_everything",
    "stellarml_version",
    "utc_now",
]


def stellarml_version():
    """The installed stellarml version (``"0.0.0"`` when run from a tree without an install).

    Read from ``stellarml._version`` rather than the package root, so that no
    module needs to import ``stellarml`` itself (which imports everything).
    """
    try:
        from ._version import version
    except ImportError:  # pragma: no cover - only without an install
        return "0.0.0"
    return version


def utc_now():
    """The current time, ISO 8601 UTC to the second (e.g. ``2026-12-02T12:00:00+00:00``)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def data_dir():
    """Folder of the shared reference data.

    ``stellarml.conf.data_dir`` when set, else the ``STELLARML_DATA_DIR``
    environment variable, else ``../shared/data``.
    """
    from ._config import conf

    folder = conf.data_dir or os.environ.get("STELLARML_DATA_DIR", "../shared/data")
    return Path(folder).expanduser().resolve()


def resolve_device(device="auto"):
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a `torch.device` into a device.

    ``"auto"`` (or `None`) means ``stellarml.conf.default_device``, whose own
    default ``"auto"`` picks CUDA when it is available, else the CPU. Asking
    for CUDA on a machine without it raises a `RuntimeError` naming the
    problem.
    """
    import torch

    from ._config import conf

    if device is None or device == "auto":
        device = conf.default_device or "auto"
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
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


def plain_tree(value, depth=0):
    """JSON/ASDF-friendly copy of provenance (numbers, strings, lists, dicts, arrays).

    Numpy scalars become Python numbers, tuples become lists, paths strings,
    numeric arrays of up to 100 000 elements are copied; anything else (and
    anything nested deeper than 8 levels) becomes a short ``repr``.
    """
    import numpy as np

    if depth > 8:
        return repr(value)[:200]
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, dict):
        return {str(k): plain_tree(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_tree(v, depth + 1) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.size <= 100_000:
        return value.copy()
    if hasattr(value, "__fspath__"):
        return str(value)
    return repr(value)[:200]
