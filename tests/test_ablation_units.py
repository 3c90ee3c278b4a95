"""The ablation ladder's and the method zoo's scripts on hand-made inputs, without training: the
ladder's variants against the shipped presets and their own descriptions (ablations/variants.py),
the ladder runner's scheduling, its one-run entry and its table file (ablations/run.py), the zoo's
budget, step scaling, run folders, samplers, table and frontier (ablations/zoo.py) and the teacher
curves and 2-step frontier of ablations/plot.py. Training and scoring are replaced by fakes that
record what they were given; matplotlib by a recorder of the drawing calls."""

import json
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_processes import FakeProcesses

from ablations import run as ladder
from ablations import zoo, zoo_plots
from ablations.variants import STAGE_LENGTHS, VARIANTS, Variant, variant_recipe
from recipes.tlcm import MINIATURE_SAMPLER, tlcm_full, tlcm_paper
from tlcm.errors import TLCMError

HEADER = "| variant | what changes | parent | seeds | 2 steps | 4 steps | 8 steps | 1 step | seconds |\n"
HEADER += "|---|---|---|---|---|---|---|---|---|\n"
TEACHER_TABLE = Path(__file__).parents[1] / "benchmarks" / "results" / "teacher_table.json"


def _chain(name: str) -> list[str]:
    """``name``'s ancestors, root first, then ``name``."""
    out = []
    while name:
        out.insert(0, name)
        name = VARIANTS[name].parent
    return out


# ---- ablations/variants.py ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "preset"), [("tlcm-full", tlcm_full), ("tlcm-paper", tlcm_paper)])
def test_the_l2_chain_composes_the_shipped_presets(name, preset, tmp_path):
    """docs/ablations.md: the rows "tlcm-full" and "tlcm-paper" ARE recipes:tlcm-full and
    recipes:tlcm-paper, trained phase by phase along their chain, each row continuing from its
    parent's run folder and writing its own; every row samples with tlcm-full's grid."""
    shipped, phases = preset(), {}
    for row in _chain(name):
        recipe = variant_recipe(VARIANTS[row], tmp_path)
        parent = VARIANTS[row].parent
        assert recipe.runtime.out_dir == tmp_path / row
        assert recipe.student.init_from == (tmp_path / parent if parent else None)
        assert recipe.student.grid == tlcm_full().student.grid
        assert recipe.model == shipped.model
        phases.update(recipe.phases)
    assert list(phases) == list(shipped.phases) and phases == shipped.phases


def test_only_the_lcm_style_row_and_the_gamma_rows_change_the_grid(tmp_path):
    full = tlcm_full().student.grid
    assert variant_recipe(VARIANTS["single-jump-lcd"], tmp_path).student.grid.num_milestones == 1
    assert variant_recipe(VARIANTS["mlcd-single-jump"], tmp_path).student.grid == full  # "M = 8"
    gamma0 = variant_recipe(VARIANTS["+lcd-training-gamma0"], tmp_path).student.grid
    assert gamma0.training_gamma == 0.0 and gamma0.num_milestones == full.num_milestones


def test_the_dmd_row_drops_the_gan_and_the_gan_rows_keep_both(tmp_path):
    """Table 2's "+ DMD" row is DMD alone (tlcm-paper's DMD + GAN phase without its GAN); "+ GAN"
    adds the GAN: tlcm-paper's phase as shipped."""
    paper = tlcm_paper().phases["dmd_gan"]
    dmd_only = variant_recipe(VARIANTS["+dmd"], tmp_path).phases["dmd_gan"]
    assert dmd_only.losses == {"dmd": paper.losses["dmd"]}
    assert replace(dmd_only, losses=paper.losses) == paper
    assert variant_recipe(VARIANTS["+gan"], tmp_path).phases["dmd_gan"] == paper


def test_stage_length_rows_train_the_steps_their_descriptions_name(tmp_path):
    """ "stage 1 of tlcm-full, 600 steps", "MLCD + LCD, 2x stages (600 + 200 steps)", "2x stage 1
    only (600 + 100 steps)": each phase trains the steps its row (and its parent) says."""
    for row in STAGE_LENGTHS:
        recipe = variant_recipe(row, tmp_path)
        if row.parent is None:
            (steps,) = re.findall(r"(\d+) steps", row.description)
            assert recipe.phases["mlcd"].steps == int(steps)
        else:
            stage1, stage2 = re.search(r"\((\d+) \+ (\d+) steps\)", row.description).groups()
            assert variant_recipe(VARIANTS[row.parent], tmp_path).phases["mlcd"].steps == int(stage1)
            assert list(recipe.phases) == ["lcd"] and recipe.phases["lcd"].steps == int(stage2)


