"""Discriminators for the GAN loss: a FROZEN feature backbone + small TRAINABLE heads.

D(x) = mean over levels l of mean over (i, j) of head_l(phi_l(x))[i, j], a logit per sample, where
phi_l are feature maps of a frozen network and head_l = 1x1 conv -> LeakyReLU(0.2) -> 1x1 conv to
one channel (the "projected" discriminator of Sauer et al. 2021 / ADD 2023, minus the projection).
Or PCM's patch heads (``PatchHeads``): several residual conv3x3 heads per level, whose logits stay
per patch (the loss is applied to each patch, then averaged).

- ``TimmDiscriminator``: any timm model (``features_only``), on images in [-1, 1] (normalised
  with the backbone's mean/std) or on latents (``in_chans`` = latent channels), resized to
  ``input_size``; random init unless a local weight file is given.
- ``TeacherFeatureDiscriminator``: the base network's features as its model family taps them
  (UNet: conv_in, down blocks, mid block; SD3 / FLUX: image tokens after a few transformer
  blocks) at (x_t, t, text conditioning): with every LoRA adapter switched off (a frozen trunk),
  or with the discriminator's own LoRA adapter (``adapter``: a trunk that trains with the heads,
  initialised as the teacher, as TLCM's SDXL discriminator is initialised from the SDXL UNet).

D can run on detached copies of its trained parameters (``frozen=True``: the heads, and a trained
trunk's LoRA adapter): the student's generator loss then sends gradients through D to its input
without touching D's parameters, and D's in-place update may run before the student's backward.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from timm.models import adapt_input_conv
from torch import nn
from torch.func import functional_call

from tlcm.conditioning import Conditioning
from tlcm.distributed import is_sharded
from tlcm.errors import TLCMError
from tlcm.models.adapters import TEACHER, AdapterSwitch


class Heads(nn.Module):
    """Per-level heads: features [(B, C_l, H_l, W_l)] -> logits (B,), averaged over levels and space."""

    def __init__(self, channels: list[int], hidden: int) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, hidden, 1), nn.LeakyReLU(0.2), nn.Conv2d(hidden, 1, 1))
            for c in channels
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        logits = [head(f.float()).mean(dim=(1, 2, 3)) for head, f in zip(self.levels, features, strict=True)]
        return torch.stack(logits).mean(0)


def _conv_norm_act(c: int) -> nn.Sequential:
    """conv3x3 (C -> C) -> GroupNorm(gcd(32, C) groups) -> LeakyReLU(0.01)."""
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(math.gcd(32, c), c), nn.LeakyReLU())


class PatchHead(nn.Module):
    """PCM's head on one level (G-U-N/Phased-Consistency-Model discriminator_sd15.py
    ``DiscriminatorHead``): h = a(f), out = conv1x1(b(h) + h), with a, b = conv3x3 (C -> C) ->
    GroupNorm -> LeakyReLU (slope 0.01, PyTorch's default, as PCM's); (B, C, H, W) -> (B, 1, H, W).
    GroupNorm has gcd(32, C) groups (PCM's 32 for SD's widths, which 32 divides)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.a, self.b = _conv_norm_act(channels), _conv_norm_act(channels)
        self.out = nn.Conv2d(channels, 1, 1)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        h = self.a(feature)
        return self.out(self.b(h) + h)


