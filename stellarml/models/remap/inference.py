"""deep-REMAP inference: forward passes, label posteriors, the model's own quality flags.

`RemapPredictor` is the prediction side shared by
`~stellarml.models.RemapModel` and `~stellarml.models.RemapEnsemble`: each
network's heads give a `~stellarml.posterior.BinnedPosterior`, the members of
an ensemble are combined by `~stellarml.posterior.LabelPosterior.combine` (an
equal-weight mixture of their PDFs), and the flags only REMAP can compute are
set on the result: ``PDF_AT_GRID_EDGE``, ``OUTSIDE_TRAINING_DOMAIN`` (from the
distance of the embedding to the stored training embeddings) and ``LOW_SNR``
(below the noise augmentation's lowest S/N).
"""

import contextlib

import numpy as np
import torch

from ..._utils import resolve_device
from ...flags import FATAL, LabelFlag
from ...posterior import BinnedPosterior
from ...spectra.noise import der_snr_ivar
from ..base import PRECISIONS, LabelModelBase, check_precision
from ..domain import line_statistics
from .config import CPU_BATCH
from .pdf import pdf_from_logits

__all__ = [
    "EDGE_MASS_LIMIT",
    "FEATURELESS_DISTANCE",
    "FEATURELESS_LINE_CONTRAST",
    "MAX_LINE_RMS",
    "NOT_A_STAR_DISTANCE",
    "RemapPredictor",
]

#: Probability in the first or last bin of a label PDF above which
#: `~stellarml.flags.LabelFlag.PDF_AT_GRID_EDGE` is set.
EDGE_MASS_LIMIT = 0.05

#: Domain distance (in units of the model's ``domain_threshold_``) above which
#: `~stellarml.flags.LabelFlag.NOT_A_STAR` is set (``OUTSIDE_TRAINING_DOMAIN``
#: is set above 1). Chosen on the tuning half of ``benchmarks/not_a_star.py``.
NOT_A_STAR_DISTANCE = 2.5

#: ``line_rms`` of `~stellarml.models.domain.line_statistics` (dimensionless)
#: above which ``NOT_A_STAR`` is set: emission lines (or very noisy input).
MAX_LINE_RMS = 0.3

#: ``line_contrast`` of `~stellarml.models.domain.line_statistics` below
#: which a spectrum counts as featureless; with a domain distance above
#: `FEATURELESS_DISTANCE` (threshold units) ``NOT_A_STAR`` is set.
FEATURELESS_LINE_CONTRAST = 1.25

#: See `FEATURELESS_LINE_CONTRAST`.
FEATURELESS_DISTANCE = 0.85

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast(precision, device):
    """The context of a forward pass in ``precision`` on ``device`` (a `torch.device`).

    ``"fp32"``: no autocast at all (float32 throughout, bit-identical to a
    plain forward pass). ``"bf16"``/``"fp16"``: `torch.autocast`, which runs
    convolutions and linear layers in that type and keeps reductions in
    float32. float16 autocast is CUDA-only here; bfloat16 on CUDA needs a GPU
    that supports it.
    """
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"precision={precision!r} is supported on CPU and CUDA, not {device}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            "precision='fp16' needs a CUDA device (float16 autocast is CUDA-only); "
            "on the CPU use precision='bf16' or 'fp32'"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"precision='bf16' is not supported by {torch.cuda.get_device_name(device)}; "
            "use 'fp16' or 'fp32'"
        )
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])


def _pinned(tensor, device):
    """``tensor`` in page-locked host memory when it goes to a CUDA ``device``, else as is.

    Copies from pinned memory with ``non_blocking=True`` overlap with the GPU's
    work; from pageable memory they are synchronous. Nothing is done for the
    CPU (or a tensor already on the device or already pinned).
    """
    if device.type != "cuda" or tensor.device.type != "cpu" or tensor.is_pinned():
        return tensor
    return tensor.pin_memory()


