"""Echelle readers: CARMENES/CARACAL (test-written files) and the real GALAH camera files."""

import shutil

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.io import registry as io_registry
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum, SpectrumList

from stellarml.io.echelle import (
    CARMENES_RESOLUTION,
    GALAH_RESOLUTION,
    galah_ccd_files,
    identify_carmenes,
    identify_galah,
    parse_galah_filename,
    read_carmenes,
    read_galah,
    read_galah_star,
)
from stellarml.spectra import SpectrumParts
from stellarml.spectra.prepare import input_rows

C_KMS = 299792.458

# The stellarml loaders; a test-written file must be claimed by exactly one of them.
STELLARML_FORMATS = {
    "LAMOST-LRS",
    "PHOENIX-ACES",
    "Castelli-Kurucz",
    "CARMENES-CARACAL",
    "GALAH-HERMES",
}


# --------------------------------------------------------------------------------------
# CARMENES
# --------------------------------------------------------------------------------------
def _carmenes_arrays(n_orders, npix, blue, red, seed=1):
    """Orders spaced geometrically from ``blue`` to ``red``, 1.3 km/s pixels."""
    rng = np.random.default_rng(seed)
    centres = np.geomspace(blue, red, n_orders)
    pix = np.arange(npix) - npix / 2
    wave = centres[:, None] * np.exp(pix[None, :] * 1.3 / C_KMS)
    blaze = np.sinc(pix / npix)[None, :] ** 2
    cont = 1.0 + 0.1 * np.arange(n_orders)[:, None] * blaze
    lines = 1 - 0.5 * np.exp(-0.5 * ((wave % 7.0) - 3.5) ** 2 / 0.01)
    spec = cont * lines * (1 + 0.01 * rng.standard_normal(wave.shape))
    sig = 0.01 * cont
    return wave, spec.astype(np.float32), cont.astype(np.float32), sig.astype(np.float32)


def _write_caracal(path, *, arm="vis", reverse_orders=False, drop=None, **header_extra):
    """A CARACAL file: primary header + image extensions SPEC, CONT, SIG, WAVE."""
    if arm == "vis":
        wave, spec, cont, sig = _carmenes_arrays(61, 4096, 5200.0, 9600.0)
    else:
        wave, spec, cont, sig = _carmenes_arrays(28, 4080, 9600.0, 17100.0)
    spec[3, 100:110] = np.nan  # NaN marks bad pixels in CARACAL
    sig[5, 7] = np.nan
    if reverse_orders:
        wave, spec, cont, sig = (a[:, ::-1] for a in (wave, spec, cont, sig))
    header = fits.Header()
    header["INSTRUME"] = "CARMENES"
    header["OBJECT"] = "J11033+359"
    header["DATE-OBS"] = "2016-03-14T22:10:05"
    header["EXPTIME"] = 1200.0
    header["HIERARCH CARACAL BERV"] = (12.345, "[km/s] barycentric correction")
    header["HIERARCH CARACAL BJD"] = (57462.42, "BJD - 2400000")
    header["HIERARCH CARACAL DRIFT RV"] = 0.0
    for o in range(spec.shape[0]):
        header[f"HIERARCH CARACAL FOX SNR {o}"] = 40.0 + o
    for key, value in header_extra.items():
        header[key] = value
    hdus = [fits.PrimaryHDU(header=header)]
    for name, data in (("SPEC", spec), ("CONT", cont), ("SIG", sig), ("WAVE", wave)):
        if name != drop:
            hdus.append(fits.ImageHDU(data, name=name))
    fits.HDUList(hdus).writeto(path)
    return wave, spec, cont, sig