class PatchHeads(nn.Module):
    """PCM's heads: ``per_level`` ``PatchHead``s on every level (its SD1.5 run: 4, SDXL: 1); features
    [(B, C_l, H_l, W_l)] -> one logit map per head, flattened: a list of (B, H_l W_l), level by
    level. The loss is applied per patch and averaged over each head's patches, then over heads
    (PCM's ``d_loss`` / ``g_loss``; ``tlcm.losses.gan.per_sample``)."""

    def __init__(self, channels: list[int], per_level: int) -> None:
        super().__init__()
        self.levels = nn.ModuleList(nn.ModuleList(PatchHead(c) for _ in range(per_level)) for c in channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        pairs = zip(self.levels, features, strict=True)
        return [head(f.float()).flatten(1) for heads, f in pairs for head in heads]


HeadsFactory = Callable[[list[int]], nn.Module]
"""Builds a discriminator's trainable heads from its feature levels' channels C_l."""


def make_heads(kind: str, hidden: int = 64, per_level: int = 4) -> HeadsFactory:
    """``Heads`` of width ``hidden`` ("pooled": one logit per sample) or ``per_level``
    ``PatchHeads`` per level ("patch": PCM's), for the channels the discriminator passes."""
    return partial(PatchHeads, per_level=per_level) if kind == "patch" else partial(Heads, hidden=hidden)


class Discriminator(nn.Module):
    """Base: ``features(x, t, cond)`` from a frozen network; ``heads`` are the only trainable part.
    Its logits: (B,) with ``Heads``, a list of per-head patch logits (B, N_h) with ``PatchHeads``."""

    heads: nn.Module

    def features(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> list[torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def frozen_features(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> list[torch.Tensor]:
        """``features`` with every trained parameter of the feature network on detached copies taken
        now (a graph to x only, which a later in-place update of D leaves valid); here the backbone
        is frozen, so this is ``features``."""
        return self.features(x, t, cond)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning, frozen: bool = False
    ) -> torch.Tensor | list[torch.Tensor]:
        """Logits (B,) (or per-head patch logits [(B, N_h)]) of inputs x (B, C, H, W) at timesteps
        t (B,); ``frozen``: D's trained parameters (the heads, a trained trunk: ``frozen_features``)
        are detached (no gradient reaches them, gradients still reach x). The detached parameters
        are copies (heads and LoRA are small): the graph keeps this call's values, so D's update
        (``GAN.aux_step``, AdamW in place) may come before or after the student's backward."""
        if not frozen:
            return self.heads(self.features(x, t, cond))
        feats = self.frozen_features(x, t, cond)
        params = {n: p.detach().clone() for n, p in self.heads.named_parameters()}
        return functional_call(self.heads, params, (feats,))


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a local weight file (safetensors, or a torch pickle with weights_only=True; a nested
    "state_dict"/"model" dict is unwrapped) into ``model``. Keys the model lacks (a classifier, the
    stages after the last feature level) are ignored; a 3-channel stem is adapted to the model's
    input channels (timm's ``adapt_input_conv``); missing keys or other shape mismatches raise a
    TLCMError naming them."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unreadable, corrupted, or a pickle that is more than tensors
        raise TLCMError(f"cannot read backbone weights {path}: {type(err).__name__}: {err}") from err
    if not isinstance(state, dict):  # a pickled tensor or list: no names to load by
        raise TLCMError(f"backbone weights {path} hold a {type(state).__name__}, not a dict of named tensors")
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
    own = model.state_dict()
    stem = f"{model.pretrained_cfg.get('first_conv', '')}.weight"
    if stem in state and stem in own and state[stem].shape[1] != own[stem].shape[1]:
        state[stem] = adapt_input_conv(own[stem].shape[1], state[stem])
    missing = sorted(set(own) - set(state))
    wrong = sorted(k for k in own if k in state and state[k].shape != own[k].shape)
    if missing or wrong:
        detail = "; ".join(
            f"{what} ({len(keys)}): {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}"
            for what, keys in (("missing keys", missing), ("shape mismatches", wrong))
            if keys
        )
        raise TLCMError(f"backbone weights {path} do not fit the timm model: {detail}")
    model.load_state_dict({k: state[k] for k in own})


class TimmDiscriminator(Discriminator):
    """Frozen ``timm.create_model(name, features_only=True)`` + heads on levels ``out_indices``.

    pixel: inputs are images (B, 3, H, W) in [-1, 1], mapped to [0, 1] and normalised with the
    backbone's mean/std; otherwise latents (B, in_chans, h, w) as they are. Inputs are resized
    (bilinear, antialiased when shrinking) to ``input_size`` x ``input_size`` first (0: no resizing).
    """

    def __init__(
        self,
        name: str,
        in_chans: int,
        pixel: bool,
        out_indices: tuple[int, ...],
        input_size: int,
        heads: HeadsFactory,
        weights: str = "",
    ) -> None:
        """``heads``: ``make_heads``'s factory."""
        super().__init__()
        try:
            backbone = timm.create_model(
                name, pretrained=False, features_only=True, out_indices=out_indices, in_chans=in_chans
            )
        except (RuntimeError, ValueError, IndexError, AssertionError) as err:
            raise ValueError(
                f"cannot build timm model {name!r} with out_indices {out_indices}: {err}"
            ) from err
        if weights:
            load_weights(backbone, Path(weights))
        self.backbone = backbone.requires_grad_(False).eval()
        self.pixel, self.input_size = pixel, input_size
        cfg = backbone.pretrained_cfg
        mean, std = (torch.tensor(cfg.get(k, (0.5,) * 3)).view(1, -1, 1, 1) for k in ("mean", "std"))
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.heads = heads(backbone.feature_info.channels())

    def train(self, mode: bool = True) -> TimmDiscriminator:
        """Heads follow ``mode``; the frozen backbone stays in eval mode (fixed BatchNorm statistics)."""
        super().train(mode)
        self.backbone.eval()
        return self

    def features(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> list[torch.Tensor]:
        """x (B, C, H, W) -> the backbone's feature maps. Shrinking (1024 px decoded images to 64)
        is antialiased: every input pixel reaches D (plain bilinear reads 4 of every 16 x 16
        block, ~1.6 % of the pixels at 1024 -> 64); enlarging stays plain bilinear."""
        size = (self.input_size,) * 2
        if self.input_size and tuple(x.shape[-2:]) != size:
            shrink = max(x.shape[-2:]) > self.input_size
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        if self.pixel:
            x = ((x + 1) / 2 - self.mean) / self.std
        return self.backbone(x)


class TeacherFeatureDiscriminator(Discriminator):
    """The base network's features on latents x_t (B, C, h, w) at t (B,) with the prompt's
    conditioning, as the model family taps them (UNet: after every down block and the mid block;
    MM-DiT: image tokens after a few blocks), under LoRA adapter ``adapter`` (``TEACHER``: every
    adapter off, the frozen trunk; a name: the discriminator's own adapter, trained by its owner
    with the heads). The network is not a submodule (it is the shared base: not in this module's
    state or parameters)."""

    def __init__(
        self,
        family,
        net: nn.Module,
        heads: HeadsFactory,
        adapters: AdapterSwitch | None = None,
        adapter: str | None = TEACHER,
    ) -> None:
        """``heads``: ``make_heads``'s factory; ``adapters``: the switch of ``net``'s LoRA adapters
        (the Student's; default: a new one)."""
        super().__init__()
        self.family, self.net, self.adapter = family, [net], adapter
        self.adapters = adapters or AdapterSwitch(net, None)
        self.heads = heads(family.feature_channels(net))

    def features(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> list[torch.Tensor]:
        net = self.net[0]
        dtype = next(net.parameters()).dtype  # bf16 frozen weights
        with self.adapters.use(self.adapter):
            return self.family.features(net, x.to(dtype), t.clamp(min=0), cond.to(dtype))

    def frozen_features(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> list[torch.Tensor]:
        """``features`` with the trunk's own adapter (``adapter``, trained by its owner) on detached
        copies of its weights, swapped in for this call (``functional_call``): its later in-place
        update leaves the graph valid, and no gradient reaches it. Not under gradient checkpointing
        nor on FSDP2 shards: there the live weights (L_G leaves gradients on the trunk, which
        ``aux_step``'s optimizer clears before D's update; call ``aux_step`` after the student's
        backward, as the engine does)."""
        net = self.net[0]
        # gradient checkpointing recomputes the blocks in backward with the live (trainable) weights,
        # which torch.utils.checkpoint refuses (other metadata): the live call, as on FSDP2 shards
        if self.adapter is TEACHER or is_sharded(net) or getattr(net, "is_gradient_checkpointing", False):
            return self.features(x, t, cond)
        tag = f".{self.adapter}."
        copies = {f"net.{n}": p.detach().clone() for n, p in net.named_parameters() if tag in n}
        return functional_call(_Tapped(self), copies, (x, t, cond), strict=False)


class _Tapped(nn.Module):
    """``forward(x, t, cond) = discriminator.features(x, t, cond)`` with the discriminator's network
    registered as ``net``, so that ``functional_call`` can swap its weights for one call."""

    def __init__(self, discriminator: TeacherFeatureDiscriminator) -> None:
        super().__init__()
        self.net, self.discriminator = discriminator.net[0], [discriminator]

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> list[torch.Tensor]:
        return self.discriminator[0].features(x, t, cond)
