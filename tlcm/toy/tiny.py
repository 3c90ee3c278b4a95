"""Tiny random diffusers pipelines (no hub access), shaped like diffusers' own test fixtures: the
test bed of tests/ (tests/tiny_pipelines.py re-exports them), the test workers' and the benchmarks'
CPU mode (benchmarks/gpu_models.py, benchmarks/common.py).

``tiny_sd_pipeline`` (SD1.5 layout), ``tiny_sdxl_pipeline`` (two text encoders, pooled embeddings,
time ids), ``tiny_sd3_pipeline`` (flow matching, CLIP-only by default, ``t5=True`` adds a tiny T5)
and ``tiny_flux_pipeline`` (FLUX.1-dev layout: CLIP pooled + T5, packed latents, guidance input,
dynamic shifting) build in about a second each from a seed. ``tiny_t5`` is a tiny random T5 encoder
with a character-level T5 tokenizer made without the hub or sentencepiece files; ``save_tiny_clip``
a tiny random CLIPModel folder (what the CLIP rewards load).
Untrained: outputs are noise, only shapes and plumbing are meaningful.
"""

from __future__ import annotations

import string

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PNDMScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

SD_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
IMAGE_SIZE = 32
"""Pixel height/width to run the tiny SD/SDXL pipelines at (16 x 16 latents)."""


def tiny_clip_tokenizer() -> CLIPTokenizer:
    """Byte-level CLIP tokenizer without merges: every character is a token (514 tokens, 77 max)."""
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={tok: i for i, tok in enumerate(tokens)}, merges=[], model_max_length=77)


def _clip_config(tokenizer: CLIPTokenizer, projection_dim: int = 32) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-5,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=1000,
        max_position_embeddings=77,
        projection_dim=projection_dim,
        hidden_act="gelu",
    )


def _tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        layers_per_block=1,
    )


def tiny_sd_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """SD1.5-shaped: UNet (32, 64) channels with cross-attention dim 32, PNDM scheduler like SD1.5."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=IMAGE_SIZE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    tokenizer = tiny_clip_tokenizer()
    return StableDiffusionPipeline(
        vae=_tiny_vae(),
        text_encoder=CLIPTextModel(_clip_config(tokenizer)),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=PNDMScheduler(**SD_SCHEDULER, skip_prk_steps=True, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """SDXL-shaped: two CLIP encoders (32 + 32 = cross-attention 64), pooled 32 + 6 time ids x 8."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=IMAGE_SIZE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,
    )
    tokenizer = tiny_clip_tokenizer()
    return StableDiffusionXLPipeline(
        vae=_tiny_vae(),
        text_encoder=CLIPTextModel(_clip_config(tokenizer)),
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(tokenizer)),
        tokenizer=tokenizer,
        tokenizer_2=tiny_clip_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SD_SCHEDULER, steps_offset=1, timestep_spacing="leading"),
    )


T5_PAD, T5_EOS, T5_UNK, T5_SPACE = "<pad>", "</s>", "<unk>", "\u2581"


def tiny_t5_tokenizer(model_max_length: int = 512) -> T5TokenizerFast:
    """Character-level T5 tokenizer (Unigram, no sentencepiece file, no hub): 192 tokens.

    Ids: <pad> 0, </s> 1, <unk> 2, "\u2581" (word start) 3, then the 94 printable non-space ASCII
    characters, each alone and with a leading "\u2581"; other characters map to <unk>. Appends </s>
    (as T5), pads with <pad>; survives save_pretrained / T5TokenizerFast.from_pretrained (tokenizer.json).
    """
    chars = [c for c in string.printable if not c.isspace()]
    vocab = [(T5_PAD, 0.0), (T5_EOS, 0.0), (T5_UNK, 0.0), (T5_SPACE, -2.0)]
    vocab += [(c, -3.0) for c in chars] + [(T5_SPACE + c, -2.5) for c in chars]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


