"""The one registry of image scores, shared by training rewards and evaluation metrics.

A score rates images against their prompts (higher = better). It has up to two uses, each a
factory registered under the score's name with ``@register_score(name, use)``:

- ``"reward"``: ``(tlcm.rewards.RewardSpec, device) -> tlcm.rewards.Reward``, differentiable in
  images (B, 3, H, W) in [-1, 1]: preference learning's reward (tlcm.losses.preference).
- ``"metric"``: ``(tlcm.eval.weights.MetricWeights, device) -> Scorer``, PIL images (B,) and prompts
  (B,) -> (B,) float32 on the CPU, with the reference implementation's preprocessing
  (tlcm.eval.metrics).

``REWARDS`` and ``METRICS`` are the registry's views by use (score name -> factory). A score that
is both (CLIP score, PickScore, LAION aesthetic) loads its model one way for both:
``tlcm.scoring.clip.ClipScore``. The built-in rewards register when tlcm.rewards is imported, the
built-in metrics when tlcm.eval.metrics is; this package imports neither (they import it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Literal

Use = Literal["reward", "metric"]
USES: tuple[Use, ...] = ("reward", "metric")

Factory = Callable[..., Any]
"""``(spec or weights, device) -> reward or scorer``."""

SCORES: dict[str, dict[Use, Factory]] = {}
"""Score name -> {use: factory}."""


def register_score(name: str, use: Use) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory`` as the ``use`` ("reward" or "metric") of the score ``name``.
    Another factory already registered there is refused (assign to ``REWARDS`` / ``METRICS`` to
    replace one on purpose)."""
    if use not in USES:
        raise ValueError(f"use must be one of {USES}, got {use!r}")

    def decorate(factory: Factory) -> Factory:
        current = SCORES.get(name, {}).get(use)
        if current is not None and current is not factory:
            raise ValueError(f"a {use} named {name!r} is already registered ({current!r})")
        SCORES.setdefault(name, {})[use] = factory
        return factory

    return decorate


class ScoreView(MutableMapping[str, Factory]):
    """The factories of one use by score name: a live view of ``SCORES`` (setting an item
    registers, deleting unregisters)."""

    def __init__(self, use: Use) -> None:
        self.use = use

    def __getitem__(self, name: str) -> Factory:
        try:
            return SCORES[name][self.use]
        except KeyError:
            raise KeyError(name) from None

    def __setitem__(self, name: str, factory: Factory) -> None:
        SCORES.setdefault(name, {})[self.use] = factory

    def __delitem__(self, name: str) -> None:
        self[name]  # noqa: B018  (KeyError when absent)
        del SCORES[name][self.use]
        if not SCORES[name]:
            del SCORES[name]

    def __iter__(self) -> Iterator[str]:
        return iter([name for name, uses in SCORES.items() if self.use in uses])

    def __len__(self) -> int:
        return sum(self.use in uses for uses in SCORES.values())

    def __repr__(self) -> str:
        return f"ScoreView({self.use!r}: {sorted(self)})"


REWARDS = ScoreView("reward")
"""Reward name -> factory ``(RewardSpec, device) -> Reward`` (complete once tlcm.rewards is imported)."""
METRICS = ScoreView("metric")
"""Metric name -> factory ``(MetricWeights, device) -> Scorer`` (complete once tlcm.eval.metrics is
imported)."""

__all__ = ["METRICS", "REWARDS", "SCORES", "ScoreView", "register_score"]
