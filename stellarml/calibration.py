"""Label calibration: corrections of a model's labels learned from reference stars.

A model's labels are only as good as the scale it was trained on. A
`LabelCalibration` learns a correction of a model's posteriors from stars
whose labels are known better, is stored in the model file, and is applied by
`stellarml.derive_labels` (``calibrate=False`` gives the raw outputs).
Estimator style: the constructor stores settings, ``fit(...)`` returns the
calibration, calling it on a `~stellarml.posterior.LabelPosterior` returns the
corrected posterior; learned attributes end in ``_``.

Three forms, which can be chained (`ChainedCalibration`):

`TrendCalibration`
    An offset and low-order trends in the labels against a reference
    catalogue: ``label += θ₀ + Σ θ_jk (x_j − c_j)^k``. The coefficients'
    covariance is propagated: each corrected posterior is convolved with the
    Gaussian uncertainty of its own correction.
`WidthCalibration`
    One width factor per label, chosen so that the 16–84 % intervals cover
    68 % of the reference labels once the reference labels' own errors are
    included.
`GroupCalibration`
    A trend that minimises the spread of a label within groups of stars that
    must share it (wide binaries, cluster members). Groups fix trends, not
    the zero point.

The corrections act on whole posteriors (`LabelPosterior.transformed
<stellarml.posterior.LabelPosterior.transformed>`): every row's distribution
is shifted by its correction (evaluated at the row's uncalibrated medians),
scaled about its median, and convolved with the correction's uncertainty, so
medians, percentiles and errors stay consistent whatever the posterior form.
"""

import abc
import math

import numpy as np

from ._utils import plain_tree, stellarml_version, utc_now
from .labels import get_label

__all__ = [
    "ChainedCalibration",
    "GroupCalibration",
    "LabelCalibration",
    "TrendCalibration",
    "WidthCalibration",
]

#: Probability that a Gaussian variable lies within one sigma; also 0.84 - 0.16.
_ONE_SIGMA = 0.68


