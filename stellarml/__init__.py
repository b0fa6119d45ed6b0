"""stellarml: stellar labels from spectra with deep learning, in the specutils ecosystem.

The public surface: `derive_labels`, `read_model`, `write_model`, the model
classes, and the subpackages `stellarml.spectra`, `stellarml.libraries`,
`stellarml.models` (the `~stellarml.models.LabelModel` contract and the
methods), `stellarml.posterior`, `stellarml.calibration`, `stellarml.catalog`,
`stellarml.training`, `stellarml.recipes`, `stellarml.io`. Importing stellarml registers its
specutils readers (MILES, LAMOST, PHOENIX, Kurucz, CARMENES, GALAH) and its
ASDF extension is found through entry points. `stellarml.conf` holds the
`astropy.config` items (the reference-data folder, the default device).
"""

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - only without an install
    __version__ = "0.0.0"

from . import io  # noqa: F401  (registers the specutils loaders)
from ._config import conf
from .analysis import DEFAULT_MODEL, derive_labels, read_model, write_model
from .catalog import LabelTable
from .flags import LabelFlag

__all__ = [
    "DEFAULT_MODEL",
    "LabelFlag",
    "LabelTable",
    "RemapEnsemble",
    "RemapModel",
    "__version__",
    "conf",
    "derive_labels",
    "read_model",
    "write_model",
]


def __getattr__(name):
    # The model classes import torch: load them on first use so that
    # `import stellarml` (e.g. by asdf's plugin discovery) stays light.
    if name in ("RemapModel", "RemapEnsemble"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'stellarml' has no attribute {name!r}")
