"""`GridLibrary`: the base of synthetic-spectrum grids (shared by PHOENIX and Kurucz)."""

import abc
from collections import OrderedDict

import astropy.units as u
import numpy as np
import scipy.sparse as sp
from astropy.table import QTable
from specutils import Spectrum

from ...labels import get_label
from ...spectra import vacuum_to_air
from ..base import CHUNK_ELEMENTS, SpectralLibrary, _as_label_table, _check_lsf, _chunks
from ..download import (
    GridPointNotFound,
)

__all__ = ["GridLibrary"]

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

    Parameters
    ----------
    cache_bytes : int, optional
        Memory budget [bytes] for grid spectra kept between `spectrum` calls
        (least recently used first out).

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

    Examples
    --------
    The interpolation machinery, on a `KuruczLibrary` of four small atlas
    files in the STScI layout (Teff 5000 and 5250 K, [M/H] -0.5 and 0):

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
    ...         write_atlas(teff, m_h)
    >>> from stellarml.libraries import GridLibrary, KuruczLibrary
    >>> grid = KuruczLibrary(tmp.name)
    >>> isinstance(grid, GridLibrary), grid.label_names
    (True, ('teff', 'logg', 'm_h'))
    >>> weights, points = grid.weights({"teff": [5125.0, 5000.0], "logg": [4.5, 4.5],
    ...                                 "m_h": [0.0, 0.0]})
    >>> print(weights.shape, np.round(weights.toarray(), 2))  # 2 label sets x 2 grid points
    (2, 2) [[0.5 0.5]
     [1.  0. ]]
    >>> print(points)  # teff [K], logg, m_h [dex]
    [[5.00e+03 4.50e+00 0.00e+00]
     [5.25e+03 4.50e+00 0.00e+00]]
    >>> flux = grid.interpolate([[5125.0, 4.25, -0.25], [5000.0, 4.5, 0.0]])  # (n, npix)
    >>> print(flux.shape, np.round(flux[:, 0], 3))  # multilinear: exact for a linear flux
    (2, 100) [9.125 9.5  ]
    >>> try:
    ...     grid.weights({"teff": [6000.0], "logg": [4.5], "m_h": [0.0]})
    ... except ValueError as err:
    ...     print(str(err).split(" of this")[0])
    1 label sets have teff outside the grid range 5000..5250
    >>> tmp.cleanup()
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
            from ..store import LibraryStoreWriter, read_library

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
