"""Random-weight diffusers folders for the GPU benchmark, from configs written here (no downloads).

Full size: the SDXL base (UNet 2567.5 M parameters, CLIP-L + OpenCLIP bigG text encoders, the SDXL
VAE) and SD1.5 (UNet 859.5 M, CLIP-L), with the published component configs, built on the device
and saved fp16. Tokenizers: the byte-level CLIP tokenizer of tlcm/toy/tiny.py (every
character a token; no vocabulary can be downloaded). Tiny: the test pipelines of
tlcm/toy/tiny.py. Plus a tiny random CLIP folder standing in for PickScore.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tlcm.toy.tiny import (
    SD_SCHEDULER,
    save_tiny_clip,
    tiny_clip_tokenizer,
    tiny_sd_pipeline,
    tiny_sdxl_pipeline,
)

CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12}
CLIP_L |= {"projection_dim": 768, "hidden_act": "quick_gelu"}
"""openai/clip-vit-large-patch14's text tower (SD1.5's and SDXL's first text encoder)."""
CLIP_BIGG = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
}
CLIP_BIGG |= {"projection_dim": 1280, "hidden_act": "gelu"}
"""OpenCLIP ViT-bigG/14's text tower (SDXL's text_encoder_2, with projection)."""
SDXL_UNET = {
    "sample_size": 128,
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": (5, 10, 20),
    "transformer_layers_per_block": (1, 2, 10),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
"""stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (the rest are diffusers' defaults)."""
SD15_UNET = {"sample_size": 64, "cross_attention_dim": 768, "attention_head_dim": 8}
"""runwayml/stable-diffusion-v1-5 unet/config.json (the rest are diffusers' defaults)."""
VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
}
"""The SD / SDXL VAE (same architecture; SDXL: scaling 0.13025, 1024 px)."""
EXPECTED_UNET_PARAMS = {"sdxl": 2567.5e6, "sd15": 859.5e6}


def _text_config(tokenizer, sizes: dict):
    from transformers import CLIPTextConfig

    ids = {k: getattr(tokenizer, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    return CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5, **ids, **sizes)


def full_pipeline(kind: str, device: str):
    """A random-weight full-size SDXL ("sdxl") or SD1.5 ("sd15") pipeline built on ``device``."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tokenizer = tiny_clip_tokenizer()
    sdxl = kind == "sdxl"
    with torch.device(device):  # weights initialised on the device (seconds on a GPU)
        vae = AutoencoderKL(
            **VAE, sample_size=1024 if sdxl else 512, scaling_factor=0.13025 if sdxl else 0.18215
        )
        text_encoder = CLIPTextModel(_text_config(tokenizer, CLIP_L))
        unet = UNet2DConditionModel(**(SDXL_UNET if sdxl else SD15_UNET))
        text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer, CLIP_BIGG)) if sdxl else None
    if sdxl:
        return StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tiny_clip_tokenizer(),
            unet=unet,
            scheduler=EulerDiscreteScheduler(**SD_SCHEDULER, steps_offset=1, timestep_spacing="leading"),
        )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=PNDMScheduler(**SD_SCHEDULER, skip_prk_steps=True, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_folder(kind: str, folder: Path, device: str, tiny: bool) -> dict:
    """Build the ``kind`` pipeline (full size on ``device``, or tiny on the CPU), save it fp16 to
    ``folder``; returns its parameter counts (millions)."""
    if tiny:
        pipe = (tiny_sdxl_pipeline if kind == "sdxl" else tiny_sd_pipeline)()
    else:
        pipe = full_pipeline(kind, device)
    counts = {
        name: sum(p.numel() for p in module.parameters()) / 1e6
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }
    from diffusers.utils import logging as diffusers_logging

    previous = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # "modules that should be kept in float32: []"
    try:
        pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    finally:
        diffusers_logging.set_verbosity(previous)
    del pipe
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return counts


def pickscore_folder(folder: Path) -> Path:
    """A tiny random CLIPModel + tokenizer (tlcm/toy/tiny.py ``save_tiny_clip``) standing in
    for PickScore in the preference phase."""
    if not (folder / "config.json").is_file():
        save_tiny_clip(folder)
    return folder
