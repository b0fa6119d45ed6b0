"""`CMAESFitter`: global search with CMA-ES (pycma), populations evaluated in one batch."""

import numpy as np
import torch

from ._base import Fitter, _check_positive_float, _check_positive_int

__all__ = ["CMAESFitter"]

#: Stop reasons of pycma that count as converged (the others: budget exhausted,
#: stagnation, numerical trouble).
CONVERGED_STOPS = frozenset({"tolfun", "tolx", "tolfunhist", "tolflatfitness"})


class CMAESFitter(Fitter):
    """Covariance matrix adaptation evolution strategy, one strategy per spectrum.

    The strategies of all spectra advance in lockstep: at each generation
    every running strategy proposes its population (`cma.CMAEvolutionStrategy.ask`),
    all populations are evaluated in one batched emulator call, and each is
    told its objective values. The search runs in the box rescaled to
    ``[0, 1]`` per parameter, with pycma's boundary transform.

    Parameters
    ----------
    sigma0 : float, optional
        Initial step size, as a fraction of the box width.
    popsize : int, optional
        Population size (default pycma's ``4 + 3 ln P`` for ``P`` parameters).
    max_evals : int, optional
        Largest number of objective evaluations per spectrum.
    tolfun : float, optional
        Stop when the objective (chi-square units) varies by less than this
        over the recent generations and the population (pycma ``tolfun``).
    tolx : float, optional
        Stop when the steps are below this (fraction of the box; pycma ``tolx``).
    seed : int, optional
        Spectrum ``i`` uses pycma seed ``seed + 1 + i``. The global numpy
        random state, which pycma draws from, is restored afterwards.

    Attributes
    ----------
    fit_info : dict
        Of the last call: ``stop`` (per spectrum, pycma's stop reasons joined
        by ``","``), ``n_evaluations`` ``(n,)``, ``n_generations`` ``(n,)``,
        ``cma_std`` ``(n, P)`` (the final search distribution's standard
        deviations in physical units, and km/s for rv: a measure of the
        search, not of the label errors), ``method``, ``n_converged``, ``seconds``.

    Notes
    -----
    A spectrum has converged when pycma stopped for one of `CONVERGED_STOPS`;
    a budget stop (``maxfevals``) or stagnation sets ``FIT_NOT_CONVERGED``.
    The covariance of the result is the Laplace approximation at the best
    point found (as for `~stellarml.fitting.GradientFitter`), not CMA's own
    search covariance.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from stellarml.models.emulator import PayneEmulator
    >>> from stellarml.fitting import CMAESFitter
    >>> rng = np.random.default_rng(2)
    >>> emu = PayneEmulator(rng.normal(size=(200, 4, 2)), rng.normal(size=(200, 4)),
    ...                     0.1 * rng.normal(size=(200, 4)), np.ones(200), ("teff", "logg"),
    ...                     [4000.0, 1.0], [6000.0, 5.0], np.linspace(5000.0, 5100.0, 200))
    >>> truth = np.array([[5200.0, 2.5]])
    >>> flux = emu.flux(torch.tensor(truth, dtype=torch.float32)).numpy()
    >>> result = CMAESFitter()(emu, flux, np.full_like(flux, 1e4))
    >>> bool(result.converged[0]), np.allclose(result.labels, truth, rtol=1e-3)
    (True, True)
    """

    name = "cmaes"

    def __init__(self, *, sigma0=0.3, popsize=None, max_evals=3000, tolfun=1e-2, tolx=1e-5, seed=0):
        super().__init__()
        self.sigma0 = _check_positive_float(sigma0, "sigma0")
        self.popsize = None if popsize is None else _check_positive_int(popsize, "popsize", 2)
        self.max_evals = _check_positive_int(max_evals, "max_evals")
        self.tolfun = _check_positive_float(tolfun, "tolfun")
        self.tolx = _check_positive_float(tolx, "tolx")
        self.seed = int(seed)

    def get_settings(self):
        return {
            "sigma0": self.sigma0,
            "popsize": self.popsize,
            "max_evals": self.max_evals,
            "tolfun": self.tolfun,
            "tolx": self.tolx,
            "seed": self.seed,
        }

    def _fit(self, problem, init):
        import cma

        valid_rows = np.nonzero(problem.valid)[0]
        p = problem.n_params
        n = problem.n
        info = {
            "stop": np.array([""] * n, dtype=object),
            "n_evaluations": np.zeros(n, dtype=np.int64),
            "n_generations": np.zeros(n, dtype=np.int64),
            "cma_std": np.full((n, p), np.nan),
        }
        if valid_rows.size == 0:
            return self._finish(problem, np.zeros((0, p)), np.zeros(0, dtype=bool), info)
        lo, width = problem.box_lo, problem.box_hi - problem.box_lo
        x0 = (problem.start_points(init, 1, self.seed)[valid_rows, 0] - lo) / width
        # pycma seeds and draws from the global numpy generator: put it back after
        state = np.random.get_state()  # noqa: NPY002
        try:
            strategies = []
            for k, row in enumerate(valid_rows):
                opts = {
                    "bounds": [0.0, 1.0],
                    "maxfevals": self.max_evals,
                    "tolfun": self.tolfun,
                    "tolx": self.tolx,
                    "seed": self.seed + 1 + int(row),
                    "verbose": -9,
                    "verb_log": 0,
                    "verb_disp": 0,
                }
                if self.popsize is not None:
                    opts["popsize"] = self.popsize
                x_start = np.clip(x0[k], 1e-6, 1 - 1e-6)
                strategies.append(cma.CMAEvolutionStrategy(x_start, self.sigma0, opts))
            running = list(range(len(strategies)))
            while running:
                pops = [np.asarray(strategies[k].ask()) for k in running]
                sizes = [len(pop) for pop in pops]
                y = np.concatenate(pops)
                theta = torch.as_tensor(lo + np.clip(y, 0.0, 1.0) * width, dtype=torch.float64)
                rows = np.repeat(valid_rows[running], sizes)
                obj = problem.objective(theta, rows)[1].cpu().numpy()
                obj = np.where(np.isfinite(obj), obj, 1e30)
                start = 0
                still = []
                for k, pop, size in zip(running, pops, sizes, strict=True):
                    strategies[k].tell(list(pop), obj[start : start + size].tolist())
                    start += size
                    if not strategies[k].stop():
                        still.append(k)
                running = still
        finally:
            np.random.set_state(state)  # noqa: NPY002
        theta_best = np.empty((valid_rows.size, p))
        conv = np.zeros(valid_rows.size, dtype=bool)
        scale = problem.jacobian_scale()
        for k, row in enumerate(valid_rows):
            es = strategies[k]
            xbest = es.result.xbest if es.result.xbest is not None else es.mean
            theta_best[k] = lo + np.clip(np.asarray(xbest), 0.0, 1.0) * width
            stops = {str(key) for key in es.stop()}
            conv[k] = bool(stops) and stops <= CONVERGED_STOPS
            info["stop"][row] = ",".join(sorted(stops))
            info["n_evaluations"][row] = es.countevals
            info["n_generations"][row] = es.countiter
            info["cma_std"][row] = np.asarray(es.result.stds) * width * scale
        return self._finish(problem, theta_best, conv, info)
