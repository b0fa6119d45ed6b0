"""Helpers of the emulator and fitting tests (spectra made from an emulator)."""

import numpy as np
import torch


def noisy(emulator, truth, snr, seed):
    """Emulator spectra of ``truth`` (n, L) with Gaussian noise at S/N ``snr``; (flux, ivar)."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        clean = emulator.flux(torch.tensor(truth, dtype=torch.float32)).double().numpy()
    ivar = np.full(clean.shape, float(snr) ** 2)
    return clean + rng.standard_normal(clean.shape) / snr, ivar


#: Labels inside the APOGEE emulator's (dwarf) box.
DWARF = np.array([5200.0, 4.4, -0.3, 0.1, 6.0])
