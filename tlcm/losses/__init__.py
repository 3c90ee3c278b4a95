"""Loss components, one file each, and their registry.

A component registers its Config class under a name with ``@register_loss("name")``; recipes put
configs in ``Phase.losses`` (a dict, so tyro exposes every field as a flag) and the engine only
sums the weighted terms. Registering a new loss in another project needs no change here.

Importing this package loads only the base classes and the registry (tlcm.losses.registry), so the
recipe tree (tlcm.config) does not load the losses. The built-in losses register when their module
is imported (a recipe imports the configs it uses), and all of them when ``LOSSES`` or
``loss_config`` is first read from this package.
"""

from __future__ import annotations

from typing import Any

from tlcm.losses.base import Loss, LossConfig, PhaseContext, StepContext
from tlcm.losses.registry import register_loss


def import_builtin_losses() -> None:
    """Import (and so register) every built-in loss."""
    from tlcm.losses import add, dmd, gan, lcd, mlcd, preference  # noqa: F401


def __getattr__(name: str) -> Any:
    """``LOSSES`` and ``loss_config`` with the built-in losses registered (imported on first use)."""
    if name in ("LOSSES", "loss_config"):
        import_builtin_losses()
        from tlcm.losses import registry

        value = globals()[name] = getattr(registry, name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LOSSES", "Loss", "LossConfig", "PhaseContext", "StepContext", "loss_config", "register_loss"]
