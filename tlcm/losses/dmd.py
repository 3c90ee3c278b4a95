"""Distribution matching distillation, data-free (DMD, Yin et al. 2023, arXiv 2311.18828; DMD2,
arXiv 2405.14867), as the paper's bag of techniques 3 (arXiv 2406.05768 Sec. 4.3, Eq. (12);
docs/method.md "The bag of techniques" 3).

The student's one-step prediction x0_hat (shared with GAN / reward feedback) is re-noised,
x_t' = a_t' x0_hat + s_t' eps with t' ~ U[t_min, t_max] (DMD Sec. 3.2: 0.02 T..0.98 T), and scored by
- the real score: the frozen teacher with CFG (w = real_guidance_scale, default the recipe's),
- the fake score: a network initialised as the teacher and trained online with the denoising
  loss on the student's (detached) samples (DMD eq. 6); by default a second LoRA adapter on the SAME frozen
  base (no second UNet in memory), a full copy as an option.

    grad = (x0_fake(x_t') - x0_real(x_t')) / mean_{c,h,w} |x0_hat - x0_real(x_t')|
           (DMD eqs. 7-8, without eq. 7's factor a_t')
    L_DMD = 1/2 || x0_hat - stopgrad(x0_hat - grad) ||^2     (so d L / d x0_hat = grad / D)

``aux_step`` then makes ``fake_updates`` denoising updates of the fake score (DMD2's two
time-scale rule, Sec. 4.2: 5 per student update), on timesteps in [fake_t_min, fake_t_max].

DMD2's own settings (tianweiy/DMD2 main/sd_guidance.py, train_sd.py; docs/zoo-methods.md section
5) as switches, each off by default: the fake score trained on t ~ U{0..T-1} (``fake_t_min`` 0,
``fake_t_max`` T - 1; the student's t' stays in [t_min, t_max]); every fake update on a fresh
student sample (``fake_samples="fresh"``: DMD2 draws a new generator sample per fake step); its
backward simulation (``StudentGrid.backward_simulation="chain"``, the states of all predictions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch

from tlcm.diffusion.denoiser import Denoiser
from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.auxiliary import AuxOptimizer, check_settings
from tlcm.losses.base import Loss, LossConfig, StepContext
from tlcm.losses.registry import register_loss
from tlcm.losses.shared import predict_student, student_prediction

FAKE_ADAPTER = "dmd_fake"
"""Name of the fake score's LoRA adapter on the shared base."""


class FakeScore(Protocol):
    """What DMD trains as its fake score: ``tlcm.models.student.Auxiliary`` (the engine's, from a
    Student), ``tlcm.models.student.TrainableCopy`` (a trainable copy of a plain network, for your
    own loop), or a class of yours."""

    def denoiser(self) -> Denoiser: ...

    def parameters(self) -> list[torch.nn.Parameter]: ...

    def state_dict(self) -> dict[str, torch.Tensor]: ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...


def dmd_gradient(x0: torch.Tensor, real_x0: torch.Tensor, fake_x0: torch.Tensor) -> torch.Tensor:
    """DMD's normalised gradient (B, C, h, w): (fake - real) / mean |x0 - real| per sample; a
    sample with a zero normaliser gets 0."""
    norm = (x0 - real_x0).abs().flatten(1).mean(1).view(-1, *[1] * (x0.dim() - 1))
    return torch.where(norm > 0, (fake_x0 - real_x0) / norm.clamp_min(1e-12), 0.0)


def denoising_loss(denoiser: Denoiser, schedule, x0, eps, t, cond) -> torch.Tensor:
    """Mean squared error of ``denoiser`` at x_t = a_t x0 + s_t eps against its own training
    target (eps, v or velocity): the fake score's objective, scalar."""
    x_t = schedule.add_noise(x0, eps, t)
    return (denoiser(x_t, t, cond) - schedule.model_output_from(x0, eps, t)).square().mean()


