"""Spectral libraries: labelled sets of spectra for training and testing models.

- `SpectralLibrary`: spectra on one grid with a label table; degrade, add noise,
  augment, split, k-fold, prepare for a model.
- `PolynomialEmulatorLibrary`: generates synthetic libraries from a polynomial
  (Cannon-style) emulator, with sampling designs.
- `LineListLibrary`: a many-label (Teff, log g, vmicro, [Fe/H], ~20 [X/Fe]) synthetic
  library: the polynomial base spectrum with element lines from a real line list,
  differentiable in torch; an approximation for method development, not for science.
- `ObservedLibrary`: observed spectra with reference labels, e.g. MILES.
- `PhoenixLibrary`, `KuruczLibrary`: model-atmosphere grids from a local
  directory or downloaded on demand, with multilinear interpolation.
- `write_library`, `read_library`, `LibraryStoreWriter`: a compact, lazily
  memory-mapped ASDF store for degraded training sets.
- `stellarml.libraries.augment`: the array-level augmentation functions;
  `stellarml.libraries.download`: grid downloads into the astropy cache.
"""

from . import augment, download
from .base import SpectralLibrary
from .emulated import PolynomialEmulatorLibrary
from .grids import GridLibrary, KuruczLibrary, PhoenixLibrary
from .linelist import LineList, LineListLibrary, read_galah_linelist
from .observed import ObservedLibrary
from .store import LibraryStoreWriter, read_library, write_library

__all__ = [
    "GridLibrary",
    "KuruczLibrary",
    "LibraryStoreWriter",
    "LineList",
    "LineListLibrary",
    "ObservedLibrary",
    "PhoenixLibrary",
    "PolynomialEmulatorLibrary",
    "SpectralLibrary",
    "augment",
    "download",
    "read_galah_linelist",
    "read_library",
    "write_library",
]
