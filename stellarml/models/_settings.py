"""Configuration helpers shared by the methods (not public API)."""

__all__ = ["as_tuples", "merge_settings"]


def as_tuples(value):
    """Lists (e.g. from a YAML file) -> tuples, recursively, so configurations compare equal."""
    if isinstance(value, list | tuple):
        return tuple(as_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: as_tuples(v) for k, v in value.items()}
    return value


def merge_settings(defaults, given, what):
    """Defaults updated with ``given``; unknown keys are an error."""
    merged = dict(defaults)
    if given is None:
        return merged
    if not isinstance(given, dict):
        raise TypeError(f"{what} must be a dict of settings, got {type(given).__name__}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {what} settings {unknown}; known: {sorted(defaults)}")
    merged.update(as_tuples(given))
    return merged
