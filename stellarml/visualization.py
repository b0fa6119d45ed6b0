"""Plots of derived labels, posteriors, spectra and latent spaces (matplotlib).

matplotlib is an optional dependency (``pip install stellarml[plot]``); it is
imported when a plotting function is called, so ``import stellarml`` never
needs it. Every function draws on the given ``ax``/``fig`` (or a new figure),
returns the matplotlib objects it drew on, and never calls ``plt.show()``.

* `plot_label_comparison`: derived against reference labels, with residuals,
  bias and robust scatter per label.
* `plot_posterior`: the label PDFs of one spectrum (binned PDFs as steps,
  draws as histograms, Gaussians as curves), with median and 16-84 % interval.
* `plot_corner`: pairwise joint distributions of one spectrum's labels from
  draws (an ensemble, an MCMC chain) or from any posterior via draws.
* `plot_spectrum_fit`: an observed spectrum against a model spectrum, with
  the residuals in units of the uncertainty.
* `plot_kiel`: a Kiel diagram (Teff against log g) of a label table, coloured
  by [Fe/H]; flagged rows can be shown apart.
* `plot_latent_projection`: 2-D projections of latent encodings of several
  sets (synthetic and observed spectra before and after adaptation).
"""

import numpy as np

from .flags import FATAL

__all__ = [
    "plot_corner",
    "plot_kiel",
    "plot_label_comparison",
    "plot_latent_projection",
    "plot_posterior",
    "plot_spectrum_fit",
]

_TEX = {"teff": r"$T_\mathrm{eff}$", "logg": r"$\log g$", "fe_h": "[Fe/H]", "m_h": "[M/H]"}


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "stellarml.visualization needs matplotlib: pip install matplotlib "
            "(or the 'plot' extra: pip install stellarml[plot])"
        ) from exc
    return plt


def _axis_label(name, unit=None):
    from .labels import LABELS

    text = _TEX.get(name, name)
    if unit is None and name in LABELS:
        unit = LABELS[name].unit
    unit_text = "" if unit is None else unit.to_string()
    return f"{text} [{unit_text}]" if unit_text else text


