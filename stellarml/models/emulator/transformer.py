"""`TransformerEmulator`: a transformer encoder over wavelength chunks (TransformerPayne-like).

The wavelength grid is cut into ``T = ceil(npix / chunk)`` chunks of ``chunk``
pixels, the tokens (the last chunk is padded: its missing pixel wavelengths
continue the grid's last log-wavelength step, and the padded outputs are
dropped). Each token starts as

    h_t = P(wavelength encoding of chunk t) + E(x)

where the wavelength encoding is a fixed sinusoidal encoding (``n_frequencies``
geometric frequencies, from one period over the whole grid to about one per
chunk) of the chunk's mean ``ln(lambda)`` and of its ``ln(lambda)`` span, ``P``
a linear map to ``d_model``, and ``E`` the label embedding (an MLP of the
scaled labels ``x``, added to every token). ``n_layers`` pre-norm encoder
blocks follow (multi-head self-attention over the tokens, layer norm, a
feed-forward layer, residual connections), then a final layer norm and a
linear head that turns each token into its ``chunk`` pixels: with
``head="token"`` (default) every chunk has its own head weights (the number
of head weights is ``npix * d_model``, as in a per-pixel output layer), with
``head="shared"`` all chunks share one ``(d_model, chunk)`` head (fewer
weights; the pixel pattern inside a chunk must then come from the token).
The flux is ``1 + head output``.

The design follows TransformerPayne (Rozanski et al. 2024: wavelength
encodings as queries, labels as embeddings) in the form the PhDLspec
description gives (a transformer encoder with wavelength and label
embeddings and multi-head attention; Wu, Xiang et al. 2026). Its depth and
widths are not published; the defaults here are small, for CPUs.

Memory: one spectrum needs about ``n_layers * T * (n_heads * T + 3 * d_model
+ d_ff)`` activations; `TransformerEmulator.forward` evaluates
``max_elements // (T * (n_heads * T + 3 * d_model + d_ff))`` spectra at a time
(at least one), so 8 000 pixels in chunks of 32 (250 tokens) stay at a few MB
per spectrum on a CPU.
"""

import math

import numpy as np
import torch

from .base import SpectrumEmulator, _base_config, _check_config

__all__ = ["TransformerEmulator"]

_HEADS = ("token", "shared")


class _EncoderBlock(torch.nn.Module):
    """Pre-norm transformer encoder block: self-attention and feed-forward, both residual."""

    def __init__(self, d_model, n_heads, d_ff):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = torch.nn.LayerNorm(d_model)
        self.qkv = torch.nn.Linear(d_model, 3 * d_model)
        self.proj = torch.nn.Linear(d_model, d_model)
        self.norm2 = torch.nn.LayerNorm(d_model)
        self.ff = torch.nn.Sequential(
            torch.nn.Linear(d_model, d_ff), torch.nn.GELU(), torch.nn.Linear(d_ff, d_model)
        )

    def forward(self, h):
        n, t, d = h.shape
        dh = d // self.n_heads
        # written out (not scaled_dot_product_attention) so that forward-mode
        # AD (torch.func.jacfwd) works through it on every backend
        q, k, v = self.qkv(self.norm1(h)).view(n, t, 3, self.n_heads, dh).unbind(2)
        q, k, v = (a.transpose(1, 2) for a in (q, k, v))  # (n, heads, t, dh)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)
        h = h + self.proj((att @ v).transpose(1, 2).reshape(n, t, d))
        return h + self.ff(self.norm2(h))


