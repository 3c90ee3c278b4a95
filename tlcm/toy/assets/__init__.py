"""The committed miniature pipeline and its metric assets (built by ``python -m tlcm.toy.build``)."""

from pathlib import Path

ASSET_DIR = Path(__file__).parent
MINIATURE_SD = ASSET_DIR / "miniature-sd"
"""The miniature pipeline's diffusers folder (StableDiffusionPipeline layout)."""
MINIATURE_PROMPTS = ASSET_DIR / "prompts.txt"
"""The miniatures' 40 training prompts as a prompt file (``tlcm.toy.data.all_prompts``, one per
line): what an unset ``data.prompts`` means on a bundled miniature, and what a run of another model
(a test's tiny stand-in) passes to train on them on purpose."""
MINIATURE_SD3 = ASSET_DIR / "miniature-sd3"
"""The flow-matching miniature (StableDiffusion3Pipeline layout, no T5; built by
``python -m tlcm.toy.build_flow``): the same digits and VAE, a rectified-flow transformer."""


def is_miniature(path) -> bool:
    """Whether ``path`` is one of the bundled miniatures' folders (whose prompts are the default)."""
    return Path(path).resolve() in (MINIATURE_SD.resolve(), MINIATURE_SD3.resolve())


METRIC_FILES = ("digit_classifier.safetensors", "reference_stats.safetensors")
"""The digit metrics' assets (classifier, FD reference statistics), written by a build beside its
pipeline folder (OUT/miniature-sd next to OUT/digit_classifier.safetensors)."""


def digit_assets(model) -> Path | None:
    """The metric assets of the digit miniature ``model``: the folder holding it when that folder
    holds ``METRIC_FILES`` (a ``tlcm.toy.build`` layout, the bundled miniatures included), else None:
    another model, on which the digit classifier and statistics would score nonsense."""
    folder = Path(model).resolve().parent
    return folder if all((folder / name).is_file() for name in METRIC_FILES) else None
