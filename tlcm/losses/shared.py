"""Work shared by several losses within one training step, computed once (``StepContext.shared``).

The student's grid (M milestones, q steps) is the recipe's one ``ctx.grid``.

- ``student_samples(ctx)``: the current student's q-step samples (B, C, h, w), detached
  (LCD's states, the GAN's "real" side, preference candidates' source).
- ``student_prediction(ctx)``: the student's one-step x0 prediction WITH gradients from a
  state on its own q-step inference grid (pure noise at T, or below it a state of DMD2's "backward
  simulation", Sec. 4.5, or real latents noised to the grid: ``StudentGrid.backward_simulation``),
  so that every step of few-step sampling is trained. DMD, GAN, ADD's distillation and reward
  feedback all push on this one tensor.
  ``predict_student(ctx)`` draws another one, uncached (DMD's fresh fake-score samples).
- ``decoded(ctx, key, latents)``: VAE-decoded images of a shared latent tensor.
- ``consistency_pair(ctx)``: what the phase's consistency loss (MLCD) mapped this step, its online
  output and its stop-grad target at the target time (PCM's adversarial term reads them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tlcm.diffusion.sampling import sample_latents
from tlcm.diffusion.solvers import tlcm_step
from tlcm.errors import TLCMError
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
    return ctx.shared(samples_key(ctx, draw), lambda: sample_student(ctx))


def sample_student(ctx: StepContext) -> torch.Tensor:
    """One new draw of ``student_samples(ctx)`` (uncached: q student calls each time)."""
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


@dataclass
class StudentPrediction:
    """x0: the student's x0 prediction (B, C, h, w), differentiable; t (B,) the timestep it was
    predicted from; x_t (B, C, h, w) that state (detached)."""

    x0: torch.Tensor
    t: torch.Tensor
    x_t: torch.Tensor


def student_prediction(ctx: StepContext) -> StudentPrediction:
    """One-step x0 prediction of the student, with gradients, from timesteps of its q-step grid
    (``ctx.grid``), computed once per step (``predict_student``)."""
    return ctx.shared(prediction_key(ctx), lambda: predict_student(ctx))


def predict_student(ctx: StepContext, fresh_samples: bool = False) -> StudentPrediction:
    """One new draw of the student's one-step x0 prediction (uncached; with gradients unless
    called under no_grad) from t = grid[k] of its q-step grid, by ``ctx.grid.backward_simulation``:

    - "sample": k uniform per sample; x_t = noise at k = 0, else the detached q-step sample
      re-noised to t: the step's shared ``student_samples(ctx)``, or with ``fresh_samples`` a new
      one (``sample_student``). 1 student call (+ q for a new sample).
    - "chain" (DMD2's backward simulation, ``sd_unified_model.py`` ``sample_backward``): one k
      uniform in 0..q-1 for the micro-batch (a host draw; DMD2 shares it over the whole batch),
      x_t = the state the student's own sampler (``training_gamma``) reaches at grid[k] after k
      moves from fresh noise, no gradients. 1 + k student calls (1 + (q - 1) under
      ``phase.uniform_calls``: FSDP2 needs the same calls on every process; the same draws).
    - "data" (ADD's student inputs, arXiv 2311.17042: "samples from noisy data, produced from real
      images through a forward diffusion process"): k uniform per sample, x_t = the micro-batch's
      real latents (``ctx.real_latents()``, one encode per step) noised with fresh noise to grid[k],
      at k = 0 too (the top timestep: real data noised to T, not pure noise; on a flow schedule
      sigma = 1 there, so it is noise). 1 student call; a fresh draw has new k and noise, the same
      real latents.
    """
    schedule, num_steps, batch = ctx.schedule, ctx.grid.steps, ctx.batch_size
    grid = ctx.grid.timesteps(None, schedule, ctx.device)
    if ctx.grid.backward_simulation == "chain" and num_steps > 1:
        k, x_t = _chain_state(ctx, grid)
        t = grid[k : k + 1].expand(batch)
    else:
        k = torch.randint(len(grid), (batch,), generator=ctx.generator, device=ctx.device)
        t = grid[k]
        noise = ctx.randn(batch, *ctx.latent_shape)
        if ctx.grid.backward_simulation == "data":
            x_t = schedule.add_noise(ctx.real_latents(), noise, t)
        elif num_steps > 1:
            samples = sample_student(ctx) if fresh_samples else student_samples(ctx)
            x_t = schedule.add_noise(samples, noise, t)
            x_t = torch.where((k == 0).view(-1, 1, 1, 1), noise, x_t)
        else:
            x_t = noise
    x0 = schedule.to_x0(ctx.student(x_t, t, ctx.cond), x_t, t)
    return StudentPrediction(x0, t, x_t)


@torch.no_grad()
def _chain_state(ctx: StepContext, grid: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(k, x) of ``predict_student``'s "chain": the student's q-step sampler from fresh noise,
    stopped at grid[k]. Every draw is made up front (noise, then one per move up to q - 1), so the
    draws do not depend on k or on padding."""
    host = ctx.host_generator
    k = int(torch.randint(len(grid), (1,), generator=host, device=host.device))
    x = ctx.randn(ctx.batch_size, *ctx.latent_shape)
    fresh = [ctx.randn(*x.shape) for _ in range(len(grid) - 1)]
    moves = len(grid) - 1 if ctx.phase.uniform_calls else k
    state = x
    for i in range(moves):
        t, s = grid[i : i + 1].expand(len(x)), grid[i + 1 : i + 2].expand(len(x))
        x0 = ctx.schedule.to_x0(ctx.student(x, t, ctx.cond), x, t)
        x = tlcm_step(ctx.schedule, x, x0, t, s, ctx.grid.training_gamma, fresh[i])
        if i + 1 == k:
            state = x
    return k, state


CONSISTENCY_PAIR = "consistency_pair"
"""The shared-cache key under which MLCD leaves its ``ConsistencyPair`` each step."""


@dataclass
class ConsistencyPair:
    """One step of a consistency loss (MLCD, Eq. (7)): online = g(x_{t_m}, t_m) (B, C, h, w) with
    gradients, target = sg g(x_{t_n}, t_n) (B, C, h, w), both at t_s (B,) (the segment's lower edge,
    or TCD's random s); t_m (B,) the online state's time, in segment (edge, upper] of ``segments``
    segments (the loss's M)."""

    online: torch.Tensor
    target: torch.Tensor
    t_s: torch.Tensor
    t_m: torch.Tensor
    segments: int


def consistency_pair(ctx: StepContext) -> ConsistencyPair:
    """The ``ConsistencyPair`` the phase's MLCD loss computed in this step; a ``TLCMError`` saying
    what to do when none did (the consistency loss must come first in the phase's losses)."""
    pair = ctx.computed(CONSISTENCY_PAIR, None)
    if pair is None:
        raise TLCMError(
            "this loss reads the consistency loss's online output and target of the step, but no "
            'MLCD loss ran before it: list an "mlcd" loss first in the phase (e.g. --recipes.phases '
            'with losses {"mlcd": ..., "gan": ...})'
        )
    return pair


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
