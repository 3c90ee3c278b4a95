"""torchrun-aware process setup; recipes never branch on world size.

Data parallelism averages the gradients of the trainable parameters with one all-reduce per
optimizer step (for LoRA students this is a few MB; the engine's several forward passes per step
through one shared UNet, some with adapters off, make a DDP module wrapper a poor fit).

With ``--recipes.runtime.fsdp`` the denoising network is sharded with FSDP2 (``fully_shard``: each
block of the family's ``shard_modules``, then the root): its parameters become DTensors whose
gradients FSDP2 reduce-scatters (averaged over processes) in backward, so ``average_gradients``
skips them. Checkpoints hold full tensors (``full_tensors``, a collective: every process calls it;
rank 0 writes); loading shards them again like the live parameters (``shard_like``,
``reshard_optimizer_state``).

A process's failure reaches the others as a collective's error: ``stop_failures`` turns it into
one line when it breaks a stop signal's save (``StopFailed``), ``other_process_failed`` on a rank
> 0 whose rank 0 stopped with an error of its own (``OtherProcessFailed``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, distribute_tensor

from tlcm.errors import TLCMError, note


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


def startup_line(info: DistInfo, frozen: torch.dtype, bf16: bool) -> str:
    """The run's first line (rank 0): device (a GPU's name), processes and backend, precision; e.g.
    "training on cuda (NVIDIA H100 80GB HBM3), 8 processes (nccl), frozen weights bfloat16, bf16
    autocast"."""
    backend = dist.get_backend() if dist.is_initialized() else "no process group"
    processes = f"{info.world_size} processes ({backend})" if info.world_size > 1 else "1 process"
    device = info.device.type
    if device == "cuda":
        device += f" ({torch.cuda.get_device_name(info.device)})"
    autocast = ", bf16 autocast" if bf16 else ""
    frozen_name = str(frozen).removeprefix("torch.")
    return f"training on {device}, {processes}, frozen weights {frozen_name}{autocast}"


def cpu_fallback(info: DistInfo, requested: str, miniature: bool) -> str | None:
    """A warning when device "auto" found no GPU and falls back to the CPU for a model that is not a
    bundled miniature (e.g. an empty CUDA_VISIBLE_DEVICES from a wrong --gres): None otherwise."""
    if requested != "auto" or info.device.type != "cpu" or miniature:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    why = f"CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "torch.cuda.is_available() is False"
    return (
        f"warning: no GPU visible ({why}): device auto trains on the CPU, far slower; check the job's "
        "GPUs, or pass --recipes.runtime.device cpu to mean it"
    )


def announce_start(info: DistInfo, requested: str, miniature: bool, frozen: torch.dtype, bf16: bool) -> None:
    """On rank 0: the ``startup_line`` on stdout (stderr holds problems only: a bad input's one
    line), then the ``cpu_fallback`` warning, if any, on stderr."""
    if not info.is_main:
        return
    print(startup_line(info, frozen, bf16), flush=True)
    warning = cpu_fallback(info, requested, miniature)
    if warning:
        note(warning)


COLLECTIVE_ERRORS = ("gloo", "NCCL", "nccl", "Connection closed by peer", "Connection reset by peer")
"""Words of a collective's RuntimeError when another process died (gloo's "[.../gloo/transport/tcp/
pair.cc:561] Connection closed by peer", NCCL's "NCCL error ...")."""


def collective_failure(err: BaseException) -> bool:
    """Whether ``err`` is a collective's failure (another process died or stopped answering):
    torch.distributed's DistError, or a RuntimeError naming the backend (``COLLECTIVE_ERRORS``)."""
    if isinstance(err, dist.DistError):
        return True
    return isinstance(err, RuntimeError) and any(k in str(err) for k in COLLECTIVE_ERRORS)


STOP_WAIT_SECONDS = 10.0
"""After a collective failed with no stop signal yet, how long a process of several waits for the one
torchrun sends the survivors once a process died (then it says so in one line, else the error is
raised)."""


class StopFailed(TLCMError):
    """A collective failed on the way to (or during) a stop signal's save: another process died."""

    exit_code = 1


def _asked_within(asked: Callable[[], str | None], wait: float) -> str | None:
    """``asked()`` (why the run stops, None: it does not), waiting up to ``wait`` seconds for it."""
    end = time.monotonic() + wait
    while asked() is None and time.monotonic() < end:
        time.sleep(0.05)
    return asked()


@contextmanager
def stop_failures(asked: Callable[[], str | None], wait: float, latest: Callable[[], str]) -> Iterator[None]:
    """Raise ``StopFailed`` ("SIGTERM: could not save a checkpoint (another process died); <latest>")
    for a collective's failure in the block once a stop is asked for (``asked``: its reason, e.g.
    "SIGTERM"), waiting up to ``wait`` seconds for the signal torchrun sends the survivors; any
    other error (or a collective's failure with no stop asked for) is raised as it is. ``latest``:
    the sentence naming the latest checkpoint (``tlcm.checkpoint.resume_from``)."""
    try:
        yield
    except RuntimeError as err:
        why = _asked_within(asked, wait) if collective_failure(err) else None
        if why is None:
            raise
        raise StopFailed(f"{why}: could not save a checkpoint (another process died); {latest()}") from err


class OtherProcessFailed(TLCMError):
    """A process other than rank 0 lost a collective: another process stopped with an error."""

    exit_code = 1


