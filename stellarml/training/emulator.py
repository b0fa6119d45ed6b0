"""Training spectrum emulators with a gradient prior (PhDLspec).

`train_emulator` fits a `~stellarml.models.emulator.SpectrumEmulator`
(labels -> flux) to a library of spectra with the loss

    L = mean_{n, p}( w[n, p] * (f_theta(x_n)[p] - f[n, p])**2 )
        + gradient_weight * mean_{m, p, k}( (d f_theta(x_m)[p] / d x_k - J_ref[m, p, k])**2 )

The first term is the flux error weighted by the library's noise model
(``w`` = inverse variance normalised to a mean of 1; default 1). The second
is the gradient prior of PhDLspec (Wu, Xiang et al. 2026): the emulator's
Jacobian, taken by forward-mode autodiff (`torch.func.jacfwd`, differentiable,
so it is trained through), is matched to reference differential spectra
``J_ref`` at reference labels ``x_m``. Both Jacobians are per unit of the
*scaled* label ``x = (l - lo) / (hi - lo) - 0.5`` of the emulator's box, i.e.
the physical derivative times ``hi - lo``; `reference_jacobians` computes them
from a library generator in that convention, `jacobians_from_perturbed` from
spectra with one label perturbed at a time (e.g. from Kurucz/SYNTHE or Korg)
and `load_reference_jacobians` reads such spectra from an ``.npz`` file (its
format is in that function's notes). `jacobian_error` is the relative
Jacobian error used for validation and benchmarks.
"""

import math
import time
import warnings

import numpy as np
import torch

from .._utils import resolve_device

__all__ = [
    "EMULATOR_SCHEDULES",
    "jacobian_error",
    "jacobians_from_perturbed",
    "load_reference_jacobians",
    "reference_jacobians",
    "train_emulator",
]

#: Learning-rate schedules of `train_emulator`.
EMULATOR_SCHEDULES = ("cosine", "onecycle", "constant")


def _jacfwd_rows(emulator, x):
    """Differentiable ``(n, npix, L)`` Jacobian of ``emulator`` at scaled labels ``x``."""

    def one(row):
        return emulator(row[None])[0]

    with warnings.catch_warnings():
        # torch's forward-mode AD scripts its decompositions on first use,
        # through its own deprecated torch.jit.script: not ours to fix
        warnings.filterwarnings(
            "ignore", message=r"`torch.jit.script` is deprecated", category=DeprecationWarning
        )
        return torch.func.vmap(torch.func.jacfwd(one))(x)


def jacobian_error(jacobian, reference):
    """Relative Jacobian error per label: ``||J - J_ref|| / ||J_ref||``.

    The norms are Frobenius norms over all points and pixels of one label.

    Parameters
    ----------
    jacobian, reference : array-like or `torch.Tensor`
        ``(n, npix, L)`` emulator and reference Jacobians, in the same units
        (flux per scaled label unit, or per physical unit, for both).

    Returns
    -------
    numpy.ndarray
        ``(L,)`` dimensionless relative errors (0.05 is 5 %).

    Raises
    ------
    ValueError
        If the two are not both ``(n, npix, L)`` of the same shape.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.training import jacobian_error
    >>> reference = np.random.default_rng(0).normal(size=(5, 100, 3))
    >>> jacobian = reference * [1.05, 1.0, 0.9]  # label 0 5 % too steep, label 2 10 % too flat
    >>> np.round(jacobian_error(jacobian, reference), 3)
    array([0.05, 0.  , 0.1 ])
    """
    j = torch.as_tensor(jacobian).detach().double().cpu()
    r = torch.as_tensor(reference).detach().double().cpu()
    if j.shape != r.shape or j.ndim != 3:
        raise ValueError(
            f"jacobian and reference must both be (n, npix, L), got {tuple(j.shape)} and "
            f"{tuple(r.shape)}"
        )
    num = (j - r).square().sum(dim=(0, 1)).sqrt()
    den = r.square().sum(dim=(0, 1)).sqrt()
    return (num / den).numpy()


