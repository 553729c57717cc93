"""Several processes (torchrun): joining and leaving the process group, and the collectives the
trainer needs. Every function is a no-op in a single process.

CPU-side agreements between ranks (which parameters got a gradient, whether to stop) go through a
gloo group of their own (``control_group``): on NCCL they would be GPU tensors, and reading one back
is a host synchronisation every step.
"""

from __future__ import annotations

import os

import torch
# Imported here, before any process group exists: Adam's constructor imports torch._dynamo lazily, and
# when that first import happened after a gloo group was up, a rank that stopped right after starting
# (e.g. on a locked run directory) aborted at exit now and then ("terminate called without an active
# exception": 3 of 50 two-rank runs with torch 2.14; 0 of 60 with this import first). Training imports
# it anyway, so this costs nothing.
import torch._dynamo  # noqa: E402, F401


def dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device_name: str) -> tuple[int, int, int]:
    """Join the torchrun process group when launched by torchrun; returns (rank, world, local_rank)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda") or device_name.startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return dist.get_rank(), dist.get_world_size(), local_rank


_CONTROL_GROUP = None


def control_group():
    """The process group for the small host-side agreements between ranks (which parameters got a
    gradient, whether to stop). They are CPU tensors on gloo: on NCCL they would be GPU tensors, and
    reading one back is a host synchronisation every step. Created on first use, which every rank
    reaches at the same point."""
    global _CONTROL_GROUP
    import torch.distributed as dist

    world = dist.group.WORLD
    if _CONTROL_GROUP is None or _CONTROL_GROUP[0] is not world:  # none yet, or made for an old world
        _CONTROL_GROUP = (world, world if dist.get_backend() == "gloo" else dist.new_group(backend="gloo"))
    return _CONTROL_GROUP[1]


def shutdown_distributed() -> None:
    """Leave the process groups: the control group first, then the world. (A gloo group still referenced
    after its world is destroyed is torn down at interpreter exit, and that can abort the process.)"""
    global _CONTROL_GROUP
    import torch.distributed as dist

    control, _CONTROL_GROUP = _CONTROL_GROUP, None
    if not dist.is_initialized():
        return
    if control is not None and control[1] is not control[0]:
        dist.destroy_process_group(control[1])
    dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; the backward sums every rank's gradient and keeps this rank's slice."""

    @staticmethod
    def forward(ctx, x):
        import torch.distributed as dist

        rank, world = dist_info()
        ctx.rank, ctx.n = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather_batch(x: torch.Tensor, grad: bool = True) -> torch.Tensor:
    _, world = dist_info()
    if world == 1:
        return x
    if grad:
        return _GatherWithGrad.apply(x)
    import torch.distributed as dist

    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average gradients over ranks. A parameter that got a gradient on any rank gets one on all
    (zeros where it had none), as one process with the whole batch would have given it one."""
    _, world = dist_info()
    if world == 1:
        return
    import torch.distributed as dist

    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32)
    dist.all_reduce(has, op=dist.ReduceOp.MAX, group=control_group())
    used = [p for p, h in zip(params, has.tolist()) if h]
    for p in used:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not used:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in used])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in used:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()


def broadcast_text(text: str | None, src: int = 0) -> str | None:
    """Rank ``src``'s text (or None) on every rank, over the control group: e.g. why rank 0 cannot
    start, so that every rank of the job stops with the same message."""
    _, world = dist_info()
    if world == 1:
        return text
    import torch.distributed as dist

    data = (text or "").encode()
    size = torch.tensor([len(data) if text is not None else -1], dtype=torch.int64)
    dist.broadcast(size, src, group=control_group())
    n = int(size)
    if n < 0:
        return None
    buf = torch.tensor(list(data), dtype=torch.uint8) if dist_info()[0] == src else torch.empty(n, dtype=torch.uint8)
    if n:
        dist.broadcast(buf, src, group=control_group())
    return bytes(buf.tolist()).decode()
