"""Autoencoder deep transfer learning (DTL; Mas-Buitrago et al. 2024, A&A 687, A205).

`DTLModel` (train on synthetic spectra, adapt to unlabelled observed spectra,
predict an ensemble's label draws), its networks (`DenseAutoencoder`,
`LatentRegressor`, `contractive_penalty`) and the domain-gap diagnostics
(`mmd_test`, `domain_gap`, `project_latents`; drawn by
`stellarml.visualization.plot_latent_projection`). See
``docs/dtl.rst``.
"""

from .config import (
    DEFAULT_ARCHITECTURE,
    DEFAULT_ENSEMBLE,
    DEFAULT_TRAINING,
    PAPER_ARCHITECTURE,
    PAPER_ENSEMBLE,
)
from .diagnostics import domain_gap, mmd_test, project_latents
from .model import DTLModel, kde_mode
from .network import CONTRACTIVE_FORMS, DenseAutoencoder, LatentRegressor, contractive_penalty

__all__ = [
    "CONTRACTIVE_FORMS",
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_ENSEMBLE",
    "DEFAULT_TRAINING",
    "PAPER_ARCHITECTURE",
    "PAPER_ENSEMBLE",
    "DTLModel",
    "DenseAutoencoder",
    "LatentRegressor",
    "contractive_penalty",
    "domain_gap",
    "kde_mode",
    "mmd_test",
    "project_latents",
]
