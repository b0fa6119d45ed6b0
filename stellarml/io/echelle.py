"""specutils loaders for multi-order / multi-camera high-resolution spectra.

**CARMENES (CARACAL pipeline).** A CARACAL ``car-*-vis_A.fits`` / ``-nir_A.fits`` file
has a header-only primary HDU (``INSTRUME = 'CARMENES'``, ``HIERARCH CARACAL ...``
keywords) and four image extensions of shape (orders, pixels): ``SPEC`` (extracted
flux, relative units), ``CONT`` (the pipeline's continuum), ``SIG`` (1-sigma
uncertainty of ``SPEC``) and ``WAVE`` (vacuum wavelength in Angstrom, not corrected
for the barycentric motion; ``HIERARCH CARACAL BERV`` gives that correction in km/s).
The VIS arm has 61 orders of 4096 pixels (R = 94 600), the NIR arm 28 orders of 4080
pixels (R = 80 400). Bad pixels are NaN. ``SpectrumList.read(path)`` gives one
`~specutils.Spectrum` per order (format ``"CARMENES-CARACAL"``). Layout as read by
the CARMENES consortium's SERVAL code and described in Caballero et al. (2016,
SPIE 9910, "CARMENES: data flow") and Zechmeister et al. (2018, A&A 609, A12).

**GALAH / HERMES.** GALAH DR2/DR3 release one FITS file per star and HERMES camera,
named ``<sobject_id><ccd>.fits`` (ccd 1 = blue, 2 = green, 3 = red, 4 = near-IR). Each
has five 1-D image HDUs (GALAH DR3 spectral library description, Data Central):
0 the sky-subtracted, unnormalised spectrum (counts) with a linear wavelength WCS
(``CRVAL1``/``CDELT1``/``CRPIX1``, air wavelengths in Angstrom, barycentric),
1 ``input_sigma`` -- the *relative* uncertainty of HDU 0 (sigma / flux), 2 and 3 the
same before sky subtraction, and 4 the pseudo-continuum-normalised spectrum on the
same pixels but with its own WCS (shifted by the pipeline's radial velocity).
``Spectrum.read(path)`` reads one camera (format ``"GALAH-HERMES"``);
``SpectrumList.read(path)`` reads every camera of that star found beside it, and
``SpectrumList.read([path1, path2, ...])`` the files given.

Both list readers return a `~stellarml.spectra.SpectrumParts`: the orders or cameras
of **one** star, which `~stellarml.derive_labels` combines into one row (a plain
`~specutils.SpectrumList` would be a list of stars, one row each). Each GALAH camera
read alone carries ``meta["star_id"]`` (``"GALAH <sobject_id>"``), by which
`stellarml.io.files.prepare_inputs` (and so the command line) joins the camera files
of one star given one after the other into one row.
"""

import re
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum, SpectrumList
from specutils.io.registers import data_loader

from ..spectra.parts import SpectrumParts
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
    "CARMENES_RESOLUTION",
    "GALAH_CCDS",
    "GALAH_RESOLUTION",
    "galah_ccd_files",
    "identify_carmenes",
    "identify_galah",
    "parse_galah_filename",
    "read_carmenes",
    "read_galah",
    "read_galah_star",
]

#: Nominal resolving powers of the two CARMENES arms (Quirrenbach et al. 2014).
CARMENES_RESOLUTION = {"VIS": 94600.0, "NIR": 80400.0}
#: Nominal resolving power of HERMES in its GALAH mode (Sheinis et al. 2015).
GALAH_RESOLUTION = 28000.0
#: GALAH camera numbers and names.
GALAH_CCDS = {1: "blue", 2: "green", 3: "red", 4: "ir"}

_CARACAL_EXT = ("SPEC", "SIG", "WAVE")
_CARMENES_ORDERS = {61: "VIS", 28: "NIR"}
_GALAH_NAME_RE = re.compile(r"^(?P<sobject_id>\d{15})(?P<ccd>[1-4])\.fits$")


# --------------------------------------------------------------------------------------
# CARMENES / CARACAL
# --------------------------------------------------------------------------------------
def _has_caracal_keys(header):
    return "CARMENES" in header_str(header, "INSTRUME", "").upper() or any(
        str(key).upper().startswith("CARACAL") for key in header
    )


