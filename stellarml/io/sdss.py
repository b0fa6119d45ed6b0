"""Make specutils' own SDSS/BOSS and APOGEE spectra ready for `stellarml.spectra`.

specutils reads these formats itself (as ``"SDSS-III/IV spec"``, ``"APOGEE apStar"``
and ``"APOGEE apVisit"``), but what it returns needs a little more before it is fit
for `stellarml.spectra.prepare`. Importing `stellarml.io` therefore registers two
loaders of higher priority, ``"SDSS-BOSS-stellarml"`` (`read_boss`) and
``"SDSS-APOGEE-stellarml"`` (`read_apogee`), so that a plain ``Spectrum.read`` of
these files gives what the functions here give (specutils' own loaders stay
available through ``format=``):

* **apVisit** files store the three detector chips red-to-blue, each in decreasing
  wavelength, so the spectrum specutils builds has a strictly *decreasing* spectral
  axis (12 288 pixels with two chip gaps). The helpers reverse it, or split it into one
  increasing spectrum per chip.
* **APOGEE** loaders ignore the pixel bit mask (HDU 3) and leave bad pixels with zero
  or enormous (> 1e10) errors; the helpers turn the chosen ``APOGEE_PIXMASK`` bits
  into the spectrum's ``mask``.
* **apVisit** wavelengths are observed (not even barycentric-corrected); the helpers
  attach the pipeline's relative velocity ``VRAD`` as the spectrum's
  ``radial_velocity``, so ``prepare`` moves the spectrum to the rest frame. apStar
  spectra are already in the stellar rest frame: they get ``radial_velocity = 0``
  with ``meta["rv_err"]`` from ``VERR`` and the pipeline's ``VHELIO`` kept in
  ``meta["vhelio"]``.
* **BOSS** ``spec`` files: the helpers attach the pipeline redshift (HDU 2 ``Z`` when
  ``ZWARNING == 0``, with ``meta["rv_err"] = c Z_ERR``) and the median resolving
  power from the per-pixel LSF width ``WDISP``.
* A radial velocity taken from the file is marked ``meta["rv_source"] = "header"``
  (``meta["rv_keyword"]`` names where it came from), one given by the caller
  ``"given"``; `stellarml.derive_labels` reports it in its ``rv_source`` column.
* Every spectrum gets ``meta["medium"] = "vacuum"`` (all SDSS spectra use vacuum
  wavelengths) and ``meta["resolution"]``.

Datamodels followed: SDSS DR17 ``apStar``, ``apVisit`` and ``spec`` pages
(https://data.sdss.org/datamodel/) and the ``APOGEE_PIXMASK`` bitmask definition.
"""

import warnings

import astropy.units as u
import numpy as np
from astropy.io.registry import IORegistryError
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum, SpectrumList
from specutils.io.registers import data_loader

from ..spectra.doppler import C_KMS
from ._common import (
    LOADER_PRIORITY,
    file_label,
    header_float,
    header_str,
    identify_hdulist,
    open_hdulist,
)

__all__ = [
    "APOGEE_BAD_PIXMASK",
    "APOGEE_PIXMASK_BITS",
    "APOGEE_RESOLUTION",
    "identify_apogee",
    "identify_boss",
    "read_apogee",
    "read_boss",
    "sdss_for_stellarml",
]

#: Bits of the APOGEE ``APOGEE_PIXMASK`` (SDSS DR17 bitmask documentation).
APOGEE_PIXMASK_BITS = {
    "BADPIX": 0,
    "CRPIX": 1,
    "SATPIX": 2,
    "UNFIXABLE": 3,
    "BADDARK": 4,
    "BADFLAT": 5,
    "BADERR": 6,
    "NOSKY": 7,
    "LITTROW_GHOST": 8,
    "PERSIST_HIGH": 9,
    "PERSIST_MED": 10,
    "PERSIST_LOW": 11,
    "SIG_SKYLINE": 12,
    "SIG_TELLURIC": 13,
    "NOT_ENOUGH_PSF": 14,
}
#: Default bad-pixel bits: BADPIX, CRPIX, SATPIX, UNFIXABLE, BADDARK, BADFLAT,
#: BADERR and NOSKY (the ``badpixmask`` convention of the APOGEE tools). The
#: persistence, sky-line and telluric bits only warn and are not included.
APOGEE_BAD_PIXMASK = sum(1 << APOGEE_PIXMASK_BITS[name] for name in list(APOGEE_PIXMASK_BITS)[:8])
#: Nominal resolving power of the APOGEE spectrographs (Wilson et al. 2019).
APOGEE_RESOLUTION = 22500.0

