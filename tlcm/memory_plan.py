"""A memory plan per phase: the largest micro-batch (a divisor of the per-process batch) and whether
to checkpoint the network's activations, chosen from MEASURED peaks of whole micro-batch steps.

``plan_micro_batch`` is the maths: it calls ``measure(micro_batch, checkpointing)`` (peak bytes of
one whole step, allocated and reserved) at the two smallest candidate micro-batches, fits a line
``peak = fixed + per_sample * b`` to each of the two peaks and picks the largest candidate whose
larger prediction, plus ``extra`` (the student's AdamW moments), is under ``limit * (1 - margin)``.
Without checkpointing first; checkpointing is chosen when the uncheckpointed micro-batch is under
half the checkpointed one (or nothing fits).

``measure_step`` measures the whole step a micro-batch makes: the objective's forward + backward
AND every loss's ``aux_step`` (DMD's fake-score updates, the discriminator's: their optimizers'
state is created at their first step), and restores everything it touched.

``plan_phase`` wires it to a Trainer (RuntimeConfig.memory_plan / memory_budget_gib); a budget is
binding (``bind_budget``: the CUDA caching allocator is capped there, so a step over it is an
out-of-memory error, in the measurements and in training).
"""

from __future__ import annotations

import copy
import gc
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from tlcm.distributed import average_gradients, full_tensors
from tlcm.errors import TLCMError
from tlcm.losses.auxiliary import AuxOptimizer

GiB = 2**30
MARGIN = 0.1
"""Fraction of the allocator's limit kept free for what a measured step does not hold: the student
optimizer's step temporaries, contexts kept over accumulation, CUDA kernels loaded later, the
line's extrapolation error (docs/design.md, "Memory arithmetic per phase")."""


@dataclass(frozen=True)
class Peak:
    """Peak bytes of one measured micro-batch step: ``allocated`` (live tensors) and ``reserved``
    (what the CUDA caching allocator holds: allocated + fragmentation; the budget caps this one).
    inf: out of memory."""

    allocated: float
    reserved: float

    @property
    def high(self) -> float:
        return max(self.allocated, self.reserved)


def as_peak(value: float | Peak) -> Peak:
    """A measurement as a Peak (a plain number: allocated = reserved)."""
    return value if isinstance(value, Peak) else Peak(float(value), float(value))


@dataclass(frozen=True)
class Plan:
    micro_batch: int
    checkpointing: bool
    peak: float
    """Predicted peak bytes of a micro-batch step (the larger of allocated and reserved, including
    ``extra``)."""

    def line(self, phase: str, batch: int, limit: float, margin: float = MARGIN) -> str:
        ckpt = "on" if self.checkpointing else "off"
        return (
            f"memory plan {phase}: micro-batch {self.micro_batch} x accum {batch // self.micro_batch}, "
            f"checkpointing {ckpt}, predicted peak {self.peak / GiB:.1f} of {limit * (1 - margin) / GiB:.1f} "
            f"GiB usable ({1 - margin:.0%} of {limit / GiB:.1f})"
        )


