"""Synthetic grids as libraries: PHOENIX-ACES and Castelli-Kurucz, interpolated in their labels.

`PhoenixLibrary` and `KuruczLibrary` give access to a grid of model spectra

* in a **local directory** (the server layout, e.g. ``HiResFITS/`` holding
  ``WAVE_PHOENIX-ACES-AGSS-COND-2011.fits`` and
  ``PHOENIX-ACES-AGSS-COND-2011/Z-0.0/lte*.fits``, ``Z-0.5.Alpha=+0.20/`` ...;
  or ``ck04models/ckp00/ckp00_5000.fits`` ...); only the files present are used;
* or **downloaded on demand** from ``base_url`` (`stellarml.libraries.download`):
  into the astropy download cache, or into ``directory`` as a mirror when both
  are given.

`~GridLibrary.spectrum` interpolates *multilinearly* in the grid labels
(Teff, log g, [M/H] and, for PHOENIX, [alpha/M]) between the ``2**k``
bracketing grid points, for any number of label sets at once: the result is a
sparse ``(n_labels, n_points)`` weight matrix times the grid spectra. Labels
exactly on a grid value need no neighbour along that axis, so grid points are
reproduced exactly and the upper edge of an axis is inside the grid. Labels
outside the axes raise `ValueError`; a needed grid point that does not exist
(the PHOENIX grid is ragged: no hot low-gravity models, alpha-modified models
only for -3 <= [M/H] <= 0 and 3500-8000 K) raises
`~stellarml.libraries.download.GridPointNotFound` naming the point and the
label set that needed it.

`~GridLibrary.to_library` builds a training `~stellarml.libraries.SpectralLibrary`:
because interpolation, Gaussian LSF broadening and flux-conserving resampling
are all linear, each *grid point* needed is degraded once (with
`SpectralLibrary.degrade`) and the label sets are interpolated from the degraded
grid, identical to rounding to degrading each interpolated spectrum but
``n_labels / n_points`` times cheaper. With ``path=`` the result is streamed
into an on-disk store (`stellarml.libraries.store`) and opened lazily, so a
survey-sized library never sits in memory.

Fluxes are interpolated linearly in flux (not log flux), in the grid's
physical units (PHOENIX: erg s^-1 cm^-2 cm^-1; Kurucz: erg s^-1 cm^-2 A^-1,
surface flux); ``meta["flux_unit"]`` records it.
"""

from ._base import GridLibrary
from .kurucz import KuruczLibrary
from .phoenix import PhoenixLibrary

__all__ = ["GridLibrary", "KuruczLibrary", "PhoenixLibrary"]