def _caracal_images(hdul):
    names = {hdu.name.upper(): hdu for hdu in hdul[1:]}
    if not all(name in names for name in _CARACAL_EXT):
        return None
    hdus = [names[name] for name in _CARACAL_EXT]
    if not all(isinstance(h, fits.ImageHDU) and h.header.get("NAXIS") == 2 for h in hdus):
        return None
    shapes = {(h.header.get("NAXIS1"), h.header.get("NAXIS2")) for h in hdus}
    return names if len(shapes) == 1 else None


def identify_carmenes(origin, *args, **kwargs):
    """Identifier for the astropy I/O registry: is this a CARACAL (CARMENES) file?

    True for a FITS file with 2-D image extensions ``SPEC``, ``SIG`` and ``WAVE`` of
    one shape and a primary header from CARMENES (``INSTRUME`` or ``CARACAL`` keys).

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

    >>> from stellarml.io import identify_carmenes
    >>> identify_carmenes("read", str(data_dir / "galah" / "1312160026010031.fits"), None)
    False
    >>> identify_carmenes("read", "no-such-file.fits", None)
    False

    `read_carmenes` shows it accept a CARACAL file.
    """

    def test(hdul):
        return _has_caracal_keys(hdul[0].header) and _caracal_images(hdul) is not None

    return identify_hdulist(args, test)


def _carmenes_arm(path, n_orders, header):
    name = "" if path is None else path.name.lower()
    if "-vis" in name:
        return "VIS"
    if "-nir" in name:
        return "NIR"
    arm = header_str(header, "HIERARCH CARACAL FOX ARM") or header_str(header, "ARM")
    if arm and arm.upper() in CARMENES_RESOLUTION:
        return arm.upper()
    return _CARMENES_ORDERS.get(n_orders)


def _order_axis(wave, order, where):
    if not np.all(np.isfinite(wave)):
        raise ValueError(f"{where}: WAVE of order {order} has non-finite values")
    step = np.diff(wave)
    if np.all(step > 0):
        return slice(None)
    if np.all(step < 0):
        return slice(None, None, -1)
    raise ValueError(f"{where}: WAVE of order {order} is not strictly monotonic")


