"""The stellarml command line."""

import json

import numpy as np
import pytest

from stellarml import __version__
from stellarml.catalog import LabelTable
from stellarml.cli import EXIT_UNREADABLE, main
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
    # the table is written, and the exit status says that a file could not be read
    assert main(["derive", *map(str, files), "-o", str(out)]) == EXIT_UNREADABLE
    table = LabelTable.read(out, format="votable")
    assert len(table) == 3
    assert list(table["file"]) == [str(f) for f in files]
    flags = np.asarray(table["flags"])
    assert flags[1] & int(LabelFlag.BAD_INPUT) and not flags[0] & int(LabelFlag.BAD_INPUT)
    assert table["teff"].mask[1] and not table["teff"].mask[2]
    assert "could not read" in table["message"][1] and table["message"][0] == ""
    assert "The available formats are" not in table["message"][1]  # one line, not the list
    err = capsys.readouterr().err
    assert "could not read" in err and "1 of 3 files could not be read" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"stellarml {__version__}"


def test_bad_output_is_refused_before_any_work(data_dir, tmp_path, monkeypatch):
    import stellarml.analysis

    def no_model(_):  # the checks come before the model is even loaded
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(stellarml.analysis, "_resolve_model", no_model)
    spectrum = str(data_dir / "lamost" / "3706009.fits")
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("")
    with pytest.raises(SystemExit, match="is not a writable folder"):
        main(["derive", spectrum, "-o", str(not_a_folder / "labels.xml")])
    with pytest.raises(SystemExit, match="is one of the input files"):
        main(["derive", spectrum, str(tmp_path / "a.ecsv"), "-o", str(tmp_path / "a.ecsv")])
    with pytest.raises(SystemExit, match="cannot tell the table format"):
        main(["derive", spectrum, "-o", str(tmp_path / "x.unknown"), "--workers", "2"])


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


def test_derive_rv_medium_and_resolution_options(data_dir, tmp_path):
    boss = data_dir / "sdss" / "spec-3586-55181-0500.fits"
    miles = data_dir / "miles" / "MILES_res2.50_star_m0001V.fits"
    out = tmp_path / "auto.ecsv"
    assert main(["derive", str(boss), str(miles), "-o", str(out)]) == 0
    auto = LabelTable.read(out, format="ascii.ecsv")
    assert list(auto["rv_source"]) == ["header", "header"]
    assert float(auto["rv"].unmasked.value[0]) == pytest.approx(-30.35, abs=0.01)
    assert float(auto["rv_err"].unmasked.value[0]) == pytest.approx(3.22, abs=0.01)
    assert not np.any(np.asarray(auto["flags"]) & int(LabelFlag.RESOLUTION_ASSUMED))
    # told: the same rv, medium and resolution for every file
    out = tmp_path / "told.ecsv"
    args = ["--rv", "12.5", "--medium", "vacuum", "--resolution", "2000"]
    assert main(["derive", str(boss), str(miles), "-o", str(out), *args]) == 0
    told = LabelTable.read(out, format="ascii.ecsv")
    assert list(told["rv_source"]) == ["given", "given"]
    np.testing.assert_array_equal(told["rv"].unmasked.value, [12.5, 12.5])
    assert np.all(told["rv_err"].mask)
    # MILES is in air: calling it vacuum moves its lines by ~1.5 Angstrom and its labels
    assert abs(told["teff"].unmasked.value[1] - auto["teff"].unmasked.value[1]) > 1.0
    with pytest.raises(SystemExit):
        main(["derive", str(boss), "-o", str(out), "--medium", "glass"])
    with pytest.raises(SystemExit, match="--rv and --medium are not available with --workers"):
        main(["derive", str(boss), "-o", str(tmp_path / "parts"), "--workers", "2", "--rv", "0"])


def test_allow_unreadable_carries_on_with_exit_zero(data_dir, tmp_path, capsys):
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file")
    good = data_dir / "lamost" / "3706009.fits"
    out = tmp_path / "labels.ecsv"
    assert main(["derive", str(good), str(junk), "-o", str(out), "--allow-unreadable"]) == 0
    table = LabelTable.read(out, format="ascii.ecsv")
    assert list(table["rv_source"]) == ["header", "none"]
    assert table["flags"][1] & int(LabelFlag.BAD_INPUT)
    assert "1 of 2 files could not be read" in capsys.readouterr().err
    # every file unreadable: still a table, still the exit status
    assert main(["derive", str(junk), "-o", str(out)]) == EXIT_UNREADABLE


def test_derive_with_the_emulator_model_and_a_method(data_dir, tmp_path, capsys):
    boss = str(data_dir / "sdss" / "spec-3586-55181-0500.fits")
    out = tmp_path / "phdl.ecsv"
    args = ["derive", boss, "-m", "phdl-optical-r2000", "--method", "cmaes", "-o", str(out)]
    assert main(args) == 0
    table = LabelTable.read(out, format="ascii.ecsv")
    assert table.meta["model_name"] == "phdl-optical-r2000"
    assert np.isfinite(float(table["teff_crlb"].value[0]))
    # a model that does not fit spectra takes no method
    with pytest.raises(SystemExit, match="does not take a method"):
        main(["derive", boss, "--method", "mcmc", "-o", str(tmp_path / "x.ecsv")])
    with pytest.raises(SystemExit, match="--method is not available"):
        main(["derive", boss, "--method", "mcmc", "--workers", "1", "-o", str(tmp_path / "d")])
