"""Pluggable reward models for preference learning (tlcm.losses.preference).

A reward is a ``Reward``: ``embed(images)`` (B, 3, H, W) in [-1, 1] -> prompt-independent features
(the image tower), ``score(features, prompts) -> (B,)`` (higher = better; both differentiable in
the images for reward feedback), so one image batch is embedded once for several prompt lists
(the hinge's prompts and unrelated prompts); ``reward(images, prompts)`` is both;
``unrelated(prompts, generator) -> list[str]`` gives the negative prompts c_neg of the paper's
hinge (arXiv 2406.05768 Eq. (11); docs/method.md, "The bag of techniques" 2; the loss passes the
step's ``host_generator``: the host reads the draws). ``REWARDS`` maps
a name to a factory ``(RewardSpec, device) -> Reward``: the "reward" view of the scoring registry
(tlcm.scoring), which evaluation metrics share; register your own with
``@register_score(name, "reward")`` (or its alias ``register_reward(name)``). Importing this package
registers the built-in rewards: clip.py (CLIP score, PickScore, aesthetic), digit.py (the miniature's).
"""

from __future__ import annotations

import torch

from tlcm.rewards import clip, digit  # noqa: F401  (register the built-in rewards)
from tlcm.rewards.base import Reward, RewardSpec, shifted_prompts
from tlcm.scoring import REWARDS, register_score


def register_reward(name: str):
    """Decorator registering a factory ``(spec, device) -> Reward`` under ``name``:
    ``register_score(name, "reward")``."""
    return register_score(name, "reward")


def build_reward(name: str, spec: RewardSpec, device: torch.device | str = "cpu") -> Reward:
    """The reward ``name`` loaded from ``spec``; unknown names fail listing the known ones."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; known: {', '.join(sorted(REWARDS))}")
    return REWARDS[name](spec, torch.device(device))


__all__ = ["REWARDS", "Reward", "RewardSpec", "build_reward", "register_reward", "shifted_prompts"]
