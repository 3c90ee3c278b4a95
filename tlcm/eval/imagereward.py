"""ImageReward (Xu et al. 2023, arXiv 2304.05977) on transformers' BLIP modules, local files only.

The ``image-reward`` package cannot serve here: it pins timm==0.6.13 (this project needs timm >= 1)
and fairscale, imports helpers that transformers 5 removed, and fetches ``med_config.json`` and the
bert-base-uncased tokenizer from the hub. The model is small enough to restate: BLIP's ViT-L/16
(224 px) image encoder, BLIP's BERT text encoder with cross-attention to the image tokens, an MLP
head on the text [CLS] token, then (r - 0.1672) / 1.0333. ``ImageReward.pt``'s keys map onto
``BlipVisionModel`` / ``BlipTextModel`` with the renames of transformers' own BLIP conversion.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from tlcm.errors import TLCMError
from tlcm.eval.weights import need_file
from tlcm.scoring.clip import AestheticHead, clip_transform

REWARD_MEAN, REWARD_STD = 0.16717362830052426, 1.0333394966054072
MAX_TOKENS = 35


@dataclass(frozen=True)
class BlipSizes:
    """Sizes of ImageReward's BLIP (BLIP "large": ViT-L/16 at 224 px, BERT-base text encoder)."""

    vision_width: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    image_size: int = 224
    patch_size: int = 16
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    vocab_size: int = 30524  # bert-base-uncased + [DEC] + [ENC]


VISION_RENAMES = [
    (r"^blip\.visual_encoder\.cls_token$", "vision.embeddings.class_embedding"),
    (r"^blip\.visual_encoder\.pos_embed$", "vision.embeddings.position_embedding"),
    (r"^blip\.visual_encoder\.patch_embed\.proj\.", "vision.embeddings.patch_embedding."),
    (r"^blip\.visual_encoder\.norm\.", "vision.post_layernorm."),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.norm(\d)\.", r"vision.encoder.layers.\1.layer_norm\2."),
    (
        r"^blip\.visual_encoder\.blocks\.(\d+)\.attn\.proj\.",
        r"vision.encoder.layers.\1.self_attn.projection.",
    ),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.attn\.qkv\.", r"vision.encoder.layers.\1.self_attn.qkv."),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.mlp\.", r"vision.encoder.layers.\1.mlp."),
    (r"^blip\.text_encoder\.", "text."),
    (r"^mlp\.layers\.", "head.layers."),
]
"""ImageReward.pt key patterns -> this module's keys (the rest of the checkpoint is unused)."""


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An ImageReward checkpoint's state dict in this module's key names (unmapped keys dropped)."""
    out = {}
    for key, value in state.items():
        for pattern, new in VISION_RENAMES:
            if re.search(pattern, key):
                out[re.sub(pattern, new, key)] = value
                break
    return out


class ImageRewardModel(nn.Module):
    """BLIP image encoder + cross-attending text encoder + MLP head: (pixels (B, 3, S, S), token ids
    (B, L), mask (B, L)) -> normalised rewards (B,)."""

    def __init__(self, sizes: BlipSizes = BlipSizes()) -> None:
        super().__init__()
        from transformers import BlipTextConfig, BlipVisionConfig, BlipVisionModel
        from transformers.models.blip.modeling_blip_text import BlipTextModel

        vision = BlipVisionConfig(
            hidden_size=sizes.vision_width, intermediate_size=4 * sizes.vision_width,
            num_hidden_layers=sizes.vision_layers, num_attention_heads=sizes.vision_heads,
            image_size=sizes.image_size, patch_size=sizes.patch_size, layer_norm_eps=1e-6, hidden_act="gelu",
        )  # fmt: skip
        text = BlipTextConfig(
            vocab_size=sizes.vocab_size, hidden_size=sizes.text_width, encoder_hidden_size=sizes.vision_width,
            intermediate_size=4 * sizes.text_width, num_hidden_layers=sizes.text_layers,
            num_attention_heads=sizes.text_heads, max_position_embeddings=512, layer_norm_eps=1e-12,
            hidden_act="gelu", pad_token_id=0, bos_token_id=None, sep_token_id=None,
        )  # fmt: skip
        self.vision = BlipVisionModel(vision)
        self.text = BlipTextModel(text, add_pooling_layer=False)
        self.head = AestheticHead(sizes.text_width)  # ImageReward's MLP: the same 5 linear layers

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        image = self.vision(pixel_values=pixels).last_hidden_state  # (B, 1 + patches, vision_width)
        image_mask = torch.ones(image.shape[:-1], dtype=torch.long, device=image.device)
        hidden = self.text(
            input_ids=ids, attention_mask=mask, encoder_hidden_states=image, encoder_attention_mask=image_mask
        ).last_hidden_state  # (B, L, text_width)
        return (self.head(hidden[:, 0].float()) - REWARD_MEAN) / REWARD_STD


class ImageRewardScorer:
    """ImageReward of (image, prompt) pairs from a folder with ImageReward.pt and bert-base-uncased's
    vocab.txt: PIL images (B,), prompts (B,) -> (B,)."""

    def __init__(self, folder: Path, device, sizes: BlipSizes = BlipSizes()) -> None:
        from transformers import BertTokenizer

        folder = Path(folder)
        weights = need_file(folder / "ImageReward.pt", "image_reward")
        need_file(folder / "vocab.txt", "image_reward")
        self.tokenizer = BertTokenizer.from_pretrained(folder, local_files_only=True)
        self.tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
            raise TLCMError(
                f"{weights} is not a readable ImageReward checkpoint ({err}): re-download it"
            ) from err
        self.model = ImageRewardModel(sizes)
        state = convert_state_dict(state.get("state_dict", state))
        missing = sorted(set(self.model.state_dict()) - set(state))
        if missing:
            raise TLCMError(f"{weights} is not an ImageReward checkpoint of this size (no {missing[0]})")
        try:
            self.model.load_state_dict(state, strict=False)
        except RuntimeError as err:
            raise TLCMError(
                f"{weights} does not fit ImageReward's BLIP: {str(err).splitlines()[-1]}"
            ) from err
        self.model.to(device).eval().requires_grad_(False)
        self.device, self.transform = device, clip_transform(sizes.image_size)

    def __call__(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        ).to(self.device)
        pixels = torch.stack([self.transform(im.convert("RGB")) for im in images]).to(self.device)
        return self.model(pixels, tokens.input_ids, tokens.attention_mask).float().cpu()
