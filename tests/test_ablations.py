"""The ablation runner's table: a run of some variants updates their rows of docs/ablations.md and
keeps every other row."""

import json
from pathlib import Path

from ablations.run import BEGIN, END, write_results

DOC = Path(__file__).parents[1] / "docs" / "ablations.md"
HEADER = "| variant | what changes | parent | seeds | 2 steps | 4 steps | 8 steps | 1 step | seconds |\n"
HEADER += "|---|---|---|---|---|---|---|---|---|\n"


def _rows(path: Path) -> list[str]:
    return path.read_text().split(BEGIN)[1].split(END)[0].strip().splitlines()[2:]


def test_a_partial_run_replaces_its_rows_and_keeps_the_others(tmp_path):
    doc = tmp_path / "ablations.md"
    doc.write_text(DOC.read_text())
    before = _rows(doc)
    row = "| mlcd+lcd-l2 | + stage 2 (sparse), l2: MLCD + LCD | mds-states-l2 | 1 | 1 / 2 | - | - | - | 9 |"
    write_results(doc, HEADER + row + "\n")
    after = _rows(doc)
    assert len(before) > 10 and len(after) == len(before)
    assert after == [row if r.startswith("| mlcd+lcd-l2 |") else r for r in before]
    assert doc.read_text().split(BEGIN)[0] == DOC.read_text().split(BEGIN)[0]  # the prose stays
    assert doc.read_text().split(END)[1] == DOC.read_text().split(END)[1]


def test_a_new_table_file_gets_the_rows_in_ladder_order(tmp_path):
    doc = tmp_path / "new.md"
    full = "| tlcm-full | x | mlcd+lcd-l2 | 1 | - | - | - | - | 1 |"
    stage1 = "| mds-states-l2 | x | - | 1 | - | - | - | - | 1 |"
    write_results(doc, HEADER + full + "\n")
    write_results(doc, HEADER + stage1 + "\n")
    assert _rows(doc) == [stage1, full]


def test_the_table_reads_every_seed_folder_and_puts_each_step_count_under_its_column(tmp_path):
    """runs/s<seed>/<variant>/eval.json per seed: mean (min-max) of alignment / FD under the
    header's 2, 4, 8, 1 steps; the seeds column counts seeds; seconds: their mean."""
    from ablations.run import seed_runs, table
    from ablations.variants import VARIANTS

    name = "mlcd+lcd-l2"
    for seed, (align, fd, seconds) in enumerate([(0.5, 10.0, 100), (0.7, 20.0, 300)]):
        run = tmp_path / f"s{seed}" / name
        run.mkdir(parents=True)
        rows = [
            {"steps": n, "prompts": 500, "alignment": align + n / 100, "fd": fd * n} for n in (1, 2, 4, 8)
        ]
        (run / "eval.json").write_text(json.dumps(rows))
        (run / "ablation.json").write_text(json.dumps({"train_eval_seconds": seconds}))
    assert seed_runs(tmp_path, 1) == tmp_path / "s1"  # where _train_one writes and table reads
    header, _, line, teacher = table(tmp_path, [name], 500).splitlines()
    assert header == HEADER.splitlines()[0]
    cells = dict(zip(header.strip("| ").split(" | "), line.strip("| ").split(" | "), strict=True))
    v = VARIANTS[name]
    assert (cells["variant"], cells["what changes"], cells["parent"]) == (name, v.description, v.parent)
    assert cells["seeds"] == "2" and cells["seconds"] == "200"
    assert cells["1 step"] == "0.610 (0.510-0.710) / 15.00 (10.00-20.00)"
    assert cells["2 steps"] == "0.620 (0.520-0.720) / 30.00 (20.00-40.00)"
    assert cells["8 steps"] == "0.680 (0.580-0.780) / 120.00 (80.00-160.00)"
    # last, the teacher at the same prompt count, its lowest-FD w per column (teacher_table.json)
    best = {
        r["steps"]: r
        for r in json.loads(
            (Path(__file__).resolve().parents[1] / "benchmarks/results/teacher_table.json").read_text()
        )
    }
    for r in json.loads(
        (Path(__file__).resolve().parents[1] / "benchmarks/results/teacher_table.json").read_text()
    ):
        best[r["steps"]] = min(best[r["steps"]], r, key=lambda x: x["fd"])
    t = dict(zip(header.strip("| ").split(" | "), teacher.strip("| ").split(" | "), strict=True))
    assert t["variant"] == "teacher" and "teacher_table.json" in t["what changes"]
    for column, n in (("2 steps", 2), ("1 step", 1), ("8 steps", 8)):
        assert t[column] == f"{best[n]['alignment']:.3f} / {best[n]['fd']:.2f} (w {best[n]['w']:g})"
    assert "no committed teacher table at 70 prompts" in table(tmp_path, [name], 70)
