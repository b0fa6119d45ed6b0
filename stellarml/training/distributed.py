"""Data-parallel training over several processes with `torch.distributed` (DDP).

Launch the same program once per process with ``torchrun`` (which sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``), call
`init_distributed` once, and train as usual: `~stellarml.training.Trainer`
notices the process group and then

* wraps the module in `torch.nn.parallel.DistributedDataParallel` (gradients
  averaged across processes after every backward pass);
* turns batch normalisation into synchronised batch normalisation
  (`sync_batch_norm`: statistics of the whole global batch, also on the CPU,
  where `torch.nn.SyncBatchNorm` does not run), restored afterwards;
* shuffles with the same seeded permutation on every process and gives each
  process a disjoint slice of every global batch (`shard`), so one step sees
  ``batch_size`` spectra in all, as a single process would;
* averages the logged training and validation metrics across processes
  (`all_reduce_sums`);
* writes checkpoints and shows the progress bar on rank 0 only
  (`is_main_process`).

Without a process group (the normal case) none of this happens and training
is exactly what it is in one process. The backend follows the hardware:
``gloo`` for CPU tensors, ``nccl`` for CUDA tensors.
"""

import os
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistributedBatchNorm",
    "all_reduce_sums",
    "all_true",
    "barrier",
    "broadcast_floats",
    "destroy_distributed",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "local_rank",
    "rank",
    "shard",
    "sync_batch_norm",
    "world_size",
    "wrap_ddp",
]


def is_distributed():
    """True when a `torch.distributed` process group with more than one process is active.

    Returns
    -------
    distributed : bool
        False in a plain process, and in a group of one process.

    Examples
    --------
    >>> from stellarml.training.distributed import is_distributed
    >>> is_distributed()  # a plain process, not started by torchrun
    False
    """
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank():
    """Rank of this process (0 without a process group).

    Returns
    -------
    rank : int
        ``torch.distributed.get_rank()`` in a group of several processes, else 0.

    Examples
    --------
    >>> from stellarml.training.distributed import rank
    >>> rank()
    0
    """
    return dist.get_rank() if is_distributed() else 0


def world_size():
    """Number of processes (1 without a process group).

    Returns
    -------
    world_size : int
        ``torch.distributed.get_world_size()`` in a group of several processes, else 1.

    Examples
    --------
    >>> from stellarml.training.distributed import world_size
    >>> world_size()
    1
    """
    return dist.get_world_size() if is_distributed() else 1


def local_rank():
    """Rank of this process on its machine (``LOCAL_RANK``; 0 without torchrun).

    Returns
    -------
    local_rank : int
        The ``LOCAL_RANK`` environment variable in a group of several processes
        (the GPU index of this process), else 0.

    Examples
    --------
    >>> from stellarml.training.distributed import local_rank
    >>> local_rank()
    0
    """
    return int(os.environ.get("LOCAL_RANK", 0)) if is_distributed() else 0


def is_main_process():
    """True on rank 0 and without a process group: the process that writes files.

    Returns
    -------
    main : bool
        True without a process group (or with a group of one process), and on
        the process of rank 0 of a group; False on the other ranks.

    Examples
    --------
    >>> from stellarml.training import is_main_process
    >>> is_main_process()  # a plain process, not started by torchrun
    True
    """
    return rank() == 0


