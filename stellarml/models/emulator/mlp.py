"""`MLPEmulator`: a fully-connected labels -> spectrum network (a Payne-style baseline).

The scaled labels ``x`` (``(n, L)``, the training box is ``[-0.5, 0.5]``) go
through a few fully-connected layers with a smooth activation and a linear
head to every pixel::

    flux = 1 + head(act(W_k ... act(W_1 x + b_1) ... + b_k))

(or ``flux = head(...)`` with ``residual=False``). Unlike
`~stellarml.models.emulator.PayneEmulator`, whose pixels each have their own
small network, the hidden layers are shared by all pixels (the layout of the
trained The Payne networks, Ting et al. 2019), so one model covers thousands
of pixels with a few hundred thousand weights. Any grid works: the head has one
output per pixel of ``wavelength``.
"""

import torch

from .base import SpectrumEmulator, _base_config, _check_config

__all__ = ["ACTIVATIONS", "MLPEmulator"]

#: Activations understood by `MLPEmulator` (name -> module class). All are
#: smooth or piecewise linear, so the Jacobian exists everywhere.
ACTIVATIONS = {
    "silu": torch.nn.SiLU,
    "leaky_relu": torch.nn.LeakyReLU,
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
    "gelu": torch.nn.GELU,
}


class MLPEmulator(SpectrumEmulator):
    """Labels -> normalised flux through shared fully-connected layers.

    Parameters
    ----------
    label_names : sequence of str
        The ``L`` labels in input order (`stellarml.labels` names).
    label_lo, label_hi : array-like
        ``(L,)`` training box in the labels' physical units (K, dex, km/s):
        the scaling ``x = (l - lo) / (hi - lo) - 0.5``.
    wavelength : array-like
        ``(npix,)`` pixel wavelengths [Angstrom], increasing.
    hidden : sequence of int, optional
        Widths of the hidden layers (default ``(256, 256)``).
    activation : str, optional
        One of `ACTIVATIONS` (default ``"silu"``).
    residual : bool, optional
        If True (default) the head predicts ``flux - 1`` (its bias starts at
        0, so an untrained network gives the continuum); else the flux.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from stellarml.models.emulator import MLPEmulator
    >>> emu = MLPEmulator(("teff", "logg"), [4000.0, 1.0], [6000.0, 5.0],
    ...                   np.linspace(5000.0, 5100.0, 50), hidden=(16,))
    >>> emu(torch.zeros(3, 2)).shape
    torch.Size([3, 50])
    >>> emu.jacobian(torch.zeros(3, 2)).shape
    torch.Size([3, 50, 2])
    """

    def __init__(
        self,
        label_names,
        label_lo,
        label_hi,
        wavelength,
        *,
        hidden=(256, 256),
        activation="silu",
        residual=True,
    ):
        super().__init__(label_names, label_lo, label_hi, wavelength)
        widths = tuple(int(w) for w in hidden)
        if not widths or any(w < 1 for w in widths):
            raise ValueError(
                f"hidden must be a non-empty sequence of positive widths, got {hidden}"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)}")
        self.hidden = widths
        self.activation = str(activation)
        self.residual = bool(residual)
        layers = []
        width_in = self.n_labels
        for width in widths:
            layers += [torch.nn.Linear(width_in, width), ACTIVATIONS[activation]()]
            width_in = width
        self.body = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(width_in, self.n_pixels)
        with torch.no_grad():
            if self.residual:
                self.head.bias.zero_()
            else:
                self.head.bias.fill_(1.0)

    def forward(self, x):
        """Normalised flux ``(n, npix)`` at scaled labels ``x`` ``(n, L)``."""
        x = torch.as_tensor(x, dtype=self.head.weight.dtype, device=self.head.weight.device)
        if x.ndim != 2 or x.shape[1] != self.n_labels:
            raise ValueError(f"x must be (n, {self.n_labels}), got {tuple(x.shape)}")
        out = self.head(self.body(x))
        return out + 1.0 if self.residual else out

    def get_config(self):
        """Everything but the weights, as a plain (JSON/ASDF-serialisable) dict.

        Returns
        -------
        dict
            ``class``, ``label_names``, ``label_lo`` and ``label_hi`` (physical
            units), ``wavelength`` [Angstrom] (lists), ``hidden``,
            ``activation``, ``residual``. ``from_config`` of it plus
            ``load_state_dict(state_dict())`` reproduces the emulator.
        """
        return {
            **_base_config(self),
            "hidden": list(self.hidden),
            "activation": self.activation,
            "residual": self.residual,
        }

    @classmethod
    def from_config(cls, config):
        """A freshly initialised emulator from a `get_config` dict.

        Parameters
        ----------
        config : dict
            As returned by `get_config` (a ``class`` entry, if present, must
            name this class).

        Returns
        -------
        emulator : `MLPEmulator`
            Untrained; load the weights with ``load_state_dict``.
        """
        cfg = _check_config(cls, config)
        return cls(
            cfg["label_names"],
            cfg["label_lo"],
            cfg["label_hi"],
            cfg["wavelength"],
            hidden=cfg.get("hidden", (256, 256)),
            activation=cfg.get("activation", "silu"),
            residual=cfg.get("residual", True),
        )
