"""Writers of small PHOENIX-ACES and STScI Kurucz grid files, and a loopback HTTP server.

The files follow the real layouts (PHOENIX HiRes: 1-D float32 primary image with the PHX*
keywords and an abundance table, wavelengths in the separate WAVE file; STScI atlas: header
TEFF/LOG_Z, table WAVELENGTH + g00..g50 in FLAM) with short wavelength arrays. Shared by
tests/io (the readers) and tests/libraries (grids and downloads); pytest puts tests/ on
sys.path because tests/conftest.py lives there.
"""

import hashlib
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
from astropy.io import fits

from stellarml.io.kurucz import CK04_LOGG, kurucz_filename, kurucz_subdir
from stellarml.io.phoenix import PHOENIX_WAVE_FILENAME, phoenix_filename, phoenix_subdir

PHOENIX_DIR = "PHOENIX-ACES-AGSS-COND-2011"
GCOLS = [f"g{10 * g:02.0f}" for g in CK04_LOGG]
_H, _C, _K = 6.62607015e-27, 2.99792458e10, 1.380649e-16


def phoenix_wavelengths(lo=4800.0, hi=5400.0, dloglam=2e-5):
    """A short vacuum wavelength array [Angstrom], uniform in ln(lambda) like the HiRes optical."""
    return lo * np.exp(np.arange(0.0, np.log(hi / lo), dloglam))


def model_flux(wave, teff, logg, m_h, alpha=0.0):
    """A label-dependent PHOENIX-like flux [erg/s/cm^2/cm]: Planck times a few lines."""
    lam = wave * 1e-8
    flux = math.pi * 2 * _H * _C**2 / lam**5 / np.expm1(_H * _C / (lam * _K * teff))
    for i, centre in enumerate((4861.3, 5167.3, 5183.6, 5270.4)):
        depth = 0.2 + 0.05 * i + 0.04 * m_h + 0.02 * logg + 0.03 * alpha - 2e-5 * (teff - 5000)
        flux = flux * (1 - np.clip(depth, 0.02, 0.9) * np.exp(-0.5 * ((wave - centre) / 0.3) ** 2))
    return flux.astype(np.float32)


