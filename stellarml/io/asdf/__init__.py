"""ASDF support for stellarml: the ``stellarml-1.0.0`` extension and model files.

The extension (tags, schemas, converters) is registered with asdf through the
``asdf.extensions`` and ``asdf.resource_mappings`` entry points, see
:mod:`stellarml.io.asdf.integration`. Importing this package does not import
torch; the model converter imports the model class only when a model is read
or written. See :doc:`/models_on_disk`.
"""

from .model_io import (
    ModelFileError,
    ModelFileNotFoundError,
    UnsupportedModelVersionError,
    file_hash,
    read_model,
    write_model,
)

__all__ = [
    "ModelFileError",
    "ModelFileNotFoundError",
    "UnsupportedModelVersionError",
    "file_hash",
    "read_model",
    "write_model",
]
