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

A loss in another project's own training loop (a context from ``StepContext.standalone``) gets at
its calls what the engine gives it before and around training: its config is validated against
the context's schedule and grid (at the first call, and again only when they or the config
change), and a loss whose ``aux_step`` / ``after_student_step`` the loop never calls warns once
(``Loss.own_loop_calls``). Contexts the engine builds skip both (it validates every config
before anything loads and calls both methods every step).
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tlcm.conditioning import Conditioning
from tlcm.diffusion.denoiser import Denoiser, Guided
from tlcm.diffusion.milestones import StudentGrid
from tlcm.errors import TLCMError

if TYPE_CHECKING:
    from tlcm.data.states import TrajectoryStates
    from tlcm.data.trajectories import TrajectoryCache
    from tlcm.diffusion.schedule import Schedule
    from tlcm.models.student import Student

_MISSING = object()


@dataclass(frozen=True)
class PhaseContext:
    """What every micro-batch of a phase shares: the networks, the maths, the student's grid.

    student: the trainable denoiser (gradients reach its parameters).
    teacher: the frozen base with its classifier-free guidance inside (``Guided``: call it under
        ``torch.no_grad()``; ``teacher.with_scale(w)`` guides with another w, ``teacher.denoiser``
        is the unguided base).
    schedule: the noise schedule all maths is written in.
    latent_shape: (C, h, w) of one latent.
    grid: the student's sampling grid (M milestones, q steps), the recipe's one owner of it.
    decode: latents (B, C, h, w) -> images (B, 3, H, W) in [-1, 1], differentiable (the VAE
        decoder); None when the loss runs without a pipeline.
    trajectories: the teacher trajectory cache (tlcm/data/trajectories.py), or None.
    real_images: ``(prompt indices (B,) on the host, generator) -> latents (B, C, h, w)`` of the
        real images whose captions are the prompts (data.images), or None.
    uniform_calls: every process must make the same network calls in each step (FSDP2 gathers the
        sharded weights in each call): a loss whose call count depends on its random draws pads it
        to a fixed count (MLCD's MDS states: M masked rounds).
    all_prompts: every training prompt of the run (the micro-batch's are ``StepContext.prompts``), for
        draws outside the micro-batch (reward feedback's unrelated prompts at micro-batch 1).
    """

    student: Denoiser
    teacher: Guided
    schedule: Schedule
    latent_shape: tuple[int, int, int]
    grid: StudentGrid = field(default_factory=StudentGrid)
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None
    trajectories: TrajectoryCache | None = None
    real_images: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    uniform_calls: bool = False
    all_prompts: Sequence[str] = ()


