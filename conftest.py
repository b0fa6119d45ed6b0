"""pytest configuration shared by the tests, the docstring examples and the docs pages.

Docstring examples (doctests) that read the shared reference files use
``data_dir``, the reference data folder (``STELLARML_DATA_DIR``, default
``../shared/data``) as a `~pathlib.Path`, which this file puts in the doctest
namespace. Outside that layout those examples, and the docs pages that read
the data, skip saying why; CI always has the data, and runs them.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent


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


def reference_data_dir():
    """``STELLARML_DATA_DIR`` when set, else ``../shared/data`` beside the repository."""
    env = os.environ.get("STELLARML_DATA_DIR")
    return Path(env).expanduser().resolve() if env else (REPO.parent / "shared" / "data").resolve()


#: Text that marks a docs page or a docstring example that reads the reference data.
_NEEDS_DATA = ("data_dir", "from_miles(")


def _needs_data(item):
    dtest = getattr(item, "dtest", None)
    if dtest is not None:  # a docstring's examples, or a whole docs page
        return any(s in example.source for example in dtest.examples for s in _NEEDS_DATA)
    return False


def pytest_collection_modifyitems(config, items):
    """Outside the data layout, the examples and pages that read the data skip, saying why."""
    path = reference_data_dir()
    if path.is_dir():
        return
    skip = pytest.mark.skip(
        reason=f"needs the reference data: {path} does not exist (set STELLARML_DATA_DIR "
        "to the shared/data folder)"
    )
    for item in items:
        if _needs_data(item):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir():
    """The reference data folder (``STELLARML_DATA_DIR``, default ``../shared/data``).

    Tests that need it skip, saying why, outside that layout (a clone without
    ``../shared``); CI always has it, and runs them.
    """
    path = reference_data_dir()
    if not path.is_dir():
        pytest.skip(
            f"needs the reference data: {path} does not exist (set STELLARML_DATA_DIR to "
            "the shared/data folder)"
        )
    return path


@pytest.fixture(autouse=True)
def _doctest_data_dir(request):
    """``data_dir`` in every doctest's namespace (the examples that use it skip without it)."""
    if request.node.__class__.__name__ == "DoctestItem":
        request.getfixturevalue("doctest_namespace")["data_dir"] = reference_data_dir()


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep torch on few threads so tests and examples behave on 2-core machines."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(min(n, 2))
    yield
    torch.set_num_threads(n)
