"""Download-on-demand of PHOENIX-ACES and Castelli-Kurucz grid files.

Files are fetched from the public servers (or any mirror with the same layout,
e.g. a local HTTP server) when a grid library first needs them, and kept in one
of two places:

* the **astropy download cache** (default), keyed on the file's URL exactly as
  `astropy.utils.data.download_file` keys it, so ``download_file(url,
  cache=True)`` finds the file, `astropy.utils.data.clear_download_cache`
  removes it, and ``astropy.config.paths.set_temp_cache`` redirects it;
* a **mirror directory** (``mirror=``, or for every call the astropy config item
  ``stellarml.conf.cache_dir``), written in the server's own layout
  (``WAVE_PHOENIX-ACES-AGSS-COND-2011.fits``,
  ``PHOENIX-ACES-AGSS-COND-2011/Z-0.0/lte05800-4.50-0.0....fits``;
  ``ck04models/ckp00/ckp00_5000.fits``), which is then also a valid local grid
  directory for `~stellarml.libraries.grids.PhoenixLibrary` and
  `~stellarml.libraries.grids.KuruczLibrary` without network.

What astropy provides and what is added here
--------------------------------------------
``astropy.utils.data.download_file(url, cache=True)`` (astropy 8) streams the
transfer into a temporary file outside the cache, checks the byte count
against ``Content-Length`` (a short transfer raises
`urllib.error.ContentTooShortError` and the temporary file is deleted), and
only then moves it into the cache through a temporary directory *inside* the
cache renamed into place: cache entries are written atomically, so a
half-written file never appears in the cache. It does not resume (an
interrupted 6 MB PHOENIX file starts again from byte 0), does not know what a
valid grid file is (an HTML error page or a truncated FITS served with status
200 is cached as if it were the model), and shows its own console spinner.

This module therefore does the transfer itself and hands the finished file to
astropy's atomic cache import (`astropy.utils.data.import_file_to_cache`):

1. The transfer goes into a ``.part`` file (for the cache in
   ``<astropy cache>/download/stellarml-partial/``, for a mirror beside the
   target), with a ``.part.json`` note of the server's ``ETag`` /
   ``Last-Modified`` and the total length, under an exclusive ``fcntl`` lock
   (no locking on platforms without ``fcntl``). A ``tqdm`` progress bar shows
   the bytes.
2. An interrupted or short transfer (fewer bytes than ``Content-Length``)
   raises `GridDownloadError` and *keeps* the ``.part`` file. The next call
   resumes it with ``Range: bytes=<size>-`` and ``If-Range: <validator>``: a
   ``206`` appends, a ``200`` (server without ranges, or a file that changed
   since) starts again from the beginning.
3. The complete file is validated as a FITS file of the expected kind and,
   for a model, of the requested grid point (`validate_grid_file`). A file
   that fails is deleted (with its ``.part`` note) and `InvalidGridFile` is
   raised; nothing enters the cache.
4. Only a valid file is moved into place: `~astropy.utils.data.import_file_to_cache`
   for the cache, `os.replace` (atomic on one file system) for a mirror.

Safety
------
* **Redirects** are followed only to the same scheme, host and port as the
  requested URL; a redirect anywhere else raises `UnsafeDownloadError`
  (grid files come from one server; a redirect to another host is not
  trusted with what is then read as a model).
* **Size cap**: a file larger than ``max_bytes`` (default
  `DEFAULT_MAX_BYTES`) is refused, before the transfer when the server
  announces its length and during it otherwise; the partial file is deleted.
* **Integrity**: the byte count is checked against ``Content-Length``
  (``Content-Range`` when resuming); the complete file is checked against
  every digest the server gives for the whole file (``Digest: SHA-256=…`` /
  ``MD5=…``, RFC 3230; ``Content-MD5``; an ``ETag`` of exactly 32 hexadecimal
  digits, the MD5 convention of S3-like servers) and against ``expected``
  (``{"sha256": …, "md5": …, "size": …}``, e.g. from a manifest), also for a
  file already in a mirror. A mismatch raises `InvalidGridFile` and the file
  is discarded (a mirror file already there is left as it is).
* **Mirror paths**: a relative path is normalised (``a/./b`` -> ``a/b``);
  absolute paths, ``..`` components, backslashes and empty paths are
  refused, and the resolved target (symbolic links followed) must lie inside
  the mirror directory. Violations raise `UnsafeDownloadError`.

A missing file (HTTP 404 or 410: the PHOENIX grid is ragged, e.g. no hot
low-gravity models) raises `GridPointNotFound`, a `LookupError` naming the
grid point and the URL. Downloads obey ``astropy.utils.data.conf.allow_internet``
and use ``conf.remote_timeout`` as the default timeout.
"""

import base64
import contextlib
import hashlib
import json
import os
import posixpath
import re
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import numpy as np
from astropy.config.paths import get_cache_dir_path
from astropy.io import fits
from astropy.utils import data as astropy_data
from tqdm.auto import tqdm

from ..io.kurucz import kurucz_filename, kurucz_subdir, read_kurucz_batch
from ..io.phoenix import PHOENIX_WAVE_FILENAME, phoenix_filename, phoenix_subdir

try:  # POSIX advisory locks; Windows has none (concurrent downloads are then unguarded)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = [
    "DEFAULT_MAX_BYTES",
    "KINDS",
    "KURUCZ_ATLAS_DIRS",
    "KURUCZ_BASE_URL",
    "PHOENIX_BASE_URL",
    "PHOENIX_GRID_DIR",
    "GridDownloadError",
    "GridPointNotFound",
    "InvalidGridFile",
    "UnsafeDownloadError",
    "fetch_grid_file",
    "fetch_kurucz",
    "fetch_phoenix",
    "fetch_phoenix_wavelength",
    "grid_url",
    "kurucz_relpath",
    "phoenix_relpath",
    "validate_grid_file",
]

