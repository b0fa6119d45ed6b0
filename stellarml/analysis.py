"""``derive_labels``: stellar labels for specutils spectra, in one call.

Thin, specutils-style public functions that delegate to private ``_compute_*``
helpers: spectra are prepared for the model's grid (`stellarml.spectra.prepare`),
spectra without uncertainties get a noise estimate
(`stellarml.spectra.estimate_missing_noise`), the model returns a
`~stellarml.posterior.LabelPosterior` (`~stellarml.models.LabelModel.predict_posterior`),
its calibration corrects it, and `stellarml.catalog.build_label_table` turns it
into an `~astropy.table.QTable`. Nothing here knows which method a model implements.
"""

import inspect

import numpy as np

from .models.base import LabelModel, check_method, check_precision

__all__ = ["DEFAULT_MODEL", "derive_labels", "read_model", "write_model"]

#: Name of the pretrained model used when ``model=None``.
DEFAULT_MODEL = "remap-optical-r2000"


def read_model(path_or_name=DEFAULT_MODEL):
    """Read a trained model from an ASDF file or by the name of a shipped model.

    The top-level ``stellarml.read_model``: a thin wrapper of
    `stellarml.io.asdf.read_model` (not the same object) whose argument
    defaults to `DEFAULT_MODEL`.

    Parameters
    ----------
    path_or_name : str or path-like, optional
        A path to an ASDF file written by `write_model`, or the name of a
        model shipped with stellarml (default ``"remap-optical-r2000"``). A
        `str` without a path separator and without the ``.asdf`` suffix is a
        name; anything else is a path.

    Returns
    -------
    model : `~stellarml.models.LabelModel`
        The model, ready for `derive_labels`. ``model.source_`` records the
        file path and its SHA-256 hash.

    Raises
    ------
    ~stellarml.io.asdf.ModelFileNotFoundError
        The file does not exist, or no shipped model has that name (the
        message lists the available names).
    ~stellarml.io.asdf.ModelFileError
        The file is not ASDF, is corrupted, holds no stellarml model or holds
        invalid values (see `stellarml.io.asdf.read_model`).
    ~stellarml.io.asdf.UnsupportedModelVersionError
        The file was written with a tag version this stellarml cannot read.
    TypeError
        ``path_or_name`` is neither a string nor path-like.

    Examples
    --------
    >>> from stellarml import read_model
    >>> model = read_model("phdl-optical-r2000")  # a shipped model, by name
    >>> type(model).__name__, model.label_names
    ('EmulatorModel', ('teff', 'logg', 'fe_h'))
    >>> model.source_["path"].endswith("phdl-optical-r2000.asdf"), len(model.source_["sha256"])
    (True, 64)
    >>> from stellarml import DEFAULT_MODEL
    >>> DEFAULT_MODEL  # what read_model() reads: a deep ensemble of three REMAP networks
    'remap-optical-r2000'
    >>> try:
    ...     read_model("no-such-model")
    ... except FileNotFoundError as err:  # a stellarml.io.asdf.ModelFileNotFoundError
    ...     print(err)
    no shipped model named 'no-such-model'; available: ... (pass a path to read a model file)
    """
    from .io.asdf.model_io import read_model as _read

    return _read(path_or_name)


def write_model(model, path, *, compression=None):
    """Write a trained model (with its calibration) to an ASDF file, atomically.

    The top-level ``stellarml.write_model``: a thin wrapper of
    `stellarml.io.asdf.write_model` (not the same object).

    Parameters
    ----------
    model : `~stellarml.models.LabelModel`
        A model whose class has a stellarml ASDF converter.
    path : str or path-like
        Destination (conventionally ``*.asdf``); overwritten if it exists.
    compression : {None, "zlib", "bzp2", "lz4"}, optional
        Block compression of the weight arrays.

    Returns
    -------
    sha256 : str
        SHA-256 of the written file (also in ``model.source_``).

    Raises
    ------
    TypeError
        If ``model`` is not a `~stellarml.models.LabelModel` with an ASDF
        converter.
    ~stellarml.io.asdf.ModelFileError
        If the model violates its schema or the file cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stellarml import read_model, write_model
    >>> model = read_model("phdl-optical-r2000")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "my-model.asdf"
    ...     sha256 = write_model(model, path)
    ...     copy = read_model(path)
    >>> copy.source_["sha256"] == sha256  # the hash of the file just written
    True
    >>> copy.name, copy.label_names
    ('phdl-optical-r2000', ('teff', 'logg', 'fe_h'))
    """
    from .io.asdf.model_io import write_model as _write

    return _write(model, path, compression=compression)


