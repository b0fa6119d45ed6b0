"""Generic training machinery: the `Trainer` loop, spectrum augmentation, transfer learning
(freezing) and weight averaging. Method recipes live in `stellarml.recipes`; nothing here
imports a model.
"""

from . import distributed
from .averaging import average_states, module_state
from .distributed import destroy_distributed, init_distributed, is_main_process
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
    "destroy_distributed",
    "distributed",
    "freeze",
    "frozen_prefixes",
    "init_distributed",
    "is_main_process",
    "load_state_dict_npz",
    "module_state",
    "resolve_freeze",
    "save_state_dict_npz",
    "set_train_mode",
    "trainable_parameters",
    "unfreeze",
]
