"""`SamplePosterior` (draws) and `GaussianPosterior` (mean and covariance)."""

import numpy as np

from ._base import LabelPosterior

__all__ = ["MIN_DRAWS_FOR_MODES", "GaussianPosterior", "SamplePosterior"]

#: Seed of the Gaussian draws that `SamplePosterior.transformed` adds for ``extra_sigma``.
_CONVOLUTION_SEED = 20251202


#: The fewest draws per row for which `SamplePosterior.bimodal` tests for two modes
#: (a small ensemble's draws are never flagged ``BIMODAL_PDF``).
MIN_DRAWS_FOR_MODES = 20


class SamplePosterior(LabelPosterior):
    """Label posteriors as draws from each row's joint distribution.

    Parameters
    ----------
    samples : array-like
        ``(n, S, L)`` draws (``S`` per row, ``L`` labels in ``label_names``
        order), or ``(n, S)`` for a single label.
    label_names : sequence of str
        The labels.
    flags, diagnostics, valid :
        See `LabelPosterior`. Rows whose draws are not all finite are not valid.

    Notes
    -----
    Quantiles are numpy's linear-interpolation quantiles of the draws; the
    mode is not defined for draws (NaN). `combine` pools the members' draws,
    so each member counts in proportion to its number of draws.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.posterior import SamplePosterior
    >>> rng = np.random.default_rng(0)
    >>> draws = rng.normal([5000.0, 4.4], [100.0, 0.1], size=(3, 2000, 2))  # 3 spectra
    >>> post = SamplePosterior(draws, ["teff", "logg"])
    >>> post.samples.shape
    (3, 2000, 2)
    >>> np.round(post.median("teff"), -1), bool(np.isnan(post.mode("teff")).all())
    (array([5000., 5000., 5000.]), True)
    >>> pooled = SamplePosterior.combine([post, post])  # an ensemble of two members
    >>> pooled.samples.shape
    (3, 4000, 2)
    """

    form = "samples"

    def __init__(self, samples, label_names, *, flags=None, diagnostics=None, valid=None):
        if isinstance(label_names, str):
            label_names = (label_names,)
        samples = np.asarray(samples, dtype=np.float64)
        if samples.ndim == 2 and len(label_names) == 1:
            samples = samples[:, :, None]
        if samples.ndim != 3 or samples.shape[2] != len(label_names) or samples.shape[1] < 1:
            raise ValueError(
                f"samples must be (n, n_samples, {len(label_names)}), got {samples.shape}"
            )
        finite = np.isfinite(samples).all(axis=(1, 2))
        valid = finite if valid is None else np.asarray(valid, dtype=bool) & finite
        super().__init__(
            label_names, samples.shape[0], flags=flags, diagnostics=diagnostics, valid=valid
        )
        self._samples = samples

    @property
    def samples(self):
        """The draws, ``(n, S, L)`` float64 (a read-only view)."""
        view = self._samples.view()
        view.flags.writeable = False
        return view

    def _column(self, label):
        return self._samples[:, :, self._label_index(label)]

    def _quantiles(self, label, q):
        x = np.where(self.valid[:, None], self._column(label), 0.0)
        return np.quantile(x, q, axis=1).T

    def _mode(self, label):
        return np.full(self._n, np.nan)

    def _mean(self, label):
        return np.where(self.valid[:, None], self._column(label), 0.0).mean(axis=1)

    def _density(self, label):
        """Histograms of each row's draws: ``clip(sqrt(S), 10, 50)`` bins over their range.

        None (no test) with fewer than `MIN_DRAWS_FOR_MODES` draws: a
        histogram of a handful of draws puts any two distinct values in two
        separate bins, which is not evidence of two modes.
        """
        if self._samples.shape[1] < MIN_DRAWS_FOR_MODES:
            return None
        x = np.where(self.valid[:, None], self._column(label), 0.0)
        k = int(np.clip(np.sqrt(x.shape[1]), 10, 50))
        lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
        width = np.where(hi > lo, hi - lo, 1.0)
        j = np.clip(((x - lo) / width * k).astype(np.int64), 0, k - 1)
        counts = np.zeros((x.shape[0], k))
        np.add.at(counts, (np.arange(x.shape[0])[:, None], j), 1.0)
        return counts

    def _row_arrays(self):
        return {"samples": self._samples}

    def _with_rows(self, rows, *, n, flags, valid, diagnostics):
        return SamplePosterior(
            rows["samples"], self._labels, flags=flags, diagnostics=diagnostics, valid=valid
        )

    def _mixture(self, posteriors, weights):
        if weights is not None and len({p._samples.shape[1] for p in posteriors}) == 1:
            if not np.allclose(weights, weights[0]):
                raise ValueError(
                    "a weighted mixture of samples needs draws in proportion to the weights"
                )
        return SamplePosterior(
            np.concatenate([p._samples for p in posteriors], axis=1), self._labels
        )

    def _transform(self, label, shift, scale, center, sigma):
        j = self._label_index(label)
        samples = self._samples.copy()
        x = samples[:, :, j]
        x = center[:, None] + shift[:, None] + scale[:, None] * (x - center[:, None])
        if sigma is not None:
            rng = np.random.default_rng(_CONVOLUTION_SEED)
            x = x + sigma[:, None] * rng.standard_normal(x.shape)
        samples[:, :, j] = x
        self._samples = samples

    def _draw(self, n_samples, rng):
        idx = rng.integers(0, self._samples.shape[1], size=(self._n, n_samples))
        return np.take_along_axis(self._samples, idx[:, :, None], axis=1)


