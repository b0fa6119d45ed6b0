"""Domain-gap diagnostics of a `DTLModel`: MMD two-sample tests and 2-D latent projections.

`mmd_test` is the unbiased squared maximum mean discrepancy of Gretton et al.
(2012, JMLR 13, 723) with a Gaussian kernel and a permutation p-value;
`domain_gap` applies it, per autoencoder, to the synthetic latents against
the observed latents before (pre-trained encoder) and after (fine-tuned
encoder) adaptation. `project_latents` gives a 2-D PCA (or UMAP, when
``umap-learn`` is installed) projection fitted on the synthetic latents;
`stellarml.visualization.plot_latent_projection` draws it.
"""

import numpy as np

__all__ = ["domain_gap", "mmd_test", "project_latents"]


def _sq_dists(a, b):
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def _subsample(x, n, rng):
    if x.shape[0] <= n:
        return x
    return x[np.sort(rng.choice(x.shape[0], n, replace=False))]


def median_bandwidth(x):
    """The median-heuristic Gaussian-kernel bandwidth of the rows of ``x`` (float)."""
    x = np.asarray(x, dtype=np.float64)
    d = np.sqrt(_sq_dists(x, x)[np.triu_indices(x.shape[0], 1)])
    d = d[d > 0]
    return float(np.median(d)) if d.size else 1.0


