"""The CPU benchmarks' counts, timings, pairings and labels (red-team round 14): what
benchmarks/common.py resolves and records (the model folder and its label, the device and threads,
a full fine-tune passed on, each UNet's own LoRA flag, the provenance lines), what
benchmarks/unet_calls.py counts per step and per sample (a faked Trainer making scripted UNet calls
on a fake clock), its table cells and notes, the trajectory cache's build arguments,
benchmarks/engine_overhead.py's device-synchronised timings, its hand-written loop over three
steps, the adapter toggle's per-toggle cost and main()'s rows and notes, benchmarks/memory.py's
worker (which configuration trains what, the inventory at the last step, saved activations, the
CUDA peak reset), its byte inventory and a failed worker, and benchmarks/graphs.py's equality
checks, --out and --warmup / --steps. Every measurement is faked (clocks, trainers, subprocesses);
one test runs the tiny pipeline for three steps."""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_cpu_benchmark_units import Clock, Net
from test_tooling_units import _run_main

from benchmarks import common, engine_overhead, graphs, memory, unet_calls
from recipes.tlcm import mlcd
from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.mlcd import MLCDConfig


def _lora_net() -> torch.nn.Module:
    from peft import LoraConfig, inject_adapter_in_model

    return inject_adapter_in_model(LoraConfig(r=2, target_modules=["proj"]), Net())


@pytest.fixture
def threads():
    """Give torch its thread count back after a test sets it."""
    previous = torch.get_num_threads()
    yield previous
    torch.set_num_threads(previous)


# ---- benchmarks/common.py -------------------------------------------------------------------------


def test_auto_takes_the_built_miniature_else_the_tiny_pipeline_and_a_folder_is_custom(monkeypatch):
    monkeypatch.setattr(common, "tiny_sd_folder", lambda: Path("tiny-folder"))
    monkeypatch.setattr(common, "miniature_ready", lambda: True)
    assert common.resolve_model("auto") == (common.MINIATURE_SD, "miniature")
    monkeypatch.setattr(common, "miniature_ready", lambda: False)
    assert common.resolve_model("auto") == (Path("tiny-folder"), "tiny-random")
    assert common.resolve_model("tiny") == (Path("tiny-folder"), "tiny-random")
    assert common.resolve_model("some/folder") == (Path("some/folder"), "custom")


