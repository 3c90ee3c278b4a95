"""Evaluate a sampler on the miniature pipeline's fixed prompt set (toy alignment and FD)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from tlcm.conditioning import Conditioning
from tlcm.diffusion.milestones import StudentGrid
from tlcm.diffusion.sampling import sample_latents
from tlcm.toy.data import eval_prompts
from tlcm.toy.metrics import ToyMetrics, ToyScores

if TYPE_CHECKING:  # diffusers: not needed to import this module (tlcm.evaluate --help)
    from tlcm.models.base import BaseModel

LatentSampler = Callable[[Conditioning, Conditioning, torch.Tensor, torch.Generator], torch.Tensor]
"""(cond, uncond, noise (B, C, h, w), generator) -> clean latents (B, C, h, w)."""

EVAL_SEED = 1234
"""Seed of the evaluation noise: every sampler sees the same initial noise (paired comparison)."""


@torch.no_grad()
def evaluate_toy(
    base: BaseModel,
    sampler: LatentSampler,
    samples_per_digit: int = 50,
    batch_size: int = 250,
    metrics: ToyMetrics | None = None,
) -> ToyScores:
    """Generate ``10 * samples_per_digit`` images with fixed noise and score them (sampling and
    decoding under ``base.autocast()``: bf16 frozen weights sample in bf16, a LoRA student too)."""
    prompts, labels = eval_prompts(samples_per_digit)
    metrics = metrics or ToyMetrics()
    noise_gen = torch.Generator().manual_seed(EVAL_SEED)  # host noise: the same images on any device
    step_gen = torch.Generator().manual_seed(EVAL_SEED + 1)  # host too: stochastic samplers alike
    noise = torch.randn((len(prompts), *base.latent_shape), generator=noise_gen, device="cpu")
    images = []
    for start in range(0, len(prompts), batch_size):
        cond, uncond = base.encode(prompts[start : start + batch_size])
        with base.autocast():
            latents = sampler(cond, uncond, noise[start : start + batch_size].to(base.device), step_gen)
            images.append(base.decode(latents).cpu())
    return metrics(torch.cat(images), labels)


def student_scores(
    base: BaseModel,
    student,
    steps: tuple[int, ...],
    samples_per_digit: int = 50,
    metrics: ToyMetrics | None = None,
    student_grid: StudentGrid | None = None,
) -> list[dict]:
    """Toy scores of a TLCM student (no CFG, the milestone timesteps and gamma of its
    ``student_grid``, default M = 8, gamma = 1) per step count: rows of steps, prompts (the
    evaluation set's size: FD depends on it), alignment, fd, and the sampler's gamma and
    first_gamma (None: gamma for the first move too), so a score file says what sampled it."""
    metrics, student_grid = metrics or ToyMetrics(), student_grid or StudentGrid()
    rows = []
    for n in steps:
        grid = student_grid.timesteps(n, base.schedule).tolist()

        def sampler(cond, uncond, noise, gen, grid=grid):
            return sample_latents(
                student,
                base.schedule,
                cond,
                noise,
                grid,
                student_grid.gamma,
                generator=gen,
                first_gamma=student_grid.first_gamma,
            )

        scores = evaluate_toy(base, sampler, samples_per_digit, metrics=metrics)
        rows.append(
            {
                "steps": n,
                "prompts": 10 * samples_per_digit,
                "alignment": scores.alignment,
                "fd": scores.fd,
                "gamma": student_grid.gamma,
                "first_gamma": student_grid.first_gamma,
            }
        )
    return rows
