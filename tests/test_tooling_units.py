"""The numbers the project publishes from its tooling, on hand-made inputs (red-team round 13):
ablations/run.py's --rescore, the ladder rows against their own descriptions, the zoo's cost
probe and its cache, the zoo table's cost cells, docs/zoo.md's seed and prompt counts, the zoo's
and the ladder's plots (matplotlib replaced by a recorder), the discriminator probe's loop (a fake
GAN), and the CPU benchmarks' analytic expectations, "x eager", capture split, bootstrap interval,
overhead rows and peak-RSS units. Nothing trains: trainers, scorers and subprocesses are fakes."""

from __future__ import annotations

import json
import re
import sys
import types
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ablations import run as ladder
from ablations import zoo, zoo_plots
from ablations.variants import ROWS, VARIANTS, variant_recipe
from benchmarks import common, engine_overhead, graphs, memory, unet_calls
from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.lcd import LCDConfig
from tlcm.losses.mlcd import MLCDConfig

# ---- recorders ------------------------------------------------------------------------------------


class Recorder:
    """Any method call is recorded as (name, args, kwargs)."""

    def __init__(self, label: str = "") -> None:
        self.label, self.calls = label, []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    def called(self, name):
        return [(args, kwargs) for n, args, kwargs in self.calls if n == name]


class FakePyplot:
    """matplotlib.pyplot's ``subplots`` (axes as a numpy object array, so ``axes[:, col]`` works)."""

    def __init__(self) -> None:
        self.made, self.figs = [], []

    def subplots(self, rows=1, cols=1, squeeze=True, **kwargs):
        axes = np.empty((rows, cols), dtype=object)
        for i in range(rows):
            for j in range(cols):
                axes[i, j] = Recorder(f"{i},{j}")
        fig = Recorder("fig")
        self.made.append(axes)
        self.figs.append(fig)
        if squeeze and rows == cols == 1:
            return fig, axes[0, 0]
        if squeeze and rows == 1:
            return fig, tuple(axes[0])
        return fig, axes

    def close(self, fig):
        pass


class Line2D:
    def __init__(self, *args, **kwargs) -> None:
        self.kwargs = kwargs

    def get_label(self):
        return self.kwargs.get("label")


def _fake_matplotlib(monkeypatch) -> FakePyplot:
    plt = FakePyplot()
    mpl = types.ModuleType("matplotlib")
    mpl.use = lambda backend: None
    mpl.pyplot = plt
    lines = types.ModuleType("matplotlib.lines")
    lines.Line2D = Line2D
    mpl.lines = lines
    monkeypatch.setitem(sys.modules, "matplotlib", mpl)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", plt)
    monkeypatch.setitem(sys.modules, "matplotlib.lines", lines)
    return plt


# ---- ablations/run.py: --rescore ------------------------------------------------------------------


def test_rescore_keeps_the_runs_grid_and_takes_the_recipes_sampler(tmp_path, monkeypatch):
    """--rescore (after a change of tlcm-full's sampler): the run's checkpoint keeps its own grid
    (here M = 4), sampled with the current recipe's gammas (tlcm-full: gamma 0, first move 1)."""
    import tlcm.toy.scores
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student

    run = tmp_path / "s0" / "tlcm-full"
    run.mkdir(parents=True)
    (run / "eval.json").write_text("[]")
    own = StudentGrid(4, 4, gamma=0.5, first_gamma=0.5)
    trained = SimpleNamespace(config=SimpleNamespace(grid=own), denoiser=lambda: "student")
    scored = []

    def fake_scores(base, denoiser, steps, per_digit, student_grid=None):
        scored.append(student_grid)
        return [{"steps": n, "alignment": 0.5, "fd": 1.0} for n in steps]

    monkeypatch.setattr(BaseModel, "load", staticmethod(lambda path, **kw: "base"))
    monkeypatch.setattr(Student, "from_run", staticmethod(lambda base, path: trained))
    monkeypatch.setattr(tlcm.toy.scores, "student_scores", fake_scores)
    ladder.main(ladder.Args(variants=("tlcm-full",), runs=tmp_path, rescore=True))
    (grid,) = scored
    full = variant_recipe(VARIANTS["tlcm-full"], tmp_path).student.grid
    assert (full.gamma, full.first_gamma) == (0.0, 1.0)
    assert (grid.num_milestones, grid.gamma, grid.first_gamma) == (4, 0.0, 1.0)
    assert [r["steps"] for r in json.loads((run / "eval.json").read_text())] == list(grid.shown_steps)


