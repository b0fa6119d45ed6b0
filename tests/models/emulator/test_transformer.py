"""TransformerEmulator: chunked wavelength tokens, exact Jacobians, memory-bounded groups."""

import numpy as np
import pytest
import torch

from stellarml.models.emulator import SpectrumEmulator, TransformerEmulator
from stellarml.models.emulator.transformer import _wavelength_features

NAMES = ("teff", "logg", "fe_h")
LO, HI = [4000.0, 1.0, -2.0], [6500.0, 5.0, 0.5]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These networks are small: one thread is faster, and steadier on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _grid(npix, lo=3800.0, hi=7000.0):
    return np.exp(np.linspace(np.log(lo), np.log(hi), npix))


def test_padding_of_the_last_chunk_and_shapes():
    torch.manual_seed(0)
    emu = TransformerEmulator(NAMES, LO, HI, _grid(101), chunk=16, d_model=16, n_heads=2)
    assert isinstance(emu, SpectrumEmulator)
    assert emu.n_tokens == 7  # ceil(101 / 16)
    assert emu.head_weight.shape == (7, 16, 16)
    x = torch.rand(5, 3) - 0.5
    flux = emu(x)
    assert flux.shape == (5, 101)
    # one row alone gives the same flux as in a batch (no mixing between spectra)
    np.testing.assert_allclose(emu(x[2:3]).detach(), flux[2:3].detach(), rtol=0, atol=1e-6)
    # different labels, different spectra
    assert (flux[0] - flux[1]).abs().max() > 1e-4


def test_wavelength_encoding_separates_every_token():
    feats = _wavelength_features(_grid(6000), 32, 16)
    assert feats.shape == (188, 64)
    assert np.all(np.abs(feats) <= 1.0)
    dist = np.linalg.norm(feats[:, None] - feats[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    assert dist.min() > 1e-2


@pytest.mark.parametrize("head", ["token", "shared"])
def test_jacobian_against_finite_differences(head):
    torch.manual_seed(2)
    emu = TransformerEmulator(
        NAMES, LO, HI, _grid(70), chunk=8, d_model=16, n_heads=4, head=head
    ).double()
    with torch.no_grad():  # larger head weights so that the derivatives are sizeable
        emu.head_weight.mul_(10.0)
    x = torch.tensor([[0.1, -0.2, 0.3], [-0.3, 0.2, -0.1]], dtype=torch.float64)
    jac = emu.jacobian(x)
    assert jac.shape == (2, 70, 3)
    h = 1e-6
    for k in range(3):
        dx = torch.zeros(3, dtype=torch.float64)
        dx[k] = h
        fd = (emu(x + dx) - emu(x - dx)) / (2 * h)
        np.testing.assert_allclose(jac[..., k].detach(), fd.detach(), rtol=1e-5, atol=1e-8)
    assert jac.abs().max() > 1e-3


def test_six_thousand_pixels_are_evaluated_in_memory_bounded_groups():
    torch.manual_seed(3)
    wave = _grid(6000)
    big = TransformerEmulator(NAMES, LO, HI, wave, chunk=32, d_model=32, n_heads=4)
    # a budget of ~2 spectra per group: 20 spectra go through in 10 groups
    per_spectrum = big.n_tokens * (big.n_heads * big.n_tokens + 3 * big.d_model + big.d_ff)
    small = TransformerEmulator.from_config({**big.get_config(), "max_elements": 2 * per_spectrum})
    small.load_state_dict(big.state_dict())
    assert small._group_size() == 2
    assert big._group_size() >= 20
    calls = []
    hook = small.blocks[0].register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    x = torch.rand(20, 3) - 0.5
    with torch.no_grad():
        grouped = small(x)
        whole = big(x)
    hook.remove()
    assert calls == [2] * 10
    assert grouped.shape == (20, 6000)
    np.testing.assert_allclose(grouped.numpy(), whole.numpy(), rtol=0, atol=1e-5)
    # the Jacobian of all 6000 pixels, too
    jac = small.jacobian(x[:2])
    assert jac.shape == (2, 6000, 3) and torch.isfinite(jac).all()


def test_bad_settings_raise():
    wave = _grid(50)
    with pytest.raises(ValueError, match="multiple of n_heads"):
        TransformerEmulator(NAMES, LO, HI, wave, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="head must be"):
        TransformerEmulator(NAMES, LO, HI, wave, head="pixel")
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        TransformerEmulator(NAMES, LO, HI, wave, chunk=0)
    emu = TransformerEmulator(NAMES, LO, HI, wave, chunk=8, d_model=8, n_heads=2)
    with pytest.raises(ValueError, match=r"x must be \(n, 3\)"):
        emu(torch.zeros(1, 4))
