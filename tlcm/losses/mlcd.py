"""Stage 1: multistep latent consistency distillation (MLCD), tlcm-method.md "Stage 1".

[0, T] is cut into M segments (M = ``ctx.grid.num_milestones``, the recipe's student grid); inside
segment s = (t_s, t_{s+1}] the student is made consistent with the teacher's trajectory towards the
segment's lower edge:

    g(x, t)   = DDIM(x, f_theta(x, c, t), t -> t_s)
    L_MLCD    = d( g(x_{t_m}, t_m), stopgrad g(x_{t_n}, t_n) ),  t_n = max(t_m - k, t_s),

with x_{t_n} one CFG-DDIM step of the teacher from x_{t_m}, and the target network the
stop-grad student (the paper) or an EMA of it (option).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tlcm.diffusion.milestones import StudentGrid, milestones, sample_segment_timesteps
from tlcm.diffusion.schedule import Schedule
from tlcm.diffusion.solvers import ddim_step, mds_trajectory, teacher_solve
from tlcm.errors import TLCMError
from tlcm.losses import register_loss
from tlcm.losses.base import Denoiser, Loss, LossConfig, StepContext
from tlcm.losses.distances import Distance, get_distance


def segment_map(
    denoiser: Denoiser, schedule: Schedule, x: torch.Tensor, t: torch.Tensor, t_s: torch.Tensor, cond
) -> torch.Tensor:
    """g(x, t) = DDIM(x, x0_hat, t -> t_s) with x0_hat = f(x, c, t): x (B, C, h, w), t, t_s (B,)."""
    x0 = schedule.to_x0(denoiser(x, t, cond), x, t)
    return ddim_step(schedule, x, x0, t, t_s)


def mlcd_loss(
    student: Denoiser,
    target: Denoiser,
    teacher: Denoiser,
    schedule: Schedule,
    x_tm: torch.Tensor,
    t_m: torch.Tensor,
    t_n: torch.Tensor,
    t_s: torch.Tensor,
    cond,
    uncond,
    guidance_scale: float,
    distance: Distance,
    x_tn: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample MLCD loss (B,) for states x_tm (B, C, h, w) at t_m, skip target t_n, edge t_s.

    ``x_tn`` (e.g. from a trajectory cache) skips the teacher call; otherwise it is one CFG-DDIM
    step of ``teacher`` from t_m to t_n. The target branch runs without gradients.
    """
    with torch.no_grad():
        if x_tn is None:
            x_tn = teacher_solve(teacher, schedule, x_tm, t_m, t_n, cond, uncond, guidance_scale, 1)
        goal = segment_map(target, schedule, x_tn, t_n, t_s, cond)
    return distance(segment_map(student, schedule, x_tm, t_m, t_s, cond), goal)


@register_loss("mlcd")
@dataclass
class MLCDConfig(LossConfig):
    """Multistep latent consistency distillation (stage 1)."""

    skip: int = 20
    """k: t_n = max(t_m - k, t_s)."""
    states: Literal["mds", "single_jump", "cache"] = "mds"
    """Where x_{t_m} comes from: "mds" (teacher from noise in M - s CFG-DDIM steps, the paper),
    "single_jump" (one teacher step T -> t_m, the paper's ablation), "cache" (precomputed
    teacher trajectories, python -m tlcm.data.trajectories with the same M, k and w: zero teacher
    calls per step; needs data.trajectory_cache)."""
    distance: str = "l2"
    """Distance d: "l2", "huber" or "latent_lpips"."""
    distance_weights: str = ""
    """Weights file of a learned distance (latent_lpips; empty: the miniature VAE's shipped file;
    for another VAE train one with python -m tlcm.losses.latent_lpips_train)."""
    target: Literal["stopgrad", "ema"] = "stopgrad"
    """Target network: the stop-grad online student (paper) or an EMA of its trainable weights."""
    ema_decay: float = 0.95
    """EMA decay when target = "ema"."""

    def build(self, student) -> MLCD:
        return MLCD(self, student.net, student.base.family)

    def validate(self, num_train_timesteps: int, grid: StudentGrid) -> None:
        if not 1 <= self.skip <= num_train_timesteps // grid.num_milestones:
            raise ValueError(
                f"skip must be in 1..{num_train_timesteps // grid.num_milestones} (T/M), got {self.skip}"
            )
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        get_distance(self.distance, self.distance_weights)


