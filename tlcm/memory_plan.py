"""A memory plan per phase: the largest micro-batch (a divisor of the per-process batch) and whether
to checkpoint the UNet's activations, chosen from MEASURED peaks of one micro-batch step.

``plan_micro_batch`` is the maths: it calls ``measure(micro_batch, checkpointing) -> peak bytes``
at the two smallest candidate micro-batches, fits ``peak = fixed + per_sample * b`` and picks the
largest candidate under ``budget * (1 - margin) - extra``. Without checkpointing first; checkpointing
is chosen when the uncheckpointed micro-batch is under half the checkpointed one (or nothing fits).
``plan_phase`` wires it to a Trainer (RuntimeConfig.memory_plan / memory_budget_gib).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from tlcm.errors import TLCMError

GiB = 2**30
MARGIN = 0.1
"""Fraction of the budget kept free (allocator fragmentation, aux_step updates, validation grids)."""


@dataclass(frozen=True)
class Plan:
    micro_batch: int
    checkpointing: bool
    peak: float
    """Predicted peak bytes of a micro-batch step (including ``extra``)."""

    def line(self, phase: str, batch: int, budget: float) -> str:
        ckpt = "on" if self.checkpointing else "off"
        return (
            f"memory plan {phase}: micro-batch {self.micro_batch} x accum {batch // self.micro_batch}, "
            f"checkpointing {ckpt}, predicted peak {self.peak / GiB:.1f} of {budget / GiB:.1f} GiB"
        )


def _largest(candidates, measure, checkpointing, usable, extra) -> tuple[int, float] | None:
    """(largest candidate that fits, its predicted peak) from a line through two measurements."""
    points = [(b, measure(b, checkpointing)) for b in candidates[:2]]
    (b1, p1), (b2, p2) = points[0], points[-1]
    if not math.isfinite(p2):  # out of memory at b2 (or at b1 = b2)
        return (b1, p1 + extra) if math.isfinite(p1) and p1 <= usable - extra else None
    per_sample = max((p2 - p1) / (b2 - b1), 0.0) if b2 > b1 else p1 / b1
    fixed = p1 - per_sample * b1
    peaks = [(b, fixed + per_sample * b + extra) for b in candidates]
    fits = [(b, peak) for b, peak in peaks if peak <= usable]
    return fits[-1] if fits else None


def plan_micro_batch(
    batch: int,
    budget: float,
    measure: Callable[[int, bool], float],
    extra: float = 0.0,
    margin: float = MARGIN,
    checkpointing: bool | None = None,
    micro_batch: int | None = None,
    phase: str = "phase",
) -> Plan:
    """The plan for a per-process ``batch`` under ``budget`` bytes. ``measure`` may return inf (out
    of memory). ``extra``: bytes the measured step lacks (AdamW's two moments). ``checkpointing``
    / ``micro_batch``: fixed by the user (None: chosen). One-line TLCMError when nothing fits."""
    candidates = [micro_batch] if micro_batch else [b for b in range(1, batch + 1) if batch % b == 0]
    usable = budget * (1 - margin)
    modes = [checkpointing] if checkpointing is not None else [False, True]
    chosen: dict[bool, tuple[int, float]] = {}
    for mode in modes:
        fit = _largest(candidates, measure, mode, usable, extra)
        if fit is not None:
            chosen[mode] = fit
            if fit[0] == candidates[-1]:
                break  # the largest candidate fits: checkpointing cannot do better
    if not chosen:
        need = min(measure(candidates[0], m) for m in modes) + extra
        what = "even" if len(candidates) > 1 else "the recipe's"
        raise TLCMError(
            f"memory plan {phase}: {what} micro-batch {candidates[0]}"
            f"{' with gradient checkpointing' if modes[-1] else ''} needs "
            f"{'more than the device has' if math.isinf(need) else f'{need / GiB:.1f} GiB'}, over "
            f"{usable / GiB:.1f} GiB ({1 - margin:.0%} of the {budget / GiB:.1f} GiB budget): use a "
            "bigger device, a smaller batch or resolution, or raise --recipes.runtime.memory-budget-gib"
        )
    if False in chosen and (True not in chosen or 2 * chosen[False][0] >= chosen[True][0]):
        return Plan(chosen[False][0], False, chosen[False][1])
    return Plan(chosen[True][0], True, chosen[True][1])


def measure_step(trainer, phase, losses) -> Callable[[int, bool], float]:
    """``measure(b, checkpointing)``: peak bytes of one forward + backward of ``phase``'s losses on
    a micro-batch of b prompts (CUDA: max_memory_allocated; out of memory: inf). No update: the
    gradients are dropped, the training draws untouched (own generator)."""
    net, device = trainer.student.net, trainer.dist.device
    if device.type != "cuda":
        raise TLCMError(f"the memory plan measures CUDA memory; device {device}: drop the memory plan")

    def measure(b: int, checkpointing: bool) -> float:
        net.enable_gradient_checkpointing() if checkpointing else net.disable_gradient_checkpointing()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        gen = torch.Generator(device).manual_seed(0)
        ctx = trainer._context(torch.zeros(b, dtype=torch.long, device="cpu"), gen, 0)
        try:
            total, _ = trainer.objective(phase, losses, ctx)
            total.backward()
            return float(torch.cuda.max_memory_allocated(device))
        except torch.cuda.OutOfMemoryError:
            return math.inf
        finally:
            ctx = total = None  # free the graph before the next measurement
            for module in (net, *losses.values()):
                module.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()

    return measure


def plan_phase(trainer, name: str, phase, losses, params):
    """``phase`` with the planned grad_accum, checkpointing switched as planned, and the plan
    printed; unchanged without a plan (RuntimeConfig.memory_plan off; on CPU without a budget).
    A recipe's grad_accum other than 1, or gradient_checkpointing on, is kept (the plan checks it)."""
    rt, device = trainer.recipe.runtime, trainer.dist.device
    if not (rt.memory_plan or rt.memory_budget_gib is not None):
        return phase
    if device.type != "cuda" and rt.memory_budget_gib is None:
        return phase  # no device memory to read a budget from
    if rt.memory_budget_gib is not None:
        budget = rt.memory_budget_gib * GiB
    else:
        budget = torch.cuda.get_device_properties(device).total_memory
    batch = phase.batch_size // trainer.dist.world_size
    extra = 2 * sum(p.numel() * p.element_size() for p in params)  # AdamW's moments, made at step 1
    plan = plan_micro_batch(
        batch,
        budget,
        measure_step(trainer, phase, losses),
        extra,
        checkpointing=True if rt.gradient_checkpointing else None,
        micro_batch=batch // phase.grad_accum if phase.grad_accum != 1 else None,
        phase=name,
    )
    net = trainer.student.net
    net.enable_gradient_checkpointing() if plan.checkpointing else net.disable_gradient_checkpointing()
    trainer.reporter.print(plan.line(name, batch, budget))
    return replace(phase, grad_accum=batch // plan.micro_batch)
