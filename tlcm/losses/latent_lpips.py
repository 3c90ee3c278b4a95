"""Latent LPIPS: a perceptual distance computed directly on VAE latents (docs/method.md, "The bag of
techniques" 1; arXiv 2406.05768 Sec. 4.3 "Latent LPIPS": the paper's best configuration uses it as
the distance d of stages 1 and 2, Eqs. (7) and (10)).

Architecture (LPIPS, Zhang et al. 2018, arXiv 1801.03924 eq. 1, on a VGG16-style trunk whose input
takes the latent channels and whose first three max-pools are removed, so an h x w latent keeps its
resolution for blocks 1-4 and is pooled once, to h/2 x w/2, before block 5):

    f_l(x)   = relu{l}_{last}(x),  l = 1..5  (taps: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3)
    f^_l     = f_l / ||f_l||_2 over channels                          (unit-normalised per pixel)
    d(x, y)  = sum_l mean_{h,w} sum_c w_{l,c} (f^_l(x) - f^_l(y))_c^2,  w_{l,c} >= 0  (1x1 heads;
               LPIPS eq. 1's ||w_l * (...)||^2 with w_{l,c} = w_l[c]^2).

The registered distance ``"latent_lpips"`` (``MLCDConfig(distance="latent_lpips")``) loads its
weights lazily from the loss config's ``distance_weights`` file, by default the miniature's
shipped ``tlcm/toy/assets/latent_lpips.safetensors``; train a file for another VAE with
``python -m tlcm.latent_lpips.train`` (docs/latent_lpips.md).
"""

from __future__ import annotations

import functools
import json
import pickle
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from tlcm.errors import TLCMError
from tlcm.files import save_tensors
from tlcm.toy.assets import ASSET_DIR

if TYPE_CHECKING:
    from tlcm.losses.distances import Distance

DEFAULT_WEIGHTS = ASSET_DIR / "latent_lpips.safetensors"
"""Weights trained for the miniature pipeline's VAE (the default of ``distance_weights``)."""
DEFAULT_LATENT_SIZE = (8, 8)
"""(h, w) of the miniature's latents (32 px images, its VAE's factor 4), which ``DEFAULT_WEIGHTS``
were trained on; latents of another size are another VAE's, and get a warning."""
PAPER_CHANNELS = (64, 128, 256, 512, 512)
"""VGG16's block widths (the paper's network)."""
CONVS_PER_BLOCK = (2, 2, 3, 3, 3)
FORMAT = "tlcm-latent-lpips"
TRAIN_HINT = "train one with python -m tlcm.latent_lpips.train --model <diffusers folder> --out {path}"


