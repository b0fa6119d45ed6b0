"""Castelli-Kurucz reader and file names, on files written here in the STScI atlas layout."""

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.io import registry as io_registry
from grid_files import write_kurucz_file
from specutils import Spectrum, SpectrumList

from stellarml.io.kurucz import (
    CK04_LOGG,
    CK04_M_H,
    CK04_TEFF,
    FLAM,
    K93_M_H,
    K93_TEFF,
    identify_kurucz,
    kurucz_filename,
    kurucz_subdir,
    parse_kurucz_filename,
    read_kurucz,
    read_kurucz_batch,
)

GCOLS = [f"g{10 * g:02.0f}" for g in CK04_LOGG]

# The stellarml loaders; a test-written file must be claimed by exactly one of them.
STELLARML_FORMATS = {
    "LAMOST-LRS",
    "PHOENIX-ACES",
    "Castelli-Kurucz",
    "CARMENES-CARACAL",
    "GALAH-HERMES",
}


def _wavelengths():
    """1221 increasing wavelengths from 90.9 A to 1.6e6 A, like the ATLAS9 grid."""
    return np.geomspace(90.9, 1.6e6, 1221)


def _model_flux(wave, teff, logg):
    """Planck surface flux in FLAM, slightly gravity-dependent so columns differ."""
    lam = wave * 1e-8
    h, c, k = 6.62607015e-27, 2.99792458e10, 1.380649e-16
    flam = np.pi * 2 * h * c**2 / lam**5 / np.expm1(h * c / (lam * k * teff)) * 1e-8
    return flam * (1.0 + 0.01 * logg)


def _write_atlas_file(path, teff, m_h, missing=(0.0, 0.5), *, wave=None, atlas="Castelli"):
    """A STScI atlas table with this module's wide wavelength range; returns (path, wave)."""
    wave = _wavelengths() if wave is None else wave
    path = write_kurucz_file(
        path,
        teff,
        m_h,
        missing=missing,
        wave=wave,
        flux=lambda w, logg: _model_flux(w, teff, logg),
        atlas=atlas,
    )
    return path, wave


def test_file_names_follow_the_stsci_convention():
    assert kurucz_filename(5000, 0.0) == "ckp00_5000.fits"
    assert kurucz_filename(10000, -0.5) == "ckm05_10000.fits"
    assert kurucz_filename(3500, 0.2) == "ckp02_3500.fits"
    assert kurucz_filename(50000, -2.5) == "ckm25_50000.fits"
    assert kurucz_filename(8000, 0.0, atlas="k93") == "kp00_8000.fits"
    assert kurucz_filename(10000, 0.1, atlas="k93") == "kp01_10000.fits"
    assert kurucz_subdir(-0.5) == "ckm05"
    assert kurucz_subdir(0.5) == "ckp05"
    assert kurucz_subdir(-5.0, atlas="k93") == "km50"
    assert len(CK04_TEFF) == 76 and len(CK04_M_H) == 8 and len(K93_M_H) == 19
    for teff in CK04_TEFF:
        for m_h in CK04_M_H:
            name = kurucz_filename(teff, m_h)
            assert parse_kurucz_filename(f"ck04models/{kurucz_subdir(m_h)}/{name}") == {
                "teff": teff,
                "m_h": m_h,
                "atlas": "ck04",
            }
    for teff in K93_TEFF:
        name = kurucz_filename(teff, -1.0, atlas="k93")
        assert kurucz_filename(**parse_kurucz_filename(name)) == name


def test_names_off_the_grid_are_refused():
    with pytest.raises(ValueError, match="teff=5100 is not a point of the ck04 atlas"):
        kurucz_filename(5100, 0.0)
    with pytest.raises(ValueError, match=r"m_h=0\.3 is not a point of the ck04 atlas"):
        kurucz_filename(5000, 0.3)
    with pytest.raises(ValueError, match="atlas must be one of"):
        kurucz_filename(5000, 0.0, atlas="marcs")
    with pytest.raises(ValueError, match="not a STScI Kurucz atlas file name"):
        parse_kurucz_filename("ckp00-5000.fits")


