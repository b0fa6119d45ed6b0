"""`DTLModel`: autoencoder deep transfer learning (Mas-Buitrago et al. 2024).

Four steps, re-derived from METHODS.md §2:

1. dense autoencoders are trained on synthetic spectra (reconstruction MSE,
   an L1 activity penalty and a contractive penalty; `fit_prepared`);
2. each is fine-tuned on *unlabelled* observed spectra, reconstruction only,
   its early encoder layers frozen (`adapt_prepared`, `adapt`), so that both
   domains share its latent space;
3. 1-D CNN regressors map synthetic latents (by default from the encoder
   before fine-tuning) to labels; observed spectra are encoded by the
   fine-tuned encoder;
4. the N x M (autoencoder, regressor) pairs are ranked by their MSE on
   held-out synthetic spectra and the best K kept: each spectrum's K
   predictions are the draws of its `~stellarml.posterior.SamplePosterior`.

An unadapted model (after `fit_prepared` only) encodes observed spectra with
the synthetic-trained encoder: the synthetic-only baseline of the same
regressors.
"""

import copy

import numpy as np
import torch

from ..._utils import stellarml_version, utc_now
from ...flags import LabelFlag
from ...labels import get_label
from ...posterior import SamplePosterior
from ...training import Trainer
from ...training.transfer import freeze
from .._settings import merge_settings
from ..base import LabelModelBase
from .config import (
    DEFAULT_ARCHITECTURE,
    DEFAULT_ENSEMBLE,
    DEFAULT_TRAINING,
    INPUT_SCALINGS,
    LATENT_SOURCES,
    SUMMARIES,
)
from .network import (
    BOTTLENECKS,
    CONTRACTIVE_FORMS,
    DenseAutoencoder,
    LatentRegressor,
    contractive_penalty,
)

__all__ = ["DTLModel", "kde_mode"]

#: Spectra per forward pass at prediction time.
_CHUNK = 512


def kde_mode(samples, *, grid_size=256):
    """Mode of a Gaussian KDE (Scott's bandwidth) of each row's draws.

    Parameters
    ----------
    samples : array-like
        ``(n, S)`` draws of one label per row (label units).
    grid_size : int, optional
        Points of the evaluation grid spanning the draws +- 3 bandwidths.

    Returns
    -------
    mode : `numpy.ndarray`
        ``(n,)`` in label units; the median where the draws do not define a
        KDE (fewer than two distinct values), NaN for rows with non-finite draws.

    Examples
    --------
    Forty Teff draws [K], three quarters near 5000 K and a quarter near 6000 K:
    the mode stays on the main peak, where the mean is pulled towards the other.

    >>> import numpy as np
    >>> from stellarml.models.dtl import kde_mode
    >>> rng = np.random.default_rng(0)
    >>> draws = np.r_[rng.normal(5000.0, 50.0, 30), rng.normal(6000.0, 50.0, 10)]
    >>> print(np.round(kde_mode(draws[None, :]), -1), np.round(draws.mean(), -1))
    [4990.] 5250.0
    >>> kde_mode([[4800.0, 4800.0, 4800.0], [4800.0, np.nan, 5200.0]])
    array([4800.,   nan])
    """
    from scipy.stats import gaussian_kde

    samples = np.atleast_2d(np.asarray(samples, dtype=float))
    out = np.full(samples.shape[0], np.nan)
    for i, row in enumerate(samples):
        if not np.isfinite(row).all():
            continue
        if np.ptp(row) == 0 or row.size < 2:
            out[i] = np.median(row)
            continue
        kde = gaussian_kde(row)
        bw = float(np.sqrt(kde.covariance[0, 0]))
        grid = np.linspace(row.min() - 3 * bw, row.max() + 3 * bw, int(grid_size))
        out[i] = grid[np.argmax(kde(grid))]
    return out


def _state(module):
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def _load(module, state, what):
    tensors = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in dict(state).items()}
    bad = [k for k, t in tensors.items() if not t.isfinite().all()]
    if bad:
        raise ValueError(f"{what} weights {bad[:5]} hold non-finite values")
    try:
        module.load_state_dict(tensors)
    except RuntimeError as exc:
        raise ValueError(f"{what} weights do not fit the configuration: {exc}") from None
    return module.eval()


