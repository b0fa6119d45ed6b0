"""Models for an instrument's windows: configuration checks, a tiny training run, GALAH mu Leo."""

import astropy.units as u
import numpy as np
import pytest
from specutils import Spectrum

from stellarml import derive_labels, read_model
from stellarml.catalog import LabelTable
from stellarml.cli import EXIT_UNREADABLE, main
from stellarml.flags import FATAL, LabelFlag
from stellarml.io.echelle import read_galah_star
from stellarml.recipes import load_config
from stellarml.recipes.instrument import (
    check_windows,
    mask_outside_windows,
    window_fraction,
    windows_from_spectra,
)
from stellarml.recipes.remap import build_preparation, build_pretrain_library

GALAH = [f"{{data_dir}}/galah/131216002601003{ccd}.fits" for ccd in range(1, 5)]

TINY = {
    "model": {
        "method": "remap",
        "name": "tiny-galah",
        "labels": ["teff", "logg", "fe_h"],
        "seed": 5,
        "device": "cpu",
        "architecture": {
            "stem_channels": 8,
            "stage_channels": [8, 8, 16, 16],
            "stage_blocks": [1, 1, 1, 1],
            "embedding_dim": 16,
        },
        "training": {"max_epochs": 1, "batch_size": 64, "progress": False},
    },
    "preparation": {
        "windows_from": GALAH,
        "dloglam": 3.0e-4,
        "medium": "air",
        "resolution": 2000.0,
        "continuum_width": 20.0,
    },
    "pretrain": {
        "emulator": "{data_dir}/doppler/coolstars_cubic_emulator.npz",
        "n_spectra": 128,
        "design": "latin",
        "seed": 5,
        "wavelength_margin": 10.0,
    },
}

# the four HERMES cameras of mu Leo, in air [Angstrom] (tests/io/test_echelle.py)
CCDS = [(4714.1, 4902.5), (5649.9, 5873.6), (6477.5, 6735.6), (7585.7, 7886.7)]


def _config(**prep):
    cfg = {k: dict(v) for k, v in TINY.items()}
    cfg["preparation"] = {k: v for k, v in TINY["preparation"].items() if k != "windows_from"}
    cfg["preparation"].update(prep)
    return cfg


@pytest.mark.parametrize(
    ("windows", "match"),
    [
        ([], "must be a non-empty list"),
        ("4700-4900", "must be a non-empty list"),
        ([[4700.0]], r"window 0 is \[4700.0\]; each window must be \[lo, hi\]"),
        ([[4900.0, 4700.0]], r"window 0 \[4900.0, 4700.0\] must have lo < hi"),
        ([[4700.0, 4900.0], [float("nan"), 6000.0]], "window 1 .* must be finite and positive"),
        ([[-1.0, 4900.0]], "must be finite and positive"),
        (
            [[4700.0, 4900.0], [4850.0, 5000.0]],
            r"window 1 \[4850.0, 5000.0\] starts before window 0 \[4700.0, 4900.0\] ends",
        ),
    ],
)
def test_bad_windows_are_refused(windows, match):
    with pytest.raises(ValueError, match=match):
        load_config(_config(windows=windows))


def test_the_grid_is_given_one_way():
    both = _config(windows=[[4700.0, 4900.0]], wavelength_min=4700.0, wavelength_max=4900.0)
    with pytest.raises(ValueError, match="give the grid one way"):
        load_config(both)
    with pytest.raises(ValueError, match="gives windows and windows_from"):
        load_config(_config(windows=[[4700.0, 4900.0]], windows_from=GALAH))
    with pytest.raises(ValueError, match="lacks wavelength_min, wavelength_max"):
        load_config(_config())
    with pytest.raises(ValueError, match="windows_from must be a non-empty list"):
        load_config(_config(windows_from="a.fits"))
    cfg = load_config(_config(windows_from=["/nonexistent/spectrum.fits"]))
    with pytest.raises(ValueError, match=r"windows_from: cannot read /nonexistent/spectrum\.fits"):
        build_preparation(cfg)


def test_windows_give_a_grid_with_coverage_thresholds():
    cfg = load_config(_config(windows=[[5000.0, 5100.0], [5300.0, 5400.0]]))
    prep = build_preparation(cfg)
    grid = prep.wavelength.to_value(u.AA)
    assert grid[0] == pytest.approx(5000.0) and grid[-1] <= 5400.0 and grid[-1] > 5399.0
    inside = window_fraction(grid, np.array([[5000.0, 5100.0], [5300.0, 5400.0]]))
    assert inside == pytest.approx(np.log(5100 / 5000 * 5400 / 5300) / np.log(5400 / 5000), 0.02)
    assert prep.min_overlap_fraction == prep.min_good_fraction == pytest.approx(0.5 * inside)
    given = load_config(_config(windows=[[5000.0, 5100.0]], min_good_fraction=0.9))
    assert build_preparation(given).min_good_fraction == 0.9


def test_windows_from_spectra_merge_and_convert_the_medium():
    def spec(lo, hi, medium):
        wave = np.linspace(lo, hi, 20) * u.AA
        return Spectrum(flux=np.ones(20) * u.Jy, spectral_axis=wave, meta={"medium": medium})

    windows = windows_from_spectra(
        [spec(6000, 6100, "vacuum"), spec(5000, 5100, "air"), spec(5050, 5200, "air")], "air"
    )
    assert windows.shape == (2, 2)
    np.testing.assert_allclose(windows[0], [5000.0, 5200.0])
    assert windows[1][0] == pytest.approx(6000.0 / 1.000277, abs=0.05)  # vacuum to air
    assert check_windows(windows).shape == (2, 2)


