"""PHOENIX-ACES-AGSS-COND-2011 synthetic spectra (Husser et al. 2013): reader and file names.

The high-resolution grid on the Göttingen server
(``https://phoenix.astro.physik.uni-goettingen.de/data/HiResFITS/``) is laid out as::

    WAVE_PHOENIX-ACES-AGSS-COND-2011.fits
    PHOENIX-ACES-AGSS-COND-2011/Z-0.0/lte05800-4.50-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits
    PHOENIX-ACES-AGSS-COND-2011/Z-0.5.Alpha=+0.20/lte05800-4.50-0.5.Alpha=+0.20.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits

Each flux file is a 1-D primary image (F_lambda in erg s^-1 cm^-2 cm^-1, ``BUNIT =
'erg/s/cm^2/cm'``) whose header carries the model parameters in ``PHXTEFF``, ``PHXLOGG``,
``PHXM_H``, ``PHXALPHA`` (and ``PHXXI_L`` ... ``PHXEOS``); a second extension lists the
element abundances. The wavelengths (vacuum, Angstrom) are not in the flux files but in
the single ``WAVE_PHOENIX-ACES-AGSS-COND-2011.fits`` (a 1-D primary image of the same
length). The medium-resolution (R = 10 000) files carry their own linear or log-linear
wavelength WCS (``CRVAL1``, ``CDELT1``, ``CRPIX1``, ``CTYPE1`` = ``WAVE``/``AWAV``
[``-LOG``]) and are read without a wavelength file.

Format reference: the "Info on spectra" page of the PHOENIX library and Husser et al.
(2013, A&A 553, A6), Table 2 for the grid.
"""

import functools
import os
import re
from pathlib import Path

import astropy.units as u
import numpy as np
from specutils import Spectrum
from specutils.io.registers import data_loader

from ._common import (
    LOADER_PRIORITY,
    file_label,
    header_float,
    header_str,
    identify_hdulist,
    open_hdulist,
    parse_unit,
    source_path,
)

__all__ = [
    "PHOENIX_ALPHA",
    "PHOENIX_FLUX_UNIT",
    "PHOENIX_LOGG",
    "PHOENIX_M_H",
    "PHOENIX_RESOLUTION",
    "PHOENIX_TEFF",
    "PHOENIX_WAVE_FILENAME",
    "find_phoenix_wavelength_file",
    "identify_phoenix",
    "parse_phoenix_filename",
    "phoenix_filename",
    "phoenix_subdir",
    "read_phoenix",
    "read_phoenix_wavelength",
]

#: Name of the separate wavelength file of the high-resolution grid.
PHOENIX_WAVE_FILENAME = "WAVE_PHOENIX-ACES-AGSS-COND-2011.fits"

#: Flux unit of the PHOENIX files: F_lambda per cm of wavelength.
PHOENIX_FLUX_UNIT = u.erg / u.s / u.cm**2 / u.cm

#: Nominal resolving power of the HiRes spectra between 3000 A and 2.5 micron
#: (Husser et al. 2013; R = 100 000 beyond, 0.1 A sampling below 3000 A).
PHOENIX_RESOLUTION = 500000.0

#: Effective temperatures of the grid [K]: 2300-7000 K in 100 K, 7000-12000 K in 200 K.
PHOENIX_TEFF = np.concatenate([np.arange(2300, 7000, 100), np.arange(7000, 12001, 200)]).astype(
    float
)
#: Surface gravities of the grid [dex]: 0.0-6.0 in 0.5.
PHOENIX_LOGG = np.arange(0.0, 6.01, 0.5)
#: Metallicities [M/H] of the grid [dex]: -4.0, -3.0, then -2.0 to +1.0 in 0.5.
PHOENIX_M_H = np.array([-4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0])
#: Alpha-element enhancements [alpha/M] of the grid [dex]: -0.2 to +1.2 in 0.2.
PHOENIX_ALPHA = np.round(np.arange(-0.2, 1.21, 0.2), 2)