def _box(box):
    """(lo, hi) float64 arrays from an emulator or a pair."""
    if isinstance(box, torch.nn.Module) and hasattr(box, "label_lo"):
        return (
            box.label_lo.detach().cpu().double().numpy(),
            box.label_hi.detach().cpu().double().numpy(),
        )
    lo, hi = (np.asarray(v, dtype=np.float64) for v in box)
    if lo.shape != hi.shape or lo.ndim != 1 or not np.all(hi > lo):
        raise ValueError("box must be an emulator or (lo, hi) arrays of equal length with hi > lo")
    return lo, hi


def reference_jacobians(generator, labels, box, *, step=1e-3, method="auto"):
    """Reference differential spectra ``d flux / d x`` from a library generator.

    Parameters
    ----------
    generator : callable or `~stellarml.libraries.PolynomialEmulatorLibrary`
        Maps an ``(n, L)`` array of physical labels (emulator order, the
        labels' registry units: K, dex, km/s) to the ``(n, npix)`` flux: a
        numpy function (finite differences), a torch function or
        `torch.nn.Module` of a float64 tensor (exact, by autodiff), or a
        `~stellarml.libraries.PolynomialEmulatorLibrary` on the emulator's
        grid (exact, from the derivative of its polynomial).
    labels : array-like
        ``(n, L)`` reference labels, physical units.
    box : `~stellarml.models.emulator.SpectrumEmulator` or (lo, hi)
        The emulator (or its ``label_lo``, ``label_hi``) whose scaled labels
        the result refers to.
    step : float, optional
        Finite-difference half-step as a fraction of the box width: label
        ``k`` is moved by ``+-step * (hi_k - lo_k)`` (default 1e-3, i.e. 4.5 K
        in a 4 500 K Teff box; the central difference is exact for
        polynomials up to degree 2 and its error falls as ``step**2``). The
        points may leave the box by that much: the generator must accept
        them (e.g. ``generate(..., extrapolate=True)``).
    method : {"auto", "fd", "autograd", "polynomial"}, optional
        ``"auto"`` (default): ``"polynomial"`` for a polynomial library,
        ``"autograd"`` for a `torch.nn.Module`, else ``"fd"`` (central finite
        differences, two generator calls of ``n`` spectra per label, in
        float64).

    Returns
    -------
    numpy.ndarray
        ``(n, npix, L)`` float64 Jacobian per *scaled* label unit (physical
        derivative times ``hi - lo``), the convention of `train_emulator`.

    Raises
    ------
    ValueError
        If ``labels`` is not ``(n, L)``, ``box`` is not a valid box, ``method``
        is unknown or ``step`` is not positive.
    TypeError
        For ``method="polynomial"`` with another generator.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.training import reference_jacobians
    >>> wave = np.linspace(5000.0, 5010.0, 21)  # [Angstrom]
    >>> profile = np.exp(-0.5 * (wave - 5005.0) ** 2)
    >>> def toy(labels):  # a toy library: one line, deeper at low Teff and at high log g
    ...     teff, logg = labels[:, :1], labels[:, 1:]
    ...     return 1.0 - (0.2 + 1e-4 * (6000.0 - teff) + 0.05 * (logg - 3.0)) * profile
    >>> box = ([4000.0, 1.0], [6000.0, 5.0])  # (lo, hi) of (Teff [K], log g [dex])
    >>> jac = reference_jacobians(toy, [[5000.0, 3.0], [5500.0, 4.5]], box)
    >>> jac.shape
    (2, 21, 2)

    At the line centre the flux rises by 1e-4 per K and falls by 0.05 per dex;
    per scaled label unit that is 1e-4 * 2000 K and -0.05 * 4 dex:

    >>> np.round(jac[0, 10], 3)
    array([ 0.2, -0.2])
    """
    lo, hi = _box(box)
    width = hi - lo
    values = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    if values.ndim != 2 or values.shape[1] != lo.size:
        raise ValueError(f"labels must be (n, {lo.size}), got {values.shape}")
    is_poly = hasattr(generator, "theta") and hasattr(generator, "exponents")
    if method == "auto":
        method = (
            "polynomial"
            if is_poly
            else ("autograd" if isinstance(generator, torch.nn.Module) else "fd")
        )
    if method == "polynomial":
        if not is_poly:
            raise TypeError("method='polynomial' needs a PolynomialEmulatorLibrary")
        return _polynomial_jacobian(generator, values) * width
    if method == "autograd":
        t = torch.as_tensor(values, dtype=torch.float64)
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"`torch.jit.script` is deprecated", category=DeprecationWarning
            )
            jac = torch.func.vmap(torch.func.jacfwd(lambda row: generator(row[None])[0]))(t)
        return jac.detach().double().numpy() * width
    if method != "fd":
        raise ValueError(f"unknown method {method!r}; use auto, fd, autograd or polynomial")
    if not (np.isfinite(step) and step > 0):
        raise ValueError(f"step must be positive, got {step!r}")
    call = generator
    if hasattr(generator, "generate"):
        call = lambda a: generator.generate(a, extrapolate=True, dtype=np.float64).flux  # noqa: E731
    n = values.shape[0]
    columns = []
    for k in range(lo.size):
        h = step * width[k]
        shifted = np.concatenate([values, values])
        shifted[:n, k] += h
        shifted[n:, k] -= h
        f = np.asarray(call(shifted), dtype=np.float64)
        columns.append((f[:n] - f[n:]) / (2.0 * step))
    return np.stack(columns, axis=-1)


