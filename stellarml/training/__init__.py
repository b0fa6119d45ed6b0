"""Training machinery: the `Trainer` loop, spectrum augmentation and transfer learning."""

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
    "freeze",
    "frozen_prefixes",
    "load_state_dict_npz",
    "resolve_freeze",
    "save_state_dict_npz",
    "set_train_mode",
    "trainable_parameters",
    "unfreeze",
]