# Alpha-enhanced (and -depleted) models exist only inside this box (Husser et al. 2013).
_ALPHA_M_H_RANGE = (-3.0, 0.0)
_ALPHA_TEFF_RANGE = (3500.0, 8000.0)

_SUFFIX = ".PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"
_NAME_RE = re.compile(
    r"^lte(?P<teff>\d{5})-(?P<logg>\d\.\d{2})(?P<m_h>[+-]\d\.\d)"
    r"(?:\.Alpha=(?P<alpha>[+-]\d\.\d{2}))?" + re.escape(_SUFFIX) + r"$"
)
_LABEL_KEYS = (
    ("teff", "PHXTEFF", u.K),
    ("logg", "PHXLOGG", u.dex),
    ("m_h", "PHXM_H", u.dex),
    ("alpha_fe", "PHXALPHA", u.dex),
)


def _on_axis(value, axis, name, unit):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    hits = np.flatnonzero(np.abs(axis - value) < 1e-6)
    if hits.size == 0:
        allowed = ", ".join(f"{v:g}" for v in axis)
        raise ValueError(
            f"{name}={value:g}{unit} is not a point of the PHOENIX-ACES grid; "
            f"allowed values: {allowed}"
        )
    return float(axis[hits[0]])


def _check_point(teff, logg, m_h, alpha):
    teff = _on_axis(teff, PHOENIX_TEFF, "teff", " K")
    logg = _on_axis(logg, PHOENIX_LOGG, "logg", "")
    m_h = _on_axis(m_h, PHOENIX_M_H, "m_h", "")
    alpha = _on_axis(alpha, PHOENIX_ALPHA, "alpha", "")
    if alpha != 0.0:
        lo, hi = _ALPHA_M_H_RANGE
        tlo, thi = _ALPHA_TEFF_RANGE
        if not (lo <= m_h <= hi and tlo <= teff <= thi):
            raise ValueError(
                f"alpha={alpha:+.2f} at teff={teff:g} K, m_h={m_h:+.1f}: PHOENIX-ACES has "
                f"alpha-modified models only for {lo:g} <= [M/H] <= {hi:g} and "
                f"{tlo:g} K <= Teff <= {thi:g} K"
            )
    return teff, logg, m_h, alpha


def _z_code(m_h):
    # Solar metallicity is written "-0.0" in PHOENIX file and folder names.
    return "-0.0" if m_h == 0.0 else f"{m_h:+.1f}"


def _alpha_code(alpha):
    return "" if alpha == 0.0 else f".Alpha={alpha:+.2f}"


def phoenix_subdir(m_h, alpha=0.0):
    """Folder of the PHOENIX HiRes grid that holds models of metallicity ``m_h``.

    Parameters
    ----------
    m_h : float
        Metallicity [M/H] [dex]; one of `PHOENIX_M_H`.
    alpha : float, optional
        Alpha-element enhancement [alpha/M] [dex]; one of `PHOENIX_ALPHA`.

    Returns
    -------
    str
        E.g. ``"Z-0.0"`` (solar metallicity is written with a minus sign),
        ``"Z+0.5"`` or ``"Z-0.5.Alpha=+0.20"``.

    Raises
    ------
    ValueError
        If ``m_h`` or ``alpha`` is not a grid value, or ``alpha`` is non-zero outside
        -3 <= [M/H] <= 0.

    Examples
    --------
    >>> from stellarml.io import phoenix_subdir
    >>> phoenix_subdir(0.0), phoenix_subdir(0.5), phoenix_subdir(-0.5, alpha=0.2)
    ('Z-0.0', 'Z+0.5', 'Z-0.5.Alpha=+0.20')
    >>> try:
    ...     phoenix_subdir(0.5, alpha=0.2)
    ... except ValueError as err:
    ...     print(err)
    PHOENIX-ACES has no alpha-modified models at m_h=+0.5 (only for -3 <= [M/H] <= 0)
    """
    m_h = _on_axis(m_h, PHOENIX_M_H, "m_h", "")
    alpha = _on_axis(alpha, PHOENIX_ALPHA, "alpha", "")
    if alpha != 0.0 and not (_ALPHA_M_H_RANGE[0] <= m_h <= _ALPHA_M_H_RANGE[1]):
        raise ValueError(
            f"PHOENIX-ACES has no alpha-modified models at m_h={m_h:+.1f} "
            f"(only for {_ALPHA_M_H_RANGE[0]:g} <= [M/H] <= {_ALPHA_M_H_RANGE[1]:g})"
        )
    return f"Z{_z_code(m_h)}{_alpha_code(alpha)}"