class LatentLPIPS(nn.Module):
    """LPIPS distance on latents (B, in_channels, h, w), h and w >= 2; see the module docstring.

    in_channels: latent channels (4 for SD1.5/SDXL).
    channels: widths of the 5 blocks (default VGG16's; the miniature uses a narrow setting).
    """

    def __init__(self, in_channels: int = 4, channels: Sequence[int] = PAPER_CHANNELS) -> None:
        super().__init__()
        if len(channels) != 5 or min(channels) < 1 or in_channels < 1:
            raise ValueError(
                f"need in_channels >= 1 and 5 positive block widths, got {in_channels}, {channels}"
            )
        self.in_channels, self.channels = in_channels, tuple(int(c) for c in channels)
        blocks, width = [], in_channels
        for out, convs in zip(self.channels, CONVS_PER_BLOCK, strict=True):
            layers: list[nn.Module] = []
            for _ in range(convs):
                layers += [nn.Conv2d(width, out, 3, padding=1), nn.ReLU()]
                width = out
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.channels)
        for lin in self.lins:
            nn.init.constant_(lin.weight, 0.2)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (B, in_channels, h, w) -> the 5 taps unit-normalised over channels: (B, c_l, h, w) for
        blocks 1-4 and (B, c_5, h/2, w/2) for block 5."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"latent LPIPS expects (B, {self.in_channels}, h, w) latents, got {tuple(x.shape)}"
            )
        taps = []
        for index, block in enumerate(self.blocks):
            x = block(self.pool(x) if index == 4 else x)
            taps.append(F.normalize(x, dim=1, eps=1e-10))
        return taps

    def compare(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
        """Distance (B,) between two lists of normalised taps from ``features``."""
        total = 0.0
        for lin, a, b in zip(self.lins, fx, fy, strict=True):
            total = total + F.conv2d((a - b).square(), lin.weight.clamp(min=0)).mean(dim=(1, 2, 3))
        return total

    def check(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Refuse (ValueError, one line, the caller's shapes) inputs ``forward`` cannot compare: not
        (B, in_channels, h, w) each, shapes that differ, or h or w < 2 (block 5 pools once)."""
        for name, x in (("pred", pred), ("target", target)):
            if x.ndim != 4 or x.shape[1] != self.in_channels:
                hint = " (add the batch dimension: x[None])" if x.ndim == 3 else ""
                raise ValueError(
                    f"latent LPIPS expects (B, {self.in_channels}, h, w) latents, got {name} of shape "
                    f"{tuple(x.shape)}{hint}: it compares VAE latents, not images"
                )
        if pred.shape != target.shape:
            raise ValueError(
                f"latent LPIPS compares latents of one shape, got pred {tuple(pred.shape)} and target "
                f"{tuple(target.shape)}: pass pairs of the same batch size and latent size"
            )
        if min(pred.shape[-2:]) < 2:
            raise ValueError(
                f"latent LPIPS needs latents of at least 2 x 2 (its last block pools by 2), got "
                f"{tuple(pred.shape[-2:])}"
            )

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred, target (B, in_channels, h, w), h, w >= 2 -> per-sample distance (B,), >= 0, 0 where
        pred == target; other shapes are refused (``check``) before the two are concatenated."""
        self.check(pred, target)
        taps = self.features(torch.cat([pred, target.to(pred.dtype)]))
        n = pred.shape[0]
        return self.compare([t[:n] for t in taps], [t[n:] for t in taps])


def save_latent_lpips(net: LatentLPIPS, path: str | Path, info: Mapping | None = None) -> None:
    """Write ``net`` as safetensors; the metadata holds its config and ``info`` (JSON) on how it was made."""
    metadata = {
        "format": FORMAT,
        "in_channels": str(net.in_channels),
        "channels": json.dumps(list(net.channels)),
        "info": json.dumps(dict(info or {})),
    }
    state = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    save_tensors(state, path, metadata=metadata)


def _infer_config(state: Mapping[str, torch.Tensor], path: Path) -> tuple[int, tuple[int, ...]]:
    """(in_channels, channels) from the first conv of each block, for files without metadata."""
    for b in range(5):
        if f"blocks.{b}.0.weight" not in state:
            raise TLCMError(f"latent LPIPS weights {path}: missing key 'blocks.{b}.0.weight'")
    widths = tuple(state[f"blocks.{b}.0.weight"].shape[0] for b in range(5))
    return state["blocks.0.0.weight"].shape[1], widths


def _read(path: Path) -> tuple[dict[str, torch.Tensor], tuple[int, tuple[int, ...]] | None]:
    """The state dict and, for safetensors with our metadata, the stored (in_channels, channels)."""
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except SafetensorError as err:
            raise TLCMError(f"latent LPIPS weights {path}: not a readable safetensors file ({err})") from None
        config = None
        if meta.get("format") == FORMAT:
            config = (int(meta["in_channels"]), tuple(json.loads(meta["channels"])))
        return load_file(str(path)), config
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own text advises weights_only=False: not here
        raise TLCMError(
            f"latent LPIPS weights {path}: not a tensor-only pickle (weights_only) nor a .safetensors "
            "file: pass the .safetensors file that python -m tlcm.latent_lpips.train --out wrote"
        ) from None
    except (EOFError, OSError, RuntimeError, KeyError) as err:  # empty, truncated, not a torch file
        raise TLCMError(
            f"latent LPIPS weights {path}: damaged or not a torch file ({type(err).__name__}: {err}): "
            "pass the .safetensors file that python -m tlcm.latent_lpips.train --out wrote"
        ) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TLCMError(
            f"latent LPIPS weights {path}: expected a state dict of tensors, got {type(state).__name__}"
        )
    return dict(state), None


def load_latent_lpips(path: str | Path, device: str | torch.device = "cpu") -> LatentLPIPS:
    """A frozen, eval-mode LatentLPIPS from a safetensors file (config from its metadata) or a torch
    pickle of its state dict (read with ``weights_only=True``; config inferred from the shapes).
    Refuses (TLCMError) a missing file, and a file whose keys or shapes do not fit, naming the
    first offending key."""
    path = Path(path)
    if not path.is_file():
        raise TLCMError(f"latent LPIPS weights not found: {path}; {TRAIN_HINT.format(path=path)}")
    state, config = _read(path)
    net = LatentLPIPS(*(config or _infer_config(state, path)))
    expected = net.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise TLCMError(f"latent LPIPS weights {path}: missing key {key!r}")
        if state[key].shape != value.shape:
            raise TLCMError(
                f"latent LPIPS weights {path}: {key!r} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(value.shape)} (in_channels {net.in_channels}, channels {net.channels})"
            )
    for key in state:
        if key not in expected:
            raise TLCMError(f"latent LPIPS weights {path}: unexpected key {key!r}")
    net.load_state_dict(state)
    return net.to(device).eval().requires_grad_(False)


@functools.lru_cache(maxsize=8)
def _cached(path: Path, mtime_ns: int, device: torch.device, dtype: torch.dtype) -> LatentLPIPS:
    return load_latent_lpips(path, device).to(dtype)


def latent_lpips_distance(path: Path | None = None) -> Distance:
    """The registered distance with the weights of ``path`` (None: ``DEFAULT_WEIGHTS``): pred,
    target (B, C, h, w) -> (B,), the network loaded once per (file, device, dtype). The network
    is frozen; gradients flow to ``pred``. A missing file is a ValueError saying how to train one.
    The default weights are the miniature VAE's: on latents of another size than its
    ``DEFAULT_LATENT_SIZE`` (another VAE's) this distance warns once (``UserWarning``), saying how to
    train weights for that VAE."""
    path = Path(path or DEFAULT_WEIGHTS)
    if not path.is_file():
        raise ValueError(f"latent LPIPS weights not found: {path}; " + TRAIN_HINT.format(path=path))
    default = path.resolve() == DEFAULT_WEIGHTS.resolve()
    warned = False

    def distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        nonlocal warned
        value = _cached(path.resolve(), path.stat().st_mtime_ns, pred.device, pred.dtype)(pred, target)
        if default and not warned and tuple(pred.shape[-2:]) != DEFAULT_LATENT_SIZE:
            warned = True
            warnings.warn(
                f"latent LPIPS: the default weights ({DEFAULT_WEIGHTS.name}) were trained on the "
                f"miniature VAE's {DEFAULT_LATENT_SIZE[0]}x{DEFAULT_LATENT_SIZE[1]} latents, not these "
                f"{tuple(pred.shape[-2:])} ones; for your VAE "
                + TRAIN_HINT.format(path="latent_lpips.safetensors")
                + " and pass it as distance_weights",
                stacklevel=2,
            )
        return value

    return distance
