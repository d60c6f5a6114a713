"""torchrun / DDP primitives: one model trained by several processes on one global batch.

Under ``torchrun --nproc-per-node N -m clica ...`` every process (rank) sees
``1/N`` of the batch. Contrastive negatives must be the *global* batch, so the
embeddings are gathered across ranks with gradients (:func:`gather`,
:func:`global_loss`) and the parameters are synchronised by DDP (:func:`wrap`).
Without torchrun (``WORLD_SIZE`` absent or 1) every function here is the
identity or a no-op, and no process group is created.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .errors import ClicaError, require

__all__ = [
    "World", "init_world", "local_device", "current_world", "shutdown", "gather", "global_loss", "local_batch",
    "rank_seed", "wrap", "unwrap", "all_mean", "any_rank", "broadcast", "barrier",
]

DEFAULT_TIMEOUT_S = 600.0
_MAX_DIMS = 8  # gather compares shapes of up to this many dimensions in one fixed-size collective


@dataclass(frozen=True)
class World:
    """This process's place in a torchrun run (the defaults: a single process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


_world: World | None = None


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    require(value is not None, f"{name} is not set: launch distributed runs with torchrun")
    try:
        return int(value)
    except ValueError:
        raise ClicaError(f"{name}={value!r} is not an integer") from None


