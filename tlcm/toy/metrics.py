"""Toy metrics standing in for the paper's: prompt alignment (CLIP-score analogue) and a Frechet
distance in the digit classifier's feature space (FID analogue). No scikit-learn needed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from tlcm.toy.assets import ASSET_DIR
from tlcm.toy.classifier import DigitClassifier


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) features -> mean (D,) and unbiased covariance (D, D), in float64."""
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2) (Heusel et al. 2017, FID)."""
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    root1 = _sqrtm_psd(sigma1)
    cross = _sqrtm_psd(root1 @ sigma2 @ root1)
    return float((mu1 - mu2).square().sum() + torch.trace(sigma1 + sigma2 - 2 * cross))


@dataclass
class ToyScores:
    """Alignment in [0, 1] (higher is better) and FD >= 0 (lower is better) of one image set."""

    alignment: float
    fd: float


class ToyMetrics:
    """Scores generated digit images against their prompts' digits and the real digits."""

    def __init__(self, asset_dir: Path = ASSET_DIR) -> None:
        self.classifier = DigitClassifier()
        self.classifier.load_state_dict(load_file(asset_dir / "digit_classifier.safetensors"))
        self.classifier.eval().requires_grad_(False)
        ref = load_file(asset_dir / "reference_stats.safetensors")
        self.mu, self.sigma = ref["mu"], ref["sigma"]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> ToyScores:
        """images (N, 3, 32, 32) in [-1, 1], labels (N,) digits -> ToyScores."""
        feats = self.classifier.features(images.float().clamp(-1, 1))
        alignment = (self.classifier.head(feats).argmax(1) == labels).float().mean().item()
        mu, sigma = feature_statistics(feats)
        return ToyScores(alignment, frechet_distance(mu, sigma, self.mu, self.sigma))
