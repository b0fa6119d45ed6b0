"""`RemapModel`: the deep-REMAP stellar-label model (train, fine-tune, predict label PDFs).

Re-derived from the description of Gilda (2025, arXiv:2510.09362): a 1-D
residual CNN (RN-Module V1/V2 blocks, depth growing while the spectral length
shrinks) maps a prepared spectrum to an embedding vector; one classification
head per label predicts a binned probability distribution (PDF) of the label;
training minimises an asymmetric loss on the bins plus an embedding loss.
Every hyper-parameter the paper does not give (NF in METHODS.md) is a
configuration field, with the defaults in `DEFAULT_ARCHITECTURE`,
`DEFAULT_LOSS`, `DEFAULT_TRAINING` and `DEFAULT_BINS` — these are stellarml's
choices, not the paper's. See ``docs/remap.rst``.
"""

import numpy as np
import torch

from ...labels import get_label
from ...posterior import LabelBins
from ..losses import make_embedding_loss
from .config import (
    DEFAULT_ARCHITECTURE,
    DEFAULT_BINS,
    DEFAULT_LOSS,
    DEFAULT_TRAINING,
    NOISELESS_IVAR,
    merge_settings,
)
from .inference import RemapPredictor
from .network import RemapNet
from .training import _library_ids
from .training import train as _train_stage

__all__ = ["RemapModel"]