def test_carmenes_orders(tmp_path):
    path = tmp_path / "car-20160314T22h10m05s-sci-gtoc-vis_A.fits"
    wave, spec, cont, sig = _write_caracal(path)
    assert identify_carmenes("read", str(path), None)
    for cls in (Spectrum, SpectrumList):
        formats = set(io_registry.identify_format("read", cls, str(path), None, [], {}))
        assert formats & STELLARML_FORMATS == {"CARMENES-CARACAL"}
    orders = SpectrumList.read(path)  # auto-identified
    assert isinstance(orders, SpectrumParts)  # the orders of one star: one row in prepare
    assert len(orders) == 61
    for o, order in enumerate(orders):
        np.testing.assert_array_equal(order.spectral_axis.to_value(u.AA), wave[o])
        np.testing.assert_array_equal(order.flux.value, spec[o].astype(float))
        assert isinstance(order.uncertainty, StdDevUncertainty)
        np.testing.assert_array_equal(order.uncertainty.array, sig[o].astype(float))
        assert order.meta["order"] == o
        assert order.meta["snr"] == 40.0 + o
    assert np.flatnonzero(orders[3].mask).tolist() == list(range(100, 110))
    assert np.flatnonzero(orders[5].mask).tolist() == [7]
    assert sum(int(o.mask.sum()) for o in orders) == 11
    meta = orders[0].meta
    assert meta["arm"] == "VIS"
    assert meta["resolution"] == CARMENES_RESOLUTION["VIS"] == 94600.0
    assert meta["medium"] == "vacuum"
    assert meta["frame"] == "topocentric"
    assert meta["berv"] == 12.345 * u.km / u.s
    assert meta["bjd"] == pytest.approx(2457462.42)
    assert meta["object"] == "J11033+359"
    np.testing.assert_array_equal(meta["continuum"], cont[0])
    assert 5100 < orders[0].spectral_axis[0].value < 5200
    assert 9600 < orders[-1].spectral_axis[-1].value < 9700


def test_carmenes_normalisation_order_selection_and_reversed_orders(tmp_path):
    path = tmp_path / "car-20170101T01h00m00s-sci-gtoc-nir_A.fits"
    wave, spec, cont, sig = _write_caracal(path, arm="nir", reverse_orders=True)
    orders = read_carmenes(path, normalize=True, orders=[0, 27])
    assert [o.meta["order"] for o in orders] == [0, 27]
    first = orders[0]
    assert first.meta["arm"] == "NIR" and first.meta["resolution"] == 80400.0
    # Stored red-to-blue within each order: read back in increasing wavelength.
    assert np.all(np.diff(first.spectral_axis.value) > 0)
    np.testing.assert_array_equal(first.spectral_axis.value, wave[0][::-1])
    np.testing.assert_allclose(first.flux.value, (spec[0] / cont[0])[::-1], rtol=1e-6)
    np.testing.assert_allclose(first.uncertainty.array, (sig[0] / cont[0])[::-1], rtol=1e-6)
    assert first.meta["normalized"] is True
    one = Spectrum.read(path, order=27)
    np.testing.assert_array_equal(one.flux.value, spec[27][::-1].astype(float))
    with pytest.raises(ValueError, match=r"SpectrumList\.read\(path\)"):
        Spectrum.read(path)
    with pytest.raises(ValueError, match=r"orders \[28\] out of range 0\.\.27"):
        read_carmenes(path, orders=28)


def test_carmenes_bad_files(tmp_path):
    nosig = tmp_path / "nosig.fits"
    _write_caracal(nosig, drop="SIG")
    assert not identify_carmenes("read", str(nosig), None)
    with pytest.raises(ValueError, match="not a CARACAL file"):
        read_carmenes(nosig)
    nocont = tmp_path / "nocont.fits"
    _write_caracal(nocont, drop="CONT")
    assert len(read_carmenes(nocont)) == 61
    with pytest.raises(ValueError, match="normalize=True needs the CONT extension"):
        read_carmenes(nocont, normalize=True)
    badwave = tmp_path / "badwave.fits"
    _write_caracal(badwave)
    with fits.open(badwave, mode="update") as hdul:
        hdul["WAVE"].data[10, 2000] = hdul["WAVE"].data[10, 0]
    with pytest.raises(ValueError, match="WAVE of order 10 is not strictly monotonic"):
        SpectrumList.read(badwave)
    other = tmp_path / "other.fits"
    _write_caracal(other, INSTRUME="HARPS")
    with fits.open(other, mode="update") as hdul:
        for key in list(hdul[0].header):
            if key.startswith("CARACAL"):
                del hdul[0].header[key]
    assert not identify_carmenes("read", str(other), None)


# --------------------------------------------------------------------------------------
# GALAH
# --------------------------------------------------------------------------------------
def _galah_files(data_dir):
    files = sorted((data_dir / "galah").glob("*.fits"))
    assert [f.name for f in files] == [f"131216002601003{i}.fits" for i in range(1, 5)]
    return files


