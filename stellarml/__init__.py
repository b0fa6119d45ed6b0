"""stellarml: stellar labels from spectra with deep learning, in the specutils ecosystem."""

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - only without an install
    __version__ = "0.0.0"

__all__ = ["__version__"]