class GaussianPosterior(LabelPosterior):
    """Label posteriors as a mean vector and covariance matrix per row.

    Parameters
    ----------
    mean : array-like
        ``(n, L)`` in label units, ``L`` labels in ``label_names`` order.
    cov : array-like
        ``(n, L, L)`` symmetric positive semi-definite covariances, or
        ``(n, L)`` variances (a diagonal covariance).
    label_names : sequence of str
        The labels.
    flags, diagnostics, valid :
        See `LabelPosterior`. Rows with non-finite means or covariances are not valid.

    Notes
    -----
    The median and mode are the mean; p16 and p84 are ``mean ∓ 0.9945 σ``
    (the 16th and 84th percentiles of a Gaussian). `combine` returns the
    moment-matched Gaussian of the mixture (law of total covariance).

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.posterior import GaussianPosterior
    >>> post = GaussianPosterior([[5000.0], [6000.0]], [[100.0**2], [50.0**2]], ["teff"])
    >>> np.round(post.quantiles("teff", [0.16, 0.5, 0.84]), 1)
    array([[4900.6, 5000. , 5099.4],
           [5950.3, 6000. , 6049.7]])
    >>> post.std("teff")
    array([100.,  50.])
    >>> mix = GaussianPosterior.combine([post, post.transformed("teff", shift=200.0)])
    >>> np.round(mix.mean("teff"), 1), np.round(mix.std("teff"), 1)
    (array([5100., 6100.]), array([141.4, 111.8]))
    """

    form = "gaussian"

    def __init__(self, mean, cov, label_names, *, flags=None, diagnostics=None, valid=None):
        if isinstance(label_names, str):
            label_names = (label_names,)
        mean = np.asarray(mean, dtype=np.float64)
        cov = np.asarray(cov, dtype=np.float64)
        n_labels = len(label_names)
        if mean.ndim == 1 and n_labels == 1:
            mean = mean[:, None]
        if mean.ndim != 2 or mean.shape[1] != n_labels:
            raise ValueError(f"mean must be (n, {n_labels}), got {mean.shape}")
        n = mean.shape[0]
        if cov.shape == (n, n_labels):
            cov = cov[:, :, None] * np.eye(n_labels)[None]
        elif n_labels == 1 and cov.shape == (n,):
            cov = cov[:, None, None]
        if cov.shape != (n, n_labels, n_labels):
            raise ValueError(f"cov must be (n, {n_labels}, {n_labels}), got {cov.shape}")
        finite = np.isfinite(mean).all(axis=1) & np.isfinite(cov).all(axis=(1, 2))
        diag = np.diagonal(cov, axis1=1, axis2=2)
        if np.any(diag[finite] < 0):
            raise ValueError("covariances must have non-negative variances")
        valid = finite if valid is None else np.asarray(valid, dtype=bool) & finite
        super().__init__(label_names, n, flags=flags, diagnostics=diagnostics, valid=valid)
        self._mu = mean
        self._cov = cov

    @property
    def mean_vector(self):
        """Means, ``(n, L)`` (a copy)."""
        return self._mu.copy()

    @property
    def covariance(self):
        """Covariances, ``(n, L, L)`` (a copy)."""
        return self._cov.copy()

    def std(self, label):
        """Standard deviation of ``label``, ``(n,)`` (NaN for invalid rows)."""
        j = self._label_index(label)
        return np.where(self.valid, np.sqrt(np.maximum(self._cov[:, j, j], 0.0)), np.nan)

    def _quantiles(self, label, q):
        from scipy.special import ndtri

        j = self._label_index(label)
        sigma = np.sqrt(np.maximum(self._cov[:, j, j], 0.0))
        return self._mu[:, j, None] + sigma[:, None] * ndtri(np.asarray(q))[None, :]

    def _mode(self, label):
        return self._mu[:, self._label_index(label)].copy()

    def _mean(self, label):
        return self._mode(label)

    def _row_arrays(self):
        return {"mean": self._mu, "cov": self._cov}

    def _with_rows(self, rows, *, n, flags, valid, diagnostics):
        return GaussianPosterior(
            rows["mean"],
            rows["cov"],
            self._labels,
            flags=flags,
            diagnostics=diagnostics,
            valid=valid,
        )

    def _mixture(self, posteriors, weights):
        k = len(posteriors)
        w = np.full(k, 1.0 / k) if weights is None else weights
        mean = sum(wk * p._mu for wk, p in zip(w, posteriors, strict=True))
        second = sum(
            wk * (p._cov + p._mu[:, :, None] * p._mu[:, None, :])
            for wk, p in zip(w, posteriors, strict=True)
        )
        cov = second - mean[:, :, None] * mean[:, None, :]
        return GaussianPosterior(mean, cov, self._labels)

    def _transform(self, label, shift, scale, center, sigma):
        j = self._label_index(label)
        mean = self._mu.copy()
        cov = self._cov.copy()
        mean[:, j] = center + shift + scale * (mean[:, j] - center)
        cov[:, j, :] *= scale[:, None]
        cov[:, :, j] *= scale[:, None]
        if sigma is not None:
            cov[:, j, j] += sigma**2
        self._mu, self._cov = mean, cov

    def _draw(self, n_samples, rng):
        out = np.empty((self._n, n_samples, len(self._labels)))
        z = rng.standard_normal((self._n, n_samples, len(self._labels)))
        for i in range(self._n):
            if not self.valid[i]:
                out[i] = np.nan
                continue
            w, v = np.linalg.eigh(self._cov[i])
            root = v * np.sqrt(np.maximum(w, 0.0))
            out[i] = self._mu[i] + z[i] @ root.T
        return out
