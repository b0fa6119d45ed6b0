"""Fitting labels with a spectrum emulator: gradient, CMA-ES and MCMC fitters.

The fitters are callable objects (the astropy.modeling shape): they hold
their settings, and ``fitter(emulator, flux, ivar, ...)`` fits a batch of
spectra and returns a `FitResult` (labels, covariance, Cramér–Rao bound,
chi-square, convergence) while keeping the record of the call in
``fitter.fit_info``. They share one data model (`stellarml.fitting._likelihood`):
an optional radial velocity, an optional multiplicative Legendre continuum
(profiled out), Gaussian priors and a box in physical units.

* `GradientFitter`: batched Levenberg–Marquardt in torch, several starts.
* `CMAESFitter`: CMA-ES (pycma) for global search, populations batched.
* `MCMCFitter`: emcee ensemble sampling with a vectorised log-probability.
* `fisher_matrix` and `cramer_rao_bound`: the Fisher information and the
  per-spectrum Cramér–Rao bound from the emulator's Jacobian;
  `inverse_fisher`: the singular-tolerant inverse they use.

The fitters need only the `~stellarml.models.emulator.SpectrumEmulator`
interface and import no model.
"""

from ._base import Fitter
from ._likelihood import C_KMS, FitProblem, legendre_basis
from .cmaes import CMAESFitter
from .crlb import cramer_rao_bound, fisher_matrix, inverse_fisher
from .gradient import GradientFitter
from .mcmc import MCMCFitter
from .result import FitResult

__all__ = [
    "C_KMS",
    "FITTERS",
    "CMAESFitter",
    "FitProblem",
    "FitResult",
    "Fitter",
    "GradientFitter",
    "MCMCFitter",
    "cramer_rao_bound",
    "fisher_matrix",
    "inverse_fisher",
    "legendre_basis",
    "make_fitter",
]

#: The fitters by method name (what ``derive_labels(..., method=...)`` accepts).
FITTERS = {"gradient": GradientFitter, "cmaes": CMAESFitter, "mcmc": MCMCFitter}


def make_fitter(method, **settings):
    """A new fitter of ``method`` (a key of `FITTERS`) with ``settings``.

    Parameters
    ----------
    method : {"gradient", "cmaes", "mcmc"}
        The fitting method: `GradientFitter`, `CMAESFitter` or `MCMCFitter`.
    **settings
        Keyword arguments of that fitter's constructor (e.g. ``n_starts`` of
        `GradientFitter`, ``n_steps`` of `MCMCFitter`).

    Returns
    -------
    fitter : `Fitter`
        A new, unused fitter.

    Raises
    ------
    ValueError
        For an unknown method or setting.

    Examples
    --------
    >>> from stellarml.fitting import make_fitter
    >>> make_fitter("gradient", n_starts=2).n_starts
    2
    >>> make_fitter("mcmc", n_steps=500)
    MCMCFitter(n_walkers=32, n_steps=500, ...)
    >>> try:
    ...     make_fitter("newton")
    ... except ValueError as err:
    ...     print(err)
    unknown fitting method 'newton'; choose one of 'gradient', 'cmaes', 'mcmc'
    """
    if method not in FITTERS:
        raise ValueError(
            f"unknown fitting method {method!r}; choose one of "
            f"{', '.join(repr(m) for m in FITTERS)}"
        )
    try:
        return FITTERS[method](**settings)
    except TypeError as exc:
        raise ValueError(f"invalid settings for the {method!r} fitter: {exc}") from None
