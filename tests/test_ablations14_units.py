"""The published comparison scripts on small hand-made run folders (red-team round 14): the zoo's
step scaling refusal, its probe cache per miniature and per phase set, the flow miniature's model
and teacher, one zoo run's record (pre-empted runs, sampler names, CPU seconds), the zoo's and the
ladder's schedulers (--fresh, seeds, failures, --jobs), the D accuracy of a multi-phase run, the
docs' cost range, the plot's mean over seeds, the frontier's teacher per step count, the ladder's
unknown names, parents' rows and fresh starts, --rescore over missing seeds, ablations/plot.py's
one-line refusals and the discriminator probe's captions, output file, re-noising and optimizer
settings. Nothing trains: trainers, scorers, subprocesses, matplotlib and the GAN are fakes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fake_processes import FakeProcesses
from test_tooling_units import FakePyplot, _fake_matplotlib, _finished, _ProbeGAN

from ablations import run as ladder
from ablations import zoo, zoo_plots
from tlcm.errors import TLCMError
from tlcm.toy import MINIATURE_SD, MINIATURE_SD3

# ---- ablations/zoo.py: budget, probes, recipes ----------------------------------------------------


def test_a_plan_that_costs_nothing_is_refused_naming_its_phases():
    with pytest.raises(ValueError, match=r"phases \{'a': 3\} cost no denoiser evaluations"):
        zoo.scale_steps({"a": 3}, {"a": 0.0}, 100)


def test_a_negative_zoo_budget_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "_schedule", lambda args: pytest.fail("scheduled with a negative budget"))
    with pytest.raises(TLCMError, match="--budget must be >= 0, got -5"):  # not the trial refusal
        zoo.main(zoo.Args(budget=-5, runs=tmp_path / "runs", table=tmp_path / "zoo.md"))


def _fake_probe(monkeypatch) -> list:
    """zoo.probe_rates replaced: a phase's rate is 1.0 on the UNet miniature, 2.0 on the flow one."""
    probed = []

    def rates(recipe, probe_steps):
        probed.append(recipe.model.path)
        return {n: 2.0 if recipe.model.path == MINIATURE_SD3 else 1.0 for n in recipe.phases}

    monkeypatch.setattr(zoo, "probe_rates", rates)
    return probed


def test_each_miniature_has_its_own_probe_cache(tmp_path, monkeypatch):
    """The flow miniature's rates are probed on it, not read from the UNet's cache."""
    probed = _fake_probe(monkeypatch)
    args = zoo.Args(runs=tmp_path)
    phases = set(zoo.method_recipe("tcd", "unet").phases)
    assert zoo.probes(args, "unet", ["tcd"]) == {"tcd": dict.fromkeys(phases, 1.0)}
    assert zoo.probes(args, "flow", ["tcd"]) == {"tcd": dict.fromkeys(phases, 2.0)}
    assert probed == [MINIATURE_SD, MINIATURE_SD3]
    assert (tmp_path / "unet" / "probe.json").is_file() and (tmp_path / "flow" / "probe.json").is_file()


def test_a_probe_cached_for_other_phases_is_measured_again(tmp_path, monkeypatch):
    """A cache entry of the same probe steps whose phases are not the recipe's (a renamed phase) is
    stale: probed again."""
    probed = _fake_probe(monkeypatch)
    (tmp_path / "unet").mkdir()
    stale = {"tcd": {"probe_steps": 10, "rates": {"old-phase": 5.0}}}
    (tmp_path / "unet" / "probe.json").write_text(json.dumps(stale))
    phases = set(zoo.method_recipe("tcd", "unet").phases)
    assert zoo.probes(zoo.Args(runs=tmp_path, probe_steps=10), "unet", ["tcd"]) == {
        "tcd": dict.fromkeys(phases, 1.0)
    }
    assert probed == [MINIATURE_SD]


def test_the_flow_miniature_trains_the_flow_model():
    flow, unet = zoo.method_recipe("pcm", "flow"), zoo.method_recipe("pcm", "unet")
    assert flow.model.path == MINIATURE_SD3 and flow.model.max_sequence_length == 8
    assert unet.model.path == MINIATURE_SD


# ---- ablations/zoo.py: one run --------------------------------------------------------------------