def test_read_one_spectrum_per_gravity(tmp_path):
    path, wave = _write_atlas_file(tmp_path / "ckp00" / "ckp00_5000.fits", 5000, 0.0)
    assert identify_kurucz("read", str(path), None)
    for cls in (Spectrum, SpectrumList):
        formats = set(io_registry.identify_format("read", cls, str(path), None, [], {}))
        assert formats & STELLARML_FORMATS == {"Castelli-Kurucz"}
    spectra = SpectrumList.read(path)  # auto-identified
    assert len(spectra) == 9
    loggs = [s.meta["logg"].to_value(u.dex) for s in spectra]
    assert loggs == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]
    for spec, logg in zip(spectra, loggs, strict=True):
        assert spec.flux.unit == FLAM
        assert spec.flux.unit == u.erg / u.s / u.cm**2 / u.AA
        np.testing.assert_allclose(
            spec.flux.value, _model_flux(wave, 5000, logg).astype(np.float32), rtol=0
        )
        np.testing.assert_array_equal(spec.spectral_axis.to_value(u.AA), wave)
        assert spec.meta["teff"] == 5000 * u.K
        assert spec.meta["m_h"] == 0.0 * u.dex
        assert spec.meta["missing_logg"] == [0.0, 0.5]
        assert spec.meta["medium"] == "vacuum"
        assert spec.meta["label_names"] == ("teff", "logg", "m_h")
        assert spec.uncertainty is None
    # Surface flux peaks near the Wien wavelength of 5000 K (5800 A in F_lambda).
    peak = spectra[0].spectral_axis[np.argmax(spectra[0].flux)].to_value(u.AA)
    assert 5000 < peak < 6800


def test_spectrum_read_gives_a_batch(tmp_path):
    path, wave = _write_atlas_file(
        tmp_path / "ckm25_8000.fits", 8000, -2.5, missing=(0.0, 0.5, 1.0, 1.5, 5.0)
    )
    batch = Spectrum.read(path)
    assert batch.flux.shape == (6, wave.size)
    np.testing.assert_array_equal(batch.meta["logg"].value, [2.0, 2.5, 3.0, 3.5, 4.0, 4.5])
    assert batch.meta["missing_logg"] == [0.0, 0.5, 1.0, 1.5, 5.0]
    assert batch.meta["m_h"] == -2.5 * u.dex
    listed = read_kurucz(path)
    for row, spec in enumerate(listed):
        np.testing.assert_array_equal(batch.flux[row], spec.flux)
    with open(path, "rb") as fh:
        assert read_kurucz_batch(fh).flux.shape == (6, wave.size)


def test_bad_files_raise_clear_errors(tmp_path):
    empty, _ = _write_atlas_file(tmp_path / "ckp00_3500.fits", 3500, 0.0, missing=tuple(CK04_LOGG))
    with pytest.raises(ValueError, match="every gravity column is zero"):
        SpectrumList.read(empty)
    unsorted = _wavelengths()
    unsorted[[10, 11]] = unsorted[[11, 10]]
    bad, _ = _write_atlas_file(tmp_path / "ckp00_4000.fits", 4000, 0.0, wave=unsorted)
    with pytest.raises(ValueError, match="strictly increasing"):
        read_kurucz(bad)
    # A table without TEFF/LOG_Z is not a Kurucz file (and not identified as one).
    path, _ = _write_atlas_file(tmp_path / "noteff.fits", 4000, 0.0)
    with fits.open(path) as hdul:
        del hdul[0].header["TEFF"]
        hdul.writeto(tmp_path / "noteff2.fits")
    assert not identify_kurucz("read", str(tmp_path / "noteff2.fits"), None)
    with pytest.raises(ValueError, match="no numeric TEFF/LOG_Z"):
        read_kurucz(tmp_path / "noteff2.fits")
    with fits.open(path) as hdul:
        hdul[1].columns.change_unit("g10", "furlong")
        hdul.writeto(tmp_path / "badunit.fits")
    with pytest.raises(ValueError, match="unknown flux unit 'furlong'"):
        read_kurucz(tmp_path / "badunit.fits")
    with fits.open(path) as hdul:
        for name in GCOLS:
            hdul[1].columns.change_unit(name, "Jy")
        hdul.writeto(tmp_path / "jansky.fits")
    with pytest.raises(ValueError, match="not a flux per unit wavelength"):
        read_kurucz(tmp_path / "jansky.fits")
