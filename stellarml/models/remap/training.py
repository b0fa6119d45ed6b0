"""deep-REMAP training glue: the objective, the training stages, the domain reference.

`train` runs one stage (``"fit"`` from scratch or ``"fine_tune"``) of a
`~stellarml.models.RemapModel` with the generic `~stellarml.training.Trainer`;
the model's public ``fit``/``fine_tune`` methods call it.
"""

import datetime
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..._utils import plain_tree, resolve_device, seed_everything, stellarml_version
from ...flags import FATAL
from ...labels import get_label
from ...training import transfer
from ...training.averaging import average_states, module_state
from ...training.trainer import SpectrumAugmenter, Trainer
from ..domain import nearest_distance
from ..losses import AsymmetricLoss
from .config import merge_settings
from .pdf import pdf_from_logits

__all__ = ["train"]


class _RemapObjective(nn.Module):
    """Training objective: sum_k w_k ASL_k + lambda_emb * L_emb (not public)."""

    def __init__(self, net, asl, embedding_loss, task_weights, embedding_weight, bins):
        super().__init__()
        self.net = net
        self.asl = asl
        self.embedding_loss = embedding_loss
        self.task_weights = tuple(float(w) for w in task_weights)
        self.embedding_weight = float(embedding_weight)
        self.bins = tuple(bins)

    def forward(self, flux, ivar, positions):
        logits, emb = self.net(flux, ivar)
        logs = {}
        asl_total = 0.0
        for k, (name, z) in enumerate(zip(self.net.label_names, logits, strict=True)):
            term = self.asl(z, positions[:, k])
            asl_total = asl_total + self.task_weights[k] * term
            logs[f"asl_{name}"] = term.detach()
            if not self.training:
                p = pdf_from_logits(z, self.asl.variant, self.asl.clip)
                centers = torch.arange(z.shape[1], dtype=p.dtype, device=p.device) + 0.5
                mean = (p * centers).sum(dim=1)
                logs[f"mae_{name}"] = (mean - positions[:, k]).abs().mean() * self.bins[k].width
        loss = asl_total
        if self.embedding_loss is not None and self.embedding_weight > 0:
            emb_loss = self.embedding_loss(emb, positions)
            loss = loss + self.embedding_weight * emb_loss
            logs["embedding"] = emb_loss.detach()
        logs["asl"] = asl_total.detach()
        logs["loss"] = loss
        return logs


def _objective_step(module, batch):
    return module(*batch)


def _augmenter(model, train_cfg):
    if train_cfg["augment"] is None:
        return None
    return SpectrumAugmenter(**train_cfg["augment"])


def _objective(model, config):
    lc = config["loss"]
    asl = AsymmetricLoss(
        gamma_pos=lc["gamma_pos"],
        gamma_neg=lc["gamma_neg"],
        clip=lc["clip"],
        variant=lc["variant"],
        sigma_bins=lc["sigma_bins"],
        label_smoothing=lc["label_smoothing"],
    )
    return _RemapObjective(
        model.net_,
        asl,
        model.embedding_loss_,
        [lc["task_weights"][n] for n in model.label_names],
        lc["embedding_weight"],
        list(model.label_bins().values()),
    )


def _library_ids(library):
    table = getattr(library, "labels", None)
    if table is not None and "id" in getattr(table, "colnames", ()):
        return np.asarray([str(v) for v in table["id"]])
    return None


def _label_matrix(model, labels, n):
    names = model.label_names
    if hasattr(labels, "colnames") or isinstance(labels, dict):
        cols = []
        for name in names:
            try:
                col = labels[name]
            except KeyError:
                raise ValueError(f"labels lack a column {name!r}") from None
            if hasattr(col, "unit") and col.unit is not None:
                col = col.to_value(get_label(name).unit)
            cols.append(np.asarray(col, dtype=float))
        values = np.stack(cols, axis=1)
    else:
        values = np.asarray(labels, dtype=float)
        if values.ndim == 1 and len(names) == 1:
            values = values[:, None]
    if values.shape != (n, len(names)):
        raise ValueError(
            f"labels must have shape (n_spectra, n_labels) = ({n}, {len(names)}), "
            f"got {values.shape}"
        )
    return values


