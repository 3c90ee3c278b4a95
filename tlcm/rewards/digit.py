"""The miniature pipeline's reward: its digit classifier's log-probability of the prompt's digit."""

from __future__ import annotations

import torch

from tlcm.rewards.base import Reward, RewardSpec
from tlcm.scoring import register_score
from tlcm.toy.data import prompt_digit, prompt_for  # noqa: F401  (prompt_digit: re-exported)

DIGIT_S0 = -0.01
"""Hinge threshold on the digit reward r = log p(digit | image): push p above 0.99 (log 0.99 rounded)."""
DIGIT_S_NEG = -4.6
"""Hinge threshold on an unrelated digit's log-probability: keep it below 0.01 (log 0.01 rounded)."""


class DigitReward(Reward):
    """r(x, c) = log p(digit(c) | x) under the miniature's classifier, in (-inf, 0]. Its features
    are the images themselves: the classifier (tiny) runs in ``score``, once per prompt list, which
    keeps the gradients of the miniature's reward runs bit for bit as recorded (sharing its
    log-probabilities would sum them in another order). Its hinge thresholds are log-probabilities
    (``DIGIT_S0``, ``DIGIT_S_NEG``): the base's 16 / 0 (MPS's scale) would keep relu(s0 - r) always
    active and relu(r_neg - s_neg) never."""

    s0 = DIGIT_S0
    s_neg = DIGIT_S_NEG

    def __init__(self, device: torch.device | str = "cpu") -> None:
        from tlcm.toy.metrics import ToyMetrics

        self.classifier = ToyMetrics().classifier.to(device)

    def score(self, features: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Features = images (B, 3, 32, 32) in [-1, 1] -> (B,) log-probabilities (differentiable). The
        digits are host ints picked on the device (no host-to-device copy, which would sync the stream)."""
        logp = self.classifier(features.clamp(-1, 1)).log_softmax(1)
        return torch.stack([logp[i, prompt_digit(p)] for i, p in enumerate(prompts)])

    def unrelated(self, prompts: list[str], generator: torch.Generator) -> list[str]:
        """A prompt for a different digit (uniform over the other nine), same template family."""
        n = len(prompts)  # drawn on the generator's device (the step's host_generator: no sync)
        shift = torch.randint(1, 10, (n,), generator=generator, device=generator.device).tolist()
        return [prompt_for((prompt_digit(p) + s) % 10) for p, s in zip(prompts, shift, strict=True)]


@register_score("digit", "reward")
def _digit(spec: RewardSpec, device: torch.device) -> DigitReward:
    return DigitReward(device)
