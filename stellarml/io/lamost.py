"""specutils loader for LAMOST low-resolution (LRS) spectra.

Two layouts of the LAMOST LRS ``spec-*.fits`` files are read, both auto-identified
by ``Spectrum.read(path)`` (format name ``"LAMOST-LRS"``):

* **DR8 and later** (the 25 DR10 files in ``../shared/data/lamost``): a header-only
  primary HDU and a one-row binary table (``EXTNAME = 'COADD'``) with array columns
  ``FLUX``, ``IVAR``, ``WAVELENGTH``, ``ANDMASK``, ``ORMASK`` and ``NORMALIZATION``.
* **DR1 to DR7**: a primary image of shape ``(5, npix)`` whose rows are the flux, its
  inverse variance, the wavelength, the and-mask and the or-mask (LAMOST DR1-DR7
  "data production description", section 2.3).

Wavelengths are vacuum, heliocentric, in Angstrom, on a log-linear grid
(``COEFF0``/``COEFF1`` in the header); fluxes are relatively calibrated and carry no
physical unit.
"""

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import InverseVariance
from specutils import Spectrum
from specutils.io.registers import data_loader

from ..spectra.doppler import C_KMS
from ._common import (
    LOADER_PRIORITY,
    file_label,
    header_float,
    header_str,
    identify_hdulist,
    open_hdulist,
    source_path,
)

__all__ = ["LAMOST_RESOLUTION", "identify_lamost", "read_lamost"]

#: Nominal resolving power of the LAMOST low-resolution survey at 5500 A (LAMOST
#: data release documentation). The real LSF varies with wavelength and fibre;
#: readers set ``meta["resolution"]`` to this value.
LAMOST_RESOLUTION = 1800.0

_TABLE_COLUMNS = ("FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK")
_IMAGE_ROWS = 5
_SNR_BANDS = ("u", "g", "r", "i", "z")


def _is_lamost(header):
    return header_str(header, "TELESCOP", "").upper().startswith("LAMOST")


def _coadd_table(hdul):
    """The LRS coadd table HDU of a DR8+ file, or None."""
    if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
        return None
    hdu = hdul[1]
    # Medium-resolution files hold COADD_B/COADD_R (and per-exposure) tables instead.
    if hdu.name not in ("", "COADD"):
        return None
    names = {name.upper() for name in hdu.columns.names}
    return hdu if set(_TABLE_COLUMNS) <= names else None


def _is_old_layout(header):
    return header.get("NAXIS") == 2 and header.get("NAXIS2") == _IMAGE_ROWS


def identify_lamost(origin, *args, **kwargs):
    """Identifier for the astropy I/O registry: is this a LAMOST LRS spectrum file?

    True for a FITS file whose primary header says ``TELESCOP = 'LAMOST'`` and that
    has either the DR8+ coadd table (columns FLUX, IVAR, WAVELENGTH, ANDMASK, ORMASK)
    or the DR1-DR7 ``(5, npix)`` primary image.

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

    >>> from stellarml.io import identify_lamost
    >>> identify_lamost("read", str(data_dir / "lamost" / "3703110.fits"), None)
    True
    >>> identify_lamost("read", str(data_dir / "sdss" / "spec-3586-55181-0500.fits"), None)
    False
    """

    def test(hdul):
        header = hdul[0].header
        return _is_lamost(header) and (_coadd_table(hdul) is not None or _is_old_layout(header))

    return identify_hdulist(args, test)


def _log_linear_wavelength(header, npix, where):
    coeff0 = header_float(header, "COEFF0", header_float(header, "CRVAL1"))
    coeff1 = header_float(header, "COEFF1", header_float(header, "CD1_1"))
    if coeff0 is None or coeff1 is None or coeff1 <= 0:
        raise ValueError(
            f"{where}: the wavelength row is not a valid wavelength array and the header "
            "has no log-linear solution (COEFF0/COEFF1)"
        )
    return 10.0 ** (coeff0 + coeff1 * np.arange(npix))


def _plausible_wavelength(wave):
    return (
        np.all(np.isfinite(wave))
        and np.all(np.diff(wave) > 0)
        and 1000.0 < wave[0] < 20000.0
        and wave[-1] < 20000.0
    )


