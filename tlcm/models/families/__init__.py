"""Model families: one file per family, looked up by the diffusers pipeline class a folder holds
(its model_index.json ``_class_name``). See families/base.py for what a family provides.

Adding a family is one file here (a ``Family`` subclass) and one entry in ``FAMILIES``;
tests/test_families.py checks that every entry provides the whole interface."""

from __future__ import annotations

from tlcm.models.families.base import Family
from tlcm.models.families.flux import Flux
from tlcm.models.families.sd import LCM_LORA_TARGETS, StableDiffusion, StableDiffusionXL
from tlcm.models.families.sd3 import StableDiffusion3
from tlcm.models.families.transformer import TRANSFORMER_LORA_TARGETS

FAMILIES: dict[str, Family] = {
    family.pipeline_name: family
    for family in (StableDiffusion(), StableDiffusionXL(), StableDiffusion3(), Flux())
}
"""The registry: pipeline class name (model_index.json ``_class_name``) -> its family."""
DEFAULT_FAMILY: Family = FAMILIES["StableDiffusionPipeline"]
"""The bundled miniature's family: how to call a bare network when no family is given (tests)."""

__all__ = ["DEFAULT_FAMILY", "FAMILIES", "LCM_LORA_TARGETS", "TRANSFORMER_LORA_TARGETS", "Family"]
