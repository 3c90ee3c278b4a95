"""A StepContext built by hand on the 3-timestep toy schedule of test_losses.py: what another project
gets when it uses a tlcm loss with only tensors and its own denoisers."""

from __future__ import annotations

import torch

from tlcm.conditioning import Conditioning
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.schedule import VPSchedule
from tlcm.losses.base import StepContext

SCHEDULE = VPSchedule(torch.tensor([0.9216, 0.64, 0.36]), prediction_type="sample")
"""(a, s) = (0.96, 0.28), (0.8, 0.6), (0.6, 0.8) at t = 0, 1, 2; outputs are x0 predictions."""


def toy_context(student, teacher, batch: int = 2, seed: int = 0, **extra) -> StepContext:
    """Latents (batch, 2, 2, 2); conditioning of zeros; the generator seeded with ``seed``."""
    return StepContext.standalone(
        student=student,
        teacher=Guided(teacher, 1.0, Conditioning(torch.ones(1, 2, 3))),
        schedule=SCHEDULE,
        cond=Conditioning(torch.zeros(batch, 2, 3)),
        generator=torch.Generator().manual_seed(seed),
        latent_shape=(2, 2, 2),
        **extra,
    )
