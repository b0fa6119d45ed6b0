"""specutils' own APOGEE and BOSS loaders on the real SDSS files, and what stellarml adds."""

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import InverseVariance, StdDevUncertainty
from specutils import Spectrum, SpectrumList

import stellarml.io.echelle  # noqa: F401  (registers the GALAH loader)
from stellarml.flags import FATAL, LabelFlag
from stellarml.io.lamost import read_lamost
from stellarml.io.sdss import (
    APOGEE_BAD_PIXMASK,
    APOGEE_RESOLUTION,
    read_apogee,
    read_boss,
    sdss_for_stellarml,
)
from stellarml.spectra import PreparationSettings, log_lambda_grid, prepare

APSTAR = "apStar-dr17-2M17335483-2753043.fits"
APSTAR_ONE_VISIT = "apStar-dr17-2M19485057+5005279.fits"
APVISIT = "apVisit-r13-5095-55844-128.fits"
BOSS = "spec-3586-55181-0500.fits"
# specutils parses the BOSS BUNIT '1E-17 erg/cm^2/s/Ang' correctly but astropy warns
# that it "contains multiple slashes"; only the tests that call specutils' BOSS
# loader directly ignore that one warning.
BOSS_UNIT_WARNING = pytest.mark.filterwarnings(
    "ignore:.*contains multiple slashes:astropy.units.UnitsWarning"
)


def _hdu(path, index):
    with fits.open(path) as hdul:
        return np.array(hdul[index].data), hdul[0].header.copy()


def test_specutils_apstar(data_dir):
    path = data_dir / "sdss" / APSTAR
    raw = Spectrum.read(path, format="APOGEE apStar")
    flux, header = _hdu(path, 1)
    pixmask, _ = _hdu(path, 3)
    assert raw.flux.unit == u.Unit("1e-17 erg / (Angstrom cm2 s)")
    assert isinstance(raw.uncertainty, StdDevUncertainty)
    assert raw.mask is None  # specutils ignores the APOGEE pixel mask
    wave = raw.spectral_axis.to_value(u.AA)
    assert np.all(np.diff(wave) > 0)
    assert wave[0] == pytest.approx(10**4.179) and wave.size == 8575
    np.testing.assert_array_equal(raw.flux.value, flux[0])  # row 0: the combined spectrum
    spec = read_apogee(path)
    expected = ((pixmask[0] & APOGEE_BAD_PIXMASK) != 0) | ~np.isfinite(flux[0])
    err, _ = _hdu(path, 2)
    expected |= ~(err[0] > 0)
    np.testing.assert_array_equal(spec.mask, expected)
    assert 700 < spec.mask.sum() < 1000
    assert spec.meta["medium"] == "vacuum"
    assert spec.meta["resolution"] == APOGEE_RESOLUTION
    assert spec.radial_velocity.to_value(u.km / u.s) == 0  # apStar is in the rest frame
    assert header["NVISITS"] == 3
    visit = read_apogee(path, row=2)
    np.testing.assert_array_equal(visit.flux.value, flux[2])
    assert visit.meta["row"] == 2
    with pytest.raises(ValueError, match=r"row 5 out of range 0\.\.4"):
        read_apogee(path, row=5)
    with pytest.raises(ValueError, match="split_chips applies to apVisit files only"):
        read_apogee(path, split_chips=True)
    assert read_apogee(data_dir / "sdss" / APSTAR_ONE_VISIT).flux.size == 8575


def test_specutils_apvisit_is_decreasing_and_the_helper_fixes_it(data_dir):
    path = data_dir / "sdss" / APVISIT
    raw = Spectrum.read(path, format="APOGEE apVisit")
    wave = raw.spectral_axis.to_value(u.AA)
    assert wave.size == 3 * 4096
    # Chips a, b, c (red to blue), each stored red-to-blue: strictly decreasing overall.
    assert np.all(np.diff(wave) < 0)
    assert raw.radial_velocity.to_value(u.km / u.s) == 0
    spec = read_apogee(path)
    axis = spec.spectral_axis.to_value(u.AA)
    np.testing.assert_array_equal(axis, wave[::-1])
    np.testing.assert_array_equal(spec.flux.value, raw.flux.value[::-1])
    pixmask, header = _hdu(path, 3)
    np.testing.assert_array_equal(spec.meta["pixmask"], pixmask.ravel()[::-1])
    bad = (pixmask.ravel()[::-1] & APOGEE_BAD_PIXMASK) != 0
    np.testing.assert_array_equal(spec.mask, bad)
    assert spec.redshift.value * 299792.458 == pytest.approx(header["VRAD"], abs=1e-9)
    assert header["VRAD"] == pytest.approx(-44.4206)
    chips = read_apogee(path, split_chips=True)
    assert isinstance(chips, SpectrumList) and len(chips) == 3
    assert [c.meta["chip"] for c in chips] == ["c", "b", "a"]
    edges = [(c.spectral_axis[0].value, c.spectral_axis[-1].value) for c in chips]
    assert edges[0][1] < edges[1][0] and edges[1][1] < edges[2][0]  # two chip gaps
    assert 15140 < edges[0][0] < 15145 and 16950 < edges[2][1] < 16960
    for chip in chips:
        assert chip.flux.size == 4096
        assert np.all(np.diff(chip.spectral_axis.value) > 0)
        assert chip.radial_velocity == spec.radial_velocity
    np.testing.assert_array_equal(np.concatenate([c.mask for c in chips]), spec.mask)
    again = sdss_for_stellarml(raw)
    np.testing.assert_array_equal(again.spectral_axis.value, axis)
    assert again.meta["medium"] == "vacuum"