def phoenix_filename(teff, logg, m_h, alpha=0.0):
    """File name of one PHOENIX-ACES-AGSS-COND-2011 HiRes model.

    Parameters
    ----------
    teff : float
        Effective temperature [K]; one of `PHOENIX_TEFF`.
    logg : float
        Surface gravity log10(g / cm s^-2) [dex]; one of `PHOENIX_LOGG`.
    m_h : float
        Metallicity [M/H] [dex]; one of `PHOENIX_M_H`.
    alpha : float, optional
        Alpha-element enhancement [alpha/M] [dex]; one of `PHOENIX_ALPHA`. Non-zero
        values exist only for -3 <= [M/H] <= 0 and 3500 K <= Teff <= 8000 K.

    Returns
    -------
    str
        E.g. ``"lte05800-4.50-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"``. Join it to
        `phoenix_subdir` for the path inside ``PHOENIX-ACES-AGSS-COND-2011/``.

    Raises
    ------
    ValueError
        If a value is not a grid point or the combination lies outside the
        alpha-modified sub-grid. Points inside these ranges may still be missing at
        the ragged edges of the grid (e.g. hot low-gravity models); only the server
        knows.

    Examples
    --------
    >>> from stellarml.io import phoenix_filename, phoenix_subdir
    >>> phoenix_filename(5800, 4.5, 0.0)
    'lte05800-4.50-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits'
    >>> f"{phoenix_subdir(-0.5, 0.2)}/{phoenix_filename(5800, 4.5, -0.5, alpha=0.2)}"
    'Z-0.5.Alpha=+0.20/lte05800-4.50-0.5.Alpha=+0.20.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits'
    >>> try:
    ...     phoenix_filename(7100, 4.5, 0.0)  # 200 K steps above 7000 K
    ... except ValueError as err:
    ...     print(err)
    teff=7100 K is not a point of the PHOENIX-ACES grid; allowed values: 2300, 2400, ...
    """
    teff, logg, m_h, alpha = _check_point(teff, logg, m_h, alpha)
    return f"lte{round(teff):05d}-{logg:.2f}{_z_code(m_h)}{_alpha_code(alpha)}{_SUFFIX}"


def parse_phoenix_filename(name):
    """Model parameters encoded in a PHOENIX HiRes file name.

    Parameters
    ----------
    name : str or path-like
        A file name or path ending in such a name, e.g.
        ``"Z-0.5.Alpha=+0.20/lte05800-4.50-0.5.Alpha=+0.20.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"``.

    Returns
    -------
    dict
        ``{"teff": K, "logg": dex, "m_h": dex, "alpha": dex}`` as floats, so that
        ``phoenix_filename(**parse_phoenix_filename(name))`` gives the name back.
        ``-0.0`` is returned as ``0.0``.

    Raises
    ------
    ValueError
        If ``name`` does not follow the PHOENIX HiRes naming pattern.

    Examples
    --------
    >>> from stellarml.io import parse_phoenix_filename, phoenix_filename
    >>> name = "Z-0.0/lte05800-4.50-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"
    >>> parse_phoenix_filename(name)
    {'teff': 5800.0, 'logg': 4.5, 'm_h': 0.0, 'alpha': 0.0}
    >>> phoenix_filename(**parse_phoenix_filename(name)) == name.split("/")[1]
    True
    >>> try:
    ...     parse_phoenix_filename("lte05800-4.50-0.0.fits")
    ... except ValueError as err:
    ...     print(str(err).split(" (")[0])
    'lte05800-4.50-0.0.fits' is not a PHOENIX-ACES-AGSS-COND-2011 HiRes file name
    """
    base = Path(os.fsdecode(name)).name
    match = _NAME_RE.match(base)
    if match is None:
        raise ValueError(
            f"{base!r} is not a PHOENIX-ACES-AGSS-COND-2011 HiRes file name "
            f"(expected lteTTTTT-G.GG[+-]Z.Z[.Alpha=+A.AA]{_SUFFIX})"
        )
    alpha = match["alpha"]
    return {
        "teff": float(match["teff"]),
        "logg": float(match["logg"]),
        "m_h": float(match["m_h"]) + 0.0,  # turns -0.0 into 0.0
        "alpha": (float(alpha) + 0.0) if alpha else 0.0,
    }


