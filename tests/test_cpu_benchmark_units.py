"""The CPU benchmarks' counts and timings and the miniature's metric pieces (red-team round 10).

benchmarks/unet_calls.py: its analytic UNet calls per sample (hand-derived, and equal to what a real
tiny engine run counts); benchmarks/engine_overhead.py: the hand-written loop makes the engine's
calls and computes its loss, the paired timings (a fake clock) and the headline ratio;
benchmarks/graphs.py: warm-up vs timed steps, the alternating order, the two Trainers' recipes;
benchmarks/memory.py: the peak-RSS reset and the base-UNet copies; benchmarks/common.py: the call
log's roles and adapter flags; the toy classifier's grey input, the prompts' templates, the jitter's
strength and the tokenizer against the committed miniature's."""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks import common, engine_overhead, graphs, memory, unet_calls
from recipes.tlcm import lcd, mlcd
from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.lcd import LCDConfig
from tlcm.losses.mlcd import MLCDConfig


class Clock:
    """A fake ``time.perf_counter`` that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Net(torch.nn.Module):
    """A UNet as the call log sees it: ``forward(sample, timestep, ...)``, one LoRA-able layer."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, sample, timestep=None, encoder_hidden_states=None):
        return self.proj(sample)


# ---- benchmarks/unet_calls.py -------------------------------------------------------------------


def test_the_expected_mds_rounds_are_the_mean_maximum_of_the_draws():
    """E[max of b draws uniform in 1..m], by enumeration: m = 3, b = 2: the 9 pairs have maximum 1
    once, 2 three times, 3 five times: 22 / 9; m = 1: always 1; b = 1: the mean (m + 1) / 2."""
    assert unet_calls._mds_max_expectation(3, 2) == pytest.approx(22 / 9)
    assert unet_calls._mds_max_expectation(1, 16) == pytest.approx(1.0)
    assert unet_calls._mds_max_expectation(4, 1) == pytest.approx(2.5)
    pairs = [max(i, j, k) for i in range(1, 5) for j in range(1, 5) for k in range(1, 5)]
    assert unet_calls._mds_max_expectation(4, 3) == pytest.approx(sum(pairs) / len(pairs))


def test_the_expected_lcd_calls_are_p_teacher_and_q_plus_2_student():
    """LCD q = 4 (the default grid), p = 3: 3 CFG teacher steps, the student's 4 no-grad sampling
    steps + 1 target + 1 trained = 6, 9 UNet calls per step (the module docstring's table)."""
    grid = StudentGrid()
    assert grid.steps == 4
    assert unet_calls.expectations("lcd", LCDConfig(teacher_substeps=3), 16, grid) == {
        "teacher_cfg": 3,
        "student": 6,
        "calls": 9,
    }


