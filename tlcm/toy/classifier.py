"""The digit classifier behind the miniature pipeline's metrics (CLIP-score and FID analogues)."""

from __future__ import annotations

import torch
from torch import nn


class DigitClassifier(nn.Module):
    """Small CNN on (N, 3, 32, 32) images in [-1, 1]; ``features`` are the 64-d FD embedding."""

    def __init__(self, width: int = 32, feature_dim: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, feature_dim, 3, padding=1),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(feature_dim, 10)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, 32, 32) in [-1, 1] -> (N, feature_dim)."""
        return self.body(images.float().mean(dim=1, keepdim=True))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, 32, 32) in [-1, 1] -> logits (N, 10)."""
        return self.head(self.features(images))