#: Base URL of the PHOENIX HiRes FITS files (Husser et al. 2013), Göttingen.
PHOENIX_BASE_URL = "https://phoenix.astro.physik.uni-goettingen.de/data/HiResFITS/"
#: Folder of the PHOENIX-ACES-AGSS-COND-2011 models below `PHOENIX_BASE_URL`.
PHOENIX_GRID_DIR = "PHOENIX-ACES-AGSS-COND-2011"
#: Base URL of the STScI reference atlases (CDBS/TRDS ``grid/`` folder).
KURUCZ_BASE_URL = "https://archive.stsci.edu/hlsps/reference-atlases/cdbs/grid/"
#: Atlas folders below `KURUCZ_BASE_URL`.
KURUCZ_ATLAS_DIRS = {"ck04": "ck04models", "k93": "k93models"}

#: File kinds understood by `validate_grid_file`.
KINDS = ("phoenix", "phoenix_wavelength", "kurucz")

#: Default size cap of one downloaded file [bytes] (256 MiB; a PHOENIX HiRes
#: model is about 6 MB, a Kurucz atlas file about 1 MB).
DEFAULT_MAX_BYTES = 256 * 2**20

_BLOCK = 2**16
_PARTIAL_DIR = "stellarml-partial"


class GridPointNotFound(LookupError):
    """A grid point (model file) does not exist on the server or in the directory.

    Parameters
    ----------
    message : str
        What is missing and where it was looked for.
    point : dict, optional
        The grid point, e.g. ``{"teff": 12000.0, "logg": 0.5, "m_h": 0.0, "alpha_fe": 0.0}``.
    url : str, optional
        The URL (or path) that was tried.

    Attributes
    ----------
    point : dict or None
        The grid point, as given.
    url : str or None
        The URL (or path), as given.

    Examples
    --------
    A server that lacks the file answers HTTP 404 (here a loopback server
    serving an empty folder):

    >>> import functools, http.server, tempfile, threading
    >>> from stellarml.libraries.download import GridPointNotFound, fetch_kurucz
    >>> tmp = tempfile.TemporaryDirectory()
    >>> handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp.name)
    >>> server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    >>> threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    >>> url = f"http://127.0.0.1:{server.server_address[1]}/"
    >>> try:
    ...     fetch_kurucz(5000, 0.0, base_url=url, mirror=tmp.name, show_progress=False)
    ... except GridPointNotFound as err:
    ...     print(type(err).__name__, err.point, err.url.removeprefix(url))
    GridPointNotFound {'teff': 5000.0, 'm_h': 0.0} ck04models/ckp00/ckp00_5000.fits
    >>> server.shutdown(); server.server_close(); tmp.cleanup()
    """

    def __init__(self, message, *, point=None, url=None):
        super().__init__(message)
        self.point = point
        self.url = url

    def __str__(self):
        return str(self.args[0])


class GridDownloadError(OSError):
    """A grid file could not be transferred (network error, short transfer, HTTP error).

    Parameters
    ----------
    message : str
        What went wrong.
    url : str, optional
        The file's URL.
    partial : `~pathlib.Path`, optional
        The kept ``.part`` file of an interrupted transfer, which the next
        download resumes.

    Attributes
    ----------
    url : str or None
        The file's URL.
    partial : `~pathlib.Path` or None
        The kept ``.part`` file (None when nothing was kept).

    Examples
    --------
    A file that is neither in the mirror nor allowed to be downloaded:

    >>> import tempfile
    >>> from astropy.utils.data import conf
    >>> from stellarml.libraries.download import GridDownloadError, fetch_kurucz
    >>> with tempfile.TemporaryDirectory() as mirror, conf.set_temp("allow_internet", False):
    ...     try:
    ...         fetch_kurucz(5000, 0.0, mirror=mirror)
    ...     except GridDownloadError as err:
    ...         print(type(err).__name__, err.url.rsplit("/", 1)[-1], err.partial)
    GridDownloadError ckp00_5000.fits None
    """

    def __init__(self, message, *, url=None, partial=None):
        super().__init__(message)
        self.url = url
        self.partial = partial

    def __str__(self):
        return str(self.args[0])


class InvalidGridFile(ValueError):
    """A downloaded or local grid file is not a valid FITS file of the expected kind.

    Also raised when a file does not match its checksum or expected size.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from stellarml.libraries.download import InvalidGridFile, validate_grid_file
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = Path(tmp.name) / "WAVE.fits"
    >>> fits.PrimaryHDU(np.linspace(9000.0, 3000.0, 50)).writeto(path)  # decreasing
    >>> try:
    ...     validate_grid_file(path, "phoenix_wavelength", where="WAVE.fits")
    ... except InvalidGridFile as err:
    ...     print(type(err).__name__, err)
    InvalidGridFile WAVE.fits: PHOENIX wavelengths must be finite and increasing
    >>> tmp.cleanup()
    """


class UnsafeDownloadError(GridDownloadError):
    """A download was refused: a redirect to another host, a file over the size
    cap, or a mirror path that would leave the mirror directory.

    A `GridDownloadError` (same parameters and attributes).

    Examples
    --------
    >>> from stellarml.libraries.download import KURUCZ_BASE_URL, UnsafeDownloadError, grid_url
    >>> try:
    ...     grid_url(KURUCZ_BASE_URL, "ck04models/../../secret.fits")
    ... except UnsafeDownloadError as err:
    ...     print(type(err).__name__, err)
    UnsafeDownloadError relative path 'ck04models/../../secret.fits' has a '..' component
    """