def _fake_training(monkeypatch, preempted=False):
    import tlcm.toy.scores
    import tlcm.train

    def fake_train(recipe):
        out = recipe.runtime.out_dir
        out.mkdir(parents=True)
        (out / "eval.json").write_text(json.dumps([{"steps": 1, "alignment": 0.5, "fd": 9.0}]))
        student = SimpleNamespace(denoiser=lambda: "student")
        return SimpleNamespace(
            preempted=preempted, base="base", student=student, denoiser_evals=321, train_seconds=4.0
        )

    def fake_scores(base, denoiser, steps, per_digit, student_grid=None):
        return [{"steps": n, "alignment": 0.6, "fd": 3.0} for n in steps]

    monkeypatch.setattr(tlcm.train, "train_and_score", fake_train)
    monkeypatch.setattr(tlcm.toy.scores, "student_scores", fake_scores)


def test_a_preempted_zoo_run_is_not_recorded_as_finished(tmp_path, monkeypatch):
    _fake_training(monkeypatch, preempted=True)
    args = zoo.Args(only="unet/pcm", seeds=(0,), runs=tmp_path, samples_per_digit=3, phase_steps='{"pcm": 5}')
    with pytest.raises(TLCMError, match="pre-empted"):
        zoo.main(args)
    assert not (zoo.run_dir(tmp_path, "unet", 0, "pcm") / "zoo.json").exists()  # not reused as done


def test_a_zoo_runs_record_names_its_samplers_and_its_cpu_seconds(tmp_path, monkeypatch):
    """zoo.json: own_sampler is pcm's own grid, tlcm_sampler the shipped gammas on it; the CPU
    seconds are those of training and scoring (process time 100 s before, 160 s after: 60 s)."""
    from recipes.tlcm import MINIATURE_SAMPLER

    _fake_training(monkeypatch)
    clock = iter([100.0, 160.0])
    monkeypatch.setattr(zoo, "time", SimpleNamespace(process_time=lambda: next(clock), time=lambda: 0.0))
    args = zoo.Args(only="unet/pcm", seeds=(0,), runs=tmp_path, samples_per_digit=3, phase_steps='{"pcm": 5}')
    zoo.main(args)
    info = json.loads((zoo.run_dir(tmp_path, "unet", 0, "pcm") / "zoo.json").read_text())
    grid = zoo.method_recipe("pcm", "unet").student.grid
    tlcm = grid.with_sampler(MINIATURE_SAMPLER.gamma, MINIATURE_SAMPLER.first_gamma)
    assert grid.describe_sampler() != tlcm.describe_sampler()
    assert info["own_sampler"] == grid.describe_sampler()
    assert info["tlcm_sampler"] == tlcm.describe_sampler()
    assert info["train_eval_cpu_seconds"] == 60.0


# ---- ablations/zoo.py: the scheduler --------------------------------------------------------------


def _zoo_schedule(tmp_path, monkeypatch, names=("pcm",), returncode=0, **kwargs):
    runs = tmp_path / "runs"
    steps = {"unet": {n: {n: 7} for n in names}}
    rates = {"unet": {n: {n: 64.0} for n in names}}
    monkeypatch.setattr(zoo, "plan", lambda args: (448.0, steps, rates))
    monkeypatch.setattr(zoo, "write_docs", lambda args, budget=None: "")
    procs = FakeProcesses(returncode).patch(monkeypatch, zoo)
    args = zoo.Args(
        methods=tuple(names), miniatures=("unet",), runs=runs, table=tmp_path / "zoo.md", **kwargs
    )
    return args, procs


def test_fresh_retrains_a_finished_zoo_run_in_an_emptied_folder(tmp_path, monkeypatch):
    args, procs = _zoo_schedule(tmp_path, monkeypatch, seeds=(0,), fresh=True)
    out = zoo.run_dir(args.runs, "unet", 0, "pcm")
    out.mkdir(parents=True)
    (out / "zoo.json").write_text("{}")
    (out / "checkpoint-5").mkdir()  # an old run's checkpoint a resume would continue from
    real_popen, folder_at_start = procs.Popen, []

    def popen(cmd, **kwargs):
        folder_at_start.append(out.exists())
        return real_popen(cmd, **kwargs)

    monkeypatch.setattr(zoo.subprocess, "Popen", popen)
    zoo.main(args)
    assert procs.values("--only") == ["unet/pcm"] and folder_at_start == [False]


def test_the_zoo_trains_each_seed_with_its_seed_and_prompt_count(tmp_path, monkeypatch):
    args, procs = _zoo_schedule(tmp_path, monkeypatch, seeds=(1, 2), samples_per_digit=7)
    zoo.main(args)
    assert procs.values("--seeds") == ["1", "2"]
    assert procs.values("--samples-per-digit") == ["7", "7"]


