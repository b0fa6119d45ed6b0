"""The Cramér–Rao bound of labels fitted with an emulator, and the inverse of a Fisher matrix."""

import numpy as np
import torch

from ._likelihood import FitProblem

__all__ = ["cramer_rao_bound", "fisher_matrix", "inverse_fisher"]

#: Relative eigenvalue (of the Fisher matrix scaled to unit diagonal) below which a
#: direction counts as unconstrained.
SINGULAR_RTOL = 1e-9

#: A parameter whose unit vector has more than this weight (squared) in the
#: unconstrained directions has an infinite bound.
NULL_WEIGHT = 1e-6


def inverse_fisher(fisher, n_keep=None):
    """Inverse Fisher matrix of the first ``n_keep`` parameters, tolerant of singularity.

    The other parameters are marginalised (the leading block of the full
    inverse). The matrix is first scaled to unit diagonal; its eigenvalues
    below `SINGULAR_RTOL` times the largest are unconstrained directions. A
    parameter with a share of more than `NULL_WEIGHT` in those directions (or
    with no information at all) gets an infinite variance and zero
    covariances; the others come from the pseudo-inverse.

    Parameters
    ----------
    fisher : array-like or `torch.Tensor`
        ``(n, P, P)`` symmetric positive semi-definite Fisher matrices.
    n_keep : int, optional
        Leading parameters to return (default all).

    Returns
    -------
    cov : `numpy.ndarray`
        ``(n, n_keep, n_keep)`` float64; rows with non-finite input are NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.fitting import inverse_fisher
    >>> inverse_fisher(np.array([[[4.0, 0.0], [0.0, 0.0]]]))
    array([[[0.25, 0.  ],
            [0.  ,  inf]]])
    """
    f = torch.as_tensor(np.asarray(fisher, dtype=np.float64))
    if f.ndim != 3 or f.shape[1] != f.shape[2]:
        raise ValueError(f"fisher must be (n, P, P), got {tuple(f.shape)}")
    p = f.shape[1]
    k = p if n_keep is None else int(n_keep)
    finite = torch.isfinite(f).all(dim=2).all(dim=1)
    f = torch.where(finite[:, None, None], f, torch.eye(p, dtype=f.dtype))
    f = 0.5 * (f + f.transpose(1, 2))
    d = f.diagonal(dim1=1, dim2=2)
    none = d <= 0
    s = torch.where(none, 0.0, 1.0 / d.clamp_min(1e-300).sqrt())
    fs = s[:, :, None] * f * s[:, None, :]
    fs = fs + torch.diag_embed(none.to(fs.dtype))  # keep information-less rows decoupled
    w, v = torch.linalg.eigh(fs)
    wmax = w[:, -1:].clamp_min(1e-300)
    null = w <= SINGULAR_RTOL * wmax
    inv_w = torch.where(null, 0.0, 1.0 / torch.where(null, 1.0, w))
    cov_s = (v * inv_w[:, None, :]) @ v.transpose(1, 2)
    cov = s[:, :, None] * cov_s * s[:, None, :]
    null_weight = (v.square() * null[:, None, :].to(v.dtype)).sum(2)
    unconstrained = none | (null_weight > NULL_WEIGHT)
    cov = cov.numpy()[:, :k, :k].copy()
    unc = unconstrained.numpy()[:, :k]
    rows, cols = np.nonzero(unc)
    cov[rows, cols, :] = 0.0
    cov[rows, :, cols] = 0.0
    cov[rows, cols, cols] = np.inf
    cov[~finite.numpy()] = np.nan
    return cov


