"""Spectral libraries: labelled sets of spectra for training and testing models.

- `SpectralLibrary`: spectra on one grid with a label table; degrade, add noise,
  augment, split, k-fold, prepare for a model.
- `PolynomialEmulatorLibrary`: generates synthetic libraries from a polynomial
  (Cannon-style) emulator, with sampling designs.
- `ObservedLibrary`: observed spectra with reference labels, e.g. MILES.
- `stellarml.libraries.augment`: the array-level augmentation functions.
"""

from . import augment
from .base import SpectralLibrary
from .emulated import PolynomialEmulatorLibrary
from .observed import ObservedLibrary

__all__ = ["ObservedLibrary", "PolynomialEmulatorLibrary", "SpectralLibrary", "augment"]
