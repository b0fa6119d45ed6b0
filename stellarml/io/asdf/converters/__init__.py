"""ASDF converters for stellarml objects (one module per object type).

The model converters share `LabelModelConverter` (``_base``), which writes and
reads the node every model has: name, version, labels, preparation,
provenance and calibration.
"""

from ._base import LabelModelConverter
from .calibration import LabelCalibrationConverter
from .dtl_model import DTLModelConverter
from .emulator_model import EmulatorModelConverter
from .label_spec import LabelSpecConverter
from .preparation import PreparationSettingsConverter
from .remap_ensemble import RemapEnsembleConverter
from .remap_model import RemapModelConverter

__all__ = [
    "DTLModelConverter",
    "EmulatorModelConverter",
    "LabelCalibrationConverter",
    "LabelModelConverter",
    "LabelSpecConverter",
    "PreparationSettingsConverter",
    "RemapEnsembleConverter",
    "RemapModelConverter",
]