def fisher_matrix(
    emulator, labels, ivar, *, rv=None, continuum_degree=None, continuum=None, model_error=None
):
    """Fisher information of labels (and nuisance parameters) for spectra with Gaussian noise.

    ``F = Jᵀ diag(ivar) J`` with ``J`` the derivatives of the model spectrum
    (the emulator's, through its exact Jacobian) with respect to the
    physical labels, then the radial velocity [km/s] when ``rv`` is given,
    then the ``continuum_degree + 1`` Legendre coefficients of a
    multiplicative continuum when that is given (the model of
    `stellarml.fitting`).

    Parameters
    ----------
    emulator : `~stellarml.models.emulator.SpectrumEmulator`
        The emulator (its interface; duck-typed).
    labels : array-like
        ``(n, L)`` or ``(L,)`` physical labels in ``emulator.label_names`` order.
    ivar : array-like
        ``(n, npix)`` or ``(npix,)`` inverse variance of the normalised flux
        on the emulator's grid (0: no information).
    rv : float or array-like, optional
        Radial velocity [km/s] (scalar or ``(n,)``) of the model: the RV is
        then a parameter.
    continuum_degree : int, optional
        The continuum coefficients are parameters.
    continuum : array-like, optional
        ``(n, degree + 1)`` (or ``(degree + 1,)``) Legendre coefficients of
        that continuum (default flat at 1).
    model_error : float or array-like, optional
        The emulator's own error [normalised flux], added in quadrature to
        the noise.

    Returns
    -------
    fisher : `numpy.ndarray`
        ``(n, P, P)`` float64, in inverse squared units of the labels (K,
        dex, km/s) and of the nuisance parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.fitting import fisher_matrix
    >>> from stellarml.models.emulator import PayneEmulator
    >>> rng = np.random.default_rng(1)
    >>> emu = PayneEmulator(rng.normal(size=(40, 3, 2)), rng.normal(size=(40, 3)),
    ...                     rng.normal(size=(40, 3)), np.ones(40), ["teff", "logg"],
    ...                     [4000.0, 1.0], [6000.0, 5.0], np.linspace(5000.0, 5040.0, 40))
    >>> fisher_matrix(emu, [5000.0, 3.0], np.full(40, 2500.0)).shape
    (1, 2, 2)
    >>> fisher_matrix(emu, [5000.0, 3.0], np.full(40, 2500.0), rv=0.0, continuum_degree=2).shape
    (1, 6, 6)
    """
    problem, theta, coef = _problem(
        emulator, labels, ivar, rv, continuum_degree, continuum, model_error
    )
    fisher = _fisher_at(problem, theta, np.arange(problem.n), coef).cpu().numpy()
    scale = np.concatenate([problem.jacobian_scale(), np.ones(problem.n_continuum)])
    return fisher / np.outer(scale, scale)


def _problem(emulator, labels, ivar, rv, continuum_degree, continuum, model_error):
    """A `FitProblem` for the bound, the parameters at ``labels`` and the continuum."""
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim == 1:
        labels = labels[None]
    n_labels = len(emulator.label_names)
    if labels.ndim != 2 or labels.shape[1] != n_labels:
        raise ValueError(f"labels must be (n, {n_labels}) physical labels, got {labels.shape}")
    if not np.isfinite(labels).all():
        raise ValueError("labels must be finite")
    ivar = np.asarray(ivar, dtype=np.float64)
    if ivar.ndim == 1:
        ivar = np.tile(ivar, (labels.shape[0], 1))
    npix = len(emulator.wavelength)
    if ivar.shape != (labels.shape[0], npix):
        raise ValueError(
            f"ivar must be (n={labels.shape[0]}, npix={npix}) on the emulator's grid, "
            f"got shape {ivar.shape}"
        )
    n = labels.shape[0]
    rv_values = rv_bounds = None
    if rv is not None:
        rv_values = np.broadcast_to(np.asarray(rv, dtype=np.float64), (n,)).copy()
        span = max(1.0, float(np.abs(rv_values).max()) * 2.0)
        rv_bounds = (-span - 1.0, span + 1.0)
    problem = FitProblem(
        emulator,
        np.ones_like(ivar),
        ivar,
        rv=rv_bounds,
        continuum_degree=continuum_degree,
        model_error=model_error,
    )
    theta = problem.to_scaled(labels)
    if rv_values is not None:
        theta = np.concatenate([theta, rv_values[:, None]], axis=1)
    coef = None
    if continuum is not None:
        if problem.degree is None:
            raise ValueError("continuum coefficients need continuum_degree")
        coef = np.asarray(continuum, dtype=np.float64)
        if coef.ndim == 1:
            coef = np.tile(coef, (n, 1))
        if coef.shape != (n, problem.n_continuum):
            raise ValueError(
                f"continuum must be (n, {problem.n_continuum}) coefficients, got {coef.shape}"
            )
    return problem, theta, coef


