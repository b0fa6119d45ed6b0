"""Neural-network models of stellarml: deep-REMAP and its building blocks.

`RemapModel` is the user-facing deep-REMAP model (train, fine-tune, predict
binned label PDFs); `RemapEnsemble` averages the PDFs of several of them;
`RemapNet` is the 1-D residual network; `layers` and `losses` hold the
residual blocks, the input encoding, the asymmetric loss and the embedding
losses.
"""

from .ensemble import RemapEnsemble
from .layers import (
    InputEncoding,
    ResidualBlockV1,
    ResidualBlockV2,
    Stem,
    make_activation,
)
from .losses import (
    EMBEDDING_LOSSES,
    AsymmetricLoss,
    CenterEmbeddingLoss,
    EmbeddingLoss,
    PairwiseEmbeddingLoss,
    gaussian_bin_targets,
    make_embedding_loss,
)
from .remap import (
    DEFAULT_ARCHITECTURE,
    DEFAULT_BINS,
    DEFAULT_LOSS,
    DEFAULT_TRAINING,
    LabelBins,
    RemapModel,
    RemapNet,
    der_snr_ivar,
    nearest_distance,
    pdf_from_logits,
    summarize_pdf,
)

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_BINS",
    "DEFAULT_LOSS",
    "DEFAULT_TRAINING",
    "EMBEDDING_LOSSES",
    "AsymmetricLoss",
    "CenterEmbeddingLoss",
    "EmbeddingLoss",
    "InputEncoding",
    "LabelBins",
    "PairwiseEmbeddingLoss",
    "RemapEnsemble",
    "RemapModel",
    "RemapNet",
    "ResidualBlockV1",
    "ResidualBlockV2",
    "Stem",
    "der_snr_ivar",
    "gaussian_bin_targets",
    "make_activation",
    "make_embedding_loss",
    "nearest_distance",
    "pdf_from_logits",
    "summarize_pdf",
]
