"""The DTL recipe and ``stellarml adapt``: a TOML configuration in, an adapted model out."""

import numpy as np
import pytest
from astropy.table import Table

from stellarml.cli import main
from stellarml.flags import LabelFlag
from stellarml.io.asdf import read_model
from stellarml.models import DTLModel
from stellarml.recipes import load_config, train_from_config

TINY = """
[model]
method = "dtl"
name = "tiny-dtl"
labels = ["teff", "logg", "fe_h"]
seed = 3
[model.architecture]
widths = [32]
[model.training]
ae_epochs = 3
ae_batch_size = 32
cnn_epochs = 3
fine_tune_epochs = 3
[model.ensemble]
n_autoencoders = 1
n_regressors = 2
keep = 2
[preparation]
wavelength_min = 4800.0
wavelength_max = 5400.0
dloglam = 3.0e-4
medium = "vacuum"
resolution = 1500.0
[pretrain]
emulator = "{data_dir}/doppler/coolstars_cubic_emulator.npz"
n_spectra = 120
design = "latin"
seed = 3
[adapt]
library = "miles"
directory = "{data_dir}/miles"
ids = ["0001", "0003", "0004", "0005", "0006", "0008", "0009", "0010"]
"""


@pytest.fixture
def tiny_config(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("STELLARML_DATA_DIR", str(data_dir))
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def test_train_adapt_and_cli(tiny_config, tmp_path, data_dir, capsys):
    out, pre = tmp_path / "dtl.asdf", tmp_path / "pre.asdf"
    model = train_from_config(
        tiny_config, output=out, progress=False, adapt_exclude_ids=["0010"], pretrained_output=pre
    )
    assert isinstance(model, DTLModel) and model.is_adapted()
    assert sorted(model.provenance_["adapt"]["ids"]) == [
        "0001",
        "0003",
        "0004",
        "0005",
        "0006",
        "0008",
        "0009",
    ]
    back = read_model(out)
    assert back.is_adapted() and back.name == "tiny-dtl"
    assert not read_model(pre).is_adapted()
    # 0011 is not among the MILES training files: an unreadable input, left out and reported
    files = [
        str(data_dir / "miles" / f"MILES_res2.50_star_m{i}V.fits") for i in ("0012", "0011", "0013")
    ]
    adapted = tmp_path / "adapted.asdf"
    assert main(["adapt", str(pre), *files, "-o", str(adapted), "-q"]) == 0
    err = capsys.readouterr().err
    assert "left out of the adaptation: could not read" in err and "m0011V" in err
    model2 = read_model(adapted)
    assert model2.provenance_["adapt"]["n_spectra"] == 2
    assert model2.provenance_["adapt"]["n_excluded"] == 1
    assert model2.provenance_["adapt"]["ids"] == [files[0], files[2]]
    table_path = tmp_path / "labels.ecsv"
    assert main(["derive", *files, "-m", str(adapted), "-o", str(table_path), "-q"]) == 3
    table = Table.read(table_path)
    assert len(table) == 3
    teff = np.ma.filled(np.ma.asarray(table["teff"], dtype=float), np.nan)
    assert np.isfinite(teff[[0, 2]]).all() and np.isnan(teff[1])
    assert int(table["flags"][1]) & int(LabelFlag.BAD_INPUT)
    assert table.meta["model_method"] == "dtl"


def test_cli_adapt_refuses_a_remap_model(tmp_path, data_dir):
    spectrum = str(data_dir / "miles" / "MILES_res2.50_star_m0001V.fits")
    with pytest.raises(SystemExit, match="cannot be adapted without labels"):
        main(["adapt", "remap-optical-r2000", spectrum, "-o", str(tmp_path / "x.asdf")])


def test_config_errors(tiny_config):
    cfg = load_config(tiny_config)
    cfg["model"]["architecture"] = {"depth": 3}
    with pytest.raises(ValueError, match="unknown architecture settings"):
        load_config(cfg)
    cfg = load_config(tiny_config)
    cfg["adapt"]["library"] = "lamost"
    with pytest.raises(ValueError, match="unsupported adaptation library"):
        load_config(cfg)
    cfg = load_config(tiny_config)
    del cfg["preparation"]
    with pytest.raises(ValueError, match=r"lacks the \[preparation\] table"):
        load_config(cfg)
