"""The training loop: phases -> optimizer steps -> micro-batches -> weighted sum of named loss terms.

It knows no loss by name: each phase builds its configs' modules, sums ``weight * term`` for every
term they return, lets them update their own models with every micro-batch (``aux_step``) and EMA
targets (``after_student_step``). Randomness of micro-batch j of global step s comes from a
generator seeded with (seed, s, j) on the training device, whichever process runs it: resume is
exact, and a 2-process run equals a 1-process run with the same global batch split into the same
micro-batches. Draws the host must read (MLCD's segments, the cache rows, rewards' unrelated
prompts) come from the step's ``host_generator``. Waits for the accelerator inside a step
(tests/test_device_discipline.py counts them with every loss): one per optimizer step (is every
term and the gradient norm finite, every weight within max_weight_abs, no process signalled to
stop? tlcm/guards.py, tlcm/preemption.py), and each small lookup table's first copy to the
device (once per run); outside the steps, the float conversions of logged steps and the
checkpoint / export copies. Non-blocking host-to-device copies are not counted.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from diffusers.optimization import get_scheduler
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from tlcm.card import write_model_card
from tlcm.checkpoint import Checkpoint, TrainState, load_latest, resume_from, save_checkpoint, unsound
from tlcm.checks import validate_recipe
from tlcm.config import Phase, Recipe
from tlcm.data.embeddings import EmbeddingStore
from tlcm.data.images import model_resolution, open_images, real_latents
from tlcm.data.prompts import load_prompts
from tlcm.data.trajectories import TrajectoryCache
from tlcm.diffusion.denoiser import Guided
from tlcm.distributed import (
    STOP_WAIT_SECONDS,
    DistInfo,
    announce_start,
    average_gradients,
    average_terms,
    full_tensors,
    grad_norm,
    init_distributed,
    reshard_optimizer_state,
    shard,
    stop_failures,
    summed_count,
)
from tlcm.errors import TLCMError
from tlcm.export import export_student, run_name
from tlcm.files import lock_run
from tlcm.guards import NonFiniteLoss, check_skipped, diverged, kept, nonfinite, peak_share, weight_peak
from tlcm.losses import Loss, PhaseContext, StepContext
from tlcm.losses.base import build_loss, check_reaches_student, checked_terms
from tlcm.memory_plan import plan_phase
from tlcm.models.base import BaseModel, frozen_dtype
from tlcm.models.student import Student
from tlcm.preemption import StopSignals, stop_signals
from tlcm.report import Reporter
from tlcm.resume import check_init_base, check_phases, check_resume, run_folder, run_record
from tlcm.sample_grids import write_phase_grid
from tlcm.toy import is_miniature

PREEMPTED_EXIT_CODE = 75
"""Exit code of ``python -m tlcm.train`` after a stop signal (SIGTERM, SIGINT, SIGHUP: every rank
under torchrun) saved a checkpoint (EX_TEMPFAIL: rerun the same command to resume)."""
STOP, PEAK = "_stop", "_weight_peak"
"""Averaged with the step's loss terms (its one collective), then removed: any process signalled,
and the largest trainable weight's magnitude, so that every process decides alike."""


def previous_outputs(out_dir: Path) -> list[Path]:
    """What an earlier run left in ``out_dir`` that a run starting over there (``--recipes.runtime.
    no-resume``) removes: its checkpoints, exported student, phase sample grids and scores, which
    would otherwise be listed (and loaded) as the new run's (metrics.jsonl is cut by the Reporter)."""
    out_dir = Path(out_dir)
    paths = [out_dir / "checkpoints", out_dir / "student", out_dir / "eval.json"]
    paths += sorted(out_dir.glob("eval-gamma*.json")) + sorted(out_dir.glob("samples/[0-9]*-*.png"))
    return [p for p in paths if p.exists()]


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
    train_seconds: float = 0.0
    """Wall seconds of the run's phases, without loading the model; a resumed run's include its
    earlier sessions' up to the checkpoint it resumed from (``Trainer.train_seconds``)."""
    denoiser_evals: int = 0
    """Denoiser evaluations of the training steps, in samples, every process's summed
    (``Trainer.run_evals``)."""