def _fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(fixed, per_sample) of the line through the first and last (b, bytes) point."""
    (b1, p1), (b2, p2) = points[0], points[-1]
    per_sample = max((p2 - p1) / (b2 - b1), 0.0) if b2 > b1 else p1 / b1
    return p1 - per_sample * b1, per_sample


def _largest(candidates, measure, checkpointing, usable, extra) -> tuple[int, float] | None:
    """(largest candidate that fits, its predicted peak) from lines through two measurements."""
    points = [(b, measure(b, checkpointing)) for b in candidates[:2]]
    (b1, p1), (_, p2) = points[0], points[-1]
    if not math.isfinite(p1.high):
        return None
    if not math.isfinite(p2.high):  # out of memory at b2: only b1 is known to run
        return (b1, p1.high + extra) if p1.high + extra <= usable else None
    lines = [_fit([(b, p.allocated) for b, p in points]), _fit([(b, p.reserved) for b, p in points])]
    peaks = [(b, max(fixed + per * b for fixed, per in lines) + extra) for b in candidates]
    fits = [(b, peak) for b, peak in peaks if peak <= usable]
    return fits[-1] if fits else None


def plan_micro_batch(
    batch: int,
    limit: float,
    measure: Callable[[int, bool], float | Peak],
    extra: float = 0.0,
    margin: float = MARGIN,
    checkpointing: bool | None = None,
    micro_batch: int | None = None,
    phase: str = "phase",
) -> Plan:
    """The plan for a per-process ``batch`` under ``limit`` bytes (what the caching allocator may
    hold). ``measure`` returns a Peak or plain bytes, inf when out of memory; each (b, mode) is
    measured once. ``extra``: bytes the measured step lacks (the student's AdamW moments, made at
    its first update). ``checkpointing`` / ``micro_batch``: fixed by the user (None: chosen).
    One-line TLCMError when nothing fits."""
    memo: dict[tuple[int, bool], Peak] = {}

    def measured(b: int, mode: bool) -> Peak:
        if (b, mode) not in memo:
            memo[b, mode] = as_peak(measure(b, mode))
        return memo[b, mode]

    candidates = [micro_batch] if micro_batch else [b for b in range(1, batch + 1) if batch % b == 0]
    usable = limit * (1 - margin)
    modes = [checkpointing] if checkpointing is not None else [False, True]
    chosen: dict[bool, tuple[int, float]] = {}
    for mode in modes:
        fit = _largest(candidates, measured, mode, usable, extra)
        if fit is not None:
            chosen[mode] = fit
            if fit[0] == candidates[-1]:
                break  # the largest candidate fits: checkpointing cannot do better
    if not chosen:
        need = min(measured(candidates[0], m).high for m in modes) + extra
        what = "even" if len(candidates) > 1 else "the recipe's"
        raise TLCMError(
            f"memory plan {phase}: {what} micro-batch {candidates[0]}"
            f"{' with gradient checkpointing' if modes[-1] else ''} needs "
            f"{'more than the device has' if math.isinf(need) else f'{need / GiB:.1f} GiB'}, over "
            f"{usable / GiB:.1f} GiB ({1 - margin:.0%} of the {limit / GiB:.1f} GiB the allocator may "
            "hold): use a bigger device, a smaller batch or resolution, or raise "
            "--recipes.runtime.memory-budget-gib"
        )
    if False in chosen and (True not in chosen or 2 * chosen[False][0] >= chosen[True][0]):
        return Plan(chosen[False][0], False, chosen[False][1])
    return Plan(chosen[True][0], True, chosen[True][1])


class CudaMemory:
    """What ``measure_step`` reads: the CUDA caching allocator's statistics on ``device`` (a class,
    so that tests can hand measure_step a fake on the CPU)."""

    OutOfMemory = torch.cuda.OutOfMemoryError

    def __init__(self, device: torch.device) -> None:
        if device.type != "cuda":
            raise TLCMError(  # off CUDA plan_phase comes here only with a budget, else it skips the plan
                f"the memory plan measures CUDA memory; device {device}: drop "
                "--recipes.runtime.memory-budget-gib (without a budget the plan, "
                "--recipes.runtime.memory-plan, is skipped on a device other than CUDA)"
            )
        self.device = device

    def reset(self) -> None:
        """Free the cache (so that the step's reserved peak is its own) and restart the peaks."""
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)

    def reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def allocated(self) -> float:
        return float(torch.cuda.memory_allocated(self.device))

    def peak(self) -> Peak:
        return Peak(
            float(torch.cuda.max_memory_allocated(self.device)),
            float(torch.cuda.max_memory_reserved(self.device)),
        )

    def release(self) -> None:
        gc.collect()
        torch.cuda.empty_cache()


