"""Fixtures of the grid-library tests: a loopback HTTP server and a temporary astropy cache."""

import pytest
from astropy.config.paths import set_temp_cache
from grid_files import GridServer


@pytest.fixture
def grid_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path / "server"``."""
    server = GridServer(tmp_path / "server")
    yield server
    server.close()


@pytest.fixture
def astropy_cache(tmp_path):
    """A temporary astropy download cache (``set_temp_cache``); yields its folder."""
    folder = tmp_path / "cache"
    folder.mkdir()
    with set_temp_cache(folder):
        yield folder
