"""benchmarks/gpu.py's "speed" section (issue 20, item 3), before / after rows in one run on the
same machine: the SDXL MLCD phase (12k of the paper's 15.5k iterations) at one micro-batch of 8 with
gradient checkpointing, eager (PyTorch's own choice of attention kernel), eager with each SDPA
backend forced, with ``--recipes.runtime.compile`` (regional compilation of the UNet's transformer
blocks), and from a teacher trajectory cache (0 teacher calls per step); then the miniature's MLCD
phase (``recipes:mlcd``, launch-bound) eager, with its no-grad calls replayed from CUDA graphs
(``--recipes.runtime.graphs``), compiled, and compiled with graphs. Per row: s / step after the warm-up,
samples / s, the speed-up over eager, peak GiB, the warm-up step's seconds (compilation included),
the denoiser evaluations (samples) per step, the host syncs one step makes (CUDA:
``torch.cuda.set_sync_debug_mode``), and the relative difference of the step's logged terms from
eager's at the same global step (same draws: what compile or a kernel changes is rounding).
"""

from __future__ import annotations

import contextlib
import statistics
import time
import traceback
import warnings
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
import torch._dynamo
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks.gpu_runs import free, peak_gib, phase_recipe, relative_differences, sync, term_values
from recipes.tlcm import mlcd as miniature_mlcd
from recipes.tlcm import tlcm_full_sdxl
from tlcm.config import Recipe
from tlcm.engine import Trainer