class LabelCalibration(abc.ABC):
    """Base class of the calibrations (see the module documentation).

    Attributes
    ----------
    provenance_ : dict
        After `fit`: the reference set's name, the number of stars used and
        their identifiers, the stars left out by clipping, the date and the
        stellarml version.

    Examples
    --------
    Every form is used the same way: construct with settings, `fit` to
    reference stars, call on posteriors. Here a `WidthCalibration` of a model
    that claims 100 K errors where its real errors are 50 K:

    >>> import numpy as np
    >>> from stellarml.calibration import LabelCalibration, WidthCalibration
    >>> from stellarml.posterior import GaussianPosterior
    >>> rng = np.random.default_rng(0)
    >>> teff = rng.uniform(4500.0, 6500.0, 200)  # reference labels [K]
    >>> post = GaussianPosterior((teff + rng.normal(0.0, 50.0, 200))[:, None],
    ...                          np.full((200, 1), 100.0**2), ["teff"])
    >>> cal = WidthCalibration(n_bootstrap=100)
    >>> isinstance(cal, LabelCalibration), cal.is_fitted
    (True, False)
    >>> try:
    ...     cal(post)
    ... except RuntimeError as err:
    ...     print(err)
    this WidthCalibration is not fitted yet: call fit()
    >>> cal = cal.fit(post, {"teff": teff}, name="toy reference")
    >>> cal
    <WidthCalibration ['teff'] (fitted)>
    >>> round(float(cal(post).summaries()["teff"]["err_hi"][0]))  # [K]
    49
    >>> meta = cal.table_meta()
    >>> meta["calibration_reference"], meta["calibration_n"]
    ('toy reference', 200)
    """

    #: Name of the form, stored in model files.
    kind = None

    @property
    def is_fitted(self):
        """True once `fit` has run (or the calibration was read from a file)."""
        return getattr(self, "provenance_", None) is not None

    def fit(self, posterior, reference=None, *, groups=None, ids=None, name=None):
        """Learn the correction.

        Parameters
        ----------
        posterior : `~stellarml.posterior.LabelPosterior`
            The model's uncalibrated posteriors of the calibration stars. They
            should be predictions for stars the model did not see in training
            (e.g. out-of-fold predictions), so that they behave as
            predictions for new stars do.
        reference : `~astropy.table.Table` or dict, optional
            Reference labels row by row: a column per label (Quantities are
            converted to the label's unit; NaN or masked = unknown) and
            optionally its error as ``<label>_err`` or ``e_<label>`` (0 when
            absent). Needed by `TrendCalibration` and `WidthCalibration`.
        groups : array-like, optional
            Group identifier per row (``None``, ``""`` or masked: in no
            group). Needed by `GroupCalibration`.
        ids : array-like of str, optional
            Identifiers of the stars, recorded in `provenance_`.
        name : str, optional
            Name of the reference set, recorded in `provenance_` and table meta.

        Returns
        -------
        self
        """
        n = len(posterior)
        ids = np.arange(n).astype(str) if ids is None else np.asarray(ids).astype(str)
        if ids.shape != (n,):
            raise ValueError(f"ids must have one entry per posterior row ({n}), got {ids.shape}")
        record = self._fit(posterior, reference, groups, ids)
        self.provenance_ = plain_tree(
            {
                "reference": str(name or "unnamed"),
                **record,
                "fitted": utc_now(),
                "stellarml_version": stellarml_version(),
            }
        )
        return self

    def __call__(self, posterior):
        """The calibrated posterior (a new `~stellarml.posterior.LabelPosterior`)."""
        if not self.is_fitted:
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit()")
        missing = sorted(set(self.label_names) - set(posterior.label_names))
        if missing:
            raise ValueError(
                f"the calibration corrects {missing}, which the posterior does not have "
                f"(it has {list(posterior.label_names)})"
            )
        return self._apply(posterior)

    @property
    @abc.abstractmethod
    def label_names(self):
        """Labels the calibration changes (tuple of str)."""

    @abc.abstractmethod
    def _fit(self, posterior, reference, groups, ids):
        """Fit; return the provenance record (n, ids...)."""

    @abc.abstractmethod
    def _apply(self, posterior):
        """Apply to a posterior with every label in `label_names`."""

    @abc.abstractmethod
    def corrections(self):
        """The learned correction per label, as plain numbers (dict)."""

    def describe(self):
        """A JSON-friendly description: form, settings, corrections and provenance."""
        return plain_tree(
            {
                "kind": self.kind,
                "labels": list(self.label_names),
                "corrections": self.corrections() if self.is_fitted else None,
                "provenance": getattr(self, "provenance_", None),
            }
        )

    def summary(self):
        """One line saying what the calibration does (for ``table.meta["calibration"]``)."""
        return f"{self.kind} ({', '.join(self.label_names)})"

    def table_meta(self):
        """Entries for ``table.meta`` when the calibration was applied.

        Returns
        -------
        meta : dict
            ``calibration`` (what was done), ``calibration_reference`` (the
            reference set), ``calibration_n`` (number of stars) and
            ``calibration_corrections`` (the correction per label with its
            uncertainty).
        """
        prov = getattr(self, "provenance_", None) or {}
        return {
            "calibration": self.summary(),
            "calibration_reference": str(prov.get("reference", "")),
            "calibration_n": int(prov.get("n", 0)),
            "calibration_corrections": plain_tree(self.corrections()),
        }

    def __repr__(self):
        state = "fitted" if self.is_fitted else "not fitted"
        return f"<{type(self).__name__} {list(self.label_names)} ({state})>"


# ---------------------------------------------------------------------------------- helpers


def _reference_column(reference, label, n):
    """(values, errors) of ``label`` in a reference table/dict, float64 (n,); NaN = unknown."""
    unit = get_label(label).unit

    def column(key):
        try:
            col = reference[key]
        except (KeyError, ValueError, IndexError):
            return None
        mask = np.asarray(getattr(col, "mask", np.zeros(len(col), bool)), dtype=bool)
        if hasattr(col, "unit") and col.unit is not None:
            col = col.to_value(unit) if hasattr(col, "to_value") else col.quantity.to_value(unit)
        values = np.array(np.ma.getdata(col), dtype=np.float64).reshape(-1)
        if values.shape != (n,):
            raise ValueError(f"reference column {key!r} has {values.size} rows, not {n}")
        values[np.broadcast_to(mask, values.shape)] = np.nan
        return values

    values = column(label)
    if values is None:
        return None, None
    errors = column(f"{label}_err")
    if errors is None:
        errors = column(f"e_{label}")
    if errors is None:
        errors = np.zeros(n)
    errors = np.where(np.isfinite(errors) & (errors >= 0), errors, 0.0)
    return values, errors


def _design(x, centers, degree):
    """Columns ``(x_j - c_j)^k`` for k = 1..degree, predictor by predictor: (n, p * degree)."""
    cols = [(x[:, j] - centers[j]) ** k for j in range(x.shape[1]) for k in range(1, degree + 1)]
    return np.stack(cols, axis=1) if cols else np.zeros((x.shape[0], 0))


