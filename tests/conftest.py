"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_dir():
    env = os.environ.get("STELLARML_DATA_DIR")
    return Path(env).expanduser().resolve() if env else (REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_dir():
    """The reference data folder (``STELLARML_DATA_DIR``, default ``../shared/data``).

    Tests that need it fail loudly when it is missing: CI always has it.
    """
    path = _data_dir()
    if not path.is_dir():
        raise FileNotFoundError(
            f"reference data not found at {path}; set STELLARML_DATA_DIR to ../shared/data"
        )
    return path


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep torch on few threads so tests behave on 2-core machines."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(min(n, 2))
    yield
    torch.set_num_threads(n)
