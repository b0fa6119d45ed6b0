"""The Cramér–Rao bound: the inverse Fisher matrix, and the spread of real least-squares fits."""

import numpy as np
import pytest
import torch

from stellarml.fitting import cramer_rao_bound, fisher_matrix


@pytest.fixture
def emulator(apogee_emulator):
    return apogee_emulator


def test_fisher_matrix_equals_the_finite_difference_one(emulator):
    labels = np.array([[5200.0, 4.4, -0.3, 0.1, 6.0]])
    ivar = np.full((1, emulator.n_pixels), 100.0**2)
    fisher = fisher_matrix(emulator, labels, ivar)[0]
    steps = np.array([1.0, 0.002, 0.002, 0.002, 0.01])
    jac = np.empty((emulator.n_pixels, 5))
    for k in range(5):
        up, down = labels.copy(), labels.copy()
        up[0, k] += steps[k]
        down[0, k] -= steps[k]
        f = emulator.double().flux(torch.tensor(np.vstack([up, down]))).detach().numpy()
        jac[:, k] = (f[0] - f[1]) / (2 * steps[k])
    emulator.float()
    expected = jac.T @ (ivar[0][:, None] * jac)
    np.testing.assert_allclose(fisher, expected, rtol=2e-3)
    sigma = cramer_rao_bound(emulator, labels, ivar)[0]
    np.testing.assert_allclose(sigma, np.sqrt(np.diag(np.linalg.inv(expected))), rtol=2e-3)
    # at S/N 100 over 7214 pixels the bound is a few K and hundredths of a dex
    assert 1.0 < sigma[0] < 30.0
    assert (sigma[1:4] < 0.05).all()


def test_bound_scales_with_noise_and_marks_rows_without_data(emulator):
    labels = np.array([[5200.0, 4.4, -0.3, 0.1, 6.0]] * 3)
    ivar = np.stack([np.full(emulator.n_pixels, s**2) for s in (50.0, 100.0, 100.0)])
    ivar[2] = 0.0
    sigma = cramer_rao_bound(emulator, labels, ivar)
    np.testing.assert_allclose(sigma[0] / sigma[1], 2.0, rtol=1e-4)
    assert np.isinf(sigma[2]).all()


def test_the_bound_is_the_spread_of_gauss_newton_fits(emulator):
    """Least-squares fits of noisy spectra scatter by the bound (RMS / CRLB near 1)."""
    rng = np.random.default_rng(3)
    truth = np.array([5200.0, 4.4, -0.3, 0.1, 6.0])
    snr = 60.0
    ivar = np.full(emulator.n_pixels, snr**2)
    emu = emulator.double()
    with torch.no_grad():
        clean = emu.flux(torch.tensor(truth[None])).numpy()[0]
    errors = []
    for _ in range(40):
        noisy = clean + rng.standard_normal(clean.size) / snr
        x = emu.scale(torch.tensor(truth[None]))
        for _ in range(4):  # Gauss-Newton from the truth: converges in a few steps
            jac = emu.jacobian(x)[0].detach().numpy()
            resid = noisy - emu(x).detach().numpy()[0]
            step = np.linalg.solve(jac.T @ (ivar[:, None] * jac), jac.T @ (ivar * resid))
            x = x + torch.tensor(step[None])
        errors.append(emu.unscale(x).detach().numpy()[0] - truth)
    emulator.float()
    bound = cramer_rao_bound(emulator, truth, ivar)[0]
    ratio = np.sqrt(np.mean(np.square(errors), axis=0)) / bound
    # 40 draws: the RMS of a unit normal lies within 0.75-1.25 at ~98 % per label
    assert np.all((ratio > 0.7) & (ratio < 1.3)), ratio


def test_bad_inputs(emulator):
    labels = np.array([5200.0, 4.4, -0.3, 0.1, 6.0])
    with pytest.raises(ValueError, match=r"labels must be \(n, 5\)"):
        cramer_rao_bound(emulator, labels[:3], np.ones(emulator.n_pixels))
    with pytest.raises(ValueError, match="ivar must be"):
        cramer_rao_bound(emulator, labels, np.ones(10))
    with pytest.raises(ValueError, match="non-negative"):
        cramer_rao_bound(emulator, labels, -np.ones(emulator.n_pixels))
    with pytest.raises(ValueError, match="finite"):
        cramer_rao_bound(emulator, labels * np.nan, np.ones(emulator.n_pixels))