def _timeout() -> datetime.timedelta:
    value = os.environ.get("CLICA_DIST_TIMEOUT_S", str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    require(seconds > 0, f"CLICA_DIST_TIMEOUT_S={value!r} must be a positive number of seconds")
    return datetime.timedelta(seconds=seconds)


def init_world(device: torch.device | str) -> World:
    """Join torchrun's process group (from RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Backend nccl for a cuda ``device``, gloo otherwise. Collectives time out after
    ``CLICA_DIST_TIMEOUT_S`` seconds (default 600), so a rank that died makes the
    others fail with an error instead of hanging. Idempotent.
    """
    global _world
    if _world is not None:
        return _world
    size = _env_int("WORLD_SIZE") if "WORLD_SIZE" in os.environ else 1
    require(size >= 1, f"WORLD_SIZE={size} must be at least 1")
    if size == 1:
        _world = World()
        return _world
    world = World(rank=_env_int("RANK"), size=size, local_rank=_env_int("LOCAL_RANK"))
    require(0 <= world.rank < size, f"RANK={world.rank} must be in [0, WORLD_SIZE={size})")
    require(dist.is_available(), "this torch build has no torch.distributed: cannot run under torchrun")
    if not dist.is_initialized():
        # Importing torch._dynamo once a process group exists keeps that group alive past
        # destroy_process_group (torch 2.14), and DDP imports it. The group's gloo threads then
        # outlive Python; one still releasing a tensor of a collective when the interpreter exits
        # needs the GIL and aborts the process ("terminate called without an active exception").
        import torch._dynamo  # noqa: F401

        cuda = torch.device(device).type == "cuda"
        if cuda:  # nccl creates its communicators on the current device
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", rank=world.rank, world_size=size, timeout=_timeout())
    _world = world
    return world


def local_device(requested: torch.device | str, world: World) -> torch.device:
    """cuda → cuda:LOCAL_RANK (made the current device) when distributed; anything else unchanged."""
    requested = torch.device(requested)
    if requested.type != "cuda" or not world.distributed:
        return requested
    torch.cuda.set_device(world.local_rank)
    return torch.device("cuda", world.local_rank)


def current_world() -> World:
    """The World of this process: World() until :func:`init_world` joined a process group."""
    return World() if _world is None else _world


def shutdown() -> None:
    """Leave the process group, if any; safe to call always."""
    global _world
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _world = None


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _collective_device() -> torch.device:
    """Where the backend wants its tensors: the current cuda device for nccl, the cpu for gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


class _Gather(torch.autograd.Function):
    """all_gather along dim 0; the backward sums the gradients of every rank's loss."""

    @staticmethod
    def forward(ctx, x):
        size, rank = dist.get_world_size(), dist.get_rank()
        require(x.dim() <= _MAX_DIMS, f"gather takes tensors of at most {_MAX_DIMS} dimensions, got {tuple(x.shape)}")
        meta = torch.tensor([x.dim(), *x.shape, *[0] * (_MAX_DIMS - x.dim())], dtype=torch.int64, device=x.device)
        metas = [torch.empty_like(meta) for _ in range(size)]
        dist.all_gather(metas, meta)
        shapes = [tuple(m[1:m[0] + 1]) for m in torch.stack(metas).tolist()]
        require(all(s == shapes[0] for s in shapes),
                f"every process must pass the same shape to gather, got {', '.join(map(str, shapes))} on ranks "
                f"0…{size - 1}")
        parts = [torch.empty_like(x, memory_format=torch.contiguous_format) for _ in range(size)]
        dist.all_gather(parts, x.contiguous())
        ctx.rows, ctx.rank = x.shape[0], rank
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()  # all_reduce works in place; autograd's buffer is not ours
        dist.all_reduce(grad, dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather(x: torch.Tensor) -> torch.Tensor:
    """``x`` (B_local × …) of every rank concatenated in rank order, with gradients back to each rank's ``x``.

    The gradient reaching ``x`` is the sum over ranks of their losses' gradients.
    Every rank must pass the same shape (a :class:`ClicaError` names them otherwise).
    The identity when not distributed.
    """
    return _Gather.apply(x) if _active() else x


def global_loss(loss_fn, h1: torch.Tensor, h2: torch.Tensor):
    """The contrastive loss of the global batch, each rank computing only its own pairs' terms.

    ``loss_fn`` is a :class:`clica.losses.ContrastiveLoss` (one that cannot split the batch is refused there).

    This rank's pairs (rows ``rank·b … (rank+1)·b`` of the global batch) take every rank's anchors
    as negatives: ``loss_fn(h1, h2, batch=(gather(h1), rank·b))``, so no rank computes the whole
    B×B matrix. The returned ``total`` has the global loss as its value (the same on every rank, as
    one process on the whole batch would log) and the gradient of this rank's share: the gather sums
    the ranks' gradients into each rank's embeddings and DDP averages the parameter gradients, which
    gives exactly dL/dθ of one process on the whole batch. ``parts`` are global means and
    ``per_item`` the whole batch's (both without gradients). One process: ``loss_fn(h1, h2)``.
    """
    if not _active():
        return loss_fn(h1, h2)
    out = loss_fn(h1, h2, batch=(gather(h1), dist.get_rank() * h1.shape[0]))
    means = torch.stack([out.total.detach(), *(torch.as_tensor(v).detach() for v in out.parts.values())])
    means = means.to(_collective_device())
    dist.all_reduce(means)
    means = means.to(out.total.device) / dist.get_world_size()
    with torch.no_grad():
        per_item = gather(out.per_item.detach())
    return type(out)(out.total + (means[0] - out.total.detach()), per_item,
                     {k: means[i + 1] for i, k in enumerate(out.parts)})


def local_batch(batch_size: int, world: World, flag: str = "--batch-size") -> int:
    """This rank's share of a global batch of ``batch_size``."""
    require(batch_size % world.size == 0,
            f"{flag} {batch_size} must be divisible by the {world.size} processes of this torchrun run")
    return batch_size // world.size


def rank_seed(seed: int, world: World) -> int:
    """The seed of this rank's data stream: ``seed`` alone in one process, else distinct per (seed, rank)."""
    if not world.distributed:
        return seed
    return int(np.random.SeedSequence([seed, world.rank]).generate_state(1)[0]) % 2**31


def wrap(model: torch.nn.Module, world: World, device: torch.device | str) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` when distributed and it has trainable parameters."""
    if not world.distributed or not any(p.requires_grad for p in model.parameters()):
        return model
    device = torch.device(device)
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP wrapper (for saving, evaluation), or the model itself."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def all_mean(value: float, world: World) -> float:
    """The mean of ``value`` over ranks (for logging); ``value`` itself when not distributed."""
    if not world.distributed:
        return value
    t = torch.tensor(float(value), dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, dist.ReduceOp.SUM)
    return t.item() / world.size


def any_rank(flag: bool, world: World) -> bool:
    """Whether ``flag`` holds on some rank (e.g. a stop request), so that all ranks decide alike."""
    if not world.distributed:
        return bool(flag)
    t = torch.tensor(int(bool(flag)), device=_collective_device())
    dist.all_reduce(t, dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast(obj, world: World, src: int = 0):
    """The picklable ``obj`` of rank ``src``, on every rank; ``obj`` when not distributed."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_collective_device())
    return box[0]


def barrier(world: World) -> None:
    """Wait until every rank gets here."""
    if world.distributed:
        dev = _collective_device()
        dist.barrier(device_ids=[dev.index] if dev.type == "cuda" else None)
