"""deep-REMAP: multi-task regression-as-classification of stellar labels with a 1-D ResNet.

One module per concern: `~stellarml.models.remap.config` (defaults of every
setting), `~stellarml.models.remap.network` (`RemapNet`),
`~stellarml.models.remap.pdf` (head logits to PDFs), `~stellarml.models.remap.inference`
(forward passes, posteriors, REMAP's own quality flags),
`~stellarml.models.remap.training` (objective and training stages),
`~stellarml.models.remap.model` (`RemapModel`) and
`~stellarml.models.remap.ensemble` (`RemapEnsemble`). See ``docs/remap.rst``.
"""

from ...posterior import LabelBins
from ...spectra.noise import der_snr_ivar
from ..domain import nearest_distance
from .config import DEFAULT_ARCHITECTURE, DEFAULT_BINS, DEFAULT_LOSS, DEFAULT_TRAINING
from .ensemble import RemapEnsemble
from .inference import EDGE_MASS_LIMIT
from .model import RemapModel
from .network import RemapNet
from .pdf import pdf_from_logits, summarize_pdf

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_BINS",
    "DEFAULT_LOSS",
    "DEFAULT_TRAINING",
    "EDGE_MASS_LIMIT",
    "LabelBins",
    "RemapEnsemble",
    "RemapModel",
    "RemapNet",
    "der_snr_ivar",
    "nearest_distance",
    "pdf_from_logits",
    "summarize_pdf",
]