_APOGEE_CHIPS = ("a", "b", "c")  # file rows: red, green, blue


def _kind(header):
    """ "apstar", "apvisit", "boss" or None from an SDSS primary header."""
    if header is None:
        return None
    history = "".join(str(h) for h in header.get("HISTORY", []))
    if header_str(header, "SFILE1", "").startswith(("apVisit", "asVisit")):
        return "apstar"
    if "APOGEE" in history or header_str(header, "SURVEY", "").lower().startswith("apogee"):
        return "apvisit" if "VRAD" in header or "FIBERID" in header else "apstar"
    if header_str(header, "TELESCOP", "").startswith("SDSS"):
        return "boss"
    return None


def _reorder(spectrum, order, **overrides):
    """A copy of ``spectrum`` with pixels in ``order`` and some fields replaced."""
    unc = spectrum.uncertainty
    if unc is not None:
        unc = type(unc)(unc.array[..., order], unit=unc.unit)
    mask = None if spectrum.mask is None else np.asarray(spectrum.mask)[..., order]
    kwargs = {
        "flux": spectrum.flux[..., order],
        "spectral_axis": u.Quantity(spectrum.spectral_axis)[order],
        "uncertainty": unc,
        "mask": mask,
        "meta": dict(spectrum.meta),
    }
    kwargs.update(overrides)
    return Spectrum(**kwargs)


