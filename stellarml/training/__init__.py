"""Generic training machinery: the `Trainer` loop, spectrum augmentation, transfer learning
(freezing) and weight averaging. Method recipes live in `stellarml.recipes`; nothing here
imports a model.
"""

from .averaging import average_states, module_state
from .trainer import (
    SCHEDULES,
    SpectrumAugmenter,
    Trainer,
    load_state_dict_npz,
    save_state_dict_npz,
)
from .transfer import (
    FREEZE_PRESETS,
    freeze,
    frozen_prefixes,
    resolve_freeze,
    set_train_mode,
    trainable_parameters,
    unfreeze,
)

__all__ = [
    "FREEZE_PRESETS",
    "SCHEDULES",
    "SpectrumAugmenter",
    "Trainer",
    "average_states",
    "freeze",
    "frozen_prefixes",
    "load_state_dict_npz",
    "module_state",
    "resolve_freeze",
    "save_state_dict_npz",
    "set_train_mode",
    "trainable_parameters",
    "unfreeze",
]