def _correction(posterior, centers, ranges, degree, theta, covariance, *, offset):
    """``(delta, sigma)`` of a polynomial correction for each row of ``posterior``.

    The predictors (keys of ``centers``) are the rows' medians, clamped to the
    fitted ``ranges``; ``sigma = sqrt(phi^T C phi)`` propagates the
    coefficients' covariance.
    """
    n = len(posterior)
    names = list(centers)
    x = np.zeros((n, 0))
    if names:
        x = np.stack([np.clip(posterior.median(p), *ranges[p]) for p in names], axis=1)
    design = _design(x, np.array([centers[p] for p in names]), degree)
    if offset:
        design = np.column_stack([np.ones(n), design])
    delta = design @ theta
    var = np.einsum("ij,jk,ik->i", design, covariance, design)
    return np.nan_to_num(delta), np.sqrt(np.maximum(np.nan_to_num(var), 0.0))


def _wls_with_scatter(design, r, sigma_ref):
    """Weighted least squares with an intrinsic scatter tau fitted by maximum likelihood.

    Model: ``r_i = design_i . theta + e_i``, ``e_i ~ N(0, sigma_ref_i^2 + tau^2)``.
    Returns ``(theta, covariance, tau)``.
    """
    from scipy.optimize import minimize_scalar

    def solve(tau):
        w = 1.0 / (sigma_ref**2 + tau**2)
        a = design.T @ (design * w[:, None])
        cov = np.linalg.pinv(a)
        theta = cov @ (design.T @ (w * r))
        return theta, cov, w

    def nll(log_tau):
        theta, _, w = solve(math.exp(log_tau))
        res = r - design @ theta
        return 0.5 * float(np.sum(w * res**2 - np.log(w)))

    spread = float(np.std(r)) if r.size > 1 else 1.0
    scale = max(spread, float(np.max(sigma_ref)) if sigma_ref.size else 0.0, 1e-12)
    lo, hi = math.log(scale * 1e-4), math.log(scale * 10.0)
    best = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    tau = math.exp(best.x)
    if nll(lo) <= best.fun:  # the reference errors explain the scatter
        tau = math.exp(lo)
    theta, cov, _ = solve(tau)
    return theta, cov, tau


