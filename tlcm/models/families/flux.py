"""FLUX.1: a FluxTransformer2DModel on 2 x 2-packed latent tokens, rectified flow with a
resolution-dependent shift; FLUX.1-dev takes the guidance scale as an input (guidance embedding)."""

from __future__ import annotations

import functools
import math

import torch
from einops import rearrange

from tlcm.conditioning import Conditioning
from tlcm.diffusion.schedule import FlowSchedule, schedule_from_config
from tlcm.models.families.transformer import TransformerFamily

FLUX_MAX_SEQUENCE_LENGTH = 512
"""FluxPipeline's default T5 length."""
STUDENT_GUIDANCE = 3.5
"""The guidance input of a guidance-distilled student's calls (FluxPipeline's default
guidance_scale): the value it is trained with and should be sampled with."""


def pack(x: torch.Tensor) -> torch.Tensor:
    """Latents (B, C, h, w) -> tokens (B, h/2 * w/2, 4C), FluxPipeline._pack_latents' order."""
    return rearrange(x, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=2, pw=2)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of ``pack``: (B, h/2 * w/2, 4C) -> (B, C, h, w)."""
    return rearrange(tokens, "b (h w) (c ph pw) -> b c (h ph) (w pw)", h=h // 2, w=w // 2, ph=2, pw=2)


@functools.lru_cache(maxsize=16)
def image_ids(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Position ids (h * w, 3) of an h x w token grid, rows (0, i, j), made on ``device`` once per
    (h, w, device, dtype) and reused by every transformer call (FluxPipeline's
    ``_prepare_latent_image_ids`` builds them on the CPU and copies them each call). Read-only."""
    i = torch.arange(h, device=device, dtype=dtype).view(h, 1).expand(h, w)
    j = torch.arange(w, device=device, dtype=dtype).view(1, w).expand(h, w)
    return torch.stack([torch.zeros_like(i), i, j], dim=-1).reshape(h * w, 3)


class Flux(TransformerFamily):
    """CLIP (pooled) + T5 (tokens); the transformer predicts v = eps - x0 at timestep sigma (t / T).
    With ``guidance_embeds`` (FLUX.1-dev) the teacher is guided by its guidance input, one call;
    without it (schnell-like) by classifier-free guidance with the empty prompt."""

    name = "flux"
    tag = "flux"
    pipeline_name = "FluxPipeline"
    components = (
        "transformer",
        "vae",
        "scheduler",
        "text_encoder",
        "tokenizer",
        "text_encoder_2",
        "tokenizer_2",
    )

    def encode(self, pipe, prompts, device, max_sequence_length, latent_shape):
        length = max_sequence_length or FLUX_MAX_SEQUENCE_LENGTH

        def one(texts: list[str]) -> Conditioning:
            emb, pooled, _ = pipe.encode_prompt(
                prompt=texts,
                prompt_2=None,
                device=device,
                num_images_per_prompt=1,
                max_sequence_length=length,
            )
            guidance = None
            if pipe.transformer.config.guidance_embeds:
                guidance = torch.full((len(texts),), STUDENT_GUIDANCE, device=device, dtype=emb.dtype)
            return Conditioning(emb, pooled, guidance=guidance)

        return one(prompts), one([""]).expand_to(len(prompts))  # the empty prompt, encoded once

    def forward(self, net, x, t, cond):
        h, w = x.shape[-2:]
        txt_ids = torch.zeros(cond.prompt_embeds.shape[1], 3, device=x.device, dtype=x.dtype)
        out = net(
            hidden_states=pack(x),
            timestep=t / 1000,  # FLUX's transformer takes sigma and scales it by 1000 itself
            guidance=cond.guidance,
            pooled_projections=cond.pooled_embeds,
            encoder_hidden_states=cond.prompt_embeds,
            txt_ids=txt_ids,
            img_ids=image_ids(h // 2, w // 2, x.device, x.dtype),
            return_dict=False,
        )[0]
        return unpack(out, h, w)

    def latent_multiple(self, net_config):
        """2: latents are packed into 2 x 2 patches (``pack``)."""
        return 2

    def text_widths(self, pipe):
        """T5's width (CLIP gives only the pooled embedding)."""
        return pipe.text_encoder_2.config.hidden_size, pipe.transformer.config.joint_attention_dim

    def token_grid(self, net, x):
        return x.shape[-2] // 2, x.shape[-1] // 2

    def latent_shape(self, pipe, resolution=None):
        """(C, h, w): C = in_channels / 4 (packing), h = w = 2 (resolution // (2 vae factor))."""
        size = 2 * (
            (resolution or pipe.default_sample_size * pipe.vae_scale_factor) // (pipe.vae_scale_factor * 2)
        )
        return (pipe.transformer.config.in_channels // 4, size, size)

    def schedule(self, pipe, latent_shape):
        """With ``use_dynamic_shifting`` (FLUX.1) the shift is FluxPipeline's exp(mu) for this
        latent size (its exponential time shift equals the static shift exp(mu))."""
        config = pipe.scheduler.config
        if not config.get("use_dynamic_shifting"):
            return schedule_from_config(config)
        if config.get("time_shift_type", "exponential") != "exponential":
            raise ValueError("FLUX schedules with a linear time shift are not supported")
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        tokens = (latent_shape[1] // 2) * (latent_shape[2] // 2)
        mu = calculate_shift(
            tokens,
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", 1.15),
        )
        return FlowSchedule(config.get("num_train_timesteps", 1000), math.exp(mu))

    def pipeline_latents(self, latents):
        return pack(latents)

    def sample_kwargs(self):
        return {"guidance_scale": STUDENT_GUIDANCE}

    def scheduler_mu(self, pipe, schedule):
        """With ``use_dynamic_shifting``: log of the training schedule's shift (``schedule`` fixed
        exp(mu) for the training resolution), the mu FluxPipeline computes for that image size."""
        return math.log(schedule.shift) if pipe.scheduler.config.get("use_dynamic_shifting") else None