@dataclass
class StepContext:
    """One micro-batch of B prompts: what a loss may use in one training step.

    phase: what the phase fixes (``ctx.student``, ``ctx.teacher``, ``ctx.schedule``, ``ctx.grid``,
        ``ctx.latent_shape``, ``ctx.decode`` read it).
    cond: text conditioning of the batch, B samples.
    generator: the micro-batch's random generator, on the batch's device (the engine seeds it from
        (seed, global step, micro-batch index): exact resume, process count does not matter).
        Every draw must name its device (``ctx.randn`` / ``ctx.rand`` do). Draws the host reads
        come from ``host_generator`` (no device sync).
    step: the global optimizer step.
    prompts: the batch's prompt texts (B,), for rewards that read text.
    prompt_index: (B,) the prompts' indices in the prompt source, on the host (the trajectory cache
        reads its rows there), or None.
    states: precomputed MLCD states (x_tm, t_m, t_n, t_s, x_tn) for this batch, or None (MLCD with
        states="cache" then draws them from ``phase.trajectories``).

    Work shared between losses within the step (the student's samples, its one-step prediction,
    decoded images, a loss's statistics for its ``aux_step``) goes through ``shared`` only.
    """

    phase: PhaseContext
    cond: Conditioning
    generator: torch.Generator
    step: int = 0
    prompts: list[str] = field(default_factory=list)
    prompt_index: torch.Tensor | None = None
    states: TrajectoryStates | None = None
    _work: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _standalone: bool = field(default=False, init=False, repr=False)
    """Built by ``standalone`` (another project's loop): a ``Loss`` then validates its config and
    watches for a forgotten ``aux_step`` / ``after_student_step`` (the engine does both itself)."""

    student = property(lambda self: self.phase.student, doc="``phase.student``")
    teacher = property(lambda self: self.phase.teacher, doc="``phase.teacher`` (guided)")
    schedule = property(lambda self: self.phase.schedule, doc="``phase.schedule``")
    grid = property(lambda self: self.phase.grid, doc="``phase.grid``")
    latent_shape = property(lambda self: self.phase.latent_shape, doc="``phase.latent_shape``")
    decode = property(lambda self: self.phase.decode, doc="``phase.decode``")

    @classmethod
    def standalone(cls, **fields: Any) -> StepContext:
        """A context built outside the engine (another project's training loop, a test): every
        field of ``PhaseContext`` and of ``StepContext`` by name, e.g. ``StepContext.standalone(
        student=f, teacher=Guided(g, 8.0, uncond), schedule=s, latent_shape=(4, 64, 64), cond=c,
        generator=gen)``. Refused in one line: a teacher that is not a ``Guided`` (None is let
        through for losses that never call it), a ``generator`` that is not a torch.Generator (None
        would draw from the global RNG), a ``latent_shape`` that is not (C, h, w), ``prompts`` that
        are neither empty nor one per sample of ``cond``. Losses called on it validate their config
        and warn when the loop forgets their ``aux_step`` / ``after_student_step`` (``Loss``)."""
        check_standalone_fields(fields)
        phase_fields = {f.name for f in dataclass_fields(PhaseContext)}
        phase = PhaseContext(**{k: v for k, v in fields.items() if k in phase_fields})
        ctx = cls(phase, **{k: v for k, v in fields.items() if k not in phase_fields})
        ctx._standalone = True
        return ctx

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

    def real_latents(self) -> torch.Tensor:
        """Latents (B, C, h, w) of the micro-batch's real images (the captions are its prompts:
        ``phase.real_images`` reads rows ``prompt_index``), encoded once per step."""
        if self.phase.real_images is None or self.prompt_index is None:
            raise TLCMError(
                "this loss trains on real images: pass --recipes.data.images DIR (an image folder "
                "(metadata.jsonl or NAME.txt captions) or webdataset shards; python -m tlcm.data.images "
                "--write-miniature DIR)"
            )
        return self.shared("real_latents", lambda: self.phase.real_images(self.prompt_index, self.generator))

    def randn(self, *shape: int) -> torch.Tensor:
        """Standard normal noise of ``shape`` from the step's generator, on the batch's device."""
        return torch.randn(shape, generator=self.generator, device=self.device)

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) noise of ``shape`` from the step's generator, on the batch's device."""
        return torch.rand(shape, generator=self.generator, device=self.device)

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute ``key`` once per step, whichever loss asks first (e.g. the student's q-step
        samples); a loss leaves its own results for its ``aux_step`` the same way."""
        if key not in self._work:
            self._work[key] = compute()
        return self._work[key]

    def computed(self, key: str, default: Any = _MISSING) -> Any:
        """What ``shared(key, ...)`` computed in this step; ``default`` (else KeyError) if nothing."""
        if key in self._work:
            return self._work[key]
        if default is _MISSING:
            raise KeyError(f"nothing computed under {key!r} in this step (computed: {sorted(self._work)})")
        return default


def check_standalone_fields(fields: dict[str, Any]) -> None:
    """Refuse, in one line (what, how to fix), the ``StepContext.standalone`` inputs that would
    otherwise train the wrong thing without an error: an unguided teacher (the student would
    distil the teacher without CFG), a missing generator (draws from the global RNG: no
    reproducibility), a latent shape that is not (C, h, w), prompt texts that do not match the
    conditioning's batch (a reward would score only some samples)."""
    where = "StepContext.standalone"
    teacher = fields.get("teacher")
    if teacher is not None and not isinstance(teacher, Guided):
        raise TLCMError(
            f"{where}: teacher is a {type(teacher).__name__}, not a tlcm.diffusion.denoiser.Guided (the "
            "losses call it as the CFG-guided teacher): pass teacher=Guided(denoiser, guidance_scale, "
            "uncond), or Guided(denoiser) for no guidance"
        )
    if "generator" in fields and not hasattr(fields["generator"], "initial_seed"):
        got = fields["generator"]
        raise TLCMError(
            f"{where}: generator must be a torch.Generator on the batch's device, got {got!r} (None "
            "would draw from the global RNG: no reproducibility): pass generator=torch.Generator("
            "device).manual_seed(seed)"
        )
    shape = fields.get("latent_shape")
    if "latent_shape" in fields and not (isinstance(shape, Sequence) and len(shape) == 3):
        raise TLCMError(
            f"{where}: latent_shape must be (C, h, w) of one latent, got {shape!r}: e.g. (unet.config."
            "in_channels, unet.config.sample_size, unet.config.sample_size)"
        )
    prompts, cond = fields.get("prompts", []), fields.get("cond")
    if isinstance(prompts, str) or (cond is not None and len(prompts) not in (0, len(cond))):
        got = repr(prompts) if isinstance(prompts, str) else f"{len(prompts)} prompts"
        batch = "?" if cond is None else len(cond)
        raise TLCMError(
            f"{where}: prompts must be the batch's {batch} prompt texts (a list, one per sample of "
            f"cond, in its order) or left out, got {got}: pass the prompts you encoded into cond"
        )