# ---- ablations/variants.py ------------------------------------------------------------------------


def test_each_ladder_rows_stage_1_has_the_states_and_distance_it_names():
    """docs/ablations.md's "what changes": single-jump states, latent LPIPS, MDS, LCM's Huber."""
    expected = {
        "single-jump-lcd": ("single_jump", "l2"),
        "mlcd-single-jump": ("single_jump", "l2"),
        "+latent-lpips": ("single_jump", "latent_lpips"),
        "mds-states": ("mds", "latent_lpips"),
        "mds-states-huber": ("mds", "elementwise_huber"),
        "mds-states-l2": ("mds", "l2"),
    }
    for name, (states, distance) in expected.items():
        cfg = variant_recipe(VARIANTS[name], Path("runs")).phases["mlcd"].losses["mlcd"]
        assert (cfg.states, cfg.distance) == (states, distance), name


def test_rows_naming_their_stage_steps_train_those_steps():
    """A row whose description says "(A + B steps)" trains A MLCD steps (its parent's) and B LCD."""
    named = [(v, re.search(r"\((\d+) \+ (\d+) steps\)", v.description)) for v in ROWS]
    named = [(v, int(m[1]), int(m[2])) for v, m in named if m]
    assert any(v.name == "+lcd-3x-training-gamma0" for v, _, _ in named)
    for v, stage1, stage2 in named:
        assert variant_recipe(v, Path("runs")).phases["lcd"].steps == stage2, v.name
        parent = variant_recipe(VARIANTS[v.parent], Path("runs"))
        assert parent.phases["mlcd"].steps == stage1, v.name


# ---- ablations/zoo.py -----------------------------------------------------------------------------


def _finished(runs, seed, method, rows, m=8, miniature="unet", **info):
    out = zoo.run_dir(runs, miniature, seed, method)
    out.mkdir(parents=True)
    base = {"seed": seed, "num_milestones": m, "phase_steps": {"p": 10}, "denoiser_evals": 1000,
            "train_seconds": 60.0, "train_eval_cpu_seconds": 120.0,
            "own_sampler": "own", "tlcm_sampler": "tlcm"}  # fmt: skip
    (out / "zoo.json").write_text(json.dumps(base | info))
    for sampler, name in zoo.SAMPLERS.items():
        (out / name).write_text(json.dumps(rows[sampler] if isinstance(rows, dict) else rows))
    return out


def test_the_zoo_tables_cost_cells_are_minutes_under_their_headers(tmp_path):
    """train min = training wall seconds / 60 (90 s and 150 s: 1.5 and 2.5); CPU min = training and
    scoring CPU seconds / 60 (600 s: 10.0)."""
    rows = [{"steps": n, "alignment": 0.9, "fd": 5.0} for n in (1, 2, 4, 8)]
    for seed, seconds in enumerate((90.0, 150.0)):
        _finished(tmp_path, seed, "tcd", rows, train_seconds=seconds, train_eval_cpu_seconds=600.0)
    header, _, line = zoo.table(tmp_path, "unet", ["tcd"], 500).splitlines()[:3]
    cells = dict(zip(header.strip("| ").split(" | "), line.strip("| ").split(" | "), strict=True))
    assert cells["train min"] == "2.0 (1.5-2.5)"
    assert cells["CPU min"] == "10.0 (10.0-10.0)"


