"""GradientFitter on the real APOGEE emulator: injected labels back within the Cramér–Rao bound."""

import numpy as np
import pytest
from emulator_spectra import noisy

from stellarml.fitting import GradientFitter, cramer_rao_bound
from stellarml.flags import LabelFlag


@pytest.fixture
def emulator(apogee_emulator):
    return apogee_emulator


def test_recovers_injected_labels_within_the_bound(emulator):
    rng = np.random.default_rng(7)
    n = 24
    # inner half of the box: labels away from where the emulator extrapolates
    lo, hi = emulator.label_lo.numpy(), emulator.label_hi.numpy()
    truth = lo + (hi - lo) * rng.uniform(0.25, 0.75, (n, 5))
    flux, ivar = noisy(emulator, truth, 80.0, seed=8)
    fitter = GradientFitter(n_starts=3)
    result = fitter(emulator, flux, ivar)  # no init: from the centre and random starts
    assert result.converged.all()
    assert fitter.fit_info["n_converged"] == n
    bound = cramer_rao_bound(emulator, truth, ivar)
    z = (result.labels - truth) / bound
    rms = np.sqrt(np.mean(z**2, axis=0))
    # 24 spectra: the RMS of a unit normal lies in 0.65-1.35 at > 95 % per label
    assert np.all((rms > 0.6) & (rms < 1.4)), rms
    # chi2 per degree of freedom of a correct fit is ~1
    np.testing.assert_allclose(result.chi2 / result.dof, 1.0, atol=0.06)
    # the reported covariance is the bound at the fitted labels, close to the truth's
    np.testing.assert_allclose(
        np.sqrt(np.diagonal(result.covariance, axis1=1, axis2=2)), bound, rtol=0.1
    )


def test_posterior_flags_diagnostics_and_rows_without_data(emulator):
    truth = np.array([[5200.0, 4.4, -0.3, 0.1, 6.0], [5800.0, 4.3, 0.0, 0.0, 5.0]])
    flux, ivar = noisy(emulator, truth, 100.0, seed=1)
    ivar[1] = 0.0
    flux[1] = np.nan  # no data: its flux is not read
    result = GradientFitter()(emulator, flux, ivar, init=truth)
    assert np.isnan(result.labels[1]).all() and not result.converged[1]
    post = result.to_posterior()
    assert post.valid.tolist() == [True, False]
    assert post.flags[1] & int(LabelFlag.TOO_FEW_GOOD_PIXELS)
    assert not post.flags[0] & int(LabelFlag.FIT_NOT_CONVERGED)
    assert set(post.diagnostics) == {"chi2", "dof", "crlb"}
    assert post.diagnostics["dof"][0] == emulator.n_pixels - 5
    assert post.diagnostics["crlb"]["teff"][0] == pytest.approx(
        np.sqrt(result.covariance[0, 0, 0]), rel=1e-6
    )
    assert post.median("teff")[0] == pytest.approx(
        5200.0, abs=5 * post.diagnostics["crlb"]["teff"][0]
    )


def test_too_few_iterations_are_flagged_and_bounds_hold(emulator):
    truth = np.array([[5200.0, 4.4, -0.3, 0.1, 6.0]])
    flux, ivar = noisy(emulator, truth, 100.0, seed=2)
    result = GradientFitter(n_starts=1, max_iter=1)(emulator, flux, ivar)
    assert not result.converged[0]
    assert result.to_posterior().flags[0] & int(LabelFlag.FIT_NOT_CONVERGED)
    # a spectrum far outside the box: labels stay inside it
    lo, hi = emulator.label_lo.numpy(), emulator.label_hi.numpy()
    outside = np.ones((1, emulator.n_pixels)) * 0.3
    fit = GradientFitter(n_starts=2)(emulator, outside, ivar)
    assert np.all(fit.labels >= lo - 1e-3 * (hi - lo)) and np.all(
        fit.labels <= hi + 1e-3 * (hi - lo)
    )


def test_bad_inputs(emulator):
    fitter = GradientFitter()
    good = np.ones((1, emulator.n_pixels))
    with pytest.raises(ValueError, match="ivar must be"):
        fitter(emulator, good, np.ones((1, 10)))
    with pytest.raises(ValueError, match=r"flux must be \(n, 7214\)"):
        fitter(emulator, np.ones((1, 5)), good)
    with pytest.raises(ValueError, match="non-negative"):
        fitter(emulator, good, -good)
    # inside a batch, a spectrum with NaN flux where ivar > 0 is a flagged row
    truth = np.array([[5200.0, 4.4, -0.3, 0.1, 6.0]] * 2)
    flux, ivar = noisy(emulator, truth, 100.0, seed=4)
    flux[0, 3] = np.nan
    result = fitter(emulator, flux, ivar)
    assert result.valid.tolist() == [False, True]
    assert result.flags[0] & int(LabelFlag.BAD_INPUT) and np.isnan(result.labels[0]).all()
    assert result.converged[1]
    with pytest.raises(ValueError, match="n_starts must be an integer >= 1"):
        GradientFitter(n_starts=0)


def test_labels_at_the_box_edge_are_flagged(emulator):
    # a spectrum hotter than the emulator's box: the fit stops at its edge
    truth = np.array([[5200.0, 4.4, -0.3, 0.1, 6.0], [5200.0, 4.4, -0.3, 0.1, 6.0]])
    flux, ivar = noisy(emulator, truth, 100.0, seed=3)
    result = GradientFitter()(emulator, flux, ivar, bounds={"teff": (4300.0, 5000.0)})
    assert result.labels[0, 0] == pytest.approx(5000.0, abs=0.01)
    assert result.flags[0] & int(LabelFlag.PDF_AT_GRID_EDGE)
    free = GradientFitter()(emulator, flux, ivar)
    assert not free.flags[0] & int(LabelFlag.PDF_AT_GRID_EDGE)
