"""Helpers for engine tests: any recipe as a 2-step CPU smoke run on a tiny pipeline, and a loss
the engine has never heard of (with switches for NaN, blow-ups and stop signals at chosen steps)."""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from recipes import PRESETS
from tlcm.config import Phase, Recipe, smoke_recipe
from tlcm.losses import Loss, LossConfig, register_loss
from tlcm.losses.mlcd import MLCDConfig

TEST_DEVICE = os.environ.get("TLCM_TEST_DEVICE", "cpu")
"""The device ``shrink``'s runs train on: the CPU, or where benchmarks/gpu_tests.sh runs a selection
of the suite on a GPU, "cuda" (TLCM_TEST_DEVICE=cuda)."""


def shrink(recipe: Recipe, model_dir: Path, out_dir: Path, steps: int = 2, batch_size: int = 2) -> Recipe:
    """``smoke_recipe`` with LoRA rank 4 (alpha 4) on ``TEST_DEVICE``, in fp32 there too (CUDA's
    "auto" precision is bf16: a test's bf16 run is ``loss_cases.in_bf16``'s)."""
    recipe = smoke_recipe(
        recipe, model_dir, out_dir, steps, batch_size, TEST_DEVICE, lora_rank=4, lora_alpha=4.0
    )
    if TEST_DEVICE == "cpu":
        return recipe
    model, runtime = replace(recipe.model, frozen_dtype="fp32"), replace(recipe.runtime, mixed_precision="no")
    return replace(recipe, model=model, runtime=runtime)


@register_loss("test_output_norm")
@dataclass
class OutputNormConfig(LossConfig):
    """A loss the engine has never heard of: mean squared student output at a random t."""

    poison_step: int = -1
    """Return NaN at this global step (0-based; -1: never; -2: always)."""
    sigterm_step: int = -1
    """Send this process a stop signal (``signal_name``) at this global step (-1: never)."""
    signal_name: str = "SIGTERM"
    """The signal of ``sigterm_step``: SIGTERM, SIGINT or SIGHUP."""
    signal_count: int = 1
    """How many times to send it (2 x SIGINT: a user insisting)."""
    signal_rank: int = -1
    """Under torchrun: only the process of this RANK signals at ``sigterm_step`` (-1: every one)."""
    launcher_sigterm_step: int = -1
    """At this global step rank 0 sends SIGTERM to its parent (torchrun's launcher, which forwards
    it to every rank) and waits until its own SIGTERM has arrived (-1: never)."""
    corrupt_step: int = -1
    """Set a student LoRA weight to inf after this global step's update, whose loss was finite (a
    blow-up)."""
    error_step: int = -1
    """Rank 0 alone raises OSError(ENOSPC) at this global step (-1: never): an error of its own, as a
    full disk under its checkpoint would be, while the other ranks go on into the step's collectives."""
    blowup_step: int = -1
    """Multiply the student's LoRA weights by 1e30 after this global step's update: finite weights,
    a blow-up that no NaN check sees (the next forward may still be finite)."""

    def build(self, student):
        return OutputNorm(self, student)


class OutputNorm(Loss):
    def __init__(self, config, student=None):
        super().__init__()
        self.config, self.student = config, [student]

    def forward(self, ctx):
        x = ctx.randn(ctx.batch_size, *ctx.latent_shape)
        t = torch.randint(0, 1000, (ctx.batch_size,), generator=ctx.generator, device=ctx.device)
        value = ctx.student(x, t, ctx.cond).square().mean()
        if ctx.step == self.config.poison_step or self.config.poison_step == -2:
            value = value * float("nan")
        rank = int(os.environ.get("RANK", "0"))
        if ctx.step == self.config.sigterm_step and self.config.signal_rank in (-1, rank):
            for _ in range(self.config.signal_count):
                os.kill(os.getpid(), getattr(signal, self.config.signal_name))
        if ctx.step == self.config.error_step and rank == 0:
            raise OSError(errno.ENOSPC, "No space left on device (tests/engine_helpers.py error_step)")
        if ctx.step == self.config.launcher_sigterm_step and rank == 0:
            _signal_launcher_and_wait()
        self.last_step = ctx.step
        return {"norm": value}

    def aux_step(self, contexts):
        """Records how the engine calls it: with how many micro-batches, under autocast or not."""
        self.aux_calls = getattr(self, "aux_calls", []) + [
            (len(contexts), torch.is_autocast_enabled(contexts[0].device.type))
        ]
        return {}

    @torch.no_grad()
    def after_student_step(self):
        weights = self.student[0].trainable_parameters()
        if getattr(self, "last_step", None) == self.config.corrupt_step:
            next(p for n, p in weights.items() if "lora_A" in n).fill_(float("inf"))
        if getattr(self, "last_step", None) == self.config.blowup_step:
            for name, p in weights.items():
                if "lora_" in name:
                    p.mul_(1e30)


def _signal_launcher_and_wait(timeout: float = 30.0) -> None:
    """SIGTERM to the parent process (torchrun's launcher), then wait for the launcher's SIGTERM to
    this process (seen by the process-wide stop-signal handler), so that it arrives in this step."""
    from tlcm import preemption

    os.kill(os.getppid(), signal.SIGTERM)
    end = time.monotonic() + timeout
    while (signals := preemption.process_signals()) is not None and signals.received is None:
        if time.monotonic() > end:
            raise TimeoutError("the launcher did not forward SIGTERM")
        time.sleep(0.01)


def small_recipe(model_dir: Path, out_dir: Path, steps: int = 4, **loss) -> Recipe:
    """One phase "stage" of MLCD + the test loss (``loss``: its switches), batch 2, lr 1e-3."""
    base = shrink(PRESETS["mlcd"], model_dir, out_dir, steps=steps)
    phase = Phase(
        steps=steps, lr=1e-3, batch_size=2, losses={"mlcd": MLCDConfig(), "norm": OutputNormConfig(**loss)}
    )
    return replace(base, phases={"stage": phase})


def interrupt_after(trainer, global_step: int) -> None:
    """Make ``trainer`` stop as on SIGTERM (save, return pre-empted) after ``global_step`` steps."""
    step = trainer._step

    def stepped(phase, losses, opt, params, at):
        out = step(phase, losses, opt, params, at)
        trainer._stop = trainer._stop or at + 1 == global_step
        return out

    trainer._step = stepped
