"""The training loop's failure guards: non-finite steps, phases that "skip" could not train, and
students whose weights diverged. Each failure is a ``NonFiniteLoss`` (exit 3) with one line saying
what, where, that nothing of it was saved, and what to do.

Why a weight guard besides the NaN checks: a blow-up first leaves finite but huge weights (~1e30
after an lr far too large); the next forwards overflow to NaN, which ``on_nonfinite "skip"`` skips
for ever, and the run would end with exit 0 and export the blown-up LoRA. ``weight_peak`` is read
at the step's one host sync (tlcm/engine.py), so the guard costs no extra wait.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.distributed.tensor import DTensor

from tlcm.checkpoint import checkpoint_folders
from tlcm.config import RuntimeConfig
from tlcm.errors import TLCMError

LOWER_LR = (
    "lower --recipes.phases.{phase}.lr: the rerun resumes from the last checkpoint with "
    "--recipes.runtime.resume-changed, or starts over with --recipes.runtime.no-resume"
)
"""The advice after a NaN/inf or a blow-up (a resume with another lr is refused without the flag)."""


def kept(rt: RuntimeConfig, phase: str, also: str = "") -> str:
    """What a run stopped in ``phase`` keeps, with the advice (and ``also``, more of it): its
    checkpoints (LOWER_LR), or, before its first one, that a rerun with a lower lr starts over."""
    if checkpoint_folders(rt.out_dir):
        advice = LOWER_LR.format(phase=phase)
        return f"the checkpoints in {rt.out_dir / 'checkpoints'} are untouched ({advice}{also})"
    return f"no checkpoint was saved yet (lower --recipes.phases.{phase}.lr: the rerun starts over{also})"


class NonFiniteLoss(TLCMError):
    """A loss term or the gradient became NaN/inf and the recipe says stop (or too many steps were
    skipped: in a row, or in a phase), or the student's weights diverged (beyond max_weight_abs);
    exit code 3. Nothing non-finite or diverged is ever saved."""

    exit_code = 3


def weight_peak(params: list[torch.nn.Parameter], device: torch.device) -> torch.Tensor:
    """The largest magnitude of any trainable weight, a 0-dim tensor on ``device`` (no host sync;
    fused per device). FSDP2: of this process's shards (``peak_share`` makes the run's peak of them)."""
    local = [p.to_local() if isinstance(p, DTensor) else p for p in params]
    local = [p.detach() for p in local if p.numel()]
    if not local:
        return torch.zeros((), device=device)
    return torch.nn.utils.get_total_norm(local, math.inf)


def peak_share(peak: torch.Tensor, limit: float, world_size: int, sharded: bool) -> torch.Tensor:
    """What one process adds to the step's averaged terms (the step's one all-reduce is a mean) so
    that the mean is the weight peak the guard compares with ``limit`` (max_weight_abs). Replicated
    weights (one process, DDP): the peak itself. FSDP2 shards: limit + processes x this shard's
    excess over limit, whose mean is limit + the sum of the shards' excesses: <= limit exactly when
    every shard is within it, a blow-up on one shard read exactly, NaN kept. (The mean of the
    shards' own peaks read 1 / processes of a blow-up on one shard: with 8 processes a weight of
    5e4 passed a limit of 1e4.)"""
    if not sharded or world_size == 1:
        return peak
    return limit + world_size * (peak - limit).clamp(min=0)


def diverged(rt: RuntimeConfig, phase: str, step: int, peak: float) -> NonFiniteLoss:
    """The divergence guard tripped: the update of ``step`` (1-based) left a weight of magnitude
    ``peak`` beyond max_weight_abs (or NaN/inf)."""
    return NonFiniteLoss(
        f"the student diverged in phase {phase!r}: after step {step} a weight has magnitude "
        f"{peak:.3g} (> --recipes.runtime.max-weight-abs {rt.max_weight_abs:g}); nothing from that "
        f"step on is saved; {kept(rt, phase)}"
    )


def check_skipped(rt: RuntimeConfig, phase: str, steps: int, global_step: int, skipped: list[int]) -> None:
    """At the end of a phase of ``steps`` steps (ending at ``global_step``): refuse (NonFiniteLoss)
    one that skip could not train, with more than max_skipped_fraction of its steps among the
    ``skipped`` global steps, before its end is saved or anything exported."""
    count = sum(global_step - steps < s <= global_step for s in skipped)
    if count > rt.max_skipped_fraction * steps:
        raise NonFiniteLoss(
            f"phase {phase!r} ended with {count} of its {steps} steps skipped (non-finite; more than "
            f"--recipes.runtime.max-skipped-fraction {rt.max_skipped_fraction:g}): it did not train, so "
            f"its end is not saved and nothing is exported; {kept(rt, phase)}"
        )


def nonfinite(
    rt: RuntimeConfig, phase: str, step: int, terms: dict[str, torch.Tensor], streak: int, say: Callable
) -> None:
    """Handle a step whose terms or gradient were NaN/inf (it changed nothing): stop, or skip
    (``say`` one line) until ``max_consecutive_skips`` steps in a row were skipped. ``step`` counts
    from 1, as metrics.jsonl does."""
    bad = ", ".join(k for k, v in terms.items() if not torch.isfinite(v))
    where = f"in phase {phase!r} at step {step}"
    if rt.on_nonfinite == "stop":
        also = "; or set --recipes.runtime.on-nonfinite skip"
        raise NonFiniteLoss(
            f"non-finite {bad} {where}; nothing was updated or saved; {kept(rt, phase, also)}"
        )
    if streak > rt.max_consecutive_skips:
        raise NonFiniteLoss(
            f"non-finite {bad} {where}: {streak} steps in a row skipped "
            f"(--recipes.runtime.max-consecutive-skips {rt.max_consecutive_skips}); nothing was updated "
            f"or saved; {kept(rt, phase)}"
        )
    say(f"[yellow]skipped step {step} of {phase}: non-finite {bad}")
