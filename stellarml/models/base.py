"""The contract every stellarml model meets, and the part of it all methods share.

`LabelModel` is what `stellarml.derive_labels`, the ``stellarml`` command and
the catalogue builder know of a model, and all they know: a method plugs in by
providing it. `LabelModelBase` implements the method-independent part
(descriptions, table provenance, the handling of spectra that could not be
prepared); each method adds its own through three hooks.

This module imports neither torch nor any method, so that it can be used to
check models cheaply (e.g. by the ASDF reader).
"""

import abc
from typing import Protocol, runtime_checkable

import numpy as np

from .._utils import stellarml_version
from ..flags import FATAL

__all__ = ["PRECISIONS", "LabelModel", "LabelModelBase", "check_method", "check_precision"]

#: Inference precisions a model may support: ``"fp32"`` (float32, what every
#: model does), ``"bf16"`` and ``"fp16"`` (mixed precision: the network's
#: matrix products in bfloat16 or float16, the posteriors in float32).
PRECISIONS = ("fp32", "bf16", "fp16")


def check_precision(precision):
    """Return ``precision`` if it is one of `PRECISIONS`, else raise a `ValueError`."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        choices = ", ".join(repr(p) for p in PRECISIONS)
        raise ValueError(f"precision must be one of {choices}, got {precision!r}")
    return precision


def check_method(model, method):
    """Raise a `ValueError` unless ``method`` is None or one of ``model.supported_methods``."""
    if method is None:
        return None
    supported = getattr(model, "supported_methods", None)
    if not supported:
        raise ValueError(
            f"{type(model).__name__} does not take a method (method={method!r}); "
            "only models that fit spectra, such as EmulatorModel, do"
        )
    if method not in supported:
        raise ValueError(
            f"{type(model).__name__} supports method "
            f"{', '.join(repr(m) for m in supported)}, not {method!r}"
        )
    return method


@runtime_checkable
class LabelModel(Protocol):
    """What every stellarml model provides (a runtime-checkable protocol).

    Attributes
    ----------
    name : str
        Model name, written to output tables.
    method : str
        The method the model implements (``"remap"``...), as a training
        configuration names it.
    label_specs : tuple of `~stellarml.labels.LabelSpec`
        The labels it predicts, in output order.
    preparation : `~stellarml.spectra.PreparationSettings`
        How spectra are put on its grid (`stellarml.spectra.prepare`).
    provenance_ : dict
        What it was trained on and how (plain Python values).
    calibration : `~stellarml.calibration.LabelCalibration` or None
        The correction `stellarml.derive_labels` applies to its posteriors
        (unless asked not to).

    Methods
    -------
    predict_posterior(batch, *, device="auto", batch_size=1024)
        The `~stellarml.posterior.LabelPosterior` of every row of a
        `~stellarml.spectra.PreparedBatch`, uncalibrated, in row order.
        Rows with a fatal flag come back not valid; rows flagged
        ``NO_UNCERTAINTY`` have a noise estimate already
        (`~stellarml.spectra.estimate_missing_noise`). Quality flags that only
        this model can compute (e.g. out of its training domain) are set in
        the posterior's ``flags``, its per-row diagnostics in ``diagnostics``.
        Optional: a model that can run in reduced precision also accepts a
        keyword ``precision`` (one of `PRECISIONS` other than ``"fp32"``);
        `stellarml.derive_labels` passes it only when one is asked for, so a
        model without it works at the default float32.
    describe()
        A JSON-friendly summary for ``stellarml info``.
    table_meta()
        Provenance for ``table.meta``: strings, numbers, booleans, None, or
        lists/dicts of these.

    Examples
    --------
    The check is structural: any object with these attributes and methods is
    a `LabelModel`, whether or not it derives from `LabelModelBase`.

    >>> from stellarml.models import LabelModel, RemapModel
    >>> isinstance(RemapModel(), LabelModel)
    True
    >>> isinstance("remap", LabelModel)
    False
    """

    name: str
    method: str
    label_specs: tuple
    preparation: object
    provenance_: dict
    calibration: object

    def predict_posterior(self, batch, *, device="auto", batch_size=1024):
        """The label posterior of every row of a prepared batch."""

    def describe(self):
        """A JSON-friendly description of the model."""

    def table_meta(self):
        """Provenance entries for ``table.meta``."""


class LabelModelBase(abc.ABC):
    """Shared implementation of `LabelModel` (a mixin for the model classes).

    A subclass provides ``name``, ``method``, ``label_specs`` and
    ``preparation`` and implements ``_posterior(batch, device, batch_size)``
    for batches without fatal rows; it may extend ``_describe_method()`` and
    ``_table_meta_method()``. A method that can infer in reduced precision
    lists it in ``supported_precisions``; its ``_posterior`` then also gets
    ``precision=`` (only when that is not ``"fp32"``).

    Attributes
    ----------
    label_names : tuple of str
        The names of ``label_specs``, in output order.
    calibration : `~stellarml.calibration.LabelCalibration` or None
        The correction `stellarml.derive_labels` applies (None: raw outputs).
    source_ : dict or None
        ``{"path", "sha256"}`` of the file the model was read from or written to.
    provenance_ : dict or None
        Training provenance.
    supported_methods : tuple of str or None
        The fitting methods ``predict_posterior`` accepts as ``method=``.
    supported_precisions : tuple of str
        The `PRECISIONS` ``predict_posterior`` accepts (``("fp32",)`` by default).

    Examples
    --------
    A toy method whose Teff [K] grows with the mean line depth; rows with a
    fatal flag never reach ``_posterior`` and come back not valid:

    >>> import astropy.units as u
    >>> import numpy as np
    >>> from stellarml.labels import get_label
    >>> from stellarml.models import LabelModel, LabelModelBase
    >>> from stellarml.posterior import GaussianPosterior
    >>> from stellarml.spectra import PreparationSettings, PreparedBatch, log_lambda_grid
    >>> class LineDepthModel(LabelModelBase):
    ...     method = "toy"
    ...
    ...     def __init__(self):
    ...         self.name = "toy"
    ...         self.label_specs = (get_label("teff"),)
    ...         grid = log_lambda_grid(5000.0, 5100.0, 1e-4)  # [Angstrom]
    ...         self.preparation = PreparationSettings(wavelength=grid * u.AA, resolution=2000.0)
    ...
    ...     def _posterior(self, batch, *, device, batch_size):
    ...         depth = 1.0 - batch.flux.mean(axis=1)
    ...         variance = np.full(len(batch), 100.0**2)  # [K^2]
    ...         return GaussianPosterior(4000.0 + 1e4 * depth, variance, ["teff"])
    >>> model = LineDepthModel()
    >>> isinstance(model, LabelModel), model.label_names
    (True, ('teff',))
    >>> npix = model.preparation.wavelength.size
    >>> batch = PreparedBatch(
    ...     flux=np.full((2, npix), 0.9, np.float32),
    ...     ivar=np.full((2, npix), 1e4, np.float32),
    ...     flags=np.array([0, 4]),  # the second row: BAD_INPUT (fatal)
    ...     snr=np.full(2, 100.0),
    ...     rv=np.zeros(2),
    ...     messages=["", "unreadable"],
    ... )
    >>> posterior = model.predict_posterior(batch)
    >>> posterior.valid, posterior.summaries()["teff"]["median"]
    (array([ True, False]), array([5000.,   nan]))
    >>> model.describe()["grid"]["n_pixels"], model.table_meta()["model_method"]
    (199, 'toy')
    """

    #: Name of the method (set by each model class).
    method = None
    #: The calibration applied by `stellarml.derive_labels` (None: raw outputs).
    calibration = None
    #: ``{"path", "sha256"}`` of the file the model was read from or written to.
    source_ = None
    #: Training provenance (set by training or when the model is read).
    provenance_ = None
    #: The fitting methods this model's ``_posterior`` accepts as ``method=``
    #: (None: it takes no ``method``).
    supported_methods = None
    #: The `PRECISIONS` this method's ``_posterior`` accepts (``"fp32"``: always;
    #: a method that sets more gets ``precision=`` in ``_posterior`` for them).
    supported_precisions = ("fp32",)

    @property
    def label_names(self):
        """Label names in output order (tuple of str)."""
        return tuple(spec.name for spec in self.label_specs)

    # ------------------------------------------------------------------ prediction
    def predict_posterior(
        self, batch, *, device="auto", batch_size=1024, precision="fp32", method=None
    ):
        """Label posteriors of every row of a prepared batch (uncalibrated).

        Parameters
        ----------
        batch : `~stellarml.spectra.PreparedBatch`
            Spectra on the model grid (`stellarml.spectra.prepare` with this
            model's ``preparation``); rows flagged ``NO_UNCERTAINTY`` should
            carry a noise estimate (`~stellarml.spectra.estimate_missing_noise`,
            as `stellarml.derive_labels` does).
        device : str or `torch.device`, optional
            ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        batch_size : int, optional
            Spectra per forward pass.
        precision : {"fp32", "bf16", "fp16"}, optional
            Arithmetic of the forward pass: ``"fp32"`` (default, float32
            throughout), or mixed precision where the method supports it (see
            ``supported_precisions``; e.g. REMAP: ``"bf16"`` on CPU and CUDA,
            ``"fp16"`` on CUDA only). Posteriors are float32 in every case.
        method : str, optional
            How a model that fits spectra derives the labels (e.g. an
            `~stellarml.models.emulator.EmulatorModel`: ``"gradient"``,
            ``"cmaes"``, ``"mcmc"``; see ``supported_methods``). `None` (default):
            the model's own default; a model without ``supported_methods``
            takes none.

        Returns
        -------
        posterior : `~stellarml.posterior.LabelPosterior`
            One row per batch row, in order. Rows with a fatal flag are not
            valid. ``posterior.flags`` holds the bits this model computes.

        Raises
        ------
        ValueError
            If ``precision`` is not one of `PRECISIONS` or this model does not
            support it, or if it does not support ``method``.
        """
        check_precision(precision)
        check_method(self, method)
        if precision not in self.supported_precisions:
            raise ValueError(
                f"{type(self).__name__} supports precision "
                f"{', '.join(repr(p) for p in self.supported_precisions)} only, "
                f"not {precision!r}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        npix = self.preparation.wavelength.size
        if batch.flux.ndim != 2 or batch.flux.shape[1] != npix:
            raise ValueError(
                f"the batch has spectra of shape {batch.flux.shape[1:]} but the model grid has "
                f"{npix} pixels: prepare them with this model's preparation settings"
            )
        good = (np.asarray(batch.flags, dtype=np.int64) & int(FATAL)) == 0
        rows = batch if good.all() else batch[good]
        extra = {} if precision == "fp32" else {"precision": precision}
        if method is not None:
            extra["method"] = method
        posterior = self._posterior(rows, device=device, batch_size=int(batch_size), **extra)
        if len(posterior) != len(rows) or posterior.label_names != self.label_names:
            raise RuntimeError(
                f"{type(self).__name__} returned a posterior of {len(posterior)} rows and "
                f"labels {list(posterior.label_names)} for {len(rows)} spectra and "
                f"{list(self.label_names)}"
            )
        return posterior if good.all() else posterior.expand(good)

    @abc.abstractmethod
    def _posterior(self, batch, *, device, batch_size):
        """The posterior of a batch without fatal rows (each method's own)."""

    # ------------------------------------------------------------------ descriptions
    def describe(self):
        """A JSON-friendly summary of the model: labels, grid, provenance, calibration.

        Returns
        -------
        info : dict
            ``name``, ``class``, ``method``, ``file``, ``labels`` (unit per
            label), ``grid`` (medium, range in Angstrom, pixels, resolving
            power), ``stellarml_version`` (of training), ``calibration`` and
            the method's own entries.
        """
        prep = self.preparation
        grid = prep.wavelength.to_value("AA")
        prov = dict(self.provenance_ or {})
        info = {
            "name": str(self.name),
            "class": type(self).__name__,
            "method": self.method,
            "file": dict(self.source_ or {}),
            "labels": {spec.name: {"unit": str(spec.unit)} for spec in self.label_specs},
            "grid": {
                "medium": prep.medium,
                "wavelength_min_AA": float(grid[0]),
                "wavelength_max_AA": float(grid[-1]),
                "n_pixels": int(grid.size),
                "resolution": prep.resolution,
            },
            "stellarml_version": prov.get("stellarml_version"),
            "calibration": None if self.calibration is None else self.calibration.describe(),
        }
        info.update(self._describe_method())
        return info

    def table_meta(self):
        """Provenance for ``table.meta``: model name, method, version, file and hash.

        Kept small (strings and numbers) so that it survives VOTable ``INFO``
        and ECSV headers; the full provenance stays in the model file. The
        calibration's entries are added by `stellarml.derive_labels`, which
        knows whether it applied it.
        """
        source = self.source_ or {}
        prov = self.provenance_ or {}
        meta = {
            "stellarml_version": stellarml_version(),
            "model_name": str(self.name),
            "model_method": str(self.method),
            "model_stellarml_version": str(prov.get("stellarml_version", "")),
            "model_file": str(source.get("path", "")),
            "model_sha256": str(source.get("sha256", "")),
        }
        meta.update(self._table_meta_method())
        return meta

    def _describe_method(self):
        """Method-specific entries of `describe` (none by default)."""
        return {}

    def _table_meta_method(self):
        """Method-specific entries of `table_meta` (none by default)."""
        return {}
