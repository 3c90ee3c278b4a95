"""The numbers the benchmarks report, each against its formula written out with made-up timings
(no model, no GPU; benchmarks/gpu.py end to end is tests/test_gpu_benchmark.py): relative
differences, s / sample, samples / s, TFLOP / step and projected hours of a timed phase, the global
steps the phases use, the speed section's projections, speed-ups and net evaluations per step, the
report's tables and units, the results files and their provenance, the UNet call log, and the
memory benchmark's peak RSS unit."""

from __future__ import annotations

import json
import resource
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks import common, gpu_report, gpu_runs, gpu_speed, memory

PAPER_MLCD_SAMPLES = 12_000 * 32
"""The paper's SDXL MLCD phase: 12k iterations at batch 32."""


class FakeTrainer:
    """``build_phase`` / ``train_step`` as the benchmarks call them: each step records its global
    step, makes one (2, 3) x (3, 4) matmul, counts ``evals_per_step`` denoiser evaluations and
    returns one 0-dim term."""

    def __init__(self, recipe=None, evals_per_step: int = 16) -> None:
        self.steps, self.built, self.denoiser_evals = [], [], 0
        self.evals_per_step = evals_per_step
        self.base = SimpleNamespace(graphs=None)

    def build_phase(self, name, phase, step):
        self.built.append((name, step))
        return SimpleNamespace(phase=phase)

    def train_step(self, built, step):
        self.steps.append(step)
        torch.mm(torch.ones(2, 3), torch.ones(3, 4))  # 2 x 2 x 3 x 4 = 48 FLOPs (multiply and add)
        self.denoiser_evals += self.evals_per_step
        return {"loss": torch.tensor(float(step))}, True


# ---- benchmarks/gpu_runs.py ---------------------------------------------------------------------


def test_relative_differences_divide_by_the_larger_magnitude():
    a, b = {"x": 1.0, "y": -4.0, "z": 0.0, "only_a": 1.0}, {"x": 2.0, "y": -3.0, "z": 0.0}
    expected = {"x": 0.5, "y": 0.25, "z": 0.0}  # |1 - 2| / 2, |-4 + 3| / 4, both 0
    assert gpu_runs.relative_differences(a, b) == pytest.approx(expected)
    assert gpu_runs.relative_differences(b, a) == pytest.approx(expected)  # symmetric


def test_a_timed_phase_reports_per_sample_rates_and_the_papers_hours():
    """s / sample = s / step / the global batch (all its micro-batches), samples / s its inverse,
    projected h = s / sample x the preset's batch x the paper's iterations / 3600."""
    phase = SimpleNamespace(batch_size=8, grad_accum=2)
    paper = SimpleNamespace(batch_size=32, steps=12_000)
    row = gpu_runs.time_phase(FakeTrainer(), "mlcd", phase, paper, "cpu", 0, 3)
    s = row["s_per_step"]
    assert row["micro_batch"] == 4 and row["grad_accum"] == 2 and row["finite_steps"] == 3
    assert s == pytest.approx(sum(row["step_times_s"]) / 3)
    assert row["s_per_sample"] == pytest.approx(s / 8)
    assert row["samples_per_s"] == pytest.approx(8 / s)
    assert row["projected_hours"] == pytest.approx(s / 8 * 32 * 12_000 / 3600)
    assert (row["preset_batch"], row["paper_iterations"]) == (32, 12_000)
    assert row["tflop_per_step"] == pytest.approx(48 / 1e12)  # the warm-up step's, counted
    assert row["achieved_tflop_per_s"] == pytest.approx(48 / 1e12 / s)