def find_phoenix_wavelength_file(flux_path):
    """Locate ``WAVE_PHOENIX-ACES-AGSS-COND-2011.fits`` for a flux file.

    The file is looked for beside the flux file, then one and two folders up (the
    server layout puts it two levels above ``Z-0.0/lte*.fits``).

    Parameters
    ----------
    flux_path : str or path-like
        Path of a PHOENIX HiRes flux file.

    Returns
    -------
    `~pathlib.Path`

    Raises
    ------
    FileNotFoundError
        Naming every place searched, if the wavelength file is in none of them.

    Examples
    --------
    The server layout: the wavelength file two folders above the flux files
    (which need not exist for the search):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from stellarml.io import PHOENIX_WAVE_FILENAME
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = Path(tmp.name)
    >>> wave = np.geomspace(5000.0, 5100.0, 300)  # [Angstrom]; the real file has 1 569 128
    >>> fits.PrimaryHDU(wave).writeto(root / PHOENIX_WAVE_FILENAME)
    >>> from stellarml.io import find_phoenix_wavelength_file
    >>> flux_path = root / "PHOENIX-ACES-AGSS-COND-2011" / "Z-0.0" / "lte05800-4.50-0.0.fits"
    >>> find_phoenix_wavelength_file(flux_path).name
    'WAVE_PHOENIX-ACES-AGSS-COND-2011.fits'
    >>> try:
    ...     find_phoenix_wavelength_file(flux_path.parent / "a" / "b" / "c" / "x.fits")
    ... except FileNotFoundError as err:
    ...     print(str(err).split(" for ")[0], "...")
    PHOENIX wavelength file WAVE_PHOENIX-ACES-AGSS-COND-2011.fits not found ...
    >>> tmp.cleanup()
    """
    folder = Path(flux_path).resolve().parent
    candidates = [folder, folder.parent, folder.parent.parent]
    for place in candidates:
        path = place / PHOENIX_WAVE_FILENAME
        if path.is_file():
            return path
    searched = ", ".join(str(p) for p in dict.fromkeys(candidates))
    raise FileNotFoundError(
        f"PHOENIX wavelength file {PHOENIX_WAVE_FILENAME} not found for {flux_path} "
        f"(searched {searched}); download it from the PHOENIX server or pass "
        "wavelength_file="
    )


@functools.lru_cache(maxsize=4)
def _cached_wavelength(path, mtime_ns, size):
    with open_hdulist(path) as hdul:
        data = hdul[0].data
        header = hdul[0].header
        if data is None or data.ndim != 1 or data.size < 2:
            raise ValueError(f"{path}: the PHOENIX wavelength file must hold a 1-D array")
        unit_name = header_str(header, "BUNIT") or header_str(header, "UNIT") or "Angstrom"
        try:
            unit = parse_unit(unit_name)
        except ValueError:
            raise ValueError(f"{path}: unknown wavelength unit {unit_name!r}") from None
        wave = (np.array(data, dtype=np.float64) * unit).to_value(u.AA)
    if not (np.all(np.isfinite(wave)) and np.all(np.diff(wave) > 0)):
        raise ValueError(f"{path}: PHOENIX wavelengths must be finite and strictly increasing")
    wave.setflags(write=False)
    return wave


