"""Per-image scores of (image, prompt) pairs, each from local weights (tlcm.eval.weights).

A scorer maps PIL images (B,) and their prompts (B,) to scores (B,) (float32, CPU); a model's
metric is the mean over its images. Each model sees its own preprocessing (the reference
implementation's): CLIP-family models resize the short side to their input size with bicubic
interpolation, center-crop and normalise with the CLIP mean / std.

- clip: CLIP score = 100 * max(cos(image, text), 0) (Hessel et al. 2021, as torchmetrics), with
  open_clip ViT-g/14 weights (the paper's) or any transformers CLIP folder.
- pickscore: exp(logit_scale) * cos (Kirstain et al. 2023), a transformers CLIP folder.
- hps: HPSv2.1 = cos(image, text) of the HPS-tuned open_clip ViT-H/14 (Wu et al. 2023).
- aesthetic: LAION improved aesthetic predictor, an MLP on unit CLIP ViT-L/14 image embeddings.
- imagereward: tlcm.eval.imagereward.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from tlcm.errors import TLCMError
from tlcm.eval.weights import MetricWeights, need_clip_folder, need_file, need_packages
from tlcm.rewards.clip import OPENAI_MEAN, OPENAI_STD, ClipEmbedder, _features, load_head

Scorer = Callable[[list[Image.Image], list[str]], torch.Tensor]
BICUBIC = T.InterpolationMode.BICUBIC


def clip_transform(size: int, mean=OPENAI_MEAN, std=OPENAI_STD) -> T.Compose:
    """CLIP's preprocessing of one PIL image -> (3, size, size)."""
    return T.Compose(
        [T.Resize(size, BICUBIC), T.CenterCrop(size), T.ToTensor(), T.Normalize(list(mean), list(std))]
    )


def _stack(transform, images: list[Image.Image], device) -> torch.Tensor:
    return torch.stack([transform(im.convert("RGB")) for im in images]).to(device)


class TransformersClip:
    """Cosine similarity of a transformers CLIP folder, times 100 (CLIP score, clamped at 0) or
    exp(logit_scale) (PickScore)."""

    def __init__(self, folder: Path, field: str, device, pickscore: bool = False) -> None:
        self.clip = ClipEmbedder(need_clip_folder(folder, field), device)
        self.scale = float(self.clip.model.logit_scale.exp()) if pickscore else 100.0
        self.clamp = not pickscore
        mean, std = self.clip.mean.flatten().tolist(), self.clip.std.flatten().tolist()
        self.transform = clip_transform(self.clip.size, mean, std)

    def embed(self, images: list[Image.Image]) -> torch.Tensor:
        """Unit image embeddings (B, D)."""
        pixels = _stack(self.transform, images, self.clip.mean.device)
        return F.normalize(_features(self.clip.model.get_image_features(pixel_values=pixels)).float(), dim=-1)

    def __call__(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        cos = (self.embed(images) * self.clip.text(prompts)).sum(-1)
        return (self.scale * (cos.clamp(min=0) if self.clamp else cos)).cpu()


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


class Aesthetic:
    """LAION aesthetic score: MLP head on the unit CLIP ViT-L/14 image embedding (B, 768) -> (B,)."""

    def __init__(self, weights: MetricWeights, device) -> None:
        self.clip = TransformersClip(weights.aesthetic_clip, "aesthetic_clip", device)
        head = need_file(weights.aesthetic_head, "aesthetic_head")
        try:
            self.head = load_head(head, self.clip.clip.model.config.projection_dim).to(device)
        except (ValueError, RuntimeError, OSError) as err:
            raise TLCMError(f"{head} is not the LAION aesthetic head: {err}") from err

    def __call__(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        return self.head(self.clip.embed(images)).float().cpu()


def _clip(weights: MetricWeights, device) -> Scorer:
    path = Path(weights.clip)
    if path.is_dir():
        return TransformersClip(path, "clip", device)
    return OpenClip(weights.clip_arch, path, "clip", device)


def _image_reward(weights: MetricWeights, device) -> Scorer:
    from tlcm.eval.imagereward import ImageRewardScorer

    return ImageRewardScorer(weights.image_reward, device)


SCORERS: dict[str, Callable[[MetricWeights, torch.device], Scorer]] = {
    "clip": _clip,
    "pickscore": lambda w, device: TransformersClip(w.pickscore, "pickscore", device, pickscore=True),
    "hps": lambda w, device: OpenClip(w.hps_arch, w.hps, "hps", device, hps=True),
    "imagereward": _image_reward,
    "aesthetic": Aesthetic,
}
"""Per-image metric name -> factory (MetricWeights, device) -> Scorer."""
