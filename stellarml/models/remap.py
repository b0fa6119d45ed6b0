"""deep-REMAP: multi-task regression-as-classification of stellar labels with a 1-D ResNet.

Re-derived from the description of Gilda (2025, arXiv:2510.09362): a 1-D
residual CNN (RN-Module V1/V2 blocks, depth growing while the spectral length
shrinks) maps a prepared spectrum to an embedding vector; one classification
head per label predicts a binned probability distribution (PDF) of the label;
training minimises an asymmetric loss on the bins plus an embedding loss.
Every hyper-parameter the paper does not give (NF in METHODS.md) is a
configuration field here, with the defaults in `DEFAULT_ARCHITECTURE`,
`DEFAULT_LOSS`, `DEFAULT_TRAINING` and `DEFAULT_BINS` — these are stellarml's
choices, not the paper's. See ``docs/remap.rst``.
"""

import copy
import datetime
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._utils import resolve_device, seed_everything
from ..flags import FATAL, LabelFlag
from ..labels import get_label
from .layers import InputEncoding, ResidualBlockV1, ResidualBlockV2, Stem, make_activation
from .losses import AsymmetricLoss, make_embedding_loss

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_BINS",
    "DEFAULT_LOSS",
    "DEFAULT_TRAINING",
    "LabelBins",
    "RemapModel",
    "RemapNet",
    "der_snr_ivar",
    "nearest_distance",
    "pdf_from_logits",
    "summarize_pdf",
]

#: Default label bins ``(lo, hi, width)`` in label units (K, dex, km/s). Not from the paper
#: (NF): chosen to cover FGKM stars with bins finer than typical label precision.
DEFAULT_BINS = {
    "teff": (3000.0, 8500.0, 50.0),
    "logg": (-0.5, 5.5, 0.1),
    "fe_h": (-3.0, 1.0, 0.05),
    "m_h": (-3.0, 1.0, 0.05),
    "alpha_fe": (-0.4, 0.8, 0.05),
    "vsini": (0.0, 100.0, 2.0),
    "vmicro": (0.0, 5.0, 0.1),
    "vmacro": (0.0, 30.0, 0.5),
}

#: Default network configuration (every value NF in the paper; chosen for speed on CPUs:
#: about 8.6 million multiply-accumulates per 2037-pixel spectrum).
DEFAULT_ARCHITECTURE = {
    "input_encoding": "flux+weight",  # channels: flux - 1, tanh(sqrt(ivar) / snr_scale)
    "snr_scale": 30.0,  # S/N per pixel at which the weight channel is tanh(1)
    "flux_clip": (-0.5, 2.0),  # normalised flux range fed to the network
    "stem_channels": 16,
    "stem_kernel": 9,  # pixels
    "stem_stride": 4,
    "stage_channels": (16, 32, 48, 64),  # depth after each stage (one RN-V2 + RN-V1 blocks)
    "stage_blocks": (1, 2, 2, 2),  # blocks per stage: 1 RN-V2 (stride 2) + (n - 1) RN-V1
    "kernel_size": 5,  # pixels, residual blocks
    "pool_length": 16,  # adaptive average pooling to this length before the embedding
    "embedding_dim": 64,
    "head_hidden": 0,  # 0: linear heads; > 0: one hidden layer of this width
    "dropout": 0.1,  # before each head
    "activation": "relu",
}

#: Default loss configuration (every value NF in the paper). ``gamma_pos=None`` means
#: the variant's published default: 0 for "softmax", 1 for "sigmoid".
DEFAULT_LOSS = {
    "variant": "softmax",
    "gamma_pos": None,
    "gamma_neg": 4.0,
    "clip": 0.05,  # probability margin of the sigmoid form
    "sigma_bins": 1.0,  # width of the Gaussian soft targets, in bins
    "label_smoothing": 0.1,  # uniform share of the softmax form (asymmetrically focused)
    "task_weights": None,  # {label: weight}; None = 1 for every label
    "embedding": "center",  # "center", "pairwise", or None (no embedding loss)
    "embedding_weight": 0.1,  # lambda_emb
    "embedding_options": {},  # keyword arguments of the embedding loss
}

#: Default training configuration (every value NF in the paper).
DEFAULT_TRAINING = {
    "max_epochs": 40,
    "batch_size": 256,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "schedule": "onecycle",
    "warmup_fraction": 0.1,
    "patience": 8,
    "min_delta": 0.0,
    "grad_clip": 5.0,
    "validation_fraction": 0.1,
    "augment": {"snr": (10.0, 300.0), "rv_jitter": 0.3, "continuum": 0.0, "continuum_degree": 3},
    "domain_reference_size": 2000,  # training embeddings kept for the domain check
    "domain_quantile": 0.99,  # quantile of held-out NN distances used as threshold
    "fine_tune_epochs": 30,
    "fine_tune_lr": 3e-4,
    "fine_tune_batch_size": 32,
    "fine_tune_freeze": "stem",
    "fine_tune_runs": 1,  # > 1: average the weights of several fine-tuning runs
    "progress": True,
}

#: ``ivar`` given to pixels of spectra declared noiseless (S/N 10^6 per pixel).
NOISELESS_IVAR = 1e12

#: Largest forward batch on the CPU: 2037-pixel batches of 128-512 spectra ran ~20 %
#: faster than 1024 on two cores (the activations stay in the caches).
_CPU_BATCH = 256


@dataclass(frozen=True)
class LabelBins:
    """Equal-width bins of one label.

    Parameters
    ----------
    lo, hi : float
        Lower edge of the first and upper edge of the last bin, in label units.
    width : float
        Bin width in label units; ``(hi - lo) / width`` must be an integer >= 2.
    """

    lo: float
    hi: float
    width: float

    def __post_init__(self):
        lo, hi, width = float(self.lo), float(self.hi), float(self.width)
        if not (np.isfinite([lo, hi, width]).all() and hi > lo and width > 0):
            raise ValueError(
                f"bins must be finite (lo, hi, width) with hi > lo, width > 0; "
                f"got ({self.lo}, {self.hi}, {self.width})"
            )
        n = (hi - lo) / width
        if abs(n - round(n)) > 1e-6 * max(1.0, n) or round(n) < 2:
            raise ValueError(
                f"(hi - lo) / width must be an integer >= 2, got ({hi} - {lo}) / {width} = {n:g}"
            )
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "width", width)

    @property
    def n_bins(self):
        """Number of bins (int)."""
        return round((self.hi - self.lo) / self.width)

    @property
    def edges(self):
        """Bin edges, ``(n_bins + 1,)`` in label units."""
        return self.lo + self.width * np.arange(self.n_bins + 1)

    @property
    def centers(self):
        """Bin centres, ``(n_bins,)`` in label units."""
        return self.lo + self.width * (np.arange(self.n_bins) + 0.5)

    def positions(self, values):
        """Label values -> positions in bin units (bin ``j`` covers ``[j, j + 1)``)."""
        return (np.asarray(values, dtype=float) - self.lo) / self.width

    def as_tuple(self):
        """``(lo, hi, width)`` as plain floats."""
        return (self.lo, self.hi, self.width)