def step_seed(seed: int, step: int, chunk: int) -> int:
    """The seed of ``chunk`` of global step ``step`` of a run seeded ``seed``: chunk j >= 0 is
    micro-batch j's generator, -1 the step's prompt order, -2 (at a phase's first step) the losses'
    random initialisations (``Trainer.build_phase``)."""
    return (seed * 1_000_003 + step * 1_009 + chunk) % (2**63 - 1)


@dataclass
class PhaseState:
    """One phase ready to train (``Trainer.build_phase``): its recipe entry (``phase``: with the
    memory plan's grad_accum), built losses, the student's trainable parameters, their AdamW and
    lr schedule, positioned at step ``start`` of the phase."""

    name: str
    phase: Phase
    losses: dict[str, Loss]
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    lr_schedule: LRScheduler
    start: int = 0


class Trainer:
    """Holds what lives across phases (model, student, prompts, text embeddings) and runs them."""

    def __init__(self, recipe: Recipe, dist: DistInfo | None = None) -> None:
        validate_recipe(recipe)
        self.recipe, rt = recipe, recipe.runtime
        self.dist = dist or init_distributed(rt.device)
        self.lock = lock_run(rt.out_dir) if self.dist.is_main else None  # one training per folder
        try:
            self._load()
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Unlock the run folder (``run`` does at its end; idempotent)."""
        if self.lock is not None:
            self.lock.release()

    def _load(self) -> None:
        """Model, student, data, reporter: what ``__init__`` builds once the run folder is locked."""
        recipe, rt = self.recipe, self.recipe.runtime
        self.prompts = load_prompts(recipe.data.prompts)  # with data.images: their captions (below)
        torch.manual_seed(rt.seed)
        use_bf16 = rt.mixed_precision == "bf16" or (
            rt.mixed_precision == "auto" and self.dist.device.type == "cuda"
        )
        dtype = frozen_dtype(recipe.model.frozen_dtype, self.dist.device, use_bf16)
        m = recipe.model
        announce_start(self.dist, rt.device, is_miniature(m.path), dtype, use_bf16)
        self.sharded = rt.fsdp and self.dist.world_size > 1  # FSDP2: the network(s) in shards
        self.base = BaseModel.load(
            m.path,
            self.dist.device,
            dtype,
            resolution=m.resolution,
            max_sequence_length=m.max_sequence_length,
            net_on_cpu=self.sharded,  # sharding moves it to the device block by block
        )
        self.student = Student(self.base, recipe.student)
        adapters: dict[str, int] = {}  # every adapter of every phase, before sharding
        for phase in recipe.phases.values():
            for config in phase.losses.values():
                for name, rank in config.adapters().items():
                    adapters.setdefault(name, rank)
        self.student.add_adapters(adapters)
        self.student.set_gradient_checkpointing(rt.gradient_checkpointing)
        if rt.compile:
            self.student.compile(rt.compile_backend)
        if self.sharded:
            param_dtype = torch.bfloat16 if use_bf16 else None
            for net in dict.fromkeys([self.student.net, self.base.net]):
                shard(net, self.base.family.shard_modules(net), self.dist.device, param_dtype)
        if rt.graphs:
            self.student.use_graphs()
        data = recipe.data
        self.images = data.images and open_images(  # real image-text pairs: captions are the prompts
            data.images, model_resolution(self.base), data.caption_column, "--recipes.data.images"
        )
        if self.images:
            self.prompts = [self.images.text(i) for i in range(len(self.images))]
        # text embeddings: encoded per micro-batch in canonical chunks, maybe cached
        self.embeddings = EmbeddingStore(
            self.base, self.prompts, data.embedding_cache, data.embedding_dtype, writable=self.dist.is_main
        )
        cache_dir = recipe.data.trajectory_cache  # teacher trajectories for losses with states="cache"
        self.trajectories = cache_dir and TrajectoryCache.open(
            cache_dir,
            self.base,
            self.prompts,
            guidance_scale=recipe.model.guidance_scale,
            prompt_file=data.prompts,
            images=data.images,
            caption_column=data.caption_column,
        )
        self.phase_context = PhaseContext(  # what every micro-batch shares
            student=self.student.denoiser(),
            teacher=Guided(self.student.teacher(), recipe.model.guidance_scale, self.embeddings.uncond),
            schedule=self.base.schedule,
            latent_shape=self.base.latent_shape,
            grid=recipe.student.grid,
            decode=self.base.decode,
            trajectories=self.trajectories,
            real_images=self.images and partial(real_latents, self.base, self.images),
            uniform_calls=self.sharded,
            all_prompts=self.prompts,
        )
        # no cast cache: on torch 2.6-2.9 (the floor) a no_grad call (the target) cached its bf16 copy
        # of the fp32 LoRA weights and the student's call then reused it, without gradients (measured)
        self.autocast = torch.autocast(
            self.dist.device.type, dtype=torch.bfloat16, enabled=use_bf16, cache_enabled=False
        )
        self.reporter = Reporter(rt.out_dir, self.dist.is_main, rt.trackers, recipe)
        self.phases = [(name, phase.steps) for name, phase in recipe.phases.items()]
        self.record = run_record(recipe, self.dist.world_size, self.prompts, self.images)  # checked on resume
        self.skipped: list[int] = []  # global steps skipped (on_nonfinite "skip"), across resumes
        self._signals = StopSignals()  # the installed one while run() runs
        self._stop = False  # every process agreed to stop after this step
        self._peak: float | None = None  # the diverged weight's magnitude, once the guard trips
        self._started, self._seconds_before = time.perf_counter(), 0.0  # set again by run()
        self.denoiser_evals = 0
        """Denoiser evaluations (samples, ``BaseModel.evaluations``) of this process's training
        steps so far, auxiliary updates included; not the memory plan's probes, the sample grids
        or the evaluation. A resumed run's rank 0 starts from its checkpoint's count. The run's
        count, every process's summed (``run_evals``), is in every metrics.jsonl line, checkpoint
        and the end summary."""

    def run_evals(self) -> int:
        """The run's denoiser evaluations so far: ``denoiser_evals`` summed over processes (under
        torchrun one all-reduce: called at the same point by every process, where a line is
        logged, a checkpoint saved and the run ends; not in the step)."""
        return summed_count(self.denoiser_evals, self.dist.world_size, self.dist.device)

    def train_seconds(self) -> float:
        """The run's training wall seconds so far: this session's since ``run`` started, plus the
        earlier sessions' up to the checkpoint it resumed from (the time between a session's last
        checkpoint and its stop is not counted: those steps are trained again)."""
        return self._seconds_before + time.perf_counter() - self._started

    def context(self, order: torch.Tensor, generator: torch.Generator, step: int) -> StepContext:
        """The context of one micro-batch: ``order`` (b,) prompt indices on the host (they stay
        there: the trajectory cache reads its rows on the host)."""
        return StepContext(
            self.phase_context,
            cond=self.embeddings.get(order),
            generator=generator,
            step=step,
            prompts=[self.prompts[i] for i in order.tolist()],
            prompt_index=order,
        )

    def objective(
        self, phase: Phase, losses: dict[str, Loss], ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One micro-batch under the step's autocast: (sum of weight * term, {name: term}); a term
        is named after its loss, or "loss/key" for a loss's further terms."""
        total, named = 0.0, {}
        with self.autocast:
            for comp, loss in losses.items():
                for key, value in checked_terms(comp, loss, loss(ctx)).items():
                    named[comp if key == comp else f"{comp}/{key}"] = value
                    total = total + phase.losses[comp].weight * value.float()
        check_reaches_student(total, list(losses))
        return total, named

    def build_phase(
        self,
        name: str,
        phase: Phase,
        global_step: int = 0,
        start: int = 0,
        restored: Checkpoint | None = None,
    ) -> PhaseState:
        """Phase ``name`` ready to train from its step ``start`` (global step ``global_step``): its
        losses built (their random initialisations seeded by the phase's first global step, so a
        resumed phase builds them alike), the student's trainable parameters, AdamW, the lr schedule
        at ``start``, and with ``start > 0`` the optimizer's and losses' state from ``restored``
        (the checkpoint of that step); then the memory plan (tlcm/memory_plan.py: the phase's
        grad_accum, checkpointing switched as planned). What ``run`` does at every phase start."""
        if start > 0 and restored is None:
            raise ValueError(f"phase {name!r} from step {start}: pass the checkpoint to restore")
        torch.manual_seed(step_seed(self.recipe.runtime.seed, global_step - start, -2))
        losses = {n: build_loss(n, c, self.student).to(self.dist.device) for n, c in phase.losses.items()}
        params = list(self.student.trainable_parameters().values())
        opt = torch.optim.AdamW(params, lr=phase.lr, weight_decay=phase.weight_decay)
        if start > 0:
            opt.load_state_dict(restored.optimizer)
            reshard_optimizer_state(opt)
            for n, loss in losses.items():
                loss.load_checkpoint_state(restored.losses[n])
        lr_schedule = phase_lr_schedule(phase, opt, start)
        phase = plan_phase(self, name, phase, losses, params)  # memory plan: grad_accum
        return PhaseState(name, phase, losses, params, opt, lr_schedule, start)

    def train_step(self, state: PhaseState, global_step: int) -> tuple[dict[str, torch.Tensor], bool]:
        """One optimizer step of ``state``'s phase at ``global_step``, then its lr schedule's step:
        (terms as 0-dim tensors: every loss term, grad_norm and the losses' metrics; finite). Not
        finite: nothing was updated (see ``_step``); ``run`` decides whether to stop or skip."""
        before = self.base.evaluations
        terms, finite = self._step(state.phase, state.losses, state.optimizer, state.params, global_step)
        self.denoiser_evals += self.base.evaluations - before
        with warnings.catch_warnings():  # a skipped step advances the schedule too (lr by step
            # count, as resume expects): torch's warning that no optimizer.step() came first is noise
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`", UserWarning)
            state.lr_schedule.step()
        return terms, finite

    def _step(self, phase: Phase, losses: dict[str, Loss], opt, params, global_step: int):
        """One optimizer step over this process's micro-batches: (terms as 0-dim tensors, finite).

        Nothing is updated unless every loss term and the gradient norm are finite and the weights
        entering the step are within ``max_weight_abs`` (else ``_peak`` is set); then the student
        steps and every loss's ``aux_step`` sees all micro-batches. The step's one host sync reads
        all of that and whether any process got a stop signal (``_stop``: averaged with the loss
        terms, so every process stops after the same step)."""
        seed, world, accum = self.recipe.runtime.seed, self.dist.world_size, phase.grad_accum
        prompt_gen = torch.Generator().manual_seed(step_seed(seed, global_step, -1))
        order = torch.randint(len(self.prompts), (phase.batch_size,), generator=prompt_gen, device="cpu")
        micro_batches = order.tensor_split(world * accum)
        opt.zero_grad(set_to_none=True)
        terms: dict[str, torch.Tensor] = {}
        contexts = []
        for j in range(self.dist.rank * accum, (self.dist.rank + 1) * accum):
            gen = torch.Generator(self.dist.device).manual_seed(step_seed(seed, global_step, j))
            ctx = self.context(micro_batches[j], gen, global_step)
            contexts.append(ctx)
            total, named = self.objective(phase, losses, ctx)
            for name, value in named.items():
                terms[name] = terms.get(name, 0.0) + value.detach().float() / accum
            (total / accum).backward()
        average_gradients(params, world)
        signalled = torch.full((), float(self._signals.received is not None), device=self.dist.device)
        limit = self.recipe.runtime.max_weight_abs
        peak = peak_share(weight_peak(params, self.dist.device), limit, world, self.sharded)
        terms = average_terms({**terms, STOP: signalled, PEAK: peak}, world)
        stop, peak = terms.pop(STOP), terms.pop(PEAK)
        max_norm = phase.max_grad_norm if phase.max_grad_norm > 0 else math.inf
        terms["grad_norm"] = grad_norm(torch.nn.utils.clip_grad_norm_(params, max_norm)).float()
        finite = torch.isfinite(torch.stack(list(terms.values()))).all()
        if not bool(finite & (peak <= self.recipe.runtime.max_weight_abs) & (stop == 0)):  # the sync
            self._stop = self._stop or bool(stop > 0)  # rare: more syncs only on the way out
            if not bool(peak <= self.recipe.runtime.max_weight_abs):
                self._peak = float(peak)
                return terms, False
            if not bool(finite):
                return terms, False
        if self.sharded:  # FSDP2 keeps the root's parameters gathered after a no_grad forward
            self.student.net.reshard()
        opt.step()
        metrics: dict[str, torch.Tensor] = {}
        for loss in losses.values():
            with self.autocast:
                metrics.update(loss.aux_step(contexts))
            loss.after_student_step()
        return {**terms, **average_terms(metrics, world)}, True

    def _save(self, state: TrainState, opt, losses: dict[str, Loss]) -> None:
        """Checkpoint on rank 0 (every process gathers FSDP2 shards first); refuses (NonFiniteLoss)
        to write anything non-finite or a diverged student (``unsound``)."""
        evals = self.run_evals()  # every process: an all-reduce under torchrun
        if not (self.dist.is_main or self.sharded):  # only FSDP2 needs every process to gather
            return
        student = self.student.state_dict()
        loss_states = full_tensors({n: v.checkpoint_state() for n, v in losses.items()})
        optimizer = full_tensors(opt.state_dict())
        if not self.dist.is_main:
            return
        rt = self.recipe.runtime
        bad = unsound({"student": student, "optimizer": optimizer, "losses": loss_states}, rt.max_weight_abs)
        if bad:
            ended = state.step == 0 and state.phase_index > 0  # a phase-end save: the previous phase
            phase = self.phases[state.phase_index - ended][0]
            raise NonFiniteLoss(
                f"refusing to save a checkpoint at step {state.global_step}: {bad}; {kept(rt, phase)}"
            )
        save_checkpoint(
            self.recipe.runtime.out_dir,
            state,
            student,
            optimizer,
            loss_states,
            metadata=self.student.metadata(),
            phases=self.phases,
            run=self.record,
            skipped=self.skipped,
            denoiser_evals=evals,
            train_seconds=self.train_seconds(),
        )

    def _restore(self) -> Checkpoint | None:
        """The checkpoint to resume from (None: start at step 0, after ``init_from`` if given).
        Refuses a run folder whose checkpoint came from other phases / steps / student settings, or
        (tlcm/resume.py) another recipe, base model or process count unless resume_changed."""
        rt, student = self.recipe.runtime, self.recipe.student
        if rt.resume:
            checkpoint = load_latest(
                rt.out_dir, self.dist.device, self.reporter.print, self.dist.is_main, rt.max_weight_abs
            )
            if checkpoint is not None:
                check_phases(
                    checkpoint.phases,
                    self.phases,
                    checkpoint.state.phase_index,
                    checkpoint.state.step,
                    rt.out_dir,
                    rt.resume_changed,
                )
                check_resume(
                    checkpoint.run, self.record, checkpoint.folder, rt.resume_changed, self.reporter.print
                )
                self.student.load_checkpoint(checkpoint, f"the checkpoint {checkpoint.folder}")
                self.skipped = list(checkpoint.skipped)
                self.reporter.truncate(checkpoint.state.global_step)
                done = checkpoint.state.phase_index >= len(self.phases)
                again = ": every phase is done, exporting its student again" if done else ""
                self.reporter.print(f"resuming from {checkpoint.folder}{again}")
                return checkpoint
        elif self.dist.is_main:
            stale = previous_outputs(rt.out_dir)
            if stale:
                names = ", ".join(str(p.relative_to(rt.out_dir)) + "/" * p.is_dir() for p in stale)
                self.reporter.print(f"--recipes.runtime.no-resume: removing {names} in {rt.out_dir}")
            for path in stale:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.reporter.truncate(0)  # starting at step 0: a log without a checkpoint behind it goes
        if student.init_from is not None:
            flag = f"--recipes.student.init-from {student.init_from}"
            source = run_folder(student.init_from, "--recipes.student.init-from")
            init = load_latest(source, self.dist.device, self.reporter.print)
            if init is None:
                raise TLCMError(f"{flag} has no checkpoint: pass a tlcm run folder (e.g. runs/mlcd)")
            if not init.finished_phase and not student.init_from_unfinished:
                raise TLCMError(
                    f"{flag}: its latest checkpoint {init.folder.name} stopped mid-phase (phase "
                    f"{init.state.phase_index}, step {init.state.step}): finish that run first (rerun it), "
                    "or pass --recipes.student.init-from-unfinished to start from it anyway"
                )
            check_init_base(init.run, self.record, flag)
            self.student.load_checkpoint(init, flag, same_grid=False)
        return None

    def run(self) -> Run:
        """Run every phase from the start or from the latest checkpoint; export the student; then
        unlock the run folder. A stop whose save another process's death prevented ends in one line
        naming the latest checkpoint (``tlcm.distributed.stop_failures``)."""
        wait = STOP_WAIT_SECONDS if self.dist.world_size > 1 else 0.0
        try:
            with stop_failures(self._stop_asked, wait, lambda: resume_from(self.recipe.runtime.out_dir)):
                return self._run()
        finally:
            self.release()

    def _stop_asked(self) -> str | None:
        """Why the run stops: the stop signal this process received, or (``_stop``: every process
        agreed) "a stop signal to another process"; None while no stop is asked for."""
        other = "a stop signal to another process" if self._stop else None
        return self._signals.received or other

    def _run(self) -> Run:
        rt, self._started = self.recipe.runtime, time.perf_counter()
        restored = self._restore()
        self._seconds_before = (restored.train_seconds or 0.0) if restored else 0.0
        self.denoiser_evals = 0
        if restored:  # the checkpoint's count (older ones: the last metrics line, which may lag it)
            saved = restored.denoiser_evals
            saved = saved if saved is not None else self.reporter.last("denoiser_evals")
            self.denoiser_evals = saved if self.dist.is_main else 0  # the run's count: summed
        state = TrainState(0, 0, 0)
        streak = 0  # non-finite steps in a row; a resume continues the checkpoint's run of skips
        while restored and restored.state.global_step - streak in self.skipped:
            streak += 1
        with stop_signals() as signals:  # SIGTERM / SIGINT / SIGHUP: save after this step, exit 75
            self._signals = signals
            with self.reporter:
                for index, (name, phase) in enumerate(self.recipe.phases.items()):
                    if restored and index < restored.state.phase_index:
                        continue
                    start = restored.state.step if restored else 0  # restored: this is its phase
                    state = TrainState(
                        index, start, restored.state.global_step if restored else state.global_step
                    )
                    # losses, AdamW, lr schedule and memory plan (restored: their mid-phase state)
                    built = self.build_phase(name, phase, state.global_step, start, restored)
                    phase, losses, opt, restored = built.phase, built.losses, built.optimizer, None
                    self.reporter.start_phase(name, phase.steps, start)
                    for step in range(start, phase.steps):
                        lr = opt.param_groups[0]["lr"]
                        terms, finite = self.train_step(built, state.global_step)
                        state = TrainState(index, step + 1, state.global_step + 1)
                        streak = 0 if finite else streak + 1
                        if self._peak is not None:
                            raise diverged(rt, name, step, self._peak)
                        if not finite:
                            nonfinite(rt, name, step + 1, terms, streak, self.reporter.print)
                            self.skipped.append(state.global_step)
                        if not finite or (step + 1) % rt.log_every == 0 or step + 1 == phase.steps:
                            values = dict(zip(terms, torch.stack(list(terms.values())).tolist(), strict=True))
                            record = {
                                "phase": name,
                                "step": step + 1,
                                "global_step": state.global_step,
                                "lr": lr,
                                "denoiser_evals": self.run_evals(),
                            }
                            self.reporter.report({**record, **values, "skipped": not finite}, values)
                        else:
                            self.reporter.advance()
                        if rt.checkpoint_every and state.global_step % rt.checkpoint_every == 0:
                            self._save(state, opt, losses)
                        if self._stop or (self.dist.world_size == 1 and signals.received):
                            return self._preempted(state, opt, losses)
                    check_skipped(rt, name, phase.steps, state.global_step, self.skipped)
                    self._save(TrainState(index + 1, 0, state.global_step), opt, losses)
                    if rt.sample_grid and self.dist.is_main and not self.sharded:
                        write_phase_grid(
                            self.student,
                            self.prompts,
                            self.recipe.shown_steps,
                            self.recipe.student.grid,
                            rt.out_dir / "samples" / f"{index}-{name}.png",
                        )
        seconds = self.train_seconds()
        gather = self.dist.is_main or self.sharded  # FSDP2: every process gathers the shards
        weights = self.student.state_dict() if gather else None
        if self.dist.is_main:
            out, name = rt.out_dir / "student", run_name(rt.out_dir)
            export_student(self.student, out, rt.export_formats, name, weights)
            write_model_card(self.student, out, name, self.recipe, seconds)
        return Run(
            rt.out_dir,
            self.base,
            self.student,
            state,
            False,
            self.skipped,
            self.dist.is_main,
            seconds,
            self.run_evals(),
        )

    def _preempted(self, state: TrainState, opt, losses: dict[str, Loss]) -> Run:
        """Stop after this step (a stop signal here or on another process): save once (rank 0
        writes; under FSDP2 every process gathers), wait for that save on every process (so that
        none exits before the checkpoint is complete), say so; every process then exits 75."""
        self._save(state, opt, losses)
        if self.dist.world_size > 1:
            torch.distributed.barrier()
        self.reporter.end_display()  # the message is the last line, below the final progress
        why = self._stop_asked() or "stop"
        self.reporter.print(
            f"{why}: saved a checkpoint at step {state.global_step}; exit {PREEMPTED_EXIT_CODE}; "
            "rerun the same command to resume"
        )
        rt = self.recipe.runtime
        return Run(rt.out_dir, self.base, self.student, state, True, self.skipped, self.dist.is_main)


def phase_lr_schedule(phase: Phase, opt: torch.optim.Optimizer, start: int) -> LambdaLR:
    """The phase's lr schedule (diffusers' get_scheduler) positioned at optimizer step ``start``
    (a resumed phase continues its schedule; ``initial_lr`` is the phase's peak lr)."""
    for group in opt.param_groups:
        group["initial_lr"] = phase.lr
    return get_scheduler(
        phase.lr_schedule,
        opt,
        num_warmup_steps=phase.lr_warmup_steps,
        num_training_steps=phase.steps,
        last_epoch=start - 1,
    )


def train(recipe: Recipe) -> Run:
    """Build a Trainer for ``recipe`` and run it (the library entry point; CLI: tlcm.train)."""
    return Trainer(recipe).run()
