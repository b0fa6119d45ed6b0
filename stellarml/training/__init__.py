"""Generic training machinery: the `Trainer` loop, spectrum augmentation, transfer learning
(freezing), weight averaging, and emulator training with a gradient prior
(`train_emulator`, `reference_jacobians`). Method recipes live in `stellarml.recipes`;
nothing here imports a model.
"""

from . import distributed
from .averaging import average_states, module_state
from .distributed import destroy_distributed, init_distributed, is_main_process
from .emulator import (
    EMULATOR_SCHEDULES,
    jacobian_error,
    jacobians_from_perturbed,
    load_reference_jacobians,
    reference_jacobians,
    train_emulator,
)
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
    "EMULATOR_SCHEDULES",
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
    "jacobian_error",
    "jacobians_from_perturbed",
    "load_reference_jacobians",
    "load_state_dict_npz",
    "module_state",
    "reference_jacobians",
    "resolve_freeze",
    "save_state_dict_npz",
    "set_train_mode",
    "train_emulator",
    "trainable_parameters",
    "unfreeze",
]