def _resolve_model(model):
    if model is None:
        return read_model(DEFAULT_MODEL)
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        return read_model(model)
    if not isinstance(model, LabelModel):
        raise TypeError(
            f"model must be a stellarml model (a LabelModel), a path or a model name, "
            f"not {type(model).__name__}"
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
    medium=None,
    calibrate=True,
    return_posterior=False,
    precision="fp32",
    method=None,
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
    model : `~stellarml.models.LabelModel`, str or path-like, optional
        The model, a path to its ASDF file, or the name of a shipped model.
        `None` (default) uses `DEFAULT_MODEL`.
    device : str or `torch.device`, optional
        ``"auto"`` (default) uses CUDA when available, else the CPU.
    batch_size : int, optional
        Number of spectra per forward pass.
    rv : float, `~astropy.units.Quantity` or array, optional
        Radial velocity (km/s when a plain number) to remove, one per
        spectrum or one for all (``rv_source`` "given"). `None` uses each
        spectrum's ``redshift``/``radial_velocity`` where set (``rv = c z``;
        ``rv_source`` "header" when a stellarml reader took it from the file,
        else "given"), and **measures** it where neither is set
        (`~stellarml.spectra.measure_rv`: chi2 against the shipped synthetic
        templates over the model's wavelength range, whatever the model's
        method; ``rv_source`` "estimated"). A failed measurement leaves rv 0
        and sets `~stellarml.flags.LabelFlag.RV_UNRELIABLE`. Pass ``rv=0`` for
        spectra known to be in the rest frame.
    resolution : float, optional
        Resolving power R of the input spectra. `None` reads
        ``spectrum.meta["resolution"]``, else ``fwhm``/``meta["lsf_fwhm"]``;
        when none is known the input is assumed to have the model's resolution
        and `~stellarml.flags.LabelFlag.RESOLUTION_ASSUMED` is set.
    fwhm : `~astropy.units.Quantity`, optional
        Instrumental FWHM of the input spectra (constant in wavelength).
    medium : {"air", "vacuum"}, optional
        Wavelength medium of the input spectra. `None` reads
        ``spectrum.meta["medium"]``; where that is missing, vacuum is assumed
        and `~stellarml.flags.LabelFlag.MEDIUM_ASSUMED` is set. What was
        assumed is logged once per call (astropy's logger, one line per kind
        of assumption with the number of spectra).
    calibrate : bool, optional
        Apply the model's `~stellarml.calibration.LabelCalibration` (default).
        `False` gives the model's raw outputs; ``table.meta["calibration"]``
        says which was done.
    return_posterior : bool, optional
        Also return the `~stellarml.posterior.LabelPosterior` behind the
        table (calibrated like it), one row per table row.
    precision : {"fp32", "bf16", "fp16"}, optional
        Arithmetic of the model's forward pass. ``"fp32"`` (default): float32,
        what every model does. ``"bf16"`` (CPU or CUDA) and ``"fp16"`` (CUDA
        only): mixed precision (`torch.autocast`) for models that support it,
        such as the REMAP models; it is passed to the model's
        ``predict_posterior`` only when it is not ``"fp32"``. The posteriors
        and all summaries stay float32; labels move by a small fraction of
        their uncertainties (see ``benchmarks/precision.py``).
    method : str, optional
        For models that fit each spectrum (an
        `~stellarml.models.emulator.EmulatorModel`): the fitter,
        ``"gradient"``, ``"cmaes"`` or ``"mcmc"`` (see :doc:`/fitting`).
        `None` (default) uses the model's own; it is passed to the model only
        when given, and a model that takes no method raises a `ValueError`.

    Returns
    -------
    table : `~stellarml.catalog.LabelTable`
        One row per input spectrum, in input order. Label columns (e.g.
        ``teff`` [K], ``logg`` [dex], ``fe_h`` [dex]) hold the posterior
        medians, with ``*_err_lo``/``*_err_hi`` (median minus 16th percentile,
        84th percentile minus median), ``*_p16``/``*_p50``/``*_p84`` and
        ``*_mode``; then ``snr``, ``rv`` and ``rv_err`` [km/s], ``rv_source``,
        the model's diagnostics (e.g.
        ``domain_distance``), ``flags`` (a `~stellarml.flags.LabelFlag`
        bitmask) and ``flag_names``. Rows that could not be analysed have
        masked label values and a fatal flag saying why. ``table.meta``
        records the model name, version, file hash, provenance and the
        calibration.
    posterior : `~stellarml.posterior.LabelPosterior`
        Only with ``return_posterior=True``.

    Raises
    ------
    ValueError
        If ``precision`` is not one of ``"fp32"``, ``"bf16"``, ``"fp16"``, if
        the model does not support it, or if the device does not (``"fp16"``
        on the CPU).

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
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    _check_model_precision(model, precision)
    check_method(model, method)
    from .spectra import prepare_with_rv

    batch = prepare_with_rv(
        spectra, model.preparation, rv=rv, resolution=resolution, fwhm=fwhm, medium=medium
    )
    table, posterior = _compute_label_table(
        model,
        batch,
        device=device,
        batch_size=batch_size,
        calibrate=calibrate,
        precision=precision,
        method=method,
    )
    return (table, posterior) if return_posterior else table


