"""Losses of deep-REMAP: asymmetric classification loss over label bins, embedding losses.

deep-REMAP (Gilda 2025) trains with "an asymmetric loss plus an embedding
loss"; the paper's exact forms and weights are not available (NF in
METHODS.md). stellarml implements:

* `AsymmetricLoss` — the asymmetric loss of Ridnik et al. (2021, ICCV,
  arXiv:2009.14119) in its two published forms: ``"sigmoid"`` (multi-label:
  every bin is a binary problem, easy negatives are down-weighted by
  ``p_m ** gamma_neg`` with the probability shift ``p_m = max(p - clip, 0)``)
  and ``"softmax"`` (single-label: a categorical distribution over bins with
  asymmetric focusing). Targets are Gaussian soft targets over neighbouring
  bins (`gaussian_bin_targets`), which makes the classification ordinal.
* `CenterEmbeddingLoss` — a centre loss (Wen et al. 2016, ECCV) whose centre
  of a star is the sum over labels of per-label centres, linearly
  interpolated between bin centres, with an ordinal smoothness step that
  keeps the centres of neighbouring bins close.
* `PairwiseEmbeddingLoss` — an alternative that makes embedding distances
  proportional to label distances within a batch.

Label positions are given everywhere in *bin units*: ``(y - lo) / width`` so
that bin ``j`` covers ``[j, j + 1)``.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "EMBEDDING_LOSSES",
    "AsymmetricLoss",
    "CenterEmbeddingLoss",
    "EmbeddingLoss",
    "PairwiseEmbeddingLoss",
    "gaussian_bin_targets",
    "make_embedding_loss",
]

_SQRT2 = math.sqrt(2.0)


def gaussian_bin_targets(position, n_bins, sigma_bins):
    """Soft classification targets: a Gaussian integrated over each bin.

    Parameters
    ----------
    position : `torch.Tensor`
        ``(n,)`` label positions in bin units (bin ``j`` covers ``[j, j+1)``).
    n_bins : int
        Number of bins.
    sigma_bins : float
        Standard deviation of the Gaussian in bins. 0 gives one-hot targets
        (the bin that contains the position).

    Returns
    -------
    targets : `torch.Tensor`
        ``(n, n_bins)`` non-negative, each row sums to 1. The Gaussian mass
        beyond the first and last bin edge is folded back by renormalising.

    Raises
    ------
    ValueError
        If ``sigma_bins`` is negative.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from stellarml.models import gaussian_bin_targets
    >>> position = torch.tensor([2.5, 0.2])  # the middle of bin 2; near the first edge
    >>> np.round(gaussian_bin_targets(position, 5, 1.0).numpy(), 3)
    array([[0.061, 0.245, 0.388, 0.245, 0.061],
           [0.634, 0.304, 0.058, 0.004, 0.   ]], dtype=float32)
    >>> gaussian_bin_targets(position, 5, 0.0)
    tensor([[0., 0., 1., 0., 0.],
            [1., 0., 0., 0., 0.]])
    """
    position = position.reshape(-1, 1)
    if sigma_bins < 0:
        raise ValueError(f"sigma_bins must be >= 0, got {sigma_bins!r}")
    if sigma_bins == 0:
        index = position.floor().clamp(0, n_bins - 1).long()
        return torch.zeros(
            position.shape[0], n_bins, dtype=position.dtype, device=position.device
        ).scatter_(1, index, 1.0)
    edges = torch.arange(n_bins + 1, dtype=position.dtype, device=position.device)
    cdf = torch.special.ndtr((edges - position) / sigma_bins)
    mass = cdf[:, 1:] - cdf[:, :-1]
    return mass / mass.sum(dim=1, keepdim=True).clamp_min(torch.finfo(mass.dtype).tiny)


class AsymmetricLoss(nn.Module):
    """Asymmetric loss (Ridnik et al. 2021) for classification over label bins.

    Parameters
    ----------
    gamma_pos : float
        Focusing exponent of the positive term, ``(1 - p) ** gamma_pos``.
        Ridnik et al. use 0 in the single-label and 1 in the multi-label form.
    gamma_neg : float
        Focusing exponent of the negative term, ``p ** gamma_neg`` (4 in both
        published forms): negatives the network already gets right (small
        ``p``) hardly contribute.
    clip : float
        Probability margin ``m`` of the ``"sigmoid"`` form: negatives with
        ``p < m`` contribute exactly zero (``p_m = max(p - m, 0)``). Ignored by
        ``"softmax"``.
    variant : {"softmax", "sigmoid"}
        ``"softmax"``: one categorical distribution per label;
        ``L = -sum_j [ (1 - eps) t_j (1 - p_j)^gamma_pos log p_j
        + (eps / K) p_j^gamma_neg log p_j ]`` with Gaussian targets ``t``
        (positives) and a uniform label-smoothing share ``eps`` (negatives).
        With ``sigma_bins = 0`` this is exactly the single-label ASL of
        Ridnik et al. ``"sigmoid"``: each bin is a binary problem with soft
        membership ``y_j = t_j / max(t)`` and
        ``L = -sum_j [ y_j (1 - p_j)^gamma_pos log p_j
        + (1 - y_j) p_{m,j}^gamma_neg log(1 - p_{m,j}) ]``.
    sigma_bins : float
        Width (standard deviation, in bins) of the Gaussian soft targets; 0
        gives one-hot targets.
    label_smoothing : float
        ``eps`` of the softmax form, in [0, 1). Ignored by ``"sigmoid"``.
    reduction : {"mean", "none"}
        Mean over the batch, or one value per spectrum.

    Raises
    ------
    ValueError
        For an unknown ``variant`` or ``reduction``, or a setting out of its range.

    Notes
    -----
    The focusing weights are part of the graph (as in the reference
    implementation), so their gradient is included.

    Examples
    --------
    Two spectra, five bins, labels at positions 2.5 and 0.2 (bin units): flat
    logits cost more than logits that put the mass near the true bins.

    >>> import torch
    >>> from stellarml.models import AsymmetricLoss, gaussian_bin_targets
    >>> loss = AsymmetricLoss(sigma_bins=1.0)
    >>> position = torch.tensor([2.5, 0.2])
    >>> flat = torch.zeros(2, 5)
    >>> peaked = torch.log(gaussian_bin_targets(position, 5, 1.0))
    >>> round(float(loss(flat, position)), 3), round(float(loss(peaked, position)), 3)
    (1.609, 1.119)
    >>> per_spectrum = AsymmetricLoss(variant="sigmoid", gamma_pos=1.0, reduction="none")
    >>> per_spectrum(flat, position).shape
    torch.Size([2])
    """

    def __init__(
        self,
        gamma_pos=0.0,
        gamma_neg=4.0,
        clip=0.05,
        variant="softmax",
        sigma_bins=1.0,
        label_smoothing=0.0,
        reduction="mean",
    ):
        super().__init__()
        if variant not in ("softmax", "sigmoid"):
            raise ValueError(f"variant must be 'softmax' or 'sigmoid', got {variant!r}")
        if gamma_pos < 0 or gamma_neg < 0:
            raise ValueError(f"gamma_pos and gamma_neg must be >= 0, got {gamma_pos}, {gamma_neg}")
        if not 0 <= clip < 1:
            raise ValueError(f"clip must be in [0, 1), got {clip!r}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        if sigma_bins < 0:
            raise ValueError(f"sigma_bins must be >= 0, got {sigma_bins!r}")
        self.gamma_pos = float(gamma_pos)
        self.gamma_neg = float(gamma_neg)
        self.clip = float(clip)
        self.variant = variant
        self.sigma_bins = float(sigma_bins)
        self.label_smoothing = float(label_smoothing)
        self.reduction = reduction

    def targets(self, position, n_bins):
        """Gaussian soft targets for ``position`` (bin units), see `gaussian_bin_targets`."""
        return gaussian_bin_targets(position, n_bins, self.sigma_bins)

    def forward(self, logits, targets):
        """Loss of ``logits`` against soft ``targets``.

        Parameters
        ----------
        logits : `torch.Tensor`
            ``(n, K)`` raw scores of the ``K`` bins.
        targets : `torch.Tensor`
            ``(n, K)`` target distribution (rows summing to 1), e.g. from
            `targets`; or ``(n,)`` label positions in bin units, turned into
            Gaussian targets with ``sigma_bins``.

        Returns
        -------
        loss : `torch.Tensor`
            Scalar (``reduction="mean"``) or ``(n,)``.
        """
        if targets.dim() == 1:
            targets = self.targets(targets.to(logits.dtype), logits.shape[-1])
        if targets.shape != logits.shape:
            raise ValueError(
                f"targets shape {tuple(targets.shape)} != logits shape {tuple(logits.shape)}"
            )
        if self.variant == "softmax":
            loss = self._softmax(logits, targets)
        else:
            loss = self._sigmoid(logits, targets)
        return loss.mean() if self.reduction == "mean" else loss

    def _softmax(self, logits, targets):
        log_p = F.log_softmax(logits, dim=-1)
        p = log_p.exp()
        positive = targets * (1.0 - self.label_smoothing)
        if self.gamma_pos:
            positive = positive * (1.0 - p).pow(self.gamma_pos)
        loss = positive * log_p
        if self.label_smoothing:
            eps = self.label_smoothing / logits.shape[-1]
            loss = loss + eps * p.pow(self.gamma_neg) * log_p
        return -loss.sum(dim=-1)

    def _sigmoid(self, logits, targets):
        y = targets / targets.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(targets.dtype).tiny)
        p = torch.sigmoid(logits)
        log_pos = F.logsigmoid(logits)
        if self.clip > 0:
            p_m = (p - self.clip).clamp_min(0.0)
            log_neg = torch.log1p(-p_m)  # 1 - p_m >= clip > 0: finite
        else:
            p_m = p
            log_neg = F.logsigmoid(-logits)
        pos = y * log_pos
        if self.gamma_pos:
            pos = pos * (1.0 - p).pow(self.gamma_pos)
        neg = (1.0 - y) * log_neg
        if self.gamma_neg:
            neg = neg * p_m.pow(self.gamma_neg)
        return -(pos + neg).sum(dim=-1)

    def extra_repr(self):
        return (
            f"variant={self.variant!r}, gamma_pos={self.gamma_pos}, gamma_neg={self.gamma_neg}, "
            f"clip={self.clip}, sigma_bins={self.sigma_bins}, "
            f"label_smoothing={self.label_smoothing}"
        )


class EmbeddingLoss(nn.Module):
    """Base class of the pluggable embedding losses.

    Subclasses implement ``forward(embedding, positions)`` where
    ``embedding`` is ``(n, E)`` and ``positions`` is ``(n, k)`` label
    positions in bin units (one column per label), and return a scalar. They
    may own parameters (they are trained with the network and stored with the
    model).

    Parameters
    ----------
    n_bins : sequence of int
        Number of bins of each label.
    embedding_dim : int
        Length ``E`` of the embedding vector.

    Examples
    --------
    A loss that pulls every embedding towards the origin, usable wherever the
    configuration takes an embedding loss (`make_embedding_loss`):

    >>> import torch
    >>> from stellarml.models import EmbeddingLoss, make_embedding_loss
    >>> class NormLoss(EmbeddingLoss):
    ...     def forward(self, embedding, positions):
    ...         return embedding.square().sum(dim=1).mean()
    >>> loss = make_embedding_loss(NormLoss, n_bins=[4, 3], embedding_dim=2)
    >>> loss.n_bins, loss.embedding_dim
    ((4, 3), 2)
    >>> loss(torch.ones(5, 2), torch.zeros(5, 2))
    tensor(2.)
    """

    def __init__(self, n_bins, embedding_dim):
        super().__init__()
        self.n_bins = tuple(int(k) for k in n_bins)
        self.embedding_dim = int(embedding_dim)

    def _check(self, embedding, positions):
        if embedding.dim() != 2 or embedding.shape[1] != self.embedding_dim:
            raise ValueError(
                f"embedding must be (n, {self.embedding_dim}), got {tuple(embedding.shape)}"
            )
        if positions.shape != (embedding.shape[0], len(self.n_bins)):
            raise ValueError(
                f"positions must be (n, {len(self.n_bins)}) = (n, n_labels), "
                f"got {tuple(positions.shape)}"
            )


def _batch_scatter(embedding):
    """Mean squared distance of the embeddings from their batch mean (scale reference)."""
    centred = embedding - embedding.mean(dim=0, keepdim=True)
    return centred.square().sum(dim=1).mean()


class CenterEmbeddingLoss(EmbeddingLoss):
    """Centre loss with ordinal smoothing: neighbouring bins get close embeddings.

    Each label ``k`` has bin centres ``C_k`` of shape ``(n_bins_k, E)``. The
    centre of a star with label positions ``u`` is the sum over labels of
    ``C_k`` linearly interpolated at ``u_k`` — a factorised version of the
    class centres of Wen et al. (2016, ECCV) that works for several labels at
    once and for positions between bin centres. The loss seen by the network
    is

    ``L = mean_i |e_i - c(u_i)|^2 / S``

    with ``S`` the mean squared distance of the batch embeddings from their
    mean. Dividing by ``S`` makes the loss scale-free, so it cannot be lowered
    by shrinking the embedding (the classic collapse of centre losses): ``L``
    is the fraction of the embedding scatter that the labels do not explain.

    As in Wen et al., the centres are not trained by the optimiser but
    updated in every training forward pass: with the residual
    ``r_i = e_i - sum_{l != k} c_l(u_il)`` and the interpolation weights
    ``w_ij`` of star ``i`` on bin ``j`` of label ``k``,
    ``C_k[j] -= alpha * sum_i w_ij (C_k[j] - r_i) / (1 + sum_i w_ij)``. Then
    the ordinal smoothness term ``sum_j |C_k[j+1] - C_k[j]|^2`` takes a
    gradient step: ``C_k += smoothness * (mean of neighbours - C_k)``. This
    keeps the centres of neighbouring bins close (hence the embeddings of
    stars in neighbouring bins) and fills bins without training stars by
    interpolation between their neighbours. The centres are buffers, stored
    with the model.

    Parameters
    ----------
    n_bins : sequence of int
        Number of bins of each label.
    embedding_dim : int
        Length ``E`` of the embedding.
    alpha : float
        Centre update rate, in (0, 1] (Wen et al. use 0.5).
    smoothness : float
        Step of the ordinal smoothing per update, in [0, 1].

    Raises
    ------
    ValueError
        If ``alpha`` or ``smoothness`` is out of its range.

    Examples
    --------
    Two labels of 4 and 3 bins, a 2-D embedding; the centres start at zero
    and move towards the embeddings with every training forward pass:

    >>> import torch
    >>> from stellarml.models import CenterEmbeddingLoss
    >>> _ = torch.manual_seed(0)
    >>> loss = CenterEmbeddingLoss([4, 3], embedding_dim=2)
    >>> embedding = torch.randn(6, 2)
    >>> positions = torch.tensor(
    ...     [[0.5, 0.5], [1.5, 0.5], [2.5, 1.5], [3.5, 2.5], [0.5, 2.5], [2.5, 0.5]]
    ... )  # label positions in bin units
    >>> round(float(loss.eval()(embedding, positions)), 3)  # centres at 0: no update
    1.105
    >>> round(float(loss.train()(embedding, positions)), 3)  # centres updated first
    0.679
    >>> [tuple(c.shape) for c in loss.centers]
    [(4, 2), (3, 2)]
    """

    def __init__(self, n_bins, embedding_dim, alpha=0.5, smoothness=0.1):
        super().__init__(n_bins, embedding_dim)
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        if not 0 <= smoothness <= 1:
            raise ValueError(f"smoothness must be in [0, 1], got {smoothness!r}")
        self.alpha = float(alpha)
        self.smoothness = float(smoothness)
        for k, n in enumerate(self.n_bins):
            self.register_buffer(f"centers_{k}", torch.zeros(n, self.embedding_dim))

    @property
    def centers(self):
        """Bin centres of each label (list of ``(n_bins_k, E)`` tensors)."""
        return [getattr(self, f"centers_{k}") for k in range(len(self.n_bins))]

    def _weights(self, positions, k):
        """Linear-interpolation weights ``(n, n_bins_k)`` of each star on the bin centres."""
        n = self.n_bins[k]
        u = (positions[:, k].to(torch.float32) - 0.5).clamp(0.0, n - 1.0)
        grid = torch.arange(n, dtype=torch.float32, device=positions.device)
        return (1.0 - (u[:, None] - grid).abs()).clamp_min(0.0)

    def label_centers(self, positions):
        """Centres ``c(u)`` of stars at label ``positions`` ((n, k) bin units) -> (n, E)."""
        return sum(self._weights(positions, k) @ c for k, c in enumerate(self.centers))

    @torch.no_grad()
    def update_centers(self, embedding, positions):
        """One centre update (Wen et al. rule, then ordinal smoothing) from a batch."""
        e = embedding.detach().to(torch.float32)
        weights = [self._weights(positions, k) for k in range(len(self.n_bins))]
        parts = [w @ c for w, c in zip(weights, self.centers, strict=True)]
        total = sum(parts)
        for k, (w, centers) in enumerate(zip(weights, self.centers, strict=True)):
            residual = e - (total - parts[k])
            count = w.sum(dim=0).unsqueeze(1)  # sum_i w_ij
            pull = centers * count - w.T @ residual  # sum_i w_ij (C_k[j] - r_i)
            centers -= self.alpha * pull / (1.0 + count)
            if self.smoothness and centers.shape[0] > 1:
                padded = torch.cat([centers[:1], centers, centers[-1:]])
                centers += self.smoothness * (0.5 * (padded[:-2] + padded[2:]) - centers)
            new = w @ centers
            total = total - parts[k] + new
            parts[k] = new

    def forward(self, embedding, positions):
        """Loss of a batch; in training mode the centres are updated first."""
        self._check(embedding, positions)
        if self.training and torch.is_grad_enabled():
            self.update_centers(embedding, positions)
        scale = _batch_scatter(embedding).clamp_min(1e-8)
        centers = self.label_centers(positions).to(embedding.dtype)
        return (embedding - centers).square().sum(dim=1).mean() / scale


class PairwiseEmbeddingLoss(EmbeddingLoss):
    """Embedding distances proportional to label distances, within a batch.

    ``L = mean_{i<j} (d_e(i, j) / mean d_e - d_u(i, j) / mean d_u)^2`` where
    ``d_e`` are Euclidean embedding distances and ``d_u`` Euclidean distances
    of the label positions in bin units (so one bin of each label counts the
    same). Stars in neighbouring bins are therefore close in the embedding;
    the normalisation by the mean distances makes the loss scale-free. It has
    no parameters.

    Parameters
    ----------
    n_bins : sequence of int
        Number of bins of each label.
    embedding_dim : int
        Length ``E`` of the embedding.

    Examples
    --------
    An embedding that is a scaled copy of the label positions costs nothing;
    the corners of a unit square do not match these four stars' label distances:

    >>> import torch
    >>> from stellarml.models import PairwiseEmbeddingLoss
    >>> loss = PairwiseEmbeddingLoss([4, 3], embedding_dim=2)
    >>> positions = torch.tensor([[0.5, 0.5], [1.5, 0.5], [2.5, 1.5], [3.5, 2.5]])
    >>> round(float(loss(2.0 * positions, positions)), 6)
    0.0
    >>> square = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> round(float(loss(square, positions)), 3)
    0.17
    """

    def forward(self, embedding, positions):
        """Loss of a batch (see the class description)."""
        self._check(embedding, positions)
        n = embedding.shape[0]
        if n < 3:
            return embedding.new_zeros(())
        iu = torch.triu_indices(n, n, offset=1, device=embedding.device)
        diff_e = embedding[iu[0]] - embedding[iu[1]]
        d_e = (diff_e.square().sum(dim=1) + 1e-12).sqrt()
        d_u = (positions[iu[0]] - positions[iu[1]]).to(embedding.dtype).norm(dim=1)
        d_e = d_e / d_e.mean().clamp_min(1e-8)
        d_u = d_u / d_u.mean().clamp_min(1e-8)
        return (d_e - d_u).square().mean()


#: Embedding losses by name, for configuration dictionaries.
EMBEDDING_LOSSES = {"center": CenterEmbeddingLoss, "pairwise": PairwiseEmbeddingLoss}


def make_embedding_loss(kind, n_bins, embedding_dim, **options):
    """Create an embedding loss from its name and options.

    Parameters
    ----------
    kind : str or type
        A key of `EMBEDDING_LOSSES` (``"center"``, ``"pairwise"``) or an
        `EmbeddingLoss` subclass.
    n_bins : sequence of int
        Number of bins of each label.
    embedding_dim : int
        Length of the embedding.
    **options
        Passed to the class (e.g. ``smoothness`` of `CenterEmbeddingLoss`).

    Returns
    -------
    loss : `EmbeddingLoss`

    Raises
    ------
    ValueError
        If ``kind`` is neither a known name nor an `EmbeddingLoss` subclass.

    Examples
    --------
    >>> from stellarml.models import make_embedding_loss
    >>> loss = make_embedding_loss("center", [80, 60], 16, smoothness=0.2)
    >>> type(loss).__name__, loss.smoothness
    ('CenterEmbeddingLoss', 0.2)
    >>> try:
    ...     make_embedding_loss("triplet", [80], 16)
    ... except ValueError as err:
    ...     print(err)
    unknown embedding loss 'triplet'; choose one of center, pairwise or pass an ... subclass
    """
    if isinstance(kind, type) and issubclass(kind, EmbeddingLoss):
        cls = kind
    else:
        try:
            cls = EMBEDDING_LOSSES[kind]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown embedding loss {kind!r}; choose one of "
                f"{', '.join(EMBEDDING_LOSSES)} or pass an EmbeddingLoss subclass"
            ) from None
    return cls(n_bins, embedding_dim, **options)