def jacobians_from_perturbed(flux, perturbed_flux, delta, box, *, minus_flux=None):
    """Reference Jacobians from spectra with one label perturbed at a time.

    For spectra computed by an external code (Kurucz/SYNTHE, Korg ...): the
    reference spectrum ``f0`` at labels ``l`` and, for each label ``k``, the
    spectrum at ``l + delta_k e_k`` (and optionally at ``l - delta_k e_k``).

    Parameters
    ----------
    flux : array-like
        ``(m, npix)`` reference spectra (normalised flux).
    perturbed_flux : array-like
        ``(m, L, npix)`` spectra with label ``k`` raised by ``delta[k]``.
    delta : array-like
        ``(L,)`` or ``(m, L)`` perturbation of each label, physical units
        (K, dex, km/s); non-zero.
    box : `~stellarml.models.emulator.SpectrumEmulator` or (lo, hi)
        The emulator (or its training box) whose scaled labels the result
        refers to.
    minus_flux : array-like, optional
        ``(m, L, npix)`` spectra with label ``k`` lowered by ``delta[k]``:
        central differences (error ``O(delta**2)``) instead of one-sided
        ones (error ``O(delta)``).

    Returns
    -------
    numpy.ndarray
        ``(m, npix, L)`` float64 ``d flux / d x`` per scaled label unit
        (the convention of `train_emulator`).

    Raises
    ------
    ValueError
        On inconsistent shapes, a zero or non-finite ``delta``, or non-finite
        differences.

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.training import jacobians_from_perturbed
    >>> wave = np.linspace(5000.0, 5010.0, 21)  # [Angstrom]
    >>> profile = np.exp(-0.5 * (wave - 5005.0) ** 2)
    >>> def toy(labels):  # a toy library: one line, deeper at low Teff and at high log g
    ...     teff, logg = labels[:, :1], labels[:, 1:]
    ...     return 1.0 - (0.2 + 1e-4 * (6000.0 - teff) + 0.05 * (logg - 3.0)) * profile
    >>> labels = np.array([[5000.0, 3.0], [5500.0, 4.5]])  # Teff [K], log g [dex]
    >>> delta = np.array([10.0, 0.1])  # +10 K, +0.1 dex
    >>> perturbed = np.stack([toy(labels + d) for d in np.diag(delta)], axis=1)
    >>> perturbed.shape  # (m, L, npix)
    (2, 2, 21)
    >>> box = ([4000.0, 1.0], [6000.0, 5.0])
    >>> jac = jacobians_from_perturbed(toy(labels), perturbed, delta, box)
    >>> jac.shape, np.round(jac[0, 10], 3)  # as reference_jacobians gives
    ((2, 21, 2), array([ 0.2, -0.2]))
    """
    lo, hi = _box(box)
    f0 = np.asarray(flux, dtype=np.float64)
    fp = np.asarray(perturbed_flux, dtype=np.float64)
    if f0.ndim != 2 or fp.shape != (f0.shape[0], lo.size, f0.shape[1]):
        raise ValueError(
            f"flux must be (m, npix) and perturbed_flux (m, L={lo.size}, npix), got {f0.shape} "
            f"and {fp.shape}"
        )
    d = np.broadcast_to(np.asarray(delta, dtype=np.float64), (f0.shape[0], lo.size))
    if not (np.isfinite(d).all() and np.all(d != 0)):
        raise ValueError("delta must be finite and non-zero")
    if minus_flux is None:
        diff = (fp - f0[:, None, :]) / d[:, :, None]
    else:
        fm = np.asarray(minus_flux, dtype=np.float64)
        if fm.shape != fp.shape:
            raise ValueError(f"minus_flux must have shape {fp.shape}, got {fm.shape}")
        diff = (fp - fm) / (2.0 * d[:, :, None])
    if not np.isfinite(diff).all():
        raise ValueError("the differential spectra hold non-finite values")
    return np.transpose(diff, (0, 2, 1)) * (hi - lo)


