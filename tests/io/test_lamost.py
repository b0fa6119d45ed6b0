"""LAMOST LRS reader: the 25 real DR10 files and test-written DR1-DR7 image files."""

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.io import registry as io_registry
from astropy.nddata import InverseVariance
from specutils import Spectrum, SpectrumList

from stellarml.io.lamost import LAMOST_RESOLUTION, identify_lamost, read_lamost

# The DR10 primary headers keep NAXIS1/NAXIS2 from the old layout next to NAXIS = 0,
# which astropy refuses to write unless told to; the copies here keep that quirk.


def _lamost_files(data_dir):
    files = sorted((data_dir / "lamost").glob("*.fits"))
    assert len(files) == 25
    return files


def _columns(path):
    with fits.open(path) as hdul:
        row = hdul[1].data[0]
        cols = {
            name: np.array(row[name], dtype=float)
            for name in ("FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK", "NORMALIZATION")
        }
        header = hdul[0].header.copy()
    return cols, header


def test_all_real_files_read_with_values_from_the_fits_columns(data_dir):
    # Auto-identification of every real file is checked in test_identify.py.
    for path in _lamost_files(data_dir):
        spec = Spectrum.read(path, format="LAMOST-LRS")
        cols, header = _columns(path)
        wave = spec.spectral_axis.to_value(u.AA)
        np.testing.assert_array_equal(wave, cols["WAVELENGTH"])
        assert 3690 < wave[0] < 3710 and 9080 < wave[-1] < 9100
        np.testing.assert_array_equal(spec.flux.value, cols["FLUX"])
        assert spec.flux.unit == u.dimensionless_unscaled
        assert isinstance(spec.uncertainty, InverseVariance)
        np.testing.assert_array_equal(spec.uncertainty.array, cols["IVAR"])
        expected_mask = (cols["ANDMASK"] != 0) | (cols["IVAR"] <= 0) | (cols["FLUX"] == 0)
        np.testing.assert_array_equal(spec.mask, expected_mask)
        assert spec.meta["obsid"] == int(path.stem) == header["OBSID"]
        assert spec.meta["medium"] == "vacuum"
        assert spec.meta["resolution"] == LAMOST_RESOLUTION == 1800.0
        assert spec.meta["snr_g"] == header["SNRG"]
        assert spec.meta["ra"] == header["RA"] * u.deg
        assert spec.meta["dec"] == header["DEC"] * u.deg
        assert spec.meta["z"] == header["Z"]
        assert spec.redshift.value == pytest.approx(header["Z"], abs=1e-12)
        np.testing.assert_array_equal(spec.meta["normalized_flux"], cols["NORMALIZATION"])
        assert spec.meta["class"] == "STAR"


def test_known_bad_pixels_and_padding(data_dir):
    # 3712166: IVAR = 0 at pixels 3747-3751, ORMASK set at 3749 only, ANDMASK clean.
    spec = Spectrum.read(data_dir / "lamost" / "3712166.fits")
    assert np.flatnonzero(spec.mask).tolist() == [3747, 3748, 3749, 3750, 3751]
    assert np.flatnonzero(spec.meta["ormask"]).tolist() == [3749]
    assert not spec.meta["andmask"].any()
    # 3709013 pads its last 22 pixels with flux exactly 0 but a non-zero IVAR.
    spec = Spectrum.read(data_dir / "lamost" / "3709013.fits")
    assert spec.flux.size == 3902
    assert np.flatnonzero(spec.mask).tolist() == list(range(3880, 3902))
    assert np.all(spec.uncertainty.array[3880:] > 0)


def test_ormask_option_and_redshift_option(data_dir, tmp_path):
    path = data_dir / "lamost" / "3703110.fits"
    with fits.open(path) as hdul:
        hdul[1].data["ORMASK"][0][100:103] = 4.0
        hdul.writeto(tmp_path / "ormask.fits", output_verify="ignore")
    default = read_lamost(tmp_path / "ormask.fits")
    strict = read_lamost(tmp_path / "ormask.fits", mask_from="ormask")
    assert not default.mask[100:103].any()
    assert strict.mask[100:103].all()
    assert strict.meta["mask_from"] == "ormask"
    plain = read_lamost(path, use_redshift=False)
    assert plain.redshift.value == 0
    assert plain.meta["z"] == pytest.approx(-5.617e-05)
    with pytest.raises(ValueError, match="mask_from"):
        read_lamost(path, mask_from="pixmask")


def test_file_object_hdulist_and_spectrumlist(data_dir):
    path = data_dir / "lamost" / "3706009.fits"
    reference = Spectrum.read(path)  # auto-identified
    assert reference.meta["obsid"] == 3706009
    with open(path, "rb") as fh:
        from_fh = Spectrum.read(fh)
        assert not fh.closed
    with fits.open(path) as hdul:
        from_hdul = Spectrum.read(hdul, format="LAMOST-LRS")
    for spec in (from_fh, from_hdul):
        np.testing.assert_array_equal(spec.flux, reference.flux)
        np.testing.assert_array_equal(spec.mask, reference.mask)
    listed = SpectrumList.read(path)
    assert len(listed) == 1
    assert listed[0].meta["obsid"] == 3706009


