"""TLCM few-step schedulers for plain diffusers pipelines (docs/method.md, "Inference").

``TLCMScheduler`` (SD1.5/SDXL, VP) and ``TLCMFlowScheduler`` (SD3/FLUX, flow matching) run the
distilled student with no CFG, one model call per step, at a milestone subset of timesteps:

    pipe.scheduler = TLCMScheduler.from_config(pipe.scheduler.config)
    pipe(prompt, num_inference_steps=4, guidance_scale=0)   # timesteps [999, 749, 499, 124]

Each step predicts x0 (``Schedule.to_x0``) and moves to the next timestep with ``tlcm_step``
(gamma = 1: fresh noise as LCMScheduler and the authors' inference.py, the multistep sampling of
Consistency Models, arXiv 2303.01469 Alg. 1; 0: DDIM, arXiv 2010.02502 eq. 12 with sigma_t = 0;
between: TCD's strategic stochastic sampling, arXiv 2402.19159); the last step returns x0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from tlcm.diffusion.milestones import inference_milestone_indices, inference_timesteps
from tlcm.diffusion.schedule import FlowSchedule, Schedule, VPSchedule
from tlcm.diffusion.solvers import tlcm_step


@dataclass
class TLCMSchedulerOutput(BaseOutput):
    """Output of ``step``: prev_sample (B, ...) is the next input, denoised (B, ...) is x0_hat."""

    prev_sample: torch.Tensor
    denoised: torch.Tensor


class _TLCMSchedulerBase(SchedulerMixin, ConfigMixin):
    """The diffusers plumbing shared by the VP and flow schedulers (step counter, step, noising)."""

    order = 1
    init_noise_sigma = 1.0
    schedule: Schedule
    timesteps: torch.Tensor
    num_inference_steps: int | None

    def _init_state(self, gamma: float, first_gamma: float | None) -> None:
        for name, value in (("gamma", gamma), ("first_gamma", first_gamma)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.num_inference_steps = None
        self._step_index: int | None = None
        self._begin_index: int | None = None

    @property
    def step_index(self) -> int | None:
        """Index of the current timestep in ``timesteps``; advances by one per ``step``."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """First step index, set by pipelines (img2img, denoising_end) via ``set_begin_index``."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start stepping at ``timesteps[begin_index]`` (diffusers' pipeline hook)."""
        self._begin_index = begin_index

    def index_for_timestep(self, timestep: float | torch.Tensor) -> int:
        """Position of ``timestep`` in ``timesteps`` (the second match if repeated, as diffusers)."""
        indices = (self.timesteps == torch.as_tensor(timestep, device=self.timesteps.device)).nonzero()
        if len(indices) == 0:
            raise ValueError(
                f"timestep {timestep} is not in the scheduler's timesteps {self.timesteps.tolist()}"
            )
        return int(indices[1 if len(indices) > 1 else 0])

    def scale_model_input(
        self, sample: torch.Tensor, timestep: float | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Identity: the model takes x_t unscaled (init_noise_sigma = 1)."""
        return sample

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> TLCMSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One TLCM step from x_t = ``sample`` (B, ...) at ``timestep`` given the raw ``model_output``.

        denoised = x0_hat = schedule.to_x0(model_output, x_t, t); prev_sample = tlcm_step(x_t,
        x0_hat, t -> next timestep, gamma, fresh noise from ``generator``), or x0_hat at the last
        step (as LCMScheduler, which draws noise in the same order). The move from timesteps[0]
        uses ``first_gamma`` when it is set. Computed in float32.
        """
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps before step")
        if self._step_index is None:
            self._step_index = (
                self.index_for_timestep(timestep) if self._begin_index is None else self._begin_index
            )
        dtype = sample.dtype
        x_t, output = sample.float(), model_output.float()
        t = torch.as_tensor(timestep, device=sample.device).reshape(1)
        denoised = self.schedule.to_x0(output, x_t, t)
        if self._step_index + 1 >= len(self.timesteps):
            prev_sample = denoised
        else:
            s = self.timesteps[self._step_index + 1].to(sample.device).reshape(1)
            gamma = self.config.gamma
            if self._step_index == 0 and self.config.first_gamma is not None:
                gamma = self.config.first_gamma
            noise = None
            if gamma > 0:
                noise = randn_tensor(x_t.shape, generator=generator, device=sample.device, dtype=x_t.dtype)
            prev_sample = tlcm_step(self.schedule, x_t, denoised, t, s, gamma, noise)
        self._step_index += 1
        prev_sample, denoised = prev_sample.to(dtype), denoised.to(dtype)
        if not return_dict:
            return prev_sample, denoised
        return TLCMSchedulerOutput(prev_sample=prev_sample, denoised=denoised)

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """Forward process x_t = alpha(t) x0 + sigma(t) eps; samples (B, ...), timesteps (B,)."""
        return self.schedule.add_noise(original_samples, noise, timesteps.to(original_samples.device))

    def __len__(self) -> int:
        return self.config.num_train_timesteps


class TLCMScheduler(_TLCMSchedulerBase):
    """TLCM sampler for VP (SD1.5/SDXL) students, a diffusers scheduler.

    Betas as in diffusers (``beta_*``, ``trained_betas``, ``rescale_betas_zero_snr``); the student is
    sampled at ``inference_timesteps(n, num_milestones, T, timestep_policy)``, e.g. 4 steps ->
    [999, 749, 499, 124]; ``gamma`` picks LCM (1), DDIM (0) or TCD-style (between) moves,
    ``first_gamma`` (None: gamma) the move from the first timestep.
    ``from_config`` accepts any SD scheduler config (DDIM, PNDM, Euler, LCM, ...).
    """

    _compatibles = [e.name for e in KarrasDiffusionSchedulers] + ["LCMScheduler", "TCDScheduler"]

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "scaled_linear",
        trained_betas: np.ndarray | list[float] | None = None,
        prediction_type: str = "epsilon",
        rescale_betas_zero_snr: bool = False,
        num_milestones: int = 8,
        timestep_policy: str = "authors",
        gamma: float = 1.0,
        first_gamma: float | None = None,
    ) -> None:
        self._init_state(gamma, first_gamma)
        self.schedule = VPSchedule.from_config(self.config)
        self.alphas_cumprod = self.schedule.alphas_cumprod
        self.timesteps = inference_timesteps(
            num_milestones, num_milestones, num_train_timesteps, timestep_policy
        )

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: Sequence[int] | None = None,
    ) -> None:
        """Set n = ``num_inference_steps`` milestone timesteps (n in 1..M, else ValueError), or custom
        descending integer ``timesteps`` in 0..T-1."""
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("pass exactly one of num_inference_steps and timesteps")
        if timesteps is None:
            grid = inference_timesteps(
                num_inference_steps,
                self.config.num_milestones,
                self.config.num_train_timesteps,
                self.config.timestep_policy,
            )
        else:
            grid = torch.as_tensor(list(timesteps), dtype=torch.long)
            top = self.config.num_train_timesteps - 1
            if grid.numel() == 0 or grid.min() < 0 or grid.max() > top or (grid[1:] >= grid[:-1]).any():
                raise ValueError(
                    f"timesteps must be strictly descending integers in 0..{top}, got {list(timesteps)}"
                )
        self.timesteps = grid.to(device)
        self.schedule = self.schedule.to(self.timesteps.device)
        self.num_inference_steps = len(grid)
        self._step_index = self._begin_index = None


