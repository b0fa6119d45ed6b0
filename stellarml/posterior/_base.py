"""`LabelPosterior`, the base of the three posterior forms, and `LabelBins`."""

import abc
import copy
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..labels import get_diagnostic

__all__ = [
    "BIMODAL_MAX_DIP",
    "BIMODAL_MIN_PEAK",
    "QUANTILES",
    "SUMMARY_KEYS",
    "LabelBins",
    "LabelPosterior",
    "bimodal_rows",
]

#: Probability levels of the summary percentiles (p16, median, p84).
QUANTILES = (0.16, 0.5, 0.84)

#: Keys of every label's entry in `LabelPosterior.summaries`.
SUMMARY_KEYS = ("median", "p16", "p84", "err_lo", "err_hi", "mode", "mean")

#: A second local maximum of a label's density counts when it is at least this
#: share of the highest maximum (see `bimodal_rows`).
BIMODAL_MIN_PEAK = 0.2

#: ... and when the density between the two maxima falls to at most this share
#: of the second maximum (see `bimodal_rows`).
BIMODAL_MAX_DIP = 0.5


def bimodal_rows(density, *, min_peak=BIMODAL_MIN_PEAK, max_dip=BIMODAL_MAX_DIP):
    """Which rows of densities on a regular grid have two significant, separated modes.

    Each row is first smoothed with the 3-point kernel (1/4, 1/2, 1/4), so that
    one-bin wiggles do not count. A row is bimodal when, besides its highest
    local maximum ``p1``, it has another local maximum ``p2 >= min_peak * p1``
    and the smoothed density somewhere between the two falls to at most
    ``max_dip * p2``.

    Parameters
    ----------
    density : array-like
        ``(n, K)`` non-negative densities (or bin probabilities) on ``K``
        equally spaced points; rows need not be normalised.
    min_peak : float
        In (0, 1]: least height of the second maximum, as a share of the first.
    max_dip : float
        In [0, 1): greatest height of the dip between them, as a share of the
        second maximum.

    Returns
    -------
    bimodal : `numpy.ndarray`
        ``(n,)`` bool; False for rows that are not finite or are all zero.

    Raises
    ------
    ValueError
        If ``density`` is not 2-D or ``min_peak``, ``max_dip`` are out of range.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.posterior import bimodal_rows
    >>> x = np.arange(40)
    >>> one = np.exp(-0.5 * ((x - 20) / 3.0) ** 2)
    >>> two = one + 0.6 * np.exp(-0.5 * ((x - 5) / 2.0) ** 2)
    >>> bimodal_rows(np.stack([one, two]))
    array([False,  True])
    >>> bimodal_rows(np.stack([one, two]), min_peak=0.8)  # the second mode is too low
    array([False, False])
    """
    if not 0 < min_peak <= 1:
        raise ValueError(f"min_peak must be in (0, 1], got {min_peak!r}")
    if not 0 <= max_dip < 1:
        raise ValueError(f"max_dip must be in [0, 1), got {max_dip!r}")
    d = np.asarray(density, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"density must be (n, K), got shape {d.shape}")
    n, k = d.shape
    ok = np.isfinite(d).all(axis=1) & (np.where(np.isfinite(d), d, 0).max(axis=1, initial=0) > 0)
    if k < 3 or not ok.any():
        return np.zeros(n, dtype=bool)
    d = np.where(ok[:, None], d, 0.0)
    padded = np.pad(d, ((0, 0), (1, 1)))
    p = 0.25 * padded[:, :-2] + 0.5 * padded[:, 1:-1] + 0.25 * padded[:, 2:]
    j1 = p.argmax(axis=1)
    p1 = p[np.arange(n), j1]
    idx = np.arange(k)[None, :]
    # lowest density between each bin and the highest maximum (the bin included)
    left = np.minimum.accumulate(np.where(idx <= j1[:, None], p, np.inf)[:, ::-1], axis=1)
    right = np.minimum.accumulate(np.where(idx >= j1[:, None], p, np.inf), axis=1)
    valley = np.where(idx < j1[:, None], left[:, ::-1], right)
    edged = np.pad(p, ((0, 0), (1, 1)))
    local_max = (p >= edged[:, :-2]) & (p > edged[:, 2:]) & (p > 0)
    second = (
        local_max & (idx != j1[:, None]) & (p >= min_peak * p1[:, None]) & (valley <= max_dip * p)
    )
    return ok & second.any(axis=1)