# ---------------------------------------------------------------------- names
def phoenix_relpath(teff, logg, m_h, alpha=0.0):
    """Path of a PHOENIX HiRes model below `PHOENIX_BASE_URL` (or a mirror).

    Parameters
    ----------
    teff : float
        Effective temperature [K], a PHOENIX grid value.
    logg : float
        Surface gravity [dex].
    m_h : float
        Metallicity [M/H] [dex].
    alpha : float, optional
        [alpha/M] [dex].

    Returns
    -------
    str
        ``"PHOENIX-ACES-AGSS-COND-2011/<phoenix_subdir>/<phoenix_filename>"``, e.g.
        ``.../Z-0.0/lte05800-4.50-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits``.

    Raises
    ------
    ValueError
        If the values are not PHOENIX grid values (see `stellarml.io.phoenix.phoenix_filename`).

    Examples
    --------
    >>> from stellarml.libraries.download import phoenix_relpath
    >>> print(phoenix_relpath(5800, 4.5, 0.0))
    PHOENIX-ACES-AGSS-COND-2011/Z-0.0/lte05800-4.50-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits
    >>> print(phoenix_relpath(5000, 2.0, -1.0, alpha=0.4).split("/")[1])
    Z-1.0.Alpha=+0.40
    >>> try:
    ...     phoenix_relpath(5810, 4.5, 0.0)
    ... except ValueError as err:
    ...     print(str(err).split(";")[0])
    teff=5810 K is not a point of the PHOENIX-ACES grid
    """
    name = phoenix_filename(teff, logg, m_h, alpha)
    return f"{PHOENIX_GRID_DIR}/{phoenix_subdir(m_h, alpha)}/{name}"


def kurucz_relpath(teff, m_h, atlas="ck04"):
    """Path of a STScI atlas file below `KURUCZ_BASE_URL` (or a mirror).

    Parameters
    ----------
    teff : float
        Effective temperature [K], a grid value of the atlas.
    m_h : float
        Metallicity log Z [dex].
    atlas : {"ck04", "k93"}, optional
        Castelli & Kurucz 2004 (default) or Kurucz 1993.

    Returns
    -------
    str
        E.g. ``"ck04models/ckp00/ckp00_5000.fits"``.

    Raises
    ------
    ValueError
        If ``teff`` or ``m_h`` is not a grid value of the atlas, or the atlas is unknown.

    Examples
    --------
    >>> from stellarml.libraries.download import kurucz_relpath
    >>> print(kurucz_relpath(5000, 0.0))
    ck04models/ckp00/ckp00_5000.fits
    >>> print(kurucz_relpath(10000, -0.5, atlas="k93"))
    k93models/km05/km05_10000.fits
    """
    name = kurucz_filename(teff, m_h, atlas)
    return f"{KURUCZ_ATLAS_DIRS[atlas]}/{kurucz_subdir(m_h, atlas)}/{name}"


def grid_url(base_url, relpath):
    """Join a base URL and a relative grid path (exactly one ``/`` between them).

    Parameters
    ----------
    base_url : str
        E.g. `PHOENIX_BASE_URL` or ``"http://127.0.0.1:8000/HiResFITS"``.
    relpath : str
        A path from `phoenix_relpath` / `kurucz_relpath`.

    Returns
    -------
    str
        The URL of the file.

    Raises
    ------
    ValueError
        If ``base_url`` is not an ``http://`` or ``https://`` URL.
    UnsafeDownloadError
        If ``relpath`` has a ``..`` component, a backslash, or is empty.

    Examples
    --------
    >>> from stellarml.libraries.download import KURUCZ_BASE_URL, grid_url, kurucz_relpath
    >>> print(grid_url(KURUCZ_BASE_URL, kurucz_relpath(5000, 0.0)))
    https://archive.stsci.edu/hlsps/reference-atlases/cdbs/grid/ck04models/ckp00/ckp00_5000.fits
    >>> print(grid_url("http://127.0.0.1:8000/HiResFITS", "/./WAVE.fits"))
    http://127.0.0.1:8000/HiResFITS/WAVE.fits
    """
    if not isinstance(base_url, str) or not re.match(r"^https?://", base_url):
        raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
    return base_url.rstrip("/") + "/" + _safe_relpath(relpath.lstrip("/"))


def _safe_relpath(relpath):
    """``relpath`` normalised, or `UnsafeDownloadError` if it could leave its base."""
    if not isinstance(relpath, str) or not relpath.strip("/"):
        raise UnsafeDownloadError(f"empty or invalid relative path {relpath!r}")
    if "\\" in relpath or "\x00" in relpath:
        raise UnsafeDownloadError(f"relative path {relpath!r} holds a backslash or NUL")
    if relpath.startswith("/") or re.match(r"^[A-Za-z]:", relpath):
        raise UnsafeDownloadError(f"relative path {relpath!r} is absolute")
    parts = relpath.split("/")
    if ".." in parts:
        raise UnsafeDownloadError(f"relative path {relpath!r} has a '..' component")
    return posixpath.normpath(relpath)


def _mirror_target(mirror, relpath):
    """``mirror / relpath``, checked to stay inside ``mirror`` with links resolved."""
    root = Path(mirror).expanduser().resolve()
    dest = root / _safe_relpath(relpath)
    if not dest.resolve().is_relative_to(root):
        raise UnsafeDownloadError(
            f"{relpath!r} resolves to {dest.resolve()}, outside the mirror {root} "
            "(a symbolic link leads out of it)"
        )
    return dest


