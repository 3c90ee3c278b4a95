"""Per-sample distances between latents, selectable by name in MLCD and LCD configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(pred (B, C, h, w), target (B, C, h, w)) -> per-sample distance (B,)."""


def l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample: mean_{c,h,w} (pred - target)^2, shape (B,)."""
    return (pred - target).square().flatten(1).mean(1)


def pseudo_huber(pred: torch.Tensor, target: torch.Tensor, c: float = 0.03) -> torch.Tensor:
    """Pseudo-Huber sqrt(||d||^2 / D + c^2) - c per sample (iCT, arXiv 2310.14189, Sec. 3.3), (B,)."""
    return ((pred - target).square().flatten(1).mean(1) + c**2).sqrt() - c


DISTANCES: dict[str, Distance] = {"l2": l2, "huber": pseudo_huber}
"""Name -> distance without weights."""
LEARNED_DISTANCES: dict[str, Callable[[Path | None], Distance]] = {}
"""Name -> factory (weights file, None: its default) of a distance with learned weights; latent
LPIPS registers itself here when its module is imported."""


def get_distance(name: str, weights: str = "") -> Distance:
    """The distance called ``name`` (a learned one with the weights file ``weights``, empty: its
    default); unknown names, a missing weights file, or weights for a distance that takes none
    raise a ValueError saying which."""
    if name in LEARNED_DISTANCES:
        return LEARNED_DISTANCES[name](Path(weights) if weights else None)
    if name not in DISTANCES:
        known = sorted([*DISTANCES, *LEARNED_DISTANCES])
        raise ValueError(f"unknown distance {name!r}; known: {', '.join(known)}")
    if weights:
        raise ValueError(f"distance {name!r} has no weights, but distance_weights is {weights!r}")
    return DISTANCES[name]
