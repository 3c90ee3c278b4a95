"""Stage 2: inter-segment latent consistency distillation (LCD), docs/method.md "Stage 2"; arXiv
2406.05768 Sec. 4.2, Eqs. (9)-(10), Alg. 2.

Consistency to the trajectory end (x0) across segments, at the sparse milestones:

    x0_q      = stopgrad( q-step sample of the CURRENT student from noise )
    x_{t_m}   = a_{t_m} x0_q + s_{t_m} eps,            t_m in {t_1..t_M},  t_n = t_m - T/M   Eq. (9)
                (one segment down: on a shifted flow grid, t_m - (t_k - t_{k-1}), the previous milestone)
    x_{t_n}   = p CFG-DDIM sub-steps of the teacher from x_{t_m}   (Sec. 4.2, Alg. 2; p = 3, Sec. 5.1)
    L_LCD     = d( f_theta(x_{t_m}, t_m), stopgrad f_theta(x_{t_n}, t_n) ).               Eq. (10)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tlcm.conditioning import Conditioning
from tlcm.diffusion.denoiser import Denoiser
from tlcm.diffusion.milestones import StudentGrid, milestones, segment_index
from tlcm.diffusion.schedule import Schedule
from tlcm.diffusion.solvers import teacher_solve
from tlcm.losses.base import Loss, LossConfig, StepContext
from tlcm.losses.distances import Distance, get_distance
from tlcm.losses.registry import register_loss
from tlcm.losses.shared import student_samples


def lcd_loss(
    student: Denoiser,
    target: Denoiser,
    teacher: Denoiser,
    schedule: Schedule,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t_m: torch.Tensor,
    t_n: torch.Tensor,
    cond: Conditioning,
    substeps: int,
    distance: Distance,
) -> torch.Tensor:
    """Per-sample LCD loss (B,) of Eq. (10): x0 (B, C, h, w) detached clean latents re-noised with
    ``noise`` to t_m (B,); the guided ``teacher`` solves t_m -> t_n in ``substeps`` DDIM steps; the
    stop-grad target is the x0 prediction at t_n."""
    x_tm = schedule.add_noise(x0, noise, t_m)
    with torch.no_grad():
        x_tn = teacher_solve(teacher, schedule, x_tm, t_m, t_n, cond, substeps)
        goal = schedule.to_x0(target(x_tn, t_n, cond), x_tn, t_n)
    pred = schedule.to_x0(student(x_tm, t_m, cond), x_tm, t_m)
    return distance(pred, goal)


@register_loss("lcd")
@dataclass
class LCDConfig(LossConfig):
    """Inter-segment latent consistency distillation (stage 2)."""

    teacher_substeps: int = 3
    """p: CFG-DDIM sub-steps of the teacher from t_m to t_n (the paper: quality rises with p)."""
    full_range: bool = False
    """The paper's ablation: t_m uniform in (T/M, T] instead of the sparse milestones."""
    distance: str = "l2"
    """Distance d: "l2", "huber" or "latent_lpips"."""
    distance_weights: str = ""
    """Weights file of a learned distance (latent_lpips; empty: the miniature VAE's shipped file;
    for another VAE train one with python -m tlcm.latent_lpips.train)."""

    def build(self, student) -> LCD:
        return LCD(self)

    def validate(self, num_train_timesteps: int, grid: StudentGrid) -> None:
        if self.teacher_substeps < 1:
            raise ValueError(f"teacher_substeps (p) must be >= 1, got {self.teacher_substeps}")
        get_distance(self.distance, self.distance_weights)


class LCD(Loss):
    """The LCD component: returns {"lcd": loss}."""

    def __init__(self, config: LCDConfig) -> None:
        super().__init__()
        self.config = config
        self.distance = get_distance(config.distance, config.distance_weights)

    def forward(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        cfg, schedule, num_milestones = self.config, ctx.schedule, ctx.grid.num_milestones
        x0 = student_samples(ctx)
        grid = milestones(num_milestones, schedule, ctx.device)
        if cfg.full_range:
            gap = grid[1] - grid[0]
            t_m = gap + ctx.rand(ctx.batch_size) * (schedule.max_timestep - gap)
            k = segment_index(t_m.to(grid.dtype), grid) + 1  # t_m in (t_{k-1}, t_k]
        else:
            k = (
                torch.randint(num_milestones, (ctx.batch_size,), generator=ctx.generator, device=ctx.device)
                + 1
            )
            t_m = grid[k]
        t_m = schedule.discretize(t_m.clamp(max=schedule.max_timestep))
        t_n = schedule.discretize(t_m - (grid[k] - grid[k - 1]))  # one segment down (shifted flow: unequal)
        loss = lcd_loss(
            ctx.student,
            ctx.student,
            ctx.teacher,
            schedule,
            x0,
            ctx.randn(*x0.shape),
            t_m,
            t_n,
            ctx.cond,
            cfg.teacher_substeps,
            self.distance,
        )
        return {"lcd": loss.mean()}
