"""A small, deterministic training loop for stellarml networks.

`Trainer` runs mini-batch AdamW with a learning-rate schedule, a validation
split, early stopping on the validation loss with restoration of the best
weights, optional ``.npz`` checkpoints (plain arrays, never pickle), a tqdm
progress bar, and an augmentation hook applied to every training batch.
`SpectrumAugmenter` is such a hook for spectra on a log-lambda grid: noise at a
random S/N, a sub-pixel radial-velocity jitter and an optional smooth
continuum distortion, all generated in torch on the training device.

On the CPU, two runs with the same seed, data and thread count give
bit-identical weights (shuffling, augmentation and dropout draw from seeded
generators).

Inside a `torch.distributed` process group (``torchrun``; see
`stellarml.training.distributed`) `Trainer.fit` trains data-parallel: the
module is wrapped in ``DistributedDataParallel``, its batch norms are
synchronised, each process takes a disjoint slice of every global batch of
``batch_size`` spectra, metrics are averaged over processes and only rank 0
writes checkpoints and shows the progress bar. ``loss_fn`` then receives the
``DistributedDataParallel`` wrapper during training steps (call it,
``module(...)``; the wrapped module is ``module.module``) and the module itself
for validation. Without a process group nothing of this happens.
"""

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from .._utils import resolve_device
from . import distributed
from .transfer import set_train_mode, trainable_parameters

__all__ = [
    "SCHEDULES",
    "SpectrumAugmenter",
    "Trainer",
    "load_state_dict_npz",
    "save_state_dict_npz",
]

#: Learning-rate schedules known to `Trainer`.
SCHEDULES = ("onecycle", "cosine", "constant")


def save_state_dict_npz(path, state_dict):
    """Write a ``state_dict`` as an uncompressed ``.npz`` of plain arrays.

    Parameters
    ----------
    path : str or path-like
        Output file.
    state_dict : mapping of str to `torch.Tensor`
        E.g. ``module.state_dict()``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import torch
    >>> from stellarml.training import load_state_dict_npz, save_state_dict_npz
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "weights.npz"
    ...     save_state_dict_npz(path, net.state_dict())
    ...     state = load_state_dict_npz(path)
    >>> len(state), tuple(state["0.weight"].shape), state["1.num_batches_tracked"].dtype
    (7, (3, 4), torch.int64)
    >>> all(torch.equal(state[key], value) for key, value in net.state_dict().items())
    True
    >>> net.load_state_dict(state)
    <All keys matched successfully>
    """
    arrays = {name: t.detach().cpu().numpy() for name, t in state_dict.items()}
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def load_state_dict_npz(path):
    """Read a ``state_dict`` written by `save_state_dict_npz` (no pickle).

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file.

    Returns
    -------
    state_dict : dict of str to `torch.Tensor`
        CPU tensors with the stored dtypes, for ``module.load_state_dict``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import torch
    >>> from stellarml.training import load_state_dict_npz, save_state_dict_npz
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "weights.npz"
    ...     save_state_dict_npz(path, net.state_dict())
    ...     state = load_state_dict_npz(path)
    >>> len(state), tuple(state["0.weight"].shape), state["1.num_batches_tracked"].dtype
    (7, (3, 4), torch.int64)
    >>> all(torch.equal(state[key], value) for key, value in net.state_dict().items())
    True
    >>> net.load_state_dict(state)
    <All keys matched successfully>
    """
    with np.load(path, allow_pickle=False) as data:
        return {name: torch.from_numpy(np.array(data[name])) for name in data.files}