class MLCD(Loss):
    """The MLCD component: samples segments and timesteps, gets states, returns {"mlcd": loss}."""

    def __init__(self, config: MLCDConfig, student_module: nn.Module, family=None) -> None:
        super().__init__()
        self.config, self.family = config, family
        self.distance = get_distance(config.distance, config.distance_weights)
        self.student_module = [student_module]  # a list: not a submodule, not in this state_dict
        if config.target == "ema":
            params = {n: p.detach().clone() for n, p in student_module.named_parameters() if p.requires_grad}
            self.ema_names = list(params)
            for i, name in enumerate(self.ema_names):
                self.register_buffer(f"ema_{i}", params[name])

    def _target(self, ctx: StepContext) -> Denoiser:
        if self.config.target == "stopgrad":
            return ctx.student
        from tlcm.models.functional import functional_denoiser  # late: the recipe tree imports this

        params = {n: getattr(self, f"ema_{i}") for i, n in enumerate(self.ema_names)}
        return functional_denoiser(self.student_module[0], params, self.family)

    def _states(self, ctx: StepContext, schedule: Schedule):
        cfg = self.config
        if cfg.states == "cache":
            b, cache = ctx.batch, ctx.batch.get("trajectory_cache")
            if "x_tm" not in b and cache is None:
                raise TLCMError(
                    'MLCD states="cache" needs --recipes.data.trajectory-cache DIR '
                    "(build it with python -m tlcm.data.trajectories)"
                )
            if "x_tm" not in b:  # a tlcm.data.trajectories.TrajectoryCache: zero teacher calls
                cache.require(ctx.grid.num_milestones, cfg.skip)
                b = cache.sample(b["prompt_index"], ctx.host_generator, ctx.device)
            return b["x_tm"], b["t_m"], b["t_n"], b["t_s"], b["x_tn"]
        num_milestones, host, b = ctx.grid.num_milestones, ctx.host_generator, ctx.batch_size
        # segments s on the host: MDS plans its teacher calls (M - s per sample) there, no sync
        seg = torch.randint(num_milestones, (b,), generator=host, device=host.device)
        on_device = seg.to(ctx.device, non_blocking=True)
        grid = milestones(num_milestones, schedule, ctx.device)
        _, t_m, t_n = sample_segment_timesteps(schedule, grid, b, cfg.skip, on_device, ctx.generator)
        steps = num_milestones - seg if cfg.states == "mds" else torch.ones_like(seg)
        with torch.no_grad():
            x_tm = mds_trajectory(
                ctx.teacher,
                schedule,
                ctx.randn(ctx.batch_size, *ctx.latent_shape),
                t_m,
                steps,
                ctx.cond,
                ctx.uncond,
                ctx.guidance_scale,
                num_milestones if ctx.uniform_calls else None,
            )
        return x_tm, t_m, t_n, grid[on_device].to(t_m.dtype), None

    def forward(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        x_tm, t_m, t_n, t_s, x_tn = self._states(ctx, ctx.schedule)
        loss = mlcd_loss(
            ctx.student,
            self._target(ctx),
            ctx.teacher,
            ctx.schedule,
            x_tm,
            t_m,
            t_n,
            t_s,
            ctx.cond,
            ctx.uncond,
            ctx.guidance_scale,
            self.distance,
            x_tn,
        )
        return {"mlcd": loss.mean()}

    @torch.no_grad()
    def after_student_step(self) -> None:
        if self.config.target != "ema":
            return
        live = dict(self.student_module[0].named_parameters())
        for i, name in enumerate(self.ema_names):
            getattr(self, f"ema_{i}").lerp_(live[name].detach(), 1 - self.config.ema_decay)
