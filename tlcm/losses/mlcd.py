"""Stage 1: multistep latent consistency distillation (MLCD), docs/method.md "Stage 1"; arXiv
2406.05768 Sec. 4.1, Eqs. (7)-(8), Alg. 1.

[0, T] is cut into M segments (M = ``ctx.grid.num_milestones``, the recipe's student grid, unless
the config's ``segments`` says otherwise); inside
segment s = (t_s, t_{s+1}] the student is made consistent with the teacher's trajectory towards the
segment's lower edge:

    g(x, t)   = DDIM(x, f_theta(x, c, t), t -> t_s)                          Eq. (8)
    L_MLCD    = d( g(x_{t_m}, t_m), stopgrad g(x_{t_n}, t_n) ),                Eq. (7)
    t_n       = max(t_m - k, t_s)       (Eq. (6), skip k = 20 by Sec. 4.1; the clamp at t_s is ours)

with x_{t_n} one CFG-DDIM step of the teacher from x_{t_m}, and the target network the
stop-grad student (the paper removes the EMA, Sec. 4.1) or an EMA of it (option: Consistency
Models, Song et al. 2023, eq. 8). Each step leaves both sides in the step's shared work
(``shared.consistency_pair``: PCM's adversarial term on them, ``GANConfig(real="consistency")``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from tlcm.conditioning import Conditioning
from tlcm.data.states import TrajectoryStates
from tlcm.diffusion.denoiser import Denoiser, Guided
from tlcm.diffusion.milestones import StudentGrid, milestones, sample_segment_timesteps
from tlcm.diffusion.schedule import Schedule
from tlcm.diffusion.solvers import ddim_step, mds_trajectory, teacher_solve
from tlcm.errors import TLCMError
from tlcm.losses.base import Loss, LossConfig, StepContext
from tlcm.losses.distances import Distance, get_distance
from tlcm.losses.registry import register_loss
from tlcm.losses.shared import CONSISTENCY_PAIR, ConsistencyPair


def segment_map(
    denoiser: Denoiser, schedule: Schedule, x: torch.Tensor, t: torch.Tensor, t_s: torch.Tensor, cond
) -> torch.Tensor:
    """g of Eq. (8): DDIM(x, x0_hat, t -> t_s) with x0_hat = f(x, c, t): x (B, C, h, w), t, t_s (B,)."""
    x0 = schedule.to_x0(denoiser(x, t, cond), x, t)
    return ddim_step(schedule, x, x0, t, t_s)


def mlcd_loss(
    student: Denoiser,
    target: Denoiser,
    teacher: Denoiser,
    schedule: Schedule,
    states: TrajectoryStates,
    cond: Conditioning,
    distance: Distance,
) -> torch.Tensor:
    """Per-sample MLCD loss (B,) of Eq. (7) for ``states``: x_tm (B, C, h, w) at t_m, skip target
    t_n, edge t_s.

    ``states.x_tn`` (e.g. from a trajectory cache) skips the teacher call; otherwise it is one
    DDIM step of the guided ``teacher`` from t_m to t_n. The target branch runs without gradients.
    """
    return distance(*segment_maps(student, target, teacher, schedule, states, cond))


def segment_maps(
    student: Denoiser,
    target: Denoiser,
    teacher: Denoiser,
    schedule: Schedule,
    states: TrajectoryStates,
    cond: Conditioning,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides of Eq. (7), (B, C, h, w) each: the online g(x_tm, t_m) with gradients and the
    target g(x_tn, t_n) without (x_tn: ``states.x_tn`` or one guided-teacher DDIM step t_m -> t_n)."""
    x_tm, t_m, t_n, t_s, x_tn = states.x_tm, states.t_m, states.t_n, states.t_s, states.x_tn
    with torch.no_grad():
        if x_tn is None:
            x_tn = teacher_solve(teacher, schedule, x_tm, t_m, t_n, cond)
        goal = segment_map(target, schedule, x_tn, t_n, t_s, cond)
    return segment_map(student, schedule, x_tm, t_m, t_s, cond), goal


