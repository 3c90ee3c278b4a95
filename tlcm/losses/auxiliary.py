"""The optimizer of a model a loss owns (DMD's fake score, a GAN discriminator's heads).

Such models are updated in ``Loss.aux_step``, outside the student's optimizer. One update averages
the loss over every micro-batch of this process (gradient accumulation) and over torchrun
processes (all-reduce), like the student's, so 2 processes x 1 micro-batch equal 1 process x 2
micro-batches; its state goes into the loss's checkpoint so that resume is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

Context = TypeVar("Context")


def check_settings(
    prefix: str, betas: tuple[float, float], weight_decay: float, max_grad_norm: float
) -> None:
    """Raise ``ValueError`` naming ``{prefix}_betas`` / ``_weight_decay`` / ``_max_grad_norm`` (a
    config's fields for its AuxOptimizer) when out of range: betas in [0, 1), both >= 0."""
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"{prefix}_betas must be two values in [0, 1), got {tuple(betas)}")
    if weight_decay < 0 or max_grad_norm < 0:
        raise ValueError(
            f"need {prefix}_weight_decay >= 0, {prefix}_max_grad_norm >= 0 (0: no clipping); "
            f"got {weight_decay}, {max_grad_norm}"
        )


class AuxOptimizer:
    """AdamW over ``params`` with one ``step(loss_fn, contexts)``: zero grads, accumulate the
    backward of every micro-batch, all-reduce, clip (``max_grad_norm``; 0: none), step. Parameters
    may mix FSDP2 shards and plain tensors (a discriminator's trunk LoRA and its heads). The
    defaults (betas (0, 0.99), no weight decay, clip 1) are the owning losses' config defaults."""

    def __init__(
        self,
        params: list[torch.nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.0, 0.99),
        max_grad_norm: float = 1.0,
        weight_decay: float = 0.0,
        owner: str = "the loss's own model",
    ):
        """``owner`` names the model in the one-line error when none of ``params`` is trainable
        (e.g. "DMD's fake score": a copy of a frozen teacher keeps requires_grad=False)."""
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError(
                f"{owner} has no parameter with requires_grad=True, so its AuxOptimizer has nothing "
                "to train: call .requires_grad_(True) on it (a copy of a frozen teacher keeps "
                "requires_grad=False)"
            )
        betas = (float(betas[0]), float(betas[1]))
        self.opt = torch.optim.AdamW(self.params, lr=lr, betas=betas, weight_decay=weight_decay)
        self.max_grad_norm = max_grad_norm

    def step(self, loss_fn: Callable[[Context], torch.Tensor], contexts: Sequence[Context]) -> torch.Tensor:
        """One update of the owned model on the mean over ``contexts`` (this process's micro-batches)
        of ``loss_fn(ctx)`` (a scalar with a graph to ``params``); returns that mean, detached."""
        from tlcm.distributed import average_gradients, clip_grad_norm, world_size  # late: cycle

        self.opt.zero_grad(set_to_none=True)
        total = 0.0
        for ctx in contexts:
            loss = loss_fn(ctx) / len(contexts)
            loss.backward()
            total = total + loss.detach().float()
        for p in self.params:  # a parameter the loss did not reach: a zero gradient, as the
            if p.grad is None:  # all-reduce of several processes has it (the same AdamW state)
                p.grad = torch.zeros_like(p)
        average_gradients(self.params, world_size())
        if self.max_grad_norm > 0:
            clip_grad_norm(self.params, self.max_grad_norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return total

    def state_dict(self) -> dict[str, Any]:
        return self.opt.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from tlcm.distributed import reshard_optimizer_state

        self.opt.load_state_dict(state)
        reshard_optimizer_state(self.opt)  # full tensors of a checkpoint -> FSDP2 shards
