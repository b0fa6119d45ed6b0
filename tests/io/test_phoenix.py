"""PHOENIX-ACES reader and file-name helpers, on files written here in the HiRes format."""

import io
import math
import os

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.io import registry as io_registry
from grid_files import write_phoenix_flux, write_phoenix_wave
from specutils import Spectrum, SpectrumList

from stellarml.io.phoenix import (
    PHOENIX_ALPHA,
    PHOENIX_FLUX_UNIT,
    PHOENIX_LOGG,
    PHOENIX_M_H,
    PHOENIX_RESOLUTION,
    PHOENIX_TEFF,
    PHOENIX_WAVE_FILENAME,
    find_phoenix_wavelength_file,
    parse_phoenix_filename,
    phoenix_filename,
    phoenix_subdir,
    read_phoenix,
    read_phoenix_wavelength,
)

GRID = "PHOENIX-ACES-AGSS-COND-2011"

# The stellarml loaders; a test-written file must be claimed by exactly one of them.
STELLARML_FORMATS = {
    "LAMOST-LRS",
    "PHOENIX-ACES",
    "Castelli-Kurucz",
    "CARMENES-CARACAL",
    "GALAH-HERMES",
}


def _wavelengths():
    """The HiRes sampling pattern, thinned: 0.1 A steps become 2 A, R=500000 becomes 5000."""
    uv = np.arange(500.0, 3000.0, 2.0)
    optical = 3000.0 * np.exp(np.arange(0, np.log(25000.0 / 3000.0), 1 / 5000.0))
    infrared = 25000.0 * np.exp(np.arange(0, np.log(55000.0 / 25000.0), 1 / 1000.0))
    return np.concatenate([uv, optical, infrared])


def _flux(wave_aa, teff):
    """Planck surface flux pi*B_lambda(T) in erg s-1 cm-2 cm-1 with a few absorption lines."""
    lam = wave_aa * 1e-8
    h, c, k = 6.62607015e-27, 2.99792458e10, 1.380649e-16
    flux = math.pi * 2 * h * c**2 / lam**5 / np.expm1(h * c / (lam * k * teff))
    for centre in (3934.8, 4862.7, 6564.6, 8544.4):
        flux *= 1 - 0.6 * np.exp(-0.5 * ((wave_aa - centre) / 1.5) ** 2)
    return flux.astype(np.float32)


def _write_wave(path, wave, unit=None):
    return write_phoenix_wave(path, wave, unit=unit)


def _write_flux(path, wave, teff, logg, m_h, alpha=0.0, **extra):
    """A HiRes flux file with this module's full-range Planck-and-lines flux."""
    return write_phoenix_flux(path, wave, teff, logg, m_h, alpha, flux=_flux(wave, teff), **extra)


@pytest.fixture
def server_tree(tmp_path):
    """A local copy of the server layout: HiResFITS/{WAVE file, grid/Z*/lte*.fits}."""
    root = tmp_path / "HiResFITS"
    wave = _wavelengths()
    _write_wave(root / PHOENIX_WAVE_FILENAME, wave)
    points = [(5800, 4.5, 0.0, 0.0), (4000, 1.5, -0.5, 0.2), (3000, 5.0, 0.5, 0.0)]
    paths = {}
    for teff, logg, m_h, alpha in points:
        name = phoenix_filename(teff, logg, m_h, alpha)
        path = root / GRID / phoenix_subdir(m_h, alpha) / name
        paths[(teff, logg, m_h, alpha)] = _write_flux(path, wave, teff, logg, m_h, alpha)
    return root, wave, paths