class RemapNet(nn.Module):
    """1-D residual CNN with an embedding and one classification head per label.

    ``(flux, ivar) -> InputEncoding -> Stem (strided conv) -> stages -> adaptive
    average pool -> flatten -> Linear (embedding, dim E) -> heads``. Stage ``i``
    is one `ResidualBlockV2` (stride 2, depth ``stage_channels[i]``) followed
    by ``stage_blocks[i] - 1`` `ResidualBlockV1`: the depth grows while the
    spectral length shrinks. Each head is ``activation -> dropout -> Linear``
    (or a hidden layer first) giving the logits of that label's bins.

    Parameters
    ----------
    n_bins : dict of str to int
        Number of bins per label, in output order.
    input_encoding, snr_scale, flux_clip :
        See `InputEncoding`.
    stem_channels, stem_kernel, stem_stride : int
        Depth, odd kernel width (pixels) and stride of the stem.
    stage_channels, stage_blocks : sequence of int
        Depth and number of blocks of each stage (same length).
    kernel_size : int
        Odd kernel width (pixels) of the residual blocks.
    pool_length : int
        Length of the feature map after adaptive average pooling; keeps the
        coarse position along the spectrum (which lines) in the embedding.
    embedding_dim : int
        Length ``E`` of the embedding.
    head_hidden : int
        Width of a hidden layer in every head (0 for linear heads).
    dropout : float
        Dropout probability before each head.
    activation : str
        See `~stellarml.models.layers.make_activation`.
    """

    def __init__(
        self,
        n_bins,
        *,
        input_encoding="flux+weight",
        snr_scale=30.0,
        flux_clip=(-0.5, 2.0),
        stem_channels=16,
        stem_kernel=9,
        stem_stride=4,
        stage_channels=(16, 32, 48, 64),
        stage_blocks=(1, 2, 2, 2),
        kernel_size=5,
        pool_length=16,
        embedding_dim=64,
        head_hidden=0,
        dropout=0.1,
        activation="relu",
    ):
        super().__init__()
        n_bins = {str(k): int(v) for k, v in dict(n_bins).items()}
        if not n_bins or min(n_bins.values()) < 2:
            raise ValueError(f"n_bins must map each label to >= 2 bins, got {n_bins}")
        stage_channels = tuple(int(c) for c in stage_channels)
        stage_blocks = tuple(int(b) for b in stage_blocks)
        if len(stage_channels) != len(stage_blocks) or not stage_channels:
            raise ValueError("stage_channels and stage_blocks must be non-empty and equally long")
        if min(stage_blocks) < 1 or min(stage_channels) < 1:
            raise ValueError("every stage needs >= 1 block and >= 1 channel")
        if int(pool_length) < 1 or int(embedding_dim) < 1 or int(head_hidden) < 0:
            raise ValueError("pool_length and embedding_dim must be >= 1, head_hidden >= 0")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.n_bins = n_bins
        self.config = {
            "input_encoding": input_encoding,
            "snr_scale": float(snr_scale),
            "flux_clip": tuple(float(v) for v in flux_clip),
            "stem_channels": int(stem_channels),
            "stem_kernel": int(stem_kernel),
            "stem_stride": int(stem_stride),
            "stage_channels": stage_channels,
            "stage_blocks": stage_blocks,
            "kernel_size": int(kernel_size),
            "pool_length": int(pool_length),
            "embedding_dim": int(embedding_dim),
            "head_hidden": int(head_hidden),
            "dropout": float(dropout),
            "activation": activation,
        }
        self.encoder = InputEncoding(input_encoding, snr_scale, flux_clip)
        self.stem = Stem(
            self.encoder.n_channels,
            int(stem_channels),
            int(stem_kernel),
            int(stem_stride),
            activation,
        )
        stages = []
        depth = int(stem_channels)
        for channels, blocks in zip(stage_channels, stage_blocks, strict=True):
            stage = [ResidualBlockV2(depth, channels, int(kernel_size), 2, activation)]
            stage += [
                ResidualBlockV1(channels, int(kernel_size), activation) for _ in range(blocks - 1)
            ]
            stages.append(nn.Sequential(*stage))
            depth = channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool1d(int(pool_length))
        self.embedding = nn.Linear(depth * int(pool_length), int(embedding_dim))
        heads = {}
        for name, k in n_bins.items():
            layers = [make_activation(activation), nn.Dropout(float(dropout))]
            if int(head_hidden) > 0:
                layers += [
                    nn.Linear(int(embedding_dim), int(head_hidden)),
                    make_activation(activation),
                ]
                layers.append(nn.Linear(int(head_hidden), k))
            else:
                layers.append(nn.Linear(int(embedding_dim), k))
            heads[name] = nn.Sequential(*layers)
        self.heads = nn.ModuleDict(heads)

    @property
    def label_names(self):
        """Names of the labels, in head order (tuple of str)."""
        return tuple(self.n_bins)

    def inference_copy(self):
        """A copy for fast inference: evaluation mode, batch norms folded into convolutions.

        Every ``conv -> BatchNorm`` pair of the stem and the residual blocks
        becomes one convolution with the normalisation's running statistics
        and affine parameters folded in (identical outputs up to rounding,
        ~15 % faster on CPUs), and the activations inside the backbone work in
        place. The copy shares nothing with this network.

        Returns
        -------
        net : `RemapNet`
        """
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        net = copy.deepcopy(self).eval()
        pairs = (
            ("conv", "norm"),
            ("conv1", "norm1"),
            ("conv2", "norm2"),
            ("shortcut", "shortcut_norm"),
        )
        for module in (net.stem, *net.stages.modules()):
            for conv_name, norm_name in pairs:
                conv = getattr(module, conv_name, None)
                norm = getattr(module, norm_name, None)
                if isinstance(conv, nn.Conv1d) and isinstance(norm, nn.BatchNorm1d):
                    setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                    setattr(module, norm_name, nn.Identity())
            for name, child in module.named_children():
                if isinstance(child, nn.ReLU):
                    setattr(module, name, nn.ReLU(inplace=True))
        for param in net.parameters():
            param.requires_grad_(False)
        return net

    def embed(self, flux, ivar):
        """Embedding ``(n, E)`` of a batch of ``(n, npix)`` flux and inverse variance."""
        x = self.stages(self.stem(self.encoder(flux, ivar)))
        return self.embedding(self.pool(x).flatten(1))

    def forward(self, flux, ivar):
        """Logits and embedding of a batch.

        Parameters
        ----------
        flux, ivar : `torch.Tensor`
            ``(n, npix)`` continuum-normalised flux and inverse variance.

        Returns
        -------
        logits : tuple of `torch.Tensor`
            One ``(n, n_bins)`` tensor per label, in `label_names` order.
        embedding : `torch.Tensor`
            ``(n, E)``.
        """
        emb = self.embed(flux, ivar)
        return tuple(head(emb) for head in self.heads.values()), emb


def pdf_from_logits(logits, variant="softmax", clip=0.0):
    """Binned PDF ``(n, K)`` from head logits.

    Parameters
    ----------
    logits : `torch.Tensor`
        ``(n, K)`` head outputs.
    variant : {"softmax", "sigmoid"}
        The loss form the head was trained with. ``"softmax"``: the softmax.
        ``"sigmoid"``: the per-bin probabilities shifted by the asymmetric
        loss's margin, ``max(sigmoid(z) - clip, 0)``, normalised — the loss
        treats probabilities below ``clip`` as zero and never pushes them
        further down, so without the shift the many negative bins would form a
        spurious floor of about ``clip`` each. A row whose shifted
        probabilities are all zero falls back to the plain sigmoids.
    clip : float
        The ``clip`` margin of the sigmoid form.

    Returns
    -------
    pdf : `torch.Tensor`
        Rows sum to 1.
    """
    if variant == "sigmoid":
        p = torch.sigmoid(logits)
        if clip > 0:
            shifted = (p - clip).clamp_min(0.0)
            empty = shifted.sum(dim=-1, keepdim=True) <= 0
            p = torch.where(empty, p, shifted)
        return p / p.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
    return torch.softmax(logits, dim=-1)


_QUANTILES = (0.16, 0.5, 0.84)


def _summary_positions(pdf):
    """Summaries of ``(n, K)`` PDFs in bin units: (p16, p50, p84, mode, mean, edge_mass)."""
    n, k = pdf.shape
    tiny = torch.finfo(pdf.dtype).tiny
    p = pdf / pdf.sum(dim=1, keepdim=True).clamp_min(tiny)
    cdf = p.cumsum(dim=1)
    q = torch.tensor(_QUANTILES, dtype=p.dtype, device=p.device).expand(n, 3).contiguous()
    j = torch.searchsorted(cdf, q).clamp(max=k - 1)
    prev = torch.where(j > 0, cdf.gather(1, (j - 1).clamp_min(0)), torch.zeros_like(q))
    frac = ((q - prev) / p.gather(1, j).clamp_min(tiny)).clamp(0.0, 1.0)
    quant = j.to(p.dtype) + frac
    jm = p.argmax(dim=1, keepdim=True)
    pm = p.gather(1, jm)
    pl = p.gather(1, (jm - 1).clamp_min(0))
    pr = p.gather(1, (jm + 1).clamp(max=k - 1))
    denom = pl - 2.0 * pm + pr
    interior = (jm > 0) & (jm < k - 1) & (denom < 0)
    offset = torch.where(
        interior, 0.5 * (pl - pr) / torch.where(interior, denom, -1.0), torch.zeros_like(pm)
    ).clamp(-0.5, 0.5)
    mode = jm.to(p.dtype) + 0.5 + offset
    centers = torch.arange(k, dtype=p.dtype, device=p.device) + 0.5
    mean = (p * centers).sum(dim=1, keepdim=True)
    edge = p[:, :1] + p[:, -1:]
    return torch.cat([quant, mode, mean, edge], dim=1)


def _summaries_from_positions(pos, bins):
    """Turn bin-unit summaries ``(n, 6)`` into the summary dict in label units."""
    pos = np.asarray(pos, dtype=np.float64)
    values = bins.lo + bins.width * pos[:, :5]
    p16, median, p84, mode, mean = values.T
    summary = {
        "median": median,
        "mode": mode,
        "mean": mean,
        "p16": p16,
        "p84": p84,
        "err_lo": median - p16,
        "err_hi": p84 - median,
    }
    return summary, pos[:, 5].copy()