def test_the_zoo_docs_count_seeds_not_runs_and_prompts_as_ten_per_digit(tmp_path, monkeypatch):
    """Three methods of seed 0 only: one seed (preliminary); --samples-per-digit 50: 500 prompts,
    the committed UNet teacher table's prompt count (its row is found)."""
    monkeypatch.setattr(zoo, "plot", lambda args, names: None)
    monkeypatch.setattr(zoo, "frontier", lambda args, names: None)
    rows = [{"steps": n, "alignment": 0.9, "fd": 5.0} for n in (1, 2, 4, 8)]
    for method in ("tcd", "pcm", zoo.BASE_METHOD):
        _finished(tmp_path, 0, method, rows)
    text = zoo.write_docs(zoo.Args(runs=tmp_path, table=tmp_path / "zoo.md", samples_per_digit=50))
    assert "**Preliminary: 1 seed(s)**" in text
    assert "alignment / FD on 500 prompts" in text
    assert "| teacher (benchmarks/results/teacher_table.json) | DDIM + CFG, best w |" in text


def test_the_probe_rates_are_each_phases_own_evaluations_per_step(monkeypatch):
    """tlcm-full's three phases costing 200, 190 and 80 evaluations a step (the Trainer's running
    count goes on across phases): the rates are 200, 190, 80, not the running totals."""
    import tlcm.engine

    cost = {"mlcd": 200, "lcd": 190, "dmd": 80}

    class FakeTrainer:
        def __init__(self, recipe) -> None:
            self.denoiser_evals = 0

        def build_phase(self, name, phase, global_step):
            return name

        def train_step(self, state, global_step):
            self.denoiser_evals += cost[state]

    monkeypatch.setattr(tlcm.engine, "Trainer", FakeTrainer)
    assert zoo.probe_rates(zoo.method_recipe(zoo.BASE_METHOD, "unet"), 3) == cost


def test_a_probe_cached_with_other_steps_is_measured_again(tmp_path, monkeypatch):
    probed = []

    def fake_rates(recipe, probe_steps):
        probed.append(probe_steps)
        return {n: float(probe_steps) for n in recipe.phases}

    monkeypatch.setattr(zoo, "probe_rates", fake_rates)
    args = zoo.Args(runs=tmp_path, probe_steps=10)
    assert zoo.probes(args, "unet", ["tcd"]) == {"tcd": {"tcd": 10.0}}
    assert zoo.probes(args, "unet", ["tcd"]) == {"tcd": {"tcd": 10.0}} and probed == [10]  # cached
    assert zoo.probes(replace(args, probe_steps=50), "unet", ["tcd"]) == {"tcd": {"tcd": 50.0}}
    assert probed == [10, 50]


def test_the_zoo_plot_draws_fd_on_top_and_the_own_sampler_solid(tmp_path, monkeypatch):
    """docs/zoo-fd.png: FD (top row) and alignment (bottom); the legend's solid line is the own
    sampler, dashed the TLCM sampler."""
    plt = FakePyplot()
    _fake_matplotlib(monkeypatch)
    monkeypatch.setattr(zoo_plots, "pyplot", lambda: plt)
    monkeypatch.setattr(zoo_plots, "teacher_best", lambda miniature, prompts: None)
    own = [{"steps": n, "alignment": 0.9, "fd": 5.0} for n in (1, 2, 4)]
    tlcm = [{"steps": n, "alignment": 0.7, "fd": 3.0} for n in (1, 2, 4)]
    _finished(tmp_path, 0, "pcm", {"own": own, "tlcm": tlcm}, m=4)
    zoo.plot(zoo.Args(runs=tmp_path, plot=tmp_path / "fd.png"), ["pcm"])
    (axes,) = plt.made
    top, bottom = axes[0, 0], axes[1, 0]
    assert top.called("set_ylabel")[0][0][0].startswith("FD")
    drawn = {(ax.label, args[2]): list(args[1]) for ax in (top, bottom) for args, _ in ax.called("plot")}
    assert drawn == {
        ("0,0", "-"): [5.0] * 3,
        ("0,0", "--"): [3.0] * 3,
        ("1,0", "-"): [0.9] * 3,
        ("1,0", "--"): [0.7] * 3,
    }
    ((_, kwargs),) = plt.figs[0].called("legend")
    legend = {h.kwargs["label"]: h.kwargs.get("ls") for h in kwargs["handles"]}
    assert legend["own sampler (shade: min-max over seeds)"] == "-" and legend["TLCM sampler"] == "--"


