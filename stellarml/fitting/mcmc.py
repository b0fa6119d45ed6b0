"""`MCMCFitter`: posterior draws with emcee's ensemble sampler (vectorised log-probability)."""

import logging

import numpy as np
import torch

from ._base import Fitter, _check_positive_float, _check_positive_int
from .crlb import inverse_fisher
from .gradient import GradientFitter

__all__ = ["MCMCFitter"]

#: The proposal mixtures of ``MCMCFitter(moves=...)``.
MOVES = ("de", "stretch")


def _moves(name):
    import emcee

    if name == "stretch":
        return None  # emcee's default StretchMove
    return [(emcee.moves.DEMove(), 0.8), (emcee.moves.DESnookerMove(), 0.2)]


class MCMCFitter(Fitter):
    """Ensemble MCMC (emcee) per spectrum, started at the optimum.

    Each spectrum is first fitted with a `~stellarml.fitting.GradientFitter`;
    its walkers start in a Gaussian ball around that optimum with the
    Laplace covariance (times ``init_scale``), folded into the box. The
    log-probability is evaluated for all walkers in one emulator call
    (``vectorize=True``)::

        ln p = -chi2 / 2 - sum_j ((l_j - mu_j) / s_j)**2 / 2    inside the box
        ln p = -inf                                              outside

    With a continuum, the coefficients are marginalised analytically (a flat
    prior on them): ``ln p`` also has ``-ln det(A^T W A) / 2`` where ``A`` is
    the model times the Legendre basis, so the draws are of the marginal
    posterior of labels (and rv), not of the profile likelihood.

    Parameters
    ----------
    n_walkers : int, optional
        Walkers (at least twice the number of parameters).
    n_steps : int, optional
        Steps kept after burn-in.
    n_burn : int, optional
        Steps discarded first.
    thin : int, optional
        Keep every ``thin``-th step.
    n_samples : int, optional
        Largest number of draws returned per spectrum (evenly spaced in the
        flattened chain); None: all.
    moves : {"de", "stretch"}, optional
        emcee proposal: ``"de"`` (default) mixes differential-evolution
        moves (`emcee.moves.DEMove`, weight 0.8) with snooker moves
        (`emcee.moves.DESnookerMove`, 0.2), which decorrelate faster on the
        near-Gaussian posteriors of emulator fits; ``"stretch"`` is emcee's
        default affine-invariant stretch move.
    init_scale : float, optional
        Width of the starting ball in units of the Laplace standard deviations.
    min_tau_multiple : float, optional
        Convergence test: the kept chain must be at least this many
        integrated autocorrelation times long (every parameter).
    acceptance : (float, float), optional
        Convergence test: the mean acceptance fraction must lie inside.
    seed : int, optional
        Seed of the starting ball and of the sampler (spectrum ``i``:
        ``seed + i``).
    gradient : dict, optional
        Settings of the `~stellarml.fitting.GradientFitter` that finds the optimum.

    Attributes
    ----------
    fit_info : dict
        Of the last call: ``acceptance_fraction`` ``(n,)`` (mean over
        walkers), ``tau`` ``(n, P)`` (integrated autocorrelation times, in
        steps; NaN where they cannot be estimated), ``chain_over_tau``
        ``(n,)``, ``n_burn``, ``n_steps``, ``thin``, ``n_walkers``,
        ``optimum`` ``(n, L)`` (the gradient fit), ``rv_samples`` ``(n, S)``
        when an RV is fitted, ``method``, ``n_converged``, ``seconds``.

    Notes
    -----
    A spectrum is flagged ``FIT_NOT_CONVERGED`` when its kept chain is
    shorter than ``min_tau_multiple`` autocorrelation times (for any
    parameter, or when a time cannot be estimated) or its mean acceptance is
    outside ``acceptance``. The result's ``labels`` are the posterior
    medians, ``covariance`` the draws' covariance; ``chi2``, ``crlb`` and the
    continuum are evaluated at the gradient optimum.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from stellarml.models.emulator import PayneEmulator
    >>> from stellarml.fitting import MCMCFitter
    >>> rng = np.random.default_rng(2)
    >>> emu = PayneEmulator(rng.normal(size=(200, 4, 2)), rng.normal(size=(200, 4)),
    ...                     0.1 * rng.normal(size=(200, 4)), np.ones(200), ("teff", "logg"),
    ...                     [4000.0, 1.0], [6000.0, 5.0], np.linspace(5000.0, 5100.0, 200))
    >>> flux = emu.flux(torch.tensor([[5200.0, 2.5]])).numpy()
    >>> result = MCMCFitter(n_steps=300, n_burn=100, min_tau_multiple=5)(
    ...     emu, flux, np.full_like(flux, 1e4))
    >>> result.samples.shape
    (1, 9600, 2)
    """

    name = "mcmc"

    def __init__(
        self,
        *,
        n_walkers=32,
        n_steps=2000,
        n_burn=500,
        thin=1,
        n_samples=None,
        moves="de",
        init_scale=1.0,
        min_tau_multiple=50.0,
        acceptance=(0.1, 0.7),
        seed=0,
        gradient=None,
    ):
        super().__init__()
        self.n_walkers = _check_positive_int(n_walkers, "n_walkers", 4)
        self.n_steps = _check_positive_int(n_steps, "n_steps", 10)
        self.n_burn = _check_positive_int(n_burn, "n_burn", 0)
        self.thin = _check_positive_int(thin, "thin")
        self.n_samples = None if n_samples is None else _check_positive_int(n_samples, "n_samples")
        if moves not in MOVES:
            raise ValueError(f"moves must be one of {sorted(MOVES)}, got {moves!r}")
        self.moves = moves
        self.init_scale = _check_positive_float(init_scale, "init_scale")
        self.min_tau_multiple = _check_positive_float(min_tau_multiple, "min_tau_multiple")
        try:
            a_lo, a_hi = (float(v) for v in acceptance)
        except (TypeError, ValueError):
            raise ValueError(f"acceptance must be (lo, hi), got {acceptance!r}") from None
        if not 0 <= a_lo < a_hi <= 1:
            raise ValueError(f"acceptance must satisfy 0 <= lo < hi <= 1, got {acceptance!r}")
        self.acceptance = (a_lo, a_hi)
        self.seed = int(seed)
        self.gradient = dict(gradient or {})
        try:
            GradientFitter(**self.gradient)  # checked now
        except TypeError as exc:
            raise ValueError(f"invalid gradient settings for MCMCFitter: {exc}") from None

    def get_settings(self):
        return {
            "n_walkers": self.n_walkers,
            "n_steps": self.n_steps,
            "n_burn": self.n_burn,
            "thin": self.thin,
            "n_samples": self.n_samples,
            "moves": self.moves,
            "init_scale": self.init_scale,
            "min_tau_multiple": self.min_tau_multiple,
            "acceptance": list(self.acceptance),
            "seed": self.seed,
            "gradient": dict(self.gradient),
        }

    def _log_prob(self, problem, row):
        def log_prob(theta):
            theta = np.atleast_2d(theta)
            out = np.full(theta.shape[0], -np.inf)
            inside = ~problem.outside(theta)
            if inside.any():
                _, total, ev = problem.objective(
                    torch.as_tensor(theta[inside]), np.full(int(inside.sum()), row)
                )
                lp = -0.5 * total
                if ev["gram"] is not None:
                    lp = lp - 0.5 * torch.logdet(ev["gram"])
                out[inside] = lp.cpu().numpy()
            return np.where(np.isfinite(out), out, -np.inf)

        return log_prob

    def _fit(self, problem, init):
        import emcee

        p, n = problem.n_params, problem.n
        nw = self.n_walkers
        if nw < 2 * p:
            raise ValueError(f"n_walkers must be at least twice the parameters ({2 * p}), got {nw}")
        valid_rows = np.nonzero(problem.valid)[0]
        grad = GradientFitter(**self.gradient)
        theta_opt, conv_opt, _ = grad.optimise(problem, init)
        info = {
            "acceptance_fraction": np.full(n, np.nan),
            "tau": np.full((n, p), np.nan),
            "chain_over_tau": np.full(n, np.nan),
            "n_burn": self.n_burn,
            "n_steps": self.n_steps,
            "thin": self.thin,
            "n_walkers": nw,
            "optimum": np.full((n, problem.n_labels), np.nan),
        }
        if valid_rows.size == 0:
            return self._finish(problem, np.zeros((0, p)), np.zeros(0, dtype=bool), info)
        info["optimum"][valid_rows] = problem.to_physical(theta_opt)
        fish = problem.fisher(torch.as_tensor(theta_opt), valid_rows, prior=True)
        cov = inverse_fisher(fish.cpu(), p)
        lo, hi = problem.box_lo, problem.box_hi
        width = hi - lo
        n_kept = len(range(0, self.n_steps, self.thin)) * nw
        n_out = n_kept if self.n_samples is None else min(self.n_samples, n_kept)
        pick = np.unique(np.linspace(0, n_kept - 1, n_out).round().astype(np.int64))
        samples = np.empty((valid_rows.size, pick.size, problem.n_labels))
        sample_cov = np.empty((valid_rows.size, problem.n_labels, problem.n_labels))
        medians = np.empty((valid_rows.size, p))
        rv_samples = np.full((n, pick.size), np.nan) if problem.rv_bounds is not None else None
        conv = np.zeros(valid_rows.size, dtype=bool)
        emcee_log = logging.getLogger("emcee")
        for k, row in enumerate(valid_rows):
            rng = np.random.default_rng(self.seed + int(row))
            c = cov[k]
            sd = np.sqrt(np.diagonal(c))
            ok = np.isfinite(sd).all() and (sd > 0).all()
            if ok:
                w, v = np.linalg.eigh(0.5 * (c + c.T))
                root = v * np.sqrt(np.maximum(w, 0.0))
            else:
                root = np.diag(np.where(np.isfinite(sd) & (sd > 0), sd, 1e-3 * width))
            z = rng.standard_normal((nw, p))
            p0 = theta_opt[k] + self.init_scale * z @ root.T
            span = np.maximum(width, 1e-300)
            y = np.mod(p0 - lo, 2 * span)  # fold into the box
            p0 = lo + np.where(y > span, 2 * span - y, y)
            p0 = np.clip(p0, lo + 1e-9 * width, hi - 1e-9 * width)
            sampler = emcee.EnsembleSampler(
                nw, p, self._log_prob(problem, row), vectorize=True, moves=_moves(self.moves)
            )
            sampler.random_state = np.random.RandomState(self.seed + int(row)).get_state()
            sampler.run_mcmc(p0, self.n_burn + self.n_steps, progress=False)
            chain = sampler.get_chain(discard=self.n_burn, thin=self.thin)
            level = emcee_log.level
            emcee_log.setLevel(logging.ERROR)  # a short chain is reported by the flag
            try:
                tau = emcee.autocorr.integrated_time(
                    sampler.get_chain(discard=self.n_burn), quiet=True
                )
            finally:
                emcee_log.setLevel(level)
            acc = float(np.mean(sampler.acceptance_fraction))
            ratio = float(self.n_steps / np.max(tau)) if np.all(np.isfinite(tau)) else np.nan
            conv[k] = (
                np.isfinite(ratio)
                and ratio >= self.min_tau_multiple
                and self.acceptance[0] <= acc <= self.acceptance[1]
            )
            flat = chain.reshape(-1, p)
            draws = flat[pick]
            samples[k] = problem.to_physical(draws)
            sample_cov[k] = np.atleast_2d(np.cov(samples[k], rowvar=False))
            medians[k] = np.median(flat, axis=0)
            if rv_samples is not None:
                rv_samples[row] = draws[:, -1]
            info["acceptance_fraction"][row] = acc
            info["tau"][row] = tau
            info["chain_over_tau"][row] = ratio
        if rv_samples is not None:
            info["rv_samples"] = rv_samples
        info["optimum_converged"] = np.zeros(n, dtype=bool)
        info["optimum_converged"][valid_rows] = conv_opt
        result = self._finish(
            problem, theta_opt, conv, info, samples=samples, sample_cov=sample_cov
        )
        result.labels[valid_rows] = problem.to_physical(medians)
        if result.rv is not None:
            result.rv[valid_rows] = medians[:, -1]
            result.rv_err[valid_rows] = np.std(rv_samples[valid_rows], axis=1)
        return result
