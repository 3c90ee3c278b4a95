"""Calling a module with swapped-in weights (no second copy of the module)."""

from __future__ import annotations

import torch
from torch.func import functional_call


def functional_denoiser(module: torch.nn.Module, params: dict[str, torch.Tensor]):
    """``(x, t, cond) -> output`` of ``module`` with ``params`` (name -> tensor) in place of its own
    (EMA targets, frozen references): one copy of the trainable weights, not of the UNet."""

    def call(x, t, cond):
        return functional_call(module, params, (x, t), cond.unet_kwargs(), strict=False).sample

    return call