def test_setup_torch_resolves_auto_by_cuda_and_sets_the_threads(monkeypatch, threads):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert common.setup_torch(threads, "auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert common.setup_torch(threads, "auto") == "cpu"
    assert common.setup_torch(threads, "cuda:1") == "cuda:1"
    other = 2 if threads != 2 else 1
    common.setup_torch(other, "cpu")
    assert torch.get_num_threads() == other


def test_shrink_passes_a_full_fine_tune_on(tmp_path):
    """memory.py's "full" configuration asks shrink for a full fine-tune: the recipe must say so."""
    assert common.shrink(
        mlcd(), tmp_path, tmp_path / "r", 2, 2, "cpu", full_finetune=True
    ).student.full_finetune
    assert not common.shrink(mlcd(), tmp_path, tmp_path / "r", 2, 2, "cpu").student.full_finetune


def test_each_hooked_unet_logs_its_own_lora_flag():
    """Two UNets hooked at once, the first with a LoRA layer, the second without: the first's calls
    log adapters on, the second's None (no adapters), not the last UNet's state for both."""
    with_lora, plain = _lora_net(), Net()
    log = common.CallLog()
    handles = common.count_unet_calls([with_lora, plain], log)
    try:
        with_lora(torch.zeros(1, 4))
        plain(torch.zeros(2, 4))
    finally:
        for h in handles:
            h.remove()
    assert [(c[1], c[3]) for c in log.calls] == [(1, True), (2, None)]


def test_the_markdown_lists_the_provenance_below_the_command(tmp_path):
    meta = {"command": "python -m benchmarks.x", "device": "cpu", "threads": 1}
    common.write_results("probe", "Title", meta, [("Title", ["a"], [[1]])], {}, ["a note"], tmp_path, True)
    md = (tmp_path / "probe.md").read_text().splitlines()
    assert "Command: `python -m benchmarks.x`" in md
    assert "- device: cpu" in md and "- threads: 1" in md
    assert not any(line.startswith("- command") for line in md)
    assert "- a note" in md


def test_provenance_names_the_gpu_of_an_indexed_cuda_device(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "Fake GPU")
    assert common.provenance("cuda:0", 1, tmp_path, "x")["device"] == "cuda:0 (Fake GPU)"
    assert common.provenance("cpu", 1, tmp_path, "x")["device"] == "cpu"


# ---- benchmarks/unet_calls.py ---------------------------------------------------------------------


def test_the_cache_mode_expects_no_teacher_call():
    """states="cache": the teacher ran before training; per sample 0 CFG evals, 2 student calls."""
    got = unet_calls.expectations("mlcd", MLCDConfig(states="cache"), 16, StudentGrid())
    assert got == {"teacher_cfg": 0, "student": 2, "calls": 2}


@dataclass(frozen=True)
class _Teacher:
    denoiser: object


@dataclass(frozen=True)
class _Context:
    student: object
    teacher: _Teacher


class ScriptedTrainer:
    """A Trainer as unet_calls.measure drives it; each step, through the phase context: two no-grad
    teacher calls of batch 2B (with the LoRA adapters left ON: a bug the benchmark must report), one
    student call with grad and three without, of batch B; steps take 5, 1, 3, ... s of ``CLOCK``."""

    CLOCK: Clock
    DURATIONS = (5.0, 1.0, 3.0)

    def __init__(self, recipe) -> None:
        self.recipe = recipe
        net = _lora_net()
        self.base = SimpleNamespace(net=net)

        def factory():
            return lambda x, t, cond: net(x)

        self.student = SimpleNamespace(net=net, denoiser=factory, teacher=factory)
        self.phase_context = _Context(None, _Teacher(None))

    def train_step(self, built, step):
        phase = next(iter(self.recipe.phases.values()))
        b, ctx = phase.batch_size, self.phase_context
        with torch.no_grad():
            for _ in range(2):
                ctx.teacher.denoiser(torch.zeros(2 * b, 4), 0, None)
            for _ in range(3):
                ctx.student(torch.zeros(b, 4), 0, None)
        ctx.student(torch.zeros(b, 4), 0, None)
        self.CLOCK.advance(self.DURATIONS[step % 3])
        return {}, True

    def run(self):
        for step in range(next(iter(self.recipe.phases.values())).steps):
            self.train_step(None, step)


def _scripted_measure(monkeypatch, tmp_path) -> dict:
    clock = Clock()
    monkeypatch.setattr(ScriptedTrainer, "CLOCK", clock, raising=False)
    monkeypatch.setattr(unet_calls, "Trainer", ScriptedTrainer)
    monkeypatch.setattr(unet_calls, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    cfg = MLCDConfig(states="single_jump")
    recipe = common.shrink(mlcd(), tmp_path, tmp_path / "run", 3, 4, "cpu")
    recipe = replace(recipe, phases={"mlcd": replace(recipe.phases["mlcd"], losses={"mlcd": cfg})})
    return unet_calls.measure("probe", "mlcd", recipe, cfg)


def test_measure_counts_teacher_calls_per_step_and_their_mean_batch(monkeypatch, tmp_path):
    """3 steps x B 4 (12 samples): 2 teacher calls per step of batch 8 each (mean batch 8, 48
    sample-evals: 4 per sample), 1 student call with grad + 3 without, 6 UNet calls per step."""
    r = _scripted_measure(monkeypatch, tmp_path)
    assert (r["steps"], r["batch_size"], r["samples"]) == (3, 4, 12)
    assert r["teacher_calls_per_step"] == pytest.approx(2.0)
    assert r["teacher_mean_call_batch"] == pytest.approx(8.0)
    assert r["teacher_sample_evals_per_sample"] == pytest.approx(4.0)
    assert r["student_calls_per_step_grad"] == pytest.approx(1.0)
    assert r["student_calls_per_step_nograd"] == pytest.approx(3.0)
    assert r["unet_calls_per_step"] == pytest.approx(6.0)
    assert r["untagged_calls"] == 0


def test_measure_reports_teacher_calls_that_ran_with_the_adapters_on(monkeypatch, tmp_path):
    """The scripted teacher calls run with the LoRA adapters on (no grad): all 6 are reported."""
    r = _scripted_measure(monkeypatch, tmp_path)
    assert r["teacher_calls_with_adapters_on"] == 6
    assert r["teacher_calls_with_grad"] == 0
    assert r["student_calls_with_adapters_off"] == 0


def test_measure_reports_the_median_step_time(monkeypatch, tmp_path):
    """Steps of 5, 1 and 3 s: the median is 3 s (not the middle step's 1 s)."""
    assert _scripted_measure(monkeypatch, tmp_path)["median_step_s"] == pytest.approx(3.0)


def test_the_trajectory_cache_is_built_with_the_recipes_grid_skip_and_guidance(monkeypatch, tmp_path):
    """build_trajectory_cache hands build_cache the recipe's M, the loss's skip and the model's
    guidance scale, and counts the builder's UNet calls as the teacher's (and no later call)."""
    import tlcm.data.prompts
    import tlcm.data.trajectories

    net, seen = Net(), {}
    monkeypatch.setattr(unet_calls.BaseModel, "load", lambda model, device: SimpleNamespace(net=net))
    monkeypatch.setattr(tlcm.data.prompts, "load_prompts", lambda source: ["a", "b"])

    def build_cache(base, prompts, out, samples_per_prompt, *args):
        seen.update(prompts=prompts, out=out, spp=samples_per_prompt, args=args)
        base.net(torch.zeros(6, 4))
        return {"manifest": True}

    monkeypatch.setattr(tlcm.data.trajectories, "build_cache", build_cache)
    recipe = common.shrink(mlcd(), tmp_path, tmp_path / "run", 2, 2, "cpu")
    recipe = replace(recipe, student=replace(recipe.student, grid=StudentGrid(6, 3)))
    cfg = MLCDConfig(states="cache", skip=37)
    manifest, log = unet_calls.build_trajectory_cache(tmp_path, tmp_path / "cache", "cpu", recipe, cfg, 3)
    net(torch.zeros(1, 4))  # after the build: not counted
    assert manifest == {"manifest": True}
    assert seen == {
        "prompts": ["a", "b"],
        "out": tmp_path / "cache",
        "spp": 3,
        "args": (6, 37, recipe.model.guidance_scale),
    }
    assert [(c[0], c[1]) for c in log.calls] == [("teacher", 6)]


def _result(expected: dict, **values) -> dict:
    base = {
        "teacher_cfg_evals_per_sample": 0.0,
        "teacher_sample_evals_per_sample": 0.0,
        "student_sample_evals_per_sample": 2.0,
        "sample_evals_per_sample": 2.0,
        "teacher_calls_per_step": 0.0,
        "teacher_mean_call_batch": 0.0,
        "student_calls_per_step_grad": 1.0,
        "student_calls_per_step_nograd": 1.0,
        "unet_calls_per_step": 2.0,
        "median_step_s": 0.5,
    }
    return base | {"expected": expected} | values


def test_the_cache_columns_expected_zero_teacher_evals_is_shown():
    """states="cache" expects 0 teacher CFG evals: the cell still shows "(exp. 0.00)"."""
    exp = unet_calls.expectations("mlcd", MLCDConfig(states="cache"), 4, StudentGrid())
    rows = {row[0]: row[1] for row in unet_calls.table_rows([_result(exp)])}
    assert rows["teacher CFG evals / sample"] == "0.00 (exp. 0.00)"


def test_the_given_draws_cells_read_their_own_exact_values():
    """MDS: the 'given draws' value of the CFG evals row is the drawn teacher_cfg (5.25), that of
    the calls row the drawn calls (8.50); the student calls cell is grad + no-grad."""
    exp = {"teacher_cfg": 5.5, "student": 2, "calls": 9.0}
    r = _result(
        exp,
        teacher_cfg_evals_per_sample=5.25,
        unet_calls_per_step=8.5,
        student_calls_per_step_grad=1.0,
        student_calls_per_step_nograd=3.0,
        given_draws={"teacher_cfg": 5.25, "calls": 8.5},
    )
    rows = {row[0]: row[1] for row in unet_calls.table_rows([r])}
    assert rows["teacher CFG evals / sample"] == "5.25 (exp. 5.50; 5.25 given draws)"
    assert rows["total UNet calls / step"] == "8.50 (exp. 9.00; 8.50 given draws)"
    assert rows["student UNet calls / step (grad + no-grad)"] == "1 + 3"


def _unet_calls_main(monkeypatch, tmp_path, results: dict[str, dict]) -> tuple[list, list]:
    """unet_calls.main with measure and the cache build faked: returns (the (name, cfg) pairs
    measured, the notes written)."""
    measured = []

    def measure(name, kind, recipe, cfg):
        measured.append((name, cfg))
        exp = unet_calls.expectations(kind, cfg, 2, recipe.student.grid)
        return {"name": name, **_result(exp), **_clean(), **results.get(name, {})}

    built = common.CallLog(role="teacher", calls=[("teacher", 8, False, False)] * 9)
    manifest = {"num_prompts": 2, "samples_per_prompt": 2, "grid": list(range(9))}
    monkeypatch.setattr(unet_calls, "measure", measure)
    monkeypatch.setattr(unet_calls, "build_trajectory_cache", lambda *args: (manifest, built))
    argv = ["--model", str(tmp_path), "--steps", "2", "--batch-size", "2"]
    *_, notes = _run_main(monkeypatch, unet_calls, argv)
    return measured, notes


def _clean() -> dict:
    return {
        "teacher_calls_with_adapters_on": 0,
        "student_calls_with_adapters_off": 0,
        "untagged_calls": 0,
        "teacher_calls_with_grad": 0,
    }


def test_the_all_calls_in_their_mode_note_needs_no_teacher_call_with_grad(monkeypatch, tmp_path):
    names = ["MLCD states=mds", "MLCD states=single_jump", "MLCD states=cache", "LCD q=4 p=3"]
    _, notes = _unet_calls_main(monkeypatch, tmp_path, {n: _clean() for n in names})
    assert any(n.startswith("every teacher call ran with the LoRA adapters disabled") for n in notes)
    bad = {n: _clean() for n in names} | {"LCD q=4 p=3": _clean() | {"teacher_calls_with_grad": 3}}
    _, notes = _unet_calls_main(monkeypatch, tmp_path, bad)
    assert not any(n.startswith("every teacher call ran") for n in notes)
    assert "see the notes above: some calls ran in an unexpected mode" in notes


def test_the_notes_give_the_discrete_uniforms_std_and_the_caches_cfg_evals(monkeypatch, tmp_path):
    """M = 8: L uniform in 1..8 has std sqrt(63 / 12) = 2.29, s.e. 2.29 / sqrt(4) = 1.15 over 2 x 2
    samples; the cache: 9 calls of batch 8 (CFG pairs of 4 trajectories) = 72 sample-evals, 9 CFG
    evals per trajectory of 9 states, 8 (t_m, t_n) pairs each; LCD runs p = 3 as its name says."""
    measured, notes = _unet_calls_main(monkeypatch, tmp_path, {})
    (std_note,) = [n for n in notes if n.startswith("MLCD mds: L = M - s")]
    assert "std 2.29" in std_note and "s.e. of 1.15 over 4 samples" in std_note
    (cache_note,) = [n for n in notes if n.startswith("trajectory cache")]
    assert "9 UNet calls, 9.0 CFG evals per trajectory for 4 trajectories of 9 states" in cache_note
    assert "any of its 8 (t_m, t_n) pairs" in cache_note
    lcd_cfg = dict(measured)["LCD q=4 p=3"]
    assert (lcd_cfg.teacher_substeps, StudentGrid().steps) == (3, 4)
    assert [c.states for n, c in measured if n.startswith("MLCD")] == ["mds", "single_jump", "cache"]


# ---- benchmarks/engine_overhead.py ----------------------------------------------------------------


class AsyncTrainer:
    """A Trainer on a fake CUDA device: each train_step takes 1 s of host time and queues 2 s of
    device work, finished only by torch.cuda.synchronize; run()'s loop body takes 0.5 s."""

    def __init__(self, clock: Clock, steps: int, pending: list) -> None:
        self.clock, self.n, self.pending = clock, steps, pending
        self.student = SimpleNamespace(net=Net())
        self.dist = SimpleNamespace(device=torch.device("cuda"))

    def train_step(self, built, global_step):
        self.student.net(torch.zeros(3, 4))
        self.clock.advance(1.0)
        self.pending[0] += 2.0
        return {}, True

    def run(self):
        for step in range(self.n):
            self.train_step(None, step)
            self.clock.advance(0.5)


class AsyncHandWritten:
    """The hand-written step on the fake device: 0.8 s of host time, 0.4 s of device work."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer

    def step(self, global_step: int) -> float:
        self.trainer.student.net(torch.zeros(3, 4))
        self.trainer.clock.advance(0.8)
        self.trainer.pending[0] += 0.4
        return 0.0


def test_on_a_gpu_each_timed_step_waits_for_its_device_work(monkeypatch):
    """Each loop's time includes its own queued device work (synchronised before the clock is read):
    engine 1 + 2 s + 0.5 s loop body, hand-written 0.8 + 0.4 s, in either order."""
    clock, pending = Clock(), [0.0]

    def synchronize(*args):
        clock.advance(pending[0])
        pending[0] = 0.0

    monkeypatch.setattr(torch.cuda, "synchronize", synchronize)
    monkeypatch.setattr(engine_overhead, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(engine_overhead, "HandWrittenMLCD", AsyncHandWritten)
    pairs, rec, _ = engine_overhead.run_interleaved(AsyncTrainer(clock, 5, pending), 0, False)
    assert pairs == [pytest.approx((3.5, 1.2, 0.5))] * 4


def test_the_hand_written_loop_matches_the_engine_over_three_steps(tiny_sd_dir, tmp_path):
    """Three engine steps and three hand-written steps from the same weights: the same loss at every
    step and the same LoRA weights after (the optimizer zeroes the gradients and decays the weights
    as the engine's does)."""
    recipes = []
    for name in ("e", "h"):
        recipe = common.shrink(mlcd(), tiny_sd_dir, tmp_path / name, 3, 2, "cpu")
        phase = replace(recipe.phases["mlcd"], losses={"mlcd": MLCDConfig()}, weight_decay=0.5, lr=1e-3)
        recipes.append(replace(recipe, phases={"mlcd": phase}))
    engine, hand = (engine_overhead.Trainer(r) for r in recipes)
    built = engine.build_phase("mlcd", engine.recipe.phases["mlcd"], 0)
    engine_losses = [float(engine.train_step(built, step)[0]["mlcd"]) for step in range(3)]
    manual = engine_overhead.HandWrittenMLCD(hand)
    hand_losses = [manual.step(step) for step in range(3)]
    assert hand_losses == pytest.approx(engine_losses, rel=1e-5)
    trained = {n: p for n, p in engine.student.net.named_parameters() if p.requires_grad}
    for name, p in hand.student.net.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p, trained[name], rtol=1e-5, atol=1e-7)


def test_the_bootstrap_interval_is_reproducible():
    """The same timings give the same interval: 5 calls over 1001 distinct values (40 resamples
    each, so that an unseeded resampling would move the 2nd and 39th medians between calls)."""
    values = [(i * 7919 % 1001) ** 1.1 for i in range(1001)]
    got = {engine_overhead.bootstrap_median_interval(values, draws=40) for _ in range(5)}
    assert len(got) == 1


class ToggleUNet:
    """The student UNet of adapter_toggle_costs: disable_adapters() and enable_adapters() take 10 ms
    each of ``clock``; its output is 1 with the adapters on, 0 with them off (by either switch)."""

    def __init__(self, clock: Clock, adapters) -> None:
        self.clock, self.adapters, self.api_off = clock, adapters, False

    def disable_adapters(self):
        self.clock.advance(0.01)
        self.api_off = True

    def enable_adapters(self):
        self.clock.advance(0.01)
        self.api_off = False

    def __call__(self, x, t, **kwargs):
        off = self.api_off or self.adapters.off
        return SimpleNamespace(sample=torch.full((len(x),), 0.0 if off else 1.0))


class ToggleSwitch:
    """AdapterSwitch: ``use`` takes 0.1 ms of ``clock``."""

    def __init__(self, clock: Clock) -> None:
        self.clock, self.off, self.live = clock, False, "default"
        self.layers = [SimpleNamespace(), SimpleNamespace(), SimpleNamespace()]

    @contextlib.contextmanager
    def use(self, name):
        self.clock.advance(0.0001)
        self.off = True
        try:
            yield
        finally:
            self.off = False


def test_the_adapter_toggle_costs_are_seconds_per_toggle(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(engine_overhead, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    switch = ToggleSwitch(clock)
    trainer = SimpleNamespace(
        student=SimpleNamespace(net=ToggleUNet(clock, switch), adapters=switch),
        base=SimpleNamespace(latent_shape=(4,)),
        dist=SimpleNamespace(device=torch.device("cpu")),
        embeddings=SimpleNamespace(
            get=lambda idx: SimpleNamespace(prompt_embeds=None, pooled_embeds=None, attention_mask=None)
        ),
    )
    got = engine_overhead.adapter_toggle_costs(trainer, repeats=10)
    assert got["api_s"] == pytest.approx(0.02)
    assert got["flags_s"] == pytest.approx(0.0001)
    assert got["lora_layers"] == 3
    assert got["same_output"] and got["student_differs"]


def _overhead_main(monkeypatch, tmp_path, pairs, manual_calls: dict | None = None):
    """engine_overhead.main on faked measurements (see test_cpu_benchmark_units._engine_overhead);
    returns (the recipes given to Trainer, rows, notes)."""
    calls = {"unet_calls": 12, "sample_evals": 30, "teacher_calls": 8}
    rec = {"engine_step": [1.0] * 4, "calls": {"engine": calls, "manual": manual_calls or dict(calls)}}
    toggle = {"api_s": 0.01, "setattr_s": 0.001, "flags_s": 0.0001, "lora_layers": 3}
    toggle |= {"same_output": True, "student_differs": True}
    recipes = []
    monkeypatch.setattr(engine_overhead, "Trainer", lambda recipe: recipes.append(recipe) or "trainer")
    monkeypatch.setattr(
        engine_overhead, "run_interleaved", lambda trainer, warmup, profile: (pairs, rec, None)
    )
    monkeypatch.setattr(engine_overhead, "adapter_toggle_costs", lambda trainer: toggle)
    monkeypatch.setattr(
        engine_overhead, "isolated_overhead", lambda trainer, reps: ([0.003] * 5, [0.001] * 5)
    )
    argv = ["--model", str(tmp_path), "--steps", "5", "--warmup", "2", "--batch-size", "3"]
    _, _, _, tables, _, notes = _run_main(monkeypatch, engine_overhead, argv)
    return recipes, dict(tables[0][2]), notes


PAIRS = [(2.0, 1.0, 0.1), (3.0, 1.0, 0.1), (4.0, 2.0, 0.1), (6.0, 1.0, 0.1), (9.0, 1.0, 0.1)]


def test_the_difference_row_reads_the_differences_quartiles(monkeypatch, tmp_path):
    """Differences 1, 2, 2, 5, 8 s: median 2 s, quartiles 1.5 and 6.5 (statistics.quantiles)."""
    _, rows, _ = _overhead_main(monkeypatch, tmp_path, PAIRS)
    key = "median per-pair difference engine - hand-written [IQR], ms"
    assert rows[key] == "2000.00 [1500.00, 6500.00]"


def test_the_toggles_share_counts_every_teacher_call_of_a_step(monkeypatch, tmp_path):
    """8 teacher calls over 4 engine steps = 2 toggles per step at 10 ms, of a 4 s median step: 0.5 %."""
    _, rows, _ = _overhead_main(monkeypatch, tmp_path, PAIRS)
    assert rows["  share of the engine step"] == "0.5 %"


def test_a_sample_eval_mismatch_invalidates_the_comparison(monkeypatch, tmp_path):
    _, _, notes = _overhead_main(monkeypatch, tmp_path, PAIRS)
    assert "identical model work: the UNet call counts and batch sizes match exactly" in notes
    other = {"unet_calls": 12, "sample_evals": 24, "teacher_calls": 8}
    _, _, notes = _overhead_main(monkeypatch, tmp_path, PAIRS, manual_calls=other)
    assert "identical model work: MISMATCH in UNet calls: the comparison is invalid" in notes


def test_the_run_has_one_step_more_than_the_measured_and_warm_up_pairs(monkeypatch, tmp_path):
    """--steps 5 --warmup 2: 8 engine steps (the last pair's loop body is not observable), batch 3,
    MLCD with its default MDS states."""
    recipes, _, _ = _overhead_main(monkeypatch, tmp_path, PAIRS)
    (phase,) = recipes[0].phases.values()
    assert (phase.steps, phase.batch_size) == (8, 3)
    assert phase.losses == {"mlcd": MLCDConfig()}


# ---- benchmarks/memory.py -------------------------------------------------------------------------


class MemoryTrainer:
    """The worker's Trainer: keeps its recipe; run() makes the phase's steps through train_step."""

    made: list

    def __init__(self, recipe) -> None:
        self.recipe = recipe
        MemoryTrainer.made.append(recipe)

    def train_step(self, built, global_step):
        return {}

    def run(self):
        for i in range(self.recipe.phases["mlcd"].steps):
            self.train_step(None, i)


def _worker(monkeypatch, tmp_path, capsys, name: str, trainer=MemoryTrainer, device="cpu", inventory=None):
    import tlcm.engine

    MemoryTrainer.made = []
    monkeypatch.setattr(tlcm.engine, "Trainer", trainer)
    monkeypatch.setattr(memory, "inventory", inventory or (lambda: {"weight_ptrs": set(), "probe": 1}))
    args = SimpleNamespace(worker=name, threads=torch.get_num_threads(), device=device, model=str(tmp_path))
    args.steps, args.batch_size = 2, 1
    memory.worker(args)
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith(memory.MARK)][-1]
    return json.loads(line[len(memory.MARK) :])


def test_each_memory_configuration_trains_what_its_name_says(monkeypatch, tmp_path, capsys):
    """lora: a LoRA student, MLCD; full: a full fine-tune; lora+dmd: DMD with its LoRA fake score;
    lora+dmd-full-fake: DMD with a full-copy fake score."""
    got = {}
    for name in memory.CONFIGS:
        _worker(monkeypatch, tmp_path, capsys, name)
        (recipe,) = MemoryTrainer.made
        (loss,) = recipe.phases["mlcd"].losses.items()
        got[name] = (recipe.student.full_finetune, loss[0], getattr(loss[1], "fake_score", None))
    assert got["lora"] == (False, "mlcd", None)
    assert got["full"] == (True, "mlcd", None)
    assert got["lora+dmd"][:2] == (False, "dmd") and got["lora+dmd"][2] != "full"
    assert got["lora+dmd-full-fake"] == (False, "dmd", "full")


def test_the_worker_takes_the_inventory_at_the_last_step(monkeypatch, tmp_path, capsys):
    result = _worker(monkeypatch, tmp_path, capsys, "lora")
    assert result["probe"] == 1 and result["saved_activations_mib"] == 0


def test_saved_activations_leave_the_weights_out(monkeypatch, tmp_path, capsys):
    """The last step saves a 1 MiB weight (a view of it) and a 2 MiB activation for backward (a
    matrix product): 2 MiB of activations."""
    weight = torch.nn.Parameter(torch.ones(2**18))

    class SavingTrainer(MemoryTrainer):
        def train_step(self, built, global_step):
            activation = torch.ones(512, 1024, requires_grad=True)
            (weight.view(512, 512) @ activation).sum()
            return {}

    ptrs = {weight.untyped_storage().data_ptr()}
    inventory = lambda: {"weight_ptrs": ptrs}  # noqa: E731
    result = _worker(monkeypatch, tmp_path, capsys, "lora", SavingTrainer, inventory=inventory)
    assert result["saved_activations_mib"] == pytest.approx(2.0)


def test_the_cuda_peak_is_that_of_the_steps_not_of_the_loading(monkeypatch, tmp_path, capsys):
    """Faked CUDA allocator: 100 MiB peak while loading, 30 MiB after, 50 MiB at the steps' peak."""
    mib = memory.MIB
    stats = {"now": 30 * mib, "peak": 100 * mib}

    class CudaTrainer(MemoryTrainer):
        def train_step(self, built, global_step):
            stats["peak"] = max(stats["peak"], 50 * mib)
            return {}

    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: stats["now"])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: stats.update(peak=stats["now"]))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: stats["peak"])
    result = _worker(monkeypatch, tmp_path, capsys, "lora", CudaTrainer, device="cuda")
    assert result["cuda_allocated_after_trainer_mib"] == pytest.approx(30.0)
    assert result["cuda_max_allocated_during_steps_mib"] == pytest.approx(50.0)


