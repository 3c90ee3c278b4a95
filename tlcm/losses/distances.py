"""Per-sample distances between latents, selectable by name in MLCD and LCD configs (the d of
arXiv 2406.05768 Eqs. (7) and (10); docs/method.md, "Stage 1" and "Stage 2")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(pred (B, C, h, w), target (B, C, h, w)) -> per-sample distance (B,)."""


def l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample: mean_{c,h,w} (pred - target)^2, shape (B,) (the paper's
    ||.||_2^2 divided by the element count D)."""
    return (pred - target).square().flatten(1).mean(1)


def pseudo_huber(pred: torch.Tensor, target: torch.Tensor, c: float = 0.03) -> torch.Tensor:
    """Pseudo-Huber sqrt(||d||^2 / D + c^2) - c per sample, (B,): iCT's (Song & Dhariwal 2024,
    arXiv 2310.14189, "Pseudo-Huber metric functions") sqrt(||d||^2 + c^2) - c on the per-element
    mean, so c is per element (not in the TLCM paper: docs/method.md, "Stage 1")."""
    return ((pred - target).square().flatten(1).mean(1) + c**2).sqrt() - c


def elementwise_huber(pred: torch.Tensor, target: torch.Tensor, c: float = 0.001) -> torch.Tensor:
    """Pseudo-Huber per element, averaged per sample, (B,): mean_{c,h,w} sqrt(d^2 + c^2) - c with
    c = 0.001, LCM's and PCM's ``huber`` (diffusers' train_lcm_distill_*: ``torch.sqrt((pred -
    target) ** 2 + huber_c**2) - huber_c``; docs/zoo-methods.md). Near l1 for |d| >> c."""
    return ((pred - target).square() + c**2).sqrt().sub(c).flatten(1).mean(1)


DISTANCES: dict[str, Distance] = {"l2": l2, "huber": pseudo_huber, "elementwise_huber": elementwise_huber}
"""Name -> distance without weights."""


def _latent_lpips(weights: Path | None) -> Distance:
    from tlcm.losses.latent_lpips import latent_lpips_distance  # its network: imported when chosen

    return latent_lpips_distance(weights)


LEARNED_DISTANCES: dict[str, Callable[[Path | None], Distance]] = {"latent_lpips": _latent_lpips}
"""Name -> factory (weights file, None: its default) of a distance with learned weights; each
imports its module when first chosen."""


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
