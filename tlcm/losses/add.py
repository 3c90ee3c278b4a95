"""ADD's distillation loss (Adversarial Diffusion Distillation, Sauer et al. 2023, arXiv 2311.17042,
SD-Turbo / SDXL-Turbo; docs/zoo-methods.md section 6): the student's one-step prediction regressed
onto the frozen teacher's denoising of it.

    x_hat     = student_prediction(ctx).x0            (B, C, h, w), with gradients (shared with the
                                                      GAN: both push on one tensor)
    x_t       = a_t sg(x_hat) + s_t eps,  t ~ U[t_min, t_max], eps ~ N(0, I) fresh
    x_psi     = teacher x0 prediction at (x_t, t)     (B, C, h, w), guided, under no_grad
    L_distill = E_t [ c(t) d(x_hat, x_psi) ]          (ADD's Eq. for L_distill)

c(t): "exponential", alpha_bar_t = ``schedule.alpha(t) ** 2`` (VP: alphas_cumprod[t]; a flow
schedule has alpha = 1 - sigma, we use its square too: ours, the paper has no flow teacher) or
"uniform" (1). d: a per-sample distance of distances.py ("l2": mean_{c,h,w} (x_hat - x_psi)^2, the
paper's squared l2 divided by the element count D) in latent space or on decoded images ("pixel":
both decoded with the VAE, the prediction once per step with gradients through
``decoded_prediction``, the target without). So for "l2", d L / d x_hat_i = 2 c(t_i) (x_hat_i -
x_psi_i) / (B D): the teacher's input is detached, its output a constant target.

The ADD paper's settings, recalled from memory of arXiv 2311.17042 (the paper text is not reachable
in this environment, docs/zoo-methods.md "Not read"): lambda = 2.5 for this loss against the
adversarial one, c(t) = alpha_bar_t ("exponential", the best of its ablation against SDS and NFSD
weightings), d = squared l2 in pixel space, the student at timesteps {999, 749, 499, 249} on real
data noised to them (``StudentGrid(backward_simulation="data")``).

Cost: one teacher call per micro-batch (2B samples under CFG: ``Guided`` makes one call of the
base's ``denoiser()``, which the engine counts; nothing here counts again), plus with "pixel" one
VAE decode of the target and, when no other loss decodes it, of the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.base import Loss, LossConfig, StepContext
from tlcm.losses.distances import DISTANCES
from tlcm.losses.registry import register_loss
from tlcm.losses.shared import decoded, decoded_prediction, prediction_key, student_prediction

CHOICES = {"weighting": ("exponential", "uniform"), "space": ("latent", "pixel")}


def add_weighting(schedule, t: torch.Tensor, weighting: str) -> torch.Tensor:
    """c(t) (B,) float32: "exponential" alpha_bar_t = alpha(t)^2 (ADD's), "uniform" ones."""
    if weighting == "exponential":
        return schedule.alpha(t).float().square()
    return torch.ones(t.shape, device=t.device)


@register_loss("add_distill")
@dataclass
class ADDDistillConfig(LossConfig):
    """ADD's distillation loss: c(t) d(x_hat, teacher x0 of the re-noised sg(x_hat))."""

    t_min: int = 0
    """Lowest timestep of the re-noising t (the whole range by default)."""
    t_max: int | None = None
    """Highest timestep of the re-noising t (None: the schedule's noisiest, T - 1 for VP, T for flow,
    where alpha = 0; ADD's paper recalled: the teacher's whole range)."""
    guidance_scale: float = 0.0
    """CFG scale of the teacher's target (0: the recipe's, model.guidance_scale)."""
    weighting: Literal["exponential", "uniform"] = "exponential"
    """c(t): "exponential" alpha_bar_t = alpha(t)^2 (ADD's choice), or "uniform" 1."""
    distance: str = "l2"
    """d, per sample: one of distances.py's weight-free distances (l2: mean squared error, ADD's)."""
    space: Literal["latent", "pixel"] = "latent"
    """Where d is taken: on latents, or on VAE-decoded images ("pixel", ADD's; one decode of the
    target per step, and of the prediction unless another loss decodes it)."""

    def build(self, student) -> ADDDistill:
        return ADDDistill(self)

    def validate(self, num_train_timesteps: int, grid: StudentGrid) -> None:
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")
        hi = num_train_timesteps - 1 if self.t_max is None else self.t_max
        if not 0 <= self.t_min < hi <= num_train_timesteps - 1:
            raise ValueError(
                f"need 0 <= t_min < t_max <= {num_train_timesteps - 1} (None: {num_train_timesteps - 1}), "
                f"got {self.t_min}, {self.t_max}"
            )
        if self.distance not in DISTANCES:
            raise ValueError(f"distance must be one of {', '.join(DISTANCES)}; got {self.distance!r}")
        if self.guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0 (0: the recipe's), got {self.guidance_scale}")


class ADDDistill(Loss):
    """The ADD distillation component: returns {"add_distill": loss} (weight-free; the recipe's
    ``weight`` is ADD's lambda). Owns no model: no aux_step, nothing to checkpoint."""

    def __init__(self, config: ADDDistillConfig) -> None:
        super().__init__()
        self.config = config
        self.distance = DISTANCES[config.distance]

    def timesteps(self, ctx: StepContext) -> torch.Tensor:
        """t (B,) uniform on [t_min, t_max]: every integer equally likely (VP), or real-valued
        (flow); one ``ctx.rand`` draw (reproducible, the same under every engine mode)."""
        cfg, schedule = self.config, ctx.schedule
        hi = schedule.max_timestep if cfg.t_max is None else cfg.t_max
        return schedule.uniform_timesteps(ctx.rand(ctx.batch_size), cfg.t_min, hi)

    def forward(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        """{"add_distill": mean_b c(t_b) d(x_hat_b, x_psi_b)}, a scalar: x_hat (B, C, h, w) the shared
        prediction (with gradients), x_psi (B, C, h, w) the teacher's x0 at (a_t sg(x_hat) + s_t eps,
        t), both (B, 3, H, W) images with space "pixel"; c(t), d (B,)."""
        cfg, schedule = self.config, ctx.schedule
        x0 = student_prediction(ctx).x0
        t = self.timesteps(ctx)
        x_t = schedule.add_noise(x0.detach(), ctx.randn(*x0.shape), t)  # the teacher sees sg(x_hat)
        teacher = ctx.teacher.with_scale(cfg.guidance_scale) if cfg.guidance_scale else ctx.teacher
        with torch.no_grad():
            target = schedule.to_x0(teacher(x_t, t, ctx.cond), x_t, t)
        pred = x0
        if cfg.space == "pixel":
            pred = decoded_prediction(ctx)
            with torch.no_grad():  # this loss's own draw: a key of its own (id: one per module)
                target = decoded(ctx, f"add_distill/{id(self)}/{prediction_key(ctx)}", target)
        dtype = torch.promote_types(pred.dtype, torch.float32)  # at least fp32 (bf16 decodes)
        distance = self.distance(pred.to(dtype), target.to(dtype))
        return {"add_distill": (add_weighting(schedule, t, cfg.weighting).to(dtype) * distance).mean()}
