"""Castelli & Kurucz (2004) ATLAS9 model fluxes in the STScI (CDBS/TRDS) layout.

The STScI ``grid/ck04models`` atlas has one FITS file per metallicity and effective
temperature, ``ckp00/ckp00_5000.fits`` (``p``/``m`` = sign of log Z, two digits =
10 |log Z|, then Teff in K). The primary header holds ``TEFF`` and ``LOG_Z`` (and
``HISTORY`` lines listing the gravities present); extension 1 is a binary table with a
``WAVELENGTH`` column (Angstrom) and one surface-flux column per gravity, ``g00``,
``g05``, ... ``g50`` (``gNN`` = 10 log g), in FLAM (erg s^-1 cm^-2 A^-1). Gravities
without a converged model are columns of zeros. The older Kurucz (1993) atlas
``grid/k93models`` (``kp00_8000.fits``) has the same layout and is read too.

ATLAS9 fluxes are computed on a frequency grid, so the wavelengths are vacuum
wavelengths (lambda = c / nu); the 1221-point grid is far coarser than any
air/vacuum difference matters for.

Format reference: STScI Synphot Data User's Guide, appendix A ("The Castelli and
Kurucz 2004 ATLAS9 of model atmospheres" and "The HST/CDBS version of the 1993 Kurucz
atlas", whose Table A.5 shows the header).
"""

import os
import re
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from specutils import Spectrum, SpectrumList
from specutils.io.registers import data_loader

from ._common import (
    LOADER_PRIORITY,
    file_label,
    header_float,
    identify_hdulist,
    open_hdulist,
    parse_unit,
    source_path,
)

__all__ = [
    "CK04_LOGG",
    "CK04_M_H",
    "CK04_TEFF",
    "FLAM",
    "K93_M_H",
    "K93_TEFF",
    "identify_kurucz",
    "kurucz_filename",
    "kurucz_subdir",
    "parse_kurucz_filename",
    "read_kurucz",
    "read_kurucz_batch",
]

#: The synphot/STScI flux unit "FLAM": erg s^-1 cm^-2 A^-1.
FLAM = u.erg / u.s / u.cm**2 / u.AA

#: Effective temperatures of the CK04 atlas [K]: 3500-13000 in 250 K, then to 50000 in 1000 K.
CK04_TEFF = np.concatenate([np.arange(3500, 13000, 250), np.arange(13000, 50001, 1000)]).astype(
    float
)
#: Metallicities log Z = [M/H] of the CK04 atlas [dex].
CK04_M_H = np.array([-2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.2, 0.5])
#: Gravities of both atlases [dex]: 0.0-5.0 in 0.5 (columns g00 ... g50).
CK04_LOGG = np.arange(0.0, 5.01, 0.5)
#: Effective temperatures of the Kurucz 1993 atlas [K].
K93_TEFF = np.concatenate(
    [
        np.arange(3500, 10000, 250),
        np.arange(10000, 13000, 500),
        np.arange(13000, 35000, 1000),
        np.arange(35000, 50001, 2500),
    ]
).astype(float)
#: Metallicities of the Kurucz 1993 atlas [dex].
K93_M_H = np.round(
    np.concatenate(
        [np.arange(-5.0, -0.9, 0.5), [-0.5, -0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.5, 1.0]]
    ),
    1,
)

_ATLASES = {"ck04": ("ck", CK04_TEFF, CK04_M_H), "k93": ("k", K93_TEFF, K93_M_H)}
_NAME_RE = re.compile(r"^(?P<prefix>ck|k)(?P<sign>[pm])(?P<z>\d{2})_(?P<teff>\d{4,5})\.fits$")
_GCOL_RE = re.compile(r"^g(\d{2})$", re.IGNORECASE)
_UNIT_ALIASES = {"FLAM": FLAM, "ANGSTROM": u.AA, "ANGSTROMS": u.AA, "A": u.AA}


def _atlas(atlas):
    try:
        return _ATLASES[atlas]
    except KeyError:
        raise ValueError(f"atlas must be one of {sorted(_ATLASES)}, got {atlas!r}") from None