def test_the_frontiers_fd_bars_reach_each_methods_lowest_and_highest_seed(tmp_path, monkeypatch):
    """Seeds at FD 4, 5 and 9 (mean 6): the bar runs from 4 to 9, i.e. 2 below and 3 above."""
    plt = FakePyplot()
    monkeypatch.setattr(zoo_plots, "pyplot", lambda: plt)
    monkeypatch.setattr(zoo_plots, "teacher_sweep", lambda miniature, prompts: [])
    for seed, fd in enumerate((4.0, 5.0, 9.0)):
        _finished(tmp_path, seed, "pcm", [{"steps": n, "alignment": 0.8, "fd": fd} for n in (2, 4)], m=4)
    zoo.frontier(zoo.Args(runs=tmp_path, frontier=tmp_path / "f.png"), ["pcm"])
    for row in plt.made[0][:, 0]:
        ((args, kwargs),) = row.called("errorbar")
        assert args == (pytest.approx(6.0), pytest.approx(0.8))
        lo, hi = kwargs["xerr"]
        assert (args[0] - lo[0], args[0] + hi[0]) == (pytest.approx(4.0), pytest.approx(9.0))


# ---- ablations/plot.py ----------------------------------------------------------------------------


def test_the_ladder_curves_put_fd_left_and_the_seed_range_as_error_bars(tmp_path, monkeypatch):
    """docs/fd-vs-steps.png: each row's mean over seeds (FD 4, 5, 9: mean 6) in the FD panel (left),
    the error bar from the lowest to the highest seed; alignment in the right panel."""
    from ablations import plot

    plt = _fake_matplotlib(monkeypatch)
    for seed, fd in enumerate((4.0, 5.0, 9.0)):
        run = tmp_path / "runs" / f"s{seed}" / "tlcm-full"
        run.mkdir(parents=True)
        rows = [{"steps": n, "alignment": 0.8 + seed / 100, "fd": fd * n} for n in (1, 2, 4, 8)]
        (run / "eval.json").write_text(json.dumps(rows))
    teacher = [
        {"w": w, "steps": n, "alignment": 0.9, "fd": 10.0} for w in (1.5, 2.0) for n in (1, 2, 4, 8, 50)
    ]
    (tmp_path / "t.json").write_text(json.dumps(teacher))
    args = plot.Args(
        rows=("tlcm-full",),
        runs=tmp_path / "runs",
        teacher_table=tmp_path / "t.json",
        out=tmp_path / "fd.png",
        frontier_out=tmp_path / "f.png",
    )
    plot.main(args)
    ax_fd, ax_align = plt.made[0][0]
    assert ax_fd.called("set_title")[0][0][0].startswith("FD")
    ((steps, mean), kwargs), *_ = ax_fd.called("errorbar")
    assert list(steps) == [1, 2, 4, 8] and mean == pytest.approx([6.0 * n for n in steps])
    lo, hi = kwargs["yerr"]
    assert [m - d for m, d in zip(mean, lo, strict=True)] == pytest.approx([4.0 * n for n in steps])
    assert [m + d for m, d in zip(mean, hi, strict=True)] == pytest.approx([9.0 * n for n in steps])
    ((_, align), _), *_ = ax_align.called("errorbar")
    assert align == pytest.approx([0.81] * 4)


# ---- ablations/disc_probe.py ----------------------------------------------------------------------


