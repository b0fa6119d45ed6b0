"""Tests of PreparationSettings, prepare_arrays and prepare (incl. bad input)."""

import importlib

import astropy.units as u
import numpy as np
import pytest
import torch
from astropy.nddata import (
    InverseVariance,
    StdDevUncertainty,
    UnknownUncertainty,
    VarianceUncertainty,
)
from astropy.utils.exceptions import AstropyDeprecationWarning
from specutils import Spectrum, Spectrum1D, SpectrumCollection, SpectrumList

from stellarml.flags import FATAL, LabelFlag
from stellarml.spectra import (
    C_KMS,
    PreparationSettings,
    PreparedBatch,
    air_to_vacuum,
    log_lambda_grid,
    prepare,
    prepare_arrays,
    vacuum_to_air,
)

prepare_module = importlib.import_module("stellarml.spectra.prepare")

GRID = log_lambda_grid(4500.0, 5500.0, 1e-4)  # 30 km/s pixels
SETTINGS = PreparationSettings(wavelength=GRID * u.AA, resolution=3000.0)
LINES = np.linspace(4520.0, 5480.0, 60)
NO_UNC = int(LabelFlag.NO_UNCERTAINTY)
ASSUMED = int(LabelFlag.RESOLUTION_ASSUMED)
MEDIUM = int(LabelFlag.MEDIUM_ASSUMED)


def _rest_spectrum(wave_vac, rv=0.0, resolution=None, slope=True):
    """Analytic absorption spectrum (vacuum rest wavelengths of LINES) seen at ``wave_vac``.

    The lines have an intrinsic sigma of 30 km/s, plus the LSF of ``resolution``.
    """
    rest = np.asarray(wave_vac) / (1 + np.atleast_1d(rv)[:, None] / C_KMS)
    sig_kms = 30.0 if resolution is None else np.hypot(30.0, C_KMS / resolution / 2.3548)
    flux = np.ones_like(rest)
    for i, c in enumerate(LINES):
        depth = (0.2 + 0.6 * ((i * 7) % 11) / 10) * 30.0 / sig_kms  # equivalent width kept
        flux *= 1 - depth * np.exp(-0.5 * (np.log(rest / c) * C_KMS / sig_kms) ** 2)
    if slope:
        flux *= 1e-16 * (1 + (np.asarray(wave_vac) - 5000) / 3000)
    return flux


FINE = np.arange(4400.0, 5600.0, 0.05)  # linear, vacuum, R_pixel ~ 100000


def test_settings_validation_and_round_trip():
    d = SETTINGS.to_dict()
    assert d["medium"] == "vacuum" and d["resolution"] == 3000.0
    assert isinstance(d["wavelength"], u.Quantity)
    assert PreparationSettings.from_dict(d) == SETTINGS
    again = PreparationSettings.from_dict({**d, "wavelength": GRID})  # plain Angstrom
    assert again == SETTINGS
    assert again != PreparationSettings.from_dict({**d, "continuum_width": 30.0})
    assert PreparationSettings(wavelength=(GRID / 10) * u.nm).wavelength.unit == u.AA
    with pytest.raises(ValueError, match="uniform in ln"):
        PreparationSettings(wavelength=np.linspace(4000, 5000, 100) * u.AA)
    with pytest.raises(ValueError, match="increasing"):
        PreparationSettings(wavelength=GRID[::-1] * u.AA)
    with pytest.raises(u.UnitsError, match="length"):
        PreparationSettings(wavelength=GRID * u.s)
    with pytest.raises(ValueError, match="medium"):
        PreparationSettings(wavelength=GRID, medium="water")
    with pytest.raises(ValueError, match="resolution"):
        PreparationSettings(wavelength=GRID, resolution=-5)
    with pytest.raises(ValueError, match="min_good_fraction"):
        PreparationSettings(wavelength=GRID, min_good_fraction=1.5)
    with pytest.raises(ValueError, match="continuum_iterations"):
        PreparationSettings(wavelength=GRID, continuum_iterations=1.5)
    with pytest.raises(TypeError, match="unknown"):
        PreparationSettings.from_dict({**d, "colour": "red"})


