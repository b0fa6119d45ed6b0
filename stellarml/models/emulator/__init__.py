"""Spectrum emulators (labels -> spectrum) for forward-model fitting (PhDLspec).

`SpectrumEmulator` is the interface the fitters of `stellarml.fitting` use;
`PayneEmulator` is the per-pixel network of The Payne / binspec;
`EmulatorModel` is the `~stellarml.models.LabelModel` that fits spectra with one.
"""

from .base import SpectrumEmulator
from .model import EmulatorModel, lattice_grid
from .payne import PAYNE_APOGEE_LABELS, PayneEmulator

__all__ = [
    "PAYNE_APOGEE_LABELS",
    "EmulatorModel",
    "PayneEmulator",
    "SpectrumEmulator",
    "lattice_grid",
]