def init_distributed(backend=None, timeout=None):
    """Join the process group described by torchrun's environment, if there is one.

    Reads ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
    ``MASTER_PORT`` (``init_method="env://"``). Does nothing when
    ``WORLD_SIZE`` is unset or 1, or when a group is already initialised.

    Parameters
    ----------
    backend : str, optional
        Default: ``"cpu:gloo,cuda:nccl"`` when CUDA is available (CPU tensors
        through gloo, CUDA tensors through NCCL), else ``"gloo"``.
    timeout : `datetime.timedelta`, optional
        Collective timeout (torch's default otherwise).

    Returns
    -------
    initialised : bool
        True when this call created the process group (call
        `destroy_distributed` at the end).

    Notes
    -----
    With CUDA, the current device becomes ``cuda:LOCAL_RANK``, so ``"cuda"``
    and ``"auto"`` devices mean one GPU per process.

    Examples
    --------
    In a training script launched with ``torchrun --nproc-per-node 2
    train.py`` (WORLD_SIZE 2) the call joins the group of the two processes.
    In a plain process there is nothing to join:

    >>> from stellarml.training import destroy_distributed, init_distributed
    >>> init_distributed()  # no torchrun: WORLD_SIZE is unset
    False

    Nor when a process group exists already (here one of one process):

    >>> import tempfile
    >>> import torch.distributed as dist
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     dist.init_process_group(
    ...         "gloo", init_method=f"file://{tmp}/store", rank=0, world_size=1)
    ...     print(init_distributed(), dist.is_initialized())
    ...     destroy_distributed()
    False True
    """
    if not dist.is_available() or dist.is_initialized():
        return False
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    cuda = torch.cuda.is_available()
    if backend is None:
        backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    kwargs = {} if timeout is None else {"timeout": timeout}
    dist.init_process_group(backend=backend, init_method="env://", **kwargs)
    return True


def destroy_distributed():
    """Leave the process group (no-op without one).

    Call it at the end of a script whose `init_distributed` returned True.

    Examples
    --------
    >>> import tempfile
    >>> import torch.distributed as dist
    >>> from stellarml.training import destroy_distributed
    >>> with tempfile.TemporaryDirectory() as tmp:  # a group of one process
    ...     dist.init_process_group(
    ...         "gloo", init_method=f"file://{tmp}/store", rank=0, world_size=1)
    ...     destroy_distributed()
    >>> dist.is_initialized()
    False
    >>> destroy_distributed()  # without a group: nothing to do
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier():
    """Wait for all processes (no-op without a process group).

    Examples
    --------
    >>> from stellarml.training.distributed import barrier
    >>> barrier()  # returns at once in a plain process
    """
    if is_distributed():
        dist.barrier()


def _comm_device(device):
    """Device of the tensors handed to collectives: the backend's (gloo: CPU, nccl: CUDA)."""
    return device if torch.device(device).type == "cuda" else torch.device("cpu")


def all_reduce_sums(values, device="cpu"):
    """Sum a dict of scalars over all processes; returns a dict of floats (keys sorted).

    Every process must pass the same keys. Without a process group the values
    are returned as floats, unchanged.

    Parameters
    ----------
    values : dict of str to float or 0-d `torch.Tensor`
        This process's scalars, e.g. summed losses and sample counts.
    device : str or `torch.device`, optional
        Device of the training tensors: CUDA tensors are reduced on that device
        (NCCL), everything else on the CPU (gloo).

    Returns
    -------
    sums : dict of str to float
        The sums over all processes, in sorted key order.

    Examples
    --------
    >>> import torch
    >>> from stellarml.training.distributed import all_reduce_sums
    >>> all_reduce_sums({"n": 32, "loss": torch.tensor(4.5)})
    {'loss': 4.5, 'n': 32.0}
    """
    keys = sorted(values)
    if not is_distributed():
        return {k: float(values[k]) for k in keys}
    dev = _comm_device(device)
    vec = torch.stack(
        [torch.as_tensor(values[k], dtype=torch.float64).reshape(()).to(dev) for k in keys]
    )
    dist.all_reduce(vec)
    return dict(zip(keys, vec.cpu().tolist(), strict=True))


def broadcast_floats(values, device="cpu"):
    """Rank 0's list of floats on every process (unchanged without a process group).

    Parameters
    ----------
    values : sequence of float
        The values; only those of rank 0 matter. Every process passes as many.
    device : str or `torch.device`, optional
        Device of the training tensors (CUDA: NCCL on that device; else gloo).

    Returns
    -------
    values : list of float
        Rank 0's values.

    Examples
    --------
    >>> from stellarml.training.distributed import broadcast_floats
    >>> broadcast_floats([1, 2.5])
    [1.0, 2.5]
    """
    values = [float(v) for v in values]
    if not is_distributed():
        return values
    vec = torch.tensor(values, dtype=torch.float64, device=_comm_device(device))
    dist.broadcast(vec, 0)
    return vec.cpu().tolist()