def read_phoenix_wavelength(path):
    """The wavelength array of ``WAVE_PHOENIX-ACES-AGSS-COND-2011.fits`` in Angstrom.

    Parameters
    ----------
    path : str or path-like
        The wavelength file.

    Returns
    -------
    `~numpy.ndarray`
        Vacuum wavelengths in Angstrom (float64, read-only). The last few files
        read are cached (keyed on path, size and modification time), so reading a
        grid does not re-read the 12 MB file for every model.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file holds no 1-D array of finite, strictly increasing wavelengths
        in a known unit.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from stellarml.io import PHOENIX_WAVE_FILENAME
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = Path(tmp.name)
    >>> wave = np.geomspace(5000.0, 5100.0, 300)  # [Angstrom]; the real file has 1 569 128
    >>> fits.PrimaryHDU(wave).writeto(root / PHOENIX_WAVE_FILENAME)
    >>> from stellarml.io import read_phoenix_wavelength
    >>> wave = read_phoenix_wavelength(root / PHOENIX_WAVE_FILENAME)
    >>> wave.size, float(wave[0]), wave.flags.writeable
    (300, 5000.0, False)
    >>> tmp.cleanup()
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"PHOENIX wavelength file {path} does not exist")
    stat = path.stat()
    return _cached_wavelength(str(path), stat.st_mtime_ns, stat.st_size)


def identify_phoenix(origin, *args, **kwargs):
    """Identifier for the astropy I/O registry: is this a PHOENIX flux file?

    True for a FITS file whose primary HDU is a 1-D image with the PHOENIX model
    keywords ``PHXTEFF``, ``PHXLOGG`` and ``PHXM_H``.

    Parameters
    ----------
    origin : str
        ``"read"``, as passed by the astropy I/O registry.
    *args
        ``(path, fileobj, *read_args)`` as passed by the astropy I/O registry.
    **kwargs
        The ``read`` keyword arguments (ignored).

    Returns
    -------
    bool
        Never raises: unreadable or non-FITS input gives False.

    Examples
    --------
    The registry calls it with the path and an open file object (None here):

    >>> from stellarml.io import identify_phoenix
    >>> identify_phoenix("read", str(data_dir / "miles" / "MILES_res2.50_star_m0001V.fits"), None)
    False
    >>> identify_phoenix("read", "no-such-file.fits", None)
    False

    `read_phoenix` shows it accept a PHOENIX flux file.
    """

    def test(hdul):
        header = hdul[0].header
        return header.get("NAXIS") == 1 and all(
            key in header for key in ("PHXTEFF", "PHXLOGG", "PHXM_H")
        )

    return identify_hdulist(args, test)


def _flux_unit(header, where):
    bunit = header_str(header, "BUNIT")
    if bunit is None:
        return PHOENIX_FLUX_UNIT
    try:
        unit = parse_unit(bunit)
    except ValueError:
        raise ValueError(f"{where}: unknown flux unit BUNIT = {bunit!r}") from None
    if not unit.is_equivalent(PHOENIX_FLUX_UNIT):
        raise ValueError(f"{where}: BUNIT = {bunit!r} is not a flux density per unit wavelength")
    return unit


def _wcs_wavelength(header, npix, where):
    """Wavelengths [A] and medium from a MedRes file's WCS keywords."""
    ctype = header_str(header, "CTYPE1", "").upper()
    crval = header_float(header, "CRVAL1")
    cdelt = header_float(header, "CDELT1", header_float(header, "CD1_1"))
    crpix = header_float(header, "CRPIX1", 1.0)
    if crval is None or cdelt is None or not ctype.startswith(("WAVE", "AWAV")):
        raise ValueError(f"{where}: incomplete wavelength WCS (CTYPE1/CRVAL1/CDELT1)")
    value = crval + cdelt * (np.arange(npix) + 1.0 - crpix)
    wave = 10.0**value if ctype.endswith("-LOG") else value
    wave = (wave * parse_unit(header_str(header, "CUNIT1", "Angstrom"))).to_value(u.AA)
    return wave, "air" if ctype.startswith("AWAV") else "vacuum"