def sdss_for_stellarml(spectrum, *, rv=None):
    """Fix up a spectrum read by specutils' SDSS/BOSS or APOGEE loader for stellarml.

    Works on the object alone (no file access): it puts the pixels in increasing
    wavelength, sets ``meta["medium"] = "vacuum"`` and a nominal
    ``meta["resolution"]``, masks non-finite fluxes and non-positive or non-finite
    uncertainties, and attaches the pipeline's radial velocity: apVisit ``VRAD`` from
    the header (as the redshift ``VRAD / c``), apStar 0 (rest frame; ``VERR`` as
    ``meta["rv_err"]``, ``VHELIO`` as ``meta["vhelio"]``), with ``meta["rv_source"]``
    "header" and ``meta["rv_keyword"]``. Use `read_apogee` / `read_boss` to also get
    the file's pixel masks and pipeline redshift.

    Parameters
    ----------
    spectrum : `~specutils.Spectrum`
        As returned by ``Spectrum.read`` for an apStar, apVisit or BOSS spec file
        (``meta["header"]`` is used to tell them apart).
    rv : `~astropy.units.Quantity` or float, optional
        Radial velocity to attach [km/s if a plain number] (``meta["rv_source"]``
        "given"); overrides the file's.

    Returns
    -------
    `~specutils.Spectrum`
        A new spectrum; the input is not changed.

    Raises
    ------
    TypeError
        If ``spectrum`` is not a `~specutils.Spectrum`.
    ValueError
        If it is not from an SDSS/APOGEE file, or its spectral axis is neither
        increasing nor decreasing.

    Examples
    --------
    specutils' own apVisit loader gives decreasing wavelengths and no velocity:

    >>> import numpy as np
    >>> from specutils import Spectrum
    >>> from stellarml.io import sdss_for_stellarml
    >>> path = data_dir / "sdss" / "apVisit-r13-5095-55844-128.fits"  # any apVisit file
    >>> raw = Spectrum.read(path, format="APOGEE apVisit")
    >>> raw.spectral_axis.to_value("Angstrom")[[0, -1]].round(1), raw.meta["header"]["VRAD"]
    (array([16954.8, 15142.7]), -44.4206)
    >>> spec = sdss_for_stellarml(raw)
    >>> spec.spectral_axis.to_value("Angstrom")[[0, -1]].round(1)
    array([15142.7, 16954.8])
    >>> spec.meta["medium"], spec.meta["resolution"], spec.meta["rv_keyword"]
    ('vacuum', 22500.0, 'VRAD')
    >>> spec.radial_velocity.round(1)  # VRAD, attached as the redshift VRAD / c
    <Quantity -44.4 km / s>
    >>> sdss_for_stellarml(raw, rv=-40.0).meta["rv_source"]
    'given'

    A spectrum without an SDSS header cannot be told apart:

    >>> import astropy.units as u
    >>> other = Spectrum(flux=np.ones(5) * u.Jy, spectral_axis=(5000.0 + np.arange(5)) * u.AA)
    >>> try:
    ...     sdss_for_stellarml(other)
    ... except ValueError as err:
    ...     print(str(err).split(":")[0])
    not an SDSS/BOSS or APOGEE spectrum
    """
    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"expected a specutils Spectrum, got {type(spectrum).__name__}")
    axis = u.Quantity(spectrum.spectral_axis)
    step = np.diff(axis.value)
    if np.all(step > 0):
        order = np.arange(axis.size)
    elif np.all(step < 0):
        order = np.arange(axis.size)[::-1]
    else:
        raise ValueError("the spectral axis is neither strictly increasing nor decreasing")
    header = spectrum.meta.get("header")
    kind = _kind(header)
    if kind is None:
        raise ValueError(
            "not an SDSS/BOSS or APOGEE spectrum: meta['header'] is missing or has none of "
            "the SDSS/APOGEE keywords, so its wavelength medium is unknown"
        )
    meta = dict(spectrum.meta)
    meta["medium"] = "vacuum"
    meta.setdefault("survey", "APOGEE" if kind in ("apstar", "apvisit") else "SDSS")
    if kind in ("apstar", "apvisit"):
        meta.setdefault("resolution", APOGEE_RESOLUTION)
    mask = np.zeros(spectrum.flux.shape, dtype=bool)
    if spectrum.mask is not None:
        mask |= np.asarray(spectrum.mask, dtype=bool)
    mask |= ~np.isfinite(spectrum.flux.value)
    if spectrum.uncertainty is not None:
        err = np.asarray(spectrum.uncertainty.array, dtype=float)
        mask |= ~np.isfinite(err) | (err <= 0)
    overrides = {"meta": meta, "mask": mask[..., order]}
    if rv is not None:
        meta["rv_source"], meta["rv_keyword"] = "given", None
        meta.pop("rv_err", None)
    elif kind == "apvisit" and header_float(header, "VRAD") is not None:
        rv = header_float(header, "VRAD")
        meta["rv_source"], meta["rv_keyword"] = "header", "VRAD"
    elif kind == "apstar":
        # apStar spectra are shifted to the star's rest frame by the pipeline.
        rv = 0.0
        meta["rv_source"], meta["rv_keyword"] = "header", "rest frame (apStar)"
        meta["vhelio"] = header_float(header, "VHELIO")
        verr = header_float(header, "VERR")
        if verr is not None:
            meta["rv_err"] = verr
    if rv is not None:
        # attached as z = v / c: the pipelines' velocities shift by (1 + v/c), which is
        # what `stellarml.spectra.prepare` applies for a redshift z (rv = c z), whereas
        # specutils would turn a radial_velocity into z relativistically
        overrides["redshift"] = u.Quantity(rv, u.km / u.s).to_value(u.km / u.s) / C_KMS
    return _reorder(spectrum, order, **overrides)


def _pixmask(hdul, kind, row, where):
    if len(hdul) < 4 or hdul[3].data is None:
        raise ValueError(f"{where}: no APOGEE pixel mask in HDU 3")
    data = np.asarray(hdul[3].data)
    if kind == "apstar":
        return data[row] if data.ndim == 2 else data
    return np.concatenate([data[i] for i in range(data.shape[0])])


