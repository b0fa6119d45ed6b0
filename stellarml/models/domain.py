"""Distances in a model's feature space, for out-of-domain checks (shared by the methods)."""

import math

import numpy as np
import torch

__all__ = ["line_statistics", "nearest_distance", "out_of_fold_threshold_scale"]


def nearest_distance(query, reference, *, exclude_self=False, chunk=4096):
    """Euclidean distance from each query vector to its nearest reference vector.

    Parameters
    ----------
    query : `torch.Tensor` or `numpy.ndarray`
        ``(n, E)``.
    reference : `torch.Tensor` or `numpy.ndarray`
        ``(m, E)``.
    exclude_self : bool, optional
        ``query`` is ``reference``: ignore the zero distance of each vector
        to itself (leave-one-out nearest neighbour).
    chunk : int, optional
        Queries per distance matrix (bounds memory at ``chunk * m`` floats).

    Returns
    -------
    distance : `numpy.ndarray`
        ``(n,)`` float64, in embedding units.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.models import nearest_distance
    >>> reference = np.array([[0.0, 1.0], [3.0, 0.0]])
    >>> nearest_distance(np.array([[0.0, 0.0], [3.0, 4.0]]), reference)
    array([1., 4.])
    >>> np.round(nearest_distance(reference, reference, exclude_self=True), 4)
    array([3.1623, 3.1623])
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


def out_of_fold_threshold_scale(ratio, quantile=0.99):
    """Factor by which an in-sample domain threshold must grow to keep false alarms low.

    A model's ``domain_threshold_`` is a quantile of distances among its own
    training spectra, which the network has learned, so new stars of the same
    population lie farther away. Given, for stars held out of the training
    (k-fold), the ratio of each star's distance to the threshold of the model
    that did not see it, the ``quantile`` of those ratios is the factor that
    leaves a share ``1 - quantile`` of such stars above the scaled threshold.

    Parameters
    ----------
    ratio : array-like
        Out-of-fold distance / in-sample threshold of each held-out star
        (dimensionless); non-finite values are ignored.
    quantile : float
        In (0, 1]: the share of held-out stars to keep inside the domain.

    Returns
    -------
    scale : float
        Dimensionless factor (at least 1: the threshold never shrinks).

    Raises
    ------
    ValueError
        If ``quantile`` is outside (0, 1] or no ratio is finite.
    """
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile!r}")
    r = np.asarray(ratio, dtype=float).ravel()
    r = r[np.isfinite(r)]
    if r.size == 0:
        raise ValueError("no finite out-of-fold distance ratio to set a threshold from")
    return max(1.0, float(np.quantile(r, quantile)))


#: Gaussian sigma [pixels] of the smoothing that `line_statistics` removes
#: (slow continuum residuals), keeping line-scale structure.
LINE_SMOOTHING_PIXELS = 5.0


def line_statistics(flux, ivar, *, smoothing=LINE_SMOOTHING_PIXELS):
    """Model-independent line content of continuum-normalised spectra on a model grid.

    Only the flux of the good pixels (``ivar > 0``) is used, not its stated
    uncertainties (which real files often get wrong). The flux minus its
    Gaussian smoothing (``smoothing`` pixels) keeps line-scale structure and
    removes what is left of the continuum.

    Parameters
    ----------
    flux : array-like
        ``(n, npix)`` continuum-normalised flux (1 = continuum).
    ivar : array-like
        ``(n, npix)`` its inverse variance; only ``ivar > 0`` (good pixel) is used.
    smoothing : float
        Gaussian sigma of the removed smooth part [pixels].

    Returns
    -------
    stats : dict of `numpy.ndarray`
        ``(n,)`` float64 each, NaN for a row with fewer than 10 good pixels:

        ``line_rms``
            Root-mean-square of the high-passed flux (dimensionless, in
            units of the continuum; noise included). Stars at R ~ 1500 in
            3800-7000 A: about 0.03-0.2; emission-line objects: far more.
        ``line_contrast``
            ``line_rms`` over the DER_SNR noise of the same pixels (Stoehr et
            al. 2008: ``1.4826 / sqrt(6) * median|2 f_i - f_(i-2) - f_(i+2)|``).
            About 1 when noise is all there is (a featureless continuum), 1.5
            or more for stars with measurable lines.
    """
    from scipy.ndimage import gaussian_filter1d

    f = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    iv = np.atleast_2d(np.asarray(ivar, dtype=np.float64))
    n = f.shape[0]
    rms = np.full(n, np.nan)
    noise = np.full(n, np.nan)
    good = (iv > 0) & np.isfinite(f)
    full = good.all(axis=1)

    def compute(x):  # (m, k) rows of good pixels only
        high = x - gaussian_filter1d(x, smoothing, axis=1, mode="nearest")
        second = np.abs(2.0 * x[:, 2:-2] - x[:, :-4] - x[:, 4:])
        return np.sqrt(np.mean(high**2, axis=1)), 1.482602 / np.sqrt(6.0) * np.median(second, 1)

    if full.any() and f.shape[1] >= 10:  # rows without masked pixels: in one go
        for start in range(0, int(full.sum()), 4096):
            rows = np.flatnonzero(full)[start : start + 4096]
            rms[rows], noise[rows] = compute(f[rows])
    for k in np.flatnonzero(~full):
        x = f[k][good[k]]
        if x.size >= 10:
            (rms[k],), (noise[k],) = compute(x[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        contrast = np.where(noise > 0, rms / noise, np.where(np.isnan(rms), np.nan, np.inf))
    return {"line_rms": rms, "line_contrast": contrast}
