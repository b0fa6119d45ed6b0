"""A compact on-disk store for spectral libraries (ASDF, memory-mapped on reading).

A degraded, resampled training library of survey size (10^5-10^6 spectra x a
few thousand pixels) does not fit comfortably in memory. `write_library`
writes a `~stellarml.libraries.SpectralLibrary` to an ASDF file with the flux
(and inverse variance) as binary blocks in their own dtype (float32 by
default, uncompressed so that they can be memory-mapped), the labels as an
`~astropy.table.QTable`, the wavelengths as a Quantity and the provenance
``meta`` as a plain tree. `read_library` opens it lazily: the arrays are
numpy memory maps of the file, so slicing a library (``library[1000:2000]``)
reads only those rows and the operating system, not the Python heap, holds
what is read. `LibraryStoreWriter` streams rows into a store chunk by chunk
(an ASDF streamed block), which is how
`~stellarml.libraries.grids.GridLibrary.to_library` writes libraries larger
than memory.

The tree is plain ASDF (no custom tag) under the key ``stellarml_library``::

    format: stellarml-library
    format_version: 1.0.0
    class: SpectralLibrary | ObservedLibrary
    labels: !<astropy QTable>       # one row per spectrum
    wavelength: !<Quantity> (npix,) Angstrom
    flux: (n, npix) block            # or a streamed block, rows appended
    ivar: (n, npix) block or null
    medium: vacuum | air
    resolution: float or null
    fwhm: !<Quantity> or null
    meta: {...}                      # the library's provenance
    written: {date, stellarml_version}

Files are written to ``<path>.part`` and moved into place with `os.replace`,
so an interrupted write never leaves a half-written store under ``path``.

Opening a store lazily still checks it: the `SpectralLibrary` constructor scans
the flux once for non-finite values (chunk by chunk, through the memory map),
which reads the file but keeps memory at one chunk.
"""

import datetime
import os
import warnings
from pathlib import Path

import asdf
import astropy.units as u
import numpy as np
from astropy.table import QTable, Table
from astropy.time import Time

from .base import SpectralLibrary, _as_label_table
from .observed import ObservedLibrary

__all__ = ["FORMAT", "FORMAT_VERSION", "LibraryStoreWriter", "read_library", "write_library"]

#: Name of the format, stored in the tree.
FORMAT = "stellarml-library"
#: Version of the tree layout written (major version changes break reading).
FORMAT_VERSION = "1.0.0"
_KEY = "stellarml_library"
_CLASSES = {"SpectralLibrary": SpectralLibrary, "ObservedLibrary": ObservedLibrary}


def _plain(value, where):
    """``value`` as something ASDF can store, or TypeError naming ``where``."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}; ASDF needs string keys")
            out[key] = _plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, u.Quantity | Table | Time):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufcUS":
            raise TypeError(f"{where} is an array of dtype {value.dtype}, which cannot be stored")
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if value is None or isinstance(value, str | bool | int | float | complex):
        return value
    raise TypeError(
        f"{where} of type {type(value).__name__} cannot be written to a library store; "
        "keep meta to dicts, lists, strings, numbers, arrays, Quantities and tables"
    )


def _normal_vounits():
    """Undo astropy's process-wide VOUnit side effect of parsing ``'dex'`` or ``dex``.

    Once a VOTable with a ``'dex'`` column was read (or a VOUnit ``dex`` parsed,
    which astropy takes as deci-"ex"), VOUnit accepts `astropy.units.dex` and
    asdf-astropy writes it as a VOUnit ``dex`` that reads back as another unit.
    Without the side effect asdf-astropy writes ``dex`` with astropy's own tag.
    """
    from ..catalog import _forget_shadowing_vounits

    _forget_shadowing_vounits()


def _generic_unit(unit):
    """``unit`` re-read from its name in astropy's generic format.

    Stores written while astropy's VOUnit side effect was in force (see
    `_normal_vounits`) hold ``dex`` as a VOUnit, which a fresh process reads
    back as deci-"ex" and a polluted one as a custom unit, neither convertible
    to `astropy.units.dex`. The generic-format name is unambiguous.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        try:
            fixed = u.Unit(unit.to_string(), format="generic", parse_strict="silent")
        except (ValueError, u.UnitsError):
            return unit
    if isinstance(fixed, u.UnrecognizedUnit) or fixed == unit:
        return unit
    return fixed