def _forward_member(
    model, flux, ivar, scale, *, batch_size, device, want_embedding, precision="fp32"
):
    """One network over ``(n, npix)`` tensors, in batches.

    Returns the PDFs ``{label: (n, K) float32}``, the embedding ``(n, E)``
    (or None) and the distance of each embedding to the nearest stored
    training embedding divided by ``scale`` (or None without a reference).
    With ``precision`` ``"bf16"``/``"fp16"`` only the network runs under
    `torch.autocast`: its logits and embedding are cast to float32 before the
    PDFs and the distances.
    """
    autocast = _autocast(precision, device)
    net = model._inference_net(device)
    loss = model.get_config()["loss"]
    variant, clip = loss["variant"], loss["clip"]
    bins = model.label_bins()
    n = flux.shape[0]
    pdfs = {name: np.empty((n, b.n_bins), dtype=np.float32) for name, b in bins.items()}
    emb_out = (
        np.empty((n, net.config["embedding_dim"]), dtype=np.float32) if want_embedding else None
    )
    ref = getattr(model, "domain_reference_", None)
    if ref is not None:
        ref = torch.from_numpy(np.ascontiguousarray(ref)).to(device)
    dist = np.empty(n, dtype=np.float64) if ref is not None else None
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            f = flux[start:stop].to(device, non_blocking=True)
            iv = ivar[start:stop].to(device, non_blocking=True)
            with autocast:
                logits, emb = net(f, iv)
            if precision != "fp32":
                logits, emb = tuple(z.float() for z in logits), emb.float()
            for name, z in zip(bins, logits, strict=True):
                pdfs[name][start:stop] = pdf_from_logits(z, variant, clip).cpu().numpy()
            if want_embedding:
                emb_out[start:stop] = emb.cpu().numpy()
            if ref is not None:
                d = torch.cdist(emb, ref).min(dim=1).values
                if scale != 1.0:
                    d = d / scale
                dist[start:stop] = d.cpu().numpy()
    return pdfs, emb_out, dist


