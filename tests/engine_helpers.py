"""Helpers for engine tests: any recipe as a 2-step CPU smoke run on a tiny pipeline, and a loss
the engine has never heard of (with switches for NaN, blow-ups and SIGTERM at chosen steps)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from recipes import PRESETS
from tlcm.config import Phase, Recipe, smoke_recipe
from tlcm.losses import Loss, LossConfig, register_loss
from tlcm.losses.mlcd import MLCDConfig


def shrink(recipe: Recipe, model_dir: Path, out_dir: Path, steps: int = 2, batch_size: int = 2) -> Recipe:
    """``smoke_recipe`` with LoRA rank 4 (alpha 4)."""
    return smoke_recipe(recipe, model_dir, out_dir, steps, batch_size, lora_rank=4, lora_alpha=4.0)


@register_loss("test_output_norm")
@dataclass
class OutputNormConfig(LossConfig):
    """A loss the engine has never heard of: mean squared student output at a random t."""

    poison_step: int = -1
    """Return NaN at this global step (0-based; -1: never; -2: always)."""
    sigterm_step: int = -1
    """Send this process SIGTERM at this global step (-1: never)."""
    corrupt_step: int = -1
    """Set a student LoRA weight to inf after this global step's update, whose loss was finite (a
    blow-up)."""

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
        if ctx.step == self.config.sigterm_step:
            os.kill(os.getpid(), signal.SIGTERM)
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
        if getattr(self, "last_step", None) == self.config.corrupt_step:
            weights = self.student[0].trainable_parameters()
            next(p for n, p in weights.items() if "lora_A" in n).fill_(float("inf"))


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