def _on_axis(value, axis, name, atlas):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    hits = np.flatnonzero(np.abs(axis - value) < 1e-6)
    if hits.size == 0:
        raise ValueError(
            f"{name}={value:g} is not a point of the {atlas} atlas; allowed values: "
            + ", ".join(f"{v:g}" for v in axis)
        )
    return float(axis[hits[0]])


def _z_code(m_h):
    return f"{'m' if m_h < 0 else 'p'}{round(abs(m_h) * 10):02d}"


def kurucz_subdir(m_h, atlas="ck04"):
    """Folder of the STScI atlas that holds metallicity ``m_h``, e.g. ``"ckm05"``.

    Parameters
    ----------
    m_h : float
        Metallicity log Z = [M/H] [dex] (one of `CK04_M_H`, or `K93_M_H` for
        ``atlas="k93"``).
    atlas : {"ck04", "k93"}, optional
        Castelli & Kurucz 2004 (default) or Kurucz 1993.

    Returns
    -------
    str
        ``"ckp00"``, ``"ckm25"``, ``"ckp02"`` ... (``"kp00"`` ... for k93).

    Raises
    ------
    ValueError
        If ``m_h`` is not a metallicity of the atlas, or ``atlas`` is unknown.

    Examples
    --------
    >>> from stellarml.io import kurucz_subdir
    >>> kurucz_subdir(-0.5), kurucz_subdir(0.2), kurucz_subdir(0.0, atlas="k93")
    ('ckm05', 'ckp02', 'kp00')
    >>> try:
    ...     kurucz_subdir(-0.3)  # a K93 metallicity, not one of CK04
    ... except ValueError as err:
    ...     print(err)
    m_h=-0.3 is not a point of the ck04 atlas; allowed values: -2.5, -2, -1.5, -1, -0.5, 0, 0.2, 0.5
    """
    prefix, _, metals = _atlas(atlas)
    m_h = _on_axis(m_h, metals, "m_h", atlas)
    return f"{prefix}{_z_code(m_h)}"


def kurucz_filename(teff, m_h, atlas="ck04"):
    """File name of the STScI atlas file holding all gravities at (``teff``, ``m_h``).

    Parameters
    ----------
    teff : float
        Effective temperature [K] (one of `CK04_TEFF` / `K93_TEFF`).
    m_h : float
        Metallicity log Z = [M/H] [dex] (one of `CK04_M_H` / `K93_M_H`).
    atlas : {"ck04", "k93"}, optional
        Castelli & Kurucz 2004 (default) or Kurucz 1993.

    Returns
    -------
    str
        E.g. ``kurucz_filename(5000, 0.0) == "ckp00_5000.fits"``,
        ``kurucz_filename(10000, -0.5) == "ckm05_10000.fits"``. The file lives in the
        folder `kurucz_subdir` (``ck04models/ckm05/ckm05_10000.fits``).

    Raises
    ------
    ValueError
        If ``teff`` or ``m_h`` is not a grid value of the atlas.

    Examples
    --------
    >>> from stellarml.io import kurucz_filename, kurucz_subdir
    >>> kurucz_filename(5000, 0.0), kurucz_filename(10000, -0.5)
    ('ckp00_5000.fits', 'ckm05_10000.fits')
    >>> f"ck04models/{kurucz_subdir(-0.5)}/{kurucz_filename(10000, -0.5)}"
    'ck04models/ckm05/ckm05_10000.fits'
    >>> kurucz_filename(8000, 0.0, atlas="k93")
    'kp00_8000.fits'
    >>> try:
    ...     kurucz_filename(5100, 0.0)  # CK04 steps by 250 K below 13000 K
    ... except ValueError as err:
    ...     print(err)
    teff=5100 is not a point of the ck04 atlas; allowed values: 3500, 3750, 4000, ...
    """
    prefix, temps, metals = _atlas(atlas)
    teff = _on_axis(teff, temps, "teff", atlas)
    m_h = _on_axis(m_h, metals, "m_h", atlas)
    return f"{prefix}{_z_code(m_h)}_{round(teff)}.fits"


