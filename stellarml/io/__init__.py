"""Input and output: specutils loaders and the ASDF model format.

Importing this package registers the specutils loaders (``Spectrum.read``
then identifies those formats on its own).
"""

from . import echelle, kurucz, lamost, miles, phoenix, sdss

__all__ = ["echelle", "kurucz", "lamost", "miles", "phoenix", "sdss"]
