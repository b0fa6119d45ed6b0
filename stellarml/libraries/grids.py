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

import abc
from collections import OrderedDict
from pathlib import Path

import astropy.units as u
import numpy as np
import scipy.sparse as sp
from astropy.io import fits
from astropy.table import QTable
from specutils import Spectrum

from ..io._common import header_float, parse_unit
from ..io.kurucz import (
    CK04_LOGG,
    CK04_M_H,
    CK04_TEFF,
    FLAM,
    K93_M_H,
    K93_TEFF,
    parse_kurucz_filename,
    read_kurucz_batch,
)
from ..io.phoenix import (
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
from ..labels import get_label
from ..spectra import vacuum_to_air
from .base import CHUNK_ELEMENTS, SpectralLibrary, _as_label_table, _check_lsf, _chunks
from .download import (
    KURUCZ_BASE_URL,
    PHOENIX_BASE_URL,
    GridPointNotFound,
    fetch_grid_file,
    fetch_phoenix_wavelength,
    kurucz_relpath,
    phoenix_relpath,
)

__all__ = ["GridLibrary", "KuruczLibrary", "PhoenixLibrary"]

#: Fraction of an axis step within which a label counts as on the grid value.
SNAP = 1e-9
#: Default memory budget [bytes] of the grid spectra kept between `spectrum` calls.
CACHE_BYTES = 256 * 2**20


def _range_angstrom(wavelength_range):
    if wavelength_range is None:
        return None
    values = [u.Quantity(v, u.AA).to_value(u.AA, u.spectral()) for v in wavelength_range]
    if len(values) != 2 or not (np.all(np.isfinite(values)) and values[0] < values[1]):
        raise ValueError(f"wavelength_range must be (lo, hi) with lo < hi, got {wavelength_range}")
    return float(values[0]), float(values[1])


class GridLibrary(abc.ABC):
    """Common machinery of grid libraries; use `PhoenixLibrary` or `KuruczLibrary`.

    Attributes
    ----------
    label_names : tuple of str
        The grid labels, in axis order.
    axes : dict
        ``{label: 1-D float array}`` of the grid values of each label (registry units).
    medium : str
        Medium of the grid wavelengths ("vacuum").
    resolution : float or None
        Resolving power of the grid spectra (None: treated as unbroadened).
    flux_unit : `~astropy.units.Unit`
        Unit of the grid fluxes.
    """

    label_names = ()
    grid_name = ""
    flux_unit = u.dimensionless_unscaled
    resolution = None
    medium = "vacuum"

    def __init__(self, *, cache_bytes=CACHE_BYTES):
        self._cache = OrderedDict()
        self._cache_bytes = int(cache_bytes)

    # ------------------------------------------------------------------ subclass hooks
    @abc.abstractmethod
    def _load_points(self, points):
        """Flux (m, npix) float32 of grid points (m, k); raises GridPointNotFound."""

    @abc.abstractmethod
    def _wave_window(self):
        """Wavelengths [Angstrom] of the (cropped) grid."""

    def _available(self, points):
        """Boolean (m,): which points are known to exist (True when unknown, e.g. remote)."""
        return np.ones(len(points), dtype=bool)

    def _why_missing(self, point):
        """Why a grid point is known not to exist (str), or None."""
        return None

    # ------------------------------------------------------------------ public API
    @property
    def wavelength(self):
        """Grid wavelengths in the ``wavelength_range`` (`~astropy.units.Quantity`, Angstrom)."""
        return self._wave_window() * u.AA

    def __repr__(self):
        axes = ", ".join(
            f"{k} {v[0]:g}..{v[-1]:g} ({v.size})" for k, v in self.axes.items() if v.size
        )
        return f"<{type(self).__name__} {self._source()}: {axes}>"

    def _source(self):
        return ""

    def _label_values(self, table):
        """(n, k) float array of the grid labels from a validated label table."""
        n = len(table)
        cols = []
        for name in self.label_names:
            unit = get_label(name).unit
            if name == "m_h" and "m_h" not in table.colnames and "fe_h" in table.colnames:
                cols.append(table["fe_h"].to_value(unit))
                continue
            if name == "m_h" and "m_h" in table.colnames and "fe_h" in table.colnames:
                a, b = table["m_h"].to_value(unit), table["fe_h"].to_value(unit)
                if not np.allclose(a, b):
                    raise ValueError(
                        f"labels give both m_h and fe_h and they differ; {self.grid_name} "
                        "models have [Fe/H] = [M/H], give one of them"
                    )
            if name in table.colnames:
                cols.append(table[name].to_value(unit))
            elif name == "alpha_fe":
                cols.append(np.zeros(n))
            else:
                need = "m_h (or fe_h)" if name == "m_h" else name
                raise ValueError(
                    f"labels lack {need}; {self.grid_name} needs {', '.join(self.label_names)}"
                )
        extra = self._check_extra(table)
        if extra:
            raise ValueError(extra)
        return np.column_stack(cols).astype(float)

    def _check_extra(self, table):
        return None

    def _as_table(self, labels):
        if isinstance(labels, np.ndarray | list | tuple) and not (
            isinstance(labels, np.ndarray) and labels.dtype.names is not None
        ):
            arr = np.atleast_2d(np.asarray(labels, dtype=float))
            return _as_label_table(arr, assign_units=True, label_names=list(self.label_names))
        return _as_label_table(labels, assign_units=True)

    def weights(self, labels):
        """Multilinear interpolation weights of label sets on the grid.

        Parameters
        ----------
        labels : `~astropy.table.QTable`, dict or array-like of shape (n, k)
            Label sets: a table or dict with columns ``teff`` [K], ``logg``,
            ``m_h`` (or ``fe_h``) and for PHOENIX optionally ``alpha_fe`` [dex]
            (default 0); plain numbers are taken in those units. An array has
            one column per `label_names`.

        Returns
        -------
        weights : `scipy.sparse.csr_matrix`, shape (n, m)
            Row ``i`` holds the weights of the grid points needed by label set
            ``i`` (non-negative, summing to 1).
        points : ndarray, shape (m, k)
            The grid points (label values, `label_names` order) of the columns.

        Raises
        ------
        ValueError
            If a label lies outside the grid axes (the message names the label,
            the first offending row and the axis range).
        GridPointNotFound
            If a needed grid point is known not to exist (local grids; remote
            grids find out when loading).
        """
        table = self._as_table(labels)
        values = self._label_values(table)
        return self._weights(values)

    def _weights(self, values):
        n, k = values.shape
        dims = []
        lower = np.empty((n, k), dtype=np.int64)
        frac = np.empty((n, k))
        for j, name in enumerate(self.label_names):
            axis = self.axes[name]
            dims.append(axis.size)
            v = values[:, j]
            step = np.min(np.diff(axis)) if axis.size > 1 else 1.0
            tol = SNAP * step
            out = (v < axis[0] - tol) | (v > axis[-1] + tol)
            if out.any():
                i = int(np.flatnonzero(out)[0])
                where = (
                    f"the grid value {axis[0]:g}"
                    if axis.size == 1
                    else f"the grid range {axis[0]:g}..{axis[-1]:g}"
                )
                raise ValueError(
                    f"{int(out.sum())} label sets have {name} outside {where} of this "
                    f"{self.grid_name} grid (first: row {i}, {name}={v[i]:g})"
                )
            if axis.size == 1:
                lower[:, j] = 0
                frac[:, j] = 0.0
                continue
            idx = np.clip(np.searchsorted(axis, v, side="right") - 1, 0, axis.size - 2)
            t = (v - axis[idx]) / (axis[idx + 1] - axis[idx])
            t = np.where(np.abs(t) < SNAP, 0.0, np.where(np.abs(t - 1) < SNAP, 1.0, t))
            lower[:, j] = idx
            frac[:, j] = np.clip(t, 0.0, 1.0)
        combos = np.array(np.meshgrid(*[[0, 1]] * k, indexing="ij")).reshape(k, -1).T
        corner = lower[:, None, :] + combos[None, :, :]  # (n, 2**k, k)
        w = np.prod(np.where(combos[None], frac[:, None, :], 1.0 - frac[:, None, :]), axis=2)
        keep = w > 0
        rows = np.broadcast_to(np.arange(n)[:, None], keep.shape)[keep]
        corner = np.minimum(corner[keep], np.array(dims) - 1)
        flat = np.ravel_multi_index(tuple(corner.T), dims)
        unique, inverse = np.unique(flat, return_inverse=True)
        idx = np.column_stack(np.unravel_index(unique, dims))
        points = np.column_stack(
            [self.axes[name][idx[:, j]] for j, name in enumerate(self.label_names)]
        )
        matrix = sp.csr_matrix((w[keep], (rows, inverse.ravel())), shape=(n, unique.size))
        available = self._available(points)
        if not available.all():
            self._missing_error(points, ~available, matrix, values)
        return matrix, points

    def _point_dict(self, point):
        return {name: float(v) for name, v in zip(self.label_names, point, strict=True)}

    def _missing_error(self, points, missing, matrix, values, reason=None):
        cols = np.flatnonzero(missing)
        first = points[cols[0]]
        if reason is None:
            why = self._why_missing(tuple(float(v) for v in first))
            reason = None if why is None else f"[{why}] "
        user = int(matrix.tocsc()[:, cols[0]].indices[0])
        text = ", ".join(f"{k}={v:g}" for k, v in self._point_dict(first).items())
        asked = ", ".join(f"{k}={v:g}" for k, v in zip(self.label_names, values[user], strict=True))
        raise GridPointNotFound(
            f"{len(cols)} grid point(s) needed for the interpolation do not exist in this "
            f"{self.grid_name} grid ({self._source()}); first: {text} "
            f"{reason or ''}(a corner for label set {user}: {asked}). The grid is ragged; "
            "choose labels whose bracketing grid points exist",
            point=self._point_dict(first),
        )

    def _grid_flux(self, points, matrix, values, *, use_cache=True):
        """Flux (m, npix) of grid points, from the cache or loaded."""
        npix = self._wave_window().size
        out = np.empty((len(points), npix), dtype=np.float32)
        todo = []
        for i, point in enumerate(points):
            key = tuple(np.round(point, 6))
            hit = self._cache.get(key) if use_cache else None
            if hit is None:
                todo.append(i)
            else:
                self._cache.move_to_end(key)
                out[i] = hit
        if todo:
            try:
                loaded = self._load_points(points[todo])
            except GridPointNotFound as exc:
                bad = np.zeros(len(points), dtype=bool)
                if exc.point is not None:
                    bad = np.ones(len(points), dtype=bool)
                    for j, name in enumerate(self.label_names):
                        if name in exc.point:
                            bad &= np.abs(points[:, j] - exc.point[name]) < 1e-6
                if bad.any():
                    self._missing_error(points, bad, matrix, values, reason=f"[{exc}] ")
                raise
            out[todo] = loaded
            if use_cache:
                for i in todo:
                    self._store(tuple(np.round(points[i], 6)), out[i])
        return out

    def _store(self, key, flux):
        if flux.nbytes > self._cache_bytes:
            return
        self._cache[key] = flux.copy()
        total = sum(v.nbytes for v in self._cache.values())
        while total > self._cache_bytes:
            _, old = self._cache.popitem(last=False)
            total -= old.nbytes

    def interpolate(self, labels):
        """Interpolated grid flux for label sets, as a plain array.

        Parameters
        ----------
        labels : `~astropy.table.QTable`, dict or array-like of shape (n, k)
            As in `weights`.

        Returns
        -------
        flux : ndarray, shape (n, npix)
            Float64 flux in `flux_unit` on `wavelength`.
        """
        values = self._label_values(self._as_table(labels))
        matrix, points = self._weights(values)
        flux = self._grid_flux(points, matrix, values)
        return np.asarray(matrix @ flux.astype(np.float64))

    def spectrum(self, teff, logg, m_h, alpha_fe=0.0):
        """Interpolated model spectra at given labels.

        Parameters
        ----------
        teff : float, array-like or `~astropy.units.Quantity`
            Effective temperature [K].
        logg : float, array-like or `~astropy.units.Quantity`
            Surface gravity [dex].
        m_h : float, array-like or `~astropy.units.Quantity`
            Metallicity [M/H] (= [Fe/H] in these grids) [dex].
        alpha_fe : float, array-like or `~astropy.units.Quantity`, optional
            Alpha enhancement [alpha/M] [dex] (PHOENIX); must be 0 for Kurucz.

        Returns
        -------
        `~specutils.Spectrum`
            For scalar labels a 1-D spectrum, for arrays (broadcast together) a
            2-D one of shape (n, npix), flux in `flux_unit` on vacuum
            wavelengths [Angstrom], no uncertainty. ``meta`` holds the labels as
            Quantities (arrays for a batch), ``label_names``, ``medium``,
            ``resolution``, ``grid`` and ``interpolation`` (the grid points used
            and the weight matrix).

        Raises
        ------
        ValueError
            Outside the grid.
        GridPointNotFound
            If a needed grid point is missing.
        """
        given = {"teff": teff, "logg": logg, "m_h": m_h, "alpha_fe": alpha_fe}
        arrays = {}
        for name, value in given.items():
            unit = get_label(name).unit
            if isinstance(value, u.Quantity):
                value = value.to_value(unit)
            arrays[name] = np.asarray(value, dtype=float)
        scalar = all(a.ndim == 0 for a in arrays.values())
        broadcast = np.broadcast_arrays(*arrays.values())
        columns = {
            name: np.atleast_1d(arr).ravel() * get_label(name).unit
            for name, arr in zip(given, broadcast, strict=True)
        }
        table = QTable(columns)
        values = self._label_values(table)
        matrix, points = self._weights(values)
        flux = np.asarray(matrix @ self._grid_flux(points, matrix, values).astype(np.float64))
        meta = {
            "medium": self.medium,
            "resolution": self.resolution,
            "grid": self.grid_name,
            "label_names": self.label_names,
            "interpolation": {"points": points, "weights": matrix},
        }
        for j, name in enumerate(self.label_names):
            col = values[:, j] * get_label(name).unit
            meta[name] = col[0] if scalar else col
        return Spectrum(
            flux=(flux[0] if scalar else flux) * self.flux_unit,
            spectral_axis=self.wavelength,
            meta=meta,
        )

    def to_library(
        self,
        labels,
        *,
        resolution=None,
        fwhm=None,
        wavelength=None,
        medium="vacuum",
        metallicity_label="m_h",
        chunk_size=None,
        dtype=np.float32,
        path=None,
    ):
        """Interpolate, degrade and resample the grid into a `SpectralLibrary`.

        Parameters
        ----------
        labels : `~astropy.table.QTable`, dict or array-like of shape (n, k)
            Label sets (see `weights`); other columns of a table (e.g. ``id``)
            are carried into the library's labels.
        resolution : float, optional
            Target resolving power R (Gaussian LSF from the grid's own).
        fwhm : `~astropy.units.Quantity`, optional
            Target LSF FWHM instead of R.
        wavelength : `~astropy.units.Quantity`, optional
            Target grid (in ``medium``), inside the grid's wavelength range.
        medium : {"vacuum", "air"}, optional
            Medium of the library; "air" converts the grid's vacuum wavelengths
            before resampling (e.g. for air-wavelength surveys).
        metallicity_label : {"m_h", "fe_h"}, optional
            Name of the metallicity column of the library ([Fe/H] = [M/H] here:
            iron follows the overall metallicity, and PHOENIX's alpha
            enhancement changes only the alpha elements).
        chunk_size : int, optional
            Grid points degraded at once and label sets written at once
            (default from ``stellarml.libraries.base.CHUNK_ELEMENTS``).
        dtype : numpy float dtype, optional
            Dtype of the library flux (default float32).
        path : str or path-like, optional
            Stream the flux into an ASDF store at ``path``
            (`stellarml.libraries.store`) and return it opened lazily
            (memory-mapped) instead of in memory.

        Returns
        -------
        library : `SpectralLibrary`
            ``ivar`` None (noise-free models), labels ``teff``, ``logg``,
            ``metallicity_label`` (and ``alpha_fe`` for PHOENIX), the target
            LSF and grid; ``meta`` records the grid, source, flux unit, number
            of grid points used and the degradation steps.

        Raises
        ------
        ValueError
            Labels outside the grid, a target sharper than the grid, or a
            wavelength grid outside the grid's range.
        GridPointNotFound
            If a needed grid point is missing.
        """
        target_r, target_fwhm = _check_lsf(resolution, fwhm)
        if metallicity_label not in ("m_h", "fe_h"):
            raise ValueError(
                f"metallicity_label must be 'm_h' or 'fe_h', got {metallicity_label!r}"
            )
        if medium not in ("vacuum", "air"):
            raise ValueError(f"medium must be 'air' or 'vacuum', got {medium!r}")
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"dtype must be a float dtype, got {dtype}")
        table = self._as_table(labels)
        values = self._label_values(table)
        matrix, points = self._weights(values)
        wave = self._wave_window()
        if medium == "air":
            wave = vacuum_to_air(wave)
        window = slice(0, wave.size)
        new_wave = None
        if wavelength is not None:
            new_wave = u.Quantity(wavelength, u.AA).to_value(u.AA, u.spectral())
            if new_wave.ndim != 1 or new_wave.size < 2:
                raise ValueError("wavelength must be a 1-D grid of at least 2 values")
            if new_wave[0] < wave[0] or new_wave[-1] > wave[-1]:
                raise ValueError(
                    f"wavelength grid {new_wave[0]:.2f}-{new_wave[-1]:.2f} Angstrom reaches "
                    f"outside the {self.grid_name} grid's {wave[0]:.2f}-{wave[-1]:.2f} "
                    f"Angstrom ({medium})"
                )
            # only the part of the grid the kernels and bins reach is degraded
            fwhm_end = (
                new_wave[-1] / target_r
                if target_r is not None
                else (target_fwhm.to_value(u.AA) if target_fwhm is not None else 0.0)
            )
            margin = 3.0 * fwhm_end + 2.0 * max(
                new_wave[1] - new_wave[0], new_wave[-1] - new_wave[-2]
            )
            i0 = max(0, int(np.searchsorted(wave, new_wave[0] - margin)) - 2)
            i1 = min(wave.size, int(np.searchsorted(wave, new_wave[-1] + margin)) + 2)
            window = slice(i0, i1)
        out_npix = wave.size if new_wave is None else new_wave.size
        degrade = target_r is not None or target_fwhm is not None or new_wave is not None
        m = len(points)
        per_chunk = (
            max(1, CHUNK_ELEMENTS // max(1, window.stop - window.start))
            if chunk_size is None
            else int(chunk_size)
        )
        if per_chunk < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
        grid_flux = np.empty((m, out_npix), dtype=np.float64)
        steps = None
        for sl in _chunks(m, per_chunk):
            flux = self._grid_flux(points[sl], matrix[:, sl], values, use_cache=False)
            flux = flux[:, window]
            if degrade:
                corner_lib = SpectralLibrary.from_arrays(
                    {name: points[sl, j] for j, name in enumerate(self.label_names)},
                    wave[window] * u.AA,
                    flux,
                    medium=medium,
                    resolution=self.resolution,
                )
                corner_lib = corner_lib.degrade(
                    resolution=target_r,
                    fwhm=target_fwhm,
                    wavelength=None if new_wave is None else new_wave * u.AA,
                )
                steps = corner_lib.meta.get("degraded")
                flux = corner_lib.flux
            grid_flux[sl] = flux
        out_labels = QTable()
        for j, name in enumerate(self.label_names):
            col = metallicity_label if name == "m_h" else name
            out_labels[col] = values[:, j] * get_label(name).unit
        for name in table.colnames:
            if name not in out_labels.colnames and name not in ("m_h", "fe_h", *self.label_names):
                out_labels[name] = table[name]
        meta = {
            "name": f"{self.grid_name} (interpolated)",
            "grid": self.grid_name,
            "source": self._source(),
            "flux_unit": self.flux_unit.to_string(),
            "interpolation": f"multilinear in {', '.join(self.label_names)}",
            "n_grid_points": int(m),
            "degraded": steps or [],
        }
        if target_r is not None:
            lsf = {"resolution": target_r, "fwhm": None}
        elif target_fwhm is not None:
            lsf = {"resolution": None, "fwhm": target_fwhm}
        else:  # resampling only: the LSF is the grid's
            lsf = {"resolution": self.resolution, "fwhm": None}
        lib_wave = (wave if new_wave is None else new_wave) * u.AA
        rows = max(1, CHUNK_ELEMENTS // out_npix) if chunk_size is None else per_chunk
        if path is not None:
            from .store import LibraryStoreWriter, read_library

            with LibraryStoreWriter(
                path,
                labels=out_labels,
                wavelength=lib_wave,
                medium=medium,
                meta=meta,
                dtype=dtype,
                **lsf,
            ) as writer:
                for sl in _chunks(len(out_labels), rows):
                    writer.write(np.asarray(matrix[sl] @ grid_flux).astype(dtype))
            return read_library(path, lazy=True)
        out = np.empty((len(out_labels), out_npix), dtype=dtype)
        for sl in _chunks(len(out_labels), rows):
            out[sl] = matrix[sl] @ grid_flux
        return SpectralLibrary(out_labels, lib_wave, out, medium=medium, meta=meta, **lsf)


# ---------------------------------------------------------------------- PHOENIX
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
