"""torchrun-aware process setup; recipes never branch on world size.

Data parallelism averages the gradients of the trainable parameters with one all-reduce per
optimizer step (for LoRA students this is a few MB; the engine's several forward passes per step
through one shared UNet, some with adapters off, make a DDP module wrapper a poor fit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """rank / world_size of this process (0 / 1 without torchrun) and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group when RANK/WORLD_SIZE are set (nccl on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, dev)


def average_gradients(params: list[torch.nn.Parameter], world_size: int) -> None:
    """Average ``.grad`` over processes in one flat all-reduce (no-op for one process)."""
    if world_size == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for p, g in zip(params, grads, strict=True):
        p.grad = flat[offset : offset + g.numel()].view_as(g).clone()
        offset += g.numel()


def close_distributed() -> None:
    """Leave the process group (safe to call without one)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def average_terms(terms: dict[str, torch.Tensor], world_size: int) -> dict[str, torch.Tensor]:
    """Average scalar loss terms over processes (same keys on every rank), so that every rank
    reports, and decides NaN/inf handling on, the same global values."""
    if world_size == 1 or not terms:
        return terms
    stacked = torch.stack([v.float().reshape(()) for v in terms.values()])
    dist.all_reduce(stacked)
    return dict(zip(terms, stacked / world_size, strict=True))


def world_size() -> int:
    """Processes in the current process group (1 without torchrun)."""
    return dist.get_world_size() if dist.is_initialized() else 1
