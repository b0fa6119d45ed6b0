"""Tests of Doppler shifts, air/vacuum conversion and radial velocities."""

import astropy.units as u
import numpy as np
import pytest
from specutils.utils.wcs_utils import air_to_vac, vac_to_air

from stellarml.spectra import (
    C_KMS,
    air_to_vacuum,
    doppler_shift_wavelength,
    estimate_rv,
    log_lambda_grid,
    vacuum_to_air,
)


def test_doppler_shift_scalar_and_batch():
    assert doppler_shift_wavelength(5000.0, 0.0) == 5000.0
    rest = doppler_shift_wavelength(6000.0, C_KMS / 1000)
    assert rest == pytest.approx(6000.0 / 1.001, rel=1e-15)
    wave = np.array([4000.0, 5000.0, 6000.0])
    rv = np.array([-100.0, 0.0, 100.0, 200.0])
    out = doppler_shift_wavelength(wave, rv)
    assert out.shape == (4, 3)
    np.testing.assert_allclose(out[3], wave / (1 + 200.0 / C_KMS), rtol=1e-15)
    # equal sizes: elementwise
    np.testing.assert_allclose(
        doppler_shift_wavelength(wave, rv[:3]), wave / (1 + rv[:3] / C_KMS), rtol=1e-15
    )


def test_doppler_shift_quantities_and_relativistic():
    out = doppler_shift_wavelength([500.0, 600.0] * u.nm, 30 * u.km / u.s)
    assert out.unit == u.nm
    np.testing.assert_allclose(out.value, np.array([500.0, 600.0]) / (1 + 30 / C_KMS))
    rel = doppler_shift_wavelength(5000.0, 600.0, relativistic=True)
    first = doppler_shift_wavelength(5000.0, 600.0)
    beta = 600.0 / C_KMS
    # the two formulae differ at second order in v/c
    assert (first - rel) / first == pytest.approx(beta**2 / 2, rel=0.01)
    with pytest.raises(ValueError, match="speed of light"):
        doppler_shift_wavelength(5000.0, 4e5)
    with pytest.raises(u.UnitsError, match="velocity"):
        doppler_shift_wavelength(5000.0, 3 * u.m)


def test_air_vacuum_known_lines_and_specutils():
    # H-alpha and H-beta (NIST: air 6562.80 / 4861.35, vacuum 6564.61 / 4862.68)
    assert vacuum_to_air(6564.614) == pytest.approx(6562.801, abs=2e-3)
    assert air_to_vacuum(4861.35) == pytest.approx(4862.71, abs=2e-2)
    wave = np.linspace(2000.0, 25000.0, 2001)
    # specutils implements the same Morton (2000) formula
    np.testing.assert_allclose(vacuum_to_air(wave), vac_to_air(wave * u.AA).value, atol=1e-8)
    np.testing.assert_allclose(
        air_to_vacuum(wave), air_to_vac(wave * u.AA, scheme="iteration").value, atol=1e-6
    )
    # the inversion is consistent to far below a pixel
    w = wave[wave > 2001.0]
    np.testing.assert_allclose(air_to_vacuum(vacuum_to_air(w)), w, atol=2e-8)
    # below 2000 Angstrom no air wavelengths: unchanged; Quantities are accepted
    assert vacuum_to_air(1500.0) == 1500.0
    assert air_to_vacuum(150 * u.nm) == pytest.approx(1500.0, rel=1e-15)
    assert vacuum_to_air(0.65646 * u.micron) == pytest.approx(6562.79, abs=0.01)
    assert vacuum_to_air(wave.reshape(3, -1)[:, :5]).shape == (3, 5)


def _line_spectrum(wave, rv, centers, depth=0.5, sigma_kms=40.0):
    """Analytic absorption spectrum of a source at ``rv``, observed at ``wave``."""
    rest = wave[None, :] / (1 + np.atleast_1d(rv)[:, None] / C_KMS)
    flux = np.ones_like(rest)
    for c in centers:
        flux -= depth * np.exp(-0.5 * (np.log(rest / c) * C_KMS / sigma_kms) ** 2)
    return flux


def test_estimate_rv_recovers_velocities_and_errors():
    wave = log_lambda_grid(5000.0, 5600.0, 1e-4)  # 30 km/s pixels
    rng = np.random.default_rng(3)
    centers = rng.uniform(5050.0, 5550.0, 40)
    template = _line_spectrum(wave, 0.0, centers)[0]
    true = rng.uniform(-250.0, 250.0, 60)
    sigma = 0.02
    flux = _line_spectrum(wave, true, centers) + rng.normal(0, sigma, (60, wave.size))
    ivar = np.full_like(flux, sigma**-2)
    rv, err = estimate_rv(flux, ivar, wave, template)
    pulls = (rv - true) / err
    assert np.all(np.isfinite(rv))
    assert np.all(np.abs(rv - true) < 3.0)  # a tenth of a pixel
    # the formal errors describe the scatter
    assert 0.6 < np.std(pulls) < 1.6
    # a single spectrum gives floats; finer steps agree
    r1, e1 = estimate_rv(flux[0], ivar[0], wave * u.AA, template, step=5.0)
    assert isinstance(r1, float) and abs(r1 - true[0]) < 3.0 and e1 > 0


def test_estimate_rv_edges_and_errors():
    wave = log_lambda_grid(5000.0, 5300.0, 1e-4)
    template = _line_spectrum(wave, 0.0, [5150.0], sigma_kms=300.0)[0]
    flux = _line_spectrum(wave, [500.0, 0.0], [5150.0], sigma_kms=300.0)
    ivar = np.ones_like(flux)
    ivar[1] = 0.0  # no usable pixel
    rv, err = estimate_rv(flux, ivar, wave, template, rv_range=(-100, 100))
    # outside the search range / no data: NaN rather than a range edge
    assert np.isnan(rv).all() and np.isnan(err).all()
    with pytest.raises(ValueError, match="uniform in ln"):
        estimate_rv(flux, None, np.linspace(5000.0, 5300.0, wave.size), template)
    with pytest.raises(ValueError, match="template"):
        estimate_rv(flux, None, wave, template[:-1])
    with pytest.raises(ValueError, match="increasing"):
        estimate_rv(flux, None, wave, template, rv_range=(10, -10))
