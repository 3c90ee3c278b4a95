"""Preference learning after stage 2 (docs/method.md "The bag of techniques" 2; arXiv 2406.05768
Sec. 4.3 "MPS optimization", Eq. (11)), two modes:

"dpo" - Diffusion-DPO (Wallace et al. 2023, arXiv 2311.12908, eq. 14) adapted to a data-free
student: per prompt two candidates x^a, x^b = q-step samples of the CURRENT student (different
noise), ranked by the reward into winner x^w and loser x^l; with one t ~ U[0, T) and one eps,

    e_*(x) = || target(x, eps, t) - out_*(a_t x + s_t eps, t, c) ||^2   (per-sample mean)
    L_DPO  = -log sigmoid( -beta / 2 * [ (e_theta(x^w) - e_theta(x^l)) - (e_ref(x^w) - e_ref(x^l)) ] )

(eq. 14 with T omega(lambda_t) folded into beta; eq. 14 has no 1/2, the -0.5 is ours)

where target is the model's own training target (eps, v or flow velocity) and ref is the frozen
student at the start of the phase (a copy of its trainable weights only).

"reward" - the paper's reward feedback (ReFL-style, gradients through the decoded image into the
student's one-step prediction x0_hat, shared with DMD/GAN):

    L_R = max(s0 - r(x0_hat, c), 0) + lambda_neg * max(r(x0_hat, c_neg) - s_neg, 0)
    (Eq. (11) exactly when s_neg = 0 and lambda_neg = 1)

with c_neg an unrelated prompt (the reward's ``unrelated``; the paper: s0 = 16 on MPS, s_neg = 0).
s0 and s_neg left unset (None) are the reward's own (``Reward.s0`` / ``Reward.s_neg``: the paper's
16 / 0 by default, log-probabilities for the miniature's digit reward), so the default config
trains on the default reward's scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from tlcm.diffusion.denoiser import Denoiser
from tlcm.diffusion.milestones import StudentGrid
from tlcm.errors import TLCMError
from tlcm.losses.base import Loss, LossConfig, StepContext
from tlcm.losses.registry import register_loss
from tlcm.losses.shared import decoded, decoded_prediction, samples_key, student_samples
from tlcm.rewards import REWARDS, Reward, RewardSpec, build_reward

METRICS = "preference/metrics"
"""The ``StepContext.shared`` key of a micro-batch's reward statistics (read by ``aux_step``)."""


def dpo_loss(err_w, err_l, ref_err_w, ref_err_l, beta: float) -> torch.Tensor:
    """Per-sample Diffusion-DPO loss (B,) from per-sample denoising errors (B,) of the model and
    the reference on the winners and losers."""
    return -F.logsigmoid(-0.5 * beta * ((err_w - err_l) - (ref_err_w - ref_err_l)))


REWARD_FILES = {
    "clip": ("clip_folder",),
    "pickscore": ("clip_folder",),
    "aesthetic": ("clip_folder", "head_file"),
}
"""The built-in rewards' weight paths, checked with the recipe (a missing PickScore folder found
when the preference phase starts costs the MLCD and LCD phases before it)."""
UNRELATED_POOL = 8
"""Prompts drawn from the run's to pad a micro-batch without two different prompts."""


def unrelated_prompts(reward: Reward, prompts: list[str], pool, generator: torch.Generator) -> list[str]:
    """The unrelated prompt c_neg of each of ``prompts`` (B,): ``reward.unrelated`` of the
    micro-batch; when it holds no two different prompts (a micro-batch of 1: the default
    ``shifted_prompts`` would pair each prompt with itself, and the hinge relu(s0 - r) + relu(r -
    s_neg) would then train nothing, or lower r), of the micro-batch padded with UNRELATED_POOL
    prompts drawn from ``pool`` (the run's prompts; ``generator``: the host's), first B kept."""
    if len(set(prompts)) > 1 or len(set(pool)) < 2:
        return reward.unrelated(prompts, generator)
    picks = torch.randint(len(pool), (UNRELATED_POOL,), generator=generator, device=generator.device)
    padded = [*prompts, *(pool[i] for i in picks.tolist())]
    return reward.unrelated(padded, generator)[: len(prompts)]


def reward_hinge(r_pos, r_neg, s0: float, s_neg: float = 0.0, negative_weight: float = 1.0) -> torch.Tensor:
    """Per-sample reward-feedback hinge (B,): relu(s0 - r_pos) + negative_weight * relu(r_neg - s_neg)."""
    return F.relu(s0 - r_pos) + negative_weight * F.relu(r_neg - s_neg)


