"""The GPU benchmark's numbers and tables by direct calls (red-team round 13; no model, no GPU: the
CUDA calls are faked where a branch needs them): peak memory in GiB (2**30) and reset per phase,
the paper's batch and iterations behind projected hours, phases refused by the time limit, the
terms of the last timed step, the miniature's steps / s; the speed section's first-step seconds,
the largest term difference, lr 0, the SDXL micro-batch, the miniature's timed steps, the
trajectory-cache row and host-sync counting; the options' memory plan, checkpointing terms and
preset; gpu.py's defaults, section loop, model rows and large-model phases; the report's columns
(gpu.md), and a failed run without checkpointing that must not crash the report. The whole
benchmark in tiny CPU mode is tests/test_gpu_benchmark.py (minutes)."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks import gpu, gpu_options, gpu_report, gpu_runs, gpu_speed

GIB = 2**30


class FakeTrainer:
    """``build_phase`` / ``train_step`` as the benchmarks call them; each step's one term is its
    global step, and it counts ``evals`` denoiser evaluations."""

    def __init__(self, recipe=None) -> None:
        self.steps, self.built, self.denoiser_evals = [], [], 0
        self.base = SimpleNamespace(graphs=None)

    def build_phase(self, name, phase, step):
        self.built.append((name, step, phase))
        return SimpleNamespace(phase=phase)

    def train_step(self, built, step):
        self.steps.append(step)
        self.denoiser_evals += 4
        return {"loss": torch.tensor(float(step))}, True


class Clock:
    """A fake ``time.perf_counter``; ``sync``: the device's queued work (``device_s[i]`` for the
    i-th call, then 1 s)."""

    def __init__(self, device_s=()) -> None:
        self.now, self.device_s, self.syncs = 0.0, list(device_s), 0

    def perf_counter(self) -> float:
        return self.now

    def sync(self, device) -> None:
        self.now += self.device_s[self.syncs] if self.syncs < len(self.device_s) else 1.0
        self.syncs += 1


class FakeCudaMemory:
    """torch.cuda's allocator statistics: ``current`` bytes, and the peak since the last reset."""

    def __init__(self, monkeypatch, current: int = 0) -> None:
        self.current = self.peak = current
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: self.current)
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: self.peak)
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", self.reset)

    def reset(self, *a) -> None:
        self.peak = self.current

    def transient(self, size: int) -> None:
        """A step's activations: allocated, then freed."""
        self.peak = max(self.peak, self.current + size)


# ---- benchmarks/gpu_runs.py ---------------------------------------------------------------------


def test_peak_memory_is_the_allocators_maximum_in_gib(monkeypatch):
    """peak GiB: torch.cuda.max_memory_allocated (not what is allocated now) over 2**30 bytes."""
    memory = FakeCudaMemory(monkeypatch, current=GIB)
    memory.transient(2 * GIB)
    assert gpu_runs.peak_gib("cuda") == pytest.approx(3.0)  # 3 GiB, 3.22 GB
    assert gpu_runs.peak_gib("cuda:0") == pytest.approx(3.0)
    assert gpu_runs.peak_gib("cpu") is None


def test_each_phase_reports_its_own_peak_memory_and_the_loaded_weights(monkeypatch):
    """A 1 GiB model whose MLCD step needs 10 GiB more and whose LCD step 3 GiB: peaks 11 and 4 GiB
    (the peak is reset at each phase, not carried over from the phase before); after the load
    1 GiB is allocated."""
    memory = FakeCudaMemory(monkeypatch)

    class Loaded(FakeTrainer):
        def __init__(self, recipe=None) -> None:
            super().__init__()
            memory.current += GIB

        def train_step(self, built, step):
            memory.transient({"mlcd": 10, "lcd": 3}[built.name] * GIB)
            return super().train_step(built, step)

        def build_phase(self, name, phase, step):
            return SimpleNamespace(phase=phase, name=name)

    monkeypatch.setattr(gpu_runs, "Trainer", Loaded)
    monkeypatch.setattr(gpu_runs, "sync", lambda device: None)
    monkeypatch.setattr(gpu_runs, "free", lambda device: None)
    phase = SimpleNamespace(batch_size=2, grad_accum=1)
    recipe = SimpleNamespace(phases={"mlcd": phase, "lcd": phase})
    paper = SimpleNamespace(batch_size=32, steps=10)
    rows = []
    gpu_runs.time_phases(
        recipe, SimpleNamespace(phases={"mlcd": paper, "lcd": paper}), "cuda", 1, lambda: True, rows.append
    )
    assert rows[0]["allocated_after_load_gib"] == pytest.approx(1.0)
    assert [r["peak_gib"] for r in rows[1:]] == pytest.approx([11.0, 4.0])


