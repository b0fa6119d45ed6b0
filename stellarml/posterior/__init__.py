"""Label posteriors: what every stellarml model returns for a batch of spectra.

A `LabelPosterior` holds, for ``n`` spectra and a fixed list of labels, the
distribution of each label in one of three forms:

`BinnedPosterior`
    Probabilities of equal-width label bins (deep-REMAP's classification
    heads). Quantiles interpolate the cumulative distribution linearly inside
    a bin; the mode is the most probable bin refined by a parabola.
`SamplePosterior`
    Draws from the joint distribution (an ensemble's members, an MCMC chain).
    The mode is not defined (NaN).
`GaussianPosterior`
    A mean and covariance per spectrum (an optimiser with its Cramér–Rao or
    Hessian covariance). The mode and median are the mean.

Every form gives the same summaries (`LabelPosterior.summaries`): median,
16th and 84th percentiles, asymmetric errors, mean and mode; carries per-row
quality flags (`~stellarml.flags.LabelFlag` bits the model computed) and
diagnostics (registered in `stellarml.labels.DIAGNOSTICS`: domain distance,
chi-square, Cramér–Rao bounds...), and supports what a catalogue pipeline
needs: a test for two separated modes (`LabelPosterior.bimodal`, the
``BIMODAL_PDF`` flag; criterion in `bimodal_rows`), row selection and
scatter into a larger batch (`select`, `expand`, `concatenate`), the
mixture of the members of an ensemble (`combine`), and the per-row
affine maps plus Gaussian convolution by which a
`~stellarml.calibration.LabelCalibration` corrects labels (`transformed`).

Posteriors are immutable: every operation returns a new one.
"""

from ._base import (
    BIMODAL_MAX_DIP,
    BIMODAL_MIN_PEAK,
    QUANTILES,
    SUMMARY_KEYS,
    LabelBins,
    LabelPosterior,
    bimodal_rows,
)
from .binned import BinnedPosterior
from .samples import GaussianPosterior, SamplePosterior

__all__ = [
    "BIMODAL_MAX_DIP",
    "BIMODAL_MIN_PEAK",
    "QUANTILES",
    "SUMMARY_KEYS",
    "BinnedPosterior",
    "GaussianPosterior",
    "LabelBins",
    "LabelPosterior",
    "SamplePosterior",
    "bimodal_rows",
]
