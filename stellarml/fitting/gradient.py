"""`GradientFitter`: batched Levenberg–Marquardt fits of spectra with an emulator."""

from dataclasses import dataclass

import numpy as np
import torch

from ..flags import LabelFlag
from ..posterior import GaussianPosterior
from .crlb import _inputs

__all__ = ["FitResult", "GradientFitter"]


@dataclass
class FitResult:
    """Best-fitting labels of a batch of spectra, with their Laplace covariance.

    Attributes
    ----------
    label_names : tuple of str
    labels : `numpy.ndarray`
        ``(n, L)`` best-fitting labels in physical units (NaN for rows without data).
    covariance : `numpy.ndarray`
        ``(n, L, L)`` inverse Fisher matrix at the best fit (the Cramér–Rao
        bound there, `stellarml.fitting.cramer_rao_bound`), in label units squared.
    chi2 : `numpy.ndarray`
        ``(n,)`` χ² of the best fit over the pixels with data.
    dof : `numpy.ndarray`
        ``(n,)`` pixels with data minus fitted labels.
    converged : `numpy.ndarray`
        ``(n,)`` bool, whether the fit met the convergence test.
    n_iter : `numpy.ndarray`
        ``(n,)`` iterations of the best start.
    """

    label_names: tuple
    labels: np.ndarray
    covariance: np.ndarray
    chi2: np.ndarray
    dof: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray

    def to_posterior(self):
        """A `~stellarml.posterior.GaussianPosterior` with flags and fit diagnostics.

        Rows that did not converge carry `~stellarml.flags.LabelFlag.FIT_NOT_CONVERGED`;
        the diagnostics are ``chi2``, ``dof`` and the per-label ``crlb``.

        Returns
        -------
        posterior : `~stellarml.posterior.GaussianPosterior`
        """
        flags = np.where(self.converged, 0, int(LabelFlag.FIT_NOT_CONVERGED)).astype(np.int64)
        sigma = np.sqrt(np.clip(np.diagonal(self.covariance, axis1=1, axis2=2), 0, None))
        diagnostics = {
            "chi2": self.chi2,
            "dof": self.dof.astype(np.float64),
            "crlb": {name: sigma[:, k] for k, name in enumerate(self.label_names)},
        }
        return GaussianPosterior(
            self.labels, self.covariance, self.label_names, flags=flags, diagnostics=diagnostics
        )