def other_process_failed(err: BaseException) -> OtherProcessFailed | None:
    """On a rank > 0 (RANK, set by torchrun), the one line that replaces a collective's failure
    ``err`` (rank 0 stopped with an error of its own, e.g. a full disk under its checkpoint, and
    says what: this rank's gloo / NCCL traceback would only bury that); None on rank 0 or for
    another error (raise it as it is)."""
    if os.environ.get("RANK", "0") in ("", "0") or not collective_failure(err):
        return None
    return OtherProcessFailed(
        "another process stopped (rank 0's error says why), so this one cannot go on: fix that, then run "
        "the same command again"
    )


def average_gradients(params: list[torch.nn.Parameter], world_size: int) -> None:
    """Average ``.grad`` over processes in one flat all-reduce (no-op for one process)."""
    params = [p for p in params if not isinstance(p, DTensor)]  # FSDP2 reduced those in backward
    if world_size == 1 or not params:
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


def summed_count(count: int, world_size: int, device: torch.device) -> int:
    """``count`` summed over processes (one all-reduce and host sync; itself for one process).
    Every process must call it at the same point."""
    if world_size == 1:
        return count
    total = torch.tensor(count, dtype=torch.int64, device=device)
    dist.all_reduce(total)
    return int(total.item())


def world_size() -> int:
    """Processes in the current process group (1 without torchrun)."""
    return dist.get_world_size() if dist.is_initialized() else 1


VIEW_WARNING = r"FSDP2-wrapped module \(.*\) returned a view tensor\. An in-place op on this view"
"""The start of the UserWarning FSDP2 gives at each forward of a unit whose output is a view (the
FLUX transformer's: ~4 times a step), in case an in-place op on it skips the all-gather: the FSDP2
gradient-equality tests (tests/test_loss_contract.py,
test_fsdp2_two_processes_equal_one_process_and_resume_exactly) show tlcm's FSDP2 gradients equal
one process's."""


def quiet_view_warning() -> None:
    """Ignore FSDP2's view-tensor warning (``VIEW_WARNING``), raised from torch.distributed.fsdp only."""
    import warnings

    warnings.filterwarnings("ignore", VIEW_WARNING, UserWarning, r"torch\.distributed\.fsdp\.")


def shard(
    net: torch.nn.Module, blocks: list[torch.nn.Module], device: torch.device, param_dtype: torch.dtype | None
) -> torch.nn.Module:
    """FSDP2: ``fully_shard`` each of ``blocks`` (the network's repeated blocks), then ``net`` itself,
    over all processes (a 1-D mesh of ``device``'s type), as torchtitan does: every adapter and the
    gradient checkpointing already in place, ``net`` on the CPU or on ``device`` (each block moves
    to ``device`` when it is sharded, so a CPU-loaded network is never whole on the accelerator).
    Mixed precision: the gathered parameters in ``param_dtype`` (bf16 frozen base and fp32 LoRA in
    one unit compute in bf16, as under autocast; None: as stored), gradients reduced in fp32.
    Frozen and trainable parameters may share a block; create optimizers afterwards (they hold the
    DTensors)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    quiet_view_warning()
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(net, mesh=mesh, mp_policy=policy)
    return net


def is_sharded(module: torch.nn.Module) -> bool:
    """Whether ``module`` was sharded by ``shard`` (FSDP2)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def full_tensors(tree):
    """``tree`` (nested dicts / lists of tensors) with every DTensor gathered into a full tensor:
    a collective, so every process must call it (in the same order)."""
    if isinstance(tree, DTensor):
        return tree.full_tensor()
    if isinstance(tree, dict):
        return {k: full_tensors(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(full_tensors(v) for v in tree)
    return tree


def shard_like(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A full tensor laid out like ``like``: sharded as its DTensor placements (every process passes
    the same full value), else unchanged."""
    if isinstance(like, DTensor) and not isinstance(value, DTensor):
        return distribute_tensor(value.to(like.device, like.dtype), like.device_mesh, like.placements)
    return value


def reshard_optimizer_state(opt: torch.optim.Optimizer) -> None:
    """After ``opt.load_state_dict`` of full tensors (a checkpoint): shard each state tensor of a
    DTensor parameter like the parameter (AdamW's exp_avg, exp_avg_sq; the step count stays)."""
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p, {})
            for key, value in state.items():
                if isinstance(p, DTensor) and torch.is_tensor(value) and value.shape == p.shape:
                    state[key] = shard_like(value, p)


def grad_norm(total: torch.Tensor) -> torch.Tensor:
    """``clip_grad_norm_``'s total norm as a plain tensor (a DTensor over sharded gradients)."""
    return total.full_tensor() if isinstance(total, DTensor) else total


def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` over parameters that may mix FSDP2 shards (DTensor) and
    plain tensors (which it refuses to combine): the total l2 norm of every gradient (a plain
    0-dim tensor) and each gradient scaled by min(1, max_norm / (norm + 1e-6)), with no host sync."""
    sharded = [p for p in params if isinstance(p, DTensor)]
    if len(sharded) in (0, len(params)):
        return grad_norm(torch.nn.utils.clip_grad_norm_(params, max_norm))
    plain = [p for p in params if not isinstance(p, DTensor)]
    norms = [grad_norm(torch.nn.utils.get_total_norm([p.grad for p in group])) for group in (sharded, plain)]
    total = torch.linalg.vector_norm(torch.stack(norms))
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for p in params:
        (p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad).mul_(coef)
    return total
