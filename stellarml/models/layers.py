"""Building blocks of the 1-D residual network used by deep-REMAP.

The blocks follow the two module types named in the deep-REMAP architecture
figure (Gilda 2025): ``RN-Module V1`` keeps the length and depth of its input
and adds it back through an identity shortcut; ``RN-Module V2`` changes the
depth, downsamples the spectral axis with a stride and uses a 1x1 convolution
as projection shortcut. Layer counts, widths and kernel sizes are not given in
the paper; they are configuration of `~stellarml.models.RemapNet`.

`InputEncoding` turns a continuum-normalised flux and its inverse variance on
the model grid into the channels the network reads, so that masked pixels
(``ivar == 0``) are visible to it.
"""

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "INPUT_ENCODINGS",
    "InputEncoding",
    "ResidualBlockV1",
    "ResidualBlockV2",
    "Stem",
    "make_activation",
]

#: Activation functions known to `make_activation`, by name.
ACTIVATIONS = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}

#: Input encodings known to `InputEncoding`, with their number of channels.
INPUT_ENCODINGS = {"flux+weight": 2, "flux+mask": 2, "flux": 1}


def make_activation(name):
    """Return a new activation module.

    Parameters
    ----------
    name : str
        One of the keys of `ACTIVATIONS` (``"relu"``, ``"silu"``, ``"gelu"``,
        ``"elu"``, ``"leaky_relu"``).

    Returns
    -------
    module : `torch.nn.Module`

    Raises
    ------
    ValueError
        If ``name`` is not a key of `ACTIVATIONS` (the message lists them).

    Examples
    --------
    >>> from stellarml.models import make_activation
    >>> make_activation("silu")
    SiLU()
    >>> try:
    ...     make_activation("tanh")
    ... except ValueError as err:
    ...     print(err)
    unknown activation 'tanh'; choose one of elu, gelu, leaky_relu, relu, silu
    """
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(sorted(ACTIVATIONS))}"
        ) from None


