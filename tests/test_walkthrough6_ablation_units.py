"""The sixth walkthrough's fixes to the ablation ladder (ablations/run.py), its plot
(ablations/plot.py) and its variants (ablations/variants.py): a table never mixes prompt counts or
--steps trials with other runs, the plot's prompt count comes from its data, misspelt variant
names (and parents) get a suggestion, --rescore and --seeds name what is missing, and a trial
table says what its cells are. Runs are fake folders of eval.json / ablation.json files; no
training."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from fake_processes import FakeProcesses
from test_ablation_units import _ladder_args
from test_tooling_units import _fake_matplotlib

from ablations import run as ladder
from ablations.variants import Variant
from tlcm.errors import TLCMError


def _run(runs: Path, seed: int, name: str, prompts: int | None, trial_steps: int | None = None) -> Path:
    """A finished ladder run s<seed>/<name>: eval.json scored on ``prompts`` (None: not recorded)
    and, unless ``trial_steps`` is None, the ablation.json ``_train_one`` writes."""
    out = runs / f"s{seed}" / name
    out.mkdir(parents=True)
    rows = [{"steps": n, "alignment": 0.9, "fd": 5.0 + n} for n in (1, 2, 4, 8)]
    rows = [{**r, "prompts": prompts} if prompts else r for r in rows]
    (out / "eval.json").write_text(json.dumps(rows))
    if trial_steps is not None:
        info = {"train_eval_seconds": 10.0, "trial_steps": trial_steps, "samples_per_digit": 2}
        (out / "ablation.json").write_text(json.dumps(info))
    return out


def _teacher(path: Path, prompts: int) -> Path:
    rows = [
        {"w": w, "steps": n, "prompts": prompts, "alignment": 0.9, "fd": fd + n}
        for n in (1, 2, 4, 8, 50)
        for w, fd in ((1.5, 10.0), (2.0, 8.0))
    ]
    path.write_text(json.dumps(rows))
    return path


# ---- a table of one prompt count (problem 2) ------------------------------------------------------


def test_reused_runs_scored_on_another_prompt_count_are_refused_before_any_run(tmp_path, monkeypatch):
    args, procs = _ladder_args(tmp_path, monkeypatch, variants=("mlcd+lcd-l2",), samples_per_digit=3)
    _run(args.runs, 0, "mds-states-l2", 20, trial_steps=0)
    with pytest.raises(TLCMError) as err:
        ladder.main(args)
    message = str(err.value)
    assert "mds-states-l2 s0" in message and "20 prompts" in message and "this call on 30" in message
    assert "--rescore --samples-per-digit 3" in message and "--samples-per-digit they were" in message
    assert procs.started() == [] and not args.table.exists()


def test_runs_scored_on_the_calls_prompt_count_or_none_recorded_are_reused(tmp_path, monkeypatch):
    args, procs = _ladder_args(tmp_path, monkeypatch, variants=("mlcd+lcd-l2",), samples_per_digit=3)
    _run(args.runs, 0, "mds-states-l2", 30, trial_steps=0)
    _run(args.runs, 1, "mds-states-l2", None)  # an older run: neither count nor steps recorded
    ladder.main(args)
    assert procs.started() == ["mlcd+lcd-l2"]


def test_rows_kept_in_the_table_at_another_prompt_count_are_refused(tmp_path, monkeypatch):
    args, procs = _ladder_args(tmp_path, monkeypatch, variants=("mds-states-l2",), samples_per_digit=3)
    old = ladder.sources(_run(tmp_path / "old", 0, "tlcm-paper", 20).parents[1], ["tlcm-paper"])
    ladder.write_sources(args.table.with_suffix(".json"), old)
    with pytest.raises(
        TLCMError, match=rf"rows kept in {args.table}.*20 prompts \(tlcm-paper s0\), this call on 30"
    ):
        ladder.main(args)
    assert procs.started() == []


def test_the_teacher_row_names_its_prompt_count_and_takes_a_teacher_table(tmp_path):
    row = ladder.teacher_row(30, _teacher(tmp_path / "t30.json", 30))
    assert row.startswith("| teacher | DDIM + CFG on 30 prompts, its lowest-FD w") and "(w 2)" in row
    assert "--teacher T.json" in ladder.teacher_row(30)  # no committed table at 30: how to make one
    with pytest.raises(TLCMError, match=r"--teacher .*t20.json was scored on 20 prompts, the variants on 30"):
        ladder.teacher_row(30, _teacher(tmp_path / "t20.json", 20))
    with pytest.raises(TLCMError, match=r"does not exist: make it \(python -m tlcm.evaluate teacher-table"):
        ladder.teacher_row(30, tmp_path / "missing.json")


def test_a_teacher_of_another_prompt_count_is_refused_before_any_run(tmp_path, monkeypatch):
    teacher = _teacher(tmp_path / "t.json", 500)
    args, procs = _ladder_args(tmp_path, monkeypatch, variants=("mds-states-l2",), samples_per_digit=3)
    with pytest.raises(TLCMError, match="was scored on 500 prompts"):
        ladder.main(replace(args, teacher=teacher))
    assert procs.started() == []


def test_a_teacher_table_of_the_calls_count_fills_the_teacher_row(tmp_path, monkeypatch):
    teacher = _teacher(tmp_path / "t.json", 20)
    args, _ = _ladder_args(tmp_path, monkeypatch, variants=("mds-states-l2",), samples_per_digit=2)
    _run(args.runs, 0, "mds-states-l2", 20, trial_steps=0)
    ladder.main(replace(args, teacher=teacher))
    (line,) = [x for x in args.table.read_text().splitlines() if x.startswith("| teacher |")]
    assert f"DDIM + CFG on 20 prompts, its lowest-FD w per step count ({teacher})" in line


# ---- --steps recorded and checked on reuse (problem 3) ---------------------------------------------


def test_a_run_records_its_trial_steps_and_prompt_count(tmp_path, monkeypatch):
    import tlcm.train

    monkeypatch.setattr(tlcm.train, "train_and_score", lambda r: r.runtime.out_dir.mkdir(parents=True))
    ladder.main(ladder.Args(only="mds-states-l2", steps=3, samples_per_digit=2, runs=tmp_path))
    info = json.loads((tmp_path / "s0" / "mds-states-l2" / "ablation.json").read_text())
    assert info["trial_steps"] == 3 and info["samples_per_digit"] == 2


@pytest.mark.parametrize(("made", "asked"), [(5, 3), (None, 3), (5, 0)])
def test_a_run_trained_with_other_steps_is_refused_naming_it_and_both_values(
    tmp_path, monkeypatch, made, asked
):
    """A 5-step trial reused by --steps 3 (or a full-length run, no trial_steps recorded, by a
    trial; or a trial by a full-length call) would put rows that do not compare in one table."""
    args, procs = _ladder_args(
        tmp_path, monkeypatch, variants=("mlcd+lcd-l2",), steps=asked, samples_per_digit=2
    )
    _run(args.runs, 0, "mds-states-l2", 20, trial_steps=made)
    with pytest.raises(TLCMError) as err:
        ladder.main(args)
    message = str(err.value)
    assert (
        f"mds-states-l2 s0 (--steps {made or 0}) trained with another --steps than this call's {asked}"
        in message
    )
    assert "--fresh" in message and "another --runs" in message
    assert procs.started() == []


def test_a_run_of_the_same_steps_is_reused(tmp_path, monkeypatch):
    args, procs = _ladder_args(tmp_path, monkeypatch, variants=("mlcd+lcd-l2",), steps=5, samples_per_digit=2)
    _run(args.runs, 0, "mds-states-l2", 20, trial_steps=5)
    ladder.main(args)
    assert procs.started() == ["mlcd+lcd-l2"]


def test_fresh_retrains_a_run_of_other_steps_instead_of_refusing_it(tmp_path, monkeypatch):
    args, procs = _ladder_args(
        tmp_path, monkeypatch, variants=("mds-states-l2",), steps=3, samples_per_digit=2, fresh=True
    )
    _run(args.runs, 0, "mds-states-l2", 20, trial_steps=5)
    ladder.main(args)
    assert procs.started() == ["mds-states-l2"]


# ---- the trial table's legend (problem 19) ----------------------------------------------------------


def test_a_trial_table_says_what_its_cells_are_its_prompts_seeds_and_steps(tmp_path, monkeypatch):
    args, _ = _ladder_args(tmp_path, monkeypatch, variants=("mds-states-l2",), steps=5, samples_per_digit=2)
    for seed in (0, 2):
        _run(args.runs, seed, "mds-states-l2", 20, trial_steps=5)
    ladder.main(args)
    ladder.main(args)  # a second call replaces the legend, never stacks it
    inside = args.table.read_text().split(ladder.BEGIN)[1].split(ladder.END)[0]
    legend, *_ = inside.strip().splitlines()
    assert legend.startswith("Cells: alignment / FD on 20 prompts") and "(s0, s2)" in legend
    assert "rows are 5-step trials (--steps 5" in legend
    assert inside.count("Cells:") == 1 and inside.count("| mds-states-l2 |") == 1
    assert inside.count("| variant |") == 1


def test_the_published_table_gets_no_legend_and_a_full_length_trial_no_steps_note():
    found = {"tlcm-full": {"s0": {}, "s10": {}, "s1": {}}}
    assert "(s0, s1, s10)" in ladder.legend(found, 500, 0) and "trial" not in ladder.legend(found, 500, 0)
    assert ladder.Args.table == Path("docs/ablations.md")  # the one _schedule writes without a legend


# ---- names (problems 15, 17) ------------------------------------------------------------------------


def test_a_misspelt_parent_is_one_line_naming_the_variant_and_close_names(monkeypatch):
    typo = Variant("mine", "-", ("lcd",), parent="mds-states-l2x")
    monkeypatch.setitem(ladder.VARIANTS, "mine", typo)
    with pytest.raises(
        TLCMError, match=r"variant 'mine': unknown parent 'mds-states-l2x' \(did you mean mds-states-l2\b"
    ):
        ladder._needed(("mine",))


def test_an_unknown_variant_gets_a_suggestion():
    with pytest.raises(TLCMError, match=r"unknown variant 'mds-state-l2' \(did you mean mds-states-l2\b"):
        ladder._needed(("mds-state-l2",))


def _plot_args(tmp_path, monkeypatch, teacher_prompts=20, **kwargs):
    from ablations import plot

    plt = _fake_matplotlib(monkeypatch)
    teacher = _teacher(tmp_path / "t.json", teacher_prompts)
    args = plot.Args(
        runs=tmp_path / "runs",
        teacher_table=teacher,
        out=tmp_path / "fd.png",
        frontier_out=tmp_path / "f.png",
    )
    return replace(args, **kwargs), plt


def test_the_plot_calls_an_unknown_row_unknown_with_a_suggestion(tmp_path, monkeypatch):
    from ablations import plot

    args, _ = _plot_args(tmp_path, monkeypatch, rows=("mlcd+lcd-l3",))
    with pytest.raises(TLCMError) as err:
        plot.main(args)
    assert "--rows: unknown variant 'mlcd+lcd-l3' (did you mean mlcd+lcd-l2" in str(err.value)
    assert "ablations.run --variants" not in str(err.value)


def test_the_plot_draws_a_retired_rows_runs(tmp_path, monkeypatch):
    from ablations import plot

    args, _ = _plot_args(tmp_path, monkeypatch, rows=("retired",))
    _run(args.runs, 0, "retired", 20)
    plot.main(args)


# ---- the plot's prompt count (problem 6) -------------------------------------------------------------


def test_the_plots_title_gives_the_prompt_count_of_its_data(tmp_path, monkeypatch):
    from ablations import plot

    args, plt = _plot_args(tmp_path, monkeypatch, rows=("tlcm-full",))
    _run(args.runs, 0, "tlcm-full", 20)
    plot.main(args)
    ((title,), _), *_ = plt.figs[0].called("suptitle")
    assert title == "Two-ink miniature, 20 prompts, fixed noise"


def test_the_plot_refuses_students_of_another_prompt_count_than_the_teacher(tmp_path, monkeypatch):
    from ablations import plot

    args, _ = _plot_args(tmp_path, monkeypatch, teacher_prompts=500, rows=("tlcm-full",))
    _run(args.runs, 0, "tlcm-full", 20)
    with pytest.raises(TLCMError) as err:
        plot.main(args)
    message = str(err.value)
    assert "scored on 20 prompts, --teacher-table" in message and "on 500" in message
    assert "teacher-table --samples-per-digit 2" in message and "--rescore --variants tlcm-full" in message


def test_the_plot_refuses_runs_of_several_prompt_counts(tmp_path, monkeypatch):
    """Also a row only the frontier draws (every row on disk)."""
    from ablations import plot

    args, _ = _plot_args(tmp_path, monkeypatch, rows=("tlcm-full",))
    _run(args.runs, 0, "tlcm-full", 20)
    _run(args.runs, 0, "tlcm-paper", 30)
    with pytest.raises(TLCMError, match=r"20 prompts \(tlcm-full s0\) and 30 prompts \(tlcm-paper s0\)"):
        plot.main(args)


# ---- --rescore and --seeds (problem 16) ------------------------------------------------------------


def test_rescore_without_any_finished_run_names_the_missing_runs(tmp_path):
    args = ladder.Args(variants=("mlcd+lcd-l2",), seeds=(7, 8), runs=tmp_path, rescore=True)
    with pytest.raises(TLCMError) as err:
        ladder.main(args)
    message = str(err.value)
    assert f"--rescore: no finished run (eval.json) in {tmp_path / 's7' / 'mlcd+lcd-l2'}" in message
    assert str(tmp_path / "s8" / "mlcd+lcd-l2") in message


def test_rescore_names_an_unknown_variant():
    with pytest.raises(TLCMError, match=r"unknown variant 'tlcm-fll' \(did you mean tlcm-full"):
        ladder.main(ladder.Args(variants=("tlcm-fll",), rescore=True))


def test_the_listing_of_many_runs_is_cut_short():
    assert ladder._listed([str(i) for i in range(9)]) == "0, 1, 2, 3, 4, 5 and 3 more"


@pytest.mark.parametrize(
    ("seeds", "message"), [((), "--seeds needs at least one seed"), ((0, -1), "--seeds must be >= 0, got -1")]
)
def test_an_empty_or_negative_seed_list_is_refused(tmp_path, monkeypatch, seeds, message):
    args, procs = _ladder_args(tmp_path, monkeypatch, variants=("mds-states-l2",), seeds=seeds)
    with pytest.raises(TLCMError, match=message):
        ladder.main(args)
    assert procs.started() == [] and not args.table.exists()


# ---- --import: a module's VARIANTS join the ladder (problem 10) -------------------------------------

ROWS_MODULE = """from ablations.variants import Variant

