"""Forward-model fitting of spectra with emulators (PhDLspec).

`GradientFitter` fits batches of spectra (Levenberg–Marquardt, several
starts) and returns a `FitResult` with its Laplace covariance;
`cramer_rao_bound` gives the best precision any unbiased fit can reach from
an emulator's Jacobian. It works on any object with the
`~stellarml.models.emulator.SpectrumEmulator` interface.
"""

from .crlb import cramer_rao_bound, fisher_matrix
from .gradient import FitResult, GradientFitter

__all__ = ["FitResult", "GradientFitter", "cramer_rao_bound", "fisher_matrix"]
