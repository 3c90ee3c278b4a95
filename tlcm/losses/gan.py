"""Adversarial learning, docs/method.md "The bag of techniques" 4; arXiv 2406.05768 Sec. 4.3, Eq. (13).

A discriminator D tells the student's one-step prediction ("fake") from "real" latents:

    x_fake  = f_theta(x_t, t)                        student_prediction(ctx).x0, with gradients
    x_real  = stopgrad(q-step student sample)        (or the teacher's CFG-DDIM sample from noise,
                                                      or real image latents: real = "data")
    z       = add_noise(x, eps, tau), tau = clean + f (noise_level - clean), f ~ tau_distribution
              (uniform by default), the same eps, tau for both sides unless independent_noise
              (no re-noising when noise_level = 0); then the VAE decoder for pixel input
    nonsaturating:  L_G = softplus(-D(z_fake)),  L_D = softplus(-D(z_real)) + softplus(D(z_fake))
    hinge:          L_G = -D(z_fake),            L_D = relu(1 - D(z_real)) + relu(1 + D(z_fake))
    generator_loss "relu" (PCM):  L_G = relu(1 - D(z_fake))
    R1 (option):    L_D += gamma / 2 * ||grad_z D(z_real)||^2   (Mescheder et al. 2018).

PCM's adversarial consistency loss (real = "consistency"; arXiv 2405.18407, its
train_pcm_lora_sd15_adv.py): fake = the consistency loss's online output g(x_{t_m}, t_m) at its
target time t_s (with gradients), real = its stop-grad target g(x_{t_n}, t_n); both carried forward
from t_s to one tau uniform on t_s .. upper - 1 (upper: the segment's upper edge, PCM's edge + T/M)
with fresh noise per side, z = add_noise_from(x, eps, t_s, tau), instead of the re-noising above.

The student minimises L_G through the whole of D (whose parameters receive no gradient from it);
``aux_step`` then updates D's heads on L_D with the detached fake of the same step (AdamW, lr 1e-4),
and logs D's accuracy on those micro-batches before the update (held out from it).

The paper: D initialised from the SDXL UNet on re-noised latents, real = the student's own
4-step samples, fake = its one-step prediction, a log loss (Eq. (13) names no variant; ours
defaults to the non-saturating one, as DMD2 Sec. 4.3), AdamW lr 1e-4 (Sec. 5.1). Ours by
default: a frozen timm backbone (random init unless a local weight file is given) with trainable
heads on decoded images; ``backbone="teacher"`` is the paper's feature extractor (the frozen
base network's features: a UNet's encoder, a transformer's blocks; adapters off, with the prompt's
conditioning) with trainable heads; ``disc_rank`` > 0 gives that trunk its own LoRA adapter
("disc", initialised as the teacher), trained with the heads on L_D: the paper's discriminator
initialised from the UNet and trained, as a LoRA. The student's L_G runs through D on detached
copies of D's trained weights (the heads and that adapter: ``Discriminator.forward(frozen=True)``),
so only L_D trains D.

``aux_step`` may come before or after the student's backward of L_G (an own loop's order; the
engine's is after): L_G's graph holds the copies taken when it was built, so the student's gradient
is the same either way (D as it was at ``forward``), and so is D's update (on the step's detached
fake). What differs: an L_G computed AFTER ``aux_step`` sees the updated D (heads and trunk), so
build the student's graph first to get the same gradients. Two cases keep the live trunk weights:
under gradient checkpointing the trunk's blocks are recomputed in backward with the weights of that
moment, and on FSDP2 shards no copy is taken (call ``aux_step`` after the backward there).
Decoded images are shared with other losses under ``decoded/<latent key>`` (e.g.
``decoded/student_prediction/4/8``). A trajectory-cache "real" source is not offered: the
cache (tlcm.data.trajectories) exposes only MLCD's state pairs, not the trajectory ends.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from tlcm.diffusion.milestones import StudentGrid, milestones, segment_index
from tlcm.diffusion.sampling import sample_latents, teacher_timesteps
from tlcm.errors import TLCMError
from tlcm.losses.auxiliary import AuxOptimizer, check_settings
from tlcm.losses.base import Loss, LossConfig, StepContext
from tlcm.losses.registry import register_loss
from tlcm.losses.shared import (
    CONSISTENCY_PAIR,
    consistency_pair,
    decoded,
    prediction_key,
    samples_key,
    student_prediction,
    student_samples,
)

if TYPE_CHECKING:  # timm and peft (tlcm.models.discriminator) are imported when a GAN is built
    from tlcm.models.discriminator import Discriminator

DISC_ADAPTER = "disc"
"""Name of the discriminator's LoRA adapter on the shared base (``disc_rank`` > 0)."""