SDPA = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
SDPA |= {"efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
"""The SDPA backends a row can force (``torch.nn.attention.sdpa_kernel``)."""
SDXL_MICRO_BATCH = 8
CACHE_PROMPTS = 8
"""Prompts (one trajectory each) of the trajectory-cache row: one micro-batch's worth."""
PAPER_MLCD_SAMPLES = 12_000 * 32
"""Training samples of the paper's SDXL MLCD phase (12k iterations at tlcm-full-sdxl's batch 32)."""
CACHE_USES = (15, 60)
"""Training samples per cached trajectory of the miniature's two measured arms (8 and 2
trajectories per prompt): FD kept, alignment 0.01-0.02 / 0.01-0.035 lower (docs/results.md)."""
MINIATURE_TIMED_STEPS = 20
"""Timed steps of the miniature's rows (the median): with graphs, a step whose MDS rounds meet a new
batch size captures it (recipes:mlcd at batch 16: 17 shapes in 40 steps, measured on the CPU)."""
WARMUP_STEPS = 2
"""Untimed steps before the timed ones: compilation happens in the first (student with gradients,
teacher without), the second catches what only the optimizer's second step does."""


def host_syncs(step) -> tuple[object, int | None]:
    """Run ``step()``; on CUDA count the synchronizing calls it makes (sync debug mode "warn")."""
    if not torch.cuda.is_available():
        return step(), None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return result, sum("synchroniz" in str(w.message) for w in caught)


def load(recipe: Recipe, device: str):
    """A Trainer of ``recipe``'s one phase, built at lr 0: the weights never move, so every variant's
    step s sees the same weights and draws, and their terms differ only by the variant's rounding.
    Returns (trainer, built phase, seconds)."""
    ((name, phase),) = recipe.phases.items()
    if recipe.runtime.compile:  # the miniature's blocks are SDXL's class: start from no graphs
        torch._dynamo.reset()
    start = time.perf_counter()
    trainer = Trainer(recipe)
    built = trainer.build_phase(name, replace(phase, lr=0.0), 0)
    sync(device)
    return trainer, built, time.perf_counter() - start


def time_variant(trainer: Trainer, built, device: str, timed_steps: int, kernel: str | None) -> dict:
    """Under SDPA backend ``kernel`` (None: PyTorch's choice): ``WARMUP_STEPS`` untimed steps (the
    first one's seconds kept: compilation), one step with host syncs counted, then ``timed_steps``
    timed steps (the median; terms: the first timed step's), at global steps 0, 1, ..."""
    row: dict = {"batch": built.phase.batch_size}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with sdpa_kernel(SDPA[kernel]) if kernel else contextlib.nullcontext():
        for step in range(WARMUP_STEPS):
            start = time.perf_counter()
            trainer.train_step(built, step)
            sync(device)
            row.setdefault("first_step_s", time.perf_counter() - start)
        graphs = trainer.base.graphs  # --recipes.runtime.graphs
        captured = graphs and graphs.captures
        _, row["host_syncs_per_step"] = host_syncs(partial(trainer.train_step, built, WARMUP_STEPS))
        sync(device)  # its queued work (the optimizer step) is not the first timed step's
        if graphs is not None:  # a capture synchronizes (torch.cuda.graph): its syncs are counted too
            row["captures_in_sync_count_step"] = graphs.captures - captured
        times, evals = [], trainer.denoiser_evals
        for step in range(WARMUP_STEPS + 1, WARMUP_STEPS + 1 + timed_steps):
            start = time.perf_counter()
            terms, _ = trainer.train_step(built, step)
            sync(device)
            times.append(time.perf_counter() - start)
            row.setdefault("terms", term_values(terms))
    row["denoiser_evals_per_step"] = (trainer.denoiser_evals - evals) / timed_steps  # samples through the net
    s = statistics.median(times)
    row |= {"status": "done", "s_per_step": s, "step_times_s": times, "samples_per_s": row["batch"] / s}
    row["peak_gib"] = peak_gib(device)
    if graphs is not None:  # shapes captured, warm-up included
        row["graph_captures"] = graphs.captures
    return row


def project(rows: list[dict]) -> None:
    """Projected hours of the paper's MLCD phase (``PAPER_MLCD_SAMPLES``) at each done row's s /
    sample; for the trajectory-cache row also with the cache's build, for each reuse of
    ``CACHE_USES`` (training samples per trajectory: the miniature's measured arms, docs/results.md)."""
    for row in rows:
        if row.get("status") != "done":
            continue
        train_h = PAPER_MLCD_SAMPLES * row["s_per_step"] / row["batch"] / 3600
        row["projected_mlcd_hours"] = train_h
        if "cache_build_s" in row:
            per_trajectory = row["cache_build_s"] / row["cache_trajectories"]
            row["projected_mlcd_hours_with_cache"] = {
                uses: train_h + PAPER_MLCD_SAMPLES / uses * per_trajectory / 3600 for uses in CACHE_USES
            }


def _compare(rows: list[dict]) -> None:
    """Speed-up over the first (eager) row and the largest relative difference of its terms (not for
    a row on other prompts and states: ``other_draws``)."""
    eager = rows[0]
    if eager.get("status") != "done":
        return
    for row in rows:
        if row.get("status") == "done":
            row["speedup_vs_eager"] = eager["s_per_step"] / row["s_per_step"]
            if not row.get("other_draws"):
                diffs = relative_differences(row["terms"], eager["terms"]).values()
                row["max_term_rel_diff"] = max(diffs, default=0.0)


def _failure(err: Exception) -> dict:
    return {
        "status": f"failed: {type(err).__name__}: {str(err)[:300]}",
        "traceback": traceback.format_exc()[-2000:],
    }


def _group(
    recipe: Recipe, plan: list[tuple[str, str | None]], device: str, timed_steps: int, allow, emit
) -> None:
    """One Trainer of ``recipe`` timed under each (label, SDPA kernel) of ``plan``, ``emit(row)``
    after each; each row ``allow()``-gated, each failure recorded (a backend that cannot run these
    shapes raises)."""
    if not allow():
        for label, _ in plan:
            emit({"variant": label, "status": "skipped (time limit)"})
        return
    try:
        trainer, built, load_s = load(recipe, device)
    except Exception as err:  # noqa: BLE001 - e.g. out of memory: record it, go on
        free(device)
        for label, _ in plan:
            emit({"variant": label, **_failure(err)})
        return
    for i, (label, kernel) in enumerate(plan):
        row: dict = {"variant": label, "load_s": load_s}
        if i and not allow():
            row["status"] = "skipped (time limit)"
        else:
            try:
                row |= time_variant(trainer, built, device, timed_steps, kernel)
            except Exception as err:  # noqa: BLE001 - record it, time the next variant
                row |= _failure(err)
        emit(row)
    del trainer, built
    free(device)


def cached(recipe: Recipe, work: Path, device: str, timed_steps: int, allow, emit) -> None:
    """MLCD with zero teacher calls (``states="cache"``): ``build_cache`` writes one teacher
    trajectory for each of ``CACHE_PROMPTS`` prompts (the recipe's w, M and skip; its seconds and
    teacher calls recorded), then a Trainer on those prompts and that cache is timed as the others
    (its terms are of other prompts and states: not compared)."""
    from tlcm.data.prompts import load_prompts
    from tlcm.data.trajectories import build_cache
    from tlcm.models.base import BaseModel

    label = "eager, trajectory cache (0 teacher calls)"
    if not allow():
        emit({"variant": label, "status": "skipped (time limit)"})
        return
    ((name, phase),) = recipe.phases.items()
    mlcd = phase.losses["mlcd"]
    prompts = load_prompts(recipe.data.prompts)[:CACHE_PROMPTS]
    prompt_file, folder = work / "cache-prompts.txt", work / "trajectories"
    work.mkdir(parents=True, exist_ok=True)
    prompt_file.write_text("".join(f"{p}\n" for p in prompts))
    try:
        start = time.perf_counter()
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        m = recipe.model
        base = BaseModel.load(
            m.path, device, dtype, resolution=m.resolution, max_sequence_length=m.max_sequence_length
        )
        M, w = mlcd.num_segments(recipe.student.grid), recipe.model.guidance_scale
        sync(device)
        loaded, start = time.perf_counter() - start, time.perf_counter()
        manifest = build_cache(base, prompts, folder, 1, M, mlcd.skip, w, batch_size=CACHE_PROMPTS)
        sync(device)
        built = {"other_draws": True, "cache_load_s": loaded, "cache_build_s": time.perf_counter() - start}
        built |= {"cache_trajectories": len(prompts), "cache_teacher_calls": manifest["teacher_unet_calls"]}
        del base
        free(device)
    except Exception as err:  # noqa: BLE001 - record it
        free(device)
        emit({"variant": label, **_failure(err)})
        return
    losses = {"mlcd": replace(mlcd, states="cache")}
    data = replace(recipe.data, prompts=prompt_file, trajectory_cache=folder)
    recipe = replace(recipe, data=data, phases={name: replace(phase, losses=losses)})
    _group(recipe, [(label, None)], device, timed_steps, lambda: True, lambda row: emit(row | built))


def _runtime_rows(recipe: Recipe, modes, device: str, timed_steps: int, allow, emit) -> None:
    """One row per (label, runtime fields) of ``modes``, each on its own Trainer."""
    for label, fields in modes:
        runtime = replace(recipe.runtime, **fields)
        _group(replace(recipe, runtime=runtime), [(label, None)], device, timed_steps, allow, emit)


def uncompiled_rows(
    recipe: Recipe,
    device: str,
    timed_steps: int,
    allow,
    emit,
    kernels: tuple[str, ...] = (),
    cache: Path | None = None,
    graphs: bool = False,
) -> None:
    """Rows, each ``emit``-ted when done: eager, eager with each of ``kernels`` forced (one
    Trainer), with ``cache`` (a work folder) MLCD from a trajectory cache (``cached``), with
    ``graphs`` the no-grad calls replayed (``--recipes.runtime.graphs``: CUDA graphs)."""
    eager = [("eager", None)] + [(f"eager, SDPA {k}", k) for k in kernels]
    _group(recipe, eager, device, timed_steps, allow, emit)
    if cache is not None:
        cached(recipe, cache, device, timed_steps, allow, emit)
    modes = [("graphs (no-grad calls replayed)", {"graphs": True})] if graphs else []
    _runtime_rows(recipe, modes, device, timed_steps, allow, emit)


def compiled_rows(
    recipe: Recipe, device: str, timed_steps: int, allow, emit, backend: str, graphs: bool = False
) -> None:
    """Blocks compiled with ``backend``, and with ``graphs`` compiled and replayed (run after every
    uncompiled row: compilation may run into the check's time-out; the rows before are kept)."""
    compiled = {"compile": True, "compile_backend": backend}
    modes = [("compiled blocks", compiled)]
    modes += [("compiled blocks + graphs", {**compiled, "graphs": True})] if graphs else []
    _runtime_rows(recipe, modes, device, timed_steps, allow, emit)


def sdxl_recipe(model: Path, clip: Path, work: Path, device: str, tiny: bool) -> Recipe:
    """tlcm-full-sdxl's MLCD phase as one micro-batch of ``SDXL_MICRO_BATCH`` (tiny: 2), checkpointed."""
    base = tlcm_full_sdxl()
    base = replace(base, phases={"mlcd": base.phases["mlcd"]})
    micro = {"mlcd": 2 if tiny else SDXL_MICRO_BATCH}
    return phase_recipe(base, model, clip, work / "run-speed-sdxl", device, 0, micro, tiny, True)


def miniature_recipe(work: Path, device: str) -> Recipe:
    """``recipes:mlcd`` (the miniature pipeline, its batch 16) as it trains, nothing written."""
    base = miniature_mlcd()
    runtime = replace(
        base.runtime,
        out_dir=work / "run-speed-mini",
        device=device,
        sample_grid=False,
        checkpoint_every=0,
        resume=False,
        eval_samples_per_digit=0,
    )
    return replace(base, runtime=runtime)


def run_speed(
    sec: dict,
    model: Path,
    clip: Path,
    work: Path,
    device: str,
    tiny: bool,
    steps: int,
    allow,
    update,
    backend: str = "inductor",
):
    """The section: ``sec["sdxl_mlcd"]`` and ``sec["miniature_mlcd"]`` rows, written (``update()``)
    as each is done: SDXL's uncompiled rows, the miniature's, then the compiled rows of each
    (torch.compile ``backend``, recorded as ``sec["compile_backend"]``). On the CPU only the "math"
    kernel is forced (the others are CUDA kernels)."""
    kernels = ("flash", "cudnn", "efficient") if device.startswith("cuda") else ("math",)

    def into(key: str):
        rows = sec.setdefault(key, [])

        def emit(row: dict) -> None:
            rows.append(row)
            _compare(rows)
            if key == "sdxl_mlcd":
                project(rows)
            update()

        return emit

    sdxl = sdxl_recipe(model, clip, work, device, tiny)
    mini = miniature_recipe(work, device)  # steps of tens of ms; later steps still capture new shapes
    mini_steps = steps if tiny else max(steps, MINIATURE_TIMED_STEPS)  # tiny (CPU): the code paths only
    # every uncompiled row first: compilation is the time-out's risk
    uncompiled_rows(sdxl, device, steps, allow, into("sdxl_mlcd"), kernels, work / "speed-cache")
    uncompiled_rows(mini, device, mini_steps, allow, into("miniature_mlcd"), graphs=True)
    sec["compile_backend"] = backend
    compiled_rows(sdxl, device, steps, allow, into("sdxl_mlcd"), backend)
    compiled_rows(mini, device, mini_steps, allow, into("miniature_mlcd"), backend, graphs=True)
