"""Random-weight diffusers folders for the GPU benchmark, from configs written here (no downloads).

Full size, built on the device: the SDXL base (UNet 2567.5 M parameters, CLIP-L + OpenCLIP bigG
text encoders, the SDXL VAE) and SD1.5 (UNet 859.5 M, CLIP-L), saved fp16; SD3.5-Large (MM-DiT
transformer, about 8.1 B parameters, CLIP-L + bigG + T5-XXL) and FLUX.1-dev (transformer about
11.9 B, CLIP-L + T5-XXL), 16-channel VAEs, built and saved bf16, the two sharing one T5-XXL folder
(``T5_SLOTS``). Tokenizers: tlcm/toy/tiny.py's byte-level CLIP tokenizer (every character a token)
and its character-level T5 tokenizer (no vocabulary can be downloaded). Tiny: the test pipelines of
tlcm/toy/tiny.py. Plus a tiny random CLIP folder standing in for PickScore.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import torch

from tlcm.toy.tiny import (
    SD_SCHEDULER,
    save_tiny_clip,
    tiny_clip_tokenizer,
    tiny_flux_pipeline,
    tiny_sd3_pipeline,
    tiny_sd_pipeline,
    tiny_sdxl_pipeline,
    tiny_t5_tokenizer,
)

CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12}
CLIP_L |= {"projection_dim": 768, "hidden_act": "quick_gelu"}
"""openai/clip-vit-large-patch14's text tower (SD1.5's, SDXL's, SD3's and FLUX's first text encoder)."""
CLIP_BIGG = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
}
CLIP_BIGG |= {"projection_dim": 1280, "hidden_act": "gelu"}
"""OpenCLIP ViT-bigG/14's text tower (SDXL's and SD3's text_encoder_2, with projection)."""
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
SD3_TRANSFORMER = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 38,
    "num_attention_heads": 38,
    "attention_head_dim": 64,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 2432,
    "pooled_projection_dim": 2048,
    "pos_embed_max_size": 192,
    "qk_norm": "rms_norm",
}
"""stabilityai/stable-diffusion-3.5-large transformer/config.json (SD3Transformer2DModel)."""
FLUX_TRANSFORMER = {
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
"""black-forest-labs/FLUX.1-dev transformer/config.json (FluxTransformer2DModel, patch size 1)."""
T5_XXL = {"d_model": 4096, "d_ff": 10240, "num_layers": 24, "num_heads": 64, "d_kv": 64, "vocab_size": 32128}
T5_XXL |= {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}
"""google/t5-v1_1-xxl's encoder (SD3's text_encoder_3, FLUX's text_encoder_2)."""
VAE_16 = {**VAE, "latent_channels": 16, "use_quant_conv": False, "use_post_quant_conv": False}
VAE_16 |= {"sample_size": 1024}
"""SD3's and FLUX's VAE: the SD architecture with 16 latent channels and no quant convs."""
VAE_SCALING = {
    "sd3": {"scaling_factor": 1.5305, "shift_factor": 0.0609},
    "flux": {"scaling_factor": 0.3611, "shift_factor": 0.1159},
}
FLUX_SCHEDULER = {"shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15}
FLUX_SCHEDULER |= {"base_image_seq_len": 256, "max_image_seq_len": 4096}
"""FLUX.1-dev scheduler/scheduler_config.json (FlowMatchEulerDiscreteScheduler); SD3.5: shift 3."""
EXPECTED_NET_PARAMS = {"sdxl": 2567.5e6, "sd15": 859.5e6, "sd3": 8.1e9, "flux": 11.9e9}
"""Published sizes of the denoising networks (SD3.5-Large: 8.1 B; FLUX.1-dev: 12 B, 11.9 B counted)."""
SAVE_DTYPE = {"sdxl": torch.float16, "sd15": torch.float16, "sd3": torch.bfloat16, "flux": torch.bfloat16}
"""dtype of the saved weights: the released checkpoints' (SD3 and FLUX are bf16 models)."""
T5_SLOTS = {"sd3": ("text_encoder_3", "tokenizer_3"), "flux": ("text_encoder_2", "tokenizer_2")}
"""Where SD3 and FLUX hold the T5-XXL encoder (9.5 GB in bf16): saved once, linked into both."""
BUILT = "tlcm-bench-built.json"
"""Written into a model folder last, with its counts: the folder is complete (a failed save is redone)."""
TINY = {"sdxl": tiny_sdxl_pipeline, "sd15": tiny_sd_pipeline, "flux": tiny_flux_pipeline}
TINY |= {"sd3": lambda: tiny_sd3_pipeline(t5=True)}


def _text_config(tokenizer, sizes: dict):
    from transformers import CLIPTextConfig

    ids = {k: getattr(tokenizer, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    return CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5, **ids, **sizes)


def _t5_encoder(tokenizer):
    from transformers import T5Config, T5EncoderModel

    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = T5Config(**T5_XXL, **ids, is_encoder_decoder=False, use_cache=False)
    return T5EncoderModel(config).eval()


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    """Parameters created inside are ``dtype`` (a 12 B network built in fp32 would not fit beside
    its bf16 copy)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def full_pipeline(kind: str, device: str, t5: bool = True):
    """A random-weight full-size "sdxl", "sd15", "sd3" or "flux" pipeline built on ``device`` (SD3 /
    FLUX in bf16; ``t5`` False: their T5 slots empty)."""
    if kind in T5_SLOTS:
        return _flow_pipeline(kind, device, t5)
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


def _flow_pipeline(kind: str, device: str, t5: bool):
    """SD3.5-Large ("sd3") or FLUX.1-dev ("flux"), as tlcm/toy/tiny.py assembles their tiny twins."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    clip, t5_tokenizer = tiny_clip_tokenizer(), tiny_t5_tokenizer() if t5 else None
    flux = kind == "flux"
    with torch.device(device), _default_dtype(torch.bfloat16):
        vae = AutoencoderKL(**VAE_16, **VAE_SCALING[kind])
        text_encoder = (CLIPTextModel if flux else CLIPTextModelWithProjection)(_text_config(clip, CLIP_L))
        t5_encoder = _t5_encoder(t5_tokenizer) if t5 else None
        if flux:
            transformer = FluxTransformer2DModel(**FLUX_TRANSFORMER)
        else:
            transformer = SD3Transformer2DModel(**SD3_TRANSFORMER)
            text_encoder_2 = CLIPTextModelWithProjection(_text_config(clip, CLIP_BIGG))
    parts = {"transformer": transformer, "vae": vae, "text_encoder": text_encoder, "tokenizer": clip}
    if flux:
        parts |= {"text_encoder_2": t5_encoder, "tokenizer_2": t5_tokenizer}
        return FluxPipeline(**parts, scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER))
    parts |= {"text_encoder_2": text_encoder_2, "tokenizer_2": tiny_clip_tokenizer()}
    parts |= {"text_encoder_3": t5_encoder, "tokenizer_3": t5_tokenizer}
    return StableDiffusion3Pipeline(**parts, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (linked folders included)."""
    walk = os.walk(folder, followlinks=True)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in walk for f in files)


def _saved_params(folder: Path) -> float:
    """Millions of parameters in the safetensors files of ``folder`` (read from their headers)."""
    from safetensors import safe_open

    total = 0
    for file in folder.glob("*.safetensors"):
        with safe_open(file, "pt") as f:
            total += sum(torch.Size(f.get_slice(k).get_shape()).numel() for k in f.keys())  # noqa: SIM118
    return total / 1e6


def _link_t5(folder: Path, slots: tuple[str, str], t5: Path) -> None:
    """Point ``folder``'s T5 slots at the encoder and tokenizer saved in ``t5``."""
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text())
    parts = (("text_encoder", "T5EncoderModel"), ("tokenizer", "T5TokenizerFast"))
    for slot, (part, cls) in zip(slots, parts, strict=True):
        (folder / slot).symlink_to((t5 / part).resolve(), target_is_directory=True)
        index[slot] = ["transformers", cls]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def build_folder(kind: str, folder: Path, device: str, tiny: bool, t5: Path | None = None) -> dict:
    """Build the ``kind`` pipeline (full size on ``device``, or tiny on the CPU) and save it to
    ``folder`` in ``SAVE_DTYPE[kind]``; returns its parameter counts (millions) per component and
    its size on disk ("saved_gb"), also written to ``folder / BUILT``. SD3 / FLUX: the T5 encoder
    and tokenizer are saved once to ``t5`` (by the first of the two built) and linked into the
    folder."""
    slots = T5_SLOTS.get(kind)
    shared = slots is not None and (t5 / "tokenizer").is_dir()  # saved after the encoder
    shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
    pipe = TINY[kind]() if tiny else full_pipeline(kind, device, t5=not shared)
    counts = {
        name: sum(p.numel() for p in module.parameters()) / 1e6
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Writing model shards"
    previous = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # "modules that should be kept in float32: []"
    try:
        if slots and not shared:
            getattr(pipe, slots[0]).to(SAVE_DTYPE[kind]).save_pretrained(t5 / "text_encoder")
            getattr(pipe, slots[1]).save_pretrained(t5 / "tokenizer")
        if slots:
            counts[slots[0]] = _saved_params(t5 / "text_encoder")
            pipe.register_modules(**dict.fromkeys(slots))
        pipe.to(SAVE_DTYPE[kind]).save_pretrained(folder, safe_serialization=True)
    finally:
        diffusers_logging.set_verbosity(previous)
    if slots:
        _link_t5(folder, slots, t5)
    del pipe
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    counts["saved_gb"] = folder_bytes(folder) / 1e9
    (folder / BUILT).write_text(json.dumps(counts, indent=1) + "\n")
    return counts


def pickscore_folder(folder: Path) -> Path:
    """A tiny random CLIPModel + tokenizer (tlcm/toy/tiny.py ``save_tiny_clip``) standing in
    for PickScore in the preference phase."""
    if not (folder / "config.json").is_file():
        save_tiny_clip(folder)
    return folder