def test_the_phases_use_consecutive_global_steps(monkeypatch):
    """Each phase: one warm-up step then the timed ones, at the global steps after the previous
    phase's (no step, and so no draw, repeated)."""
    made = []
    monkeypatch.setattr(gpu_runs, "Trainer", lambda recipe: made.append(FakeTrainer()) or made[-1])
    monkeypatch.setattr(gpu_runs, "free", lambda device: None)  # gc.collect: a second per phase
    phase = SimpleNamespace(batch_size=2, grad_accum=1)
    recipe = SimpleNamespace(phases={"mlcd": phase, "lcd": phase})
    paper = SimpleNamespace(batch_size=32, steps=1)
    preset = SimpleNamespace(phases={"mlcd": paper, "lcd": paper})
    rows = []
    gpu_runs.time_phases(recipe, preset, "cpu", 2, lambda: True, rows.append)
    (trainer,) = made
    assert trainer.built == [("mlcd", 0), ("lcd", 3)]
    assert trainer.steps == [0, 1, 2, 3, 4, 5]
    assert [r["phase"] for r in rows] == ["(load)", "mlcd", "lcd"]


# ---- benchmarks/gpu_speed.py --------------------------------------------------------------------


def test_projections_are_per_sample_and_add_the_cache_build_per_trajectory():
    rows = [
        {"status": "done", "s_per_step": 2.0, "batch": 8},
        {"status": "done", "s_per_step": 1.0, "batch": 8, "cache_build_s": 16.0, "cache_trajectories": 8},
        {"status": "failed: OOM"},
    ]
    gpu_speed.project(rows)
    assert rows[0]["projected_mlcd_hours"] == pytest.approx(PAPER_MLCD_SAMPLES * 2.0 / 8 / 3600)
    train_h = PAPER_MLCD_SAMPLES * 1.0 / 8 / 3600
    assert rows[1]["projected_mlcd_hours"] == pytest.approx(train_h)
    # one trajectory serves `uses` training samples: SAMPLES / uses trajectories at 2 s each
    assert rows[1]["projected_mlcd_hours_with_cache"] == pytest.approx(
        {
            15: train_h + PAPER_MLCD_SAMPLES / 15 * 2.0 / 3600,
            60: train_h + PAPER_MLCD_SAMPLES / 60 * 2.0 / 3600,
        }
    )
    assert "projected_mlcd_hours" not in rows[2]


def test_speedups_are_over_eager_and_terms_compared_only_on_the_same_draws():
    rows = [
        {"status": "done", "s_per_step": 2.0, "terms": {"loss": 1.0}},
        {"status": "done", "s_per_step": 1.0, "terms": {"loss": 1.5}},
        {"status": "done", "s_per_step": 4.0, "terms": {"loss": 9.0}, "other_draws": True},
    ]
    gpu_speed._compare(rows)
    assert [r["speedup_vs_eager"] for r in rows] == pytest.approx([1.0, 2.0, 0.5])
    assert rows[1]["max_term_rel_diff"] == pytest.approx(0.5 / 1.5)
    assert rows[0]["max_term_rel_diff"] == 0.0 and "max_term_rel_diff" not in rows[2]


def test_a_timed_variant_counts_net_evaluations_per_timed_step():
    trainer = FakeTrainer(evals_per_step=16)
    built = SimpleNamespace(phase=SimpleNamespace(batch_size=4))
    row = gpu_speed.time_variant(trainer, built, "cpu", 3, None)
    # warm-up steps 0, 1, the sync-counted step 2, then 3 timed steps 3, 4, 5
    assert trainer.steps == [0, 1, 2, 3, 4, 5]
    assert row["denoiser_evals_per_step"] == 16
    assert row["samples_per_s"] == pytest.approx(4 / row["s_per_step"])
    assert row["terms"] == {"loss": 3.0}  # the first timed step's


# ---- benchmarks/gpu_report.py -------------------------------------------------------------------


