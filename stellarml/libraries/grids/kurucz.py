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
