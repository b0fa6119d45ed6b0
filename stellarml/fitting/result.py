"""`FitResult`: what a fitter returns, and its conversion to a label posterior."""

from dataclasses import dataclass, field

import numpy as np

from ..flags import LabelFlag
from ..posterior import GaussianPosterior, SamplePosterior

__all__ = ["FitResult"]


@dataclass
class FitResult:
    """The fitted labels of ``n`` spectra, with their uncertainties and fit quality.

    Attributes
    ----------
    label_names : tuple of str
        The labels (the emulator's order).
    labels : `numpy.ndarray`
        ``(n, L)`` best-fitting physical labels (NaN for rows not fitted).
        For `~stellarml.fitting.MCMCFitter`: the posterior median.
    covariance : `numpy.ndarray`
        ``(n, L, L)`` label covariance in physical units: the Laplace
        (Gauss–Newton) approximation at the optimum, marginalised over the
        nuisance parameters, priors included; for MCMC the covariance of the
        draws. Labels the data do not constrain get an infinite variance.
    crlb : `numpy.ndarray`
        ``(n, L)`` Cramér–Rao bound (likelihood only, nuisance marginalised)
        at the fitted labels, physical units.
    chi2 : `numpy.ndarray`
        ``(n,)`` chi-square of the best fit over the good pixels (priors not
        included).
    dof : `numpy.ndarray`
        ``(n,)`` good pixels minus fitted parameters (labels, rv, continuum
        coefficients).
    converged : `numpy.ndarray`
        ``(n,)`` bool: the fitter's convergence test passed (see each fitter).
    valid : `numpy.ndarray`
        ``(n,)`` bool: the row could be fitted.
    flags : `numpy.ndarray`
        ``(n,)`` `~stellarml.flags.LabelFlag` bits: ``BAD_INPUT`` or
        ``TOO_FEW_GOOD_PIXELS`` for rows that could not be fitted,
        ``FIT_NOT_CONVERGED`` where the test failed, ``PDF_AT_GRID_EDGE``
        where a fitted label lies at an edge of the box (the spectrum wants
        labels outside what the emulator covers: they are not measured).
    rv, rv_err : `numpy.ndarray` or None
        ``(n,)`` fitted radial velocity and its error [km/s], when fitted.
    continuum : `numpy.ndarray` or None
        ``(n, degree + 1)`` profiled Legendre coefficients of the continuum.
    samples : `numpy.ndarray` or None
        ``(n, S, L)`` posterior draws in physical units (MCMC only).
    fit_info : dict
        The fitter's own record (iterations, stop reasons, acceptance...).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from stellarml.models.emulator import PayneEmulator
    >>> rng = np.random.default_rng(2)  # a small random emulator of Teff [K] and log g [dex]
    >>> emu = PayneEmulator(rng.normal(size=(200, 4, 2)), rng.normal(size=(200, 4)),
    ...                     0.1 * rng.normal(size=(200, 4)), np.ones(200), ("teff", "logg"),
    ...                     [4000.0, 1.0], [6000.0, 5.0], np.linspace(5000.0, 5100.0, 200))
    >>> from stellarml.fitting import GradientFitter
    >>> flux = emu.flux(torch.tensor([[5200.0, 2.5], [4800.0, 3.5]])).numpy()
    >>> result = GradientFitter(n_starts=2)(emu, flux, np.full_like(flux, 1e4))
    >>> len(result), result.label_names, result.converged
    (2, ('teff', 'logg'), array([ True,  True]))
    >>> np.round(result.labels[:, 0]), np.round(result.labels[:, 1], 2)  # [K], [dex]
    (array([5200., 4800.]), array([2.5, 3.5]))
    >>> np.round(result.errors[0], 2)  # 1-sigma errors [K], [dex]
    array([26.39,  0.06])
    >>> result.dof, result.flags
    (array([198, 198]), array([0, 0]))
    >>> result.to_posterior()
    <GaussianPosterior of 2 spectra, labels ['teff', 'logg'], 2 valid>
    """

    label_names: tuple
    labels: np.ndarray
    covariance: np.ndarray
    crlb: np.ndarray
    chi2: np.ndarray
    dof: np.ndarray
    converged: np.ndarray
    valid: np.ndarray
    flags: np.ndarray
    rv: np.ndarray | None = None
    rv_err: np.ndarray | None = None
    continuum: np.ndarray | None = None
    samples: np.ndarray | None = None
    fit_info: dict = field(default_factory=dict)

    def __len__(self):
        return int(self.labels.shape[0])

    @property
    def reduced_chi2(self):
        """``chi2 / dof`` ``(n,)`` (NaN where dof is 0)."""
        dof = np.asarray(self.dof, dtype=np.float64)
        return np.where(dof > 0, self.chi2 / np.where(dof > 0, dof, 1.0), np.nan)

    @property
    def errors(self):
        """``(n, L)`` standard deviations of the labels (square root of the covariance diagonal)."""
        return np.sqrt(np.diagonal(self.covariance, axis1=1, axis2=2))

    def to_posterior(self):
        """The `~stellarml.posterior.LabelPosterior` of the fit.

        Returns
        -------
        posterior : `~stellarml.posterior.LabelPosterior`
            A `~stellarml.posterior.SamplePosterior` of the draws when the fit
            has samples (MCMC), else a `~stellarml.posterior.GaussianPosterior` of the mean and
            covariance. ``flags`` carries the fit's flags, ``diagnostics``
            ``chi2``, ``dof`` and the per-label ``crlb``. Rows that were not
            fitted are not valid. A label without information has an
            infinite variance, which a Gaussian posterior cannot hold: its
            variance is replaced by that of a uniform distribution over the
            emulator's box in ``fit_info["box_variance"]`` when given.
        """
        diagnostics = {
            "chi2": np.where(self.valid, self.chi2, np.nan),
            "dof": np.asarray(self.dof, dtype=np.float64),
            "crlb": {
                name: np.where(self.valid, self.crlb[:, j], np.nan)
                for j, name in enumerate(self.label_names)
            },
        }
        flags = np.asarray(self.flags, dtype=np.int64)
        if self.samples is not None:
            return SamplePosterior(
                self.samples,
                self.label_names,
                flags=flags,
                diagnostics=diagnostics,
                valid=self.valid,
            )
        cov = np.array(self.covariance, dtype=np.float64)
        box_var = self.fit_info.get("box_variance")
        if box_var is not None:
            box_var = np.asarray(box_var, dtype=np.float64)
            rows, cols = np.nonzero(np.isinf(np.diagonal(cov, axis1=1, axis2=2)))
            cov[rows, cols, cols] = box_var[cols]
        mean = np.where(self.valid[:, None], self.labels, np.nan)
        return GaussianPosterior(
            mean, cov, self.label_names, flags=flags, diagnostics=diagnostics, valid=self.valid
        )


#: A fitted label closer than this to an edge of the box (in units of the box
#: width) is at that edge.
EDGE_TOLERANCE = 1e-3


def _fit_flags(valid, converged, row_flags, at_edge):
    """Flags of a fit: the problem's row flags, ``FIT_NOT_CONVERGED``, ``PDF_AT_GRID_EDGE``."""
    out = np.asarray(row_flags, dtype=np.int64).copy()
    out[valid & ~converged] |= int(LabelFlag.FIT_NOT_CONVERGED)
    out[valid & at_edge] |= int(LabelFlag.PDF_AT_GRID_EDGE)
    return out
