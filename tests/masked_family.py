"""A masked test family: Stable Diffusion whose conditioning carries the tokenizer's attention mask
(padding 0), as a T5 family's does (PixArt; ``Conditioning.attention_mask``). Shared by
tests/test_attention_mask.py and its torchrun worker (tests/dp_worker.py "masked")."""

from __future__ import annotations

from dataclasses import replace

import torch
from diffusers import StableDiffusionPipeline

from tlcm.models.families.sd import StableDiffusion


class MaskedPipeline(StableDiffusionPipeline):
    pass


class MaskedSD(StableDiffusion):
    """SD whose conditioning carries the tokenizer's attention mask (padding 0); ``seen`` records,
    for each network call, the mask's dtype (None: the call came without one)."""

    name = tag = "masked-sd"
    pipeline_name = "MaskedSDPipeline"
    seen: list[torch.dtype | None] = []

    @property
    def pipeline(self):
        return MaskedPipeline

    def encode(self, pipe, prompts, device, max_sequence_length, latent_shape):
        cond, uncond = super().encode(pipe, prompts, device, max_sequence_length, latent_shape)

        def mask(texts: list[str]) -> torch.Tensor:
            length = pipe.tokenizer.model_max_length
            tokens = pipe.tokenizer(texts, padding="max_length", max_length=length, truncation=True)
            return torch.tensor(tokens.attention_mask, device=device)

        blank = [""] * len(prompts)
        return replace(cond, attention_mask=mask(prompts)), replace(uncond, attention_mask=mask(blank))

    def forward(self, net, x, t, cond):
        MaskedSD.seen.append(None if cond.attention_mask is None else cond.attention_mask.dtype)
        return super().forward(net, x, t, cond)


MASKED_CASES = ("dmd", "gan-unet")
"""The loss contract cases (tests/loss_cases.py) a masked family runs in every mode: DMD calls the
teacher with CFG (the prompt's and the empty prompt's masks concatenated), the student and the fake
score; the teacher-feature GAN runs the UNet block by block (the features' own mask bias)."""