def tiny_t5(seed: int | None = 0) -> tuple[T5EncoderModel, T5TokenizerFast]:
    """A tiny random T5 v1.1-style encoder (d_model 32, 2 layers, 4 heads x d_kv 8, d_ff 37, gated-gelu,
    vocab 192) and ``tiny_t5_tokenizer()``: input ids (B, L) -> last_hidden_state (B, L, 32).

    ``seed`` None continues the caller's torch RNG (the pipeline builders)."""
    if seed is not None:
        torch.manual_seed(seed)
    tokenizer = tiny_t5_tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5EncoderModel(config).eval(), tokenizer


def tiny_sd3_pipeline(seed: int = 0, t5: bool = False) -> StableDiffusion3Pipeline:
    """SD3-shaped flow-matching pipeline; 1-block VAE (vae_scale_factor 1): 16 px images -> (B, 4, 16, 16)
    latents, patch 1 -> 256 image tokens. FlowMatchEulerDiscreteScheduler(shift=3).

    Text: two CLIPs (77 tokens, 32-d each) concatenated to 64-d and cut to joint_attention_dim 32
    (the pipeline pads/crops the CLIP part to the T5 width); pooled 32 + 32 = 64. ``t5=False`` (the
    default): text_encoder_3 = tokenizer_3 = None and the pipeline uses zeros for the T5 part;
    ``t5=True``: the tiny T5 (``tiny_t5``, d_model 32) as text_encoder_3 / tokenizer_3, built after
    the other parts so they keep the default's weights. prompt_embeds (B, 77 + max_sequence_length
    (default 256), 32), pooled (B, 64).
    """
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=1,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,
        out_channels=4,
    )
    vae = AutoencoderKL(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5305,  # SD3 (medium, 3.5) VAE's
    )
    tokenizer = tiny_clip_tokenizer()
    text_encoder = CLIPTextModelWithProjection(_clip_config(tokenizer))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(tokenizer))
    t5_encoder, t5_tokenizer = tiny_t5(seed=None) if t5 else (None, None)
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tiny_clip_tokenizer(),
        text_encoder_3=t5_encoder,
        tokenizer_3=t5_tokenizer,
    )


def tiny_flux_pipeline(seed: int = 0) -> FluxPipeline:
    """FLUX.1-dev-shaped pipeline (diffusers' FLUX test config with 4 latent channels).

    VAE: 2 blocks (vae_scale_factor 2), 4 latent channels, shift_factor / scaling_factor set (as
    FLUX's VAE), no quant convs: IMAGE_SIZE = 32 px -> (B, 4, 16, 16) latents, packed as 2 x 2
    patches into (B, 64, 16) image tokens (height/width must be multiples of 4).
    Transformer: patch 1, in_channels 16, 1 double + 1 single block, 2 heads x 16, rope axes
    (4, 4, 8), guidance_embeds=True (``guidance_scale`` is a model input, no CFG).
    Text: CLIPTextModel pooled (B, 32) -> pooled_projection_dim 32; tiny T5 prompt_embeds
    (B, max_sequence_length (default 512), 32) -> joint_attention_dim 32; text ids (L, 3).
    Scheduler: FLUX.1-dev's FlowMatchEulerDiscreteScheduler (dynamic shifting: mu from the 64 tokens).
    """
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    )
    vae = AutoencoderKL(
        sample_size=IMAGE_SIZE,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
    )
    tokenizer = tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(_clip_config(tokenizer))
    text_encoder_2, tokenizer_2 = tiny_t5(seed=None)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    return FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def save_tiny_clip(path) -> None:
    """A tiny random CLIPModel (32-px images, 16-d projections) and its tokenizer, saved to ``path``:
    what the clip / pickscore / aesthetic rewards load from a local folder."""
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig

    tokenizer = tiny_clip_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=_clip_config(tokenizer, 16).to_dict(), vision_config=vision.to_dict(), projection_dim=16
    )
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
