"""What a denoiser is, and the guided teacher as one of them.

A denoiser is any callable ``denoiser(x (B, ...), t (B,), cond: Conditioning) -> model output
(B, ...)`` (eps, v or x0 as the schedule's prediction type says). Losses, solvers and samplers take
denoisers only: classifier-free guidance lives inside ``Guided`` (as k-diffusion's ``CFGDenoiser``
and FastGen's guided teacher wrap it), not in their argument lists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from tlcm.conditioning import Conditioning

Denoiser = Callable[[torch.Tensor, torch.Tensor, Conditioning], torch.Tensor]
"""``(x (B, ...), t (B,), cond of B samples) -> raw model output (B, ...)`` (eps, v or x0)."""


@dataclass(frozen=True)
class Guided:
    """A denoiser with classifier-free guidance inside (Ho & Salimans 2022, arXiv 2207.12598, whose
    eq. 6 writes (1 + w) eps(c) - w eps(null); our w is their 1 + w, as in arXiv 2406.05768 Eq. (8)
    and diffusers' guidance_scale):

        out_w(x, t, c) = out(x, t, null) + w (out(x, t, c) - out(x, t, null)),

    in ONE call of ``denoiser`` with batch 2B (cond first, then ``uncond`` expanded to B).
    Guidance acts on the raw model output: every conversion of ``Schedule`` is affine in the
    output at fixed (x_t, t), so this equals guiding eps, x0 or v alike. ``scale`` == 1 makes one
    call of batch B and needs no ``uncond``. A guidance-distilled network (``cond.guidance`` set,
    FLUX.1-dev) takes w as an input instead: one call of batch B with ``cond.with_guidance(w)``.

    denoiser: the unguided network (the frozen base: the teacher).
    scale: w (the paper: 8 on SDXL), or a (B,) tensor of per-sample scales (LCM's w ~ U[w_min,
        w_max]; the calls then take the whole batch of B).
    uncond: the unconditional (empty-prompt) conditioning, 1 sample (broadcast to any batch, so
        that solvers may call the teacher on any subset of their samples).
    """

    denoiser: Denoiser
    scale: float | torch.Tensor = 1.0
    uncond: Conditioning | None = None

    def __post_init__(self) -> None:
        if self.uncond is not None and len(self.uncond) != 1:
            raise ValueError(f"Guided takes one unconditional sample (broadcast), got {len(self.uncond)}")

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        scale, batch = self.scale, x.shape[0]
        if isinstance(scale, torch.Tensor) and scale.shape != (batch,):
            raise ValueError(
                f"per-sample guidance scales of shape {tuple(scale.shape)} for a batch of {batch}"
            )
        if cond.guidance is not None:
            return self.denoiser(x, t, cond.with_guidance(scale))
        if not isinstance(scale, torch.Tensor) and scale == 1:
            return self.denoiser(x, t, cond)
        if self.uncond is None:
            raise ValueError(f"classifier-free guidance with w={scale} needs an unconditional embedding")
        out = self.denoiser(torch.cat([x, x]), torch.cat([t, t]), cond.cat(self.uncond.expand_to(batch)))
        out_cond, out_uncond = out.chunk(2)
        w = scale.view(-1, *[1] * (x.dim() - 1)) if isinstance(scale, torch.Tensor) else scale
        return out_uncond + w * (out_cond - out_uncond)

    def with_scale(self, scale: float | torch.Tensor) -> Guided:
        """The same teacher guided with w = ``scale`` (e.g. DMD's real score)."""
        return replace(self, scale=scale)
