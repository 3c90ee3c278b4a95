"""Noise schedules: one abstraction, x_t = alpha(t) * x0 + sigma(t) * eps, for VP and flow models.

Losses, solvers and samplers speak only in terms of ``Schedule``; the two implementations are

- ``VPSchedule`` (SD1.5, SDXL): integer timesteps 0..T-1, alpha = sqrt(alphas_cumprod[t]),
  sigma = sqrt(1 - alphas_cumprod[t]); alphas_cumprod come from diffusers' own beta schedules.
  The extra timestep t = -1 is the clean-data boundary (alpha = 1, sigma = 0), diffusers'
  ``set_alpha_to_one``: a step "to -1" lands exactly on x0_hat.
- ``FlowSchedule`` (SD3, FLUX): rectified flow (SD3, arXiv 2403.03206 Sec. 3),
  x_t = (1 - sigma) x0 + sigma eps, float timesteps
  t in [0, T] with sigma = t / T (t = 0 is clean data); the model predicts v = eps - x0.

Every function takes per-sample timesteps t of shape (B,) (or a 0-dim tensor for the whole batch)
and latents x of any rank (B, ...), e.g. (B, C, H, W) or FLUX's packed (B, N, D).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch

from tlcm.errors import TLCMError

VP_PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
FLOW_PREDICTION_TYPE = "flow_prediction"


def expand_like(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) or () coefficients -> (B, 1, ..., 1) with ``like``'s rank and dtype."""
    return coef.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


