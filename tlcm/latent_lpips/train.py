"""Train a latent LPIPS (tlcm.losses.latent_lpips) for one VAE's latent space:
``python -m tlcm.latent_lpips.train --model DIFFUSERS_FOLDER --out FILE.safetensors``.

The paper trains on BAPPS (human 2AFC judgments); neither BAPPS nor a pretrained VGG can be fetched
here, so the target is a pixel-space perceptual *proxy*, computed on the decoded images of the two
latents being compared:

    P(x, y) = mean_l mean_{h,w} ||f^_l(x) - f^_l(y)||^2 + (1 - SSIM(x, y)) / 2

with f^_l the channel-normalised activations of the miniature's digit classifier (its 3 conv
layers; LPIPS-style, untrained uniform weights) and SSIM on a 7x7 uniform window (Wang et al. 2004).
Data: triplets (ref, a, b) of latents, ref = E(x) and a, b = E(distort(x)) (+ latent Gaussian noise),
with random blur, pixel noise, affine jitter, contrast/brightness and erased patches; all 3 pairs of a
triplet are targets. Images are decoded back from the latents before P, so the target is a function of
the latents alone (what the network sees), not of details the VAE throws away.

Loss: regression of log distances, mean (log(d + e) - log(P + e))^2 over the 3 pairs, trunk and
heads end-to-end. Why regression and not BAPPS' 2AFC cross-entropy: humans can only say which of two
is closer, so BAPPS must learn from rankings; the proxy gives an exact number per pair, which carries
the ranking and, in addition, fixes the distance's scale (it is a loss term weighted against others).
In log space, near pairs (small consistency errors, what MLCD/LCD see late in training) count as much
as far ones. Held-out: 2AFC agreement with P on triplets of held-out images, for the trained network
and for plain latent L2 (the default distance), saved in the file's metadata and a JSON next to it.

The defaults train the shipped miniature weights in about 5 minutes on one CPU thread
(``OMP_NUM_THREADS=1``); docs/latent_lpips.md has the measured numbers.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import tyro
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors.torch import load_file

from tlcm.checks import check_counts, check_out_file
from tlcm.errors import TLCMError, run_cli
from tlcm.latent_lpips.data import PixelProxy, Proxy, distort, make_triplets  # noqa: F401  (API)
from tlcm.losses.distances import Distance
from tlcm.losses.latent_lpips import LatentLPIPS, save_latent_lpips
from tlcm.models.families import DEFAULT_FAMILY, FAMILIES, Family
from tlcm.models.folders import check_model_folder
from tlcm.toy import ASSET_DIR, MINIATURE_SD
from tlcm.toy.classifier import DigitClassifier

if TYPE_CHECKING:
    from diffusers import AutoencoderKL

MINIATURE_CHANNELS = (16, 32, 64, 64, 64)
"""Narrow block widths for the miniature's 8x8x4 latents (331k parameters, 1.3 MB)."""
LOG_EPS = 1e-3
"""e in the log-distance regression."""
PAIRS = ((0, 1), (0, 2), (1, 2))
"""The pairs of a triplet (ref, a, b): (ref, a), (ref, b), (a, b)."""


@dataclass
class TrainArgs:
    """Train a latent LPIPS for the VAE of a diffusers folder against a pixel-space perceptual proxy."""

    model: Path = MINIATURE_SD
    """Local diffusers pipeline folder whose vae/ defines the latent space (latents scaled as its
    family's network sees them: scaling and shift factors, SDXL's latents_mean / latents_std)."""
    out: Path = Path("latent_lpips.safetensors")
    """Output safetensors file; a JSON with the training record is written next to it."""
    images: Path | None = None
    """Folder of training images (png/jpg, resized to --resolution); None: the miniature's digit images."""
    resolution: int | None = None
    """Side of the --images after resize and centre crop (None: the VAE's sample_size)."""
    classifier: Path = ASSET_DIR / "digit_classifier.safetensors"
    """DigitClassifier weights of the proxy's feature distance."""
    channels: tuple[int, int, int, int, int] = MINIATURE_CHANNELS
    """Block widths (the paper: 64 128 256 512 512)."""
    steps: int = 450
    """Optimizer steps."""
    batch_size: int = 64
    """Triplets per step."""
    lr: float = 2e-3
    """Adam learning rate (cosine decay to 0)."""
    triplets: int = 5000
    """Training triplets made (and encoded) up front."""
    heldout_triplets: int = 800
    """Triplets from held-out images for the 2AFC measure."""
    latent_noise: float = 0.5
    """Max std of the latent Gaussian noise added to half the distorted latents."""
    seed: int = 0
    """Seed of the distortions, initialisation and batches."""
    device: str = "cpu"
    """Torch device."""


