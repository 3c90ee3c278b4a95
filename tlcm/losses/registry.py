"""The registry of loss components: ``@register_loss("name")`` on a LossConfig subclass.

Loss modules import ``register_loss`` from here, never from the package (whose lazy ``LOSSES`` /
``loss_config`` import the built-in losses): imports flow one way, loss module -> registry -> base.
This module's ``LOSSES`` holds what has been imported so far; ``tlcm.losses.LOSSES`` also has
every built-in loss.
"""

from __future__ import annotations

from collections.abc import Callable

from tlcm.errors import TLCMError
from tlcm.losses.base import LossConfig

LOSSES: dict[str, type[LossConfig]] = {}
"""Registered loss configs by name."""


def register_loss(name: str) -> Callable[[type[LossConfig]], type[LossConfig]]:
    """Class decorator: make a LossConfig subclass available under ``name``."""

    def decorate(cls: type[LossConfig]) -> type[LossConfig]:
        if name in LOSSES and LOSSES[name] is not cls:
            taken, new = (f"{c.__module__}.{c.__qualname__}" for c in (LOSSES[name], cls))
            raise ValueError(
                f"a loss named {name!r} is already registered ({taken}); register {new} under another "
                "name (a module imported twice, e.g. as __main__ and by name, registers its loss twice)"
            )
        LOSSES[name] = cls
        return cls

    return decorate


def loss_config(name: str, **overrides) -> LossConfig:
    """A config of the registered loss ``name`` with ``overrides``; unknown names fail clearly."""
    if name not in LOSSES:
        raise TLCMError(f"unknown loss {name!r}; registered losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[name](**overrides)