CHOICES = {
    "loss_type": ("nonsaturating", "hinge"),
    "generator_loss": ("auto", "nonsaturating", "hinge", "relu"),
    "input": ("pixel", "latent"),
    "real": ("student", "teacher", "data", "consistency"),
    "tau_distribution": ("uniform", "logit_normal", "shifted"),
    "backbone": ("timm", "teacher"),
    "head": ("pooled", "patch"),
}


Logits = torch.Tensor | list[torch.Tensor]
"""D's output: one logit per sample (B,), or PCM's patch heads' logits, one (B, N_h) per head."""


def per_sample(loss: Callable[[torch.Tensor], torch.Tensor], logits: Logits) -> torch.Tensor:
    """``loss`` of D's logits per sample (B,): of the logit (B,), or, for patch logits, applied to
    every patch, averaged over each head's N_h patches, then over the heads (PCM's d_loss/g_loss)."""
    if isinstance(logits, torch.Tensor):
        return loss(logits)
    return torch.stack([loss(head).mean(1) for head in logits]).mean(0)


def pooled(logits: Logits) -> torch.Tensor:
    """D's logit per sample (B,): the mean over heads of each head's mean patch logit (the logit
    itself for (B,) logits); what the accuracies, the logged means and R1 read."""
    return per_sample(lambda x: x, logits)


def generator_loss(fake_logits: Logits, loss_type: str) -> torch.Tensor:
    """Per-sample L_G (B,) from D's logits on the fake: "nonsaturating" softplus(-D), "hinge" -D,
    "relu" relu(1 - D) (PCM's clamped hinge: no push past the margin); per patch for patch logits."""
    if loss_type == "nonsaturating":
        return per_sample(lambda d: F.softplus(-d), fake_logits)
    if loss_type == "relu":
        return per_sample(lambda d: F.relu(1 - d), fake_logits)
    return per_sample(torch.neg, fake_logits)


def discriminator_loss(real_logits: Logits, fake_logits: Logits, loss_type: str) -> torch.Tensor:
    """Per-sample L_D (B,) from D's logits on real and fake; per patch for patch logits."""
    if loss_type == "nonsaturating":
        return per_sample(lambda d: F.softplus(-d), real_logits) + per_sample(F.softplus, fake_logits)
    return per_sample(lambda d: F.relu(1 - d), real_logits) + per_sample(lambda d: F.relu(1 + d), fake_logits)


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
    """||grad_z D(z)||^2 per sample (B,) at the real inputs z (B, ...) (which must require grad),
    D(z) the logit per sample (``pooled``); differentiable (create_graph) so that it trains D."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return grad.square().flatten(1).sum(1)


def accuracies(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's accuracy (2,): the fraction of real logits > 0 and of fake logits < 0 (a logit of
    exactly 0 counts as wrong on both sides); 0-dim device values, no host sync."""
    return torch.stack([(real_logits > 0).float().mean(), (fake_logits < 0).float().mean()])


def renoise_timesteps(schedule, f: torch.Tensor, noise_level: float) -> torch.Tensor:
    """D's re-noising times tau (B,) = clean + f (noise_level - clean) on ``schedule``'s grid, for
    fractions f (B,) in [0, 1] (``noise_fraction``): on a VP schedule f's bin of width
    1 / (noise_level - clean + 1), so uniform f makes every integer tau equally likely, both ends
    included (``Schedule.uniform_timesteps``)."""
    return schedule.uniform_timesteps(f, schedule.clean_timestep, noise_level)


