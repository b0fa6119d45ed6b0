"""Recipes: a training configuration in, a trained model out, per method.

``stellarml train CONFIG`` and `train_from_config` read a TOML configuration
whose ``[model]`` table names the method (``method = "remap"``) and hand it
to that method's recipe (`stellarml.recipes.remap`...), which documents the
rest of the configuration. Paths may use ``{data_dir}``, replaced by the
reference data folder (``STELLARML_DATA_DIR``).
"""

import copy
import importlib
import tomllib
from pathlib import Path

from .._utils import data_dir

__all__ = ["RECIPES", "load_config", "train_from_config"]

#: Method name -> module of its recipe (each has ``check_config(cfg)`` and ``train(cfg, ...)``).
RECIPES = {
    "remap": "stellarml.recipes.remap",
    "dtl": "stellarml.recipes.dtl",
    "phdl": "stellarml.recipes.phdl",
}


def _expand(value):
    if isinstance(value, str) and "{data_dir}" in value:
        return value.replace("{data_dir}", str(data_dir()))
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def _recipe(cfg):
    model = cfg.get("model")
    if not isinstance(model, dict):
        raise ValueError("training configuration lacks the [model] table")
    method = model.get("method")
    if method is None:
        raise ValueError(
            f'[model] must name the method, e.g. method = "remap"; known: {", ".join(RECIPES)}'
        )
    if method not in RECIPES:
        raise ValueError(f"unknown method {method!r} in [model]; known: {', '.join(RECIPES)}")
    return importlib.import_module(RECIPES[method])


def load_config(config):
    """Read and check a training configuration.

    Parameters
    ----------
    config : str, path-like or dict
        A TOML file or an already-parsed dictionary.

    Returns
    -------
    config : dict
        A deep copy with ``{data_dir}`` expanded, checked by its method's recipe.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not TOML, names no or an unknown method, or its recipe
        finds it incomplete (the message says what is missing).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stellarml.recipes import load_config
    >>> toml = '''
    ... [model]
    ... method = "remap"
    ... name = "tiny"
    ... [preparation]
    ... wavelength_min = 5000.0   # Angstrom
    ... wavelength_max = 5300.0
    ... dloglam = 3.0e-4
    ... [pretrain]
    ... emulator = "{data_dir}/doppler/coolstars_cubic_emulator.npz"
    ... '''
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "tiny.toml"
    ...     _ = path.write_text(toml)
    ...     cfg = load_config(path)
    >>> cfg["model"]["name"], cfg["preparation"]["dloglam"]
    ('tiny', 0.0003)
    >>> cfg["pretrain"]["emulator"].endswith("/doppler/coolstars_cubic_emulator.npz")  # expanded
    True
    >>> try:
    ...     load_config({"model": {"method": "payne", "name": "x"}})
    ... except ValueError as err:
    ...     print(err)
    unknown method 'payne' in [model]; known: remap, dtl, phdl
    """
    if isinstance(config, dict):
        cfg = copy.deepcopy(config)
    else:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"training configuration not found: {path}")
        try:
            cfg = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path} is not valid TOML: {exc}") from None
    _recipe(cfg).check_config(cfg)
    return _expand(cfg)


def train_from_config(config, *, output=None, progress=True, **options):
    """Train a model as a configuration says, with the recipe of the method it names.

    Parameters
    ----------
    config : str, path-like or dict
        The configuration (see `load_config` and the method's recipe).
    output : str or path-like, optional
        Write the trained model to this ASDF file.
    progress : bool
        Show progress bars.
    **options
        Passed to the recipe's ``train`` (e.g. REMAP's ``pretrained_output``).

    Returns
    -------
    model : `~stellarml.models.LabelModel`
        The model the method's recipe trains (e.g. a `~stellarml.models.RemapModel`).

    Raises
    ------
    FileNotFoundError, ValueError
        As `load_config`.

    Examples
    --------
    A tiny REMAP model (32 synthetic spectra, one epoch) trains in about a
    second; the shipped configurations in ``scripts/`` take hours:

    >>> from stellarml.recipes import train_from_config
    >>> model = train_from_config({
    ...     "model": {"method": "remap", "name": "tiny", "device": "cpu",
    ...               "training": {"max_epochs": 1}},
    ...     "preparation": {"wavelength_min": 5000.0, "wavelength_max": 5300.0,
    ...                     "dloglam": 3e-4, "resolution": 1500.0},
    ...     "pretrain": {"emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz"),
    ...                  "n_spectra": 32},
    ... }, progress=False)
    >>> type(model).__name__, model.name, model.label_names
    ('RemapModel', 'tiny', ('teff', 'logg', 'fe_h'))

    Notes
    -----
    In a `torch.distributed` process group (``torchrun``, see
    `stellarml.training.distributed`) every process trains, data-parallel, and
    only rank 0 writes ``output`` and the ``*_output`` options (the others get
    `None` for them) and shows progress bars.
    """
    from ..training.distributed import is_main_process

    cfg = load_config(config)
    if not is_main_process():
        output = None
        progress = False
        options = {k: (None if k.endswith("_output") else v) for k, v in options.items()}
    return _recipe(cfg).train(cfg, output=output, progress=progress, **options)
