"""Few-step samplers on top of the diffusion core: the teacher's CFG-DDIM and the TLCM student.

Both are the same loop (one piece of code): predict x0 at t, then move to the next timestep
with ``tlcm_step`` (gamma = 0: deterministic DDIM, gamma = 1: LCM-style fresh noise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from tlcm.conditioning import Conditioning
from tlcm.diffusion.denoiser import Denoiser
from tlcm.diffusion.schedule import Schedule
from tlcm.diffusion.solvers import tlcm_step


def teacher_timesteps(num_steps: int, schedule: Schedule) -> list[float]:
    """The teacher's n-step grid: VP, ``ddim_timesteps``; flow, the Euler grid of
    FlowMatchEulerDiscreteScheduler with "trailing" ends: T shift(1 - i / n), i = 0..n-1 (1 -> [T])."""
    if schedule.discrete:
        return ddim_timesteps(num_steps, schedule.num_train_timesteps)
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    fraction = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64, device="cpu")[:-1]
    return schedule.timestep_at(fraction).tolist()


def ddim_timesteps(num_steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """Evenly spaced "trailing" DDIM grid starting at T-1: n=2 -> [999, 500] for T = 1000.

    ValueError unless 1 <= n < T: from n = T on, the rounded grid repeats timesteps.
    """
    if not 1 <= num_steps < num_train_timesteps:
        raise ValueError(
            f"num_steps must be in 1..{num_train_timesteps - 1} for a {num_train_timesteps}-timestep "
            f"schedule (more would repeat timesteps), got {num_steps}"
        )
    grid = torch.linspace(num_train_timesteps - 1, 0, num_steps + 1, device="cpu")[:-1]  # host ints
    return [int(t) for t in grid.round()]


@torch.no_grad()
def sample_latents(
    denoiser: Denoiser,
    schedule: Schedule,
    cond: Conditioning,
    noise: torch.Tensor,
    timesteps: Sequence[float],
    gamma: float,
    generator: torch.Generator | None = None,
    on_step: Callable[[int], None] | None = None,
    first_gamma: float | None = None,
) -> torch.Tensor:
    """Sample clean latents (B, C, h, w) from ``noise`` (B, C, h, w) at timesteps[0].

    Each step: x0_hat = to_x0(model output at t), then x_s = tlcm_step(x_t, x0_hat, t -> s, gamma)
    (the first move, from timesteps[0], with ``first_gamma`` when given); the last step returns
    x0_hat (as diffusers' LCMScheduler and the TLCM authors' inference.py). The teacher comes
    guided (``tlcm.diffusion.denoiser.Guided``: one batched CFG call per step); the student is a
    plain denoiser.
    ``generator`` draws each move's fresh noise in TLCMScheduler's order: the same noise and seed
    give the exported scheduler's sample, whatever gamma and first_gamma. It may live on the CPU
    while the latents are on an accelerator (drawn there, then moved, as diffusers' randn_tensor):
    the same images on any device.
    ``on_step(i)`` is called after step i (progress bars).
    """
    x = noise
    batch = noise.shape[0]
    for i, t_value in enumerate(timesteps):
        t = torch.full((batch,), t_value, device=x.device, dtype=schedule.timestep_dtype)
        x0 = schedule.to_x0(denoiser(x, t, cond), x, t)
        if on_step is not None:
            on_step(i)
        if i == len(timesteps) - 1:
            return x0
        s = torch.full_like(t, timesteps[i + 1])
        move_gamma = first_gamma if i == 0 and first_gamma is not None else gamma
        # A DDIM first move before stochastic ones draws nothing, as TLCMScheduler's step: else the
        # later moves would take other draws than the exported scheduler's for the same seed. (Other
        # unused draws are kept: they change no sample, and evaluation's step generator runs on.)
        fresh = None
        if move_gamma > 0 or gamma == 0:
            where = x.device if generator is None else generator.device  # a CPU generator: any device
            fresh = torch.randn(x.shape, generator=generator, device=where, dtype=x.dtype).to(x.device)
        x = tlcm_step(schedule, x, x0, t, s, move_gamma, fresh)
    raise ValueError("timesteps must not be empty")
