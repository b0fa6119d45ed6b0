"""Helpers shared by the stellarml specutils readers (not public API)."""

import contextlib
import io
import os
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits

__all__ = [
    "LOADER_PRIORITY",
    "file_label",
    "header_float",
    "header_str",
    "identify_hdulist",
    "open_hdulist",
    "parse_unit",
    "source_path",
]

#: Priority of every stellarml loader in the astropy I/O registry. specutils' own
#: survey loaders use 10 and its generic ``wcs1d-fits``/``tabular-fits`` loaders 5-6;
#: the stellarml identifiers are specific enough to outrank both (a tie at the top
#: priority makes ``Spectrum.read`` raise, so the tests check every real file).
LOADER_PRIORITY = 20

_PATH_TYPES = (str, bytes, os.PathLike)


def source_path(file_obj):
    """Return the `~pathlib.Path` behind ``file_obj`` if it has one, else None.

    ``file_obj`` may be a path, an open binary file or an `~astropy.io.fits.HDUList`.
    """
    if isinstance(file_obj, _PATH_TYPES):
        return Path(os.fsdecode(file_obj))
    if isinstance(file_obj, fits.HDUList):
        name = getattr(file_obj, "filename", lambda: None)()
        return Path(name) if name else None
    name = getattr(file_obj, "name", None)
    if isinstance(name, str | os.PathLike) and os.path.exists(name):
        return Path(name)
    return None


def file_label(file_obj):
    """A human name for ``file_obj`` to use in error messages."""
    path = source_path(file_obj)
    return str(path) if path is not None else f"<{type(file_obj).__name__}>"


@contextlib.contextmanager
def open_hdulist(file_obj, **kwargs):
    """Open ``file_obj`` (path, binary file object or HDUList) as an HDUList.

    An HDUList passed in is yielded unchanged and left open; anything opened here
    is closed on exit. ``kwargs`` go to `astropy.io.fits.open`. A file that is not
    FITS raises `OSError` naming it.
    """
    if isinstance(file_obj, fits.HDUList):
        yield file_obj
        return
    if not isinstance(file_obj, _PATH_TYPES) and not hasattr(file_obj, "read"):
        raise TypeError(
            f"expected a file name, a binary file object or an HDUList, "
            f"got {type(file_obj).__name__}"
        )
    try:
        hdul = fits.open(file_obj, **kwargs)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise OSError(f"{file_label(file_obj)} is not a readable FITS file: {exc}") from exc
    owned = isinstance(file_obj, _PATH_TYPES)
    try:
        yield hdul
    finally:
        # Close what we opened; leave a caller's file object open (rewound).
        hdul.close(closed=owned)
        if not owned and hasattr(file_obj, "seek"):
            with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
                file_obj.seek(0)


def identify_hdulist(args, test):
    """Run ``test(hdulist)`` for an astropy-registry identifier call.

    ``args`` are the identifier's positional arguments after ``origin``, i.e.
    ``(path, fileobj, *read_args)``. The open file object is preferred over the
    path, and an `~astropy.io.fits.HDUList` given to ``read`` is used directly. A
    non-FITS input, a missing file or any error inside ``test`` gives False, so
    identification never raises.
    """
    path, fileobj = [*args, None, None][:2]
    rest = args[2:]
    source = fileobj if fileobj is not None else path
    if source is None and rest and isinstance(rest[0], fits.HDUList):
        source = rest[0]
    if source is None:
        return False
    if isinstance(source, _PATH_TYPES) and not os.path.isfile(source):
        return False
    try:
        with open_hdulist(source) as hdul:
            return bool(test(hdul))
    except Exception:  # an identifier must answer, never raise
        return False


def header_float(header, key, default=None):
    """``header[key]`` as a float, or ``default`` if missing, blank or not a number."""
    value = header.get(key)
    if value is None or isinstance(value, bool):
        return default
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if np.isfinite(value) else default


def header_str(header, key, default=None):
    """``header[key]`` as a stripped string, or ``default`` if missing or blank."""
    value = header.get(key)
    if value is None:
        return default
    value = str(value).strip()
    return value or default


def parse_unit(text):
    """Parse a unit string from a FITS header, e.g. ``'erg/s/cm^2/cm'``.

    Header units such as PHOENIX's ``erg/s/cm^2/cm`` chain several slashes, which
    astropy parses correctly but warns about (the FITS standard discourages it);
    that warning is silenced here and only here. "Angstroms" is read as Angstrom.

    Raises
    ------
    ValueError
        If astropy cannot parse the string.
    """
    text = str(text).strip().replace("Angstroms", "Angstrom")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*multiple slashes", category=u.UnitsWarning)
        return u.Unit(text)
