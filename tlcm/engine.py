"""The training loop: phases -> optimizer steps -> weighted sum of named loss terms.

It knows no loss by name: each phase builds its configs' modules, sums ``weight * term`` for every
term they return, lets them update their own models (``aux_step``) and EMA targets
(``after_student_step``). Randomness of micro-batch j of global step s comes from a generator
seeded with (seed, s, j), whichever process runs it: resume is exact, and a 2-process run equals
a 1-process run with the same global batch split into the same micro-batches.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tlcm.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from tlcm.config import Phase, Recipe
from tlcm.data.prompts import load_prompts
from tlcm.data.trajectories import TrajectoryCache
from tlcm.distributed import DistInfo, average_gradients, average_terms, init_distributed
from tlcm.errors import TLCMError
from tlcm.losses import Loss, StepContext
from tlcm.models.base import BaseModel
from tlcm.models.student import Student
from tlcm.report import Reporter
from tlcm.samples import write_phase_grid
from tlcm.validation import validate_recipe


class NonFiniteLoss(TLCMError):
    """A loss term became NaN/inf and the recipe says stop."""


@dataclass
class Run:
    """What a finished (or pre-empted) run leaves: its folder, student and last state."""

    out_dir: Path
    base: BaseModel
    student: Student
    state: TrainState
    preempted: bool = False
    skipped_steps: list[int] = field(default_factory=list)
    is_main: bool = True


def _seed(seed: int, step: int, chunk: int) -> int:
    return (seed * 1_000_003 + step * 1_009 + chunk) % (2**63 - 1)


class Trainer:
    """Holds what lives across phases (model, student, prompts, text embeddings) and runs them."""

    def __init__(self, recipe: Recipe, dist: DistInfo | None = None) -> None:
        validate_recipe(recipe)
        self.recipe, rt = recipe, recipe.runtime
        self.dist = dist or init_distributed(rt.device)
        self.prompts = load_prompts(recipe.data.prompts)
        torch.manual_seed(rt.seed)
        self.base = BaseModel.load(recipe.model.path, device=self.dist.device)
        self.student = Student(self.base, recipe.student)
        self.cond, uncond = self.base.encode(self.prompts)
        cache_dir = recipe.data.trajectory_cache  # teacher trajectories for losses with states="cache"
        self.trajectories = cache_dir and TrajectoryCache.open(
            cache_dir, self.base, self.prompts, guidance_scale=recipe.model.guidance_scale
        )
        self.uncond = uncond[:1]
        use_bf16 = rt.mixed_precision == "bf16" or (
            rt.mixed_precision == "auto" and self.dist.device.type == "cuda"
        )
        self.autocast = torch.autocast(self.dist.device.type, dtype=torch.bfloat16, enabled=use_bf16)
        if rt.gradient_checkpointing:
            self.student.unet.enable_gradient_checkpointing()
        self.reporter = Reporter(rt.out_dir, enabled=self.dist.is_main)
        self._stop = False

    def _context(self, idx: torch.Tensor, generator: torch.Generator, step: int) -> StepContext:
        return StepContext(
            student=self.student.denoiser(),
            teacher=self.student.teacher(),
            schedule=self.base.schedule,
            cond=self.cond[idx],
            uncond=self.uncond.expand_to(len(idx)),
            guidance_scale=self.recipe.model.guidance_scale,
            generator=generator,
            latent_shape=self.base.latent_shape,
            step=step,
            batch={"prompt_index": idx, "trajectory_cache": self.trajectories},
            prompts=[self.prompts[i] for i in idx.tolist()],
            decode=self.base.decode,
        )

    def _step(self, phase: Phase, losses: dict[str, Loss], opt, params, global_step: int):
        """One optimizer step over this process's micro-batches; returns (terms, finite)."""
        seed, world, accum = self.recipe.runtime.seed, self.dist.world_size, phase.grad_accum
        chunks = world * accum
        prompt_gen = torch.Generator().manual_seed(_seed(seed, global_step, -1))
        order = torch.randint(len(self.prompts), (phase.batch_size,), generator=prompt_gen)
        micro_batches = order.tensor_split(chunks)
        opt.zero_grad(set_to_none=True)
        terms: dict[str, torch.Tensor] = {}
        for j in range(self.dist.rank * accum, (self.dist.rank + 1) * accum):
            idx = micro_batches[j].to(self.dist.device)
            gen = torch.Generator(self.dist.device).manual_seed(_seed(seed, global_step, j))
            ctx = self._context(idx, gen, global_step)
            with self.autocast:
                total = 0.0
                for comp, loss in losses.items():
                    for key, value in loss(ctx).items():
                        name = comp if key == comp else f"{comp}/{key}"
                        terms[name] = terms.get(name, 0.0) + value.detach().float() / accum
                        total = total + phase.losses[comp].weight * value.float()
            (total / accum).backward()
        average_gradients(params, world)
        terms = average_terms(terms, world)
        finite = all(bool(torch.isfinite(v)) for v in terms.values())
        if finite:
            if phase.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, phase.max_grad_norm)
            opt.step()
            for loss in losses.values():
                terms.update({n: torch.tensor(v) for n, v in loss.aux_step(ctx).items()})
                loss.after_student_step()
        return terms, finite

    def _save(self, state: TrainState, opt, losses: dict[str, Loss]) -> None:
        if self.dist.is_main:
            save_checkpoint(
                self.recipe.runtime.out_dir,
                state,
                self.student.state_dict(),
                opt.state_dict(),
                {n: loss.checkpoint_state() for n, loss in losses.items()},
                metadata=self.student.metadata(),
            )

    def run(self) -> Run:
        """Run every phase from the start or from the latest checkpoint; export the student."""
        rt = self.recipe.runtime
        resume = latest_checkpoint(rt.out_dir) if rt.resume else None
        restored = load_checkpoint(resume, self.dist.device) if resume else None
        if restored:
            self.student.load_state_dict(restored[1])
            self.reporter.print(f"resuming from {resume}")
        elif self.recipe.student.init_from is not None:
            init = latest_checkpoint(self.recipe.student.init_from)
            if init is None:
                raise TLCMError(
                    f"--recipes.student.init-from {self.recipe.student.init_from} has no checkpoint"
                )
            self.student.load_state_dict(load_checkpoint(init, self.dist.device)[1])
        state = TrainState(0, 0, 0)
        skipped: list[int] = []
        previous = signal.signal(signal.SIGTERM, lambda *_: setattr(self, "_stop", True))
        try:
            with self.reporter:
                for index, (name, phase) in enumerate(self.recipe.phases.items()):
                    if restored and index < restored[0].phase_index:
                        continue
                    losses = {n: c.build(self.student).to(self.dist.device) for n, c in phase.losses.items()}
                    params = list(self.student.trainable_parameters().values())
                    opt = torch.optim.AdamW(params, lr=phase.lr, weight_decay=phase.weight_decay)
                    start = restored[0].step if restored and restored[0].phase_index == index else 0
                    state = TrainState(
                        index, start, restored[0].global_step if restored else state.global_step
                    )
                    if start > 0:
                        opt.load_state_dict(restored[2])
                        for n, loss in losses.items():
                            loss.load_checkpoint_state(restored[3][n])
                    restored = None
                    self.reporter.start_phase(name, phase.steps, start)
                    for step in range(start, phase.steps):
                        terms, finite = self._step(phase, losses, opt, params, state.global_step)
                        values = {k: float(v) for k, v in terms.items()}
                        if not finite:
                            bad = ", ".join(
                                k for k, v in values.items() if not torch.isfinite(torch.tensor(v))
                            )
                            if rt.on_nonfinite == "stop":
                                raise NonFiniteLoss(
                                    f"non-finite loss term(s) {bad} in phase {name!r} at step {step}; "
                                    "the last checkpoint is untouched (lower the lr or set "
                                    "--recipes.runtime.on-nonfinite skip)"
                                )
                            skipped.append(state.global_step)
                            self.reporter.print(f"[yellow]skipped step {step} of {name}: non-finite {bad}")
                        state = TrainState(index, step + 1, state.global_step + 1)
                        self.reporter.report(
                            {"phase": name, "step": step + 1, **values, "skipped": not finite}, values
                        )
                        if rt.checkpoint_every and state.global_step % rt.checkpoint_every == 0:
                            self._save(state, opt, losses)
                        if self._stop:
                            self._save(state, opt, losses)
                            self.reporter.print(
                                f"SIGTERM: saved a checkpoint at step {state.global_step}; rerun to resume"
                            )
                            return Run(
                                rt.out_dir, self.base, self.student, state, True, skipped, self.dist.is_main
                            )
                    self._save(TrainState(index + 1, 0, state.global_step), opt, losses)
                    if rt.sample_grid and self.dist.is_main:
                        write_phase_grid(self, rt.out_dir / "samples" / f"{index}-{name}.png")
        finally:
            signal.signal(signal.SIGTERM, previous)
        if self.dist.is_main:
            self.student.export(rt.out_dir / "student")
        return Run(rt.out_dir, self.base, self.student, state, False, skipped, self.dist.is_main)


def train(recipe: Recipe) -> Run:
    """Build a Trainer for ``recipe`` and run it (the library entry point; CLI: tlcm.train)."""
    return Trainer(recipe).run()