def test_the_inventory_adds_trainable_weights_grads_buffers_and_optimizer_state(monkeypatch):
    """A module with a trainable 1 MiB weight (its 1 MiB gradient set), a frozen 2 MiB one and a
    4 MiB buffer; AdamW over the trainable one after one step (2 x 1 MiB of moments)."""
    module = torch.nn.Module()
    module.a = torch.nn.Parameter(torch.ones(2**18))
    module.b = torch.nn.Parameter(torch.ones(2**19), requires_grad=False)
    module.register_buffer("c", torch.ones(2**20))
    opt = torch.optim.AdamW([module.a])
    module.a.sum().backward()
    opt.step()
    monkeypatch.setattr(memory.gc, "get_objects", lambda: [module, opt])
    found = memory.inventory()
    assert found["module_weights_mib"] == pytest.approx(7.0)
    assert (found["trainable_mib"], found["trainable_tensors"]) == (pytest.approx(1.0), 1)
    assert found["grads_mib"] == pytest.approx(1.0)
    assert found["optimizer_state_mib"] == pytest.approx(2.0)
    assert found["base_unet_copies"] == 0


def test_a_worker_that_exits_with_an_error_is_refused(monkeypatch, tmp_path):
    """A worker that printed its line but then failed (exit 1) stops the benchmark."""
    line = memory.MARK + json.dumps({"config": "lora"})
    monkeypatch.setattr(
        memory.subprocess, "run", lambda cmd, **kw: SimpleNamespace(returncode=1, stdout=line, stderr="boom")
    )
    with pytest.raises(SystemExit, match="worker lora failed"):
        _run_main(monkeypatch, memory, ["--model", str(tmp_path)])


