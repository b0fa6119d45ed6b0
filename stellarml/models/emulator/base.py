"""`SpectrumEmulator`: the interface every emulator (labels -> spectrum) provides.

An emulator maps labels to the normalised flux on a fixed wavelength grid. It
works on *scaled* labels ``x = (label - lo) / (hi - lo) - 0.5`` so that the
training box is ``[-0.5, 0.5]`` in every label; `SpectrumEmulator.scale` and
`SpectrumEmulator.unscale` convert. The fitters of `stellarml.fitting` need
only this interface (they never import a concrete emulator), and so does
`stellarml.fitting.cramer_rao_bound`.
"""

import abc
import warnings

import numpy as np
import torch

__all__ = ["SpectrumEmulator"]


class SpectrumEmulator(torch.nn.Module, abc.ABC):
    """A differentiable map from labels to normalised flux on a fixed grid.

    Subclasses implement ``forward(x)`` on scaled labels and call
    ``super().__init__(label_names, label_lo, label_hi, wavelength)``.

    Parameters
    ----------
    label_names : sequence of str
        The labels, in input order (names of the `stellarml.labels` registry).
    label_lo, label_hi : array-like
        ``(L,)`` lower and upper edges of the training box, in the labels'
        physical units (K for ``teff``, dex for ``logg`` and abundances, km/s
        for velocities); they define the scaling.
    wavelength : array-like
        ``(npix,)`` wavelength of the output pixels in Angstrom, increasing.

    Attributes
    ----------
    label_names : tuple of str
        The labels, in input order.
    label_lo, label_hi : `torch.Tensor`
        float32 buffers (they move with the module between devices).
    wavelength : `numpy.ndarray`
        float64 wavelength grid in Angstrom.

    Raises
    ------
    ValueError
        If ``label_lo``/``label_hi`` do not give one finite value per label
        with ``label_hi > label_lo``, or ``wavelength`` is not 1-D and increasing.

    Examples
    --------
    A one-line emulator: the depth of a line at 5000 Angstrom grows with Teff.

    >>> import numpy as np
    >>> import torch
    >>> from stellarml.models.emulator import SpectrumEmulator
    >>> class OneLine(SpectrumEmulator):
    ...     def forward(self, x):
    ...         depth = 0.5 + 0.4 * x[:, :1]
    ...         wave = torch.as_tensor(self.wavelength, dtype=x.dtype)
    ...         return 1.0 - depth * torch.exp(-0.5 * ((wave - 5000.0) / 2.0) ** 2)
    >>> emulator = OneLine(["teff"], [4000.0], [7000.0], np.linspace(4990.0, 5010.0, 201))
    >>> emulator.n_labels, emulator.n_pixels
    (1, 201)
    >>> teff = torch.tensor([[5500.0], [6250.0]])  # [K]
    >>> emulator.scale(teff)  # the training box is [-0.5, 0.5]
    tensor([[0.0000],
            [0.2500]])
    >>> flux = emulator.flux(teff)
    >>> flux.shape, np.round(flux[:, 100].numpy(), 3)  # line centre
    (torch.Size([2, 201]), array([0.5, 0.4], dtype=float32))
    >>> emulator.jacobian(emulator.scale(teff)).shape  # d flux / d x: (n, npix, L)
    torch.Size([2, 201, 1])
    """

    def __init__(self, label_names, label_lo, label_hi, wavelength):
        super().__init__()
        names = tuple(str(n) for n in label_names)
        lo = np.asarray(label_lo, dtype=np.float64)
        hi = np.asarray(label_hi, dtype=np.float64)
        if lo.shape != (len(names),) or hi.shape != (len(names),):
            raise ValueError(
                f"label_lo and label_hi must have one value per label ({len(names)}), "
                f"got shapes {lo.shape} and {hi.shape}"
            )
        if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (hi > lo).all()):
            raise ValueError("label_lo and label_hi must be finite with label_hi > label_lo")
        wave = np.asarray(wavelength, dtype=np.float64)
        if wave.ndim != 1 or wave.size < 2 or not np.all(np.diff(wave) > 0):
            raise ValueError("wavelength must be a 1-D increasing array of at least 2 values")
        self.label_names = names
        self.wavelength = wave
        self.register_buffer("label_lo", torch.as_tensor(lo, dtype=torch.float32))
        self.register_buffer("label_hi", torch.as_tensor(hi, dtype=torch.float32))

    @property
    def n_labels(self):
        """Number of labels (int)."""
        return len(self.label_names)

    @property
    def n_pixels(self):
        """Number of output pixels (int)."""
        return int(self.wavelength.size)

    def scale(self, labels):
        """Physical labels ``(..., L)`` (tensor) -> scaled labels in the training box."""
        return (labels - self.label_lo) / (self.label_hi - self.label_lo) - 0.5

    def unscale(self, x):
        """Scaled labels ``(..., L)`` (tensor) -> physical labels."""
        return (x + 0.5) * (self.label_hi - self.label_lo) + self.label_lo

    @abc.abstractmethod
    def forward(self, x):
        """Normalised flux ``(n, npix)`` of scaled labels ``x`` ``(n, L)``."""

    def flux(self, labels):
        """Normalised flux ``(n, npix)`` of physical labels ``(n, L)`` (tensors)."""
        return self(self.scale(labels))

    def jacobian(self, x, *, chunk_size=None):
        """``d flux / d x``: ``(n, npix, L)`` at scaled labels ``x`` ``(n, L)``.

        Forward-mode autodiff (`torch.func.jacfwd`, vectorised over rows with
        `torch.func.vmap`): its cost is ``L`` forward passes, whatever
        ``npix``. Divide by ``label_hi - label_lo`` for the derivative with
        respect to the physical labels.
        """

        def one(row):
            return self(row[None])[0]

        jac = torch.func.vmap(torch.func.jacfwd(one), chunk_size=chunk_size)
        with warnings.catch_warnings():
            # torch's forward-mode AD scripts its decompositions on first use,
            # through its own deprecated torch.jit.script: not ours to fix
            warnings.filterwarnings(
                "ignore", message=r"`torch.jit.script` is deprecated", category=DeprecationWarning
            )
            return jac(x)


def _check_config(cls, config):
    """``config`` checked to be a dict for ``cls`` with the keys every emulator needs."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    name = config.get("class", cls.__name__)
    if name != cls.__name__:
        raise ValueError(f"config is for a {name}, not a {cls.__name__}")
    missing = [k for k in ("label_names", "label_lo", "label_hi", "wavelength") if k not in config]
    if missing:
        raise ValueError(f"config lacks {', '.join(missing)}")
    return config


def _base_config(emulator):
    """The `SpectrumEmulator` part of a ``get_config`` dict (plain lists and strings)."""
    return {
        "class": type(emulator).__name__,
        "label_names": list(emulator.label_names),
        "label_lo": emulator.label_lo.detach().cpu().double().tolist(),
        "label_hi": emulator.label_hi.detach().cpu().double().tolist(),
        "wavelength": np.asarray(emulator.wavelength, dtype=np.float64).tolist(),
    }
