"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

try:  # the versions that matter for stellarml in the pytest header (pytest-astropy-header)
    from pytest_astropy_header.display import PYTEST_HEADER_MODULES, TESTED_VERSIONS

    PYTEST_HEADER_MODULES.clear()
    PYTEST_HEADER_MODULES.update(
        {
            "Numpy": "numpy",
            "Scipy": "scipy",
            "astropy": "astropy",
            "specutils": "specutils",
            "asdf": "asdf",
            "torch": "torch",
            "dask": "dask",
        }
    )
    from stellarml._utils import stellarml_version

    TESTED_VERSIONS["stellarml"] = stellarml_version()
except ImportError:  # pragma: no cover - pytest-astropy is a test dependency
    pass


def _data_dir():
    env = os.environ.get("STELLARML_DATA_DIR")
    return Path(env).expanduser().resolve() if env else (REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_dir():
    """The reference data folder (``STELLARML_DATA_DIR``, default ``../shared/data``).

    Tests that need it skip, saying why, outside that layout (a clone without
    ``../shared``); CI always has it, and runs them.
    """
    path = _data_dir()
    if not path.is_dir():
        pytest.skip(
            f"needs the reference data: {path} does not exist (set STELLARML_DATA_DIR to "
            "the shared/data folder)"
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


@pytest.fixture(scope="session")
def assert_float32_equal():
    """Compare float32 network outputs to values recorded on another machine.

    On one machine the outputs are bit-identical run to run. Across CPUs they are
    not: torch's float32 convolutions dispatch to other kernels (AVX2, AVX-512),
    which round differently in the last bits. The tolerance is ``ulps`` float32
    ulps of ``scale``, the magnitude of the quantity the values derive from (an
    error column inherits the rounding of its label), far below any real change.
    """
    import numpy as np

    def check(actual, desired, scale, ulps=8, err_msg=""):
        atol = ulps * np.finfo(np.float32).eps * float(scale)
        np.testing.assert_allclose(actual, desired, rtol=0, atol=atol, err_msg=err_msg)

    return check


#: Text that marks a docs page whose examples read the reference data.
_DOCS_NEED_DATA = ("data_dir()", "from_miles(", "{data_dir}")


def pytest_collection_modifyitems(config, items):
    """Outside the data layout, the docs pages whose examples read the data skip, saying why."""
    path = _data_dir()
    if path.is_dir():
        return
    skip = pytest.mark.skip(
        reason=f"needs the reference data: {path} does not exist (set STELLARML_DATA_DIR "
        "to the shared/data folder)"
    )
    for item in items:
        source = Path(str(item.fspath))
        if source.suffix == ".rst" and any(s in source.read_text() for s in _DOCS_NEED_DATA):
            item.add_marker(skip)
