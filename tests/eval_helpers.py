"""Tiny stand-ins for the evaluation metrics' weights (tests/test_eval.py): random 32 px PNG
folders, a tiny open_clip architecture, a tiny bert vocab, an ImageReward checkpoint in the
original key layout, and torch-fidelity's Inception with random weights; nothing is downloaded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TINY_OPEN_CLIP = "tlcm-test-tiny-clip"
TINY_OPEN_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 8, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 1},
}


def write_pngs(folder: Path, count: int, size: int = 32, seed: int = 0, shift: int = 0) -> list[Path]:
    """``count`` random RGB PNGs of ``size`` px (pixel values shifted by ``shift``) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pixels = np.clip(rng.integers(0, 200, (size, size, 3)) + shift, 0, 255).astype(np.uint8)
        paths.append(folder / f"{i:03d}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def tiny_open_clip(folder: Path) -> Path:
    """Register the tiny open_clip architecture and save random weights ({"state_dict": ...}, as the
    HPS checkpoints) to ``folder/tiny_open_clip.pt``; returns the file."""
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"{TINY_OPEN_CLIP}.json"
    config.write_text(json.dumps(TINY_OPEN_CLIP_CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_OPEN_CLIP)
    torch.save({"state_dict": model.state_dict()}, folder / "tiny_open_clip.pt")
    return folder / "tiny_open_clip.pt"


BERT_WORDS = ["a", "red", "cube", "blue", "ball", "cat", "dog", "tree", "photo", "of", "the"]


def tiny_bert_vocab(folder: Path) -> Path:
    """A bert-style vocab.txt: special tokens, letters, word pieces and a few words."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz"]
    tokens += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + [w for w in BERT_WORDS if len(w) > 1]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")
    return folder / "vocab.txt"


ORIGINAL_KEYS = [
    (r"^vision\.embeddings\.class_embedding$", "blip.visual_encoder.cls_token"),
    (r"^vision\.embeddings\.position_embedding$", "blip.visual_encoder.pos_embed"),
    (r"^vision\.embeddings\.patch_embedding\.", "blip.visual_encoder.patch_embed.proj."),
    (r"^vision\.post_layernorm\.", "blip.visual_encoder.norm."),
    (r"^vision\.encoder\.layers\.(\d+)\.layer_norm(\d)\.", r"blip.visual_encoder.blocks.\1.norm\2."),
    (
        r"^vision\.encoder\.layers\.(\d+)\.self_attn\.projection\.",
        r"blip.visual_encoder.blocks.\1.attn.proj.",
    ),
    (r"^vision\.encoder\.layers\.(\d+)\.self_attn\.qkv\.", r"blip.visual_encoder.blocks.\1.attn.qkv."),
    (r"^vision\.encoder\.layers\.(\d+)\.mlp\.", r"blip.visual_encoder.blocks.\1.mlp."),
    (r"^text\.", "blip.text_encoder."),
    (r"^head\.layers\.", "mlp.layers."),
]
"""Our ImageReward keys -> the keys of the released ImageReward.pt (BLIP's timm-style ViT)."""


def original_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict of ``ImageRewardModel`` in ImageReward.pt's key names, plus the unused BLIP
    projections the released file also holds."""
    out = {}
    for key, value in state.items():
        pattern, new = next((p, n) for p, n in ORIGINAL_KEYS if re.search(p, key))
        out[re.sub(pattern, new, key)] = value
    out["blip.vision_proj.weight"] = torch.zeros(4, 4)
    return out


def random_inception(path: Path, monkeypatch) -> Path:
    """torch-fidelity's Inception-v3 with its random initial weights, saved to ``path`` (its
    download and weight loading are switched off while it is built)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with monkeypatch.context() as patch:
        patch.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        patch.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        torch.manual_seed(0)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(net.state_dict(), path)
    return path