def _write_old_layout(src, dest, *, third_row=None):
    """A DR1-DR7 style file: primary (5, npix) image, rows flux/ivar/wave/and/or."""
    cols, header = _columns(src)
    rows = [cols["FLUX"], cols["IVAR"], cols["WAVELENGTH"], cols["ANDMASK"], cols["ORMASK"]]
    if third_row is not None:
        rows[2] = third_row
    image = np.array(rows, dtype=np.float32)
    for key in ("NAXIS1", "NAXIS2", "EXTEND", "N_EXTEN"):
        header.remove(key, ignore_missing=True)
    header["DATA_V"] = "LAMOST DR5"
    fits.PrimaryHDU(image, header=header).writeto(dest)
    return cols


def test_old_primary_image_layout(data_dir, tmp_path):
    src = data_dir / "lamost" / "3703110.fits"
    dest = tmp_path / "spec-55877-B7708_sp03-110.fits"
    cols = _write_old_layout(src, dest)
    with fits.open(dest) as hdul:
        assert hdul[0].data.shape == (5, 3909)
        assert len(hdul) == 1
    assert "LAMOST-LRS" in io_registry.identify_format("read", Spectrum, str(dest), None, [], {})
    old = Spectrum.read(dest)
    new = Spectrum.read(src)
    np.testing.assert_array_equal(old.flux.value, new.flux.value)
    np.testing.assert_array_equal(old.uncertainty.array, new.uncertainty.array)
    np.testing.assert_array_equal(old.spectral_axis, new.spectral_axis)
    np.testing.assert_array_equal(old.mask, new.mask)
    assert old.meta["obsid"] == 3703110
    assert old.meta["layout"] == "DR1-DR7 primary image"
    assert "normalized_flux" not in old.meta
    # Pilot-survey files had a continuum-subtracted spectrum in row 3: the wavelengths
    # then come from the log-linear solution COEFF0/COEFF1 in the header.
    pilot = tmp_path / "pilot.fits"
    _write_old_layout(src, pilot, third_row=cols["FLUX"] - np.median(cols["FLUX"]))
    spec = read_lamost(pilot)
    # COEFF0 is rounded to 4 decimals in the header: 3e-7 (0.1 km/s) from the column.
    np.testing.assert_allclose(spec.spectral_axis.to_value(u.AA), cols["WAVELENGTH"], rtol=5e-7)


def test_bad_files_raise_clear_errors(data_dir, tmp_path):
    src = data_dir / "lamost" / "3703110.fits"
    # Not FITS at all.
    junk = tmp_path / "junk.fits"
    junk.write_text("not a FITS file")
    with pytest.raises(OSError, match="not a readable FITS file"):
        read_lamost(junk)
    assert not identify_lamost("read", str(junk), None)
    # Another telescope.
    with fits.open(src) as hdul:
        hdul[0].header["TELESCOP"] = "SDSS 2.5-M"
        hdul.writeto(tmp_path / "other.fits", output_verify="ignore")
    assert not identify_lamost("read", str(tmp_path / "other.fits"), None)
    with pytest.raises(ValueError, match="TELESCOP"):
        read_lamost(tmp_path / "other.fits")
    # A LAMOST file without the IVAR column is not identified, and reading it says why.
    with fits.open(src) as hdul:
        cols = [c for c in hdul[1].columns if c.name != "IVAR"]
        table = fits.BinTableHDU.from_columns(cols, name="COADD")
        fits.HDUList([hdul[0].copy(), table]).writeto(
            tmp_path / "noivar.fits", output_verify="ignore"
        )
    assert not identify_lamost("read", str(tmp_path / "noivar.fits"), None)
    with pytest.raises(ValueError, match="FLUX/IVAR/WAVELENGTH"):
        read_lamost(tmp_path / "noivar.fits")
    # Wavelengths out of order.
    with fits.open(src) as hdul:
        hdul[1].data["WAVELENGTH"][0][10] = 9000.0
        hdul.writeto(tmp_path / "unsorted.fits", output_verify="ignore")
    with pytest.raises(ValueError, match="strictly increasing"):
        Spectrum.read(tmp_path / "unsorted.fits")
    # A failed pipeline redshift (-9999) is recorded as None and not applied.
    with fits.open(src) as hdul:
        hdul[0].header["Z"] = -9999.0
        hdul.writeto(tmp_path / "noz.fits", output_verify="ignore")
    spec = read_lamost(tmp_path / "noz.fits")
    assert spec.meta["z"] is None
    assert spec.redshift.value == 0


def test_rv_from_the_header_of_every_file(data_dir):
    files = sorted((data_dir / "lamost").glob("*.fits"))
    assert len(files) == 25
    for path in files:
        spec = read_lamost(path)
        header = fits.getheader(path)
        assert spec.meta["rv_source"] == "header" and spec.meta["rv_keyword"] == "Z"
        assert spec.redshift.value == pytest.approx(header["Z"], rel=1e-12)
        assert spec.meta["rv_err"] == pytest.approx(299792.458 * header["Z_ERR"], rel=1e-12)
        assert spec.meta["medium"] == "vacuum" and spec.meta["resolution"] == LAMOST_RESOLUTION
        assert -600 < 299792.458 * header["Z"] < 600
    plain = read_lamost(files[0], use_redshift=False)
    assert "rv_source" not in plain.meta and plain.spectral_axis._radial_velocity is None