class GradientFitter:
    """Batched Levenberg–Marquardt fitting of spectra with a `SpectrumEmulator`.

    Every spectrum is fitted from ``n_starts`` starting points at once: all
    spectra × starts form one batch, so each iteration is one emulator pass
    and one Jacobian (forward-mode autodiff) for the whole batch. A step
    solves ``(JᵀWJ + λ diag(JᵀWJ)) δ = JᵀW r`` in scaled labels; it is
    kept if it lowers χ² (then λ /= 3), otherwise λ *= 5. Labels are held
    inside the emulator's training box widened by ``margin`` (in units of the
    box). The best start per spectrum is returned, with the inverse Fisher
    matrix at the optimum as its covariance.

    A fit has **converged** when, within ``max_iter`` iterations, an accepted
    step lowered χ² by less than ``tol`` × χ² + ``atol`` or moved no scaled
    label by more than ``xtol``, or no step lowered χ² even at the heaviest
    damping (λ ≥ 1e8). Nuisance parameters (RV, continuum) are not
    fitted: the spectra must be on the emulator's grid, in its rest frame and
    normalisation.

    Parameters
    ----------
    n_starts : int
        Starting points per spectrum: the user's ``init`` (or the box centre)
        and ``n_starts - 1`` uniform draws in the inner 80 % of the box.
    max_iter : int
        Iterations.
    tol, atol, xtol : float
        Convergence tolerances: relative and absolute χ² decrease, largest
        scaled step.
    margin : float
        How far outside the training box, in box units, labels may go.
    seed : int
        Seed of the random starts.

    Attributes
    ----------
    fit_info : dict
        Of the last call: ``n_starts``, ``iterations`` run, ``n_converged``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from stellarml.fitting import GradientFitter
    >>> from stellarml.models.emulator import PayneEmulator
    >>> rng = np.random.default_rng(1)
    >>> emu = PayneEmulator(rng.normal(size=(200, 4, 2)), rng.normal(size=(200, 4)),
    ...                     rng.normal(size=(200, 4)), np.ones(200), ["teff", "logg"],
    ...                     [4000.0, 1.0], [6000.0, 5.0], np.linspace(5000.0, 5200.0, 200))
    >>> truth = np.array([[5200.0, 3.5]])
    >>> flux = emu.flux(torch.tensor(truth, dtype=torch.float32)).numpy()
    >>> result = GradientFitter()(emu, flux, np.full((1, 200), 1e4))
    >>> bool(np.allclose(result.labels, truth, rtol=1e-3)), bool(result.converged[0])
    (True, True)
    """

    def __init__(
        self, *, n_starts=4, max_iter=60, tol=1e-7, atol=1e-2, xtol=1e-6, margin=0.0, seed=0
    ):
        if int(n_starts) < 1 or int(max_iter) < 1:
            raise ValueError("n_starts and max_iter must be positive integers")
        if not (tol > 0 and atol >= 0 and xtol > 0 and margin >= 0):
            raise ValueError("tol and xtol must be positive, atol and margin non-negative")
        self.n_starts = int(n_starts)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.atol = float(atol)
        self.xtol = float(xtol)
        self.margin = float(margin)
        self.seed = int(seed)
        self.fit_info = {}

    def __call__(self, emulator, flux, ivar, *, init=None):
        """Fit ``flux`` (``(n, npix)`` normalised, on the emulator grid) with ``ivar``.

        Parameters
        ----------
        emulator : `~stellarml.models.emulator.SpectrumEmulator`
        flux, ivar : array-like
            ``(n, npix)`` flux and inverse variance; ``ivar = 0`` marks
            pixels without data (their flux may be anything, NaN included).
        init : array-like, optional
            ``(n, L)`` or ``(L,)`` first starting labels, in physical units.

        Returns
        -------
        result : `FitResult`
            Rows without any pixel with data have NaN labels and are not converged.

        Raises
        ------
        ValueError
            On shapes that do not match the emulator, negative or non-finite
            ``ivar``, or non-finite flux where ``ivar > 0``.
        """
        flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
        n, L = flux.shape[0], emulator.n_labels
        centre = ((emulator.label_lo + emulator.label_hi) / 2).double().cpu().numpy()
        start = np.broadcast_to(centre if init is None else np.asarray(init, float), (n, L))
        _, ivar = _inputs(emulator, start, ivar)
        if flux.shape != ivar.shape:
            raise ValueError(f"flux has shape {flux.shape} but ivar {ivar.shape}")
        if not np.isfinite(flux[ivar > 0]).all():
            raise ValueError("flux must be finite wherever ivar > 0")
        flux = np.where(ivar > 0, flux, 0.0)
        has_data = (ivar > 0).sum(axis=1) > L

        lo, hi = -0.5 - self.margin, 0.5 + self.margin
        width = (emulator.label_hi - emulator.label_lo).double().cpu().numpy()
        x0 = np.clip((start - emulator.label_lo.double().cpu().numpy()) / width - 0.5, lo, hi)
        rng = np.random.default_rng(self.seed)
        starts = [x0] + [rng.uniform(-0.4, 0.4, (n, L)) for _ in range(self.n_starts - 1)]
        S = len(starts)
        x = torch.tensor(np.stack(starts, axis=1).reshape(n * S, L))  # rows: spectrum-major
        f = torch.tensor(np.repeat(flux, S, axis=0))
        w = torch.tensor(np.repeat(ivar, S, axis=0))
        dtype = emulator.label_lo.dtype

        def model(xx):
            with torch.no_grad():
                return emulator(xx.to(dtype)).double()

        def chi2_of(xx, rows=slice(None)):
            return (w[rows] * (f[rows] - model(xx)) ** 2).sum(dim=1)

        chi2 = chi2_of(x)
        lam = torch.full((n * S,), 1e-3, dtype=torch.float64)
        done = torch.zeros(n * S, dtype=torch.bool)
        iters = torch.zeros(n * S, dtype=torch.int64)
        eye = torch.eye(L, dtype=torch.float64)
        for _ in range(self.max_iter):
            active = ~done
            if not active.any():
                break
            xa = x[active]
            jac = emulator.jacobian(xa.to(dtype)).double()
            resid = f[active] - model(xa)
            wa = w[active]
            A = torch.einsum("npk,np,npl->nkl", jac, wa, jac)
            g = torch.einsum("npk,np,np->nk", jac, wa, resid)
            damp = lam[active][:, None, None] * (
                torch.diagonal(A, dim1=1, dim2=2)[:, :, None] * eye
            )
            step = torch.linalg.solve(A + damp + 1e-12 * eye, g)
            x_new = (xa + step).clamp(lo, hi)
            chi2_new = chi2_of(x_new, active)
            better = chi2_new < chi2[active]
            decrease = chi2[active] - chi2_new
            moved = (x_new - xa).abs().amax(dim=1)
            small = better & (
                (decrease < self.tol * chi2[active] + self.atol) | (moved < self.xtol)
            )
            # no step lowers chi2 even with the heaviest damping: a minimum to rounding
            small |= ~better & (lam[active] >= 1e8)
            idx = torch.nonzero(active).squeeze(1)
            x[idx[better]] = x_new[better]
            chi2[idx[better]] = chi2_new[better]
            lam[idx] = torch.where(better, lam[idx] / 3, lam[idx] * 5).clamp(1e-9, 1e9)
            iters[idx] += 1
            done[idx[small]] = True

        chi2_ns = chi2.reshape(n, S)
        best = torch.argmin(chi2_ns, dim=1)
        rows = torch.arange(n) * S + best
        xb = x[rows]
        jac = emulator.jacobian(xb.to(dtype)).double()
        fisher = torch.einsum("npk,np,npl->nkl", jac, w[rows], jac).numpy()
        fisher = fisher / width[None, :, None] / width[None, None, :]
        cov = np.full((n, L, L), np.nan)
        for i in np.flatnonzero(has_data):
            try:
                cov[i] = np.linalg.inv(fisher[i])
            except np.linalg.LinAlgError:
                pass
        labels = (xb.numpy() + 0.5) * width + emulator.label_lo.double().cpu().numpy()
        labels[~has_data] = np.nan
        converged = done[rows].numpy() & has_data
        dof = (ivar > 0).sum(axis=1) - L
        self.fit_info = {
            "n_starts": S,
            "iterations": int(iters.max()),
            "n_converged": int(converged.sum()),
        }
        return FitResult(
            tuple(emulator.label_names),
            labels,
            cov,
            np.where(has_data, chi2[rows].numpy(), np.nan),
            dof,
            converged,
            iters[rows].numpy(),
        )