def test_the_teacher_real_gan_rows_run_tlcm_fulls_dmd(tmp_path):
    """ "tlcm-full's DMD + a GAN": the DMD + GAN phase at tlcm-full's DMD steps, lr and real-score w."""
    dmd = tlcm_full().phases["dmd"]
    for name in ("+gan-teacher-real", "+gan-teacher-real-clean"):
        phase = variant_recipe(VARIANTS[name], tmp_path).phases["dmd_gan"]
        assert (phase.steps, phase.lr) == (dmd.steps, dmd.lr)
        assert phase.losses["dmd"].real_guidance_scale == dmd.losses["dmd"].real_guidance_scale
        assert (phase.losses["gan"].real, phase.losses["gan"].teacher_steps) == ("teacher", 8)


def test_an_override_of_a_loss_the_phase_lacks_is_an_error(tmp_path):
    typo = Variant("typo", "x", ("lcd",), losses={"lcd": {"lcm": {"full_range": True}}})
    with pytest.raises(TLCMError, match=r"variant 'typo', phase lcd: losses: unknown 'lcm'; known: lcd"):
        variant_recipe(typo, tmp_path)


# ---- ablations/run.py -----------------------------------------------------------------------------


def test_a_variants_ancestors_come_first_in_ladder_order():
    assert ladder._needed(("tlcm-full",)) == ["mds-states-l2", "mlcd+lcd-l2", "tlcm-full"]
    assert ladder._needed(("+gan", "mds-states")) == ["mds-states", "sparse-stage2", "+preference", "+gan"]


def _ladder_args(tmp_path, monkeypatch, **kwargs) -> tuple[ladder.Args, FakeProcesses]:
    procs = FakeProcesses().patch(monkeypatch, ladder)
    return ladder.Args(runs=tmp_path / "runs", table=tmp_path / "ablations.md", **kwargs), procs


def test_fresh_retrains_the_named_variants_and_reuses_their_ancestors(tmp_path, monkeypatch):
    args, procs = _ladder_args(tmp_path, monkeypatch, variants=("mlcd+lcd-l2",), fresh=True)
    for name in ("mds-states-l2", "mlcd+lcd-l2"):
        (args.runs / "s0" / name).mkdir(parents=True)
        (args.runs / "s0" / name / "eval.json").write_text("[]")
    ladder.main(args)
    assert procs.started() == ["mlcd+lcd-l2"]


def test_a_row_starts_once_its_parents_run_has_finished(tmp_path, monkeypatch):
    """--jobs 2 leaves room for both, but a row continues from its parent's student."""
    args, procs = _ladder_args(tmp_path, monkeypatch, variants=("mlcd+lcd-l2",), jobs=2)
    ladder.main(args)
    assert procs.events == [
        ("start", "mds-states-l2"),
        ("done", "mds-states-l2"),
        ("start", "mlcd+lcd-l2"),
        ("done", "mlcd+lcd-l2"),
    ]
    assert "| mlcd+lcd-l2 |" in args.table.read_text()


def test_one_variant_trains_with_its_seed_into_its_seed_folder(tmp_path, monkeypatch):
    """``--only`` (what each scheduled process runs): the variant's recipe at ``--seeds``' seed,
    continuing from the parent's run of the same seed, its time in ablation.json where ``table``
    reads it."""
    import tlcm.train

    seen = []

    def fake_train(recipe):
        seen.append(recipe)
        recipe.runtime.out_dir.mkdir(parents=True)

    monkeypatch.setattr(tlcm.train, "train_and_score", fake_train)
    runs = tmp_path / "runs"
    ladder.main(ladder.Args(only="tlcm-full", seeds=(3,), runs=runs, samples_per_digit=7))
    (recipe,) = seen
    assert recipe.runtime.seed == 3 and recipe.runtime.eval_samples_per_digit == 7
    assert recipe.runtime.out_dir == runs / "s3" / "tlcm-full"
    assert recipe.student.init_from == runs / "s3" / "mlcd+lcd-l2"
    assert recipe.inference_steps == tlcm_full().student.grid.shown_steps
    (recipe.runtime.out_dir / "eval.json").write_text(json.dumps([{"steps": 1, "alignment": 0.5, "fd": 9.0}]))
    line = ladder.table(runs, ["tlcm-full"], 70).splitlines()[2]
    assert re.search(r" \| 1 \| - \| - \| - \| 0\.500 / 9\.00 \| \d+ \|$", line)  # seconds read back, not nan


