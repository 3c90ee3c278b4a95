"""The miniature text-to-image pipeline: the embedded default model and the test bed."""

from tlcm.toy.assets import ASSET_DIR, MINIATURE_SD, MINIATURE_SD3

TEACHER_GUIDANCE_SCALE = 2.0
"""The miniature teacher's default CFG scale w, chosen from the table in docs/toy.md (the paper's
SDXL value, w = 8, over-saturates this tiny model)."""

__all__ = ["ASSET_DIR", "MINIATURE_SD", "MINIATURE_SD3", "TEACHER_GUIDANCE_SCALE"]