def test_file_names_follow_the_server_conventions():
    assert phoenix_filename(5800, 4.5, 0.0) == f"lte05800-4.50-0.0.{GRID}-HiRes.fits"
    assert phoenix_filename(5800, 4.5, -0.0) == f"lte05800-4.50-0.0.{GRID}-HiRes.fits"
    assert phoenix_filename(3000, 5.0, 0.5) == f"lte03000-5.00+0.5.{GRID}-HiRes.fits"
    assert phoenix_filename(12000, 6.0, -4.0) == f"lte12000-6.00-4.0.{GRID}-HiRes.fits"
    assert (
        phoenix_filename(5800, 4.5, -0.5, 0.2) == f"lte05800-4.50-0.5.Alpha=+0.20.{GRID}-HiRes.fits"
    )
    assert (
        phoenix_filename(3500, 0.0, 0.0, -0.2) == f"lte03500-0.00-0.0.Alpha=-0.20.{GRID}-HiRes.fits"
    )
    assert phoenix_subdir(0.0) == "Z-0.0"
    assert phoenix_subdir(0.5) == "Z+0.5"
    assert phoenix_subdir(1.0) == "Z+1.0"
    assert phoenix_subdir(-0.5, 0.2) == "Z-0.5.Alpha=+0.20"
    assert phoenix_subdir(0.0, 1.2) == "Z-0.0.Alpha=+1.20"
    # The grid axes of Husser et al. (2013), Table 2.
    assert PHOENIX_TEFF[0] == 2300 and PHOENIX_TEFF[-1] == 12000
    assert np.all(np.diff(PHOENIX_TEFF[PHOENIX_TEFF <= 7000]) == 100)
    assert np.all(np.diff(PHOENIX_TEFF[PHOENIX_TEFF >= 7000]) == 200)
    assert PHOENIX_LOGG.tolist() == [0.5 * i for i in range(13)]
    assert PHOENIX_M_H.tolist() == [-4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0]
    assert PHOENIX_ALPHA.tolist() == [-0.2, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2]


def test_every_grid_name_parses_back():
    count = 0
    for teff in PHOENIX_TEFF:
        for logg in (0.0, 4.5, 6.0):
            for m_h in PHOENIX_M_H:
                alphas = PHOENIX_ALPHA if (-3 <= m_h <= 0 and 3500 <= teff <= 8000) else [0.0]
                for alpha in alphas:
                    name = phoenix_filename(teff, logg, m_h, alpha)
                    parsed = parse_phoenix_filename(f"{phoenix_subdir(m_h, alpha)}/{name}")
                    assert parsed == {"teff": teff, "logg": logg, "m_h": m_h, "alpha": alpha}
                    assert phoenix_filename(**parsed) == name
                    count += 1
    # 73 Teff x 9 [M/H], plus 7 non-zero alphas x 6 [M/H] x 41 Teff (3500-8000 K).
    assert count == 3 * (73 * 9 + 7 * 6 * 41)
    zero = parse_phoenix_filename(f"lte05800-4.50-0.0.{GRID}-HiRes.fits")["m_h"]
    assert zero == 0.0 and math.copysign(1.0, zero) == 1.0


def test_names_off_the_grid_are_refused():
    with pytest.raises(ValueError, match="teff=7100 K is not a point"):
        phoenix_filename(7100, 4.5, 0.0)
    with pytest.raises(ValueError, match=r"logg=4\.25"):
        phoenix_filename(5800, 4.25, 0.0)
    with pytest.raises(ValueError, match=r"m_h=-2\.5"):
        phoenix_filename(5800, 4.5, -2.5)
    with pytest.raises(ValueError, match=r"alpha=0\.3"):
        phoenix_filename(5800, 4.5, 0.0, 0.3)
    with pytest.raises(ValueError, match="alpha-modified models only"):
        phoenix_filename(5800, 4.5, 0.5, 0.2)
    with pytest.raises(ValueError, match="alpha-modified models only"):
        phoenix_filename(9000, 4.5, 0.0, 0.2)
    with pytest.raises(ValueError, match="no alpha-modified models"):
        phoenix_subdir(-4.0, 0.4)
    with pytest.raises(TypeError, match="teff must be a number"):
        phoenix_filename("hot", 4.5, 0.0)
    for bad in ("lte5800-4.50-0.0.fits", "lte05800-4.5-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"):
        with pytest.raises(ValueError, match="not a PHOENIX-ACES-AGSS-COND-2011 HiRes"):
            parse_phoenix_filename(bad)


