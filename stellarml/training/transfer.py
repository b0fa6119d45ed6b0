"""Freezing parts of a network for fine-tuning (transfer learning).

deep-REMAP pre-trains on synthetic spectra and fine-tunes on a small set of
observed stars; which layers were frozen is not given in the paper (NF in
METHODS.md), so it is a choice of the caller. Modules are selected by prefixes
of their qualified names (``"stem"``, ``"stages.0"``, ``"heads.teff"``): a
prefix matches a name equal to it or starting with it followed by a dot.

Freezing really freezes: the parameters get ``requires_grad = False`` (the
optimiser never sees them) *and* the frozen modules are kept in evaluation
mode during training (`set_train_mode`), so batch-norm running statistics and
dropout do not change either.
"""

from torch import nn

__all__ = [
    "FREEZE_PRESETS",
    "freeze",
    "frozen_prefixes",
    "resolve_freeze",
    "set_train_mode",
    "trainable_parameters",
    "unfreeze",
]

#: Named freezing choices of `~stellarml.models.RemapModel.fine_tune`: module-name prefixes
#: of `~stellarml.models.RemapNet` that stay fixed. ``"backbone"`` keeps the whole
#: feature extractor including the embedding layer (only the label heads learn, and
#: the stored embedding reference for the domain check stays valid); ``"stem"``
#: keeps only the input convolution; ``"none"`` trains everything.
FREEZE_PRESETS = {
    "none": (),
    "stem": ("encoder", "stem"),
    "backbone": ("encoder", "stem", "stages", "embedding"),
}

_ATTR = "_stellarml_frozen_prefixes"