def mmd_test(x, y, *, bandwidth=None, n_permutations=500, max_samples=1000, seed=0):
    """Two-sample test of ``x`` and ``y`` by the maximum mean discrepancy.

    Parameters
    ----------
    x, y : array-like
        ``(n, d)`` and ``(m, d)`` samples (e.g. latent vectors), n, m >= 2.
    bandwidth : float, optional
        Gaussian kernel ``exp(-|a - b|^2 / (2 bandwidth^2))``; default the
        median heuristic on ``x`` (so that two comparisons against the same
        ``x`` use the same kernel).
    n_permutations : int
        Random relabellings of the pooled sample for the p-value.
    max_samples : int
        Each sample is randomly cut to at most this many rows.
    seed : int
        Seed of the subsampling and of the permutations.

    Returns
    -------
    result : dict
        ``mmd2`` (the unbiased estimate of MMD², kernel units), ``p_value``
        (``(1 + #{permuted >= observed}) / (1 + n_permutations)``),
        ``bandwidth``, ``n_x``, ``n_y``, ``n_permutations``.

    Raises
    ------
    ValueError
        If the samples are not ``(n, d)`` with the same ``d`` and at least 2
        rows each, hold non-finite values, or ``bandwidth`` is not positive.

    Examples
    --------
    Two samples from the same 4-D Gaussian, and one shifted by half a sigma:

    >>> import numpy as np
    >>> from stellarml.models.dtl import mmd_test
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(100, 4)), rng.normal(size=(100, 4))
    >>> shifted = rng.normal(0.5, 1.0, size=(100, 4))
    >>> same = mmd_test(x, y, n_permutations=100)
    >>> other = mmd_test(x, shifted, n_permutations=100)
    >>> round(same["p_value"], 3), round(other["p_value"], 3)  # 1 / 101: the smallest possible
    (0.941, 0.01)
    >>> round(same["mmd2"], 4), round(other["mmd2"], 4)  # unbiased: can be below 0
    (-0.0049, 0.0623)
    """
    rng = np.random.default_rng(seed)
    x = _subsample(np.asarray(x, dtype=np.float64), int(max_samples), rng)
    y = _subsample(np.asarray(y, dtype=np.float64), int(max_samples), rng)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (n, d) with the same d, got {x.shape} and {y.shape}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"each sample needs at least 2 rows, got {x.shape[0]} and {y.shape[0]}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("the samples hold non-finite values")
    bw = median_bandwidth(x) if bandwidth is None else float(bandwidth)
    if not bw > 0:
        raise ValueError(f"bandwidth must be positive, got {bw}")
    pooled = np.concatenate([x, y])
    kernel = np.exp(-_sq_dists(pooled, pooled) / (2.0 * bw * bw))
    n, m = x.shape[0], y.shape[0]

    def statistic(idx):
        a, b = idx[:n], idx[n:]
        kxx, kyy, kxy = kernel[np.ix_(a, a)], kernel[np.ix_(b, b)], kernel[np.ix_(a, b)]
        return (
            (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2.0 * kxy.mean()
        )

    observed = statistic(np.arange(n + m))
    count = sum(statistic(rng.permutation(n + m)) >= observed for _ in range(int(n_permutations)))
    return {
        "mmd2": float(observed),
        "p_value": float((1 + count) / (1 + int(n_permutations))),
        "bandwidth": bw,
        "n_x": int(n),
        "n_y": int(m),
        "n_permutations": int(n_permutations),
    }


def _standardised(model, k, z):
    member = model.members_[k]
    return (z - member["latent_mean"]) / member["latent_std"]


def domain_gap(model, synthetic_flux, observed_flux, observed_ivar=None, *, seed=0, **mmd_kw):
    """The synthetic-observed gap in each autoencoder's latent space, before and after adaptation.

    Parameters
    ----------
    model : `~stellarml.models.DTLModel`
        A trained model; adapted for the ``after`` entries.
    synthetic_flux : array-like
        ``(n, npix)`` synthetic spectra on the model grid (e.g. its training
        library or a held-out part of it).
    observed_flux, observed_ivar : array-like
        ``(m, npix)`` observed spectra on the model grid.
    seed : int
        Seed of `mmd_test`.
    **mmd_kw
        Passed to `mmd_test` (``n_permutations``, ``max_samples``).

    Returns
    -------
    gap : list of dict
        Per autoencoder: ``before`` and (adapted models) ``after``, each the
        `mmd_test` result of the standardised synthetic latents against the
        observed latents, both as the regressors see them: before, both from
        the pre-trained encoder; after, the observed ones from the fine-tuned
        encoder and the synthetic ones from the encoder the configuration's
        ``synthetic_latents`` names (the kernel bandwidth is the median
        heuristic of those synthetic latents), with
        ``mean_min_distance``: the mean distance of each observed latent to
        its nearest synthetic latent (standardised latent units).

    Examples
    --------
    For illustration only, two halves of the shipped example spectra stand
    in for the synthetic and the observed sample (a real check takes hundreds
    of each):

    >>> from stellarml import read_model
    >>> from stellarml.data import example_spectra
    >>> from stellarml.models.dtl import domain_gap
    >>> from stellarml.spectra import prepare
    >>> model = read_model("dtl-optical-r2000")
    >>> spectra, _ = example_spectra()
    >>> batch = prepare(spectra, model.preparation)
    >>> gap = domain_gap(model, batch.flux[:4], batch.flux[4:], batch.ivar[4:], n_permutations=50)
    >>> len(gap), sorted(gap[0])  # one entry per autoencoder
    (2, ['after', 'before'])
    >>> after = gap[0]["after"]
    >>> after["n_x"], after["n_y"], sorted(after)[:4]
    (4, 4, ['bandwidth', 'mean_min_distance', 'mmd2', 'n_permutations'])
    """
    syn0, _ = model.encode_prepared(synthetic_flux, None, encoder="pretrained")
    obs0, _ = model.encode_prepared(observed_flux, observed_ivar, encoder="pretrained")
    syn1 = obs1 = None
    if model.is_adapted():
        obs1, _ = model.encode_prepared(observed_flux, observed_ivar, encoder="adapted")
        source = model.get_config()["training"]["synthetic_latents"]
        syn1 = syn0 if source == "pretrained" else None
        if syn1 is None:
            syn1, _ = model.encode_prepared(synthetic_flux, None, encoder="adapted")
    out = []
    for k in range(len(model.members_)):
        entry = {}
        for key, syn, obs in (("before", syn0, obs0), ("after", syn1, obs1)):
            if obs is None:
                continue
            s = _standardised(model, k, syn[k])
            bw = median_bandwidth(_subsample(s, 1000, np.random.default_rng(seed)))
            o = _standardised(model, k, obs[k])
            result = mmd_test(s, o, bandwidth=bw, seed=seed, **mmd_kw)
            result["mean_min_distance"] = float(np.sqrt(_sq_dists(o, s).min(axis=1)).mean())
            entry[key] = result
        out.append(entry)
    return out


def project_latents(reference, *others, method="pca", seed=0):
    """2-D projection of latent vectors, fitted on ``reference``.

    Parameters
    ----------
    reference : array-like
        ``(n, d)`` latents the projection is fitted on (e.g. synthetic).
    *others : array-like
        ``(m, d)`` latents projected with the same map (e.g. observed before
        and after adaptation).
    method : {"pca", "umap"}
        Principal components (numpy), or UMAP (needs ``umap-learn``; fitted
        on the reference, others transformed).
    seed : int
        UMAP's random state.

    Returns
    -------
    projections : list of `numpy.ndarray`
        ``(n, 2)`` for ``reference`` then each of ``others``.

    Raises
    ------
    ValueError
        For an unknown ``method``.
    ImportError
        For ``method="umap"`` without ``umap-learn``.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.models.dtl import project_latents
    >>> rng = np.random.default_rng(0)
    >>> synthetic, observed = rng.normal(size=(100, 8)), rng.normal(0.5, 1.0, size=(30, 8))
    >>> ref, obs = project_latents(synthetic, observed)
    >>> ref.shape, obs.shape
    ((100, 2), (30, 2))
    >>> np.allclose(ref.mean(axis=0), 0.0)  # centred on the reference
    True
    """
    ref = np.asarray(reference, dtype=np.float64)
    rest = [np.asarray(o, dtype=np.float64) for o in others]
    if method == "pca":
        mean = ref.mean(axis=0)
        _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
        axes = vt[:2].T
        return [(a - mean) @ axes for a in (ref, *rest)]
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise ImportError("method='umap' needs the umap-learn package") from None
        reducer = umap.UMAP(n_components=2, random_state=seed).fit(ref)
        return [reducer.embedding_, *(reducer.transform(a) for a in rest)]
    raise ValueError(f"method must be 'pca' or 'umap', got {method!r}")
