"""Weight averaging of networks ("model soups").

Fine-tuning the same starting weights several times with different seeds and
averaging the resulting weights element-wise is a uniform "model soup"
(Wortsman et al. 2022, ICML, arXiv:2203.05482): it costs the training time of
every run but nothing at prediction time.
"""

__all__ = ["average_states", "module_state"]


def module_state(module):
    """A detached copy of ``module.state_dict()`` (dict of str to `torch.Tensor`)."""
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