def _values(column, name):
    """Plain float array (NaN where masked) and the unit of a column or array."""
    import astropy.units as u

    unit = getattr(column, "unit", None)
    if isinstance(column, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(column)
    elif getattr(column, "mask", None) is not None:  # astropy Masked quantities
        mask = np.asarray(column.mask, dtype=bool)
    else:
        mask = False
    data = getattr(column, "unmasked", column)
    data = data.value if isinstance(data, u.Quantity) else np.ma.getdata(data)
    arr = np.array(data, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    arr[np.broadcast_to(mask, arr.shape)] = np.nan
    return arr, unit


def _get(table, name, what):
    try:
        return table[name]
    except (KeyError, ValueError, IndexError):
        raise KeyError(f"{what} has no column {name!r}") from None


def _robust_sigma(x):
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.nan
    return 1.4826 * np.median(np.abs(x - np.median(x)))


def plot_label_comparison(derived, reference, labels=None, *, errors=True, fig=None):
    """Derived against reference labels, one column of panels per label.

    The upper panel of each label shows derived against reference values with
    the one-to-one line; the lower shows derived minus reference, with the
    median offset (bias) and the robust scatter (1.4826 × MAD) in the title.
    Rows that are masked or non-finite in either set are left out of the
    panels and of the statistics, and counted in the title.

    Parameters
    ----------
    derived : table-like
        A label table from `~stellarml.derive_labels` (or any table or dict
        with the label columns, and ``<label>_err_lo``/``_err_hi`` for the
        error bars).
    reference : table-like
        Reference labels, row-matched to ``derived``, in the same units.
    labels : sequence of str, optional
        Labels to plot (default: those of ``teff``, ``logg``, ``fe_h``, ``m_h``
        present in both).
    errors : bool, optional
        Draw the asymmetric error bars of ``derived`` when it has them.
    fig : `~matplotlib.figure.Figure`, optional
        The figure to draw on (default: a new one).

    Returns
    -------
    fig : `~matplotlib.figure.Figure`
    axes : `numpy.ndarray`
        ``(2, n_labels)`` axes: comparison row, residual row.
    stats : dict
        Per label: ``{"n": int, "bias": float, "sigma": float}`` in the
        label's unit.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.visualization import plot_label_comparison
    >>> ref = {"teff": np.array([5000.0, 5500.0, 6000.0])}
    >>> fig, axes, stats = plot_label_comparison({"teff": ref["teff"] + 10.0}, ref)
    >>> round(stats["teff"]["bias"], 6)
    10.0
    >>> import matplotlib.pyplot as plt
    >>> plt.close(fig)
    """
    plt = _pyplot()
    if labels is None:
        labels = [
            n for n in ("teff", "logg", "fe_h", "m_h") if _has(derived, n) and _has(reference, n)
        ]
        if not labels:
            raise ValueError("derived and reference share none of teff, logg, fe_h, m_h")
    labels = list(labels)
    if fig is None:
        fig = plt.figure(figsize=(3.6 * len(labels), 5.4), layout="constrained")
    axes = fig.subplots(
        2, len(labels), squeeze=False, sharex="col", gridspec_kw={"height_ratios": (3, 1.3)}
    )
    stats = {}
    for j, name in enumerate(labels):
        y, unit = _values(_get(derived, name, "derived"), name)
        x, ref_unit = _values(_get(reference, name, "reference"), name)
        if len(x) != len(y):
            raise ValueError(
                f"derived and reference have {len(y)} and {len(x)} rows for {name!r}; "
                "they must be row-matched"
            )
        if unit is not None and ref_unit is not None and unit != ref_unit:
            x = (x * ref_unit).to_value(unit)
        ok = np.isfinite(x) & np.isfinite(y)
        yerr = None
        if errors and _has(derived, f"{name}_err_lo") and _has(derived, f"{name}_err_hi"):
            lo, _ = _values(derived[f"{name}_err_lo"], name)
            hi, _ = _values(derived[f"{name}_err_hi"], name)
            yerr = np.vstack([lo[ok], hi[ok]])
        top, bottom = axes[0, j], axes[1, j]
        top.errorbar(x[ok], y[ok], yerr=yerr, fmt="o", ms=3, lw=0.6, alpha=0.8)
        if ok.any():
            lim = [min(x[ok].min(), y[ok].min()), max(x[ok].max(), y[ok].max())]
            top.plot(lim, lim, "k--", lw=0.8)
        resid = y[ok] - x[ok]
        bias = float(np.median(resid)) if resid.size else np.nan
        sigma = float(_robust_sigma(resid))
        stats[name] = {"n": int(ok.sum()), "bias": bias, "sigma": sigma}
        bottom.errorbar(x[ok], resid, yerr=yerr, fmt="o", ms=3, lw=0.6, alpha=0.8)
        bottom.axhline(0.0, color="k", ls="--", lw=0.8)
        left_out = len(x) - int(ok.sum())
        title = f"bias {bias:+.3g}, σ {sigma:.3g}"
        if left_out:
            title += f" ({left_out} not shown)"
        top.set_title(title, fontsize="small")
        top.set_ylabel("derived " + _axis_label(name, unit))
        bottom.set_xlabel("reference " + _axis_label(name, unit))
        bottom.set_ylabel("Δ")
    return fig, axes, stats


def _has(table, name):
    try:
        table[name]
    except (KeyError, ValueError, IndexError, TypeError):
        return False
    return True


def _check_row(posterior, row):
    n = len(posterior)
    if not isinstance(row, int | np.integer) or not -n <= row < n:
        raise IndexError(f"row must be an integer index into {n} spectra, got {row!r}")
    if not posterior.valid[row]:
        raise ValueError(
            f"row {row} has no valid posterior (flags {int(posterior.flags[row])}: "
            "the spectrum could not be analysed)"
        )
    return int(row)


def plot_posterior(posterior, row=0, labels=None, *, fig=None):
    """The label PDFs of one spectrum, one panel per label.

    Binned posteriors are drawn as their bin probabilities (steps), sample
    posteriors as histograms of the draws, Gaussian posteriors as their
    marginal densities. Each panel marks the median and the 16th-84th
    percentile interval that the label table reports.

    Parameters
    ----------
    posterior : `~stellarml.posterior.LabelPosterior`
        For example the second value of ``derive_labels(...,
        return_posterior=True)``.
    row : int, optional
        Which spectrum (default the first).
    labels : sequence of str, optional
        Labels to plot (default all).
    fig : `~matplotlib.figure.Figure`, optional

    Returns
    -------
    fig : `~matplotlib.figure.Figure`
    axes : `numpy.ndarray` of `~matplotlib.axes.Axes`

    Raises
    ------
    ValueError
        If the row's posterior is not valid (a fatally flagged spectrum).
    IndexError
        If ``row`` is not an integer index into the posterior.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from stellarml.posterior import GaussianPosterior
    >>> from stellarml.visualization import plot_posterior
    >>> post = GaussianPosterior([[5000.0, 4.4, -0.5]], [[100.0**2, 0.1**2, 0.05**2]],
    ...                          ["teff", "logg", "fe_h"])
    >>> fig, axes = plot_posterior(post, labels=["teff", "fe_h"])
    >>> len(axes), axes[1].get_xlabel(), axes[0].get_title()  # median (-err_lo +err_hi)
    (2, '[Fe/H] [dex]', '5000 (−99 +99)')
    >>> plt.close(fig)
    """
    plt = _pyplot()
    row = _check_row(posterior, row)
    labels = list(posterior.label_names if labels is None else labels)
    if fig is None:
        fig = plt.figure(figsize=(3.4 * len(labels), 2.8), layout="constrained")
    axes = fig.subplots(1, len(labels), squeeze=False)[0]
    for ax, name in zip(axes, labels, strict=True):
        p16, p50, p84 = posterior.quantiles(name, (0.16, 0.5, 0.84))[row]
        form = posterior.form
        if form == "binned":
            centers = np.asarray(posterior.bin_centers(name), dtype=float)
            if centers.ndim == 2:  # a calibration maps the bins of each row
                centers = centers[row]
            pdf = posterior.pdf(name)[row]
            width = centers[1] - centers[0] if centers.size > 1 else 1.0
            ax.step(centers, pdf / width, where="mid")
        elif form == "samples":
            draws = posterior.samples[row, :, posterior.label_names.index(name)]
            ax.hist(draws, bins="auto", density=True, histtype="step")
        else:
            mu = posterior.mean(name)[row]
            sd = 0.5 * (p84 - p16)
            grid = np.linspace(mu - 4 * sd, mu + 4 * sd, 201)
            ax.plot(grid, np.exp(-0.5 * ((grid - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)))
        ax.axvline(p50, color="k", lw=1.0)
        ax.axvspan(p16, p84, color="0.8", alpha=0.6, lw=0)
        ax.set_xlabel(_axis_label(name))
        ax.set_title(f"{p50:.4g} (−{p50 - p16:.2g} +{p84 - p50:.2g})", fontsize="small")
    axes[0].set_ylabel("probability density")
    return fig, axes


def plot_corner(posterior, row=0, labels=None, *, n_samples=4000, seed=0, fig=None):
    """Pairwise joint distributions of one spectrum's labels (a corner plot).

    Draws are taken from the posterior itself when it holds samples (an
    ensemble's members, an MCMC chain), and otherwise drawn from it with
    `~stellarml.posterior.LabelPosterior.to_samples` (independent labels for
    binned PDFs, correlated for Gaussians).

    Parameters
    ----------
    posterior : `~stellarml.posterior.LabelPosterior`
    row : int, optional
        Which spectrum.
    labels : sequence of str, optional
        Labels to plot (default all).
    n_samples : int, optional
        Draws for posteriors that are not samples.
    seed : int, optional
        Seed of those draws.
    fig : `~matplotlib.figure.Figure`, optional

    Returns
    -------
    fig : `~matplotlib.figure.Figure`
    axes : `numpy.ndarray`
        ``(L, L)`` axes; those above the diagonal are hidden.

    Raises
    ------
    ValueError
        If the row's posterior is not valid (a fatally flagged spectrum).
    IndexError
        If ``row`` is not an integer index into the posterior.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from stellarml.posterior import GaussianPosterior
    >>> from stellarml.visualization import plot_corner
    >>> post = GaussianPosterior([[5000.0, 4.4, -0.5]], [[100.0**2, 0.1**2, 0.05**2]],
    ...                          ["teff", "logg", "fe_h"])
    >>> fig, axes = plot_corner(post, n_samples=500)
    >>> axes.shape, sum(ax.get_visible() for ax in axes.flat)
    ((3, 3), 6)
    >>> axes[2, 0].get_ylabel(), axes[2, 2].get_xlabel()
    ('[Fe/H] [dex]', '[Fe/H] [dex]')
    >>> plt.close(fig)
    """
    plt = _pyplot()
    row = _check_row(posterior, row)
    labels = list(posterior.label_names if labels is None else labels)
    one = posterior.select(np.array([row]))
    draws = one if one.form == "samples" else one.to_samples(n_samples, seed=seed)
    index = [draws.label_names.index(name) for name in labels]
    x = draws.samples[0][:, index]
    n = len(labels)
    if fig is None:
        fig = plt.figure(figsize=(2.4 * n, 2.4 * n), layout="constrained")
    axes = fig.subplots(n, n, squeeze=False)
    for i in range(n):
        for j in range(n):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                ax.hist(x[:, i], bins="auto", density=True, histtype="step")
                for q, ls in zip(
                    np.quantile(x[:, i], (0.16, 0.5, 0.84)), ("--", "-", "--"), strict=True
                ):
                    ax.axvline(q, color="k", lw=0.8, ls=ls)
                ax.set_yticks([])
            else:
                ax.hist2d(x[:, j], x[:, i], bins=30, cmap="Greys")
            if i == n - 1:
                ax.set_xlabel(_axis_label(labels[j]))
            if j == 0 and i > 0:
                ax.set_ylabel(_axis_label(labels[i]))
    return fig, axes


def plot_spectrum_fit(spectrum, model_flux, *, model_label="model", fig=None):
    """An observed spectrum against a model spectrum, with normalised residuals.

    Parameters
    ----------
    spectrum : `~specutils.Spectrum`
        The observed spectrum. Pixels that are masked, or whose uncertainty is
        not finite and positive, are drawn in grey and get no residual.
    model_flux : `~specutils.Spectrum`, `~astropy.units.Quantity` or array
        The model on the same spectral axis as ``spectrum`` (a `Spectrum` is
        checked for that), in the flux unit of ``spectrum`` (a plain array is
        taken to be in it).
    model_label : str, optional
        Legend text of the model.
    fig : `~matplotlib.figure.Figure`, optional

    Returns
    -------
    fig : `~matplotlib.figure.Figure`
    axes : `numpy.ndarray`
        The spectrum and the residual axes.
    chi2_nu : float
        Σ((data − model)/σ)² / N over the good pixels (NaN without
        uncertainties).

    Raises
    ------
    ValueError
        If the spectrum is not 1-D, or ``model_flux`` is not on its spectral
        axis or has another shape.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> import astropy.units as u
    >>> import numpy as np
    >>> from astropy.nddata import StdDevUncertainty
    >>> from specutils import Spectrum
    >>> from stellarml.visualization import plot_spectrum_fit
    >>> rng = np.random.default_rng(0)
    >>> wave = np.linspace(5000.0, 5100.0, 300) * u.AA
    >>> model = 1.0 - 0.5 * np.exp(-0.5 * ((wave.value - 5050.0) / 2.0) ** 2)  # one line
    >>> spec = Spectrum(flux=(model + rng.normal(0.0, 0.01, 300)) * u.one, spectral_axis=wave,
    ...                 uncertainty=StdDevUncertainty(np.full(300, 0.01)))
    >>> fig, axes, chi2_nu = plot_spectrum_fit(spec, model)
    >>> round(chi2_nu, 2), axes[1].get_xlabel()
    (1.04, 'wavelength [Angstrom]')
    >>> plt.close(fig)
    """
    import astropy.units as u
    from astropy.nddata import StdDevUncertainty

    plt = _pyplot()
    wave = spectrum.spectral_axis
    flux = spectrum.flux
    if flux.ndim != 1:
        raise ValueError(f"spectrum must be one-dimensional, got flux shape {flux.shape}")
    if hasattr(model_flux, "spectral_axis"):
        if model_flux.spectral_axis.shape != wave.shape or not np.allclose(
            model_flux.spectral_axis.to_value(wave.unit), wave.value
        ):
            raise ValueError("model_flux is not on the spectrum's spectral axis; resample it first")
        model_flux = model_flux.flux
    model = (
        u.Quantity(model_flux, flux.unit) if not isinstance(model_flux, u.Quantity) else model_flux
    )
    if model.shape != flux.shape:
        raise ValueError(f"model_flux has shape {model.shape}, the spectrum {flux.shape}")
    model = model.to(flux.unit, equivalencies=u.spectral_density(wave))
    good = np.isfinite(flux.value) & np.isfinite(model.value)
    if spectrum.mask is not None:
        good &= ~np.asarray(spectrum.mask, dtype=bool)
    sigma = None
    if spectrum.uncertainty is not None:
        sigma = spectrum.uncertainty.represent_as(StdDevUncertainty).quantity.to_value(flux.unit)
        good &= np.isfinite(sigma) & (sigma > 0)
    if fig is None:
        fig = plt.figure(figsize=(9, 4.5), layout="constrained")
    ax, rax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1.2)})
    w = wave.value
    ax.plot(w, np.where(good, flux.value, np.nan), color="k", lw=0.7, label="observed")
    if (~good).any():
        ax.plot(w, np.where(good, np.nan, flux.value), color="0.7", lw=0.7, label="not used")
    ax.plot(w, model.value, color="C3", lw=0.8, label=model_label)
    ax.set_ylabel(f"flux [{flux.unit.to_string()}]" if flux.unit != u.one else "flux")
    ax.legend(fontsize="small")
    chi2_nu = np.nan
    if sigma is not None:
        resid = np.where(good, (flux.value - model.value) / np.where(good, sigma, 1.0), np.nan)
        rax.plot(w, resid, color="k", lw=0.6)
        rax.set_ylabel("(data − model)/σ")
        chi2_nu = float(np.nansum(resid**2) / max(int(good.sum()), 1))
        ax.set_title(f"χ²/N = {chi2_nu:.3g} over {int(good.sum())} pixels", fontsize="small")
    else:
        rax.plot(w, np.where(good, flux.value - model.value, np.nan), color="k", lw=0.6)
        rax.set_ylabel("data − model")
    rax.axhline(0.0, color="C3", lw=0.8)
    rax.set_xlabel(f"wavelength [{wave.unit.to_string()}]")
    return fig, np.array([ax, rax]), chi2_nu


