"""Model families: one file per family, looked up by the diffusers pipeline class a folder holds
(its model_index.json ``_class_name``). See families/base.py for what a family provides.

Adding a family is one file here (a ``Family`` subclass) and one entry in ``FAMILIES``;
tests/test_families.py checks that every entry provides the whole interface."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from tlcm.errors import TLCMError
from tlcm.models.families.base import Family
from tlcm.models.families.flux import Flux
from tlcm.models.families.sd import LCM_LORA_TARGETS, StableDiffusion, StableDiffusionXL
from tlcm.models.families.sd3 import StableDiffusion3
from tlcm.models.families.transformer import TRANSFORMER_LORA_TARGETS

if TYPE_CHECKING:  # the recipe tree imports this package: no model library at import time
    import torch
    from diffusers import DiffusionPipeline

FAMILIES: dict[str, Family] = {
    family.pipeline_name: family
    for family in (StableDiffusion(), StableDiffusionXL(), StableDiffusion3(), Flux())
}
"""The registry: pipeline class name (model_index.json ``_class_name``) -> its family."""
DEFAULT_FAMILY: Family = FAMILIES["StableDiffusionPipeline"]
"""The bundled miniature's family: how to call a bare network when no family is given (tests)."""


def family_of(pipe: DiffusionPipeline) -> Family:
    """The family of a loaded diffusers pipeline, by its class name (``FAMILIES``): for code that
    holds a pipeline rather than a folder, e.g. a loss in your own loop (GAN's teacher-feature
    discriminator takes ``teacher=(family_of(pipe), pipe.unet)``)."""
    name = type(pipe).__name__
    if name not in FAMILIES:
        raise TLCMError(
            f"a {name} has no tlcm model family; supported: {', '.join(FAMILIES)} (load the model with "
            "one of these classes, e.g. StableDiffusionPipeline.from_pretrained(folder))"
        )
    return FAMILIES[name]


def pipeline_decoder(pipe: DiffusionPipeline) -> Callable[[torch.Tensor], torch.Tensor]:
    """``decode(latents) -> images`` for ``pipe``, what the losses that look at pixels (a pixel GAN,
    reward feedback, Diffusion-DPO's reward) take as ``StepContext.standalone(decode=...)``: latents
    (B, C, h, w) as the network sees them -> images (B, 3, H, W) in [-1, 1], differentiable, undoing
    the family's latent scale and shift (SD: / scaling_factor; SD3 / FLUX: and + shift_factor) as its
    diffusers pipeline does. A bare ``pipe.vae.decode(latents).sample`` skips that and gives wrong
    images without an error."""
    return partial(family_of(pipe).decode, pipe)


__all__ = [
    "DEFAULT_FAMILY",
    "FAMILIES",
    "LCM_LORA_TARGETS",
    "TRANSFORMER_LORA_TARGETS",
    "Family",
    "family_of",
    "pipeline_decoder",
]
