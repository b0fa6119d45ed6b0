"""Spectrum emulators (labels -> spectrum) for forward-model fitting (PhDLspec).

`SpectrumEmulator` is the interface the fitters of `stellarml.fitting` use.
"""

from .base import SpectrumEmulator

__all__ = ["SpectrumEmulator"]
