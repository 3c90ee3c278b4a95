"""What a reward is (``Reward``), where its weights are (``RewardSpec``) and the default unrelated
prompts (``shifted_prompts``); the rewards themselves and their registry: tlcm.rewards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


class Reward:
    """Base of rewards: subclasses define ``score`` and, when they have an image tower worth
    sharing between prompt lists, ``embed`` (and may change ``unrelated``, ``s0`` and ``s_neg``)."""

    s0: float = 16.0
    """Default hinge threshold on the prompt's reward r(x, c), on this reward's scale (what
    ``PreferenceConfig.s0`` None means): the paper's 16 on MPS's scale (arXiv 2406.05768 Sec. 5.1).
    A reward on another scale sets its own (check one with python -m tlcm.evaluate
    reward-thresholds)."""
    s_neg: float = 0.0
    """Default hinge threshold on the unrelated prompt's reward r(x, c_neg) (the paper's 0, Eq. (11))."""
    reads_prompts: bool = True
    """False for a score of the image alone (the aesthetic head): r(x, c_neg) = r(x, c), so reward
    feedback drops its unrelated-prompt hinge, which would otherwise cancel the first one's
    gradient (zero between the thresholds, the wrong sign above both)."""

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
        j = next((k for k in range(n) if prompts[(i + shift + k) % n] != p), 0)  # every offset mod n
        out.append(prompts[(i + shift + j) % n])
    return out
