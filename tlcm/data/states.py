"""Typed states of the teacher's trajectory that MLCD trains on (from MDS, or from the cache)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TrajectoryStates:
    """MLCD's states for B samples (stage 1, docs/method.md): x_tm (B, C, h, w) on the teacher's
    trajectory at t_m (B,), t_n (B,) the skip target, t_s (B,) the lower edge of their segment, and
    x_tn (B, C, h, w) the teacher's state at t_n when known (the cache), else None (MLCD makes it
    with one teacher step)."""

    x_tm: torch.Tensor
    t_m: torch.Tensor
    t_n: torch.Tensor
    t_s: torch.Tensor
    x_tn: torch.Tensor | None = None