def triplet_distances(distance: Distance, z: torch.Tensor) -> torch.Tensor:
    """z (n, 3, C, h, w) -> (n, 3) distances of the pairs (ref, a), (ref, b), (a, b)."""
    return torch.stack([distance(z[:, i], z[:, j]) for i, j in PAIRS], 1)


def two_afc(d: torch.Tensor, p: torch.Tensor) -> float:
    """Fraction of triplets where d ranks a vs b (which is closer to ref) as the proxy p does; (n, 3) each."""
    return ((d[:, 0] < d[:, 1]) == (p[:, 0] < p[:, 1])).float().mean().item()


def spearman(d: torch.Tensor, p: torch.Tensor) -> float:
    """Rank correlation of two sets of distances over all pairs (ties broken arbitrarily)."""
    ranks = torch.stack([d.flatten().argsort().argsort(), p.flatten().argsort().argsort()]).float()
    return torch.corrcoef(ranks)[0, 1].item()


def log_loss(d: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """mean (log(d + e) - log(p + e))^2 (scalar)."""
    return (torch.log(d + LOG_EPS) - torch.log(p + LOG_EPS)).square().mean()


@torch.no_grad()
def measure(net: LatentLPIPS, z: torch.Tensor, p: torch.Tensor) -> dict[str, float]:
    """Held-out numbers of ``net`` and of latent L2 on triplets z (n, 3, C, h, w) with proxy p (n, 3)."""
    d_net = torch.cat([triplet_distances(net, chunk) for chunk in z.split(256)])
    d_l2 = triplet_distances(lambda a, b: (a - b).square().flatten(1).mean(1), z)
    return {
        "heldout_log_mse": round(log_loss(d_net, p).item(), 5),
        "heldout_2afc_latent_lpips": round(two_afc(d_net, p), 4),
        "heldout_2afc_latent_l2": round(two_afc(d_l2, p), 4),
        "heldout_spearman_latent_lpips": round(spearman(d_net, p), 4),
        "heldout_spearman_latent_l2": round(spearman(d_l2, p), 4),
        "heldout_mean_proxy": round(p.mean().item(), 5),
        "heldout_mean_latent_lpips": round(d_net.mean().item(), 5),
        "heldout_mean_latent_l2": round(d_l2.mean().item(), 5),
    }


def train_latent_lpips(
    vae: AutoencoderKL,
    proxy: Proxy,
    train_images: torch.Tensor,
    heldout_images: torch.Tensor,
    args: TrainArgs,
    progress: Progress | None = None,
    family: Family = DEFAULT_FAMILY,
) -> tuple[LatentLPIPS, dict]:
    """Make triplets, train a LatentLPIPS on them, measure it on held-out triplets.

    train_images, heldout_images: (N, 3, H, W) in [-1, 1]; ``family``: the model family whose
    latent scaling the triplets use (``Family.latent_affine``). Returns (network, record dict)."""
    start, device = time.perf_counter(), torch.device(args.device)
    g = torch.Generator().manual_seed(args.seed)
    vae, proxy = vae.to(device).eval(), proxy.to(device)
    kw = {"progress": progress, "family": family}
    train = make_triplets(vae, proxy, train_images, args.triplets, args.latent_noise, g, **kw)
    test = make_triplets(vae, proxy, heldout_images, args.heldout_triplets, args.latent_noise, g, **kw)
    data_seconds = time.perf_counter() - start
    torch.manual_seed(args.seed)
    net = LatentLPIPS(vae.config.latent_channels, args.channels).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(args.steps, 1))
    task = progress.add_task("train", total=args.steps, info="") if progress else None
    for _ in range(args.steps):
        idx = torch.randint(args.triplets, (args.batch_size,), generator=g)
        z, p = train["z"][idx].to(device), train["p"][idx].to(device)
        taps = [t.unflatten(0, (-1, 3)) for t in net.features(z.flatten(0, 1))]
        d = torch.stack([net.compare([t[:, i] for t in taps], [t[:, j] for t in taps]) for i, j in PAIRS], 1)
        loss = log_loss(d, p)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for lin in net.lins:
                lin.weight.clamp_(min=0)
        if progress:
            progress.update(task, advance=1, info=f"log-mse {loss.item():.4f}")
    net.eval().requires_grad_(False)
    record = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(args).items()},
        "latent_channels": vae.config.latent_channels,
        "scaling_factor": vae.config.scaling_factor,
        "family": family.pipeline_name,
        "proxy": "digit-classifier LPIPS-style feature distance + (1 - SSIM) / 2, of decoded images",
        "loss": "log-distance regression over the 3 pairs of each triplet",
        "final_train_log_mse": round(loss.item(), 5) if args.steps else None,
        **measure(net, test["z"].to(device), test["p"].to(device)),
        "data_seconds": round(data_seconds, 1),
        "seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
    }
    return net.cpu(), record


