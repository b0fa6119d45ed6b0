"""Weight averaging of networks ("model soups").

Fine-tuning the same starting weights several times with different seeds and
averaging the resulting weights element-wise is a uniform "model soup"
(Wortsman et al. 2022, ICML, arXiv:2203.05482): it costs the training time of
every run but nothing at prediction time.
"""

__all__ = ["average_states", "module_state"]


def module_state(module):
    """A detached copy of ``module.state_dict()``.

    Parameters
    ----------
    module : `torch.nn.Module`
        The network.

    Returns
    -------
    state : dict of str to `torch.Tensor`
        Cloned, detached tensors: later training of ``module`` does not change
        them.

    Examples
    --------
    >>> import torch
    >>> from stellarml.training import module_state
    >>> net = torch.nn.Linear(4, 3)
    >>> state = module_state(net)
    >>> sorted(state), tuple(state["weight"].shape)
    (['bias', 'weight'], (3, 4))
    >>> _ = torch.nn.init.zeros_(net.weight)  # change the network...
    >>> bool(state["weight"].abs().sum() > 0)  # ...the copy keeps the old weights
    True
    """
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def average_states(states):
    """Element-wise mean of state dicts.

    Floating-point tensors are averaged in float64 and cast back; integer
    buffers (e.g. batch-norm step counters) are taken from the first state.

    Parameters
    ----------
    states : sequence of dict of str to `torch.Tensor`
        State dicts of networks with the same architecture.

    Returns
    -------
    state : dict of str to `torch.Tensor`
        The averaged state, with the dtypes of the first; load it with
        ``module.load_state_dict(state)``.

    Raises
    ------
    ValueError
        If ``states`` is empty.

    Examples
    --------
    A uniform soup of two networks:

    >>> import torch
    >>> from stellarml.training import average_states, module_state
    >>> _ = torch.manual_seed(0)
    >>> nets = [torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    ...         for _ in range(2)]
    >>> soup = average_states(module_state(net) for net in nets)
    >>> mean = (nets[0][0].weight + nets[1][0].weight) / 2
    >>> torch.allclose(soup["0.weight"], mean)
    True
    >>> soup["1.num_batches_tracked"].dtype  # integer buffers: the first state's
    torch.int64
    >>> _ = nets[0].load_state_dict(soup)
    """
    states = list(states)
    if not states:
        raise ValueError("need at least one state dict to average")
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = (sum(st[key].double() for st in states) / len(states)).to(first.dtype)
        else:
            out[key] = first
    return out
