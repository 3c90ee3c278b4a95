"""Helpers for engine tests: any recipe as a 2-step CPU smoke run on a tiny pipeline."""

from __future__ import annotations

from pathlib import Path

from tlcm.config import Recipe, smoke_recipe


def shrink(recipe: Recipe, model_dir: Path, out_dir: Path, steps: int = 2, batch_size: int = 2) -> Recipe:
    """``smoke_recipe`` with LoRA rank 4 (alpha 4)."""
    return smoke_recipe(recipe, model_dir, out_dir, steps, batch_size, lora_rank=4, lora_alpha=4.0)