def _robust_sigma(x):
    x = np.asarray(x, dtype=float)
    return 1.4826 * float(np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


# ---------------------------------------------------------------------------------- trend


class TrendCalibration(LabelCalibration):
    """Offsets and low-order trends against reference labels.

    For each corrected label ``L`` the correction is ``Δ_L(x) = θ₀ + Σ_j
    Σ_k θ_jk (x_j − c_j)^k`` over the predictor labels ``x_j`` given in
    ``terms`` (the row's uncalibrated medians; ``c_j`` the median of the
    reference stars' values), for ``k = 1 … degree``. It is fitted to the
    residuals ``reference − median`` by weighted least squares with weights
    ``1 / (σ_ref² + τ²)``, the intrinsic scatter ``τ`` fitted by maximum
    likelihood, after iteratively leaving out stars more than ``clip``
    standard deviations away. Applying it shifts each row's distribution by
    its ``Δ`` and convolves it with the correction's own uncertainty
    ``sqrt(φᵀ C φ)`` (``C`` the coefficients' covariance). Predictor values
    outside the reference stars' range are clamped to it: the trend is not
    extrapolated.

    Parameters
    ----------
    terms : dict of str to sequence of str, optional
        ``{label: [predictor labels]}``; an empty list is a pure offset.
        Default: an offset for every label the reference has.
    degree : int
        Highest power of each predictor (1: linear trends).
    clip : float or None
        Outlier threshold in standard deviations (None: no clipping).
    max_iter : int
        Clipping iterations.

    Attributes
    ----------
    coefficients_, covariance_ : dict of str to `numpy.ndarray`
        ``θ`` (offset first, label units) and its covariance, per label.
    centers_, ranges_ : dict
        Per label, the predictors' centres ``c_j`` and ``(min, max)``.
    scatter_ : dict of str to float
        Fitted intrinsic scatter ``τ`` per label (label units).
    n_used_ : dict of str to int
        Stars used per label after clipping.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.calibration import TrendCalibration
    >>> from stellarml.posterior import GaussianPosterior
    >>> rng = np.random.default_rng(1)
    >>> teff = rng.uniform(4500, 6500, 200)
    >>> predicted = teff - 80.0 + rng.normal(0, 30, teff.size)  # 80 K too cool
    >>> post = GaussianPosterior(predicted[:, None], np.full((200, 1), 50.0**2), ["teff"])
    >>> cal = TrendCalibration({"teff": []}).fit(post, {"teff": teff}, name="toy")
    >>> round(float(cal.coefficients_["teff"][0]) / 10) * 10
    80
    """

    kind = "trend"

    def __init__(self, terms=None, *, degree=1, clip=4.0, max_iter=5):
        self.terms = terms
        self.degree = degree
        self.clip = clip
        self.max_iter = max_iter

    @property
    def label_names(self):
        if getattr(self, "coefficients_", None) is not None:
            return tuple(self.coefficients_)
        return tuple(self.terms or ())

    def _resolved_terms(self, reference, posterior):
        if self.terms is not None:
            terms = {str(k): tuple(str(x) for x in v) for k, v in dict(self.terms).items()}
        else:
            terms = {}
            for name in posterior.label_names:
                values, _ = _reference_column(reference, name, len(posterior))
                if values is not None:
                    terms[name] = ()
        for label, predictors in terms.items():
            for name in (label, *predictors):
                if name not in posterior.label_names:
                    raise ValueError(f"trend term {name!r} is not a label of the posterior")
        if not terms:
            raise ValueError("the reference has no column for any label of the posterior")
        return terms

    def _fit(self, posterior, reference, groups, ids):
        if reference is None:
            raise ValueError("TrendCalibration.fit needs reference labels")
        degree = int(self.degree)
        if degree < 1:
            raise ValueError(f"degree must be >= 1, got {self.degree!r}")
        terms = self._resolved_terms(reference, posterior)
        n = len(posterior)
        medians = {name: posterior.median(name) for name in posterior.label_names}
        self.coefficients_, self.covariance_, self.scatter_ = {}, {}, {}
        self.centers_, self.ranges_, self.n_used_ = {}, {}, {}
        used_any = np.zeros(n, dtype=bool)
        clipped = {}
        for label, predictors in terms.items():
            ref, err = _reference_column(reference, label, n)
            if ref is None:
                raise ValueError(f"the reference has no column {label!r}")
            x = (
                np.stack([medians[p] for p in predictors], axis=1)
                if predictors
                else np.zeros((n, 0))
            )
            ok = np.isfinite(ref) & np.isfinite(medians[label]) & np.isfinite(x).all(axis=1)
            n_par = 1 + len(predictors) * degree
            if ok.sum() < n_par + 2:
                raise ValueError(
                    f"{label}: {int(ok.sum())} stars with finite reference and predicted values, "
                    f"too few for {n_par} coefficients"
                )
            centers = np.median(x[ok], axis=0) if predictors else np.zeros(0)
            ranges = [(float(x[ok, j].min()), float(x[ok, j].max())) for j in range(x.shape[1])]
            design = np.column_stack([np.ones(n), _design(x, centers, degree)])
            r = ref - medians[label]
            use = ok.copy()
            for _ in range(int(self.max_iter)):
                theta, cov, tau = _wls_with_scatter(design[use], r[use], err[use])
                if self.clip is None:
                    break
                z = (r - design @ theta) / np.sqrt(err**2 + tau**2)
                new = ok & (np.abs(z) <= float(self.clip))
                if np.array_equal(new, use) or new.sum() < n_par + 2:
                    break
                use = new
            self.coefficients_[label] = theta
            self.covariance_[label] = cov
            self.scatter_[label] = float(tau)
            self.centers_[label] = {p: float(c) for p, c in zip(predictors, centers, strict=True)}
            self.ranges_[label] = dict(zip(predictors, ranges, strict=True))
            self.n_used_[label] = int(use.sum())
            clipped[label] = ids[ok & ~use].tolist()
            used_any |= use
        return {"n": int(used_any.sum()), "ids": ids[used_any].tolist(), "clipped": clipped}

    def shifts(self, posterior):
        """The correction ``Δ`` and its uncertainty per label for each row of ``posterior``.

        Returns
        -------
        shifts : dict of str to tuple of `numpy.ndarray`
            ``{label: (delta, sigma)}``, ``(n,)`` each in label units.
        """
        return {
            label: _correction(
                posterior,
                self.centers_[label],
                self.ranges_[label],
                int(self.degree),
                theta,
                self.covariance_[label],
                offset=True,
            )
            for label, theta in self.coefficients_.items()
        }

    def _apply(self, posterior):
        for label, (delta, sigma) in self.shifts(posterior).items():
            posterior = posterior.transformed(label, shift=delta, extra_sigma=sigma)
        return posterior

    def corrections(self):
        out = {}
        for label, theta in self.coefficients_.items():
            err = np.sqrt(np.diag(self.covariance_[label]))
            names = ["offset"] + [
                f"{p}^{k}" if k > 1 else p
                for p in self.centers_[label]
                for k in range(1, int(self.degree) + 1)
            ]
            out[label] = {
                "terms": names,
                "coefficients": [float(v) for v in theta],
                "errors": [float(v) for v in err],
                "centers": dict(self.centers_[label]),
                "scatter": float(self.scatter_[label]),
                "n": int(self.n_used_[label]),
            }
        return out

    def summary(self):
        parts = []
        terms = self.centers_ if self.is_fitted else dict(self.terms or {})
        for label in terms:
            predictors = list(terms[label])
            parts.append(f"{label}: offset" + "".join(f" + {p}" for p in predictors))
        return f"trend against a reference ({'; '.join(parts)}; degree {self.degree})"


# ---------------------------------------------------------------------------------- width


class WidthCalibration(LabelCalibration):
    """Width factors that make the 16–84 % intervals cover 68 % of the reference labels.

    For star ``i`` with residual ``r_i = reference − median`` and reference
    error ``σ_ref,i``, the interval scaled by ``s`` about the median covers the
    reference, widened by its own error, when ``|r_i| ≤ sqrt((s σ_i)² +
    σ_ref,i²)``, with ``σ_i`` the upper error (``p84 − median``) when the
    reference lies above the median and the lower one otherwise. Each star's
    smallest such ``s`` is ``s_i = sqrt(max(r_i² − σ_ref,i², 0)) / σ_i``; the
    fitted factor is the 68th percentile of the ``s_i``, so that 68 % of the
    stars are covered. Applying it scales every row's distribution about its
    median by ``s``.

    Parameters
    ----------
    labels : sequence of str, optional
        Labels to scale (default: every label the reference has).
    n_bootstrap : int
        Bootstrap resamples of the stars for the factor's 16–84 % range.
    seed : int
        Seed of the bootstrap.

    Attributes
    ----------
    scale_ : dict of str to float
        The width factor per label (below 1: the intervals were too wide).
    scale_interval_ : dict of str to tuple
        16th and 84th percentiles of the bootstrapped factor.
    coverage_before_, coverage_after_ : dict of str to float
        Share of the stars covered (with their reference errors) before and
        after scaling.

    Raises
    ------
    ValueError
        From `fit`: without reference labels, with fewer than 5 usable stars
        for a label, or when the reference has none of the labels.

    Examples
    --------
    A model that claims 100 K errors where its real errors are 50 K:

    >>> import numpy as np
    >>> from stellarml.calibration import WidthCalibration
    >>> from stellarml.posterior import GaussianPosterior
    >>> rng = np.random.default_rng(0)
    >>> teff = rng.uniform(4500.0, 6500.0, 200)  # reference labels [K]
    >>> post = GaussianPosterior((teff + rng.normal(0.0, 50.0, 200))[:, None],
    ...                          np.full((200, 1), 100.0**2), ["teff"])
    >>> cal = WidthCalibration(n_bootstrap=100).fit(post, {"teff": teff})
    >>> round(cal.scale_["teff"], 2), cal.coverage_before_["teff"], cal.coverage_after_["teff"]
    (0.49, 0.945, 0.68)
    >>> round(float(cal(post).summaries()["teff"]["err_hi"][0]))  # [K]
    49
    """

    kind = "width"

    def __init__(self, labels=None, *, n_bootstrap=1000, seed=0):
        self.labels = labels
        self.n_bootstrap = n_bootstrap
        self.seed = seed

    @property
    def label_names(self):
        if getattr(self, "scale_", None) is not None:
            return tuple(self.scale_)
        return tuple(self.labels or ())

    def _fit(self, posterior, reference, groups, ids):
        if reference is None:
            raise ValueError("WidthCalibration.fit needs reference labels")
        n = len(posterior)
        labels = tuple(self.labels) if self.labels is not None else posterior.label_names
        summaries = posterior.summaries()
        rng = np.random.default_rng(self.seed)
        self.scale_, self.scale_interval_ = {}, {}
        self.coverage_before_, self.coverage_after_ = {}, {}
        used_any = np.zeros(n, dtype=bool)
        for label in labels:
            if label not in posterior.label_names:
                raise ValueError(f"label {label!r} is not in the posterior")
            ref, err = _reference_column(reference, label, n)
            if ref is None:
                if self.labels is not None:
                    raise ValueError(f"the reference has no column {label!r}")
                continue
            s = summaries[label]
            r = ref - s["median"]
            side = np.where(r > 0, s["err_hi"], s["err_lo"])
            ok = np.isfinite(r) & np.isfinite(side) & (side > 0)
            if ok.sum() < 5:
                raise ValueError(f"{label}: only {int(ok.sum())} usable stars for a width factor")
            need = np.sqrt(np.maximum(r[ok] ** 2 - err[ok] ** 2, 0.0)) / side[ok]
            scale = float(np.quantile(need, _ONE_SIGMA))
            if not scale > 0:
                raise ValueError(f"{label}: the reference errors alone cover every star")
            boot = [
                np.quantile(rng.choice(need, need.size), _ONE_SIGMA)
                for _ in range(int(self.n_bootstrap))
            ]
            self.scale_[label] = scale
            self.scale_interval_[label] = tuple(float(v) for v in np.quantile(boot, [0.16, 0.84]))
            self.coverage_before_[label] = float(np.mean(need <= 1.0))
            self.coverage_after_[label] = float(np.mean(need <= scale))
            used_any |= ok
        if not self.scale_:
            raise ValueError("the reference has no column for any label of the posterior")
        return {"n": int(used_any.sum()), "ids": ids[used_any].tolist()}

    def _apply(self, posterior):
        for label, scale in self.scale_.items():
            posterior = posterior.transformed(label, scale=scale)
        return posterior

    def corrections(self):
        return {
            label: {
                "width_scale": float(scale),
                "width_scale_interval": list(self.scale_interval_[label]),
                "coverage_before": float(self.coverage_before_[label]),
                "coverage_after": float(self.coverage_after_[label]),
            }
            for label, scale in self.scale_.items()
        }

    def summary(self):
        return f"interval widths scaled to 68 % coverage ({', '.join(self.label_names)})"


# ---------------------------------------------------------------------------------- groups


class GroupCalibration(LabelCalibration):
    """A trend in one label that minimises its spread within groups that must share it.

    Stars of one group (the two stars of a wide binary, the members of a
    cluster) share ``label``; a trend of the model's error with other labels
    (e.g. [Fe/H] with Teff) shows as spread within groups. The correction
    ``Δ(x) = Σ_j Σ_k θ_jk (x_j − c_j)^k`` (no constant: groups do not fix the
    zero point, chain a `TrendCalibration` for that) minimises
    ``Σ_g Σ_{i∈g} (y_i + Δ_i − mean_g(y + Δ))²``, a linear least-squares
    problem in ``θ`` once ``y`` and the design are centred within each group.
    Stars more than ``clip`` robust standard deviations from their group's
    mean are left out iteratively. The coefficients' covariance is
    propagated as in `TrendCalibration`.

    Parameters
    ----------
    label : str
        The shared label (e.g. ``"fe_h"``).
    terms : sequence of str
        Predictor labels of the trend (e.g. ``["teff"]``).
    degree : int
        Highest power of each predictor.
    clip : float or None
        Outlier threshold (None: no clipping).
    max_iter : int
        Clipping iterations.

    Attributes
    ----------
    coefficients_, covariance_ : `numpy.ndarray`
        ``θ`` and its covariance.
    centers_, ranges_ : dict
        Predictor centres and ``(min, max)`` over the grouped stars.
    spread_before_, spread_after_ : float
        Within-group robust standard deviation before and after correction.
    n_groups_ : int
        Groups with at least two stars used.

    Raises
    ------
    ValueError
        From `fit`: without ``groups``, without predictor labels, with labels
        the posterior lacks, or with too few grouped stars for the coefficients.

    Examples
    --------
    60 wide binaries (pairs sharing [Fe/H]) whose model [Fe/H] drifts by
    +0.2 dex per 1000 K in Teff:

    >>> import numpy as np
    >>> from stellarml.calibration import GroupCalibration
    >>> from stellarml.posterior import GaussianPosterior
    >>> rng = np.random.default_rng(1)
    >>> fe_h = np.repeat(rng.uniform(-1.0, 0.3, 60), 2)  # [dex], shared within a pair
    >>> teff = rng.uniform(4500.0, 6500.0, 120)  # [K]
    >>> model_fe_h = fe_h + 2e-4 * (teff - 5500.0) + rng.normal(0.0, 0.02, 120)
    >>> post = GaussianPosterior(np.column_stack([teff, model_fe_h]),
    ...                          np.tile([50.0**2, 0.05**2], (120, 1)), ["teff", "fe_h"])
    >>> pairs = np.repeat(np.arange(60), 2).astype(str)
    >>> cal = GroupCalibration("fe_h", ["teff"]).fit(post, groups=pairs)
    >>> round(float(cal.coefficients_[0]) * 1000, 2)  # dex per 1000 K
    -0.2
    >>> cal.n_groups_, round(cal.spread_before_, 2), round(cal.spread_after_, 2)  # [dex]
    (60, 0.1, 0.01)
    """

    kind = "group"

    def __init__(self, label, terms, *, degree=1, clip=4.0, max_iter=5):
        self.label = label
        self.terms = terms
        self.degree = degree
        self.clip = clip
        self.max_iter = max_iter

    @property
    def label_names(self):
        return (str(self.label),)

    def _fit(self, posterior, reference, groups, ids):
        if groups is None:
            raise ValueError("GroupCalibration.fit needs groups=")
        n = len(posterior)
        terms = tuple(str(t) for t in self.terms)
        if not terms:
            raise ValueError("GroupCalibration needs at least one predictor label in terms")
        for name in (self.label, *terms):
            if name not in posterior.label_names:
                raise ValueError(f"{name!r} is not a label of the posterior")
        key = _group_keys(groups, n)
        y = posterior.median(self.label)
        x = np.stack([posterior.median(t) for t in terms], axis=1)
        ok = (key >= 0) & np.isfinite(y) & np.isfinite(x).all(axis=1)
        centers = np.median(x[ok], axis=0) if ok.any() else np.zeros(len(terms))
        design = _design(x, centers, int(self.degree))
        use = _in_groups_of_two(key, ok)
        for _ in range(int(self.max_iter)):
            if design.shape[1] + 1 > use.sum() - len(np.unique(key[use])):
                raise ValueError(
                    f"{int(use.sum())} stars in {len(np.unique(key[use]))} groups are too few "
                    f"for {design.shape[1]} coefficients"
                )
            yc, dc = _centre_within(y, key, use), _centre_within(design, key, use)
            a = dc[use].T @ dc[use]
            theta = -np.linalg.solve(a, dc[use].T @ yc[use])
            res = yc + dc @ theta
            dof = max(int(use.sum()) - len(np.unique(key[use])) - theta.size, 1)
            s2 = float(np.sum(res[use] ** 2) / dof)
            if self.clip is None:
                break
            new = _in_groups_of_two(
                key, ok & (np.abs(res) <= float(self.clip) * _robust_sigma(res[use]))
            )
            if np.array_equal(new, use):
                break
            use = new
        self.coefficients_ = theta
        self.covariance_ = s2 * np.linalg.inv(a)
        self.centers_ = {t: float(c) for t, c in zip(terms, centers, strict=True)}
        self.ranges_ = {
            t: (float(x[use, j].min()), float(x[use, j].max())) for j, t in enumerate(terms)
        }
        self.spread_before_ = _robust_sigma(_centre_within(y, key, use)[use])
        self.spread_after_ = _robust_sigma(res[use])
        self.n_groups_ = len(np.unique(key[use]))
        return {
            "n": int(use.sum()),
            "ids": ids[use].tolist(),
            "n_groups": self.n_groups_,
            "clipped": ids[ok & ~use].tolist(),
        }

    def shifts(self, posterior):
        """``{label: (delta, sigma)}`` for each row of ``posterior`` (see `TrendCalibration`)."""
        return {
            str(self.label): _correction(
                posterior,
                self.centers_,
                self.ranges_,
                int(self.degree),
                self.coefficients_,
                self.covariance_,
                offset=False,
            )
        }

    def _apply(self, posterior):
        ((label, (delta, sigma)),) = self.shifts(posterior).items()
        return posterior.transformed(label, shift=delta, extra_sigma=sigma)

    def corrections(self):
        names = [
            f"{t}^{k}" if k > 1 else t
            for t in self.centers_
            for k in range(1, int(self.degree) + 1)
        ]
        return {
            str(self.label): {
                "terms": names,
                "coefficients": [float(v) for v in self.coefficients_],
                "errors": [float(v) for v in np.sqrt(np.diag(self.covariance_))],
                "centers": dict(self.centers_),
                "spread_before": float(self.spread_before_),
                "spread_after": float(self.spread_after_),
                "n_groups": int(self.n_groups_),
            }
        }

    def summary(self):
        return (
            f"group trend ({self.label} in {', '.join(str(t) for t in self.terms)}, "
            f"degree {self.degree})"
        )


def _group_keys(groups, n):
    """Integer group index per row (-1: in no group)."""
    mask = np.asarray(getattr(groups, "mask", np.zeros(n, bool)), dtype=bool)
    values = np.asarray(np.ma.getdata(groups), dtype=object).reshape(-1)
    if values.shape != (n,):
        raise ValueError(f"groups must have one entry per posterior row ({n}), got {values.shape}")
    missing = mask | np.array([v is None or str(v) == "" for v in values])
    labels = np.array([str(v) for v in values])
    _, key = np.unique(labels, return_inverse=True)
    return np.where(missing, -1, key.reshape(-1))


def _in_groups_of_two(key, use):
    """``use`` restricted to groups that keep at least two stars."""
    idx, counts = np.unique(key[use], return_counts=True)
    return use & np.isin(key, idx[counts >= 2])


def _centre_within(values, key, use):
    """``values`` minus their mean within each group (rows not in ``use``: unchanged)."""
    values = np.asarray(values, dtype=np.float64)
    out = values.copy()
    for g in np.unique(key[use]):
        rows = use & (key == g)
        out[rows] = values[rows] - values[rows].mean(axis=0)
    return out


# ---------------------------------------------------------------------------------- chains


class ChainedCalibration(LabelCalibration):
    """Calibrations applied one after the other (e.g. a trend, then widths).

    `fit` fits each step on the output of the steps before it, with the same
    reference and groups.

    Parameters
    ----------
    steps : sequence of LabelCalibration
        The steps, in order.

    Raises
    ------
    ValueError
        If ``steps`` is empty.
    TypeError
        If a step is not a `LabelCalibration`.

    Examples
    --------
    An offset, then the interval widths, for a model whose Teff is 80 K too
    cool and whose stated 100 K errors are too wide:

    >>> import numpy as np
    >>> from stellarml.calibration import ChainedCalibration, TrendCalibration, WidthCalibration
    >>> from stellarml.posterior import GaussianPosterior
    >>> rng = np.random.default_rng(1)
    >>> teff = rng.uniform(4500.0, 6500.0, 200)  # reference labels [K]
    >>> predicted = teff - 80.0 + rng.normal(0.0, 30.0, 200)
    >>> post = GaussianPosterior(predicted[:, None], np.full((200, 1), 100.0**2), ["teff"])
    >>> chain = ChainedCalibration([TrendCalibration({"teff": []}),
    ...                             WidthCalibration(n_bootstrap=100)])
    >>> chain = chain.fit(post, {"teff": teff}, name="toy")
    >>> print(chain.summary())
    trend against a reference (teff: offset; degree 1), then interval widths
    scaled to 68 % coverage (teff)
    >>> out = chain(post)
    >>> round(float(out.median("teff")[0] - predicted[0]))  # the offset [K]
    83
    >>> round(float(out.summaries()["teff"]["err_hi"][0]))  # the interval [K]
    26
    """

    kind = "chain"

    def __init__(self, steps):
        steps = list(steps)
        if not steps:
            raise ValueError("a ChainedCalibration needs at least one step")
        for k, step in enumerate(steps):
            if not isinstance(step, LabelCalibration):
                raise TypeError(f"step {k} is a {type(step).__name__}, not a LabelCalibration")
        self.steps = steps

    @property
    def label_names(self):
        names = []
        for step in self.steps:
            names += [n for n in step.label_names if n not in names]
        return tuple(names)

    @property
    def is_fitted(self):
        return all(step.is_fitted for step in self.steps) and super().is_fitted

    def _fit(self, posterior, reference, groups, ids):
        current = posterior
        for step in self.steps:
            step.fit(current, reference, groups=groups, ids=ids)
            current = step(current)
        first = self.steps[0].provenance_
        return {"n": first.get("n", 0), "ids": first.get("ids", [])}

    def fit(self, posterior, reference=None, *, groups=None, ids=None, name=None):
        super().fit(posterior, reference, groups=groups, ids=ids, name=name)
        for step in self.steps:
            step.provenance_["reference"] = self.provenance_["reference"]
        return self

    def _apply(self, posterior):
        for step in self.steps:
            posterior = step(posterior)
        return posterior

    def corrections(self):
        out = {}
        for step in self.steps:
            for label, values in step.corrections().items():
                out.setdefault(label, {}).update(values)
        return out

    def describe(self):
        out = super().describe()
        out["steps"] = [step.describe() for step in self.steps]
        return out

    def summary(self):
        return ", then ".join(step.summary() for step in self.steps)