class Schedule(ABC):
    """x_t = alpha(t) x0 + sigma(t) eps, plus the model-output conversions of one prediction type.

    Attributes: ``num_train_timesteps`` (T), ``prediction_type``, ``max_timestep`` (pure noise
    end), ``clean_timestep`` (alpha = 1, sigma = 0), ``discrete`` (integer timesteps).
    """

    num_train_timesteps: int
    prediction_type: str
    discrete: bool
    inference_offset: int
    """What the few-step sampler subtracts from a milestone: 1 (VP: the authors' t_k - 1, so the top
    step is T - 1), 0 (flow: sigma = k / M, shifted, as TLCMFlowScheduler)."""

    @property
    @abstractmethod
    def max_timestep(self) -> float:
        """The noisiest timestep: T - 1 (VP) or T (flow)."""

    @property
    @abstractmethod
    def clean_timestep(self) -> float:
        """The timestep of clean data: -1 (VP boundary) or 0 (flow)."""

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Signal scale, (B,) timesteps -> (B,) float32."""

    @abstractmethod
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise scale, (B,) timesteps -> (B,) float32."""

    @abstractmethod
    def to_x0(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Clean-latent prediction x0_hat (B, ...) from the raw model output at (x_t, t)."""

    @abstractmethod
    def to_eps(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Noise prediction eps_hat (B, ...) from the raw model output at (x_t, t)."""

    @abstractmethod
    def model_output_from(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The model output (B, ...) that a perfect model gives at x_t = add_noise(x0, eps, t)."""

    @abstractmethod
    def to(self, device: torch.device | str) -> Schedule:
        """A copy whose tables live on ``device``."""

    @abstractmethod
    def timestep_at(self, fraction: torch.Tensor) -> torch.Tensor:
        """The timestep a fraction f in [0, 1] of the way from clean to noise (milestone k / M):
        round(f T) long (VP), T shift(f) float (flow). (K,) float64 -> (K,)."""

    @property
    def timestep_dtype(self) -> torch.dtype:
        """dtype of this schedule's timesteps: long (VP), float32 (flow)."""
        return torch.long if self.discrete else torch.float32

    def discretize(self, t: torch.Tensor) -> torch.Tensor:
        """Snap real-valued timesteps onto the schedule's grid: round to long (VP), float (flow)."""
        return t.round().long() if self.discrete else t.float()

    def uniform_timesteps(self, u: torch.Tensor, lo, hi) -> torch.Tensor:
        """Timesteps (B,) uniform on [lo, hi] from u ~ U[0, 1) (B,), in float64: on a discrete
        schedule every integer of lo..hi equally likely, both ends included (long); on a continuous
        one real-valued (float32). ``lo`` / ``hi``: numbers or (B,) tensors (TCD's target time s in
        [t_s, t_n], ADD's re-noising t)."""
        u = u.double()
        lo, hi = (v.double() if isinstance(v, torch.Tensor) else float(v) for v in (lo, hi))
        span = hi - lo  # numbers stay numbers: no host-to-device copy
        offset = (u * (span + 1)).floor().clamp(max=span) if self.discrete else u * span
        return self.discretize(lo + offset)

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward process q(x_t | x0): x_t = alpha(t) x0 + sigma(t) eps, all (B, ...)."""
        return expand_like(self.alpha(t), x0) * x0 + expand_like(self.sigma(t), x0) * eps

    def add_noise_from(
        self, x_s: torch.Tensor, eps: torch.Tensor, s: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """Forward process from a noisy state, q(x_t | x_s) for t >= s (B,): x_t = a x_s + std eps
        with a = alpha(t) / alpha(s), std = sqrt(sigma(t)^2 - a^2 sigma(s)^2), so that x_s =
        add_noise(x0, ., s) gives x_t the marginal of add_noise(x0, ., t) (VP: a^2 = abar_t / abar_s,
        std^2 = 1 - a^2, PCM's ``noise_travel``); s = clean is ``add_noise``. All (B, ...)."""
        a = self.alpha(t) / self.alpha(s)
        std = (self.sigma(t).square() - (a * self.sigma(s)).square()).clamp(min=0).sqrt()
        return expand_like(a, x_s) * x_s + expand_like(std, x_s) * eps


class VPSchedule(Schedule):
    """Variance-preserving DDPM schedule: alpha(t)^2 + sigma(t)^2 = 1, timesteps -1..T-1 (long).

    alphas_cumprod: (T,) from diffusers; t = -1 is the clean boundary (alpha = 1, sigma = 0).
    Conversions (DDIM, arXiv 2010.02502 eq. 9; progressive distillation, Salimans & Ho 2022,
    arXiv 2202.00512, for v = alpha eps - sigma x0):
    epsilon: x0 = (x_t - sigma eps) / alpha; v_prediction: x0 = alpha x_t - sigma v;
    sample: x0 = model output.
    """

    discrete = True
    inference_offset = 1

    def __init__(self, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon") -> None:
        if prediction_type not in VP_PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {VP_PREDICTION_TYPES}, got {prediction_type!r}")
        self.alphas_cumprod = alphas_cumprod.float()
        self.num_train_timesteps = alphas_cumprod.shape[0]
        self.prediction_type = prediction_type
        with_clean = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod]).double()
        self._alpha = with_clean.sqrt().float()
        self._sigma = (1.0 - with_clean).sqrt().float()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> VPSchedule:
        """Build from a diffusers scheduler config (DDIM, PNDM, Euler, LCM, TLCM, ...; dict or FrozenDict).

        The betas come from ``DDPMScheduler`` (beta_start/end, beta_schedule, trained_betas,
        rescale_betas_zero_snr); keys that DDPMScheduler does not take are ignored. A flow config
        (``is_flow_config``: a FlowMatch* scheduler, shift / use_dynamic_shifting, flow sigmas) is
        refused: read as DDPM betas it would give a VP schedule the model was not trained on.
        """
        from diffusers import DDPMScheduler  # here: the recipe tree imports this module, --help too

        if is_flow_config(config):
            name = config.get("_class_name") or "a scheduler config"
            raise TLCMError(
                f"VPSchedule.from_config: {name} is a flow-matching scheduler (SD3 / FLUX family), "
                "not a DDPM one; use FlowSchedule.from_config (or schedule_from_config, which picks)"
            )
        keys = inspect.signature(DDPMScheduler.__init__).parameters
        ddpm = DDPMScheduler.from_config({k: v for k, v in config.items() if k in keys})
        return cls(ddpm.alphas_cumprod, config.get("prediction_type", "epsilon"))

    @property
    def max_timestep(self) -> int:
        return self.num_train_timesteps - 1

    def timestep_at(self, fraction: torch.Tensor) -> torch.Tensor:
        return (fraction * self.num_train_timesteps).round().long()

    @property
    def clean_timestep(self) -> int:
        return -1

    def _lookup(self, table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return table.to(t.device)[t.long() + 1]

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """sqrt(alphas_cumprod[t]) for long t in -1..T-1, (B,) -> (B,)."""
        return self._lookup(self._alpha, t)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """sqrt(1 - alphas_cumprod[t]) for long t in -1..T-1, (B,) -> (B,)."""
        return self._lookup(self._sigma, t)

    def to_x0(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = expand_like(self.alpha(t), x_t), expand_like(self.sigma(t), x_t)
        if self.prediction_type == "epsilon":
            return (x_t - s * model_output) / a
        if self.prediction_type == "v_prediction":
            return a * x_t - s * model_output
        return model_output

    def to_eps(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = expand_like(self.alpha(t), x_t), expand_like(self.sigma(t), x_t)
        if self.prediction_type == "epsilon":
            return model_output
        if self.prediction_type == "v_prediction":
            return s * x_t + a * model_output
        return (x_t - a * model_output) / s

    def model_output_from(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            return eps
        if self.prediction_type == "v_prediction":
            return expand_like(self.alpha(t), x0) * eps - expand_like(self.sigma(t), x0) * x0
        return x0

    def to(self, device: torch.device | str) -> VPSchedule:
        return VPSchedule(self.alphas_cumprod.to(device), self.prediction_type)


class FlowSchedule(Schedule):
    """Rectified-flow schedule (SD3/FLUX): x_t = (1 - sigma) x0 + sigma eps, v = eps - x0.

    Timesteps are floats in [0, T] and always map linearly, sigma = t / T (diffusers' flow
    pipelines feed the transformer t = sigma * T). ``shift`` does not change that map; it warps
    the choice of sigmas (``shift_sigmas``), as ``FlowMatchEulerDiscreteScheduler`` does.
    Conversions: x0 = x_t - sigma v, eps = x_t + (1 - sigma) v.
    """

    discrete = False
    inference_offset = 0
    prediction_type = FLOW_PREDICTION_TYPE

    def __init__(self, num_train_timesteps: int = 1000, shift: float = 1.0) -> None:
        self.num_train_timesteps = num_train_timesteps
        self.shift = shift

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FlowSchedule:
        """Build from a ``FlowMatchEulerDiscreteScheduler`` config (or a flow-sigma UniPC/DPM config).

        With ``use_dynamic_shifting`` the shift depends on the image size and is chosen at inference
        (``mu``); the schedule then keeps shift = 1.
        """
        shift = (
            1.0 if config.get("use_dynamic_shifting") else config.get("shift", config.get("flow_shift", 1.0))
        )
        return cls(config.get("num_train_timesteps", 1000), float(shift))

    @property
    def max_timestep(self) -> float:
        return float(self.num_train_timesteps)

    @property
    def clean_timestep(self) -> float:
        return 0.0

    def timestep_at(self, fraction: torch.Tensor) -> torch.Tensor:
        """T shift(f): the milestones (and the student's sampling grid) are shifted like the sigmas of
        TLCMFlowScheduler / FlowMatchEulerDiscreteScheduler, so training and sampling share them."""
        return (self.shift_sigmas(fraction) * self.num_train_timesteps).float()

    def shift_sigmas(self, sigmas: torch.Tensor) -> torch.Tensor:
        """Static timestep shift (SD3, Esser et al. 2024, arXiv 2403.03206 Sec. 5.3.2, eq. 23 with
        alpha = shift): sigma' = shift sigma / (1 + (shift - 1) sigma)."""
        return self.shift * sigmas / (1 + (self.shift - 1) * sigmas)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """1 - t / T, (B,) -> (B,)."""
        return 1.0 - self.sigma(t)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """t / T, (B,) -> (B,)."""
        return t.float() / self.num_train_timesteps

    def to_x0(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x_t - expand_like(self.sigma(t), x_t) * model_output

    def to_eps(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x_t + expand_like(self.alpha(t), x_t) * model_output

    def model_output_from(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return eps - x0

    def to(self, device: torch.device | str) -> FlowSchedule:
        return self


def schedule_from_config(config: Mapping[str, Any]) -> Schedule:
    """VP or flow schedule from a diffusers scheduler config (dict or FrozenDict).

    Flow when the class is a FlowMatch* / TLCMFlowScheduler, when ``prediction_type`` is
    "flow_prediction" or ``use_flow_sigmas`` is set (UniPC/DPM in flow mode), or when the config
    has a ``shift`` but no betas; VP otherwise.
    """
    return FlowSchedule.from_config(config) if is_flow_config(config) else VPSchedule.from_config(config)


def is_flow_config(config: Mapping[str, Any]) -> bool:
    """Whether a diffusers scheduler config is a flow-matching one (``schedule_from_config``'s
    rule): a FlowMatch* / TLCMFlowScheduler class, ``prediction_type`` "flow_prediction",
    ``use_flow_sigmas`` or ``use_dynamic_shifting`` set, or a ``shift`` without betas."""
    name = str(config.get("_class_name", ""))
    return (
        name.startswith("FlowMatch")
        or name == "TLCMFlowScheduler"
        or config.get("prediction_type") == FLOW_PREDICTION_TYPE
        or bool(config.get("use_flow_sigmas"))
        or bool(config.get("use_dynamic_shifting"))
        or ("shift" in config and "beta_schedule" not in config)
    )
