"""CLIP-based rewards on local transformers folders (no hub access): CLIP score, PickScore-style,
and a LAION-aesthetic-style MLP head on CLIP image embeddings.

Each loads its model as its evaluation metric does (tlcm.scoring.clip.ClipScore) and embeds
images differentiably: [-1, 1] -> [0, 1] -> bilinear resize to the vision tower's size -> the
folder's normalisation (preprocessor_config.json; OpenAI CLIP's when absent).
"""

from __future__ import annotations

from pathlib import Path

import torch

from tlcm.rewards.base import Reward, RewardSpec
from tlcm.scoring import register_score
from tlcm.scoring.clip import (  # noqa: F401  (AestheticHead, ClipEmbedder, load_head: re-exported)
    AestheticHead,
    ClipEmbedder,
    ClipScore,
    ClipScoreName,
    load_head,
)


class ClipReward(Reward):
    """A CLIP-family score (``ClipScore``: "clip" 100 cos in [-100, 100], "pickscore"
    exp(logit_scale) cos, "aesthetic" the MLP head) as a differentiable reward; ``clip`` is its
    ClipEmbedder."""

    def __init__(
        self, name: ClipScoreName, folder: str | Path, device: torch.device | str = "cpu", head_file=None
    ) -> None:
        self.model = ClipScore(name, folder, device, head_file)
        self.clip = self.model.clip
        self.reads_prompts = name != "aesthetic"  # the head scores the image embedding alone

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Unit CLIP image embeddings (B, D)."""
        return self.clip.image(images)

    def score(self, features: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return self.model.score(features, prompts)


def _need(spec: RewardSpec, field: str, reward: str) -> str:
    value = getattr(spec, field)
    if not value:
        raise ValueError(
            f"the {reward!r} reward needs {field} (a local path; the flag: .{field.replace('_', '-')})"
        )
    return value


@register_score("clip", "reward")
def _clip(spec: RewardSpec, device: torch.device) -> ClipReward:
    return ClipReward("clip", _need(spec, "clip_folder", "clip"), device)


@register_score("pickscore", "reward")
def _pickscore(spec: RewardSpec, device: torch.device) -> ClipReward:
    return ClipReward("pickscore", _need(spec, "clip_folder", "pickscore"), device)


@register_score("aesthetic", "reward")
def _aesthetic(spec: RewardSpec, device: torch.device) -> ClipReward:
    folder, head = _need(spec, "clip_folder", "aesthetic"), _need(spec, "head_file", "aesthetic")
    return ClipReward("aesthetic", folder, device, head)
