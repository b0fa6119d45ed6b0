"""Radial velocities measured against the shipped templates, and prepare_with_rv."""

import astropy.units as u
import numpy as np
import pytest
from astropy import log
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

import stellarml.io  # noqa: F401  (registers the loaders)
from stellarml.flags import LabelFlag
from stellarml.spectra import (
    C_KMS,
    PreparationSettings,
    log_lambda_grid,
    measure_rv,
    prepare,
    prepare_with_rv,
    rv_templates,
)

MODEL_LIKE = PreparationSettings(
    wavelength=log_lambda_grid(3800.0, 7000.0, 3e-4) * u.AA, resolution=1500.0
)


def _without_rv(spec):
    meta = {k: v for k, v in spec.meta.items() if k not in ("rv_source", "rv_err")}
    return Spectrum(
        flux=spec.flux,
        spectral_axis=spec.spectral_axis.value * spec.spectral_axis.unit,
        uncertainty=spec.uncertainty,
        mask=spec.mask,
        meta=meta,
    )


def test_templates_file():
    t = rv_templates()
    assert t.flux.shape == (9, t.wavelength.size) and t.labels.shape == (9, 3)
    assert t.resolution == 5000.0 and "emulator" in t.source
    assert 3000 < t.wavelength[0] < 3020 and 17980 < t.wavelength[-1] < 18000
    dv = np.diff(np.log(t.wavelength)) * C_KMS
    np.testing.assert_allclose(dv, 20.0, rtol=1e-6)
    assert np.all(np.isfinite(t.flux)) and 0.9 < np.median(t.flux) < 1.05


@pytest.mark.parametrize("rv", [-250.0, 0.0, 37.0])
def test_injected_shift_of_a_template_is_recovered(rv):
    t = rv_templates()
    keep = (t.wavelength > 4200) & (t.wavelength < 6800)
    rng = np.random.default_rng(1)
    flux = t.flux[2, keep] * (1 + 0.01 * rng.standard_normal(keep.sum()))
    spec = Spectrum(
        flux=flux * u.one,
        spectral_axis=t.wavelength[keep] * (1 + rv / C_KMS) * u.AA,
        meta={"medium": "vacuum", "resolution": 5000.0},
    )
    m = measure_rv(spec, max_resolution=1500.0)
    assert m.reliable[0] and m.template[0] == 2 and m.messages == [""]
    assert m.rv[0] == pytest.approx(rv, abs=1.0)
    assert 0 < m.rv_err[0] < 3.0


def test_lamost_and_boss_against_the_pipelines(data_dir):
    """As derive_labels measures for the default model (benchmarks/rv_estimation.py)."""
    lamost = [Spectrum.read(p) for p in sorted((data_dir / "lamost").glob("*.fits"))]
    boss = Spectrum.read(data_dir / "sdss" / "spec-3586-55181-0500.fits")
    spectra = [*lamost, boss]
    pipeline = np.array([C_KMS * s.meta["z"] for s in spectra])
    m = measure_rv(
        [_without_rv(s) for s in spectra], wavelength_range=(3800, 7000), max_resolution=1500
    )
    assert m.reliable.all()
    diff = m.rv - pipeline
    # LAMOST: median offset +1.6 km/s, median |diff| 2.7, at most 9.8 km/s (25 stars)
    assert abs(np.median(diff[:-1])) < 3 and np.median(np.abs(diff[:-1])) < 4
    assert np.max(np.abs(diff[:-1])) < 12
    # BOSS: the estimate is 16.5 km/s above the pipeline's c Z (whose Z_ERR is 3.2 km/s)
    assert diff[-1] == pytest.approx(16.5, abs=2.0)


def test_apogee_against_the_pipeline(data_dir):
    sdss = data_dir / "sdss"
    files = sorted(sdss.glob("apVisit-*.fits")) + sorted(sdss.glob("apStar-*.fits"))
    spectra = [Spectrum.read(f) for f in files]
    pipeline = np.array([C_KMS * s.redshift.value for s in spectra])  # VRAD; apStar 0
    assert np.count_nonzero(pipeline) == 2
    m = measure_rv([_without_rv(s) for s in spectra], wavelength_range=(15150, 16950))
    np.testing.assert_allclose(m.rv, pipeline, atol=2.0)