def noise_fraction(ctx: StepContext, b: int, distribution: str, shift: float) -> torch.Tensor:
    """f (B,) in [0, 1] of the re-noising time tau = clean + f (noise_level - clean), from the
    step's generator: "uniform" u ~ U[0, 1); "logit_normal" sigmoid(N(0, 1)) (mass in the middle);
    "shifted" s u / (1 + (s - 1) u) with s = ``shift`` (mass towards noise for s > 1; FastGen's
    "shifted", whose default s is 5)."""
    if distribution == "logit_normal":
        return torch.sigmoid(ctx.randn(b))
    u = ctx.rand(b)
    return u if distribution == "uniform" else shift * u / (1 + (shift - 1) * u)


@register_loss("gan")
@dataclass
class GANConfig(LossConfig):
    """Adversarial loss on the student's one-step prediction (frozen backbone + trainable heads)."""

    loss_type: Literal["nonsaturating", "hinge"] = "nonsaturating"
    """"nonsaturating" (the paper: softplus / log loss) or "hinge"."""
    generator_loss: Literal["auto", "nonsaturating", "hinge", "relu"] = "auto"
    """L_G: "auto" (loss_type's: softplus(-D(fake)) or -D(fake)), one of those by name, or "relu":
    relu(1 - D(fake)) (PCM's generator loss with its hinge D)."""
    input: Literal["pixel", "latent"] = "pixel"
    """What D sees: "pixel" (VAE-decoded images) or "latent" (the latents themselves)."""
    real: Literal["student", "teacher", "data", "consistency"] = "student"
    """"Real" side: the student's own q-step samples (the paper, data-free, no extra calls), the
    teacher's CFG-DDIM samples from noise in teacher_steps steps (2 x teacher_steps UNet passes), or
    "data": the latents of real images whose captions are the prompts (DMD2, LADD; needs
    data.images; one VAE encode per step, and a decode for pixel input), or "consistency" (PCM's
    adversarial consistency loss): the fake is the phase's MLCD online output at its target time,
    the real its stop-grad target, both re-noised forward within the segment (no extra network
    calls; needs an "mlcd" loss listed before the gan, and noise_level 0)."""
    teacher_steps: int = 25
    """CFG-DDIM steps of the teacher when real = "teacher"."""
    noise_level: int = 0
    """Re-noise real and fake to tau in [clean, noise_level] before D (0: clean)."""
    independent_noise: bool = False
    """Draw tau and the noise separately for the real and the fake side (DMD2, AMD's LADD, FastGen's
    default); off: one tau and noise shared by both (needs noise_level > 0)."""
    tau_distribution: Literal["uniform", "logit_normal", "shifted"] = "uniform"
    """Density of tau over [clean, noise_level]: "uniform", "logit_normal" (sigmoid of N(0, 1)) or
    "shifted" (uniform u mapped to tau_shift u / (1 + (tau_shift - 1) u): towards noise)."""
    tau_shift: float = 5.0
    """Shift of tau_distribution "shifted" (>= 1; FastGen's default 5)."""
    backbone: Literal["timm", "teacher"] = "timm"
    """"timm" (timm_model, frozen) or "teacher" (the base network's features as its model family taps
    them: a UNet's encoder, a transformer's blocks; adapters off; latent input)."""
    disc_rank: int = 0
    """Rank of the teacher-feature discriminator's own LoRA adapter on the trunk, trained with the
    heads (0: the frozen teacher trunk, heads only). On the UNet miniature, against tlcm-full's fixed
    1-step student (clean inputs, 300 updates at lr 2e-4), a rank-8 trunk separated real digits from
    its samples at 0.994 held-out accuracy where the frozen trunk reached 0.837 (docs/disc-probe.md)."""
    timm_model: str = "resnet18"
    """Any timm model name with features_only support (e.g. resnet18, convnext_tiny, efficientnet_b0)."""
    backbone_weights: str = ""
    """Local weight file (.safetensors, or .pth/.pt read with weights_only) for the timm backbone;
    empty: random init. Classifier keys are ignored; a 3-channel stem is adapted for latent input."""
    out_indices: tuple[int, ...] = (2, 3, 4)
    """Feature levels of the timm backbone that get a head (resnet: strides 8, 16, 32)."""
    input_size: int = 64
    """Resize D's inputs to this square size before the timm backbone (0: as they are); 224 suits
    ImageNet weights on real images; 64 keeps the miniature's 32 px images and 8x8 latents cheap."""
    head_channels: int = 64
    """Hidden channels of each pooled head (1x1 conv -> LeakyReLU -> 1x1 conv)."""
    head: Literal["pooled", "patch"] = "pooled"
    """D's heads: "pooled" (one 1x1 head per level, logits averaged over space and levels into one
    per sample, the loss on that) or "patch" (PCM's: ``heads_per_level`` residual conv3x3 heads per
    level, the loss on every patch logit, then averaged; tlcm.models.discriminator.PatchHeads)."""
    heads_per_level: int = 4
    """Patch heads per feature level (PCM: 4 in its SD1.5 runs, 1 for SDXL); "patch" only."""
    disc_lr: float = 1e-4
    """AdamW learning rate of the heads (the paper: 1e-4)."""
    disc_betas: tuple[float, float] = (0.0, 0.99)
    """AdamW betas of the heads (PCM: (0, 0.999); DMD2: (0.9, 0.999))."""
    disc_weight_decay: float = 0.0
    """AdamW weight decay of the heads (PCM: 1e-3; DMD2: 0.01)."""
    disc_max_grad_norm: float = 1.0
    """Gradient-norm clip of each head update (0: none; DMD2: 10)."""
    disc_steps: int = 1
    """Head updates per student step (on the same real/fake batch)."""
    r1_weight: float = 0.0
    """gamma of the R1 penalty gamma / 2 * ||grad D(real)||^2 (0: off)."""
    seed: int = 0
    """Seed of the heads', a random backbone's and the trunk LoRA's initialisation (the frozen
    backbone is not checkpointed: resume rebuilds it from this seed or backbone_weights)."""

    def adapters(self) -> dict[str, int]:
        return {DISC_ADAPTER: self.disc_rank} if self.backbone == "teacher" and self.disc_rank else {}

    def build(self, student) -> GAN:
        base = student.base
        teacher = trunk = None
        if self.backbone == "teacher":
            if self.disc_rank:
                with torch.random.fork_rng(devices=[]):  # the trunk's A from ``seed``, like the heads
                    torch.manual_seed(self.seed)
                    trunk = student.auxiliary(DISC_ADAPTER, rank=self.disc_rank)
            teacher = (base.family, base.net, student.adapters)
        return GAN(self, base.latent_shape[0], base.device, teacher=teacher, trunk=trunk)

    def data_needs(self) -> dict[str, tuple[str, str]]:
        return {"images": ('real "data"', 'use real "student"')} if self.real == "data" else {}

    def shared_reads(self) -> dict[str, str]:
        if self.real != "consistency":
            return {}
        return {CONSISTENCY_PAIR: 'an "mlcd" loss (its online output and target)'}

    def validate(self, num_train_timesteps: int, grid: StudentGrid) -> None:
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")
        if self.backbone == "teacher" and self.input != "latent":
            raise ValueError('backbone "teacher" needs input "latent" (it reads latents)')
        if self.disc_rank < 0 or (self.disc_rank and self.backbone != "teacher"):
            raise ValueError(
                f'disc_rank must be >= 0 and needs backbone "teacher" (a LoRA on the teacher trunk); '
                f"got disc_rank {self.disc_rank} with backbone {self.backbone!r}"
            )
        if self.backbone == "timm":
            import timm

            if not timm.is_model(self.timm_model):
                close = timm.list_models(f"*{self.timm_model[:6]}*")[:5]
                raise ValueError(f"timm_model {self.timm_model!r} is not a timm model (similar: {close})")
            try:  # on the meta device: checks features_only support and out_indices in milliseconds
                with torch.device("meta"):
                    timm.create_model(self.timm_model, features_only=True, out_indices=self.out_indices)
            except (RuntimeError, ValueError, IndexError, AssertionError) as err:  # TimmDiscriminator's:
                # timm's refusals (a level past a CNN's: IndexError; a ViT's: AssertionError; no
                # features_only: RuntimeError / ValueError; RuntimeError too for an op the meta device
                # cannot run); anything else (an ImportError inside timm, say) is not about the levels
                raise ValueError(
                    f"timm_model {self.timm_model!r} has no features_only levels {self.out_indices}: {err}"
                ) from err
        if self.backbone_weights and not Path(self.backbone_weights).is_file():
            raise ValueError(f"backbone_weights {self.backbone_weights} is not a file")
        if not 0 <= self.noise_level < num_train_timesteps:
            raise ValueError(f"noise_level must be in 0..{num_train_timesteps - 1}, got {self.noise_level}")
        if self.real == "consistency" and (
            self.noise_level or self.independent_noise or self.tau_distribution != "uniform"
        ):
            raise ValueError(
                'real "consistency" re-noises both sides within the consistency segment (PCM): leave '
                f"noise_level 0, independent_noise off, tau_distribution uniform (got {self.noise_level}, "
                f"{self.independent_noise}, {self.tau_distribution!r})"
            )
        if self.noise_level == 0 and (self.independent_noise or self.tau_distribution != "uniform"):
            raise ValueError(
                "independent_noise and tau_distribution re-noise D's inputs: set noise_level > 0 "
                f"(got noise_level 0 with independent_noise {self.independent_noise}, "
                f"tau_distribution {self.tau_distribution!r})"
            )
        if self.tau_shift < 1:
            raise ValueError(f"tau_shift must be >= 1, got {self.tau_shift}")
        check_settings("disc", self.disc_betas, self.disc_weight_decay, self.disc_max_grad_norm)
        if self.real == "teacher" and not 1 <= self.teacher_steps < num_train_timesteps:
            raise ValueError(
                f"teacher_steps must be in 1..{num_train_timesteps - 1}, got {self.teacher_steps}"
            )
        for name in ("teacher_steps", "disc_steps", "head_channels", "heads_per_level"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.out_indices or min(self.out_indices) < 0:
            raise ValueError(f"out_indices must be non-empty feature levels >= 0, got {self.out_indices}")
        if self.input_size < 0 or self.r1_weight < 0 or self.disc_lr <= 0:
            raise ValueError(
                f"need input_size >= 0, r1_weight >= 0, disc_lr > 0; "
                f"got {self.input_size}, {self.r1_weight}, {self.disc_lr}"
            )


class GAN(Loss):
    """The GAN component: ``forward`` returns {"gan": L_G}; ``aux_step`` trains D's heads on L_D.

    Built without a Student: ``GAN(config, latent_channels, device)`` makes a timm discriminator
    (``teacher`` = (family, network[, its AdapterSwitch]) given: the teacher-feature one, whose
    trunk runs under ``trunk``'s adapter when given: a ``tlcm.models.student.Auxiliary`` LoRA,
    trained with the heads); ``discriminator`` replaces it (any ``Discriminator``).
    ``config.disc_rank`` > 0 needs that ``trunk`` (``GANConfig.build(student)`` makes it from a tlcm
    Student): without one the trunk would silently stay frozen, so it is refused.
    """

    def __init__(
        self,
        config: GANConfig,
        latent_channels: int = 4,
        device: torch.device | str = "cpu",
        teacher: tuple | None = None,
        discriminator: Discriminator | None = None,
        trunk=None,
    ) -> None:
        super().__init__()
        if config.disc_rank and trunk is None:  # else a frozen trunk would train in its place
            raise TLCMError(
                f"GANConfig(disc_rank={config.disc_rank}) needs a trained trunk adapter (trunk=...), "
                "which GAN(...) alone does not make: build it with GANConfig.build(student) from a "
                "tlcm Student, or set disc_rank=0 for the frozen teacher trunk with trained heads"
            )
        self.config = cfg = config
        self.trunk = trunk
        if discriminator is None:
            from tlcm.models.discriminator import TeacherFeatureDiscriminator, TimmDiscriminator, make_heads

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                heads = make_heads(cfg.head, cfg.head_channels, cfg.heads_per_level)
                if teacher is not None:
                    family, net, adapters = (*teacher, None)[:3]
                    adapter = trunk.name if trunk is not None else None
                    discriminator = TeacherFeatureDiscriminator(family, net, heads, adapters, adapter)
                else:
                    discriminator = TimmDiscriminator(
                        cfg.timm_model,
                        3 if cfg.input == "pixel" else latent_channels,
                        cfg.input == "pixel",
                        tuple(cfg.out_indices),
                        cfg.input_size,
                        heads,
                        cfg.backbone_weights,
                    )
        self.discriminator = discriminator.to(device)
        self.optimizer = AuxOptimizer(
            list(discriminator.heads.parameters()) + (trunk.parameters() if trunk is not None else []),
            lr=cfg.disc_lr,
            betas=cfg.disc_betas,
            max_grad_norm=cfg.disc_max_grad_norm,
            weight_decay=cfg.disc_weight_decay,
        )

    def _latents(self, ctx: StepContext) -> tuple[torch.Tensor, str, torch.Tensor, str]:
        """(real (B, C, h, w) detached, its shared key, fake x0 with gradients, its shared key)."""
        cfg = self.config
        if cfg.real == "consistency":
            pair = consistency_pair(ctx)
            return pair.target.detach(), "consistency/target", pair.online, "consistency/online"
        fake, fake_key = student_prediction(ctx).x0, prediction_key(ctx)
        if cfg.real == "student":
            return student_samples(ctx), samples_key(ctx), fake, fake_key
        if cfg.real == "data":
            return ctx.real_latents(), "real_latents", fake, fake_key

        def teacher_samples() -> torch.Tensor:
            grid = teacher_timesteps(cfg.teacher_steps, ctx.schedule)
            noise = ctx.randn(ctx.batch_size, *ctx.latent_shape)
            return sample_latents(
                ctx.teacher, ctx.schedule, ctx.cond, noise, grid, 0.0, generator=ctx.generator
            )

        key = f"teacher_samples/{cfg.teacher_steps}"
        return ctx.shared(key, teacher_samples), key, fake, fake_key

    def inputs(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """D's inputs of this step, once per step: real (B, ...) detached, fake (B, ...) with
        gradients to the student (images (B, 3, H, W) for pixel input), and their times tau_real,
        tau_fake (B,) (the same tensor unless independent_noise)."""
        cfg = self.config

        def compute():
            real, real_key, fake, fake_key = self._latents(ctx)
            schedule, b, clean = ctx.schedule, ctx.batch_size, ctx.schedule.clean_timestep

            def draw() -> tuple[torch.Tensor, torch.Tensor]:  # (tau (B,), noise like real)
                f = noise_fraction(ctx, b, cfg.tau_distribution, cfg.tau_shift)
                return renoise_timesteps(schedule, f, cfg.noise_level), ctx.randn(*real.shape)

            tau_real = tau_fake = schedule.discretize(torch.full((b,), float(clean), device=ctx.device))
            if cfg.real == "consistency":
                real, fake, tau_real = self._within_segment(ctx, real, fake)
                tau_fake = tau_real
                real_key, fake_key = f"gan/real/{real_key}", f"gan/fake/{fake_key}"
            elif cfg.noise_level > 0:
                tau_fake, noise_fake = draw()  # the shared draw: the fake side's when independent
                tau_real, noise_real = draw() if cfg.independent_noise else (tau_fake, noise_fake)
                real = schedule.add_noise(real, noise_real, tau_real)
                fake = schedule.add_noise(fake, noise_fake, tau_fake)
                tag = f"{cfg.noise_level}" + self._noise_tag()
                real_key, fake_key = f"gan/real/{real_key}/{tag}", f"gan/fake/{fake_key}/{tag}"
            if cfg.input == "pixel":
                fake = decoded(ctx, fake_key, fake)
                with torch.no_grad():
                    real = decoded(ctx, real_key, real)
            return real.detach(), fake, tau_real, tau_fake

        key = f"gan/{cfg.input}/{cfg.real}/{prediction_key(ctx)}/{cfg.noise_level}{self._noise_tag()}"
        return ctx.shared(key, compute)

    @staticmethod
    def _within_segment(ctx: StepContext, real: torch.Tensor, fake: torch.Tensor):
        """PCM's re-noising of real = "consistency" (its ``noise_travel``): both sides (B, C, h, w),
        at the pair's t_s, carried forward to one tau (B,) uniform on t_s .. upper - 1 (upper the
        upper edge of t_m's segment; PCM: randint(edge, edge + T / M)) with fresh noise per side.
        Returns (real, fake, tau)."""
        schedule, pair = ctx.schedule, consistency_pair(ctx)
        edges = milestones(pair.segments, schedule, ctx.device)
        upper = edges[segment_index(pair.t_m, edges) + 1]
        hi = upper - 1 if schedule.discrete else upper
        tau = schedule.uniform_timesteps(ctx.rand(ctx.batch_size), pair.t_s, hi)
        real = schedule.add_noise_from(real, ctx.randn(*real.shape), pair.t_s, tau)
        return real, schedule.add_noise_from(fake, ctx.randn(*fake.shape), pair.t_s, tau), tau

    def _noise_tag(self) -> str:
        """The re-noising options beyond noise_level in shared-work keys ("" for the defaults)."""
        cfg = self.config
        tag = "/independent" if cfg.independent_noise else ""
        if cfg.tau_distribution == "shifted":
            return f"{tag}/shifted{cfg.tau_shift:g}"
        return tag if cfg.tau_distribution == "uniform" else f"{tag}/{cfg.tau_distribution}"

    def forward(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        cfg = self.config
        _, fake, _, tau_fake = self.inputs(ctx)
        logits = self.discriminator(fake, tau_fake, ctx.cond, frozen=True)
        kind = cfg.loss_type if cfg.generator_loss == "auto" else cfg.generator_loss
        return {"gan": generator_loss(logits, kind).mean()}

    def _disc_loss(self, ctx: StepContext, stats: list[torch.Tensor]) -> torch.Tensor:
        """L_D (+ R1) of one micro-batch on its detached real / fake; appends the logged values
        (L_D, mean logits real / fake, R1, accuracy real / fake)."""
        cfg = self.config
        real, fake, tau_real, tau_fake = self.inputs(ctx)
        z_real = real.detach().float().requires_grad_(cfg.r1_weight > 0)
        with sdpa_kernel(SDPBackend.MATH) if cfg.r1_weight > 0 else nullcontext():
            real_logits = self.discriminator(z_real, tau_real, ctx.cond)  # MATH: double backward for R1
        fake_logits = self.discriminator(fake.detach().float(), tau_fake, ctx.cond)
        loss = discriminator_loss(real_logits, fake_logits, cfg.loss_type).mean()
        real_d, fake_d = pooled(real_logits), pooled(fake_logits)
        r1 = r1_penalty(real_d, z_real).mean() if cfg.r1_weight > 0 else torch.zeros_like(loss)
        values = [loss, real_d.mean(), fake_d.mean(), r1, *accuracies(real_d, fake_d)]
        stats.append(torch.stack(values).detach().float())
        return loss + cfg.r1_weight / 2 * r1

    def aux_step(self, contexts: list[StepContext]) -> dict[str, torch.Tensor]:
        """``disc_steps`` updates of D's heads, each on every micro-batch's real / fake. Logged,
        averaged over micro-batches: L_D, mean logits and R1 of the last update; D's accuracy
        (gan/d_acc_real, gan/d_acc_fake) from the first, i.e. before D has trained on them."""
        stats: list[torch.Tensor] = []
        held_out = None
        for _ in range(self.config.disc_steps):
            stats.clear()
            self.optimizer.step(lambda ctx: self._disc_loss(ctx, stats), contexts)
            if held_out is None:  # logits of the heads before this step's first update
                held_out = torch.stack(stats).mean(0)[4:]
        values = torch.stack(stats).mean(0)  # the last update's, averaged over micro-batches
        names = ("gan/d_loss", "gan/d_real", "gan/d_fake", "gan/r1")[: 4 if self.config.r1_weight > 0 else 3]
        metrics = dict(zip(names, values, strict=False))
        return {**metrics, "gan/d_acc_real": held_out[0], "gan/d_acc_fake": held_out[1]}

    def checkpoint_state(self) -> dict[str, Any]:
        """The heads, the trunk's LoRA (``disc_rank``) and their optimizer (a frozen backbone is
        rebuilt from the config)."""
        state = {"heads": self.discriminator.heads.state_dict(), "optimizer": self.optimizer.state_dict()}
        return {**state, "trunk": self.trunk.state_dict()} if self.trunk is not None else state

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.discriminator.heads.load_state_dict(state["heads"])
        if self.trunk is not None:
            self.trunk.load_state_dict(state["trunk"])
        self.optimizer.load_state_dict(state["optimizer"])
