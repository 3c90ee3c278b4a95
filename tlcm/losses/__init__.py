"""Loss components, one file each, and their registry.

A component registers its Config class under a name with ``@register_loss("name")``; recipes put
configs in ``Phase.losses`` (a dict, so tyro exposes every field as a flag) and the engine only
sums the weighted terms. Registering a new loss in another project needs no change here.
"""

from __future__ import annotations

from collections.abc import Callable

from tlcm.errors import TLCMError
from tlcm.losses.base import Loss, LossConfig, StepContext

LOSSES: dict[str, type[LossConfig]] = {}
"""Registered loss configs by name."""


def register_loss(name: str) -> Callable[[type[LossConfig]], type[LossConfig]]:
    """Class decorator: make a LossConfig subclass available under ``name``."""

    def decorate(cls: type[LossConfig]) -> type[LossConfig]:
        if name in LOSSES and LOSSES[name] is not cls:
            raise ValueError(f"a loss named {name!r} is already registered ({LOSSES[name].__name__})")
        LOSSES[name] = cls
        return cls

    return decorate


def loss_config(name: str, **overrides) -> LossConfig:
    """A config of the registered loss ``name`` with ``overrides``; unknown names fail clearly."""
    if name not in LOSSES:
        raise TLCMError(f"unknown loss {name!r}; registered losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[name](**overrides)


from tlcm.losses import dmd, gan, latent_lpips, lcd, mlcd, preference  # noqa: E402,F401  (register the built-in losses)

__all__ = ["LOSSES", "Loss", "LossConfig", "StepContext", "loss_config", "register_loss"]
