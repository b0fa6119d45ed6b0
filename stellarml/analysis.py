"""``derive_labels``: stellar labels for specutils spectra, in one call.

Thin, specutils-style public functions that delegate to private ``_compute_*``
helpers: spectra are prepared for the model's grid (`stellarml.spectra.prepare`),
run through the model in batches, and turned into an `~astropy.table.QTable`
(`stellarml.catalog.build_label_table`).
"""

import numpy as np

from .flags import FATAL, LabelFlag

__all__ = ["DEFAULT_MODEL", "derive_labels", "read_model"]

#: Name of the pretrained model used when ``model=None``.
DEFAULT_MODEL = "remap-optical-r2000"

#: Probability in the first or last bin of a label PDF above which
#: `~stellarml.flags.LabelFlag.PDF_AT_GRID_EDGE` is set.
EDGE_MASS_LIMIT = 0.05


def read_model(path_or_name=DEFAULT_MODEL):
    """Read a trained model from an ASDF file or by the name of a shipped model.

    Parameters
    ----------
    path_or_name : str or path-like, optional
        A path to an ASDF file written by ``model.write``, or the name of a
        model shipped with stellarml (default ``"remap-optical-r2000"``).

    Returns
    -------
    model : `~stellarml.models.RemapModel`
        The model, ready for `derive_labels`. ``model.source_`` records the
        file path and its SHA-256 hash.
    """
    from .io.asdf.model_io import read_model as _read

    return _read(path_or_name)


def _resolve_model(model):
    if model is None:
        return read_model(DEFAULT_MODEL)
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        return read_model(model)
    if not hasattr(model, "predict_prepared") or not hasattr(model, "preparation"):
        raise TypeError(
            f"model must be a stellarml model, a path or a model name, not {type(model).__name__}"
        )
    return model


def derive_labels(
    spectra,
    model=None,
    *,
    device="auto",
    batch_size=1024,
    rv=None,
    resolution=None,
    fwhm=None,
):
    """Derive stellar labels for one or many spectra.

    Parameters
    ----------
    spectra : `~specutils.Spectrum`, `~specutils.SpectrumList`, SpectrumCollection or list
        The spectra: a 1-D `~specutils.Spectrum` (or ``Spectrum1D``), a 2-D
        batch on one spectral axis, a `~specutils.SpectrumList`, a
        `~specutils.SpectrumCollection`, or a (nested) list of these. Any
        astropy uncertainty class is accepted and masks are honoured; flux
        units are free because the model normalises the continuum.
    model : `~stellarml.models.RemapModel`, str or path-like, optional
        The model, a path to its ASDF file, or the name of a shipped model.
        `None` (default) uses `DEFAULT_MODEL`.
    device : str or `torch.device`, optional
        ``"auto"`` (default) uses CUDA when available, else the CPU.
    batch_size : int, optional
        Number of spectra per forward pass.
    rv : float, `~astropy.units.Quantity` or array, optional
        Radial velocity (km/s when a plain number) to remove, one per
        spectrum or one for all. `None` uses ``spectrum.radial_velocity``
        where set, else 0.
    resolution : float, optional
        Resolving power R of the input spectra. `None` reads
        ``spectrum.meta["resolution"]``, else ``fwhm``/``meta["lsf_fwhm"]``;
        when none is known the input is assumed to have the model's resolution
        and `~stellarml.flags.LabelFlag.RESOLUTION_ASSUMED` is set.
    fwhm : `~astropy.units.Quantity`, optional
        Instrumental FWHM of the input spectra (constant in wavelength).

    Returns
    -------
    table : `~astropy.table.QTable`
        One row per input spectrum, in input order. Label columns (e.g.
        ``teff`` [K], ``logg`` [dex], ``fe_h`` [dex]) hold the PDF medians,
        with ``*_err_lo``/``*_err_hi`` (median minus 16th percentile, 84th
        percentile minus median), ``*_p16``/``*_p50``/``*_p84`` and ``*_mode``;
        then ``snr``, ``rv`` [km/s], ``flags`` (a `~stellarml.flags.LabelFlag`
        bitmask) and ``flag_names``. Rows that could not be analysed have
        masked label values and a fatal flag saying why. ``table.meta``
        records the model name, version, file hash and provenance.

    Examples
    --------
    >>> from stellarml import derive_labels, read_model
    >>> from stellarml.data import example_spectra
    >>> spectra, truth = example_spectra()
    >>> table = derive_labels(spectra)
    >>> len(table) == len(truth)
    True
    """
    model = _resolve_model(model)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    from .spectra import prepare

    batch = prepare(spectra, model.preparation, rv=rv, resolution=resolution, fwhm=fwhm)
    return _compute_label_table(model, batch, device=device, batch_size=batch_size)