@BOSS_UNIT_WARNING
def test_specutils_boss_spec(data_dir):
    path = data_dir / "sdss" / BOSS
    raw = Spectrum.read(path, format="SDSS-III/IV spec")  # auto: see test_identify.py
    with fits.open(path) as hdul:
        table = hdul[1].data
        and_mask = np.array(table["and_mask"])
        ivar = np.array(table["ivar"], dtype=float)
        z = float(hdul[2].data["Z"][0])
    assert isinstance(raw.uncertainty, InverseVariance)
    np.testing.assert_array_equal(raw.uncertainty.array, ivar)
    np.testing.assert_array_equal(raw.mask, and_mask != 0)
    wave = raw.spectral_axis.to_value(u.AA)
    assert 3560 < wave[0] < 3565 and 10320 < wave[-1] < 10330  # vacuum, log-linear
    assert "medium" not in raw.meta
    spec = read_boss(path)
    assert spec.meta["medium"] == "vacuum"
    assert 1700 < spec.meta["resolution"] < 2000  # median lambda/FWHM from WDISP
    assert spec.redshift.value == pytest.approx(z) and spec.meta["zwarning"] == 0
    assert spec.meta["class"] == "STAR"
    np.testing.assert_array_equal(spec.mask, (and_mask != 0) | (ivar <= 0))
    assert read_boss(path, use_redshift=False).redshift.value == 0


def test_helpers_refuse_other_files(data_dir):
    with pytest.raises(ValueError, match="not an APOGEE apStar or apVisit file"):
        read_apogee(data_dir / "sdss" / BOSS)
    with pytest.raises(ValueError, match="not an SDSS-III/IV BOSS spec file"):
        read_boss(data_dir / "sdss" / APSTAR)
    with pytest.raises(TypeError, match="expected a specutils Spectrum"):
        sdss_for_stellarml(np.ones(10))
    galah = Spectrum.read(data_dir / "galah" / "1312160026010031.fits", format="GALAH-HERMES")
    with pytest.raises(ValueError, match="not an SDSS/BOSS or APOGEE spectrum"):
        sdss_for_stellarml(galah)


@pytest.fixture(scope="module")
def optical():
    grid = log_lambda_grid(4000.0, 6800.0, 1e-4) * u.AA
    return PreparationSettings(wavelength=grid, medium="vacuum", resolution=1500.0)


@pytest.fixture(scope="module")
def hband():
    grid = log_lambda_grid(15200.0, 16900.0, 2e-5) * u.AA
    return PreparationSettings(wavelength=grid, medium="vacuum", resolution=20000.0)


