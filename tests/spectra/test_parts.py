"""Several parts of one star (SpectrumParts) become one row, combined on the model grid."""

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import InverseVariance, StdDevUncertainty
from fake_model import FakeModel
from specutils import Spectrum, SpectrumList

from stellarml import derive_labels
from stellarml.flags import FATAL, LabelFlag
from stellarml.spectra import (
    PreparationSettings,
    SpectrumParts,
    log_lambda_grid,
    prepare,
    vacuum_to_air,
)
from stellarml.spectra.prepare import input_rows

SETTINGS = PreparationSettings(
    wavelength=log_lambda_grid(4800.0, 5400.0, 3.0e-4) * u.AA, resolution=1500.0
)
FAKE = FakeModel([[9000.0, -1000.0, -80000.0], [-5.0, 9.0, 30.0]], preparation=SETTINGS)


def _star(lo=4750.0, hi=5450.0, step=0.5, snr=80.0, seed=0, depth=0.4):
    """A spectrum with lines on a sloped continuum, with noise of S/N ``snr``."""
    rng = np.random.default_rng(seed)
    wave = np.arange(lo, hi, step)
    cont = 1e-15 * (1.0 + 3e-4 * (wave - 5000.0))
    lines = 1.0 - depth * np.exp(-0.5 * ((wave % 9.0) - 4.5) ** 2 / 0.5**2)
    flux = cont * lines
    err = cont / snr
    return wave, flux + err * rng.standard_normal(wave.size), err


def _spectrum(wave, flux, err, sel=slice(None), **kw):
    kw.setdefault("meta", {"resolution": 20000.0, "medium": "vacuum"})
    return Spectrum(
        flux=flux[sel] * u.erg / u.s / u.cm**2 / u.AA,
        spectral_axis=wave[sel] * u.AA,
        uncertainty=StdDevUncertainty(err[sel]),
        **kw,
    )


def test_parts_give_one_row_with_the_labels_of_the_spliced_spectrum():
    wave, flux, err = _star()
    whole = _spectrum(wave, flux, err)
    cuts = np.searchsorted(wave, [5000.0, 5200.0])
    parts = SpectrumParts(
        [
            _spectrum(wave, flux, err, slice(a, b))
            for a, b in [(0, cuts[0]), (*cuts,), (cuts[1], None)]
        ]
    )
    assert input_rows(parts) == 1 and input_rows(list(parts)) == 3
    one = prepare(parts, SETTINGS)
    ref = prepare(whole, SETTINGS)
    assert len(one) == 1 and one.flags[0] == ref.flags[0] == 0
    assert one.messages == [""]
    # the same pixels have weight but the two grid pixels that straddle the cuts (each part
    # covers them only in part), and the flux agrees away from the cuts (where each part's
    # continuum is fitted on one side only)
    grid = SETTINGS.wavelength.to_value(u.AA)
    lost = np.flatnonzero((one.ivar[0] > 0) != (ref.ivar[0] > 0))
    assert not one.ivar[0][lost].any()
    edges = np.sqrt(grid[:-1] * grid[1:])
    straddle = [np.searchsorted(edges, wave[c] - 0.25) for c in cuts]
    assert lost.tolist() == straddle
    far = np.all(np.abs(grid[:, None] - np.array([5000.0, 5200.0])) > 30.0, axis=1)
    # (within 1 %: the continuum is a 50 A Gaussian, and the parts are only 200 A wide)
    np.testing.assert_allclose(one.flux[0][far], ref.flux[0][far], atol=1e-2)
    assert np.median(np.abs(one.flux[0][far] - ref.flux[0][far])) < 3e-3
    np.testing.assert_allclose(one.ivar[0][far], ref.ivar[0][far], rtol=0.02)
    assert one.snr[0] == pytest.approx(ref.snr[0], rel=0.05)
    t_one = derive_labels(parts, model=FAKE)
    t_ref = derive_labels(whole, model=FAKE)
    assert len(t_one) == 1
    for name in ("teff", "logg"):
        diff = abs(t_one[name][0] - t_ref[name][0])
        assert diff < 0.1 * t_ref[f"{name}_err_hi"][0], name