def test_rows_of_retired_variants_stay_after_the_ladders(tmp_path):
    old = (
        HEADER
        + "| retired | x | - | 1 | - | - | - | - | 1 |\n| tlcm-full | old | - | 1 | - | - | - | - | 1 |\n"
    )
    new = HEADER + "| mds-states-l2 | new | - | 1 | - | - | - | - | 1 |\n"
    merged = ladder.merge_tables(old, new).splitlines()
    assert [line.split(" | ")[0] for line in merged[2:]] == ["| mds-states-l2", "| tlcm-full", "| retired"]


def test_a_table_file_without_markers_keeps_its_prose(tmp_path):
    doc = tmp_path / "notes.md"
    doc.write_text("# Notes\n\nkeep me\n")
    ladder.write_results(doc, HEADER + "| tlcm-full | x | - | 1 | - | - | - | - | 1 |\n")
    text = doc.read_text()
    assert text.startswith("# Notes\n\nkeep me\n") and "| tlcm-full | x |" in text.split(ladder.BEGIN)[1]


# ---- ablations/zoo.py -----------------------------------------------------------------------------


def test_no_phase_is_scaled_to_zero_steps():
    """A cheap phase beside a long one: 1 and 1000 steps scaled to 100 evaluations keep the short
    phase's one step (0.1 rounds down to 0, the floor of 1 keeps it)."""
    assert zoo.scale_steps({"a": 1, "b": 1000}, {"a": 1.0, "b": 1.0}, 100) == {"a": 1, "b": 99}


def test_a_leftover_of_half_a_step_or_more_rounds_up():
    """One phase of 10 evaluations per step: 16 evaluations -> 2 steps (20 is nearer than 10),
    14 -> 1 step."""
    assert zoo.scale_steps({"a": 1}, {"a": 10.0}, 16) == {"a": 2}
    assert zoo.scale_steps({"a": 1}, {"a": 10.0}, 14) == {"a": 1}


RATES = {
    "unet": {"tlcm-full": {"mlcd": 200.0, "lcd": 190.0, "dmd": 80.0}, "pcm": {"pcm": 64.0}},
    "flow": {"tlcm-full": {"mlcd": 100.0, "lcd": 95.0, "dmd": 40.0}, "pcm": {"pcm": 16.0}},
}


def test_the_default_budget_is_tlcm_fulls_unet_cost_and_each_miniature_plans_with_its_rates(
    tmp_path, monkeypatch
):
    """budget 0: tlcm-full's recipe steps (300, 100, 150) x the UNet probe's rates = 91,000; the
    flow miniature, half as dear per step, gets twice the steps."""
    monkeypatch.setattr(zoo, "probes", lambda args, m, names: {n: RATES[m][n] for n in names})
    args = zoo.Args(methods=("tlcm-full", "pcm"), miniatures=("unet", "flow"), runs=tmp_path)
    budget, steps, rates = zoo.plan(args)
    assert budget == 300 * 200 + 100 * 190 + 150 * 80 == 91_000
    assert steps["unet"]["tlcm-full"] == {"mlcd": 300, "lcd": 100, "dmd": 150}
    assert steps["flow"]["tlcm-full"] == {"mlcd": 600, "lcd": 200, "dmd": 300}
    for m in RATES:
        for name, r in RATES[m].items():
            assert abs(zoo.planned_cost(steps[m][name], r) - budget) <= max(r.values()) / 2