class RemapPredictor(LabelModelBase):
    """Prediction entry points shared by `RemapModel` and `RemapEnsemble`.

    Subclasses provide ``preparation``, ``device``, ``label_bins()``,
    ``get_config()``, ``domain_threshold_``, ``_check_fitted``, ``_arrays``
    and ``_prediction_members`` (the networks that predict and the scale each
    one's domain distance is divided by).
    """

    method = "remap"
    #: ``"bf16"`` (CPU and CUDA) and ``"fp16"`` (CUDA) run the networks under
    #: `torch.autocast`; the PDFs and everything after stay float32.
    supported_precisions = PRECISIONS

    # ------------------------------------------------------------------ forward
    def _forward(self, flux, ivar, *, batch_size, device, want_embedding=False, precision="fp32"):
        """The combined posterior (no quality flags yet) of ``(n, npix)`` tensors.

        Returns ``(posterior, embedding)``: the embedding is the first
        network's (None unless ``want_embedding``); the posterior's
        ``domain_distance`` diagnostic is the largest member distance in the
        units of `domain_threshold_`. On CUDA the inputs are pinned once so
        that the batch copies are asynchronous.
        """
        dev = resolve_device(device)
        _autocast(precision, dev)  # fail before any work on an unsupported precision
        if dev.type == "cpu":  # smaller CPU batches keep the activations in cache (~20 % faster)
            batch_size = min(batch_size, CPU_BATCH)
        flux, ivar = _pinned(flux, dev), _pinned(ivar, dev)
        bins = self.label_bins()
        members, scales = self._prediction_members()
        posteriors, embedding = [], None
        for k, (member, scale) in enumerate(zip(members, scales, strict=True)):
            pdfs, emb, dist = _forward_member(
                member,
                flux,
                ivar,
                float(scale),
                batch_size=batch_size,
                device=dev,
                want_embedding=want_embedding and k == 0,
                precision=precision,
            )
            if k == 0:
                embedding = emb
            diagnostics = {} if dist is None else {"domain_distance": dist}
            posteriors.append(BinnedPosterior(pdfs, bins, diagnostics=diagnostics))
        return BinnedPosterior.combine(posteriors), embedding

    def _predict_tensors(self, flux, ivar, *, batch_size, device, want_embedding=True):
        """Posterior and embedding of tensors already validated (training and metrics)."""
        return self._forward(
            flux, ivar, batch_size=int(batch_size), device=device, want_embedding=want_embedding
        )

    # ------------------------------------------------------------------ the contract
    def _posterior(self, batch, *, device, batch_size, precision="fp32"):
        self._check_fitted()
        flux, ivar = self._arrays(batch.flux, batch.ivar)
        posterior, _ = self._forward(
            torch.from_numpy(flux),
            torch.from_numpy(ivar),
            batch_size=batch_size,
            device=device,
            precision=precision,
        )
        return self._with_quality_flags(posterior, np.asarray(batch.snr, dtype=float), flux, ivar)

    def _with_quality_flags(self, posterior, snr, flux, ivar):
        """Set PDF_AT_GRID_EDGE, OUTSIDE_TRAINING_DOMAIN, NOT_A_STAR and LOW_SNR.

        Also normalises the ``domain_distance`` diagnostic by the threshold.
        ``NOT_A_STAR`` (fatal: the labels are masked) is set when the distance
        exceeds `NOT_A_STAR_DISTANCE`, when the line content of the prepared
        spectrum (`~stellarml.models.domain.line_statistics`) exceeds
        `MAX_LINE_RMS`, or when its line contrast is below
        `FEATURELESS_LINE_CONTRAST` with a distance above `FEATURELESS_DISTANCE`.
        """
        n = len(posterior)
        flags = np.zeros(n, dtype=np.int64)
        if n:
            edge = np.max(np.stack([posterior.edge_mass(name) for name in self.label_names]), 0)
            flags[edge > EDGE_MASS_LIMIT] |= int(LabelFlag.PDF_AT_GRID_EDGE)
        threshold = getattr(self, "domain_threshold_", None)
        dist = posterior.diagnostics.get("domain_distance")
        lines = line_statistics(flux, ivar) if n else {"line_rms": [], "line_contrast": []}
        line_rms, contrast = np.asarray(lines["line_rms"]), np.asarray(lines["line_contrast"])
        with np.errstate(invalid="ignore"):
            not_a_star = line_rms > MAX_LINE_RMS
        if dist is not None and threshold is not None:
            flags[dist > threshold] |= int(LabelFlag.OUTSIDE_TRAINING_DOMAIN)
            ratio = dist / threshold if threshold > 0 else np.full(n, np.inf)
            with np.errstate(invalid="ignore"):
                not_a_star |= ratio > NOT_A_STAR_DISTANCE
                featureless = contrast < FEATURELESS_LINE_CONTRAST
                not_a_star |= featureless & (ratio > FEATURELESS_DISTANCE)
            posterior = posterior.with_diagnostics(domain_distance=ratio)
        flags[not_a_star] |= int(LabelFlag.NOT_A_STAR)
        min_snr = self.min_training_snr
        if min_snr is not None:
            flags[np.isfinite(snr) & (snr < min_snr)] |= int(LabelFlag.LOW_SNR)
        return posterior.with_flags(flags)

    @property
    def min_training_snr(self):
        """Lowest S/N per pixel of the noise augmentation the model was trained with (or None)."""
        augment = self.get_config()["training"]["augment"]
        if not augment or augment.get("snr") is None:
            return None
        return float(np.min(augment["snr"]))

    def _describe_method(self):
        prov = dict(self.provenance_ or {})
        ft = prov.get("fine_tune_library") or {}
        return {
            "bins": {name: list(b.as_tuple()) for name, b in self.label_bins().items()},
            "domain_threshold": self.domain_threshold_,
            "ensemble": prov.get("ensemble"),
            "fine_tune_library": {"name": ft.get("name"), "n_stars": len(ft.get("ids", []))}
            if ft
            else None,
            "metrics": getattr(self, "metrics_", None),
        }

    def _table_meta_method(self):
        prov = self.provenance_ or {}
        meta = {}
        ensemble = prov.get("ensemble") or {}
        if isinstance(ensemble, dict) and ensemble.get("n_members"):
            meta["model_ensemble_members"] = int(ensemble["n_members"])
        source = (prov.get("fit") or {}).get("source") or {}
        if isinstance(source, dict) and source.get("name"):
            meta["training_library"] = str(source["name"])
        ft = prov.get("fine_tune_library") or {}
        if ft:
            meta["fine_tune_library"] = str(ft.get("name", ""))
            meta["fine_tune_n_stars"] = len(ft.get("ids", []))
        return meta

    # ------------------------------------------------------------------ arrays
    def predict_prepared(
        self,
        flux,
        ivar,
        *,
        flags=None,
        batch_size=1024,
        device=None,
        return_pdf=True,
        precision="fp32",
    ):
        """Label PDFs, summaries and embeddings of arrays already on the model grid.

        The array-level entry point (`stellarml.derive_labels` uses
        `predict_posterior`); it returns REMAP's internals as well.

        Parameters
        ----------
        flux : array-like
            ``(n, npix)`` (or ``(npix,)``) continuum-normalised flux.
        ivar : array-like or None
            Inverse variance of ``flux`` (0 = masked pixel). `None`: unknown
            for every spectrum, estimated with `~stellarml.spectra.der_snr_ivar`.
        flags : array-like of int, optional
            `~stellarml.flags.LabelFlag` bits per spectrum; rows with
            ``NO_UNCERTAINTY`` (whose ``ivar`` only marks good pixels) get the
            `~stellarml.spectra.der_snr_ivar` estimate, because the network
            reads the S/N.
        batch_size : int
            Spectra per forward pass (at most 256 on the CPU, which is
            faster there).
        device : str or `torch.device`, optional
            Default: the model's ``device``.
        return_pdf : bool
            Include the full PDFs (``n * n_bins`` floats per label).
        precision : {"fp32", "bf16", "fp16"}
            ``"fp32"`` (default): float32 throughout. ``"bf16"`` (CPU or
            CUDA) or ``"fp16"`` (CUDA only): the networks run under
            `torch.autocast` in that type; the PDFs, embeddings and summaries
            are float32 in every case.

        Returns
        -------
        result : dict
            ``"summary"``: ``{label: {"median", "mode", "mean", "p16", "p84",
            "err_lo", "err_hi"}}`` (``(n,)`` float64 arrays in label units);
            ``"edge_mass"``: ``{label: (n,)}`` probability in the first plus
            last bin; ``"pdf"``: ``{label: (n, n_bins) float32}`` and
            ``"bin_centers"`` (if ``return_pdf``); ``"embedding"``: ``(n, E)``
            float32; ``"domain_distance"``: ``(n,)`` distance of the embedding
            to the nearest stored training embedding (compare with
            `domain_threshold_`); ``"estimated_snr"``: ``(n,)`` the DER_SNR
            S/N of rows whose ``ivar`` was estimated, NaN elsewhere;
            ``"posterior"``: the `~stellarml.posterior.BinnedPosterior`.
        """
        self._check_fitted()
        check_precision(precision)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        estimate = None
        if ivar is None:
            flux = np.atleast_2d(np.asarray(flux, dtype=np.float32))
            ivar = np.where(np.isfinite(flux), np.float32(1.0), np.float32(0.0))
            estimate = np.ones(flux.shape[0], dtype=bool)
        flux, ivar = self._arrays(flux, ivar)
        if flags is not None:
            flags = np.atleast_1d(np.asarray(flags, dtype=np.int64))
            if flags.shape != (flux.shape[0],):
                raise ValueError(f"flags must have shape ({flux.shape[0]},), got {flags.shape}")
            unknown = (flags & int(LabelFlag.NO_UNCERTAINTY)) != 0
            estimate = unknown if estimate is None else estimate | unknown
        snr = np.full(flux.shape[0], np.nan)
        if estimate is not None and estimate.any():
            ivar = ivar.copy()
            ivar[estimate], snr[estimate] = der_snr_ivar(flux[estimate], ivar[estimate])
        posterior, embedding = self._forward(
            torch.from_numpy(flux),
            torch.from_numpy(ivar),
            batch_size=int(batch_size),
            device=self.device if device is None else device,
            want_embedding=True,
            precision=precision,
        )
        result = {
            "summary": posterior.summaries(),
            "edge_mass": {name: posterior.edge_mass(name) for name in self.label_names},
            "embedding": embedding,
            "estimated_snr": snr,
        }
        if return_pdf:
            result["pdf"] = {name: posterior.pdf(name) for name in self.label_names}
            result["bin_centers"] = {name: b.centers for name, b in self.label_bins().items()}
        if "domain_distance" in posterior.diagnostics:
            result["domain_distance"] = posterior.diagnostics["domain_distance"]
        result["posterior"] = self._with_quality_flags(posterior, snr, flux, ivar)
        return result

    def predict(
        self,
        spectra,
        *,
        batch_size=1024,
        device=None,
        return_pdf=True,
        precision="fp32",
        **prepare_kw,
    ):
        """Prepare spectra (or a library) for the model grid and predict.

        Parameters
        ----------
        spectra : spectra, `~stellarml.libraries.SpectralLibrary` or PreparedBatch
            Anything `stellarml.spectra.prepare` accepts; a library is
            prepared with its own ``prepare``; a prepared batch is used as is.
        batch_size, device, return_pdf, precision :
            See `predict_prepared`.
        **prepare_kw
            ``rv``, ``resolution``, ``fwhm`` for `stellarml.spectra.prepare`.

        Returns
        -------
        result : dict
            As `predict_prepared`, one row per input spectrum; rows with
            fatal preparation flags hold NaN; rows flagged ``NO_UNCERTAINTY``
            use the `~stellarml.spectra.der_snr_ivar` estimate. Adds
            ``"flags"`` (preparation flags; `stellarml.derive_labels` adds the
            quality flags), ``"snr"``, ``"rv"`` and ``"messages"`` from the
            preparation.
        """
        self._check_fitted()
        if all(hasattr(spectra, a) for a in ("flux", "ivar", "flags", "snr")) and not hasattr(
            spectra, "prepare"
        ):
            batch = spectra
        else:
            if self.preparation is None:
                raise ValueError("predict(spectra) needs the model's preparation settings")
            if hasattr(spectra, "prepare") and hasattr(spectra, "label_array"):
                batch = spectra.prepare(self.preparation)
            else:
                from ...spectra import prepare

                batch = prepare(spectra, self.preparation, **prepare_kw)
        flags = np.asarray(batch.flags, dtype=np.int64)
        good = (flags & int(FATAL)) == 0
        n = flags.size
        sub = self.predict_prepared(
            np.asarray(batch.flux)[good],
            np.asarray(batch.ivar)[good],
            flags=flags[good],
            batch_size=batch_size,
            device=device,
            return_pdf=return_pdf,
            precision=precision,
        )

        def expand(arr):
            full = np.full((n, *arr.shape[1:]), np.nan, dtype=np.result_type(arr, np.float32))
            full[good] = arr
            return full

        result = {
            "summary": {
                name: {key: expand(v) for key, v in s.items()} for name, s in sub["summary"].items()
            },
            "edge_mass": {name: expand(v) for name, v in sub["edge_mass"].items()},
            "embedding": expand(sub["embedding"]),
            "posterior": sub["posterior"].expand(good),
        }
        if "pdf" in sub:
            result["pdf"] = {name: expand(v) for name, v in sub["pdf"].items()}
            result["bin_centers"] = sub["bin_centers"]
        if "domain_distance" in sub:
            result["domain_distance"] = expand(sub["domain_distance"])
        result["estimated_snr"] = expand(sub["estimated_snr"])
        result.update(
            flags=flags,
            snr=np.asarray(batch.snr),
            rv=np.asarray(batch.rv),
            messages=list(batch.messages),
        )
        return result