@dataclass(frozen=True)
class LabelBins:
    """Equal-width bins of one label.

    Parameters
    ----------
    lo, hi : float
        Lower edge of the first and upper edge of the last bin, in label units.
    width : float
        Bin width in label units; ``(hi - lo) / width`` must be an integer >= 2.

    Raises
    ------
    ValueError
        If the values are not finite, ``hi <= lo``, ``width <= 0``, or
        ``(hi - lo) / width`` is not an integer >= 2.

    Examples
    --------
    >>> from stellarml.posterior import LabelBins
    >>> bins = LabelBins(3000.0, 7000.0, 100.0)  # Teff bins [K]
    >>> bins.n_bins, bins.centers[:2], float(bins.edges[-1])
    (40, array([3050., 3150.]), 7000.0)
    >>> try:
    ...     LabelBins(3000.0, 7000.0, 300.0)
    ... except ValueError as err:
    ...     print(err)
    (hi - lo) / width must be an integer >= 2, got (7000.0 - 3000.0) / 300.0 = 13.3333
    """

    lo: float
    hi: float
    width: float

    def __post_init__(self):
        lo, hi, width = float(self.lo), float(self.hi), float(self.width)
        if not (np.isfinite([lo, hi, width]).all() and hi > lo and width > 0):
            raise ValueError(
                f"bins must be finite (lo, hi, width) with hi > lo, width > 0; "
                f"got ({self.lo}, {self.hi}, {self.width})"
            )
        n = (hi - lo) / width
        if abs(n - round(n)) > 1e-6 * max(1.0, n) or round(n) < 2:
            raise ValueError(
                f"(hi - lo) / width must be an integer >= 2, got ({hi} - {lo}) / {width} = {n:g}"
            )
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "width", width)

    @property
    def n_bins(self):
        """Number of bins (int)."""
        return round((self.hi - self.lo) / self.width)

    @property
    def edges(self):
        """Bin edges, ``(n_bins + 1,)`` in label units."""
        return self.lo + self.width * np.arange(self.n_bins + 1)

    @property
    def centers(self):
        """Bin centres, ``(n_bins,)`` in label units."""
        return self.lo + self.width * (np.arange(self.n_bins) + 0.5)

    def positions(self, values):
        """Label values -> positions in bin units (bin ``j`` covers ``[j, j + 1)``)."""
        return (np.asarray(values, dtype=float) - self.lo) / self.width

    def as_tuple(self):
        """``(lo, hi, width)`` as plain floats."""
        return (self.lo, self.hi, self.width)