def summarize_pdf(pdf, bins):
    """Point estimates and intervals of binned PDFs.

    Quantiles interpolate the cumulative distribution linearly inside a bin
    (the probability of a bin is spread uniformly over it); the mode is the
    centre of the most probable bin refined by a parabola through it and its
    two neighbours (at most half a bin); the mean uses bin centres.

    Parameters
    ----------
    pdf : `numpy.ndarray` or `torch.Tensor`
        ``(n, K)`` probabilities of the ``K`` bins (rows are normalised here).
    bins : `LabelBins` or tuple
        The bins, ``(lo, hi, width)`` in label units.

    Returns
    -------
    summary : dict of str to `numpy.ndarray`
        ``median``, ``mode``, ``mean``, ``p16``, ``p84`` (label units),
        ``err_lo = median - p16``, ``err_hi = p84 - median`` and
        ``edge_mass``: the probability in the first plus the last bin.
    """
    if not isinstance(bins, LabelBins):
        bins = LabelBins(*bins)
    p = torch.as_tensor(pdf)
    if p.dim() != 2 or p.shape[1] != bins.n_bins:
        raise ValueError(f"pdf must be (n, {bins.n_bins}), got {tuple(p.shape)}")
    summary, edge = _summaries_from_positions(
        _summary_positions(p.to(torch.float64)).cpu().numpy(), bins
    )
    summary["edge_mass"] = edge
    return summary


def nearest_distance(query, reference, *, exclude_self=False, chunk=4096):
    """Euclidean distance from each query vector to its nearest reference vector.

    Parameters
    ----------
    query : `torch.Tensor` or `numpy.ndarray`
        ``(n, E)``.
    reference : `torch.Tensor` or `numpy.ndarray`
        ``(m, E)``.
    exclude_self : bool
        ``query`` is ``reference``: ignore the zero distance of each vector
        to itself (leave-one-out nearest neighbour).
    chunk : int
        Queries per distance matrix (bounds memory at ``chunk * m`` floats).

    Returns
    -------
    distance : `numpy.ndarray`
        ``(n,)`` float64, in embedding units.
    """
    q = torch.as_tensor(query, dtype=torch.float32)
    r = torch.as_tensor(reference, dtype=torch.float32).to(q.device)
    out = []
    for start in range(0, q.shape[0], chunk):
        d = torch.cdist(q[start : start + chunk], r)
        if exclude_self:
            rows = torch.arange(d.shape[0], device=d.device)
            d[rows, rows + start] = math.inf
        out.append(d.min(dim=1).values)
    if not out:
        return np.zeros(0)
    return torch.cat(out).double().cpu().numpy()


