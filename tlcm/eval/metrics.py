"""Per-image scores of (image, prompt) pairs, each from local weights (tlcm.eval.weights).

A scorer maps PIL images (B,) and their prompts (B,) to scores (B,) (float32, CPU); a model's
metric is the mean over its images. Each model sees its own preprocessing (the reference
implementation's): CLIP-family models resize the short side to their input size with bicubic
interpolation, center-crop and normalise with the CLIP mean / std.

- clip: CLIP score = 100 * max(cos(image, text), 0) (Hessel et al. 2021's CLIP-S with weight 100
  instead of 2.5, as torchmetrics), with open_clip ViT-g/14 weights (the paper's, arXiv 2406.05768
  Sec. 5.2) or any transformers CLIP folder.
- pickscore: exp(logit_scale) * cos (Kirstain et al. 2023), a transformers CLIP folder.
- hps: HPSv2.1 = cos(image, text) of the HPS-tuned open_clip ViT-H/14 (Wu et al. 2023).
- aesthetic: LAION improved aesthetic predictor, an MLP on unit CLIP ViT-L/14 image embeddings.
- imagereward: tlcm.eval.imagereward.

Each is registered in the scoring registry (tlcm.scoring) with ``@register_score(name, "metric")``;
``SCORERS`` is its metric view. CLIP score (transformers folder), PickScore and aesthetic load
their models as the training rewards of the same names do (tlcm.scoring.clip.ClipScore).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms as T

from tlcm.errors import TLCMError
from tlcm.eval.weights import MetricWeights, need_clip_folder, need_file, need_packages
from tlcm.scoring import METRICS, register_score
from tlcm.scoring.clip import OPENAI_MEAN, OPENAI_STD, ClipScore, ClipScoreName, HeadError, clip_transform

Scorer = Callable[[list[Image.Image], list[str]], torch.Tensor]
BICUBIC = T.InterpolationMode.BICUBIC
SCORERS = METRICS
"""Per-image metric name -> factory (MetricWeights, device) -> Scorer: the scoring registry's metrics."""


def _stack(transform, images: list[Image.Image], device) -> torch.Tensor:
    return torch.stack([transform(im.convert("RGB")) for im in images]).to(device)


class TransformersClip:
    """A CLIP-family score (``ClipScore``) of a transformers CLIP folder on PIL images: CLIP score
    (100 max(cos, 0)), PickScore (exp(logit_scale) cos) or aesthetic (the MLP head)."""

    def __init__(self, name: ClipScoreName, folder: Path, device, head_file: Path | None = None) -> None:
        self.model = ClipScore(name, folder, device, head_file)
        self.clip, self.clamp = self.model.clip, name == "clip"
        mean, std = self.clip.mean.flatten().tolist(), self.clip.std.flatten().tolist()
        self.transform = clip_transform(self.clip.size, mean, std)

    def embed(self, images: list[Image.Image]) -> torch.Tensor:
        """Unit image embeddings (B, D)."""
        return self.clip.pixels(_stack(self.transform, images, self.clip.mean.device))

    def __call__(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        return self.model.score(self.embed(images), prompts, clamp=self.clamp).float().cpu()


def load_open_clip(arch: str, file: Path, field: str, device):
    """(model, tokenizer, image size) of open_clip architecture ``arch`` with weights ``file``."""
    need_file(file, field)
    need_packages(field, "open_clip")
    import open_clip

    try:
        model = open_clip.create_model(arch, pretrained=str(file), device="cpu")  # a local file: no hub
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as err:
        detail = " ".join(str(err).split())[:200]
        raise TLCMError(
            f"{file} does not load as open_clip {arch} ({detail}): check --weights.{field}"
        ) from err
    size = model.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else size
    return model.to(device).eval().requires_grad_(False), open_clip.get_tokenizer(arch), int(size)


class OpenClip:
    """open_clip cosine similarity: CLIP score (100 * max(cos, 0), open_clip's preprocessing) or
    HPS (raw cos, HPS's preprocessing: ToTensor, bicubic resize, center crop, normalise)."""

    def __init__(self, arch: str, file: Path, field: str, device, hps: bool = False) -> None:
        self.model, self.tokenizer, size = load_open_clip(arch, file, field, device)
        self.hps, self.device = hps, device
        hps_order = [
            T.ToTensor(),
            T.Resize(size, BICUBIC),
            T.CenterCrop(size),
            T.Normalize(OPENAI_MEAN, OPENAI_STD),
        ]
        self.transform = T.Compose(hps_order) if hps else clip_transform(size)

    def __call__(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        image = self.model.encode_image(_stack(self.transform, images, self.device), normalize=True)
        text = self.model.encode_text(self.tokenizer(prompts).to(self.device), normalize=True)
        cos = (image.float() * text.float()).sum(-1)
        return (cos if self.hps else 100.0 * cos.clamp(min=0)).cpu()


@register_score("clip", "metric")
def _clip(weights: MetricWeights, device) -> Scorer:
    path = Path(weights.clip)
    if path.is_dir():
        return TransformersClip("clip", need_clip_folder(path, "clip"), device)
    return OpenClip(weights.clip_arch, path, "clip", device)


@register_score("pickscore", "metric")
def _pickscore(weights: MetricWeights, device) -> Scorer:
    return TransformersClip("pickscore", need_clip_folder(weights.pickscore, "pickscore"), device)


@register_score("hps", "metric")
def _hps(weights: MetricWeights, device) -> Scorer:
    return OpenClip(weights.hps_arch, weights.hps, "hps", device, hps=True)


@register_score("imagereward", "metric")
def _image_reward(weights: MetricWeights, device) -> Scorer:
    from tlcm.eval.imagereward import ImageRewardScorer  # transformers' BLIP: loaded to score

    return ImageRewardScorer(weights.image_reward, device)


@register_score("aesthetic", "metric")
def _aesthetic(weights: MetricWeights, device) -> Scorer:
    """LAION aesthetic score: MLP head on the unit CLIP ViT-L/14 image embedding (B, 768) -> (B,)."""
    folder = need_clip_folder(weights.aesthetic_clip, "aesthetic_clip")
    head = need_file(weights.aesthetic_head, "aesthetic_head")
    try:
        return TransformersClip("aesthetic", folder, device, head)
    except HeadError as err:
        raise TLCMError(f"{head} is not the LAION aesthetic head: {err}") from err