def parse_kurucz_filename(name):
    """Parameters encoded in a STScI Kurucz atlas file name.

    Parameters
    ----------
    name : str or path-like
        E.g. ``"ckm05_10000.fits"`` or a path ending in one.

    Returns
    -------
    dict
        ``{"teff": K, "m_h": dex, "atlas": "ck04" | "k93"}``, so that
        ``kurucz_filename(**parse_kurucz_filename(name))`` returns the name.

    Raises
    ------
    ValueError
        If the name does not follow the ``[c]k{p|m}NN_TTTTT.fits`` pattern.

    Examples
    --------
    >>> from stellarml.io import kurucz_filename, parse_kurucz_filename
    >>> parse_kurucz_filename("ck04models/ckm05/ckm05_10000.fits")
    {'teff': 10000.0, 'm_h': -0.5, 'atlas': 'ck04'}
    >>> kurucz_filename(**parse_kurucz_filename("kp00_8000.fits"))
    'kp00_8000.fits'
    """
    base = Path(os.fsdecode(name)).name
    match = _NAME_RE.match(base)
    if match is None:
        raise ValueError(
            f"{base!r} is not a STScI Kurucz atlas file name (expected e.g. ckp00_5000.fits)"
        )
    m_h = int(match["z"]) / 10.0 * (-1.0 if match["sign"] == "m" else 1.0)
    return {
        "teff": float(match["teff"]),
        "m_h": m_h + 0.0,
        "atlas": "ck04" if match["prefix"] == "ck" else "k93",
    }


def _gravity_columns(table_hdu):
    cols = []
    for name in table_hdu.columns.names:
        match = _GCOL_RE.match(name)
        if match:
            cols.append((int(match.group(1)) / 10.0, name))
    return sorted(cols)


def _find_wavelength_column(table_hdu):
    for name in table_hdu.columns.names:
        if name.upper() == "WAVELENGTH":
            return name
    return None


def identify_kurucz(origin, *args, **kwargs):
    """Identifier for the astropy I/O registry: is this a STScI Kurucz atlas file?

    True for a FITS file whose primary header has ``TEFF`` and ``LOG_Z`` and whose
    first extension is a table with a ``WAVELENGTH`` column and ``gNN`` columns.

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

    >>> from stellarml.io import identify_kurucz
    >>> identify_kurucz("read", str(data_dir / "miles" / "MILES_res2.50_star_m0001V.fits"), None)
    False

    `read_kurucz` shows it accept an atlas file.
    """

    def test(hdul):
        header = hdul[0].header
        if "TEFF" not in header or "LOG_Z" not in header or len(hdul) < 2:
            return False
        table = hdul[1]
        return (
            isinstance(table, fits.BinTableHDU)
            and _find_wavelength_column(table) is not None
            and bool(_gravity_columns(table))
        )

    return identify_hdulist(args, test)


def _unit(tunit, default, where, what):
    if not tunit:
        return default
    key = tunit.strip()
    if key.upper() in _UNIT_ALIASES:
        return _UNIT_ALIASES[key.upper()]
    try:
        return parse_unit(key)
    except ValueError:
        raise ValueError(f"{where}: unknown {what} unit {tunit!r}") from None


def _read(file_obj, **kwargs):
    """Wavelength [A], loggs, flux (n_logg, npix), unit, missing, header, teff, m_h, name."""
    where = file_label(file_obj)
    with open_hdulist(file_obj, **kwargs) as hdul:
        header = hdul[0].header.copy()
        teff = header_float(header, "TEFF")
        m_h = header_float(header, "LOG_Z")
        if teff is None or m_h is None:
            raise ValueError(f"{where}: not a Kurucz atlas file (no numeric TEFF/LOG_Z)")
        if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
            raise ValueError(f"{where}: extension 1 must be the model table")
        table = hdul[1]
        wcol = _find_wavelength_column(table)
        gcols = _gravity_columns(table)
        if wcol is None or not gcols:
            raise ValueError(f"{where}: the model table needs WAVELENGTH and gNN columns")
        units = dict(zip(table.columns.names, table.columns.units, strict=True))
        wave_unit = _unit(units.get(wcol), u.AA, where, "wavelength")
        flux_units = {_unit(units.get(name), FLAM, where, "flux") for _, name in gcols}
        if len(flux_units) != 1:
            raise ValueError(f"{where}: the gNN columns have different units {flux_units}")
        flux_unit = flux_units.pop()
        if not flux_unit.is_equivalent(FLAM):
            raise ValueError(f"{where}: flux unit {flux_unit} is not a flux per unit wavelength")
        data = table.data
        wave = (np.array(data[wcol], dtype=np.float64) * wave_unit).to_value(u.AA, u.spectral())
        flux = np.array([data[name] for _, name in gcols], dtype=np.float64)
    loggs = np.array([g for g, _ in gcols])
    if wave.ndim != 1 or wave.size < 2:
        raise ValueError(f"{where}: WAVELENGTH must be a column of at least 2 values")
    if not (np.all(np.isfinite(wave)) and np.all(np.diff(wave) > 0)):
        raise ValueError(f"{where}: WAVELENGTH must be finite and strictly increasing")
    present = np.any(flux != 0, axis=1) & np.all(np.isfinite(flux), axis=1)
    missing = [float(g) for g in loggs[~present]]
    return wave, loggs[present], flux[present], flux_unit, missing, header, teff, m_h, where