def read_carmenes(file_obj, *, normalize=False, orders=None, **kwargs):
    """Read a CARMENES CARACAL spectrum as a list of echelle orders.

    Parameters
    ----------
    file_obj : str, path-like, file object or `~astropy.io.fits.HDUList`
        A CARACAL ``car-*-vis_A.fits`` or ``car-*-nir_A.fits`` file.
    normalize : bool, optional
        Divide flux and uncertainty by the pipeline continuum (``CONT``); pixels
        with a non-positive or non-finite continuum are masked.
    orders : int or sequence of int, optional
        Order indices (0-based rows of the images) to read; all by default.
    **kwargs
        Passed to `astropy.io.fits.open`.

    Returns
    -------
    `~stellarml.spectra.SpectrumParts`
        The orders of one star (a `~specutils.SpectrumList` that
        `~stellarml.derive_labels` combines into one row; ``list(...)`` of it is
        a list of separate spectra): one `~specutils.Spectrum` per order in row
        order, each on increasing
        vacuum wavelengths in Angstrom (orders stored red-to-blue are reversed),
        with `~astropy.nddata.StdDevUncertainty` from ``SIG`` and a mask that is
        True where ``SPEC`` or ``SIG`` is NaN/inf or ``SIG <= 0``. Fluxes are
        dimensionless (CARACAL's flat-relative extraction). ``meta`` holds
        ``order``, ``arm`` ("VIS"/"NIR"), ``resolution``, ``medium`` ("vacuum"),
        ``frame`` ("topocentric"), ``berv`` [km/s], ``bjd``, ``snr`` (the pipeline
        S/N of the order, ``CARACAL FOX SNR n``), ``object``, ``continuum`` (the
        ``CONT`` row, when present), ``normalized`` and ``header``.

    Raises
    ------
    ValueError
        If the file lacks the SPEC/SIG/WAVE images, they differ in shape, an order
        has non-finite or non-monotonic wavelengths, or ``orders`` is out of range.

    Examples
    --------
    A small CARACAL-like file with three orders of 200 pixels (real VIS files have
    61 orders of 4096):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from specutils import Spectrum, SpectrumList
    >>> from stellarml.io import identify_carmenes, read_carmenes
    >>> wave = 5200.0 + 20.0 * np.arange(3)[:, None] + np.linspace(0.0, 19.0, 200)  # [Angstrom]
    >>> spec, sig = np.ones_like(wave), np.full_like(wave, 0.01)
    >>> header = fits.Header()
    >>> header["INSTRUME"] = "CARMENES"
    >>> header["HIERARCH CARACAL BERV"] = 12.3  # [km/s]
    >>> images = {"SPEC": spec, "SIG": sig, "WAVE": wave}
    >>> hdus = [fits.ImageHDU(data, name=name) for name, data in images.items()]
    >>> hdul = fits.HDUList([fits.PrimaryHDU(header=header), *hdus])
    >>> orders = read_carmenes(hdul)
    >>> type(orders).__name__, len(orders), orders[0].flux.size
    ('SpectrumParts', 3, 200)
    >>> orders[1].spectral_axis[0], orders[0].meta["berv"], orders[0].meta["medium"]
    (<SpectralAxis 5220. Angstrom>, <Quantity 12.3 km / s>, 'vacuum')

    Saved under its CARACAL name, the file is identified by ``SpectrumList.read``
    and the arm (and so the resolving power) comes from the name:

    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = Path(tmp.name) / "car-20160314T22h10m05s-sci-gtoc-vis_A.fits"
    >>> hdul.writeto(path)
    >>> identify_carmenes("read", str(path), None)
    True
    >>> orders = SpectrumList.read(path)
    >>> orders[0].meta["arm"], orders[0].meta["resolution"]
    ('VIS', 94600.0)
    >>> one = Spectrum.read(path, format="CARMENES-CARACAL", order=2)  # one order
    >>> one.meta["order"], one.spectral_axis[0]
    (2, <SpectralAxis 5240. Angstrom>)
    >>> tmp.cleanup()
    """
    where = file_label(file_obj)
    with open_hdulist(file_obj, **kwargs) as hdul:
        header = hdul[0].header.copy()
        images = _caracal_images(hdul)
        if images is None:
            raise ValueError(
                f"{where}: not a CARACAL file (needs 2-D image extensions "
                f"{', '.join(_CARACAL_EXT)} of one shape)"
            )
        spec = np.array(images["SPEC"].data, dtype=np.float64)
        sig = np.array(images["SIG"].data, dtype=np.float64)
        wave = np.array(images["WAVE"].data, dtype=np.float64)
        cont = np.array(images["CONT"].data, dtype=np.float64) if "CONT" in images else None
    if cont is not None and cont.shape != spec.shape:
        raise ValueError(f"{where}: CONT has shape {cont.shape}, SPEC {spec.shape}")
    if normalize and cont is None:
        raise ValueError(f"{where}: normalize=True needs the CONT extension")
    n_orders = spec.shape[0]
    if orders is None:
        rows = list(range(n_orders))
    else:
        rows = [int(o) for o in np.atleast_1d(orders)]
        bad = [o for o in rows if not 0 <= o < n_orders]
        if bad:
            raise ValueError(f"{where}: orders {bad} out of range 0..{n_orders - 1}")
    path = source_path(file_obj)
    arm = _carmenes_arm(path, n_orders, header)
    berv = header_float(header, "HIERARCH CARACAL BERV")
    bjd = header_float(header, "HIERARCH CARACAL BJD")
    common = {
        "header": header,
        "instrument": "CARMENES",
        "arm": arm,
        "resolution": CARMENES_RESOLUTION.get(arm),
        "medium": "vacuum",
        "frame": "topocentric",
        "berv": None if berv is None else berv * (u.km / u.s),
        "bjd": None if bjd is None else bjd + 2400000.0,
        "object": header_str(header, "OBJECT"),
        "normalized": bool(normalize),
        "filename": None if path is None else str(path),
    }
    out = []
    for o in rows:
        flux, err = spec[o], sig[o]
        mask = ~np.isfinite(flux) | ~np.isfinite(err) | (err <= 0)
        if normalize:
            c = cont[o]
            good = np.isfinite(c) & (c > 0)
            safe = np.where(good, c, 1.0)
            flux, err = flux / safe, err / safe
            mask |= ~good
        order_slice = _order_axis(wave[o], o, where)
        meta = dict(common)
        meta["order"] = o
        meta["snr"] = header_float(header, f"HIERARCH CARACAL FOX SNR {o}")
        if cont is not None:
            meta["continuum"] = cont[o][order_slice]
        out.append(
            Spectrum(
                flux=flux[order_slice] * u.dimensionless_unscaled,
                spectral_axis=wave[o][order_slice] * u.AA,
                uncertainty=StdDevUncertainty(err[order_slice]),
                mask=mask[order_slice],
                meta=meta,
            )
        )
    return SpectrumParts(out)