def _point_text(point):
    if not point:
        return "the file"
    return ", ".join(f"{k}={v:g}" for k, v in point.items())


# ---------------------------------------------------------------------- validation
def _check_phoenix(hdul, point, where):
    header = hdul[0].header
    data = hdul[0].data
    if data is None or data.ndim != 1 or data.size < 2:
        raise InvalidGridFile(f"{where}: a PHOENIX model must have a 1-D primary image")
    values = {}
    for key, name in (("PHXTEFF", "teff"), ("PHXLOGG", "logg"), ("PHXM_H", "m_h")):
        if not isinstance(header.get(key), int | float):
            raise InvalidGridFile(f"{where}: header keyword {key} missing or not a number")
        values[name] = float(header[key])
    values["alpha_fe"] = float(header.get("PHXALPHA", 0.0))
    if not np.all(np.isfinite(data)):
        raise InvalidGridFile(f"{where}: the PHOENIX flux has non-finite values")
    _check_point(values, point, where)


def _check_phoenix_wavelength(hdul, point, where):
    data = hdul[0].data
    if data is None or data.ndim != 1 or data.size < 2:
        raise InvalidGridFile(f"{where}: the PHOENIX wavelength file must hold a 1-D image")
    wave = np.asarray(data, dtype=np.float64)
    if not (np.all(np.isfinite(wave)) and np.all(np.diff(wave) > 0)):
        raise InvalidGridFile(f"{where}: PHOENIX wavelengths must be finite and increasing")


def _check_kurucz(hdul, point, where):
    spec = read_kurucz_batch(hdul)
    values = {"teff": spec.meta["teff"].value, "m_h": spec.meta["m_h"].value}
    _check_point(values, None if point is None else {k: point[k] for k in values}, where)


def _check_point(values, point, where):
    if point is None:
        return
    wrong = [
        f"{name}: expected {point[name]:g}, file has {values[name]:g}"
        for name in point
        if name in values and abs(values[name] - point[name]) > 1e-6
    ]
    if wrong:
        raise InvalidGridFile(f"{where}: not the requested grid point ({'; '.join(wrong)})")


_CHECKS = {
    "phoenix": _check_phoenix,
    "phoenix_wavelength": _check_phoenix_wavelength,
    "kurucz": _check_kurucz,
}


