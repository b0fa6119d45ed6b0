"""`PhoenixLibrary`: the PHOENIX-ACES HiRes grid (Husser et al. 2013)."""

from pathlib import Path

import numpy as np
from astropy.io import fits

from ...io._common import header_float, parse_unit
from ...io.phoenix import (
    PHOENIX_ALPHA,
    PHOENIX_FLUX_UNIT,
    PHOENIX_LOGG,
    PHOENIX_M_H,
    PHOENIX_RESOLUTION,
    PHOENIX_TEFF,
    PHOENIX_WAVE_FILENAME,
    parse_phoenix_filename,
    read_phoenix_wavelength,
)
from ..download import (
    PHOENIX_BASE_URL,
    GridPointNotFound,
    fetch_grid_file,
    fetch_phoenix_wavelength,
    phoenix_relpath,
)
from ._base import CACHE_BYTES, GridLibrary, _range_angstrom

__all__ = ["PhoenixLibrary"]


class PhoenixLibrary(GridLibrary):
    """The PHOENIX-ACES-AGSS-COND-2011 HiRes grid (Husser et al. 2013) as a library.

    Parameters
    ----------
    directory : str or path-like, optional
        A local grid in the server layout: the ``HiResFITS`` folder (holding
        ``WAVE_PHOENIX-ACES-AGSS-COND-2011.fits`` and
        ``PHOENIX-ACES-AGSS-COND-2011/Z-*/lte*.fits``) or the
        ``PHOENIX-ACES-AGSS-COND-2011`` folder itself (wavelength file one level
        up). All ``lte*`` files below it are found. Without ``base_url`` only
        these files are used and the grid axes are their label values.
    base_url : str, optional
        Download missing files on demand from this ``HiResFITS/`` URL
        (`stellarml.libraries.download.PHOENIX_BASE_URL` for the Göttingen
        server). With ``directory`` the downloads go there (a mirror in the
        server layout); without, into the astropy download cache. The grid
        axes are then the full PHOENIX axes. Default: the Göttingen server
        when ``directory`` is not given, no downloads otherwise.
    wavelength_range : (lo, hi) `~astropy.units.Quantity` or numbers [Angstrom], optional
        Keep only this window of the 1.6-million-pixel spectra (saves memory).
    show_progress : bool, optional
        Progress bars for downloads.
    timeout : float, optional
        Download socket timeout [s].
    cache_bytes : int, optional
        Memory budget for grid spectra kept between `spectrum` calls.

    Examples
    --------
    >>> from stellarml.libraries.grids import PhoenixLibrary
    >>> grid = PhoenixLibrary("HiResFITS", wavelength_range=(4000, 7000))  # doctest: +SKIP
    >>> sun = grid.spectrum(5777, 4.44, 0.0)  # doctest: +SKIP
    """

    label_names = ("teff", "logg", "m_h", "alpha_fe")
    grid_name = "PHOENIX-ACES-AGSS-COND-2011"
    flux_unit = PHOENIX_FLUX_UNIT
    resolution = PHOENIX_RESOLUTION
    medium = "vacuum"

    def __init__(
        self,
        directory=None,
        *,
        base_url=None,
        wavelength_range=None,
        show_progress=True,
        timeout=None,
        cache_bytes=CACHE_BYTES,
    ):
        super().__init__(cache_bytes=cache_bytes)
        if directory is None and base_url is None:
            base_url = PHOENIX_BASE_URL
        self.directory = None if directory is None else Path(directory)
        self.base_url = base_url
        self.show_progress = bool(show_progress)
        self.timeout = timeout
        self._range = _range_angstrom(wavelength_range)
        self._files = {}
        self._wave_file = None
        self._wave_cache = None
        if self.directory is not None:
            if not self.directory.is_dir():
                raise FileNotFoundError(f"PHOENIX grid directory {self.directory} does not exist")
            self._scan()
        if base_url is None:
            if not self._files:
                raise FileNotFoundError(
                    f"no PHOENIX HiRes files (lte*.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits) "
                    f"below {self.directory}"
                )
            pts = np.array(list(self._files))
            self.axes = {name: np.unique(pts[:, j]) for j, name in enumerate(self.label_names)}
        else:
            self.axes = {
                "teff": PHOENIX_TEFF.copy(),
                "logg": PHOENIX_LOGG.copy(),
                "m_h": PHOENIX_M_H.copy(),
                "alpha_fe": PHOENIX_ALPHA.copy(),
            }

    def _scan(self):
        for path in sorted(self.directory.rglob("lte*.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits")):
            p = parse_phoenix_filename(path.name)
            key = (p["teff"], p["logg"], p["m_h"], p["alpha"])
            if key in self._files:
                raise ValueError(
                    f"grid point {key} appears twice below {self.directory}: "
                    f"{self._files[key]} and {path}"
                )
            self._files[key] = path
        for place in (self.directory, self.directory.parent):
            candidate = place / PHOENIX_WAVE_FILENAME
            if candidate.is_file():
                self._wave_file = candidate
                break

    def _source(self):
        parts = []
        if self.directory is not None:
            parts.append(str(self.directory))
        if self.base_url is not None:
            parts.append(self.base_url)
        return " + ".join(parts)

    def _wavelength_file(self):
        if self._wave_file is None:
            if self.base_url is None:
                raise FileNotFoundError(
                    f"{PHOENIX_WAVE_FILENAME} not found in {self.directory} or its parent; "
                    "download it from the PHOENIX server or pass base_url="
                )
            self._wave_file = fetch_phoenix_wavelength(
                base_url=self.base_url,
                mirror=self.directory,
                show_progress=self.show_progress,
                timeout=self.timeout,
            )
        return self._wave_file

    def _wave_window(self):
        if self._wave_cache is None:
            wave = read_phoenix_wavelength(self._wavelength_file())
            keep = slice(0, wave.size)
            if self._range is not None:
                i0 = int(np.searchsorted(wave, self._range[0], side="left"))
                i1 = int(np.searchsorted(wave, self._range[1], side="right"))
                if i1 - i0 < 2:
                    raise ValueError(
                        f"wavelength_range {self._range} keeps fewer than 2 PHOENIX pixels "
                        f"({wave[0]:g}-{wave[-1]:g} Angstrom)"
                    )
                keep = slice(i0, i1)
            self._keep = keep
            self._full_npix = wave.size
            self._wave_cache = np.array(wave[keep])
        return self._wave_cache

    def _available(self, points):
        keys = [tuple(float(v) for v in p) for p in points]
        if self.base_url is None:
            return np.array([key in self._files for key in keys])
        # remote: only points that cannot exist by the grid's definition are known missing
        return np.array([key in self._files or self._why_missing(key) is None for key in keys])

    def _why_missing(self, point):
        try:
            phoenix_relpath(*point)
        except ValueError as exc:
            return str(exc)
        return None if self.base_url is not None else f"not in {self.directory}"

    def _path(self, point):
        teff, logg, m_h, alpha = (float(v) for v in point)
        key = (teff, logg, m_h, alpha)
        if key in self._files:
            return self._files[key]
        try:
            relpath = phoenix_relpath(teff, logg, m_h, alpha)
        except ValueError as exc:
            raise GridPointNotFound(
                str(exc), point=dict(zip(self.label_names, key, strict=True))
            ) from None
        if self.base_url is None:
            raise GridPointNotFound(
                f"{relpath} is not in {self.directory}",
                point=dict(zip(self.label_names, key, strict=True)),
            )
        return fetch_grid_file(
            relpath,
            base_url=self.base_url,
            kind="phoenix",
            point=dict(zip(self.label_names, key, strict=True)),
            mirror=self.directory,
            show_progress=self.show_progress,
            timeout=self.timeout,
        )

    def _read_flux(self, path, point):
        """The window of one model's flux [PHOENIX_FLUX_UNIT], checking its header.

        Reads only the window (``ImageHDU.section``), not the 1.6 million pixels
        and not through a `~specutils.Spectrum` (`read_phoenix` does both): a
        grid needs thousands of files.
        """
        wave = self._wave_window()
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            hdu = hdul[0]
            header = hdu.header
            if header.get("NAXIS") != 1 or header.get("NAXIS1") != self._full_npix:
                raise ValueError(
                    f"{path}: expected a 1-D PHOENIX flux image of {self._full_npix} pixels "
                    f"(the wavelength file's length), got NAXIS1={header.get('NAXIS1')}"
                )
            found = [
                header_float(header, key, 0.0 if key == "PHXALPHA" else None)
                for key in ("PHXTEFF", "PHXLOGG", "PHXM_H", "PHXALPHA")
            ]
            if any(v is None or abs(v - p) > 1e-6 for v, p in zip(found, point, strict=True)):
                raise ValueError(
                    f"{path}: header labels (PHXTEFF, PHXLOGG, PHXM_H, PHXALPHA) = {found} "
                    f"are not the grid point {tuple(float(v) for v in point)}"
                )
            bunit = header.get("BUNIT")
            scale = 1.0
            if bunit:
                unit = parse_unit(bunit)
                if not unit.is_equivalent(self.flux_unit):
                    raise ValueError(f"{path}: BUNIT = {bunit!r} is not a flux per wavelength")
                scale = unit.to(self.flux_unit)
            flux = np.asarray(hdu.section[self._keep], dtype=np.float32)
        if flux.shape != wave.shape:
            raise ValueError(f"{path}: could not read {wave.size} flux values")
        return flux * np.float32(scale) if scale != 1.0 else flux

    def _load_points(self, points):
        wave = self._wave_window()
        out = np.empty((len(points), wave.size), dtype=np.float32)
        for i, point in enumerate(points):
            out[i] = self._read_flux(self._path(point), point)
        return out


# ---------------------------------------------------------------------- Kurucz
