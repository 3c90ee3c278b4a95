"""CLIP-family scores on local transformers CLIP folders (no hub access), loaded one way for the
training rewards (tlcm.rewards.clip) and the evaluation metrics (tlcm.eval.metrics): CLIP score,
PickScore and the LAION aesthetic MLP head on CLIP image embeddings (``ClipScore``).

The uses differ only in how images reach the image tower: a reward embeds tensors in [-1, 1]
differentiably (``ClipEmbedder.image``: bilinear resize to the tower's size, the folder's
normalisation: preprocessor_config.json, OpenAI CLIP's when absent); a metric embeds PIL images
with CLIP's reference preprocessing (``clip_transform``: bicubic short side, center crop) through
``ClipEmbedder.pixels``.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def features_tensor(out) -> torch.Tensor:
    """transformers >= 5 returns a ModelOutput from get_*_features; older versions a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ClipEmbedder(nn.Module):
    """A frozen local CLIP model: unit image embeddings (B, D) and cached unit text embeddings."""

    def __init__(self, folder: str | Path, device: torch.device | str = "cpu") -> None:
        super().__init__()
        from transformers import CLIPModel, CLIPTokenizer

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise ValueError(
                f"CLIP folder {str(folder)!r} has no config.json: pass a local transformers CLIP folder "
                "(e.g. one saved with CLIPModel.save_pretrained + its tokenizer)"
            )
        self.model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.model.requires_grad_(False)
        self.tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        pre = folder / "preprocessor_config.json"
        cfg = json.loads(pre.read_text()) if pre.is_file() else {}
        self.register_buffer("mean", torch.tensor(cfg.get("image_mean", OPENAI_MEAN)).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.get("image_std", OPENAI_STD)).view(1, 3, 1, 1))
        self.to(device)
        self.size = self.model.config.vision_config.image_size
        self._text: dict[str, torch.Tensor] = {}

    def image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> unit embeddings (B, D), differentiable."""
        x = (images.clamp(-1, 1) + 1) / 2
        x = F.interpolate(
            x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
        )
        return self.pixels((x - self.mean) / self.std)

    def pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Preprocessed pixels (B, 3, size, size) -> unit embeddings (B, D)."""
        emb = features_tensor(self.model.get_image_features(pixel_values=pixel_values))
        return F.normalize(emb.float(), dim=-1)

    @torch.no_grad()
    def text(self, prompts: list[str]) -> torch.Tensor:
        """Prompts (B,) -> unit embeddings (B, D); each distinct prompt is encoded once."""
        new = [p for p in dict.fromkeys(prompts) if p not in self._text]
        if new:
            ids = self.tokenizer(new, padding=True, truncation=True, return_tensors="pt").to(self.mean.device)
            emb = F.normalize(features_tensor(self.model.get_text_features(**ids)).float(), dim=-1)
            self._text.update(zip(new, emb, strict=True))
        return torch.stack([self._text[p] for p in prompts])


class HeadError(ValueError):
    """An aesthetic head file that does not exist, does not load, or does not fit the MLP."""


class AestheticHead(nn.Module):
    """LAION improved-aesthetic-predictor MLP on unit CLIP image embeddings (D,) -> score.
    Key names ``layers.{0,2,4,6,7}`` match the released ``sac+logos+ava1-l14-linearMSE.pth``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )  # fmt: skip

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.layers(emb)[:, 0]


def load_head(path: str | Path, dim: int) -> AestheticHead:
    """An AestheticHead for D = ``dim`` from safetensors or a weights_only pickle; a file whose
    keys or shapes do not fit is refused naming the first mismatch (a HeadError, as is a file that
    does not exist or does not load)."""
    path = Path(path)
    if not path.is_file():
        raise HeadError(f"aesthetic head file {str(path)!r} does not exist")
    try:
        state = load_file(path) if path.suffix == ".safetensors" else torch.load(path, weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, SafetensorError) as err:
        raise HeadError(
            f"{path} does not load as an aesthetic head ({' '.join(str(err).split())[:200]})"
        ) from err
    head = AestheticHead(dim)
    own = head.state_dict()
    bad = sorted(set(own) ^ set(state)) or [k for k in own if own[k].shape != state[k].shape]
    if bad:
        k = bad[0]
        what = (
            f"shape {tuple(state[k].shape)} != expected {tuple(own[k].shape)}"
            if k in own and k in state else ("missing" if k in own else "unexpected")
        )  # fmt: skip
        raise HeadError(
            f"{path} does not fit the aesthetic MLP for {dim}-d CLIP embeddings: key {k!r} {what}"
        )
    head.load_state_dict(state)
    return head.eval().requires_grad_(False)


ClipScoreName = Literal["clip", "pickscore", "aesthetic"]


class ClipScore:
    """A CLIP-family score, loaded from a local transformers CLIP folder the one way its reward and
    its metric share:

    - "clip": CLIP score (Hessel et al. 2021), 100 cos(image, text);
    - "pickscore": PickScore (Kirstain et al. 2023), exp(logit_scale) cos of a CLIP model fine-tuned
      on human preferences (the scale is frozen: read once here);
    - "aesthetic": the LAION improved aesthetic predictor, an MLP head (``head_file``) on the unit
      image embedding (the prompts play no part).

    ``clip`` embeds the images (``clip.image`` or ``clip.pixels``), ``score`` rates the embeddings.
    """

    def __init__(
        self, name: ClipScoreName, folder: str | Path, device: torch.device | str = "cpu", head_file=None
    ) -> None:
        if name not in ("clip", "pickscore", "aesthetic"):
            raise ValueError(f"unknown CLIP-family score {name!r}: clip, pickscore or aesthetic")
        if name == "aesthetic" and not head_file:
            raise HeadError("the aesthetic score needs its MLP head file")
        self.name = name
        self.clip = ClipEmbedder(folder, device)
        self.scale = float(self.clip.model.logit_scale.exp()) if name == "pickscore" else 100.0
        self.head = None
        if name == "aesthetic":
            self.head = load_head(head_file, self.clip.model.config.projection_dim).to(device)

    def score(self, embeds: torch.Tensor, prompts: list[str], clamp: bool = False) -> torch.Tensor:
        """Unit image embeddings (B, D) and their prompts (B,) -> scores (B,); ``clamp``: a cosine
        below 0 counts as 0 (the CLIP score metric, as torchmetrics computes it)."""
        if self.head is not None:
            return self.head(embeds)
        cos = (embeds * self.clip.text(prompts)).sum(-1)
        return self.scale * (cos.clamp(min=0) if clamp else cos)


def clip_transform(size: int, mean=OPENAI_MEAN, std=OPENAI_STD):
    """CLIP's preprocessing of one PIL image -> (3, size, size): bicubic resize of the short side,
    center crop, normalise (the metrics' and ImageReward's)."""
    from torchvision import transforms as T  # PIL images: evaluation only

    bicubic = T.InterpolationMode.BICUBIC
    return T.Compose(
        [T.Resize(size, bicubic), T.CenterCrop(size), T.ToTensor(), T.Normalize(list(mean), list(std))]
    )
