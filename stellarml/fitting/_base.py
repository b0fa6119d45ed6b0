"""The shared shape of the fitters: the call, the checks, and the result at an optimum."""

import abc
import time

import numpy as np
import torch

from ._likelihood import FitProblem
from .crlb import inverse_fisher
from .result import EDGE_TOLERANCE, FitResult, _fit_flags

__all__ = ["Fitter"]

#: Default bound on the floats of one Jacobian chunk (spectra x pixels x parameters).
MAX_ELEMENTS = 1 << 23


def _check_positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_positive_float(value, name):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return v


class Fitter(abc.ABC):
    """Base of the callable fitters (astropy.modeling style).

    A fitter stores only its settings; calling it fits spectra and returns a
    `~stellarml.fitting.FitResult`, and keeps the record of the last call in
    ``fit_info``. Subclasses implement ``_fit(problem, init)``.

    Attributes
    ----------
    name : str
        The method (``"gradient"``, ``"cmaes"``, ``"mcmc"``; a key of
        `~stellarml.fitting.FITTERS`).
    fit_info : dict
        Record of the last call: the method, the numbers of spectra fitted and
        converged, the time taken [s] and the fitter's own entries
        (iterations, stop reasons...). Empty before the first call.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from stellarml.models.emulator import PayneEmulator
    >>> rng = np.random.default_rng(2)  # a small random emulator of Teff [K] and log g [dex]
    >>> emu = PayneEmulator(rng.normal(size=(200, 4, 2)), rng.normal(size=(200, 4)),
    ...                     0.1 * rng.normal(size=(200, 4)), np.ones(200), ("teff", "logg"),
    ...                     [4000.0, 1.0], [6000.0, 5.0], np.linspace(5000.0, 5100.0, 200))
    >>> from stellarml.fitting import Fitter, GradientFitter
    >>> flux = emu.flux(torch.tensor([[5200.0, 2.5]])).numpy()
    >>> fitter = GradientFitter(n_starts=2)
    >>> isinstance(fitter, Fitter), fitter.name, fitter.get_settings()["n_starts"]
    (True, 'gradient', 2)
    >>> result = fitter(emu, flux, np.full_like(flux, 1e4))
    >>> fitter.fit_info["n_spectra"], fitter.fit_info["n_converged"]
    (1, 1)
    """

    #: Name of the method (``"gradient"``, ``"cmaes"``, ``"mcmc"``).
    name = None

    def __init__(self):
        self.fit_info = {}

    @abc.abstractmethod
    def get_settings(self):
        """The constructor arguments as a plain dict (for storing a model's fitter)."""

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_settings().items())
        return f"{type(self).__name__}({args})"

    def __call__(
        self,
        emulator,
        flux,
        ivar,
        *,
        init=None,
        priors=None,
        bounds=None,
        rv=None,
        continuum_degree=None,
        model_error=None,
    ):
        """Fit spectra with an emulator.

        Parameters
        ----------
        emulator : `~stellarml.models.emulator.SpectrumEmulator`
            The labels -> spectrum model (its interface; duck-typed).
        flux, ivar : array-like
            ``(n, npix)`` (or ``(npix,)``) normalised flux and inverse
            variance on the emulator's wavelength grid; ``ivar = 0`` masks a
            pixel.
        init : array-like, optional
            ``(L,)`` or ``(n, L)`` physical starting labels (optionally with
            an rv column); default the centre of the box.
        priors : dict, optional
            ``{label: (mean, sigma)}`` Gaussian priors in physical units
            (scalars or one value per spectrum); ``"rv"`` too, in km/s.
        bounds : dict, optional
            ``{label: (lo, hi)}`` physical box, intersected with the
            emulator's training box (the default).
        rv : None, True or (vmin, vmax), optional
            Fit a radial velocity within these bounds [km/s] (True: +-500).
        continuum_degree : int, optional
            Fit (profile out) a multiplicative Legendre continuum of this degree.
        model_error : float or array-like, optional
            The emulator's own error [normalised flux], scalar or per pixel,
            added in quadrature to the noise (see `~stellarml.fitting.FitProblem`).

        Returns
        -------
        result : `~stellarml.fitting.FitResult`
            Rows in input order; rows that cannot be fitted (non-finite flux
            where ``ivar > 0``, too few good pixels) are not valid and flagged.

        Raises
        ------
        ValueError
            For shapes that do not match the emulator's grid, negative or
            non-finite ``ivar``, and malformed priors, bounds or options.
        """
        t0 = time.perf_counter()
        problem = FitProblem(
            emulator,
            flux,
            ivar,
            rv=rv,
            continuum_degree=continuum_degree,
            priors=priors,
            bounds=bounds,
            model_error=model_error,
        )
        with torch.no_grad():
            result = self._fit(problem, init)
        info = dict(result.fit_info)
        info.update(
            method=self.name,
            n_spectra=problem.n,
            n_fitted=int(problem.valid.sum()),
            n_converged=int(result.converged.sum()),
            seconds=time.perf_counter() - t0,
        )
        result.fit_info = info
        self.fit_info = info
        return result

    @abc.abstractmethod
    def _fit(self, problem, init):
        """`~stellarml.fitting.FitResult` of a `~stellarml.fitting.FitProblem` from ``init``."""

    # ------------------------------------------------------------------ shared steps
    def _finish(self, problem, theta, converged, info, *, samples=None, sample_cov=None):
        """`FitResult` at the optimum ``theta`` ``(n_valid, P)`` of the valid rows."""
        n, n_labels = problem.n, problem.n_labels
        valid = problem.valid
        rows = np.nonzero(valid)[0]
        labels = np.full((n, n_labels), np.nan)
        cov = np.full((n, n_labels, n_labels), np.nan)
        crlb = np.full((n, n_labels), np.nan)
        chi2 = np.full(n, np.nan)
        conv = np.zeros(n, dtype=bool)
        rv = rv_err = cont = None
        if problem.rv_bounds is not None:
            rv, rv_err = np.full(n, np.nan), np.full(n, np.nan)
        if problem.degree is not None:
            cont = np.full((n, problem.n_continuum), np.nan)
        if rows.size:
            th = torch.as_tensor(theta, dtype=torch.float64)
            scale = problem.jacobian_scale()
            outer = np.outer(scale, scale)
            for sl in _chunks(problem, rows.size, problem.n_params + problem.n_continuum):
                r = rows[sl]
                fish = problem.fisher(th[sl], r, prior=False)
                c2, _, ev = problem.objective(th[sl], r)
                chi2[r] = c2.cpu().numpy()
                if cont is not None:
                    cont[r] = ev["coef"].cpu().numpy()
                lik = inverse_fisher(fish.cpu(), problem.n_params)
                crlb[r] = np.sqrt(np.diagonal(lik, axis1=1, axis2=2))[:, :n_labels]
                crlb[r] *= scale[:n_labels]
                if problem.has_prior:
                    inv = np.concatenate(
                        [problem.prior_inv_sigma[r], np.zeros((r.size, problem.n_continuum))],
                        axis=1,
                    )
                    fish = fish + torch.diag_embed(torch.as_tensor(inv**2))
                    post = inverse_fisher(fish.cpu(), problem.n_params)
                else:
                    post = lik
                post = post * outer
                cov[r] = post[:, :n_labels, :n_labels]
                if rv is not None:
                    rv_err[r] = np.sqrt(post[:, -1, -1])
            labels[rows] = problem.to_physical(theta)
            if rv is not None:
                rv[rows] = theta[:, -1]
            conv[rows] = np.asarray(converged, dtype=bool)
        if samples is not None:
            full = np.full((n, samples.shape[1], n_labels), np.nan)
            full[rows] = samples
            samples = full
            cov[rows] = sample_cov
        at_edge = np.zeros(n, dtype=bool)
        if rows.size:
            width = problem.box_hi[:n_labels] - problem.box_lo[:n_labels]
            x = np.asarray(theta, dtype=np.float64)[:, :n_labels]
            near = np.minimum(x - problem.box_lo[:n_labels], problem.box_hi[:n_labels] - x)
            at_edge[rows] = (near < EDGE_TOLERANCE * width).any(axis=1)
        flags = _fit_flags(valid, conv, problem.row_flags, at_edge)
        info = dict(info)
        info["box_variance"] = (
            (problem.box_hi - problem.box_lo)[:n_labels] ** 2 / 12.0 * (problem.label_scale**2)
        )
        return FitResult(
            label_names=problem.label_names,
            labels=labels,
            covariance=cov,
            crlb=crlb,
            chi2=chi2,
            dof=problem.dof.astype(np.int64),
            converged=conv,
            valid=valid.copy(),
            flags=flags,
            rv=rv,
            rv_err=rv_err,
            continuum=cont,
            samples=samples,
            fit_info=info,
        )


def _chunks(problem, n_rows, n_cols, max_elements=MAX_ELEMENTS):
    """Slices of at most ``max_elements / (npix * n_cols)`` rows."""
    step = max(1, int(max_elements) // max(1, problem.npix * max(1, n_cols)))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]