@data_loader(
    "CARMENES-CARACAL",
    identifier=identify_carmenes,
    dtype=SpectrumList,
    extensions=["fits"],
    priority=LOADER_PRIORITY,
)
def _carmenes_list_loader(file_obj, **kwargs):
    return read_carmenes(file_obj, **kwargs)


@data_loader(
    "CARMENES-CARACAL",
    identifier=identify_carmenes,
    dtype=Spectrum,
    extensions=["fits"],
    priority=LOADER_PRIORITY,
    autogenerate_spectrumlist=False,
)
def _carmenes_order_loader(file_obj, order=None, **kwargs):
    if order is None:
        raise ValueError(
            f"{file_label(file_obj)} is a CARMENES echelle file: its orders have different "
            "wavelength grids, so read all of them with SpectrumList.read(path) or one "
            "with Spectrum.read(path, order=N)"
        )
    return read_carmenes(file_obj, orders=[order], **kwargs)[0]


# --------------------------------------------------------------------------------------
# GALAH / HERMES
# --------------------------------------------------------------------------------------
def _is_galah(hdul):
    header = hdul[0].header
    from_hermes = header_str(header, "INSTRUME", "").upper().startswith("HERMES") or (
        "GALAH" in header_str(header, "ORIGIN", "").upper()
    )
    return (
        from_hermes
        and header.get("NAXIS") == 1
        and len(hdul) >= 2
        and hdul[1].name.upper() == "INPUT_SIGMA"
    )


def identify_galah(origin, *args, **kwargs):
    """Identifier for the astropy I/O registry: is this a GALAH/HERMES camera file?

    True for a FITS file with a 1-D primary spectrum from HERMES (``INSTRUME``) or
    GALAH (``ORIGIN``) whose HDU 1 is ``input_sigma``.

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

    >>> from stellarml.io import identify_galah
    >>> identify_galah("read", str(data_dir / "galah" / "1312160026010031.fits"), None)
    True
    >>> identify_galah("read", str(data_dir / "lamost" / "3703110.fits"), None)
    False
    """
    return identify_hdulist(args, _is_galah)


def _identify_galah_list(origin, *args, **kwargs):
    """SpectrumList identifier: one GALAH file, or a list/tuple of GALAH file paths."""
    path, fileobj = [*args, None, None][:2]
    rest = args[2:]
    if path is None and fileobj is None and rest and isinstance(rest[0], list | tuple):
        files = rest[0]
        return bool(files) and all(identify_hdulist((p, None), _is_galah) for p in files)
    return identify_hdulist(args, _is_galah)


def parse_galah_filename(name):
    """Split a GALAH file name ``<sobject_id><ccd>.fits`` into its parts.

    Parameters
    ----------
    name : str or path-like
        E.g. ``"1312160026010031.fits"``.

    Returns
    -------
    dict or None
        ``{"sobject_id": "131216002601003", "ccd": 1}``, or None if the name does
        not follow the GALAH convention.

    Examples
    --------
    >>> from stellarml.io import parse_galah_filename
    >>> parse_galah_filename("galah/1312160026010033.fits")
    {'sobject_id': '131216002601003', 'ccd': 3}
    >>> print(parse_galah_filename("spec-3586-55181-0500.fits"))
    None
    """
    match = _GALAH_NAME_RE.match(Path(name).name)
    if match is None:
        return None
    return {"sobject_id": match["sobject_id"], "ccd": int(match["ccd"])}


def galah_ccd_files(path):
    """The camera files of the star that ``path`` belongs to, found beside it.

    Parameters
    ----------
    path : str or path-like
        One GALAH camera file.

    Returns
    -------
    list of `~pathlib.Path`
        The existing ``<sobject_id>1.fits`` ... ``<sobject_id>4.fits`` in camera
        order; just ``[path]`` if the name does not follow the GALAH convention.

    Examples
    --------
    >>> from stellarml.io import galah_ccd_files
    >>> files = galah_ccd_files(data_dir / "galah" / "1312160026010032.fits")
    >>> [p.name for p in files]
    ['1312160026010031.fits', '1312160026010032.fits', '1312160026010033.fits',
     '1312160026010034.fits']
    >>> [p.name for p in galah_ccd_files("elsewhere/spectrum.fits")]  # not a GALAH name
    ['spectrum.fits']
    """
    path = Path(path)
    parts = parse_galah_filename(path)
    if parts is None:
        return [path]
    files = [path.with_name(f"{parts['sobject_id']}{ccd}.fits") for ccd in GALAH_CCDS]
    return [p for p in files if p.is_file()]


