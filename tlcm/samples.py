"""Sample grids of the student at the recipe's step counts (one row per step count)."""

from __future__ import annotations

from pathlib import Path

import torch

from tlcm.images import save_grid
from tlcm.sampling import sample_latents


@torch.no_grad()
def write_phase_grid(trainer, path: Path, seed: int = 0) -> Path:
    """Grid of the student's samples: rows = ``recipe.inference_steps``, columns = 10 prompts
    evenly picked from the training prompts: digits 0-9 on the miniature pipeline); same noise per column.
    Sampled and decoded under ``base.autocast()`` (bf16 frozen weights: the LoRA student in bf16 too),
    decoded in ``BaseModel.decode``'s slices."""
    base, student = trainer.base, trainer.student
    prompts = trainer.prompts[:: max(1, len(trainer.prompts) // 10)][:10]
    cond, _ = base.encode(prompts)
    gen = torch.Generator(base.device).manual_seed(seed)
    noise = torch.randn((len(prompts), *base.latent_shape), generator=gen, device=base.device)
    rows = []
    for n in trainer.recipe.inference_steps:
        grid = trainer.recipe.student.grid.timesteps(n, base.schedule).tolist()
        gammas = trainer.recipe.student.grid
        with base.autocast():
            latents = sample_latents(
                student.denoiser(),
                base.schedule,
                cond,
                noise,
                grid,
                gammas.gamma,
                generator=gen,
                first_gamma=gammas.first_gamma,
            )
            rows.append(base.decode(latents))
    return save_grid(torch.cat(rows), path, nrow=len(prompts))