def test_library_has_no_data_outside_the_windows(data_dir, monkeypatch):
    monkeypatch.setenv("STELLARML_DATA_DIR", str(data_dir))
    cfg = load_config(TINY)
    prep = build_preparation(cfg)
    grid = prep.wavelength.to_value(u.AA)
    assert grid[0] == pytest.approx(CCDS[0][0], abs=0.1) and grid[-1] < CCDS[-1][1]
    assert prep.medium == "air"
    library = build_pretrain_library(cfg, prep)
    assert library.meta["windows"]["medium"] == "air"
    wave = library.wavelength.to_value(u.AA)
    inside = np.zeros(wave.size, bool)
    for lo, hi in CCDS:
        inside |= (wave >= lo - 0.1) & (wave <= hi + 0.1)
    assert np.isnan(library.flux[:, ~inside]).all() and np.isfinite(library.flux[:, inside]).any()
    batch = library.prepare(prep)
    assert not (batch.flags & int(FATAL)).any()
    ingrid = np.zeros(grid.size, bool)
    for lo, hi in CCDS:
        ingrid |= (grid > lo + 1.0) & (grid < hi - 1.0)
    between = np.ones(grid.size, bool)
    for lo, hi in CCDS:
        between &= (grid < lo - 1.0) | (grid > hi + 1.0)
    assert not batch.ivar[:, between].any()  # no weight between the cameras
    assert (batch.ivar[:, ingrid] > 0).mean() > 0.95
    # mask_outside_windows on its own: in place, the windows recorded
    again = mask_outside_windows(library, np.array([[5000.0, 5100.0]]), "vacuum")
    assert again is library and library.meta["windows"]["medium"] == "vacuum"
    assert np.isnan(library.flux).all()  # no CCD pixel lies in 5000-5100 A


@pytest.fixture(scope="module")
def galah_model(tmp_path_factory, data_dir):
    """A tiny REMAP model for the GALAH cameras, trained by ``stellarml train`` (seconds)."""
    path = tmp_path_factory.mktemp("galah") / "tiny-galah.asdf"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STELLARML_DATA_DIR", str(data_dir))
        assert main(["train", "-q", _toml(path), "-o", str(path)]) == 0
    return path


def _toml(model_path):
    """TINY as a TOML file next to ``model_path`` (the command line reads files)."""
    import json

    lines = []

    def table(name, d):
        lines.append(f"[{name}]")
        sub = []
        for k, v in d.items():
            if isinstance(v, dict):
                sub.append((f"{name}.{k}", v))
            else:
                lines.append(f"{k} = {json.dumps(v)}")
        for n, s in sub:
            table(n, s)

    for name, d in TINY.items():
        table(name, d)
    path = model_path.with_suffix(".toml")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_galah_star_is_one_row_with_the_instrument_model(galah_model, data_dir):
    files = sorted((data_dir / "galah").glob("131216002601003?.fits"))
    model = read_model(galah_model)
    assert model.provenance_["config"]["preparation"]["windows_from"] == [str(f) for f in files]
    star = read_galah_star(files[0])
    table = derive_labels(star, model=model)
    assert len(table) == 1
    assert not table["flags"][0] & int(FATAL), table["message"][0]
    assert not table["teff"].mask[0] and 3000 < table["teff"][0].to_value(u.K) < 8500
    assert table["snr"][0] > 50
    # each camera alone covers too little of the grid: four rows, flagged
    alone = derive_labels(list(star), model=model)
    assert len(alone) == 4
    assert all(f & int(LabelFlag.NO_WAVELENGTH_OVERLAP) for f in alone["flags"])


def test_galah_files_on_the_command_line_are_one_row(galah_model, data_dir, tmp_path):
    files = [str(f) for f in sorted((data_dir / "galah").glob("131216002601003?.fits"))]
    miles = str(data_dir / "miles" / "MILES_res2.50_star_m0001V.fits")
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file")
    out = tmp_path / "labels.ecsv"
    argv = ["derive", "-q", miles, *files, str(junk), "-m", str(galah_model), "-o", str(out)]
    assert main(argv) == EXIT_UNREADABLE
    table = LabelTable.read(out, format="ascii.ecsv")
    assert len(table) == 3  # in input order: MILES, the GALAH star, the unreadable file
    assert list(table["file"]) == [miles, " + ".join(files), str(junk)]
    assert not table["flags"][1] & int(FATAL)
    assert table["flags"][2] & int(LabelFlag.BAD_INPUT)
    same = derive_labels(read_galah_star(files), model=read_model(galah_model))
    assert table["teff"][1] == pytest.approx(same["teff"][0].to_value(u.K), rel=1e-6)
    # the camera files given apart stay separate rows (each flagged)
    out2 = tmp_path / "apart.ecsv"
    argv = ["derive", "-q", files[0], miles, files[1], "-m", str(galah_model), "-o", str(out2)]
    assert main(argv) == 0
    apart = LabelTable.read(out2, format="ascii.ecsv")
    assert list(apart["file"]) == [files[0], miles, files[1]]
    assert apart["flags"][0] & int(LabelFlag.NO_WAVELENGTH_OVERLAP)
    assert apart["flags"][2] & int(LabelFlag.NO_WAVELENGTH_OVERLAP)
