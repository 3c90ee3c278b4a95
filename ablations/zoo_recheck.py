"""Does a committed zoo table still hold? Compare the runs of a rerun (``python -m ablations.zoo
--runs R --table R/zoo.md --seeds S ...``) with the cells of docs/zoo.md: per method, sampler and
step count, each rerun seed's alignment and FD against the table's mean (min-max) over its seeds,
marked where it falls outside the range. The tables committed before 2026-12-07 keep no per-seed
source (docs/results.md), so a rerun seed can be checked against their range only; a seed of the
same code on the same CPU reproduces its own cell's value, so outside the range means the code,
library or machine changed what that seed trains.

    python -m ablations.zoo_recheck --runs /tmp/zoo-recheck --out benchmarks/results/zoo_recheck.md
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import tyro

from ablations.zoo_runs import MINIATURE_NAMES, every_run
from tlcm.errors import run_cli

CELL = re.compile(r"([\d.]+) \(([\d.]+)-([\d.]+)\) / ([\d.]+) \(([\d.]+)-([\d.]+)\)")
"""A table cell: alignment mean (min-max) / FD mean (min-max)."""
SAMPLER_OF_ROW = {"own": "own", "TLCM": "tlcm"}
"""A table row's sampler column (its first word) -> the runs' sampler key (ablations.zoo_runs)."""


def table_cells(text: str) -> dict[tuple[str, str, str, int], tuple[float, ...]]:
    """(miniature, method, sampler, steps) -> (alignment mean, min, max, FD mean, min, max) of every
    filled cell of a zoo table's text (its continuation rows carry the method of the row above)."""
    cells, miniature, method, columns = {}, None, None, []
    names = {title: key for key, title in MINIATURE_NAMES.items()}
    for line in text.splitlines():
        if line.startswith("## "):
            miniature = names.get(line[3:].strip())
            continue
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if parts[:2] == ["method", "sampler"]:
            columns = parts
            continue
        if miniature is None or not line.startswith("|") or len(parts) != len(columns) or parts[1] == "---":
            continue
        method = parts[0].split(" (")[0] or method
        sampler = SAMPLER_OF_ROW.get(parts[1].split(" ")[0])
        for column, cell in zip(columns, parts, strict=True):
            found = CELL.fullmatch(cell)
            if sampler and found and column.split(" ")[0].isdigit():
                cells[miniature, method, sampler, int(column.split(" ")[0])] = tuple(
                    map(float, found.groups())
                )
    return cells


def compare(runs: Path, table: Path) -> tuple[list[list[str]], int, int]:
    """(rows of the comparison, cells checked, values outside the table's range)."""
    cells = table_cells(table.read_text())
    methods = sorted({method for _, method, _, _ in cells})
    rows, checked, outside = [], 0, 0
    for _, miniature, seed, method, run in every_run(runs, methods):
        for sampler in SAMPLER_OF_ROW.values():
            for score in run.get(sampler, []):
                key = (miniature, method, sampler, score["steps"])
                if key not in cells:
                    continue
                a, a_lo, a_hi, f, f_lo, f_hi = cells[key]
                a_in = a_lo - 5e-4 <= score["alignment"] <= a_hi + 5e-4  # the table rounds to 3 decimals
                f_in = f_lo - 5e-3 <= score["fd"] <= f_hi + 5e-3  # and FD to 2
                checked += 2
                outside += (not a_in) + (not f_in)
                rows.append(
                    [
                        MINIATURE_NAMES[miniature].split(" ")[0],
                        method,
                        sampler,
                        str(seed),
                        str(score["steps"]),
                        f"{score['alignment']:.3f}" + ("" if a_in else " **outside**"),
                        f"{a:.3f} ({a_lo:.3f}-{a_hi:.3f})",
                        f"{score['fd']:.2f}" + ("" if f_in else " **outside**"),
                        f"{f:.2f} ({f_lo:.2f}-{f_hi:.2f})",
                    ]
                )
    return rows, checked, outside


@dataclass
class Args:
    """Compare a zoo rerun's runs with a committed zoo table."""

    runs: Path
    """The rerun's --runs folder."""
    table: Path = Path("docs/zoo.md")
    """The committed table."""
    out: Path | None = None
    """Write the comparison as markdown here too (default: print only)."""


def main(args: Args) -> str:
    rows, checked, outside = compare(args.runs, args.table)
    head = ["miniature", "method", "sampler", "seed", "steps", "alignment", "table", "FD", "table"]
    lines = [
        f"# Zoo recheck: the runs in {args.runs} against {args.table}",
        "",
        f"`python -m ablations.zoo_recheck --runs {args.runs} --table {args.table}` ({date.today()}). Each "
        "rerun seed's alignment and FD beside the table's mean (min-max) over its seeds; **outside**: "
        "beyond that range (allowing the table's rounding). Sampler: own (the method's StudentGrid) or "
        "tlcm (the shipped TLCM sampler).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    text = "\n".join(lines) + f"\n\n{checked} values checked, {outside} outside the table's range.\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return text


if __name__ == "__main__":
    run_cli(lambda: main(tyro.cli(Args)))
