"""The Fisher information and Cramér–Rao bound of labels fitted with an emulator."""

import numpy as np
import torch

__all__ = ["cramer_rao_bound", "fisher_matrix"]


def _inputs(emulator, labels, ivar):
    labels = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    ivar = np.atleast_2d(np.asarray(ivar, dtype=np.float64))
    n_labels, npix = emulator.n_labels, emulator.n_pixels
    if labels.ndim != 2 or labels.shape[1] != n_labels:
        raise ValueError(f"labels must be (n, {n_labels}), got shape {labels.shape}")
    if ivar.shape != (labels.shape[0], npix):
        raise ValueError(
            f"ivar must be (n={labels.shape[0]}, npix={npix}) like the emulator grid, "
            f"got shape {ivar.shape}"
        )
    if not np.isfinite(labels).all():
        raise ValueError("labels must be finite")
    if not np.isfinite(ivar).all() or (ivar < 0).any():
        raise ValueError("ivar must be finite and non-negative (0 marks a pixel without data)")
    return labels, ivar


def fisher_matrix(emulator, labels, ivar):
    """Fisher information of the labels of spectra with Gaussian noise of inverse variance ``ivar``.

    ``F = Jᵀ diag(ivar) J`` with ``J = ∂flux/∂label`` the emulator Jacobian
    (forward-mode autodiff, `SpectrumEmulator.jacobian`) at ``labels``, in
    physical label units.

    Parameters
    ----------
    emulator : `~stellarml.models.emulator.SpectrumEmulator`
    labels : array-like
        ``(n, L)`` (or ``(L,)``) labels in physical units (K, dex, km/s).
    ivar : array-like
        ``(n, npix)`` (or ``(npix,)``) inverse variance of the normalised flux
        on the emulator grid; 0 for pixels without data.

    Returns
    -------
    fisher : `numpy.ndarray`
        ``(n, L, L)``, in inverse squared label units.

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
    """
    labels, ivar = _inputs(emulator, labels, ivar)
    param = next(iter(emulator.buffers()), None)
    device = param.device if param is not None else torch.device("cpu")
    with torch.no_grad():
        x = emulator.scale(torch.as_tensor(labels, dtype=torch.float32, device=device))
    jac = emulator.jacobian(x).double().cpu().numpy()  # (n, npix, L), per scaled unit
    width = (emulator.label_hi - emulator.label_lo).double().cpu().numpy()
    jac = jac / width  # per physical unit
    return np.einsum("npk,np,npl->nkl", jac, ivar, jac)


def cramer_rao_bound(emulator, labels, ivar):
    """The Cramér–Rao lower bound on each label's uncertainty.

    ``σ_k = sqrt((F⁻¹)_kk)`` with ``F`` from `fisher_matrix`: the smallest
    standard deviation an unbiased estimator of the labels can have, given the
    emulator and the noise, with all labels fitted together (their
    degeneracies included). It ignores the emulator's own error and any
    nuisance parameters, so it is a bound, not a prediction.

    Parameters
    ----------
    emulator : `~stellarml.models.emulator.SpectrumEmulator`
    labels : array-like
        ``(n, L)`` (or ``(L,)``) labels in physical units.
    ivar : array-like
        ``(n, npix)`` (or ``(npix,)``) inverse variance of the normalised flux.

    Returns
    -------
    sigma : `numpy.ndarray`
        ``(n, L)`` in the labels' units (K, dex, km/s). Rows whose Fisher
        matrix is singular (e.g. no pixel with data, or a label the spectrum
        does not constrain) are ``inf`` for every label.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.fitting import cramer_rao_bound
    >>> from stellarml.models.emulator import PayneEmulator
    >>> rng = np.random.default_rng(1)
    >>> emu = PayneEmulator(rng.normal(size=(40, 3, 2)), rng.normal(size=(40, 3)),
    ...                     rng.normal(size=(40, 3)), np.ones(40), ["teff", "logg"],
    ...                     [4000.0, 1.0], [6000.0, 5.0], np.linspace(5000.0, 5040.0, 40))
    >>> s50 = cramer_rao_bound(emu, [5000.0, 3.0], np.full(40, 50.0**2))
    >>> s100 = cramer_rao_bound(emu, [5000.0, 3.0], np.full(40, 100.0**2))
    >>> bool(np.allclose(s50 / s100, 2.0))
    True
    """
    fisher = fisher_matrix(emulator, labels, ivar)
    n, n_labels, _ = fisher.shape
    sigma = np.full((n, n_labels), np.inf)
    for i in range(n):
        eig = np.linalg.eigvalsh(fisher[i])
        if eig.max(initial=0.0) <= 0 or eig.min() <= eig.max() * 1e-12:
            continue  # singular: some combination of labels is not constrained
        sigma[i] = np.sqrt(np.diag(np.linalg.inv(fisher[i])))
    return sigma
