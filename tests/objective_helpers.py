"""Shared pieces of the by-hand objective tests (test_objectives, test_flow_objectives): the toy
VP schedules, a StepContext builder with prompt scalars, and DMD's Gaussian student with its exact
fake score. prediction_type "sample": a denoiser's output IS its x0 prediction."""

from __future__ import annotations

import torch
from torch import nn

from tlcm.conditioning import Conditioning
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import StudentGrid
from tlcm.diffusion.schedule import VPSchedule
from tlcm.losses.base import StepContext

TOY_AC = [0.9216, 0.64, 0.36]
"""3 timesteps: (a, s) = (0.96, 0.28), (0.8, 0.6), (0.6, 0.8) at t = 0, 1, 2 (tests/toy_context.py)."""
LONG_AC = [0.99 - 0.08 * i for i in range(12)]
"""12 timesteps, alphas_cumprod 0.99, 0.91, ..., 0.11 (room for p = 3 sub-steps and M = 4 segments)."""
TOY = VPSchedule(torch.tensor(TOY_AC), prediction_type="sample")
LONG = VPSchedule(torch.tensor(LONG_AC), prediction_type="sample")


def context(
    student,
    teacher,
    *,
    schedule=TOY,
    cond=(0.0, 0.0),
    uncond=(0.0,),
    w: float = 1.0,
    seed: int = 0,
    latent_shape=(1, 2, 2),
    grid: tuple[int, int] | StudentGrid = (1, 1),
    **extra,
) -> StepContext:
    """A StepContext of len(cond) samples, prompt scalars ``cond`` / ``uncond``, the student's grid
    ``grid`` = (M, q) (or a whole StudentGrid). M = q = 1 (default): the student's one-step
    prediction is made from pure noise at T - 1 (shared.student_prediction) and its 1-step sample
    is that x0."""
    return StepContext.standalone(
        student=student,
        teacher=Guided(teacher, w, prompt_cond(uncond)),
        schedule=schedule,
        cond=prompt_cond(cond),
        generator=torch.Generator().manual_seed(seed),
        latent_shape=latent_shape,
        grid=grid if isinstance(grid, StudentGrid) else StudentGrid(num_milestones=grid[0], steps=grid[1]),
        **extra,
    )


def prompt_cond(values) -> Conditioning:
    """One scalar per sample, broadcast to (B, 2, 3) token embeddings."""
    return Conditioning(torch.tensor(values, dtype=torch.float64).view(-1, 1, 1).expand(-1, 2, 3).clone())


def prompt_scalar(cond: Conditioning, x: torch.Tensor) -> torch.Tensor:
    """The prompt scalar of each sample, shaped like x for broadcasting."""
    return cond.prompt_embeds[:, 0, 0].view(-1, *[1] * (x.dim() - 1)).to(x.dtype)


def posterior_mean(x, t, mean, var, schedule=TOY):
    """E[x0 | x_t] for x0 ~ N(mean, var) per coordinate, x_t = a x0 + s eps:
    mean + a var (x_t - a mean) / (a^2 var + s^2)."""
    a = schedule.alpha(t).view(-1, 1, 1, 1).to(x.dtype)
    s = schedule.sigma(t).view(-1, 1, 1, 1).to(x.dtype)
    return mean + a * var * (x - a * mean) / (a**2 * var + s**2)


class GaussianStudent(nn.Module):
    """Generator x0 = mu + sd * x; on the M = q = 1 grid x is pure noise z, so the student's
    distribution is N(mu, sd^2) per coordinate."""

    def __init__(self, mu: float, sd: float) -> None:
        super().__init__()
        self.mu, self.sd = nn.Parameter(torch.tensor(mu)), nn.Parameter(torch.tensor(sd))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x, t, cond):
        self.inputs.append(x.detach().clone())
        return self.mu + self.sd * x


class ExactFake:
    """The fake score of an ideal DMD: the exact posterior mean of the CURRENT student's
    distribution N(mu_f, sd_f^2). Records its inputs (x_t', t')."""

    def __init__(self, student: GaussianStudent) -> None:
        self.student, self.calls = student, []
        self.unused = nn.Parameter(torch.zeros(()))  # AuxOptimizer wants one parameter

    def output(self, x, t, mean, var):
        """The ideal model output at (x_t, t) for data N(mean, var): the posterior mean (x0)."""
        return posterior_mean(x, t, mean, var)

    def denoiser(self):
        def fake(x, t, cond):
            self.calls.append((x.clone(), t.clone()))
            mu, sd = self.student.mu.detach(), self.student.sd.detach()
            return self.output(x, t, mu, sd**2)

        return fake

    def parameters(self):
        return [self.unused]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass
