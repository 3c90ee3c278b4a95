"""The sixth walkthrough's fixes to the method zoo (ablations/zoo.py), on hand-made run folders
(nothing trains: the plan, the subprocesses and matplotlib are fakes): a --table file the zoo did
not write is refused, not replaced; a trial is refused into the published docs/zoo.md and
runs/zoo; a run scored on another prompt count or trained with another budget or phase steps is
not reused; the table's prompt count and budget come from the runs; mixed seed counts are said;
without matplotlib no plots are claimed; --seeds is checked; an --import'ed preset joins
--methods."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import tyro
from fake_processes import FakeProcesses
from test_ablations14_units import _fake_training
from test_tooling_units import _finished

from ablations import zoo, zoo_plots
from tlcm.errors import TLCMError

ROWS = [{"steps": n, "alignment": 0.9, "fd": 5.0} for n in (1, 2, 4, 8)]


def _rows(prompts, fd=5.0, steps=(1, 2, 4, 8)):
    return [{"steps": n, "prompts": prompts, "alignment": 0.9, "fd": fd} for n in steps]


@pytest.fixture
def no_plots(monkeypatch):
    monkeypatch.setattr(zoo, "plot", lambda args, names: None)
    monkeypatch.setattr(zoo, "frontier", lambda args, names: None)


def _schedule(tmp_path, monkeypatch, names=("pcm",), budget=448.0, steps=None, **kwargs):
    """Args of a zoo call on the UNet miniature into tmp_path, its plan and subprocesses faked."""
    steps = steps or {n: {n: 7} for n in names}
    rates = {"unet": {n: dict.fromkeys(steps[n], 64.0) for n in names}}
    monkeypatch.setattr(zoo, "plan", lambda args: (budget, {"unet": steps}, rates))
    monkeypatch.setattr(zoo, "write_docs", lambda args, budget=None: "")
    procs = FakeProcesses().patch(monkeypatch, zoo)
    kwargs = {"seeds": (0,), "runs": tmp_path / "runs", "table": tmp_path / "zoo.md", **kwargs}
    return zoo.Args(methods=tuple(names), miniatures=("unet",), **kwargs), procs


# ---- --table: a file the zoo did not write; a trial into the published paths ----------------------


def test_a_table_file_the_zoo_did_not_write_is_refused_not_replaced(tmp_path, monkeypatch, no_plots):
    notes = tmp_path / "notes.md"
    notes.write_text("# My notes\n\nimportant text\n")
    write_docs = zoo.write_docs
    args, procs = _schedule(tmp_path, monkeypatch, table=notes)
    with pytest.raises(
        TLCMError, match=r"--table .*notes\.md is not a table the zoo wrote.*pass --table a new"
    ):
        zoo.main(args)
    assert procs.cmds == [] and notes.read_text() == "# My notes\n\nimportant text\n"
    _finished(tmp_path / "runs", 0, "pcm", ROWS, m=4)
    with pytest.raises(TLCMError, match="not a table the zoo wrote"):
        write_docs(zoo.Args(runs=tmp_path / "runs", table=notes))
    assert notes.read_text() == "# My notes\n\nimportant text\n"


def test_a_table_the_zoo_wrote_is_rewritten(tmp_path, no_plots):
    _finished(tmp_path / "runs", 0, "pcm", ROWS, m=4)
    args = zoo.Args(runs=tmp_path / "runs", table=tmp_path / "zoo.md")
    first = zoo.write_docs(args)
    assert first.startswith(zoo.TITLE + "\n") and zoo.GENERATED in first
    assert zoo.write_docs(args) == first  # its own file: replaced


def test_a_sources_file_without_its_table_is_refused(tmp_path, no_plots):
    (tmp_path / "zoo.json").write_text('{"mine": 1}')
    _finished(tmp_path / "runs", 0, "pcm", ROWS, m=4)
    with pytest.raises(TLCMError, match=r"zoo\.json exists without its table .*zoo\.md"):
        zoo.write_docs(zoo.Args(runs=tmp_path / "runs", table=tmp_path / "zoo.md"))
    assert (tmp_path / "zoo.json").read_text() == '{"mine": 1}'


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        ({"budget": 2000}, "--budget 2000"),
        ({"samples_per_digit": 2}, "--samples-per-digit 2"),
        ({"probe_steps": 2}, "--probe-steps 2"),
    ],
)
def test_a_trial_into_the_published_table_or_runs_is_refused(tmp_path, monkeypatch, flags, said):
    scheduled = []
    monkeypatch.setattr(zoo, "_schedule", scheduled.append)
    message = (
        f"{said} trains a quick trial: pass --table and --runs other than docs/zoo.md and runs/zoo "
        r"\(e\.g\. --runs /tmp/zoo --table /tmp/zoo\.md"
    )
    spelt_out = {"table": Path.cwd() / "docs" / "zoo.md", "runs": tmp_path / "z"}  # the same file
    for paths in ({}, {"runs": tmp_path / "z"}, {"table": tmp_path / "z.md"}, spelt_out):
        with pytest.raises(TLCMError, match=message):
            zoo.main(zoo.Args(**flags, **paths))
    with pytest.raises(TLCMError, match="trains a quick trial"):  # the published plot
        zoo.main(zoo.Args(**flags, runs=tmp_path / "z", table=tmp_path / "z.md", plot=zoo.Args().plot))
    assert scheduled == []
    zoo.main(zoo.Args(**flags, runs=tmp_path / "z", table=tmp_path / "z.md"))
    zoo.main(zoo.Args())  # the published settings: not a trial
    assert len(scheduled) == 2


def test_the_plots_go_beside_the_table_by_default(tmp_path):
    args = zoo.Args(table=tmp_path / "z.md")
    assert (args.plot, args.frontier) == (tmp_path / "z-fd.png", tmp_path / "z-frontier.png")
    published = zoo.Args()
    assert (str(published.plot), str(published.frontier)) == ("docs/zoo-fd.png", "docs/zoo-frontier.png")
    assert zoo.Args(plot=tmp_path / "p.png").plot == tmp_path / "p.png"


# ---- reuse only runs of this call's prompt count, budget and phase steps ---------------------------


def test_a_run_scored_on_another_prompt_count_is_not_reused(tmp_path, monkeypatch):
    args, procs = _schedule(tmp_path, monkeypatch, samples_per_digit=3)
    out = _finished(args.runs, 0, "pcm", _rows(20), m=4, phase_steps={"pcm": 7})
    with pytest.raises(TLCMError) as err:
        zoo.main(args)
    assert str(err.value).startswith(
        f"{out} was scored on 20 prompts, this call on 30 (--samples-per-digit 3)"
    )
    assert "pass --samples-per-digit 2 to reuse it" in str(err.value)
    assert "--methods pcm --seeds 0 --fresh" in str(err.value) and "another --runs" in str(err.value)
    assert procs.cmds == []
    zoo.main(replace(args, samples_per_digit=2))  # its prompt count: reused
    assert procs.cmds == []


def test_a_run_of_a_method_not_asked_for_is_checked_too(tmp_path, monkeypatch):
    """pcm at 20 prompts on disk, tcd asked for at 30: the table would show both."""
    args, procs = _schedule(tmp_path, monkeypatch, names=("tcd",), samples_per_digit=3)
    _finished(args.runs, 0, "pcm", _rows(20), m=4)
    with pytest.raises(TLCMError, match=r"s0/pcm was scored on 20 prompts, this call on 30"):
        zoo.main(args)
    assert procs.cmds == []


def test_a_run_trained_with_another_budget_is_not_reused(tmp_path, monkeypatch):
    args, procs = _schedule(tmp_path, monkeypatch, budget=4000.0)
    out = _finished(args.runs, 0, "pcm", _rows(500), m=4, phase_steps={"pcm": 7}, budget=2000)
    with pytest.raises(TLCMError) as err:
        zoo.main(args)
    assert str(err.value).startswith(f"{out} was trained with --budget 2000, this call plans 4000")
    assert "pass --budget 2000 to reuse it" in str(err.value) and procs.cmds == []


def test_a_run_with_other_phase_steps_is_not_reused(tmp_path, monkeypatch):
    """A run from before the budget was recorded: its phase steps tell."""
    args, procs = _schedule(tmp_path, monkeypatch, steps={"pcm": {"pcm": 13}})
    out = _finished(args.runs, 0, "pcm", ROWS, m=4, phase_steps={"pcm": 7})
    with pytest.raises(TLCMError) as err:
        zoo.main(args)
    assert str(err.value).startswith(
        f"{out} was trained with phase steps {{'pcm': 7}}, this call plans {{'pcm': 13}}"
    )
    assert procs.cmds == []


def test_fresh_retrains_a_run_of_other_settings(tmp_path, monkeypatch):
    args, procs = _schedule(tmp_path, monkeypatch, budget=4000.0, fresh=True)
    _finished(args.runs, 0, "pcm", _rows(500), m=4, phase_steps={"pcm": 7}, budget=2000)
    zoo.main(args)
    assert procs.values("--only") == ["unet/pcm"]


def test_each_run_gets_the_budget_and_records_it_with_its_prompt_count(tmp_path, monkeypatch):
    args, procs = _schedule(tmp_path, monkeypatch, budget=1234.4)
    zoo.main(args)
    assert procs.values("--budget") == ["1234"]
    _fake_training(monkeypatch)
    only = zoo.Args(
        only="unet/pcm", runs=tmp_path, samples_per_digit=3, phase_steps='{"pcm": 5}', budget=1234
    )
    zoo.main(only)
    info = json.loads((zoo.run_dir(tmp_path, "unet", 0, "pcm") / "zoo.json").read_text())
    assert (info["budget"], info["prompts"]) == (1234, 30)


def test_the_tables_prompt_count_and_budget_come_from_the_runs(tmp_path, no_plots):
    _finished(tmp_path, 0, "pcm", _rows(20), m=4, budget=2000)
    text = zoo.write_docs(zoo.Args(runs=tmp_path, table=tmp_path / "zoo.md", samples_per_digit=3), 4000.0)
    assert "alignment / FD on 20 prompts" in text and "30 prompts" not in text
    assert "| teacher | no committed teacher table at 20 prompts |" in text
    assert "Budget: 2,000." in text and "4,000" not in text


def test_the_tables_refuse_runs_of_two_prompt_counts(tmp_path, no_plots):
    _finished(tmp_path, 0, "pcm", _rows(20), m=4)
    _finished(tmp_path, 0, "tcd", _rows(30))
    with pytest.raises(TLCMError, match=r"scored on 20 prompts \(.*s0/pcm\) and on 30 \(.*s0/tcd\)"):
        zoo.write_docs(zoo.Args(runs=tmp_path, table=tmp_path / "zoo.md"))
    assert not (tmp_path / "zoo.md").exists()


# ---- seed counts and the methods shown -------------------------------------------------------------


def test_mixed_seed_counts_are_said_and_one_seed_is_not_apart(tmp_path, no_plots):
    """pcm: 1 seed, the lowest FD; tlcm-full: 2 seeds. The banner gives both counts, 'seeds apart'
    is n/a (one seed has no range) and the header names the two methods shown."""
    _finished(tmp_path, 0, "pcm", _rows(500, fd=3.0, steps=(1, 2, 4)), m=4)
    for seed in (0, 1):
        _finished(tmp_path, seed, zoo.BASE_METHOD, _rows(500, fd=6.0 + seed))
    text = zoo.write_docs(zoo.Args(runs=tmp_path, table=tmp_path / "zoo.md"))
    assert "**Preliminary: 1 seed(s)** for some methods, 2 for others (the seeds column)" in text
    assert "Methods shown: `tlcm-full`, `pcm` (of `recipes.zoo.ZOO`" in text
    assert "Every method of" not in text
    verdict = [line.split(" | ") for line in text.splitlines() if line.startswith("| 2 | pcm")]
    assert verdict and verdict[0][3] == "n/a"


def test_seeds_apart_is_read_where_both_have_several_seeds(tmp_path):
    for seed in (0, 1):
        _finished(tmp_path, seed, "pcm", _rows(500, fd=3.0 + seed, steps=(1, 2, 4)), m=4)
        _finished(tmp_path, seed, zoo.BASE_METHOD, _rows(500, fd=6.0 + seed))
    rows = zoo.verdict(tmp_path, "unet", [zoo.BASE_METHOD, "pcm"], 500).splitlines()[2:]
    assert rows[1].split(" | ")[3] == "yes"  # 2 steps: pcm's 4.0 < tlcm-full's 6.0


# ---- without matplotlib; the console copy ----------------------------------------------------------


def test_without_matplotlib_no_plots_are_claimed_and_the_notice_comes_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    clear = getattr(zoo_plots.pyplot, "cache_clear", lambda: None)
    clear()
    write_docs = zoo.write_docs
    args, procs = _schedule(tmp_path, monkeypatch, names=("pcm", "tcd"))
    monkeypatch.setattr(zoo, "write_docs", write_docs)  # the real one, after each run and at the end
    real_popen = procs.Popen

    def popen(cmd, **kwargs):  # each run finishes at once, as a run folder
        name = cmd[cmd.index("--only") + 1].split("/")[1]
        _finished(args.runs, 0, name, ROWS, m=8, phase_steps={name: 7})
        return real_popen(cmd, **kwargs)

    monkeypatch.setattr(zoo.subprocess, "Popen", popen)
    try:
        zoo.main(args)
    finally:
        clear()
    out = capsys.readouterr().out
    assert out.count("no matplotlib: no plots drawn") == 1
    last = out.strip().splitlines()[-1]
    assert "(no plots: no matplotlib)" in last and "png" not in last
    assert f"![alignment vs FD at 2 and 4 steps]({args.frontier.name})" in out  # no markup eaten


# ---- --seeds, unknown methods, --import -------------------------------------------------------------


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ((), "--seeds is empty: give at least one seed"),
        ((0, -1), "--seeds must be >= 0, got -1"),
        ((1, 1), "--seeds 1 1 names a seed twice"),
    ],
)
def test_bad_seeds_are_refused(tmp_path, monkeypatch, seeds, message):
    monkeypatch.setattr(zoo, "_schedule", lambda args: pytest.fail("scheduled"))
    with pytest.raises(TLCMError, match=message):
        zoo.main(zoo.Args(seeds=seeds, runs=tmp_path))


def test_an_unknown_method_says_how_to_add_one():
    with pytest.raises(TLCMError, match=r"unknown method 'mine'.*PRESETS dict and pass --import MODULE"):
        zoo.method_recipe("mine", "unet")


def test_an_imported_preset_joins_the_zoo_and_each_runs_process_imports_it(tmp_path, monkeypatch):
    from recipes import PRESETS

    (tmp_path / "w6_zoo_mine.py").write_text(
        "from recipes import PRESETS as P\n\nPRESETS = {'w6-mine': P['pcm']}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    args, procs = _schedule(tmp_path, monkeypatch, names=("w6-mine",))
    try:
        argv = ["--import", "w6_zoo_mine", "--methods", "w6-mine", "--miniatures", "unet", "--seeds", "0",
                "--runs", str(args.runs), "--table", str(args.table)]  # fmt: skip
        zoo.main(tyro.cli(zoo.Args, args=argv))
        assert zoo.method_recipe("w6-mine", "unet").phases.keys() == PRESETS["pcm"].phases.keys()
    finally:
        PRESETS.pop("w6-mine", None)
    (cmd,) = procs.cmds
    assert cmd[cmd.index("--only") + 1] == "unet/w6-mine" and cmd[-2:] == ["--import", "w6_zoo_mine"]
    _finished(args.runs, 0, "w6-mine", ROWS, m=4)
    assert zoo.table_methods(zoo.Args(runs=args.runs))[-1] == "w6-mine"  # its runs: in the tables
