"""Model families: one file per family, looked up by the diffusers pipeline class a folder holds
(its model_index.json ``_class_name``). See families/base.py for what a family provides."""

from __future__ import annotations

from tlcm.models.families.base import Family
from tlcm.models.families.flux import Flux
from tlcm.models.families.sd import LCM_LORA_TARGETS, StableDiffusion, StableDiffusionXL
from tlcm.models.families.sd3 import StableDiffusion3
from tlcm.models.families.transformer import TRANSFORMER_LORA_TARGETS

FAMILIES: dict[str, Family] = {
    family.pipeline.__name__: family
    for family in (StableDiffusion(), StableDiffusionXL(), StableDiffusion3(), Flux())
}
"""Pipeline class name -> its family."""

__all__ = ["FAMILIES", "LCM_LORA_TARGETS", "TRANSFORMER_LORA_TARGETS", "Family"]