class SpectrumAugmenter:
    """On-the-fly augmentation of continuum-normalised spectra on a log-lambda grid.

    Called by `Trainer` on every training batch as ``augment(batch,
    generator)``; ``batch[0]`` is the flux and ``batch[1]`` the inverse
    variance, both ``(n, npix)``; other entries pass through. Steps, in the
    order an observation would apply them:

    1. radial-velocity jitter: a shift by ``N(0, rv_jitter)`` pixels (one
       value per spectrum), linear interpolation; on a log-lambda grid one
       pixel is a constant velocity ``c * dlnlambda`` (90 km/s for
       ``dlnlambda = 3e-4``). Pixels shifted in from outside get ``ivar = 0``.
    2. continuum distortion: multiplication by ``1 + continuum * P(x)`` with
       ``P`` a random Legendre series of degree ``continuum_degree`` with
       standard-normal coefficients divided by ``sqrt(degree + 1)``, mimicking
       imperfect continuum normalisation (off by default).
    3. noise: a continuum S/N per pixel drawn log-uniformly in ``snr``; the
       added noise has standard deviation ``sqrt(max(flux, 0.01)) / snr``
       (photon noise) and the inverse variance becomes
       ``1 / (1 / ivar + sigma^2)``.

    4. masks (off by default): scattered bad pixels, each pixel masked with a
       probability drawn per spectrum uniformly in ``[0, mask_fraction]``, and
       between 0 and ``mask_chunks`` contiguous masked runs (uniform number)
       of 1 to ``mask_chunk_pixels`` pixels each (uniform length and start).
       Masked pixels get ``flux = 0`` and ``ivar = 0``, exactly what
       `~stellarml.spectra.prepare` gives a pixel without data, so the network
       sees them through the same input encoding as at inference.

    Masked pixels (``ivar == 0``) stay masked. Inputs known to be noiseless
    should carry a very large ``ivar`` (e.g. 1e12), not 0.

    Parameters
    ----------
    snr : tuple of float or None
        ``(min, max)`` continuum S/N per pixel; `None` adds no noise.
    rv_jitter : float
        Standard deviation of the shift, in pixels (0 disables).
    continuum : float
        Fractional amplitude of the continuum distortion (0 disables).
    continuum_degree : int
        Degree of the Legendre series.
    mask_fraction : float
        Largest fraction of scattered bad pixels per spectrum, in [0, 1)
        (0 disables).
    mask_chunks : int
        Largest number of contiguous masked runs per spectrum (0 disables).
    mask_chunk_pixels : int
        Largest length of a masked run [pixels].

    Raises
    ------
    ValueError
        For an ``snr`` range that is not ``0 < min <= max``, negative
        ``rv_jitter`` or ``continuum``, or masking settings out of range.

    Examples
    --------
    Noise at S/N 50 added to noiseless continua:

    >>> import torch
    >>> from stellarml.training import SpectrumAugmenter
    >>> augment = SpectrumAugmenter(snr=(50.0, 50.0), rv_jitter=0.0)
    >>> flux, ivar = torch.ones(4, 500), torch.full((4, 500), 1e12)
    >>> new_flux, new_ivar = augment((flux, ivar), torch.Generator().manual_seed(0))
    >>> round(float(new_flux.std()), 3), round(float(new_ivar[0, 0]) ** -0.5, 3)
    (0.02, 0.02)

    Masked runs of up to 20 pixels (``ivar = 0``), at most two per spectrum:

    >>> mask = SpectrumAugmenter(snr=None, rv_jitter=0.0, mask_chunks=2, mask_chunk_pixels=20)
    >>> _, masked_ivar = mask((flux, ivar), torch.Generator().manual_seed(0))
    >>> n_masked = (masked_ivar == 0).sum(dim=1)
    >>> bool(n_masked.max() > 0), bool(n_masked.max() <= 40)
    (True, True)
    """

    def __init__(
        self,
        snr=(10.0, 300.0),
        rv_jitter=0.3,
        continuum=0.0,
        continuum_degree=3,
        mask_fraction=0.0,
        mask_chunks=0,
        mask_chunk_pixels=50,
    ):
        if snr is not None:
            lo, hi = (float(v) for v in snr)
            if not 0 < lo <= hi:
                raise ValueError(f"snr must be (min, max) with 0 < min <= max, got {snr!r}")
            snr = (lo, hi)
        if rv_jitter < 0 or continuum < 0:
            raise ValueError("rv_jitter and continuum must be >= 0")
        if int(continuum_degree) < 0:
            raise ValueError(f"continuum_degree must be >= 0, got {continuum_degree!r}")
        if not 0.0 <= float(mask_fraction) < 1.0:
            raise ValueError(f"mask_fraction must be within [0, 1), got {mask_fraction!r}")
        for name, value, low in (
            ("mask_chunks", mask_chunks, 0),
            ("mask_chunk_pixels", mask_chunk_pixels, 1),
        ):
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.mask_fraction = float(mask_fraction)
        self.mask_chunks = int(mask_chunks)
        self.mask_chunk_pixels = int(mask_chunk_pixels)
        self.snr = snr
        self.rv_jitter = float(rv_jitter)
        self.continuum = float(continuum)
        self.continuum_degree = int(continuum_degree)

    def to_dict(self):
        """Settings as a plain dict (the constructor's keyword arguments)."""
        return {
            "snr": None if self.snr is None else list(self.snr),
            "rv_jitter": self.rv_jitter,
            "continuum": self.continuum,
            "continuum_degree": self.continuum_degree,
            "mask_fraction": self.mask_fraction,
            "mask_chunks": self.mask_chunks,
            "mask_chunk_pixels": self.mask_chunk_pixels,
        }

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"{type(self).__name__}({args})"

    def __call__(self, batch, generator=None):
        """Augment ``batch`` (see the class description); returns a new tuple."""
        flux, ivar, *rest = batch
        n, npix = flux.shape
        dev, dtype = flux.device, flux.dtype
        good = ivar > 0
        var = torch.where(
            good, 1.0 / ivar.clamp_min(1e-30), torch.zeros((), dtype=dtype, device=dev)
        )
        if self.rv_jitter > 0:
            shift = torch.randn(n, 1, generator=generator, device=dev, dtype=dtype)
            x = torch.arange(npix, device=dev, dtype=dtype) - self.rv_jitter * shift
            inside = (x >= 0) & (x <= npix - 1)
            x = x.clamp(0, npix - 1)
            i0 = x.floor().long().clamp(max=npix - 2)
            w = x - i0
            i1 = i0 + 1
            flux = (1 - w) * flux.gather(1, i0) + w * flux.gather(1, i1)
            var = (1 - w) * var.gather(1, i0) + w * var.gather(1, i1)
            good = inside & good.gather(1, i0) & good.gather(1, i1)
        if self.continuum > 0:
            xs = torch.linspace(-1.0, 1.0, npix, device=dev, dtype=dtype)
            coef = torch.randn(
                n, self.continuum_degree + 1, generator=generator, device=dev, dtype=dtype
            ) / math.sqrt(self.continuum_degree + 1)
            legendre = [torch.ones_like(xs), xs]
            for k in range(2, self.continuum_degree + 1):
                legendre.append(((2 * k - 1) * xs * legendre[-1] - (k - 1) * legendre[-2]) / k)
            basis = torch.stack(legendre[: self.continuum_degree + 1])
            factor = 1.0 + self.continuum * (coef @ basis)
            flux = flux * factor
            var = var * factor.square()
        if self.snr is not None:
            lo, hi = self.snr
            u = torch.rand(n, 1, generator=generator, device=dev, dtype=dtype)
            snr = torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
            sigma = flux.clamp_min(0.01).sqrt() / snr
            noise = torch.randn(n, npix, generator=generator, device=dev, dtype=dtype)
            flux = flux + sigma * noise
            var = var + sigma.square()
        if self.mask_fraction > 0 or self.mask_chunks > 0:
            good = good & ~self._masks(n, npix, generator, dev, dtype)
        zero = torch.zeros((), dtype=dtype, device=dev)
        ivar = torch.where(good, 1.0 / var.clamp_min(1e-30), zero)
        flux = torch.where(good, flux, zero)
        return (flux, ivar, *rest)

    def _masks(self, n, npix, generator, dev, dtype):
        """Boolean (n, npix) masks of scattered pixels and contiguous runs (step 4)."""
        masked = torch.zeros(n, npix, dtype=torch.bool, device=dev)
        if self.mask_fraction > 0:
            p = self.mask_fraction * torch.rand(n, 1, generator=generator, device=dev, dtype=dtype)
            masked |= torch.rand(n, npix, generator=generator, device=dev, dtype=dtype) < p
        if self.mask_chunks > 0:
            k = self.mask_chunks
            count = torch.randint(0, k + 1, (n, 1), generator=generator, device=dev)
            length = torch.randint(
                1, self.mask_chunk_pixels + 1, (n, k), generator=generator, device=dev
            )
            start = torch.randint(0, npix, (n, k), generator=generator, device=dev)
            use = torch.arange(k, device=dev) < count  # the first `count` runs of each row
            x = torch.arange(npix, device=dev)
            inside = (x >= start[..., None]) & (x < (start + length)[..., None]) & use[..., None]
            masked |= inside.any(dim=1)
        return masked


