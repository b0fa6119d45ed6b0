"""stellarml's models: the `LabelModel` contract and the methods that implement it.

`LabelModel` (`stellarml.models.base`) is all that `stellarml.derive_labels`,
the command line and the catalogue know of a model. Each method lives in its
own subpackage and never imports another method, `stellarml.io`,
`stellarml.analysis`, `stellarml.catalog` or `stellarml.cli`:

* deep-REMAP (`stellarml.models.remap`): `RemapModel` (train, fine-tune,
  predict binned label PDFs), `RemapEnsemble` (several of them, PDFs
  averaged), `RemapNet` (the 1-D residual network);
* autoencoder deep transfer learning (`stellarml.models.dtl`): `DTLModel`
  (autoencoders trained on synthetic spectra, adapted to unlabelled observed
  spectra, an ensemble of latent-space regressors);
* shared building blocks: `stellarml.models.layers` (residual blocks, input
  encoding), `stellarml.models.losses` (asymmetric loss, embedding losses),
  `stellarml.models.domain` (feature-space distances).

The method classes import torch; they are loaded on first use, so that
``import stellarml.models`` (e.g. for `LabelModel`) stays light.
"""

import importlib

from .base import LabelModel, LabelModelBase

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_BINS",
    "DEFAULT_LOSS",
    "DEFAULT_TRAINING",
    "EMBEDDING_LOSSES",
    "AsymmetricLoss",
    "CenterEmbeddingLoss",
    "DTLModel",
    "EmbeddingLoss",
    "InputEncoding",
    "LabelModel",
    "LabelModelBase",
    "PairwiseEmbeddingLoss",
    "RemapEnsemble",
    "RemapModel",
    "RemapNet",
    "ResidualBlockV1",
    "ResidualBlockV2",
    "Stem",
    "gaussian_bin_targets",
    "make_activation",
    "make_embedding_loss",
    "nearest_distance",
    "pdf_from_logits",
    "summarize_pdf",
]

#: Where each lazily loaded name lives.
_LAZY = {
    **dict.fromkeys(
        (
            "DEFAULT_ARCHITECTURE",
            "DEFAULT_BINS",
            "DEFAULT_LOSS",
            "DEFAULT_TRAINING",
            "RemapEnsemble",
            "RemapModel",
            "RemapNet",
            "pdf_from_logits",
            "summarize_pdf",
        ),
        "stellarml.models.remap",
    ),
    **dict.fromkeys(
        ("InputEncoding", "ResidualBlockV1", "ResidualBlockV2", "Stem", "make_activation"),
        "stellarml.models.layers",
    ),
    **dict.fromkeys(
        (
            "EMBEDDING_LOSSES",
            "AsymmetricLoss",
            "CenterEmbeddingLoss",
            "EmbeddingLoss",
            "PairwiseEmbeddingLoss",
            "gaussian_bin_targets",
            "make_embedding_loss",
        ),
        "stellarml.models.losses",
    ),
    "nearest_distance": "stellarml.models.domain",
    "DTLModel": "stellarml.models.dtl",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stellarml.models' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