VARIANTS = (Variant("w6-skip10", "MLCD skip 10", ("mlcd",), mlcd={"skip": 10}),)
"""


@pytest.fixture
def rows_module(tmp_path, monkeypatch):
    """A module ``w6_rows`` on the path whose VARIANTS hold one row; the row and the module are
    gone again after the test."""
    import sys

    (tmp_path / "w6_rows.py").write_text(ROWS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "w6_rows"
    ladder.VARIANTS.pop("w6-skip10", None)
    sys.modules.pop("w6_rows", None)


def test_an_imported_modules_variants_are_scheduled_with_the_import(tmp_path, monkeypatch, rows_module):
    procs = FakeProcesses(polls=1).patch(monkeypatch, ladder)
    args = ladder.Args(
        imports=(rows_module,), variants=("w6-skip10",), runs=tmp_path / "r", table=tmp_path / "t.md"
    )
    ladder.main(args)
    (cmd,) = procs.cmds
    assert cmd[cmd.index("--only") + 1] == "w6-skip10" and cmd[cmd.index("--import") + 1] == rows_module
    assert "| w6-skip10 | MLCD skip 10 |" in args.table.read_text()


def test_an_imported_variant_trains_its_own_fields(tmp_path, monkeypatch, rows_module):
    import tlcm.train

    seen = []
    monkeypatch.setattr(
        tlcm.train, "train_and_score", lambda r: seen.append(r) or r.runtime.out_dir.mkdir(parents=True)
    )
    ladder.main(ladder.Args(imports=(rows_module,), only="w6-skip10", runs=tmp_path))
    (recipe,) = seen
    assert recipe.phases["mlcd"].losses["mlcd"].skip == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "X = 1\n",
            r"--import w6_bad: the module defines no VARIANTS: add a tuple of ablations.variants.Variant",
        ),
        (
            "VARIANTS = ('tlcm-full',)\n",
            r"--import w6_bad: VARIANTS holds a str, not an ablations.variants.Variant",
        ),
        (
            "from ablations.variants import Variant\nVARIANTS = (Variant('tlcm-full', '-', ('dmd',)),)\n",
            r"--import w6_bad: its variant 'tlcm-full' is already a ladder row: rename it",
        ),
    ],
)
def test_an_imported_module_without_proper_variants_is_refused(tmp_path, monkeypatch, text, message):
    import sys

    (tmp_path / "w6_bad.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "w6_bad", raising=False)
    try:
        with pytest.raises(TLCMError, match=message):
            ladder.main(ladder.Args(imports=("w6_bad",), runs=tmp_path / "r", table=tmp_path / "t.md"))
    finally:
        sys.modules.pop("w6_bad", None)


def test_an_imported_py_files_variants_join_the_ladder(tmp_path, monkeypatch):
    """--import path/to/rows.py (as tlcm.train takes it): the file's VARIANTS join the ladder."""
    import sys

    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "w6_path_rows.py").write_text(ROWS_MODULE.replace("w6-skip10", "w6-path-skip10"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        ladder.import_variants((str(folder / "w6_path_rows.py"),))
        assert ladder.VARIANTS["w6-path-skip10"].mlcd == {"skip": 10}
    finally:
        ladder.VARIANTS.pop("w6-path-skip10", None)
        sys.modules.pop("w6_path_rows", None)