def read_apogee(file_obj, *, split_chips=False, bad_bits=APOGEE_BAD_PIXMASK, row=0, rv=None):
    """Read an APOGEE apStar or apVisit file with specutils and prepare it for stellarml.

    Parameters
    ----------
    file_obj : str or path-like
        An ``apStar-*.fits`` or ``apVisit-*.fits`` file.
    split_chips : bool, optional
        apVisit only: return a `~specutils.SpectrumList` of the three chips (blue,
        green, red; each increasing in wavelength) instead of one merged spectrum.
    bad_bits : int, optional
        ``APOGEE_PIXMASK`` bits that mark a pixel bad (default `APOGEE_BAD_PIXMASK`).
    row : int, optional
        apStar only: which row to read. Row 0 (default) is the combined spectrum;
        with two or more visits, row 1 is the alternative combination and rows 2+
        the individual visits.
    rv : `~astropy.units.Quantity` or float, optional
        Radial velocity to attach [km/s]; apVisit default: header ``VRAD``.

    Returns
    -------
    `~specutils.Spectrum` or `~specutils.SpectrumList`
        Flux in 1e-17 erg s^-1 cm^-2 A^-1 on increasing vacuum wavelengths,
        `~astropy.nddata.StdDevUncertainty`, mask from ``bad_bits`` plus non-finite
        flux and non-positive errors, ``meta`` with ``medium`` ("vacuum"),
        ``resolution`` (`APOGEE_RESOLUTION`), ``pixmask`` and ``header``; chips
        also carry ``meta["chip"]``.

    Raises
    ------
    ValueError
        If the file is not an APOGEE apStar/apVisit file or ``row`` is out of range.

    Examples
    --------
    An apVisit file: three chips merged on increasing wavelengths, the pipeline's
    ``VRAD`` attached:

    >>> from specutils import Spectrum
    >>> from stellarml.io import read_apogee
    >>> path = data_dir / "sdss" / "apVisit-r13-5095-55844-128.fits"  # any apVisit file
    >>> spec = read_apogee(path)
    >>> spec.flux.unit, spec.flux.size, spec.meta["medium"], spec.meta["resolution"]
    (Unit("1e-17 erg / (Angstrom s cm2)"), 12288, 'vacuum', 22500.0)
    >>> spec.spectral_axis.to_value("Angstrom")[[0, -1]].round(1)
    array([15142.7, 16954.8])
    >>> spec.meta["rv_keyword"], spec.radial_velocity.round(1), int(spec.mask.sum())
    ('VRAD', <Quantity -44.4 km / s>, 200)
    >>> [(chip.meta["chip"], chip.flux.size) for chip in read_apogee(path, split_chips=True)]
    [('c', 4096), ('b', 4096), ('a', 4096)]

    An apStar file is already in the star's rest frame:

    >>> path = data_dir / "sdss" / "apStar-dr17-2M17335483-2753043.fits"  # any apStar file
    >>> star = Spectrum.read(path, format="SDSS-APOGEE-stellarml")  # what Spectrum.read(path) gives
    >>> star.flux.size, star.meta["rv_keyword"], round(star.meta["vhelio"], 2)
    (8575, 'rest frame (apStar)', 15.68)
    """
    where = file_label(file_obj)
    with open_hdulist(file_obj) as hdul:
        header = hdul[0].header.copy()
        kind = _kind(header)
        if kind not in ("apstar", "apvisit"):
            raise ValueError(f"{where}: not an APOGEE apStar or apVisit file")
        if kind == "apstar":
            nrows = hdul[1].data.shape[0] if hdul[1].data.ndim == 2 else 1
            if not 0 <= row < nrows:
                raise ValueError(f"{where}: row {row} out of range 0..{nrows - 1}")
        pixmask = _pixmask(hdul, kind, row, where).astype(np.int64)
        if kind == "apstar" and row != 0:
            flux = np.array(hdul[1].data[row], dtype=float)
            err = np.array(hdul[2].data[row], dtype=float)
    fmt = "APOGEE apStar" if kind == "apstar" else "APOGEE apVisit"
    spec = Spectrum.read(file_obj, format=fmt)
    if kind == "apstar" and row != 0:
        spec = Spectrum(
            flux=flux * spec.flux.unit,
            spectral_axis=spec.spectral_axis,
            uncertainty=StdDevUncertainty(err),
            meta=spec.meta,
        )
    bad = (pixmask & int(bad_bits)) != 0
    spec = Spectrum(
        flux=spec.flux,
        spectral_axis=spec.spectral_axis,
        uncertainty=spec.uncertainty,
        mask=bad,
        meta={**spec.meta, "pixmask": pixmask, "bad_bits": int(bad_bits), "row": row},
    )
    axis = u.Quantity(spec.spectral_axis).value
    spec = sdss_for_stellarml(spec, rv=rv)
    if axis[0] > axis[-1]:
        spec.meta["pixmask"] = pixmask[::-1]
    if not split_chips:
        return spec
    if kind != "apvisit":
        raise ValueError(f"{where}: split_chips applies to apVisit files only")
    npix = spec.flux.size // 3
    chips = SpectrumList()
    # After the reversal the blue chip (c) comes first.
    for i, chip in enumerate(_APOGEE_CHIPS[::-1]):
        sl = slice(i * npix, (i + 1) * npix)
        chips.append(
            Spectrum(
                flux=spec.flux[sl],
                spectral_axis=u.Quantity(spec.spectral_axis)[sl],
                uncertainty=StdDevUncertainty(spec.uncertainty.array[sl]),
                mask=spec.mask[sl],
                meta={**spec.meta, "chip": chip, "pixmask": spec.meta["pixmask"][sl]},
                redshift=spec.redshift,
            )
        )
    return chips


