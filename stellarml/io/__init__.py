"""Input and output: specutils loaders for survey and library spectra, and model files.

Importing this package registers the specutils loaders, so that
``Spectrum.read`` identifies these formats on its own: MILES, LAMOST LRS,
SDSS/BOSS and APOGEE (through stellarml's readers, which add the pipeline RV,
the resolution and the medium), PHOENIX-ACES, Castelli-Kurucz, CARMENES and
GALAH. The readers are also callable directly (``read_boss``, ``read_lamost``,
``read_galah_star``, ...); `stellarml.io.files` reads many files for the
command line and Dask, and `stellarml.io.asdf` reads and writes model files.
"""

from . import echelle, kurucz, lamost, miles, phoenix, sdss
from .echelle import *  # noqa: F403
from .kurucz import *  # noqa: F403
from .lamost import *  # noqa: F403
from .miles import *  # noqa: F403
from .phoenix import *  # noqa: F403
from .sdss import *  # noqa: F403

__all__ = [
    *echelle.__all__,
    *kurucz.__all__,
    *lamost.__all__,
    *miles.__all__,
    *phoenix.__all__,
    *sdss.__all__,
]