class _ProbeGAN:
    """A fake GAN for disc_probe.probe: D's logit is a latent's first value (real digits +, fakes -);
    the optimizer counts its steps and keeps each batch; held-out scoring notes the step count."""

    def __init__(self, held_out: int) -> None:
        self.steps, self.batches, self.scored_at, self.held_out = 0, [], [], held_out
        outer = self

        class Optimizer:
            def step(self, closure, batches):
                outer.batches += batches
                outer.steps += 1

        self.optimizer = Optimizer()

    def discriminator(self, z, t, cond):
        if not torch.is_grad_enabled() and len(z) == self.held_out and z[0, 0] > 0:  # the real side
            self.scored_at.append(self.steps)
        return z.flatten(1)[:, 0].clone().requires_grad_(True)


def _probe(monkeypatch, steps: int, n: int = 40, held_out: int = 8):
    from ablations import disc_probe

    gan = _ProbeGAN(held_out)
    monkeypatch.setattr(disc_probe, "GANConfig", lambda **kw: SimpleNamespace(build=lambda student: gan))
    real = torch.arange(1.0, n + 1).view(n, 1)  # real pair i: value i + 1 > 0
    fake = -real
    args = disc_probe.Args(run=Path("run"), steps=steps, held_out=held_out)
    base = SimpleNamespace(schedule=SimpleNamespace(clean_timestep=0))
    scores = disc_probe.probe(args, base, None, real, fake, torch.arange(n), 0, 1e-3, 0)
    return gan, scores


@pytest.mark.parametrize(("steps", "after"), [(300, [100, 200, 300]), (100, [33, 66, 100]), (4, [1, 2, 4])])
def test_the_disc_probe_scores_after_a_third_two_thirds_and_all_updates(monkeypatch, steps, after):
    """The table's "balanced accuracy after 1/3, 2/3, 3/3": three scores, the last after every update."""
    gan, scores = _probe(monkeypatch, steps)
    assert gan.steps == steps and gan.scored_at == after and len(scores) == 3


def test_the_disc_probe_trains_off_the_held_out_pairs_and_scores_real_as_real(monkeypatch):
    """The last 8 of 40 pairs are held out: D never sees them in training; a D whose logits are
    positive on every real and negative on every fake scores 1.0 on them."""
    gan, scores = _probe(monkeypatch, 60)
    seen = torch.cat([zr.flatten() for zr, _, _, _, _ in gan.batches])
    assert len(seen) == 60 * 16 and seen.max() <= 32
    assert scores == [1.0, 1.0, 1.0]


# ---- benchmarks/unet_calls.py ---------------------------------------------------------------------


def test_the_expected_mds_cfg_evals_are_the_mean_segment_plus_the_target():
    """M = 8, one sample a step: L = M - s uniform in 1..8, mean 4.5 MDS CFG steps + 1 target CFG
    step = 5.5; UNet calls: E[max of one draw] 4.5 + 1 teacher + 2 student = 7.5."""
    got = unet_calls.expectations("mlcd", MLCDConfig(states="mds"), 1, StudentGrid())
    assert got == {"teacher_cfg": pytest.approx(5.5), "student": 2, "calls": pytest.approx(7.5)}
    assert (
        unet_calls.expectations("mlcd", MLCDConfig(states="mds"), 1, StudentGrid(4, 4))["teacher_cfg"] == 3.5
    )


def test_the_call_tables_expected_sample_evals_count_both_halves_of_a_cfg_call():
    """LCD q = 4, p = 3 measured exactly as expected: 3 CFG evals are 6 teacher sample-evals (cond
    + uncond), 6 student ones, 12 in all; each cell's expectation equals its measurement."""
    expected = unet_calls.expectations("lcd", LCDConfig(teacher_substeps=3), 16, StudentGrid())
    result = {
        "expected": expected,
        "teacher_cfg_evals_per_sample": 3.0,
        "teacher_sample_evals_per_sample": 6.0,
        "student_sample_evals_per_sample": 6.0,
        "sample_evals_per_sample": 12.0,
        "teacher_calls_per_step": 3.0,
        "teacher_mean_call_batch": 32.0,
        "student_calls_per_step_grad": 1.0,
        "student_calls_per_step_nograd": 5.0,
        "unet_calls_per_step": 9.0,
        "median_step_s": 0.5,
    }
    rows = {row[0]: row[1] for row in unet_calls.table_rows([result])}
    assert rows["teacher CFG evals / sample"] == "3.00 (exp. 3.00)"
    assert rows["teacher sample-evals / sample"] == "6.00 (exp. 6.00)"
    assert rows["student sample-evals / sample"] == "6.00 (exp. 6.00)"
    assert rows["total sample-evals / sample"] == "12.00 (exp. 12.00)"
    assert rows["total UNet calls / step"] == "9.00 (exp. 9.00)"