class LabelPosterior(abc.ABC):
    """Base class of the label posteriors of ``n`` spectra (see the module documentation).

    Parameters
    ----------
    label_names : sequence of str
        The labels, in output order.
    n : int
        Number of spectra (rows).
    flags : array-like of int, shape (n,), optional
        `~stellarml.flags.LabelFlag` bits the model set for each row (default 0).
    diagnostics : dict, optional
        ``{name: values}`` with ``name`` registered in
        `stellarml.labels.DIAGNOSTICS`; ``values`` is ``(n,)`` or, for a
        per-label diagnostic, ``{label: (n,)}``.
    valid : array-like of bool, shape (n,), optional
        Rows that hold a posterior (default all). Summaries of invalid rows
        are NaN: a model marks here the spectra it could not analyse (and
        says why in ``flags``).

    Attributes
    ----------
    form : str
        ``"binned"``, ``"samples"`` or ``"gaussian"``.
    flags : `numpy.ndarray`
        ``(n,)`` int64 `~stellarml.flags.LabelFlag` bits.
    valid : `numpy.ndarray`
        ``(n,)`` bool.
    diagnostics : dict
        ``{name: (n,) float64}``, or ``{name: {label: (n,)}}`` for per-label ones.

    Raises
    ------
    ValueError
        If the labels are empty or repeated, ``flags`` or ``valid`` do not
        have ``n`` entries, or ``flags`` are negative.
    KeyError
        If a diagnostic is not registered in `stellarml.labels.DIAGNOSTICS`.

    Examples
    --------
    Every form answers the same questions; here a `GaussianPosterior` of two
    spectra, the second of which could not be analysed.

    >>> import numpy as np
    >>> from stellarml.posterior import GaussianPosterior, LabelPosterior
    >>> post = GaussianPosterior([[5000.0, 4.4], [5800.0, 4.0]], [[100.0**2, 0.1**2]] * 2,
    ...                          ["teff", "logg"], valid=[True, False],
    ...                          diagnostics={"chi2": [1.1, np.nan]})
    >>> isinstance(post, LabelPosterior), post.form, len(post)
    (True, 'gaussian', 2)
    >>> s = post.summaries()["teff"]
    >>> np.round(s["median"], 1), np.round(s["err_hi"], 1)
    (array([5000.,   nan]), array([99.4,  nan]))
    >>> post.select([0])
    <GaussianPosterior of 1 spectra, labels ['teff', 'logg'], 1 valid>
    >>> np.round(post.transformed("teff", shift=50.0).median("teff"), 1)
    array([5050.,   nan])
    """

    #: Name of the form ("binned", "samples", "gaussian").
    form = None

    #: The subclasses by form (filled in by ``__init_subclass__``).
    _forms: ClassVar[dict] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.form is not None:
            LabelPosterior._forms[cls.form] = cls

    def __init__(self, label_names, n, *, flags=None, diagnostics=None, valid=None):
        if isinstance(label_names, str):
            label_names = (label_names,)
        names = tuple(str(name) for name in label_names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"label_names must be distinct and non-empty, got {names}")
        self._labels = names
        self._n = int(n)
        if flags is None:
            flags = np.zeros(self._n, dtype=np.int64)
        self.flags = self._row_vector(flags, "flags", np.int64)
        if np.any(self.flags < 0):
            raise ValueError("flags must be non-negative")
        self.valid = self._row_vector(
            np.ones(self._n, dtype=bool) if valid is None else valid, "valid", bool
        )
        self.diagnostics = self._check_diagnostics(diagnostics or {})
        self._cache = {}

    # ------------------------------------------------------------------ basics
    @property
    def label_names(self):
        """Names of the labels, in output order (tuple of str)."""
        return self._labels

    def __len__(self):
        return self._n

    def __repr__(self):
        return (
            f"<{type(self).__name__} of {self._n} spectra, labels {list(self._labels)}, "
            f"{int(self.valid.sum())} valid>"
        )

    def _row_vector(self, values, what, dtype):
        arr = np.asarray(values)
        if arr.shape != (self._n,):
            raise ValueError(f"{what} must have shape ({self._n},), got {arr.shape}")
        return arr.astype(dtype, copy=True)

    def _check_diagnostics(self, diagnostics):
        out = {}
        for name, values in dict(diagnostics).items():
            spec = get_diagnostic(name)
            if spec.per_label:
                if not isinstance(values, dict):
                    raise TypeError(f"diagnostic {name!r} is per label: pass {{label: values}}")
                unknown = sorted(set(values) - set(self._labels))
                if unknown:
                    raise ValueError(f"diagnostic {name!r} given for unknown labels {unknown}")
                out[name] = {
                    label: self._row_vector(v, f"diagnostic {name}[{label}]", np.float64)
                    for label, v in values.items()
                }
            else:
                out[name] = self._row_vector(values, f"diagnostic {name!r}", np.float64)
        return out

    def _label_index(self, label):
        try:
            return self._labels.index(label)
        except ValueError:
            raise KeyError(
                f"label {label!r} not in this posterior ({', '.join(self._labels)})"
            ) from None

    # ------------------------------------------------------------------ summaries
    def quantiles(self, label, q):
        """Quantiles of one label's distribution.

        Parameters
        ----------
        label : str
            The label.
        q : float or sequence of float
            Probability levels in [0, 1].

        Returns
        -------
        values : `numpy.ndarray`
            ``(n, len(q))`` float64 in the label's unit; NaN for invalid rows.
        """
        self._label_index(label)
        q = np.atleast_1d(np.asarray(q, dtype=float))
        if q.ndim != 1 or np.any((q < 0) | (q > 1)):
            raise ValueError(f"quantile levels must be in [0, 1], got {q}")
        values = np.asarray(self._quantiles(label, q), dtype=np.float64)
        return np.where(self.valid[:, None], values, np.nan)

    def median(self, label):
        """Median of ``label`` per row, ``(n,)`` float64."""
        self._label_index(label)
        return self.summaries()[label]["median"]

    def mode(self, label):
        """Mode of ``label`` per row (NaN where the form does not define one), ``(n,)``."""
        self._label_index(label)
        return self.summaries()[label]["mode"]

    def mean(self, label):
        """Mean of ``label`` per row, ``(n,)`` float64."""
        self._label_index(label)
        return self.summaries()[label]["mean"]

    def summaries(self):
        """Point estimates and intervals of every label.

        Returns
        -------
        summaries : dict
            ``{label: {"median", "p16", "p84", "err_lo", "err_hi", "mode",
            "mean"}}``, each ``(n,)`` float64 in the label's unit, with
            ``err_lo = median - p16`` and ``err_hi = p84 - median``. Rows that
            are not `valid` are NaN. The mode is NaN for `SamplePosterior`.
        """
        if "summaries" not in self._cache:
            out = {}
            invalid = ~self.valid
            for label in self._labels:
                p16, median, p84, mode, mean = self._summary(label)
                s = {
                    "median": median,
                    "mode": mode,
                    "mean": mean,
                    "p16": p16,
                    "p84": p84,
                    "err_lo": median - p16,
                    "err_hi": p84 - median,
                }
                if invalid.any():
                    s = {k: np.where(invalid, np.nan, v) for k, v in s.items()}
                out[label] = s
            self._cache["summaries"] = out
        return {label: dict(s) for label, s in self._cache["summaries"].items()}

    def _summary(self, label):
        """(p16, median, p84, mode, mean) of one label, float64 ``(n,)`` each."""
        q = self._quantiles(label, np.asarray(QUANTILES))
        return (q[:, 0], q[:, 1], q[:, 2], self._mode(label), self._mean(label))

    # ------------------------------------------------------------------ flags and diagnostics
    def bimodal(self, label):
        """Whether the distribution of ``label`` has two separated modes, per row.

        The criterion is `bimodal_rows` (with `BIMODAL_MIN_PEAK` and
        `BIMODAL_MAX_DIP`) applied to the form's density on a regular grid: a
        `BinnedPosterior`'s bin probabilities, a histogram of a
        `SamplePosterior`'s draws; a `GaussianPosterior` is never bimodal.

        Returns
        -------
        bimodal : `numpy.ndarray`
            ``(n,)`` bool; False for rows that are not `valid`.
        """
        self._label_index(label)
        density = self._density(label)
        if density is None:
            return np.zeros(self._n, dtype=bool)
        return bimodal_rows(density) & self.valid

    def bimodal_flags(self):
        """`~stellarml.flags.LabelFlag.BIMODAL_PDF` where any label is `bimodal`, ``(n,)`` int64."""
        from ..flags import LabelFlag

        out = np.zeros(self._n, dtype=bool)
        for label in self._labels:
            out |= self.bimodal(label)
        return np.where(out, np.int64(LabelFlag.BIMODAL_PDF), np.int64(0))

    def _density(self, label):
        """``(n, K)`` density of ``label`` on a regular grid, or None (unimodal by form)."""
        return None

    def with_flags(self, bits):
        """A copy with ``bits`` (scalar or ``(n,)``) OR-ed into `flags`."""
        out = self._copy()
        out.flags = self.flags | np.broadcast_to(np.asarray(bits, dtype=np.int64), (self._n,))
        return out

    def with_diagnostics(self, **diagnostics):
        """A copy with the given diagnostics added (or replaced)."""
        out = self._copy()
        out.diagnostics = {**self.diagnostics, **self._check_diagnostics(diagnostics)}
        return out

    def _copy(self):
        out = copy.copy(self)
        # summaries change with a transform; the other cached entries (a binned
        # form's bin-unit positions) depend only on the stored PDFs, which copies share
        out._cache = {k: v for k, v in self._cache.items() if k != "summaries"}
        return out

    # ------------------------------------------------------------------ rows
    def select(self, index):
        """The rows selected by an int, slice, boolean mask or integer array (a new posterior)."""
        idx = np.atleast_1d(np.arange(self._n)[index])
        return self._with_rows(
            {k: v[idx] for k, v in self._row_arrays().items()},
            n=idx.size,
            flags=self.flags[idx],
            valid=self.valid[idx],
            diagnostics=_map_diagnostics(self.diagnostics, lambda v: v[idx]),
        )

    __getitem__ = select

    def expand(self, mask):
        """Scatter the rows into a larger batch: row ``i`` of ``self`` goes to the ``i``-th True.

        Parameters
        ----------
        mask : array-like of bool
            ``(N,)`` with exactly ``len(self)`` True entries.

        Returns
        -------
        posterior : same type
            ``N`` rows; the rows where ``mask`` is False are not `valid`,
            have flags 0 and NaN diagnostics.
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 1 or int(mask.sum()) != self._n:
            raise ValueError(
                f"mask must be 1-D with {self._n} True entries, got shape {mask.shape} "
                f"and {int(mask.sum())} True"
            )
        total = mask.size

        def scatter(values, fill):
            out = np.full((total, *values.shape[1:]), fill, dtype=values.dtype)
            out[mask] = values
            return out

        rows = {k: scatter(v, self._fill_value(k, v)) for k, v in self._row_arrays().items()}
        return self._with_rows(
            rows,
            n=total,
            flags=scatter(self.flags, 0),
            valid=scatter(self.valid, False),
            diagnostics=_map_diagnostics(self.diagnostics, lambda v: scatter(v, np.nan)),
        )

    @classmethod
    def concatenate(cls, posteriors):
        """Join posteriors of the same form and labels row-wise, in order."""
        posteriors = list(posteriors)
        if not posteriors:
            raise ValueError("need at least one posterior to concatenate")
        first = posteriors[0]
        first._check_same_kind(posteriors)
        names = set(first.diagnostics)
        for p in posteriors[1:]:
            names &= set(p.diagnostics)
        diagnostics = {}
        for name in names:
            values = [p.diagnostics[name] for p in posteriors]
            if isinstance(values[0], dict):
                diagnostics[name] = {
                    label: np.concatenate([v[label] for v in values]) for label in values[0]
                }
            else:
                diagnostics[name] = np.concatenate(values)
        keys = first._row_arrays().keys()
        return first._with_rows(
            {k: np.concatenate([p._row_arrays()[k] for p in posteriors]) for k in keys},
            n=sum(len(p) for p in posteriors),
            flags=np.concatenate([p.flags for p in posteriors]),
            valid=np.concatenate([p.valid for p in posteriors]),
            diagnostics=diagnostics,
        )

    @classmethod
    def combine(cls, posteriors, weights=None):
        """The equal-weight (or weighted) mixture of the members of an ensemble.

        Parameters
        ----------
        posteriors : sequence of LabelPosterior
            One per member, all of the same form, labels and number of rows.
        weights : sequence of float, optional
            Member weights (normalised here); default equal.

        Returns
        -------
        posterior : LabelPosterior
            The mixture, in the members' form (a `GaussianPosterior` mixture
            is moment-matched). Flags are OR-ed, a row is valid when it is
            valid in every member, and each diagnostic present in every member
            is combined as its `~stellarml.labels.DiagnosticSpec` says (e.g.
            the largest domain distance).
        """
        posteriors = list(posteriors)
        if not posteriors:
            raise ValueError("need at least one posterior to combine")
        first = posteriors[0]
        first._check_same_kind(posteriors)
        n = len(first)
        if any(len(p) != n for p in posteriors):
            raise ValueError(
                f"members have different numbers of rows: {[len(p) for p in posteriors]}"
            )
        if weights is not None:
            weights = np.asarray(weights, dtype=float)
            if weights.shape != (len(posteriors),) or np.any(weights < 0) or weights.sum() <= 0:
                raise ValueError("weights must be one non-negative number per member, not all 0")
            weights = weights / weights.sum()
        if len(posteriors) == 1:
            return first._copy()
        out = first._mixture(posteriors, weights)
        flags = np.zeros(n, dtype=np.int64)
        valid = np.ones(n, dtype=bool)
        for p in posteriors:
            flags |= p.flags
            valid &= p.valid
        names = set(first.diagnostics)
        for p in posteriors[1:]:
            names &= set(p.diagnostics)
        diagnostics = {}
        for name in sorted(names):
            rule = {"mean": np.mean, "max": np.max, "min": np.min}[get_diagnostic(name).combine]
            values = [p.diagnostics[name] for p in posteriors]
            if isinstance(values[0], dict):
                diagnostics[name] = {
                    label: rule(np.stack([v[label] for v in values]), axis=0) for label in values[0]
                }
            else:
                diagnostics[name] = rule(np.stack(values), axis=0)
        out.flags, out.valid = flags, valid
        out.diagnostics = diagnostics
        out._cache = {}
        return out

    def _check_same_kind(self, posteriors):
        for k, p in enumerate(posteriors):
            if type(p) is not type(self):
                raise TypeError(
                    f"posterior {k} is a {type(p).__name__}, posterior 0 a {type(self).__name__}"
                )
            if p.label_names != self.label_names:
                raise ValueError(
                    f"posterior {k} has labels {list(p.label_names)}, "
                    f"posterior 0 {list(self.label_names)}"
                )

    # ------------------------------------------------------------------ calibration
    def transformed(self, label, *, shift=0.0, scale=1.0, center=None, extra_sigma=None):
        """Map one label's distribution, row by row (how calibrations correct labels).

        Each row's distribution of ``label`` goes through the increasing
        affine map ``x -> center + shift + scale * (x - center)`` and is then
        convolved with a Gaussian of standard deviation ``extra_sigma`` (the
        uncertainty of a correction): exactly for `GaussianPosterior`, by
        adding Gaussian draws for `SamplePosterior` (fixed seed), and for
        `BinnedPosterior` by widening about the median so that the variance
        grows by ``extra_sigma**2``. The other labels are unchanged.

        Parameters
        ----------
        label : str
            The label.
        shift : float or array-like (n,)
            Added to every value, in the label's unit.
        scale : float or array-like (n,)
            Positive width factor about ``center``.
        center : float or array-like (n,), optional
            Fixed point of the scaling; default the row's median.
        extra_sigma : float or array-like (n,), optional
            Standard deviation of the Gaussian convolved in (label unit).

        Returns
        -------
        posterior : same type
        """
        self._label_index(label)
        n = self._n
        shift = np.broadcast_to(np.asarray(shift, dtype=np.float64), (n,)).copy()
        scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (n,)).copy()
        ok = self.valid
        if np.any(~np.isfinite(shift[ok])) or np.any(~(scale[ok] > 0)):
            raise ValueError("shift must be finite and scale positive on valid rows")
        if center is None:
            center = np.nan_to_num(self.median(label))
        center = np.broadcast_to(np.asarray(center, dtype=np.float64), (n,)).copy()
        shift[~ok], scale[~ok], center[~ok] = 0.0, 1.0, 0.0
        sigma = None
        if extra_sigma is not None:
            sigma = np.broadcast_to(np.asarray(extra_sigma, dtype=np.float64), (n,)).copy()
            sigma[~ok] = 0.0
            if np.any(~np.isfinite(sigma)) or np.any(sigma < 0):
                raise ValueError("extra_sigma must be finite and >= 0")
            if not np.any(sigma > 0):
                sigma = None
        out = self._copy()
        out._transform(label, shift, scale, center, sigma)
        return out

    # ------------------------------------------------------------------ conversions
    def to_samples(self, n_samples=1000, *, seed=0):
        """Draws from each row's distribution, as a `SamplePosterior`.

        Labels are drawn independently for `BinnedPosterior` (its PDFs are
        per label) and jointly for `GaussianPosterior`.

        Parameters
        ----------
        n_samples : int
            Draws per row.
        seed : int
            Seed of the draws.
        """
        if int(n_samples) < 1:
            raise ValueError(f"n_samples must be positive, got {n_samples!r}")
        rng = np.random.default_rng(seed)
        draws = self._draw(int(n_samples), rng)
        draws[~self.valid] = np.nan
        return LabelPosterior._forms["samples"](
            draws,
            self._labels,
            flags=self.flags,
            diagnostics=self.diagnostics,
            valid=self.valid,
        )

    def _fill_value(self, key, values):
        """Value of the rows `expand` adds, for row array ``key``."""
        return np.nan if values.dtype.kind == "f" else 0

    # ------------------------------------------------------------------ form-specific
    @abc.abstractmethod
    def _row_arrays(self):
        """Form-specific part of the public methods (see the subclasses)."""

    @abc.abstractmethod
    def _with_rows(self, rows, *, n, flags, valid, diagnostics):
        """Form-specific part of the public methods (see the subclasses)."""

    @abc.abstractmethod
    def _quantiles(self, label, q):
        """Form-specific part of the public methods (see the subclasses)."""

    @abc.abstractmethod
    def _mode(self, label):
        """Form-specific part of the public methods (see the subclasses)."""

    @abc.abstractmethod
    def _mean(self, label):
        """Form-specific part of the public methods (see the subclasses)."""

    @abc.abstractmethod
    def _mixture(self, posteriors, weights):
        """Form-specific part of the public methods (see the subclasses)."""

    @abc.abstractmethod
    def _transform(self, label, shift, scale, center, sigma):
        """Form-specific part of the public methods (see the subclasses)."""

    @abc.abstractmethod
    def _draw(self, n_samples, rng):
        """Form-specific part of the public methods (see the subclasses)."""


def _map_diagnostics(diagnostics, fn):
    return {
        name: ({k: fn(v) for k, v in values.items()} if isinstance(values, dict) else fn(values))
        for name, values in diagnostics.items()
    }
