"""Entry points that register the stellarml ASDF extension with asdf.

Both functions are referenced from ``pyproject.toml`` (``asdf.extensions`` and
``asdf.resource_mappings``) and are called by asdf when it first needs its
extension list. They must stay cheap and must not import torch.
"""

import importlib.resources

__all__ = ["get_extensions", "get_resource_mappings"]

#: URI prefix of every stellarml ASDF resource.
URI_PREFIX = "asdf://stellarml.org/stellarml/"


def get_resource_mappings():
    """Resource mappings for the stellarml schemas and manifests.

    Returns
    -------
    list of `asdf.resource.DirectoryResourceMapping`
        Maps ``asdf://stellarml.org/stellarml/schemas/<name>-<version>`` and
        ``asdf://stellarml.org/stellarml/manifests/<name>-<version>`` onto the
        YAML files shipped in ``stellarml/io/asdf/resources``.
    """
    from asdf.resource import DirectoryResourceMapping

    root = importlib.resources.files("stellarml.io.asdf") / "resources"
    return [
        DirectoryResourceMapping(root / "schemas", URI_PREFIX + "schemas/"),
        DirectoryResourceMapping(root / "manifests", URI_PREFIX + "manifests/"),
    ]


def get_extensions():
    """The stellarml ASDF extensions.

    Returns
    -------
    list of `asdf.extension.Extension`
        One `~asdf.extension.ManifestExtension` per supported manifest version.
    """
    from .extension import STELLARML_EXTENSIONS

    return list(STELLARML_EXTENSIONS)