def test_read_from_the_server_layout(server_tree):
    root, wave, paths = server_tree
    path = paths[(5800, 4.5, 0.0, 0.0)]
    for cls in (Spectrum, SpectrumList):
        formats = set(io_registry.identify_format("read", cls, str(path), None, [], {}))
        assert formats & STELLARML_FORMATS == {"PHOENIX-ACES"}
    spec = Spectrum.read(path)  # auto-identified; wavelength file found two folders up
    assert spec.spectral_axis.unit == u.AA
    np.testing.assert_array_equal(spec.spectral_axis.value, wave)
    assert spec.flux.unit == PHOENIX_FLUX_UNIT
    assert spec.flux.unit.is_equivalent(u.erg / u.s / u.cm**2 / u.AA)
    np.testing.assert_array_equal(spec.flux.value, _flux(wave, 5800))
    assert spec.uncertainty is None
    assert spec.meta["teff"] == 5800 * u.K
    assert spec.meta["logg"] == 4.5 * u.dex
    assert spec.meta["m_h"] == 0.0 * u.dex
    assert spec.meta["alpha_fe"] == 0.0 * u.dex
    assert spec.meta["vmicro"] == 1.49 * u.km / u.s
    assert spec.meta["label_names"] == ("teff", "logg", "m_h", "alpha_fe")
    assert spec.meta["medium"] == "vacuum"
    assert spec.meta["resolution"] == PHOENIX_RESOLUTION
    assert spec.meta["wavelength_file"] == str((root / PHOENIX_WAVE_FILENAME).resolve())
    assert spec.meta["header"]["PHXEOS"] == "ACES"
    alpha = Spectrum.read(paths[(4000, 1.5, -0.5, 0.2)])
    assert alpha.meta["m_h"] == -0.5 * u.dex
    assert alpha.meta["alpha_fe"] == 0.2 * u.dex
    # F_lambda of a 3000 K star peaks near 9700 A (Wien), of a 5800 K star near 5000 A.
    cool = Spectrum.read(paths[(3000, 5.0, 0.5, 0.0)])
    assert 9000 < cool.spectral_axis[np.argmax(cool.flux)].value < 10400
    assert 4600 < spec.spectral_axis[np.argmax(spec.flux)].value < 5400
    assert len(SpectrumList.read(path)) == 1


def test_wavelength_file_beside_explicit_and_missing(server_tree, tmp_path):
    root, wave, paths = server_tree
    source = paths[(5800, 4.5, 0.0, 0.0)]
    lone = tmp_path / "lone" / source.name
    lone.parent.mkdir()
    lone.write_bytes(source.read_bytes())
    with pytest.raises(FileNotFoundError, match=PHOENIX_WAVE_FILENAME) as err:
        Spectrum.read(lone)
    assert "wavelength_file=" in str(err.value)
    spec = read_phoenix(lone, wavelength_file=root / PHOENIX_WAVE_FILENAME)
    np.testing.assert_array_equal(spec.spectral_axis.value, wave)
    spec = Spectrum.read(lone, wavelength_file=root / PHOENIX_WAVE_FILENAME)
    assert spec.meta["teff"] == 5800 * u.K
    beside = _write_wave(lone.parent / PHOENIX_WAVE_FILENAME, wave * 0.1, unit="nm")
    assert find_phoenix_wavelength_file(lone) == beside.resolve()
    spec = Spectrum.read(lone)  # beside the flux file, in nm
    np.testing.assert_allclose(spec.spectral_axis.to_value(u.AA), wave, rtol=1e-12)
    # A file object with a name is located like its path; an anonymous stream is not.
    with open(source, "rb") as fh:
        assert read_phoenix(fh).meta["wavelength_file"].endswith(PHOENIX_WAVE_FILENAME)
    stream = io.BytesIO(source.read_bytes())
    with pytest.raises(ValueError, match="needs wavelength_file"):
        read_phoenix(stream)
    spec = read_phoenix(stream, wavelength_file=root / PHOENIX_WAVE_FILENAME)
    assert spec.meta["logg"] == 4.5 * u.dex
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_phoenix(source, wavelength_file=tmp_path / "nowhere.fits")