def _check_model_precision(model, precision):
    """Raise a `ValueError` unless ``model`` can predict in ``precision``."""
    check_precision(precision)
    if precision == "fp32":
        return
    supported = getattr(model, "supported_precisions", None)
    if supported is None:
        try:
            params = inspect.signature(model.predict_posterior).parameters
        except (TypeError, ValueError):  # no introspectable signature: let the call decide
            return
        takes = "precision" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
        supported = ("fp32", precision) if takes else ("fp32",)
    if precision not in supported:
        raise ValueError(
            f"{type(model).__name__} does not support precision={precision!r} (it supports "
            f"{', '.join(repr(p) for p in supported)}); use precision='fp32'"
        )


def _compute_label_table(
    model, batch, *, device, batch_size, calibrate=True, precision="fp32", method=None
):
    """Run ``model`` on a `~stellarml.spectra.PreparedBatch`; return (table, posterior)."""
    from .catalog import build_label_table
    from .flags import FATAL
    from .spectra import estimate_missing_noise

    _check_model_precision(model, precision)
    batch = estimate_missing_noise(batch)
    extra = {} if precision == "fp32" else {"precision": precision}
    if check_method(model, method) is not None:
        extra["method"] = method
    posterior = model.predict_posterior(batch, device=device, batch_size=batch_size, **extra)
    if len(posterior) != len(batch):
        raise RuntimeError(
            f"{type(model).__name__}.predict_posterior returned {len(posterior)} rows "
            f"for {len(batch)} spectra"
        )
    calibration = model.calibration
    applied = bool(calibrate) and calibration is not None
    if applied:
        posterior = calibration(posterior)
    flags = np.asarray(batch.flags, dtype=np.int64) | posterior.flags | posterior.bimodal_flags()
    fatal = (flags & int(FATAL)) != 0
    table = build_label_table(
        model.label_specs,
        posterior.summaries(),
        flags=flags,
        snr=batch.snr,
        rv=batch.rv,
        rv_err=batch.rv_err,
        rv_source=batch.rv_source,
        meta=_table_meta(model, applied),
        messages=batch.messages,
        diagnostics=posterior.diagnostics,
    )
    if fatal.any():
        posterior = posterior[~fatal].expand(~fatal)
    return table, posterior.with_flags(flags)


def _table_meta(model, applied):
    """``model.table_meta()`` plus what was done about calibration."""
    meta = dict(model.table_meta())
    calibration = model.calibration
    if applied:
        meta.update(calibration.table_meta())
    elif calibration is not None:
        meta["calibration"] = (
            f"none: the raw model outputs (calibrate=False; the model carries "
            f"{calibration.summary()})"
        )
    else:
        meta["calibration"] = "none: the model has no calibration (raw model outputs)"
    return meta