class TransformerEmulator(SpectrumEmulator):
    """Labels -> normalised flux through a transformer encoder over wavelength chunks.

    Parameters
    ----------
    label_names : sequence of str
        The ``L`` labels in input order (`stellarml.labels` names).
    label_lo, label_hi : array-like
        ``(L,)`` training box in the labels' physical units (K, dex, km/s):
        the scaling ``x = (l - lo) / (hi - lo) - 0.5``.
    wavelength : array-like
        ``(npix,)`` pixel wavelengths [Angstrom], increasing.
    chunk : int, optional
        Pixels per token (default 32).
    d_model : int, optional
        Token width (default 64); a multiple of ``n_heads``.
    n_heads : int, optional
        Attention heads (default 4).
    n_layers : int, optional
        Encoder blocks (default 2).
    d_ff : int, optional
        Hidden width of the feed-forward layers (default ``2 * d_model``).
    n_frequencies : int, optional
        Sinusoid frequencies of the wavelength encoding (default 16).
    label_hidden : int, optional
        Hidden width of the label-embedding MLP (default ``d_model``).
    head : {"token", "shared"}, optional
        One head per chunk (default) or a single head shared by all chunks.
    max_elements : int, optional
        Activation budget of one evaluation group (see the module notes);
        larger batches of spectra are evaluated in groups.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from stellarml.models.emulator import TransformerEmulator
    >>> emu = TransformerEmulator(("teff", "logg"), [4000.0, 1.0], [6000.0, 5.0],
    ...                           np.linspace(5000.0, 5100.0, 50), chunk=8, d_model=16)
    >>> emu(torch.zeros(3, 2)).shape
    torch.Size([3, 50])
    """

    def __init__(
        self,
        label_names,
        label_lo,
        label_hi,
        wavelength,
        *,
        chunk=32,
        d_model=64,
        n_heads=4,
        n_layers=2,
        d_ff=None,
        n_frequencies=16,
        label_hidden=None,
        head="token",
        max_elements=1 << 24,
    ):
        super().__init__(label_names, label_lo, label_hi, wavelength)
        d_ff = 2 * int(d_model) if d_ff is None else d_ff
        label_hidden = int(d_model) if label_hidden is None else label_hidden
        for name, value in (
            ("chunk", chunk),
            ("d_model", d_model),
            ("n_heads", n_heads),
            ("n_layers", n_layers),
            ("d_ff", d_ff),
            ("n_frequencies", n_frequencies),
            ("label_hidden", label_hidden),
            ("max_elements", max_elements),
        ):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        if head not in _HEADS:
            raise ValueError(f"head must be one of {_HEADS}, got {head!r}")
        self.chunk = int(chunk)
        self.d_model = int(d_model)
        self.n_heads = int(n_heads)
        self.n_layers = int(n_layers)
        self.d_ff = int(d_ff)
        self.n_frequencies = int(n_frequencies)
        self.label_hidden = int(label_hidden)
        self.head_type = head
        self.max_elements = int(max_elements)
        self.n_tokens = -(-self.n_pixels // self.chunk)
        features = _wavelength_features(self.wavelength, self.chunk, self.n_frequencies)
        # fixed function of the grid (in the config): not part of the state dict
        self.register_buffer(
            "wavelength_features", torch.as_tensor(features, dtype=torch.float32), persistent=False
        )
        self.position = torch.nn.Linear(features.shape[1], self.d_model)
        self.label_embedding = torch.nn.Sequential(
            torch.nn.Linear(self.n_labels, self.label_hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(self.label_hidden, self.d_model),
        )
        self.blocks = torch.nn.ModuleList(
            _EncoderBlock(self.d_model, self.n_heads, self.d_ff) for _ in range(self.n_layers)
        )
        self.norm = torch.nn.LayerNorm(self.d_model)
        scale = 1.0 / math.sqrt(self.d_model)
        shape = (
            (self.n_tokens, self.d_model, self.chunk)
            if head == "token"
            else (self.d_model, self.chunk)
        )
        self.head_weight = torch.nn.Parameter(scale * torch.randn(shape) * 0.1)
        bias_shape = (self.n_tokens, self.chunk) if head == "token" else (self.chunk,)
        self.head_bias = torch.nn.Parameter(torch.zeros(bias_shape))

    def _group_size(self):
        per_spectrum = self.n_tokens * (self.n_heads * self.n_tokens + 3 * self.d_model + self.d_ff)
        return max(1, self.max_elements // per_spectrum)

    def _forward_group(self, x):
        h = self.position(self.wavelength_features)[None] + self.label_embedding(x)[:, None, :]
        for block in self.blocks:
            h = block(h)
        h = self.norm(h)
        if self.head_type == "token":
            out = torch.einsum("ntd,tdc->ntc", h, self.head_weight) + self.head_bias
        else:
            out = h @ self.head_weight + self.head_bias
        return 1.0 + out.reshape(x.shape[0], -1)[:, : self.n_pixels]

    def forward(self, x):
        """Normalised flux ``(n, npix)`` at scaled labels ``x`` ``(n, L)``."""
        x = torch.as_tensor(x, dtype=self.head_weight.dtype, device=self.head_weight.device)
        if x.ndim != 2 or x.shape[1] != self.n_labels:
            raise ValueError(f"x must be (n, {self.n_labels}), got {tuple(x.shape)}")
        step = self._group_size()
        if x.shape[0] <= step:
            return self._forward_group(x)
        return torch.cat([self._forward_group(x[i : i + step]) for i in range(0, x.shape[0], step)])

    def get_config(self):
        """Everything but the weights, as a plain (JSON/ASDF-serialisable) dict.

        Returns
        -------
        dict
            ``class``, ``label_names``, ``label_lo`` and ``label_hi`` (physical
            units), ``wavelength`` [Angstrom] (lists) and the architecture:
            ``chunk``, ``d_model``, ``n_heads``, ``n_layers``, ``d_ff``,
            ``n_frequencies``, ``label_hidden``, ``head``, ``max_elements``.
            ``from_config`` of it plus ``load_state_dict(state_dict())``
            reproduces the emulator.
        """
        return {
            **_base_config(self),
            "chunk": self.chunk,
            "d_model": self.d_model,
            "n_heads": self.n_heads,
            "n_layers": self.n_layers,
            "d_ff": self.d_ff,
            "n_frequencies": self.n_frequencies,
            "label_hidden": self.label_hidden,
            "head": self.head_type,
            "max_elements": self.max_elements,
        }

    @classmethod
    def from_config(cls, config):
        """A freshly initialised emulator from a `get_config` dict.

        Parameters
        ----------
        config : dict
            As returned by `get_config`.

        Returns
        -------
        emulator : `TransformerEmulator`
            Untrained; load the weights with ``load_state_dict``.
        """
        cfg = _check_config(cls, config)
        keys = (
            "chunk",
            "d_model",
            "n_heads",
            "n_layers",
            "d_ff",
            "n_frequencies",
            "label_hidden",
            "head",
            "max_elements",
        )
        return cls(
            cfg["label_names"],
            cfg["label_lo"],
            cfg["label_hi"],
            cfg["wavelength"],
            **{k: cfg[k] for k in keys if k in cfg},
        )


def _wavelength_features(wavelength, chunk, n_frequencies):
    """``(T, 4 * n_frequencies)`` sinusoidal encoding of each chunk's ln(lambda) centre and span.

    The grid is padded to ``T * chunk`` pixels by continuing its last
    ln(lambda) step. The centre is mapped to ``z`` in [0, 1] over the grid and
    the span to ``s`` = span / (median span); each gets ``sin`` and ``cos`` of
    ``pi * z * 2**(f * log2(T) / (n_frequencies - 1))`` (periods from twice the
    grid to about two chunks) for ``f = 0 .. n_frequencies - 1``.
    """
    loglam = np.log(np.asarray(wavelength, dtype=np.float64))
    npix = loglam.size
    n_tokens = -(-npix // chunk)
    pad = n_tokens * chunk - npix
    step = loglam[-1] - loglam[-2]
    padded = np.concatenate([loglam, loglam[-1] + step * np.arange(1, pad + 1)])
    tokens = padded.reshape(n_tokens, chunk)
    centre = tokens.mean(axis=1)
    span = tokens[:, -1] - tokens[:, 0]
    width = centre[-1] - centre[0] if n_tokens > 1 else 1.0
    z = (centre - centre[0]) / width
    s = span / np.median(span) if np.median(span) > 0 else np.zeros_like(span)
    top = np.log2(max(n_tokens, 2))
    freq = np.pi * 2.0 ** (np.arange(n_frequencies) * top / max(n_frequencies - 1, 1))
    angles = np.concatenate([z[:, None] * freq, s[:, None] * freq / freq[-1] * np.pi], axis=1)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