def test_a_failed_zoo_run_stops_the_schedule_naming_its_log(tmp_path, monkeypatch):
    args, _ = _zoo_schedule(tmp_path, monkeypatch, seeds=(0,), returncode=1)
    with pytest.raises(TLCMError, match=r"unet pcm, seed 0 failed \(exit 1\); see .*pcm\.log"):
        zoo.main(args)


def test_the_zoo_never_runs_more_than_jobs_at_once(tmp_path, monkeypatch):
    args, procs = _zoo_schedule(tmp_path, monkeypatch, names=("pcm", "tcd", "lcm"), seeds=(0,), jobs=2)
    zoo.main(args)
    assert len(procs.cmds) == 3 and procs.most == 2


# ---- ablations/zoo.py: tables, docs, plots --------------------------------------------------------


def test_the_d_accuracy_reads_only_the_gan_rows_of_a_multi_phase_run(tmp_path):
    """tlcm-full logs 5 rows of its consistency phases (no D) before 10 of its GAN phase: the
    accuracy is over the last 20 % of the GAN rows (the last 2: real 1, fake 0)."""
    rows = [{"steps": n, "alignment": 0.9, "fd": 5.0} for n in (1, 2, 4, 8)]
    out = _finished(tmp_path, 0, zoo.BASE_METHOD, rows)
    metrics = [{"step": i, "loss": 1.0} for i in range(5)]
    metrics += [{"step": 5 + i, "gan/d_acc_real": 0.5, "gan/d_acc_fake": 0.5} for i in range(8)]
    metrics += [{"step": 13 + i, "gan/d_acc_real": 1.0, "gan/d_acc_fake": 0.0} for i in range(2)]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    assert zoo.disc_accuracy(tmp_path, "unet", zoo.BASE_METHOD) == [(1.0, 0.0)]
    assert zoo.disc_cell(zoo.disc_accuracy(tmp_path, "unet", zoo.BASE_METHOD)) == "0.50; real 1.00, fake 0.00"


def test_the_flow_table_compares_with_the_flow_teacher(tmp_path):
    line = zoo.table(tmp_path, "flow", ["pcm"], 500).splitlines()[-1]
    assert line.startswith("| teacher (benchmarks/results/teacher_table_flow_500.json) | Euler + CFG")
    assert zoo.teacher_best("flow", 500)[0] != zoo.teacher_best("unet", 500)[0]


def test_the_docs_cost_range_runs_from_the_cheapest_to_the_dearest_run(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "plot", lambda args, names: None)
    monkeypatch.setattr(zoo, "frontier", lambda args, names: None)
    rows = [{"steps": n, "alignment": 0.9, "fd": 5.0} for n in (1, 2, 4, 8)]
    _finished(tmp_path, 0, zoo.BASE_METHOD, rows, denoiser_evals=1010)  # found first
    _finished(tmp_path, 0, "pcm", rows, m=4, denoiser_evals=990)
    _finished(tmp_path, 0, "tcd", rows, denoiser_evals=1000)
    text = zoo.write_docs(zoo.Args(runs=tmp_path, table=tmp_path / "zoo.md"))
    assert "Counted training cost per run: 990 to 1,010 denoiser evaluations" in text


def test_the_zoo_plot_draws_the_mean_over_the_seeds(tmp_path, monkeypatch):
    plt = FakePyplot()
    _fake_matplotlib(monkeypatch)
    monkeypatch.setattr(zoo_plots, "pyplot", lambda: plt)
    monkeypatch.setattr(zoo_plots, "teacher_best", lambda miniature, prompts: None)
    for seed, fd in enumerate((4.0, 6.0)):
        _finished(tmp_path, seed, "pcm", [{"steps": n, "alignment": 0.8, "fd": fd} for n in (1, 2, 4)], m=4)
    zoo.plot(zoo.Args(runs=tmp_path, plot=tmp_path / "fd.png"), ["pcm"])
    top = plt.made[0][0, 0]
    assert [list(args[1]) for args, _ in top.called("plot")] == [[5.0] * 3, [5.0] * 3]
    ((args, _),) = top.called("fill_between")  # the own sampler's seed range
    assert (list(args[1]), list(args[2])) == ([4.0] * 3, [6.0] * 3)