def validate_grid_file(path, kind, point=None, *, where=None):
    """Check that a file is a complete, readable grid FITS file of the expected kind.

    Parameters
    ----------
    path : str or path-like
        The file.
    kind : {"phoenix", "phoenix_wavelength", "kurucz"}
        A PHOENIX HiRes model, the PHOENIX wavelength file, or a STScI atlas file.
    point : dict, optional
        The grid point the file must hold (``teff``, ``logg``, ``m_h``,
        ``alpha_fe`` for PHOENIX; ``teff``, ``m_h`` for Kurucz), compared with
        the header labels.
    where : str, optional
        Name used in messages (e.g. the URL); default the path.

    Raises
    ------
    InvalidGridFile
        If the file is not FITS, is truncated, lacks the expected structure or
        keywords, has non-finite values or holds another grid point.
    ValueError
        If ``kind`` is not one of `KINDS`.

    Examples
    --------
    A small PHOENIX-like model (1-D primary image with the ``PHX*`` labels):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from stellarml.libraries.download import InvalidGridFile, validate_grid_file
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = Path(tmp.name) / "model.fits"
    >>> labels = {"PHXTEFF": 5800.0, "PHXLOGG": 4.5, "PHXM_H": 0.0, "PHXALPHA": 0.0}
    >>> fits.PrimaryHDU(np.ones(50, np.float32), header=fits.Header(labels)).writeto(path)
    >>> point = {"teff": 5800.0, "logg": 4.5, "m_h": 0.0, "alpha_fe": 0.0}
    >>> validate_grid_file(path, "phoenix", point) is None  # valid: no error
    True
    >>> try:
    ...     validate_grid_file(path, "phoenix", {**point, "teff": 6000.0}, where="model.fits")
    ... except InvalidGridFile as err:
    ...     print(err)
    model.fits: not the requested grid point (teff: expected 6000, file has 5800)
    >>> Path(tmp.name, "cut.fits").write_bytes(path.read_bytes()[:3000])  # a broken transfer
    3000
    >>> try:
    ...     validate_grid_file(Path(tmp.name, "cut.fits"), "phoenix", where="cut.fits")
    ... except InvalidGridFile as err:
    ...     print(err)
    cut.fits: truncated FITS file (3000 bytes, its headers describe 5760)
    >>> tmp.cleanup()
    """
    if kind not in _CHECKS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    where = where or str(path)
    try:
        with (
            open(path, "rb") as fh,
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            with fits.open(fh, memmap=False, lazy_load_hdus=False) as hdul:
                info = hdul.fileinfo(len(hdul) - 1)
                expected = info["datLoc"] + info["datSpan"]
                actual = os.fstat(fh.fileno()).st_size
                if actual < expected:
                    raise InvalidGridFile(
                        f"{where}: truncated FITS file ({actual} bytes, its headers "
                        f"describe {expected})"
                    )
                _CHECKS[kind](hdul, point, where)
    except InvalidGridFile:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise InvalidGridFile(f"{where}: not a readable {kind} FITS file ({exc})") from None
    truncated = [str(w.message) for w in caught if "truncated" in str(w.message).lower()]
    if truncated:
        raise InvalidGridFile(f"{where}: truncated FITS file ({truncated[0]})")


# ---------------------------------------------------------------------- transfer
@contextlib.contextmanager
def _locked(path):
    """Exclusive advisory lock on ``path`` (created if needed); no-op without fcntl."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _remove(*paths):
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _read_note(note, url):
    try:
        info = json.loads(note.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("url") != url:
        return None
    if not (info.get("etag") or info.get("last_modified")):
        return None
    return info


def _user_agent():
    from .._utils import stellarml_version

    return f"stellarml/{stellarml_version()} (+astropy download cache)"


def _content_range(value):
    match = re.match(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", value or "")
    if match is None:
        return None
    total = None if match[3] == "*" else int(match[3])
    return int(match[1]), total


def _origin(url):
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to the same scheme, host and port."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urllib.parse.urljoin(req.full_url, newurl)
        if _origin(target) != _origin(req.full_url):
            fp.close()
            raise UnsafeDownloadError(
                f"{req.full_url} redirects (HTTP {code}) to {target}, on another host or "
                "scheme; stellarml follows redirects only within the server it was given. "
                "Pass that server as base_url if you trust it",
                url=req.full_url,
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameOriginRedirects)


def _b64_hex(value):
    try:
        return base64.b64decode(value.strip(), validate=True).hex()
    except (ValueError, TypeError):
        return None


def _server_digests(headers, *, whole):
    """``{"sha256"|"md5": hexdigest}`` the response headers give for the whole file.

    ``whole``: the body is the whole file (status 200), so ``Content-MD5`` and
    an MD5-like ``ETag`` describe it; ``Digest`` (RFC 3230) always does.
    """
    out = {}
    for item in (headers.get("Digest") or "").split(","):
        algo, _, value = item.strip().partition("=")
        name = {"sha-256": "sha256", "md5": "md5"}.get(algo.strip().lower())
        if name and (digest := _b64_hex(value)):
            out[name] = digest
    if whole:
        if (md5 := headers.get("Content-MD5")) and (digest := _b64_hex(md5)):
            out.setdefault("md5", digest)
        etag = headers.get("ETag") or ""
        if not etag.startswith("W/"):
            tag = etag.strip().strip('"')
            if re.fullmatch(r"[0-9a-fA-F]{32}", tag):
                out.setdefault("md5", tag.lower())
    return out


def _too_big(url, size, max_bytes, part, note):
    _remove(part, note)
    return UnsafeDownloadError(
        f"{url} is {size} bytes or more, over the size cap of {max_bytes} bytes; "
        "nothing was kept (raise max_bytes if the file is really that large)",
        url=url,
    )


def _transfer(
    url, part, *, timeout, show_progress, desc, point, max_bytes=DEFAULT_MAX_BYTES, _retry=True
):
    """Download ``url`` into ``part``, resuming it when possible.

    Returns the digests the server gave for the whole file (``{"sha256"|"md5":
    hex}``, kept in the ``.part.json`` note across resumed transfers) when
    ``part`` holds the complete file; raises `GridPointNotFound`,
    `UnsafeDownloadError` (another host, over ``max_bytes``), or
    `GridDownloadError` (keeping ``part`` for the next attempt).
    """
    note = part.with_name(part.name + ".json")
    have = part.stat().st_size if part.exists() else 0
    info = _read_note(note, url) if have else None
    headers = {"User-Agent": _user_agent(), "Accept": "*/*"}
    if info is not None:
        headers["Range"] = f"bytes={have}-"
        headers["If-Range"] = info.get("etag") or info["last_modified"]
    request = urllib.request.Request(url, headers=headers)
    try:
        response = _OPENER.open(request, timeout=timeout)
    except UnsafeDownloadError:
        raise
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in (404, 410):
            _remove(part, note)
            raise GridPointNotFound(
                f"grid point {_point_text(point)} does not exist: {url} answered HTTP "
                f"{exc.code} ({exc.reason}); the grid is ragged at its edges, choose labels "
                "whose bracketing models exist",
                point=point,
                url=url,
            ) from None
        if exc.code == 416 and info is not None and _retry:
            _remove(part, note)  # the partial file is not a prefix of the remote one
            return _transfer(
                url,
                part,
                timeout=timeout,
                show_progress=show_progress,
                desc=desc,
                point=point,
                max_bytes=max_bytes,
                _retry=False,
            )
        raise GridDownloadError(
            f"downloading {url} failed: HTTP {exc.code} ({exc.reason})", url=url
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise GridDownloadError(f"cannot download {url}: {reason}", url=url) from exc
    with response:
        status = response.status
        start = 0
        total = None
        if status == 206:
            parsed = _content_range(response.headers.get("Content-Range"))
            if parsed is None or parsed[0] != have:
                raise GridDownloadError(
                    f"{url}: the server answered the resume request with an unexpected "
                    f"Content-Range {response.headers.get('Content-Range')!r}",
                    url=url,
                )
            start, total = parsed
            digests = {
                **(info or {}).get("digests", {}),
                **_server_digests(response.headers, whole=False),
            }
        else:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            digests = _server_digests(response.headers, whole=True)
        if total is not None and total > max_bytes:
            raise _too_big(url, total, max_bytes, part, note)
        note.write_text(
            json.dumps(
                {
                    "url": url,
                    "etag": response.headers.get("ETag"),
                    "last_modified": response.headers.get("Last-Modified"),
                    "length": total,
                    "digests": digests,
                }
            )
        )
        done = start
        try:
            with (
                open(part, "ab" if start else "wb") as fh,
                tqdm(
                    total=total,
                    initial=start,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=desc,
                    disable=not show_progress,
                    leave=False,
                ) as bar,
            ):
                while True:
                    block = response.read(_BLOCK)
                    if not block:
                        break
                    done += len(block)
                    if done > max_bytes:
                        break
                    fh.write(block)
                    bar.update(len(block))
        except OSError as exc:
            raise GridDownloadError(
                f"transfer of {url} interrupted after {done} bytes ({exc}); the partial "
                f"file {part} is kept and the next download resumes it",
                url=url,
                partial=part,
            ) from exc
    if done > max_bytes:
        raise _too_big(url, done, max_bytes, part, note)
    if total is not None and done != total:
        raise GridDownloadError(
            f"transfer of {url} stopped after {done} of {total} bytes; the partial file "
            f"{part} is kept and the next download resumes it",
            url=url,
            partial=part,
        )
    return digests


def _file_digests(path, names):
    hashes = {name: hashlib.new(name) for name in names}
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            for h in hashes.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashes.items()}


def _check_integrity_keys(expected):
    if expected is None:
        return
    if not isinstance(expected, dict):
        raise TypeError(f"expected must be a dict, got {type(expected).__name__}")
    unknown = sorted(set(expected) - {"size", "sha256", "md5"})
    if unknown:
        raise ValueError(f"expected may hold 'size', 'sha256' and 'md5', not {unknown}")


def _check_integrity(path, expected, where):
    """Raise `InvalidGridFile` if ``path`` differs from ``expected`` size or digests.

    ``expected``: ``{"size": int, "sha256": hex, "md5": hex}`` (any subset);
    entries with a ``<name>_source`` key name where each came from.
    """
    expected = dict(expected or {})
    problems = []
    if expected.get("size") is not None:
        size = os.stat(path).st_size
        if size != int(expected["size"]):
            problems.append(
                f"{size} bytes, {expected.get('size_source', 'expected')} {int(expected['size'])}"
            )
    names = [n for n in ("sha256", "md5") if expected.get(n)]
    if names:
        actual = _file_digests(path, names)
        for name in names:
            if actual[name] != str(expected[name]).lower():
                source = expected.get(f"{name}_source", "expected")
                problems.append(f"{name} {actual[name]}, {source} {str(expected[name]).lower()}")
    if problems:
        raise InvalidGridFile(
            f"{where}: the file does not match its checksum ({'; '.join(problems)})"
        )


def _configured_mirror():
    """``stellarml.conf.cache_dir`` as a folder (created), or None for the astropy cache."""
    from .._config import conf

    if not conf.cache_dir:
        return None
    folder = Path(conf.cache_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _partial_path(url, pkgname):
    digest = hashlib.sha256(url.encode()).hexdigest()[:32]
    return get_cache_dir_path(pkgname) / "download" / _PARTIAL_DIR / f"{digest}.part"


def fetch_grid_file(
    relpath,
    *,
    base_url,
    kind,
    point=None,
    mirror=None,
    show_progress=True,
    timeout=None,
    pkgname="astropy",
    expected=None,
    max_bytes=DEFAULT_MAX_BYTES,
):
    """Local path of a grid file, downloading (resumably) and validating it if needed.

    Parameters
    ----------
    relpath : str
        Path below ``base_url`` (see `phoenix_relpath`, `kurucz_relpath`).
    base_url : str
        Server (or mirror) URL, ``http://`` or ``https://``.
    kind : {"phoenix", "phoenix_wavelength", "kurucz"}
        What the file must be (`validate_grid_file`).
    point : dict, optional
        Grid point the file must hold; named in errors.
    mirror : str or path-like, optional
        Keep the file at ``mirror / relpath`` instead of the astropy cache.
        Default: ``stellarml.conf.cache_dir`` when it is set (the folder is
        created), else the astropy cache.
    show_progress : bool, optional
        Show a tqdm progress bar (stderr) while downloading.
    timeout : float, optional
        Socket timeout [s]; default ``astropy.utils.data.conf.remote_timeout``.
    pkgname : str, optional
        Astropy cache namespace (default ``"astropy"``, the shared cache).
    expected : dict, optional
        What the file must be, e.g. from a manifest: any of ``"size"``
        [bytes], ``"sha256"`` and ``"md5"`` (hexadecimal). Checked after a
        download and on a file already in ``mirror``.
    max_bytes : int, optional
        Size cap [bytes] (default `DEFAULT_MAX_BYTES`).

    Returns
    -------
    `~pathlib.Path`
        The file: ``mirror / relpath``, or the astropy cache's ``contents`` file
        for the URL (its name is not the grid file name).

    Raises
    ------
    GridPointNotFound
        The server has no such file (HTTP 404/410).
    GridDownloadError
        Network or HTTP failure, or an interrupted transfer (resumable).
    InvalidGridFile
        The complete file is not a valid grid file, or does not match
        ``expected`` or the digests the server sent; a download is discarded,
        a file already in the mirror is left as it is.
    UnsafeDownloadError
        A redirect to another host, a file over ``max_bytes``, or a
        ``relpath`` that leaves the mirror (``..``, absolute, a symbolic link
        out of it).

    Examples
    --------
    Into the astropy cache, from the PHOENIX server (needs the network):

    >>> from stellarml.libraries.download import PHOENIX_BASE_URL, fetch_grid_file
    >>> path = fetch_grid_file(  # doctest: +SKIP
    ...     "WAVE_PHOENIX-ACES-AGSS-COND-2011.fits",
    ...     base_url=PHOENIX_BASE_URL,
    ...     kind="phoenix_wavelength",
    ... )

    Into a mirror folder, from a loopback HTTP server holding a small
    wavelength file:

    >>> import functools, http.server, tempfile, threading
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> tmp = tempfile.TemporaryDirectory()
    >>> served, mirror = Path(tmp.name, "served"), Path(tmp.name, "mirror")
    >>> served.mkdir()
    >>> wave_file = served / "WAVE_PHOENIX-ACES-AGSS-COND-2011.fits"
    >>> fits.PrimaryHDU(np.linspace(3000.0, 10000.0, 50)).writeto(wave_file)
    >>> handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=served)
    >>> server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    >>> threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    >>> url = f"http://127.0.0.1:{server.server_address[1]}/"
    >>> path = fetch_grid_file(
    ...     wave_file.name, base_url=url, kind="phoenix_wavelength", mirror=mirror,
    ...     show_progress=False,
    ... )
    >>> print(path.relative_to(tmp.name), path.stat().st_size)  # downloaded, validated
    mirror/WAVE_PHOENIX-ACES-AGSS-COND-2011.fits 5760
    >>> server.shutdown(); server.server_close()
    >>> again = fetch_grid_file(  # the server is gone: the mirror has the file
    ...     wave_file.name, base_url=url, kind="phoenix_wavelength", mirror=mirror
    ... )
    >>> again == path
    True
    >>> tmp.cleanup()
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    _check_integrity_keys(expected)
    url = grid_url(base_url, relpath)
    if mirror is None:
        mirror = _configured_mirror()
    if mirror is not None:
        dest = _mirror_target(mirror, relpath)
        if dest.is_file():
            _check_integrity(dest, expected, str(dest))
            return dest
        part = dest.with_name(dest.name + ".part")
    else:
        if astropy_data.is_url_in_cache(url, pkgname=pkgname, on_missing="ignore"):
            return Path(astropy_data.download_file(url, cache=True, pkgname=pkgname))
        dest = None
        part = _partial_path(url, pkgname)
    if not astropy_data.conf.allow_internet:
        raise GridDownloadError(
            f"{url} is not available locally and astropy.utils.data.conf.allow_internet is False",
            url=url,
        )
    timeout = astropy_data.conf.remote_timeout if timeout is None else timeout
    part.parent.mkdir(parents=True, exist_ok=True)
    lock = part.with_name(part.name + ".lock")
    note = part.with_name(part.name + ".json")
    with _locked(lock):
        # another process may have finished the same file while we waited
        if dest is not None and dest.is_file():
            return dest
        if dest is None and astropy_data.is_url_in_cache(url, pkgname=pkgname, on_missing="ignore"):
            return Path(astropy_data.download_file(url, cache=True, pkgname=pkgname))
        try:
            digests = _transfer(
                url,
                part,
                timeout=timeout,
                show_progress=show_progress,
                desc=relpath.rsplit("/", 1)[-1],
                point=point,
                max_bytes=max_bytes,
            )
        except (GridPointNotFound, UnsafeDownloadError):
            _remove(lock)
            raise
        try:
            _check_integrity(part, expected, url)
            _check_integrity(
                part,
                {**digests, **{f"{k}_source": "the server's header says" for k in digests}},
                url,
            )
            validate_grid_file(part, kind, point, where=url)
        except InvalidGridFile:
            _remove(part, note, lock)
            raise
        if dest is not None:
            os.replace(part, dest)
            result = dest
        else:
            result = Path(
                astropy_data.import_file_to_cache(
                    url, str(part), remove_original=True, pkgname=pkgname
                )
            )
        # The lock file goes only after success: after a failure the next attempt must
        # lock the same file, or two processes could resume into one .part file.
        _remove(note, lock)
    return result


