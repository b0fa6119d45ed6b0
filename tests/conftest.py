"""Fixtures of the tests (the data folder, the pytest header and torch threads: ../conftest.py)."""

import pytest


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