def _resolve_wave_file(file_obj, wavelength_file, where):
    if wavelength_file is not None:
        return wavelength_file
    path = source_path(file_obj)
    if path is None:
        raise ValueError(
            f"{where}: a PHOENIX HiRes flux file read from a file object or HDUList "
            "needs wavelength_file= (the WAVE_PHOENIX-ACES-AGSS-COND-2011.fits path)"
        )
    return find_phoenix_wavelength_file(path)


def _check_name_matches_header(file_obj, meta, where):
    """A file whose PHOENIX name and header labels disagree is mislabelled: refuse it."""
    path = source_path(file_obj)
    if path is None or _NAME_RE.match(path.name) is None:
        return
    parsed = parse_phoenix_filename(path.name)
    pairs = (("teff", "teff"), ("logg", "logg"), ("m_h", "m_h"), ("alpha", "alpha_fe"))
    wrong = [
        f"{label}: name {parsed[key]:g}, header {meta[label].value:g}"
        for key, label in pairs
        if abs(parsed[key] - meta[label].value) > 1e-6
    ]
    if wrong:
        raise ValueError(f"{where}: file name and PHX* header disagree ({'; '.join(wrong)})")


def read_phoenix(file_obj, wavelength_file=None, *, wavelength_range=None, **kwargs):
    """Read one PHOENIX-ACES-AGSS-COND-2011 model spectrum.

    Parameters
    ----------
    file_obj : str, path-like, file object or `~astropy.io.fits.HDUList`
        A HiRes flux file (``lte*.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits``) or a
        medium-resolution file with its own wavelength WCS.
    wavelength_file : str or path-like, optional
        ``WAVE_PHOENIX-ACES-AGSS-COND-2011.fits``. By default it is searched beside
        the flux file and one and two folders up (see
        `find_phoenix_wavelength_file`). Ignored for files with a wavelength WCS.
    wavelength_range : tuple of float or `~astropy.units.Quantity`, optional
        ``(min, max)`` wavelength (Angstrom if plain numbers) to keep; saves memory
        with the 1.6-million-pixel HiRes spectra.
    **kwargs
        Passed to `astropy.io.fits.open`.

    Returns
    -------
    spectrum : `~specutils.Spectrum`
        Flux in erg s^-1 cm^-2 cm^-1 (float32 as stored) on vacuum wavelengths in
        Angstrom, no uncertainty. ``meta`` holds the labels ``teff`` [K], ``logg``,
        ``m_h``, ``alpha_fe`` [dex] and ``vmicro`` [km/s, from ``PHXXI_L``] as
        Quantities, ``label_names``, ``header``, ``medium`` ("vacuum"; "air" for
        medium-resolution files with ``CTYPE1 = 'AWAV'``), ``resolution``
        (`PHOENIX_RESOLUTION` for HiRes files) and ``wavelength_file``.

    Raises
    ------
    FileNotFoundError
        If the wavelength file cannot be found.
    ValueError
        If the file lacks the PHOENIX keywords, or flux and wavelength lengths differ.

    Examples
    --------
    A small HiRes tree in the server layout (300 pixels instead of 1.6 million):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from stellarml.io import PHOENIX_WAVE_FILENAME
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = Path(tmp.name)
    >>> wave = np.geomspace(5000.0, 5100.0, 300)  # [Angstrom]; the real file has 1 569 128
    >>> fits.PrimaryHDU(wave).writeto(root / PHOENIX_WAVE_FILENAME)
    >>> from stellarml.io import phoenix_filename, phoenix_subdir
    >>> header = fits.Header({"PHXTEFF": 5800.0, "PHXLOGG": 4.5, "PHXM_H": 0.0,
    ...                       "PHXALPHA": 0.0, "PHXXI_L": 1.5, "BUNIT": "erg/s/cm^2/cm"})
    >>> folder = root / "PHOENIX-ACES-AGSS-COND-2011" / phoenix_subdir(0.0)
    >>> folder.mkdir(parents=True)
    >>> path = folder / phoenix_filename(5800, 4.5, 0.0)
    >>> flux = np.full(wave.size, 3e15, dtype=np.float32)  # [erg/s/cm^2/cm]
    >>> fits.PrimaryHDU(flux, header=header).writeto(path)
    >>> from specutils import Spectrum
    >>> from stellarml.io import identify_phoenix, read_phoenix
    >>> identify_phoenix("read", str(path), None)
    True
    >>> spec = read_phoenix(path)  # finds the wavelength file two folders up
    >>> spec.flux.unit, spec.flux.size, spec.meta["medium"], spec.meta["resolution"]
    (Unit("erg / (s cm3)"), 300, 'vacuum', 500000.0)
    >>> spec.meta["teff"], spec.meta["logg"], spec.meta["vmicro"]
    (<Quantity 5800. K>, <Quantity 4.5 dex>, <Quantity 1.5 km / s>)
    >>> part = Spectrum.read(path, format="PHOENIX-ACES", wavelength_range=(5020, 5040))
    >>> part.flux.size, part.spectral_axis.to_value("Angstrom")[[0, -1]].round(1)
    (60, array([5020.2, 5039.9]))
    >>> tmp.cleanup()
    """
    where = file_label(file_obj)
    with open_hdulist(file_obj, **kwargs) as hdul:
        header = hdul[0].header.copy()
        data = hdul[0].data
        missing = [key for _, key, _ in _LABEL_KEYS[:3] if key not in header]
        if missing:
            raise ValueError(f"{where}: not a PHOENIX spectrum (no {', '.join(missing)})")
        if data is None or data.ndim != 1:
            raise ValueError(f"{where}: the PHOENIX flux must be a 1-D primary image")
        flux = np.array(data, dtype=np.float32)
    flux_unit = _flux_unit(header, where)
    wave_path = None
    if "CRVAL1" in header:
        wave, medium = _wcs_wavelength(header, flux.size, where)
        resolution = None
    else:
        wave_path = Path(_resolve_wave_file(file_obj, wavelength_file, where))
        wave = read_phoenix_wavelength(wave_path)
        medium = "vacuum"
        resolution = PHOENIX_RESOLUTION
        if wave.size != flux.size:
            raise ValueError(
                f"{where}: {flux.size} flux pixels but {wave.size} wavelengths in {wave_path}"
            )
    if wavelength_range is not None:
        lo, hi = (u.Quantity(v, u.AA).to_value(u.AA, u.spectral()) for v in wavelength_range)
        keep = (wave >= lo) & (wave <= hi)
        if keep.sum() < 2:
            raise ValueError(
                f"{where}: wavelength_range {lo:g}-{hi:g} A keeps fewer than 2 pixels of "
                f"{wave[0]:g}-{wave[-1]:g} A"
            )
        wave, flux = wave[keep], flux[keep]
    meta = {"header": header, "medium": medium, "resolution": resolution, "grid": "PHOENIX-ACES"}
    for name, key, unit in _LABEL_KEYS:
        value = header_float(header, key, 0.0 if key == "PHXALPHA" else None)
        if value is None:
            raise ValueError(f"{where}: header keyword {key} is not a number")
        meta[name] = value * unit
    meta["label_names"] = tuple(name for name, _, _ in _LABEL_KEYS)
    _check_name_matches_header(file_obj, meta, where)
    xi = header_float(header, "PHXXI_L")
    meta["vmicro"] = None if xi is None else xi * (u.km / u.s)
    meta["wavelength_file"] = None if wave_path is None else str(wave_path)
    meta["filename"] = None if source_path(file_obj) is None else str(source_path(file_obj))
    return Spectrum(flux=flux * flux_unit, spectral_axis=np.array(wave) * u.AA, meta=meta)


@data_loader(
    "PHOENIX-ACES",
    identifier=identify_phoenix,
    dtype=Spectrum,
    extensions=["fits"],
    priority=LOADER_PRIORITY,
)
def _phoenix_loader(file_obj, wavelength_file=None, **kwargs):
    return read_phoenix(file_obj, wavelength_file, **kwargs)