@register_loss("dmd")
@dataclass
class DMDConfig(LossConfig):
    """Distribution matching with an online fake score (DMD / DMD2)."""

    real_guidance_scale: float = 0.0
    """CFG scale of the real score; 0: the recipe's teacher scale (model.guidance_scale)."""
    fake_score: Literal["lora", "full"] = "lora"
    """Fake score network: a second LoRA adapter on the shared base, or a full UNet copy."""
    fake_rank: int = 0
    """LoRA rank of the fake score (0: the student's rank)."""
    fake_lr: float = 1e-4
    """AdamW learning rate of the fake score."""
    fake_betas: tuple[float, float] = (0.0, 0.99)
    """AdamW betas of the fake score (DMD2's scripts: (0.9, 0.999))."""
    fake_weight_decay: float = 0.0
    """AdamW weight decay of the fake score (DMD2's scripts: 0.01)."""
    fake_max_grad_norm: float = 1.0
    """Gradient-norm clip of each fake-score update (0: none; DMD2's scripts: 10)."""
    fake_updates: int = 5
    """Fake-score updates per student update (DMD2 Sec. 4.2: 5)."""
    t_min: int = 20
    """Lowest re-noising timestep t' (DMD Sec. 3.2: T_min = 0.02 T)."""
    t_max: int = 980
    """Highest re-noising timestep t' (DMD Sec. 3.2: T_max = 0.98 T)."""
    fake_t_min: int | None = None
    """Lowest timestep of the fake score's denoising loss (None: ``t_min``; DMD2: 0, its fake
    score trains on t ~ U{0..T-1}, sd_guidance.py ``compute_loss_fake``)."""
    fake_t_max: int | None = None
    """Highest timestep of the fake score's denoising loss (None: ``t_max``; DMD2: T - 1)."""
    fake_samples: Literal["shared", "fresh"] = "shared"
    """What each fake update denoises: "shared", this step's student prediction (detached, the one
    the student's loss used; new eps and t per update); "fresh", a new draw of it per update and
    micro-batch (``shared.predict_student``: new noise, grid timestep and backward-simulation state,
    no gradients; DMD2's train_sd.py draws a new generator sample per fake step) from the student
    after its update: 1 more student call per update (+ q with backward_simulation "sample", + k
    with "chain"). The prompts stay the micro-batch's (DMD2 draws new ones)."""

    def fake_t_range(self) -> tuple[int, int]:
        """The fake score's timestep range [lo, hi] (``fake_t_min`` / ``fake_t_max``, None: t')."""
        lo = self.t_min if self.fake_t_min is None else self.fake_t_min
        return lo, self.t_max if self.fake_t_max is None else self.fake_t_max

    def adapters(self) -> dict[str, int]:
        return {FAKE_ADAPTER: self.fake_rank} if self.fake_score == "lora" else {}

    def build(self, student) -> DMD:
        fake = student.auxiliary(FAKE_ADAPTER, rank=self.fake_rank, full_copy=self.fake_score == "full")
        return DMD(self, fake)

    def validate(self, num_train_timesteps: int, grid: StudentGrid) -> None:
        if not 0 <= self.t_min < self.t_max < num_train_timesteps:
            raise ValueError(
                f"need 0 <= t_min < t_max < {num_train_timesteps}, got {self.t_min}, {self.t_max}"
            )
        lo, hi = self.fake_t_range()
        if not 0 <= lo < hi < num_train_timesteps:
            raise ValueError(
                f"need 0 <= fake_t_min < fake_t_max < {num_train_timesteps} (None: t_min / t_max), "
                f"got {self.fake_t_min}, {self.fake_t_max} (-> {lo}, {hi})"
            )
        if self.fake_samples not in ("shared", "fresh"):
            raise ValueError(f'fake_samples must be "shared" or "fresh", got {self.fake_samples!r}')
        if self.fake_updates < 0:
            raise ValueError(f"fake_updates must be >= 0, got {self.fake_updates}")
        check_settings("fake", self.fake_betas, self.fake_weight_decay, self.fake_max_grad_norm)
        if self.fake_score not in ("lora", "full"):
            raise ValueError(f'fake_score must be "lora" or "full", got {self.fake_score!r}')


class DMD(Loss):
    """The DMD component: returns {"dmd": loss}; ``aux_step`` trains the fake score."""

    def __init__(self, config: DMDConfig, fake: FakeScore) -> None:
        super().__init__()
        self.config, self.fake = config, fake
        self.opt = AuxOptimizer(
            fake.parameters(),
            lr=config.fake_lr,
            betas=config.fake_betas,
            max_grad_norm=config.fake_max_grad_norm,
            weight_decay=config.fake_weight_decay,
            owner="DMD's fake score (the FakeScore passed to DMD)",
        )

    def own_loop_calls(self) -> tuple[str, ...]:
        """``aux_step`` trains the fake score, unless ``fake_updates`` is 0 (a frozen fake score)."""
        return ("aux_step",) if self.config.fake_updates else ()

    @staticmethod
    def _timesteps(ctx: StepContext, lo: int, hi: int) -> torch.Tensor:
        """t (B,) uniform on [lo, hi] (DMD Sec. 3.2: t ~ U(T_min, T_max); on a VP schedule every
        integer of lo..hi equally likely, both ends included)."""
        return ctx.schedule.uniform_timesteps(ctx.rand(ctx.batch_size), lo, hi)

    def forward(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        cfg, schedule = self.config, ctx.schedule
        x0 = student_prediction(ctx).x0
        t = self._timesteps(ctx, cfg.t_min, cfg.t_max)
        x_t = schedule.add_noise(x0.detach(), ctx.randn(*x0.shape), t)
        teacher = ctx.teacher.with_scale(cfg.real_guidance_scale) if cfg.real_guidance_scale else ctx.teacher
        with torch.no_grad():
            real = schedule.to_x0(teacher(x_t, t, ctx.cond), x_t, t)
            fake = schedule.to_x0(self.fake.denoiser()(x_t, t, ctx.cond), x_t, t)
            grad = dmd_gradient(x0.detach(), real, fake)
        loss = 0.5 * (x0 - (x0 - grad).detach()).square().flatten(1).mean(1)
        return {"dmd": loss.mean()}

    def _fake_loss(self, ctx: StepContext) -> torch.Tensor:
        """The fake score's denoising loss on this micro-batch's (detached) student predictions:
        the step's, or a fresh draw (``fake_samples``)."""
        if self.config.fake_samples == "fresh":
            with torch.no_grad():
                x0 = predict_student(ctx, fresh_samples=True).x0
        else:
            x0 = student_prediction(ctx).x0.detach()
        eps, t = ctx.randn(*x0.shape), self._timesteps(ctx, *self.config.fake_t_range())
        return denoising_loss(self.fake.denoiser(), ctx.schedule, x0, eps, t, ctx.cond)

    def aux_step(self, contexts: list[StepContext]) -> dict[str, torch.Tensor]:
        """``fake_updates`` denoising updates of the fake score, each on all micro-batches."""
        losses = [self.opt.step(self._fake_loss, contexts) for _ in range(self.config.fake_updates)]
        return {"dmd/fake_loss": torch.stack(losses).mean()} if losses else {}

    def checkpoint_state(self) -> dict[str, Any]:
        return {"fake": self.fake.state_dict(), "opt": self.opt.state_dict()}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.fake.load_state_dict(state["fake"])
        self.opt.load_state_dict(state["opt"])