@register_loss("preference")
@dataclass
class PreferenceConfig(LossConfig):
    """Preference learning: Diffusion-DPO on reward-ranked student pairs, or reward feedback."""

    mode: Literal["dpo", "reward"] = "dpo"
    """"dpo" (Diffusion-DPO against the phase-start student) or "reward" (the paper's hinge)."""
    reward: str = "digit"
    """Reward model: "digit" (miniature), "clip", "pickscore", "aesthetic" (see tlcm.rewards)."""
    clip_folder: str = ""
    """Local transformers CLIP folder for the clip / pickscore / aesthetic rewards."""
    head_file: str = ""
    """Aesthetic MLP head weights (safetensors, or a pickle loaded with weights_only=True)."""
    beta: float = 2000.0
    """DPO beta (Diffusion-DPO Sec. 5.1: beta in [2000, 5000]; 2000 for SD1.5, 5000 for SDXL)."""
    s0: float | None = None
    """Hinge threshold on the prompt's reward; None: the reward's own (``Reward.s0``: the paper's
    16 on MPS's scale (Sec. 5.1) for CLIP-family rewards, log 0.99 for "digit")."""
    s_neg: float | None = None
    """Hinge threshold on the unrelated prompt's reward; None: the reward's own (``Reward.s_neg``:
    the paper's 0 for CLIP-family rewards, log 0.01 for "digit")."""
    negative_weight: float = 1.0
    """lambda_neg: weight of the unrelated-prompt hinge (dropped for a reward that reads no prompt,
    ``Reward.reads_prompts`` False: the aesthetic head, where it cancelled the first hinge)."""

    def build(self, student) -> Preference:
        spec = RewardSpec(self.clip_folder, self.head_file)
        reward = build_reward(self.reward, spec, student.base.device)
        if self.mode != "dpo":
            return Preference(self, reward)
        frozen = {n: p.detach().clone() for n, p in student.trainable_parameters().items()}
        return Preference.with_reference_weights(
            self, reward, student.net, frozen, student.base.family, counter=student.base
        )

    def validate(self, num_train_timesteps: int, grid: StudentGrid) -> None:
        for field in REWARD_FILES.get(self.reward, ()):  # before training, not when the phase starts
            value = getattr(self, field)
            if not value:
                raise ValueError(f"{field} is unset: the {self.reward!r} reward needs a local path")
            folder = field == "clip_folder"
            if not ((Path(value) / "config.json").is_file() if folder else Path(value).is_file()):
                what = "no config.json there (a local transformers CLIP folder)" if folder else "not a file"
                raise ValueError(f"{field} {value}: {what}")
        if self.mode not in ("dpo", "reward"):
            raise ValueError(f'mode must be "dpo" or "reward", got {self.mode!r}')
        if self.reward not in REWARDS:
            raise ValueError(f"unknown reward {self.reward!r}; known: {', '.join(sorted(REWARDS))}")
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")


