"""The shared data model of the fitters: RV shift, profiled continuum, priors and bounds."""

import numpy as np
import pytest
import torch
from emulator_spectra import DWARF, noisy

from stellarml.fitting import C_KMS, FitProblem, GradientFitter, cramer_rao_bound, legendre_basis
from stellarml.flags import LabelFlag


def shifted(emulator, labels, rv):
    """Emulator spectrum moved to ``rv`` km/s by interpolation within each detector."""
    with torch.no_grad():
        f = emulator.flux(torch.tensor(labels[None], dtype=torch.float64)).numpy()[0]
    w = emulator.wavelength
    u = np.log(w)
    du = np.diff(u)
    cuts = np.nonzero(du > 1.5 * np.median(du))[0] + 1
    out = np.empty_like(f)
    for part in np.split(np.arange(w.size), cuts):
        out[part] = np.interp(u[part] - np.log1p(rv / C_KMS), u[part], f[part])
    return out


def test_radial_velocity_is_recovered(small_emulator):
    emu = small_emulator.double()
    try:
        rv = 12.3
        clean = shifted(emu, DWARF, rv)
        rng = np.random.default_rng(5)
        snr = 100.0
        ivar = np.full((1, clean.size), snr**2)
        flux = clean[None] + rng.standard_normal((1, clean.size)) / snr
        result = GradientFitter(n_starts=3)(emu, flux, ivar, rv=(-40.0, 40.0))
    finally:
        emu.float()
    assert result.converged[0]
    # an RV precision of well under a km/s at S/N 100 on APOGEE (R 22 500)
    assert 0 < result.rv_err[0] < 0.5
    assert result.rv[0] == pytest.approx(rv, abs=4 * result.rv_err[0] + 0.05)
    z = (result.labels[0] - DWARF) / result.errors[0]
    assert np.all(np.abs(z) < 5), z
    np.testing.assert_allclose(result.chi2[0] / result.dof[0], 1.0, atol=0.1)


def test_continuum_is_profiled_and_marginalised(small_emulator):
    emu = small_emulator
    flux, ivar = noisy(emu, DWARF[None], 150.0, seed=6)
    coef = np.array([1.05, -0.04, 0.02])
    continuum = legendre_basis(emu.wavelength, 2) @ coef
    plain = GradientFitter()(emu, flux, ivar)
    tilted = GradientFitter()(emu, flux * continuum, ivar * continuum**-2, continuum_degree=2)
    assert tilted.converged[0]
    np.testing.assert_allclose(tilted.continuum[0], coef, atol=2e-3)
    # the labels agree with the fit of the untilted spectrum, within its errors
    assert np.all(np.abs(tilted.labels[0] - plain.labels[0]) < 2 * plain.errors[0])
    # marginalising the continuum can only widen the bound
    free = cramer_rao_bound(emu, DWARF, ivar[0])
    marg = cramer_rao_bound(emu, DWARF, ivar[0], continuum_degree=2)
    assert np.all(marg >= free * (1 - 1e-6)) and np.any(marg > 1.01 * free)
    # and the fitter's bound is that marginal bound at the fitted labels
    np.testing.assert_allclose(
        tilted.crlb[0],
        cramer_rao_bound(
            emu,
            tilted.labels[0],
            ivar[0] * continuum**-2,
            continuum_degree=2,
            continuum=tilted.continuum[0],
        )[0],
        rtol=1e-3,
    )


def test_priors_pull_and_bounds_hold(small_emulator):
    emu = small_emulator
    flux, ivar = noisy(emu, DWARF[None], 20.0, seed=7)
    free = GradientFitter()(emu, flux, ivar)
    tight = GradientFitter()(emu, flux, ivar, priors={"teff": (5300.0, 1.0)})
    assert tight.labels[0, 0] == pytest.approx(5300.0, abs=3.0)
    assert tight.errors[0, 0] < 1.0
    # the bound is the likelihood's alone: the prior does not change it
    np.testing.assert_allclose(tight.crlb[0, 0], free.crlb[0, 0], rtol=0.05)
    boxed = GradientFitter()(emu, flux, ivar, bounds={"fe_h": (-0.1, 0.2)})
    assert -0.1 - 1e-6 <= boxed.labels[0, 2] <= 0.2 + 1e-6
    assert boxed.labels[0, 2] == pytest.approx(-0.1, abs=1e-4)  # truth -0.3 is outside


def test_bad_options_are_refused(small_emulator):
    emu = small_emulator
    flux, ivar = noisy(emu, DWARF[None], 50.0, seed=8)
    fit = GradientFitter()
    with pytest.raises(ValueError, match="does not have"):
        fit(emu, flux, ivar, priors={"ca_fe": (0.0, 0.1)})
    with pytest.raises(ValueError, match="sigmas > 0"):
        fit(emu, flux, ivar, priors={"teff": (5000.0, 0.0)})
    with pytest.raises(ValueError, match="no RV is fitted"):
        fit(emu, flux, ivar, priors={"rv": (0.0, 1.0)})
    with pytest.raises(ValueError, match="does not overlap"):
        fit(emu, flux, ivar, bounds={"teff": (9000.0, 9500.0)})
    with pytest.raises(ValueError, match="continuum_degree"):
        fit(emu, flux, ivar, continuum_degree=-1)
    with pytest.raises(ValueError, match="rv must be"):
        fit(emu, flux, ivar, rv="fast")
    with pytest.raises(ValueError, match="init must be"):
        fit(emu, flux, ivar, init=[5000.0, 4.0])


def test_rows_without_enough_pixels_are_flagged(small_emulator):
    emu = small_emulator
    flux, ivar = noisy(emu, np.tile(DWARF, (2, 1)), 50.0, seed=9)
    ivar[1, 5:] = 0.0  # 5 good pixels for 5 labels + 3 continuum terms
    problem = FitProblem(emu, flux, ivar, continuum_degree=2)
    assert problem.valid.tolist() == [True, False]
    assert problem.row_flags[1] == int(LabelFlag.TOO_FEW_GOOD_PIXELS)
    assert problem.dof[0] == emu.n_pixels - 5 - 3


def test_the_emulator_error_is_added_to_the_noise(small_emulator):
    emu = small_emulator
    ivar = np.full(emu.n_pixels, 100.0**2)
    bare = cramer_rao_bound(emu, DWARF, ivar)
    # an emulator error equal to the noise doubles the variance: sqrt(2) on the bound
    np.testing.assert_allclose(
        cramer_rao_bound(emu, DWARF, ivar, model_error=0.01) / bare, np.sqrt(2.0), rtol=1e-4
    )
    flux, ivar2 = noisy(emu, DWARF[None], 100.0, seed=10)
    fit = GradientFitter()(emu, flux, ivar2, model_error=np.full(emu.n_pixels, 0.01))
    np.testing.assert_allclose(fit.chi2[0] / fit.dof[0], 0.5, atol=0.06)
    with pytest.raises(ValueError, match="model_error must be finite"):
        GradientFitter()(emu, flux, ivar2, model_error=-0.01)
    with pytest.raises(ValueError, match="model_error must be a scalar"):
        GradientFitter()(emu, flux, ivar2, model_error=np.ones(3))