def cramer_rao_bound(
    emulator,
    labels,
    ivar,
    *,
    rv=None,
    continuum_degree=None,
    continuum=None,
    model_error=None,
    return_cov=False,
):
    """Per-spectrum Cramér–Rao bound on the labels from the emulator's Jacobian.

    ``sigma_j = sqrt(diag(F^-1))_j`` with the Fisher matrix
    ``F = J^T diag(ivar) J`` of the model spectrum's derivatives ``J`` with
    respect to the physical labels (``emulator.jacobian`` divided by the
    label ranges). With nuisance parameters, their derivatives are extra
    columns of ``J`` and the bound is marginalised over them: a radial
    velocity (``rv``), and a multiplicative Legendre continuum of degree
    ``continuum_degree`` (see `stellarml.fitting` for the model).

    Parameters
    ----------
    emulator : `~stellarml.models.emulator.SpectrumEmulator`
        The emulator (its interface; duck-typed).
    labels : array-like
        ``(n, L)`` or ``(L,)`` physical labels (in ``emulator.label_names``
        order) at which the bound is computed.
    ivar : array-like
        ``(n, npix)`` or ``(npix,)`` inverse variance per pixel on the
        emulator's grid (0 = no information).
    rv : float or array-like, optional
        Radial velocity [km/s] (scalar or ``(n,)``): when given, the RV is a
        fitted parameter at this value and the bound is marginalised over it.
    continuum_degree : int, optional
        Marginalise over a multiplicative continuum of this degree.
    continuum : array-like, optional
        ``(n, degree + 1)`` Legendre coefficients of that continuum (default
        a flat continuum at 1).
    model_error : float or array-like, optional
        The emulator's own error [normalised flux], scalar or per pixel,
        added in quadrature to the noise (the bound then includes it).
    return_cov : bool, optional
        Also return the ``(n, L, L)`` inverse Fisher matrix.

    Returns
    -------
    sigma : `numpy.ndarray`
        ``(n, L)`` lower bounds on the standard deviation of an unbiased
        estimator of each label, in the labels' physical units. A label the
        spectrum does not constrain (its Fisher matrix is singular in its
        direction: no pixel depends on it, or it is degenerate with other
        parameters) has an infinite bound; rows whose ``ivar`` or Jacobian is
        not finite are NaN.
    cov : `numpy.ndarray`
        Only with ``return_cov=True``.

    Notes
    -----
    Reported by `stellarml.derive_labels` for emulator models as the
    ``<label>_crlb`` columns (the ``crlb`` diagnostic), computed at the
    fitted labels with the fitted nuisance parameters.

    Examples
    --------
    A one-label emulator whose flux is linear in the label: the bound is
    ``1 / sqrt(sum(ivar * slope**2))``.

    >>> import numpy as np, torch
    >>> from stellarml.models.emulator import PayneEmulator
    >>> from stellarml.fitting import cramer_rao_bound
    >>> rng = np.random.default_rng(1)
    >>> emu = PayneEmulator(rng.normal(size=(100, 2, 2)), rng.normal(size=(100, 2)),
    ...                     0.1 * rng.normal(size=(100, 2)), np.ones(100), ("teff", "logg"),
    ...                     [4000.0, 1.0], [6000.0, 5.0], np.linspace(5000.0, 5100.0, 100))
    >>> sigma = cramer_rao_bound(emu, [5000.0, 3.0], np.full(100, 1e4))
    >>> sigma.shape
    (1, 2)
    """
    problem, theta, coef = _problem(
        emulator, labels, ivar, rv, continuum_degree, continuum, model_error
    )
    n_labels = problem.n_labels
    fisher = _fisher_at(problem, theta, np.arange(problem.n), coef)
    scale = problem.jacobian_scale()
    cov_params = inverse_fisher(fisher, problem.n_params)
    cov = cov_params[:, :n_labels, :n_labels] * np.outer(scale[:n_labels], scale[:n_labels])
    sigma = np.sqrt(np.diagonal(cov, axis1=1, axis2=2)).copy()
    return (sigma, cov) if return_cov else sigma


def _fisher_at(problem, theta, rows, coef=None):
    """Fisher matrix at ``theta`` with a given continuum (default flat at 1)."""
    if problem.degree is None:
        return problem.fisher(torch.as_tensor(theta), rows, prior=False)
    ev = problem.model(torch.as_tensor(theta), rows, jacobian=True)
    if coef is None:
        coef = np.zeros((len(rows), problem.n_continuum))
        coef[:, 0] = 1.0
    cont = torch.as_tensor(coef, dtype=problem.dtype) @ problem.basis.T
    sw = problem.sqrt_ivar[rows]
    cols = [(sw * cont)[:, :, None] * ev["dm"], (sw * ev["m"])[:, :, None] * problem.basis[None]]
    jac = torch.cat(cols, dim=2).double()
    return torch.einsum("bpi,bpj->bij", jac, jac)