def _base_meta(header, teff, m_h, missing, file_obj):
    path = source_path(file_obj)
    return {
        "header": header,
        "medium": "vacuum",
        "resolution": None,
        "grid": "Castelli-Kurucz",
        "flux_kind": "surface flux (multiply by (R/D)^2 for observed flux)",
        "teff": teff * u.K,
        "m_h": m_h * u.dex,
        "label_names": ("teff", "logg", "m_h"),
        "missing_logg": missing,
        "filename": None if path is None else str(path),
    }


def read_kurucz(file_obj, **kwargs):
    """Read a STScI Kurucz atlas file as one spectrum per available log g.

    Parameters
    ----------
    file_obj : str, path-like, file object or `~astropy.io.fits.HDUList`
        E.g. ``ck04models/ckp00/ckp00_5000.fits``.
    **kwargs
        Passed to `astropy.io.fits.open`.

    Returns
    -------
    `~specutils.SpectrumList`
        One `~specutils.Spectrum` per gravity column that holds a model, in
        increasing log g, with surface flux in FLAM (erg s^-1 cm^-2 A^-1) on vacuum
        wavelengths in Angstrom and no uncertainty. Each ``meta`` has ``teff`` [K],
        ``logg`` and ``m_h`` [dex] Quantities, ``label_names``, ``missing_logg``
        (the all-zero columns skipped, as floats), ``medium`` ("vacuum"), ``header``
        and ``filename``.

    Raises
    ------
    ValueError
        If the file is not in the STScI atlas layout or holds no model at all.

    Examples
    --------
    A small file in the STScI layout: 100 wavelengths (the real files have 1221) and
    three gravity columns, of which log g = 5.0 holds no model (zeros):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> wave = np.geomspace(3000.0, 12000.0, 100)  # [Angstrom]
    >>> columns = [fits.Column(name="WAVELENGTH", format="D", unit="ANGSTROM", array=wave)]
    >>> for name, flam in [("g40", 1e7), ("g45", 2e7), ("g50", 0.0)]:  # [erg/s/cm^2/A]
    ...     columns.append(fits.Column(name=name, format="E", unit="FLAM", array=flam + 0 * wave))
    >>> header = fits.Header({"TEFF": 5000.0, "LOG_Z": 0.0})
    >>> table = fits.BinTableHDU.from_columns(columns)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = Path(tmp.name) / "ckp00_5000.fits"
    >>> fits.HDUList([fits.PrimaryHDU(header=header), table]).writeto(path)
    >>> from specutils import SpectrumList
    >>> from stellarml.io import identify_kurucz, read_kurucz
    >>> identify_kurucz("read", str(path), None)
    True
    >>> models = read_kurucz(path)
    >>> len(models), models[0].flux.size, models[0].flux.unit
    (2, 100, Unit("erg / (Angstrom s cm2)"))
    >>> [m.meta["logg"] for m in models], models[0].meta["teff"], models[0].meta["missing_logg"]
    ([<Quantity 4. dex>, <Quantity 4.5 dex>], <Quantity 5000. K>, [5.0])
    >>> len(SpectrumList.read(path, format="Castelli-Kurucz"))
    2
    >>> tmp.cleanup()
    """
    wave, loggs, flux, flux_unit, missing, header, teff, m_h, where = _read(file_obj, **kwargs)
    if loggs.size == 0:
        raise ValueError(f"{where}: every gravity column is zero; the file holds no model")
    spectral_axis = wave * u.AA
    out = SpectrumList()
    for logg, row in zip(loggs, flux, strict=True):
        meta = _base_meta(header, teff, m_h, missing, file_obj)
        meta["logg"] = float(logg) * u.dex
        out.append(Spectrum(flux=row * flux_unit, spectral_axis=spectral_axis, meta=meta))
    return out


