"""Helpers shared by the converters (not public API)."""

import numpy as np

__all__ = ["materialize"]


def materialize(node):
    """Copy a YAML tree so that it no longer refers to the open ASDF file.

    ASDF hands converters lazy array proxies (``NDArrayType``) and tagged
    dict/list subclasses. Objects built from the tree must outlive the file,
    so arrays are copied into plain `numpy.ndarray` and containers into plain
    `dict`/`list`. Everything else (numbers, strings, Quantities, units,
    already-converted objects) is returned unchanged.
    """
    if isinstance(node, dict):
        return {key: materialize(value) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [materialize(value) for value in node]
    if isinstance(node, np.ndarray) or type(node).__name__ == "NDArrayType":
        if hasattr(node, "unit"):  # a Quantity: already its own copy
            return node
        return np.array(node, copy=True)
    return node
