"""The stellarml command line."""

import json

import numpy as np
import pytest

from stellarml.catalog import LabelTable
from stellarml.cli import main
from stellarml.flags import LabelFlag


def test_derive_files_with_unreadable_one(data_dir, tmp_path, capsys):
    out = tmp_path / "labels.xml"
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file")
    files = [
        data_dir / "miles" / "MILES_res2.50_star_m0001V.fits",
        junk,
        data_dir / "lamost" / "3706009.fits",
    ]
    assert main(["derive", *map(str, files), "-o", str(out)]) == 0
    table = LabelTable.read(out, format="votable")
    assert len(table) == 3
    assert list(table["file"]) == [str(f) for f in files]
    flags = np.asarray(table["flags"])
    assert flags[1] & int(LabelFlag.BAD_INPUT) and not flags[0] & int(LabelFlag.BAD_INPUT)
    assert table["teff"].mask[1] and not table["teff"].mask[2]
    assert "could not read" in table["message"][1] and table["message"][0] == ""
    assert "could not read" in capsys.readouterr().err


def test_info_default(capsys):
    assert main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "remap-optical-r2000"
    assert info["grid"]["medium"] == "vacuum"
    assert set(info["labels"]) == {"teff", "logg", "fe_h"}
    assert info["labels"]["teff"]["unit"] == "K"


def test_demo_writes_votable(tmp_path, capsys):
    out = tmp_path / "demo.xml"
    assert main(["demo", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "true_teff" in printed and "flag_names" in printed
    # the solar twin's true labels, printed to the kelvin and to 0.01 dex
    assert "     5770      4.40      0.00 " in printed
    assert len(LabelTable.read(out, format="votable")) == 8


def test_unknown_output_format(data_dir, tmp_path):
    with pytest.raises(SystemExit, match="format"):
        main(
            [
                "derive",
                str(data_dir / "miles" / "MILES_res2.50_star_m0001V.fits"),
                "-o",
                str(tmp_path / "x.unknown"),
            ]
        )