def fetch_phoenix(
    teff,
    logg,
    m_h,
    alpha=0.0,
    *,
    base_url=PHOENIX_BASE_URL,
    mirror=None,
    show_progress=True,
    timeout=None,
    pkgname="astropy",
    expected=None,
    max_bytes=DEFAULT_MAX_BYTES,
):
    """Local path of one PHOENIX-ACES HiRes model, downloaded on first use.

    Parameters
    ----------
    teff, logg, m_h, alpha : float
        Grid point [K, dex, dex, dex] (PHOENIX grid values).
    base_url : str, optional
        The ``HiResFITS/`` folder URL (default `PHOENIX_BASE_URL`).
    mirror, show_progress, timeout, pkgname, expected, max_bytes
        See `fetch_grid_file`.

    Returns
    -------
    `~pathlib.Path`

    Raises
    ------
    GridPointNotFound
        If the model does not exist on the server (the grid is ragged).
    GridDownloadError, InvalidGridFile
        See `fetch_grid_file`.
    ValueError
        If the labels are not PHOENIX grid values.

    Examples
    --------
    From the Göttingen server into the astropy cache (needs the network; about 6 MB):

    >>> from stellarml.libraries.download import fetch_phoenix
    >>> path = fetch_phoenix(5800, 4.5, 0.0)  # doctest: +SKIP

    A mirror that already holds the model is used without the network:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from astropy.utils.data import conf
    >>> from stellarml.libraries.download import phoenix_relpath
    >>> tmp = tempfile.TemporaryDirectory()
    >>> model = Path(tmp.name) / phoenix_relpath(5800, 4.5, 0.0)
    >>> model.parent.mkdir(parents=True)
    >>> labels = {"PHXTEFF": 5800.0, "PHXLOGG": 4.5, "PHXM_H": 0.0, "PHXALPHA": 0.0}
    >>> fits.PrimaryHDU(np.ones(50, np.float32), header=fits.Header(labels)).writeto(model)
    >>> with conf.set_temp("allow_internet", False):
    ...     path = fetch_phoenix(5800, 4.5, 0.0, mirror=tmp.name)
    >>> print(path.name)
    lte05800-4.50-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits
    >>> tmp.cleanup()
    """
    point = {"teff": float(teff), "logg": float(logg), "m_h": float(m_h), "alpha_fe": float(alpha)}
    return fetch_grid_file(
        phoenix_relpath(teff, logg, m_h, alpha),
        base_url=base_url,
        kind="phoenix",
        point=point,
        mirror=mirror,
        show_progress=show_progress,
        timeout=timeout,
        pkgname=pkgname,
        expected=expected,
        max_bytes=max_bytes,
    )


