"""CLIP-based rewards on local transformers folders (no hub access): CLIP score, PickScore-style,
and a LAION-aesthetic-style MLP head on CLIP image embeddings.

All three embed images differentiably: [-1, 1] -> [0, 1] -> bilinear resize to the vision tower's
size -> the folder's normalisation (preprocessor_config.json; OpenAI CLIP's when absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from tlcm.rewards import Reward, RewardSpec, register_reward

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _features(out) -> torch.Tensor:
    """transformers >= 5 returns a ModelOutput from get_*_features; older versions a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ClipEmbedder(nn.Module):
    """A frozen local CLIP model: unit image embeddings (B, D) and cached unit text embeddings."""

    def __init__(self, folder: str | Path, device: torch.device | str = "cpu") -> None:
        super().__init__()
        from transformers import CLIPModel, CLIPTokenizer

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise ValueError(
                f"CLIP folder {str(folder)!r} has no config.json: pass a local transformers CLIP folder "
                "(e.g. one saved with CLIPModel.save_pretrained + its tokenizer)"
            )
        self.model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.model.requires_grad_(False)
        self.tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        pre = folder / "preprocessor_config.json"
        cfg = json.loads(pre.read_text()) if pre.is_file() else {}
        self.register_buffer("mean", torch.tensor(cfg.get("image_mean", OPENAI_MEAN)).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.get("image_std", OPENAI_STD)).view(1, 3, 1, 1))
        self.to(device)
        self.size = self.model.config.vision_config.image_size
        self._text: dict[str, torch.Tensor] = {}

    def image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> unit embeddings (B, D), differentiable."""
        x = (images.clamp(-1, 1) + 1) / 2
        x = F.interpolate(
            x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
        )
        emb = _features(self.model.get_image_features(pixel_values=(x - self.mean) / self.std))
        return F.normalize(emb.float(), dim=-1)

    @torch.no_grad()
    def text(self, prompts: list[str]) -> torch.Tensor:
        """Prompts (B,) -> unit embeddings (B, D); each distinct prompt is encoded once."""
        new = [p for p in dict.fromkeys(prompts) if p not in self._text]
        if new:
            ids = self.tokenizer(new, padding=True, truncation=True, return_tensors="pt").to(self.mean.device)
            emb = F.normalize(_features(self.model.get_text_features(**ids)).float(), dim=-1)
            self._text.update(zip(new, emb, strict=True))
        return torch.stack([self._text[p] for p in prompts])


class ClipScoreReward(Reward):
    """CLIP score (Hessel et al. 2021): 100 * cos(image, text), in [-100, 100]."""

    scale = 100.0

    def __init__(self, folder: str | Path, device: torch.device | str = "cpu") -> None:
        self.clip = ClipEmbedder(folder, device)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Unit CLIP image embeddings (B, D)."""
        return self.clip.image(images)

    def score(self, features: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return self.scale_for() * (features * self.clip.text(prompts)).sum(-1)

    def scale_for(self) -> float:
        return self.scale


class PickScoreReward(ClipScoreReward):
    """PickScore (Kirstain et al. 2023): exp(logit_scale) * cos(image, text) of a CLIP model
    fine-tuned on human preferences (point it at a local PickScore_v1 folder)."""

    def __init__(self, folder: str | Path, device: torch.device | str = "cpu") -> None:
        super().__init__(folder, device)
        self._scale = float(self.clip.model.logit_scale.exp())  # frozen: read once here, not per step

    def scale_for(self) -> float:
        return self._scale


class AestheticHead(nn.Module):
    """LAION improved-aesthetic-predictor MLP on unit CLIP image embeddings (D,) -> score.
    Key names ``layers.{0,2,4,6,7}`` match the released ``sac+logos+ava1-l14-linearMSE.pth``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )  # fmt: skip

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.layers(emb)[:, 0]


def load_head(path: str | Path, dim: int) -> AestheticHead:
    """An AestheticHead for D = ``dim`` from safetensors or a weights_only pickle; a file whose
    keys or shapes do not fit is refused naming the first mismatch."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"aesthetic head file {str(path)!r} does not exist")
    state = load_file(path) if path.suffix == ".safetensors" else torch.load(path, weights_only=True)
    head = AestheticHead(dim)
    own = head.state_dict()
    bad = sorted(set(own) ^ set(state)) or [k for k in own if own[k].shape != state[k].shape]
    if bad:
        k = bad[0]
        what = (
            f"shape {tuple(state[k].shape)} != expected {tuple(own[k].shape)}"
            if k in own and k in state else ("missing" if k in own else "unexpected")
        )  # fmt: skip
        raise ValueError(
            f"{path} does not fit the aesthetic MLP for {dim}-d CLIP embeddings: key {k!r} {what}"
        )
    head.load_state_dict(state)
    return head.eval().requires_grad_(False)


class AestheticReward(Reward):
    """LAION-aesthetic-style score: an MLP head on a CLIP model's unit image embeddings (the
    prompts play no part)."""

    def __init__(self, folder: str | Path, head_file: str | Path, device: torch.device | str = "cpu") -> None:
        self.clip = ClipEmbedder(folder, device)
        self.head = load_head(head_file, self.clip.model.config.projection_dim).to(device)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Unit CLIP image embeddings (B, D)."""
        return self.clip.image(images)

    def score(self, features: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return self.head(features)


def _need(spec: RewardSpec, field: str, reward: str) -> str:
    value = getattr(spec, field)
    if not value:
        raise ValueError(f"the {reward!r} reward needs --...{field.replace('_', '-')} (a local path)")
    return value


register_reward("clip")(lambda spec, device: ClipScoreReward(_need(spec, "clip_folder", "clip"), device))
register_reward("pickscore")(
    lambda spec, device: PickScoreReward(_need(spec, "clip_folder", "pickscore"), device)
)
register_reward("aesthetic")(
    lambda spec, device: AestheticReward(
        _need(spec, "clip_folder", "aesthetic"), _need(spec, "head_file", "aesthetic"), device
    )
)