OWN_LOOP_FORWARDS = 3
"""Forwards of a loss in an own loop (over at least 2 ``ctx.step`` values) without a method of
``Loss.own_loop_calls`` before it warns; ``OWN_LOOP_FORWARDS_ONE_STEP`` when every context has the
same ``step`` (a loop that does not pass it: so gradient accumulation over fewer micro-batches,
each a forward before one ``aux_step``, never warns)."""
OWN_LOOP_FORWARDS_ONE_STEP = 8

_OWN_LOOP_CALLS = {
    "aux_step": ("aux_step([ctx, ...])", "the model it trains (a fake score, a discriminator) never changes"),
    "after_student_step": ("after_student_step()", "its EMA target never moves"),
}
"""How to call each method an own loop may forget, and what forgetting it does."""


def _marks_own_loop_call(name: str, method: Callable) -> Callable:
    """``method`` (a ``Loss`` subclass's ``aux_step`` / ``after_student_step``) that first records
    the call for the forgotten-call warning (a no-op for a loss never called on a standalone
    context)."""

    @functools.wraps(method)
    def marked(self, *args, **kwargs):
        self._own_loop_called(name)
        return method(self, *args, **kwargs)

    marked._marks_own_loop_call = True
    return marked


class Loss(nn.Module):
    """Base of loss components. ``forward`` returns unweighted named scalar terms.

    Called on a ``StepContext.standalone`` context (another project's loop), a loss first
    validates its config (``self.config``, a ``LossConfig``) against the context's schedule and
    grid, as the engine does before training, and warns once per method when the loop keeps
    calling it without the methods of ``own_loop_calls``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Mark every override of ``aux_step`` / ``after_student_step`` as a call of it (resets
        the forgotten-call count), so that a new loss gets the warning without writing anything."""
        super().__init_subclass__(**kwargs)
        for name in _OWN_LOOP_CALLS:
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "_marks_own_loop_call", False):
                setattr(cls, name, _marks_own_loop_call(name, method))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ctx = args[0] if args else kwargs.get("ctx")
        if getattr(ctx, "_standalone", False):
            self._own_loop_checks(ctx)
        return super().__call__(*args, **kwargs)

    def _own_loop_checks(self, ctx: StepContext) -> None:
        """What the engine would have done for a loss called on a standalone context: validate the
        config (when it, the schedule's T or the grid changed since the last check), count this
        forward for each method of ``own_loop_calls`` the loop has not called since."""
        state = self.__dict__.setdefault("_own_loop", {"pending": {}, "warned": set()})
        self._validate_standalone(ctx, state)
        if "calls" not in state:
            state["calls"] = tuple(self.own_loop_calls())
        cls = type(self).__name__
        for name in state["calls"]:
            if name in state["warned"]:
                continue
            count, steps = state["pending"].setdefault(name, [0, set()])
            count += 1
            steps.add(ctx.step)
            state["pending"][name][0] = count
            if count >= OWN_LOOP_FORWARDS and (len(steps) >= 2 or count >= OWN_LOOP_FORWARDS_ONE_STEP):
                state["warned"].add(name)
                how, what = _OWN_LOOP_CALLS[name]
                warnings.warn(
                    f"{cls} ran {count} forwards in your own loop without {cls}.{name}(): {what}; "
                    f"call loss.{how} after each optimizer step of the student (once per step, with "
                    "all its micro-batch contexts)",
                    UserWarning,
                    stacklevel=3,
                )

    def _validate_standalone(self, ctx: StepContext, state: dict[str, Any]) -> None:
        """``self.config.validate(T, grid)`` (T: the context's schedule's timestep count) as the
        engine's recipe check runs it, refused in one line naming the loss and its config class."""
        config = getattr(self, "config", None)
        num_train_timesteps = getattr(ctx.schedule, "num_train_timesteps", None)
        if not isinstance(config, LossConfig) or num_train_timesteps is None:
            return
        seen = state.get("validated")
        if seen is not None and seen == (num_train_timesteps, ctx.grid, config):
            return
        try:
            config.validate(num_train_timesteps, ctx.grid)
        except ValueError as err:
            name = type(config).__name__
            grid = f"M = {getattr(ctx.grid, 'num_milestones', '?')}, q = {getattr(ctx.grid, 'steps', '?')}"
            raise TLCMError(
                f"{type(self).__name__}: its {name} is invalid: {err} (checked against the context's "
                f"schedule, T = {num_train_timesteps}, and grid, {grid}): fix that {name} field"
            ) from err
        state["validated"] = (num_train_timesteps, ctx.grid, copy.copy(config))

    def _own_loop_called(self, name: str) -> None:
        """``aux_step`` / ``after_student_step`` ran: restart its forgotten-call count."""
        state = self.__dict__.get("_own_loop")
        if state is not None:
            state["pending"].pop(name, None)

    def own_loop_calls(self) -> tuple[str, ...]:
        """The methods an own training loop must call after each student step for this loss to
        train what it should (warned about when forgotten on standalone contexts): ``aux_step``
        when the loss owns a model it trains (an ``AuxOptimizer``), ``after_student_step`` when
        the class overrides it. A loss whose override does nothing under its config returns less."""
        from tlcm.losses.auxiliary import AuxOptimizer  # here: the recipe tree imports this module

        calls = ()
        if any(isinstance(value, AuxOptimizer) for value in vars(self).values()):
            calls += ("aux_step",)
        if type(self).after_student_step is not Loss.after_student_step:
            calls += ("after_student_step",)
        return calls

    def forward(self, ctx: StepContext) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def aux_step(self, contexts: list[StepContext]) -> dict[str, torch.Tensor]:
        """Update models this loss owns (fake score, discriminator) after the student's step, from
        all of this process's micro-batch ``contexts`` (their ``shared`` results are still there);
        returns metrics as 0-dim tensors (no host sync). Default: none."""
        self._own_loop_called("aux_step")
        return {}

    def after_student_step(self) -> None:
        """Called after each student optimizer step (e.g. to update an EMA target). Default: nothing."""
        self._own_loop_called("after_student_step")

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything to restore this loss exactly (its models; losses with optimizers add theirs)."""
        return self.state_dict()

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Inverse of ``checkpoint_state``."""
        self.load_state_dict(state)


