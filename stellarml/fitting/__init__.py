"""Forward-model fitting of spectra with emulators (PhDLspec).

`cramer_rao_bound` gives the best precision any unbiased fit can reach from
an emulator's Jacobian. It works on any object with the
`~stellarml.models.emulator.SpectrumEmulator` interface.
"""

from .crlb import cramer_rao_bound, fisher_matrix

__all__ = ["cramer_rao_bound", "fisher_matrix"]
