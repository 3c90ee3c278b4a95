"""Image grids: what people look at instead of reading numbers."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.utils import make_grid


def save_grid(images: torch.Tensor, path: str | Path, nrow: int, min_side: int = 64) -> Path:
    """Write images (N, 3, H, W) in [-1, 1] as one PNG grid with ``nrow`` images per row.

    Small images are upscaled (nearest) to at least ``min_side`` pixels so that a 32 px digit is
    visible; the parent folder is created.
    """
    images = images.detach().float().cpu().clamp(-1, 1) * 0.5 + 0.5
    factor = max(1, -(-min_side // images.shape[-1]))
    if factor > 1:
        images = F.interpolate(images, scale_factor=factor, mode="nearest")
    grid = make_grid(images, nrow=nrow, padding=2, pad_value=0.5)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(path)
    return path
