"""Worker of test_distributed.py, started by torchrun: train a tiny REMAP model data-parallel.

``python -m torch.distributed.run --nproc_per_node=2 _ddp_worker.py OUT`` writes
``OUT/weights_rank{r}.npz`` (the test's own output, on every rank) and asks the
trainer for checkpoints in ``OUT/ckpt_rank{r}`` (the library must write them on rank 0 only).
Run without torchrun it trains in one process: the reference.
"""

import sys
from pathlib import Path

import numpy as np
import torch

from stellarml.models import RemapModel
from stellarml.training import distributed

BINS = {"teff": (3500.0, 7500.0, 250.0), "logg": (0.0, 5.5, 0.5)}
TINY = {
    "stem_channels": 6,
    "stem_kernel": 5,
    "stem_stride": 2,
    "stage_channels": (8, 12),
    "stage_blocks": (1, 1),
    "kernel_size": 3,
    "pool_length": 4,
    "embedding_dim": 8,
    "dropout": 0.0,  # dropout masks depend on the per-process batch shape
}
TRAINING = {
    "batch_size": 10,  # validation: 2 evaluation batches per process
    "lr": 3e-3,
    "max_epochs": 3,
    "fine_tune_epochs": 2,
    "fine_tune_batch_size": 16,
    "validation_fraction": 0.3,
    "progress": False,
    "domain_reference_size": 50,
    "augment": {"snr": (20.0, 200.0), "rv_jitter": 0.3},
}
# the centre loss updates its centres outside autograd from the local batch: not shardable
LOSS = {"embedding": None}


def spectra(n, npix=48, seed=0):
    """Absorption lines whose depths and widths depend on teff and logg."""
    rng = np.random.default_rng(seed)
    teff = rng.uniform(4000, 7000, n)
    logg = rng.uniform(1.0, 5.0, n)
    t = (teff[:, None] - 5500) / 1500
    g = (logg[:, None] - 3) / 2
    k = np.arange(5)[None, :]
    depth = np.clip(0.4 + 0.25 * np.sin(k + 1.3) * t + 0.05 * g * (k % 3 - 1), 0.02, 0.95)
    width = 1.2 + 0.5 * g + 0.2 * (k % 2)
    centres = np.linspace(6, npix - 6, 5)[None, :, None]
    x = np.arange(npix)[None, None, :]
    flux = 1.0 - (depth[..., None] * np.exp(-0.5 * ((x - centres) / width[..., None]) ** 2)).sum(1)
    return np.clip(flux, 0.02, None).astype(np.float32), np.stack([teff, logg], axis=1)


def train(out, ckpt=None):
    """Fit (165 spectra: 115 for training, an odd last batch) and fine-tune; returns the model."""
    torch.set_num_threads(1)
    flux, labels = spectra(165, seed=1)
    model = RemapModel(
        ("teff", "logg"), bins=BINS, architecture=TINY, training=TRAINING, loss=LOSS, seed=3
    )
    model.fit_prepared(flux, None, labels, noiseless=True, checkpoint_dir=ckpt)
    flux2, labels2 = spectra(60, seed=2)
    model.fine_tune_prepared(flux2, None, labels2, noiseless=True, freeze="stem")
    return model


def arrays(model):
    flat = {}

    def walk(prefix, obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(obj, np.ndarray) and obj.dtype != object:
            flat[prefix] = obj

    walk("", model.weight_arrays())
    flux, _ = spectra(40, seed=9)
    pred = model._predict_tensors(
        torch.from_numpy(flux), torch.full(flux.shape, 1e4), batch_size=64, device="cpu"
    )
    flat["pred.embedding"] = np.asarray(pred[1])
    flat["history.loss"] = np.array([e["loss"] for e in model.history_])
    flat["history.val_loss"] = np.array([e.get("val_loss", np.nan) for e in model.history_])
    return flat


def main(out):
    out = Path(out)
    distributed.init_distributed()
    try:
        r = distributed.rank()
        model = train(out, ckpt=out / f"ckpt_rank{r}")
        np.savez(out / f"weights_rank{r}.npz", world=distributed.world_size(), **arrays(model))
    finally:
        distributed.destroy_distributed()


if __name__ == "__main__":
    main(sys.argv[1])
