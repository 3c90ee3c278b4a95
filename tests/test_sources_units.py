"""The ladder's and the zoo's tables get their runs' scores committed beside them (ablations/run.py
``sources`` / ``write_sources``, ablations/zoo.py ``sources`` in ``write_docs``): a reviewer found
the multi-seed tables' per-seed rows in no file of the repository (runs/ is not tracked)."""

from __future__ import annotations

import json

from test_zoo import _finished

from ablations import run as ladder
from ablations import zoo


def _ladder_run(runs, seed, name, fd, seconds=None):
    out = ladder.seed_runs(runs, seed) / name
    out.mkdir(parents=True)
    (out / "eval.json").write_text(json.dumps([{"steps": 2, "alignment": 0.9, "fd": fd}]))
    if seconds is not None:
        (out / "ablation.json").write_text(json.dumps({"train_eval_seconds": seconds}))


def test_the_ladders_sources_hold_every_seeds_rows_and_merge_like_the_table(tmp_path):
    """Every finished seed of the variants run, its eval rows and seconds, keyed by seed folder;
    a later run of one variant replaces that variant's entry and keeps the others'."""
    runs, out = tmp_path / "runs", tmp_path / "ablations.json"
    _ladder_run(runs, 0, "tlcm-full", 7.0, 100.0)
    _ladder_run(runs, 1, "tlcm-full", 7.5)
    _ladder_run(runs, 0, "mlcd", 9.0, 50.0)
    found = ladder.sources(runs, ["tlcm-full", "mlcd", "lcm"])
    assert found == {
        "tlcm-full": {
            "s0": {"eval": [{"steps": 2, "alignment": 0.9, "fd": 7.0}], "train_eval_seconds": 100.0},
            "s1": {"eval": [{"steps": 2, "alignment": 0.9, "fd": 7.5}]},
        },
        "mlcd": {"s0": {"eval": [{"steps": 2, "alignment": 0.9, "fd": 9.0}], "train_eval_seconds": 50.0}},
    }
    ladder.write_sources(out, found)
    rerun = tmp_path / "rerun"
    _ladder_run(rerun, 0, "mlcd", 8.0)
    ladder.write_sources(out, ladder.sources(rerun, ["mlcd"]))
    merged = json.loads(out.read_text())
    assert merged["tlcm-full"] == found["tlcm-full"]
    assert merged["mlcd"] == {"s0": {"eval": [{"steps": 2, "alignment": 0.9, "fd": 8.0}]}}


def test_the_zoo_docs_come_with_every_runs_cost_and_both_samplers_scores(tmp_path):
    runs = tmp_path / "runs"
    _finished(runs, "unet", 0, "tcd")
    _finished(runs, "unet", 2, "tcd", scores=[{"steps": 1, "alignment": 0.5, "fd": 9.0}])
    _finished(runs, "flow", 1, "tcd")
    args = zoo.Args(
        runs=runs, table=tmp_path / "zoo.md", plot=tmp_path / "a.png", frontier=tmp_path / "b.png"
    )
    text = zoo.write_docs(args)
    assert "`zoo.json`" in text
    written = json.loads((tmp_path / "zoo.json").read_text())
    assert set(written) == {"unet", "flow"} and set(written["unet"]["tcd"]) == {"s0", "s2"}
    seed2 = written["unet"]["tcd"]["s2"]
    assert seed2["run"]["seed"] == 2 and seed2["run"]["denoiser_evals"] == 1002
    assert seed2["own"] == seed2["tlcm"] == [{"steps": 1, "alignment": 0.5, "fd": 9.0}]
    assert written["flow"]["tcd"]["s1"]["run"]["seed"] == 1


def test_a_ladder_run_writes_its_sources_beside_its_table(tmp_path, monkeypatch):
    """``python -m ablations.run`` (scheduled, the children stubbed): the rows of the variants it
    ran go to the table's .json as well as its markdown."""
    from test_ablation_units import _ladder_args

    args, _ = _ladder_args(tmp_path, monkeypatch, variants=("mlcd+lcd-l2",), fresh=True)
    for name, fd in (("mds-states-l2", 9.0), ("mlcd+lcd-l2", 7.0)):
        _ladder_run(args.runs, 0, name, fd)
    ladder.main(args)
    written = json.loads(args.table.with_suffix(".json").read_text())
    assert written["mlcd+lcd-l2"]["s0"]["eval"][0]["fd"] == 7.0


def test_the_committed_ladder_rows_are_computed_from_their_committed_sources(tmp_path):
    """Every variant of docs/ablations.json: its row in docs/ablations.md is what ``table`` makes of
    those per-seed runs (written back as a runs folder), cell for cell, so the published means and
    ranges cannot drift from the scores they summarise."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    found = json.loads((docs / "ablations.json").read_text())
    runs = tmp_path / "runs"
    for name, seeds in found.items():
        for seed, run in seeds.items():
            out = runs / seed / name
            out.mkdir(parents=True)
            (out / "eval.json").write_text(json.dumps(run["eval"]))
            (out / "ablation.json").write_text(json.dumps({k: v for k, v in run.items() if k != "eval"}))
    published = ladder._table_rows("\n".join(
        line for line in (docs / "ablations.md").read_text().splitlines() if line.startswith("|")
    ))  # fmt: skip
    computed = ladder._table_rows(ladder.table(runs, list(found), 500))
    assert len(found) >= 10
    for name in found:
        assert published[name] == computed[name], name