def der_snr_ivar(flux, ivar):
    """Inverse variance estimated from the spectra themselves (DER_SNR).

    For spectra without uncertainties: the noise of each spectrum is
    ``1.482602 / sqrt(6) * median|2 f_i - f_(i-2) - f_(i+2)|`` over pixels
    whose three values are all good (Stoehr et al. 2008, the DER_SNR
    estimator), and every good pixel gets ``ivar = 1 / noise^2``. On spectra
    sampled close to Nyquist, real line structure adds to the differences, so
    the noise of very high-S/N spectra is overestimated (their S/N is a lower
    limit); the network's weight channel saturates at high S/N, so this matters
    little.

    Parameters
    ----------
    flux : `numpy.ndarray`
        ``(n, npix)`` continuum-normalised flux.
    ivar : `numpy.ndarray`
        ``(n, npix)``: only ``ivar > 0`` (good pixel) is used.

    Returns
    -------
    ivar : `numpy.ndarray`
        ``(n, npix)`` float32, 0 where the input was 0.
    snr : `numpy.ndarray`
        ``(n,)`` the estimated S/N per pixel at the continuum (``1 / noise``;
        NaN for a spectrum with fewer than 5 good consecutive pixels).
    """
    flux = np.asarray(flux, dtype=np.float64)
    good = np.asarray(ivar) > 0
    d = np.abs(2.0 * flux[:, 2:-2] - flux[:, :-4] - flux[:, 4:])
    valid = good[:, 2:-2] & good[:, :-4] & good[:, 4:]
    count = valid.sum(axis=1)
    d = np.sort(np.where(valid, d, np.inf), axis=1)
    rows = np.arange(d.shape[0])
    hi = np.clip(count // 2, 0, d.shape[1] - 1)
    lo = np.clip((count - 1) // 2, 0, d.shape[1] - 1)
    median = np.where(count > 0, 0.5 * (d[rows, lo] + d[rows, hi]), np.nan)
    noise = 1.482602 / math.sqrt(6.0) * median
    noise = np.where(np.isfinite(noise), np.maximum(noise, 1e-4), np.nan)
    snr = 1.0 / noise
    out = np.where(good & np.isfinite(noise)[:, None], snr[:, None] ** 2, 0.0)
    return out.astype(np.float32), snr


def _tuples(value):
    """Lists (e.g. from a YAML file) -> tuples, recursively, so configurations compare equal."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _merge(defaults, given, what):
    """Defaults updated with ``given``; unknown keys are an error."""
    merged = dict(defaults)
    if given is None:
        return merged
    if not isinstance(given, dict):
        raise TypeError(f"{what} must be a dict of settings, got {type(given).__name__}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {what} settings {unknown}; known: {sorted(defaults)}")
    merged.update(_tuples(given))
    return merged


def _plain(value, depth=0):
    """JSON/ASDF-friendly copy of provenance (numbers, strings, lists, dicts, arrays)."""
    if depth > 8:
        return repr(value)[:200]
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.size <= 100_000:
        return value.copy()
    if hasattr(value, "__fspath__"):
        return str(value)
    return repr(value)[:200]


def _module_state(module):
    """A detached copy of ``module.state_dict()``."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _average_states(states):
    """Element-wise mean of state dicts (float tensors; integer buffers from the first)."""
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = (sum(st[key].double() for st in states) / len(states)).to(first.dtype)
        else:
            out[key] = first
    return out


class _RemapObjective(nn.Module):
    """Training objective: sum_k w_k ASL_k + lambda_emb * L_emb (not public)."""

    def __init__(self, net, asl, embedding_loss, task_weights, embedding_weight, bins):
        super().__init__()
        self.net = net
        self.asl = asl
        self.embedding_loss = embedding_loss
        self.task_weights = tuple(float(w) for w in task_weights)
        self.embedding_weight = float(embedding_weight)
        self.bins = tuple(bins)

    def forward(self, flux, ivar, positions):
        logits, emb = self.net(flux, ivar)
        logs = {}
        asl_total = 0.0
        for k, (name, z) in enumerate(zip(self.net.label_names, logits, strict=True)):
            term = self.asl(z, positions[:, k])
            asl_total = asl_total + self.task_weights[k] * term
            logs[f"asl_{name}"] = term.detach()
            if not self.training:
                p = pdf_from_logits(z, self.asl.variant, self.asl.clip)
                centers = torch.arange(z.shape[1], dtype=p.dtype, device=p.device) + 0.5
                mean = (p * centers).sum(dim=1)
                logs[f"mae_{name}"] = (mean - positions[:, k]).abs().mean() * self.bins[k].width
        loss = asl_total
        if self.embedding_loss is not None and self.embedding_weight > 0:
            emb_loss = self.embedding_loss(emb, positions)
            loss = loss + self.embedding_weight * emb_loss
            logs["embedding"] = emb_loss.detach()
        logs["asl"] = asl_total.detach()
        logs["loss"] = loss
        return logs


def _objective_step(module, batch):
    return module(*batch)


def _predict_members(
    models, distance_scales, flux, ivar, *, batch_size, device, want_pdf, want_embedding
):
    """Forward pass of one or more trained models (same grid and bins), in batches.

    The label PDFs of the models are averaged (an equal-weight mixture) before
    the summaries, which are computed on the device. The embedding is the first
    model's; the domain distance is the largest of ``distance / scale`` over the
    models that keep a domain reference.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    dev = resolve_device(device)
    first = models[0]
    bins = first.label_bins()
    names = list(bins)
    nets = [m._inference_net(dev) for m in models]
    pdf_args = [(c["variant"], c["clip"]) for c in (m.get_config()["loss"] for m in models)]
    n = flux.shape[0]
    pos = {name: np.empty((n, 6), dtype=np.float32) for name in names}
    pdfs = (
        {name: np.empty((n, b.n_bins), dtype=np.float32) for name, b in bins.items()}
        if want_pdf
        else None
    )
    emb_out = np.empty((n, nets[0].config["embedding_dim"]), dtype=np.float32)
    refs = []
    for m, scale in zip(models, distance_scales, strict=True):
        ref = getattr(m, "domain_reference_", None)
        if ref is not None:
            ref = (torch.from_numpy(np.ascontiguousarray(ref)).to(dev), float(scale))
        refs.append(ref)
    dist = np.empty(n, dtype=np.float64) if any(r is not None for r in refs) else None
    if dev.type == "cpu":  # smaller CPU batches keep the activations in cache (~20 % faster)
        batch_size = min(batch_size, _CPU_BATCH)
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            f = flux[start:stop].to(dev, non_blocking=True)
            iv = ivar[start:stop].to(dev, non_blocking=True)
            mixture = [None] * len(names)
            far = None
            for k, (net, (variant, clip), ref) in enumerate(zip(nets, pdf_args, refs, strict=True)):
                logits, emb = net(f, iv)
                for j, z in enumerate(logits):
                    p = pdf_from_logits(z, variant, clip)
                    mixture[j] = p if mixture[j] is None else mixture[j] + p
                if k == 0:
                    emb_out[start:stop] = emb.cpu().numpy()
                if ref is not None:
                    d = torch.cdist(emb, ref[0]).min(dim=1).values
                    if ref[1] != 1.0:
                        d = d / ref[1]
                    far = d if far is None else torch.maximum(far, d)
            for name, p in zip(names, mixture, strict=True):
                if len(nets) > 1:
                    p = p / len(nets)
                pos[name][start:stop] = _summary_positions(p).cpu().numpy()
                if pdfs is not None:
                    pdfs[name][start:stop] = p.cpu().numpy()
            if dist is not None:
                dist[start:stop] = far.cpu().numpy()
    result = {"summary": {}, "edge_mass": {}}
    for name, b in bins.items():
        result["summary"][name], result["edge_mass"][name] = _summaries_from_positions(pos[name], b)
    if want_pdf:
        result["pdf"] = pdfs
        result["bin_centers"] = {name: b.centers for name, b in bins.items()}
    if want_embedding:
        result["embedding"] = emb_out
    if dist is not None:
        result["domain_distance"] = dist
    return result


class _LabelPredictor:
    """Prediction entry points shared by `RemapModel` and `RemapEnsemble`.

    Subclasses provide ``preparation``, ``device``, ``_check_fitted``,
    ``_arrays`` and ``_prediction_members`` (the networks that predict and the
    scale each one's domain distance is divided by).
    """

    def _predict_tensors(
        self, flux, ivar, *, batch_size, device, want_pdf=True, want_embedding=True
    ):
        """Forward pass in batches; summaries computed on the device."""
        members, scales = self._prediction_members()
        return _predict_members(
            members,
            scales,
            flux,
            ivar,
            batch_size=batch_size,
            device=device,
            want_pdf=want_pdf,
            want_embedding=want_embedding,
        )

    def predict_prepared(
        self, flux, ivar, *, flags=None, batch_size=1024, device=None, return_pdf=True
    ):
        """Label PDFs and summaries of spectra already on the model grid.

        Parameters
        ----------
        flux : array-like
            ``(n, npix)`` (or ``(npix,)``) continuum-normalised flux.
        ivar : array-like or None
            Inverse variance of ``flux`` (0 = masked pixel). `None`: unknown
            for every spectrum, estimated with `der_snr_ivar`.
        flags : array-like of int, optional
            `~stellarml.flags.LabelFlag` bits per spectrum; rows with
            ``NO_UNCERTAINTY`` (whose ``ivar`` only marks good pixels) get the
            `der_snr_ivar` estimate, because the network reads the S/N.
        batch_size : int
            Spectra per forward pass (at most 256 on the CPU, which is
            faster there).
        device : str or `torch.device`, optional
            Default: the model's ``device``.
        return_pdf : bool
            Include the full PDFs (``n * n_bins`` floats per label).

        Returns
        -------
        result : dict
            ``"summary"``: ``{label: {"median", "mode", "mean", "p16", "p84",
            "err_lo", "err_hi"}}`` (``(n,)`` float64 arrays in label units);
            ``"edge_mass"``: ``{label: (n,)}`` probability in the first plus
            last bin; ``"pdf"``: ``{label: (n, n_bins) float32}`` and
            ``"bin_centers"`` (if ``return_pdf``); ``"embedding"``: ``(n, E)``
            float32; ``"domain_distance"``: ``(n,)`` Euclidean distance of the
            embedding to the nearest stored training embedding (compare with
            `domain_threshold_`); ``"estimated_snr"``: ``(n,)`` the DER_SNR
            S/N of rows whose ``ivar`` was estimated, NaN elsewhere.
        """
        self._check_fitted()
        estimate = None
        if ivar is None:
            flux = np.atleast_2d(np.asarray(flux, dtype=np.float32))
            ivar = np.where(np.isfinite(flux), np.float32(1.0), np.float32(0.0))
            estimate = np.ones(flux.shape[0], dtype=bool)
        flux, ivar = self._arrays(flux, ivar)
        if flags is not None:
            flags = np.atleast_1d(np.asarray(flags, dtype=np.int64))
            if flags.shape != (flux.shape[0],):
                raise ValueError(f"flags must have shape ({flux.shape[0]},), got {flags.shape}")
            unknown = (flags & int(LabelFlag.NO_UNCERTAINTY)) != 0
            estimate = unknown if estimate is None else estimate | unknown
        snr = np.full(flux.shape[0], np.nan)
        if estimate is not None and estimate.any():
            ivar = ivar.copy()
            ivar[estimate], snr[estimate] = der_snr_ivar(flux[estimate], ivar[estimate])
        result = self._predict_tensors(
            torch.from_numpy(flux),
            torch.from_numpy(ivar),
            batch_size=batch_size,
            device=self.device if device is None else device,
            want_pdf=return_pdf,
        )
        result["estimated_snr"] = snr
        return result

    def predict(self, spectra, *, batch_size=1024, device=None, return_pdf=True, **prepare_kw):
        """Prepare spectra (or a library) for the model grid and predict.

        Parameters
        ----------
        spectra : spectra, `~stellarml.libraries.SpectralLibrary` or PreparedBatch
            Anything `stellarml.spectra.prepare` accepts; a library is
            prepared with its own ``prepare``; a prepared batch is used as is.
        batch_size, device, return_pdf :
            See `predict_prepared`.
        **prepare_kw
            ``rv``, ``resolution``, ``fwhm`` for `stellarml.spectra.prepare`.

        Returns
        -------
        result : dict
            As `predict_prepared`, one row per input spectrum; rows with
            fatal preparation flags hold NaN; rows flagged ``NO_UNCERTAINTY``
            use the `der_snr_ivar` estimate. Adds ``"flags"`` (preparation
            flags; `stellarml.derive_labels` adds the quality flags),
            ``"snr"``, ``"rv"`` and ``"messages"`` from the preparation.
        """
        self._check_fitted()
        if all(hasattr(spectra, a) for a in ("flux", "ivar", "flags", "snr")) and not hasattr(
            spectra, "prepare"
        ):
            batch = spectra
        else:
            if self.preparation is None:
                raise ValueError("predict(spectra) needs the model's preparation settings")
            if hasattr(spectra, "prepare") and hasattr(spectra, "label_array"):
                batch = spectra.prepare(self.preparation)
            else:
                from ..spectra import prepare

                batch = prepare(spectra, self.preparation, **prepare_kw)
        flags = np.asarray(batch.flags, dtype=np.int64)
        good = (flags & int(FATAL)) == 0
        n = flags.size
        sub = self.predict_prepared(
            np.asarray(batch.flux)[good],
            np.asarray(batch.ivar)[good],
            flags=flags[good],
            batch_size=batch_size,
            device=device,
            return_pdf=return_pdf,
        )

        def expand(arr):
            full = np.full((n, *arr.shape[1:]), np.nan, dtype=np.result_type(arr, np.float32))
            full[good] = arr
            return full

        result = {
            "summary": {
                name: {key: expand(v) for key, v in s.items()} for name, s in sub["summary"].items()
            },
            "edge_mass": {name: expand(v) for name, v in sub["edge_mass"].items()},
            "embedding": expand(sub["embedding"]),
        }
        if "pdf" in sub:
            result["pdf"] = {name: expand(v) for name, v in sub["pdf"].items()}
            result["bin_centers"] = sub["bin_centers"]
        if "domain_distance" in sub:
            result["domain_distance"] = expand(sub["domain_distance"])
        result["estimated_snr"] = expand(sub["estimated_snr"])
        result.update(
            flags=flags,
            snr=np.asarray(batch.snr),
            rv=np.asarray(batch.rv),
            messages=list(batch.messages),
        )
        return result


class RemapModel(_LabelPredictor):
    """deep-REMAP stellar-label model: train, fine-tune, predict label PDFs.

    Scikit-learn style: the constructor only stores its arguments; `fit`,
    `fit_prepared`, `fine_tune` and `fine_tune_prepared` return ``self``;
    learned attributes end in ``_``.

    Parameters
    ----------
    labels : sequence of str
        Label names from the registry (`stellarml.labels`), in output order.
    bins : dict of str to tuple, optional
        ``{label: (lo, hi, width)}`` in label units; labels not given use
        `DEFAULT_BINS`.
    preparation : `~stellarml.spectra.PreparationSettings`, optional
        How spectra are put on the model grid. Needed by `fit` (libraries)
        and `predict` (spectra); `fit_prepared`/`predict_prepared` take arrays
        already on the grid.
    architecture, loss, training : dict, optional
        Overrides of `DEFAULT_ARCHITECTURE`, `DEFAULT_LOSS`, `DEFAULT_TRAINING`.
    name : str
        Model name, written to output tables.
    seed : int
        Seed of weight initialisation, data splits, shuffling and augmentation.
    device : str or `torch.device`
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...

    Attributes
    ----------
    net_ : `RemapNet`
        The trained network.
    embedding_loss_ : `~stellarml.models.losses.EmbeddingLoss` or None
        The embedding loss with its learned state (e.g. bin centres).
    n_pix_ : int
        Number of pixels of the model grid.
    history_ : list of dict
        Per-epoch training log (losses, validation losses and MAEs, lr, time),
        fine-tuning epochs included (``stage`` key).
    metrics_ : dict
        Validation metrics per stage (``"fit"``, ``"fine_tune"``): per label
        MAE, RMSE, bias (label units), ``coverage_68`` (fraction of true values
        inside [p16, p84]) and median half-width of that interval.
    provenance_ : dict
        What the model was trained on and how (counts, excluded rows, library
        metadata, versions, seed, timing).
    domain_reference_ : `numpy.ndarray`
        ``(m, E)`` float32 embeddings of up to ``domain_reference_size``
        training spectra.
    domain_threshold_ : float
        The ``domain_quantile`` quantile of the nearest-neighbour distances of
        held-out training spectra to `domain_reference_` (embedding units).
    """

    def __init__(
        self,
        labels=("teff", "logg", "fe_h"),
        *,
        bins=None,
        preparation=None,
        architecture=None,
        loss=None,
        training=None,
        name="remap",
        seed=0,
        device="auto",
    ):
        self.labels = labels
        self.bins = bins
        self.preparation = preparation
        self.architecture = architecture
        self.loss = loss
        self.training = training
        self.name = name
        self.seed = seed
        self.device = device

    # ------------------------------------------------------------------ configuration
    @property
    def label_names(self):
        """Label names in output order (tuple of str)."""
        if isinstance(self.labels, str):
            return (self.labels,)
        names = tuple(str(n) for n in self.labels)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"labels must be a non-empty sequence of distinct names: {names}")
        return names

    @property
    def label_specs(self):
        """`~stellarml.labels.LabelSpec` of each label (tuple)."""
        return tuple(get_label(n) for n in self.label_names)

    def label_bins(self):
        """Bins of every label: dict of name to `LabelBins`."""
        given = dict(self.bins or {})
        unknown = sorted(set(given) - set(self.label_names))
        if unknown:
            raise ValueError(f"bins given for labels {unknown} that the model does not have")
        out = {}
        for name in self.label_names:
            get_label(name)
            if name in given:
                spec = given[name]
            elif name in DEFAULT_BINS:
                spec = DEFAULT_BINS[name]
            else:
                raise ValueError(f"no default bins for label {name!r}; pass bins={{...}}")
            if isinstance(spec, LabelBins):
                out[name] = spec
            else:
                if len(spec) != 3:
                    raise ValueError(f"bins of {name!r} must be (lo, hi, width), got {spec!r}")
                out[name] = LabelBins(*spec)
        return out

    def bin_centers(self, label):
        """Bin centres of ``label`` in its unit (`numpy.ndarray`)."""
        return self._bins_of(label).centers

    def bin_edges(self, label):
        """Bin edges of ``label`` in its unit (`numpy.ndarray`)."""
        return self._bins_of(label).edges

    def _bins_of(self, label):
        bins = self.label_bins()
        if label not in bins:
            raise KeyError(f"label {label!r} not in this model ({', '.join(bins)})")
        return bins[label]

    def get_config(self):
        """Resolved configuration: defaults updated with the given overrides.

        Returns
        -------
        config : dict
            ``{"architecture": ..., "loss": ..., "training": ...}``.
        """
        arch = _merge(DEFAULT_ARCHITECTURE, self.architecture, "architecture")
        loss = _merge(DEFAULT_LOSS, self.loss, "loss")
        if loss["variant"] not in ("softmax", "sigmoid"):
            raise ValueError(
                f"loss variant must be 'softmax' or 'sigmoid', got {loss['variant']!r}"
            )
        if loss["gamma_pos"] is None:
            loss["gamma_pos"] = 0.0 if loss["variant"] == "softmax" else 1.0
        loss["embedding_options"] = dict(loss["embedding_options"] or {})
        tw = dict(loss["task_weights"] or {})
        unknown = sorted(set(tw) - set(self.label_names))
        if unknown:
            raise ValueError(f"task_weights given for unknown labels {unknown}")
        loss["task_weights"] = {n: float(tw.get(n, 1.0)) for n in self.label_names}
        if any(w < 0 for w in loss["task_weights"].values()):
            raise ValueError("task_weights must be >= 0")
        train = _merge(DEFAULT_TRAINING, self.training, "training")
        if train["augment"] is not None:
            train["augment"] = _merge(DEFAULT_TRAINING["augment"], train["augment"], "augment")
        if not 0 <= train["validation_fraction"] < 1:
            raise ValueError("validation_fraction must be in [0, 1)")
        if not 0 < train["domain_quantile"] <= 1:
            raise ValueError("domain_quantile must be in (0, 1]")
        return {"architecture": arch, "loss": loss, "training": train}

    def _augmenter(self, train_cfg):
        from ..training.trainer import SpectrumAugmenter

        if train_cfg["augment"] is None:
            return None
        return SpectrumAugmenter(**train_cfg["augment"])

    def _build(self, n_pix, config):
        bins = self.label_bins()
        arch = config["architecture"]
        net = RemapNet({n: b.n_bins for n, b in bins.items()}, **arch)
        kind = config["loss"]["embedding"]
        emb = None
        if kind is not None:
            emb = make_embedding_loss(
                kind,
                [b.n_bins for b in bins.values()],
                net.config["embedding_dim"],
                **config["loss"]["embedding_options"],
            )
        return net, emb

    def _objective(self, config):
        lc = config["loss"]
        asl = AsymmetricLoss(
            gamma_pos=lc["gamma_pos"],
            gamma_neg=lc["gamma_neg"],
            clip=lc["clip"],
            variant=lc["variant"],
            sigma_bins=lc["sigma_bins"],
            label_smoothing=lc["label_smoothing"],
        )
        return _RemapObjective(
            self.net_,
            asl,
            self.embedding_loss_,
            [lc["task_weights"][n] for n in self.label_names],
            lc["embedding_weight"],
            list(self.label_bins().values()),
        )

    # ------------------------------------------------------------------ input handling
    def _check_fitted(self):
        if getattr(self, "net_", None) is None:
            raise RuntimeError(
                "this RemapModel is not trained yet: call fit()/fit_prepared() or read one"
            )

    def _arrays(self, flux, ivar, *, noiseless=False):
        """Validate flux/ivar and return float32 numpy arrays (n, npix)."""
        flux = np.asarray(flux, dtype=np.float32)
        if flux.ndim == 1:
            flux = flux[None, :]
        if flux.ndim != 2 or flux.shape[1] < 2:
            raise ValueError(f"flux must have shape (n_spectra, n_pixels), got {flux.shape}")
        if ivar is None:
            if not noiseless:
                raise ValueError("ivar is None: pass noiseless=True for noise-free spectra")
            ivar = np.where(np.isfinite(flux), np.float32(NOISELESS_IVAR), np.float32(0.0))
        else:
            ivar = np.asarray(ivar, dtype=np.float32)
            if ivar.ndim == 1:
                ivar = ivar[None, :]
            if ivar.shape != flux.shape:
                raise ValueError(f"ivar shape {ivar.shape} differs from flux shape {flux.shape}")
            bad = ~np.isfinite(ivar) | (ivar < 0)
            if bad.any():
                raise ValueError(
                    f"ivar must be finite and >= 0 (0 = masked); {int(bad.sum())} pixels are not"
                )
            if noiseless:
                ivar = np.where(ivar > 0, np.float32(NOISELESS_IVAR), np.float32(0.0))
        nonfinite = (ivar > 0) & ~np.isfinite(flux)
        if nonfinite.any():
            rows = np.unique(np.nonzero(nonfinite)[0])
            raise ValueError(
                f"non-finite flux at {int(nonfinite.sum())} pixels with ivar > 0 in "
                f"{rows.size} spectra (first rows {rows[:10].tolist()}); set their ivar to 0"
            )
        npix = flux.shape[1]
        expected = getattr(self, "n_pix_", None)
        if expected is None and self.preparation is not None:
            expected = len(self.preparation.wavelength)
        if expected is not None and npix != expected:
            raise ValueError(f"spectra have {npix} pixels but the model grid has {expected}")
        flux = np.where(ivar > 0, flux, np.float32(0.0))
        return np.ascontiguousarray(flux), np.ascontiguousarray(ivar)

    def _label_matrix(self, labels, n):
        names = self.label_names
        if hasattr(labels, "colnames") or isinstance(labels, dict):
            cols = []
            for name in names:
                try:
                    col = labels[name]
                except KeyError:
                    raise ValueError(f"labels lack a column {name!r}") from None
                if hasattr(col, "unit") and col.unit is not None:
                    col = col.to_value(get_label(name).unit)
                cols.append(np.asarray(col, dtype=float))
            values = np.stack(cols, axis=1)
        else:
            values = np.asarray(labels, dtype=float)
            if values.ndim == 1 and len(names) == 1:
                values = values[:, None]
        if values.shape != (n, len(names)):
            raise ValueError(
                f"labels must have shape (n_spectra, n_labels) = ({n}, {len(names)}), "
                f"got {values.shape}"
            )
        return values

    def _positions(self, values, ids, clip_to_bins):
        """Label values -> bin positions, with the out-of-range policy."""
        bins = self.label_bins()
        pos = np.empty_like(values)
        clipped = {}
        for k, (name, b) in enumerate(bins.items()):
            v = values[:, k]
            nan = ~np.isfinite(v)
            if nan.any():
                raise ValueError(
                    f"{int(nan.sum())} spectra have no finite {name} label "
                    f"(ids {ids[nan][:10].tolist()}); drop them first"
                )
            out = (v < b.lo) | (v > b.hi)
            if out.any():
                if not clip_to_bins:
                    raise ValueError(
                        f"{int(out.sum())} {name} labels lie outside the bins "
                        f"[{b.lo:g}, {b.hi:g}] (ids {ids[out][:10].tolist()}, values "
                        f"{v[out][:10].tolist()}); widen bins={{{name!r}: (lo, hi, width)}} "
                        "or pass clip_to_bins=True"
                    )
                clipped[name] = {"count": int(out.sum()), "ids": ids[out].tolist()}
            pos[:, k] = np.clip(b.positions(v), 0.0, b.n_bins - 1e-6)
        return pos.astype(np.float32), clipped

    # ------------------------------------------------------------------ training
    def fit(
        self,
        library,
        *,
        validation_fraction=None,
        epochs=None,
        clip_to_bins=False,
        checkpoint_dir=None,
        progress=None,
    ):
        """Train on a labelled spectral library.

        The library is prepared with ``library.prepare(self.preparation)``;
        rows with fatal flags are excluded (recorded in `provenance_`). A
        library without inverse variance is treated as noiseless (noise
        augmentation supplies the noise).

        Parameters
        ----------
        library : `~stellarml.libraries.SpectralLibrary`
            Spectra with labels (all of `label_names`).
        validation_fraction, epochs, clip_to_bins, checkpoint_dir, progress :
            See `fit_prepared`.

        Returns
        -------
        self : `RemapModel`
        """
        if self.preparation is None:
            raise ValueError(
                "fit(library) needs preparation=PreparationSettings(...) "
                "(or use fit_prepared with arrays on the model grid)"
            )
        batch = library.prepare(self.preparation)
        labels = library.label_array(list(self.label_names))
        ids = self._library_ids(library)
        return self._train(
            "fit",
            batch.flux,
            batch.ivar,
            labels,
            flags=batch.flags,
            ids=ids,
            noiseless=library.ivar is None,
            validation_fraction=validation_fraction,
            epochs=epochs,
            clip_to_bins=clip_to_bins,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            source=getattr(library, "meta", None),
        )

    @staticmethod
    def _library_ids(library):
        table = getattr(library, "labels", None)
        if table is not None and "id" in getattr(table, "colnames", ()):
            return np.asarray([str(v) for v in table["id"]])
        return None

    def fit_prepared(
        self,
        flux,
        ivar,
        labels,
        *,
        flags=None,
        ids=None,
        noiseless=False,
        validation_fraction=None,
        epochs=None,
        clip_to_bins=False,
        checkpoint_dir=None,
        progress=None,
        source=None,
    ):
        """Train from scratch on spectra already on the model grid.

        Parameters
        ----------
        flux : array-like
            ``(n, npix)`` continuum-normalised flux.
        ivar : array-like or None
            ``(n, npix)`` inverse variance of ``flux`` (0 = masked pixel).
            `None` with ``noiseless=True``: every finite pixel is good.
        labels : array-like, dict or `~astropy.table.Table`
            ``(n, n_labels)`` values in `label_names` order and registry units,
            or columns by label name (Quantities are converted).
        flags : array-like of int, optional
            `~stellarml.flags.LabelFlag` bitmask per spectrum; rows with a
            fatal bit are excluded and recorded in `provenance_`.
        ids : array-like, optional
            Identifiers used in messages and provenance (default: row index).
        noiseless : bool
            The spectra are noise-free (synthetic): ``ivar`` only marks good
            pixels (> 0), and noise augmentation provides the noise.
        validation_fraction : float, optional
            Held-out share for early stopping, metrics and the domain
            threshold (default from the training configuration).
        epochs : int, optional
            Maximum epochs (default ``training["max_epochs"]``).
        clip_to_bins : bool
            Labels outside the bins raise a `ValueError` naming the count,
            ids and values; with `True` they are clipped into the edge bins
            instead and recorded in `provenance_`.
        checkpoint_dir : path-like, optional
            Where the `~stellarml.training.Trainer` writes ``.npz`` snapshots
            (with several fine-tuning ``runs``, one subdirectory ``run<k>``
            per run).
        progress : bool, optional
            Progress bar (default ``training["progress"]``).
        source : dict, optional
            Provenance of the training data, stored in `provenance_`.

        Returns
        -------
        self : `RemapModel`
        """
        return self._train(
            "fit",
            flux,
            ivar,
            labels,
            flags=flags,
            ids=ids,
            noiseless=noiseless,
            validation_fraction=validation_fraction,
            epochs=epochs,
            clip_to_bins=clip_to_bins,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            source=source,
        )

    def fine_tune(
        self,
        observed,
        *,
        freeze=None,
        epochs=None,
        lr=None,
        runs=None,
        loss=None,
        validation_fraction=None,
        clip_to_bins=False,
        progress=None,
    ):
        """Fine-tune a trained model on a (small) labelled observed library.

        Parameters
        ----------
        observed : `~stellarml.libraries.SpectralLibrary`
            E.g. an `~stellarml.libraries.ObservedLibrary`; prepared with
            ``observed.prepare(self.preparation)``. Without inverse variance
            the spectra are treated as noiseless (see `fit`).
        freeze, epochs, lr, runs, loss, validation_fraction, clip_to_bins, progress :
            See `fine_tune_prepared`.

        Returns
        -------
        self : `RemapModel`
        """
        if self.preparation is None:
            raise ValueError("fine_tune(library) needs the model's preparation settings")
        batch = observed.prepare(self.preparation)
        labels = observed.label_array(list(self.label_names))
        return self._train(
            "fine_tune",
            batch.flux,
            batch.ivar,
            labels,
            flags=batch.flags,
            ids=self._library_ids(observed),
            noiseless=observed.ivar is None,
            validation_fraction=validation_fraction,
            epochs=epochs,
            lr=lr,
            freeze=freeze,
            runs=runs,
            loss=loss,
            clip_to_bins=clip_to_bins,
            progress=progress,
            source=getattr(observed, "meta", None),
        )

    def fine_tune_prepared(
        self,
        flux,
        ivar,
        labels,
        *,
        freeze=None,
        epochs=None,
        lr=None,
        runs=None,
        loss=None,
        flags=None,
        ids=None,
        noiseless=False,
        validation_fraction=None,
        clip_to_bins=False,
        checkpoint_dir=None,
        progress=None,
        source=None,
    ):
        """Fine-tune a trained model on arrays already on the model grid.

        Parameters
        ----------
        flux, ivar, labels, flags, ids, noiseless :
            As in `fit_prepared`.
        validation_fraction, clip_to_bins, checkpoint_dir, progress, source :
            As in `fit_prepared`.
        freeze : str or list of str, optional
            ``"stem"`` (the input convolution fixed), ``"backbone"`` (stem,
            residual stages and embedding layer fixed; only the heads learn),
            ``"none"``, or module-name
            prefixes of `RemapNet` (``"stages.0"``, ``"heads.teff"``...).
            Frozen modules keep their weights *and* batch-norm statistics.
            Default ``training["fine_tune_freeze"]``.
        epochs : int, optional
            Default ``training["fine_tune_epochs"]``.
        lr : float, optional
            Peak learning rate, default ``training["fine_tune_lr"]``.
        runs : int, optional
            Fine-tune this many times from the same starting weights, each
            run with its own seed (shuffling, dropout, augmentation), and keep
            the element-wise mean of the resulting weights and batch-norm
            statistics: a uniform "model soup" (Wortsman et al. 2022, ICML,
            arXiv:2203.05482). It costs ``runs`` times the training time but
            nothing at prediction time. Default ``training["fine_tune_runs"]``.
        loss : dict, optional
            Overrides of the loss configuration for this fine-tuning only
            (e.g. ``{"sigma_bins": 2.0}``: wider soft targets), recorded in
            `provenance_`; the model's own `loss` settings are unchanged.

        Returns
        -------
        self : `RemapModel`

        Notes
        -----
        When the embedding layer is frozen, the fine-tuning spectra are added
        to `domain_reference_` (the threshold is kept). Otherwise the
        embedding has changed, so the reference and threshold are recomputed
        from the fine-tuning spectra alone (recorded in `provenance_`).
        """
        return self._train(
            "fine_tune",
            flux,
            ivar,
            labels,
            flags=flags,
            ids=ids,
            noiseless=noiseless,
            validation_fraction=validation_fraction,
            epochs=epochs,
            lr=lr,
            freeze=freeze,
            runs=runs,
            loss=loss,
            clip_to_bins=clip_to_bins,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            source=source,
        )

    def _train(
        self,
        stage,
        flux,
        ivar,
        labels,
        *,
        flags,
        ids,
        noiseless,
        validation_fraction,
        epochs,
        clip_to_bins,
        progress,
        source,
        lr=None,
        freeze=None,
        checkpoint_dir=None,
        runs=None,
        loss=None,
    ):
        from ..training import transfer
        from ..training.trainer import Trainer

        t_start = time.perf_counter()
        config = self.get_config()
        if loss is not None:  # overrides for this training stage only
            config["loss"] = _merge(config["loss"], loss, "loss")
        tc = config["training"]
        if runs is None:
            runs = tc["fine_tune_runs"] if stage == "fine_tune" else 1
        if isinstance(runs, bool) or not isinstance(runs, int | np.integer) or runs < 1:
            raise ValueError(f"runs must be a positive integer, got {runs!r}")
        runs = int(runs)
        if stage == "fine_tune":
            self._check_fitted()
        flux, ivar = self._arrays(flux, ivar, noiseless=noiseless)
        n_in = flux.shape[0]
        values = self._label_matrix(labels, n_in)
        ids = np.arange(n_in).astype(str) if ids is None else np.asarray([str(i) for i in ids])
        if ids.shape != (n_in,):
            raise ValueError(f"ids must have one entry per spectrum ({n_in}), got {ids.shape}")
        record = {"n_input": n_in, "noiseless": bool(noiseless)}
        keep = np.ones(n_in, dtype=bool)
        if flags is not None:
            flags = np.asarray(flags, dtype=np.int64)
            if flags.shape != (n_in,):
                raise ValueError(f"flags must have shape ({n_in},), got {flags.shape}")
            fatal = (flags & int(FATAL)) != 0
            keep &= ~fatal
            record["excluded_fatal"] = {"count": int(fatal.sum()), "ids": ids[fatal].tolist()}
        flux, ivar, values, ids = flux[keep], ivar[keep], values[keep], ids[keep]
        positions, clipped = self._positions(values, ids, clip_to_bins)
        if clipped:
            record["clipped_labels"] = clipped
        n = flux.shape[0]
        if n < 2:
            raise ValueError(f"need at least 2 usable training spectra, got {n}")

        rng = seed_everything(int(self.seed) + (0 if stage == "fit" else 7919))
        frac = tc["validation_fraction"] if validation_fraction is None else validation_fraction
        if not 0 <= frac < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {frac!r}")
        n_val = round(frac * n) if n >= 4 else 0
        n_val = min(max(n_val, 1 if frac > 0 and n >= 4 else 0), n - 2)
        perm = rng.permutation(n)
        val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        record.update(n_train=int(train_idx.size), n_validation=int(val_idx.size))

        device = resolve_device(self.device)
        if stage == "fit":
            self.n_pix_ = flux.shape[1]
            self.net_, self.embedding_loss_ = self._build(flux.shape[1], config)
            self.history_ = []
            self.metrics_ = {}
            self.provenance_ = {}
            prefixes = ()
        else:
            prefixes = transfer.resolve_freeze(
                tc["fine_tune_freeze"] if freeze is None else freeze, self.net_
            )
        frozen = transfer.freeze(self.net_, prefixes)
        if not transfer.trainable_parameters(self.net_):
            raise ValueError("freeze leaves no trainable parameter in the network")
        augmenter = self._augmenter(tc)
        to_t = torch.from_numpy
        train_data = (to_t(flux[train_idx]), to_t(ivar[train_idx]), to_t(positions[train_idx]))
        val_data = None
        if n_val:
            val_data = (to_t(flux[val_idx]), to_t(ivar[val_idx]), to_t(positions[val_idx]))
            if augmenter is not None:  # one fixed noise draw: a comparable loss every epoch
                val_data = augmenter(val_data, torch.Generator().manual_seed(int(self.seed) + 1))
        fit = stage == "fit"
        trainer_kw = {
            "max_epochs": int(
                epochs if epochs is not None else tc["max_epochs" if fit else "fine_tune_epochs"]
            ),
            "batch_size": tc["batch_size" if fit else "fine_tune_batch_size"],
            "lr": float(lr if lr is not None else tc["lr" if fit else "fine_tune_lr"]),
            "weight_decay": tc["weight_decay"],
            "patience": tc["patience"],
            "min_delta": tc["min_delta"],
            "schedule": tc["schedule"],
            "warmup_fraction": tc["warmup_fraction"],
            "grad_clip": tc["grad_clip"],
            "device": device,
            "progress": tc["progress"] if progress is None else progress,
            "augment": augmenter,
        }
        objective = self._objective(config)
        start = _module_state(objective) if runs > 1 else None
        states, history = [], []
        try:
            for run in range(runs):
                if run:  # every run starts from the same weights, with its own seed
                    objective.load_state_dict(start)
                    seed_everything(int(self.seed) + (0 if fit else 7919) + run)
                trainer = Trainer(
                    **trainer_kw,
                    checkpoint_dir=(
                        Path(checkpoint_dir) / f"run{run}"
                        if checkpoint_dir is not None and runs > 1
                        else checkpoint_dir
                    ),
                    seed=int(self.seed) + run,
                )
                run_history = trainer.fit(objective, _objective_step, train_data, val_data)
                for entry in run_history:
                    entry["run"] = run
                history += run_history
                if runs > 1:
                    states.append(_module_state(objective))
        finally:
            transfer.unfreeze(self.net_)
        if runs > 1:  # uniform "model soup" (Wortsman et al. 2022) of the runs
            objective.load_state_dict(_average_states(states))
        for entry in history:
            entry["stage"] = stage
        self.history_ = list(self.history_) + history

        embedding_frozen = all(
            any(p == q or p.startswith(q + ".") for q in prefixes)
            for p, _ in self.net_.named_parameters()
            if p.split(".")[0] in ("stem", "stages", "embedding")
        )
        reference = train_data[:2]
        reference_idx = rng.choice(
            train_idx.size,
            size=min(int(tc["domain_reference_size"]), train_idx.size),
            replace=False,
        )
        reference = tuple(t[np.sort(reference_idx)] for t in reference)
        if augmenter is not None:  # one fixed draw, like the validation set
            reference = augmenter(reference, torch.Generator().manual_seed(int(self.seed) + 2))
        extend = stage == "fine_tune" and embedding_frozen
        domain_update = self._update_domain(reference, val_data, extend, tc, rng, device)

        # metrics on the held-out set (or the training set when there is none)
        split = "validation" if val_data is not None else "training"
        eval_data = val_data if val_data is not None else train_data
        pred = self._predict_tensors(
            eval_data[0], eval_data[1], batch_size=1024, device=device, want_pdf=False
        )
        self.metrics_[stage] = {
            "split": split,
            "n": int(eval_data[0].shape[0]),
            "labels": self._metrics(pred["summary"], eval_data[2].numpy()),
        }
        record.update(
            epochs_run=len(history),
            best_epoch=int(trainer.best_epoch_),
            stop_reason=trainer.stop_reason_,
            train_time_s=float(time.perf_counter() - t_start),
            device=str(device),
            seed=int(self.seed),
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            domain_reference=domain_update,
        )
        if stage == "fine_tune":
            record.update(freeze=list(prefixes), n_frozen_parameters=len(frozen), lr=trainer.lr)
        if runs > 1:
            record["runs"] = runs
        if loss is not None:
            record["loss_overrides"] = _plain(loss)
        if source is not None:
            record["source"] = _plain(source)
        self._record(stage, record)
        return self

    def _update_domain(self, reference, held_out, extend, tc, rng, device):
        """Set `domain_reference_` and `domain_threshold_` after training.

        ``reference`` and ``held_out`` are (flux, ivar[, ...]) tensors of
        training and validation spectra. With ``extend`` (the embedding did
        not change) the new embeddings join the stored reference, which is
        subsampled to ``domain_reference_size``, and the threshold is kept.
        Otherwise the reference is replaced and the threshold is the
        ``domain_quantile`` of the held-out nearest-neighbour distances
        (leave-one-out distances within the reference without held-out data).
        Returns ``"extended"`` or ``"recomputed"``.
        """
        size = int(tc["domain_reference_size"])
        emb = self._predict_tensors(*reference[:2], batch_size=1024, device=device, want_pdf=False)[
            "embedding"
        ]
        if extend and getattr(self, "domain_reference_", None) is not None:
            old = self.domain_reference_
            keep = max(size - emb.shape[0], 0)
            if old.shape[0] > keep:
                old = old[np.sort(rng.choice(old.shape[0], keep, replace=False))]
            self.domain_reference_ = np.concatenate([old, emb]).astype(np.float32)
            return "extended"
        self.domain_reference_ = emb.astype(np.float32)
        if held_out is not None:
            held = self._predict_tensors(
                *held_out[:2], batch_size=1024, device=device, want_pdf=False
            )["embedding"]
            dist = nearest_distance(held, self.domain_reference_)
        else:
            dist = nearest_distance(emb, emb, exclude_self=True)
        dist = dist[np.isfinite(dist)]
        self.domain_threshold_ = (
            float(np.quantile(dist, tc["domain_quantile"])) if dist.size else math.inf
        )
        return "recomputed"

    def _record(self, stage, record):
        from .. import __version__

        prov = dict(self.provenance_)
        prov.update(
            stellarml_version=__version__,
            torch_version=torch.__version__.split("+")[0],
            numpy_version=np.__version__,
        )
        if stage == "fit":
            prov["fit"] = record
            prov["fine_tune"] = []
        else:
            prov["fine_tune"] = [*prov.get("fine_tune", []), record]
        self.provenance_ = _plain(prov)

    def _metrics(self, summary, positions):
        out = {}
        for k, (name, b) in enumerate(self.label_bins().items()):
            truth = b.lo + b.width * positions[:, k].astype(np.float64)
            s = summary[name]
            resid = s["median"] - truth
            inside = (truth >= s["p16"]) & (truth <= s["p84"])
            out[name] = {
                "mae": float(np.mean(np.abs(resid))),
                "rmse": float(np.sqrt(np.mean(resid**2))),
                "bias": float(np.mean(resid)),
                "coverage_68": float(np.mean(inside)),
                "median_half_width": float(np.median(0.5 * (s["p84"] - s["p16"]))),
            }
        return out

    # ------------------------------------------------------------------ prediction
    def _inference_net(self, device):
        """`RemapNet.inference_copy` of ``net_`` on ``device``, cached until a weight changes."""
        state = self.net_.state_dict().values()
        key = (str(device), *((t.data_ptr(), t._version) for t in state))
        cached = getattr(self, "_inference_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, self.net_.inference_copy().to(device))
            self._inference_cache = cached
        return cached[1]

    def _prediction_members(self):
        """One network, its domain distance in embedding units."""
        return [self], [1.0]

    # ------------------------------------------------------------------ serialisation
    def to_tree(self):
        """The model as a plain tree for ASDF (no pickle).

        Returns
        -------
        tree : dict
            ``name``, ``labels`` (names), ``units`` (strings), ``bins``
            (``{label: [lo, hi, width]}``), ``preparation``
            (``PreparationSettings.to_dict()`` or None), ``architecture``,
            ``loss``, ``training`` (resolved configuration), ``seed``,
            ``n_pix``, ``weights`` (``{state_dict name: numpy array}``),
            ``embedding_loss_state`` (same, for the embedding loss),
            ``history``, ``metrics``, ``provenance``, ``domain_reference``
            (``(m, E)`` float32), ``domain_threshold`` (float).
        """
        self._check_fitted()
        config = self.get_config()

        def lists(d):
            return {
                k: (list(v) if isinstance(v, tuple) else lists(v) if isinstance(v, dict) else v)
                for k, v in d.items()
            }

        def arrays(module):
            if module is None:
                return {}
            return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}

        return {
            "name": str(self.name),
            "labels": list(self.label_names),
            "units": [spec.unit.to_string() for spec in self.label_specs],
            "bins": {n: list(b.as_tuple()) for n, b in self.label_bins().items()},
            "preparation": None if self.preparation is None else self.preparation.to_dict(),
            "architecture": lists(config["architecture"]),
            "loss": lists(config["loss"]),
            "training": lists(config["training"]),
            "seed": int(self.seed),
            "n_pix": int(self.n_pix_),
            "weights": arrays(self.net_),
            "embedding_loss_state": arrays(self.embedding_loss_),
            "history": _plain(self.history_),
            "metrics": _plain(self.metrics_),
            "provenance": _plain(self.provenance_),
            "domain_reference": np.asarray(self.domain_reference_, dtype=np.float32),
            "domain_threshold": float(self.domain_threshold_),
        }

    @classmethod
    def from_tree(cls, tree, *, device="auto"):
        """Rebuild a trained model from `to_tree` output.

        Parameters
        ----------
        tree : dict
            As written by `to_tree` (lists may replace tuples).
        device : str or `torch.device`
            Device of the returned model.

        Returns
        -------
        model : `RemapModel`
        """
        required = ("labels", "bins", "architecture", "loss", "training", "n_pix", "weights")
        missing = [k for k in required if k not in tree]
        if missing:
            raise ValueError(f"not a RemapModel tree: missing {missing}")
        prep = tree.get("preparation")
        if isinstance(prep, dict):
            from ..spectra.prepare import PreparationSettings

            prep = PreparationSettings.from_dict(prep)
        loss = dict(tree["loss"])
        model = cls(
            labels=tuple(tree["labels"]),
            bins={k: tuple(float(x) for x in v) for k, v in dict(tree["bins"]).items()},
            preparation=prep,
            architecture=dict(tree["architecture"]),
            loss=loss,
            training=dict(tree["training"]),
            name=str(tree.get("name", "remap")),
            seed=int(tree.get("seed", 0)),
            device=device,
        )
        config = model.get_config()
        model.n_pix_ = int(tree["n_pix"])
        model.net_, model.embedding_loss_ = model._build(model.n_pix_, config)

        def load(module, state, what):
            tensors = {k: torch.from_numpy(np.array(v)) for k, v in dict(state).items()}
            try:
                module.load_state_dict(tensors)
            except RuntimeError as exc:
                raise ValueError(f"{what} weights do not fit the configuration: {exc}") from None

        load(model.net_, tree["weights"], "network")
        if model.embedding_loss_ is not None and tree.get("embedding_loss_state"):
            load(model.embedding_loss_, tree["embedding_loss_state"], "embedding loss")
        model.net_.eval()
        model.history_ = list(tree.get("history") or [])
        model.metrics_ = dict(tree.get("metrics") or {})
        model.provenance_ = dict(tree.get("provenance") or {})
        ref = tree.get("domain_reference")
        model.domain_reference_ = None if ref is None else np.asarray(ref, dtype=np.float32)
        thr = tree.get("domain_threshold")
        model.domain_threshold_ = None if thr is None else float(thr)
        return model

    def write(self, path):
        """Write the model to an ASDF file (`stellarml.io.asdf.model_io.write_model`)."""
        from ..io.asdf.model_io import write_model

        return write_model(self, path)

    @classmethod
    def read(cls, path):
        """Read a model from an ASDF file or a shipped model name."""
        from ..io.asdf.model_io import read_model

        model = read_model(path)
        if not isinstance(model, cls):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def __repr__(self):
        state = "trained" if getattr(self, "net_", None) is not None else "untrained"
        return f"<RemapModel {self.name!r} labels={list(self.label_names)} ({state})>"