def test_the_phase_table_puts_the_total_under_projected_hours_and_the_store_in_mb():
    done = {"phase": "mlcd", "status": "done", "batch": 32, "micro_batch": 8, "grad_accum": 4}
    done |= {"s_per_step": 1.0, "s_per_sample": 1 / 32, "peak_gib": 40.0, "tflop_per_step": 300.0}
    done |= {"achieved_tflop_per_s": 300.0, "preset_batch": 32, "paper_iterations": 12_000}
    done |= {"projected_hours": 104.0}
    sec = {"status": "done", "phases": [done], "projected_hours_total": 104.0}
    sec |= {
        "fsdp_requested": True,
        "sharded": False,
        "embedding_cache": {"bytes": 3_000_000, "chunk_files": 1},
    }
    tables = {
        title: (columns, rows) for title, columns, rows in gpu_report.tables({"sections": {"flux": sec}})
    }
    columns, rows = tables[gpu_report.TRAINING["flux"]]
    assert [len(r) for r in rows] == [len(columns)] * 2
    hours = columns.index("projected h")
    assert [r[0] for r in rows] == ["mlcd", "total"] and rows[1][hours] == "104"
    assert rows[0][columns.index("preset batch x iters")] == "32 x 12000"
    columns, rows = tables["FLUX: FSDP and the embedding store on disk"]
    assert rows[0][columns.index("embedding store MB")] == "3.0"  # 3e6 bytes: MB, not MiB (2.9)


def test_the_first_section_always_runs_and_later_ones_only_within_the_time_limit(tmp_path):
    args = SimpleNamespace(work_dir=tmp_path, tiny=True, sections=["a", "b"], time_limit=0, out=tmp_path)
    report = gpu_report.Report(args, "cpu")
    assert [report.allow(), report.allow()] == [True, False]
    args.time_limit = None
    assert gpu_report.Report(args, "cpu").allow() and report.allow()


# ---- benchmarks/common.py -----------------------------------------------------------------------


def test_results_go_to_the_given_folder_as_json_and_a_markdown_table(tmp_path):
    meta = {"command": "python -m benchmarks.x", "device": "cpu"}
    common.write_results(
        "redteam-probe", "Title", meta, [("T", ["a", "b", "c"], [[1, 2, 3]])], {"k": 1}, ["n"], tmp_path, True
    )
    assert json.loads((tmp_path / "redteam-probe.json").read_text())["data"] == {"k": 1}
    md = (tmp_path / "redteam-probe.md").read_text().splitlines()
    table = md[md.index("| a | b | c |") :][:3]
    assert table == ["| a | b | c |", "|---|---|---|", "| 1 | 2 | 3 |"]
    assert not (common.RESULTS / "redteam-probe.json").exists()


def test_provenance_reports_the_threads_torch_uses_beside_the_ones_asked_for(tmp_path):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        info = common.provenance("cpu", 7, tmp_path, "tiny")
    finally:
        torch.set_num_threads(previous)
    assert (info["threads"], info["requested_threads"]) == (1, 7)


def test_the_call_log_counts_samples_per_unet_call():
    class Net(torch.nn.Module):
        def forward(self, sample, timestep, encoder_hidden_states=None):
            return sample

    log, net = common.CallLog(), Net()
    handles = common.count_unet_calls([net], log)
    try:
        net(torch.zeros(3, 4, 8, 8), 1)
        with torch.no_grad():
            net(sample=torch.zeros(5, 4, 8, 8), timestep=1)
    finally:
        for h in handles:
            h.remove()
    assert log.calls == [("untagged", 3, True, None), ("untagged", 5, False, None)]


# ---- benchmarks/memory.py -----------------------------------------------------------------------


