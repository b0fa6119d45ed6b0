"""Data-parallel training (torch.distributed, gloo on the CPU) against one process.

Two processes started by torchrun train the tiny REMAP model of ``_ddp_worker.py``
(fit, then fine-tune with the stem frozen, augmentation on, an odd last batch)
and must match one process training on the same data with the same global
batch. Equality is up to float32 rounding only: DDP averages the per-process
gradients of half-batches, which (with each mean loss weighted by its share of
the batch and batch-norm statistics synchronised over the global batch) is the
one-process gradient summed in a different order. Measured: relative
differences below 1e-6 after 5 epochs; the test allows 2e-5.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from stellarml.training import Trainer, distributed

WORKER = Path(__file__).with_name("_ddp_worker.py")
RTOL = 2e-5


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    one = tmp_path_factory.mktemp("one")
    two = tmp_path_factory.mktemp("two")
    cmd = [sys.executable, str(WORKER), str(one)]
    subprocess.run(cmd, check=True, env=_env(), timeout=120)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(WORKER),
        str(two),
    ]
    done = subprocess.run(cmd, env=_env(), timeout=180, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return one, two


def test_two_processes_match_one(runs):
    one, two = runs
    ref = np.load(one / "weights_rank0.npz")
    r0 = np.load(two / "weights_rank0.npz")
    r1 = np.load(two / "weights_rank1.npz")
    assert int(ref["world"]) == 1 and int(r0["world"]) == 2 == int(r1["world"])
    assert ref.files == r0.files
    keys = [k for k in ref.files if k != "world"]
    assert any(k.endswith("running_var") for k in keys)  # batch-norm statistics compared too
    assert len(ref["history.loss"]) == 5  # 3 fit + 2 fine-tune epochs
    for key in keys:
        a, b = ref[key].astype(np.float64), r0[key].astype(np.float64)
        scale = max(np.abs(a).max(), 1e-3)
        assert np.abs(a - b).max() <= RTOL * scale, key
        # the processes hold the same model: DDP keeps them bitwise in step
        np.testing.assert_array_equal(r0[key], r1[key], err_msg=key)
    # training changed the weights (the comparison is not between two initialisations)
    assert np.isfinite(ref["history.val_loss"]).all()
    assert ref["history.loss"][0] != ref["history.loss"][-1]


def test_only_rank0_writes_checkpoints(runs):
    _, two = runs
    assert sorted(p.name for p in (two / "ckpt_rank0").iterdir()) == [
        "best.npz",
        "history.json",
        "last.npz",
    ]
    assert not (two / "ckpt_rank1").exists()


def test_helpers_without_process_group():
    assert not distributed.is_distributed()
    assert distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.is_main_process()
    assert not distributed.init_distributed()  # no torchrun environment: nothing to join
    idx = torch.arange(10)
    assert distributed.shard(idx) is idx
    assert distributed.shard(idx, 1, 3).tolist() == [1, 4, 7]
    assert distributed.all_reduce_sums({"b": torch.tensor(2.0), "a": 1}) == {"a": 1.0, "b": 2.0}
    assert distributed.broadcast_floats([1, 2.5]) == [1.0, 2.5]
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    assert distributed.wrap_ddp(net, "cpu") is net
    with distributed.sync_batch_norm(net) as same:
        assert same is net and type(net[1]) is nn.BatchNorm1d


def test_distributed_batch_norm_is_batch_norm_without_group():
    torch.manual_seed(0)
    ref = nn.BatchNorm1d(5)
    bn = distributed.DistributedBatchNorm(5)
    x = torch.randn(7, 5, 3)
    torch.testing.assert_close(bn(x), ref(x), rtol=0, atol=0)
    torch.testing.assert_close(bn.running_var, ref.running_var, rtol=0, atol=0)


def test_single_process_training_unchanged():
    """The trainer's one-process path: same seed, bit-identical weights (regression values)."""
    torch.manual_seed(0)
    x = torch.randn(50, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1

    def build():
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))

    def loss_fn(module, batch):
        return nn.functional.mse_loss(module(batch[0]).squeeze(1), batch[1])

    weights = []
    for _ in range(2):
        net = build()
        Trainer(max_epochs=3, batch_size=16, progress=False, device="cpu").fit(
            net, loss_fn, (x, y), (x[:10], y[:10])
        )
        weights.append([p.detach().clone() for p in net.state_dict().values()])
        assert type(net[1]) is nn.BatchNorm1d  # never swapped without a process group
    for a, b in zip(*weights, strict=True):
        assert torch.equal(a, b)
