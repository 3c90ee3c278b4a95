"""The miniature text-to-image pipeline: the embedded default model and the test bed."""

import os
from pathlib import Path

from tlcm.toy.assets import ASSET_DIR, MINIATURE_PROMPTS, MINIATURE_SD, MINIATURE_SD3, is_miniature

MINIATURE_DIGITS = Path(os.environ.get("TLCM_CACHE", Path.home() / ".cache" / "tlcm")) / "miniature-digits"
"""The miniature's real training digits as an image folder (metadata.jsonl), for recipes that train
on real images: written by ``tlcm.data.images.open_images`` on first use (3594 PNGs, ~10 s, needs
scikit-learn); ``$TLCM_CACHE`` moves it."""

TEACHER_GUIDANCE_SCALE = 2.0
"""The miniature teacher's default CFG scale w, chosen from the table in docs/toy.md (the paper's
SDXL value, w = 8, over-saturates this tiny model)."""

__all__ = [
    "ASSET_DIR",
    "MINIATURE_DIGITS",
    "MINIATURE_PROMPTS",
    "MINIATURE_SD",
    "MINIATURE_SD3",
    "TEACHER_GUIDANCE_SCALE",
    "is_miniature",
]