def _measure(monkeypatch, model: Path, out: Path, kind: str, cfg, steps: int = 2, batch: int = 3) -> dict:
    """unet_calls.measure on the tiny pipeline, each engine step taking 1 s of a fake clock."""
    clock = Clock()

    class ClockedTrainer(unet_calls.Trainer):
        def train_step(self, *args):
            out = super().train_step(*args)
            clock.advance(1.0)
            return out

    monkeypatch.setattr(unet_calls, "Trainer", ClockedTrainer)
    monkeypatch.setattr(unet_calls, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    base = mlcd() if kind == "mlcd" else lcd()
    phase = next(iter(base.phases))
    recipe = replace(base, phases={phase: replace(base.phases[phase], losses={kind: cfg})})
    recipe = common.shrink(recipe, model, out, steps, batch, "cpu")
    return unet_calls.measure("probe", kind, recipe, cfg)


def _check_roles(r: dict) -> None:
    assert r["untagged_calls"] == 0
    assert r["teacher_calls_with_adapters_on"] == 0 and r["teacher_calls_with_grad"] == 0
    assert r["student_calls_with_adapters_off"] == 0
    assert r["median_step_s"] == pytest.approx(1.0)  # the fake second inside each step


def test_lcd_counts_on_real_engine_steps_equal_the_analytic_ones(monkeypatch, tiny_sd_dir, tmp_path):
    """2 steps x B 3 of LCD q = 4, p = 3: per sample 3 CFG evals (6 sample-evals: cond + uncond
    batched), 6 student evals; 9 UNet calls per step (each CFG pair is one call); 1 s per step."""
    r = _measure(monkeypatch, tiny_sd_dir, tmp_path, "lcd", LCDConfig(teacher_substeps=3))
    e = r["expected"]
    assert (r["samples"], r["steps"]) == (6, 2)
    assert r["teacher_sample_evals_per_sample"] == pytest.approx(2 * e["teacher_cfg"]) == 6
    assert r["teacher_cfg_evals_per_sample"] == pytest.approx(e["teacher_cfg"])
    assert r["student_sample_evals_per_sample"] == pytest.approx(e["student"]) == 6
    assert r["unet_calls_per_step"] == pytest.approx(e["calls"]) == 9
    assert r["sample_evals_per_sample"] == pytest.approx(2 * e["teacher_cfg"] + e["student"])
    _check_roles(r)


def test_mlcd_single_jump_and_mds_counts_match_their_analytic_and_drawn_values(
    monkeypatch, tiny_sd_dir, tmp_path
):
    """single_jump: 2 CFG teacher steps and 2 student calls, 4 UNet calls per step; mds: given the
    step counts L_i actually drawn, sum(L) + 1 CFG evals per sample and max(L) + 3 calls per step
    exactly (the 'given draws' columns)."""
    r = _measure(monkeypatch, tiny_sd_dir, tmp_path / "sj", "mlcd", MLCDConfig(states="single_jump"))
    assert r["expected"] == {"teacher_cfg": 2, "student": 2, "calls": 4}
    assert r["teacher_cfg_evals_per_sample"] == pytest.approx(2)
    assert r["student_sample_evals_per_sample"] == pytest.approx(2)
    assert r["unet_calls_per_step"] == pytest.approx(4)
    _check_roles(r)
    r = _measure(monkeypatch, tiny_sd_dir, tmp_path / "mds", "mlcd", MLCDConfig(states="mds"))
    assert r["teacher_cfg_evals_per_sample"] == pytest.approx(r["given_draws"]["teacher_cfg"])
    assert r["unet_calls_per_step"] == pytest.approx(r["given_draws"]["calls"])
    assert r["student_sample_evals_per_sample"] == pytest.approx(2)
    _check_roles(r)


# ---- benchmarks/engine_overhead.py --------------------------------------------------------------


def _mlcd_trainer(model: Path, out: Path, steps: int = 2, batch: int = 3):
    recipe = common.shrink(mlcd(), model, out, steps, batch, "cpu")
    recipe = replace(recipe, phases={"mlcd": replace(recipe.phases["mlcd"], losses={"mlcd": MLCDConfig()})})
    return engine_overhead.Trainer(recipe)


def test_the_hand_written_loop_makes_the_engines_calls_and_computes_its_loss(tiny_sd_dir, tmp_path):
    """Two Trainers from the same recipe: 2 engine steps on one, 2 hand-written steps on the other
    log the same UNet calls (batch, grad mode, adapters on/off, in order) and the same MLCD loss at
    both steps (the second after one AdamW update of each)."""
    engine, hand = _mlcd_trainer(tiny_sd_dir, tmp_path / "e"), _mlcd_trainer(tiny_sd_dir, tmp_path / "h")
    logs = common.CallLog(), common.CallLog()
    handles = common.count_unet_calls([engine.student.net], logs[0])
    handles += common.count_unet_calls([hand.student.net], logs[1])
    try:
        built = engine.build_phase("mlcd", engine.recipe.phases["mlcd"], 0)
        engine_losses = [float(engine.train_step(built, step)[0]["mlcd"]) for step in range(2)]
        manual = engine_overhead.HandWrittenMLCD(hand)
        hand_losses = [manual.step(step) for step in range(2)]
    finally:
        for h in handles:
            h.remove()
    assert logs[0].calls == logs[1].calls
    assert any(c[3] is False for c in logs[0].calls) and any(c[3] for c in logs[0].calls)
    assert hand_losses == pytest.approx(engine_losses, rel=1e-5)


class FakeHandWritten:
    """HandWrittenMLCD as run_interleaved drives it: one UNet call and 0.8 s per step."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer

    def step(self, global_step: int) -> float:
        self.trainer.events.append(("manual", global_step))
        self.trainer.student.net(torch.zeros(2, 4))
        self.trainer.clock.advance(0.8)
        return 0.0


class FakeTrainer:
    """A Trainer whose run() makes ``steps`` train_steps (1 s and one UNet call of batch 3 each)
    with 0.5 s of loop body after each."""

    def __init__(self, clock: Clock, steps: int) -> None:
        self.clock, self.n, self.events = clock, steps, []
        self.student = SimpleNamespace(net=Net())
        self.dist = SimpleNamespace(device=torch.device("cpu"))

    def train_step(self, built, global_step):
        self.events.append(("engine", global_step))
        self.student.net(torch.zeros(3, 4))
        self.clock.advance(1.0)
        return {}, True

    def run(self):
        for step in range(self.n):
            self.train_step(None, step)
            self.clock.advance(0.5)


def test_interleaved_pairs_alternate_and_time_the_engines_step_with_its_loop_body(monkeypatch):
    """5 engine steps, 1 warm-up pair: engine first on even steps, hand-written first on odd ones;
    the pairs are steps 1-3 (the last step's loop body is not observed): engine 1 s + 0.5 s of loop
    body, hand-written 0.8 s; the call counts are each loop's own."""
    clock = Clock()
    monkeypatch.setattr(engine_overhead, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(engine_overhead, "HandWrittenMLCD", FakeHandWritten)
    trainer = FakeTrainer(clock, 5)
    pairs, rec, profilers = engine_overhead.run_interleaved(trainer, 1, False)
    assert trainer.events[:6] == [
        ("engine", 0),
        ("manual", 0),
        ("manual", 1),
        ("engine", 1),
        ("engine", 2),
        ("manual", 2),
    ]
    assert pairs == [pytest.approx((1.5, 0.8, 0.5))] * 3
    assert rec["calls"]["engine"] == {"unet_calls": 5, "sample_evals": 15, "teacher_calls": 0}
    assert rec["calls"]["manual"]["unet_calls"] == 5 and profilers is None
    assert "train_step" not in vars(trainer)  # the class's method is back


def _engine_overhead(monkeypatch, tmp_path, pairs, teacher_calls: int) -> tuple[dict, list]:
    """engine_overhead.main on faked measurements: the interleaved (engine, hand-written, loop body)
    ``pairs``, 4 engine steps with ``teacher_calls`` teacher calls, a null-loss 3 ms vs 1 ms, the
    adapter toggle; returns the data and tables it would write."""
    calls = {"unet_calls": 12, "sample_evals": 30, "teacher_calls": teacher_calls}
    rec = {"engine_step": [1.0] * 4, "calls": {"engine": calls, "manual": dict(calls)}}
    toggle = {"api_s": 0.01, "setattr_s": 0.001, "flags_s": 0.0001, "lora_layers": 3}
    toggle |= {"same_output": True, "student_differs": True}
    written = {}
    monkeypatch.setattr(engine_overhead, "Trainer", lambda recipe: "trainer")
    monkeypatch.setattr(
        engine_overhead, "run_interleaved", lambda trainer, warmup, profile: (pairs, rec, None)
    )
    monkeypatch.setattr(engine_overhead, "adapter_toggle_costs", lambda trainer: toggle)
    monkeypatch.setattr(
        engine_overhead, "isolated_overhead", lambda trainer, reps: ([0.003] * 5, [0.001] * 5)
    )
    monkeypatch.setattr(engine_overhead, "write_results", lambda *args, **kw: written.update(args=args))
    argv = ["engine_overhead", "--model", str(tmp_path), "--steps", str(len(pairs)), "--warmup", "0"]
    monkeypatch.setattr(sys, "argv", argv)
    engine_overhead.main()
    name, title, meta, tables, data, notes = written["args"]
    return data, tables


def test_the_headline_ratio_is_the_engines_median_over_the_hand_written_one(monkeypatch, tmp_path):
    """Engine steps 2, 3, 4 s (median 3) vs hand-written 1, 1, 2 s (median 1): the engine is 3x
    slower, ratio 3.000, above the 1.05 target; 8 teacher calls over 4 engine steps: 2 per step."""
    pairs = [(2.0, 1.0, 0.1), (3.0, 1.0, 0.1), (4.0, 2.0, 0.1)]
    data, tables = _engine_overhead(monkeypatch, tmp_path, pairs, teacher_calls=8)
    assert data["ratio_of_medians"] == pytest.approx(3.0)
    rows = dict(tables[0][2])
    assert rows["ratio of medians (target <= 1.05)"] == "3.000 (ABOVE TARGET)"
    assert rows["teacher UNet calls per step (each toggles the LoRA adapters)"] == "2.00"


def test_the_overhead_rows_add_the_loop_body_and_read_the_iqr(monkeypatch, tmp_path):
    """Pairs (engine, hand-written, loop body): ratios 2, 3, 2, 6, 9 (quartiles 2 and 7.5 by
    statistics.quantiles' default); null-loss 3 ms vs 1 ms and a 100 ms loop body: 102 ms of
    overhead, 2.55 % of the engine's median 4 s step (red-team round 13)."""
    pairs = [(2.0, 1.0, 0.1), (3.0, 1.0, 0.1), (4.0, 2.0, 0.1), (6.0, 1.0, 0.1), (9.0, 1.0, 0.1)]
    _, tables = _engine_overhead(monkeypatch, tmp_path, pairs, teacher_calls=5)
    rows = dict(tables[0][2])
    assert rows["median of per-pair ratios [IQR]"] == "3.000 [2.000, 7.500]"
    assert rows["engine per-step Python overhead (null-loss difference + loop body)"] == (
        "102.00 ms = 2.55 % of the step"
    )


# ---- benchmarks/graphs.py -----------------------------------------------------------------------


class GraphsTrainer:
    """One of graphs.measure's two Trainers: warm-up steps take 10 s, timed ones 2 s eager and 1 s
    graphed; the graphed one captures at step 0 (warm-up) and at step 3 (timed)."""

    def __init__(self, graphed: bool, clock: Clock, events: list, warmup: int) -> None:
        self.graphed, self.clock, self.events, self.warmup = graphed, clock, events, warmup
        self.base = SimpleNamespace(graphs=SimpleNamespace(captures=0, replays=0))
        self.student = SimpleNamespace(state_dict=lambda: {"w": torch.ones(2)})

    def train_step(self, built, step):
        self.events.append((self.graphed, step))
        if self.graphed and step in (0, 3):
            self.base.graphs.captures += 1
        self.clock.advance(10.0 if step < self.warmup else (1.0 if self.graphed else 2.0))
        return {"loss": torch.tensor(float(step))}, True


def test_graphs_time_only_the_steps_after_the_warm_up_in_alternating_order(monkeypatch, tmp_path):
    """2 warm-up + 3 timed steps each: warm-up seconds 2 x 10 per Trainer, medians 2000 / 1000 ms,
    one capture in the warm-up and one during the timed steps; eager first on even steps."""
    clock, events = Clock(), []
    monkeypatch.setattr(graphs, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(
        graphs, "trainer", lambda model, device, batch, g, out: (GraphsTrainer(g, clock, events, 2), None)
    )
    row = graphs.measure(tmp_path, "cpu", 4, warmup=2, steps=3)
    assert events[:6] == [(False, 0), (True, 0), (True, 1), (False, 1), (False, 2), (True, 2)]
    assert row["warmup_s"] == pytest.approx({False: 20.0, True: 20.0})
    assert (row["eager_ms"], row["graphs_ms"]) == pytest.approx((2000.0, 1000.0))
    assert (row["captures_in_warmup"], row["captures_timed"]) == (1, 1)
    assert row["terms_bit_identical"] and row["weights_bit_identical"]


def test_the_graphs_benchmarks_trainers_differ_only_in_replaying(monkeypatch, tmp_path):
    """graphs.trainer: recipes:mlcd at the asked batch on the asked model, graphs on only for the
    graphed one, each in its own folder."""
    made = []

    class Recorder:
        def __init__(self, recipe) -> None:
            made.append(recipe)

        def build_phase(self, name, phase, step):
            return (name, phase.batch_size, step)

    monkeypatch.setattr(graphs, "Trainer", Recorder)
    for g in (False, True):
        _, built = graphs.trainer(Path("model"), "cpu", 3, g, tmp_path / str(g))
        assert built == ("mlcd", 3, 0)
    assert [r.runtime.graphs for r in made] == [False, True]
    assert [r.runtime.out_dir for r in made] == [tmp_path / "False", tmp_path / "True"]
    assert all(r.model.path == Path("model") for r in made)


# ---- benchmarks/memory.py -----------------------------------------------------------------------


def test_the_peak_rss_reset_forgets_an_earlier_peak():
    """After 256 MiB are touched and freed, _reset_hwm makes VmHWM the current RSS: the peak drops
    by most of those 256 MiB (the 'peak during the steps' excludes the loading)."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("no /proc")
    big = torch.ones(64 * 2**20)  # 256 MiB, written
    big += 1
    del big
    before = memory._vm_hwm()
    if not memory._reset_hwm():
        pytest.skip("/proc/self/clear_refs is not writable here")
    assert memory._vm_hwm() < before - 128 * memory.MIB


def test_the_inventory_counts_a_deep_copied_unet_as_two_base_copies(monkeypatch):
    """A UNet and its deep copy (a full fine-tune's student and teacher) alive: 2 UNet objects,
    twice one UNet's base tensors as unique pointers, 2 copies; the UNet alone: 1 copy."""
    from tlcm.toy.tiny import tiny_sd_pipeline

    unet = tiny_sd_pipeline().unet
    twin = copy.deepcopy(unet)
    tensors = len(list(unet.parameters()))
    nbytes = sum(p.numel() * p.element_size() for p in unet.parameters())
    monkeypatch.setattr(memory.gc, "get_objects", lambda: [*unet.modules(), *twin.modules()])
    found = memory.inventory()
    assert (found["unet_modules_alive"], found["base_weight_tensors_per_unet"]) == (2, tensors)
    assert found["unique_base_weight_data_ptrs"] == 2 * tensors
    assert found["base_unet_copies"] == 2
    assert found["one_base_unet_mib"] == pytest.approx(nbytes / memory.MIB)
    monkeypatch.setattr(memory.gc, "get_objects", lambda: list(unet.modules()))
    assert memory.inventory()["base_unet_copies"] == 1


# ---- benchmarks/common.py -----------------------------------------------------------------------


def test_a_tagged_call_gives_the_role_back_afterwards():
    """A call through a teacher-tagged denoiser is logged as the teacher's; a UNet call after it
    (outside any denoiser) is untagged again, also after a call that raised."""
    log, net = common.CallLog(), Net()
    handles = common.count_unet_calls([net], log)

    def factory():
        def call(x, t, cond):
            if cond == "fail":
                raise RuntimeError
            return net(x, t)

        return call

    try:
        teacher = common.tagged(factory, "teacher", log)()
        teacher(torch.zeros(2, 4), 1, None)
        net(torch.zeros(1, 4))
        with pytest.raises(RuntimeError):
            teacher(torch.zeros(2, 4), 1, "fail")
        net(torch.zeros(1, 4))
    finally:
        for h in handles:
            h.remove()
    assert [c[0] for c in log.calls] == ["teacher", "untagged", "untagged"]


def test_the_call_log_records_whether_the_lora_adapters_were_on():
    """A UNet with a peft LoRA layer: a call with the adapters enabled logs True, one with them
    disabled (a teacher call) logs False."""
    from peft import LoraConfig, inject_adapter_in_model

    net = inject_adapter_in_model(LoraConfig(r=2, target_modules=["proj"]), Net())
    (layer,) = [m for m in net.modules() if hasattr(m, "enable_adapters") and m is not net]
    log = common.CallLog()
    handles = common.count_unet_calls([net], log)
    try:
        net(torch.zeros(1, 4))
        layer.enable_adapters(False)
        net(torch.zeros(1, 4))
    finally:
        for h in handles:
            h.remove()
    assert [c[3] for c in log.calls] == [True, False]


# ---- tlcm/toy: classifier, prompts, jitter, tokenizer --------------------------------------------


def test_the_classifier_reads_the_grey_value_whatever_the_channel_order():
    """The digits are grey images repeated over RGB; the classifier reads their grey value (the
    channel mean): a coloured image and its channels permuted give the same features, and the
    same as the grey image of that mean."""
    from tlcm.toy.metrics import ToyMetrics

    classifier = ToyMetrics().classifier
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    f = classifier.features(x)
    torch.testing.assert_close(classifier.features(x[:, [2, 0, 1]]), f)
    torch.testing.assert_close(classifier.features(x.mean(1, keepdim=True).repeat(1, 3, 1, 1)), f)


ENGLISH = "zero one two three four five six seven eight nine".split()


def test_every_template_is_used_for_every_digit():
    """all_prompts: 10 digits x 4 templates, 40 distinct prompts; eval_prompts(4): each digit
    asked for in all 4 templates (prompt i of a digit in template i)."""
    from tlcm.toy.data import TEMPLATES, all_prompts, eval_prompts, prompt_for

    assert len(set(all_prompts())) == 10 * len(TEMPLATES) == 40
    prompts, labels = eval_prompts(len(TEMPLATES))
    for d in range(10):
        mine = [p for p, y in zip(prompts, labels.tolist(), strict=True) if y == d]
        assert len(set(mine)) == 4
        assert prompt_for(d, 3) == f"handwritten {ENGLISH[d]}"


def test_jitter_of_strength_zero_leaves_the_images_alone():
    """augment's strength scales rotation, scale and shift: 0 is the identity."""
    from tlcm.toy.data import augment

    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = augment(x, torch.Generator().manual_seed(0), 0.0)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    assert not torch.allclose(augment(x, torch.Generator().manual_seed(0), 1.0), x, atol=1e-2)


def test_the_builder_reproduces_the_committed_miniature_tokenizer(tmp_path):
    """build_clip_tokenizer(all prompts + "") writes the vocabulary and merges of the committed
    miniature tokenizer (the ids its text encoder was trained on), spells every prompt word as one
    token, and pads / truncates to 77 tokens, the text encoder's position table."""
    from tlcm.toy import MINIATURE_SD
    from tlcm.toy.data import all_prompts
    from tlcm.toy.tokenizer import _words, build_clip_tokenizer

    tok = build_clip_tokenizer(all_prompts() + [""], tmp_path)
    committed = MINIATURE_SD / "tokenizer"
    for name in ("vocab.json", "merges.txt"):
        assert (tmp_path / name).read_text() == (committed / name).read_text(), name
    for word in _words(all_prompts()):
        assert len(tok(word).input_ids) == 3, word
    positions = json.loads((MINIATURE_SD / "text_encoder" / "config.json").read_text())[
        "max_position_embeddings"
    ]
    assert len(tok("one", padding="max_length").input_ids) == positions == 77
    assert len(tok(" ".join(["seven"] * 100), truncation=True).input_ids) == 77