def test_projected_hours_use_the_presets_batch_and_iterations_not_the_timed_runs(monkeypatch):
    """The timed run is 2 samples x 3 steps; the preset's MLCD is batch 32 x 12k iterations (the
    paper's): projected h = s / sample x 32 x 12000 / 3600."""
    monkeypatch.setattr(gpu_runs, "Trainer", FakeTrainer)
    monkeypatch.setattr(gpu_runs, "free", lambda device: None)
    timed = SimpleNamespace(batch_size=2, grad_accum=1, steps=3)
    paper = SimpleNamespace(batch_size=32, grad_accum=1, steps=12_000)
    rows = []
    recipe, preset = SimpleNamespace(phases={"mlcd": timed}), SimpleNamespace(phases={"mlcd": paper})
    gpu_runs.time_phases(recipe, preset, "cpu", 2, lambda: True, rows.append)
    row = rows[1]
    assert (row["batch"], row["preset_batch"], row["paper_iterations"]) == (2, 32, 12_000)
    assert row["projected_hours"] == pytest.approx(row["s_per_step"] / 2 * 32 * 12_000 / 3600)


def test_phases_refused_by_the_time_limit_are_each_reported_skipped(monkeypatch):
    monkeypatch.setattr(gpu_runs, "Trainer", FakeTrainer)
    phase = SimpleNamespace(batch_size=2, grad_accum=1)
    recipe = SimpleNamespace(phases={"mlcd": phase, "lcd": phase, "dmd_gan": phase})
    rows = []
    gpu_runs.time_phases(recipe, recipe, "cpu", 1, lambda: False, rows.append)
    assert [(r["phase"], r.get("status")) for r in rows] == [
        ("(load)", None),
        ("mlcd", "skipped (time limit)"),
        ("lcd", "skipped (time limit)"),
        ("dmd_gan", "skipped (time limit)"),
    ]


def test_a_phase_keeps_the_warm_up_steps_terms_and_the_last_timed_steps():
    """At global step 5 with 2 timed steps: terms of step 5 (the warm-up), last_terms of step 7
    (the checkpointing comparison's "step 1" reads them)."""
    phase = SimpleNamespace(batch_size=2, grad_accum=1)
    paper = SimpleNamespace(batch_size=2, steps=1)
    row = gpu_runs.time_phase(FakeTrainer(), "mlcd", phase, paper, "cpu", 5, 2)
    assert row["terms"] == {"loss": 5.0} and row["last_terms"] == {"loss": 7.0}