def fetch_phoenix_wavelength(
    *,
    base_url=PHOENIX_BASE_URL,
    mirror=None,
    show_progress=True,
    timeout=None,
    pkgname="astropy",
    expected=None,
    max_bytes=DEFAULT_MAX_BYTES,
):
    """Local path of ``WAVE_PHOENIX-ACES-AGSS-COND-2011.fits``, downloaded on first use.

    Parameters
    ----------
    base_url : str, optional
        The ``HiResFITS/`` folder URL, which holds the wavelength file.
    mirror, show_progress, timeout, pkgname, expected, max_bytes
        See `fetch_grid_file`.

    Returns
    -------
    `~pathlib.Path`

    Raises
    ------
    GridDownloadError, InvalidGridFile, UnsafeDownloadError
        See `fetch_grid_file`.

    Examples
    --------
    From the Göttingen server into the astropy cache (needs the network):

    >>> from stellarml.libraries.download import fetch_phoenix_wavelength
    >>> path = fetch_phoenix_wavelength()  # doctest: +SKIP

    A mirror that already holds the file is used without the network, and is
    checked against what a manifest says (here its size [bytes]):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from astropy.utils.data import conf
    >>> tmp = tempfile.TemporaryDirectory()
    >>> wave_file = Path(tmp.name) / "WAVE_PHOENIX-ACES-AGSS-COND-2011.fits"
    >>> fits.PrimaryHDU(np.linspace(3000.0, 10000.0, 50)).writeto(wave_file)
    >>> with conf.set_temp("allow_internet", False):
    ...     path = fetch_phoenix_wavelength(mirror=tmp.name, expected={"size": 5760})
    >>> path == wave_file
    True
    >>> tmp.cleanup()
    """
    return fetch_grid_file(
        PHOENIX_WAVE_FILENAME,
        base_url=base_url,
        kind="phoenix_wavelength",
        mirror=mirror,
        show_progress=show_progress,
        timeout=timeout,
        pkgname=pkgname,
        expected=expected,
        max_bytes=max_bytes,
    )