def _arrays(hdul, where):
    """(flux, ivar, wavelength, andmask, ormask, normalization or None, layout)."""
    table = _coadd_table(hdul)
    if table is not None:
        data = table.data
        if data is None or len(data) != 1:
            n = 0 if data is None else len(data)
            raise ValueError(f"{where}: the LAMOST coadd table must have one row, found {n}")
        row = data[0]
        cols = {name.upper(): name for name in table.columns.names}
        arrays = [np.array(row[cols[c]], dtype=np.float64) for c in _TABLE_COLUMNS]
        norm = (
            np.array(row[cols["NORMALIZATION"]], dtype=np.float64)
            if "NORMALIZATION" in cols
            else None
        )
        flux, ivar, wave, andmask, ormask = arrays
        layout = "table"
    elif _is_old_layout(hdul[0].header) and hdul[0].data is not None:
        image = np.array(hdul[0].data, dtype=np.float64)
        flux, ivar, wave, andmask, ormask = image
        norm = None
        layout = "image"
        if not _plausible_wavelength(wave):
            # The pilot-survey files carried a continuum-subtracted spectrum in row 3.
            wave = _log_linear_wavelength(hdul[0].header, flux.size, where)
    else:
        raise ValueError(
            f"{where}: not a LAMOST LRS file (no COADD table with FLUX/IVAR/WAVELENGTH/"
            "ANDMASK/ORMASK and no (5, npix) primary image)"
        )
    sizes = {a.size for a in (flux, ivar, wave, andmask, ormask)}
    if len(sizes) != 1 or flux.ndim != 1 or flux.size < 2:
        raise ValueError(f"{where}: LAMOST arrays must be 1-D of one common length >= 2")
    if not _plausible_wavelength(wave):
        raise ValueError(f"{where}: WAVELENGTH must be finite and strictly increasing, in Angstrom")
    return flux, ivar, wave, andmask, ormask, norm, layout


def _meta(header, path, layout):
    meta = {
        "header": header,
        "medium": "vacuum",
        "resolution": LAMOST_RESOLUTION,
        "survey": "LAMOST",
        "layout": "DR8+ coadd table" if layout == "table" else "DR1-DR7 primary image",
        "filename": None if path is None else str(path),
    }
    obsid = header.get("OBSID")
    meta["obsid"] = int(obsid) if isinstance(obsid, int | np.integer) else obsid
    for key, name in (("DESIG", "designation"), ("CLASS", "class"), ("SUBCLASS", "subclass")):
        meta[name] = header_str(header, key)
    meta["data_release"] = header_str(header, "DATA_V")
    for key in ("RA", "DEC"):
        value = header_float(header, key)
        meta[key.lower()] = None if value is None else value * u.deg
    for band in _SNR_BANDS:
        meta[f"snr_{band}"] = header_float(header, f"SNR{band.upper()}")
    meta["z"] = _redshift(header)
    meta["z_err"] = header_float(header, "Z_ERR")
    return meta


def _redshift(header):
    z = header_float(header, "Z")
    # LASP writes -9999 when it could not measure a redshift.
    return None if z is None or z <= -1.0 else z


