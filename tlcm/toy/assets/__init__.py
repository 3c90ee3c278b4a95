"""The committed miniature pipeline and its metric assets (built by ``python -m tlcm.toy.build``)."""

from pathlib import Path

ASSET_DIR = Path(__file__).parent
MINIATURE_SD = ASSET_DIR / "miniature-sd"
"""The miniature pipeline's diffusers folder (StableDiffusionPipeline layout)."""
MINIATURE_SD3 = ASSET_DIR / "miniature-sd3"
"""The flow-matching miniature (StableDiffusion3Pipeline layout, no T5; built by
``python -m tlcm.toy.build_flow``): the same digits and VAE, a rectified-flow transformer."""
