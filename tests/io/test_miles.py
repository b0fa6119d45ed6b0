"""Tests of the MILES specutils loader."""

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.utils.exceptions import AstropyDeprecationWarning
from specutils import Spectrum, Spectrum1D, SpectrumList
from specutils.io.registers import identify_spectrum_format

import stellarml.io  # noqa: F401  (registers the loaders)
from stellarml.io.miles import identify_miles, miles_loader


def _write_miles_like(path, *, fwhm=2.5, crpix=1.0, tpllib="MILES", n=50):
    header = fits.Header()
    header["TPLLIB"] = tpllib
    if fwhm is not None:
        header["FWHM"] = fwhm
    header["CRPIX1"] = crpix
    header["CRVAL1"] = 4000.0
    header["CDELT1"] = 0.9
    fits.PrimaryHDU(np.linspace(0.5, 1.5, n).astype(">f8"), header=header).writeto(path)
    return path


@pytest.mark.data
def test_reads_real_miles_file_without_format(data_dir):
    path = data_dir / "miles" / "MILES_res2.50_star_m0001V.fits"
    assert "MILES" in identify_spectrum_format(str(path))
    spec = Spectrum.read(path)
    with fits.open(path) as hdul:
        raw = hdul[0].data.astype(float)
        header = hdul[0].header
    assert spec.flux.unit == u.dimensionless_unscaled
    np.testing.assert_array_equal(spec.flux.value, raw)
    assert spec.uncertainty is None and spec.mask is None
    assert spec.spectral_axis.unit == u.AA
    assert spec.spectral_axis[0] == 3540.5 * u.AA
    assert spec.spectral_axis[-1].value == pytest.approx(7409.6, abs=1e-6)
    np.testing.assert_allclose(np.diff(spec.spectral_axis.value), 0.9, rtol=1e-9)
    assert spec.meta["medium"] == "air"
    assert spec.meta["lsf_fwhm"] == 2.5 * u.AA
    assert spec.meta["miles_id"] == "0001"
    assert spec.meta["header"]["TPLLIB"].strip() == "MILES"
    assert spec.meta["header"]["NAXIS1"] == header["NAXIS1"] == 4300


@pytest.mark.data
def test_list_and_deprecated_class_and_open_files(data_dir):
    path = data_dir / "miles" / "MILES_res2.50_star_m0003V.fits"
    (spec,) = SpectrumList.read(path)
    assert spec.meta["miles_id"] == "0003"
    with pytest.warns(AstropyDeprecationWarning):
        old = Spectrum1D.read(path)
    np.testing.assert_array_equal(old.flux, spec.flux)
    with fits.open(path) as hdul:
        from_hdul = Spectrum.read(hdul, format="MILES")
    assert from_hdul.meta["miles_id"] == "0003"
    with open(path, "rb") as fh:
        from_fh = miles_loader(fh)
    np.testing.assert_array_equal(from_fh.flux, spec.flux)


def test_written_fixtures(tmp_path):
    path = _write_miles_like(tmp_path / "MILES_res2.50_star_m0123V.fits", crpix=3.0)
    assert identify_miles("read", str(path), None)
    spec = Spectrum.read(path)
    # CRVAL1 is the wavelength of pixel CRPIX1 (1-based)
    assert spec.spectral_axis[2] == 4000.0 * u.AA
    assert spec.spectral_axis[0] == (4000.0 - 1.8) * u.AA
    assert spec.meta["miles_id"] == "0123"
    # FWHM missing from the header: taken from the file name; no star number: None
    nofwhm = Spectrum.read(_write_miles_like(tmp_path / "MILES_res2.51_x.fits", fwhm=None))
    assert nofwhm.meta["lsf_fwhm"] == 2.51 * u.AA and nofwhm.meta["miles_id"] is None
    # other 1-D FITS files are not MILES
    other = _write_miles_like(tmp_path / "other.fits", tpllib="SOMETHING")
    assert not identify_miles("read", str(other), None)
    assert "MILES" not in identify_spectrum_format(str(other))
    assert not identify_miles("write", str(path), None)
    broken = tmp_path / "broken.fits"
    fits.PrimaryHDU(np.ones(5)).writeto(broken)
    with pytest.raises(ValueError, match="CRVAL1"):
        Spectrum.read(broken, format="MILES")


def test_meta_medium_lsf_and_rest_frame(data_dir):
    spec = Spectrum.read(data_dir / "miles" / "MILES_res2.50_star_m0001V.fits")
    assert spec.meta["medium"] == "air"
    assert spec.meta["lsf_fwhm"] == 2.5 * u.AA
    # MILES spectra are published in the rest frame: rv 0, from the file, not unknown
    assert spec.spectral_axis._radial_velocity == 0 * u.km / u.s
    assert spec.meta["rv_source"] == "header" and spec.meta["rv_keyword"] == "rest frame (MILES)"
