"""Engine step time vs a hand-written loop making exactly the same model calls (MLCD, stage 1).

The real ``Trainer.run()`` drives the engine; its ``train_step`` is wrapped so that every engine step is
paired with one hand-written step on the same model (the same LoRA parameters, its own AdamW with
the same hyper-parameters): same prompts, same random draws (the engine's per-step seeds), so the
same segments, MDS rounds and UNet batch shapes; same maths (``sample_segment_timesteps``,
``mds_trajectory``, ``mlcd_loss``), same zero_grad / backward / clip / step. Pair order alternates
(engine first on even steps, hand-written first on odd ones) to cancel order effects.

Engine step time = time inside ``Trainer.train_step`` + the rest of run()'s loop body for that step
(float() of the terms, metrics.jsonl line, progress bar, checkpoint check), the latter measured as
the gap between the wrapper returning and the next ``train_step`` starting. UNet calls are counted by a
forward pre-hook for both loops, and must match.

    .venv/bin/python -m benchmarks.engine_overhead [--steps 30] [--warmup 3] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.common import (
    CallLog,
    add_common_args,
    console,
    count_unet_calls,
    provenance,
    resolve_model,
    setup_torch,
    show_table,
    shrink,
    write_results,
)
from recipes.tlcm import mlcd
from tlcm.data.states import TrajectoryStates
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import milestones, sample_segment_timesteps
from tlcm.diffusion.solvers import mds_trajectory
from tlcm.engine import PhaseState, Trainer, step_seed
from tlcm.losses import Loss
from tlcm.losses.distances import get_distance
from tlcm.losses.mlcd import MLCDConfig, mlcd_loss
from tlcm.models.adapters import TEACHER
from tlcm.models.families.sd import unet_kwargs


class HandWrittenMLCD:
    """A plain MLCD training loop over the trainer's UNet, LoRA parameters and text embeddings."""

    def __init__(self, trainer: Trainer) -> None:
        phase = next(iter(trainer.recipe.phases.values()))
        self.cfg: MLCDConfig = phase.losses["mlcd"]
        self.phase, self.trainer = phase, trainer
        self.unet, self.schedule = trainer.student.net, trainer.base.schedule
        self.device = trainer.dist.device
        self.params = [p for p in self.unet.parameters() if p.requires_grad]
        self.adapters = trainer.student.adapters
        self.opt = torch.optim.AdamW(self.params, lr=phase.lr, weight_decay=phase.weight_decay)
        self.num_milestones = trainer.recipe.student.grid.num_milestones
        self.grid = milestones(self.num_milestones, self.schedule.num_train_timesteps).to(self.device)
        self.distance = get_distance(self.cfg.distance)
        self.autocast = torch.autocast(  # as the engine's: no cast cache
            self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda", cache_enabled=False
        )

    def student(self, x, t, cond):
        return self.unet(x, t, **unet_kwargs(cond)).sample

    def teacher(self, x, t, cond):
        with self.adapters.use(TEACHER):  # the same switch as Student.teacher (see adapter_toggle_costs)
            return self.unet(x, t, **unet_kwargs(cond)).sample

    def step(self, global_step: int) -> float:
        """One optimizer step drawing what the engine draws at ``global_step`` (hence the same calls)."""
        tr, cfg, b, seed = self.trainer, self.cfg, self.phase.batch_size, self.trainer.recipe.runtime.seed
        prompt_gen = torch.Generator().manual_seed(step_seed(seed, global_step, -1))
        order = torch.randint(len(tr.prompts), (b,), generator=prompt_gen, device="cpu")
        gen = torch.Generator(self.device).manual_seed(step_seed(seed, global_step, 0))
        cond = tr.embeddings.get(order)
        teacher = Guided(self.teacher, tr.recipe.model.guidance_scale, tr.embeddings.uncond)
        with self.autocast:
            seg, t_m, t_n = sample_segment_timesteps(self.schedule, self.grid, b, cfg.skip, generator=gen)
            noise = torch.randn((b, *tr.base.latent_shape), generator=gen, device=self.device)
            with torch.no_grad():
                x_tm = mds_trajectory(teacher, self.schedule, noise, t_m, self.num_milestones - seg, cond)
            states = TrajectoryStates(x_tm, t_m, t_n, self.grid[seg].to(t_m.dtype))
            loss = mlcd_loss(
                self.student, self.student, teacher, self.schedule, states, cond, self.distance
            ).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.phase.max_grad_norm)
        self.opt.step()
        return float(loss.detach())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_interleaved(trainer: Trainer, warmup: int, profile: bool):
    """Run trainer.run() with a hand-written step paired to each engine step; returns timings."""
    manual = HandWrittenMLCD(trainer)
    device = trainer.dist.device
    log = CallLog()
    handles = count_unet_calls([trainer.student.net], log)
    real_step = trainer.train_step
    rec = {"engine_step": [], "engine_tail": [], "manual": [], "calls": {"engine": [], "manual": []}}
    state = {"returned": None}
    profilers = {"engine": cProfile.Profile(), "manual": cProfile.Profile()} if profile else None

    def manual_step(global_step: int) -> None:
        log.role = "manual"
        _sync(device)
        start = time.perf_counter()
        if profilers:
            profilers["manual"].enable()
        manual.step(global_step)
        if profilers:
            profilers["manual"].disable()
        _sync(device)
        rec["manual"].append(time.perf_counter() - start)

    def paired_step(built: PhaseState, global_step: int):
        _sync(device)
        now = time.perf_counter()
        if state["returned"] is not None:  # run()'s loop body since the last train_step returned
            rec["engine_tail"].append(now - state["returned"])
        engine_first = global_step % 2 == 0
        if not engine_first:
            manual_step(global_step)
        log.role = "engine"
        _sync(device)
        start = time.perf_counter()
        if profilers:
            profilers["engine"].enable()
        out = real_step(built, global_step)
        if profilers:
            profilers["engine"].disable()
        _sync(device)
        rec["engine_step"].append(time.perf_counter() - start)
        if engine_first:
            manual_step(global_step)
        state["returned"] = time.perf_counter()
        return out

    trainer.train_step = paired_step
    try:
        trainer.run()
    finally:
        del trainer.train_step  # back to the class's method
        for h in handles:
            h.remove()
    for role in ("engine", "manual"):
        calls = [c for c in log.calls if c[0] == role]
        rec["calls"][role] = {
            "unet_calls": len(calls),
            "sample_evals": sum(c[1] for c in calls),
            "teacher_calls": sum(1 for c in calls if c[3] is False),
        }
    # the last engine step's tail (after the final train_step) is not observable: drop that pair
    n = len(rec["engine_tail"])
    pairs = [
        (rec["engine_step"][i] + rec["engine_tail"][i], rec["manual"][i], rec["engine_tail"][i])
        for i in range(warmup, n)
    ]
    return pairs, rec, profilers