def fetch_kurucz(
    teff,
    m_h,
    atlas="ck04",
    *,
    base_url=KURUCZ_BASE_URL,
    mirror=None,
    show_progress=True,
    timeout=None,
    pkgname="astropy",
    expected=None,
    max_bytes=DEFAULT_MAX_BYTES,
):
    """Local path of one STScI Kurucz atlas file (all gravities), downloaded on first use.

    Parameters
    ----------
    teff, m_h : float
        Effective temperature [K] and metallicity [dex] (atlas grid values).
    atlas : {"ck04", "k93"}, optional
        Which atlas.
    base_url : str, optional
        The STScI ``grid/`` folder URL (default `KURUCZ_BASE_URL`).
    mirror, show_progress, timeout, pkgname, expected, max_bytes
        See `fetch_grid_file`.

    Returns
    -------
    `~pathlib.Path`

    Raises
    ------
    GridPointNotFound
        If the file does not exist on the server.
    GridDownloadError, InvalidGridFile, UnsafeDownloadError
        See `fetch_grid_file`.
    ValueError
        If ``teff`` or ``m_h`` is not a grid value of the atlas.

    Examples
    --------
    From STScI into the astropy cache (needs the network):

    >>> from stellarml.libraries.download import fetch_kurucz
    >>> path = fetch_kurucz(5000, 0.0)  # doctest: +SKIP

    A mirror that already holds the atlas file (the STScI layout: header
    ``TEFF``/``LOG_Z``, table ``WAVELENGTH`` + ``g00`` ... ``g50``) is used
    without the network:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from astropy.utils.data import conf
    >>> from stellarml.libraries.download import kurucz_relpath
    >>> tmp = tempfile.TemporaryDirectory()
    >>> atlas = Path(tmp.name) / kurucz_relpath(5000, 0.0)
    >>> atlas.parent.mkdir(parents=True)
    >>> wave = np.geomspace(3000.0, 10000.0, 100)  # [Angstrom]
    >>> columns = [fits.Column(name="WAVELENGTH", format="D", unit="ANGSTROM", array=wave)]
    >>> columns += [
    ...     fits.Column(name=f"g{g:02d}", format="E", unit="FLAM", array=np.ones(100))
    ...     for g in range(0, 51, 5)
    ... ]
    >>> fits.HDUList(
    ...     [fits.PrimaryHDU(header=fits.Header({"TEFF": 5000, "LOG_Z": 0.0})),
    ...      fits.BinTableHDU.from_columns(columns)]
    ... ).writeto(atlas)
    >>> with conf.set_temp("allow_internet", False):
    ...     path = fetch_kurucz(5000, 0.0, mirror=tmp.name)
    >>> print(path.relative_to(tmp.name))
    ck04models/ckp00/ckp00_5000.fits
    >>> tmp.cleanup()
    """
    return fetch_grid_file(
        kurucz_relpath(teff, m_h, atlas),
        base_url=base_url,
        kind="kurucz",
        point={"teff": float(teff), "m_h": float(m_h)},
        mirror=mirror,
        show_progress=show_progress,
        timeout=timeout,
        pkgname=pkgname,
        expected=expected,
        max_bytes=max_bytes,
    )