def test_a_zoo_run_lands_where_the_tables_read_it_scored_with_both_samplers(tmp_path, monkeypatch):
    """``--only unet/pcm``: trains in RUNS/unet/s<seed>/pcm (docs/zoo.md's layout, where ``collect``
    reads); its TLCM-sampler scores come from the shipped sampler's gammas on pcm's own grid (M = 4),
    not from a copy of its own sampler's."""
    import tlcm.toy.scores
    import tlcm.train

    trained, scored = [], []

    def fake_train(recipe):
        trained.append(recipe)
        out = recipe.runtime.out_dir
        out.mkdir(parents=True)
        rows = [{"steps": n, "alignment": 0.5, "fd": 9.0} for n in recipe.inference_steps]
        (out / "eval.json").write_text(json.dumps(rows))
        student = SimpleNamespace(denoiser=lambda: "student")
        return SimpleNamespace(
            preempted=False, base="base", student=student, denoiser_evals=321, train_seconds=4.0
        )

    def fake_scores(base, denoiser, steps, per_digit, student_grid=None):
        scored.append((base, denoiser, tuple(steps), per_digit, student_grid))
        return [{"steps": n, "alignment": 0.6, "fd": 3.0} for n in steps]

    monkeypatch.setattr(tlcm.train, "train_and_score", fake_train)
    monkeypatch.setattr(tlcm.toy.scores, "student_scores", fake_scores)
    runs = tmp_path / "runs"
    zoo.main(zoo.Args(only="unet/pcm", seeds=(2,), runs=runs, samples_per_digit=3, phase_steps='{"pcm": 5}'))
    (recipe,) = trained
    assert recipe.phases["pcm"].steps == 5 and recipe.runtime.seed == 2
    (call,) = scored
    own = recipe.student.grid
    assert call[:4] == ("base", "student", (1, 2, 4), 3)
    assert call[4].num_milestones == own.num_milestones == 4
    assert (call[4].gamma, call[4].first_gamma) == (MINIATURE_SAMPLER.gamma, MINIATURE_SAMPLER.first_gamma)
    assert (own.gamma, own.first_gamma) != (MINIATURE_SAMPLER.gamma, MINIATURE_SAMPLER.first_gamma)
    infos, scores = zoo.collect(runs, "unet", "pcm")
    assert [(i["seed"], i["denoiser_evals"], i["phase_steps"]) for i in infos] == [(2, 321, {"pcm": 5})]
    assert [r["fd"] for r in scores["own"][2]] == [9.0] and [r["fd"] for r in scores["tlcm"][2]] == [3.0]


def _finished(runs, seed, method, m, rows, train_seconds=60.0):
    """A finished zoo run written by hand at docs/zoo.md's RUNS/<miniature>/s<seed>/<method>."""
    out = runs / "unet" / f"s{seed}" / method
    out.mkdir(parents=True)
    info = {"seed": seed, "num_milestones": m, "phase_steps": {"p": 10}, "denoiser_evals": 1000,
            "train_seconds": train_seconds, "train_eval_cpu_seconds": 120.0,
            "own_sampler": "own", "tlcm_sampler": "tlcm"}  # fmt: skip
    (out / "zoo.json").write_text(json.dumps(info))
    for name in zoo.SAMPLERS.values():
        (out / name).write_text(json.dumps(rows))


def test_the_table_fills_every_step_count_up_to_m(tmp_path):
    rows = [{"steps": n, "alignment": 0.9, "fd": 5.0} for n in (1, 2, 4)]
    _finished(tmp_path, 0, "pcm", 4, rows)
    line = [x for x in zoo.table(tmp_path, "unet", ["pcm"], 500).splitlines() if x.startswith("| pcm")][0]
    cells = line.split(" | ")
    assert cells[3:7] == ["0.900 / 5.00", "0.900 / 5.00", "0.900 / 5.00", "n/a"]  # 1, 2, 4 <= M = 4; 8 > M


def test_the_teacher_row_is_the_committed_tables_lowest_fd_per_step_count(tmp_path):
    _finished(tmp_path, 0, "pcm", 4, [{"steps": 1, "alignment": 0.9, "fd": 5.0}])
    line = zoo.table(tmp_path, "unet", ["pcm"], 500).splitlines()[-1]
    cells = line.strip("| ").split(" | ")
    assert cells[0] == "teacher (benchmarks/results/teacher_table.json)"
    committed = json.loads(TEACHER_TABLE.read_text())
    for n, cell in zip(zoo.STEPS, cells[3:7], strict=True):
        best = min((r for r in committed if r["steps"] == n), key=lambda r: r["fd"])
        align, fd, w = re.fullmatch(r"([\d.]+) / ([\d.]+) \(w ([\d.]+)\)", cell).groups()
        assert float(align) == pytest.approx(best["alignment"], abs=6e-4) and float(align) <= 1
        assert float(fd) == pytest.approx(best["fd"], abs=6e-3) and float(w) == best["w"]


