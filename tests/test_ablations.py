"""The ablation runner's table: a run of some variants updates their rows of docs/ablations.md and
keeps every other row."""

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