def _matches(name, prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def resolve_freeze(freeze, module):
    """Turn a freezing choice into a tuple of module-name prefixes.

    Parameters
    ----------
    freeze : str or sequence of str or None
        A key of `FREEZE_PRESETS` or a list of module-name prefixes. `None`
        means ``"none"``.
    module : `torch.nn.Module`
        The network the prefixes refer to.

    Returns
    -------
    prefixes : tuple of str

    Raises
    ------
    ValueError
        For an unknown preset, or a prefix that matches no submodule or
        parameter of ``module`` (the message lists the top-level names).
    TypeError
        If a prefix is not a non-empty string.

    Examples
    --------
    >>> import torch
    >>> from stellarml.training import resolve_freeze
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> resolve_freeze(None, net), resolve_freeze("none", net), resolve_freeze(["0"], net)
    ((), (), ('0',))
    >>> try:
    ...     resolve_freeze(["encoder"], net)  # the presets name RemapNet's modules
    ... except ValueError as err:
    ...     print(err)
    freeze prefixes ['encoder'] match nothing in Sequential; top-level modules are ['0', '1', '2']
    """
    if freeze is None:
        freeze = "none"
    if isinstance(freeze, str):
        if freeze not in FREEZE_PRESETS:
            raise ValueError(
                f"unknown freeze choice {freeze!r}; use one of {', '.join(FREEZE_PRESETS)} "
                "or a list of module-name prefixes"
            )
        prefixes = FREEZE_PRESETS[freeze]
    else:
        prefixes = tuple(freeze)
        if not all(isinstance(p, str) and p for p in prefixes):
            raise TypeError(f"freeze prefixes must be non-empty strings, got {freeze!r}")
    names = {name for name, _ in module.named_modules()} | {
        name for name, _ in module.named_parameters()
    }
    unknown = [p for p in prefixes if not any(_matches(n, (p,)) for n in names if n)]
    if unknown:
        top = sorted({n.split(".")[0] for n in names if n})
        raise ValueError(
            f"freeze prefixes {unknown} match nothing in {type(module).__name__}; "
            f"top-level modules are {top}"
        )
    return prefixes


def freeze(module, prefixes):
    """Freeze the parameters of ``module`` whose names match ``prefixes``.

    Parameters
    ----------
    module : `torch.nn.Module`
        The network.
    prefixes : sequence of str
        Module-name prefixes (see `resolve_freeze`). All other parameters are
        made trainable.

    Returns
    -------
    names : list of str
        The names of the frozen parameters.

    Examples
    --------
    >>> import torch
    >>> from stellarml.training import freeze, frozen_prefixes, trainable_parameters
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> freeze(net, ["0"])  # keep the first layer fixed
    ['0.weight', '0.bias']
    >>> net[0].weight.requires_grad, len(trainable_parameters(net)), frozen_prefixes(net)
    (False, 2, ('0',))
    """
    prefixes = tuple(prefixes)
    frozen = []
    for name, param in module.named_parameters():
        hit = _matches(name, prefixes)
        param.requires_grad_(not hit)
        if hit:
            frozen.append(name)
    setattr(module, _ATTR, prefixes)
    return frozen


def unfreeze(module):
    """Make every parameter of ``module`` trainable again and forget the frozen prefixes.

    Parameters
    ----------
    module : `torch.nn.Module`
        The network.

    Examples
    --------
    >>> import torch
    >>> from stellarml.training import freeze, frozen_prefixes, trainable_parameters, unfreeze
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> _ = freeze(net, ["0"])
    >>> unfreeze(net)
    >>> len(trainable_parameters(net)), frozen_prefixes(net)
    (4, ())
    """
    for param in module.parameters():
        param.requires_grad_(True)
    setattr(module, _ATTR, ())


def frozen_prefixes(module):
    """Prefixes frozen with `freeze` on ``module`` itself.

    Parameters
    ----------
    module : `torch.nn.Module`
        The network.

    Returns
    -------
    prefixes : tuple of str
        Those of the last `freeze` call on ``module`` (not on its submodules);
        empty if none, or after `unfreeze`.

    Examples
    --------
    >>> import torch
    >>> from stellarml.training import freeze, frozen_prefixes
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> frozen_prefixes(net)
    ()
    >>> _ = freeze(net, ["0", "2.bias"])
    >>> frozen_prefixes(net)
    ('0', '2.bias')
    """
    return tuple(getattr(module, _ATTR, ()))


def set_train_mode(module):
    """Put ``module`` in training mode, but keep frozen submodules in evaluation mode.

    Any submodule (at any depth) on which `freeze` was called contributes its
    prefixes, so a frozen network wrapped inside a larger training objective is
    honoured.

    Parameters
    ----------
    module : `torch.nn.Module`
        The network, or a training objective that contains it.

    Returns
    -------
    module : `torch.nn.Module`
        ``module`` itself.

    Examples
    --------
    A frozen batch norm keeps its running statistics:

    >>> import torch
    >>> from stellarml.training import freeze, set_train_mode
    >>> net = torch.nn.Sequential(
    ...     torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3))
    >>> _ = freeze(net, ["0", "1"])
    >>> _ = set_train_mode(net)
    >>> net.training, net[1].training, net[2].training
    (True, False, True)
    """
    module.train()
    for owner in module.modules():
        prefixes = getattr(owner, _ATTR, ())
        if prefixes:
            for name, sub in owner.named_modules():
                if name and _matches(name, prefixes):
                    sub.eval()
    return module


def trainable_parameters(module):
    """The parameters of ``module`` that require gradients.

    Parameters
    ----------
    module : `torch.nn.Module`
        The network.

    Returns
    -------
    params : list of `torch.nn.Parameter`
        What an optimiser should get (the frozen parameters left out).

    Raises
    ------
    TypeError
        If ``module`` is not a `torch.nn.Module`.

    Examples
    --------
    >>> import torch
    >>> from stellarml.training import freeze, trainable_parameters
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> _ = freeze(net, ["0"])
    >>> [tuple(p.shape) for p in trainable_parameters(net)]  # for the optimiser
    [(3, 8), (3,)]
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(module).__name__}")
    return [p for p in module.parameters() if p.requires_grad]
