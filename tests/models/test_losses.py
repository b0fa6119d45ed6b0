"""Tests of the asymmetric loss and the embedding losses."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from stellarml.models.losses import (
    AsymmetricLoss,
    CenterEmbeddingLoss,
    EmbeddingLoss,
    PairwiseEmbeddingLoss,
    gaussian_bin_targets,
    make_embedding_loss,
)


def test_gaussian_targets_are_distributions_centred_on_the_label():
    pos = torch.tensor([6.3, 10.0, 12.75], dtype=torch.float64)
    t = gaussian_bin_targets(pos, 20, 1.0)
    assert t.shape == (3, 20)
    assert torch.allclose(t.sum(1), torch.ones(3, dtype=torch.float64))
    centres = torch.arange(20, dtype=torch.float64) + 0.5
    assert torch.allclose((t * centres).sum(1), pos, atol=1e-3)
    hard = gaussian_bin_targets(pos, 20, 0.0)
    assert hard.argmax(1).tolist() == [6, 10, 12]
    assert torch.equal(hard.sum(1), torch.ones(3, dtype=torch.float64))
    # near the edge the mass beyond the first edge is folded back
    edge = gaussian_bin_targets(torch.tensor([0.1]), 5, 1.0)
    assert edge.sum().item() == pytest.approx(1.0)
    assert edge[0, 0] > edge[0, 1]


def test_softmax_form_reduces_to_cross_entropy():
    torch.manual_seed(1)
    logits = torch.randn(6, 9)
    cls = torch.randint(0, 9, (6,))
    loss = AsymmetricLoss(variant="softmax", gamma_pos=0, sigma_bins=0, label_smoothing=0)
    assert loss(logits, cls.double() + 0.5).item() == pytest.approx(
        F.cross_entropy(logits, cls).item(), rel=1e-6
    )


def test_sigmoid_form_without_focusing_is_binary_cross_entropy():
    torch.manual_seed(2)
    logits = torch.randn(5, 7)
    target = F.one_hot(torch.randint(0, 7, (5,)), 7).float()
    loss = AsymmetricLoss(variant="sigmoid", gamma_pos=0, gamma_neg=0, clip=0, sigma_bins=0)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1).mean()
    assert loss(logits, target).item() == pytest.approx(bce.item(), rel=1e-6)


@pytest.mark.parametrize("variant", ["softmax", "sigmoid"])
def test_perfect_prediction_has_almost_zero_loss(variant):
    target = F.one_hot(torch.tensor([2, 5]), 8).float()
    logits = 30.0 * (2 * target - 1)  # confident and right
    loss = AsymmetricLoss(variant=variant, sigma_bins=0, label_smoothing=0)
    assert loss(logits, target).item() < 1e-6
    wrong = AsymmetricLoss(variant=variant, sigma_bins=0, label_smoothing=0)(-logits, target)
    assert wrong.item() > 10


def test_sigmoid_asl_silences_easy_negatives():
    """Many bins, one positive: BCE is dominated by the easy negatives, ASL is not."""
    n_bins = 60
    p = torch.full((1, n_bins), 0.08)  # easy negatives
    p[0, 10] = 0.7  # the positive, not yet certain
    logits = torch.logit(p).requires_grad_(True)
    target = F.one_hot(torch.tensor([10]), n_bins).float()
    negative = target == 0

    def shares(loss_fn):
        per_bin = loss_fn(logits)
        (grad,) = torch.autograd.grad(per_bin.sum(), logits)
        return (
            (per_bin[negative].sum() / per_bin.sum()).item(),
            (grad[negative].abs().sum() / grad.abs().sum()).item(),
        )

    def bce(z):
        return F.binary_cross_entropy_with_logits(z, target, reduction="none")

    def asl(z, clip):
        pz = torch.sigmoid(z)
        pm = (pz - clip).clamp_min(0)
        return -(target * (1 - pz) * F.logsigmoid(z) + (1 - target) * pm**4 * torch.log1p(-pm))

    bce_loss_share, bce_grad_share = shares(bce)
    asl_loss_share, asl_grad_share = shares(lambda z: asl(z, 0.05))
    assert bce_loss_share > 0.85 and bce_grad_share > 0.9
    assert asl_loss_share < 1e-3 and asl_grad_share < 1e-3
    # the module computes the same total, and negatives below the clip give exactly zero
    module = AsymmetricLoss(variant="sigmoid", gamma_pos=1, gamma_neg=4, clip=0.05, sigma_bins=0)
    assert module(logits, target).item() == pytest.approx(asl(logits, 0.05).sum().item(), rel=1e-6)
    low = torch.logit(torch.full((1, n_bins), 0.04)).requires_grad_(True)
    module(low, target).backward()
    assert torch.count_nonzero(low.grad[negative]) == 0


def test_asymmetric_focusing_favours_rare_hard_bins():
    """Bin-frequency imbalance: 90 easy spectra in a common bin, 10 hard ones in a rare bin.

    With plain cross-entropy the common, already well-classified bin still
    supplies a sizeable part of the gradient; the asymmetric loss gives most of
    it to the rare, misclassified bin.
    """
    n_bins = 20
    common = torch.full((90, n_bins), -4.0)
    common[:, 3] = 4.0  # p(bin 3) ~ 0.98 already
    rare = torch.full((10, n_bins), -4.0)
    rare[:, 3] = 1.0  # rare spectra wrongly put into the common bin ...
    rare[:, 15] = -1.0  # ... and their true bin 15 is unlikely
    logits = torch.cat([common, rare]).requires_grad_(True)
    target = F.one_hot(torch.tensor([3] * 90 + [15] * 10), n_bins).float()

    def rare_share(loss):
        (grad,) = torch.autograd.grad(loss(logits, target), logits)
        norms = grad.norm(dim=1)
        return (norms[90:].sum() / norms.sum()).item()

    def bce(z, t):
        return F.binary_cross_entropy_with_logits(z, t, reduction="none").sum(1).mean()

    asl = AsymmetricLoss(variant="sigmoid", gamma_pos=1, gamma_neg=4, clip=0.05, sigma_bins=0)
    assert rare_share(bce) < 0.75
    assert rare_share(asl) > 0.95


def test_softmax_label_smoothing_is_focused_away_from_easy_negatives():
    n_bins, eps = 30, 0.1
    logits = torch.full((1, n_bins), -3.0)
    logits[0, 4] = 5.0
    logits[0, 20] = 2.0  # a hard negative
    logits.requires_grad_(True)
    target = F.one_hot(torch.tensor([4]), n_bins).float()

    def grad(loss):
        return torch.autograd.grad(loss(logits, target), logits)[0][0]

    g_plain = grad(AsymmetricLoss(gamma_neg=0, sigma_bins=0, label_smoothing=eps))
    g_focus = grad(AsymmetricLoss(gamma_neg=4, sigma_bins=0, label_smoothing=eps))
    g_ce = grad(AsymmetricLoss(sigma_bins=0, label_smoothing=0))
    easy = torch.ones(n_bins, dtype=torch.bool)
    easy[[4, 20]] = False
    # plain label smoothing pulls every easy negative up, against the data ...
    assert (g_plain[easy] < 0).all()
    # ... the focused smoothing leaves them alone: the cross-entropy push remains
    assert (g_focus[easy] > 0).all()
    assert torch.allclose(g_focus[easy], g_ce[easy], rtol=0.1)
    # while the hard negative is still pushed down
    assert g_focus[20] > 0.5 * g_ce[20] > 0


@pytest.mark.parametrize("variant", ["softmax", "sigmoid"])
def test_gradients_are_finite_for_extreme_logits(variant):
    logits = torch.tensor([[80.0, -80.0, 0.0, 1e4], [-1e4, 50.0, -50.0, 0.0]], requires_grad=True)
    pos = torch.tensor([0.2, 3.9])  # positions in bin units, at the edges
    loss = AsymmetricLoss(variant=variant, label_smoothing=0.1)(logits, pos)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()


def test_asymmetric_loss_validation():
    with pytest.raises(ValueError, match="variant"):
        AsymmetricLoss(variant="focal")
    with pytest.raises(ValueError, match="clip"):
        AsymmetricLoss(clip=1.5)
    with pytest.raises(ValueError, match="shape"):
        AsymmetricLoss()(torch.zeros(2, 5), torch.zeros(2, 4))
    per_sample = AsymmetricLoss(reduction="none")(torch.zeros(3, 5), torch.tensor([0.5, 2.5, 4.5]))
    assert per_sample.shape == (3,)


def _linear_embedding(positions, seed=0):
    gen = torch.Generator().manual_seed(seed)
    proj = torch.randn(positions.shape[1], 16, generator=gen)
    return positions @ proj


def test_center_loss_learns_centres_and_keeps_neighbours_close():
    gen = torch.Generator().manual_seed(3)
    loss = CenterEmbeddingLoss([20, 10], 16, alpha=0.5, smoothness=0.1)
    first = last = None
    for step in range(300):
        pos = torch.rand(128, 2, generator=gen) * torch.tensor([20.0, 10.0])
        pos = pos[(pos[:, 0] < 12) | (pos[:, 0] >= 13)]  # bin 12 of label 0 never seen
        value = loss(_linear_embedding(pos), pos)
        first = value.item() if step == 0 else first
        last = value.item()
    assert first > 0.5
    assert last < 0.02  # the labels explain > 98 % of the embedding scatter
    centres = loss.centers[0]
    step = (centres[1:] - centres[:-1]).norm(dim=1)
    far = (centres[0] - centres[-1]).norm()
    assert step.max() < 0.2 * far  # neighbouring bins are close, distant ones far apart
    # the unseen bin sits between its neighbours
    mid = 0.5 * (centres[11] + centres[13])
    assert (centres[12] - mid).norm() < 0.25 * step.mean()


def test_center_loss_is_scale_free_and_differentiable():
    loss = CenterEmbeddingLoss([8], 16)
    pos = torch.rand(64, 1) * 8
    emb = _linear_embedding(pos).requires_grad_(True) + 0.1 * torch.randn(64, 16)
    for _ in range(5):
        loss(emb.detach(), pos)
    loss.eval()  # no centre updates in evaluation mode
    before = [c.clone() for c in loss.centers]
    a = loss(emb, pos)
    (grad,) = torch.autograd.grad(a, emb)
    assert torch.isfinite(grad).all()
    assert all(torch.equal(b, c) for b, c in zip(before, loss.centers, strict=True))
    assert "centers_0" in loss.state_dict()


def test_pairwise_loss_is_zero_for_distance_preserving_embeddings():
    pos = torch.rand(50, 3, dtype=torch.float64) * 10
    loss = PairwiseEmbeddingLoss([10, 10, 10], 3)
    assert loss(3.0 * pos, pos).item() < 1e-10
    rot = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    assert loss(pos @ rot, pos).item() < 1e-10
    assert loss(torch.randn(50, 3, dtype=torch.float64), pos).item() > 0.05


def test_embedding_loss_factory():
    assert isinstance(make_embedding_loss("center", [5, 6], 8), CenterEmbeddingLoss)
    assert isinstance(make_embedding_loss(PairwiseEmbeddingLoss, [5], 8), EmbeddingLoss)
    with pytest.raises(ValueError, match="unknown embedding loss"):
        make_embedding_loss("triplet", [5], 8)
    with pytest.raises(ValueError, match="positions must be"):
        CenterEmbeddingLoss([5, 6], 8)(torch.zeros(4, 8), torch.zeros(4, 3))
    assert np.isfinite(PairwiseEmbeddingLoss([5], 4)(torch.zeros(2, 4), torch.zeros(2, 1)).item())
