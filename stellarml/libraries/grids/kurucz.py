"""`KuruczLibrary`: the Castelli-Kurucz ATLAS9 grid."""

from collections import OrderedDict
from pathlib import Path

import astropy.units as u
import numpy as np

from ...io.kurucz import (
    CK04_LOGG,
    CK04_M_H,
    CK04_TEFF,
    FLAM,
    K93_M_H,
    K93_TEFF,
    parse_kurucz_filename,
    read_kurucz_batch,
)
from ..download import (
    KURUCZ_BASE_URL,
    GridPointNotFound,
    fetch_grid_file,
    kurucz_relpath,
)
from ._base import CACHE_BYTES, GridLibrary, _range_angstrom

__all__ = ["KuruczLibrary"]


class KuruczLibrary(GridLibrary):
    """The Castelli & Kurucz (2004) ATLAS9 grid (STScI layout) as a library.

    Parameters
    ----------
    directory : str or path-like, optional
        A local atlas: the ``ck04models`` folder (``ckp00/ckp00_5000.fits`` ...),
        its parent ``grid`` folder, or any folder with such files below it.
        Without ``base_url`` only these files are used; the Teff and [M/H]
        axes are their values and the gravities those of the files' columns.
    base_url : str, optional
        Download missing files from this STScI ``grid/`` URL
        (`stellarml.libraries.download.KURUCZ_BASE_URL`). With ``directory``
        the downloads go there; otherwise into the astropy cache. Default:
        STScI when ``directory`` is not given.
    atlas : {"ck04", "k93"}, optional
        Castelli & Kurucz 2004 (default) or Kurucz 1993.
    wavelength_range : (lo, hi) `~astropy.units.Quantity` or numbers [Angstrom], optional
        Keep only this window.
    show_progress, timeout, cache_bytes
        As for `PhoenixLibrary`.

    Notes
    -----
    ATLAS9 fluxes are tabulated at 1221 wavelengths (about 10-20 Angstrom apart
    in the optical): they are surface-flux SEDs, useful for R of a few hundred
    at most. Gravity columns of zeros (no converged model) are missing grid
    points. The models are solar-scaled: ``alpha_fe`` must be 0.

    Raises
    ------
    FileNotFoundError
        If ``directory`` does not exist, or holds no atlas file and no ``base_url`` is given.
    ValueError
        For an unknown ``atlas``, or a file that appears twice below ``directory``.

    Examples
    --------
    A local atlas of four small files in the STScI layout (the real files
    have 1221 wavelengths); ``ckp00_5250.fits`` has no model at log g = 5:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from stellarml.libraries.download import kurucz_relpath
    >>> tmp = tempfile.TemporaryDirectory()
    >>> wave = np.geomspace(3000.0, 10000.0, 100)  # [Angstrom]
    >>> def write_atlas(teff, m_h, missing=()):  # flux = teff / 1000 + logg + m_h [FLAM]
    ...     cols = [fits.Column(name="WAVELENGTH", format="D", unit="ANGSTROM", array=wave)]
    ...     for g in range(0, 51, 5):  # columns g00 ... g50 (10 log g); zeros: no model
    ...         value = 0.0 if g / 10 in missing else teff / 1000 + g / 10 + m_h
    ...         cols.append(fits.Column(name=f"g{g:02d}", format="E", unit="FLAM",
    ...                                 array=np.full(wave.size, value)))
    ...     path = Path(tmp.name) / kurucz_relpath(teff, m_h)
    ...     path.parent.mkdir(parents=True, exist_ok=True)
    ...     header = fits.Header({"TEFF": teff, "LOG_Z": m_h})
    ...     hdus = [fits.PrimaryHDU(header=header), fits.BinTableHDU.from_columns(cols)]
    ...     fits.HDUList(hdus).writeto(path)
    >>> for teff in (5000, 5250):
    ...     for m_h in (-0.5, 0.0):
    ...         write_atlas(teff, m_h, missing=(5.0,) if teff == 5250 else ())
    >>> from stellarml.libraries import KuruczLibrary
    >>> grid = KuruczLibrary(tmp.name)  # local files only: no downloads
    >>> print(grid.axes["teff"], grid.axes["m_h"], grid.axes["logg"][[0, -1]])
    [5000. 5250.] [-0.5  0. ] [0. 5.]
    >>> spec = grid.spectrum(5125.0, 4.25, -0.25)  # a specutils Spectrum
    >>> print(spec.flux.shape, round(float(spec.flux[0].value), 3), spec.meta["medium"])
    (100,) 9.125 vacuum
    >>> import astropy.units as u
    >>> spec.flux.unit == u.erg / u.s / u.cm**2 / u.AA  # surface flux, FLAM
    True
    >>> library = grid.to_library({"teff": [5000.0, 5125.0], "logg": [4.5, 4.25],
    ...                            "m_h": [0.0, -0.25]})
    >>> print(type(library).__name__, library.flux.shape, library.labels.colnames)
    SpectralLibrary (2, 100) ['teff', 'logg', 'm_h']
    >>> from stellarml.libraries.download import GridPointNotFound
    >>> try:
    ...     grid.spectrum(5125.0, 4.75, 0.0)  # needs teff=5250, logg=5
    ... except GridPointNotFound as err:
    ...     print(err.point)
    {'teff': 5250.0, 'logg': 5.0, 'm_h': 0.0}
    >>> tmp.cleanup()
    """

    label_names = ("teff", "logg", "m_h")
    grid_name = "Castelli-Kurucz 2004"
    flux_unit = FLAM
    resolution = None
    medium = "vacuum"

    def __init__(
        self,
        directory=None,
        *,
        base_url=None,
        atlas="ck04",
        wavelength_range=None,
        show_progress=True,
        timeout=None,
        cache_bytes=CACHE_BYTES,
    ):
        super().__init__(cache_bytes=cache_bytes)
        if atlas not in ("ck04", "k93"):
            raise ValueError(f"atlas must be 'ck04' or 'k93', got {atlas!r}")
        if directory is None and base_url is None:
            base_url = KURUCZ_BASE_URL
        self.atlas = atlas
        if atlas == "k93":
            self.grid_name = "Kurucz 1993"
        self.directory = None if directory is None else Path(directory)
        self.base_url = base_url
        self.show_progress = bool(show_progress)
        self.timeout = timeout
        self._range = _range_angstrom(wavelength_range)
        self._files = {}
        self._tables = OrderedDict()  # path -> (loggs, flux (nlogg, npix)), a few files
        self._wave_cache = None
        if self.directory is not None:
            if not self.directory.is_dir():
                raise FileNotFoundError(f"Kurucz grid directory {self.directory} does not exist")
            for path in sorted(self.directory.rglob("*.fits")):
                try:
                    parsed = parse_kurucz_filename(path.name)
                except ValueError:
                    continue
                if parsed["atlas"] != atlas:
                    continue
                key = (parsed["teff"], parsed["m_h"])
                if key in self._files:
                    raise ValueError(f"{path.name} appears twice below {self.directory}")
                self._files[key] = path
        teffs, metals = (CK04_TEFF, CK04_M_H) if atlas == "ck04" else (K93_TEFF, K93_M_H)
        if base_url is None:
            if not self._files:
                raise FileNotFoundError(f"no {atlas} atlas files below {self.directory}")
            keys = np.array(list(self._files))
            loggs = set()
            for path in self._files.values():
                loggs.update(self._table(path)[0].tolist())
            self.axes = {
                "teff": np.unique(keys[:, 0]),
                "logg": np.array(sorted(loggs)),
                "m_h": np.unique(keys[:, 1]),
            }
        else:
            self.axes = {"teff": teffs.copy(), "logg": CK04_LOGG.copy(), "m_h": metals.copy()}

    def _source(self):
        parts = []
        if self.directory is not None:
            parts.append(str(self.directory))
        if self.base_url is not None:
            parts.append(self.base_url)
        return " + ".join(parts)

    def _check_extra(self, table):
        if "alpha_fe" in table.colnames and np.any(table["alpha_fe"].to_value(u.dex) != 0):
            return f"{self.grid_name} models are solar-scaled: alpha_fe must be 0"
        return None

    def _file(self, teff, m_h):
        key = (float(teff), float(m_h))
        if key in self._files:
            return self._files[key]
        point = {"teff": key[0], "m_h": key[1]}
        if self.base_url is None:
            raise GridPointNotFound(
                f"no atlas file for teff={key[0]:g}, m_h={key[1]:g} in {self.directory}",
                point=point,
            )
        return fetch_grid_file(
            kurucz_relpath(key[0], key[1], self.atlas),
            base_url=self.base_url,
            kind="kurucz",
            point=point,
            mirror=self.directory,
            show_progress=self.show_progress,
            timeout=self.timeout,
        )

    def _table(self, path):
        path = Path(path)
        if path in self._tables:
            self._tables.move_to_end(path)
            return self._tables[path]
        spec = read_kurucz_batch(path)
        wave = spec.spectral_axis.to_value(u.AA)
        if self._wave_cache is None:
            keep = np.ones(wave.size, dtype=bool)
            if self._range is not None:
                keep = (wave >= self._range[0]) & (wave <= self._range[1])
                if keep.sum() < 2:
                    raise ValueError(
                        f"wavelength_range {self._range} keeps fewer than 2 pixels of {path}"
                    )
            self._full_wave = wave
            self._keep = keep
            self._wave_cache = wave[keep]
        elif wave.shape != self._full_wave.shape or not np.allclose(
            wave, self._full_wave, rtol=1e-9
        ):
            raise ValueError(f"{path} has a different wavelength grid from the other atlas files")
        entry = (
            np.round(spec.meta["logg"].to_value(u.dex), 6),
            np.asarray(spec.flux.to_value(self.flux_unit))[:, self._keep].astype(np.float32),
        )
        self._tables[path] = entry
        while len(self._tables) > 8:
            self._tables.popitem(last=False)
        return entry

    def _wave_window(self):
        if self._wave_cache is None:
            if self._files:
                self._table(next(iter(self._files.values())))
            else:
                self._table(self._file(5000.0, 0.0))
        return self._wave_cache

    def _load_points(self, points):
        npix = self._wave_window().size
        out = np.empty((len(points), npix), dtype=np.float32)
        for i, (teff, logg, m_h) in enumerate(points):
            path = self._file(teff, m_h)
            loggs, flux = self._table(path)
            hit = np.flatnonzero(np.abs(loggs - logg) < 1e-6)
            if hit.size == 0:
                raise GridPointNotFound(
                    f"{Path(path).name} has no model at logg={logg:g} (its gravity column is "
                    f"all zeros: no converged ATLAS9 model)",
                    point={"teff": float(teff), "logg": float(logg), "m_h": float(m_h)},
                )
            out[i] = flux[hit[0]]
        return out