def test_the_miniature_run_scales_every_phase_and_reports_its_own_steps_per_second(monkeypatch, tmp_path):
    """tlcm-full's phases at a fraction of their steps (at least 1 each); steps / s = the steps run
    over the training seconds (10 s here); "no" mixed precision is reported as fp32."""
    import tlcm.engine
    import tlcm.toy.scores
    from recipes.tlcm import tlcm_full

    clock, seen = Clock(), []

    def train(recipe):
        seen.append(recipe)
        clock.now += 10.0
        return SimpleNamespace(base=None, student=SimpleNamespace(denoiser=lambda: None))

    monkeypatch.setattr(tlcm.engine, "train", train)
    monkeypatch.setattr(tlcm.toy.scores, "student_scores", lambda *a, **k: [])
    monkeypatch.setattr(gpu_runs, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(gpu_runs, "sync", lambda device: None)
    monkeypatch.setattr(gpu_runs, "free", lambda device: None)
    base = tlcm_full().phases
    row = gpu_runs.miniature_run("cpu", "no", tmp_path, 0.5, 2, False)
    (recipe,) = seen
    steps = {n: max(1, round(p.steps * 0.5)) for n, p in base.items()}
    assert row["steps"] == steps and {n: p.steps for n, p in recipe.phases.items()} == steps
    assert row["steps_per_s"] == pytest.approx(sum(steps.values()) / 10.0)
    assert row["precision"] == "fp32" and recipe.runtime.mixed_precision == "no"
    tiny = gpu_runs.miniature_run("cpu", "bf16", tmp_path, 1e-9, 2, False)  # a sliver: 1 step each
    assert set(tiny["steps"].values()) == {1} and tiny["precision"] == "bf16"


# ---- benchmarks/gpu_speed.py --------------------------------------------------------------------


def test_the_first_step_seconds_are_the_first_warm_up_steps(monkeypatch):
    """Compilation happens in the first warm-up step (5 s of device work here), not the second."""
    clock = Clock(device_s=[5.0])
    monkeypatch.setattr(gpu_speed, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(gpu_speed, "sync", clock.sync)
    built = SimpleNamespace(phase=SimpleNamespace(batch_size=4))
    row = gpu_speed.time_variant(FakeTrainer(), built, "cpu", 2, None)
    assert row["first_step_s"] == pytest.approx(5.0)
    assert row["s_per_step"] == pytest.approx(1.0)


def test_the_term_difference_is_the_largest_over_the_terms():
    rows = [
        {"status": "done", "s_per_step": 1.0, "terms": {"a": 1.0, "b": 2.0}},
        {"status": "done", "s_per_step": 1.0, "terms": {"a": 1.0, "b": 1.0}},
    ]
    gpu_speed._compare(rows)
    assert rows[1]["max_term_rel_diff"] == pytest.approx(0.5)


def test_a_speed_trainer_is_built_at_lr_0_on_the_miniatures_batch(monkeypatch, tmp_path):
    """The docs: every variant trains at lr 0 (same weights at each global step); recipes:mlcd's
    own lr is 1e-3, its batch 16."""
    made = []
    monkeypatch.setattr(gpu_speed, "Trainer", lambda recipe: made.append(FakeTrainer()) or made[-1])
    recipe = gpu_speed.miniature_recipe(tmp_path, "cpu")
    assert recipe.phases["mlcd"].lr > 0
    _, built, _ = gpu_speed.load(recipe, "cpu")
    assert built.phase.lr == 0.0 and built.phase.batch_size == 16
    assert made[0].built[0][:2] == ("mlcd", 0)


def test_the_sdxl_speed_rows_run_one_checkpointed_micro_batch_of_8(tmp_path):
    recipe = gpu_speed.sdxl_recipe(Path("m"), Path("c"), tmp_path, "cuda", False)
    ((name, phase),) = recipe.phases.items()
    assert (name, phase.batch_size, phase.grad_accum) == ("mlcd", 8, 1)
    assert recipe.runtime.gradient_checkpointing and not recipe.runtime.memory_plan
    tiny = gpu_speed.sdxl_recipe(Path("m"), Path("c"), tmp_path, "cpu", True).phases["mlcd"]
    assert (tiny.batch_size, tiny.grad_accum) == (2, 1)


def test_the_speed_section_runs_uncompiled_rows_first_and_the_miniature_at_least_20_steps(
    monkeypatch, tmp_path
):
    """On CUDA (here "cuda:0"): SDXL eager with flash / cuDNN / efficient forced and the trajectory
    cache, then the miniature eager and with graphs (20 timed steps: the median of a launch-bound
    step), then each one's compiled rows; tiny (CPU): "math" forced and --steps for the miniature."""
    calls = []

    def uncompiled(recipe, device, steps, allow, emit, kernels=(), cache=None, graphs=False):
        calls.append(("eager", recipe.phases["mlcd"].batch_size, steps, kernels, cache is not None, graphs))

    def compiled(recipe, device, steps, allow, emit, backend, graphs=False):
        calls.append(("compiled", recipe.phases["mlcd"].batch_size, steps, backend, graphs))

    monkeypatch.setattr(gpu_speed, "uncompiled_rows", uncompiled)
    monkeypatch.setattr(gpu_speed, "compiled_rows", compiled)
    sec: dict = {}
    gpu_speed.run_speed(sec, Path("m"), Path("c"), tmp_path, "cuda:0", False, 2, lambda: True, lambda: None)
    assert calls == [
        ("eager", 8, 2, ("flash", "cudnn", "efficient"), True, False),
        ("eager", 16, 20, (), False, True),
        ("compiled", 8, 2, "inductor", False),
        ("compiled", 16, 20, "inductor", True),
    ]
    assert sec["compile_backend"] == "inductor"
    calls.clear()
    gpu_speed.run_speed(sec, Path("m"), Path("c"), tmp_path, "cpu", True, 1, lambda: True, lambda: None, "x")
    assert [c[2] for c in calls] == [1, 1, 1, 1] and calls[0][3] == ("math",)


def test_the_trajectory_cache_row_trains_on_its_8_prompts_with_no_teacher_calls(monkeypatch, tmp_path):
    """cached(): one trajectory per prompt for the first 8 prompts (the recipe's M, skip and w), then
    MLCD with states "cache" on those prompts; the row is marked as other draws (its terms are
    not eager's) and carries the cache's build seconds and trajectories for the projection."""
    import tlcm.data.prompts
    import tlcm.data.trajectories
    from tlcm.models.base import BaseModel

    built_with, grouped = {}, []

    def build_cache(base, prompts, folder, per_prompt, M, skip, w, batch_size):
        built_with.update(prompts=prompts, per_prompt=per_prompt, M=M, skip=skip, w=w, batch=batch_size)
        return {"teacher_unet_calls": 7}

    monkeypatch.setattr(tlcm.data.prompts, "load_prompts", lambda path: [f"prompt {i}" for i in range(20)])
    monkeypatch.setattr(tlcm.data.trajectories, "build_cache", build_cache)
    monkeypatch.setattr(BaseModel, "load", lambda *a, **k: "base")
    monkeypatch.setattr(gpu_speed, "free", lambda device: None)

    def group(recipe, plan, device, steps, allow, emit):
        grouped.append(recipe)
        emit({"variant": plan[0][0], "status": "done", "s_per_step": 1.0, "batch": 8})

    monkeypatch.setattr(gpu_speed, "_group", group)
    recipe = gpu_speed.sdxl_recipe(tmp_path / "m", tmp_path / "c", tmp_path, "cpu", True)
    rows: list[dict] = []
    gpu_speed.cached(recipe, tmp_path / "cache", "cpu", 1, lambda: True, rows.append)
    mlcd = recipe.phases["mlcd"].losses["mlcd"]
    assert built_with == {
        "prompts": [f"prompt {i}" for i in range(8)],
        "per_prompt": 1,
        "M": mlcd.num_segments(recipe.student.grid),
        "skip": mlcd.skip,
        "w": recipe.model.guidance_scale,
        "batch": 8,
    }
    (trained,) = grouped
    assert trained.phases["mlcd"].losses["mlcd"].states == "cache"
    assert trained.data.trajectory_cache == tmp_path / "cache" / "trajectories"
    assert trained.data.prompts.read_text().splitlines() == built_with["prompts"]
    (row,) = rows
    assert row["other_draws"] is True and row["cache_trajectories"] == 8 and row["cache_teacher_calls"] == 7
    eager = {"status": "done", "s_per_step": 2.0, "terms": {"loss": 1.0}}
    gpu_speed._compare([eager, row])
    assert "max_term_rel_diff" not in row and row["speedup_vs_eager"] == pytest.approx(2.0)


def test_host_syncs_counts_every_synchronising_call_and_restores_the_mode(monkeypatch):
    """Sync debug mode "warn" warns at every synchronising call, here three from one line of a
    loop (Python shows a repeated warning once unless told "always"); an unrelated warning is
    not counted; the mode is back to "default" after."""
    modes = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)

    def step():
        for _ in range(3):
            warnings.warn("called a synchronizing CUDA operation", stacklevel=1)
        warnings.warn("something else", stacklevel=1)
        return "result"

    assert gpu_speed.host_syncs(step) == ("result", 3)
    assert gpu_speed.host_syncs(step) == ("result", 3)  # the same lines again
    assert modes == ["warn", "default", "warn", "default"]


# ---- benchmarks/gpu_options.py ------------------------------------------------------------------


def test_the_memory_plan_rows_report_the_plans_accumulation_and_line(monkeypatch, tmp_path):
    """Each phase built at its preset batch in one micro-batch with the plan on (budget 79 GiB on
    CUDA, the allocator's cap lifted after): micro-batch x accumulation as the plan left them, its
    own line, checkpointing as the plan left it."""
    from recipes.tlcm import tlcm_full_sdxl

    accum = {"mlcd": 4, "lcd": 4, "preference": 2, "dmd_gan": 1}
    made, fractions = [], []

    class PlanTrainer:
        def __init__(self, recipe) -> None:
            made.append(recipe)
            self.reporter = SimpleNamespace(print=lambda line: None)
            self.student = SimpleNamespace(net=SimpleNamespace(is_gradient_checkpointing=False))

        def build_phase(self, name, phase, step):
            from dataclasses import replace

            self.reporter.print(f"memory plan: {name} in {accum[name]} micro-batches")
            self.reporter.print("another line")
            self.student.net.is_gradient_checkpointing = name == "mlcd"
            return SimpleNamespace(phase=replace(phase, grad_accum=accum[name]))

    monkeypatch.setattr(gpu_options, "Trainer", PlanTrainer)
    monkeypatch.setattr(gpu_options, "sync", lambda device: None)
    monkeypatch.setattr(gpu_options, "free", lambda device: None)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", fractions.append)
    rows = gpu_options.memory_plans(Path("m"), Path("c"), tmp_path, "cuda", False)
    (recipe,) = made
    assert recipe.runtime.memory_plan and recipe.runtime.memory_budget_gib == 79.0 and fractions == [1.0]
    preset = tlcm_full_sdxl().phases
    assert [(p.batch_size, p.grad_accum) for p in recipe.phases.values()] == [
        (p.batch_size, 1) for p in preset.values()
    ]
    for row in rows:
        name = row["phase"]
        assert row["batch"] == preset[name].batch_size and row["grad_accum"] == accum[name]
        assert row["micro_batch"] == preset[name].batch_size // accum[name]
        assert row["plan"] == f"memory plan: {name} in {accum[name]} micro-batches"
        assert row["checkpointing"] == (name == "mlcd")


def test_the_checkpointing_comparison_reads_step_1_from_the_timed_steps_terms(monkeypatch, tmp_path):
    """Step 0: the warm-up's terms (2 vs 1: 0.5); step 1: the timed step's (4 vs 1: 0.75); each run
    a DMD + GAN phase of batch 1, one warm-up and one timed step; load seconds from its (load) row."""
    seen = []

    def fake_time_phases(recipe, preset, device, timed_steps, allow, report):
        on = recipe.runtime.gradient_checkpointing
        seen.append((on, recipe.phases["dmd_gan"].batch_size, recipe.phases["dmd_gan"].steps, timed_steps))
        report({"phase": "(load)", "load_s": 3.0 if on else 4.0})
        terms, last = {"loss": 2.0 if on else 1.0}, {"loss": 4.0 if on else 1.0}
        report({"phase": "dmd_gan", "status": "done", "terms": terms, "last_terms": last})

    monkeypatch.setattr(gpu_options, "time_phases", fake_time_phases)
    monkeypatch.setattr(gpu_options, "free", lambda device: None)
    out = gpu_options.checkpointing_runs(Path("m"), Path("c"), tmp_path, "cpu", True)
    assert seen == [(True, 1, 2, 1), (False, 1, 2, 1)]
    assert (out["on"]["load_s"], out["off"]["load_s"]) == (3.0, 4.0)
    assert out["relative_difference_step0"] == {"loss": pytest.approx(0.5)}
    assert out["relative_difference_step1"] == {"loss": pytest.approx(0.75)}


def test_the_option_preset_is_dpo_and_the_timm_pixel_gan_at_the_presets_batches():
    """The docs: Diffusion-DPO (mode "dpo") and the product's default discriminator (timm resnet18
    on decoded pixels, clean), at tlcm-full-sdxl's batches, iterations, GAN weight and disc lr;
    the preset's own is the teacher-feature one."""
    from recipes.tlcm import tlcm_full_sdxl

    preset, options = tlcm_full_sdxl().phases, gpu_options.option_preset().phases
    assert list(options) == ["dmd_gan", "preference"]
    gan, own = options["dmd_gan"].losses["gan"], preset["dmd_gan"].losses["gan"]
    assert (gan.backbone, gan.input, gan.noise_level, gan.timm_model) == ("timm", "pixel", 0, "resnet18")
    assert (own.backbone, own.input) == ("teacher", "latent")
    assert (gan.weight, gan.disc_lr) == (own.weight, own.disc_lr)
    assert options["dmd_gan"].losses["dmd"] == preset["dmd_gan"].losses["dmd"]
    assert options["preference"].losses["preference"].mode == "dpo"
    assert preset["preference"].losses["preference"].mode != "dpo"
    for name, phase in options.items():
        assert (phase.batch_size, phase.steps) == (preset[name].batch_size, preset[name].steps)


# ---- benchmarks/gpu.py --------------------------------------------------------------------------


def test_defaults_are_2_timed_steps_on_a_gpu_and_1_in_tiny_mode():
    """The README: --steps (2) timed steps per SDXL phase, 3 inference repeats, inductor; --device
    cpu implies --tiny: 1 step, 1 repeat, aot_eager, 1 thread."""
    full = gpu.parse(["--device", "cuda"])
    assert (full.tiny, full.steps, full.repeats, full.mini_samples) == (False, 2, 3, 20)
    assert (full.compile_backend, full.threads) == ("inductor", None)
    tiny = gpu.parse(["--device", "cpu"])
    assert (tiny.tiny, tiny.steps, tiny.repeats, tiny.mini_samples) == (True, 1, 1, 2)
    assert (tiny.compile_backend, tiny.threads) == ("aot_eager", 1)
    assert gpu.parse(["--device", "cpu", "--steps", "3"]).steps == 3


def test_every_section_after_the_time_limit_is_marked_skipped_and_a_failure_does_not_stop_the_run(
    monkeypatch, tmp_path
):
    ran = []

    def run(self, name):
        ran.append(name)
        if name == "sdxl":
            raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(gpu.Bench, "run", run)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # tiny mode's 1 thread: not here
    common = ["--device", "cpu", "--out", str(tmp_path), "--work-dir", str(tmp_path / "w")]
    data = gpu.main([*common, "--sections", "build,sdxl,inference,speed"])
    status = {k: s["status"] for k, s in data["sections"].items()}
    assert status == {
        "build": "done",
        "sdxl": "failed: RuntimeError: CUDA out of memory",
        "inference": "done",
        "speed": "done",
    }
    ran.clear()
    data = gpu.main([*common, "--sections", "build,sdxl,inference", "--time-limit", "0"])
    status = {k: s["status"] for k, s in data["sections"].items()}
    assert ran == ["build"]
    assert status == {"build": "done", "sdxl": "skipped (time limit)", "inference": "skipped (time limit)"}


def _bench(tmp_path, monkeypatch, tiny: bool, steps: int = 2) -> gpu.Bench:
    args = SimpleNamespace(device="cpu", work_dir=tmp_path, tiny=tiny, sections=["sdxl", "flux"], steps=steps)
    args.time_limit, args.out = None, tmp_path
    report = gpu_report.Report(args, "cpu")
    monkeypatch.setattr(report, "update", lambda: None)
    return gpu.Bench(args, report)


def test_a_built_model_row_gives_the_published_size_in_the_counts_unit(monkeypatch, tmp_path):
    """The "published" column (millions) beside the built UNet's count (millions): SDXL's 2567.5 M
    vs 2567.46 M counted; weights saved as float16."""
    counts = {"unet": 2567.463684, "text_encoder": 123.06, "text_encoder_2": 694.66, "vae": 83.65}
    monkeypatch.setattr(gpu, "build_folder", lambda *a: {**counts, "saved_gb": 6.9})
    monkeypatch.setattr(gpu, "sync", lambda device: None)
    bench = _bench(tmp_path, monkeypatch, tiny=False)
    assert bench.ensure("sdxl") == tmp_path / "sdxl"
    row = bench.report.data["models"]["sdxl"]
    assert row["expected_net"] == pytest.approx(row["unet"], rel=1e-3) and row["dtype"] == "float16"
    (table,) = [t for t in gpu_report.tables(bench.report.data) if t[0].startswith("Models")]
    _, columns, (cells,) = table
    assert cells[columns.index("published")] == "2568" and cells[columns.index("denoiser")] == "2567.5"


def test_flux_times_one_step_of_one_micro_batch_per_phase_and_sdxl_the_presets_batch(monkeypatch, tmp_path):
    """The docs: flux runs each phase as one micro-batch (2 / 2 / 1 / 1), one timed step, the text
    embeddings cached on disk; sdxl the preset's batches (32 / 32 / 8 / 4) in micro-batches of
    8 / 8 / 2 / 2 and --steps timed steps. The total sums the done phases' projected hours."""
    import tlcm.export

    seen = []

    def time_phases(recipe, preset, device, steps, allow, add):
        seen.append((recipe, steps))
        add({"phase": "(load)", "load_s": 1.0})
        for name in recipe.phases:
            add({"phase": name, "status": "done", "projected_hours": 1.5})
        add({"phase": "extra", "status": "failed: OOM"})
        return SimpleNamespace(student=None, sharded=False)

    monkeypatch.setattr(gpu, "time_phases", time_phases)
    monkeypatch.setattr(gpu, "pickscore_folder", lambda folder: folder)
    monkeypatch.setattr(gpu, "free", lambda device: None)
    monkeypatch.setattr(tlcm.export, "export_student", lambda student, out: None)
    bench = _bench(tmp_path, monkeypatch, tiny=False, steps=2)
    monkeypatch.setattr(bench, "ensure", lambda kind: tmp_path / kind)
    for kind in ("flux", "sdxl"):
        bench.train(bench.report.section(kind), kind)
    (flux, flux_steps), (sdxl, sdxl_steps) = seen
    assert flux_steps == 1 and sdxl_steps == 2
    assert {n: (p.batch_size, p.grad_accum, p.steps) for n, p in flux.phases.items()} == {
        "mlcd": (2, 1, 2),
        "lcd": (2, 1, 2),
        "preference": (1, 1, 2),
        "dmd_gan": (1, 1, 2),
    }
    assert flux.data.embedding_cache == tmp_path / "embeddings-flux" and sdxl.data.embedding_cache is None
    assert {n: (p.batch_size, p.batch_size // p.grad_accum) for n, p in sdxl.phases.items()} == {
        "mlcd": (32, 8),
        "lcd": (32, 8),
        "preference": (8, 2),
        "dmd_gan": (4, 2),
    }
    sec = bench.report.section("flux")
    assert sec["projected_hours_total"] == pytest.approx(6.0) and sec["sharded"] is False


# ---- benchmarks/gpu_report.py (gpu.md) ----------------------------------------------------------


def _table(data: dict, title: str):
    found = [(c, r) for t, c, r in gpu_report.tables(data) if t.startswith(title)]
    assert found, [t for t, _, _ in gpu_report.tables(data)]
    columns, rows = found[0]
    assert all(len(r) == len(columns) for r in rows)
    return columns, rows


def test_the_phase_table_puts_each_number_under_its_column():
    load = {"phase": "(load)", "load_s": 12.0, "allocated_after_load_gib": 9.5}
    done = {"phase": "mlcd", "status": "done", "batch": 32, "micro_batch": 8, "grad_accum": 4}
    done |= {"s_per_step": 16.0, "s_per_sample": 0.5, "peak_gib": 70.25, "tflop_per_step": 1234.0}
    done |= {"achieved_tflop_per_s": 77.0, "preset_batch": 32, "paper_iterations": 12_000}
    done |= {"projected_hours": 53.3}
    failed = {"phase": "lcd", "batch": 32, "status": "failed: OutOfMemoryError"}
    sec = {"status": "done", "phases": [load, done, failed], "projected_hours_total": 53.3}
    columns, rows = _table({"sections": {"sdxl": sec}}, gpu_report.TRAINING["sdxl"])
    cell = dict(zip(columns, rows[1], strict=True))
    assert cell == {
        "phase": "mlcd",
        "batch (micro x accum)": "32 (8 x 4)",
        "s / step": "16.00",
        "s / sample": "0.50",
        "peak GiB": "70.2",
        "TFLOP / step": "1.23e+03",
        "TFLOP/s": "77",
        "preset batch x iters": "32 x 12000",
        "projected h": "53.3",
    }
    loaded = dict(zip(columns, rows[0], strict=True))
    assert (loaded["s / step"], loaded["peak GiB"], loaded["s / sample"]) == ("12.00", "9.5", "")
    assert rows[2][:3] == ["lcd", 32, "failed: OutOfMemoryError"]


def test_the_speed_table_puts_each_number_under_its_column():
    row = {"variant": "compiled blocks", "status": "done", "s_per_step": 2.0, "samples_per_s": 4.0}
    row |= {"speedup_vs_eager": 1.5, "peak_gib": 60.0, "first_step_s": 95.0, "denoiser_evals_per_step": 24}
    row |= {"host_syncs_per_step": 3, "max_term_rel_diff": 0.002}
    sec = {"status": "done", "sdxl_mlcd": [row, {"variant": "compiled + graphs", "status": "skipped"}]}
    columns, rows = _table({"sections": {"speed": sec}}, gpu_report.SPEED["sdxl_mlcd"])
    assert dict(zip(columns, rows[0], strict=True)) == {
        "variant": "compiled blocks",
        "s / step": "2",
        "samples / s": "4",
        "x eager": "1.50",
        "peak GiB": "60.0",
        "first step s": "95.0",
        "net evals / step": "24",
        "host syncs / step": "3",
        "max term rel. diff.": "2.0e-03",
        "graph captures": "",
    }


def test_the_checkpointing_table_puts_step_0_and_step_1_differences_in_their_columns():
    on = {"status": "done", "s_per_step": 2.0, "peak_gib": 30.0, "terms": {"loss": 2.0}}
    off = {"status": "done", "s_per_step": 1.5, "peak_gib": 50.0, "terms": {"loss": 1.0}}
    runs = {"on": on, "off": off, "relative_difference_step0": {"loss": 0.5}}
    runs["relative_difference_step1"] = {"loss": 0.25}
    columns, rows = _table({"sections": {"options": {"status": "done", "checkpointing": runs}}}, "SDXL DMD")
    (loss,) = [r for r in rows if r[0] == "loss"]
    assert dict(zip(columns, loss, strict=True)) == {
        "quantity": "loss",
        "checkpointing on (step 0)": "2",
        "off (step 0)": "1",
        "rel. diff. step 0": "5.00e-01",
        "step 1": "2.50e-01",
    }


def test_a_failed_run_without_checkpointing_leaves_the_report_writable(tmp_path):
    """Checkpointing off can run out of memory (that is what it is compared for): its row has a
    status and no terms. The report's tables must still be made; they are rewritten after every
    part, and gpu.py's main() cannot catch an error there (the run would stop, and later sections
    and the files' last state would be lost)."""
    on = {"status": "done", "s_per_step": 2.0, "peak_gib": 30.0, "terms": {"loss": 2.0}, "load_s": 1.0}
    off = {"phase": "dmd_gan", "batch": 1, "status": "failed: OutOfMemoryError: CUDA", "load_s": 1.0}
    data = {"sections": {"options": {"status": "done", "checkpointing": {"on": on, "off": off}}}}
    columns, rows = _table(data, "SDXL DMD")
    assert rows[0] == ["status", "done", "failed: OutOfMemoryError: CUDA", "", ""]
    assert [r for r in rows if r[0] == "loss"] == [["loss", "2", "", "", ""]]


def test_the_memory_plan_table_gives_micro_batch_times_accumulation():
    plan = {"phase": "mlcd", "batch": 32, "status": "done", "micro_batch": 8, "grad_accum": 4}
    plan |= {"checkpointing": True, "plan_s": 3.0, "plan": "memory plan: ..."}
    failed = {"phase": "lcd", "batch": 32, "status": "failed: X"}
    sec = {"status": "done", "memory_plan": [plan, failed]}
    columns, rows = _table({"sections": {"options": sec}}, "SDXL memory plan")
    assert dict(zip(columns, rows[0], strict=True)) == {
        "phase": "mlcd",
        "batch": 32,
        "micro x accum": "8 x 4",
        "checkpointing": True,
        "plan s": "3.00",
        "plan": "memory plan: ...",
    }
    assert rows[1][:3] == ["lcd", 32, "failed: X"]


def test_a_section_whose_tables_fail_is_named_and_the_other_sections_keep_theirs():
    """Any row a table builder cannot read (here a miniature run with a non-numeric score) costs
    that section's tables only: the report names the error, keeps the other sections' tables, and
    gpu.json keeps the raw values (an exception would end main() and every later section)."""
    bad = {"status": "done", "runs": [{"dtype": "bf16", "status": "done", "scores": "not a dict"}]}
    plan = {"phase": "mlcd", "batch": 32, "status": "failed: X"}
    data = {"sections": {"miniature": bad, "options": {"status": "done", "memory_plan": [plan]}}}
    titles = [t for t, _, _ in gpu_report.tables(data)]
    assert "miniature: tables not made" in titles
    assert any(t.startswith("SDXL memory plan") for t in titles)
    (error,) = [r for t, _, r in gpu_report.tables(data) if t == "miniature: tables not made"]
    assert "gpu.json" in error[0][0]


@pytest.mark.parametrize(
    "argv", [["--steps", "0"], ["--repeats", "0"], ["--mini-samples", "0"], ["--mini-fraction", "0"]]
)
def test_counts_that_would_time_nothing_are_refused_before_anything_is_built(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gpu.parse(["--device", "cpu", *argv])
    assert exit_info.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_the_cuda_test_selection_names_tests_that_exist():
    """benchmarks/gpu_tests.sh passes pytest node ids (``$C`` for the loss contract's file): one
    renamed here and not there would cost a GPU call ("not found"); each names a file of tests/ and
    one of its test functions."""
    script = (Path(__file__).parents[1] / "benchmarks" / "gpu_tests.sh").read_text()
    contract = re.search(r"^C=(\S+)$", script, re.MULTILINE).group(1)
    ids = re.findall(r"(tests/\w+\.py)(?:::(\w+))?", script.replace("$C", contract))
    assert len({name for _, name in ids if name}) >= 4, ids
    for file, name in ids:
        path = Path(__file__).parents[1] / file
        assert path.is_file(), file
        names = {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}
        assert not name or name in names, f"{file}::{name}"
