"""Spectrum emulators (labels -> spectrum) for forward-model fitting (PhDLspec).

`SpectrumEmulator` is the interface `stellarml.fitting` uses; `PayneEmulator`
reads per-pixel networks in The Payne / binspec layout (e.g. the real APOGEE
emulator of the reference data).
"""

from .base import SpectrumEmulator
from .payne import PayneEmulator

__all__ = ["PayneEmulator", "SpectrumEmulator"]
