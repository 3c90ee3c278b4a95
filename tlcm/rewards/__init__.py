"""Pluggable reward models for preference learning (tlcm.losses.preference).

A reward is a ``Reward``: ``embed(images)`` (B, 3, H, W) in [-1, 1] -> prompt-independent features
(the image tower), ``score(features, prompts) -> (B,)`` (higher = better; both differentiable in
the images for reward feedback), so one image batch is embedded once for several prompt lists
(the hinge's prompts and unrelated prompts); ``reward(images, prompts)`` is both;
``unrelated(prompts, generator) -> list[str]`` gives the negative prompts c_neg of the paper's
hinge (the loss passes the step's ``host_generator``: the host reads the draws). ``REWARDS`` maps
a name to a factory ``(RewardSpec, device) -> Reward``; register your own with ``register_reward``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


class Reward:
    """Base of rewards: subclasses define ``score`` and, when they have an image tower worth
    sharing between prompt lists, ``embed`` (and may change ``unrelated``)."""

    def embed(self, images: torch.Tensor) -> Any:
        """Images (B, 3, H, W) in [-1, 1] -> features of each image, whatever ``score`` reads
        (default: the images themselves)."""
        return images

    def score(self, features: Any, prompts: list[str]) -> torch.Tensor:
        """Features of B images and their prompts (B,) -> rewards (B,)."""
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Rewards (B,) of images (B, 3, H, W) for ``prompts`` (B,)."""
        return self.score(self.embed(images), prompts)

    def unrelated(self, prompts: list[str], generator: torch.Generator) -> list[str]:
        """Unrelated prompts (B,) for the hinge's negative term: another prompt of the batch."""
        return shifted_prompts(prompts, generator)


@dataclass
class RewardSpec:
    """Where a reward's weights are: a local transformers CLIP folder and, for the aesthetic
    reward, a local MLP head file (safetensors, or a pickle loaded with weights_only=True)."""

    clip_folder: str = ""
    head_file: str = ""


def shifted_prompts(prompts: list[str], generator: torch.Generator) -> list[str]:
    """Each prompt's unrelated partner: another prompt of the batch (a random non-zero shift; the
    same text is skipped when the batch has another). Default ``unrelated`` of the rewards."""
    n = len(prompts)
    if n < 2:
        return list(prompts)
    # drawn on the generator's device (the step's host_generator: read without a device sync)
    shift = int(torch.randint(1, n, (1,), generator=generator, device=generator.device))
    out = []
    for i, p in enumerate(prompts):
        j = next((k for k in range(n - 1) if prompts[(i + shift + k) % n] != p), 0)
        out.append(prompts[(i + shift + j) % n])
    return out


REWARDS: dict[str, Callable[[RewardSpec, torch.device], Reward]] = {}
"""Reward name -> factory."""


def register_reward(name: str):
    """Decorator registering a factory ``(spec, device) -> Reward`` under ``name``."""

    def decorate(factory):
        REWARDS[name] = factory
        return factory

    return decorate


def build_reward(name: str, spec: RewardSpec, device: torch.device | str = "cpu") -> Reward:
    """The reward ``name`` loaded from ``spec``; unknown names fail listing the known ones."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; known: {', '.join(sorted(REWARDS))}")
    return REWARDS[name](spec, torch.device(device))


from tlcm.rewards import clip, digit  # noqa: E402,F401  (register the built-in rewards)

__all__ = ["REWARDS", "Reward", "RewardSpec", "build_reward", "register_reward", "shifted_prompts"]