def test_prepare_arrays_basic_output():
    flux = _rest_spectrum(FINE)
    batch = prepare_arrays(FINE, np.vstack([flux, 2 * flux]), None, SETTINGS, resolution=50000)
    assert isinstance(batch, PreparedBatch) and len(batch) == 2
    assert batch.flux.dtype == np.float32 and batch.ivar.dtype == np.float32
    assert batch.flux.shape == (2, GRID.size)
    assert batch.flags.dtype == np.int64 and list(batch.flags) == [NO_UNC, NO_UNC]
    assert np.isnan(batch.snr).all() and list(batch.rv) == [0.0, 0.0]
    assert batch.messages == ["", ""]
    # flux scale is normalised away
    np.testing.assert_allclose(batch.flux[0], batch.flux[1], rtol=1e-5, atol=1e-6)
    # continuum near 1 between lines, lines preserved
    assert np.percentile(batch.flux[0], 95) == pytest.approx(1.0, abs=0.02)
    assert batch.flux[0].min() < 0.6
    # the prepared spectrum matches the analytic spectrum at the model resolution
    expected = _rest_spectrum(GRID, resolution=3000.0, slope=False)[0]
    inner = (GRID > 4600) & (GRID < 5400)
    assert np.median(np.abs(batch.flux[0, inner] - expected[inner])) < 0.01
    flux_t, ivar_t = batch.to_tensors("cpu")
    assert flux_t.dtype == torch.float32 and tuple(ivar_t.shape) == (2, GRID.size)
    # no LSF information: assumed equal to the model's and flagged
    assumed = prepare_arrays(FINE, flux, None, SETTINGS)
    assert assumed.flags[0] == NO_UNC | ASSUMED
    # a model without resolution does no LSF matching and flags nothing about it
    plain = PreparationSettings(wavelength=GRID * u.AA)
    assert prepare_arrays(FINE, flux, None, plain).flags[0] == NO_UNC


def test_rest_frame_and_medium():
    rvs = np.array([-150.0, 0.0, 87.0])
    observed = _rest_spectrum(FINE, rv=rvs)
    batch = prepare_arrays(FINE, observed, None, SETTINGS, resolution=50000, rv=rvs)
    np.testing.assert_array_equal(batch.rv, rvs)
    for k in (0, 2):
        assert np.max(np.abs(batch.flux[k] - batch.flux[1])[50:-50]) < 0.02
    # without the rv the lines are misplaced by several pixels
    wrong = prepare_arrays(FINE, observed[0], None, SETTINGS, resolution=50000)
    assert np.max(np.abs(wrong.flux[0] - batch.flux[1])[50:-50]) > 0.2
    # the same star on an air wavelength grid
    air = vacuum_to_air(FINE)
    in_air = prepare_arrays(
        air, _rest_spectrum(FINE), None, SETTINGS, medium="air", resolution=50000
    )
    assert np.max(np.abs(in_air.flux[0] - batch.flux[1])[50:-50]) < 0.01
    # and a model grid in air gives the same numbers at the air wavelengths
    air_settings = PreparationSettings(
        wavelength=vacuum_to_air(GRID) * u.AA, medium="air", resolution=3000.0
    )
    # (the air grid is uniform in ln lambda to 1e-6 only)
    assert np.allclose(air_to_vacuum(air_settings.wavelength.value), GRID, rtol=1e-7)


def test_lsf_degradation_inputs():
    sharp = _rest_spectrum(FINE)[0]
    at_r = _rest_spectrum(FINE, resolution=10000.0)[0]
    a = prepare_arrays(FINE, sharp, None, SETTINGS, resolution=np.inf)  # infinitely sharp
    b = prepare_arrays(FINE, at_r, None, SETTINGS, resolution=10000.0)
    c = prepare_arrays(FINE, at_r, None, SETTINGS, fwhm=5000.0 / 10000.0 * u.AA)
    assert np.max(np.abs(a.flux - b.flux)) < 0.01
    assert np.max(np.abs(b.flux - c.flux)) < 0.01  # FWHM at the centre, nearly the same
    per_pixel = prepare_arrays(FINE, at_r, None, SETTINGS, resolution=np.full(FINE.size, 1e4))
    np.testing.assert_allclose(per_pixel.flux, b.flux, atol=1e-6)
    # input coarser than the model in part of the range: no error, no extra broadening
    coarse = prepare_arrays(FINE, at_r, None, SETTINGS, fwhm=np.interp(FINE, [4400, 5600], [1, 2]))
    assert coarse.flags[0] == NO_UNC
    with pytest.raises(ValueError, match="not both"):
        prepare_arrays(FINE, at_r, None, SETTINGS, resolution=1e4, fwhm=1.0)
    with pytest.raises(ValueError, match="positive"):
        prepare_arrays(FINE, at_r, None, SETTINGS, resolution=-1.0)
    zero_fwhm = prepare_arrays(FINE, sharp, None, SETTINGS, fwhm=0.0)
    np.testing.assert_array_equal(zero_fwhm.flux, a.flux)