def plot_kiel(table, *, color="fe_h", show_flagged=True, ax=None, cmap="viridis"):
    """A Kiel diagram: Teff against log g, both axes reversed, coloured by a label.

    Parameters
    ----------
    table : table-like
        A label table (``teff``, ``logg``, the ``color`` column and, when
        present, ``flags``).
    color : str or None, optional
        Column to colour by (default ``fe_h``); `None` for one colour.
    show_flagged : bool, optional
        Draw rows with warning flags as open grey circles (default); rows with
        fatal flags or masked labels are never drawn, and their number is
        given in the legend.
    ax : `~matplotlib.axes.Axes`, optional
    cmap : str, optional
        Colour map.

    Returns
    -------
    ax : `~matplotlib.axes.Axes`
    counts : dict
        ``{"clean": n, "warning": n, "not_shown": n}``.

    Raises
    ------
    KeyError
        If ``table`` lacks ``teff``, ``logg`` or the ``color`` column.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> import astropy.units as u
    >>> from astropy.table import QTable
    >>> from stellarml.visualization import plot_kiel
    >>> table = QTable({"teff": [5800.0, 4800.0, 5200.0, 6000.0] * u.K,
    ...                 "logg": [4.4, 2.5, 3.0, 4.2] * u.dex,
    ...                 "fe_h": [0.0, -0.5, -1.0, 0.1] * u.dex,
    ...                 "flags": [0, 0, 32, 4]})  # LOW_SNR (a warning), BAD_INPUT (fatal)
    >>> ax, counts = plot_kiel(table)
    >>> counts
    {'clean': 2, 'warning': 1, 'not_shown': 1}
    >>> bool(ax.xaxis_inverted()), ax.figure.axes[1].get_ylabel()  # the colour bar
    (True, '[Fe/H] [dex]')
    >>> plt.close(ax.figure)
    """
    plt = _pyplot()
    teff, _ = _values(_get(table, "teff", "table"), "teff")
    logg, _ = _values(_get(table, "logg", "table"), "logg")
    flags = (
        np.ma.filled(np.ma.asarray(table["flags"]), 0).astype(np.int64)
        if _has(table, "flags")
        else np.zeros(len(teff), np.int64)
    )
    ok = np.isfinite(teff) & np.isfinite(logg) & ((flags & int(FATAL)) == 0)
    clean = ok & (flags == 0)
    warn = ok & (flags != 0)
    if ax is None:
        ax = plt.figure(figsize=(5.5, 4.5), layout="constrained").add_subplot()
    if color is not None:
        c, _ = _values(_get(table, color, "table"), color)
        sc = ax.scatter(teff[clean], logg[clean], c=c[clean], s=14, cmap=cmap)
        ax.figure.colorbar(sc, ax=ax, label=_axis_label(color))
    else:
        ax.scatter(teff[clean], logg[clean], s=14)
    if show_flagged and warn.any():
        ax.scatter(
            teff[warn], logg[warn], s=16, facecolors="none", edgecolors="0.5",
            label=f"warning flags ({int(warn.sum())})",
        )  # fmt: skip
    counts = {
        "clean": int(clean.sum()),
        "warning": int(warn.sum()),
        "not_shown": int((~ok).sum() + (0 if show_flagged else warn.sum())),
    }
    if counts["not_shown"]:
        ax.plot([], [], " ", label=f"{counts['not_shown']} rows not shown")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    if not ax.xaxis_inverted():
        ax.invert_xaxis()
    if not ax.yaxis_inverted():
        ax.invert_yaxis()
    ax.set_xlabel(_axis_label("teff"))
    ax.set_ylabel(_axis_label("logg"))
    return ax, counts