def _linear_axis(header, npix, where):
    crval = header_float(header, "CRVAL1")
    cdelt = header_float(header, "CDELT1", header_float(header, "CD1_1"))
    crpix = header_float(header, "CRPIX1", 1.0)
    if crval is None or cdelt is None or cdelt <= 0:
        raise ValueError(f"{where}: missing or invalid linear wavelength WCS (CRVAL1/CDELT1)")
    unit = parse_unit(header_str(header, "CUNIT1", "Angstrom"))
    return ((crval + cdelt * (np.arange(npix) + 1.0 - crpix)) * unit).to(u.AA)


def read_galah(file_obj, *, normalised=False, **kwargs):
    """Read one GALAH/HERMES camera file.

    Parameters
    ----------
    file_obj : str, path-like, file object or `~astropy.io.fits.HDUList`
        A GALAH ``<sobject_id><ccd>.fits`` file.
    normalised : bool, optional
        Return the pipeline's pseudo-continuum-normalised spectrum (HDU 4, on its
        own, radial-velocity-shifted wavelength axis) instead of the sky-subtracted
        unnormalised one (HDU 0, default).
    **kwargs
        Passed to `astropy.io.fits.open`.

    Returns
    -------
    `~specutils.Spectrum`
        Flux in counts (dimensionless if ``normalised``) on air wavelengths in
        Angstrom, `~astropy.nddata.StdDevUncertainty` = relative error (HDU 1) times
        the flux, and a mask where flux or error is not finite or the error is not
        positive. ``meta`` holds ``medium`` ("air"), ``resolution``
        (`GALAH_RESOLUTION`, nominal), ``ccd``, ``camera``, ``sobject_id`` (from the
        file name), ``object``, ``baryeff`` (header ``BARYEFF`` [km/s]),
        ``normalised``, ``header`` and ``star_id`` (``"GALAH <sobject_id>"``, None
        when the file name does not give the ``sobject_id``): files with one
        ``star_id`` are parts of one star.

    Raises
    ------
    ValueError
        If the file is not a GALAH camera file, or ``normalised`` is asked of a file
        without HDU 4.

    Examples
    --------
    The blue camera of the benchmark star mu Leo:

    >>> from specutils import Spectrum
    >>> from stellarml.io import read_galah
    >>> path = data_dir / "galah" / "1312160026010031.fits"  # any GALAH camera file
    >>> spec = read_galah(path)
    >>> spec.flux.unit, spec.flux.size, spec.meta["camera"], spec.meta["medium"]
    (Unit("ct"), 4096, 'blue', 'air')
    >>> spec.spectral_axis.to_value("Angstrom")[[0, -1]].round(1)
    array([4714.1, 4902.5])
    >>> spec.meta["star_id"], spec.meta["baryeff"].round(2)
    ('GALAH 131216002601003', <Quantity 7.4 km / s>)
    >>> read_galah(path, normalised=True).flux.unit
    Unit(dimensionless)

    ``Spectrum.read`` identifies the file itself; the format name is:

    >>> Spectrum.read(path, format="GALAH-HERMES").meta["resolution"]
    28000.0
    """
    where = file_label(file_obj)
    with open_hdulist(file_obj, **kwargs) as hdul:
        if not _is_galah(hdul):
            raise ValueError(
                f"{where}: not a GALAH/HERMES camera file (needs a 1-D HERMES primary "
                "spectrum and an input_sigma HDU 1)"
            )
        header = hdul[0].header.copy()
        rel = np.array(hdul[1].data, dtype=np.float64)
        if normalised:
            if len(hdul) < 5 or hdul[4].data is None:
                raise ValueError(f"{where}: no normalised spectrum (HDU 4) in this file")
            flux = np.array(hdul[4].data, dtype=np.float64)
            wcs_header = hdul[4].header
        else:
            flux = np.array(hdul[0].data, dtype=np.float64)
            wcs_header = header
    if flux.shape != rel.shape or flux.ndim != 1:
        raise ValueError(f"{where}: flux {flux.shape} and input_sigma {rel.shape} differ")
    wave = _linear_axis(wcs_header, flux.size, where)
    err = rel * np.abs(flux)
    mask = ~np.isfinite(flux) | ~np.isfinite(err) | (err <= 0)
    path = source_path(file_obj)
    parts = parse_galah_filename(path) if path is not None else None
    ccd = parts["ccd"] if parts else None
    baryeff = header_float(header, "BARYEFF")
    meta = {
        "header": header,
        "survey": "GALAH",
        "medium": "air",
        "resolution": GALAH_RESOLUTION,
        "ccd": ccd,
        "camera": GALAH_CCDS.get(ccd),
        "sobject_id": parts["sobject_id"] if parts else None,
        "star_id": f"GALAH {parts['sobject_id']}" if parts else None,
        "object": header_str(header, "OBJECT"),
        "baryeff": None if baryeff is None else baryeff * (u.km / u.s),
        "normalised": bool(normalised),
        "filename": None if path is None else str(path),
    }
    unit = u.dimensionless_unscaled if normalised else u.ct
    return Spectrum(
        flux=flux * unit,
        spectral_axis=wave,
        uncertainty=StdDevUncertainty(err),
        mask=mask,
        meta=meta,
    )