def test_the_peak_rss_is_read_in_bytes():
    """VmHWM (kB in /proc/self/status) and ru_maxrss (KiB on Linux) are both this process's peak RSS."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("no /proc")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert 0.5 * peak <= memory._vm_hwm() <= 2 * peak


# ---- how each phase is built and timed (red-team round 8) ---------------------------------------


def test_a_full_phase_recipe_keeps_the_presets_batch_in_micro_batches_of_micro_batch():
    """GPU mode (not tiny): each phase of tlcm-full-sdxl keeps its preset batch (32 / 32 / 8 / 4),
    split into micro-batches of MICRO_BATCH["sdxl"] (grad_accum = batch / micro), runs the warm-up
    plus the timed steps, DMD keeps its 5 fake-score updates, checkpointing is on, no memory plan;
    the flow presets keep their 1024 px (16 px is the tiny mode's)."""
    from recipes.tlcm import tlcm_full_flux, tlcm_full_sdxl

    base, micro = tlcm_full_sdxl(), gpu_runs.MICRO_BATCH["sdxl"]
    recipe = gpu_runs.phase_recipe(base, Path("m"), Path("c"), Path("o"), "cuda", 2, micro, tiny=False)
    assert list(recipe.phases) == list(base.phases)
    for name, phase in recipe.phases.items():
        assert phase.batch_size == base.phases[name].batch_size
        assert (phase.batch_size // phase.grad_accum, phase.grad_accum * micro[name]) == (
            micro[name],
            phase.batch_size,
        )
        assert phase.steps == 3  # 1 warm-up + 2 timed
    assert recipe.phases["dmd_gan"].losses["dmd"].fake_updates == 5
    assert recipe.runtime.gradient_checkpointing and not recipe.runtime.memory_plan
    flux = tlcm_full_flux()
    full = gpu_runs.phase_recipe(
        flux, Path("m"), Path("c"), Path("o"), "cuda", 1, gpu_runs.MICRO_BATCH["flux"], False
    )
    assert (full.model.resolution, full.model.max_sequence_length) == (
        flux.model.resolution,
        flux.model.max_sequence_length,
    )
    assert full.model.resolution == 1024


def test_a_tiny_or_whole_phase_recipe_runs_its_own_batch():
    """Tiny mode: batch 2 in micro-batches of MICRO_BATCH["tiny"], one DMD fake-score update, no
    checkpointing, flow models at 16 px; ``whole``: one micro-batch of micro[phase] (grad_accum 1)."""
    from recipes.tlcm import tlcm_full_flux, tlcm_full_sdxl

    micro = gpu_runs.MICRO_BATCH["tiny"]
    tiny = gpu_runs.phase_recipe(tlcm_full_sdxl(), Path("m"), Path("c"), Path("o"), "cpu", 1, micro, True)
    for name, phase in tiny.phases.items():
        assert (phase.batch_size, phase.grad_accum, phase.steps) == (2, 2 // micro[name], 2)
    assert tiny.phases["dmd_gan"].losses["dmd"].fake_updates == 1
    assert not tiny.runtime.gradient_checkpointing
    flow = gpu_runs.phase_recipe(tlcm_full_flux(), Path("m"), Path("c"), Path("o"), "cpu", 1, micro, True)
    assert flow.model.resolution == gpu_runs.TINY_FLOW["resolution"]
    whole = {"mlcd": 8}
    base = tlcm_full_sdxl()
    base = replace(base, phases={"mlcd": base.phases["mlcd"]})
    one = gpu_runs.phase_recipe(base, Path("m"), Path("c"), Path("o"), "cuda", 0, whole, False, True)
    assert (one.phases["mlcd"].batch_size, one.phases["mlcd"].grad_accum) == (8, 1)


class Clock:
    """A fake ``time.perf_counter``: ``advance`` moves it. ``sync``: the device finishing its queued
    work (``device_s`` per call, from a list or constant), which is where a GPU step's time goes."""

    def __init__(self, device_s=1.0) -> None:
        self.now, self.device_s, self.syncs = 0.0, device_s, 0

    def perf_counter(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sync(self, device) -> None:
        s = self.device_s[self.syncs] if isinstance(self.device_s, list) else self.device_s
        self.syncs += 1
        self.advance(s)


class ClockedTrainer(FakeTrainer):
    """FakeTrainer whose steps take 0.25 s of host time (the launch) on ``clock``; ``ok(step)``: the
    step's finite flag."""

    def __init__(self, clock: Clock, ok=lambda step: True) -> None:
        super().__init__()
        self.clock, self.ok = clock, ok

    def train_step(self, built, step):
        terms, _ = super().train_step(built, step)
        self.clock.advance(0.25)
        return terms, self.ok(step)


def test_a_timed_step_waits_for_the_device_and_is_timed_alone(monkeypatch):
    """Each timed step's seconds are its host launch (0.25 s) plus the device's work, waited for
    before the clock is read (1 s): 1.25 s each, none including an earlier step, the warm-up out of
    them. Of the 3 timed steps (global steps 1, 2, 3) only step 2 is finite: finite_steps = 1."""
    clock = Clock(device_s=1.0)
    monkeypatch.setattr(gpu_runs, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(gpu_runs, "sync", clock.sync)
    trainer = ClockedTrainer(clock, ok=lambda step: step == 2)
    phase = SimpleNamespace(batch_size=4, grad_accum=1)
    paper = SimpleNamespace(batch_size=4, steps=3600)
    row = gpu_runs.time_phase(trainer, "mlcd", phase, paper, "cpu", 0, 3)
    assert row["step_times_s"] == pytest.approx([1.25, 1.25, 1.25])
    assert row["s_per_step"] == pytest.approx(1.25) and row["samples_per_s"] == pytest.approx(4 / 1.25)
    assert row["projected_hours"] == pytest.approx(1.25 / 4 * 4 * 3600 / 3600)
    assert row["finite_steps"] == 1


def test_the_speed_rows_take_the_median_of_device_synchronised_steps(monkeypatch):
    """time_variant: 2 warm-up steps and the sync-counted one (global steps 0-2), then 3 timed steps
    whose device work is 1, 10 (a graph capture) and 1 s, each after a 0.25 s launch: the step
    times are 1.25, 10.25, 1.25 and s / step is their median 1.25 (the mean would be 4.25)."""
    clock = Clock(device_s=[1.0, 1.0, 1.0, 1.0, 10.0, 1.0])  # 2 warm-ups, the sync-counted step, 3 timed
    monkeypatch.setattr(gpu_speed, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(gpu_speed, "sync", clock.sync)
    trainer = ClockedTrainer(clock)
    built = SimpleNamespace(phase=SimpleNamespace(batch_size=4))
    row = gpu_speed.time_variant(trainer, built, "cpu", 3, None)
    assert row["step_times_s"] == pytest.approx([1.25, 10.25, 1.25])
    assert row["s_per_step"] == pytest.approx(1.25)


def test_inference_times_leave_the_warm_up_call_out(monkeypatch):
    """_time_call: one warm-up call (5 s: cold caches, autotuning), then ``repeats`` timed calls of
    1 s each: warmup_s 5, s / image 1, 1 + repeats calls of the pipeline."""
    clock, calls = Clock(device_s=0.0), []
    monkeypatch.setattr(gpu_runs, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(gpu_runs, "sync", clock.sync)

    def pipe(prompt, **kwargs):
        calls.append(kwargs["num_inference_steps"])
        clock.advance(5.0 if len(calls) == 1 else 1.0)

    row = gpu_runs._time_call(pipe, "cpu", 2, num_inference_steps=4)
    assert calls == [4, 4, 4]
    assert row["warmup_s"] == pytest.approx(5.0) and row["s_per_image"] == pytest.approx(1.0)


def test_the_checkpointing_rows_are_labelled_by_the_run_that_had_it_on(monkeypatch, tmp_path):
    """checkpointing_runs: out["on"] is the run whose recipe had gradient checkpointing on, out["off"]
    the other; the relative differences compare their step-0 and step-1 terms."""
    from benchmarks import gpu_options

    def fake_time_phases(recipe, preset, device, timed_steps, allow, report):
        on = recipe.runtime.gradient_checkpointing
        report({"phase": "(load)", "load_s": 1.0})
        terms = {"loss": 2.0 if on else 1.0}
        report(
            {"phase": "dmd_gan", "status": "done", "checkpointing": on, "terms": terms, "last_terms": terms}
        )

    monkeypatch.setattr(gpu_options, "time_phases", fake_time_phases)
    monkeypatch.setattr(gpu_options, "free", lambda device: None)
    out = gpu_options.checkpointing_runs(Path("m"), Path("c"), tmp_path, "cpu", True)
    assert (out["on"]["checkpointing"], out["off"]["checkpointing"]) == (True, False)
    assert out["relative_difference_step0"] == {"loss": pytest.approx(0.5)}


def test_a_benchmark_recipe_starts_fresh(tmp_path):
    """common.shrink (every benchmark's recipe) never resumes: a checkpoint an earlier run left in
    its folder must not make it time a finished phase; smoke_recipe passes resume through."""
    from recipes.tlcm import mlcd

    recipe = common.shrink(mlcd(), tmp_path, tmp_path / "run", 2, 2, "cpu")
    assert recipe.runtime.resume is False
    assert (recipe.phases["mlcd"].steps, recipe.phases["mlcd"].batch_size) == (2, 2)


class FakePipeline:
    """A diffusers pipeline as time_inference drives it: each call costs 0.1 s per network pass on
    ``CLOCK`` (2 passes per step with CFG, i.e. guidance_scale > 1), 0.075 s with the LoRA fused; a
    call with a LoRA loaded must run the TLCM scheduler, one without it the teacher's own."""

    clock: Clock

    def __init__(self) -> None:
        self.scheduler, self.lora, self.fused, self.calls = "teacher scheduler", False, False, []

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        return cls()

    def to(self, device):
        return self

    def set_progress_bar_config(self, **kwargs) -> None:
        pass

    def load_lora_weights(self, path) -> None:
        self.lora = True

    def unload_lora_weights(self) -> None:
        self.lora = False

    def fuse_lora(self) -> None:
        self.fused = True

    def unfuse_lora(self) -> None:
        self.fused = False

    def __call__(self, prompt, num_inference_steps, guidance_scale, **kwargs) -> None:
        assert self.scheduler == ("tlcm scheduler" if self.lora else "teacher scheduler")
        self.calls.append((self.lora, self.fused, num_inference_steps))
        passes = num_inference_steps * (2 if guidance_scale > 1 else 1)
        self.clock.advance(passes * (0.075 if self.fused else 0.1))


def test_inference_speedups_are_the_teachers_seconds_over_each_rows(monkeypatch, tmp_path):
    """SDXL: the student's 4 steps without CFG take 0.4 s unfused and 0.3 s fused, the teacher's 25
    steps with CFG 8 (2 passes each) 5 s, with its own scheduler and no LoRA: "x teacher" = 5 / 0.4
    = 12.5 and 5 / 0.3, the teacher's 1; each row labelled by what ran."""
    import diffusers

    import tlcm.diffusion.scheduler

    clock = Clock(device_s=0.0)
    monkeypatch.setattr(FakePipeline, "clock", clock, raising=False)
    monkeypatch.setattr(gpu_runs, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(gpu_runs, "sync", clock.sync)
    monkeypatch.setattr(gpu_runs, "free", lambda device: None)
    monkeypatch.setattr(diffusers, "StableDiffusionXLPipeline", FakePipeline)
    scheduler = SimpleNamespace(from_pretrained=lambda path: "tlcm scheduler")
    monkeypatch.setattr(tlcm.diffusion.scheduler, "TLCMScheduler", scheduler)
    rows = gpu_runs.time_inference("sdxl", tmp_path / "sdxl", tmp_path / "student", "cpu", 2)
    assert [r["model"] for r in rows] == ["student, LoRA unfused", "student, LoRA fused", "teacher"]
    assert [r["s_per_image"] for r in rows] == pytest.approx([0.4, 0.3, 5.0])
    assert [r["speedup_vs_teacher"] for r in rows] == pytest.approx([12.5, 5.0 / 0.3, 1.0])
    assert [(r["steps"], r["cfg"]) for r in rows] == [(4, False), (4, False), (25, True)]
