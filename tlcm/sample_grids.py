"""Sample grids of the student at the recipe's step counts (one row per step count)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tlcm.diffusion.milestones import StudentGrid
from tlcm.diffusion.sampling import sample_latents
from tlcm.images import save_grid

if TYPE_CHECKING:
    from tlcm.models.student import Student


@torch.no_grad()
def write_phase_grid(
    student: Student,
    prompts: Sequence[str],
    inference_steps: Sequence[int],
    grid: StudentGrid,
    path: Path,
    seed: int = 0,
) -> Path:
    """Grid of ``student``'s samples on ``grid`` (the recipe's student grid): rows =
    ``inference_steps`` (the recipe's), columns = 10 prompts evenly picked from ``prompts`` (the
    training prompts: digits 0-9 on the miniature pipeline); same noise per column. Sampled and
    decoded under ``base.autocast()`` (bf16 frozen weights: the LoRA student in bf16 too), decoded
    in ``BaseModel.decode``'s slices."""
    base = student.base
    prompts = list(prompts[:: max(1, len(prompts) // 10)][:10])
    cond, _ = base.encode(prompts)
    gen = torch.Generator().manual_seed(seed)  # host: the same grid on any device
    noise = torch.randn((len(prompts), *base.latent_shape), generator=gen).to(base.device)
    rows = []
    for n in inference_steps:
        timesteps = grid.timesteps(n, base.schedule).tolist()
        with base.autocast():
            latents = sample_latents(
                student.denoiser(),
                base.schedule,
                cond,
                noise,
                timesteps,
                grid.gamma,
                generator=gen,
                first_gamma=grid.first_gamma,
            )
            rows.append(base.decode(latents))
    return save_grid(torch.cat(rows), path, nrow=len(prompts))
