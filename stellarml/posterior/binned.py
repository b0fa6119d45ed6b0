"""`BinnedPosterior`: label posteriors as probabilities of equal-width bins."""

import numpy as np

from ._base import QUANTILES, LabelBins, LabelPosterior

__all__ = ["BinnedPosterior"]

#: Rows summarised at a time (bounds the temporary memory).
_CHUNK_ROWS = 65536


def _as_bins(bins):
    return bins if isinstance(bins, LabelBins) else LabelBins(*bins)


def _quantile_positions(p, cdf, q):
    """Quantile positions (bin units) of normalised PDFs ``p`` (n, K), ``cdf`` its cumsum."""
    import torch

    n, k = p.shape
    tiny = torch.finfo(p.dtype).tiny
    q = q.expand(n, q.shape[-1]).contiguous()
    j = torch.searchsorted(cdf, q).clamp(max=k - 1)
    prev = torch.where(j > 0, cdf.gather(1, (j - 1).clamp_min(0)), torch.zeros_like(q))
    frac = ((q - prev) / p.gather(1, j).clamp_min(tiny)).clamp(0.0, 1.0)
    return j.to(p.dtype) + frac


def _summary_positions(pdf):
    """Summaries of ``(n, K)`` PDFs in bin units: (p16, p50, p84, mode, mean, edge_mass)."""
    import torch

    k = pdf.shape[1]
    tiny = torch.finfo(pdf.dtype).tiny
    p = pdf / pdf.sum(dim=1, keepdim=True).clamp_min(tiny)
    cdf = p.cumsum(dim=1)
    q = torch.tensor(QUANTILES, dtype=p.dtype, device=p.device)
    quant = _quantile_positions(p, cdf, q)
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


def _chunked(fn, pdf):
    """``fn`` (a torch function of (n, K) PDFs) over row chunks of a numpy array -> numpy."""
    import torch

    if pdf.shape[0] == 0:
        return np.asarray(fn(torch.from_numpy(np.zeros((1, pdf.shape[1]), pdf.dtype))))[:0]
    parts = [
        fn(torch.from_numpy(np.ascontiguousarray(pdf[s : s + _CHUNK_ROWS]))).numpy()
        for s in range(0, pdf.shape[0], _CHUNK_ROWS)
    ]
    return np.concatenate(parts)


