"""Converter for `stellarml.models.emulator.EmulatorModel`."""

import numpy as np

from ._base import LabelModelConverter
from ._common import check_finite

__all__ = ["EmulatorModelConverter"]


class EmulatorModelConverter(LabelModelConverter):
    """Serialise an emulator model (PhDLspec-style forward modelling) as one node.

    Besides the common model entries (see `LabelModelConverter`) the node
    holds ``emulator``: its ``class`` (a key of
    `stellarml.models.emulator.EMULATORS`), ``config`` (its ``get_config()``:
    labels, box, wavelength grid, architecture) and ``state`` (its
    ``state_dict()``, every tensor a float32 binary block); and ``fitter``,
    ``fitter_settings``, ``fit_options`` (with ``model_error`` as an array)
    and ``medium``. Reading refuses unknown emulator classes and non-finite
    weights.

    Examples
    --------
    asdf uses it for any `~stellarml.models.emulator.EmulatorModel` in a tree,
    here the shipped ``phdl-optical-r2000``:

    >>> import re, tempfile
    >>> from pathlib import Path
    >>> import asdf, torch
    >>> from stellarml import read_model
    >>> from stellarml.io.asdf.converters import EmulatorModelConverter
    >>> EmulatorModelConverter.tags
    ('asdf://stellarml.org/stellarml/tags/emulator_model-1.*',)
    >>> model = read_model("phdl-optical-r2000")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "emulator.asdf"
    ...     asdf.AsdfFile({"x": model}).write_to(path)
    ...     tag = re.search(b"x: !<([^>]+)>", path.read_bytes()).group(1).decode()
    ...     with asdf.open(path) as af:
    ...         back = af["x"]
    >>> print(tag)
    asdf://stellarml.org/stellarml/tags/emulator_model-1.0.0
    >>> type(back.emulator).__name__, back.emulator.n_pixels, back.fitter
    ('MLPEmulator', 2037, 'gradient')
    >>> before, after = model.emulator.state_dict(), back.emulator.state_dict()
    >>> all(torch.equal(before[key], after[key]) for key in before)  # float32 weights, exact
    True
    """

    tags = ("asdf://stellarml.org/stellarml/tags/emulator_model-1.*",)
    types = ("stellarml.models.emulator.model.EmulatorModel",)

    def method_node(self, obj, tag, ctx):
        from stellarml._utils import plain_tree

        emu = obj.emulator
        state = {
            k: v.detach().cpu().numpy().astype(np.float32) for k, v in emu.state_dict().items()
        }
        options = dict(obj.fit_options)
        error = options.pop("model_error", None)
        return {
            "emulator": {
                "class": type(emu).__name__,
                "config": plain_tree(emu.get_config()),
                "state": state,
            },
            "fitter": obj.fitter,
            "fitter_settings": plain_tree(obj.fitter_settings),
            "fit_options": plain_tree(options),
            "model_error": None if error is None else np.asarray(error, dtype=np.float32),
        }

    def build_model(self, node, label_names, tag, ctx):
        import torch

        from stellarml.models.emulator import EMULATORS, EmulatorModel

        missing = [k for k in ("emulator", "fitter") if k not in node]
        if missing:
            raise ValueError(f"not an EmulatorModel node: missing {missing}")
        spec = dict(node["emulator"])
        cls = EMULATORS.get(spec.get("class"))
        if cls is None:
            raise ValueError(
                f"unknown emulator class {spec.get('class')!r}; known: {', '.join(EMULATORS)}"
            )
        state = {k: np.asarray(v) for k, v in dict(spec.get("state") or {}).items()}
        check_finite(state, "emulator weights")
        emulator = cls.from_config(dict(spec["config"]))
        emulator.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
        if tuple(emulator.label_names) != tuple(label_names):
            raise ValueError(
                f"the emulator's labels {emulator.label_names} are not the model's {label_names}"
            )
        options = dict(node.get("fit_options") or {})
        for key in ("rv", "bounds", "priors"):
            if isinstance(options.get(key), dict):
                options[key] = {k: tuple(v) for k, v in options[key].items()}
            elif isinstance(options.get(key), list):
                options[key] = tuple(options[key])
        if node.get("model_error") is not None:
            options["model_error"] = np.asarray(node["model_error"], dtype=np.float64)
            check_finite(options["model_error"], "model_error")
        return EmulatorModel(
            emulator,
            name=str(node.get("name", "emulator")),
            fitter=str(node["fitter"]),
            fitter_settings=dict(node.get("fitter_settings") or {}),
            fit_options=options,
            preparation=node.get("preparation"),
        )