# ---- benchmarks/graphs.py -------------------------------------------------------------------------


def _run_main(monkeypatch, module, argv: list[str]) -> tuple:
    written = {}
    monkeypatch.setattr(module, "write_results", lambda *args, **kw: written.update(args=args))
    monkeypatch.setattr(sys, "argv", [module.__name__, *argv])
    module.main()
    return written["args"][:6]


def test_x_eager_is_the_speed_up_of_the_graphed_step(monkeypatch, tmp_path):
    """Eager 30 ms, graphed 10 ms: "x eager" 3.00 (the notes: eager / graphed)."""
    row = {"batch": 4, "eager_ms": 30.0, "graphs_ms": 10.0, "warmup_s": {False: 1.0, True: 4.0},
           "captures_in_warmup": 1, "captures_timed": 0, "terms_bit_identical": True,
           "weights_bit_identical": True}  # fmt: skip
    monkeypatch.setattr(graphs, "measure", lambda *args: row)
    _, _, _, tables, _, notes = _run_main(
        monkeypatch, graphs, ["--model", str(tmp_path), "--batch-sizes", "4"]
    )
    ((_, columns, cells),) = tables
    got = dict(zip(columns, cells[0], strict=True))
    assert got["x eager"] == "3.00" and got["warm-up s (eager / graphs)"] == "1.0 / 4.0"


class _CapturingTrainer:
    """graphs.measure's Trainer: the graphed one captures at steps 0 and 2 (the first timed step
    when warmup = 2)."""

    def __init__(self, graphed: bool) -> None:
        self.graphed = graphed
        self.base = SimpleNamespace(graphs=SimpleNamespace(captures=0, replays=0))
        self.student = SimpleNamespace(state_dict=lambda: {"w": torch.ones(1)})

    def train_step(self, built, step):
        if self.graphed and step in (0, 2):
            self.base.graphs.captures += 1
        return {"loss": torch.tensor(1.0)}, True


def test_a_capture_in_the_first_timed_step_counts_as_timed(monkeypatch, tmp_path):
    monkeypatch.setattr(graphs, "trainer", lambda model, device, batch, g, out: (_CapturingTrainer(g), None))
    row = graphs.measure(tmp_path, "cpu", 2, warmup=2, steps=3)
    assert (row["captures_in_warmup"], row["captures_timed"]) == (1, 1)


# ---- benchmarks/engine_overhead.py ----------------------------------------------------------------


def test_the_bootstrap_interval_is_95_percent_not_the_range():
    """Values 1..101: the median of a resample has sd ~ 1 / (2 f sqrt(n)) = 101 / (2 sqrt(101)) =
    5.02 (f = 1/101, the uniform density), so the 95 % interval is ~51 +- 1.96 x 5.02 = [41.2, 60.8];
    the range of 2000 resampled medians is ~+-3.4 sd, far wider."""
    lo, hi = engine_overhead.bootstrap_median_interval(list(range(1, 102)))
    assert lo == pytest.approx(41.2, abs=2.5) and hi == pytest.approx(60.8, abs=2.5)
    assert engine_overhead.bootstrap_median_interval([7.0] * 9) == (7.0, 7.0)