def plot_latent_projection(projections, *, ax=None, title=None):
    """Scatter plot of 2-D projections of latent encodings, one colour per set.

    Parameters
    ----------
    projections : dict of str to array-like
        Set name → ``(n, 2)`` projected encodings (for example the synthetic
        library, the observed spectra before and after adaptation, all
        projected with the same projection).
    ax : `~matplotlib.axes.Axes`, optional
    title : str, optional

    Returns
    -------
    ax : `~matplotlib.axes.Axes`

    Raises
    ------
    ValueError
        If ``projections`` is empty or a set is not ``(n, 2)``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> from stellarml.visualization import plot_latent_projection
    >>> rng = np.random.default_rng(0)
    >>> ax = plot_latent_projection({"synthetic": rng.normal(size=(50, 2)),
    ...                              "observed": rng.normal(1.0, 1.0, size=(30, 2))},
    ...                             title="latent space")
    >>> ax.get_legend_handles_labels()[1], ax.get_title()
    (['synthetic (50)', 'observed (30)'], 'latent space')
    >>> plt.close(ax.figure)
    """
    plt = _pyplot()
    if not projections:
        raise ValueError("projections is empty: give at least one set of (n, 2) points")
    if ax is None:
        ax = plt.figure(figsize=(5.5, 4.5), layout="constrained").add_subplot()
    for name, points in projections.items():
        p = np.asarray(points, dtype=float)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"projection {name!r} must have shape (n, 2), got {p.shape}")
        ax.scatter(p[:, 0], p[:, 1], s=6, alpha=0.6, label=f"{name} ({len(p)})")
    ax.set_xlabel("component 1")
    ax.set_ylabel("component 2")
    ax.legend(fontsize="small", markerscale=2)
    if title:
        ax.set_title(title)
    return ax