def _cpu_copy(tree):
    """A deep copy of ``tree`` (nested dicts / lists of tensors and plain values), tensors on the CPU."""
    if torch.is_tensor(tree):
        return tree.detach().to("cpu", copy=True)
    if isinstance(tree, dict):
        return {k: _cpu_copy(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_cpu_copy(v) for v in tree)
    return copy.deepcopy(tree)


def _snapshot(losses) -> dict:
    """Everything ``aux_step`` may change, as CPU copies: each loss's checkpoint state (its models and
    optimizers: what resume restores exactly) and its buffers. A collective under FSDP2."""
    return {
        name: (
            _cpu_copy(full_tensors(loss.checkpoint_state())),
            {k: b.detach().to("cpu", copy=True) for k, b in loss.named_buffers()},
        )
        for name, loss in losses.items()
    }


@torch.no_grad()
def _restore(losses, snapshot: dict) -> None:
    for name, loss in losses.items():
        state, buffers = snapshot[name]
        loss.load_checkpoint_state(state)
        for key, buffer in loss.named_buffers():
            buffer.copy_(buffers[key])


def _zero_grads(trainer, losses) -> None:
    """Drop every gradient the measurement left: the network's (student and auxiliary adapters), each
    loss module's and each auxiliary optimizer's (a full-copy fake score, say)."""
    params = [*trainer.student.net.parameters()]
    for loss in losses.values():
        params += [*loss.parameters()]
        params += [p for v in vars(loss).values() if isinstance(v, AuxOptimizer) for p in v.params]
    for p in params:
        p.grad = None


def measure_step(trainer, phase, losses, memory=None) -> Callable[[int, bool], Peak]:
    """``measure(b, checkpointing)``: the peak of one WHOLE micro-batch step of ``phase`` on b
    prompts: the objective's forward + backward (+ the gradients' all-reduce), then every loss's
    ``aux_step([ctx])`` (which creates the auxiliary optimizers' state at its first update).
    Returned: ``max(objective peak + state aux_step left, aux_step peak)``, allocated and reserved
    (``memory``: a ``CudaMemory`` of the training device by default); out of memory: inf. Under
    torchrun the maximum over processes (every process makes the same choice).

    Training is left as it was: each loss's ``checkpoint_state`` and buffers are restored
    (``load_checkpoint_state``: what resume relies on), the global RNGs are forked (the step's own
    generator is seeded 0; the training draws come from (seed, step, micro-batch) generators), and
    every gradient is dropped. Checkpointing is switched with ``Student.set_gradient_checkpointing``
    (the caller sets the planned mode afterwards)."""
    device, world = trainer.dist.device, trainer.dist.world_size
    memory = memory or CudaMemory(device)
    params = list(trainer.student.trainable_parameters().values())
    rng_devices = [device] if device.type == "cuda" else []

    def whole_step(b: int) -> Peak:
        with torch.random.fork_rng(devices=rng_devices):
            gen = torch.Generator(device).manual_seed(0)
            ctx = trainer.context(torch.zeros(b, dtype=torch.long, device="cpu"), gen, 0)
            total, _ = trainer.objective(phase, losses, ctx)
            total.backward()
            del total
            average_gradients(params, world)  # its flat buffer, as in the training step
            objective, before = memory.peak(), memory.allocated()
            memory.reset_peak()
            for loss in losses.values():  # the student's gradients stay, as in training
                with trainer.autocast:
                    loss.aux_step([ctx])
            aux, kept = memory.peak(), max(memory.allocated() - before, 0.0)
        return Peak(
            max(objective.allocated + kept, aux.allocated), max(objective.reserved + kept, aux.reserved)
        )

    def measure(b: int, checkpointing: bool) -> Peak:
        trainer.student.set_gradient_checkpointing(checkpointing)
        snapshot = _snapshot(losses)
        memory.reset()
        try:
            peak = whole_step(b)
        except memory.OutOfMemory:
            peak = Peak(math.inf, math.inf)
        finally:
            _zero_grads(trainer, losses)
            _restore(losses, snapshot)
            memory.release()
        if world > 1:  # every process plans on the largest peak
            both = torch.tensor([peak.allocated, peak.reserved], dtype=torch.float64, device=device)
            dist.all_reduce(both, op=dist.ReduceOp.MAX)
            peak = Peak(*both.tolist())
        return peak

    return measure


@dataclass(frozen=True)
class Budget:
    """The bytes the caching allocator may hold (``limit``), and how they were found."""

    limit: float
    total: float
    """The device's memory (inf on the CPU)."""
    outside: float
    """Device memory already in use outside this process's allocator (CUDA context, libraries,
    other processes), counted against the budget."""


def bind_budget(device: torch.device, budget: float | None) -> Budget:
    """The allocator's limit for ``budget`` bytes (None: the whole device) on ``device``, made
    binding: with a budget, CUDA's caching allocator is capped at ``budget - outside``
    (``torch.cuda.set_per_process_memory_fraction``), so that any step (measured or training) that
    would hold more fails with out-of-memory instead of silently using a bigger device. On the CPU
    (fake measurements only) the budget is the limit."""
    if device.type != "cuda":
        return Budget(budget if budget is not None else math.inf, math.inf, 0.0)
    free, total = torch.cuda.mem_get_info(device)
    outside = max(float(total - free - torch.cuda.memory_reserved(device)), 0.0)
    limit = min(budget if budget is not None else total, total) - outside
    if limit <= 0:
        asked = "the device" if budget is None else f"--recipes.runtime.memory-budget-gib {budget / GiB:.1f}"
        raise TLCMError(
            f"memory plan: {outside / GiB:.1f} GiB of {device} are in use outside this process's "
            f"allocator, leaving nothing of {asked}: raise the budget or free the device"
        )
    if budget is not None:
        torch.cuda.set_per_process_memory_fraction(limit / total, device)
    return Budget(limit, float(total), outside)


def _local_bytes(p: torch.Tensor) -> int:
    """Bytes of this process's part of ``p`` (its FSDP2 shard for a DTensor)."""
    local = p.to_local() if isinstance(p, DTensor) else p
    return local.numel() * local.element_size()


def plan_phase(trainer, name: str, phase, losses, params):
    """``phase`` with the planned grad_accum, checkpointing switched as planned, and the plan
    printed; unchanged without a plan (RuntimeConfig.memory_plan off; on CPU without a budget).
    A recipe's grad_accum other than 1, or gradient_checkpointing on, is kept (the plan checks it)."""
    rt, device = trainer.recipe.runtime, trainer.dist.device
    if not (rt.memory_plan or rt.memory_budget_gib is not None):
        return phase
    if device.type != "cuda" and rt.memory_budget_gib is None:
        return phase  # no device memory to read a budget from
    budget = bind_budget(device, rt.memory_budget_gib * GiB if rt.memory_budget_gib is not None else None)
    batch = phase.batch_size // trainer.dist.world_size
    extra = 2 * sum(_local_bytes(p) for p in params)  # the student's AdamW moments, made at step 1
    plan = plan_micro_batch(
        batch,
        budget.limit,
        measure_step(trainer, phase, losses),
        extra,
        checkpointing=True if rt.gradient_checkpointing else None,
        micro_batch=batch // phase.grad_accum if phase.grad_accum != 1 else None,
        phase=name,
    )
    trainer.student.set_gradient_checkpointing(plan.checkpointing)
    trainer.reporter.print(plan.line(name, batch, budget.limit))
    return replace(phase, grad_accum=batch // plan.micro_batch)