def build_loss(name: str, config: LossConfig, student: Student) -> Loss:
    """``config.build(student)`` for the phase's loss ``name``, refused in one line naming the
    config's class when it is not a ``Loss`` (a ``build`` without ``return`` gives None)."""
    loss = config.build(student)
    if not isinstance(loss, Loss):
        cls = type(config)
        raise TLCMError(
            f"loss {name!r}: {cls.__module__}.{cls.__qualname__}.build(student) returned a "
            f"{type(loss).__name__}, not a tlcm.losses.Loss: return the loss module it makes"
        )
    return loss


def checked_terms(name: str, loss: Loss, terms: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``terms`` = ``loss(ctx)`` of the phase's loss ``name``, each a one-element tensor, or one
    line naming the loss, its class and the term (before backward fails far from the loss)."""
    for key, value in terms.items():
        if not (isinstance(value, torch.Tensor) and value.numel() == 1):
            what = (
                f"a tensor of shape {tuple(value.shape)}"
                if isinstance(value, torch.Tensor)
                else f"a {type(value).__name__}"
            )
            cls = type(loss)
            raise TLCMError(
                f"loss {name!r} ({cls.__module__}.{cls.__qualname__}) returned {what} for its term {key!r}: "
                "forward(ctx) must return {term: 0-dim tensor}, e.g. the batch's .mean()"
            )
    return terms


def check_reaches_student(total: torch.Tensor | float, names: list[str]) -> None:
    """Refuse a micro-batch objective ``total`` (the weighted sum of the losses ``names``) that
    carries no gradient while gradients are on (a loss computed under no_grad or detached)."""
    if isinstance(total, torch.Tensor) and torch.is_grad_enabled() and not total.requires_grad:
        raise TLCMError(
            f"losses {', '.join(names)}: no term carries a gradient to the student: forward(ctx) "
            "must compute its terms from ctx.student(...) outside torch.no_grad() and without .detach()"
        )


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

    def data_needs(self) -> dict[str, tuple[str, str]]:
        """The recipe's data this loss reads, checked before anything loads: ``{DataConfig field:
        (the setting that needs it, e.g. 'states "cache"', what to do instead)}``. Default: none."""
        return {}

    def shared_reads(self) -> dict[str, str]:
        """The step's shared work (``tlcm.losses.shared`` keys) this loss reads and another loss of
        the phase must leave first, checked before anything loads: ``{key: which loss to list
        before it}``. Default: none."""
        return {}

    def shared_leaves(self) -> tuple[str, ...]:
        """The shared-work keys this loss leaves in every step for the losses listed after it."""
        return ()

    def validate(self, num_train_timesteps: int, grid: StudentGrid) -> None:
        """Raise ``ValueError`` (what, which value, valid range) for out-of-range fields;
        ``grid`` is the recipe's student grid (already checked) for fields that depend on M or q."""
