"""Distances in a model's feature space, for out-of-domain checks (shared by the methods)."""

import math

import numpy as np
import torch

__all__ = ["nearest_distance"]


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