def load_reference_jacobians(path, box):
    """Read reference differential spectra from an ``.npz`` file.

    The file format (plain arrays, read without pickle):

    ``labels``
        ``(m, L)`` reference labels, physical units.
    ``label_names``
        ``(L,)`` strings, `stellarml.labels` names in column order.
    ``wavelength``
        ``(npix,)`` [Angstrom], the emulator's grid.
    ``flux``
        ``(m, npix)`` normalised spectra at ``labels``.
    ``perturbed_flux``
        ``(m, L, npix)``: label ``k`` raised by ``delta[k]``.
    ``delta``
        ``(L,)`` or ``(m, L)`` perturbations, physical units.
    ``minus_flux`` (optional)
        ``(m, L, npix)``: label ``k`` lowered by ``delta[k]`` (central
        differences).

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file.
    box : `~stellarml.models.emulator.SpectrumEmulator` or (lo, hi)
        The emulator the Jacobians are for; with an emulator, its
        ``label_names`` and ``wavelength`` must match the file's.

    Returns
    -------
    labels : numpy.ndarray
        ``(m, L)`` reference labels (physical units).
    jacobians : numpy.ndarray
        ``(m, npix, L)`` per scaled label unit (see `jacobians_from_perturbed`).

    Raises
    ------
    ValueError
        If the file lacks an array, or its labels or wavelength grid are not
        the emulator's.

    Examples
    --------
    A file written from the spectra of a toy library:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from stellarml.models.emulator import MLPEmulator
    >>> from stellarml.training import load_reference_jacobians
    >>> wave = np.linspace(5000.0, 5010.0, 21)  # [Angstrom]
    >>> profile = np.exp(-0.5 * (wave - 5005.0) ** 2)
    >>> def toy(labels):  # a toy library: one line, deeper at low Teff and at high log g
    ...     teff, logg = labels[:, :1], labels[:, 1:]
    ...     return 1.0 - (0.2 + 1e-4 * (6000.0 - teff) + 0.05 * (logg - 3.0)) * profile
    >>> labels = np.array([[5000.0, 3.0], [5500.0, 4.5]])
    >>> delta = np.array([10.0, 0.1])
    >>> perturbed = np.stack([toy(labels + d) for d in np.diag(delta)], axis=1)
    >>> emulator = MLPEmulator(("teff", "logg"), [4000.0, 1.0], [6000.0, 5.0], wave, hidden=(8,))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "jacobians.npz"
    ...     np.savez(path, labels=labels, label_names=np.array(["teff", "logg"]),
    ...              wavelength=wave, flux=toy(labels), perturbed_flux=perturbed, delta=delta)
    ...     ref_labels, jac = load_reference_jacobians(path, emulator)
    >>> ref_labels.shape, jac.shape, np.round(jac[0, 10], 3)
    ((2, 2), (2, 21, 2), array([ 0.2, -0.2]))
    """
    need = ("labels", "label_names", "wavelength", "flux", "perturbed_flux", "delta")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in need if k not in data.files]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)}")
        arrays = {k: np.asarray(data[k]) for k in data.files}
    if isinstance(box, torch.nn.Module) and hasattr(box, "label_names"):
        names = [str(n) for n in arrays["label_names"]]
        if names != list(box.label_names):
            raise ValueError(f"{path} has labels {names}; the emulator has {list(box.label_names)}")
        wave = np.asarray(arrays["wavelength"], dtype=np.float64)
        if wave.shape != box.wavelength.shape or not np.allclose(
            wave, box.wavelength, rtol=1e-9, atol=0
        ):
            raise ValueError(f"{path}: its wavelength grid is not the emulator's")
    jac = jacobians_from_perturbed(
        arrays["flux"],
        arrays["perturbed_flux"],
        arrays["delta"],
        box,
        minus_flux=arrays.get("minus_flux"),
    )
    return np.asarray(arrays["labels"], dtype=np.float64), jac


