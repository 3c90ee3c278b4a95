"""Model families: one file per family, looked up by the diffusers pipeline class a folder holds
(its model_index.json ``_class_name``). See families/base.py for what a family provides.

Adding a family needs no change here: subclass ``Family`` (or ``TransformerFamily``) in a module of
your own, call ``register_family(MyFamily())`` in it, and pass ``--import my_module`` to every
command (train, sample, export, evaluate, the trajectory cache). ``register_family`` checks what a
family must provide (tests/test_families.py checks every entry the same way, and more).
The shipped families register here the same way.
"""

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

FAMILIES: dict[str, Family] = {}
"""The registry: pipeline class name (model_index.json ``_class_name``) -> its family; add to it
with ``register_family``."""

NEEDED_FOLDERS = ("vae", "scheduler", "text_encoder", "tokenizer")
"""Component folders every family lists (with its ``net``) in ``components`` / ``optional_components``."""


def register_family(family: Family | type[Family]) -> Family | type[Family]:
    """Add ``family`` (a ``Family`` instance, or a subclass: then used as a class decorator and
    instantiated) to ``FAMILIES`` under its ``pipeline_name``, after the checks that need no model
    library: what ``Family`` leaves open (its abstract methods, its attributes without a default)
    is defined, names are strings, ``lora_targets`` a non-empty tuple of module names, the folders
    hold the network, VAE, scheduler, text encoder and tokenizer once each; ``pipeline_name``,
    ``name`` and ``tag`` not taken by another family. Anything else: a one-line TLCMError.
    Returns its argument."""
    cls = family if isinstance(family, type) else type(family)
    where = f"register_family({cls.__module__}.{cls.__qualname__})"
    if not issubclass(cls, Family):
        raise TLCMError(
            f"{where}: not a tlcm.models.families.Family subclass (subclass Family or TransformerFamily)"
        )
    missing = sorted(getattr(cls, "__abstractmethods__", ())) + [
        n for n in Family.__annotations__ if not hasattr(Family, n) and not hasattr(cls, n)
    ]
    if missing:
        raise TLCMError(f"{where}: the family lacks {', '.join(missing)} (what every Family must define)")
    instance = cls() if isinstance(family, type) else family
    for attribute in ("name", "tag", "pipeline_name", "net", "scheduler"):
        if not isinstance(value := getattr(instance, attribute), str) or not value:
            raise TLCMError(f"{where}: {attribute} must be a non-empty string, got {value!r}")
    targets = instance.lora_targets
    if not isinstance(targets, tuple) or not targets or not all(isinstance(t, str) for t in targets):
        raise TLCMError(f"{where}: lora_targets must be a non-empty tuple of module names, got {targets!r}")
    if instance.kohya is not None and not isinstance(instance.kohya, str):
        raise TLCMError(f"{where}: kohya must be None or a string, got {instance.kohya!r}")
    folders = (*instance.components, *instance.optional_components)
    lacking = [f for f in (instance.net, *NEEDED_FOLDERS) if f not in folders]
    if lacking or len(set(folders)) != len(folders):
        problem = f"lack {', '.join(lacking)}" if lacking else "name a folder twice"
        raise TLCMError(f"{where}: components + optional_components {problem}: {folders}")
    for attribute in ("pipeline_name", "name", "tag"):
        value = getattr(instance, attribute)
        taken = next((f for f in FAMILIES.values() if getattr(f, attribute) == value), None)
        other = taken and f"{type(taken).__module__}.{type(taken).__qualname__}"
        if taken is not None and other != f"{cls.__module__}.{cls.__qualname__}":  # not a re-import
            raise TLCMError(
                f"{where}: {attribute} {value!r} is already {other}'s (one family per pipeline class; "
                f"give yours another {attribute})"
            )
    FAMILIES[instance.pipeline_name] = instance
    return family


for _family in (StableDiffusion(), StableDiffusionXL(), StableDiffusion3(), Flux()):
    register_family(_family)
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
    "register_family",
]