def test_uncertainties_snr_and_masks():
    rng = np.random.default_rng(4)
    clean = _rest_spectrum(FINE, resolution=20000.0)
    sigma = 0.02 * clean.max() * np.ones((3, FINE.size))
    flux = clean + rng.normal(size=(3, FINE.size)) * sigma
    ivar = sigma**-2
    mask = np.zeros((3, FINE.size), bool)
    mask[1, 10000:12000] = True  # 100 Angstrom masked
    batch = prepare_arrays(FINE, flux, ivar, SETTINGS, resolution=20000.0, mask=mask)
    # 10 % of the grid masked: a warning (more than MAX_MASKED_FRACTION), not fatal
    assert list(batch.flags) == [0, int(LabelFlag.MANY_MASKED_PIXELS), 0]
    in_range = (FINE >= GRID[0]) & (FINE <= GRID[-1])
    expected = np.median(flux[0, in_range] * np.sqrt(ivar[0, in_range]))
    assert batch.snr[0] == pytest.approx(expected, rel=0.01)
    hole = (GRID > 4905) & (GRID < 4995)
    assert np.all(batch.ivar[1, hole] == 0) and np.all(batch.flux[1, hole] == 0)
    assert np.all(batch.ivar[0, hole] > 0)
    # inverse variance of the normalised flux ~ (S/N per model pixel)**2
    pix_ratio = np.median(np.diff(GRID)) / 0.05
    assert np.median(batch.ivar[0] * batch.flux[0] ** 2) > 0.5 * (50**2) * pix_ratio


def test_batch_chunks_and_rv_groups_give_identical_rows(monkeypatch):
    rng = np.random.default_rng(5)
    n = 12
    flux = _rest_spectrum(FINE) * rng.uniform(0.5, 2.0, (n, 1))
    rv = np.where(np.arange(n) % 3 == 0, 40.0, 0.0)
    full = prepare_arrays(FINE, flux, None, SETTINGS, resolution=50000, rv=rv)
    monkeypatch.setattr(prepare_module, "_CHUNK_ROWS", 5)
    chunked = prepare_arrays(FINE, flux, None, SETTINGS, resolution=50000, rv=rv)
    np.testing.assert_array_equal(chunked.flux, full.flux)
    np.testing.assert_array_equal(chunked.ivar, full.ivar)
    single = prepare_arrays(FINE, flux[3], None, SETTINGS, resolution=50000, rv=40.0)
    np.testing.assert_allclose(single.flux[0], full.flux[3], rtol=1e-6, atol=1e-7)
    # concatenation and indexing of batches
    both = PreparedBatch.concatenate([full[:4], full[4:]])
    np.testing.assert_array_equal(both.flux, full.flux)
    assert both.messages == full.messages and len(full[[0, 2]]) == 2