@BOSS_UNIT_WARNING
def test_prepare_accepts_the_sdss_spectra(data_dir, optical, hband):
    sdss = data_dir / "sdss"
    boss_raw = Spectrum.read(sdss / BOSS, format="SDSS-III/IV spec")
    inputs = [
        read_boss(sdss / BOSS),
        boss_raw,
        read_lamost(data_dir / "lamost" / "3703110.fits"),
        read_apogee(sdss / APSTAR),
        Spectrum.read(sdss / APVISIT, format="APOGEE apVisit"),  # specutils' decreasing axis
        read_apogee(sdss / APVISIT, split_chips=True),
    ]
    batch = prepare(inputs, optical)
    assert len(batch) == 8  # the chip list counts three spectra
    fatal = (batch.flags & FATAL) != 0
    assert not fatal[:3].any(), batch.messages[:3]
    for i in range(3):
        assert np.count_nonzero(batch.ivar[i]) > 0.8 * batch.ivar.shape[1]
        assert 0.5 < np.median(batch.flux[i][batch.ivar[i] > 0]) < 1.2
    # APOGEE is H band: nothing on an optical grid.
    assert np.all((batch.flags[3:] & LabelFlag.NO_WAVELENGTH_OVERLAP) != 0)
    assert all(batch.ivar[i].sum() == 0 for i in range(3, 8))
    assert "15" in batch.messages[3] and "Angstrom" in batch.messages[3]
    # On an H-band grid the APOGEE spectra are usable; masks and chip gaps cost pixels.
    hbatch = prepare(
        [
            read_apogee(sdss / APSTAR),
            read_apogee(sdss / APVISIT),
            Spectrum.read(sdss / APVISIT, format="APOGEE apVisit"),
        ],
        hband,
    )
    assert not np.any(hbatch.flags & FATAL), hbatch.messages
    good = np.count_nonzero(hbatch.ivar, axis=1) / hbatch.ivar.shape[1]
    assert np.all(good > 0.6)
    assert good[1] < good[2]  # the helper's pixel mask removes bad pixels specutils keeps
    # VRAD is applied as lambda / (1 + VRAD/c) and reported as it is
    assert hbatch.rv[1] == pytest.approx(-44.4206, abs=1e-9) and hbatch.rv[2] == 0
    assert hbatch.rv_source[1] == "header" and hbatch.rv_source[2] == "none"


def test_spectrum_read_uses_the_stellarml_loaders(data_dir):
    """A plain Spectrum.read of a BOSS or APOGEE file gives read_boss / read_apogee."""
    from astropy.io import registry

    sdss = data_dir / "sdss"
    found = registry.identify_format("read", Spectrum, str(sdss / BOSS), None, [], {})
    assert set(found) == {"SDSS-III/IV spec", "SDSS-BOSS-stellarml"}  # ours wins (priority)
    boss = Spectrum.read(sdss / BOSS)
    with fits.open(sdss / BOSS) as hdul:
        z, z_err = float(hdul[2].data["Z"][0]), float(hdul[2].data["Z_ERR"][0])
        assert hdul[2].data["ZWARNING"][0] == 0
    assert boss.redshift.value == pytest.approx(z, rel=1e-6)
    assert boss.radial_velocity.to_value(u.km / u.s) == pytest.approx(-30.35, abs=0.01)
    assert boss.meta["rv_source"] == "header" and boss.meta["rv_keyword"] == "Z"
    assert boss.meta["rv_err"] == pytest.approx(299792.458 * z_err) == pytest.approx(3.22, abs=0.01)
    assert boss.meta["medium"] == "vacuum"
    assert 1700 < boss.meta["resolution"] < 2000  # median lambda / FWHM from WDISP
    np.testing.assert_array_equal(boss.flux.value, read_boss(sdss / BOSS).flux.value)
    # without the redshift: no RV and no provenance claiming one
    plain = read_boss(sdss / BOSS, use_redshift=False)
    assert "rv_source" not in plain.meta and plain.spectral_axis._radial_velocity is None

    for name, kind in ((APSTAR, "apStar"), (APVISIT, "apVisit")):
        found = registry.identify_format("read", Spectrum, str(sdss / name), None, [], {})
        assert set(found) == {f"APOGEE {kind}", "SDSS-APOGEE-stellarml"}
        spec = Spectrum.read(sdss / name)
        ref = read_apogee(sdss / name)
        np.testing.assert_array_equal(spec.flux.value, ref.flux.value)
        np.testing.assert_array_equal(spec.mask, ref.mask)
        assert np.all(np.diff(spec.spectral_axis.value) > 0)
        assert spec.meta["medium"] == "vacuum" and spec.meta["resolution"] == APOGEE_RESOLUTION
        assert spec.meta["rv_source"] == "header"
    star = Spectrum.read(sdss / APSTAR)
    header = fits.getheader(sdss / APSTAR)
    # apStar: already in the rest frame, the pipeline's VERR and VHELIO kept
    assert star.radial_velocity.to_value(u.km / u.s) == 0
    assert star.meta["rv_err"] == pytest.approx(header["VERR"]) == pytest.approx(0.0278, abs=1e-4)
    assert star.meta["vhelio"] == pytest.approx(header["VHELIO"]) == pytest.approx(15.68, abs=0.01)
    visit = Spectrum.read(sdss / APVISIT)
    assert visit.redshift.value * 299792.458 == pytest.approx(-44.4206, abs=1e-9)
    assert visit.meta["rv_keyword"] == "VRAD" and "rv_err" not in visit.meta
    # an rv given by the caller is "given", not "header"
    given = read_apogee(sdss / APVISIT, rv=-40.0)
    assert given.meta["rv_source"] == "given" and given.meta["rv_keyword"] is None
    assert given.redshift.value * 299792.458 == pytest.approx(-40.0, abs=1e-9)
