"""`ObservedLibrary`: spectral libraries of observed stars with reference labels (e.g. MILES)."""

import csv
import re
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.nddata import InverseVariance
from astropy.table import QTable

from .._utils import data_dir
from ..labels import get_label
from .base import SpectralLibrary, _as_label_table, _as_wavelength
from .emulated import file_sha256

__all__ = ["MILES_FILE_PATTERN", "MILES_LABELS_CSV", "ObservedLibrary"]

#: File name of a MILES v9.1 star, formatted with the 4-digit MILES id.
MILES_FILE_PATTERN = "MILES_res2.50_star_m{id}V.fits"
#: The list of MILES stars stellarml may use (for training, tuning and selection).
MILES_LABELS_CSV = "miles_train_labels.csv"
#: LSF FWHM of MILES v9.1 (Falcon-Barroso et al. 2011), used if a file does not say.
MILES_FWHM = 2.5 * u.AA

_ID = re.compile(r"^\d{1,4}$")


def _flatten(spectra):
    from specutils import Spectrum

    if isinstance(spectra, Spectrum):
        return [spectra]
    if isinstance(spectra, list | tuple):
        out = []
        for item in spectra:
            out.extend(_flatten(item))
        return out
    raise TypeError(
        f"spectra must be a specutils Spectrum or a list of them, got {type(spectra).__name__}"
    )


def _common(values, what):
    """The one value shared by all items (None if all None); error if they differ."""
    distinct = []
    for value in values:
        if not any(_same(value, d) for d in distinct):
            distinct.append(value)
    if len(distinct) > 1:
        raise ValueError(f"the spectra disagree on {what}: {distinct}; pass it explicitly")
    return distinct[0] if distinct else None


def _same(a, b):
    if a is None or b is None:
        return a is b
    if isinstance(a, u.Quantity) or isinstance(b, u.Quantity):
        try:
            return bool(u.Quantity(a) == u.Quantity(b))
        except u.UnitsError:
            return False
    return a == b