def test_galah_camera_files(data_dir):
    ranges = {1: (4714.1, 4902.5), 2: (5649.9, 5873.6), 3: (6477.5, 6735.6), 4: (7585.7, 7886.7)}
    for path in _galah_files(data_dir):
        spec = Spectrum.read(path)  # auto-identified
        ccd = spec.meta["ccd"]
        assert path.name.endswith(f"{ccd}.fits")
        lo, hi = ranges[ccd]
        assert spec.spectral_axis[0].value == pytest.approx(lo, abs=0.1)
        assert spec.spectral_axis[-1].value == pytest.approx(hi, abs=0.1)
        with fits.open(path) as hdul:
            flux = hdul[0].data.astype(float)
            rel = hdul[1].data.astype(float)
            header = hdul[0].header
            step = header["CDELT1"]
            start = header["CRVAL1"]
        np.testing.assert_allclose(spec.spectral_axis.value, start + step * np.arange(4096))
        np.testing.assert_array_equal(spec.flux.value, flux)
        assert spec.flux.unit == u.ct
        # input_sigma is relative: the absolute error is sigma * flux (S/N 100-330 here).
        np.testing.assert_allclose(spec.uncertainty.array, rel * flux)
        assert 100 < np.median(spec.flux.value / spec.uncertainty.array) < 350
        assert not spec.mask.any()
        assert spec.meta["medium"] == "air"
        assert spec.meta["resolution"] == GALAH_RESOLUTION
        assert spec.meta["sobject_id"] == "131216002601003"
        assert spec.meta["star_id"] == "GALAH 131216002601003"
        assert spec.meta["object"] == "Flux Standard - mu Leo"
        assert spec.meta["baryeff"].unit == u.km / u.s


def test_galah_normalised_spectrum(data_dir):
    path = _galah_files(data_dir)[2]
    norm = read_galah(path, normalised=True)
    reduced = read_galah(path)
    assert norm.flux.unit == u.dimensionless_unscaled
    assert 0.9 < np.median(norm.flux.value) < 1.0
    # Same pixels; the normalised axis is Doppler-shifted by one constant factor.
    ratio = norm.spectral_axis.value / reduced.spectral_axis.value
    assert np.ptp(ratio) < 1e-9 and abs(ratio[0] - 1) < 1e-4
    np.testing.assert_allclose(
        norm.uncertainty.array / norm.flux.value,
        reduced.uncertainty.array / reduced.flux.value,
        rtol=1e-12,
    )


def test_galah_star_as_a_list(data_dir, tmp_path):
    files = _galah_files(data_dir)
    star = SpectrumList.read(files[2])  # all four cameras of the star
    assert isinstance(star, SpectrumParts) and input_rows(star) == 1
    assert [s.meta["ccd"] for s in star] == [1, 2, 3, 4]
    assert [s.meta["camera"] for s in star] == ["blue", "green", "red", "ir"]
    two = SpectrumList.read([files[3], files[0]])
    assert [s.meta["ccd"] for s in two] == [1, 4]
    assert len(read_galah_star(files[1], all_ccds=False)) == 1
    assert galah_ccd_files(files[0]) == files
    assert parse_galah_filename(files[3]) == {"sobject_id": "131216002601003", "ccd": 4}
    assert parse_galah_filename("spectrum.fits") is None
    # Two stars in one list are refused.
    other = tmp_path / "1704180037012052.fits"
    shutil.copy(files[1], other)
    with pytest.raises(ValueError, match="different stars"):
        read_galah_star([files[0], other])


def test_galah_bad_files(data_dir, tmp_path):
    path = _galah_files(data_dir)[0]
    # A DR2-style file with only four HDUs has no normalised spectrum.
    short = tmp_path / "1312160026010031.fits"
    with fits.open(path) as hdul:
        fits.HDUList([h.copy() for h in hdul[:4]]).writeto(short)
    assert identify_galah("read", str(short), None)
    assert read_galah(short).flux.size == 4096
    with pytest.raises(ValueError, match="no normalised spectrum"):
        read_galah(short, normalised=True)
    # Without input_sigma in HDU 1 it is not a GALAH camera file.
    renamed = tmp_path / "renamed.fits"
    with fits.open(path) as hdul:
        hdus = [h.copy() for h in hdul]
        hdus[1].name = "SIGMA"
        fits.HDUList(hdus).writeto(renamed)
    assert not identify_galah("read", str(renamed), None)
    with pytest.raises(ValueError, match="not a GALAH/HERMES camera file"):
        read_galah(renamed)
    # Bad pixels: a NaN flux and a zero relative error are masked.
    holes = tmp_path / "1312160026010032.fits"
    with fits.open(path) as hdul:
        hdus = [h.copy() for h in hdul]
        hdus[0].data[10] = np.nan
        hdus[1].data[20] = 0.0
        fits.HDUList(hdus).writeto(holes)
    assert np.flatnonzero(read_galah(holes).mask).tolist() == [10, 20]
