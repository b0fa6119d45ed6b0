"""Time of a small REMAP training in one process and under torchrun (DDP, gloo on the CPU).

    OMP_NUM_THREADS=1 python benchmarks/ddp_training.py
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 benchmarks/ddp_training.py

4000 synthetic spectra of 400 pixels (the generator of
``tests/training/_ddp_worker.py``), a small network (16/32 channels), batch
128, 3 epochs, no embedding loss. Prints, on rank 0, the number of processes,
the summed epoch time and the last validation loss.
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "training"))

from _ddp_worker import BINS, TINY, spectra

from stellarml.models import RemapModel
from stellarml.training import distributed


def main():
    distributed.init_distributed()
    torch.set_num_threads(1)
    flux, labels = spectra(4000, npix=400, seed=1)
    arch = dict(
        TINY, stem_channels=16, stage_channels=(16, 32), stage_blocks=(1, 1), embedding_dim=16
    )
    training = {
        "batch_size": 128,
        "lr": 3e-3,
        "max_epochs": 3,
        "progress": False,
        "domain_reference_size": 200,
        "patience": None,
    }
    model = RemapModel(
        ("teff", "logg"),
        bins=BINS,
        architecture=arch,
        training=training,
        loss={"embedding": None},
        seed=3,
    )
    t0 = time.perf_counter()
    model.fit_prepared(flux, None, labels, noiseless=True)
    epochs = sum(e["time_s"] for e in model.history_)
    if distributed.is_main_process():
        print(
            f"processes={distributed.world_size()} epochs_time_s={epochs:.2f} "
            f"fit_total_s={time.perf_counter() - t0:.2f} "
            f"val_loss={model.history_[-1]['val_loss']:.5f}"
        )
    distributed.destroy_distributed()


if __name__ == "__main__":
    main()
