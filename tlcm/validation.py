"""Recipe checks before anything heavy loads: one clear line per problem (what, where, how)."""

from __future__ import annotations

from tlcm.config import Recipe
from tlcm.errors import TLCMError


def validate_recipe(recipe: Recipe, num_train_timesteps: int = 1000) -> None:
    """Raise TLCMError naming the recipe field (as a CLI flag) for the first invalid value."""
    if not recipe.phases:
        raise TLCMError("the recipe has no phases: add at least one under recipe.phases")
    for name, phase in recipe.phases.items():
        flag = f"--recipes.phases.{name}"
        if phase.steps < 1:
            raise TLCMError(f"{flag}.steps must be >= 1, got {phase.steps}")
        if phase.lr <= 0:
            raise TLCMError(f"{flag}.lr must be > 0, got {phase.lr}")
        if phase.grad_accum < 1 or phase.batch_size < phase.grad_accum:
            raise TLCMError(
                f"{flag}.batch-size ({phase.batch_size}) must be >= grad-accum ({phase.grad_accum}) >= 1"
            )
        if not phase.losses:
            raise TLCMError(f"phase {name!r} has no loss terms")
        for loss_name, loss in phase.losses.items():
            try:
                loss.validate(num_train_timesteps)
            except ValueError as err:
                raise TLCMError(f"{flag}.losses.{loss_name}: {err}") from err
    for n in recipe.inference_steps:
        if not 1 <= n <= 8:
            raise TLCMError(f"--recipes.inference-steps: each must be in 1..8 (M = 8 milestones), got {n}")
