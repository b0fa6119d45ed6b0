"""`GradientFitter`: batched, bounded Levenberg–Marquardt fits with several starts."""

import numpy as np
import torch

from ._base import Fitter, _check_positive_float, _check_positive_int, _chunks

__all__ = ["GradientFitter"]


class GradientFitter(Fitter):
    """Batched Levenberg–Marquardt (damped Gauss–Newton) fitting in torch.

    Every spectrum is fitted from ``n_starts`` starting points at once: all
    spectra x starts are rows of one tensor, and each iteration costs one
    emulator Jacobian for the rows whose last step was accepted plus one
    emulator evaluation of the trial points. Steps are projected onto the
    box (the emulator's training box, narrowed by ``bounds``; RV within its
    bounds). The best start (lowest objective) of each spectrum is kept.

    Parameters
    ----------
    n_starts : int, optional
        Starting points per spectrum: ``init`` (or the centre of the box),
        then ``n_starts - 1`` points of a scrambled Sobol sequence over the
        box (seeded by ``seed``).
    max_iter : int, optional
        Largest number of iterations.
    tol : float, optional
        Convergence test, in chi-square units: a start has converged when
        the decrease of the objective that an undamped, projected
        Gauss–Newton step predicts is below ``tol`` (about the squared
        distance to the optimum in units of the label errors: 0.01 means
        within ~0.1 sigma).
    seed : int, optional
        Seed of the Sobol starts.
    lambda0 : float, optional
        Initial Marquardt damping (relative to the diagonal of ``J^T J``).
    max_elements : int, optional
        Largest Jacobian chunk (rows x pixels x parameters) held at once.

    Attributes
    ----------
    fit_info : dict
        Of the last call: ``n_iter`` ``(n,)`` iterations of the kept start,
        ``best_start`` ``(n,)``, ``objective_starts`` ``(n, n_starts)``,
        ``n_evaluations`` and ``n_jacobians`` (emulator rows evaluated),
        ``method``, ``n_converged``, ``seconds``.

    Notes
    -----
    The covariance is the Laplace (Gauss–Newton) approximation at the
    optimum: the inverse of ``J^T W J`` plus the prior information, where
    ``J`` holds the derivatives with respect to labels, RV and continuum
    coefficients, so that the labels' covariance is marginalised over the
    nuisance parameters. A spectrum whose kept start did not pass the test
    within ``max_iter`` iterations is flagged ``FIT_NOT_CONVERGED``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from stellarml.models.emulator import PayneEmulator
    >>> from stellarml.fitting import GradientFitter
    >>> rng = np.random.default_rng(2)
    >>> emu = PayneEmulator(rng.normal(size=(200, 4, 2)), rng.normal(size=(200, 4)),
    ...                     0.1 * rng.normal(size=(200, 4)), np.ones(200), ("teff", "logg"),
    ...                     [4000.0, 1.0], [6000.0, 5.0], np.linspace(5000.0, 5100.0, 200))
    >>> truth = np.array([[5200.0, 2.5]])
    >>> flux = emu.flux(torch.tensor(truth, dtype=torch.float32)).numpy()
    >>> result = GradientFitter()(emu, flux, np.full_like(flux, 1e4))
    >>> bool(result.converged[0]), np.allclose(result.labels, truth, rtol=1e-3)
    (True, True)
    """

    name = "gradient"

    def __init__(
        self, *, n_starts=4, max_iter=50, tol=1e-2, seed=0, lambda0=1e-3, max_elements=1 << 23
    ):
        super().__init__()
        self.n_starts = _check_positive_int(n_starts, "n_starts")
        self.max_iter = _check_positive_int(max_iter, "max_iter")
        self.tol = _check_positive_float(tol, "tol")
        self.seed = int(seed)
        self.lambda0 = _check_positive_float(lambda0, "lambda0")
        self.max_elements = _check_positive_int(max_elements, "max_elements")

    def get_settings(self):
        return {
            "n_starts": self.n_starts,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "seed": self.seed,
            "lambda0": self.lambda0,
            "max_elements": self.max_elements,
        }

    def _normal(self, problem, theta, rows):
        """H, g, chi2, objective of rows (chunked)."""
        p = problem.n_params
        b = theta.shape[0]
        h = torch.empty((b, p, p), dtype=torch.float64)
        g = torch.empty((b, p), dtype=torch.float64)
        obj = torch.empty(b, dtype=torch.float64)
        for sl in _chunks(problem, b, p + 1, self.max_elements):
            hh, gg, _, tot = problem.normal_equations(theta[sl], rows[sl])
            h[sl], g[sl], obj[sl] = hh.cpu(), gg.cpu(), tot.cpu()
        return h, g, obj

    def _objective(self, problem, theta, rows):
        obj = torch.empty(theta.shape[0], dtype=torch.float64)
        for sl in _chunks(problem, theta.shape[0], 1, self.max_elements):
            obj[sl] = problem.objective(theta[sl], rows[sl])[1].cpu()
        return obj

    def _fit(self, problem, init):
        theta, converged, info = self.optimise(problem, init)
        return self._finish(problem, theta, converged, info)

    def optimise(self, problem, init=None):
        """The optimum of a `~stellarml.fitting.FitProblem`'s valid rows.

        Returns
        -------
        theta : `numpy.ndarray`
            ``(n_valid, P)`` parameters (scaled labels, then rv in km/s).
        converged : `numpy.ndarray`
            ``(n_valid,)`` bool.
        info : dict
            The record that becomes ``fit_info``.
        """
        valid_rows = np.nonzero(problem.valid)[0]
        n_valid, s, p = valid_rows.size, self.n_starts, problem.n_params
        info = {"n_iter": np.zeros(problem.n, dtype=np.int64)}
        if n_valid == 0:
            return np.zeros((0, p)), np.zeros(0, dtype=bool), info
        starts = problem.start_points(init, s, self.seed)[valid_rows]  # (n_valid, S, P)
        theta = torch.as_tensor(starts.reshape(-1, p), dtype=torch.float64)
        rows = np.repeat(valid_rows, s)
        lo = torch.as_tensor(problem.box_lo, dtype=torch.float64)
        hi = torch.as_tensor(problem.box_hi, dtype=torch.float64)
        b = theta.shape[0]
        h, g, obj = self._normal(problem, theta, rows)
        lam = torch.full((b,), self.lambda0, dtype=torch.float64)
        active = torch.ones(b, dtype=torch.bool)
        converged = torch.zeros(b, dtype=torch.bool)
        n_iter = torch.zeros(b, dtype=torch.int64)
        n_eval, n_jac = b, b
        eye = torch.eye(p, dtype=torch.float64)
        for _ in range(self.max_iter):
            a = torch.nonzero(active).flatten()
            if a.numel() == 0:
                break
            ha, ga, th = h[a], g[a], theta[a]
            diag = ha.diagonal(dim1=1, dim2=2).clamp_min(1e-12)
            dmat = torch.diag_embed(diag)
            # convergence: decrease predicted by the undamped, projected step
            s0 = -torch.linalg.solve(ha + 1e-9 * dmat + 1e-12 * eye, ga)
            s0 = torch.clamp(th + s0, lo, hi) - th
            pred = -(2 * (ga * s0).sum(1) + torch.einsum("bi,bij,bj->b", s0, ha, s0))
            done = pred < self.tol
            converged[a[done]] = True
            active[a[done]] = False
            keep = ~done
            a, ha, ga, th = a[keep], ha[keep], ga[keep], th[keep]
            if a.numel() == 0:
                break
            n_iter[a] += 1
            step = -torch.linalg.solve(ha + lam[a, None, None] * dmat[keep] + 1e-12 * eye, ga)
            trial = torch.clamp(th + step, lo, hi)
            new_obj = self._objective(problem, trial, rows[a.numpy()])
            n_eval += a.numel()
            accept = new_obj < obj[a]
            acc = a[accept]
            rej = a[~accept]
            lam[rej] *= 10.0
            lam[acc] = (lam[acc] * 0.3).clamp_min(1e-9)
            stalled = lam > 1e12  # no decrease at any damping: the float32 floor
            active &= ~stalled
            if acc.numel():
                theta[acc] = trial[accept]
                hh, gg, oo = self._normal(problem, theta[acc], rows[acc.numpy()])
                h[acc], g[acc], obj[acc] = hh, gg, oo
                n_jac += acc.numel()
        obj_s = obj.view(n_valid, s).numpy()
        best = obj_s.argmin(axis=1)
        pick = np.arange(n_valid) * s + best
        theta_best = theta[pick].numpy()
        conv = converged[pick].numpy()
        info["n_iter"][valid_rows] = n_iter[pick].numpy()
        info.update(
            best_start=np.where(problem.valid, 0, -1),
            objective_starts=np.full((problem.n, s), np.nan),
            n_evaluations=int(n_eval),
            n_jacobians=int(n_jac),
        )
        info["best_start"][valid_rows] = best
        info["objective_starts"][valid_rows] = obj_s
        return theta_best, conv, info