def read_boss(file_obj, *, use_redshift=True):
    """Read an SDSS-III/IV BOSS ``spec`` file with specutils and prepare it for stellarml.

    Parameters
    ----------
    file_obj : str or path-like
        A ``spec-PLATE-MJD-FIBER.fits`` file.
    use_redshift : bool, optional
        Attach the pipeline redshift (HDU 2 ``Z``) as the spectrum's ``redshift``
        when its ``ZWARNING`` is 0 (default True).

    Returns
    -------
    `~specutils.Spectrum`
        specutils' spectrum (vacuum wavelengths, `~astropy.nddata.InverseVariance`,
        mask from ``and_mask``) with non-finite fluxes and ``ivar <= 0`` also
        masked, and ``meta`` holding ``medium`` ("vacuum"), ``resolution`` (the
        median of lambda / FWHM over unmasked pixels from ``WDISP``), ``z``,
        ``z_err``, ``zwarning``, ``class`` and ``subclass``; with the redshift
        attached also ``rv_source`` ("header"), ``rv_keyword`` ("Z") and
        ``rv_err`` (``c Z_ERR`` [km/s]).

    Raises
    ------
    ValueError
        If the file is not a BOSS ``spec`` file.

    Examples
    --------
    >>> from specutils import Spectrum
    >>> from stellarml.io import read_boss
    >>> path = data_dir / "sdss" / "spec-3586-55181-0500.fits"  # any BOSS spec file
    >>> spec = read_boss(path)
    >>> spec.flux.unit, spec.flux.size, spec.meta["medium"], round(spec.meta["resolution"])
    (Unit("1e-17 erg / (Angstrom s cm2)"), 4625, 'vacuum', 1835)
    >>> spec.meta["class"], spec.meta["subclass"], spec.meta["zwarning"]
    ('STAR', 'G1V (95128)', 0)
    >>> spec.meta["rv_keyword"], spec.radial_velocity.round(1), round(spec.meta["rv_err"], 1)
    ('Z', <Quantity -30.4 km / s>, 3.2)
    >>> read_boss(path, use_redshift=False).radial_velocity
    <Quantity 0. km / s>

    ``Spectrum.read(path)`` identifies the file and gives the same; the format is:

    >>> Spectrum.read(path, format="SDSS-BOSS-stellarml").meta["rv_source"]
    'header'
    """
    where = file_label(file_obj)
    with open_hdulist(file_obj) as hdul:
        header = hdul[0].header
        if _kind(header) != "boss" or len(hdul) < 2 or "wdisp" not in hdul[1].columns.names:
            raise ValueError(f"{where}: not an SDSS-III/IV BOSS spec file")
        wdisp = np.array(hdul[1].data["wdisp"], dtype=float)
        info = {}
        if len(hdul) > 2 and hdul[2].data is not None:
            table = hdul[2].data
            for name in ("Z", "Z_ERR", "ZWARNING", "CLASS", "SUBCLASS"):
                if name in table.columns.names:
                    value = table[name][0]
                    info[name.lower()] = value.strip() if isinstance(value, str) else value
    with warnings.catch_warnings():
        # The BOSS BUNIT '1E-17 erg/cm^2/s/Ang' makes astropy warn about "multiple
        # slashes" while specutils parses it; the unit comes out right.
        warnings.filterwarnings("ignore", message=".*multiple slashes", category=u.UnitsWarning)
        spec = Spectrum.read(file_obj, format="SDSS-III/IV spec")
    good = np.isfinite(wdisp) & (wdisp > 0) & ~np.asarray(spec.mask)
    # WDISP is the 1-sigma LSF width in pixels of d(log10 lambda) = 1e-4.
    fwhm_dloglam = 2.0 * np.sqrt(2.0 * np.log(2.0)) * wdisp[good] * 1e-4 * np.log(10.0)
    meta = dict(spec.meta)
    meta["resolution"] = float(np.median(1.0 / fwhm_dloglam)) if good.any() else None
    meta["z"] = None if "z" not in info else float(info["z"])
    meta["z_err"] = None if "z_err" not in info else float(info["z_err"])
    meta["zwarning"] = None if "zwarning" not in info else int(info["zwarning"])
    meta["class"] = info.get("class")
    meta["subclass"] = info.get("subclass")
    meta["wdisp"] = wdisp
    spec = Spectrum(
        flux=spec.flux,
        spectral_axis=spec.spectral_axis,
        uncertainty=spec.uncertainty,
        mask=spec.mask,
        meta=meta,
    )
    out = sdss_for_stellarml(spec)
    z = meta["z"]
    if use_redshift and z is not None and np.isfinite(z) and meta["zwarning"] == 0:
        out.meta["rv_source"], out.meta["rv_keyword"] = "header", "Z"
        z_err = meta["z_err"]
        if z_err is not None and np.isfinite(z_err) and z_err >= 0:
            out.meta["rv_err"] = C_KMS * z_err
        out = Spectrum(
            flux=out.flux,
            spectral_axis=u.Quantity(out.spectral_axis),
            uncertainty=out.uncertainty,
            mask=out.mask,
            meta=out.meta,
            redshift=z,
        )
    return out