class Preference(Loss):
    """The preference component: returns {"preference": loss}. ``reference`` (dpo only) is the
    frozen denoiser the DPO objective compares against; ``reference_weights`` (name -> tensor),
    when the reference is a module called with them (``with_reference_weights``: the engine's
    case, the student's trainable weights at the phase start), are checkpoint state, so a resumed
    run compares against the same reference as an uninterrupted one."""

    def __init__(
        self,
        config: PreferenceConfig,
        reward: Reward,
        reference: Denoiser | None = None,
        reference_weights: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if config.mode == "dpo" and reference is None:
            raise ValueError("DPO mode needs a frozen reference denoiser")
        self.config, self.reward, self.reference = config, reward, reference
        self.reference_weights = reference_weights or {}

    @classmethod
    def with_reference_weights(
        cls,
        config: PreferenceConfig,
        reward: Reward,
        module: torch.nn.Module,
        weights: dict[str, torch.Tensor],
        family=None,
        counter=None,
    ) -> Preference:
        """DPO against ``module`` called with ``weights`` in place of its own (one copy of the
        trainable weights, not of the module); ``family`` says how to call it (default a UNet);
        ``counter`` (the BaseModel) counts its calls in ``evaluations``."""
        from tlcm.models.functional import functional_denoiser  # late: the recipe tree imports this

        return cls(config, reward, functional_denoiser(module, weights, family, counter), weights)

    def thresholds(self) -> tuple[float, float]:
        """The hinge's (s0, s_neg): the config's, or the reward's own where the config leaves None."""
        cfg = self.config
        s0 = self.reward.s0 if cfg.s0 is None else cfg.s0
        return s0, self.reward.s_neg if cfg.s_neg is None else cfg.s_neg

    def forward(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        """{"preference": the mean loss}. Without one prompt per sample (``StepContext.standalone``
        takes prompts as optional) a reward that reads no text still works; one that reads it fails
        inside, and that failure is re-raised as a one-line TLCMError saying to pass prompts=[...]."""
        try:
            loss = self._dpo(ctx) if self.config.mode == "dpo" else self._hinge(ctx)
        except torch.OutOfMemoryError:  # a RuntimeError, but not one that missing prompts cause
            raise
        except (RuntimeError, ValueError, IndexError, ZeroDivisionError) as err:
            # what code that reads one prompt per sample raises on none: stacking or broadcasting
            # per-prompt values against the batch (RuntimeError), a tokenizer, zip(strict=True) or
            # max() of nothing (ValueError), prompts[i] (IndexError), a mean over len(prompts)
            if len(ctx.prompts) == ctx.batch_size:
                raise
            cause = (str(err).strip().splitlines() or [""])[0]
            raise TLCMError(
                f"preference: the {type(self.reward).__name__} failed with {len(ctx.prompts)} prompts for "
                f"a batch of {ctx.batch_size} ({type(err).__name__}: {cause}): rewards read the text, "
                "pass prompts=[...] (one per row of cond) to StepContext.standalone"
            ) from err
        return {"preference": loss.mean()}

    def _hinge(self, ctx: StepContext) -> torch.Tensor:
        cfg = self.config
        s0, s_neg = self.thresholds()
        features = self.reward.embed(decoded_prediction(ctx))  # the image tower, once
        r_pos = self.reward.score(features, ctx.prompts)
        metrics = {"preference/reward": r_pos.detach().mean()}
        if not self.reward.reads_prompts:  # r(x, c_neg) = r(x, c): the second hinge would cancel the first
            ctx.shared(METRICS, lambda: metrics)
            return reward_hinge(r_pos, r_pos, s0, s_neg, negative_weight=0.0)
        unrelated = unrelated_prompts(self.reward, ctx.prompts, ctx.phase.all_prompts, ctx.host_generator)
        r_neg = self.reward.score(features, unrelated)
        metrics["preference/reward_neg"] = r_neg.detach().mean()
        ctx.shared(METRICS, lambda: metrics)
        return reward_hinge(r_pos, r_neg, s0, s_neg, cfg.negative_weight)

    def _dpo(self, ctx: StepContext) -> torch.Tensor:
        cfg, schedule = self.config, ctx.schedule
        x_a, x_b = student_samples(ctx, draw=0), student_samples(ctx, draw=1)
        with torch.no_grad():
            r_a = self.reward(decoded(ctx, samples_key(ctx, 0), x_a), ctx.prompts)
            r_b = self.reward(decoded(ctx, samples_key(ctx, 1), x_b), ctx.prompts)
        a_wins = (r_a >= r_b).view(-1, 1, 1, 1)
        x_w, x_l = torch.where(a_wins, x_a, x_b), torch.where(a_wins, x_b, x_a)
        b = ctx.batch_size
        t = schedule.uniform_timesteps(ctx.rand(b), 0, schedule.max_timestep).repeat(2)  # t ~ U(0, T)
        x0, eps = torch.cat([x_w, x_l]), ctx.randn(*x_a.shape).repeat(2, 1, 1, 1)
        x_t, target = schedule.add_noise(x0, eps, t), schedule.model_output_from(x0, eps, t)
        cond = ctx.cond.repeat(2)
        err = (ctx.student(x_t, t, cond) - target).square().flatten(1).mean(1)
        with torch.no_grad():
            ref = (self.reference(x_t, t, cond) - target).square().flatten(1).mean(1)
        ctx.shared(METRICS, lambda: {"preference/reward_gap": (r_a - r_b).abs().mean()})
        return dpo_loss(err[:b], err[b:], ref[:b], ref[b:], cfg.beta)

    def aux_step(self, contexts: list[StepContext]) -> dict[str, torch.Tensor]:
        """Nothing to train; reports the step's reward statistics (mean over micro-batches)."""
        stats = [s for s in (ctx.computed(METRICS, None) for ctx in contexts) if s is not None]
        return {k: torch.stack([s[k] for s in stats]).mean() for k in stats[0]} if stats else {}

    def checkpoint_state(self) -> dict[str, Any]:
        """The DPO reference weights (the reward model is rebuilt from its files)."""
        return {"reference": self.reference_weights}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        saved = state.get("reference", {})
        if saved.keys() != self.reference_weights.keys():
            raise ValueError("the checkpoint's DPO reference does not match this student's weights")
        with torch.no_grad():
            for name, value in saved.items():
                self.reference_weights[name].copy_(value)
