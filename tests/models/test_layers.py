"""Tests of the residual blocks and the input encoding of deep-REMAP."""

import math

import pytest
import torch

from stellarml.models.layers import (
    InputEncoding,
    ResidualBlockV1,
    ResidualBlockV2,
    Stem,
    make_activation,
)


def test_block_v1_keeps_shape_and_uses_identity_shortcut():
    torch.manual_seed(0)
    block = ResidualBlockV1(8, kernel_size=5).eval()
    x = torch.randn(3, 8, 40)
    assert block(x).shape == (3, 8, 40)
    # with the second convolution zeroed the block is act(x): the identity shortcut
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.norm2.bias.zero_()
    assert torch.allclose(block(x), torch.relu(x))


@pytest.mark.parametrize(("length", "expected"), [(40, 20), (41, 21), (7, 4)])
def test_block_v2_projects_and_halves_the_length(length, expected):
    block = ResidualBlockV2(8, 12, kernel_size=5, stride=2).eval()
    x = torch.randn(2, 8, length)
    y = block(x)
    assert y.shape == (2, 12, expected)
    assert block.shortcut.kernel_size == (1,)
    assert block.shortcut.stride == (2,)
    assert block.shortcut.weight.shape == (12, 8, 1)


def test_stem_downsamples():
    stem = Stem(2, 16, kernel_size=9, stride=4)
    assert stem(torch.randn(2, 2, 2037)).shape == (2, 16, math.ceil(2037 / 4))


def test_input_encoding_weight_channel_and_mask():
    enc = InputEncoding("flux+weight", snr_scale=30.0, flux_clip=(-0.5, 2.0))
    flux = torch.tensor([[1.0, 0.4, float("nan"), 5.0, 0.9]])
    ivar = torch.tensor([[900.0, 100.0, 0.0, 400.0, 0.0]])
    x = enc(flux, ivar)
    assert x.shape == (1, 2, 5)
    expected_flux = torch.tensor([0.0, -0.6, 0.0, 1.0, 0.0])  # clipped at 2.0, masked -> 0
    assert torch.allclose(x[0, 0], expected_flux)
    expected_w = torch.tanh(torch.tensor([30.0, 10.0, 0.0, 20.0, 0.0]) / 30.0)
    assert torch.allclose(x[0, 1], expected_w)
    assert torch.isfinite(x).all()


def test_input_encoding_modes():
    flux = torch.full((2, 6), 0.8)
    ivar = torch.tensor([[1.0, 0, 1, 1, 1, 1], [1.0, 1, 1, 1, 1, 0]])
    mask = InputEncoding("flux+mask")(flux, ivar)
    assert torch.equal(mask[:, 1], (ivar > 0).float())
    only = InputEncoding("flux")
    assert only.n_channels == 1
    assert only(flux, ivar).shape == (2, 1, 6)


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError, match="unknown input encoding"):
        InputEncoding("flux+snr")
    with pytest.raises(ValueError, match="snr_scale"):
        InputEncoding(snr_scale=0)
    with pytest.raises(ValueError, match="flux_clip"):
        InputEncoding(flux_clip=(2.0, 1.0))
    with pytest.raises(ValueError, match="odd"):
        ResidualBlockV1(4, kernel_size=4)
    with pytest.raises(ValueError, match="unknown activation"):
        make_activation("swish2")