@register_loss("mlcd")
@dataclass
class MLCDConfig(LossConfig):
    """Multistep latent consistency distillation (stage 1)."""

    skip: int = 20
    """k: t_n = max(t_m - k, t_s)."""
    segments: int = 0
    """M of this loss: [0, T] in this many segments (0: the student grid's M). A recipe whose phases
    train progressively fewer segments (Hyper-SD's TSCD: 8 -> 4 -> 2 -> 1) sets it per phase while
    the student's sampling grid (``--recipes.student.grid``) stays what is exported."""
    states: Literal["mds", "single_jump", "cache", "data"] = "mds"
    """Where x_{t_m} comes from: "mds" (teacher from noise in M - s CFG-DDIM steps, the paper),
    "single_jump" (one teacher step T -> t_m, the paper's ablation), "cache" (precomputed
    teacher trajectories, python -m tlcm.data.trajectories with the same M, k and w: zero teacher
    calls per step; needs data.trajectory_cache), "data" (real latents noised to t_m with fresh
    noise, their captions the prompts: LCM, PCM, TCD; needs data.images)."""
    timesteps: Literal["uniform", "lattice"] = "uniform"
    """t_m in its segment: "uniform" over every timestep (the paper), or "lattice": the T/k-point
    DDIM lattice {k - 1, 2k - 1, ..., T - 1} of LCM's DDIMSolver (k = skip; VP schedules only; not
    with states "cache", whose t_m are its build grid)."""
    target_time: Literal["edge", "random"] = "edge"
    """Where both branches are mapped: the segment's lower edge t_s (the paper, PCM), or "random":
    s uniform in [t_s, t_n] per sample (TCD's trajectory consistency function, Hyper-SD's TSCD)."""
    guidance_range: tuple[float, float] = (0.0, 0.0)
    """Per-sample teacher CFG scale w ~ U[lo, hi] (our w = LCM's w + 1: LCM-LoRA's 5..15 is
    (6, 16)); (0, 0): the recipe's fixed model.guidance_scale. Not with states "mds" or "cache"
    (a cache's x_{t_n} were made at one w)."""
    distance: str = "l2"
    """Distance d: "l2", "huber" or "latent_lpips"."""
    distance_weights: str = ""
    """Weights file of a learned distance (latent_lpips; empty: the miniature VAE's shipped file;
    for another VAE train one with python -m tlcm.latent_lpips.train)."""
    target: Literal["stopgrad", "ema"] = "stopgrad"
    """Target network: the stop-grad online student (paper) or an EMA of its trainable weights."""
    ema_decay: float = 0.95
    """EMA decay when target = "ema"."""
    lowest_edge: Literal["discrete", "clean"] = "discrete"
    """The lowest segment's lower edge t_0: "discrete", the schedule's first timestep t = 0 (the
    paper's milestones; on a VP schedule alpha 0.99957, sigma 0.029, so that segment's map g keeps
    some of x_t: 0.22 at t = 19), or "clean": the clean boundary (VP t = -1, alpha 1, sigma 0;
    ``Schedule.clean_timestep``), where g is the student's x0 prediction: LCM's, TCD's and
    Hyper-SD's last stage's target f. Flow schedules' t = 0 is clean already. Needs target_time
    "edge"."""

    def build(self, student) -> MLCD:
        return MLCD(self, student.net, student.base.family, counter=student.base)

    def data_needs(self) -> dict[str, tuple[str, str]]:
        field = {"cache": "trajectory_cache", "data": "images"}.get(self.states)
        return {field: (f'states "{self.states}"', "use states mds")} if field else {}

    def shared_leaves(self) -> tuple[str, ...]:
        return (CONSISTENCY_PAIR,)

    def num_segments(self, grid: StudentGrid) -> int:
        """M of this loss: ``segments``, or the student grid's."""
        return self.segments or grid.num_milestones

    def validate(self, num_train_timesteps: int, grid: StudentGrid) -> None:
        if not 0 <= self.segments <= num_train_timesteps:
            raise ValueError(
                f"segments must be in 0..{num_train_timesteps} (0: the student's M), got {self.segments}"
            )
        longest = num_train_timesteps // self.num_segments(grid)
        if not 1 <= self.skip <= longest:
            raise ValueError(f"skip must be in 1..{longest} (T/M), got {self.skip}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        lo, hi = self.guidance_range
        if self.guidance_range != (0.0, 0.0) and not 0 < lo <= hi:
            raise ValueError(f"guidance_range must be (0, 0) or 0 < lo <= hi, got {self.guidance_range}")
        unusable = {
            "mds": "MDS advances only some samples per round",
            "cache": "the cache's x_{t_n} were made at its one w: a drawn w would go unused",
        }
        if self.guidance_range != (0.0, 0.0) and self.states in unusable:
            raise ValueError(
                f'guidance_range needs states "data" or "single_jump", not "{self.states}" '
                f"({unusable[self.states]}); or keep guidance_range (0, 0), the recipe's fixed w"
            )
        if self.lowest_edge == "clean" and self.target_time != "edge":
            raise ValueError(
                'lowest_edge "clean" needs target_time "edge" (a random target time is drawn in '
                "[t_s, t_n] on the schedule's own timesteps)"
            )
        if self.states == "cache" and self.timesteps == "lattice":
            raise ValueError(
                'timesteps "lattice" would go unused with states "cache" (a cache serves the t_m of its '
                'build grid, steps of skip down from each milestone): use timesteps "uniform" with a cache'
            )
        get_distance(self.distance, self.distance_weights)


class MLCD(Loss):
    """The MLCD component: samples segments and timesteps, gets states, returns {"mlcd": loss}."""

    def __init__(self, config: MLCDConfig, student_module: nn.Module, family=None, counter=None) -> None:
        super().__init__()
        self.config, self.family = config, family
        self.counter = counter  # the BaseModel whose ``evaluations`` the EMA target's calls add to
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
        return functional_denoiser(self.student_module[0], params, self.family, self.counter)

    def _states(self, ctx: StepContext, schedule: Schedule) -> TrajectoryStates:
        cfg = self.config
        if cfg.states == "cache":
            cache = ctx.phase.trajectories
            if ctx.states is not None:
                return ctx.states
            if cache is None or ctx.prompt_index is None:
                raise TLCMError(
                    'MLCD states="cache" needs --recipes.data.trajectory-cache DIR '
                    "(build it with python -m tlcm.data.trajectories)"
                )
            cache.require(cfg.num_segments(ctx.grid), cfg.skip)  # zero teacher calls
            return cache.sample(ctx.prompt_index, ctx.host_generator, ctx.device)
        num_milestones, host, b = cfg.num_segments(ctx.grid), ctx.host_generator, ctx.batch_size
        # segments s on the host: MDS plans its teacher calls (M - s per sample) there, no sync
        seg = torch.randint(num_milestones, (b,), generator=host, device=host.device)
        on_device = seg.to(ctx.device, non_blocking=True)
        grid = milestones(num_milestones, schedule, ctx.device)
        lattice = cfg.timesteps == "lattice"
        _, t_m, t_n = sample_segment_timesteps(schedule, grid, b, cfg.skip, on_device, ctx.generator, lattice)
        t_s = grid[on_device].to(t_m.dtype)
        if cfg.states == "data":  # LCM / PCM / TCD: the real latent noised to t_m
            x0 = ctx.real_latents()
            return TrajectoryStates(schedule.add_noise(x0, ctx.randn(*x0.shape), t_m), t_m, t_n, t_s)
        steps = num_milestones - seg if cfg.states == "mds" else torch.ones_like(seg)
        with torch.no_grad():
            noise = ctx.randn(ctx.batch_size, *ctx.latent_shape)
            rounds = num_milestones if ctx.phase.uniform_calls else None
            x_tm = mds_trajectory(self._teacher(ctx), schedule, noise, t_m, steps, ctx.cond, rounds)
        return TrajectoryStates(x_tm, t_m, t_n, t_s)

    def _teacher(self, ctx: StepContext) -> Guided:
        """The guided teacher, with a per-sample w ~ U[guidance_range] (once per step) if set."""
        lo, hi = self.config.guidance_range
        if (lo, hi) == (0.0, 0.0):
            return ctx.teacher
        return ctx.shared(
            "mlcd/teacher", lambda: ctx.teacher.with_scale(lo + (hi - lo) * ctx.rand(ctx.batch_size))
        )

    def _target_time(self, ctx: StepContext, states: TrajectoryStates) -> TrajectoryStates:
        """TCD: both branches mapped to s uniform in [t_s, t_n] (integers on a VP schedule)."""
        s = ctx.schedule.uniform_timesteps(ctx.rand(ctx.batch_size), states.t_s, states.t_n)
        return replace(states, t_s=s.to(states.t_s.dtype))

    def forward(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        states = self._states(ctx, ctx.schedule)
        if self.config.target_time == "random":
            states = self._target_time(ctx, states)
        if self.config.lowest_edge == "clean":  # the lowest edge, t = 0, mapped to clean data instead
            clean = torch.full_like(states.t_s, ctx.schedule.clean_timestep)
            states = replace(states, t_s=torch.where(states.t_s == 0, clean, states.t_s))
        target, teacher = self._target(ctx), self._teacher(ctx)
        online, goal = segment_maps(ctx.student, target, teacher, ctx.schedule, states, ctx.cond)
        segments = self.config.num_segments(ctx.grid)
        ctx.shared(CONSISTENCY_PAIR, lambda: ConsistencyPair(online, goal, states.t_s, states.t_m, segments))
        return {"mlcd": self.distance(online, goal).mean()}

    def own_loop_calls(self) -> tuple[str, ...]:
        """``after_student_step`` moves the EMA target (target "ema"); "stopgrad" needs nothing."""
        return ("after_student_step",) if self.config.target == "ema" else ()

    @torch.no_grad()
    def after_student_step(self) -> None:
        if self.config.target != "ema":
            return
        live = dict(self.student_module[0].named_parameters())
        for i, name in enumerate(self.ema_names):
            getattr(self, f"ema_{i}").lerp_(live[name].detach(), 1 - self.config.ema_decay)
