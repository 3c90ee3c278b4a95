"""FID (Heusel et al. 2017) and FID-T: Frechet distance between Inception-v3 pool features.

Features: torchmetrics' ``NoTrainInceptionV3`` (torch-fidelity's bit-exact port of the TF
Inception that defines FID) loaded from a local weights file, 2048-d pool3 features. Images are
center-cropped to a square and resized to 299 px with PIL bicubic (clean-fid's "clean" resizing,
Parmar et al. 2022) before they reach the network, so its own resize is the identity. Statistics
accumulate in float64 (sum and sum of outer products), so any number of images streams through,
and a folder's statistics can be cached and reused across models (the 5K COCO references).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file

from tlcm.errors import TLCMError
from tlcm.eval.weights import need_file, need_packages
from tlcm.files import save_tensors
from tlcm.toy.metrics import frechet_distance

INCEPTION_SIZE = 299
FEATURE_DIM = 2048


class FeatureStats:
    """Running mean and covariance of feature vectors (N, D), accumulated in float64 (D is taken
    from the first batch)."""

    def __init__(self) -> None:
        self.n = 0
        self.sum = self.outer = torch.zeros(0, dtype=torch.float64)

    def update(self, features: torch.Tensor) -> None:
        """Add features (B, D)."""
        x = features.detach().to("cpu", torch.float64).flatten(1)
        if self.n == 0:
            self.sum, self.outer = x.new_zeros(x.shape[1]), x.new_zeros(x.shape[1], x.shape[1])
        self.n += x.shape[0]
        self.sum += x.sum(0)
        self.outer += x.T @ x

    def mean_cov(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu (D,), Sigma (D, D)): the sample mean and the unbiased (N - 1) covariance."""
        if self.n < 2:
            raise TLCMError(f"FID needs at least 2 images per set, got {self.n}")
        mu = self.sum / self.n
        return mu, (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)

    def save(self, path: Path, metadata: dict[str, str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"sum": self.sum, "outer": self.outer, "n": torch.tensor(self.n)}
        save_tensors(tensors, path, {k: str(v) for k, v in metadata.items()})

    @classmethod
    def load(cls, path: Path) -> FeatureStats:
        tensors = load_file(path)
        stats = cls()
        stats.n, stats.sum, stats.outer = int(tensors["n"]), tensors["sum"], tensors["outer"]
        return stats


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID of two feature sets' statistics (the same ``frechet_distance`` as the toy metrics)."""
    return frechet_distance(*a.mean_cov(), *b.mean_cov())


def inception_batch(images: list[Image.Image]) -> torch.Tensor:
    """PIL images -> uint8 (B, 3, 299, 299): center square crop, PIL bicubic resize."""
    out = []
    for image in images:
        w, h = image.size
        side = min(w, h)
        box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
        square = image.convert("RGB").crop(box).resize((INCEPTION_SIZE,) * 2, Image.Resampling.BICUBIC)
        out.append(torch.from_numpy(np.asarray(square).copy()).permute(2, 0, 1))
    return torch.stack(out)


def load_inception(path: Path, device: torch.device | str) -> torch.nn.Module:
    """The FID Inception network from a local torch-fidelity weights file (no download):
    uint8 images (B, 3, H, W) -> pool3 features (B, 2048)."""
    need_file(path, "inception")
    need_packages("fid", "torchmetrics", "torch_fidelity")
    from torchmetrics.image.fid import NoTrainInceptionV3

    try:
        net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=[str(FEATURE_DIM)],
            feature_extractor_weights_path=str(path),
        )
    except (RuntimeError, OSError, EOFError, KeyError, pickle.UnpicklingError) as err:
        detail = " ".join(str(err).split())[:200]
        raise TLCMError(
            f"{path} is not torch-fidelity's Inception weights ({detail}): re-download it"
        ) from err
    net.weights_file = Path(path)  # image_stats' cache key: statistics of other weights are others
    return net.to(device)


def stats_key(files: list[Path], inception: Path) -> str:
    """The cache key: a hash of the image files (paths, sizes and modification times: an image
    re-generated in place is another, even at the same size) and the Inception file (name and
    size: another download of other weights under the same name is another)."""
    entries = [[str(f.resolve()), (s := f.stat()).st_size, s.st_mtime_ns] for f in files]
    inception = Path(inception)
    entries += [[inception.name, inception.stat().st_size if inception.is_file() else None]]
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def cached_stats(cache: Path | None, key: str) -> FeatureStats | None:
    """The statistics cached under ``cache/key.safetensors``, or None (no cache, absent, unreadable)."""
    path = None if cache is None else Path(cache) / f"{key}.safetensors"
    if path is None or not path.is_file():
        return None
    try:
        return FeatureStats.load(path)
    except (SafetensorError, OSError, KeyError):
        return None


@torch.no_grad()
def image_stats(
    net: torch.nn.Module, files: list[Path], batch_size: int, cache: Path | None = None, on_batch=None
) -> FeatureStats:
    """Inception statistics of image ``files`` (read from / written to ``cache`` when given, keyed by
    the files and the network's weights file); ``on_batch(n)`` after each batch (progress)."""
    key = stats_key(files, Path(getattr(net, "weights_file", "inception")))
    stats = cached_stats(cache, key)
    if stats is not None:
        if on_batch is not None:  # the progress bar counts these files as done
            on_batch(len(files))
        return stats
    stats = FeatureStats()
    device = next(net.parameters()).device
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        images = []
        for file in chunk:
            with Image.open(file) as image:
                images.append(image.convert("RGB"))
        stats.update(net(inception_batch(images).to(device)))
        if on_batch is not None:
            on_batch(len(chunk))
    if cache is not None:
        stats.save(Path(cache) / f"{key}.safetensors", {"files": len(files), "first": files[0]})
    return stats