def write_phoenix_wave(path, wave, unit=None):
    """The separate WAVE file: 1-D float64 primary image (optionally with a UNIT keyword)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu = fits.PrimaryHDU(np.asarray(wave, dtype=np.float64))
    if unit is not None:
        hdu.header["UNIT"] = unit
    hdu.writeto(path, overwrite=True)
    return path


def write_phoenix_flux(
    path, wave, teff, logg, m_h, alpha=0.0, flux=None, header_teff=None, **extra
):
    """A HiRes flux file: 1-D float32 primary image, PHX* keywords, abundance table.

    ``extra`` header keywords are set last (e.g. ``BUNIT="Jy"`` to test a wrong unit).
    """
    header = fits.Header()
    header["PHXTEFF"] = (
        float(teff if header_teff is None else header_teff),
        "[K] effective temperature",
    )
    header["PHXLOGG"] = (float(logg), "[cm/s^2] log (surface gravity)")
    header["PHXM_H"] = (float(m_h), "[M/H] metallicity (rel. sol. - Asplund &a 2009)")
    header["PHXALPHA"] = (float(alpha), "[a/M] alpha element enhancement")
    header["PHXDUST"] = (False, "Dust in atmosphere")
    header["PHXVER"] = ("16.01.00B", "Phoenix version")
    header["PHXXI_L"] = (1.49, "[km/s] microturbulence velocity for LTE lines")
    header["PHXXI_M"] = (1.49, "[km/s] microturbulence velocity for molec lines")
    header["PHXXI_N"] = (1.49, "[km/s] microturbulence velocity for NLTE lines")
    header["PHXMASS"] = (2.5808e33, "[g] Stellar mass")
    header["PHXREFF"] = (2.3335e11, "[cm] Effective stellar radius")
    header["PHXLUM"] = (5.0287e34, "[ergs] Stellar luminosity")
    header["PHXMXLEN"] = (1.48701064748, "Mixing length")
    header["PHXBUILD"] = ("02/Aug/2010", "Build date of Phoenix")
    header["PHXEOS"] = ("ACES", "Equation of state")
    header["DATE"] = ("2011-06-20", "[local] finishing date of model calculation")
    header["BUNIT"] = ("erg/s/cm^2/cm", "Unit of flux")
    for key, value in extra.items():
        header[key] = value
    data = model_flux(wave, teff, logg, m_h, alpha) if flux is None else flux.astype(np.float32)
    abundances = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="Element", format="2A", array=np.array(["H", "He", "Fe"])),
            fits.Column(name="Number", format="J", array=np.array([1, 2, 26])),
            fits.Column(name="Abundance", format="E", array=np.array([12.0, 10.93, 7.5 + m_h])),
        ],
        name="ABUNDANCES",
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList([fits.PrimaryHDU(data, header=header), abundances]).writeto(path, overwrite=True)
    return path


def phoenix_relpath(teff, logg, m_h, alpha=0.0):
    return f"{PHOENIX_DIR}/{phoenix_subdir(m_h, alpha)}/{phoenix_filename(teff, logg, m_h, alpha)}"


def write_phoenix_tree(root, points, wave=None):
    """The HiResFITS layout under ``root``: WAVE file and models at ``points``."""
    wave = phoenix_wavelengths() if wave is None else wave
    root = Path(root)
    write_phoenix_wave(root / PHOENIX_WAVE_FILENAME, wave)
    paths = {}
    for point in points:
        paths[tuple(float(v) for v in point)] = write_phoenix_flux(
            root / phoenix_relpath(*point), wave, *point
        )
    return wave, paths


def kurucz_wavelengths():
    """A short increasing wavelength array [Angstrom] (the real files have 1221 points)."""
    return np.geomspace(3000.0, 12000.0, 300)


def kurucz_flux(wave, teff, logg, m_h):
    lam = wave * 1e-8
    flam = np.pi * 2 * _H * _C**2 / lam**5 / np.expm1(_H * _C / (lam * _K * teff)) * 1e-8
    return flam * (1.0 + 0.02 * logg) * (1.0 - 0.05 * m_h * np.exp(-(((wave - 4000) / 800) ** 2)))


def write_kurucz_file(path, teff, m_h, *, missing=(), wave=None, flux=None, atlas="Castelli"):
    """A STScI atlas file: header TEFF/LOG_Z/HISTORY, table WAVELENGTH + g00..g50 (FLAM).

    ``flux(wave, logg)`` gives a column's flux (default `kurucz_flux`); the log g
    values in ``missing`` get all-zero columns, as in the real files.
    """
    wave = kurucz_wavelengths() if wave is None else wave
    if flux is None:

        def flux(wave, logg):
            return kurucz_flux(wave, teff, logg, m_h)

    path = Path(path)
    header = fits.Header()
    header["ORIGIN"] = ("STScI-STSDAS/TABLES", "Tables version 2002-02-22")
    header["FILENAME"] = (path.name, "name of file")
    header["TEFF"] = teff
    header["LOG_Z"] = m_h
    columns = [fits.Column(name="WAVELENGTH", format="D", unit="ANGSTROM", array=wave)]
    for g, name in zip(CK04_LOGG, GCOLS, strict=True):
        values = np.zeros_like(wave) if g in missing else flux(wave, g)
        columns.append(fits.Column(name=name, format="E", unit="FLAM", array=values))
        if g not in missing:
            header.add_history(f"  {name}")
    header.add_history(f"  {atlas} & Kurucz model atmospheres")
    header.add_history("  Fluxes tabulated in units of erg/s/cm^2/A")
    header.add_history("  are surface fluxes. To transform to observed")
    header.add_history("  fluxes multiply by (R/D)^2 where R is the")
    header.add_history("  radius of the star and D the distance.")
    path.parent.mkdir(parents=True, exist_ok=True)
    table = fits.BinTableHDU.from_columns(columns)
    fits.HDUList([fits.PrimaryHDU(header=header), table]).writeto(path, overwrite=True)
    return path


def kurucz_relpath(teff, m_h):
    return f"ck04models/{kurucz_subdir(m_h)}/{kurucz_filename(teff, m_h)}"


# ---------------------------------------------------------------------- loopback server
class _Handler(BaseHTTPRequestHandler):
    """GET with Range/If-Range (ETag), 404s, and deliberately truncated bodies."""

    def do_GET(self):
        srv = self.server
        rel = unquote(urlparse(self.path).path).lstrip("/")
        srv.requests.append((rel, dict(self.headers.items())))
        if rel in srv.redirects:
            self.send_response(302)
            self.send_header("Location", srv.redirects[rel])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = srv.root / rel
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        etag = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
        start, status = 0, 200
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted and srv.honour_range and if_range in (None, etag):
            match = re.match(r"^bytes=(\d+)-$", wanted)
            start = int(match[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        extra = dict(srv.headers.get(rel, {}))
        self.send_response(status)
        self.send_header("Content-Type", "application/fits")
        if rel in srv.omit_length:
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", extra.pop("ETag", etag))
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Accept-Ranges", "bytes" if srv.honour_range else "none")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut = srv.truncate.pop(rel, None)
        if cut is not None:  # promise the whole body, send part of it, hang up
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format, *args):  # silence the per-request log on stderr
        return


class GridServer:
    """A real HTTP server on 127.0.0.1 serving ``root`` in a background thread.

    Attributes
    ----------
    url : str
        Base URL (``http://127.0.0.1:<port>/``).
    requests : list of (path, headers)
        Every GET received.
    truncate : dict
        ``{relpath: n_bytes}``: the next GET of ``relpath`` announces the full
        Content-Length but sends only ``n_bytes`` and closes the connection.
    honour_range : bool
        Answer Range requests with 206 (default True).
    headers : dict
        ``{relpath: {name: value}}``: extra response headers (an ``ETag``
        given here replaces the server's own).
    redirects : dict
        ``{relpath: url}``: answer GETs of ``relpath`` with a 302 to ``url``.
    omit_length : set
        Relpaths served without ``Content-Length`` (the body ends when the
        connection closes).
    """

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.root = self.root
        self._httpd.requests = []
        self._httpd.truncate = {}
        self._httpd.honour_range = True
        self._httpd.headers = {}
        self._httpd.redirects = {}
        self._httpd.omit_length = set()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def requests(self):
        return self._httpd.requests

    @property
    def truncate(self):
        return self._httpd.truncate

    @property
    def headers(self):
        return self._httpd.headers

    @property
    def redirects(self):
        return self._httpd.redirects

    @property
    def omit_length(self):
        return self._httpd.omit_length

    @property
    def honour_range(self):
        return self._httpd.honour_range

    @honour_range.setter
    def honour_range(self, value):
        self._httpd.honour_range = bool(value)

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
