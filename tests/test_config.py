"""The astropy.config items of stellarml (``stellarml.conf``)."""

import pytest
import torch
from astropy.config import generate_config

import stellarml
from stellarml import conf
from stellarml._utils import data_dir, resolve_device


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("STELLARML_DATA_DIR", str(tmp_path / "from_env"))
    assert data_dir() == (tmp_path / "from_env").resolve()
    with conf.set_temp("data_dir", str(tmp_path / "from_conf")):
        assert data_dir() == (tmp_path / "from_conf").resolve()
    monkeypatch.delenv("STELLARML_DATA_DIR")
    assert data_dir().parts[-2:] == ("shared", "data")


def test_default_device():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with conf.set_temp("default_device", "cpu"):
        assert resolve_device("auto") == torch.device("cpu")
        assert resolve_device(None) == torch.device("cpu")
        # an explicit device still wins
        assert resolve_device("cpu:0") == torch.device("cpu:0")
    if not torch.cuda.is_available():
        with conf.set_temp("default_device", "cuda"), pytest.raises(RuntimeError, match="CUDA"):
            resolve_device("auto")
    with conf.set_temp("default_device", "tpu9"), pytest.raises(ValueError, match="tpu9"):
        resolve_device("auto")


def test_generated_config_file_lists_the_items(tmp_path):
    path = tmp_path / "stellarml.cfg"
    generate_config("stellarml", path)
    text = path.read_text()
    assert "data_dir" in text and "default_device = auto" in text.replace("# ", "")
    assert "cache_dir" in text
    assert stellarml.conf is conf