def all_true(flag, device="cpu"):
    """True when ``flag`` is true on every process.

    Parameters
    ----------
    flag : bool
        This process's answer (e.g. "my validation loss improved").
    device : str or `torch.device`, optional
        Device of the training tensors (CUDA: NCCL on that device; else gloo).

    Returns
    -------
    all_true : bool
        ``flag`` itself without a process group.

    Examples
    --------
    >>> from stellarml.training.distributed import all_true
    >>> all_true(True), all_true(0)
    (True, False)
    """
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([0.0 if flag else 1.0], device=_comm_device(device))
    dist.all_reduce(t)
    return float(t) == 0.0


def shard(indices, rank_=None, world_size_=None):
    """This process's slice of one global batch of sample indices: ``indices[rank::world]``.

    Every process draws the same permutation from the same seed and keeps a
    disjoint, strided slice of each global batch (the
    `torch.utils.data.DistributedSampler` layout applied batch by batch), so
    the slices of all processes make up exactly the batch a single process
    would use. Without a process group ``indices`` is returned unchanged.

    Parameters
    ----------
    indices : sequence or `numpy.ndarray` or `torch.Tensor`
        The sample indices of one global batch, the same on every process.
    rank_ : int, optional
        This process's rank (default: `rank`).
    world_size_ : int, optional
        The number of processes (default: `world_size`).

    Returns
    -------
    indices
        ``indices[rank::world_size]`` (``indices`` itself for one process).

    Examples
    --------
    >>> import numpy as np
    >>> from stellarml.training.distributed import shard
    >>> batch = np.array([7, 3, 9, 0, 4])
    >>> shard(batch, rank_=0, world_size_=2), shard(batch, rank_=1, world_size_=2)
    (array([7, 9, 4]), array([3, 0]))
    >>> shard(batch) is batch  # a plain process keeps the whole batch
    True
    """
    r = rank() if rank_ is None else int(rank_)
    w = world_size() if world_size_ is None else int(world_size_)
    return indices if w == 1 else indices[r::w]


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over processes: the gradient is summed over processes as well."""

    @staticmethod
    def forward(ctx, tensor):
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


class DistributedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation with statistics over the batches of all processes.

    A drop-in for `torch.nn.BatchNorm1d`/``2d``/``3d`` that, in training mode
    inside a process group, all-reduces the per-channel sums (two passes: mean,
    then the centred sum of squares) with autograd-aware collectives, so the
    output and the gradients are those of one batch norm over the global batch.
    Unlike `torch.nn.SyncBatchNorm` it runs on the CPU (gloo). In evaluation
    mode, or without a process group, it is an ordinary batch norm. Shares the
    parameters and buffers of the module it replaces (`sync_batch_norm`).

    Parameters
    ----------
    num_features : int
        Number of channels ``C`` of the ``(N, C, ...)`` input.
    eps : float, optional
        Added to the variance for stability.
    momentum : float or None, optional
        Weight of the newest batch in the running statistics (None: a plain
        cumulative average).
    affine : bool, optional
        Learn a per-channel scale and offset.
    track_running_stats : bool, optional
        Keep running mean and variance for evaluation mode.

    Examples
    --------
    Without a process group it gives what `torch.nn.BatchNorm1d` gives:

    >>> import torch
    >>> from stellarml.training.distributed import DistributedBatchNorm
    >>> x = torch.arange(24.0).reshape(4, 2, 3)
    >>> bn, ref = DistributedBatchNorm(2), torch.nn.BatchNorm1d(2)
    >>> torch.allclose(bn(x), ref(x)), torch.allclose(bn.running_mean, ref.running_mean)
    (True, True)
    """

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, input):
        if not (self.training and is_distributed()):
            return super().forward(input)
        all_reduce = _AllReduceSum.apply
        self._check_input_dim(input)
        c = input.shape[1]
        dims = [0, *range(2, input.dim())]
        shape = [1, c] + [1] * (input.dim() - 2)
        # one collective: per-channel sums and sums of squares (float64) and the count
        x = input.double()
        count = torch.full((1,), input.numel() / max(c, 1), dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum(dims), x.square().sum(dims), count]))
        n = stats[2 * c]
        mean64 = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean64.square()).clamp_min(0.0).to(input.dtype)
        mean = mean64.to(input.dtype)
        centred = input - mean.reshape(shape)
        out = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                n_ = float(n)
                unbiased = var.detach() * (n_ / max(n_ - 1.0, 1.0))
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return out


