"""Training data of the latent LPIPS trainer (tlcm.latent_lpips.train): the pixel-space
perceptual proxy P (the target), the random distortions, and triplets of latents with their
proxy distances."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from rich.progress import Progress

from tlcm.models.families import DEFAULT_FAMILY, Family
from tlcm.toy.classifier import DigitClassifier
from tlcm.toy.data import augment

if TYPE_CHECKING:  # diffusers loads with the VAE: `python -m tlcm.latent_lpips.train --help` is quick
    from diffusers import AutoencoderKL

Proxy = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""Pixel-space target: images x, y (N, 3, H, W) in [-1, 1] -> (N,) distances."""


class PixelProxy(torch.nn.Module):
    """P(x, y), (N, 3, H, W) images in [-1, 1] -> (N,): classifier feature distance + (1 - SSIM) / 2."""

    def __init__(self, classifier: DigitClassifier) -> None:
        super().__init__()
        self.layers = classifier.body[:8].eval().requires_grad_(False)  # conv-SiLU(-pool) x 3

    def feature_distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """mean over the 3 SiLU taps of mean_{h,w} ||f^(x) - f^(y)||^2 (channel-normalised), (N,)."""
        h = torch.cat([x, y]).mean(dim=1, keepdim=True)
        total = 0.0
        for layer in self.layers:
            h = layer(h)
            if isinstance(layer, torch.nn.SiLU):
                f = F.normalize(h, dim=1, eps=1e-10)
                total = total + (f[: len(x)] - f[len(x) :]).square().sum(1).mean(dim=(1, 2)) / 3
        return total

    @staticmethod
    def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 7) -> torch.Tensor:
        """Mean SSIM (N,) over a uniform ``window`` for images with dynamic range 2."""
        c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
        mx, my = F.avg_pool2d(x, window, 1), F.avg_pool2d(y, window, 1)
        vx, vy = F.avg_pool2d(x * x, window, 1) - mx**2, F.avg_pool2d(y * y, window, 1) - my**2
        cov = F.avg_pool2d(x * y, window, 1) - mx * my
        s = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        return s.flatten(1).mean(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """P(x, y) (N,) for images (N, 3, H, W) in [-1, 1]."""
        return self.feature_distance(x, y) + (1 - self.ssim(x, y)) / 2


def distort(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random perceptual distortions of CPU images (N, 3, H, W) in [-1, 1]; each applied with p = 1/2."""
    from torchvision.transforms.v2 import functional as TF

    n = x.shape[0]

    def pick(p: float = 0.5) -> torch.Tensor:
        return torch.rand(n, 1, 1, 1, generator=g) < p

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=g)

    x = torch.where(pick(), augment(x, g, 1.0), x)
    blurred = torch.stack(
        [TF.gaussian_blur(im, [5, 5], [s]) for im, s in zip(x, u(0.3, 1.5).flatten().tolist(), strict=True)]
    )
    x = torch.where(pick(), blurred, x)
    x = torch.where(pick(), x * u(0.6, 1.2) + u(-0.3, 0.3), x)
    x = torch.where(pick(), x + u(0.0, 0.3) * torch.randn(x.shape, generator=g), x)
    h, w = x.shape[-2:]
    size, corner = u(0.1, 0.4), torch.rand(n, 2, 1, 1, generator=g)
    rows, cols = torch.arange(h).view(1, 1, h, 1) / h, torch.arange(w).view(1, 1, 1, w) / w
    patch = ((rows - corner[:, :1]).abs() < size / 2) & ((cols - corner[:, 1:]).abs() < size / 2)
    x = torch.where(pick() & patch, u(-1, 1), x)
    return x.clamp(-1, 1)


def _to_latent(vae: AutoencoderKL, images: torch.Tensor, family: Family) -> torch.Tensor:
    """Images (N, 3, H, W) -> latents (N, C, h, w) as the family's network sees them:
    ``(z - shift) * scale`` of the posterior's mode z (``Family.latent_affine``)."""
    z = vae.encode(images).latent_dist.mode()
    scale, shift = family.latent_affine(vae.config, z)
    return (z - shift) * scale


def _to_image(vae: AutoencoderKL, z: torch.Tensor, family: Family) -> torch.Tensor:
    """Latents (N, C, h, w) as the network sees them -> images (N, 3, H, W) in [-1, 1]."""
    scale, shift = family.latent_affine(vae.config, z)
    return vae.decode(z / scale + shift).sample.clamp(-1, 1)


@torch.no_grad()
def make_triplets(
    vae: AutoencoderKL,
    proxy: Proxy,
    images: torch.Tensor,
    n: int,
    latent_noise: float,
    g: torch.Generator,
    progress: Progress | None = None,
    chunk: int = 128,
    family: Family = DEFAULT_FAMILY,
) -> dict[str, torch.Tensor]:
    """``n`` triplets from CPU ``images`` (N, 3, H, W), float in [-1, 1] or uint8: latents "z"
    (n, 3, C, h, w) as (ref, a, b), scaled as ``family``'s network sees them, and proxy distances
    "p" (n, 3) of the pairs (ref, a), (ref, b), (a, b)."""
    task = progress.add_task("triplets", total=n, info="") if progress else None
    zs, ps, device = [], [], next(vae.parameters()).device
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = images[torch.randint(len(images), (m,), generator=g)]
        x = x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x
        triplet = torch.cat([x, distort(x, g), distort(x, g)]).to(device)  # (3m, 3, H, W): ref, a, b
        z = _to_latent(vae, triplet, family).unflatten(0, (3, m))
        sigma = (
            latent_noise
            * torch.rand(2, m, 1, 1, 1, generator=g)
            * (torch.rand(2, m, 1, 1, 1, generator=g) < 0.5)
        )
        z[1:] += sigma.to(device) * torch.randn(z[1:].shape, generator=g).to(device)
        ref, a, b = _to_image(vae, z.flatten(0, 1), family).chunk(3)
        ps.append(torch.stack([proxy(ref, a), proxy(ref, b), proxy(a, b)], 1).cpu())
        zs.append(z.transpose(0, 1).cpu())
        if progress:
            progress.advance(task, m)
    return {"z": torch.cat(zs), "p": torch.cat(ps)}