class TLCMFlowScheduler(_TLCMSchedulerBase):
    """TLCM sampler for flow-matching (SD3/FLUX) students, a diffusers scheduler.

    x0_hat = x_t - sigma v, x_next = sigma_next eps + (1 - sigma_next) x0_hat (gamma = 1; the
    authors' FLUX scheduler, scheduling_flow_match_tlcm.py, does this step). The n
    sigmas are the milestone fractions k / M (k from ``inference_milestone_indices``), warped like
    FlowMatchEulerDiscreteScheduler: static ``shift`` (SD3, arXiv 2403.03206 Sec. 5.3.2, eq. 23
    with alpha = shift) or, with ``use_dynamic_shifting``, the
    pipeline's resolution-dependent ``mu``. ``timesteps`` = sigmas * T, ``sigmas`` ends with 0.
    ``use_flow_sigmas`` = True tells FluxPipeline to leave the sigmas to the scheduler.
    """

    _compatibles = [
        "FlowMatchEulerDiscreteScheduler",
        "FlowMatchHeunDiscreteScheduler",
        "FlowMatchLCMScheduler",
    ]

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        shift: float = 1.0,
        use_dynamic_shifting: bool = False,
        base_shift: float = 0.5,
        max_shift: float = 1.15,
        base_image_seq_len: int = 256,
        max_image_seq_len: int = 4096,
        time_shift_type: str = "exponential",
        num_milestones: int = 8,
        timestep_policy: str = "authors",
        gamma: float = 1.0,
        use_flow_sigmas: bool = True,
        first_gamma: float | None = None,
    ) -> None:
        self._init_state(gamma, first_gamma)
        self.schedule = FlowSchedule.from_config(self.config)
        self.sigmas = torch.arange(num_milestones, -1, -1, dtype=torch.float32) / num_milestones
        self.timesteps = self.sigmas[:-1] * num_train_timesteps

    def _time_shift(self, mu: float, sigmas: torch.Tensor) -> torch.Tensor:
        """Resolution-dependent shift (FLUX): exp(mu) / (exp(mu) + 1/sigma - 1), or linear in mu."""
        if self.config.time_shift_type == "linear":
            return mu / (mu + (1 / sigmas - 1))
        return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1))

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: Sequence[float] | None = None,
        mu: float | None = None,
    ) -> None:
        """Set n milestone sigmas (n in 1..M) or custom unshifted ``sigmas`` in (0, 1], then shift them.

        ``mu`` is required with ``use_dynamic_shifting`` (FluxPipeline computes it from the image size).
        """
        if sigmas is None:
            if num_inference_steps is None:
                raise ValueError("pass num_inference_steps or sigmas")
            m = self.config.num_milestones
            ks = inference_milestone_indices(num_inference_steps, m, self.config.timestep_policy)
            base = torch.tensor(ks, dtype=torch.float64) / m
        else:
            base = torch.as_tensor(list(sigmas), dtype=torch.float64)
        if self.config.use_dynamic_shifting:
            if mu is None:
                raise ValueError("use_dynamic_shifting needs mu (the pipeline's resolution-dependent shift)")
            shifted = self._time_shift(mu, base)
        else:
            shifted = self.schedule.shift_sigmas(base)
        self.sigmas = torch.cat([shifted, shifted.new_zeros(1)]).float().to(device)
        self.timesteps = self.sigmas[:-1] * self.config.num_train_timesteps
        self.num_inference_steps = len(self.timesteps)
        self._step_index = self._begin_index = None

    def scale_noise(self, sample: torch.Tensor, timestep: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Flow pipelines' name for ``add_noise`` (img2img): (1 - sigma) x0 + sigma noise, timestep (B,)."""
        return self.add_noise(sample, noise, timestep)