def test_the_frontier_draws_the_teachers_sweep_at_its_own_step_count(tmp_path, monkeypatch):
    plt = FakePyplot()
    monkeypatch.setattr(zoo_plots, "pyplot", lambda: plt)
    sweep = [
        {"w": w, "steps": n, "alignment": 0.9, "fd": fd}
        for n, fds in ((2, (6.0, 7.0)), (4, (5.0, 5.5)))
        for w, fd in zip((1.5, 3.0), fds, strict=True)
    ]
    monkeypatch.setattr(zoo_plots, "teacher_sweep", lambda miniature, prompts: sweep)
    _finished(tmp_path, 0, "pcm", [{"steps": n, "alignment": 0.8, "fd": 4.0} for n in (2, 4)], m=4)
    zoo.frontier(zoo.Args(runs=tmp_path, frontier=tmp_path / "f.png"), ["pcm"])
    drawn = [[list(args[0]) for args, _ in row.called("plot")] for row in plt.made[0][:, 0]]
    assert drawn == [[[6.0, 7.0]], [[5.0, 5.5]]]  # rows: 2 steps, 4 steps


# ---- ablations/run.py -----------------------------------------------------------------------------


def test_an_unknown_variant_is_one_line_naming_the_known_ones():
    with pytest.raises(
        TLCMError, match=r"unknown variant 'tlcm-ful' \(did you mean tlcm-full .*\); known: .*tlcm-full"
    ):
        ladder._needed(("tlcm-ful",))


def _ladder(tmp_path, monkeypatch, returncode=0, **kwargs):
    procs = FakeProcesses(returncode).patch(monkeypatch, ladder)
    args = ladder.Args(runs=tmp_path / "runs", table=tmp_path / "ablations.md", **kwargs)
    return args, procs


def test_each_seed_of_the_ladder_trains_with_its_own_seed(tmp_path, monkeypatch):
    args, procs = _ladder(tmp_path, monkeypatch, variants=("mds-states-l2",), seeds=(1, 2))
    ladder.main(args)
    assert sorted(procs.values("--seeds")) == ["1", "2"]


def test_a_seed_is_done_only_when_its_own_run_is(tmp_path, monkeypatch):
    """Seed 0 finished, seed 1 not: --seeds 0 1 trains seed 1."""
    args, procs = _ladder(tmp_path, monkeypatch, variants=("mds-states-l2",), seeds=(0, 1))
    (args.runs / "s0" / "mds-states-l2").mkdir(parents=True)
    (args.runs / "s0" / "mds-states-l2" / "eval.json").write_text("[]")
    ladder.main(args)
    assert procs.values("--seeds") == ["1"]


def test_a_failed_ladder_run_stops_naming_its_log(tmp_path, monkeypatch):
    args, _ = _ladder(tmp_path, monkeypatch, returncode=1, variants=("mds-states-l2",))
    with pytest.raises(TLCMError, match=r"mds-states-l2, seed 0 failed \(exit 1\); see .*mds-states-l2\.log"):
        ladder.main(args)


def test_the_ladder_never_runs_more_than_jobs_at_once(tmp_path, monkeypatch):
    args, procs = _ladder(tmp_path, monkeypatch, variants=("mds-states-l2",), seeds=(0, 1, 2), jobs=1)
    ladder.main(args)
    assert len(procs.cmds) == 3 and procs.most == 1


def test_the_ladder_table_holds_the_parents_trained_for_a_row(tmp_path, monkeypatch):
    args, procs = _ladder(tmp_path, monkeypatch, variants=("mlcd+lcd-l2",))
    ladder.main(args)
    assert procs.values("--only") == ["mds-states-l2", "mlcd+lcd-l2"]
    rows = [line.split(" | ")[0] for line in args.table.read_text().splitlines() if line.startswith("| ")]
    assert rows[1:] == ["| mds-states-l2", "| mlcd+lcd-l2", "| teacher"]


def test_a_ladder_run_starts_from_scratch_not_from_an_old_checkpoint(tmp_path, monkeypatch):
    """--fresh reruns a variant into its old folder: the run must not resume the old checkpoint."""
    import tlcm.train

    seen = []

    def fake_train(recipe):
        seen.append(recipe)
        recipe.runtime.out_dir.mkdir(parents=True)

    monkeypatch.setattr(tlcm.train, "train_and_score", fake_train)
    ladder.main(ladder.Args(only="mds-states-l2", seeds=(0,), runs=tmp_path))
    (recipe,) = seen
    assert recipe.runtime.resume is False


