"""MLPEmulator, the emulator configs and the EMULATORS registry."""

import json

import numpy as np
import pytest
import torch

from stellarml.models.emulator import (
    EMULATORS,
    MLPEmulator,
    PayneEmulator,
    SpectrumEmulator,
    TransformerEmulator,
)

NAMES = ("teff", "logg", "fe_h")
LO, HI = [4000.0, 1.0, -2.0], [6500.0, 5.0, 0.5]
WAVE = np.exp(np.linspace(np.log(5000.0), np.log(5200.0), 300))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These networks are small: one thread is faster, and steadier on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _payne(npix=40, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return PayneEmulator(
        rng.normal(size=(npix, k, 3)),
        rng.normal(size=(npix, k)),
        0.1 * rng.normal(size=(npix, k)),
        np.ones(npix),
        NAMES,
        LO,
        HI,
        WAVE[:npix],
    )


def test_shapes_and_the_jacobian_against_finite_differences():
    torch.manual_seed(0)
    emu = MLPEmulator(NAMES, LO, HI, WAVE, hidden=(32, 16), activation="tanh").double()
    assert isinstance(emu, SpectrumEmulator)
    x = torch.tensor([[0.1, -0.2, 0.3], [-0.4, 0.0, 0.2]], dtype=torch.float64)
    flux = emu(x)
    assert flux.shape == (2, 300)
    jac = emu.jacobian(x)
    assert jac.shape == (2, 300, 3)
    h = 1e-6
    for k in range(3):
        dx = torch.zeros(3, dtype=torch.float64)
        dx[k] = h
        fd = (emu(x + dx) - emu(x - dx)) / (2 * h)
        np.testing.assert_allclose(jac[..., k].detach(), fd.detach(), rtol=1e-6, atol=1e-9)
    # the derivative is not trivially zero
    assert jac.abs().max() > 1e-3


def test_residual_head_starts_at_the_continuum_bias():
    emu = MLPEmulator(NAMES, LO, HI, WAVE, hidden=(8,))
    assert torch.all(emu.head.bias == 0)
    direct = MLPEmulator(NAMES, LO, HI, WAVE, hidden=(8,), residual=False)
    assert torch.all(direct.head.bias == 1)
    with torch.no_grad():
        emu.head.weight.zero_()
        direct.head.weight.zero_()
        np.testing.assert_array_equal(emu(torch.zeros(1, 3)).numpy(), 1.0)
        np.testing.assert_array_equal(direct(torch.zeros(1, 3)).numpy(), 1.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: MLPEmulator(NAMES, LO, HI, WAVE, hidden=(24, 12), activation="leaky_relu"),
        lambda: TransformerEmulator(NAMES, LO, HI, WAVE, chunk=16, d_model=16, n_heads=2),
        lambda: _payne(),
    ],
    ids=["mlp", "transformer", "payne"],
)
def test_config_round_trip_through_the_registry_gives_identical_output(make):
    torch.manual_seed(1)
    emu = make()
    config = json.loads(json.dumps(emu.get_config()))  # plain, serialisable
    assert config["class"] in EMULATORS
    assert config["label_names"] == list(NAMES)
    np.testing.assert_array_equal(config["wavelength"], emu.wavelength)
    torch.manual_seed(99)  # a different initialisation, overwritten by the weights
    clone = EMULATORS[config["class"]].from_config(config)
    x = torch.tensor([[0.3, -0.1, 0.2], [-0.45, 0.4, 0.0]])
    with torch.no_grad():
        before = clone(x)
        clone.load_state_dict(emu.state_dict())
        np.testing.assert_array_equal(clone(x).numpy(), emu(x).numpy())
    assert not torch.equal(before, emu(x).detach())
    np.testing.assert_array_equal(clone.label_lo.numpy(), emu.label_lo.numpy())
    # state dicts hold plain tensors only (what the ASDF converter stores)
    assert all(isinstance(v, torch.Tensor) for v in emu.state_dict().values())


def test_payne_from_config_has_zero_weights_of_the_right_shapes():
    emu = _payne(npix=30, k=5)
    blank = PayneEmulator.from_config(emu.get_config())
    assert blank.n_hidden == 5 and blank.n_pixels == 30
    assert {k: v.shape for k, v in blank.state_dict().items()} == {
        k: v.shape for k, v in emu.state_dict().items()
    }
    assert float(blank(torch.zeros(1, 3)).abs().max()) == 0.0


def test_bad_settings_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="hidden"):
        MLPEmulator(NAMES, LO, HI, WAVE, hidden=())
    with pytest.raises(ValueError, match="activation"):
        MLPEmulator(NAMES, LO, HI, WAVE, activation="relu6")
    emu = MLPEmulator(NAMES, LO, HI, WAVE, hidden=(4,))
    with pytest.raises(ValueError, match=r"x must be \(n, 3\)"):
        emu(torch.zeros(2, 2))
    config = emu.get_config()
    with pytest.raises(ValueError, match="not a TransformerEmulator"):
        TransformerEmulator.from_config(config)
    with pytest.raises(ValueError, match="lacks wavelength"):
        MLPEmulator.from_config({k: v for k, v in config.items() if k != "wavelength"})
    with pytest.raises(TypeError, match="dict"):
        MLPEmulator.from_config([1, 2])