class BinnedPosterior(LabelPosterior):
    """Label posteriors as probabilities of equal-width bins (one PDF per label and row).

    Parameters
    ----------
    pdf : dict of str to array-like
        ``{label: (n, K_label)}`` bin probabilities (rows are normalised when
        summarised). The dtype is kept (float32 for REMAP's heads).
    bins : dict of str to `LabelBins` or tuple
        ``{label: (lo, hi, width)}`` in label units, the same labels as ``pdf``.
    flags, diagnostics, valid :
        See `LabelPosterior`.

    Notes
    -----
    Quantiles spread each bin's probability uniformly over it; the mode is the
    centre of the most probable bin refined by a parabola through it and its
    two neighbours (at most half a bin); the mean uses bin centres. A
    calibration's affine map is kept per row beside the bins (`bin_centers`
    gives the mapped centres), so the PDFs are never re-binned; the Gaussian
    convolution of `~LabelPosterior.transformed` is applied as a widening
    about the median that adds its variance (exact for Gaussian PDFs, and
    free of the smearing that re-binning a narrow convolution would cause).

    Examples
    --------
    One spectrum with a Gaussian-shaped Teff PDF in 100 K bins:

    >>> import numpy as np
    >>> from stellarml.posterior import BinnedPosterior
    >>> centers = np.arange(4050.0, 6000.0, 100.0)
    >>> pdf = np.exp(-0.5 * ((centers - 5000.0) / 150.0) ** 2)[None]
    >>> post = BinnedPosterior({"teff": pdf}, {"teff": (4000.0, 6000.0, 100.0)})
    >>> post.bins["teff"].n_bins, post.pdf("teff").shape
    (20, (1, 20))
    >>> round(float(post.median("teff")[0]), 1), round(float(post.mode("teff")[0]), 1)
    (5000.0, 5000.0)
    >>> round(float(post.summaries()["teff"]["err_hi"][0]), -1)  # close to 150 K
    150.0
    """

    form = "binned"

    def __init__(self, pdf, bins, *, flags=None, diagnostics=None, valid=None):
        pdf = {str(k): np.asarray(v) for k, v in dict(pdf).items()}
        bins = {str(k): _as_bins(v) for k, v in dict(bins).items()}
        if set(pdf) != set(bins):
            raise ValueError(f"pdf labels {sorted(pdf)} differ from bins labels {sorted(bins)}")
        names = tuple(pdf)
        if not names:
            raise ValueError("a BinnedPosterior needs at least one label")
        n = pdf[names[0]].shape[0] if pdf[names[0]].ndim == 2 else -1
        for name in names:
            p = pdf[name]
            if p.ndim != 2 or p.shape != (n, bins[name].n_bins):
                raise ValueError(
                    f"pdf of {name!r} must be (n, {bins[name].n_bins}), got {p.shape} "
                    f"(other labels have n = {n})"
                )
            if p.dtype.kind != "f":
                pdf[name] = p.astype(np.float64)
        super().__init__(names, n, flags=flags, diagnostics=diagnostics, valid=valid)
        self._pdf = pdf
        self.bins = {name: bins[name] for name in names}
        self._loc = dict.fromkeys(names)
        self._scale = dict.fromkeys(names)

    def pdf(self, label):
        """Bin probabilities of ``label``, ``(n, K)`` as given (not renormalised)."""
        self._label_index(label)
        return self._pdf[label]

    def bin_centers(self, label):
        """Bin centres of ``label`` in its unit: ``(K,)``, or ``(n, K)`` after a calibration."""
        centers = self.bins[label].centers
        if self._loc[label] is None:
            return centers
        return self._loc[label][:, None] + self._scale[label][:, None] * centers[None, :]

    def edge_mass(self, label):
        """Probability in the first plus the last bin of ``label``, ``(n,)`` (NaN if invalid)."""
        edge = self._positions(label)[:, 5].astype(np.float64)
        return np.where(self.valid, edge, np.nan)

    def _density(self, label):
        return self._pdf[label]

    def _positions(self, label):
        key = ("positions", label)
        if key not in self._cache:
            self._cache[key] = _chunked(_summary_positions, self._pdf[label])
        return self._cache[key]

    def _to_label_units(self, label, positions):
        b = self.bins[label]
        values = b.lo + b.width * np.asarray(positions, dtype=np.float64)
        if self._loc[label] is None:
            return values
        loc, scale = self._loc[label], self._scale[label]
        if values.ndim == 2:
            loc, scale = loc[:, None], scale[:, None]
        return loc + scale * values

    def _summary(self, label):
        values = self._to_label_units(label, self._positions(label)[:, :5])
        return tuple(values[:, i] for i in range(5))

    def _quantiles(self, label, q):
        import torch

        levels = torch.as_tensor(q, dtype=torch.float32)

        def fn(pdf):
            tiny = torch.finfo(pdf.dtype).tiny
            p = pdf / pdf.sum(dim=1, keepdim=True).clamp_min(tiny)
            return _quantile_positions(p, p.cumsum(dim=1), levels.to(p.dtype))

        return self._to_label_units(label, _chunked(fn, self._pdf[label]))

    def _mode(self, label):
        return self._summary(label)[3]

    def _mean(self, label):
        return self._summary(label)[4]

    def _row_arrays(self):
        rows = {f"pdf:{k}": v for k, v in self._pdf.items()}
        for name in self._labels:
            if self._loc[name] is not None:
                rows[f"loc:{name}"] = self._loc[name]
                rows[f"scale:{name}"] = self._scale[name]
        return rows

    def _fill_value(self, key, values):
        return 1.0 if key.startswith("scale:") else 0.0 if key.startswith("loc:") else np.nan

    def _with_rows(self, rows, *, n, flags, valid, diagnostics):
        out = BinnedPosterior(
            {name: rows[f"pdf:{name}"] for name in self._labels},
            self.bins,
            flags=flags,
            diagnostics=diagnostics,
            valid=valid,
        )
        for name in self._labels:
            if f"loc:{name}" in rows:
                out._loc[name] = rows[f"loc:{name}"]
                out._scale[name] = rows[f"scale:{name}"]
        return out

    def _check_same_kind(self, posteriors):
        super()._check_same_kind(posteriors)
        for k, p in enumerate(posteriors):
            for name in self._labels:
                if p.bins[name] != self.bins[name]:
                    raise ValueError(f"posterior {k} has other bins for {name!r}")

    def _mixture(self, posteriors, weights):
        for k, p in enumerate(posteriors):
            if any(p._loc[name] is not None for name in self._labels):
                raise ValueError(f"posterior {k} is calibrated: combine members before calibrating")
        pdf = {}
        for name in self._labels:
            if weights is None:  # sum in member order, then divide: as the ensembles always did
                total = posteriors[0]._pdf[name]
                for p in posteriors[1:]:
                    total = total + p._pdf[name]
                pdf[name] = total / total.dtype.type(len(posteriors))
            else:
                pdf[name] = sum(
                    w * p._pdf[name].astype(np.float64)
                    for w, p in zip(weights, posteriors, strict=True)
                ).astype(self._pdf[name].dtype)
        return BinnedPosterior(pdf, self.bins)

    def _transform(self, label, shift, scale, center, sigma):
        loc = np.zeros(self._n) if self._loc[label] is None else self._loc[label]
        old = np.ones(self._n) if self._scale[label] is None else self._scale[label]
        # x = loc + old * raw  ->  center + shift + scale * (x - center)
        self._loc = {**self._loc, label: center * (1.0 - scale) + shift + scale * loc}
        self._scale = {**self._scale, label: scale * old}
        if sigma is not None:
            # widen about the median so that the variance grows by sigma^2 (exact for a
            # Gaussian PDF; re-binning a convolution would smear sub-bin widths)
            var = self._variance(label)
            grow = np.sqrt(1.0 + sigma**2 / np.where(var > 0, var, np.inf))
            median = self._summary(label)[1]
            self._loc[label] = median * (1.0 - grow) + grow * self._loc[label]
            self._scale[label] = grow * self._scale[label]

    def _variance(self, label):
        """Variance of ``label`` per row in its unit (probability uniform within each bin)."""
        b = self.bins[label]
        p = np.nan_to_num(self._pdf[label].astype(np.float64))
        p = p / np.where(p.sum(axis=1, keepdims=True) > 0, p.sum(axis=1, keepdims=True), 1.0)
        centers = np.arange(b.n_bins) + 0.5
        mean = p @ centers
        var_bins = p @ centers**2 - mean**2 + 1.0 / 12.0
        scale = 1.0 if self._scale[label] is None else self._scale[label]
        return np.maximum(var_bins, 0.0) * (b.width * scale) ** 2

    def _draw(self, n_samples, rng):
        out = np.empty((self._n, n_samples, len(self._labels)))
        for j, name in enumerate(self._labels):
            p = np.nan_to_num(self._pdf[name].astype(np.float64))
            total = p.sum(axis=1, keepdims=True)
            cdf = np.cumsum(p / np.where(total > 0, total, 1.0), axis=1)
            u = rng.random((self._n, n_samples))
            idx = np.empty((self._n, n_samples), dtype=np.int64)
            for i in range(self._n):
                idx[i] = np.searchsorted(cdf[i], u[i])
            idx = np.clip(idx, 0, p.shape[1] - 1)
            pos = idx + rng.random((self._n, n_samples))
            out[:, :, j] = self._to_label_units(name, pos)
        return out
