"""Calling a network with swapped-in weights (no second copy of the network)."""

from __future__ import annotations

import torch
from torch.func import functional_call

from tlcm.distributed import is_sharded
from tlcm.errors import TLCMError
from tlcm.models.families import DEFAULT_FAMILY, Family


class _FamilyCall(torch.nn.Module):
    """``forward(x, t, cond) = family.forward(net, x, t, cond)``, so that ``functional_call`` can
    swap the weights of ``net`` (named ``net.<name>`` here) for one call."""

    def __init__(self, family: Family, net: torch.nn.Module) -> None:
        super().__init__()
        self.family, self.net = family, net

    def forward(self, x, t, cond):
        return self.family.forward(self.net, x, t, cond)


def functional_denoiser(
    module: torch.nn.Module,
    params: dict[str, torch.Tensor],
    family: Family | None = None,
    counter=None,
):
    """``(x, t, cond) -> output`` of ``module`` with ``params`` (name -> tensor) in place of its own
    (EMA targets, frozen references): one copy of the trainable weights, not of the network.
    ``family``: how to call it (default: the registry's ``DEFAULT_FAMILY``). ``counter``: an object
    with an int ``evaluations`` (the BaseModel) that every call adds its batch to, as its
    ``denoiser()`` calls do."""
    if is_sharded(module):  # functional_call ignores the swapped weights of an FSDP2 module, silently
        raise TLCMError(
            "EMA targets and DPO references call the network with swapped-in weights, which FSDP2 "
            "does not support: use MLCD target stopgrad / preference mode reward, or drop "
            "--recipes.runtime.fsdp"
        )
    wrapper = _FamilyCall(family or DEFAULT_FAMILY, module)
    named = {f"net.{name}": value for name, value in params.items()}

    def call(x, t, cond):
        if counter is not None:
            counter.evaluations += x.shape[0]  # a host int: no sync
        return functional_call(wrapper, named, (x, t, cond), strict=False)

    return call