def _conv(in_channels, out_channels, kernel_size, stride=1):
    """Convolution without bias (a batch norm follows), 'same'-style padding."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel sizes must be odd and positive, got {kernel_size}")
    return nn.Conv1d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        bias=False,
    )


class InputEncoding(nn.Module):
    """Encode flux and inverse variance as network input channels.

    Parameters
    ----------
    mode : {"flux+weight", "flux+mask", "flux"}
        ``"flux+weight"`` (default): channel 0 is ``flux - 1`` (zero at the
        continuum and at masked pixels), channel 1 is the bounded pixel weight
        ``tanh(sqrt(ivar) / snr_scale)`` in [0, 1): 0 for a masked pixel,
        close to 1 for a pixel with S/N well above ``snr_scale``.
        ``"flux+mask"``: channel 1 is 1 for good pixels, 0 for masked ones.
        ``"flux"``: only channel 0.
    snr_scale : float
        S/N per pixel at which the weight channel reaches tanh(1) = 0.76
        (dimensionless; the flux is continuum-normalised, so ``sqrt(ivar)`` is
        the S/N per pixel).
    flux_clip : tuple of float
        ``(lo, hi)`` limits applied to the normalised flux before subtracting
        1, so that cosmic rays or broken pixels cannot dominate a
        convolution (dimensionless, continuum = 1).

    Raises
    ------
    ValueError
        For an unknown ``mode``, ``snr_scale <= 0`` or ``flux_clip`` with
        ``lo >= hi``.

    Notes
    -----
    Non-finite flux values at pixels with ``ivar > 0`` are not expected (the
    preparation step zero-weights them); the encoder still maps any pixel with
    ``ivar <= 0`` or non-finite values to "no information" (0 in every channel).

    Examples
    --------
    Four pixels: at the continuum with S/N 30, in a line with S/N 10, masked,
    and a cosmic ray clipped to 2 (S/N 50):

    >>> import numpy as np
    >>> import torch
    >>> from stellarml.models import InputEncoding
    >>> encode = InputEncoding()
    >>> flux = torch.tensor([[1.0, 0.5, 1.2, 3.0]])
    >>> ivar = torch.tensor([[900.0, 100.0, 0.0, 2500.0]])  # 1 / sigma^2 of the normalised flux
    >>> x = encode(flux, ivar)
    >>> x.shape, encode.n_channels
    (torch.Size([1, 2, 4]), 2)
    >>> np.round(x[0].numpy(), 3)  # flux - 1, then tanh(S/N / snr_scale)
    array([[ 0.   , -0.5  ,  0.   ,  1.   ],
           [ 0.762,  0.322,  0.   ,  0.931]], dtype=float32)
    >>> InputEncoding("flux+mask")(flux, ivar)[0, 1]
    tensor([1., 1., 0., 1.])
    """

    def __init__(self, mode="flux+weight", snr_scale=30.0, flux_clip=(-0.5, 2.0)):
        super().__init__()
        if mode not in INPUT_ENCODINGS:
            raise ValueError(
                f"unknown input encoding {mode!r}; choose one of {', '.join(INPUT_ENCODINGS)}"
            )
        if not snr_scale > 0:
            raise ValueError(f"snr_scale must be positive, got {snr_scale!r}")
        lo, hi = (float(v) for v in flux_clip)
        if not lo < hi:
            raise ValueError(f"flux_clip must be (lo, hi) with lo < hi, got {flux_clip!r}")
        self.mode = mode
        self.snr_scale = float(snr_scale)
        self.flux_clip = (lo, hi)

    @property
    def n_channels(self):
        """Number of channels produced (int)."""
        return INPUT_ENCODINGS[self.mode]

    def forward(self, flux, ivar):
        """Encode a batch.

        Parameters
        ----------
        flux, ivar : `torch.Tensor`
            ``(n, npix)`` continuum-normalised flux and its inverse variance.

        Returns
        -------
        x : `torch.Tensor`
            ``(n, n_channels, npix)`` float32.
        """
        good = (ivar > 0) & torch.isfinite(flux) & torch.isfinite(ivar)
        zero = torch.zeros((), dtype=flux.dtype, device=flux.device)
        x0 = torch.where(good, flux.clamp(*self.flux_clip) - 1.0, zero)
        if self.mode == "flux":
            return x0.unsqueeze(1)
        if self.mode == "flux+mask":
            x1 = good.to(flux.dtype)
        else:
            x1 = torch.tanh(torch.sqrt(torch.where(good, ivar, zero)) / self.snr_scale)
        return torch.stack((x0, x1), dim=1)

    def extra_repr(self):
        return f"mode={self.mode!r}, snr_scale={self.snr_scale}, flux_clip={self.flux_clip}"


class Stem(nn.Module):
    """Strided input convolution: ``conv -> batch norm -> activation``.

    A stride > 1 here is the cheapest place to shorten the spectrum: the
    filter bank of the stem is learned, so it acts as a learned anti-aliasing
    filter before the subsampling.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output depth.
    kernel_size : int
        Odd kernel width in pixels.
    stride : int
        Downsampling factor along the spectral axis.
    activation : str
        Name of the activation (see `make_activation`).

    Raises
    ------
    ValueError
        If ``kernel_size`` is even or not positive, or ``activation`` unknown.

    Examples
    --------
    >>> import torch
    >>> from stellarml.models import Stem
    >>> stem = Stem(2, 8, kernel_size=9, stride=4)
    >>> stem(torch.zeros(3, 2, 400)).shape  # (n, out_channels, npix / stride)
    torch.Size([3, 8, 100])
    """

    def __init__(self, in_channels, out_channels, kernel_size=9, stride=4, activation="relu"):
        super().__init__()
        self.conv = _conv(in_channels, out_channels, kernel_size, stride)
        self.norm = nn.BatchNorm1d(out_channels)
        self.act = make_activation(activation)

    def forward(self, x):
        """Apply the stem to ``x`` of shape ``(n, in_channels, npix)``."""
        return self.act(self.norm(self.conv(x)))


class ResidualBlockV1(nn.Module):
    """RN-Module V1: two convolutions with an identity shortcut.

    ``y = act(x + BN(conv(act(BN(conv(x))))))``; depth and length unchanged.

    Parameters
    ----------
    channels : int
        Depth of input and output.
    kernel_size : int
        Odd kernel width in pixels.
    activation : str
        Name of the activation (see `make_activation`).

    Raises
    ------
    ValueError
        If ``kernel_size`` is even or not positive, or ``activation`` unknown.

    Examples
    --------
    >>> import torch
    >>> from stellarml.models import ResidualBlockV1
    >>> block = ResidualBlockV1(8, kernel_size=5)
    >>> block(torch.zeros(3, 8, 100)).shape  # depth and length unchanged
    torch.Size([3, 8, 100])
    """

    def __init__(self, channels, kernel_size=5, activation="relu"):
        super().__init__()
        self.conv1 = _conv(channels, channels, kernel_size)
        self.norm1 = nn.BatchNorm1d(channels)
        self.act1 = make_activation(activation)
        self.conv2 = _conv(channels, channels, kernel_size)
        self.norm2 = nn.BatchNorm1d(channels)
        self.act2 = make_activation(activation)

    def forward(self, x):
        """Apply the block to ``x`` of shape ``(n, channels, length)``."""
        y = self.act1(self.norm1(self.conv1(x)))
        return self.act2(self.norm2(self.conv2(y)) + x)


class ResidualBlockV2(nn.Module):
    """RN-Module V2: strided two-convolution block with a projection shortcut.

    ``y = act(BN(conv1x1_s(x)) + BN(conv(act(BN(conv_s(x))))))`` where the
    subscript ``s`` marks the stride: the block changes the depth from
    ``in_channels`` to ``out_channels`` and divides the length by ``stride``
    (rounded up).

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output depth.
    kernel_size : int
        Odd kernel width in pixels.
    stride : int
        Downsampling factor along the spectral axis (2 in the default network).
    activation : str
        Name of the activation (see `make_activation`).

    Raises
    ------
    ValueError
        If ``kernel_size`` is even or not positive, or ``activation`` unknown.

    Examples
    --------
    >>> import torch
    >>> from stellarml.models import ResidualBlockV2
    >>> block = ResidualBlockV2(8, 16, stride=2)
    >>> block(torch.zeros(3, 8, 101)).shape  # deeper, half as long (rounded up)
    torch.Size([3, 16, 51])
    """

    def __init__(self, in_channels, out_channels, kernel_size=5, stride=2, activation="relu"):
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, kernel_size, stride)
        self.norm1 = nn.BatchNorm1d(out_channels)
        self.act1 = make_activation(activation)
        self.conv2 = _conv(out_channels, out_channels, kernel_size)
        self.norm2 = nn.BatchNorm1d(out_channels)
        self.shortcut = nn.Conv1d(in_channels, out_channels, 1, stride=stride, bias=False)
        self.shortcut_norm = nn.BatchNorm1d(out_channels)
        self.act2 = make_activation(activation)

    def forward(self, x):
        """Apply the block to ``x`` of shape ``(n, in_channels, length)``."""
        y = self.act1(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act2(y + self.shortcut_norm(self.shortcut(x)))
