"""The optimizer of a model a loss owns (DMD's fake score, a GAN discriminator's heads).

Such models are updated in ``Loss.aux_step``, outside the student's optimizer; their gradients are
averaged over torchrun processes like the student's, and their state goes into the loss's
checkpoint so that resume is exact.
"""

from __future__ import annotations

from typing import Any

import torch

from tlcm.distributed import average_gradients, world_size


class AuxOptimizer:
    """AdamW over ``params`` with one ``step(loss)``: zero grads, backward, all-reduce, clip, step."""

    def __init__(
        self, params: list[torch.nn.Parameter], lr: float, betas=(0.0, 0.99), max_grad_norm: float = 1.0
    ):
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("AuxOptimizer got no trainable parameters")
        self.opt = torch.optim.AdamW(self.params, lr=lr, betas=betas, weight_decay=0.0)
        self.max_grad_norm = max_grad_norm

    def step(self, loss: torch.Tensor) -> None:
        """One update of the owned model on ``loss`` (a scalar with a graph to ``params``)."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.params, world_size())
        if self.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return self.opt.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state)