class ObservedLibrary(SpectralLibrary):
    """A `SpectralLibrary` of observed spectra with reference labels.

    Same constructor and methods as `SpectralLibrary`; the class methods build
    one from specutils spectra (`from_spectra`) or from the MILES stellar
    library (`from_miles`).

    Examples
    --------
    From specutils spectra (their LSF and medium in ``meta``) and a label table:

    >>> import numpy as np
    >>> import astropy.units as u
    >>> from astropy.nddata import StdDevUncertainty
    >>> from astropy.table import QTable
    >>> from specutils import Spectrum
    >>> from stellarml.libraries import ObservedLibrary
    >>> wave = np.linspace(5000.0, 5100.0, 201) * u.AA
    >>> spectra = [
    ...     Spectrum(
    ...         flux=np.full(201, level) * u.Jy,
    ...         spectral_axis=wave,
    ...         uncertainty=StdDevUncertainty(np.full(201, 0.01) * u.Jy),
    ...         meta={"medium": "air", "resolution": 5000.0},
    ...     )
    ...     for level in (1.0, 2.0)
    ... ]
    >>> labels = QTable({"teff": [5000.0, 6000.0] * u.K, "logg": [4.5, 4.0] * u.dex})
    >>> library = ObservedLibrary.from_spectra(spectra, labels)
    >>> print(library.flux.shape, library.medium, library.resolution, library.ivar[0, 0])
    (2, 201) air 5000.0 10000.0

    `from_miles` has an example that reads MILES stars.
    """

    @classmethod
    def from_spectra(
        cls, spectra, labels, *, wavelength=None, medium=None, resolution=None, fwhm=None, meta=None
    ):
        """Build a library from specutils spectra and a label table.

        Parameters
        ----------
        spectra : `~specutils.Spectrum` or list of them
            1-D spectra or 2-D batches (rows are spectra), in order. Flux units
            may differ if convertible (to the first spectrum's unit); any
            astropy uncertainty class is turned into inverse variance, masked
            and non-finite pixels get ``ivar = 0``.
        labels : `~astropy.table.QTable` or dict
            One row per spectrum (label columns as Quantities).
        wavelength : `~astropy.units.Quantity`, optional
            Common grid. Default: the first spectrum's grid. Spectra on other
            grids are resampled onto it with `stellarml.spectra.resample_flux`
            (flux-conserving, ``ivar`` propagated).
        medium : {"air", "vacuum"}, optional
            Default: ``meta["medium"]`` of the spectra (must agree), else vacuum.
        resolution : float, optional
            Resolving power; default ``meta["resolution"]`` of the spectra.
        fwhm : `~astropy.units.Quantity`, optional
            LSF FWHM; default ``meta["lsf_fwhm"]`` of the spectra.
        meta : dict, optional
            Provenance for the library.

        Returns
        -------
        library : `ObservedLibrary`

        Raises
        ------
        ValueError
            If the LSF is unknown (an observed library needs it), spectra disagree
            on medium or LSF, some have uncertainties and others not, pixels are
            masked in spectra without uncertainty, or labels do not match.
        """
        items = _flatten(spectra)
        if not items:
            raise ValueError("no spectra given")
        if medium is None:
            medium = _common([s.meta.get("medium") for s in items], "medium") or "vacuum"
        if resolution is None and fwhm is None:
            resolution = _common([s.meta.get("resolution") for s in items], "resolution")
            fwhm = _common([s.meta.get("lsf_fwhm") for s in items], "lsf_fwhm")
            if resolution is None and fwhm is None:
                raise ValueError(
                    "the line-spread function of the spectra is unknown: pass resolution= "
                    "(R) or fwhm= (or set meta['resolution'] / meta['lsf_fwhm'])"
                )
        has_unc = [s.uncertainty is not None for s in items]
        if any(has_unc) and not all(has_unc):
            raise ValueError("some spectra have uncertainties and others not")
        flux_unit = items[0].flux.unit
        grids, fluxes, ivars = [], [], []
        for i, spec in enumerate(items):
            wave = _as_wavelength(spec.spectral_axis)
            try:
                # Per-pixel factor to the common flux unit (1 for the same unit).
                factor = (
                    1.0
                    if spec.flux.unit == flux_unit
                    else (np.ones(wave.size) * spec.flux.unit).to_value(
                        flux_unit, equivalencies=u.spectral_density(wave * u.AA)
                    )
                )
            except u.UnitsError:
                raise u.UnitsError(
                    f"spectrum {i} has flux unit {spec.flux.unit!s}, not convertible to "
                    f"{flux_unit!s} (the first spectrum's)"
                ) from None
            if spec.flux.ndim > 2:
                raise ValueError(f"spectrum {i} has {spec.flux.ndim}-D flux; give 1-D or 2-D")
            # Rows are spectra: a 2-D batch with its spectral axis first is transposed.
            rows = np.transpose if getattr(spec, "spectral_axis_index", -1) == 0 else np.asarray
            flux = np.atleast_2d(rows(spec.flux.value)) * factor
            mask = (
                None
                if spec.mask is None
                else np.broadcast_to(np.atleast_2d(rows(spec.mask)), flux.shape)
            )
            if spec.uncertainty is not None:
                ivar = np.atleast_2d(rows(spec.uncertainty.represent_as(InverseVariance).array))
                ivar = ivar / factor**2
                ivar = np.where(np.isfinite(ivar) & (ivar > 0) & np.isfinite(flux), ivar, 0.0)
                if mask is not None:
                    ivar = np.where(mask, 0.0, ivar)
            else:
                if mask is not None and np.any(mask):
                    raise ValueError(
                        f"spectrum {i} has masked pixels but no uncertainty; give an "
                        "uncertainty so that masked pixels can get zero weight"
                    )
                ivar = None
            grids.append(wave)
            fluxes.append(flux)
            ivars.append(ivar)
        target = grids[0] if wavelength is None else _as_wavelength(wavelength)
        if any(g.shape != target.shape or not np.array_equal(g, target) for g in grids):
            from ..spectra import resample_flux

            for i, wave in enumerate(grids):
                if wave.shape == target.shape and np.array_equal(wave, target):
                    continue
                if ivars[i] is None and (target[0] < wave[0] or target[-1] > wave[-1]):
                    raise ValueError(
                        f"spectrum {i} ({wave[0]:.1f}-{wave[-1]:.1f} Angstrom) does not cover "
                        f"the common grid ({target[0]:.1f}-{target[-1]:.1f}) and has no "
                        "uncertainty to mark the missing pixels"
                    )
                fluxes[i], ivar_r = resample_flux(wave, fluxes[i], ivars[i], target)
                ivars[i] = None if ivars[i] is None else ivar_r
        flux = np.concatenate(fluxes, axis=0)
        ivar = None if ivars[0] is None else np.concatenate(ivars, axis=0)
        table = _as_label_table(labels)
        if len(table) != flux.shape[0]:
            raise ValueError(f"{len(table)} label rows for {flux.shape[0]} spectra")
        meta = {"flux_unit": flux_unit.to_string(), **(meta or {})}
        return cls(
            table,
            target * u.AA,
            flux,
            ivar,
            medium=medium,
            resolution=resolution,
            fwhm=fwhm,
            meta=meta,
        )

    @classmethod
    def from_miles(
        cls, directory=None, labels_csv=None, *, require=("teff", "logg", "fe_h"), ids=None
    ):
        """The MILES observed stellar library, restricted to the training list.

        Only the stars listed in ``miles_train_labels.csv`` are ever read: the
        other MILES stars are reserved for independent evaluation and must not
        be used for training, tuning or selection. Stars lacking a required
        label, with a malformed id, a label outside the physical range or no
        spectrum file are dropped, each with a record in ``meta["dropped"]``.

        MILES (Sanchez-Blazquez et al. 2006; v9.1, Falcon-Barroso et al. 2011)
        spectra are 3540.5-7409.6 Angstrom at 0.9 Angstrom/px in air, with a
        FWHM of 2.5 Angstrom and relative fluxes; the labels are Cenarro et al.
        (2007). The files carry no per-pixel uncertainties, so ``ivar`` is None:
        add noise with `SpectralLibrary.add_noise`, or let
        `SpectralLibrary.prepare` treat them with unit weights (flagged
        ``NO_UNCERTAINTY``).

        Parameters
        ----------
        directory : str or `~pathlib.Path`, optional
            Folder with the ``MILES_res2.50_star_mNNNNV.fits`` files. Default:
            ``stellarml._utils.data_dir() / "miles"``.
        labels_csv : str or `~pathlib.Path`, optional
            CSV with ``miles_id`` and label columns (registry names, registry
            units; empty = unknown). Default: ``directory / "miles_train_labels.csv"``.
        require : sequence of str, optional
            Labels every star must have; they become the library's label
            columns.
        ids : sequence of str or int, optional
            Only these stars (each must be in the CSV).

        Returns
        -------
        library : `ObservedLibrary`
            ``labels["id"]`` holds 4-digit ids (``"0001"``), in CSV order;
            ``medium`` "air", ``fwhm`` 2.5 Angstrom, ``ivar`` None.

        Raises
        ------
        FileNotFoundError
            If the label CSV does not exist.
        ValueError
            If the CSV lacks a required column, ``ids`` names a star outside the
            training list, ``require`` is empty, or no star is usable.

        Examples
        --------
        Two of the MILES stars of the training list:

        >>> from stellarml.libraries import ObservedLibrary
        >>> miles = ObservedLibrary.from_miles(data_dir / "miles", ids=["0010", "0016"])
        >>> print(miles)
        <ObservedLibrary 'MILES': 2 spectra x 4300 px, 3540.5-7409.6 Angstrom (air), ...>
        >>> print(miles.labels["id"].tolist(), miles.labels["teff"].unit, miles.fwhm, miles.ivar)
        ['0010', '0016'] K 2.5 Angstrom None
        """
        directory = Path(directory) if directory is not None else data_dir() / "miles"
        labels_csv = Path(labels_csv) if labels_csv is not None else directory / MILES_LABELS_CSV
        if not labels_csv.is_file():
            raise FileNotFoundError(f"MILES label list not found: {labels_csv}")
        require = [str(name) for name in require]
        if not require:
            raise ValueError("require must name at least one label")
        specs = {name: get_label(name) for name in require}
        with open(labels_csv, newline="") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            rows = list(reader)
        missing_cols = [c for c in ["miles_id", *require] if c not in columns]
        if missing_cols:
            raise ValueError(f"{labels_csv} lacks columns {missing_cols} (has {columns})")
        listed = {row["miles_id"].strip() for row in rows}
        if ids is not None:
            wanted = {_normalise_id(i) for i in ids}
            unknown = sorted(wanted - {_normalise_id(i) for i in listed if _ID.match(i)})
            if unknown:
                raise ValueError(
                    f"MILES ids {unknown} are not in {labels_csv.name}: stars outside the "
                    "training list are reserved for independent evaluation and never read"
                )
        dropped, kept, values = [], [], {name: [] for name in require}
        seen = set()
        for line, row in enumerate(rows, start=2):
            raw = row["miles_id"].strip()
            if not _ID.match(raw):
                dropped.append(
                    {"id": raw, "reason": f"malformed miles_id {raw!r} (CSV line {line})"}
                )
                continue
            star = _normalise_id(raw)
            if ids is not None and star not in wanted:
                continue
            if star in seen:
                dropped.append({"id": star, "reason": f"duplicate miles_id (CSV line {line})"})
                continue
            seen.add(star)
            reason, parsed = None, {}
            for name, spec in specs.items():
                text = (row[name] or "").strip()
                if not text:
                    reason = f"missing {name}"
                    break
                try:
                    value = float(text)
                except ValueError:
                    reason = f"non-numeric {name} {text!r}"
                    break
                if not spec.check(value):
                    reason = f"{name} {value:g} outside the physical range {spec.physical_range}"
                    break
                parsed[name] = value
            if reason is None and not (directory / MILES_FILE_PATTERN.format(id=star)).is_file():
                reason = f"spectrum file {MILES_FILE_PATTERN.format(id=star)} not found"
            if reason is not None:
                dropped.append({"id": star, "reason": reason})
                continue
            kept.append(star)
            for name in require:
                values[name].append(parsed[name])
        if not kept:
            raise ValueError(
                f"no usable MILES stars: {len(rows)} rows in {labels_csv}, {len(dropped)} dropped "
                f"(e.g. {dropped[:3]}); check directory={directory}"
            )
        spectra = [_read_miles(directory / MILES_FILE_PATTERN.format(id=star)) for star in kept]
        table = QTable({"id": np.array(kept, dtype=str)})
        for name in require:
            table[name] = np.array(values[name]) * specs[name].unit
        fwhm = _common([s.meta.get("lsf_fwhm", MILES_FWHM) for s in spectra], "lsf_fwhm")
        meta = {
            "name": "MILES",
            "source": str(directory.resolve()),
            "labels_csv": str(labels_csv.resolve()),
            "labels_csv_sha256": file_sha256(labels_csv),
            "n_csv_rows": len(rows),
            "ids": list(kept),
            "dropped": dropped,
            "require": list(require),
            "reference": "MILES v9.1: Sanchez-Blazquez et al. 2006, Falcon-Barroso et al. 2011; "
            "labels: Cenarro et al. 2007",
            "uncertainty": "none: MILES files carry no per-pixel errors (ivar is None)",
        }
        return cls.from_spectra(spectra, table, medium="air", fwhm=fwhm, meta=meta)


def _normalise_id(value):
    text = str(value).strip()
    if not _ID.match(text):
        raise ValueError(f"malformed MILES id {value!r}: expected up to 4 digits")
    return text.zfill(4)


def _read_miles(path):
    from specutils import Spectrum

    import stellarml.io  # noqa: F401  (registers the MILES loader)

    return Spectrum.read(path, format="MILES")
