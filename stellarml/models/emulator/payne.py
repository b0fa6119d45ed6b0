"""`PayneEmulator`: one small network per pixel (The Payne / binspec layout).

Each pixel ``p`` has its own one-hidden-layer network of ``K`` sigmoid units
on the scaled labels ``x`` (Ting et al. 2019, The Payne; El-Badry et al. 2018,
binspec)::

    flux[p] = sum_k w1[p, k] * sigmoid(w0[p] @ x + b0[p])[k] + b1[p]

All pixels are evaluated at once: the ``npix * K`` hidden units are one
matrix product, chunked over spectra so that the hidden activations stay
below `PayneEmulator.max_elements` values. The Jacobian is analytic.
"""

import numpy as np
import torch

from .base import SpectrumEmulator, _base_config, _check_config

__all__ = ["PAYNE_APOGEE_LABELS", "PayneEmulator"]

#: The label order of the binspec / The Payne APOGEE emulators
#: (Teff, logg, [Fe/H], [Mg/Fe], vmacro), as `stellarml.labels` names.
PAYNE_APOGEE_LABELS = ("teff", "logg", "fe_h", "mg_fe", "vmacro")


class PayneEmulator(SpectrumEmulator):
    """Per-pixel networks with one hidden sigmoid layer (The Payne layout).

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
        The ``L`` labels in input order (`stellarml.labels` names).
    label_lo, label_hi : array-like
        ``(L,)`` training box in physical units (``x_min``, ``x_max`` of a
        binspec file): the scaling ``x = (l - lo) / (hi - lo) - 0.5``.
    wavelength : array-like
        ``(npix,)`` wavelengths of the pixels [Angstrom], increasing (gaps allowed).
    max_elements : int, optional
        Largest number of hidden activations (spectra x pixels x units)
        computed at once; larger batches are split.

    Examples
    --------
    A random two-label emulator on 50 pixels:

    >>> import numpy as np, torch
    >>> from stellarml.models.emulator import PayneEmulator
    >>> rng = np.random.default_rng(0)
    >>> emu = PayneEmulator(
    ...     rng.normal(size=(50, 3, 2)), rng.normal(size=(50, 3)),
    ...     0.1 * rng.normal(size=(50, 3)), np.ones(50),
    ...     ("teff", "logg"), [4000.0, 1.0], [6000.0, 5.0],
    ...     np.linspace(5000.0, 5100.0, 50))
    >>> emu.flux(torch.tensor([[5000.0, 3.0]])).shape
    torch.Size([1, 50])
    >>> emu.jacobian(torch.zeros(4, 2)).shape
    torch.Size([4, 50, 2])
    """

    def __init__(
        self,
        w0,
        b0,
        w1,
        b1,
        label_names,
        label_lo,
        label_hi,
        wavelength,
        *,
        max_elements=1 << 24,
    ):
        super().__init__(label_names, label_lo, label_hi, wavelength)
        npix, n_labels = self.n_pixels, self.n_labels
        arrays = {
            "w0": np.asarray(w0, dtype=np.float32),
            "b0": np.asarray(b0, dtype=np.float32),
            "w1": np.asarray(w1, dtype=np.float32),
            "b1": np.asarray(b1, dtype=np.float32),
        }
        w0a = arrays["w0"]
        if w0a.ndim != 3 or w0a.shape[0] != npix or w0a.shape[2] != n_labels:
            raise ValueError(f"w0 must be (npix={npix}, K, L={n_labels}), got shape {w0a.shape}")
        k = w0a.shape[1]
        expected = {"b0": (npix, k), "w1": (npix, k), "b1": (npix,)}
        for name, shape in expected.items():
            if arrays[name].shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {arrays[name].shape}")
        for name, a in arrays.items():
            if not np.isfinite(a).all():
                raise ValueError(f"{name} holds non-finite values")
        if int(max_elements) < 1:
            raise ValueError(f"max_elements must be a positive integer, got {max_elements!r}")
        self.max_elements = int(max_elements)
        self.n_hidden = k
        # first layer as one (npix*K, L) matrix: hidden = x @ w0.T + b0
        self.register_buffer("w0", torch.from_numpy(w0a.reshape(npix * k, n_labels).copy()))
        self.register_buffer("b0", torch.from_numpy(arrays["b0"].reshape(npix * k).copy()))
        self.register_buffer("w1", torch.from_numpy(arrays["w1"].copy()))
        self.register_buffer("b1", torch.from_numpy(arrays["b1"].copy()))

    @classmethod
    def from_npz(cls, path, wavelength_path, *, label_names=PAYNE_APOGEE_LABELS, **kwargs):
        """Read a binspec / The Payne emulator file.

        Parameters
        ----------
        path : str or path-like
            ``.npz`` with ``w_array_0`` ``(npix, K, L)``, ``b_array_0``,
            ``w_array_1``, ``b_array_1``, ``x_min`` and ``x_max`` (physical
            units of the labels).
        wavelength_path : str or path-like
            ``.npz`` with the pixel wavelengths [Angstrom] (its ``wavelength``
            entry, or its only entry).
        label_names : sequence of str, optional
            The labels in the file's order (default the APOGEE emulator's,
            `PAYNE_APOGEE_LABELS`).
        **kwargs
            Passed to `PayneEmulator`.

        Returns
        -------
        emulator : `PayneEmulator`
        """
        with np.load(path) as d:
            missing = [
                k
                for k in ("w_array_0", "b_array_0", "w_array_1", "b_array_1", "x_min", "x_max")
                if k not in d.files
            ]
            if missing:
                raise ValueError(
                    f"{path} is not a Payne emulator file: it lacks {', '.join(missing)}"
                )
            parts = {k: np.asarray(d[k]) for k in d.files}
        with np.load(wavelength_path) as d:
            key = "wavelength" if "wavelength" in d.files else d.files[0]
            wave = np.asarray(d[key], dtype=np.float64)
        return cls(
            parts["w_array_0"],
            parts["b_array_0"],
            parts["w_array_1"],
            parts["b_array_1"],
            label_names,
            parts["x_min"],
            parts["x_max"],
            wave,
            **kwargs,
        )

    def weights(self):
        """The weights as float32 numpy arrays in the file layout.

        Returns
        -------
        dict
            ``w0`` ``(npix, K, L)``, ``b0`` ``(npix, K)``, ``w1`` ``(npix, K)``, ``b1`` ``(npix,)``.
        """
        npix, k, n_labels = self.n_pixels, self.n_hidden, self.n_labels
        return {
            "w0": self.w0.detach().cpu().numpy().reshape(npix, k, n_labels).copy(),
            "b0": self.b0.detach().cpu().numpy().reshape(npix, k).copy(),
            "w1": self.w1.detach().cpu().numpy().copy(),
            "b1": self.b1.detach().cpu().numpy().copy(),
        }

    def get_config(self):
        """Everything but the weights, as a plain (JSON/ASDF-serialisable) dict.

        Returns
        -------
        dict
            ``class``, ``label_names``, ``label_lo`` and ``label_hi`` (physical
            units), ``wavelength`` [Angstrom] (lists), ``n_hidden`` (``K``)
            and ``max_elements``. The weights are buffers: ``state_dict()``
            holds them (``w0`` as ``(npix * K, L)``), and
            ``from_config(config).load_state_dict(state_dict)`` rebuilds the
            emulator.
        """
        return {
            **_base_config(self),
            "n_hidden": int(self.n_hidden),
            "max_elements": int(self.max_elements),
        }

    @classmethod
    def from_config(cls, config):
        """An emulator with zero weights of the right shapes from a `get_config` dict.

        Parameters
        ----------
        config : dict
            As returned by `get_config`.

        Returns
        -------
        emulator : `PayneEmulator`
            All weights 0 (flux 0 everywhere) until ``load_state_dict``.
        """
        cfg = _check_config(cls, config)
        if "n_hidden" not in cfg:
            raise ValueError("config lacks n_hidden")
        npix, n_labels, k = len(cfg["wavelength"]), len(cfg["label_names"]), int(cfg["n_hidden"])
        return cls(
            np.zeros((npix, k, n_labels), dtype=np.float32),
            np.zeros((npix, k), dtype=np.float32),
            np.zeros((npix, k), dtype=np.float32),
            np.zeros(npix, dtype=np.float32),
            cfg["label_names"],
            cfg["label_lo"],
            cfg["label_hi"],
            cfg["wavelength"],
            **({"max_elements": cfg["max_elements"]} if "max_elements" in cfg else {}),
        )

    def _rows_per_chunk(self):
        return max(1, self.max_elements // (self.n_pixels * self.n_hidden * self.n_labels))

    def _hidden(self, x):
        h = torch.addmm(self.b0, x, self.w0.T)
        return h.view(x.shape[0], self.n_pixels, self.n_hidden)

    def forward(self, x):
        """Normalised flux ``(n, npix)`` at scaled labels ``x`` ``(n, L)``."""
        x = torch.as_tensor(x, dtype=self.w0.dtype, device=self.w0.device)
        if x.ndim != 2 or x.shape[1] != self.n_labels:
            raise ValueError(f"x must be (n, {self.n_labels}), got {tuple(x.shape)}")
        step = max(1, self.max_elements // (self.n_pixels * self.n_hidden))
        out = []
        for i in range(0, x.shape[0], step):
            s = torch.sigmoid(self._hidden(x[i : i + step]))
            out.append((s * self.w1).sum(-1) + self.b1)
        return torch.cat(out) if out else x.new_zeros((0, self.n_pixels))

    def jacobian(self, x, *, chunk_size=None):
        """``d flux / d x`` ``(n, npix, L)`` at scaled labels ``x`` ``(n, L)`` (analytic).

        ``chunk_size`` (spectra per chunk) overrides the chunking by
        ``max_elements``.
        """
        return self.flux_and_jacobian(x, chunk_size=chunk_size)[1]

    def flux_and_jacobian(self, x, *, chunk_size=None):
        """Flux ``(n, npix)`` and its Jacobian ``(n, npix, L)`` in one pass."""
        x = torch.as_tensor(x, dtype=self.w0.dtype, device=self.w0.device)
        if x.ndim != 2 or x.shape[1] != self.n_labels:
            raise ValueError(f"x must be (n, {self.n_labels}), got {tuple(x.shape)}")
        step = int(chunk_size) if chunk_size else self._rows_per_chunk()
        w0 = self.w0.view(self.n_pixels, self.n_hidden, self.n_labels)
        fluxes, jacs = [], []
        for i in range(0, x.shape[0], step):
            s = torch.sigmoid(self._hidden(x[i : i + step]))
            fluxes.append((s * self.w1).sum(-1) + self.b1)
            a = s * (1.0 - s) * self.w1  # (n, npix, K)
            jacs.append(torch.einsum("npk,pkl->npl", a, w0))
        if not fluxes:
            return x.new_zeros((0, self.n_pixels)), x.new_zeros((0, self.n_pixels, self.n_labels))
        return torch.cat(fluxes), torch.cat(jacs)