class NullLoss(Loss):
    """A loss with no model call: p^2 of one scalar parameter (isolates the engine's bookkeeping)."""

    def __init__(self, p: torch.nn.Parameter) -> None:
        super().__init__()
        self.p = p

    def forward(self, ctx) -> dict[str, torch.Tensor]:
        return {"mlcd": self.p.square()}


def isolated_overhead(trainer: Trainer, reps: int) -> tuple[list[float], list[float]]:
    """Per-step times of Trainer.train_step with a null loss and a one-scalar AdamW (constant lr) vs
    the same work by hand (zero_grad, p^2, backward, clip, step, float), interleaved: the difference
    is the engine's own per-step work inside train_step (generators, prompt order, context, terms,
    isfinite, hooks, the lr schedule's step)."""
    phase = next(iter(trainer.recipe.phases.values()))
    p = torch.nn.Parameter(torch.ones((), device=trainer.dist.device))
    null = {"mlcd": NullLoss(p)}
    opt_e, opt_m = torch.optim.AdamW([p], lr=1e-6), torch.optim.AdamW([p], lr=1e-6)
    constant = torch.optim.lr_scheduler.LambdaLR(opt_e, lambda _: 1.0)
    built = PhaseState("null", phase, null, [p], opt_e, constant)
    engine, manual = [], []
    for i in range(reps):
        start = time.perf_counter()
        trainer.train_step(built, i)
        mid = time.perf_counter()
        opt_m.zero_grad(set_to_none=True)
        loss = p.square()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p], phase.max_grad_norm)
        opt_m.step()
        float(loss.detach())
        end = time.perf_counter()
        engine.append(mid - start)
        manual.append(end - mid)
    return engine[reps // 10 :], manual[reps // 10 :]


def bootstrap_median_interval(values: list[float], draws: int = 2000) -> tuple[float, float]:
    """2.5 % and 97.5 % quantiles of the median over ``draws`` resamples (seeded: reproducible)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def _profile_table(profiler: cProfile.Profile, limit: int = 12) -> str:
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(limit)
    return stream.getvalue()


def adapter_toggle_costs(trainer: Trainer, repeats: int = 100) -> dict[str, float | bool]:
    """Seconds per teacher-call adapter toggle: diffusers' disable_adapters() + enable_adapters() (what
    Student.teacher did before this benchmark), the peft layers' flag set through nn.Module's
    __setattr__ (AdapterSwitch until 2026-12-05) and ``AdapterSwitch.use`` (the flags written into
    the layers' __dict__: what Student.teacher and the hand-written loop do now), and whether the
    teacher's output is the same."""
    unet, adapters = trainer.student.net, trainer.student.adapters

    start = time.perf_counter()
    for _ in range(repeats):
        unet.disable_adapters()
        unet.enable_adapters()
    api = (time.perf_counter() - start) / repeats
    live = adapters.live
    start = time.perf_counter()
    for _ in range(repeats):  # the earlier AdapterSwitch.use(TEACHER): off, then back to ``live``
        for layer in adapters.layers:
            layer._disable_adapters = True
        for layer in adapters.layers:
            layer._disable_adapters = False
            layer._active_adapter = live
    setattr_flags = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats):
        with adapters.use(TEACHER):
            pass
    flags = (time.perf_counter() - start) / repeats
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((2, *trainer.base.latent_shape), generator=gen).to(trainer.dist.device)
    t, cond = torch.tensor([999, 500], device=x.device), trainer.embeddings.get(torch.arange(2))
    with torch.no_grad():
        unet.disable_adapters()
        via_api = unet(x, t, **unet_kwargs(cond)).sample
        unet.enable_adapters()
        with adapters.use(TEACHER):
            via_flags = unet(x, t, **unet_kwargs(cond)).sample
        student = unet(x, t, **unet_kwargs(cond)).sample
    return {
        "api_s": api,
        "setattr_s": setattr_flags,
        "flags_s": flags,
        "lora_layers": len(adapters.layers),
        "same_output": torch.equal(via_api, via_flags),
        "student_differs": not torch.equal(student, via_api),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.engine_overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_args(parser)
    parser.add_argument("--steps", type=int, default=30, help="measured step pairs (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="step pairs excluded at the start (default 3)")
    parser.add_argument(
        "--batch-size", type=int, default=16, help="training batch B (default 16, the recipe's)"
    )
    parser.add_argument(
        "--null-steps",
        type=int,
        default=200,
        help="steps of the null-loss overhead measurement (default 200)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile both loops and store the top functions"
    )
    args = parser.parse_args()
    device = setup_torch(args.threads, args.device)
    model, label = resolve_model(args.model)
    meta = provenance(device, args.threads, model, label)
    meta["stderr_is_tty"] = sys.stderr.isatty()
    with tempfile.TemporaryDirectory() as tmp:
        # +1: the last pair's engine tail is not observable
        recipe = shrink(
            mlcd(), model, Path(tmp) / "run", args.steps + args.warmup + 1, args.batch_size, device
        )
        recipe = replace(
            recipe, phases={"mlcd": replace(recipe.phases["mlcd"], losses={"mlcd": MLCDConfig()})}
        )
        trainer = Trainer(recipe)
        console.print(
            f"MLCD states=mds, B = {args.batch_size}: {args.warmup} warm-up + {args.steps} measured "
            "step pairs (engine, hand-written), interleaved"
        )
        pairs, rec, profilers = run_interleaved(trainer, args.warmup, args.profile)
        toggle = adapter_toggle_costs(trainer)
        null_engine, null_manual = isolated_overhead(trainer, args.null_steps)
    engine = [p[0] for p in pairs]
    manual = [p[1] for p in pairs]
    tail = [p[2] for p in pairs]
    ratios = [e / m for e, m, _ in pairs]
    diffs = [e - m for e, m, _ in pairs]
    med_e, med_m = statistics.median(engine), statistics.median(manual)
    q, qd = statistics.quantiles(ratios, n=4), statistics.quantiles(diffs, n=4)
    ci = bootstrap_median_interval(ratios)
    ratio = med_e / med_m
    calls_match = rec["calls"]["engine"] == rec["calls"]["manual"]
    overhead = statistics.median(null_engine) - statistics.median(null_manual) + statistics.median(tail)
    teacher_calls = rec["calls"]["engine"]["teacher_calls"] / (len(rec["engine_step"]))
    columns = ["measure", "value"]
    rows = [
        ["engine step, median ms", f"{1000 * med_e:.1f}"],
        ["hand-written step, median ms", f"{1000 * med_m:.1f}"],
        ["ratio of medians (target <= 1.05)", f"{ratio:.3f} ({'OK' if ratio <= 1.05 else 'ABOVE TARGET'})"],
        ["median of per-pair ratios [IQR]", f"{statistics.median(ratios):.3f} [{q[0]:.3f}, {q[2]:.3f}]"],
        ["  95 % bootstrap interval of that median", f"[{ci[0]:.3f}, {ci[1]:.3f}]"],
        [
            "median per-pair difference engine - hand-written [IQR], ms",
            f"{1000 * statistics.median(diffs):.2f} [{1000 * qd[0]:.2f}, {1000 * qd[2]:.2f}]",
        ],
        ["engine loop body outside train_step, median ms", f"{1000 * statistics.median(tail):.2f}"],
        [
            "null-loss train_step: engine / by hand, median ms",
            f"{1000 * statistics.median(null_engine):.2f} / {1000 * statistics.median(null_manual):.2f}",
        ],
        [
            "engine per-step Python overhead (null-loss difference + loop body)",
            f"{1000 * overhead:.2f} ms = {100 * overhead / med_e:.2f} % of the step",
        ],
        ["teacher UNet calls per step (each toggles the LoRA adapters)", f"{teacher_calls:.2f}"],
        [
            f"adapter toggle via diffusers disable/enable_adapters, ms ({toggle['lora_layers']} LoRA layers)",
            f"{1000 * toggle['api_s']:.2f}",
        ],
        ["  share of the engine step", f"{100 * teacher_calls * toggle['api_s'] / med_e:.1f} %"],
        [
            "adapter toggle, the peft layers' flag by nn.Module.__setattr__, ms",
            f"{1000 * toggle['setattr_s']:.3f}",
        ],
        [
            "adapter toggle, AdapterSwitch.use (the flag in each layer's __dict__), ms",
            f"{1000 * toggle['flags_s']:.3f}",
        ],
        [
            "UNet calls (engine / hand-written), all steps",
            f"{rec['calls']['engine']['unet_calls']} / {rec['calls']['manual']['unet_calls']}",
        ],
        [
            "UNet sample-evals (engine / hand-written)",
            f"{rec['calls']['engine']['sample_evals']} / {rec['calls']['manual']['sample_evals']}",
        ],
    ]
    notes = [
        f"{len(pairs)} measured pairs after {args.warmup} warm-up pairs; B = {args.batch_size}; "
        f"{meta['device']}, {meta['threads']} torch thread(s); load average at start "
        f"{meta['load_average_at_start']} on {meta['cpu_count']} cores "
        "(shared machine: expect noise, compare the pairwise ratio)",
        "identical model work: "
        + (
            "the UNet call counts and batch sizes match exactly"
            if calls_match
            else "MISMATCH in UNet calls: the comparison is invalid"
        ),
        "both loops switch adapters off for every teacher call with AdapterSwitch.use (as "
        "Student.teacher does: the peft layers' flag written into each layer's __dict__; "
        f"diffusers' disable/enable_adapters costs {toggle['api_s'] / toggle['flags_s']:.0f}x more, "
        f"nn.Module.__setattr__ on each layer {toggle['setattr_s'] / toggle['flags_s']:.0f}x); "
        "flipping gives "
        + ("the identical" if toggle["same_output"] else "A DIFFERENT")
        + " teacher output"
        + (" (and the trained student's output differs from it)" if toggle["student_differs"] else ""),
        "the hand-written loop calls float(loss) once per step (its logging); the engine makes one host "
        "sync per step (are all terms and the gradient norm finite?) and converts the logged terms in one "
        "stacked .tolist() (on CPU a sync costs nothing)",
    ]
    data = {
        "engine_s": engine,
        "manual_s": manual,
        "engine_tail_s": tail,
        "ratio_of_medians": ratio,
        "median_pair_ratio_95ci": ci,
        "calls": rec["calls"],
        "adapter_toggle": toggle,
        "null_engine_s": null_engine,
        "null_manual_s": null_manual,
    }
    if profilers:
        data["profile_engine"] = _profile_table(profilers["engine"])
        data["profile_manual"] = _profile_table(profilers["manual"])
        console.print(data["profile_engine"])
    title = f"Engine overhead vs hand-written loop (MLCD mds, {label} pipeline, B = {args.batch_size})"
    show_table(title, columns, rows)
    for n in notes:
        console.print(f"- {n}")
    write_results("engine_overhead", title, meta, [(title, columns, rows)], data, notes)


if __name__ == "__main__":
    main()
