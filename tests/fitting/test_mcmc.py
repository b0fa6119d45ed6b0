"""emcee sampling on the real APOGEE emulator: posterior widths and coverage."""

import numpy as np
import pytest
from emulator_spectra import DWARF, noisy

from stellarml.fitting import MCMCFitter
from stellarml.flags import LabelFlag
from stellarml.posterior import SamplePosterior


def test_posterior_width_is_the_bound_and_covers_the_truth(small_emulator):
    emu = small_emulator
    truth = np.tile(DWARF, (3, 1))
    flux, ivar = noisy(emu, truth, 50.0, seed=21)
    fitter = MCMCFitter(n_walkers=16, n_steps=600, n_burn=150, min_tau_multiple=10, seed=2)
    result = fitter(emu, flux, ivar)
    assert result.samples.shape == (3, 600 * 16, 5)
    # a Gaussian likelihood near a linear model: the draws' spread is the bound
    sd = result.samples.std(axis=1)
    np.testing.assert_allclose(sd / result.crlb, 1.0, atol=0.25)
    # 3 spectra x 5 labels within their 99.7 % intervals
    lo, hi = np.percentile(result.samples, [0.15, 99.85], axis=1)
    assert np.all((truth > lo) & (truth < hi))
    info = fitter.fit_info
    assert np.all((info["acceptance_fraction"] > 0.2) & (info["acceptance_fraction"] < 0.7))
    assert result.converged.all(), info["chain_over_tau"]
    post = result.to_posterior()
    assert isinstance(post, SamplePosterior)
    assert post.median("teff") == pytest.approx(result.labels[:, 0])
    assert set(post.diagnostics) == {"chi2", "dof", "crlb"}


def test_short_chains_are_flagged_and_bad_settings_refused(small_emulator):
    emu = small_emulator
    flux, ivar = noisy(emu, DWARF[None], 50.0, seed=22)
    result = MCMCFitter(n_walkers=12, n_steps=40, n_burn=10, n_samples=100)(emu, flux, ivar)
    assert result.samples.shape == (1, 100, 5)
    assert not result.converged[0]
    assert result.flags[0] & int(LabelFlag.FIT_NOT_CONVERGED)
    with pytest.raises(ValueError, match="twice the parameters"):
        MCMCFitter(n_walkers=8)(emu, flux, ivar)
    with pytest.raises(ValueError, match="acceptance"):
        MCMCFitter(acceptance=(0.8, 0.2))
    with pytest.raises(ValueError, match="invalid gradient settings"):
        MCMCFitter(gradient={"n_strats": 2})