def test_wavelength_file_is_cached_until_it_changes(server_tree):
    root, wave, _ = server_tree
    path = root / PHOENIX_WAVE_FILENAME
    first = read_phoenix_wavelength(path)
    assert read_phoenix_wavelength(path) is first
    assert not first.flags.writeable
    path.unlink()
    _write_wave(path, wave * 2)
    os.utime(path, ns=(1, 1))  # a different modification time
    np.testing.assert_array_equal(read_phoenix_wavelength(path), wave * 2)


def test_wavelength_range_cut(server_tree):
    _, wave, paths = server_tree
    spec = read_phoenix(paths[(5800, 4.5, 0.0, 0.0)], wavelength_range=(4000, 7000))
    assert spec.spectral_axis.value.min() >= 4000 and spec.spectral_axis.value.max() <= 7000
    keep = (wave >= 4000) & (wave <= 7000)
    np.testing.assert_array_equal(spec.flux.value, _flux(wave, 5800)[keep])
    spec = read_phoenix(paths[(5800, 4.5, 0.0, 0.0)], wavelength_range=[0.4, 0.7] * u.um)
    assert spec.flux.size == keep.sum()
    with pytest.raises(ValueError, match="keeps fewer than 2 pixels"):
        read_phoenix(paths[(5800, 4.5, 0.0, 0.0)], wavelength_range=(60000, 70000))


def test_bad_files_raise_clear_errors(server_tree):
    root, wave, _ = server_tree
    # Flux and wavelength arrays of different length.
    short = root / GRID / "Z-0.0" / phoenix_filename(5900, 4.5, 0.0)
    _write_flux(short, wave[:-5], 5900, 4.5, 0.0)
    with pytest.raises(ValueError, match=r"\d+ flux pixels but \d+ wavelengths"):
        Spectrum.read(short)
    # A file whose name and header disagree is mislabelled.
    wrong = root / GRID / "Z-0.0" / phoenix_filename(6000, 4.5, 0.0)
    _write_flux(wrong, wave, 6100, 4.5, 0.0)
    with pytest.raises(ValueError, match="teff: name 6000, header 6100"):
        Spectrum.read(wrong)
    # Not a PHOENIX file (keywords missing) and a flux unit that is not F_lambda.
    plain = root / "plain.fits"
    fits.PrimaryHDU(np.ones(10, dtype=np.float32)).writeto(plain)
    with pytest.raises(ValueError, match="not a PHOENIX spectrum"):
        read_phoenix(plain)
    jansky = root / GRID / "Z-0.0" / phoenix_filename(6200, 4.5, 0.0)
    _write_flux(jansky, wave, 6200, 4.5, 0.0, BUNIT="Jy")
    with pytest.raises(ValueError, match="not a flux density per unit wavelength"):
        read_phoenix(jansky)


def test_medium_resolution_files_carry_their_own_wcs(tmp_path):
    # The R=10000 products define the grid with CRVAL1/CDELT1/CRPIX1/CTYPE1 (AWAV = air).
    wave = 3000.0 + 0.5 * np.arange(4000)
    path = _write_flux(
        tmp_path / "medres.fits",
        wave,
        5000,
        4.0,
        -1.0,
        CRVAL1=3000.0,
        CDELT1=0.5,
        CRPIX1=1.0,
        CTYPE1="AWAV",
    )
    spec = Spectrum.read(path)
    np.testing.assert_allclose(spec.spectral_axis.to_value(u.AA), wave)
    assert spec.meta["medium"] == "air"
    assert spec.meta["resolution"] is None
    assert spec.meta["wavelength_file"] is None
    logpath = _write_flux(
        tmp_path / "medres_log.fits",
        wave,
        5000,
        4.0,
        -1.0,
        CRVAL1=np.log10(3000.0),
        CDELT1=1e-5,
        CRPIX1=1.0,
        CTYPE1="WAVE-LOG",
    )
    spec = read_phoenix(logpath)
    np.testing.assert_allclose(spec.spectral_axis.value[[0, 1]], [3000.0, 3000.0 * 10**1e-5])
    assert spec.meta["medium"] == "vacuum"