def test_failures_are_reported_not_invented():
    t = rv_templates()
    keep = (t.wavelength > 4200) & (t.wavelength < 6800)
    flat = Spectrum(
        flux=np.ones(keep.sum()) * u.one,
        spectral_axis=t.wavelength[keep] * u.AA,
        meta={"medium": "vacuum", "resolution": 5000.0},
    )
    far = Spectrum(  # an infrared spectrum: nothing on an optical window
        flux=np.ones(100) * u.one,
        spectral_axis=np.linspace(20000, 21000, 100) * u.AA,
        meta={"medium": "vacuum", "resolution": 5000.0},
    )
    m = measure_rv([flat, far], wavelength_range=(4000, 7000))
    assert not m.reliable.any() and np.all(np.isnan(m.rv)) and list(m.template) == [-1, -1]
    assert "no chi2 minimum" in m.messages[0] and "covers 0%" in m.messages[1]
    with pytest.raises(ValueError, match="does not overlap the RV templates"):
        measure_rv(flat, wavelength_range=(20000, 21000))


def test_noise_without_lines_gets_no_velocity():
    """Noise always has some chi2 minimum; without lines it is not a velocity."""
    t = rv_templates()
    keep = (t.wavelength > 4200) & (t.wavelength < 6800)
    rng = np.random.default_rng(3)
    sigma = 0.02
    noise = Spectrum(
        flux=(1.0 + sigma * rng.standard_normal(keep.sum())) * u.one,
        spectral_axis=t.wavelength[keep] * u.AA,
        uncertainty=StdDevUncertainty(np.full(keep.sum(), sigma)),
        meta={"medium": "vacuum", "resolution": 5000.0},
    )
    star = Spectrum(  # the same noise on the solar-like template: a velocity
        flux=(t.flux[5, keep] + sigma * rng.standard_normal(keep.sum())) * u.one,
        spectral_axis=t.wavelength[keep] * 1.0001 * u.AA,
        uncertainty=StdDevUncertainty(np.full(keep.sum(), sigma)),
        meta={"medium": "vacuum", "resolution": 5000.0},
    )
    m = measure_rv([noise, star])
    assert list(m.reliable) == [False, True]
    assert np.isnan(m.rv[0]) and np.isnan(m.rv_err[0])
    assert "no better than a featureless continuum" in m.messages[0]
    assert m.rv[1] == pytest.approx(1e-4 * C_KMS, abs=1.0)
    out = prepare_with_rv(noise, MODEL_LIKE)
    assert out.rv_source[0] == "none" and out.flags[0] & LabelFlag.RV_UNRELIABLE


def test_prepare_with_rv_measures_only_the_unknown(data_dir):
    boss = Spectrum.read(data_dir / "sdss" / "spec-3586-55181-0500.fits")
    lamost = Spectrum.read(data_dir / "lamost" / "3703110.fits")
    t = rv_templates()
    keep = (t.wavelength > 4200) & (t.wavelength < 6800)
    flat = Spectrum(
        flux=np.ones(keep.sum()) * u.one,
        spectral_axis=t.wavelength[keep] * u.AA,
        meta={"medium": "vacuum", "resolution": 5000.0},
    )
    inputs = [boss, _without_rv(lamost), flat]
    with log.log_to_list() as records:
        out = prepare_with_rv(inputs, MODEL_LIKE)
    assert list(out.rv_source) == ["header", "estimated", "none"]
    assert out.rv[0] == pytest.approx(-30.35, abs=0.01) and out.rv_err[0] == pytest.approx(
        3.22, abs=0.01
    )
    assert out.rv[1] == pytest.approx(C_KMS * lamost.meta["z"], abs=8.0)
    assert 0 < out.rv_err[1] < 5 and out.rv[2] == 0 and np.isnan(out.rv_err[2])
    np.testing.assert_array_equal(out.flags & LabelFlag.RV_UNRELIABLE, [0, 0, 512])
    warned = [r.getMessage() for r in records if r.levelname == "WARNING"]
    assert warned == [
        "stellarml: 1 of 3 spectra: no radial velocity was known and none could be measured; "
        "they were analysed at rv = 0 (flag RV_UNRELIABLE)"
    ]
    # the re-prepared row equals preparing it at the measured rv; plain prepare keeps rv 0
    ref = prepare(_without_rv(lamost), MODEL_LIKE, rv=out.rv[1])
    np.testing.assert_array_equal(out.flux[1], ref.flux[0])
    assert prepare(_without_rv(lamost), MODEL_LIKE).rv_source[0] == "none"
    # an rv given for all: nothing measured
    given = prepare_with_rv(inputs, MODEL_LIKE, rv=0.0)
    assert list(given.rv_source) == ["given"] * 3 and not np.any(given.flags & 512)