def _positions(model, values, ids, clip_to_bins):
    """Label values -> bin positions, with the out-of-range policy."""
    bins = model.label_bins()
    pos = np.empty_like(values)
    clipped = {}
    for k, (name, b) in enumerate(bins.items()):
        v = values[:, k]
        nan = ~np.isfinite(v)
        if nan.any():
            raise ValueError(
                f"{int(nan.sum())} spectra have no finite {name} label "
                f"(ids {ids[nan][:10].tolist()}); drop them first"
            )
        out = (v < b.lo) | (v > b.hi)
        if out.any():
            if not clip_to_bins:
                raise ValueError(
                    f"{int(out.sum())} {name} labels lie outside the bins "
                    f"[{b.lo:g}, {b.hi:g}] (ids {ids[out][:10].tolist()}, values "
                    f"{v[out][:10].tolist()}); widen bins={{{name!r}: (lo, hi, width)}} "
                    "or pass clip_to_bins=True"
                )
            clipped[name] = {"count": int(out.sum()), "ids": ids[out].tolist()}
        pos[:, k] = np.clip(b.positions(v), 0.0, b.n_bins - 1e-6)
    return pos.astype(np.float32), clipped


def train(
    model,
    stage,
    flux,
    ivar,
    labels,
    *,
    flags,
    ids,
    noiseless,
    validation_fraction,
    epochs,
    clip_to_bins,
    progress,
    source,
    lr=None,
    freeze=None,
    checkpoint_dir=None,
    runs=None,
    loss=None,
):
    """Run one training stage of ``model`` (``"fit"`` or ``"fine_tune"``); returns ``model``.

    The arguments are those of `~stellarml.models.RemapModel.fit_prepared` and
    `~stellarml.models.RemapModel.fine_tune_prepared`, which document them.
    """
    t_start = time.perf_counter()
    config = model.get_config()
    if loss is not None:  # overrides for this training stage only
        config["loss"] = merge_settings(config["loss"], loss, "loss")
    tc = config["training"]
    if runs is None:
        runs = tc["fine_tune_runs"] if stage == "fine_tune" else 1
    if isinstance(runs, bool) or not isinstance(runs, int | np.integer) or runs < 1:
        raise ValueError(f"runs must be a positive integer, got {runs!r}")
    runs = int(runs)
    if stage == "fine_tune":
        model._check_fitted()
    flux, ivar = model._arrays(flux, ivar, noiseless=noiseless)
    n_in = flux.shape[0]
    values = _label_matrix(model, labels, n_in)
    ids = np.arange(n_in).astype(str) if ids is None else np.asarray([str(i) for i in ids])
    if ids.shape != (n_in,):
        raise ValueError(f"ids must have one entry per spectrum ({n_in}), got {ids.shape}")
    record = {"n_input": n_in, "noiseless": bool(noiseless)}
    keep = np.ones(n_in, dtype=bool)
    if flags is not None:
        flags = np.asarray(flags, dtype=np.int64)
        if flags.shape != (n_in,):
            raise ValueError(f"flags must have shape ({n_in},), got {flags.shape}")
        fatal = (flags & int(FATAL)) != 0
        keep &= ~fatal
        record["excluded_fatal"] = {"count": int(fatal.sum()), "ids": ids[fatal].tolist()}
    flux, ivar, values, ids = flux[keep], ivar[keep], values[keep], ids[keep]
    positions, clipped = _positions(model, values, ids, clip_to_bins)
    if clipped:
        record["clipped_labels"] = clipped
    n = flux.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 usable training spectra, got {n}")

    rng = seed_everything(int(model.seed) + (0 if stage == "fit" else 7919))
    frac = tc["validation_fraction"] if validation_fraction is None else validation_fraction
    if not 0 <= frac < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {frac!r}")
    n_val = round(frac * n) if n >= 4 else 0
    n_val = min(max(n_val, 1 if frac > 0 and n >= 4 else 0), n - 2)
    perm = rng.permutation(n)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    record.update(n_train=int(train_idx.size), n_validation=int(val_idx.size))

    device = resolve_device(model.device)
    if stage == "fit":
        model.n_pix_ = flux.shape[1]
        model.net_, model.embedding_loss_ = model._build(flux.shape[1], config)
        model.history_ = []
        model.metrics_ = {}
        model.provenance_ = {}
        prefixes = ()
    else:
        prefixes = transfer.resolve_freeze(
            tc["fine_tune_freeze"] if freeze is None else freeze, model.net_
        )
    frozen = transfer.freeze(model.net_, prefixes)
    if not transfer.trainable_parameters(model.net_):
        raise ValueError("freeze leaves no trainable parameter in the network")
    augmenter = _augmenter(model, tc)
    to_t = torch.from_numpy
    train_data = (to_t(flux[train_idx]), to_t(ivar[train_idx]), to_t(positions[train_idx]))
    val_data = None
    if n_val:
        val_data = (to_t(flux[val_idx]), to_t(ivar[val_idx]), to_t(positions[val_idx]))
        if augmenter is not None:  # one fixed noise draw: a comparable loss every epoch
            val_data = augmenter(val_data, torch.Generator().manual_seed(int(model.seed) + 1))
    fit = stage == "fit"
    trainer_kw = {
        "max_epochs": int(
            epochs if epochs is not None else tc["max_epochs" if fit else "fine_tune_epochs"]
        ),
        "batch_size": tc["batch_size" if fit else "fine_tune_batch_size"],
        "lr": float(lr if lr is not None else tc["lr" if fit else "fine_tune_lr"]),
        "weight_decay": tc["weight_decay"],
        "patience": tc["patience"],
        "min_delta": tc["min_delta"],
        "schedule": tc["schedule"],
        "warmup_fraction": tc["warmup_fraction"],
        "grad_clip": tc["grad_clip"],
        "device": device,
        "progress": tc["progress"] if progress is None else progress,
        "augment": augmenter,
    }
    objective = _objective(model, config)
    start = module_state(objective) if runs > 1 else None
    states, history = [], []
    try:
        for run in range(runs):
            if run:  # every run starts from the same weights, with its own seed
                objective.load_state_dict(start)
                seed_everything(int(model.seed) + (0 if fit else 7919) + run)
            trainer = Trainer(
                **trainer_kw,
                checkpoint_dir=(
                    Path(checkpoint_dir) / f"run{run}"
                    if checkpoint_dir is not None and runs > 1
                    else checkpoint_dir
                ),
                seed=int(model.seed) + run,
            )
            run_history = trainer.fit(objective, _objective_step, train_data, val_data)
            for entry in run_history:
                entry["run"] = run
            history += run_history
            if runs > 1:
                states.append(module_state(objective))
    finally:
        transfer.unfreeze(model.net_)
    if runs > 1:  # uniform "model soup" (Wortsman et al. 2022) of the runs
        objective.load_state_dict(average_states(states))
    for entry in history:
        entry["stage"] = stage
    model.history_ = list(model.history_) + history

    embedding_frozen = all(
        any(p == q or p.startswith(q + ".") for q in prefixes)
        for p, _ in model.net_.named_parameters()
        if p.split(".")[0] in ("stem", "stages", "embedding")
    )
    reference = train_data[:2]
    reference_idx = rng.choice(
        train_idx.size,
        size=min(int(tc["domain_reference_size"]), train_idx.size),
        replace=False,
    )
    reference = tuple(t[np.sort(reference_idx)] for t in reference)
    if augmenter is not None:  # one fixed draw, like the validation set
        reference = augmenter(reference, torch.Generator().manual_seed(int(model.seed) + 2))
    extend = stage == "fine_tune" and embedding_frozen
    domain_update = _update_domain(model, reference, val_data, extend, tc, rng, device)

    # metrics on the held-out set (or the training set when there is none)
    split = "validation" if val_data is not None else "training"
    eval_data = val_data if val_data is not None else train_data
    posterior, _ = model._predict_tensors(
        eval_data[0], eval_data[1], batch_size=1024, device=device, want_embedding=False
    )
    model.metrics_[stage] = {
        "split": split,
        "n": int(eval_data[0].shape[0]),
        "labels": _metrics(model, posterior.summaries(), eval_data[2].numpy()),
    }
    record.update(
        epochs_run=len(history),
        best_epoch=int(trainer.best_epoch_),
        stop_reason=trainer.stop_reason_,
        train_time_s=float(time.perf_counter() - t_start),
        device=str(device),
        seed=int(model.seed),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        domain_reference=domain_update,
    )
    if stage == "fine_tune":
        record.update(freeze=list(prefixes), n_frozen_parameters=len(frozen), lr=trainer.lr)
    if runs > 1:
        record["runs"] = runs
    if loss is not None:
        record["loss_overrides"] = plain_tree(loss)
    if source is not None:
        record["source"] = plain_tree(source)
    _record(model, stage, record)
    return model