class _Axes:
    """A recorder of one matplotlib Axes' calls."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    def called(self, name):
        return [(args, kwargs) for n, args, kwargs in self.calls if n == name]


class _Pyplot:
    """A stand-in for matplotlib.pyplot: ``subplots`` hands out recording axes (kept in ``axes``)."""

    def __init__(self):
        self.axes = None

    def subplots(self, rows=1, cols=1, squeeze=True, **kwargs):
        self.axes = [[_Axes() for _ in range(cols)] for _ in range(rows)]
        return _Axes(), (self.axes[0][0] if squeeze and rows == cols == 1 else self.axes)

    def close(self, fig):
        pass


def test_the_frontier_plots_fd_on_x_and_lists_what_lies_beyond_its_span(tmp_path, monkeypatch):
    """Each method at (mean FD, mean alignment); the x range reaches FRONTIER_FD_SPAN = 3 x the
    lowest FD shown (pcm's 4.0): tcd's 20.0 and the teacher's w 8 (30.0) are listed, not drawn."""
    plt = _Pyplot()
    monkeypatch.setattr(zoo_plots, "pyplot", lambda: plt)
    sweep = [
        {"w": w, "steps": n, "alignment": a, "fd": fd}
        for n in (2, 4)
        for w, a, fd in ((1.5, 0.9, 6.0), (8, 0.95, 30.0))
    ]
    monkeypatch.setattr(zoo_plots, "teacher_sweep", lambda miniature, prompts: sweep)
    for method, align, fd in (("pcm", 0.8, 4.0), ("tcd", 0.7, 20.0), ("tlcm-full", 0.85, 5.0)):
        for seed, delta in enumerate((-0.5, 0.5)):
            _finished(
                tmp_path,
                seed,
                method,
                8,
                [{"steps": n, "alignment": align, "fd": fd + delta} for n in (2, 4)],
            )
    args = zoo.Args(runs=tmp_path, frontier=tmp_path / "frontier.png")
    zoo.frontier(args, ["pcm", "tcd", "tlcm-full"])
    for row in plt.axes:
        ax = row[0]
        points = sorted((args[0], args[1]) for args, _ in ax.called("errorbar"))
        assert points == [(4.0, 0.8), (5.0, 0.85)]
        ((label,), _), ((lo, hi), _) = ax.called("set_xlabel")[0], ax.called("set_xlim")[0]
        assert "tcd 20.0 (0.700)" in label and "teacher w 8 30.0 (0.950)" in label and "pcm" not in label
        assert (lo, hi) == (pytest.approx(0.9 * 4.0), pytest.approx(1.08 * 12.0))


# ---- ablations/plot.py ----------------------------------------------------------------------------


def _teacher_table(path: Path) -> Path:
    rows = [
        {"w": w, "steps": n, "prompts": 500, "alignment": a, "fd": fd}
        for n in (1, 2, 4, 8, 50)
        for w, a, fd in (
            (1.5, 0.80 + n / 1000, 10.0 + n),
            (2.0, 0.85 + n / 1000, 8.0 + n),
            (3.0, 0.9, 12.0 + n),
        )
    ]
    path.write_text(json.dumps(rows))
    return path


def test_the_teacher_curves_are_fd_and_alignment_per_step_count_up_to_8(tmp_path):
    from ablations.plot import _teacher_curves

    curves = _teacher_curves(_teacher_table(tmp_path / "teacher.json"), (1.5,))
    assert set(curves) == {"teacher DDIM, w = 1.5", "teacher DDIM, best w per step count"}
    assert curves["teacher DDIM, w = 1.5"] == {n: (10.0 + n, 0.80 + n / 1000) for n in (1, 2, 4, 8)}
    # the lowest FD per step count: w = 2
    assert curves["teacher DDIM, best w per step count"] == {
        n: (8.0 + n, 0.85 + n / 1000) for n in (1, 2, 4, 8)
    }


def test_the_two_step_frontier_draws_each_rows_two_step_means(tmp_path):
    """Rows with several seeds: (mean 2-step FD, mean 2-step alignment), tlcm-full red; the bars:
    the teacher's 50-step alignment - 0.03 at w = 2 and 1.5."""
    from ablations.plot import Args, _frontier

    for seed, (align, fd) in enumerate(((0.90, 6.0), (0.94, 8.0))):
        run = tmp_path / "runs" / f"s{seed}" / "tlcm-full"
        run.mkdir(parents=True)
        rows = [{"steps": 1, "alignment": 0.7, "fd": 40.0}, {"steps": 2, "alignment": align, "fd": fd}]
        (run / "eval.json").write_text(json.dumps(rows))
    plt = _Pyplot()
    args = Args(
        runs=tmp_path / "runs",
        teacher_table=_teacher_table(tmp_path / "t.json"),
        frontier_out=tmp_path / "f.png",
    )
    _frontier(plt, args)
    ax = plt.axes[0][0]
    (args_, kwargs), *teacher = ax.called("scatter")
    assert args_ == (pytest.approx(7.0), pytest.approx(0.92)) and kwargs["color"] == "tab:red"
    assert sorted(teacher[0][0][0]) == [10.0, 12.0, 14.0]  # the teacher's 2-step FDs
    bars = sorted(args[0] for args, _ in ax.called("axhline"))
    assert bars == [pytest.approx(0.85 - 0.03), pytest.approx(0.90 - 0.03)]  # w = 1.5, w = 2 at 50 steps


# ---- ablations/disc_probe.py ----------------------------------------------------------------------


def test_the_disc_probes_fakes_come_from_the_students_own_sampler():
    """The fake side is "the student's q-step samples (its own sampler)": the run's grid with its
    first move (tlcm-full: gamma 1, then DDIM), as tlcm.toy.scores samples it when scoring the run.
    Before the fix the first move took the grid's gamma 0: DDIM from pure noise."""
    import torch

    from ablations.disc_probe import samples
    from tlcm.diffusion.milestones import StudentGrid
    from tlcm.diffusion.sampling import sample_latents
    from tlcm.diffusion.schedule import FlowSchedule

    schedule, grid = FlowSchedule(), StudentGrid(8, 4, gamma=0.0, first_gamma=1.0)

    def net(x, t, cond):
        return 0.5 * x

    base = SimpleNamespace(schedule=schedule, latent_shape=(2, 4, 4))
    student = SimpleNamespace(config=SimpleNamespace(grid=grid), denoiser=lambda: net)
    cond = torch.zeros(3)
    got = samples(base, student, cond, 4, torch.Generator().manual_seed(0))

    def own(first_gamma):
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(3, 2, 4, 4, generator=g)
        timesteps = grid.timesteps(4, schedule).tolist()
        return sample_latents(
            net, schedule, cond, noise, timesteps, grid.gamma, generator=g, first_gamma=first_gamma
        )

    assert not torch.allclose(own(1.0), own(None))  # the first move matters here
    torch.testing.assert_close(got, own(1.0), rtol=0, atol=0)


# ---- a researcher's own variant (walkthrough of 2026-12-07) ----------------------------------------


def test_a_variants_misspelt_phase_loss_or_field_is_one_line_naming_it(tmp_path):
    cases = [
        (Variant("v1", "-", ("mlcdd",)), r"variant 'v1': phases: unknown 'mlcdd'; known: .*mlcd"),
        (
            Variant("v2", "-", ("mlcd",), mlcd={"skipp": 3}),
            r"variant 'v2', phase mlcd, loss mlcd: fields: unknown 'skipp'; known: .*skip",
        ),
        (
            Variant("v3", "-", ("mlcd",), phase_fields={"mlcd": {"stepz": 3}}),
            r"variant 'v3', phase mlcd: phase fields: unknown 'stepz'; known: .*steps",
        ),
        (
            Variant("v4", "-", ("mlcd",), losses={"lcd": {"lcd": {}}}),
            r"variant 'v4': overrides for phases it does not train: unknown 'lcd'; known: mlcd",
        ),
        (
            Variant("v5", "-", ("mlcd",), losses={"mlcd": {"mlcdx": {}}}),
            r"variant 'v5', phase mlcd: losses: unknown 'mlcdx'; known: mlcd",
        ),
        (
            Variant("v6", "-", ("mlcd",), drop=(("mlcd", "mlcdx"),)),
            r"variant 'v6', phase mlcd: losses: unknown 'mlcdx'",
        ),
    ]
    for variant, message in cases:
        with pytest.raises(TLCMError, match=message):
            variant_recipe(variant, tmp_path)


def test_the_ladder_refuses_a_broken_variant_before_starting_any_run(tmp_path, monkeypatch):

    broken = Variant("broken", "-", ("lcd",), parent="mds-states-l2", losses={"lcd": {"lcd": {"skipp": 1}}})
    monkeypatch.setitem(ladder.VARIANTS, "broken", broken)
    started = []
    monkeypatch.setattr(ladder.subprocess, "Popen", lambda cmd, **kw: started.append(cmd))
    args = ladder.Args(variants=("broken",), runs=tmp_path / "runs", table=tmp_path / "t.md")
    with pytest.raises(TLCMError, match=r"variant 'broken', phase lcd, loss lcd: fields: unknown 'skipp'"):
        ladder.main(args)
    assert started == []  # not even its parent


def test_a_quick_trial_trains_every_phase_for_its_steps_and_stays_out_of_the_published_table(
    tmp_path, monkeypatch
):

    import tlcm.train

    with pytest.raises(TLCMError, match=r"--steps 5 trains a quick trial: pass --table and --runs"):
        ladder.main(ladder.Args(steps=5, variants=("mds-states-l2",)))
    with pytest.raises(TLCMError, match=r"--steps 5 trains a quick trial"):
        ladder.main(ladder.Args(steps=5, runs=tmp_path, variants=("mds-states-l2",)))  # the published table
    with pytest.raises(TLCMError, match=r"--steps must be >= 0, got -1"):
        ladder.main(ladder.Args(steps=-1, runs=tmp_path, table=tmp_path / "t.md"))
    seen = []

    def fake_train(recipe):
        seen.append(recipe)
        recipe.runtime.out_dir.mkdir(parents=True, exist_ok=True)

    monkeypatch.setattr(tlcm.train, "train_and_score", fake_train)
    ladder.main(ladder.Args(only="tlcm-full-huber", steps=3, runs=tmp_path))
    ladder.main(ladder.Args(only="tlcm-full-huber", runs=tmp_path))
    trial, full = seen
    assert {name: p.steps for name, p in trial.phases.items()} == dict.fromkeys(full.phases, 3)
    assert all(p.steps > 3 for p in full.phases.values())
    procs = FakeProcesses(polls=1).patch(monkeypatch, ladder)
    ladder.main(ladder.Args(variants=("mlcd+lcd-l2",), steps=4, runs=tmp_path / "r", table=tmp_path / "t.md"))
    assert procs.values("--steps") == ["4", "4"]  # the row and its parent


def test_frontier_labels_do_not_overlap_and_stay_inside_the_panel():
    """Three points at one place: three labels, no two boxes overlapping; a point at the right
    edge: its label to its left, inside the axes; a lone point: right above it."""
    size = (0.2, 0.05)
    anchors = [(0.5, 0.5), (0.5, 0.5), (0.5, 0.5), (0.99, 0.2), (0.1, 0.97)]
    places = zoo_plots.place_labels(anchors, [size] * len(anchors))
    boxes = [(x, y, x + size[0], y + size[1]) for x, y in places]
    for i, a in enumerate(boxes):
        assert 0 <= a[0] and a[2] <= 1 and 0 <= a[1] and a[3] <= 1, (i, a)
        for b in boxes[:i]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    assert places[3][0] + size[0] < 0.99  # left of its point
    assert places[4] == pytest.approx((0.1 + 0.008, 0.97 - 0.008 - size[1]))  # no room above: below
    assert zoo_plots.place_labels([(0.3, 0.3)], [size]) == [pytest.approx((0.308, 0.308))]


def test_frontier_labels_of_two_close_points_keep_their_order():
    """Two points a little apart vertically: the upper point's label above, the lower one's below
    (placed top first), not crossed."""
    size = (0.2, 0.05)
    lower, upper = zoo_plots.place_labels([(0.5, 0.40), (0.5, 0.41)], [size, size])
    assert upper[1] > 0.41 and lower[1] + size[1] < 0.40


def test_a_frontier_label_does_not_cover_another_point():
    """A's label right above A would cover B's marker (B sits in it): it goes elsewhere, and no label
    covers a marker (MARK each side of each point)."""
    size, mark = (0.2, 0.05), zoo_plots.MARK
    anchors = [(0.5, 0.5), (0.70, 0.52)]  # B's own label starts right of A's
    places = zoo_plots.place_labels(anchors, [size, size])
    for x, y in places:
        for px, py in anchors:
            assert x + size[0] <= px - mark or px + mark <= x or y + size[1] <= py - mark or py + mark <= y