def read_kurucz_batch(file_obj, **kwargs):
    """Read a STScI Kurucz atlas file as one 2-D `~specutils.Spectrum` (a batch).

    Same as `read_kurucz`, but the available models share one spectral axis in a
    flux array of shape ``(n_logg, npix)``; ``meta["logg"]`` is then an array
    Quantity (one value per row). This is what ``Spectrum.read`` returns for these
    files.

    Parameters
    ----------
    file_obj : str, path-like, file object or `~astropy.io.fits.HDUList`
        The atlas file.
    **kwargs
        Passed to `astropy.io.fits.open`.

    Returns
    -------
    `~specutils.Spectrum`
        Flux of shape ``(n_logg, npix)`` in FLAM on vacuum wavelengths in Angstrom;
        ``meta`` as in `read_kurucz`, with ``logg`` one value per row.

    Raises
    ------
    ValueError
        If the file is not in the STScI atlas layout or holds no model at all.

    Examples
    --------
    A small file in the STScI layout: 100 wavelengths (the real files have 1221) and
    three gravity columns, of which log g = 5.0 holds no model (zeros):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> wave = np.geomspace(3000.0, 12000.0, 100)  # [Angstrom]
    >>> columns = [fits.Column(name="WAVELENGTH", format="D", unit="ANGSTROM", array=wave)]
    >>> for name, flam in [("g40", 1e7), ("g45", 2e7), ("g50", 0.0)]:  # [erg/s/cm^2/A]
    ...     columns.append(fits.Column(name=name, format="E", unit="FLAM", array=flam + 0 * wave))
    >>> header = fits.Header({"TEFF": 5000.0, "LOG_Z": 0.0})
    >>> table = fits.BinTableHDU.from_columns(columns)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = Path(tmp.name) / "ckp00_5000.fits"
    >>> fits.HDUList([fits.PrimaryHDU(header=header), table]).writeto(path)
    >>> from specutils import Spectrum
    >>> from stellarml.io import read_kurucz_batch
    >>> batch = read_kurucz_batch(path)
    >>> batch.flux.shape, batch.meta["logg"]
    ((2, 100), <Quantity [4. , 4.5] dex>)
    >>> Spectrum.read(path, format="Castelli-Kurucz").flux.shape  # the same
    (2, 100)
    >>> tmp.cleanup()
    """
    wave, loggs, flux, flux_unit, missing, header, teff, m_h, where = _read(file_obj, **kwargs)
    if loggs.size == 0:
        raise ValueError(f"{where}: every gravity column is zero; the file holds no model")
    meta = _base_meta(header, teff, m_h, missing, file_obj)
    meta["logg"] = loggs * u.dex
    return Spectrum(flux=flux * flux_unit, spectral_axis=wave * u.AA, meta=meta)


@data_loader(
    "Castelli-Kurucz",
    identifier=identify_kurucz,
    dtype=SpectrumList,
    extensions=["fits"],
    priority=LOADER_PRIORITY,
)
def _kurucz_list_loader(file_obj, **kwargs):
    return read_kurucz(file_obj, **kwargs)


@data_loader(
    "Castelli-Kurucz",
    identifier=identify_kurucz,
    dtype=Spectrum,
    extensions=["fits"],
    priority=LOADER_PRIORITY,
    autogenerate_spectrumlist=False,
)
def _kurucz_batch_loader(file_obj, **kwargs):
    return read_kurucz_batch(file_obj, **kwargs)