# ---- benchmarks/graphs.py -------------------------------------------------------------------------


class PairTrainer:
    """graphs.measure's Trainer: the graphed one logs another term at step 0 (a warm-up step) only
    if ``term_differs``, and ends with other weights only if ``weights_differ``."""

    def __init__(self, graphed: bool, term_differs: bool, weights_differ: bool) -> None:
        self.graphed, self.term_differs = graphed, term_differs
        w = torch.full((2,), 2.0 if graphed and weights_differ else 1.0)
        self.base = SimpleNamespace(graphs=SimpleNamespace(captures=0, replays=0))
        self.student = SimpleNamespace(state_dict=lambda: {"w": w})

    def train_step(self, built, step):
        shift = 0.5 if self.graphed and self.term_differs and step == 0 else 0.0
        return {"loss": torch.tensor(float(step) + shift)}, True


@pytest.mark.parametrize(("terms", "weights"), [(True, False), (False, True)])
def test_a_difference_at_any_step_or_in_the_weights_is_not_bit_identical(
    monkeypatch, tmp_path, terms, weights
):
    monkeypatch.setattr(
        graphs, "trainer", lambda model, device, batch, g, out: (PairTrainer(g, terms, weights), None)
    )
    row = graphs.measure(tmp_path, "cpu", 2, warmup=1, steps=3)
    assert (row["terms_bit_identical"], row["weights_bit_identical"]) == (not terms, not weights)


def test_graphs_main_writes_to_out_and_passes_warmup_and_steps(monkeypatch, tmp_path):
    asked = []
    row = {"batch": 2, "eager_ms": 3.0, "graphs_ms": 1.0, "warmup_s": {False: 1.0, True: 2.0},
           "captures_in_warmup": 1, "captures_timed": 0, "terms_bit_identical": True,
           "weights_bit_identical": True}  # fmt: skip

    def measure(model, device, batch, warmup, steps):
        asked.append((batch, warmup, steps))
        return row | {"batch": batch}

    monkeypatch.setattr(graphs, "measure", measure)
    monkeypatch.setattr(graphs, "RESULTS", tmp_path / "default")
    argv = ["graphs", "--model", str(tmp_path), "--batch-sizes", "2", "5", "--warmup", "1"]
    argv += ["--steps", "4", "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    graphs.main()
    assert asked == [(2, 1, 4), (5, 1, 4)]
    assert json.loads((tmp_path / "out" / "graphs.json").read_text())["data"]["rows"][1]["batch"] == 5
    assert not (tmp_path / "default").exists()