def read_galah_star(paths, *, normalised=False, all_ccds=True, **kwargs):
    """Read the camera files of one GALAH star as a `~specutils.SpectrumList`.

    Parameters
    ----------
    paths : str, path-like, or sequence of them
        One camera file (then, with ``all_ccds``, every camera of the same
        ``sobject_id`` found beside it is read) or an explicit list of files.
    normalised : bool, optional
        See `read_galah`.
    all_ccds : bool, optional
        For a single path, also read its sibling camera files (default True).
    **kwargs
        Passed to `astropy.io.fits.open`.

    Returns
    -------
    `~stellarml.spectra.SpectrumParts`
        The cameras of one star (a `~specutils.SpectrumList` that
        `~stellarml.derive_labels` combines into one row): one spectrum per
        file, in camera order when the camera is known.

    Raises
    ------
    ValueError
        If the list is empty or mixes different ``sobject_id`` values.

    Examples
    --------
    One camera file brings its three siblings along:

    >>> from specutils import SpectrumList
    >>> from stellarml.io import read_galah_star
    >>> folder = data_dir / "galah"
    >>> star = read_galah_star(folder / "1312160026010031.fits")
    >>> type(star).__name__, [s.meta["camera"] for s in star]
    ('SpectrumParts', ['blue', 'green', 'red', 'ir'])
    >>> [round(s.spectral_axis[0].to_value("Angstrom")) for s in star]
    [4714, 5650, 6477, 7586]
    >>> two = read_galah_star([folder / "1312160026010033.fits", folder / "1312160026010031.fits"])
    >>> [s.meta["ccd"] for s in two]  # sorted into camera order
    [1, 3]

    ``SpectrumList.read`` of one camera file does the same:

    >>> len(SpectrumList.read(folder / "1312160026010034.fits", format="GALAH-HERMES"))
    4
    """
    if isinstance(paths, list | tuple):
        files = [Path(p) for p in paths]
    elif all_ccds and source_path(paths) is not None:
        files = galah_ccd_files(source_path(paths))
    else:
        return SpectrumParts([read_galah(paths, normalised=normalised, **kwargs)])
    if not files:
        raise ValueError("no GALAH files given")
    spectra = [read_galah(p, normalised=normalised, **kwargs) for p in files]
    ids = {s.meta["sobject_id"] for s in spectra if s.meta["sobject_id"] is not None}
    if len(ids) > 1:
        raise ValueError(f"the GALAH files belong to different stars: {sorted(ids)}")
    spectra.sort(key=lambda s: (s.meta["ccd"] is None, s.meta["ccd"] or 0))
    return SpectrumParts(spectra)


@data_loader(
    "GALAH-HERMES",
    identifier=identify_galah,
    dtype=Spectrum,
    extensions=["fits"],
    priority=LOADER_PRIORITY,
    autogenerate_spectrumlist=False,
)
def _galah_loader(file_obj, **kwargs):
    return read_galah(file_obj, **kwargs)


@data_loader(
    "GALAH-HERMES",
    identifier=_identify_galah_list,
    dtype=SpectrumList,
    extensions=["fits"],
    priority=LOADER_PRIORITY,
)
def _galah_list_loader(file_obj, **kwargs):
    return read_galah_star(file_obj, **kwargs)
