"""torch.distributed helpers for DDP pre-training; each one is the identity in a
single process, so methods and the loop call them unconditionally.

``gather_rows`` is what "negatives gathered across processes" means here: every
process gets the whole global batch's embeddings, its own rows keeping their
gradient (the gather's backward sums the gradients that every process's loss
sends to a row). Each process then computes the same global loss; DDP averages
the parameter gradients over the W processes, and W processes x (sum over
processes / W) gives exactly the gradient of the single-process loss on the
global batch (tests/test_distributed.py checks this on two gloo processes).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device() -> torch.device:
    """Where small collective tensors live: NCCL only moves CUDA tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` from every process, in rank order, with gradient to the local
    rows. Processes may hold different row counts (IMITATE's findings subset)."""
    size = world()[1]
    if size == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    counts = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(counts) for _ in range(size)]
    dist.all_gather(sizes, counts)
    sizes = [int(s) for s in sizes]
    longest = max(sizes)
    padded = x if x.shape[0] == longest else torch.cat([x, x.new_zeros(longest - x.shape[0], *x.shape[1:])])
    parts = all_gather(padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


def global_min(value: float) -> float:
    """The smallest of a number over processes, so that every process takes the
    same branch (a branch with collectives or DDP parameters taken by some only hangs)."""
    if world()[1] == 1:
        return value
    t = torch.tensor(float(value), device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return float(t)


def all_finite(loss: torch.Tensor) -> bool:
    """Whether the loss is finite in every process: one process raising alone
    would leave the others waiting in the gradient all-reduce."""
    ok = torch.isfinite(loss.detach()).float().reshape(())
    if world()[1] > 1:
        ok = ok.to(_device())
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok)


def mean_terms(terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Loss terms averaged over processes, for the loss curve (no gradient)."""
    if world()[1] == 1:
        return terms
    keys = list(terms)  # the same order in every process: the same code built it
    stacked = torch.stack([terms[k].detach().float().reshape(()).to(_device()) for k in keys])
    dist.all_reduce(stacked)
    stacked /= world()[1]
    return dict(zip(keys, stacked.unbind()))
