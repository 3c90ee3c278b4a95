"""Where each metric's weights live (local files only, no hub at run time) and the one-line error
that names the file to fetch, where from, and where to put it.

Default layout (docs/evaluation.md), all under ``weights/eval/``; every path is a flag
(``--weights.clip PATH``)::

    weights-inception-2015-12-05-6726825d.pth         FID, FID-T (torch-fidelity's TF-Inception)
    CLIP-ViT-g-14-laion2B-s34B-b88K/open_clip_pytorch_model.bin   CLIP score (or a transformers folder)
    PickScore_v1/                                      PickScore (transformers CLIP folder + tokenizer)
    HPS_v2.1_compressed.pt                             HPSv2.1 (open_clip ViT-H-14)
    ImageReward/ImageReward.pt, ImageReward/vocab.txt  ImageReward (BLIP) + bert-base-uncased vocab
    sac+logos+ava1-l14-linearMSE.pth                   LAION aesthetic head
    clip-vit-large-patch14/                            its CLIP ViT-L/14 (transformers folder)
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tlcm.errors import TLCMError

ROOT = Path("weights/eval")


@dataclass
class MetricWeights:
    """Local weights of the metrics (see docs/evaluation.md for where to download each)."""

    inception: Path = ROOT / "weights-inception-2015-12-05-6726825d.pth"
    """FID / FID-T: torch-fidelity's port of the TF Inception-v3 (a .pth state dict)."""
    clip: Path = ROOT / "CLIP-ViT-g-14-laion2B-s34B-b88K" / "open_clip_pytorch_model.bin"
    """CLIP score: an open_clip weights file (arch --weights.clip-arch) or a transformers CLIP folder."""
    clip_arch: str = "ViT-g-14"
    """open_clip architecture of --weights.clip when it is a file."""
    pickscore: Path = ROOT / "PickScore_v1"
    """PickScore: transformers CLIP folder (PickScore_v1 weights + the CLIP-ViT-H-14 tokenizer)."""
    hps: Path = ROOT / "HPS_v2.1_compressed.pt"
    """HPSv2.1: the HPS checkpoint (open_clip weights of arch --weights.hps-arch)."""
    hps_arch: str = "ViT-H-14"
    """open_clip architecture of the HPS checkpoint."""
    image_reward: Path = ROOT / "ImageReward"
    """ImageReward: a folder with ImageReward.pt and bert-base-uncased's vocab.txt."""
    aesthetic_head: Path = ROOT / "sac+logos+ava1-l14-linearMSE.pth"
    """LAION aesthetic predictor: the MLP head (.pth or .safetensors)."""
    aesthetic_clip: Path = ROOT / "clip-vit-large-patch14"
    """LAION aesthetic predictor: its CLIP ViT-L/14 (transformers folder)."""


HF = "https://huggingface.co"
SOURCES = {
    "inception": "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth",
    "clip": f"{HF}/laion/CLIP-ViT-g-14-laion2B-s34B-b88K (open_clip_pytorch_model.bin)",
    "pickscore": f"{HF}/yuvalkirstain/PickScore_v1 (config.json + weights) with the tokenizer and "
    f"preprocessor files of {HF}/laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    "hps": f"{HF}/xswu/HPSv2 (HPS_v2.1_compressed.pt)",
    "image_reward": f"{HF}/THUDM/ImageReward (ImageReward.pt) and {HF}/google-bert/bert-base-uncased "
    "(vocab.txt)",
    "aesthetic_head": "https://github.com/christophschuhmann/improved-aesthetic-predictor "
    "(sac+logos+ava1-l14-linearMSE.pth)",
    "aesthetic_clip": f"{HF}/openai/clip-vit-large-patch14 (config.json, weights, tokenizer files)",
}
"""MetricWeights field -> where to download it."""

CLIP_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


def _fix(field: str, path: Path) -> str:
    return f"download it from {SOURCES[field]} to {path} (or pass --weights.{field.replace('_', '-')} PATH)"


def need_file(path: Path, field: str) -> Path:
    """``path`` if it is a file, else a one-line TLCMError naming it and where to get it."""
    path = Path(path)
    if not path.is_file():
        raise TLCMError(f"{path} is missing: {_fix(field, path)}")
    return path


def need_clip_folder(path: Path, field: str) -> Path:
    """``path`` if it is a transformers CLIP folder (config.json + tokenizer), else a one-line error."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise TLCMError(f"{path}/config.json is missing (a transformers CLIP folder): {_fix(field, path)}")
    if not any((path / f).is_file() for f in CLIP_TOKENIZER_FILES):
        raise TLCMError(
            f"{path} has no CLIP tokenizer ({' or '.join(CLIP_TOKENIZER_FILES)}): {_fix(field, path)}"
        )
    return path


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None
        return False


def need_packages(metric: str, *modules: str) -> None:
    """A one-line TLCMError unless every module imports (the optional ``[eval]`` extra)."""
    missing = [m for m in modules if not _importable(m)]
    if missing:
        raise TLCMError(
            f"the {metric} metric needs {', '.join(missing)}: pip install -e '.[eval]' (docs/evaluation.md)"
        )
