"""What every loss component is: a Config dataclass (``weight`` + its own hyper-parameters) that
builds an ``nn.Module`` returning named scalar terms from a per-step context.

The engine only ever calls ``Loss.forward(ctx)`` once per micro-batch (sums ``weight * term``),
``Loss.aux_step(contexts)`` once per optimizer step with EVERY micro-batch context of this process
(losses that own a model, e.g. a fake score or a discriminator, update it there, accumulating over
the micro-batches: ``AuxOptimizer.step`` does it), ``Loss.after_student_step()`` (e.g. an EMA
target) and ``checkpoint_state`` / ``load_checkpoint_state``; it never names a loss. Both forward
and aux_step run under the step's autocast. The contract, tested for every registered loss:
resuming mid-phase equals the uninterrupted run bit for bit, and 2 processes x 1 micro-batch equal
1 process x 2 accumulated micro-batches. So everything a loss needs to continue (reference
weights, EMA targets, owned models and their optimizers) must be in ``checkpoint_state``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tlcm.conditioning import Conditioning
from tlcm.diffusion.milestones import StudentGrid

if TYPE_CHECKING:
    from tlcm.diffusion.schedule import Schedule
    from tlcm.models.student import Student

Denoiser = Callable[[torch.Tensor, torch.Tensor, Conditioning], torch.Tensor]
"""``(x (B, C, h, w), t (B,), cond) -> raw model output (B, C, h, w)`` (eps, v or x0)."""


@dataclass
class StepContext:
    """Everything a loss may use in one training step (batch of B prompts).

    student: the trainable denoiser (gradients reach its parameters).
    teacher: the frozen base denoiser (call it under ``torch.no_grad()``).
    schedule: the noise schedule all maths is written in.
    cond, uncond: text conditioning of the batch, (B, ...) each.
    guidance_scale: the teacher's CFG scale w.
    generator: the micro-batch's random generator, on the batch's device (the engine seeds it from
        (seed, global step, micro-batch index): exact resume, process count does not matter).
        Every draw must name its device (``ctx.randn`` / ``ctx.rand`` do). Draws the host reads
        come from ``host_generator`` (no device sync).
    batch: extra data of the step (e.g. cached teacher trajectories), by name.
    cache: results shared between losses within this step; use ``shared``.
    prompts: the batch's prompt texts (B,), for rewards that read text.
    decode: latents (B, C, h, w) -> images (B, 3, H, W) in [-1, 1], differentiable (the VAE
        decoder); None when the loss runs without a pipeline.
    grid: the student's sampling grid (M milestones, q steps), the recipe's one owner of it.
    uniform_calls: every process must make the same network calls in this step (FSDP2 gathers the
        sharded weights in each call): a loss whose call count depends on its random draws pads it
        to a fixed count (MLCD's MDS states: M masked rounds).
    """

    student: Denoiser
    teacher: Denoiser
    schedule: Schedule
    cond: Conditioning
    uncond: Conditioning
    guidance_scale: float
    generator: torch.Generator
    latent_shape: tuple[int, int, int]
    step: int = 0
    batch: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    prompts: list[str] = field(default_factory=list)
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None
    grid: StudentGrid = field(default_factory=StudentGrid)
    uniform_calls: bool = False

    @property
    def batch_size(self) -> int:
        return len(self.cond)

    @property
    def device(self) -> torch.device:
        return self.cond.prompt_embeds.device

    @property
    def host_generator(self) -> torch.Generator:
        """The generator of draws the host must read (how many teacher calls, which prompts or
        cache rows): on a CPU step the step's generator itself (the same draws as ever), on an
        accelerator a CPU generator seeded like it (made once per step), so reading them waits
        for no device. Draw with ``device=ctx.host_generator.device``."""
        if self.generator.device.type == "cpu":
            return self.generator
        seed = self.generator.initial_seed()  # the engine's (seed, step, micro-batch): exact resume
        return self.shared("host_generator", lambda: torch.Generator().manual_seed(seed))

    def randn(self, *shape: int) -> torch.Tensor:
        """Standard normal noise of ``shape`` from the step's generator, on the batch's device."""
        return torch.randn(shape, generator=self.generator, device=self.device)

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) noise of ``shape`` from the step's generator, on the batch's device."""
        return torch.rand(shape, generator=self.generator, device=self.device)

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute ``key`` once per step, whichever loss asks first (e.g. the student's q-step samples)."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


class Loss(nn.Module):
    """Base of loss components. ``forward`` returns unweighted named scalar terms."""

    def forward(self, ctx: StepContext) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def aux_step(self, contexts: list[StepContext]) -> dict[str, torch.Tensor]:
        """Update models this loss owns (fake score, discriminator) after the student's step, from
        all of this process's micro-batch ``contexts`` (their ``shared`` results are still there);
        returns metrics as 0-dim tensors (no host sync). Default: none."""
        return {}

    def after_student_step(self) -> None:
        """Called after each student optimizer step (e.g. to update an EMA target). Default: nothing."""

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything to restore this loss exactly (its models; losses with optimizers add theirs)."""
        return self.state_dict()

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Inverse of ``checkpoint_state``."""
        self.load_state_dict(state)


@dataclass
class LossConfig:
    """Base of loss configs: every loss has a weight; subclasses add their hyper-parameters."""

    weight: float = 1.0
    """Multiplier of this loss's terms in the student's objective."""

    def build(self, student: Student) -> Loss:  # pragma: no cover - abstract
        """Make the loss module for ``student`` (a tlcm.models.Student: ``student.net`` is the
        trainable UNet, for EMA copies; ``student.auxiliary(name)`` gives a fake score or a
        reference on the same base weights; ``student.base`` is the frozen pipeline)."""
        raise NotImplementedError

    def adapters(self) -> dict[str, int]:
        """The LoRA adapters ``{name: rank}`` (rank 0: the student's) that ``build`` trains on the
        shared base through ``student.auxiliary(name, rank)``; the engine adds them before it
        shards the network (FSDP2 manages only parameters that exist then). Default: none."""
        return {}

    def validate(self, num_train_timesteps: int, grid: StudentGrid) -> None:
        """Raise ``ValueError`` (what, which value, valid range) for out-of-range fields;
        ``grid`` is the recipe's student grid (already checked) for fields that depend on M or q."""