def _fix_quantity(value):
    unit = _generic_unit(value.unit)
    return value if unit is value.unit else u.Quantity(value.value, unit)


def _materialise(value):
    """Copy small arrays of a meta tree out of the file (lazy blocks -> ndarray)."""
    if isinstance(value, dict):
        return {key: _materialise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_materialise(item) for item in value]
    if isinstance(value, u.Quantity):
        return _fix_quantity(value.copy())
    if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, Table):
        return np.array(value)
    return value


def _header(library_like):
    """The tree entries other than the arrays."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "written": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "stellarml_version": _version(),
        },
        **library_like,
    }


def _version():
    from .._utils import stellarml_version

    return stellarml_version()


def _check_path(path, overwrite):
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    return path


def write_library(library, path, *, dtype=None, overwrite=False):
    """Write a spectral library to an ASDF store.

    Parameters
    ----------
    library : `~stellarml.libraries.SpectralLibrary`
        The library (any subclass; `ObservedLibrary` is restored as such).
    path : str or path-like
        Output file (``.asdf``).
    dtype : numpy float dtype, optional
        Dtype of the stored flux and ivar (default: the library's own).
        ``np.float32`` halves the size of a float64 library.
    overwrite : bool, optional
        Replace an existing file.

    Returns
    -------
    `~pathlib.Path`
        The file written.

    Raises
    ------
    TypeError
        If ``library`` is not a `SpectralLibrary`, or its ``meta`` holds a value
        ASDF cannot store (the message names the key).
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    FileNotFoundError
        If the folder of ``path`` does not exist.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from stellarml.libraries import SpectralLibrary, write_library
    >>> library = SpectralLibrary.from_arrays(
    ...     {"teff": [5000.0, 6000.0, 7000.0], "logg": [4.5, 4.0, 3.5]},  # [K], [dex]
    ...     np.linspace(5000.0, 5100.0, 101),  # [Angstrom]
    ...     np.ones((3, 101)),
    ...     resolution=2000.0,
    ...     meta={"name": "demo"},
    ... )
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = write_library(library, Path(tmp.name) / "demo.asdf", dtype=np.float32)
    >>> print(path.name)
    demo.asdf
    >>> try:
    ...     write_library(library, path)
    ... except FileExistsError as err:
    ...     print(type(err).__name__)
    FileExistsError
    >>> tmp.cleanup()
    """
    if not isinstance(library, SpectralLibrary):
        raise TypeError(f"expected a SpectralLibrary, got {type(library).__name__}")
    path = _check_path(path, overwrite)
    flux = library.flux if dtype is None else library.flux.astype(dtype, copy=False)
    ivar = library.ivar
    if ivar is not None and dtype is not None:
        ivar = ivar.astype(dtype, copy=False)
    tree = _header(
        {
            "class": type(library).__name__,
            "labels": QTable(library.labels, copy=False),
            "wavelength": library.wavelength,
            "flux": flux,
            "ivar": ivar,
            "medium": library.medium,
            "resolution": library.resolution,
            "fwhm": library.fwhm,
            "meta": _plain(library.meta, "meta"),
        }
    )
    part = path.with_name(path.name + ".part")
    _normal_vounits()
    try:
        asdf.AsdfFile({_KEY: tree}).write_to(part)
        os.replace(part, path)
    finally:
        if part.exists():
            part.unlink()
    return path


class LibraryStoreWriter:
    """Stream spectra into a library store, a chunk of rows at a time.

    The labels, grid and LSF are fixed up front; `write` appends flux rows to
    an ASDF streamed block. On a clean exit the number of rows is checked
    against the labels and the file moved into place; on an error the partial
    file is deleted. Stores written this way have no ``ivar``.

    Parameters
    ----------
    path : str or path-like
        Output file.
    labels : `~astropy.table.QTable`
        One row per spectrum that will be written (validated like a library's).
    wavelength : `~astropy.units.Quantity`
        Wavelength grid (npix,).
    medium : {"vacuum", "air"}
        Medium of ``wavelength``.
    resolution : float, optional
        Resolving power R of the spectra (give this or ``fwhm``, or neither).
    fwhm : `~astropy.units.Quantity`, optional
        Instrumental FWHM [Angstrom], constant over the grid.
    meta : dict, optional
        Provenance.
    dtype : numpy float dtype, optional
        Dtype of the stored flux (default float32).
    overwrite : bool, optional
        Replace an existing file.

    Raises
    ------
    ValueError
        From `write`, for a chunk of the wrong width, with non-finite values or
        beyond the number of labels; on exit, if fewer rows were written than
        ``labels`` has (the partial file is deleted).

    Examples
    --------
    Three spectra written in two chunks, then read back lazily:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import astropy.units as u
    >>> from astropy.table import QTable
    >>> from stellarml.libraries import LibraryStoreWriter, read_library
    >>> labels = QTable({"teff": [5000.0, 5500.0, 6000.0] * u.K})
    >>> wave = np.linspace(5000.0, 5100.0, 50) * u.AA
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "lib.asdf"
    ...     with LibraryStoreWriter(path, labels=labels, wavelength=wave,
    ...                             resolution=2000.0) as out:
    ...         out.write(np.ones((2, 50)))
    ...         out.write(np.full((1, 50), 0.5))
    ...     lib = read_library(path)
    ...     print(len(lib), lib.flux.dtype, float(lib.flux[2, 0]), lib.resolution)
    3 float32 0.5 2000.0
    """

    def __init__(
        self,
        path,
        *,
        labels,
        wavelength,
        medium="vacuum",
        resolution=None,
        fwhm=None,
        meta=None,
        dtype=np.float32,
        overwrite=True,
    ):
        self.path = _check_path(path, overwrite)
        table = _as_label_table(labels)
        # the grid, LSF and meta are checked by an empty library on them
        probe = SpectralLibrary(
            table[:0],
            wavelength,
            np.empty((0, len(wavelength))),
            medium=medium,
            resolution=resolution,
            fwhm=fwhm,
            meta=meta,
        )
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"dtype must be a float dtype, got {self.dtype}")
        self.npix = probe.npix
        self.n = len(table)
        self.rows = 0
        self._tree = _header(
            {
                "class": "SpectralLibrary",
                "labels": table,
                "wavelength": probe.wavelength,
                "flux": asdf.Stream([self.npix], self.dtype),
                "ivar": None,
                "medium": medium,
                "resolution": probe.resolution,
                "fwhm": probe.fwhm,
                "meta": _plain(probe.meta, "meta"),
            }
        )
        self._part = self.path.with_name(self.path.name + ".part")
        self._fh = None

    def __enter__(self):
        _normal_vounits()
        self._fh = open(self._part, "wb")
        asdf.AsdfFile({_KEY: self._tree}).write_to(self._fh)
        return self

    def write(self, flux):
        """Append rows of flux.

        Parameters
        ----------
        flux : array-like, shape (k, npix)
            The next ``k`` spectra, in label order.
        """
        if self._fh is None:
            raise ValueError("LibraryStoreWriter.write() outside its 'with' block")
        flux = np.asarray(flux)
        if flux.ndim != 2 or flux.shape[1] != self.npix:
            raise ValueError(f"flux chunk must have shape (k, {self.npix}), got {flux.shape}")
        if self.rows + flux.shape[0] > self.n:
            raise ValueError(f"more rows than the {self.n} labels given")
        if not np.all(np.isfinite(flux)):
            raise ValueError("flux chunk has non-finite values")
        self._fh.write(np.ascontiguousarray(flux, dtype=self.dtype).tobytes())
        self.rows += flux.shape[0]

    def __exit__(self, exc_type, exc, tb):
        self._fh.close()
        self._fh = None
        if exc_type is None and self.rows != self.n:
            self._part.unlink()
            raise ValueError(f"{self.rows} spectra written but {self.n} labels given")
        if exc_type is not None:
            self._part.unlink()
            return False
        os.replace(self._part, self.path)
        return False


def read_library(path, *, lazy=True):
    """Read a library store written by `write_library` or `LibraryStoreWriter`.

    Parameters
    ----------
    path : str or path-like
        The ``.asdf`` store.
    lazy : bool, optional
        If True (default) the flux and ivar are numpy memory maps of the file
        (read on access, page by page); otherwise they are read into memory.

    Returns
    -------
    library : `~stellarml.libraries.SpectralLibrary`
        Of the class it was written from (`SpectralLibrary` or
        `ObservedLibrary`); ``meta["store"]`` records the path and format.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not ASDF, not a library store, of an unsupported format
        version, or truncated (fewer flux rows than labels).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from stellarml.libraries import SpectralLibrary, read_library, write_library
    >>> library = SpectralLibrary.from_arrays(
    ...     {"teff": [5000.0, 6000.0, 7000.0], "logg": [4.5, 4.0, 3.5]},  # [K], [dex]
    ...     np.linspace(5000.0, 5100.0, 101),  # [Angstrom]
    ...     np.ones((3, 101)),
    ...     resolution=2000.0,
    ...     meta={"name": "demo"},
    ... )
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = write_library(library, Path(tmp.name) / "demo.asdf", dtype=np.float32)
    >>> stored = read_library(path)  # memory-mapped
    >>> print(type(stored).__name__, stored.flux.shape, stored.flux.dtype, stored.resolution)
    SpectralLibrary (3, 101) float32 2000.0
    >>> print(stored.labels["teff"].unit, stored.wavelength.unit, stored.meta["name"])
    K Angstrom demo
    >>> print(stored[1:].labels["teff"].value)  # slicing reads only those rows
    [6000. 7000.]
    >>> del stored
    >>> tmp.cleanup()
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"library store {path} does not exist")
    try:
        af = asdf.open(path, lazy_load=lazy, memmap=lazy)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path} is not a readable ASDF file: {exc}") from None
    with af:
        tree = af.tree.get(_KEY)
        if not isinstance(tree, dict) or tree.get("format") != FORMAT:
            raise ValueError(f"{path} is an ASDF file but not a stellarml library store")
        version = str(tree.get("format_version", ""))
        if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
            raise ValueError(
                f"{path}: library store format version {version!r} is not supported "
                f"(this stellarml reads {FORMAT_VERSION.split('.')[0]}.x)"
            )
        labels = QTable(tree["labels"])
        for name in labels.colnames:
            if isinstance(labels[name], u.Quantity):
                labels[name] = _fix_quantity(labels[name])
        # ``[...]`` gives a view of asdf's memory map itself: an array made from the lazy
        # proxy object would keep the proxy as its base, and the proxy fails on any
        # attribute access once the file is closed and its block reader collected.
        flux = np.asarray(tree["flux"][...]) if lazy else np.array(tree["flux"])
        ivar = tree.get("ivar")
        if ivar is not None:
            ivar = np.asarray(ivar[...]) if lazy else np.array(ivar)
        if flux.ndim != 2 or flux.shape[0] != len(labels):
            raise ValueError(
                f"{path}: truncated or inconsistent store: flux has shape {flux.shape} for "
                f"{len(labels)} labelled spectra"
            )
        meta = _materialise(dict(tree.get("meta") or {}))
        meta["store"] = {"path": str(path.resolve()), "format_version": version}
        _normal_vounits()  # reading a VOUnit "dex" (old stores) defines a shadowing unit
        cls = _CLASSES.get(tree.get("class"), SpectralLibrary)
        fwhm = tree.get("fwhm")
        return cls(
            labels,
            _fix_quantity(u.Quantity(tree["wavelength"])),
            flux,
            ivar,
            medium=tree["medium"],
            resolution=tree.get("resolution"),
            fwhm=None if fwhm is None else _fix_quantity(u.Quantity(fwhm)),
            meta=meta,
        )