@contextmanager
def sync_batch_norm(module, device="cpu"):
    """Within the block, the batch norms of ``module`` synchronise across processes.

    Every `torch.nn.modules.batchnorm._BatchNorm` (``BatchNorm1d``...) is
    replaced by a `torch.nn.SyncBatchNorm` on CUDA, or a `DistributedBatchNorm`
    elsewhere, sharing its parameters and buffers; the original modules come back
    afterwards with the trained values. Call it after moving ``module`` to its
    device. Without a process group nothing changes.

    Parameters
    ----------
    module : `torch.nn.Module`
        The network, already on ``device``.
    device : str or `torch.device`, optional
        Its device: CUDA uses `torch.nn.SyncBatchNorm`, the CPU
        `DistributedBatchNorm`.

    Yields
    ------
    module : `torch.nn.Module`
        The same module, its batch norms swapped for the block.

    Examples
    --------
    >>> import torch
    >>> from stellarml.training.distributed import sync_batch_norm
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.BatchNorm1d(2))
    >>> with sync_batch_norm(net) as inside:  # a plain process: nothing to synchronise
    ...     print(type(inside[1]).__name__)
    BatchNorm1d
    """
    if not is_distributed():
        yield module
        return
    cls = nn.SyncBatchNorm if torch.device(device).type == "cuda" else DistributedBatchNorm
    swapped = []
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
                child, nn.SyncBatchNorm | DistributedBatchNorm
            ):
                new = cls(
                    child.num_features,
                    child.eps,
                    child.momentum,
                    child.affine,
                    child.track_running_stats,
                )
                if child.affine:
                    new.weight, new.bias = child.weight, child.bias
                if child.track_running_stats:
                    new.running_mean = child.running_mean
                    new.running_var = child.running_var
                    new.num_batches_tracked = child.num_batches_tracked
                new.train(child.training)
                setattr(parent, name, new)
                swapped.append((parent, name, child, new))
    try:
        yield module
    finally:
        for parent, name, child, new in swapped:
            if child.track_running_stats:  # the same tensors unless something replaced them
                child.running_mean = new.running_mean
                child.running_var = new.running_var
                child.num_batches_tracked = new.num_batches_tracked
            if child.affine:
                child.weight, child.bias = new.weight, new.bias
            child.train(new.training)
            setattr(parent, name, child)


def wrap_ddp(module, device, find_unused_parameters=False):
    """``module`` in `~torch.nn.parallel.DistributedDataParallel` (unchanged without a group).

    Pass ``find_unused_parameters=True`` for a module with trainable
    parameters that a step may leave unused (DDP then searches the graph every
    step); `~stellarml.training.Trainer` does so when the environment variable
    ``STELLARML_DDP_FIND_UNUSED=1`` is set.

    Parameters
    ----------
    module : `torch.nn.Module`
        The network, already on ``device``.
    device : str or `torch.device`
        Its device (a CUDA device becomes DDP's single ``device_ids`` entry).
    find_unused_parameters : bool, optional
        Let DDP tolerate parameters that get no gradient in a step.

    Returns
    -------
    module : `torch.nn.Module`
        The DDP wrapper in a group of several processes, else ``module``.

    Examples
    --------
    >>> import torch
    >>> from stellarml.training.distributed import wrap_ddp
    >>> net = torch.nn.Linear(3, 1)
    >>> wrap_ddp(net, "cpu") is net  # a plain process: no wrapper
    True
    """
    if not is_distributed():
        return module
    device = torch.device(device)
    ids = [device] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        module, device_ids=ids, find_unused_parameters=find_unused_parameters
    )