class RemapModel(RemapPredictor):
    """deep-REMAP stellar-label model: train, fine-tune, predict label PDFs.

    Scikit-learn style: the constructor only stores its arguments; `fit`,
    `fit_prepared`, `fine_tune` and `fine_tune_prepared` return ``self``;
    learned attributes end in ``_``.

    Parameters
    ----------
    labels : sequence of str
        Label names from the registry (`stellarml.labels`), in output order.
    bins : dict of str to tuple, optional
        ``{label: (lo, hi, width)}`` in label units; labels not given use
        `DEFAULT_BINS`.
    preparation : `~stellarml.spectra.PreparationSettings`, optional
        How spectra are put on the model grid. Needed by `fit` (libraries)
        and `predict` (spectra); `fit_prepared`/`predict_prepared` take arrays
        already on the grid.
    architecture, loss, training : dict, optional
        Overrides of `DEFAULT_ARCHITECTURE`, `DEFAULT_LOSS`, `DEFAULT_TRAINING`.
    name : str
        Model name, written to output tables.
    seed : int
        Seed of weight initialisation, data splits, shuffling and augmentation.
    device : str or `torch.device`
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...

    Attributes
    ----------
    net_ : `RemapNet`
        The trained network.
    embedding_loss_ : `~stellarml.models.losses.EmbeddingLoss` or None
        The embedding loss with its learned state (e.g. bin centres).
    n_pix_ : int
        Number of pixels of the model grid.
    history_ : list of dict
        Per-epoch training log (losses, validation losses and MAEs, lr, time),
        fine-tuning epochs included (``stage`` key).
    metrics_ : dict
        Validation metrics per stage (``"fit"``, ``"fine_tune"``): per label
        MAE, RMSE, bias (label units), ``coverage_68`` (fraction of true values
        inside [p16, p84]) and median half-width of that interval.
    provenance_ : dict
        What the model was trained on and how (counts, excluded rows, library
        metadata, versions, seed, timing).
    domain_reference_ : `numpy.ndarray`
        ``(m, E)`` float32 embeddings of up to ``domain_reference_size``
        training spectra.
    domain_threshold_ : float
        The ``domain_quantile`` quantile of the nearest-neighbour distances of
        held-out training spectra to `domain_reference_` (embedding units);
        without held-out spectra, of leave-one-out distances within the
        reference, which is optimistic for a network trained on those
        spectra. The shipped model's is that in-sample value times the
        quantile of out-of-fold distance ratios (``benchmarks/domain_kfold.py
        --apply``, recorded in ``provenance_["domain"]``). Above it
        ``OUTSIDE_TRAINING_DOMAIN`` is set; above 2.5 times it ``NOT_A_STAR``.
    calibration : `~stellarml.calibration.LabelCalibration` or None
        The correction `stellarml.derive_labels` applies to this model's
        posteriors (set after training, e.g. by a ``[calibration]`` table;
        None: raw outputs).

    Notes
    -----
    A `~stellarml.models.LabelModel`: `stellarml.derive_labels` calls
    `predict_posterior`, which returns a `~stellarml.posterior.BinnedPosterior`
    with REMAP's own flags and its ``domain_distance`` diagnostic.

    Examples
    --------
    A tiny network trained for two epochs on 64 noiseless toy spectra of
    64 pixels whose one line deepens with Teff [K] (real models train on a
    synthetic library for minutes to hours, ``stellarml train``):

    >>> import numpy as np
    >>> import torch
    >>> from stellarml.models import RemapModel
    >>> _ = torch.manual_seed(0)
    >>> teff = np.random.default_rng(0).uniform(4000.0, 7000.0, 64)
    >>> pixel = np.arange(64)
    >>> flux = 1.0 - 0.5 * teff[:, None] / 7000.0 * np.exp(-0.5 * ((pixel - 32) / 3.0) ** 2)
    >>> model = RemapModel(
    ...     labels=("teff",),
    ...     bins={"teff": (3500.0, 7500.0, 250.0)},  # (lo, hi, width) [K]: 16 bins
    ...     architecture={"stem_channels": 4, "stem_stride": 2, "stage_channels": (8,),
    ...                   "stage_blocks": (1,), "pool_length": 2, "embedding_dim": 8},
    ...     training={"max_epochs": 2, "batch_size": 32, "progress": False},
    ... )
    >>> model
    <RemapModel 'remap' labels=['teff'] (untrained)>
    >>> model = model.fit_prepared(flux, None, teff[:, None], noiseless=True)
    >>> result = model.predict_prepared(flux[:3], None)
    >>> result["summary"]["teff"]["median"].shape, result["pdf"]["teff"].shape
    ((3,), (3, 16))
    >>> result["posterior"]
    <BinnedPosterior of 3 spectra, labels ['teff'], 3 valid>
    """

    def __init__(
        self,
        labels=("teff", "logg", "fe_h"),
        *,
        bins=None,
        preparation=None,
        architecture=None,
        loss=None,
        training=None,
        name="remap",
        seed=0,
        device="auto",
    ):
        self.labels = labels
        self.bins = bins
        self.preparation = preparation
        self.architecture = architecture
        self.loss = loss
        self.training = training
        self.name = name
        self.seed = seed
        self.device = device

    # ------------------------------------------------------------------ configuration
    @property
    def label_names(self):
        """Label names in output order (tuple of str)."""
        if isinstance(self.labels, str):
            return (self.labels,)
        names = tuple(str(n) for n in self.labels)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"labels must be a non-empty sequence of distinct names: {names}")
        return names

    @property
    def label_specs(self):
        """`~stellarml.labels.LabelSpec` of each label (tuple)."""
        return tuple(get_label(n) for n in self.label_names)

    def label_bins(self):
        """Bins of every label: dict of name to `~stellarml.posterior.LabelBins`."""
        given = dict(self.bins or {})
        unknown = sorted(set(given) - set(self.label_names))
        if unknown:
            raise ValueError(f"bins given for labels {unknown} that the model does not have")
        out = {}
        for name in self.label_names:
            get_label(name)
            if name in given:
                spec = given[name]
            elif name in DEFAULT_BINS:
                spec = DEFAULT_BINS[name]
            else:
                raise ValueError(f"no default bins for label {name!r}; pass bins={{...}}")
            if isinstance(spec, LabelBins):
                out[name] = spec
            else:
                if len(spec) != 3:
                    raise ValueError(f"bins of {name!r} must be (lo, hi, width), got {spec!r}")
                out[name] = LabelBins(*spec)
        return out

    def bin_centers(self, label):
        """Bin centres of ``label`` in its unit (`numpy.ndarray`)."""
        return self._bins_of(label).centers

    def bin_edges(self, label):
        """Bin edges of ``label`` in its unit (`numpy.ndarray`)."""
        return self._bins_of(label).edges

    def _bins_of(self, label):
        bins = self.label_bins()
        if label not in bins:
            raise KeyError(f"label {label!r} not in this model ({', '.join(bins)})")
        return bins[label]

    def get_config(self):
        """Resolved configuration: defaults updated with the given overrides.

        Returns
        -------
        config : dict
            ``{"architecture": ..., "loss": ..., "training": ...}``.
        """
        arch = merge_settings(DEFAULT_ARCHITECTURE, self.architecture, "architecture")
        loss = merge_settings(DEFAULT_LOSS, self.loss, "loss")
        if loss["variant"] not in ("softmax", "sigmoid"):
            raise ValueError(
                f"loss variant must be 'softmax' or 'sigmoid', got {loss['variant']!r}"
            )
        if loss["gamma_pos"] is None:
            loss["gamma_pos"] = 0.0 if loss["variant"] == "softmax" else 1.0
        loss["embedding_options"] = dict(loss["embedding_options"] or {})
        tw = dict(loss["task_weights"] or {})
        unknown = sorted(set(tw) - set(self.label_names))
        if unknown:
            raise ValueError(f"task_weights given for unknown labels {unknown}")
        loss["task_weights"] = {n: float(tw.get(n, 1.0)) for n in self.label_names}
        if any(w < 0 for w in loss["task_weights"].values()):
            raise ValueError("task_weights must be >= 0")
        train = merge_settings(DEFAULT_TRAINING, self.training, "training")
        if train["augment"] is not None:
            train["augment"] = merge_settings(
                DEFAULT_TRAINING["augment"], train["augment"], "augment"
            )
        if not 0 <= train["validation_fraction"] < 1:
            raise ValueError("validation_fraction must be in [0, 1)")
        if not 0 < train["domain_quantile"] <= 1:
            raise ValueError("domain_quantile must be in (0, 1]")
        return {"architecture": arch, "loss": loss, "training": train}

    def _build(self, n_pix, config):
        bins = self.label_bins()
        arch = config["architecture"]
        net = RemapNet({n: b.n_bins for n, b in bins.items()}, **arch)
        kind = config["loss"]["embedding"]
        emb = None
        if kind is not None:
            emb = make_embedding_loss(
                kind,
                [b.n_bins for b in bins.values()],
                net.config["embedding_dim"],
                **config["loss"]["embedding_options"],
            )
        return net, emb

    # ------------------------------------------------------------------ input handling
    def _check_fitted(self):
        if getattr(self, "net_", None) is None:
            raise RuntimeError(
                "this RemapModel is not trained yet: call fit()/fit_prepared() or read one"
            )

    def _arrays(self, flux, ivar, *, noiseless=False):
        """Validate flux/ivar and return float32 numpy arrays (n, npix)."""
        flux = np.asarray(flux, dtype=np.float32)
        if flux.ndim == 1:
            flux = flux[None, :]
        if flux.ndim != 2 or flux.shape[1] < 2:
            raise ValueError(f"flux must have shape (n_spectra, n_pixels), got {flux.shape}")
        if ivar is None:
            if not noiseless:
                raise ValueError("ivar is None: pass noiseless=True for noise-free spectra")
            ivar = np.where(np.isfinite(flux), np.float32(NOISELESS_IVAR), np.float32(0.0))
        else:
            ivar = np.asarray(ivar, dtype=np.float32)
            if ivar.ndim == 1:
                ivar = ivar[None, :]
            if ivar.shape != flux.shape:
                raise ValueError(f"ivar shape {ivar.shape} differs from flux shape {flux.shape}")
            bad = ~np.isfinite(ivar) | (ivar < 0)
            if bad.any():
                raise ValueError(
                    f"ivar must be finite and >= 0 (0 = masked); {int(bad.sum())} pixels are not"
                )
            if noiseless:
                ivar = np.where(ivar > 0, np.float32(NOISELESS_IVAR), np.float32(0.0))
        nonfinite = (ivar > 0) & ~np.isfinite(flux)
        if nonfinite.any():
            rows = np.unique(np.nonzero(nonfinite)[0])
            raise ValueError(
                f"non-finite flux at {int(nonfinite.sum())} pixels with ivar > 0 in "
                f"{rows.size} spectra (first rows {rows[:10].tolist()}); set their ivar to 0"
            )
        npix = flux.shape[1]
        expected = getattr(self, "n_pix_", None)
        if expected is None and self.preparation is not None:
            expected = len(self.preparation.wavelength)
        if expected is not None and npix != expected:
            raise ValueError(f"spectra have {npix} pixels but the model grid has {expected}")
        flux = np.where(ivar > 0, flux, np.float32(0.0))
        return np.ascontiguousarray(flux), np.ascontiguousarray(ivar)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        library,
        *,
        validation_fraction=None,
        epochs=None,
        clip_to_bins=False,
        checkpoint_dir=None,
        progress=None,
    ):
        """Train on a labelled spectral library.

        The library is prepared with ``library.prepare(self.preparation)``;
        rows with fatal flags are excluded (recorded in `provenance_`). A
        library without inverse variance is treated as noiseless (noise
        augmentation supplies the noise).

        Parameters
        ----------
        library : `~stellarml.libraries.SpectralLibrary`
            Spectra with labels (all of `label_names`).
        validation_fraction, epochs, clip_to_bins, checkpoint_dir, progress :
            See `fit_prepared`.

        Returns
        -------
        self : `RemapModel`
        """
        if self.preparation is None:
            raise ValueError(
                "fit(library) needs preparation=PreparationSettings(...) "
                "(or use fit_prepared with arrays on the model grid)"
            )
        batch = library.prepare(self.preparation)
        labels = library.label_array(list(self.label_names))
        ids = _library_ids(library)
        return _train_stage(
            self,
            "fit",
            batch.flux,
            batch.ivar,
            labels,
            flags=batch.flags,
            ids=ids,
            noiseless=library.ivar is None,
            validation_fraction=validation_fraction,
            epochs=epochs,
            clip_to_bins=clip_to_bins,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            source=getattr(library, "meta", None),
        )

    def fit_prepared(
        self,
        flux,
        ivar,
        labels,
        *,
        flags=None,
        ids=None,
        noiseless=False,
        validation_fraction=None,
        epochs=None,
        clip_to_bins=False,
        checkpoint_dir=None,
        progress=None,
        source=None,
    ):
        """Train from scratch on spectra already on the model grid.

        Parameters
        ----------
        flux : array-like
            ``(n, npix)`` continuum-normalised flux.
        ivar : array-like or None
            ``(n, npix)`` inverse variance of ``flux`` (0 = masked pixel).
            `None` with ``noiseless=True``: every finite pixel is good.
        labels : array-like, dict or `~astropy.table.Table`
            ``(n, n_labels)`` values in `label_names` order and registry units,
            or columns by label name (Quantities are converted).
        flags : array-like of int, optional
            `~stellarml.flags.LabelFlag` bitmask per spectrum; rows with a
            fatal bit are excluded and recorded in `provenance_`.
        ids : array-like, optional
            Identifiers used in messages and provenance (default: row index).
        noiseless : bool
            The spectra are noise-free (synthetic): ``ivar`` only marks good
            pixels (> 0), and noise augmentation provides the noise.
        validation_fraction : float, optional
            Held-out share for early stopping, metrics and the domain
            threshold (default from the training configuration).
        epochs : int, optional
            Maximum epochs (default ``training["max_epochs"]``).
        clip_to_bins : bool
            Labels outside the bins raise a `ValueError` naming the count,
            ids and values; with `True` they are clipped into the edge bins
            instead and recorded in `provenance_`.
        checkpoint_dir : path-like, optional
            Where the `~stellarml.training.Trainer` writes ``.npz`` snapshots
            (with several fine-tuning ``runs``, one subdirectory ``run<k>``
            per run).
        progress : bool, optional
            Progress bar (default ``training["progress"]``).
        source : dict, optional
            Provenance of the training data, stored in `provenance_`.

        Returns
        -------
        self : `RemapModel`
        """
        return _train_stage(
            self,
            "fit",
            flux,
            ivar,
            labels,
            flags=flags,
            ids=ids,
            noiseless=noiseless,
            validation_fraction=validation_fraction,
            epochs=epochs,
            clip_to_bins=clip_to_bins,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            source=source,
        )

    def fine_tune(
        self,
        observed,
        *,
        freeze=None,
        epochs=None,
        lr=None,
        runs=None,
        loss=None,
        validation_fraction=None,
        clip_to_bins=False,
        progress=None,
    ):
        """Fine-tune a trained model on a (small) labelled observed library.

        Parameters
        ----------
        observed : `~stellarml.libraries.SpectralLibrary`
            E.g. an `~stellarml.libraries.ObservedLibrary`; prepared with
            ``observed.prepare(self.preparation)``. Without inverse variance
            the spectra are treated as noiseless (see `fit`).
        freeze, epochs, lr, runs, loss, validation_fraction, clip_to_bins, progress :
            See `fine_tune_prepared`.

        Returns
        -------
        self : `RemapModel`
        """
        if self.preparation is None:
            raise ValueError("fine_tune(library) needs the model's preparation settings")
        batch = observed.prepare(self.preparation)
        labels = observed.label_array(list(self.label_names))
        return _train_stage(
            self,
            "fine_tune",
            batch.flux,
            batch.ivar,
            labels,
            flags=batch.flags,
            ids=_library_ids(observed),
            noiseless=observed.ivar is None,
            validation_fraction=validation_fraction,
            epochs=epochs,
            lr=lr,
            freeze=freeze,
            runs=runs,
            loss=loss,
            clip_to_bins=clip_to_bins,
            progress=progress,
            source=getattr(observed, "meta", None),
        )

    def fine_tune_prepared(
        self,
        flux,
        ivar,
        labels,
        *,
        freeze=None,
        epochs=None,
        lr=None,
        runs=None,
        loss=None,
        flags=None,
        ids=None,
        noiseless=False,
        validation_fraction=None,
        clip_to_bins=False,
        checkpoint_dir=None,
        progress=None,
        source=None,
    ):
        """Fine-tune a trained model on arrays already on the model grid.

        Parameters
        ----------
        flux, ivar, labels, flags, ids, noiseless :
            As in `fit_prepared`.
        validation_fraction, clip_to_bins, checkpoint_dir, progress, source :
            As in `fit_prepared`.
        freeze : str or list of str, optional
            ``"stem"`` (the input convolution fixed), ``"backbone"`` (stem,
            residual stages and embedding layer fixed; only the heads learn),
            ``"none"``, or module-name
            prefixes of `RemapNet` (``"stages.0"``, ``"heads.teff"``...).
            Frozen modules keep their weights *and* batch-norm statistics.
            Default ``training["fine_tune_freeze"]``.
        epochs : int, optional
            Default ``training["fine_tune_epochs"]``.
        lr : float, optional
            Peak learning rate, default ``training["fine_tune_lr"]``.
        runs : int, optional
            Fine-tune this many times from the same starting weights, each
            run with its own seed (shuffling, dropout, augmentation), and keep
            the element-wise mean of the resulting weights and batch-norm
            statistics: a uniform "model soup" (Wortsman et al. 2022, ICML,
            arXiv:2203.05482). It costs ``runs`` times the training time but
            nothing at prediction time. Default ``training["fine_tune_runs"]``.
        loss : dict, optional
            Overrides of the loss configuration for this fine-tuning only
            (e.g. ``{"sigma_bins": 2.0}``: wider soft targets), recorded in
            `provenance_`; the model's own `loss` settings are unchanged.

        Returns
        -------
        self : `RemapModel`

        Notes
        -----
        When the embedding layer is frozen, the fine-tuning spectra are added
        to `domain_reference_` (the threshold is kept). Otherwise the
        embedding has changed, so the reference and threshold are recomputed
        from the fine-tuning spectra alone (recorded in `provenance_`).
        """
        return _train_stage(
            self,
            "fine_tune",
            flux,
            ivar,
            labels,
            flags=flags,
            ids=ids,
            noiseless=noiseless,
            validation_fraction=validation_fraction,
            epochs=epochs,
            lr=lr,
            freeze=freeze,
            runs=runs,
            loss=loss,
            clip_to_bins=clip_to_bins,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            source=source,
        )

    def _inference_net(self, device):
        """`RemapNet.inference_copy` of ``net_`` on ``device``, cached until a weight changes."""
        state = self.net_.state_dict().values()
        key = (str(device), *((t.data_ptr(), t._version) for t in state))
        cached = getattr(self, "_inference_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, self.net_.inference_copy().to(device))
            self._inference_cache = cached
        return cached[1]

    def _prediction_members(self):
        """One network, its domain distance in embedding units."""
        return [self], [1.0]

    # ------------------------------------------------------------------ weights
    def weight_arrays(self):
        """The learned weights as plain numpy arrays (what a model file stores).

        Returns
        -------
        weights : dict
            ``"network"`` and ``"embedding_loss"``: ``{state_dict name: array}``
            (the latter empty without an embedding loss).
        """
        self._check_fitted()

        def arrays(module):
            if module is None:
                return {}
            return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}

        return {"network": arrays(self.net_), "embedding_loss": arrays(self.embedding_loss_)}

    def load_weights(self, n_pix, network, embedding_loss=None):
        """Build the network for ``n_pix`` pixels and load weights from plain arrays.

        Parameters
        ----------
        n_pix : int
            Number of pixels of the model grid.
        network, embedding_loss : dict of str to array-like
            State dicts as `weight_arrays` returns them.

        Returns
        -------
        self : `RemapModel`

        Raises
        ------
        ValueError
            If the arrays do not fit the configuration, or are not finite.
        """
        config = self.get_config()
        self.n_pix_ = int(n_pix)
        self.net_, self.embedding_loss_ = self._build(self.n_pix_, config)

        def load(module, state, what):
            tensors = {k: torch.from_numpy(np.array(v)) for k, v in dict(state).items()}
            bad = [
                k for k, t in tensors.items() if t.is_floating_point() and not t.isfinite().all()
            ]
            if bad:
                raise ValueError(f"{what} weights {bad[:5]} hold non-finite values")
            try:
                module.load_state_dict(tensors)
            except RuntimeError as exc:
                raise ValueError(f"{what} weights do not fit the configuration: {exc}") from None

        load(self.net_, network, "network")
        if self.embedding_loss_ is not None and embedding_loss:
            load(self.embedding_loss_, embedding_loss, "embedding loss")
        self.net_.eval()
        return self

    def __repr__(self):
        state = "trained" if getattr(self, "net_", None) is not None else "untrained"
        return f"<RemapModel {self.name!r} labels={list(self.label_names)} ({state})>"
