"""Stable Diffusion 1.x / 2.x and SDXL: a UNet2DConditionModel, VP schedule, CFG."""

from __future__ import annotations

import torch

from tlcm.conditioning import Conditioning
from tlcm.distributed import is_sharded
from tlcm.models.families.base import Family

LCM_LORA_TARGETS = (
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "proj_in",
    "proj_out",
    "ff.net.0.proj",
    "ff.net.2",
    "conv1",
    "conv2",
    "conv_shortcut",
    "downsamplers.0.conv",
    "upsamplers.0.conv",
    "time_emb_proj",
)
"""LoRA target modules of diffusers' LCM-LoRA training scripts."""


def unet_kwargs(cond: Conditioning) -> dict:
    """Keyword arguments of ``UNet2DConditionModel.forward`` for ``cond`` (SDXL: added_cond_kwargs; a
    conditioning with an ``attention_mask``: encoder_attention_mask, padding tokens unattended)."""
    kwargs: dict = {"encoder_hidden_states": cond.prompt_embeds}
    if cond.attention_mask is not None:
        kwargs["encoder_attention_mask"] = cond.attention_mask
    if cond.pooled_embeds is not None:
        kwargs["added_cond_kwargs"] = {"text_embeds": cond.pooled_embeds, "time_ids": cond.time_ids}
    return kwargs


class StableDiffusion(Family):
    """SD1.5-style: one CLIP text encoder, prompt embeddings only."""

    name = "sd15"
    tag = "stable-diffusion"
    pipeline_name = "StableDiffusionPipeline"
    components = ("unet", "vae", "scheduler", "text_encoder", "tokenizer")
    lora_targets = LCM_LORA_TARGETS
    kohya = "sd_v1"

    @staticmethod
    def comfy_detects(net) -> bool:
        """Whether stock ComfyUI can recognise the base UNet ``net``: its SD1.x / SD2.x / SDXL model
        configs all have 320 base channels (a tiny UNet such as the bundled miniature's matches none)."""
        return net.config.block_out_channels[0] == 320

    def comfy_refusal(self, net):
        if self.comfy_detects(net):
            return None
        channels, width = tuple(net.config.block_out_channels), net.config.cross_attention_dim
        return f"""Stock ComfyUI cannot load this base model: it recognises a checkpoint by matching its UNet
against the architectures it knows (SD1.x, SD2.x, SDXL, ...: 320 base channels), and this UNet
(block channels {channels}, cross-attention width {width}) matches none of them, so there is no
base for the kohya LoRA to patch. What works: diffusers (above), or
`python -m tlcm.sample --student RUN` (RUN: the run folder above this one). A student of a real
SD1.5 / SDXL base gets ComfyUI steps here (a LoraLoader on its kohya file, sampler lcm)."""

    def encode(self, pipe, prompts, device, max_sequence_length, latent_shape):
        emb, neg = pipe.encode_prompt(
            prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=True
        )
        return Conditioning(emb), Conditioning(neg)

    def forward(self, net, x, t, cond):
        return net(x, t, **unet_kwargs(cond)).sample

    def feature_channels(self, net):
        channels = list(net.config.block_out_channels)
        return [*channels, channels[-1]]

    def features(self, net, x, t, cond):
        """After every down block and the mid block (the UNet's encoder half), (B, C_i, h_i, w_i):
        run block by block up to the mid block; an FSDP2-sharded UNet by hooks in a full forward
        (its root weights are gathered only by the root's forward)."""
        if is_sharded(net):
            blocks = [*net.down_blocks, net.mid_block]
            return self.tapped_features(
                net, x, t, cond, blocks, lambda out, x: out[0] if isinstance(out, tuple) else out
            )
        kwargs = unet_kwargs(cond)
        emb = net.time_embedding(net.get_time_embed(sample=x, timestep=t), None)
        aug = net.get_aug_embed(
            emb=emb,
            encoder_hidden_states=kwargs["encoder_hidden_states"],
            added_cond_kwargs=kwargs.get("added_cond_kwargs"),
        )
        emb = emb + aug if aug is not None else emb
        if net.time_embed_act is not None:
            emb = net.time_embed_act(emb)
        h, feats = net.conv_in(x), []
        text = {"encoder_hidden_states": kwargs["encoder_hidden_states"]}
        if cond.attention_mask is not None:  # as UNet2DConditionModel.forward: keep 1, bias 0 by -10000
            text["encoder_attention_mask"] = ((1 - cond.attention_mask.to(h.dtype)) * -10000.0).unsqueeze(1)
        for block in net.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, _ = block(hidden_states=h, temb=emb, **text)
            else:
                h, _ = block(hidden_states=h, temb=emb)
            feats.append(h)
        if getattr(net.mid_block, "has_cross_attention", False):
            feats.append(net.mid_block(h, emb, **text))
        else:
            feats.append(net.mid_block(h, emb))
        return feats


class StableDiffusionXL(StableDiffusion):
    """SDXL: two CLIP encoders, pooled embeddings and six micro-conditioning time ids."""

    name = "sdxl"
    tag = "stable-diffusion-xl"
    pipeline_name = "StableDiffusionXLPipeline"
    components = (*StableDiffusion.components, "text_encoder_2", "tokenizer_2")
    kohya = "sdxl_base_v1-0"

    def time_ids(self, pipe, latent_shape) -> list[int]:
        """SDXL's six micro-conditioning ids for latents (C, h, w): original size = target size =
        the image (h, w) x the VAE factor (the configured resolution, not the default 1024 px), crop
        (0, 0); what StableDiffusionXLPipeline passes when it samples at that height and width."""
        height, width = (side * pipe.vae_scale_factor for side in latent_shape[1:])
        return [height, width, 0, 0, height, width]

    def encoded_sizes(self, pipe, latent_shape):
        return {"time_ids": self.time_ids(pipe, latent_shape)}

    def latent_affine(self, vae_config, like):
        """A VAE config with per-channel ``latents_mean`` and ``latents_std`` (SDXL-architecture
        models such as Playground v2.5): scale = scaling_factor / latents_std, shift = latents_mean,
        each (1, C, 1, 1), as StableDiffusionXLPipeline decodes (``latents * latents_std /
        scaling_factor + latents_mean``) and its img2img encodes; else the shared factors."""
        mean, std = getattr(vae_config, "latents_mean", None), getattr(vae_config, "latents_std", None)
        if mean is None or std is None:
            return super().latent_affine(vae_config, like)
        view = lambda v: torch.tensor(v, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)  # noqa: E731
        return vae_config.scaling_factor / view(std), view(mean)

    def encode(self, pipe, prompts, device, max_sequence_length, latent_shape):
        emb, neg, pooled, neg_pooled = pipe.encode_prompt(
            prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=True
        )
        ids = torch.tensor([self.time_ids(pipe, latent_shape)], device=device, dtype=emb.dtype)
        ids = ids.expand(len(prompts), 6)
        return Conditioning(emb, pooled, ids), Conditioning(neg, neg_pooled, ids)