def _update_domain(model, reference, held_out, extend, tc, rng, device):
    """Set `domain_reference_` and `domain_threshold_` after training.

    ``reference`` and ``held_out`` are (flux, ivar[, ...]) tensors of
    training and validation spectra. With ``extend`` (the embedding did
    not change) the new embeddings join the stored reference, which is
    subsampled to ``domain_reference_size``, and the threshold is kept.
    Otherwise the reference is replaced and the threshold is the
    ``domain_quantile`` of the held-out nearest-neighbour distances
    (leave-one-out distances within the reference without held-out data).
    Returns ``"extended"`` or ``"recomputed"``.
    """
    size = int(tc["domain_reference_size"])
    _, emb = model._predict_tensors(*reference[:2], batch_size=1024, device=device)
    if extend and getattr(model, "domain_reference_", None) is not None:
        old = model.domain_reference_
        keep = max(size - emb.shape[0], 0)
        if old.shape[0] > keep:
            old = old[np.sort(rng.choice(old.shape[0], keep, replace=False))]
        model.domain_reference_ = np.concatenate([old, emb]).astype(np.float32)
        return "extended"
    model.domain_reference_ = emb.astype(np.float32)
    if held_out is not None:
        _, held = model._predict_tensors(*held_out[:2], batch_size=1024, device=device)
        dist = nearest_distance(held, model.domain_reference_)
    else:
        dist = nearest_distance(emb, emb, exclude_self=True)
    dist = dist[np.isfinite(dist)]
    model.domain_threshold_ = (
        float(np.quantile(dist, tc["domain_quantile"])) if dist.size else math.inf
    )
    return "recomputed"


def _record(model, stage, record):
    prov = dict(model.provenance_)
    prov.update(
        stellarml_version=stellarml_version(),
        torch_version=torch.__version__.split("+")[0],
        numpy_version=np.__version__,
    )
    if stage == "fit":
        prov["fit"] = record
        prov["fine_tune"] = []
    else:
        prov["fine_tune"] = [*prov.get("fine_tune", []), record]
    model.provenance_ = plain_tree(prov)


def _metrics(model, summary, positions):
    out = {}
    for k, (name, b) in enumerate(model.label_bins().items()):
        truth = b.lo + b.width * positions[:, k].astype(np.float64)
        s = summary[name]
        resid = s["median"] - truth
        inside = (truth >= s["p16"]) & (truth <= s["p84"])
        out[name] = {
            "mae": float(np.mean(np.abs(resid))),
            "rmse": float(np.sqrt(np.mean(resid**2))),
            "bias": float(np.mean(resid)),
            "coverage_68": float(np.mean(inside)),
            "median_half_width": float(np.median(0.5 * (s["p84"] - s["p16"]))),
        }
    return out