def test_chunks_on_threads_give_the_serial_rows_in_order(monkeypatch):
    # 13 spectra in chunks of 2: seven chunks shared out over three threads
    rng = np.random.default_rng(6)
    n = 13
    flux = _rest_spectrum(FINE) * rng.uniform(0.5, 2.0, (n, 1))
    flux[4, :] = np.nan  # a bad row among the chunks keeps its place
    rv = rng.uniform(-60.0, 60.0, n)  # a different operator for every row
    monkeypatch.setattr(prepare_module, "_CHUNK_ROWS", 2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = prepare_arrays(FINE, flux, None, SETTINGS, resolution=50000, rv=rv)
        torch.set_num_threads(3)
        threaded = prepare_arrays(FINE, flux, None, SETTINGS, resolution=50000, rv=rv)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(threaded.flux, serial.flux)
    np.testing.assert_array_equal(threaded.ivar, serial.ivar)
    np.testing.assert_array_equal(threaded.flags, serial.flags)
    assert threaded.messages == serial.messages and serial.flags[4] & FATAL
    np.testing.assert_array_equal(threaded.rv, rv)
    # each row is the spectrum prepared alone
    alone = prepare_arrays(FINE, flux[7], None, SETTINGS, resolution=50000, rv=rv[7])
    np.testing.assert_allclose(threaded.flux[7], alone.flux[0], rtol=1e-6, atol=1e-7)


def test_prepare_arrays_rejects_malformed_input():
    flux = np.ones((2, FINE.size))
    with pytest.raises(TypeError, match="PreparationSettings"):
        prepare_arrays(FINE, flux, None, {"wavelength": GRID})
    with pytest.raises(ValueError, match="expected \\(n, "):
        prepare_arrays(FINE, flux[:, :-1], None, SETTINGS)
    with pytest.raises(ValueError, match="ivar has shape"):
        prepare_arrays(FINE, flux, np.ones(3), SETTINGS)
    with pytest.raises(ValueError, match="mask has shape"):
        prepare_arrays(FINE, flux, None, SETTINGS, mask=np.ones(3, bool))
    with pytest.raises(ValueError, match="strictly monotonic"):
        prepare_arrays(np.r_[FINE[:10], FINE[9:-1]], flux, None, SETTINGS)
    with pytest.raises(ValueError, match="at least 2"):
        prepare_arrays(FINE[:1], flux[:, :1], None, SETTINGS)
    with pytest.raises(ValueError, match="finite"):
        prepare_arrays(np.where(FINE > 5000, np.nan, FINE), flux, None, SETTINGS)
    with pytest.raises(ValueError, match="medium"):
        prepare_arrays(FINE, flux, None, SETTINGS, medium="glass")
    with pytest.raises(ValueError, match="one value per spectrum"):
        prepare_arrays(FINE, flux, None, SETTINGS, rv=[1.0, 2.0, 3.0])
    with pytest.raises(u.UnitsError, match="wavelength"):
        prepare_arrays(np.arange(FINE.size) * u.pix, flux, None, SETTINGS)
    # decreasing grids are fine
    a = prepare_arrays(FINE, flux, None, SETTINGS)
    b = prepare_arrays(FINE[::-1], flux[:, ::-1], None, SETTINGS)
    np.testing.assert_array_equal(a.flux, b.flux)


def _spec(flux=None, wave=FINE * u.AA, **kw):
    if flux is None:
        flux = _rest_spectrum(wave.to_value(u.AA, u.spectral()))[0] * u.Unit("erg/(s cm2 AA)")
    return Spectrum(flux=flux, spectral_axis=wave, **kw)


def test_prepare_matches_prepare_arrays_for_all_input_kinds():
    flux = _rest_spectrum(FINE)
    sigma = 0.01 * flux
    ref = prepare_arrays(FINE, np.vstack([flux, flux]), np.vstack([sigma, sigma]) ** -2, SETTINGS)
    unit = u.Unit("erg/(s cm2 AA)")
    variants = [
        _spec(flux[0] * unit, uncertainty=StdDevUncertainty(sigma[0])),
        _spec(flux[0] * unit, uncertainty=VarianceUncertainty(sigma[0] ** 2)),
        _spec(flux[0] * unit, uncertainty=InverseVariance(sigma[0] ** -2)),
        _spec(
            flux[0] * 1e3 * u.Unit("mW/(m2 AA)"),
            uncertainty=StdDevUncertainty(sigma[0] * 1e3, unit=u.Unit("mW/(m2 AA)")),
        ),
    ]
    for spec in variants:
        out = prepare(spec, SETTINGS)
        np.testing.assert_allclose(out.flux[0], ref.flux[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out.ivar[0], ref.ivar[0], rtol=1e-4)
        assert out.flags[0] == ASSUMED | MEDIUM
    batch2d = _spec(
        np.vstack([flux, flux]) * unit, uncertainty=StdDevUncertainty(np.vstack([sigma, sigma]))
    )
    collection = SpectrumCollection(
        flux=np.vstack([flux, flux]) * unit,
        spectral_axis=np.vstack([FINE, FINE]) * u.AA,
        uncertainty=StdDevUncertainty(np.vstack([sigma, sigma])),
    )
    nested = [variants[0], (SpectrumList([batch2d]), [collection])]
    out = prepare(nested, SETTINGS)
    assert len(out) == 5 and list(out.flags) == [ASSUMED | MEDIUM] * 5
    for row in out.flux:
        np.testing.assert_allclose(row, ref.flux[0], rtol=1e-5, atol=1e-6)
    with pytest.warns(AstropyDeprecationWarning):
        old = Spectrum1D(flux=flux[0] * unit, spectral_axis=FINE * u.AA)
    assert prepare(old, SETTINGS).flags[0] == ASSUMED | NO_UNC | MEDIUM
    assert len(prepare([], SETTINGS)) == 0


def test_prepare_spectral_axis_units_and_directions():
    ref = prepare(_spec(), SETTINGS)
    freq = (FINE * u.AA).to(u.THz, u.spectral())  # decreasing in frequency order
    flux = _rest_spectrum(FINE)[0]
    in_hz = Spectrum(flux=flux[::-1] * u.Jy, spectral_axis=freq[::-1])
    reversed_axis = _spec(flux[::-1] * u.Jy, wave=FINE[::-1] * u.AA)
    in_nm = _spec(flux * u.Jy, wave=(FINE * u.AA).to(u.nm))
    out = prepare([in_hz, reversed_axis, in_nm], SETTINGS)
    for row in out.flux:
        np.testing.assert_allclose(row, ref.flux[0], rtol=1e-4, atol=1e-5)


def test_prepare_meta_rv_resolution_and_medium():
    wave = vacuum_to_air(FINE)
    observed = _rest_spectrum(FINE, rv=60.0, resolution=8000.0)[0]
    ref = prepare_arrays(FINE, observed, None, SETTINGS, resolution=8000.0, rv=60.0)
    spec = Spectrum(
        flux=observed * u.Jy,
        spectral_axis=wave * u.AA,
        radial_velocity=60 * u.km / u.s,
        meta={"medium": "air", "resolution": 8000.0},
    )
    out = prepare(spec, SETTINGS)
    # specutils' redshift of 60 km/s is relativistic; rv = c z makes 1 + rv/c = 1 + z
    assert out.rv[0] == pytest.approx(C_KMS * spec.redshift, rel=1e-12)
    assert out.rv[0] == pytest.approx(60.0 + 60.0**2 / (2 * C_KMS), rel=1e-6)
    assert out.flags[0] == NO_UNC and out.rv_source[0] == "given"
    assert np.max(np.abs(out.flux[0] - ref.flux[0])[50:-50]) < 0.01
    # explicit arguments override the spectrum's
    explicit = prepare(spec, SETTINGS, rv=[0.0], resolution=8000.0)
    assert explicit.rv[0] == 0.0
    assert np.max(np.abs(explicit.flux[0] - ref.flux[0])[50:-50]) > 0.1
    fw = Spectrum(
        flux=observed * u.Jy,
        spectral_axis=wave * u.AA,
        meta={"medium": "AIR", "lsf_fwhm": 5000 / 8000 * u.AA},
    )
    assert prepare(fw, SETTINGS, rv=60 * u.km / u.s).flags[0] == NO_UNC
    with pytest.raises(ValueError, match="one value per spectrum"):
        prepare([spec, spec], SETTINGS, rv=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="single number"):
        prepare(spec, SETTINGS, resolution=[1.0, 2.0])


def test_prepare_bad_input_battery():
    unit = u.Jy
    good = _spec(_rest_spectrum(FINE)[0] * unit)
    flux = _rest_spectrum(FINE)[0]
    nan_only = _spec(np.full(FINE.size, np.nan) * unit)
    inf_only = _spec(np.full(FINE.size, np.inf) * unit)
    some_bad_pixels = flux.copy()
    some_bad_pixels[::50] = np.nan
    some_bad_pixels[1::50] = np.inf
    pixel_level = _spec(some_bad_pixels * unit)
    zero_unc = _spec(flux * unit, uncertainty=StdDevUncertainty(np.zeros(FINE.size)))
    neg_unc = _spec(flux * unit, uncertainty=VarianceUncertainty(-np.ones(FINE.size)))
    neg_std = _spec(flux * unit, uncertainty=StdDevUncertainty(-np.ones(FINE.size)))
    nan_unc = _spec(flux * unit, uncertainty=InverseVariance(np.full(FINE.size, np.nan)))
    part_unc = np.full(FINE.size, 0.01)
    part_unc[::6] = 0.0  # a third of the pixels without information
    part_unc[1::6] = np.nan
    partial_unc = _spec(flux * unit, uncertainty=StdDevUncertainty(part_unc))
    in_pixels = _spec(flux * unit, wave=np.arange(FINE.size) * u.pix)
    in_velocity = _spec(flux * unit, wave=np.linspace(-500, 500, FINE.size) * u.km / u.s)
    dup = FINE.copy()
    dup[100] = dup[99]
    duplicates = _spec(flux * unit, wave=dup * u.AA)
    empty = _spec(np.zeros(0) * unit, wave=np.zeros(0) * u.AA)
    one_pixel = _spec(np.ones(1) * unit, wave=[5000.0] * u.AA)
    all_masked = _spec(flux * unit, mask=np.ones(FINE.size, bool))
    half_masked = _spec(flux * unit, mask=FINE < 5100)
    apogee_like = _spec(flux * unit, wave=(FINE * 3.2) * u.AA)
    bad_medium = _spec(flux * unit, meta={"medium": "water"})
    bad_lsf = _spec(flux * unit, meta={"resolution": -3})
    unknown = _spec(flux * unit, uncertainty=UnknownUncertainty(np.ones(FINE.size)))
    cases = [
        (good, 0, ""),
        (nan_only, LabelFlag.BAD_INPUT, "no finite"),
        (inf_only, LabelFlag.BAD_INPUT, "no finite"),
        (pixel_level, 0, ""),
        (zero_unc, LabelFlag.BAD_INPUT, "valid uncertainty"),
        (neg_unc, LabelFlag.BAD_INPUT, "valid uncertainty"),
        (neg_std, LabelFlag.BAD_INPUT, "valid uncertainty"),
        (nan_unc, LabelFlag.BAD_INPUT, "valid uncertainty"),
        (partial_unc, 0, ""),
        (in_pixels, LabelFlag.BAD_INPUT, "pix"),
        (in_velocity, LabelFlag.BAD_INPUT, "km / s"),
        (duplicates, LabelFlag.BAD_INPUT, "duplicate"),
        (empty, LabelFlag.BAD_INPUT, "0 pixel"),
        (one_pixel, LabelFlag.BAD_INPUT, "1 pixel"),
        (all_masked, LabelFlag.TOO_FEW_GOOD_PIXELS, "masked"),
        (half_masked, LabelFlag.TOO_FEW_GOOD_PIXELS, "good pixels"),
        (apogee_like, LabelFlag.NO_WAVELENGTH_OVERLAP, "covers 0%"),
        (bad_medium, LabelFlag.BAD_INPUT, "medium"),
        (bad_lsf, LabelFlag.BAD_INPUT, "LSF"),
        (unknown, LabelFlag.BAD_INPUT, "UnknownUncertainty"),
    ]
    out = prepare([c[0] for c in cases], SETTINGS)
    assert len(out) == len(cases)
    for i, (_, flag, message) in enumerate(cases):
        fatal = int(out.flags[i]) & int(FATAL)
        assert fatal == int(flag), (i, out.messages[i])
        assert message in out.messages[i], (i, out.messages[i])
        if fatal:
            assert not out.flux[i].any() and not out.ivar[i].any()
        else:
            assert out.messages[i] == "" and (out.ivar[i] > 0).mean() > 0.9
    # the messages name the spectrum's position in the input
    assert out.messages[9].startswith("spectra[9]: ")
    # bad rows inside a 2-D batch are flagged individually
    rows = np.vstack([flux, np.full(FINE.size, np.nan), flux])
    batch = prepare(_spec(rows * unit), SETTINGS)
    assert [int(f) & int(FATAL) for f in batch.flags] == [0, int(LabelFlag.BAD_INPUT), 0]
    assert batch.messages[1] == "spectra[row 1]: flux has no finite values"


def test_prepare_rejects_what_is_not_spectra():
    good = _spec(_rest_spectrum(FINE)[0] * u.Jy)
    for bad in (3, "spectrum.fits", None, np.ones(10)):
        with pytest.raises(TypeError, match=type(bad).__name__):
            prepare(bad, SETTINGS)
    with pytest.raises(TypeError, match=r"spectra\[1\]"):
        prepare([good, 5], SETTINGS)
    with pytest.raises(TypeError, match="PreparationSettings"):
        prepare(good, GRID)
    cube = Spectrum(flux=np.ones((2, 3, FINE.size)) * u.Jy, spectral_axis=FINE * u.AA)
    with pytest.raises(ValueError, match="3 dimensions"):
        prepare([good, cube], SETTINGS)


@pytest.mark.data
@pytest.mark.filterwarnings(
    # the BOSS file's BUNIT '1E-17 erg/cm^2/s/Angstrom' is parsed correctly, with this warning
    "ignore:'1E-17 erg/cm\\^2/s/Angstrom' contains multiple slashes:astropy.units.UnitsWarning"
)
def test_prepare_real_files(data_dir):
    import stellarml.io  # noqa: F401  (registers the MILES loader)

    grid = log_lambda_grid(3800.0, 7000.0, 3e-4)
    settings = PreparationSettings(wavelength=grid * u.AA, resolution=1500.0)
    miles = [
        Spectrum.read(data_dir / "miles" / f"MILES_res2.50_star_m{i}V.fits")
        for i in ("0001", "0003", "0004")
    ]
    boss = Spectrum.read(data_dir / "sdss" / "spec-3586-55181-0500.fits")
    apogee = Spectrum.read(data_dir / "sdss" / "apStar-dr17-2M17335483-2753043.fits")
    out = prepare([miles[0], boss, apogee, miles[1:]], settings)
    assert len(out) == 5
    # MILES: no uncertainty, FWHM 2.5 Angstrom from meta, air -> vacuum
    for i in (0, 3, 4):
        assert out.flags[i] == NO_UNC and out.messages[i] == ""
        assert (out.ivar[i] > 0).all()
        assert np.percentile(out.flux[i], 90) == pytest.approx(1.0, abs=0.05)
    # BOSS (the stellarml loader): vacuum log-lambda with ivar and mask, R from WDISP,
    # the pipeline's redshift
    # its pipeline mask leaves more than MAX_MASKED_FRACTION of the grid without data
    assert out.flags[1] == int(LabelFlag.MANY_MASKED_PIXELS)
    assert (
        out.rv[1] == pytest.approx(C_KMS * boss.redshift.value) == pytest.approx(-30.35, abs=0.01)
    )
    assert out.rv_source[1] == "header" and out.rv_err[1] == pytest.approx(3.22, abs=0.01)
    assert list(out.rv_source[[0, 3, 4]]) == ["header"] * 3  # MILES: rest frame, rv 0
    assert np.all(out.rv[[0, 3, 4]] == 0)
    assert 0.6 < (out.ivar[1] > 0).mean() < 1.0
    ivar = boss.uncertainty.array
    ok = (ivar > 0) & ~boss.mask & (boss.spectral_axis.value <= grid[-1])
    expected = np.median(boss.flux.value[ok] * np.sqrt(ivar[ok]))
    assert out.snr[1] == pytest.approx(expected, rel=0.02)
    # APOGEE is in the H band
    assert out.flags[2] & int(LabelFlag.NO_WAVELENGTH_OVERLAP)
    assert "covers 0%" in out.messages[2]


def _logged(func, *args, **kwargs):
    """(result, WARNING messages of astropy's logger) of ``func(*args, **kwargs)``."""
    from astropy import log

    with log.log_to_list() as records:
        result = func(*args, **kwargs)
    return result, [r.getMessage() for r in records if r.levelname == "WARNING"]


def test_redshift_is_applied_as_one_plus_z():
    """A specutils redshift z moves the spectrum by exactly 1 + z (not 1 + v/c)."""
    z = 0.002  # 600 km/s: 1 + z and 1 + v_relativistic/c differ by 2e-6 (0.6 km/s)
    rest = _rest_spectrum(FINE)[0]
    spec = Spectrum(
        flux=rest * u.Jy,
        spectral_axis=FINE * (1 + z) * u.AA,
        redshift=z,
        meta={"medium": "vacuum", "resolution": 8000.0},
    )
    out = prepare(spec, SETTINGS)
    assert out.rv[0] == pytest.approx(C_KMS * z, rel=1e-12) and out.rv_source[0] == "given"
    ref = prepare_arrays(FINE, rest, None, SETTINGS, resolution=8000.0)
    np.testing.assert_allclose(out.flux[0][20:-20], ref.flux[0][20:-20], atol=2e-4)
    # the first-order shift of specutils' (relativistic) radial velocity is measurably off
    v = spec.radial_velocity.to_value(u.km / u.s)
    assert C_KMS * z - v == pytest.approx(C_KMS * z**2 / 2, rel=1e-3)
    off = prepare_arrays(FINE * (1 + z), rest, None, SETTINGS, resolution=8000.0, rv=v)
    assert np.max(np.abs(off.flux[0] - ref.flux[0])[20:-20]) > 10 * np.max(
        np.abs(out.flux[0] - ref.flux[0])[20:-20]
    )


def test_rv_sources_and_errors():
    flux = _rest_spectrum(FINE)[0] * u.Jy
    meta = {"medium": "vacuum", "resolution": 8000.0}
    plain = Spectrum(flux=flux, spectral_axis=FINE * u.AA, meta=meta)
    at_zero = Spectrum(
        flux=flux, spectral_axis=FINE * u.AA, meta=meta, radial_velocity=0 * u.km / u.s
    )
    header = Spectrum(
        flux=flux,
        spectral_axis=FINE * u.AA,
        redshift=1e-4,
        meta={**meta, "rv_source": "header", "rv_err": 2.5 * u.km / u.s},
    )
    out = prepare([plain, at_zero, header], SETTINGS)
    assert list(out.rv_source) == ["none", "given", "header"]
    np.testing.assert_allclose(out.rv, [0.0, 0.0, C_KMS * 1e-4], rtol=1e-12)
    np.testing.assert_array_equal(out.rv_err, [np.nan, np.nan, 2.5])
    given = prepare([plain, header], SETTINGS, rv=[1.0, 2.0])
    assert list(given.rv_source) == ["given", "given"] and np.all(np.isnan(given.rv_err))
    # slicing and concatenation keep them
    both = PreparedBatch.concatenate([out[2], out[0]])
    assert list(both.rv_source) == ["header", "none"] and both.rv_err[0] == 2.5


def test_medium_assumed_is_flagged_and_logged_once():
    flux = _rest_spectrum(FINE)[0] * u.Jy
    known = Spectrum(flux=flux, spectral_axis=FINE * u.AA, meta={"medium": "vacuum"})
    unknown = Spectrum(flux=flux, spectral_axis=FINE * u.AA)
    out, warned = _logged(prepare, [unknown, known, unknown], SETTINGS, resolution=8000.0)
    np.testing.assert_array_equal(out.flags & MEDIUM, [MEDIUM, 0, MEDIUM])
    assert warned == [
        "stellarml: 2 of 3 spectra: the wavelength medium is unknown (no medium argument, no "
        "meta['medium']); vacuum was assumed (flag MEDIUM_ASSUMED)"
    ]
    # resolution unknown too: one more line, for all three
    out, warned = _logged(prepare, [unknown, known, unknown], SETTINGS)
    assert len(warned) == 2 and warned[0].startswith("stellarml: 3 of 3 spectra: the input ")
    # medium= overrides meta and removes the flag (air moves the lines by ~1.4 Angstrom)
    out, warned = _logged(prepare, [unknown, known], SETTINGS, resolution=8000.0, medium="air")
    assert not np.any(out.flags & MEDIUM) and warned == []
    vac = prepare(known, SETTINGS, resolution=8000.0)
    assert np.max(np.abs(out.flux[1] - vac.flux[0])) > 0.1
    with pytest.raises(ValueError, match="medium must be 'air' or 'vacuum', got 'glass'"):
        prepare(known, SETTINGS, medium="glass")