def load_images(folder: Path | None, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) images (N, 3, size, size). None: the miniature digits (float in [-1, 1]), held
    out by digit identity (UCI digits 1500-1796, all placements); a folder: uint8 (4x less memory),
    resized and centre-cropped, its last tenth (sorted names) held out."""
    if folder is None:
        from tlcm.toy.data import load_digit_images

        x, _ = load_digit_images()
        heldout = torch.arange(len(x)) % 1797 >= 1500
        return x[~heldout], x[heldout]
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"})
    if len(files) < 10:
        raise TLCMError(f"--images {folder}: need at least 10 png/jpg images, found {len(files)}")
    x = torch.stack(
        [TF.center_crop(TF.resize(TF.pil_to_tensor(Image.open(f).convert("RGB")), size), size) for f in files]
    )
    cut = len(x) - len(x) // 10
    return x[:cut], x[cut:]


def write(net: LatentLPIPS, record: dict, out: Path) -> None:
    """Write ``out`` (weights + record in the metadata) and ``out`` with suffix .json (the record)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    save_latent_lpips(net, out, record)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")


def main(args: TrainArgs) -> dict:
    """Train, write the file and its JSON, print the held-out numbers; returns the record."""
    check_counts({"--steps": args.steps}, minimum=0)
    check_counts(
        {
            "--batch-size": args.batch_size,
            "--triplets": args.triplets,
            "--heldout-triplets": args.heldout_triplets,
        }
    )
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise TLCMError(f"--lr must be a positive number, got {args.lr}")
    if args.images is not None and not args.images.is_dir():
        raise TLCMError(f"--images {args.images} is not a folder: pass a folder of png / jpg images")
    check_out_file(args.out, "--out", (".safetensors",))
    family = FAMILIES[check_model_folder(args.model, "--model")]
    if not (args.model / "vae").is_dir():
        raise TLCMError(f"--model {args.model}: no vae/ folder (expected a diffusers pipeline folder)")
    if not args.classifier.is_file():
        raise TLCMError(f"--classifier {args.classifier}: file not found")
    from diffusers import AutoencoderKL  # the model libraries load here: --help is quick

    vae = AutoencoderKL.from_pretrained(args.model / "vae")
    classifier = DigitClassifier()
    classifier.load_state_dict(load_file(args.classifier))
    train, heldout = load_images(args.images, args.resolution or vae.config.sample_size)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True)) as progress:
        net, record = train_latent_lpips(vae, PixelProxy(classifier), train, heldout, args, progress, family)
    record["model"] = str(args.model)
    write(net, record, args.out)
    mib = args.out.stat().st_size / 2**20
    Console().print(
        f"wrote {args.out} ({mib:.2f} MiB) in {record['seconds']:.0f} s; held-out 2AFC agreement with the "
        f"proxy: latent LPIPS {record['heldout_2afc_latent_lpips']:.3f}, latent L2 "
        f"{record['heldout_2afc_latent_l2']:.3f} ({args.heldout_triplets} triplets)",
        highlight=False,
    )
    return record


if __name__ == "__main__":
    run_cli(lambda: main(tyro.cli(TrainArgs, prog="python -m tlcm.latent_lpips.train")))
