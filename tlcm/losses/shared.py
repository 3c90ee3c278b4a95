"""Work shared by several losses within one training step, computed once (``StepContext.shared``).

The student's grid (M milestones, q steps) is the recipe's one ``ctx.grid``.

- ``student_samples(ctx)``: the current student's q-step samples (B, C, h, w), detached
  (LCD's states, the GAN's "real" side, preference candidates' source).
- ``student_prediction(ctx)``: the student's one-step x0 prediction WITH gradients from a
  state on its own q-step inference grid (pure noise at T, or a q-step sample re-noised to one of
  the grid's lower timesteps, DMD2's "backward simulation", Sec. 4.5), so that every step of few-step
  sampling is trained. DMD, GAN and reward feedback all push on this one tensor.
- ``decoded(ctx, key, latents)``: VAE-decoded images of a shared latent tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tlcm.diffusion.sampling import sample_latents
from tlcm.losses.base import StepContext


def samples_key(ctx: StepContext, draw: int = 0) -> str:
    """The shared-cache key of ``student_samples(ctx, draw)`` (decoded images reuse it)."""
    return f"student_samples/{ctx.grid.steps}/{ctx.grid.num_milestones}/{draw}"


def prediction_key(ctx: StepContext) -> str:
    """The shared-cache key of ``student_prediction(ctx)``."""
    return f"student_prediction/{ctx.grid.steps}/{ctx.grid.num_milestones}"


def student_samples(ctx: StepContext, draw: int = 0) -> torch.Tensor:
    """The current student's q-step samples (B, C, h, w) from fresh noise on its inference grid
    (``ctx.grid``; tlcm_step with its ``training_gamma``, the paper's 1 by default), detached;
    once per step and ``draw`` (draws are independent samples: DPO's two candidates per prompt are
    draws 0 and 1)."""

    def compute() -> torch.Tensor:
        grid = ctx.grid.timesteps(None, ctx.schedule)
        noise = ctx.randn(ctx.batch_size, *ctx.latent_shape)
        return sample_latents(
            ctx.student,
            ctx.schedule,
            ctx.cond,
            noise,
            grid.tolist(),
            ctx.grid.training_gamma,
            generator=ctx.generator,
        )

    return ctx.shared(samples_key(ctx, draw), compute)


@dataclass
class StudentPrediction:
    """x0: the student's x0 prediction (B, C, h, w), differentiable; t (B,) the timestep it was
    predicted from; x_t (B, C, h, w) that state (detached)."""

    x0: torch.Tensor
    t: torch.Tensor
    x_t: torch.Tensor


def student_prediction(ctx: StepContext) -> StudentPrediction:
    """One-step x0 prediction of the student, with gradients, from timesteps of its q-step grid
    (``ctx.grid``): t = grid[k], k uniform per sample; x_t = noise at k = 0, else the detached
    q-step sample re-noised to t. Computed once per step."""

    def compute() -> StudentPrediction:
        schedule, num_steps = ctx.schedule, ctx.grid.steps
        grid = ctx.grid.timesteps(None, schedule, ctx.device)
        k = torch.randint(len(grid), (ctx.batch_size,), generator=ctx.generator, device=ctx.device)
        t = grid[k]
        noise = ctx.randn(ctx.batch_size, *ctx.latent_shape)
        if num_steps > 1:
            x_t = schedule.add_noise(student_samples(ctx), noise, t)
            x_t = torch.where((k == 0).view(-1, 1, 1, 1), noise, x_t)
        else:
            x_t = noise
        x0 = schedule.to_x0(ctx.student(x_t, t, ctx.cond), x_t, t)
        return StudentPrediction(x0, t, x_t)

    return ctx.shared(prediction_key(ctx), compute)


def decoded(ctx: StepContext, key: str, latents: torch.Tensor) -> torch.Tensor:
    """``ctx.decode(latents)`` (B, 3, H, W) in [-1, 1], once per step per ``key``; a clear error
    when the loss runs without a decoder. The engine's decoder is ``BaseModel.decode``: large
    batches in slices, each checkpointed when gradients flow (one slice's activations alive)."""
    if ctx.decode is None:
        raise ValueError(
            "this loss needs decoded images but the StepContext has no decode function: "
            "pass decode=<latents -> images> (the engine passes the VAE decoder)"
        )
    return ctx.shared(f"decoded/{key}", lambda: ctx.decode(latents))


def decoded_prediction(ctx: StepContext) -> torch.Tensor:
    """Images (B, 3, H, W) of ``student_prediction(ctx).x0``, decoded once per step with
    gradients (reward feedback and a pixel GAN share them)."""
    return decoded(ctx, prediction_key(ctx), student_prediction(ctx).x0)