class DTLModel(LabelModelBase):
    """Autoencoder deep-transfer-learning stellar-label model (an ensemble).

    Scikit-learn style: the constructor only stores its arguments;
    `fit_prepared` returns ``self``; `adapt_prepared` and `adapt` return a
    *new* adapted model; learned attributes end in ``_``.

    Parameters
    ----------
    labels : sequence of str
        Label names from the registry (`stellarml.labels`), in output order
        (e.g. ``("teff", "logg", "fe_h")``; add ``"vsini"`` when the training
        library varies it).
    preparation : `~stellarml.spectra.PreparationSettings`, optional
        How spectra are put on the model grid (needed by `adapt` on spectra
        and by `stellarml.derive_labels`).
    architecture, training, ensemble : dict, optional
        Overrides of `DEFAULT_ARCHITECTURE`, `DEFAULT_TRAINING`,
        `DEFAULT_ENSEMBLE` (``stellarml.models.dtl.config``).
    name : str
        Model name, written to output tables.
    seed : int
        Seed of the split, the weight initialisations and the shuffling.
    device : str or `torch.device`
        Training device (``"auto"``: CUDA when available).

    Attributes
    ----------
    members_ : list of dict
        One per autoencoder: ``width``, ``l1``, ``pretrained`` and ``adapted``
        (state dicts as numpy arrays; ``adapted`` None before adaptation,
        else the trainable part only), ``latent_mean``/``latent_std``
        (``(latent,)``: the per-dimension mean and the common RMS scale of
        the synthetic latents, the standardisation of what the regressors
        read), ``reference`` (``(m, latent)`` standardised synthetic latents),
        ``thresholds`` (``{"latent", "reconstruction"}``), ``regressors``
        (kept regressors' state dicts) and ``regressor_mse`` (their
        synthetic-test MSE in standardised label units).
    label_mean_, label_std_ : `numpy.ndarray`
        ``(L,)`` standardisation of the labels (label units).
    label_range_ : `numpy.ndarray`
        ``(L, 2)`` smallest and largest synthetic training label (label units).
    n_pix_ : int
        Pixels of the model grid.
    metrics_ : dict
        ``"fit"``: synthetic-test reconstruction MSE per autoencoder and
        MSE per label of every (autoencoder, regressor) pair and which were
        kept; ``"adapt"``: reconstruction MSE of the adaptation spectra before
        and after fine-tuning.
    provenance_ : dict
        What the model was trained and adapted on, and how.
    calibration : `~stellarml.calibration.LabelCalibration` or None
        The correction `stellarml.derive_labels` applies (None: raw outputs).

    Examples
    --------
    The shipped ``dtl-optical-r2000`` (adapted without labels to the MILES
    spectra) on three of the shipped example spectra (made at Teff 5770, 6300
    and 4800 K); each spectrum gets one draw per kept (autoencoder,
    regressor) pair:

    >>> import numpy as np
    >>> from stellarml import read_model
    >>> from stellarml.data import example_spectra
    >>> from stellarml.spectra import prepare
    >>> model = read_model("dtl-optical-r2000")
    >>> model
    <DTLModel 'dtl-optical-r2000' labels=['teff', 'logg', 'fe_h'] (adapted)>
    >>> model.label_names, len(model.members_)
    (('teff', 'logg', 'fe_h'), 2)
    >>> spectra, truth = example_spectra()
    >>> batch = prepare(spectra[:3], model.preparation)
    >>> posterior = model.predict_posterior(batch, device="cpu")
    >>> posterior, posterior.samples.shape
    (<SamplePosterior of 3 spectra, labels ['teff', 'logg', 'fe_h'], 3 valid>, (3, 6, 3))
    >>> np.round(posterior.summaries()["teff"]["median"], -2)  # [K], uncalibrated
    array([5900., 6700., 4800.])

    A new model only stores its settings until `fit_prepared`:

    >>> from stellarml.models import DTLModel
    >>> DTLModel(labels=("teff", "logg"))
    <DTLModel 'dtl' labels=['teff', 'logg'] (untrained)>
    """

    method = "dtl"

    def __init__(
        self,
        labels=("teff", "logg", "fe_h"),
        *,
        preparation=None,
        architecture=None,
        training=None,
        ensemble=None,
        name="dtl",
        seed=0,
        device="cpu",
    ):
        self.labels = labels
        self.preparation = preparation
        self.architecture = architecture
        self.training = training
        self.ensemble = ensemble
        self.name = name
        self.seed = seed
        self.device = device

    # ------------------------------------------------------------------ configuration
    @property
    def label_names(self):
        """Label names in output order (tuple of str)."""
        names = (self.labels,) if isinstance(self.labels, str) else tuple(map(str, self.labels))
        if not names or len(set(names)) != len(names):
            raise ValueError(f"labels must be a non-empty sequence of distinct names: {names}")
        return names

    @property
    def label_specs(self):
        """`~stellarml.labels.LabelSpec` of each label (tuple)."""
        return tuple(get_label(n) for n in self.label_names)

    def get_config(self):
        """Resolved configuration: ``{"architecture", "training", "ensemble"}`` dicts.

        Raises
        ------
        ValueError
            For unknown keys or values out of range (the message names them).
        """
        arch = merge_settings(DEFAULT_ARCHITECTURE, self.architecture, "architecture")
        train = merge_settings(DEFAULT_TRAINING, self.training, "training")
        ens = merge_settings(DEFAULT_ENSEMBLE, self.ensemble, "ensemble")
        for key in ("widths", "l1", "cnn_filters", "cnn_dense"):
            if isinstance(arch[key], int | float):
                arch[key] = (arch[key],)
            arch[key] = tuple(arch[key])
        if arch["contractive"] not in CONTRACTIVE_FORMS:
            raise ValueError(
                f"contractive must be one of {CONTRACTIVE_FORMS}, got {arch['contractive']!r}"
            )
        if arch["bottleneck"] not in BOTTLENECKS:
            raise ValueError(f"bottleneck must be one of {BOTTLENECKS}, got {arch['bottleneck']!r}")
        if arch["contractive"] == "relu" and arch["bottleneck"] != "relu":
            raise ValueError(
                "contractive='relu' is the ReLU closed form; use 'exact' or 'autograd' with a "
                f"{arch['bottleneck']} bottleneck"
            )
        if arch["input_scaling"] not in INPUT_SCALINGS:
            raise ValueError(
                f"input_scaling must be one of {INPUT_SCALINGS}, got {arch['input_scaling']!r}"
            )
        if len(arch["cnn_filters"]) != 2:
            raise ValueError(f"cnn_filters must be two channel counts, got {arch['cnn_filters']}")
        if train["synthetic_latents"] not in LATENT_SOURCES:
            raise ValueError(
                f"synthetic_latents must be one of {LATENT_SOURCES}, "
                f"got {train['synthetic_latents']!r}"
            )
        if train["summary"] not in SUMMARIES:
            raise ValueError(f"summary must be one of {SUMMARIES}, got {train['summary']!r}")
        if not 0 < train["test_fraction"] < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {train['test_fraction']}")
        if not 0 < train["domain_quantile"] <= 1:
            raise ValueError("domain_quantile must be in (0, 1]")
        if not 0 <= int(train["freeze_layers"]) <= 5:
            raise ValueError(f"freeze_layers must be 0-5 (of 6 encoder layers), got {train}")
        n, m, k = (int(ens[key]) for key in ("n_autoencoders", "n_regressors", "keep"))
        if n < 1 or m < 1 or not 1 <= k <= n * m:
            raise ValueError(
                f"ensemble needs n_autoencoders >= 1, n_regressors >= 1 and "
                f"1 <= keep <= n_autoencoders * n_regressors; got {n}, {m}, {k}"
            )
        return {"architecture": arch, "training": train, "ensemble": ens}

    # ------------------------------------------------------------------ inputs
    def _check_fitted(self):
        if getattr(self, "members_", None) is None:
            raise RuntimeError("this DTLModel is not trained yet: call fit_prepared() or read one")

    def _arrays(self, flux, ivar):
        """Validated float32 ``(n, npix)`` flux and ivar (ivar None: every finite pixel good)."""
        flux = np.asarray(flux, dtype=np.float32)
        if flux.ndim == 1:
            flux = flux[None, :]
        if flux.ndim != 2 or flux.shape[1] < 2:
            raise ValueError(f"flux must have shape (n_spectra, n_pixels), got {flux.shape}")
        if ivar is None:
            ivar = np.isfinite(flux).astype(np.float32)
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
        nonfinite = (ivar > 0) & ~np.isfinite(flux)
        if nonfinite.any():
            rows = np.unique(np.nonzero(nonfinite)[0])
            raise ValueError(
                f"non-finite flux at {int(nonfinite.sum())} pixels with ivar > 0 in "
                f"{rows.size} spectra (first rows {rows[:10].tolist()}); set their ivar to 0"
            )
        expected = getattr(self, "n_pix_", None)
        if expected is None and self.preparation is not None:
            expected = len(self.preparation.wavelength)
        if expected is not None and flux.shape[1] != expected:
            raise ValueError(
                f"spectra have {flux.shape[1]} pixels but the model grid has {expected}"
            )
        return np.where(ivar > 0, flux, np.float32(0.0)), ivar

    def _set_input_scale(self, flux, ivar, how):
        """Per-pixel mean and scale of the synthetic training flux (``centre``, ``standardise``).

        Masked pixels are left out. ``"centre"``: one scale, the RMS deviation
        over every pixel; ``"standardise"``: each pixel's standard deviation,
        floored at a tenth of the median, so that pixels the library barely
        varies (continuum) do not turn small observed deviations into huge inputs.
        """
        good = ivar > 0
        n = np.maximum(good.sum(axis=0), 1)
        mean = np.where(good, flux, 0.0).sum(axis=0) / n
        var = np.where(good, (flux - mean) ** 2, 0.0).sum(axis=0) / n
        if how == "centre":
            std = np.full_like(var, np.sqrt(var.mean()))
        else:
            std = np.sqrt(var)
            std = np.maximum(std, 0.1 * float(np.median(std)))
        self.input_mean_ = mean.astype(np.float32)
        self.input_std_ = np.where(std > 0, std, 1.0).astype(np.float32)

    def _scaled(self, flux, ivar):
        """Network inputs and the good-pixel mask, as torch tensors.

        ``input_scaling="unit"``: flux / flux_scale clipped to [0, 1], masked
        pixels at the continuum; ``"centre"``, ``"standardise"``: (flux -
        mean) / scale per pixel, masked pixels at 0 (the synthetic mean).
        """
        arch = self.get_config()["architecture"]
        mask = (ivar > 0).astype(np.float32)
        if arch["input_scaling"] != "unit":
            x = np.where(mask > 0, (flux - self.input_mean_) / self.input_std_, np.float32(0.0))
        else:
            scale = float(arch["flux_scale"])
            x = np.where(mask > 0, np.clip(flux / scale, 0.0, 1.0), np.float32(1.0 / scale))
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(mask)

    def _unscaled(self, x):
        """Flux from network inputs or outputs ``(n, npix)`` (the inverse of `_scaled`)."""
        arch = self.get_config()["architecture"]
        if arch["input_scaling"] != "unit":
            return x * self.input_std_ + self.input_mean_
        return x * float(arch["flux_scale"])

    # ------------------------------------------------------------------ networks
    def _autoencoder(self, k, which):
        """Member ``k``'s autoencoder (``"pretrained"`` or ``"adapted"``), built on first use."""
        cache = self.__dict__.setdefault("_net_cache", {})
        key = (k, which)
        if key not in cache:
            member = self.members_[k]
            arch = self.get_config()["architecture"]
            net = self._new_autoencoder(member["width"], arch)
            state = dict(member["pretrained"])
            if which == "adapted":
                state.update(member["adapted"])
            cache[key] = _load(net, state, f"autoencoder {k} ({which})")
        return cache[key]

    def _new_autoencoder(self, width, arch):
        output = "sigmoid" if arch["input_scaling"] == "unit" else "linear"
        return DenseAutoencoder(
            self.n_pix_, width, arch["latent_dim"], bottleneck=arch["bottleneck"], output=output
        )

    def _regressor(self, k, j):
        cache = self.__dict__.setdefault("_net_cache", {})
        key = (k, "regressor", j)
        if key not in cache:
            arch = self.get_config()["architecture"]
            net = LatentRegressor(
                arch["latent_dim"], len(self.label_names), arch["cnn_filters"], arch["cnn_dense"]
            )
            cache[key] = _load(net, self.members_[k]["regressors"][j], f"regressor {k}.{j}")
        return cache[key]

    def _clear_cache(self):
        self.__dict__.pop("_net_cache", None)

    def __deepcopy__(self, memo):
        out = copy.copy(self)
        memo[id(self)] = out
        for key, value in self.__dict__.items():
            if key != "_net_cache":
                out.__dict__[key] = copy.deepcopy(value, memo)
        out.__dict__.pop("_net_cache", None)
        return out

    def is_adapted(self):
        """Whether the autoencoders have been fine-tuned on observed spectra (bool)."""
        self._check_fitted()
        return all(m["adapted"] is not None for m in self.members_)

    def _encoder_for_observed(self, k):
        return "adapted" if self.members_[k]["adapted"] is not None else "pretrained"

    @torch.no_grad()
    def _run_autoencoder(self, net, x, mask, *, reconstruction=False):
        """Latents ``(n, latent)`` and masked reconstruction MSE ``(n,)`` (scaled units).

        With ``reconstruction=True`` also the reconstructions ``(n, npix)`` (scaled units).
        """
        zs, mse, out = [], [], []
        for start in range(0, x.shape[0], _CHUNK):
            xb, mb = x[start : start + _CHUNK], mask[start : start + _CHUNK]
            z = net.encode(xb)
            x_hat = net.decode(z)
            zs.append(z)
            mse.append(((x_hat - xb) ** 2 * mb).sum(1) / mb.sum(1).clamp_min(1.0))
            if reconstruction:
                out.append(x_hat)
        if not zs:
            empty = (np.zeros((0, net.config["latent_dim"]), np.float32), np.zeros(0))
            return (*empty, x.numpy()[:0]) if reconstruction else empty
        result = torch.cat(zs).numpy(), torch.cat(mse).numpy().astype(np.float64)
        return (*result, torch.cat(out).numpy()) if reconstruction else result

    def encode_prepared(self, flux, ivar=None, *, encoder="observed"):
        """Latent vectors of spectra on the model grid, per autoencoder.

        Parameters
        ----------
        flux, ivar : array-like
            ``(n, npix)`` continuum-normalised flux and its inverse variance
            (0 = masked; None: every finite pixel good).
        encoder : {"observed", "pretrained", "adapted"}
            ``"observed"``: the encoder that reads observed spectra (adapted
            when the model is, else pre-trained); ``"pretrained"``: the one
            trained on synthetic spectra only; ``"adapted"``: the fine-tuned one.

        Returns
        -------
        latents : list of `numpy.ndarray`
            ``(n, latent_dim)`` float32 per autoencoder (raw, not standardised).
        reconstruction_mse : list of `numpy.ndarray`
            ``(n,)`` masked reconstruction MSE of the same autoencoder (in
            units of ``flux / flux_scale``).
        """
        self._check_fitted()
        if encoder not in ("observed", "pretrained", "adapted"):
            raise ValueError(
                f"encoder must be 'observed', 'pretrained' or 'adapted', not {encoder!r}"
            )
        if encoder == "adapted" and not self.is_adapted():
            raise ValueError("encoder='adapted' needs an adapted model (see adapt)")
        flux, ivar = self._arrays(flux, ivar)
        x, mask = self._scaled(flux, ivar)
        latents, errors = [], []
        for k in range(len(self.members_)):
            which = self._encoder_for_observed(k) if encoder == "observed" else encoder
            z, mse = self._run_autoencoder(self._autoencoder(k, which), x, mask)
            latents.append(z)
            errors.append(mse)
        return latents, errors

    # ------------------------------------------------------------------ training
    def _trainer(self, epochs, batch_size, lr, seed, progress):
        return Trainer(
            max_epochs=int(epochs),
            batch_size=int(batch_size),
            lr=float(lr),
            weight_decay=0.0,
            patience=None,
            schedule="constant",
            grad_clip=None,
            seed=int(seed),
            device=self.device,
            progress=bool(progress),
        )

    def _ae_loss(self, l1, align=None):
        """The autoencoder loss; ``align = (weight, member)`` adds the latent-alignment term."""
        arch = self.get_config()["architecture"]
        form, lam = arch["contractive"], float(arch["contractive_weight"])
        if align is not None and align[0] > 0:
            weight, member = float(align[0]), align[1]
            reference = torch.from_numpy(np.asarray(member["reference"], np.float32))
            mean = torch.from_numpy(np.asarray(member["latent_mean"], np.float32))
            scale = torch.from_numpy(np.asarray(member["latent_std"], np.float32))
            bandwidth = _median_bandwidth(reference)
            gen = torch.Generator().manual_seed(int(self.seed))
        else:
            weight = 0.0

        def loss_fn(net, batch):
            x, mask = batch
            if form == "autograd":
                x = x.detach().clone().requires_grad_(True)
            x_hat, z, pre, _, activity = net(x)
            mse = ((x_hat - x) ** 2 * mask).sum() / mask.sum().clamp_min(1.0)
            act = sum(a.abs().sum(1).mean() for a in activity)
            contractive = contractive_penalty(net, x, z, pre, form) if lam else mse.new_zeros(())
            loss = mse + float(l1) * act + lam * contractive
            out = {"mse": mse.detach(), "contractive": contractive.detach()}
            if weight:
                pick = torch.randint(reference.shape[0], (max(z.shape[0], 64),), generator=gen)
                zs = (z - mean.to(z.device)) / scale.to(z.device)
                mmd = _mmd2(zs, reference[pick].to(z.device), bandwidth)
                loss = loss + weight * mmd
                out["mmd2"] = mmd.detach()
            out["loss"] = loss
            return out

        return loss_fn

    def _fit_regressors(self, k, z_train, y_train, z_test, y_test, cfg, progress):
        """Train the regressors of autoencoder ``k``; returns states and test MSE per label."""
        arch, train = cfg["architecture"], cfg["training"]
        states, mses = [], []
        for j in range(int(cfg["ensemble"]["n_regressors"])):
            seed = int(self.seed) + 1000 * (k + 1) + j
            torch.manual_seed(seed)
            net = LatentRegressor(
                arch["latent_dim"], y_train.shape[1], arch["cnn_filters"], arch["cnn_dense"]
            )

            def loss_fn(module, batch):
                z, y = batch
                return torch.mean((module(z) - y) ** 2)

            trainer = self._trainer(
                train["cnn_epochs"], train["cnn_batch_size"], train["cnn_lr"], seed, progress
            )
            trainer.fit(net, loss_fn, (torch.from_numpy(z_train), torch.from_numpy(y_train)))
            net.cpu().eval()
            with torch.no_grad():
                pred = net(torch.from_numpy(z_test)).numpy()
            mses.append(np.mean((pred - y_test) ** 2, axis=0))
            states.append(_state(net))
        return states, mses

    def fit_prepared(self, flux, labels, *, ivar=None, flags=None, progress=False, source=None):
        """Train the autoencoders and regressors on synthetic spectra on the model grid.

        Parameters
        ----------
        flux : array-like
            ``(n, npix)`` continuum-normalised synthetic flux.
        labels : array-like
            ``(n, L)`` labels in `label_names` order and registry units.
        ivar : array-like, optional
            ``(n, npix)``; only ``ivar > 0`` is used (the good-pixel mask).
            Default: every finite pixel.
        flags : array-like of int, optional
            Rows with a fatal `~stellarml.flags.LabelFlag` bit are excluded
            (their count is recorded in `provenance_`).
        progress : bool
            Progress bars.
        source : dict, optional
            Provenance of the library, stored in `provenance_`.

        Returns
        -------
        self : `DTLModel`
        """
        from ...flags import FATAL

        cfg = self.get_config()
        arch, train, ens = cfg["architecture"], cfg["training"], cfg["ensemble"]
        flux, ivar = self._arrays(flux, ivar)
        labels = np.asarray(labels, dtype=np.float64)
        if labels.ndim == 1 and len(self.label_names) == 1:
            labels = labels[:, None]
        if labels.shape != (flux.shape[0], len(self.label_names)):
            raise ValueError(
                f"labels must be ({flux.shape[0]}, {len(self.label_names)}) for "
                f"{list(self.label_names)}, got {labels.shape}"
            )
        keep = np.isfinite(labels).all(axis=1)
        if flags is not None:
            keep &= (np.asarray(flags, dtype=np.int64) & int(FATAL)) == 0
        if keep.sum() < 10:
            raise ValueError(f"only {int(keep.sum())} usable training spectra; need >= 10")
        flux, ivar, labels = flux[keep], ivar[keep], labels[keep]
        self.n_pix_ = int(flux.shape[1])
        self._clear_cache()
        rng = np.random.default_rng(int(self.seed))
        order = rng.permutation(flux.shape[0])
        n_test = max(2, round(train["test_fraction"] * flux.shape[0]))
        test, tr = np.sort(order[:n_test]), np.sort(order[n_test:])
        if arch["input_scaling"] != "unit":
            self._set_input_scale(flux[tr], ivar[tr], arch["input_scaling"])
        x, mask = self._scaled(flux, ivar)
        self.label_range_ = np.stack([labels[tr].min(axis=0), labels[tr].max(axis=0)], axis=1)
        self.label_mean_ = labels[tr].mean(axis=0)
        std = labels[tr].std(axis=0)
        self.label_std_ = np.where(std > 0, std, 1.0)
        y = ((labels - self.label_mean_) / self.label_std_).astype(np.float32)
        members, scores, fit_metrics = [], [], {"reconstruction_mse": [], "regressor_mse": []}
        for k in range(int(ens["n_autoencoders"])):
            width = int(arch["widths"][k % len(arch["widths"])])
            l1 = float(arch["l1"][k % len(arch["l1"])])
            seed = int(self.seed) + k
            torch.manual_seed(seed)
            net = self._new_autoencoder(width, arch)
            trainer = self._trainer(
                train["ae_epochs"], train["ae_batch_size"], train["ae_lr"], seed, progress
            )
            trainer.fit(net, self._ae_loss(l1), (x[tr], mask[tr]))
            net.cpu().eval()
            z_all, rec = self._run_autoencoder(net, x, mask)
            mean, zstd = _latent_scale(z_all[tr])
            zs = ((z_all - mean) / zstd).astype(np.float32)
            states, mses = self._fit_regressors(k, zs[tr], y[tr], zs[test], y[test], cfg, progress)
            ref = (
                tr
                if tr.size <= train["reference_size"]
                else np.sort(rng.choice(tr, int(train["reference_size"]), replace=False))
            )
            reference = zs[ref]
            dist = _min_distance(zs[test], reference)
            q = float(train["domain_quantile"])
            members.append(
                {
                    "width": width,
                    "l1": l1,
                    "pretrained": _state(net),
                    "adapted": None,
                    "latent_mean": mean.astype(np.float32),
                    "latent_std": zstd,
                    "reference": reference,
                    "thresholds": {
                        "latent": float(np.quantile(dist, q)),
                        "reconstruction": float(np.quantile(rec[test], q)),
                    },
                    "regressors": states,
                    "regressor_mse": [float(np.mean(m)) for m in mses],
                }
            )
            scores += [(float(np.mean(m)), k, j) for j, m in enumerate(mses)]
            fit_metrics["reconstruction_mse"].append(float(np.mean(rec[test])))
            fit_metrics["regressor_mse"].append(
                [
                    dict(zip(self.label_names, map(float, m * self.label_std_**2), strict=True))
                    for m in mses
                ]
            )
        kept = sorted(scores)[: int(ens["keep"])]
        kept_pairs = sorted((k, j) for _, k, j in kept)
        for k, member in enumerate(members):
            js = [j for kk, j in kept_pairs if kk == k]
            member["regressors"] = [member["regressors"][j] for j in js]
            member["regressor_mse"] = [member["regressor_mse"][j] for j in js]
            member["regressor_ids"] = js
        self.members_ = members
        fit_metrics["kept"] = [[int(k), int(j)] for k, j in kept_pairs]
        fit_metrics["worst_kept_mse"] = float(kept[-1][0])
        self.metrics_ = {"fit": fit_metrics}
        self.provenance_ = {
            "stellarml_version": stellarml_version(),
            "fit": {
                "date": utc_now(),
                "n_spectra": int(x.shape[0]),
                "n_test": int(n_test),
                "n_excluded": int((~keep).sum()),
                "seed": int(self.seed),
                "config": cfg,
                "source": dict(source or {}),
            },
        }
        return self

    # ------------------------------------------------------------------ adaptation
    def adapt_prepared(
        self, flux, ivar=None, *, flags=None, ids=None, synthetic=None, progress=False, source=None
    ):
        """A copy of the model fine-tuned on unlabelled spectra on the model grid.

        Each autoencoder starts again from its synthetic-trained weights;
        encoder layers ``1 .. freeze_layers`` are frozen, the rest (the last
        encoder layer, the bottleneck and the whole decoder) retrained on
        the reconstruction loss (same penalties); no label is read.

        Parameters
        ----------
        flux, ivar : array-like
            ``(n, npix)`` observed flux and inverse variance on the model grid
            (ivar: only ``> 0`` is used, as the good-pixel mask).
        flags : array-like of int, optional
            Rows with a fatal bit are left out (their count is recorded).
        ids : sequence, optional
            Identifiers of the spectra, recorded in the provenance.
        synthetic : tuple, optional
            ``(flux, labels)`` of the synthetic training set, needed only with
            ``synthetic_latents = "adapted"`` (the regressors are then
            retrained on the adapted encoder's synthetic latents).
        progress : bool
            Progress bars.
        source : dict, optional
            Provenance of the spectra.

        Returns
        -------
        model : `DTLModel`
            A new, adapted model (``self`` is unchanged).
        """
        from ...flags import FATAL

        self._check_fitted()
        cfg = self.get_config()
        train = cfg["training"]
        if train["synthetic_latents"] == "adapted" and synthetic is None:
            raise ValueError(
                "synthetic_latents='adapted' retrains the regressors on the adapted encoder's "
                "synthetic latents: pass synthetic=(flux, labels)"
            )
        flux, ivar = self._arrays(flux, ivar)
        keep = np.ones(flux.shape[0], dtype=bool)
        if flags is not None:
            keep = (np.asarray(flags, dtype=np.int64) & int(FATAL)) == 0
        keep &= (ivar > 0).sum(axis=1) > 0
        if keep.sum() < 2:
            raise ValueError(
                f"adaptation needs at least 2 usable spectra; {int(keep.sum())} of "
                f"{flux.shape[0]} are usable (not fatally flagged, some good pixels)"
            )
        x, mask = self._scaled(flux[keep], ivar[keep])
        out = copy.deepcopy(self)
        out._clear_cache()
        prefixes = [f"encoder.{i}" for i in range(int(train["freeze_layers"]))]
        before, after = [], []
        q = float(train["domain_quantile"])
        for k, member in enumerate(out.members_):
            net = self._autoencoder(k, "pretrained")
            _, rec0 = self._run_autoencoder(net, x, mask)
            net = copy.deepcopy(net)
            frozen = freeze(net, prefixes) if prefixes else []
            seed = int(self.seed) + 500 + k
            trainer = self._trainer(
                train["fine_tune_epochs"],
                min(int(train["fine_tune_batch_size"]), max(2, x.shape[0])),
                train["fine_tune_lr"],
                seed,
                progress,
            )
            align = (float(train["fine_tune_align"]), member)
            trainer.fit(net, self._ae_loss(member["l1"], align), (x, mask))
            net.cpu().eval()
            state = _state(net)
            member["adapted"] = {
                name: v for name, v in state.items() if name.rsplit(".", 1)[0] not in prefixes
            }
            z, rec1 = self._run_autoencoder(net, x, mask)
            if train["synthetic_latents"] == "adapted":
                out._refit_regressors_on(k, net, synthetic, cfg, progress)
            zs = (z - member["latent_mean"]) / member["latent_std"]
            dist = _min_distance(zs, member["reference"])
            member["thresholds"] = {
                "latent": float(np.quantile(dist, q)),
                "reconstruction": float(np.quantile(rec1, q)),
            }
            before.append(float(np.mean(rec0)))
            after.append(float(np.mean(rec1)))
            del frozen
        out._clear_cache()
        out.metrics_ = {
            **dict(self.metrics_ or {}),
            "adapt": {"reconstruction_mse_before": before, "reconstruction_mse_after": after},
        }
        out.provenance_ = {
            **dict(self.provenance_ or {}),
            "adapt": _record(
                keep, ids, frozen_layers=prefixes, labels_used=False, source=dict(source or {})
            ),
        }
        return out

    def _refit_regressors_on(self, k, net, synthetic, cfg, progress):
        """Retrain member ``k``'s regressors on the adapted encoder's synthetic latents."""
        s_flux, s_labels = synthetic
        s_flux, s_ivar = self._arrays(s_flux, None)
        s_labels = np.asarray(s_labels, dtype=np.float64).reshape(s_flux.shape[0], -1)
        x, mask = self._scaled(s_flux, s_ivar)
        z, _ = self._run_autoencoder(net, x, mask)
        member = self.members_[k]
        member["latent_mean"], member["latent_std"] = _latent_scale(z)
        zs = ((z - member["latent_mean"]) / member["latent_std"]).astype(np.float32)
        y = ((s_labels - self.label_mean_) / self.label_std_).astype(np.float32)
        rng = np.random.default_rng(int(self.seed) + 7)
        order = rng.permutation(zs.shape[0])
        n_test = max(2, round(cfg["training"]["test_fraction"] * zs.shape[0]))
        te, tr = order[:n_test], order[n_test:]
        n_keep = len(member["regressors"])
        states, mses = self._fit_regressors(k, zs[tr], y[tr], zs[te], y[te], cfg, progress)
        best = np.argsort([np.mean(m) for m in mses])[:n_keep]
        member["regressors"] = [states[j] for j in best]
        member["regressor_mse"] = [float(np.mean(mses[j])) for j in best]
        member["reference"] = zs[tr[: int(cfg["training"]["reference_size"])]]

    def fine_tune_prepared(self, flux, labels, ivar=None, *, flags=None, ids=None, progress=False):
        """A copy whose regressors are also trained on labelled observed spectra.

        The label-using variant of DTL (stellarml's addition, not in the
        paper): each kept regressor starts from its synthetic-trained weights
        and is trained further (``label_epochs`` at ``label_lr``) on the
        latents the observed encoder gives these spectra (the fine-tuned one
        when the model is adapted), against their labels. The autoencoders are
        unchanged. Missing labels (NaN) are left out of the loss label by label;
        stars with a label outside the range of the synthetic training labels
        (`label_range_`, the regressors' domain) are left out (counted in the
        provenance).

        Parameters
        ----------
        flux, ivar : array-like
            ``(n, npix)`` observed flux and inverse variance on the model grid.
        labels : array-like
            ``(n, L)`` reference labels in `label_names` order and registry units.
        flags : array-like of int, optional
            Rows with a fatal bit are left out.
        ids : sequence, optional
            Identifiers, recorded in the provenance.
        progress : bool
            Progress bars.

        Returns
        -------
        model : `DTLModel`
            A new model (``self`` is unchanged); ``provenance_["fine_tune"]``
            records that labels were used.
        """
        from ...flags import FATAL

        self._check_fitted()
        train = self.get_config()["training"]
        flux, ivar = self._arrays(flux, ivar)
        labels = np.asarray(labels, dtype=np.float64).reshape(flux.shape[0], -1)
        if labels.shape[1] != len(self.label_names):
            raise ValueError(
                f"labels must be ({flux.shape[0]}, {len(self.label_names)}) for "
                f"{list(self.label_names)}, got {labels.shape}"
            )
        keep = np.isfinite(labels).any(axis=1) & ((ivar > 0).sum(axis=1) > 0)
        if flags is not None:
            keep &= (np.asarray(flags, dtype=np.int64) & int(FATAL)) == 0
        outside = np.zeros(flux.shape[0], dtype=bool)
        label_range = getattr(self, "label_range_", None)
        if label_range is not None:  # the regressors' domain: the synthetic labels' box
            with np.errstate(invalid="ignore"):
                off = (labels < label_range[:, 0]) | (labels > label_range[:, 1])
            outside = (off & np.isfinite(labels)).any(axis=1)
            keep &= ~outside
        if keep.sum() < 2:
            raise ValueError(
                f"fine-tuning needs >= 2 labelled, usable spectra inside the synthetic label "
                f"range; got {keep.sum()} ({int(outside.sum())} outside the range)"
            )
        y = (labels[keep] - self.label_mean_) / self.label_std_
        known = np.isfinite(y)
        y = np.where(known, y, 0.0).astype(np.float32)
        latents, _ = self.encode_prepared(flux[keep], ivar[keep])
        out = copy.deepcopy(self)
        out._clear_cache()

        def loss_fn(module, batch):
            z, target, weight = batch
            return ((module(z) - target) ** 2 * weight).sum() / weight.sum().clamp_min(1.0)

        for k, member in enumerate(out.members_):
            zs = ((latents[k] - member["latent_mean"]) / member["latent_std"]).astype(np.float32)
            weight = torch.from_numpy(known.astype(np.float32))
            data = (torch.from_numpy(zs), torch.from_numpy(y), weight)
            for j in range(len(member["regressors"])):
                net = copy.deepcopy(self._regressor(k, j)).train()
                trainer = self._trainer(
                    train["label_epochs"],
                    min(int(train["label_batch_size"]), zs.shape[0]),
                    train["label_lr"],
                    int(self.seed) + 2000 + 10 * k + j,
                    progress,
                )
                trainer.fit(net, loss_fn, data)
                member["regressors"][j] = _state(net.cpu().eval())
        out._clear_cache()
        out.provenance_ = {
            **dict(self.provenance_ or {}),
            "fine_tune": _record(
                keep, ids, labels_used=True, n_outside_label_range=int(outside.sum())
            ),
        }
        return out

    def adapt(self, spectra, *, progress=False, **prepare_kw):
        """A copy of the model adapted to unlabelled spectra, in one call.

        Parameters
        ----------
        spectra : spectra, `~stellarml.libraries.SpectralLibrary` or PreparedBatch
            The survey's spectra: anything `stellarml.spectra.prepare`
            accepts, a library (its labels, if any, are never read), or a
            batch already prepared with this model's ``preparation``.
        progress : bool
            Progress bars.
        **prepare_kw
            ``rv``, ``resolution``, ``fwhm`` for `stellarml.spectra.prepare`.

        Returns
        -------
        model : `DTLModel`
            The adapted model; spectra that could not be prepared are left out
            (counted in ``provenance_["adapt"]``).
        """
        batch, ids, source = self._prepared(spectra, prepare_kw)
        return self.adapt_prepared(
            batch.flux, batch.ivar, flags=batch.flags, ids=ids, progress=progress, source=source
        )

    def _prepared(self, spectra, prepare_kw):
        if all(hasattr(spectra, a) for a in ("flux", "ivar", "flags", "snr")) and not hasattr(
            spectra, "prepare"
        ):
            return spectra, None, {}
        if self.preparation is None:
            raise ValueError("this model has no preparation settings: pass a prepared batch")
        if hasattr(spectra, "prepare") and hasattr(spectra, "label_array"):
            ids = None
            if "id" in getattr(spectra, "labels", {}).colnames:
                ids = np.asarray(spectra.labels["id"])
            meta = getattr(spectra, "meta", None) or {}
            source = {"name": str(meta.get("name", type(spectra).__name__)), "n": len(spectra)}
            return spectra.prepare(self.preparation), ids, source
        from ...spectra import prepare

        return prepare(spectra, self.preparation, **prepare_kw), None, {}

    # ------------------------------------------------------------------ prediction
    def _posterior(self, batch, *, device, batch_size):
        self._check_fitted()
        flux, ivar = self._arrays(batch.flux, batch.ivar)
        result = self._predict_arrays(flux, ivar, np.asarray(batch.flags, dtype=np.int64))
        return result["posterior"]

    def _predict_arrays(self, flux, ivar, flags):
        x, mask = self._scaled(flux, ivar)
        n = flux.shape[0]
        draws, domain, recon = [], np.zeros(n), np.zeros(n)
        known_noise = (flags & int(LabelFlag.NO_UNCERTAINTY)) == 0
        for k, member in enumerate(self.members_):
            net = self._autoencoder(k, self._encoder_for_observed(k))
            z, mse, x_hat = self._run_autoencoder(net, x, mask, reconstruction=True)
            zs = ((z - member["latent_mean"]) / member["latent_std"]).astype(np.float32)
            thr = member["thresholds"]
            dist = _min_distance(zs, member["reference"])
            score = np.maximum(
                dist / max(thr["latent"], 1e-12), mse / max(thr["reconstruction"], 1e-12)
            )
            domain = np.maximum(domain, score)
            resid = ivar * (flux - self._unscaled(x_hat)) ** 2
            good = (ivar > 0).sum(1)
            rms = np.sqrt(resid.sum(1) / np.maximum(good, 1))
            recon = np.maximum(recon, np.where(known_noise, rms, np.nan))
            for j in range(len(member["regressors"])):
                with torch.no_grad():
                    y = self._regressor(k, j)(torch.from_numpy(zs)).numpy().astype(np.float64)
                draws.append(y * self.label_std_ + self.label_mean_)
        samples = np.stack(draws, axis=1) if n else np.zeros((0, len(draws), len(self.label_names)))
        out_flags = np.where(domain > 1.0, int(LabelFlag.OUTSIDE_TRAINING_DOMAIN), 0)
        posterior = SamplePosterior(
            samples,
            self.label_names,
            flags=out_flags.astype(np.int64),
            diagnostics={"domain_distance": domain, "reconstruction_error": recon},
        )
        return {"posterior": posterior, "samples": samples, "domain_distance": domain}

    def predict_prepared(self, flux, ivar=None, *, flags=None):
        """Label draws, summaries and the out-of-domain score of spectra on the model grid.

        Parameters
        ----------
        flux, ivar : array-like
            ``(n, npix)`` continuum-normalised flux and inverse variance
            (0 = masked; None: every finite pixel good, noise unknown).
        flags : array-like of int, optional
            Preparation flags (``NO_UNCERTAINTY`` rows get no
            ``reconstruction_error``).

        Returns
        -------
        result : dict
            ``"posterior"`` (`~stellarml.posterior.SamplePosterior` with the
            ``OUTSIDE_TRAINING_DOMAIN`` flag and the ``domain_distance`` and
            ``reconstruction_error`` diagnostics), ``"samples"`` ``(n, K, L)``,
            ``"value"`` ``{label: (n,)}`` (the configured ``summary``: the
            median or the KDE mode of the K draws), ``"summary"``
            (`~stellarml.posterior.LabelPosterior.summaries`) and
            ``"domain_distance"``.
        """
        self._check_fitted()
        noise_unknown = ivar is None
        flux, ivar = self._arrays(flux, ivar)
        if flags is None:
            flags = np.full(
                flux.shape[0], int(LabelFlag.NO_UNCERTAINTY) if noise_unknown else 0, np.int64
            )
        flags = np.atleast_1d(np.asarray(flags, dtype=np.int64))
        if flags.shape != (flux.shape[0],):
            raise ValueError(f"flags must have shape ({flux.shape[0]},), got {flags.shape}")
        result = self._predict_arrays(flux, ivar, flags)
        summary = result["posterior"].summaries()
        mode = self.get_config()["training"]["summary"]
        result["summary"] = summary
        result["value"] = {
            name: (
                summary[name]["median"]
                if mode == "median"
                else kde_mode(result["samples"][:, :, i])
            )
            for i, name in enumerate(self.label_names)
        }
        return result

    # ------------------------------------------------------------------ descriptions
    def _describe_method(self):
        cfg = self.get_config()
        prov = dict(self.provenance_ or {})
        adapt = prov.get("adapt") or {}
        return {
            "ensemble": {
                "n_autoencoders": len(getattr(self, "members_", None) or []),
                "n_kept": sum(len(m["regressors"]) for m in (self.members_ or [])),
                "config": cfg["ensemble"],
            },
            "architecture": cfg["architecture"],
            "adapted": bool(adapt),
            "adapt_n_spectra": adapt.get("n_spectra"),
            "metrics": getattr(self, "metrics_", None),
        }

    def _table_meta_method(self):
        prov = self.provenance_ or {}
        meta = {
            "model_ensemble_members": int(sum(len(m["regressors"]) for m in self.members_)),
        }
        source = (prov.get("fit") or {}).get("source") or {}
        if isinstance(source, dict) and source.get("name"):
            meta["training_library"] = str(source["name"])
        adapt = prov.get("adapt") or {}
        meta["adapted"] = bool(adapt)
        meta["labels_fine_tuned"] = bool(prov.get("fine_tune"))
        if adapt:
            meta["adapt_n_spectra"] = int(adapt.get("n_spectra", 0))
            name = (adapt.get("source") or {}).get("name")
            if name:
                meta["adapt_library"] = str(name)
        return meta

    def __repr__(self):
        if getattr(self, "members_", None) is None:
            state = "untrained"
        else:
            state = "adapted" if self.is_adapted() else "synthetic-only"
        return f"<DTLModel {self.name!r} labels={list(self.label_names)} ({state})>"


