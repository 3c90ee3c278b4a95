"""Train and score the ablation ladder: ``python -m ablations.run [--variants A B ...] [--jobs 2]``.

Each variant trains in its own process (one torch thread each, ``--jobs`` at a time; a row starts
when its parent's student exists), is scored with the toy metrics at 1, 2, 4 steps, and the
markdown table of alignment and FD at 2 and 4 steps goes to docs/ablations.md. Finished variants
(RUN/eval.json present) are reused unless ``--fresh``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import tyro
from rich.console import Console

from ablations.variants import L2_CHAIN, LADDER, VARIANTS, variant_recipe
from tlcm.errors import TLCMError, run_cli

console = Console()


@dataclass
class Args:
    """Train and score ablation variants of recipes:tlcm-full on the miniature pipeline."""

    variants: tuple[str, ...] = ()
    """Variant names (default: the whole ladder); parents are trained first when missing."""
    runs: Path = Path("runs/ablations")
    """Folder of the variants' runs."""
    table: Path = Path("docs/ablations.md")
    """Markdown table written at the end (the results section of this file is replaced)."""
    jobs: int = 2
    """Variants trained at once (one torch thread each)."""
    samples_per_digit: int = 50
    """Evaluation prompts per digit (x 10)."""
    fresh: bool = False
    """Retrain the named variants (all without --variants) even when they have results; their
    ancestors are trained only when missing."""
    only: str = ""
    """Internal: train and score this one variant in this process."""


def _train_one(args: Args) -> None:
    from tlcm.train import train_and_score

    variant = VARIANTS[args.only]
    recipe = variant_recipe(variant, args.runs)
    runtime = replace(recipe.runtime, eval_samples_per_digit=args.samples_per_digit, resume=False)
    start = time.time()
    steps = tuple(n for n in (1, 2, 4) if n <= recipe.student.grid.num_milestones)
    train_and_score(replace(recipe, runtime=runtime, inference_steps=steps))
    (args.runs / variant.name / "ablation.json").write_text(
        json.dumps({"train_eval_seconds": time.time() - start})
    )


def _needed(names: tuple[str, ...]) -> list[str]:
    """``names`` plus their ancestors, in ladder order."""
    want = set()
    for name in names or tuple(VARIANTS):
        if name not in VARIANTS:
            raise TLCMError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        while name:
            want.add(name)
            name = VARIANTS[name].parent
    return [v.name for v in LADDER + L2_CHAIN if v.name in want]


def _schedule(args: Args) -> None:
    named = set(args.variants or VARIANTS)
    todo = [
        n
        for n in _needed(args.variants)
        if (args.fresh and n in named) or not (args.runs / n / "eval.json").is_file()
    ]
    args.runs.mkdir(parents=True, exist_ok=True)
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    while todo or running:
        for name in list(todo):
            parent = VARIANTS[name].parent
            if len(running) >= args.jobs or (parent in todo or parent in running):
                continue
            log = open(args.runs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
            cmd = [sys.executable, "-m", "ablations.run", "--only", name, "--runs", str(args.runs),
                   "--samples-per-digit", str(args.samples_per_digit)]  # fmt: skip
            running[name] = (
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                time.time(),
            )
            todo.remove(name)
            console.print(f"[cyan]started[/] {name} (log {args.runs / f'{name}.log'})")
        time.sleep(2)
        for name, (proc, start) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            if proc.returncode != 0:
                raise TLCMError(
                    f"variant {name} failed (exit {proc.returncode}); see {args.runs / f'{name}.log'}"
                )
            console.print(f"[green]done[/] {name} in {time.time() - start:.0f} s")
    text = table(args.runs, _needed(args.variants))
    write_results(args.table, text)
    console.print(text)


def table(runs: Path, names: list[str]) -> str:
    """Markdown table of the variants' alignment / FD at 2 and 4 steps (and 1 step); "-" where the
    variant's grid has fewer milestones (M = 1 samples in one step only)."""
    lines = [
        "| variant | what changes | parent | align@2 | FD@2 | align@4 | FD@4 | align@1 | FD@1 | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        rows = {r["steps"]: r for r in json.loads((runs / name / "eval.json").read_text())}
        info = runs / name / "ablation.json"
        seconds = json.loads(info.read_text())["train_eval_seconds"] if info.is_file() else float("nan")
        v = VARIANTS[name]
        cells = [
            f"{rows[n]['alignment']:.3f} | {rows[n]['fd']:.2f}" if n in rows else "- | -" for n in (2, 4, 1)
        ]
        lines.append(
            f"| {name} | {v.description} | {v.parent or '-'} | {' | '.join(cells)} | {seconds:.0f} |"
        )
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- ablation table: begin -->", "<!-- ablation table: end -->"


def write_results(path: Path, text: str) -> None:
    """Replace the table between the BEGIN/END markers of ``path`` (create the file if needed)."""
    old = path.read_text() if path.is_file() else f"# Ablations\n\n{BEGIN}\n{END}\n"
    if BEGIN not in old or END not in old:
        old += f"\n{BEGIN}\n{END}\n"
    head, rest = old.split(BEGIN, 1)
    path.write_text(f"{head}{BEGIN}\n{text}{END}{rest.split(END, 1)[1]}")


def main(args: Args) -> None:
    if args.only:
        _train_one(args)
    else:
        _schedule(args)


if __name__ == "__main__":
    run_cli(lambda: main(tyro.cli(Args)))