def read_lamost(file_obj, *, mask_from="andmask", use_redshift=True, **kwargs):
    """Read a LAMOST low-resolution spectrum (DR8+ table or DR1-DR7 image layout).

    Parameters
    ----------
    file_obj : str, path-like, file object or `~astropy.io.fits.HDUList`
        The LAMOST ``spec-*.fits`` file.
    mask_from : {"andmask", "ormask"}, optional
        Which pipeline bit mask marks bad pixels: ``"andmask"`` (bad in every
        exposure; default) or ``"ormask"`` (bad in at least one exposure). Both
        masks are kept in ``meta`` either way.
    use_redshift : bool, optional
        If True (default) the pipeline redshift ``Z`` (heliocentric) is attached as
        the spectrum's ``redshift``, so ``stellarml.spectra.prepare`` shifts the
        spectrum to the rest frame. A missing redshift (``-9999``) is never used.
    **kwargs
        Passed to `astropy.io.fits.open`.

    Returns
    -------
    spectrum : `~specutils.Spectrum`
        Flux (dimensionless: LAMOST fluxes are only relatively calibrated) on the
        vacuum wavelength grid in Angstrom, `~astropy.nddata.InverseVariance`
        uncertainty from ``IVAR`` and a boolean mask that is True where the chosen
        bit mask is non-zero, ``IVAR <= 0``, the flux is not finite, or the flux is
        exactly 0 (the DR10 files pad their red end with zero flux). ``meta`` holds
        ``header``, ``obsid``, ``designation``, ``ra``/``dec`` [deg], ``snr_u`` ...
        ``snr_z``, ``z``, ``z_err``, ``class``, ``subclass``, ``data_release``,
        ``andmask``, ``ormask``, ``normalized_flux`` (the pipeline's normalised
        spectrum, DR8+ only), ``medium`` ("vacuum") and ``resolution``
        (`LAMOST_RESOLUTION`, the nominal R of the survey); with the redshift
        attached also ``rv_source`` ("header"), ``rv_keyword`` ("Z") and
        ``rv_err`` (``c Z_ERR`` [km/s], when the header gives ``Z_ERR``).

    Raises
    ------
    ValueError
        If the file is not a LAMOST LRS file or its arrays are inconsistent.

    Examples
    --------
    A DR10 spectrum of a K7 star:

    >>> from specutils import Spectrum
    >>> from stellarml.io import read_lamost
    >>> path = data_dir / "lamost" / "3703110.fits"  # any LAMOST LRS spec file
    >>> spec = read_lamost(path)
    >>> spec.flux.unit, spec.flux.size, spec.meta["medium"], spec.meta["resolution"]
    (Unit(dimensionless), 3909, 'vacuum', 1800.0)
    >>> spec.spectral_axis.to_value("Angstrom")[[0, -1]].round(1)
    array([3700. , 9099.1])
    >>> spec.meta["obsid"], spec.meta["subclass"], spec.meta["snr_g"]
    (3703110, 'K7', 19.35)

    The pipeline redshift becomes the radial velocity that
    `stellarml.spectra.prepare` removes:

    >>> spec.meta["rv_keyword"], spec.radial_velocity.round(1), round(spec.meta["rv_err"], 1)
    ('Z', <Quantity -16.8 km / s>, 4.0)
    >>> print(read_lamost(path, use_redshift=False).meta.get("rv_source"))
    None

    ``Spectrum.read`` identifies the file itself; the format name is:

    >>> Spectrum.read(path, format="LAMOST-LRS").flux.size
    3909
    """
    if mask_from not in ("andmask", "ormask"):
        raise ValueError(f"mask_from must be 'andmask' or 'ormask', got {mask_from!r}")
    where = file_label(file_obj)
    with open_hdulist(file_obj, **kwargs) as hdul:
        header = hdul[0].header.copy()
        if not _is_lamost(header):
            raise ValueError(f"{where}: primary header has no TELESCOP = 'LAMOST'")
        flux, ivar, wave, andmask, ormask, norm, layout = _arrays(hdul, where)
    bits = andmask if mask_from == "andmask" else ormask
    mask = (bits != 0) | ~np.isfinite(ivar) | (ivar <= 0) | ~np.isfinite(flux) | (flux == 0)
    meta = _meta(header, source_path(file_obj), layout)
    meta["andmask"] = andmask.astype(np.int64)
    meta["ormask"] = ormask.astype(np.int64)
    meta["mask_from"] = mask_from
    if norm is not None:
        meta["normalized_flux"] = norm
    redshift = meta["z"] if use_redshift else None
    extra = {} if redshift is None else {"redshift": redshift}
    if redshift is not None:
        meta["rv_source"], meta["rv_keyword"] = "header", "Z"
        if meta["z_err"] is not None and meta["z_err"] >= 0:
            meta["rv_err"] = C_KMS * meta["z_err"]
    return Spectrum(
        flux=flux * u.dimensionless_unscaled,
        spectral_axis=wave * u.AA,
        uncertainty=InverseVariance(ivar),
        mask=mask,
        meta=meta,
        **extra,
    )


@data_loader(
    "LAMOST-LRS",
    identifier=identify_lamost,
    dtype=Spectrum,
    extensions=["fits", "fit", "fits.gz"],
    priority=LOADER_PRIORITY,
)
def _lamost_loader(file_obj, **kwargs):
    return read_lamost(file_obj, **kwargs)