def test_rescore_skips_the_seeds_without_a_finished_run(tmp_path, monkeypatch):
    import tlcm.toy.scores
    from tlcm.diffusion.milestones import StudentGrid
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student

    run = tmp_path / "s0" / "tlcm-full"
    run.mkdir(parents=True)
    (run / "eval.json").write_text("[]")
    trained = SimpleNamespace(config=SimpleNamespace(grid=StudentGrid(4, 4)), denoiser=lambda: "student")
    loaded = []

    def from_run(base, path):
        loaded.append(path)
        return trained

    monkeypatch.setattr(BaseModel, "load", staticmethod(lambda path, **kw: "base"))
    monkeypatch.setattr(Student, "from_run", staticmethod(from_run))
    monkeypatch.setattr(
        tlcm.toy.scores,
        "student_scores",
        lambda base, d, steps, per_digit, student_grid=None: [
            {"steps": n, "alignment": 0.5, "fd": 1} for n in steps
        ],
    )
    ladder.main(ladder.Args(variants=("tlcm-full",), seeds=(0, 1), runs=tmp_path, rescore=True))
    assert loaded == [run]
    assert not (tmp_path / "s1").exists()


# ---- ablations/plot.py ----------------------------------------------------------------------------


def test_a_missing_teacher_table_is_one_line_naming_the_command(tmp_path):
    from ablations.plot import _teacher_curves

    with pytest.raises(TLCMError, match="python -m tlcm.evaluate teacher-table"):
        _teacher_curves(tmp_path / "missing.json", (1.5,))


def test_a_row_without_runs_is_one_line_naming_the_command(tmp_path, monkeypatch):
    from ablations import plot

    _fake_matplotlib(monkeypatch)
    teacher = [{"w": 1.5, "steps": n, "alignment": 0.9, "fd": 10.0} for n in (1, 2, 4, 8, 50)]
    (tmp_path / "t.json").write_text(json.dumps(teacher))
    args = plot.Args(rows=("tlcm-full",), runs=tmp_path / "runs", teacher_table=tmp_path / "t.json")
    with pytest.raises(TLCMError, match="no runs of 'tlcm-full'.*--variants tlcm-full"):
        plot.main(replace(args, out=tmp_path / "fd.png", frontier_out=tmp_path / "f.png"))


# ---- ablations/disc_probe.py ----------------------------------------------------------------------


class _Cond:
    def __init__(self, texts):
        self.texts = list(texts)

    def cat(self, other):
        return _Cond(self.texts + other.texts)

    def __len__(self):
        return len(self.texts)


def _probe_main(tmp_path, monkeypatch, n=300):
    """disc_probe.main with its models, data, sampler and probe replaced: real digit i is the
    latent [i] captioned "digit i"; the probe records what it gets."""
    from ablations import disc_probe

    base = SimpleNamespace(encode=lambda texts: (_Cond(texts), None))
    monkeypatch.setattr(disc_probe, "BaseModel", SimpleNamespace(load=lambda path: base))
    monkeypatch.setattr(disc_probe, "Student", SimpleNamespace(from_run=lambda base, run: "student"))
    monkeypatch.setattr(
        disc_probe,
        "real_pairs",
        lambda k, seed=0: (torch.arange(float(k)).view(k, 1), [f"digit {i}" for i in range(k)], []),
    )
    monkeypatch.setattr(disc_probe, "encode_images", lambda base, x, g: x.clone())
    monkeypatch.setattr(disc_probe, "samples", lambda base, student, cond, q, g: -torch.ones(len(cond), 1))
    seen = []

    def probe(args, base, student, real, fake, cond, rank, lr, noise):
        seen.append((real, cond))
        return [0.5, 0.6, 0.7]

    monkeypatch.setattr(disc_probe, "probe", probe)
    args = disc_probe.Args(
        run=Path("runs/x"), real=n, held_out=10, ranks=(0,), lrs=(1e-3,), noise_levels=(0,), qs=(1,),
        out=tmp_path / "probe.md",
    )  # fmt: skip
    disc_probe.main(args)
    return args, seen


def test_the_disc_probe_keeps_each_digit_with_its_caption(tmp_path, monkeypatch):
    """The digits are shuffled (an ink-balanced held-out part) and their captions with them."""
    _, seen = _probe_main(tmp_path, monkeypatch)
    ((real, cond),) = seen
    assert real.flatten().tolist() != list(range(300))  # shuffled
    assert cond.texts == [f"digit {int(v)}" for v in real.flatten().tolist()]


