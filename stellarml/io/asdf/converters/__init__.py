"""ASDF converters for stellarml objects (one module per object type)."""

from .label_spec import LabelSpecConverter
from .preparation import PreparationSettingsConverter
from .remap_ensemble import RemapEnsembleConverter
from .remap_model import RemapModelConverter

__all__ = [
    "LabelSpecConverter",
    "PreparationSettingsConverter",
    "RemapEnsembleConverter",
    "RemapModelConverter",
]