def identify_boss(origin, *args, **kwargs):
    """Identifier for the astropy I/O registry: is this an SDSS-III/IV BOSS ``spec`` file?

    True for a FITS file with an SDSS primary header (``TELESCOP = 'SDSS 2.5-M'``, no
    APOGEE keywords) and a ``COADD`` table in HDU 1 with a ``wdisp`` column.

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
        Never raises.

    Examples
    --------
    The registry calls it with the path and an open file object (None here):

    >>> from stellarml.io import identify_boss
    >>> identify_boss("read", str(data_dir / "sdss" / "spec-3586-55181-0500.fits"), None)
    True
    >>> identify_boss("read", str(data_dir / "sdss" / "apVisit-r13-5095-55844-128.fits"), None)
    False
    """

    def test(hdul):
        return (
            _kind(hdul[0].header) == "boss"
            and len(hdul) > 1
            and getattr(hdul[1], "columns", None) is not None
            and "wdisp" in hdul[1].columns.names
        )

    return identify_hdulist(args, test)


def identify_apogee(origin, *args, **kwargs):
    """Identifier for the astropy I/O registry: an APOGEE apStar or apVisit file?

    True for a FITS file whose primary header `read_apogee` recognises as apStar or
    apVisit and that has the pixel mask in HDU 3.

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
        Never raises.

    Examples
    --------
    The registry calls it with the path and an open file object (None here):

    >>> from stellarml.io import identify_apogee
    >>> folder = data_dir / "sdss"
    >>> identify_apogee("read", str(folder / "apStar-dr17-2M17335483-2753043.fits"), None)
    True
    >>> identify_apogee("read", str(folder / "apVisit-r13-5095-55844-128.fits"), None)
    True
    >>> identify_apogee("read", str(folder / "spec-3586-55181-0500.fits"), None)
    False
    """

    def test(hdul):
        return _kind(hdul[0].header) in ("apstar", "apvisit") and len(hdul) > 3

    return identify_hdulist(args, test)


def _register():
    """Register the BOSS and APOGEE loaders (once; re-importing is harmless)."""
    loaders = (
        ("SDSS-BOSS-stellarml", identify_boss, read_boss),
        ("SDSS-APOGEE-stellarml", identify_apogee, read_apogee),
    )
    for name, identifier, reader in loaders:
        try:
            data_loader(
                name,
                identifier=identifier,
                dtype=Spectrum,
                extensions=["fits", "fit", "fits.gz"],
                priority=LOADER_PRIORITY,
            )(reader)
        except IORegistryError:  # already registered (module reloaded)
            pass


_register()