def test_the_disc_probe_appends_a_section_per_command(tmp_path, monkeypatch):
    args, _ = _probe_main(tmp_path, monkeypatch, n=20)
    _probe_main(tmp_path, monkeypatch, n=20)
    text = args.out.read_text()
    assert text.count("# Can the discriminator separate?") == 1
    assert (
        text.count("## runs/x (unet)") == 2
        and text.count("| 1 | 0 | 0.001 | 0 | 0.500 / 0.600 / 0.700 |") == 2
    )
    assert len(args.out.with_suffix(".json").read_text().splitlines()) == 2


def test_the_disc_probe_renoises_both_sides_above_clean(monkeypatch):
    """noise_level 999 on the flow schedule: the training batches' latents are noised (not the clean
    ones) at their re-noising times."""
    from ablations import disc_probe
    from tlcm.diffusion.schedule import FlowSchedule

    gan = _ProbeGAN(8)
    monkeypatch.setattr(disc_probe, "GANConfig", lambda **kw: SimpleNamespace(build=lambda student: gan))
    real = torch.arange(1.0, 41).view(40, 1, 1, 1)
    args = disc_probe.Args(run=Path("run"), steps=3, held_out=8)
    base = SimpleNamespace(schedule=FlowSchedule())
    disc_probe.probe(args, base, None, real, -real, torch.arange(40), 0, 1e-3, 999)
    for zr, tr, zf, tf, _ in gan.batches:
        assert (tr > 0).all() and (tf > 0).all()
        assert not torch.isin(zr, real).any() and not torch.isin(zf, -real).any()


def test_the_disc_probe_builds_d_with_the_asked_optimizer(monkeypatch):
    from ablations import disc_probe

    gan, seen = _ProbeGAN(8), []

    def config(**kw):
        seen.append(kw)
        return SimpleNamespace(build=lambda student: gan)

    monkeypatch.setattr(disc_probe, "GANConfig", config)
    real = torch.arange(1.0, 41).view(40, 1)
    args = disc_probe.Args(
        run=Path("run"), steps=3, held_out=8, disc_betas=(0.9, 0.999), disc_weight_decay=0.01,
        disc_max_grad_norm=10.0,
    )  # fmt: skip
    base = SimpleNamespace(schedule=SimpleNamespace(clean_timestep=0))
    disc_probe.probe(args, base, None, real, -real, torch.arange(40), 8, 2e-4, 0)
    ((kw,),) = [seen]
    assert kw["backbone"] == "teacher" and (kw["disc_rank"], kw["disc_lr"], kw["noise_level"]) == (8, 2e-4, 0)
    assert (kw["disc_betas"], kw["disc_weight_decay"], kw["disc_max_grad_norm"]) == ((0.9, 0.999), 0.01, 10.0)


def test_the_recheck_reads_the_zoos_own_table_and_marks_a_rerun_outside_its_range(tmp_path):
    """A table written by ``zoo.table`` from two seeds (FD 5 and 7 at every step; the TLCM sampler
    row on the line below the method's): a rerun of seed 0 with the same scores is inside every
    range; one whose 2-step FD is 7.5 is outside there, in both samplers' rows, and nowhere else."""
    from ablations import zoo_recheck

    def rows(fd2: float) -> list[dict]:
        return [{"steps": n, "alignment": 0.9, "fd": fd2 if n == 2 else 5.0} for n in (1, 2, 4, 8)]

    for seed, fd in ((0, 5.0), (1, 7.0)):
        _finished(tmp_path / "old", seed, "tcd", [{**r, "fd": fd} for r in rows(fd)])
    table = tmp_path / "zoo.md"
    table.write_text(
        f"## {zoo.MINIATURE_NAMES['unet']}\n\n" + zoo.table(tmp_path / "old", "unet", ["tcd"], 500)
    )
    cells = zoo_recheck.table_cells(table.read_text())
    assert cells["unet", "tcd", "tlcm", 2] == (0.9, 0.9, 0.9, 6.0, 5.0, 7.0) and len(cells) == 8
    _finished(tmp_path / "same", 0, "tcd", rows(5.0))
    assert zoo_recheck.compare(tmp_path / "same", table)[1:] == (16, 0)
    _finished(tmp_path / "moved", 0, "tcd", rows(7.5))
    found, checked, outside = zoo_recheck.compare(tmp_path / "moved", table)
    assert (checked, outside) == (16, 2)
    assert [(r[2], r[4]) for r in found if "outside" in r[7]] == [("own", "2"), ("tlcm", "2")]
