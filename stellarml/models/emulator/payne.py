"""`PayneEmulator`: per-pixel neural-network emulators in The Payne / binspec layout.

Each pixel ``p`` has its own small network on the scaled labels ``x``::

    flux[p] = sum_k w1[p, k] * sigmoid(w0[p] @ x + b0[p])[k] + b1[p]

with ``x = (label - x_min) / (x_max - x_min) - 0.5``, which is exactly the
`~stellarml.models.emulator.SpectrumEmulator` scaling with ``lo = x_min`` and
``hi = x_max``. All pixels are evaluated at once (two `torch.einsum` calls).
"""

from pathlib import Path

import numpy as np
import torch

from .base import SpectrumEmulator

__all__ = ["PayneEmulator"]

_KEYS = ("w_array_0", "b_array_0", "w_array_1", "b_array_1", "x_min", "x_max")


class PayneEmulator(SpectrumEmulator):
    """A Payne-style emulator: one single-hidden-layer network per pixel.

    Parameters
    ----------
    w0 : array-like
        ``(npix, K, L)`` first-layer weights.
    b0 : array-like
        ``(npix, K)`` first-layer biases.
    w1 : array-like
        ``(npix, K)`` output weights.
    b1 : array-like
        ``(npix,)`` output biases.
    label_names : sequence of str
        The ``L`` labels, in input order.
    label_lo, label_hi : array-like
        ``(L,)`` the scaling box (binspec's ``x_min``, ``x_max``), in the
        labels' physical units.
    wavelength : array-like
        ``(npix,)`` wavelength in Angstrom.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from stellarml.models.emulator import PayneEmulator
    >>> rng = np.random.default_rng(0)
    >>> emu = PayneEmulator(rng.normal(size=(50, 4, 2)), rng.normal(size=(50, 4)),
    ...                     rng.normal(size=(50, 4)), np.ones(50), ["teff", "logg"],
    ...                     [4000.0, 1.0], [6000.0, 5.0], np.linspace(5000.0, 5050.0, 50))
    >>> emu.flux(torch.tensor([[5000.0, 3.0]])).shape
    torch.Size([1, 50])
    """

    def __init__(self, w0, b0, w1, b1, label_names, label_lo, label_hi, wavelength):
        super().__init__(label_names, label_lo, label_hi, wavelength)
        arrays = {
            "w0": np.asarray(w0, dtype=np.float32),
            "b0": np.asarray(b0, dtype=np.float32),
            "w1": np.asarray(w1, dtype=np.float32),
            "b1": np.asarray(b1, dtype=np.float32),
        }
        npix, n_labels = self.n_pixels, self.n_labels
        w0_shape = arrays["w0"].shape
        if arrays["w0"].ndim != 3 or w0_shape[0] != npix or w0_shape[2] != n_labels:
            raise ValueError(f"w0 must be (npix={npix}, K, L={n_labels}), got shape {w0_shape}")
        k = w0_shape[1]
        expected = {"b0": (npix, k), "w1": (npix, k), "b1": (npix,)}
        for name, shape in expected.items():
            if arrays[name].shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {arrays[name].shape}")
        for name, value in arrays.items():
            if not np.isfinite(value).all():
                raise ValueError(f"{name} has non-finite values")
            self.register_buffer(name, torch.from_numpy(value))

    @classmethod
    def from_npz(cls, path, wavelength, *, label_names=("teff", "logg", "fe_h", "mg_fe", "vmacro")):
        """Read an emulator saved in the binspec layout.

        Parameters
        ----------
        path : str or path-like
            ``.npz`` with ``w_array_0``, ``b_array_0``, ``w_array_1``,
            ``b_array_1``, ``x_min``, ``x_max``.
        wavelength : str, path-like or array-like
            The pixels' wavelength in Angstrom, or an ``.npz`` file holding it
            (key ``wavelength``).
        label_names : sequence of str
            Names of the labels (default: the 5 labels of the APOGEE emulator
            of the reference data, Teff, log g, [Fe/H], [Mg/Fe], vmacro).

        Returns
        -------
        emulator : `PayneEmulator`

        Raises
        ------
        ValueError
            If a key is missing or the shapes disagree.
        """
        with np.load(path) as data:
            missing = [key for key in _KEYS if key not in data]
            if missing:
                raise ValueError(f"{path} lacks {', '.join(missing)} (binspec emulator layout)")
            arrays = {key: data[key] for key in _KEYS}
        if isinstance(wavelength, str | Path):
            with np.load(wavelength) as data:
                wavelength = data["wavelength"]
        if len(label_names) != arrays["x_min"].size:
            raise ValueError(
                f"{len(label_names)} label names for an emulator of {arrays['x_min'].size} labels"
            )
        return cls(
            arrays["w_array_0"],
            arrays["b_array_0"],
            arrays["w_array_1"],
            arrays["b_array_1"],
            label_names,
            arrays["x_min"],
            arrays["x_max"],
            wavelength,
        )

    def forward(self, x):
        """Normalised flux ``(n, npix)`` of scaled labels ``x`` ``(n, L)``."""
        if x.ndim != 2 or x.shape[1] != self.n_labels:
            raise ValueError(
                f"expected scaled labels of shape (n, {self.n_labels}), got {tuple(x.shape)}"
            )
        hidden = torch.sigmoid(torch.einsum("pkl,nl->npk", self.w0, x) + self.b0)
        return torch.einsum("pk,npk->np", self.w1, hidden) + self.b1