def test_the_null_loss_timing_leaves_its_first_tenth_out(monkeypatch):
    """20 null-loss steps whose first two (a tenth: first calls, allocations) take 1 s of a fake
    clock and the others 1 ms: the 18 measured engine times are all 1 ms."""
    from recipes.tlcm import mlcd

    now = [0.0]
    monkeypatch.setattr(engine_overhead, "time", SimpleNamespace(perf_counter=lambda: now[0]))

    def train_step(built, i):
        now[0] += 1.0 if i < 2 else 0.001

    trainer = SimpleNamespace(
        recipe=mlcd(), dist=SimpleNamespace(device=torch.device("cpu")), train_step=train_step
    )
    engine, manual = engine_overhead.isolated_overhead(trainer, 20)
    assert len(engine) == len(manual) == 18
    assert engine == pytest.approx([0.001] * 18)


# ---- benchmarks/memory.py -------------------------------------------------------------------------


def test_the_workers_peak_rss_is_in_bytes_not_kib(monkeypatch, tmp_path, capsys):
    """ru_maxrss (KiB on Linux) as MiB: never below the RSS the worker measured after its Trainer."""
    import tlcm.engine
    from recipes.tlcm import mlcd

    if sys.platform != "linux":
        pytest.skip("ru_maxrss is in bytes on macOS")

    class FakeTrainer:
        def __init__(self, recipe) -> None:
            self.steps = recipe.phases["mlcd"].steps

        def train_step(self, built, global_step):
            return {}

        def run(self):
            for i in range(self.steps):
                self.train_step(None, i)

    monkeypatch.setattr(tlcm.engine, "Trainer", FakeTrainer)
    monkeypatch.setattr(memory, "shrink", lambda recipe, *args, **kw: recipe)
    monkeypatch.setattr(memory, "inventory", lambda: {"weight_ptrs": set()})
    args = SimpleNamespace(worker="lora", threads=1, device="cpu", model=str(tmp_path), steps=2, batch_size=1)
    memory.worker(args)
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith(memory.MARK)][-1]
    result = json.loads(line[len(memory.MARK) :])
    assert mlcd().phases["mlcd"].steps > 0
    assert result["ru_maxrss_mib"] >= 0.9 * result["rss_after_trainer_mib"] > 10


def test_the_memory_tables_step_peak_is_over_the_rss_after_the_trainer(monkeypatch, tmp_path):
    """RSS 100 MiB after the imports, 300 after the Trainer, 350 at the steps' peak: 50 MiB."""
    result = {
        "rss_after_imports_mib": 100.0,
        "rss_after_trainer_mib": 300.0,
        "peak_rss_during_steps_mib": 350.0,
    }
    result |= {"unique_base_weight_data_ptrs": 10, "base_weight_tensors_per_unet": 10}

    def fake_run(cmd, **kwargs):
        out = memory.MARK + json.dumps(result | {"config": cmd[cmd.index("--worker") + 1]})
        return SimpleNamespace(returncode=0, stdout=out + "\n", stderr="")

    monkeypatch.setattr(memory.subprocess, "run", fake_run)
    _, _, _, tables, _, _ = _run_main(monkeypatch, memory, ["--model", str(tmp_path)])
    rows = {row[0]: row[1:] for row in tables[0][2]}
    assert rows["peak RSS during the steps - RSS after Trainer, MiB"] == ["50.0"] * len(memory.CONFIGS)


# ---- benchmarks/common.py -------------------------------------------------------------------------


def test_a_miniature_without_its_build_info_is_not_ready(monkeypatch, tmp_path):
    """python -m tlcm.toy.build writes build_info.json last: without it the pipeline is half built."""
    unet = tmp_path / "miniature-sd" / "unet" / "diffusion_pytorch_model.safetensors"
    unet.parent.mkdir(parents=True)
    unet.write_bytes(b"x")
    (tmp_path / "miniature-sd" / "model_index.json").write_text("{}")
    monkeypatch.setattr(common, "MINIATURE_SD", tmp_path / "miniature-sd")
    monkeypatch.setattr(common, "MINIATURE_UNET", unet)
    monkeypatch.setattr(common, "BUILD_INFO", tmp_path / "build_info.json")
    assert not common.miniature_ready()
    (tmp_path / "build_info.json").write_text("{}")
    assert common.miniature_ready()
