"""The committed miniature pipeline and its metric assets (built by ``python -m tlcm.toy.build``)."""

from pathlib import Path

ASSET_DIR = Path(__file__).parent
MINIATURE_SD = ASSET_DIR / "miniature-sd"
"""The miniature pipeline's diffusers folder (StableDiffusionPipeline layout)."""