def _compute_label_table(model, batch, *, device, batch_size):
    """Run ``model`` on a `~stellarml.spectra.PreparedBatch` and build the table."""
    from .catalog import build_label_table

    n = len(batch)
    flags = np.asarray(batch.flags, dtype=np.int64).copy()
    good = (flags & int(FATAL)) == 0
    names = list(model.label_names)
    summary_keys = ("median", "mode", "mean", "p16", "p84", "err_lo", "err_hi")
    summaries = {name: {key: np.full(n, np.nan) for key in summary_keys} for name in names}
    if good.any():
        # rows flagged NO_UNCERTAINTY get a noise estimate from the flux (DER_SNR)
        # inside the model, because the network reads the S/N
        result = model.predict_prepared(
            batch.flux[good],
            batch.ivar[good],
            flags=flags[good],
            batch_size=batch_size,
            device=device,
            return_pdf=False,
        )
        for name in names:
            for key in summary_keys:
                summaries[name][key][good] = result["summary"][name][key]
        extra = np.zeros(int(good.sum()), dtype=np.int64)
        edge = np.max(np.stack([result["edge_mass"][name] for name in names]), axis=0)
        extra[edge > EDGE_MASS_LIMIT] |= int(LabelFlag.PDF_AT_GRID_EDGE)
        threshold = getattr(model, "domain_threshold_", None)
        if threshold is not None and "domain_distance" in result:
            extra[np.asarray(result["domain_distance"]) > threshold] |= int(
                LabelFlag.OUTSIDE_TRAINING_DOMAIN
            )
        estimated = np.asarray(result.get("estimated_snr", np.full(int(good.sum()), np.nan)))
        snr = np.asarray(batch.snr, dtype=float).copy()
        fill = good.copy()
        fill[good] = np.isfinite(estimated)
        snr[fill] = estimated[np.isfinite(estimated)]
        min_snr = _min_training_snr(model)
        if min_snr is not None:
            snr_good = snr[good]
            extra[np.isfinite(snr_good) & (snr_good < min_snr)] |= int(LabelFlag.LOW_SNR)
        flags[good] |= extra
    else:
        snr = np.asarray(batch.snr, dtype=float)
    return build_label_table(
        model.label_specs,
        summaries,
        flags=flags,
        snr=snr,
        rv=batch.rv,
        meta=_table_meta(model),
        messages=batch.messages,
    )


def _min_training_snr(model):
    """Lowest S/N per pixel the model was trained on (its noise augmentation), or None."""
    try:
        augment = model.get_config()["training"]["augment"]
    except (AttributeError, KeyError, TypeError):
        return None
    if not augment or augment.get("snr") is None:
        return None
    return float(np.min(augment["snr"]))


def _table_meta(model):
    """Provenance for ``table.meta``: model name, file, hash, training and calibration summary.

    Kept small (strings and numbers) so that it survives VOTable ``INFO`` and
    ECSV headers; the full provenance stays in the model file.
    """
    from . import __version__

    source = getattr(model, "source_", None) or {}
    prov = getattr(model, "provenance_", None) or {}
    meta = {
        "stellarml_version": __version__,
        "model_name": str(getattr(model, "name", "unknown")),
        "model_stellarml_version": str(prov.get("stellarml_version", "")),
        "model_file": str(source.get("path", "")),
        "model_sha256": str(source.get("sha256", "")),
        "calibration": "none (labels are the model's PDF summaries)",
    }
    ensemble = prov.get("ensemble") or {}
    if isinstance(ensemble, dict) and ensemble.get("n_members"):
        meta["model_ensemble_members"] = int(ensemble["n_members"])
    fit = prov.get("fit") or {}
    if isinstance(fit, dict):
        library = fit.get("library") or {}
        if isinstance(library, dict) and library.get("name"):
            meta["training_library"] = str(library["name"])
    ft = prov.get("fine_tune_library") or {}
    if ft:
        meta["fine_tune_library"] = str(ft.get("name", ""))
        meta["fine_tune_n_stars"] = len(ft.get("ids", []))
    return meta