def _record(keep, ids, **extra):
    """Provenance of a step that used the rows ``keep`` of spectra with identifiers ``ids``."""
    return {
        "date": utc_now(),
        "n_spectra": int(keep.sum()),
        "n_excluded": int((~keep).sum()),
        "ids": None if ids is None else [str(i) for i in np.asarray(ids)[keep]],
        **extra,
    }


def _latent_scale(z):
    """Per-dimension mean and one common scale (the RMS deviation) of latents ``(n, d)``.

    One scale for all dimensions keeps the latent geometry: a dimension the
    synthetic spectra barely use is not blown up (a per-dimension scale would
    turn any activity there in observed spectra into huge distances).
    """
    mean = z.mean(axis=0)
    rms = float(np.sqrt(np.mean((z - mean) ** 2)))
    scale = np.full(z.shape[1], rms if rms > 1e-8 else 1.0, dtype=np.float32)
    return mean.astype(np.float32), scale


def _median_bandwidth(x):
    """Median pairwise distance of the rows of a tensor (the Gaussian-kernel bandwidth)."""
    d = torch.pdist(x[: min(x.shape[0], 1000)])
    d = d[d > 0]
    return float(d.median()) if d.numel() else 1.0


def _mmd2(x, y, bandwidth):
    """Differentiable biased MMD² of samples ``x`` and ``y`` with a Gaussian kernel."""
    g = 2.0 * bandwidth * bandwidth

    def k(a, b):  # squared distances without the NaN gradient of a zero distance
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return torch.exp(-d2.clamp_min(0.0) / g).mean()

    return k(x, x) + k(y, y) - 2.0 * k(x, y)


def _min_distance(a, b, chunk=2048):
    """Euclidean distance of each row of ``a`` to its nearest row of ``b`` (``(n,)``)."""
    a = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    b = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))
    if a.shape[0] == 0:
        return np.zeros(0)
    out = [torch.cdist(a[s : s + chunk], b).min(dim=1).values for s in range(0, a.shape[0], chunk)]
    return torch.cat(out).numpy().astype(np.float64)