def _polynomial_jacobian(library, values):
    """``(n, npix, L)`` exact physical-label Jacobian of a polynomial emulator library."""
    x = (values - library.fiducials) / library.scales
    e = library.exponents  # (T, L)
    out = []
    for k in range(e.shape[1]):
        ek = e[:, k]
        reduced = e.copy()
        reduced[:, k] = np.maximum(ek - 1, 0)
        terms = np.prod(x[:, None, :] ** reduced[None], axis=2) * ek / library.scales[k]
        out.append(terms @ library.theta.T)
    return np.stack(out, axis=-1)


def _tensor(value, name, shape=None):
    arr = np.asarray(value, dtype=np.float32)
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds non-finite values")
    return torch.from_numpy(np.ascontiguousarray(arr))


def _weights(weights, n, npix, name="weights"):
    """(n, npix) float32 weights normalised to a mean of 1 (None -> all 1)."""
    if weights is None:
        return torch.ones(n, npix)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape == (npix,):
        w = np.broadcast_to(w, (n, npix))
    if w.shape != (n, npix):
        raise ValueError(f"{name} must be (npix,) or (n, npix) = ({n}, {npix}), got {w.shape}")
    if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise ValueError(f"{name} must be finite, >= 0 and not all 0")
    return torch.from_numpy((w / w.mean()).astype(np.float32))


def _from_library(emulator, library, flux, weights):
    """(labels, flux, weights) of a `SpectralLibrary` on the emulator's grid."""
    if flux is not None:
        raise ValueError("with a SpectralLibrary as labels, flux must be None")
    wave = np.asarray(library.wavelength.to_value("Angstrom"), dtype=np.float64)
    if wave.shape != emulator.wavelength.shape or not np.allclose(
        wave, emulator.wavelength, rtol=1e-9, atol=0
    ):
        raise ValueError(
            f"the library's grid ({wave.size} px) is not the emulator's ({emulator.n_pixels} px)"
        )
    if weights is None and library.ivar is not None:
        weights = library.ivar
    return library.label_array(emulator.label_names), library.flux, weights


def _validation_set(emulator, validation, npix, n_labels):
    if validation is None:
        return None
    if isinstance(validation, tuple | list):
        validation = dict(zip(("labels", "flux", "weights"), validation, strict=False))
    if not isinstance(validation, dict) or "labels" not in validation or "flux" not in validation:
        raise TypeError("validation must be a dict with 'labels' and 'flux' (or a tuple of them)")
    lab = _tensor(validation["labels"], "validation labels")
    if lab.ndim != 2 or lab.shape[1] != n_labels:
        raise ValueError(f"validation labels must be (n, {n_labels}), got {tuple(lab.shape)}")
    out = {
        "labels": lab,
        "flux": _tensor(validation["flux"], "validation flux", (lab.shape[0], npix)),
        "weights": _weights(validation.get("weights"), lab.shape[0], npix, "validation weights"),
    }
    if validation.get("reference_labels") is not None:
        rl = _tensor(validation["reference_labels"], "validation reference_labels")
        out["reference_labels"] = rl
        out["reference_jacobians"] = _tensor(
            validation["reference_jacobians"],
            "validation reference_jacobians",
            (rl.shape[0], npix, n_labels),
        )
    return out


def _lr_lambda(schedule, total, warmup_fraction):
    warm = max(1, round(warmup_fraction * total))

    def cosine(i):
        if i < warm:
            return (i + 1) / warm
        t = (i - warm) / max(1, total - warm)
        return 1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    def onecycle(i):
        if i < warm:
            return 0.04 + 0.96 * 0.5 * (1 - math.cos(math.pi * (i + 1) / warm))
        t = (i - warm) / max(1, total - warm)
        return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return {"cosine": cosine, "onecycle": onecycle, "constant": lambda i: 1.0}[schedule]


