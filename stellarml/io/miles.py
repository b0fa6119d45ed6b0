"""specutils loader for MILES stellar library spectra.

MILES (Sanchez-Blazquez et al. 2006; Falcon-Barroso et al. 2011) files such as
``MILES_res2.50_star_m0001V.fits`` hold one spectrum in the primary HDU on a
linear wavelength grid in **air** (``CRVAL1``, ``CDELT1``, ``CRPIX1``, in
Angstrom), with a constant instrumental FWHM given by the ``FWHM`` keyword
(2.5 Angstrom) and relative flux. They carry **no uncertainties**: the
spectrum's ``uncertainty`` is None.

Importing this module (done by ``import stellarml.io``) registers the
``"MILES"`` format, so ``Spectrum.read(path)`` identifies these files on its
own (it is also registered for the deprecated ``Spectrum1D``, where the
registry would otherwise find the generic ``wcs1d-fits`` format equally
good). The resulting `~specutils.Spectrum` has

* ``flux`` in ``u.dimensionless_unscaled`` (MILES fluxes are relative),
* ``spectral_axis`` in Angstrom (air),
* ``meta = {"medium": "air", "lsf_fwhm": FWHM * u.AA, "miles_id": "0001",
  "header": header, "rv_source": "header", "rv_keyword": "rest frame (MILES)"}``;
  ``miles_id`` is the four-digit star number from the file name (None if the name
  does not contain one),
* ``radial_velocity`` 0 km/s: the MILES spectra are published in the stars' rest
  frame (Sanchez-Blazquez et al. 2006, Sect. 3), so nothing is estimated for them.
"""

import os
import re

import numpy as np
from astropy import units as u
from specutils import Spectrum, Spectrum1D
from specutils.io.parsing_utils import read_fileobj_or_hdulist
from specutils.io.registers import data_loader

__all__ = ["identify_miles", "miles_loader"]

_ID_PATTERN = re.compile(r"m(\d{4})V", re.IGNORECASE)
_RES_PATTERN = re.compile(r"res(\d+(?:\.\d+)?)", re.IGNORECASE)


def identify_miles(origin, *args, **kwargs):
    """Whether a file is a MILES stellar spectrum (``TPLLIB = 'MILES'``, one 1-D HDU).

    Parameters
    ----------
    origin : str
        ``"read"`` or ``"write"`` (astropy registry convention).
    *args, **kwargs
        Path or file object as passed by the astropy I/O registry.

    Returns
    -------
    bool
        True for a MILES file when reading; always False for ``"write"``.

    Raises
    ------
    OSError
        If the file is not FITS (`FileNotFoundError` if it does not exist). The
        specutils registry catches these while it identifies a file.

    Examples
    --------
    The registry calls it with the path and an open file object (None here):

    >>> from stellarml.io import identify_miles
    >>> path = data_dir / "miles" / "MILES_res2.50_star_m0001V.fits"
    >>> identify_miles("read", str(path), None), identify_miles("write", str(path), None)
    (True, False)
    >>> identify_miles("read", str(data_dir / "lamost" / "3703110.fits"), None)
    False
    """
    if origin != "read":
        return False
    with read_fileobj_or_hdulist(*args, **kwargs) as hdulist:
        header = hdulist[0].header
        return (
            str(header.get("TPLLIB", "")).strip().upper().startswith("MILES")
            and header.get("NAXIS") == 1
            and "CRVAL1" in header
            and "CDELT1" in header
        )


def _file_name(file_obj, hdulist):
    if isinstance(file_obj, (str, os.PathLike)):
        return os.fspath(file_obj)
    name = getattr(file_obj, "name", None)
    if isinstance(name, str):
        return name
    return hdulist.filename()


@data_loader(
    "MILES",
    identifier=identify_miles,
    dtype=Spectrum1D,
    extensions=["fits"],
    priority=20,
    autogenerate_spectrumlist=False,
)
@data_loader(
    "MILES",
    identifier=identify_miles,
    dtype=Spectrum,
    extensions=["fits"],
    priority=20,
)
def miles_loader(file_obj, **kwargs):
    """Read a MILES stellar library spectrum.

    Parameters
    ----------
    file_obj : str, path-like, file-like or `~astropy.io.fits.HDUList`
        The FITS file.
    **kwargs
        Passed to `astropy.io.fits.open`.

    Returns
    -------
    `~specutils.Spectrum`
        Relative flux (dimensionless) on the air wavelength grid [Angstrom],
        no uncertainty, ``meta`` with ``medium``, ``lsf_fwhm``, ``miles_id``
        and ``header``.

    Raises
    ------
    ValueError
        If the file lacks the 1-D data or the linear wavelength solution.

    Examples
    --------
    Usually called through ``Spectrum.read`` (which identifies MILES files itself):

    >>> from specutils import Spectrum
    >>> path = data_dir / "miles" / "MILES_res2.50_star_m0001V.fits"  # any MILES star
    >>> spec = Spectrum.read(path, format="MILES")
    >>> spec.flux.unit, spec.flux.size, spec.meta["medium"], spec.meta["lsf_fwhm"]
    (Unit(dimensionless), 4300, 'air', <Quantity 2.5 Angstrom>)
    >>> spec.spectral_axis.to_value("Angstrom")[[0, -1]]
    array([3540.5, 7409.6])
    >>> spec.meta["miles_id"], spec.radial_velocity, spec.uncertainty is None
    ('0001', <Quantity 0. km / s>, True)

    It can also be called directly:

    >>> from stellarml.io import miles_loader
    >>> miles_loader(path).meta["rv_keyword"]
    'rest frame (MILES)'
    """
    with read_fileobj_or_hdulist(file_obj, **kwargs) as hdulist:
        header = hdulist[0].header.copy()
        data = hdulist[0].data
        name = _file_name(file_obj, hdulist)
    if data is None or np.ndim(data) != 1:
        raise ValueError(f"MILES file {name!r} has no 1-D spectrum in its primary HDU")
    for key in ("CRVAL1", "CDELT1"):
        if key not in header:
            raise ValueError(f"MILES file {name!r} lacks the {key} wavelength keyword")
    flux = np.asarray(data, dtype=np.float64)
    crpix = float(header.get("CRPIX1", 1.0))
    wave_unit = u.Unit(header.get("CUNIT1", "Angstrom"))
    wavelength = header["CRVAL1"] + (np.arange(flux.size) + 1.0 - crpix) * header["CDELT1"]
    base = os.path.basename(name) if name else ""
    match = _ID_PATTERN.search(base)
    meta = {"medium": "air"}
    fwhm = header.get("FWHM")
    if fwhm is None:
        res = _RES_PATTERN.search(base)
        fwhm = float(res.group(1)) if res else None
    if fwhm is not None:
        meta["lsf_fwhm"] = float(fwhm) * u.AA
    meta["miles_id"] = match.group(1) if match else None
    meta["header"] = header
    meta["rv_source"], meta["rv_keyword"] = "header", "rest frame (MILES)"
    return Spectrum(
        flux=flux * u.dimensionless_unscaled,
        spectral_axis=(wavelength * wave_unit).to(u.AA),
        meta=meta,
        radial_velocity=0.0 * (u.km / u.s),
    )
