"""Which LoRA adapter is live in a forward pass AND in its backward: the one owner of that switch.

Several trainable sets share one frozen base network as peft LoRA adapters (the student, DMD's
fake score) and the teacher is the same network with every adapter off. peft keeps the selection in
each LoRA layer (``_active_adapter``, ``_disable_adapters``); a context manager that sets it for a
call and restores it afterwards is right without gradient checkpointing, and silently wrong with
it: the checkpointed blocks recompute their forward DURING backward, after the switch was undone,
so a fake score's gradients were computed through the student's adapter (relative L2 error 1.5)
and the teacher-feature discriminator's recomputation raised ``CheckpointError``.

``AdapterSwitch`` therefore both sets the selection (``use``) and installs the network's gradient
checkpointing function (``set_gradient_checkpointing``): each checkpointed block records the
selection live at its forward (``torch.utils.checkpoint``'s ``context_fn``) and recomputes under
that same selection. Every adapter switch of the project goes through one ``AdapterSwitch``.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch.utils.checkpoint import checkpoint

TEACHER = None
"""``AdapterSwitch.use(TEACHER)``: every adapter off (the frozen base network)."""


class AdapterSwitch:
    """The live adapter of ``net``'s LoRA layers: a name, or ``TEACHER`` (None: adapters off).

    ``default`` is the selection outside any ``use`` (the student's adapter)."""

    def __init__(self, net: torch.nn.Module, default: str | None) -> None:
        self.net, self.default = net, default
        self.refresh()

    def refresh(self) -> None:
        """Re-read the LoRA layers (after adapters were added or deleted)."""
        self.layers = [m for m in self.net.modules() if isinstance(m, BaseTunerLayer)]

    @property
    def live(self) -> str | None:
        """The current selection (read from the first LoRA layer; ``default`` without layers)."""
        if not self.layers:
            return self.default
        first = self.layers[0]
        if first._disable_adapters:
            return TEACHER
        active = first._active_adapter  # peft's set_adapter leaves a one-name list
        return active[0] if isinstance(active, list) and len(active) == 1 else active

    def _set(self, name: str | None) -> None:
        # peft's per-layer fields, without diffusers' module walk and requires_grad changes
        # (~30x cheaper than set_adapter / disable_adapters: 9-17 % of an MLCD step), written into
        # each layer's __dict__: where nn.Module.__setattr__ puts a plain attribute, without its
        # ~3 us of checks per write (79 layers: 18x less per toggle; benchmarks/results/engine_overhead.md)
        off = name is TEACHER
        for layer in self.layers:
            fields = vars(layer)
            fields["_disable_adapters"] = off
            if not off:
                fields["_active_adapter"] = name

    @contextmanager
    def use(self, name: str | None):
        """Run ``net`` with adapter ``name`` (``TEACHER``: none) inside the block; the selection
        before it comes back afterwards (nesting is fine; already live: nothing is written)."""
        before = self.live
        if before == name:
            yield
            return
        self._set(name)
        try:
            yield
        finally:
            self._set(before)

    def _checkpoint_contexts(self):
        """``context_fn`` of ``torch.utils.checkpoint``: (forward context, recompute context); the
        recomputation in backward runs under the selection live now, at the forward."""
        return nullcontext(), self.use(self.live)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute ``net``'s block activations in backward (diffusers' per-block checkpointing),
        each under the adapter selection of its forward; ``enabled`` False switches it off."""
        if not enabled:
            self.net.disable_gradient_checkpointing()
            return

        def checkpointed(module: torch.nn.Module, *args):
            return checkpoint(
                module.__call__, *args, use_reentrant=False, context_fn=self._checkpoint_contexts
            )

        self.net.enable_gradient_checkpointing(gradient_checkpointing_func=checkpointed)