def test_overlapping_parts_are_inverse_variance_weighted():
    wave, flux, err = _star(seed=1)
    _, flux2, _ = _star(seed=2, snr=20.0)
    err2 = err * 4.0  # the second part is 4x noisier: weight 1/16
    a = _spectrum(wave, flux, err)
    b = _spectrum(wave, flux2, err2)
    rows = prepare([a, b], SETTINGS)
    star = prepare(SpectrumParts([a, b]), SETTINGS)
    assert len(rows) == 2 and len(star) == 1
    w = rows.ivar.astype(float)
    expected = (w * rows.flux).sum(axis=0) / w.sum(axis=0)
    np.testing.assert_allclose(star.flux[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(star.ivar[0], w.sum(axis=0), rtol=1e-5)
    # the weight of the noisier part is about 1/16 of the other's
    inside = w[0] > 0
    assert np.median(w[1][inside] / w[0][inside]) == pytest.approx(1 / 16, rel=0.05)


def test_a_plain_list_stays_a_list_of_stars_in_order():
    wave, flux, err = _star()
    cut = np.searchsorted(wave, 5000.0)
    blue = _spectrum(wave, flux, err, slice(0, cut))  # 35 % of the grid
    red = _spectrum(wave, flux, err, slice(cut, None))
    whole = _spectrum(wave, flux, err)
    plain = prepare(SpectrumList([blue, red]), SETTINGS)
    assert len(plain) == 2
    # the red part alone leaves the blue 35 % of the grid without data
    assert plain.flags[0] == int(LabelFlag.NO_WAVELENGTH_OVERLAP)
    assert plain.flags[1] == int(LabelFlag.MANY_MASKED_PIXELS)
    mixed = [SpectrumParts([blue, red]), whole, SpectrumParts([red, blue]), blue]
    assert input_rows(mixed) == 4
    batch = prepare(mixed, SETTINGS)
    assert len(batch) == 4
    assert list(batch.flags[:3]) == [0, 0, 0]
    assert batch.flags[3] & int(LabelFlag.NO_WAVELENGTH_OVERLAP)
    assert batch.messages[3].startswith("spectra[3]:")
    # the order of the parts does not matter: the same row
    np.testing.assert_array_equal(batch.flux[0], batch.flux[2])
    table = derive_labels(mixed, model=FAKE)
    assert len(table) == 4 and table["teff"].mask[3] and not table["teff"].mask[:3].any()


def test_rv_medium_and_lsf_are_handled_per_part():
    c = 299792.458
    wave, flux, err = _star()
    cut = np.searchsorted(wave, 5100.0)
    # the red part observed at +40 km/s, in air wavelengths, in Jy, with its radial velocity set
    shifted = vacuum_to_air(wave * (1 + 40.0 / c))
    red = Spectrum(
        flux=flux[cut:] * u.Jy,
        spectral_axis=shifted[cut:] * u.AA,
        uncertainty=StdDevUncertainty(err[cut:] * 1e23),
        radial_velocity=40.0 * u.km / u.s,
        meta={"medium": "air", "resolution": 20000.0},
    )
    blue = _spectrum(
        wave, flux, err, slice(0, cut), meta={"resolution": 20000.0, "medium": "vacuum"}
    )
    star = prepare(SpectrumParts([blue, red]), SETTINGS)
    rest = prepare(SpectrumParts([blue, _spectrum(wave, flux, err, slice(cut, None))]), SETTINGS)
    assert star.flags[0] == rest.flags[0] == 0
    # the same row as with the red part given at rest, in vacuum, in erg/s/cm2/A
    good = rest.ivar[0] > 0
    assert np.array_equal(star.ivar[0] > 0, good)
    np.testing.assert_allclose(star.flux[0][good], rest.flux[0][good], atol=5e-3)
    assert np.median(np.abs(star.flux[0][good] - rest.flux[0][good])) < 5e-4
    # rv: the parts' velocities, weighted by their pixels on the grid (0 and 40 km/s)
    assert 0.0 < star.rv[0] < 40.0
    # an rv given per row applies to every part of the star
    two = prepare(
        [SpectrumParts([blue, red]), SpectrumParts([blue, red])], SETTINGS, rv=[5.0, -7.0]
    )
    assert list(two.rv) == [5.0, -7.0]


def test_parts_flags_and_messages():
    wave, flux, err = _star()
    cut = np.searchsorted(wave, 5000.0)
    blue = _spectrum(wave, flux, err, slice(0, cut))
    red = _spectrum(wave, flux, err, slice(cut, None))
    # a fully masked part adds nothing: the star covers too little
    masked = _spectrum(wave, flux, err, slice(cut, None), mask=np.ones(wave.size - cut, bool))
    row = prepare(SpectrumParts([blue, masked]), SETTINGS)
    assert row.flags[0] & int(LabelFlag.TOO_FEW_GOOD_PIXELS)
    assert "of the model grid has good pixels in its 2 parts" in row.messages[0]
    assert not row.ivar.any()
    # parts far outside the grid: no overlap
    far = Spectrum(flux=np.ones(50) * u.Jy, spectral_axis=np.linspace(8000, 8100, 50) * u.AA)
    # ... but first: parts with and parts without uncertainties cannot be weighted together
    row = prepare(SpectrumParts([blue, far]), SETTINGS)
    assert row.flags[0] & int(LabelFlag.BAD_INPUT)
    assert "have no uncertainties and the others have" in row.messages[0]
    far_err = Spectrum(
        flux=np.ones(50) * u.Jy,
        spectral_axis=np.linspace(8000, 8100, 50) * u.AA,
        uncertainty=InverseVariance(np.full(50, 1e4) / u.Jy**2),
    )
    row = prepare(SpectrumParts([blue, far_err]), SETTINGS)
    assert row.flags[0] & int(LabelFlag.NO_WAVELENGTH_OVERLAP)
    assert "its 2 parts together cover 35% of the model grid" in row.messages[0]
    # a broken part makes the star BAD_INPUT, and the message names it
    broken = Spectrum(flux=np.ones(50) * u.Jy, spectral_axis=np.arange(50) * u.pix)
    batch = prepare([whole := _spectrum(wave, flux, err), SpectrumParts([red, broken])], SETTINGS)
    assert batch.flags[0] == 0 and batch.flags[1] & int(LabelFlag.BAD_INPUT)
    assert batch.messages[1].startswith("spectra[1] part 1:")
    assert not batch.ivar[1].any() and batch.ivar[0].any()
    assert (batch.flags[1] & int(FATAL)) != 0
    # non-fatal flags of the parts reach the row
    bare = [
        Spectrum(
            flux=s.flux,
            spectral_axis=s.spectral_axis,
            meta={"resolution": 3000.0, "medium": "vacuum"},
        )
        for s in (blue, red)
    ]
    row = prepare(SpectrumParts(bare), SETTINGS)
    assert row.flags[0] == int(LabelFlag.NO_UNCERTAINTY)
    assert prepare(whole, SETTINGS).flags[0] == 0


def test_spectrum_parts_validation():
    wave, flux, err = _star()
    one = _spectrum(wave, flux, err)
    with pytest.raises(ValueError, match="at least one spectrum"):
        SpectrumParts([])
    with pytest.raises(TypeError, match="part 1 of SpectrumParts is a list"):
        SpectrumParts([one, [one]])
    batch2d = Spectrum(flux=np.ones((2, 10)) * u.Jy, spectral_axis=np.arange(1, 11) * u.AA)
    with pytest.raises(ValueError, match="part 0 of SpectrumParts has flux of shape"):
        SpectrumParts([batch2d])
    assert isinstance(SpectrumParts([one]), SpectrumList)