def train_emulator(
    emulator,
    labels,
    flux,
    *,
    weights=None,
    reference_labels=None,
    reference_jacobians=None,
    gradient_weight=0.0,
    epochs=200,
    batch_size=64,
    reference_batch_size=None,
    learning_rate=1e-3,
    weight_decay=0.0,
    schedule="cosine",
    warmup_fraction=0.05,
    grad_clip=None,
    seed=0,
    device="cpu",
    validation=None,
    validate_every=1,
    restore_best=True,
):
    """Train an emulator on spectra, optionally with a gradient prior.

    Adam(W) on the loss of the module notes, mini-batches of ``batch_size``
    spectra; when the gradient prior is on, every step also draws
    ``reference_batch_size`` reference points (cycling through a seeded
    permutation of them). The run is deterministic on the CPU for a given
    ``seed``, data, initial weights and thread count. The emulator is trained
    in place (and left on ``device``, in eval mode).

    Parameters
    ----------
    emulator : `~stellarml.models.emulator.SpectrumEmulator`
        With trainable parameters (e.g. `~stellarml.models.emulator.MLPEmulator`,
        `~stellarml.models.emulator.TransformerEmulator`).
    labels : array-like or `~stellarml.libraries.SpectralLibrary`
        ``(n, L)`` training labels in physical units (K, dex, km/s), in
        ``emulator.label_names`` order; or a library on the emulator's grid
        (its labels, flux and, unless ``weights`` is given, its ``ivar``;
        then ``flux`` must be None).
    flux : array-like
        ``(n, npix)`` normalised training flux on ``emulator.wavelength``.
    weights : array-like, optional
        ``(npix,)`` or ``(n, npix)`` pixel weights, e.g. the library's
        inverse variance (any scale: they are normalised to a mean of 1);
        default 1 (or the library's ``ivar``).
    reference_labels : array-like, optional
        ``(m, L)`` physical labels of the reference differential spectra.
    reference_jacobians : array-like, optional
        ``(m, npix, L)`` reference ``d flux / d x`` per *scaled* label unit
        (physical derivative times ``label_hi - label_lo``;
        see `reference_jacobians`).
    gradient_weight : float, optional
        Weight ``lambda_g`` of the gradient-prior term (default 0: off).
    epochs : int, optional
        Passes over the training spectra.
    batch_size : int, optional
        Spectra per step.
    reference_batch_size : int, optional
        Reference points per step (default ``min(m, batch_size)``).
    learning_rate : float, optional
        Peak learning rate.
    weight_decay : float, optional
        Decoupled weight decay (AdamW); 0 gives Adam.
    schedule : {"cosine", "onecycle", "constant"}, optional
        Per-step schedule: linear warm-up over ``warmup_fraction`` of the
        steps, then cosine decay to ``1e-3 * learning_rate`` ("cosine"); a
        cosine warm-up from ``learning_rate / 25`` and decay to ``1e-4 *
        learning_rate`` ("onecycle"); or constant.
    warmup_fraction : float, optional
        Warm-up share of the steps.
    grad_clip : float, optional
        Maximum global gradient norm (default: no clipping).
    seed : int, optional
        Seed of the shuffling and of the reference-point draws.
    device : str or `torch.device`, optional
        ``"cpu"`` (default), ``"cuda"`` or ``"auto"``.
    validation : dict or tuple, optional
        ``{"labels", "flux"}`` (physical labels, flux) of held-out spectra,
        optionally with ``"weights"`` and with ``"reference_labels"`` and
        ``"reference_jacobians"`` for the Jacobian error; a tuple
        ``(labels, flux[, weights])`` also works.
    validate_every : int, optional
        Evaluate the validation set every this many epochs (and at the last).
    restore_best : bool, optional
        With validation data, end with the weights of the evaluated epoch of
        lowest validation loss (default True).

    Returns
    -------
    history : dict
        Lists with one entry per epoch: ``epoch``, ``lr``, ``loss``,
        ``flux_loss`` (weighted mean squared flux error), ``jacobian_loss``
        (mean squared Jacobian error per scaled label; 0 without the prior),
        ``flux_rms`` (unweighted training RMS [normalised flux]), ``time_s``;
        with validation, per evaluated epoch: ``val_epoch``, ``val_loss``,
        ``val_flux_rms`` [normalised flux] and, with reference Jacobians,
        ``val_jacobian_error`` (``(L,)`` lists of `jacobian_error`); and
        ``best_epoch``.

    Raises
    ------
    ValueError
        On inconsistent shapes, non-finite inputs, a gradient weight without
        reference Jacobians, or an emulator without trainable parameters.

    Examples
    --------
    A tiny MLP emulator of a toy library, with the gradient prior at eight
    reference points:

    >>> import numpy as np, torch
    >>> from stellarml.models.emulator import MLPEmulator
    >>> from stellarml.training import reference_jacobians, train_emulator
    >>> wave = np.linspace(5000.0, 5010.0, 21)  # [Angstrom]
    >>> profile = np.exp(-0.5 * (wave - 5005.0) ** 2)
    >>> def toy(labels):  # a toy library: one line, deeper at low Teff and at high log g
    ...     teff, logg = labels[:, :1], labels[:, 1:]
    ...     return 1.0 - (0.2 + 1e-4 * (6000.0 - teff) + 0.05 * (logg - 3.0)) * profile
    >>> lo, hi = [4000.0, 1.0], [6000.0, 5.0]  # Teff [K], log g [dex]
    >>> labels = np.random.default_rng(0).uniform(lo, hi, (64, 2))
    >>> _ = torch.manual_seed(0)
    >>> emulator = MLPEmulator(("teff", "logg"), lo, hi, wave, hidden=(16,))
    >>> reference = labels[:8]
    >>> history = train_emulator(
    ...     emulator, labels, toy(labels), epochs=20, batch_size=32, learning_rate=1e-2,
    ...     reference_labels=reference, gradient_weight=1.0,
    ...     reference_jacobians=reference_jacobians(toy, reference, emulator))
    >>> len(history["epoch"]), history["best_epoch"]
    (20, 20)
    >>> history["flux_rms"][-1] < 0.3 * history["flux_rms"][0]  # [normalised flux]
    True
    >>> history["jacobian_loss"][-1] < 0.3 * history["jacobian_loss"][0]
    True
    """
    if schedule not in EMULATOR_SCHEDULES:
        raise ValueError(f"schedule must be one of {EMULATOR_SCHEDULES}, got {schedule!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not (np.isfinite(gradient_weight) and gradient_weight >= 0):
        raise ValueError(f"gradient_weight must be finite and >= 0, got {gradient_weight!r}")
    npix, n_labels = emulator.n_pixels, emulator.n_labels
    if hasattr(labels, "label_array") and hasattr(labels, "flux"):  # a SpectralLibrary
        labels, flux, weights = _from_library(emulator, labels, flux, weights)
    lab = _tensor(labels, "labels")
    if lab.ndim != 2 or lab.shape[1] != n_labels:
        raise ValueError(f"labels must be (n, {n_labels}), got {tuple(lab.shape)}")
    n = lab.shape[0]
    f_train = _tensor(flux, "flux", (n, npix))
    w_train = _weights(weights, n, npix)
    use_prior = gradient_weight > 0
    if use_prior and (reference_labels is None or reference_jacobians is None):
        raise ValueError("gradient_weight > 0 needs reference_labels and reference_jacobians")
    if reference_labels is not None:
        ref_lab = _tensor(reference_labels, "reference_labels")
        if ref_lab.ndim != 2 or ref_lab.shape[1] != n_labels:
            raise ValueError(
                f"reference_labels must be (m, {n_labels}), got {tuple(ref_lab.shape)}"
            )
        ref_jac = _tensor(
            reference_jacobians, "reference_jacobians", (ref_lab.shape[0], npix, n_labels)
        )
    val = _validation_set(emulator, validation, npix, n_labels)
    params = [p for p in emulator.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(emulator).__name__} has no trainable parameters")

    dev = resolve_device(device)
    emulator.to(dev)
    x_train = emulator.scale(lab.to(dev))
    f_train, w_train = f_train.to(dev), w_train.to(dev)
    if use_prior:
        x_ref = emulator.scale(ref_lab.to(dev))
        ref_jac = ref_jac.to(dev)
        m = x_ref.shape[0]
        ref_bs = int(reference_batch_size) if reference_batch_size else min(m, int(batch_size))
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    steps_per_epoch = -(-n // int(batch_size))
    total = steps_per_epoch * int(epochs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(schedule, total, warmup_fraction))

    history = {
        k: [] for k in ("epoch", "lr", "loss", "flux_loss", "jacobian_loss", "flux_rms", "time_s")
    }
    if val is not None:
        history.update(val_epoch=[], val_loss=[], val_flux_rms=[], val_jacobian_error=[])
    best = (math.inf, None, 0)
    ref_order, ref_pos = None, 0
    t0 = time.perf_counter()
    for epoch in range(1, int(epochs) + 1):
        emulator.train()
        order = torch.randperm(n, generator=gen).to(dev)
        sums = {"loss": 0.0, "flux_loss": 0.0, "jacobian_loss": 0.0, "sq": 0.0}
        lr_now = opt.param_groups[0]["lr"]
        for i in range(0, n, int(batch_size)):
            idx = order[i : i + int(batch_size)]
            pred = emulator(x_train[idx])
            resid = pred - f_train[idx]
            flux_loss = (w_train[idx] * resid.square()).mean()
            loss = flux_loss
            jac_loss = torch.zeros((), device=dev)
            if use_prior:
                if ref_order is None or ref_pos + ref_bs > m:
                    ref_order, ref_pos = torch.randperm(m, generator=gen).to(dev), 0
                ridx = ref_order[ref_pos : ref_pos + ref_bs]
                ref_pos += ref_bs
                jac = _jacfwd_rows(emulator, x_ref[ridx])
                jac_loss = (jac - ref_jac[ridx]).square().mean()
                loss = loss + gradient_weight * jac_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            sched.step()
            k = idx.numel()
            sums["loss"] += float(loss.detach()) * k
            sums["flux_loss"] += float(flux_loss.detach()) * k
            sums["jacobian_loss"] += float(jac_loss.detach()) * k
            sums["sq"] += float(resid.detach().square().mean()) * k
        history["epoch"].append(epoch)
        history["lr"].append(lr_now)
        for key in ("loss", "flux_loss", "jacobian_loss"):
            history[key].append(sums[key] / n)
        history["flux_rms"].append(math.sqrt(sums["sq"] / n))
        history["time_s"].append(time.perf_counter() - t0)
        if val is not None and (epoch % int(validate_every) == 0 or epoch == int(epochs)):
            metrics = _evaluate(emulator, val, gradient_weight, dev)
            history["val_epoch"].append(epoch)
            for key in ("val_loss", "val_flux_rms", "val_jacobian_error"):
                history[key].append(metrics[key])
            if restore_best and metrics["val_loss"] < best[0]:
                state = {k: v.detach().clone() for k, v in emulator.state_dict().items()}
                best = (metrics["val_loss"], state, epoch)
    if val is not None and restore_best and best[1] is not None:
        emulator.load_state_dict(best[1])
        history["best_epoch"] = best[2]
    else:
        history["best_epoch"] = int(epochs)
    emulator.eval()
    return history


def _evaluate(emulator, val, gradient_weight, dev):
    """Validation loss, flux RMS and (with references) the per-label Jacobian error."""
    emulator.eval()
    with torch.no_grad():
        x = emulator.scale(val["labels"].to(dev))
        resid = emulator(x) - val["flux"].to(dev)
        loss = float((val["weights"].to(dev) * resid.square()).mean())
        rms = float(resid.square().mean().sqrt())
    jac_err = None
    if "reference_labels" in val:
        xr = emulator.scale(val["reference_labels"].to(dev))
        with torch.no_grad():
            jac = emulator.jacobian(xr, chunk_size=64)
        ref = val["reference_jacobians"].to(dev)
        if gradient_weight > 0:
            loss += gradient_weight * float((jac - ref).square().mean())
        jac_err = jacobian_error(jac, ref).tolist()
    return {"val_loss": loss, "val_flux_rms": rms, "val_jacobian_error": jac_err}
