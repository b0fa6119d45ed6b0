"""Spectrum emulators (labels -> spectrum) for forward-model fitting (PhDLspec).

`SpectrumEmulator` is the interface the fitters of `stellarml.fitting` use;
`PayneEmulator` is the per-pixel network of The Payne / binspec;
`MLPEmulator` a fully-connected network shared by all pixels (a Payne-style
baseline) and `TransformerEmulator` a transformer encoder over wavelength
chunks, both trained with `stellarml.training.train_emulator`;
`EmulatorModel` is the `~stellarml.models.LabelModel` that fits spectra with one.

Every emulator class has ``get_config()`` (a plain dict) and
``from_config(config)``; with ``state_dict()`` / ``load_state_dict()`` they
save and restore it. `EMULATORS` maps the ``"class"`` entry of a config to
its class.
"""

from .base import SpectrumEmulator
from .mlp import MLPEmulator
from .model import EmulatorModel, lattice_grid
from .payne import PAYNE_APOGEE_LABELS, PayneEmulator
from .transformer import TransformerEmulator

#: Emulator classes by name (the ``"class"`` entry of their ``get_config()``).
EMULATORS = {
    "PayneEmulator": PayneEmulator,
    "MLPEmulator": MLPEmulator,
    "TransformerEmulator": TransformerEmulator,
}

__all__ = [
    "EMULATORS",
    "PAYNE_APOGEE_LABELS",
    "EmulatorModel",
    "MLPEmulator",
    "PayneEmulator",
    "SpectrumEmulator",
    "TransformerEmulator",
    "lattice_grid",
]
