"""From deep-REMAP's head logits to label PDFs, and the summaries of binned PDFs."""

import torch

from ...posterior import BinnedPosterior, LabelBins

__all__ = ["pdf_from_logits", "summarize_pdf"]


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
        ``(n, K)``; rows sum to 1.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from stellarml.models import pdf_from_logits
    >>> np.round(pdf_from_logits(torch.tensor([[0.0, 2.0, 4.0, 2.0, 0.0]])).numpy(), 3)
    array([[0.014, 0.104, 0.765, 0.104, 0.014]], dtype=float32)
    >>> logits = torch.tensor([[-4.0, 0.0, 4.0, 0.0, -4.0]])
    >>> pdf = pdf_from_logits(logits, variant="sigmoid", clip=0.05)
    >>> np.round(pdf.numpy(), 3)  # the bins below the margin get nothing
    array([[0.   , 0.246, 0.509, 0.246, 0.   ]], dtype=float32)
    """
    if variant == "sigmoid":
        p = torch.sigmoid(logits)
        if clip > 0:
            shifted = (p - clip).clamp_min(0.0)
            empty = shifted.sum(dim=-1, keepdim=True) <= 0
            p = torch.where(empty, p, shifted)
        return p / p.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
    return torch.softmax(logits, dim=-1)


def summarize_pdf(pdf, bins):
    """Point estimates and intervals of binned PDFs.

    Quantiles interpolate the cumulative distribution linearly inside a bin
    (the probability of a bin is spread uniformly over it); the mode is the
    centre of the most probable bin refined by a parabola through it and its
    two neighbours (at most half a bin); the mean uses bin centres. This is
    `~stellarml.posterior.BinnedPosterior` for one label, in float64.

    Parameters
    ----------
    pdf : `numpy.ndarray` or `torch.Tensor`
        ``(n, K)`` probabilities of the ``K`` bins (rows are normalised here).
    bins : `~stellarml.posterior.LabelBins` or tuple
        The bins, ``(lo, hi, width)`` in label units.

    Returns
    -------
    summary : dict of str to `numpy.ndarray`
        ``median``, ``mode``, ``mean``, ``p16``, ``p84`` (label units),
        ``err_lo = median - p16``, ``err_hi = p84 - median`` and
        ``edge_mass``: the probability in the first plus the last bin.
        Each is ``(n,)`` float64.

    Raises
    ------
    ValueError
        If ``pdf`` is not ``(n, K)`` with ``K`` the number of bins.

    Examples
    --------
    Five Teff bins of 500 K from 4000 to 6500 K; the second PDF is split
    between the two hottest bins:

    >>> import numpy as np
    >>> from stellarml.models import summarize_pdf
    >>> pdf = np.array([[0.014, 0.104, 0.765, 0.104, 0.014], [0.0, 0.0, 0.0, 0.5, 0.5]])
    >>> summary = summarize_pdf(pdf, (4000.0, 6500.0, 500.0))  # (lo, hi, width) [K]
    >>> for key in ("median", "p16", "p84", "edge_mass"):
    ...     print(key, np.round(summary[key], 2))
    median [5250. 6000.]
    p16 [5027.56 5660.  ]
    p84 [5472.44 6340.  ]
    edge_mass [0.03 0.5 ]
    """
    if not isinstance(bins, LabelBins):
        bins = LabelBins(*bins)
    p = torch.as_tensor(pdf)
    if p.dim() != 2 or p.shape[1] != bins.n_bins:
        raise ValueError(f"pdf must be (n, {bins.n_bins}), got {tuple(p.shape)}")
    posterior = BinnedPosterior({"label": p.to(torch.float64).cpu().numpy()}, {"label": bins})
    summary = posterior.summaries()["label"]
    summary["edge_mass"] = posterior.edge_mass("label")
    return summary
