"""Walkthrough 7 (tlcm's losses in your own loop), the decoder and family a loss needs from a
loaded pipeline: ``pipeline_decoder(pipe)`` undoes the family's latent scale and shift as its
diffusers pipeline does (a bare ``vae.decode(latents)`` decodes wrong images without an error), and
``family_of(pipe)`` names what is supported."""

from __future__ import annotations

import pytest
import torch
from diffusers import DiffusionPipeline

from tlcm.errors import TLCMError
from tlcm.models.families import FAMILIES, family_of, pipeline_decoder
from tlcm.toy.tiny import tiny_sd3_pipeline, tiny_sd_pipeline


@pytest.mark.parametrize("make", [tiny_sd_pipeline, tiny_sd3_pipeline])
def test_the_pipeline_decoder_undoes_the_latent_scale_and_shift(make):
    pipe = make()
    config = pipe.vae.config
    latents = torch.randn(2, config.latent_channels, 8, 8, generator=torch.Generator().manual_seed(0))
    shift = getattr(config, "shift_factor", None) or 0.0
    want = pipe.vae.decode(latents / config.scaling_factor + shift).sample.clamp(-1, 1)
    assert torch.allclose(pipeline_decoder(pipe)(latents), want, atol=1e-6)
    assert not torch.allclose(pipe.vae.decode(latents).sample.clamp(-1, 1), want, atol=1e-3)  # the trap
    assert family_of(pipe) is FAMILIES[type(pipe).__name__]


def test_a_pipeline_without_a_family_is_named():
    class MyPipeline(DiffusionPipeline):
        pass

    with pytest.raises(TLCMError, match=r"a MyPipeline has no tlcm model family; supported: StableDiff"):
        family_of(MyPipeline())