def _scalars(out):
    """Normalise a loss function's output to (loss tensor, dict of scalar tensors)."""
    if isinstance(out, torch.Tensor):
        return out, {"loss": out.detach()}
    if isinstance(out, dict) and "loss" in out:
        logs = {
            k: (v.detach() if isinstance(v, torch.Tensor) else torch.tensor(float(v)))
            for k, v in out.items()
        }
        return out["loss"], logs
    raise TypeError("loss_fn must return a scalar tensor or a dict with a 'loss' entry")


class Trainer:
    """Mini-batch training with validation, early stopping and checkpoints.

    Parameters
    ----------
    max_epochs : int
        Maximum number of passes over the training data.
    batch_size : int
        Spectra per optimiser step.
    lr : float
        Peak learning rate of AdamW.
    weight_decay : float
        Decoupled weight decay of AdamW, applied to weight matrices and
        convolution kernels only (not to biases or normalisation parameters).
    patience : int or None
        Stop after this many epochs without an improvement of the monitored
        loss (validation loss when there is validation data, else the training
        loss) by more than ``min_delta``. `None` disables early stopping.
    min_delta : float
        Minimal decrease that counts as an improvement.
    schedule : {"onecycle", "cosine", "constant"}
        Learning-rate schedule over ``max_epochs`` (stepped per batch):
        one-cycle (linear-cosine warm-up over ``warmup_fraction`` of the steps
        from ``lr / 25``, then cosine annealing to ``lr / 1e4``; Smith &
        Topin 2019), cosine annealing from ``lr`` to 0, or constant.
    warmup_fraction : float
        Warm-up share of the one-cycle schedule.
    grad_clip : float or None
        Maximum global gradient norm; `None` disables clipping.
    checkpoint_dir : str or path-like or None
        When set, ``last.npz`` (every epoch) and ``best.npz`` (every
        improvement) state-dict snapshots and ``history.json`` are written
        there (see `save_state_dict_npz`).
    seed : int
        Seed of the shuffling, augmentation and dropout generators.
    device : str or `torch.device`
        ``"auto"`` picks CUDA when available (`stellarml._utils.resolve_device`).
    progress : bool
        Show a tqdm progress bar over epochs.
    augment : callable or None
        ``augment(batch, generator) -> batch`` applied to every training
        batch (e.g. `SpectrumAugmenter`); ``generator`` is a seeded
        `torch.Generator` on the training device.
    deterministic : bool
        On CUDA, ask cuDNN for deterministic algorithms during `fit`
        (restored afterwards). CPU training is deterministic anyway.

    Attributes
    ----------
    history_ : list of dict
        One entry per epoch: ``epoch``, ``lr``, ``time_s``, ``improved``
        (whether the monitored loss improved), the training averages of
        everything the loss function returned (``loss``...) and, with
        validation data, the same prefixed ``val_``.
    best_epoch_ : int
        Epoch (1-based) whose weights were restored.
    best_loss_ : float
        Monitored loss at that epoch.
    stop_reason_ : str
        ``"max_epochs"`` or ``"early_stopping"``.

    Raises
    ------
    ValueError
        For ``max_epochs < 1``, ``batch_size < 2``, a non-positive ``lr``, an
        unknown ``schedule``, ``patience < 1`` or ``warmup_fraction`` outside
        (0, 1).
    TypeError
        If ``augment`` is not callable.

    Examples
    --------
    A tiny network fitted to a linear target, with a validation split:

    >>> import torch
    >>> from stellarml.training import Trainer
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(64, 4)
    >>> y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0])
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    >>> def loss_fn(module, batch):
    ...     inputs, target = batch
    ...     return torch.nn.functional.mse_loss(module(inputs)[:, 0], target)
    >>> trainer = Trainer(max_epochs=10, batch_size=16, lr=1e-2, progress=False, device="cpu")
    >>> history = trainer.fit(net, loss_fn, (x[:48], y[:48]), val_data=(x[48:], y[48:]))
    >>> len(history), sorted(history[0])
    (10, ['epoch', 'improved', 'loss', 'lr', 'time_s', 'val_loss'])
    >>> trainer.stop_reason_, history[-1]["val_loss"] < history[0]["val_loss"]
    ('max_epochs', True)
    >>> trainer.best_loss_ == min(entry["val_loss"] for entry in history)  # weights restored
    True
    """

    def __init__(
        self,
        max_epochs=30,
        batch_size=256,
        lr=2e-3,
        weight_decay=1e-4,
        patience=8,
        min_delta=0.0,
        schedule="onecycle",
        warmup_fraction=0.1,
        grad_clip=5.0,
        checkpoint_dir=None,
        seed=0,
        device="auto",
        progress=True,
        augment=None,
        deterministic=True,
    ):
        if int(max_epochs) < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs!r}")
        if int(batch_size) < 2:
            raise ValueError(f"batch_size must be >= 2 (batch norm), got {batch_size!r}")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if patience is not None and int(patience) < 1:
            raise ValueError(f"patience must be >= 1 or None, got {patience!r}")
        if not 0 < warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in (0, 1), got {warmup_fraction!r}")
        if augment is not None and not callable(augment):
            raise TypeError("augment must be callable: augment(batch, generator) -> batch")
        self.max_epochs = int(max_epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.patience = None if patience is None else int(patience)
        self.min_delta = float(min_delta)
        self.schedule = schedule
        self.warmup_fraction = float(warmup_fraction)
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.checkpoint_dir = checkpoint_dir
        self.seed = int(seed)
        self.device = device
        self.progress = bool(progress)
        self.augment = augment
        self.deterministic = bool(deterministic)

    def _optimizer(self, module):
        params = trainable_parameters(module)
        if not params:
            raise ValueError("the module has no trainable parameters (everything is frozen)")
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": self.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        return torch.optim.AdamW(groups, lr=self.lr)

    def _scheduler(self, optimizer, total_steps):
        if self.schedule == "onecycle":
            if total_steps < 4:  # too short to warm up and anneal: keep the rate constant
                return None
            # torch's OneCycleLR divides by zero when the warm-up is one step or less long
            # (e.g. 10 steps x 0.1): give each phase at least two steps
            pct_start = min(max(self.warmup_fraction, 2.0 / total_steps), 0.5)
            return torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=self.lr,
                total_steps=total_steps,
                pct_start=pct_start,
                cycle_momentum=False,
            )
        if self.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        return None

    def _batches(self, n, generator, min_size=2):
        perm = torch.randperm(n, generator=generator)
        batches = list(perm.split(self.batch_size))
        if len(batches) > 1 and len(batches[-1]) < min_size:
            # a batch of one spectrum breaks batch norm: merge it into the previous batch
            batches[-2] = torch.cat(batches[-2:])
            batches.pop()
        return batches

    @staticmethod
    def _check_data(data, name):
        if data is None:
            return None
        if isinstance(data, torch.Tensor):
            data = (data,)
        data = tuple(data)
        if not data or not all(isinstance(t, torch.Tensor) for t in data):
            raise TypeError(f"{name} must be a tuple of torch tensors")
        n = data[0].shape[0]
        if any(t.shape[0] != n for t in data):
            raise ValueError(f"all tensors of {name} must have the same first dimension")
        if n < 2 and name == "train_data":
            raise ValueError(f"{name} needs at least 2 samples, got {n}")
        return data

    def _evaluate(self, module, loss_fn, data, device):
        module.eval()
        n = data[0].shape[0]
        world = distributed.world_size()
        reduce = world > 1 and n >= world
        if reduce:  # each process evaluates a contiguous share; the sums are added up
            r = distributed.rank()
            data = tuple(t[n * r // world : n * (r + 1) // world] for t in data)
        sums = {}
        with torch.no_grad():
            for start in range(0, data[0].shape[0], 2 * self.batch_size):
                batch = tuple(t[start : start + 2 * self.batch_size].to(device) for t in data)
                _, logs = _scalars(loss_fn(module, batch))
                size = batch[0].shape[0]
                for key, value in logs.items():
                    sums[key] = sums.get(key, 0.0) + value.double() * size
        if reduce:
            totals = distributed.all_reduce_sums(sums, device)
            return {key: totals[key] / n for key in sums}
        return {key: float(value) / n for key, value in sums.items()}

    def fit(self, module, loss_fn, train_data, val_data=None):
        """Train ``module`` in place.

        Parameters
        ----------
        module : `torch.nn.Module`
            The network (or a training objective wrapping it); its trainable
            parameters (``requires_grad``) are optimised. Submodules frozen
            with `stellarml.training.transfer.freeze` stay in evaluation mode.
        loss_fn : callable
            ``loss_fn(module, batch)`` returning a scalar loss tensor or a dict
            with a ``"loss"`` tensor and other scalars to log.
        train_data, val_data : tuple of `torch.Tensor`
            Tensors sharing the first (sample) dimension, kept where they are
            (e.g. on the CPU) and moved to the device batch by batch.

        Returns
        -------
        history : list of dict
            `history_`.

        Raises
        ------
        FloatingPointError
            If the training loss becomes NaN or infinite.
        """
        train_data = self._check_data(train_data, "train_data")
        val_data = self._check_data(val_data, "val_data")
        if val_data is not None and val_data[0].shape[0] == 0:
            val_data = None
        device = resolve_device(self.device)
        module.to(device)
        world = distributed.world_size()
        main = distributed.is_main_process()
        torch.manual_seed(self.seed)
        shuffle_gen = torch.Generator().manual_seed(self.seed)
        aug_gen = torch.Generator(device=device).manual_seed(self.seed + 1)
        optimizer = self._optimizer(module)
        n = train_data[0].shape[0]
        min_batch = max(2, world)  # every process gets at least one spectrum of a batch
        steps = len(self._batches(n, torch.Generator().manual_seed(0), min_batch))
        scheduler = self._scheduler(optimizer, steps * self.max_epochs)
        ckpt = None
        if self.checkpoint_dir is not None and main:
            ckpt = Path(self.checkpoint_dir)
            ckpt.mkdir(parents=True, exist_ok=True)

        cudnn_state = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        if self.deterministic and device.type == "cuda":
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        history = []
        best = math.inf
        best_state = None
        self.best_epoch_ = 0
        self.stop_reason_ = "max_epochs"
        waited = 0
        from tqdm import tqdm

        bar = tqdm(
            range(1, self.max_epochs + 1),
            desc="training",
            unit="epoch",
            disable=not (self.progress and main),
        )
        try:
            with distributed.sync_batch_norm(module, device):
                # under a process group: DistributedDataParallel (else ``module`` itself)
                step_module = distributed.wrap_ddp(
                    module,
                    device,
                    find_unused_parameters=os.environ.get("STELLARML_DDP_FIND_UNUSED") == "1",
                )
                for epoch in bar:
                    t0 = time.perf_counter()
                    set_train_mode(module)
                    sums = {}
                    for idx in self._batches(n, shuffle_gen, min_batch):
                        if world == 1:
                            batch = tuple(t[idx].to(device, non_blocking=True) for t in train_data)
                            if self.augment is not None:
                                batch = tuple(self.augment(batch, aug_gen))
                        elif self.augment is None:
                            mine = distributed.shard(idx)
                            batch = tuple(t[mine].to(device, non_blocking=True) for t in train_data)
                        else:  # augment the whole global batch (the draws of one process)
                            batch = tuple(t[idx].to(device, non_blocking=True) for t in train_data)
                            batch = tuple(self.augment(batch, aug_gen))
                            mine = distributed.shard(torch.arange(len(idx), device=device))
                            batch = tuple(t[mine] for t in batch)
                        loss, logs = _scalars(loss_fn(step_module, batch))
                        finite = bool(torch.isfinite(loss))
                        if world > 1:
                            finite = distributed.all_true(finite, device)
                        if not finite:
                            raise FloatingPointError(
                                f"training loss is {float(loss.detach())} in epoch {epoch}; "
                                "lower lr or check the inputs for non-finite values"
                            )
                        size = batch[0].shape[0]
                        if world > 1 and size * world != len(idx):
                            # DDP averages the processes' gradients with equal weights: weight
                            # each mean loss by its share of the batch instead
                            loss = loss * (size * world / len(idx))
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        if self.grad_clip is not None:
                            torch.nn.utils.clip_grad_norm_(
                                trainable_parameters(module), self.grad_clip
                            )
                        optimizer.step()
                        if scheduler is not None:
                            scheduler.step()
                        for key, value in logs.items():
                            sums[key] = sums.get(key, 0.0) + value.double() * size
                    entry = {"epoch": epoch}
                    if world > 1:
                        totals = distributed.all_reduce_sums(sums, device)
                        entry.update({key: totals[key] / n for key in sums})
                    else:
                        entry.update({key: float(value) / n for key, value in sums.items()})
                    if val_data is not None:
                        val = self._evaluate(module, loss_fn, val_data, device)
                        entry.update({f"val_{key}": value for key, value in val.items()})
                        monitored = entry["val_loss"]
                    else:
                        monitored = entry["loss"]
                    if world > 1:  # one decision for all processes: rank 0's
                        (monitored,) = distributed.broadcast_floats([monitored], device)
                    entry["lr"] = float(optimizer.param_groups[0]["lr"])
                    entry["time_s"] = time.perf_counter() - t0
                    improved = monitored < best - self.min_delta
                    entry["improved"] = bool(improved)
                    history.append(entry)
                    bar.set_postfix(
                        loss=f"{entry['loss']:.4g}", val=f"{entry.get('val_loss', math.nan):.4g}"
                    )
                    if improved:
                        best = monitored
                        self.best_epoch_ = epoch
                        waited = 0
                        best_state = {
                            k: v.detach().to("cpu", copy=True)
                            for k, v in module.state_dict().items()
                        }
                        if ckpt is not None:
                            save_state_dict_npz(ckpt / "best.npz", best_state)
                    else:
                        waited += 1
                    if ckpt is not None:
                        save_state_dict_npz(ckpt / "last.npz", module.state_dict())
                        (ckpt / "history.json").write_text(json.dumps(history, indent=1))
                    if self.patience is not None and waited >= self.patience:
                        self.stop_reason_ = "early_stopping"
                        break
                del step_module
        finally:
            bar.close()
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_state
        if best_state is not None:
            module.load_state_dict(best_state)
        self.best_loss_ = float(best)
        self.history_ = history
        return history
