"""Helpers for engine tests: shrink any recipe to a 2-step CPU smoke run on a tiny pipeline."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tlcm.config import Recipe


def shrink(recipe: Recipe, model_dir: Path, out_dir: Path, steps: int = 2, batch_size: int = 2) -> Recipe:
    """The same recipe (phases, losses, hyper-parameters) with tiny steps/batch, LoRA rank 4, the
    given model folder and run folder, no sample grid, no evaluation."""
    phases = {name: replace(p, steps=steps, batch_size=batch_size) for name, p in recipe.phases.items()}
    return replace(
        recipe,
        model=replace(recipe.model, path=model_dir),
        student=replace(recipe.student, lora_rank=4, lora_alpha=4.0, init_from=None),
        phases=phases,
        runtime=replace(recipe.runtime, out_dir=out_dir, sample_grid=False, eval_samples_per_digit=0,
                        checkpoint_every=0, device="cpu"),
        inference_steps=(1, 2),
    )
