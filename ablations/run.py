"""Train and score the ablation ladder:
``python -m ablations.run [--variants A B ...] [--seeds 0 1 2] [--jobs 2]``.

Each variant and seed trains in its own process (one torch thread each, ``--jobs`` at a time; a
row starts when its parent's student of the same seed exists) into ``runs/s<seed>/<variant>``, is
scored with the toy metrics at 1, 2, 4 and 8 steps, and the markdown table of alignment and FD
(mean over the seeds found on disk, with the min-max spread) goes to docs/ablations.md: the rows of
the variants run (and their parents) replace theirs, every other row stays. Finished runs
(eval.json present) are reused unless ``--fresh``.
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

from ablations.variants import ROWS, VARIANTS, variant_recipe
from tlcm.checks import check_counts
from tlcm.errors import TLCMError, run_cli

console = Console()


@dataclass
class Args:
    """Train and score ablation variants of recipes:tlcm-full on the miniature pipeline."""

    variants: tuple[str, ...] = ()
    """Variant names (default: the whole ladder); parents are trained first when missing."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds (``--recipes.runtime.seed``); each variant is trained once per seed."""
    runs: Path = Path("runs/ablations")
    """Folder of the variants' runs."""
    table: Path = Path("docs/ablations.md")
    """Markdown table updated at the end (the rows of the variants run replace theirs between the
    table markers of this file; the other rows stay); their runs' scores go beside it (.json)."""
    jobs: int = 2
    """Variants trained at once (one torch thread each)."""
    samples_per_digit: int = 50
    """Evaluation prompts per digit (x 10)."""
    fresh: bool = False
    """Retrain the named variants (all without --variants) even when they have results; their
    ancestors are trained only when missing."""
    rescore: bool = False
    """Score the named variants' (all without --variants) finished runs again with the current
    recipe's sampler, without training (after a change of tlcm-full's grid or sampler)."""
    steps: int = 0
    """A quick trial: train every phase of the variants run here (and of their missing parents)
    for this many steps (0: the recipe's). Its rows stand for that trial, not for the ablation:
    it needs --table (and --runs) other than the published docs/ablations.md (runs/ablations)."""
    only: str = ""
    """Internal: train and score this one variant in this process (the first of ``seeds``)."""


def seed_runs(runs: Path, seed: int) -> Path:
    """The folder of one seed's variant runs."""
    return runs / f"s{seed}"


def _train_one(args: Args) -> None:
    from tlcm.train import train_and_score

    variant, seed = VARIANTS[args.only], args.seeds[0]
    runs = seed_runs(args.runs, seed)
    recipe = variant_recipe(variant, runs)
    if args.steps:
        recipe = replace(recipe, phases={n: replace(p, steps=args.steps) for n, p in recipe.phases.items()})
    runtime = replace(recipe.runtime, eval_samples_per_digit=args.samples_per_digit, resume=False, seed=seed)
    start = time.time()
    steps = recipe.student.grid.shown_steps
    train_and_score(replace(recipe, runtime=runtime, inference_steps=steps))
    (runs / variant.name / "ablation.json").write_text(
        json.dumps({"train_eval_seconds": time.time() - start})
    )


def _rescore(args: Args) -> None:
    """Rewrite eval.json of every finished run of the named variants and seeds with the sampler of
    the variant's recipe (the run's checkpoint: its LoRA and grid M)."""
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student
    from tlcm.toy.scores import student_scores

    for seed in args.seeds:
        for name in args.variants or tuple(VARIANTS):
            runs = seed_runs(args.runs, seed)
            run = runs / name
            if not (run / "eval.json").is_file():
                continue
            recipe = variant_recipe(VARIANTS[name], runs)
            base = BaseModel.load(recipe.model.path)  # fresh: a student adds its adapter to the base
            trained = Student.from_run(base, run)
            grid = trained.config.grid.with_sampler(
                recipe.student.grid.gamma, recipe.student.grid.first_gamma
            )
            steps = grid.shown_steps
            rows = student_scores(base, trained.denoiser(), steps, args.samples_per_digit, student_grid=grid)
            (run / "eval.json").write_text(json.dumps(rows, indent=1) + "\n")
            console.print(f"[green]rescored[/] {name}, seed {seed} ({grid.describe_sampler()})")


def _needed(names: tuple[str, ...]) -> list[str]:
    """``names`` plus their ancestors, in ladder order."""
    want = set()
    for name in names or tuple(VARIANTS):
        if name not in VARIANTS:
            raise TLCMError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        while name:
            want.add(name)
            name = VARIANTS[name].parent
    return [v.name for v in ROWS if v.name in want]


def _schedule(args: Args) -> None:
    named, needed = set(args.variants or VARIANTS), _needed(args.variants)
    for name in needed:  # a variant's misspelt phase, loss or field: here, not in a child's log
        variant_recipe(VARIANTS[name], args.runs)
    todo = [
        (seed, n)
        for seed in args.seeds
        for n in needed
        if (args.fresh and n in named) or not (seed_runs(args.runs, seed) / n / "eval.json").is_file()
    ]
    running: dict[tuple[int, str], tuple[subprocess.Popen, float]] = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    while todo or running:
        for seed, name in list(todo):
            parent = (seed, VARIANTS[name].parent)
            if len(running) >= args.jobs or (parent in todo or parent in running):
                continue
            runs = seed_runs(args.runs, seed)
            runs.mkdir(parents=True, exist_ok=True)
            log = open(runs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
            cmd = [sys.executable, "-m", "ablations.run", "--only", name, "--runs", str(args.runs),
                   "--seeds", str(seed), "--samples-per-digit", str(args.samples_per_digit),
                   "--steps", str(args.steps)]  # fmt: skip
            running[seed, name] = (
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                time.time(),
            )
            todo.remove((seed, name))
            console.print(f"[cyan]started[/] {name}, seed {seed} (log {runs / f'{name}.log'})")
        time.sleep(2)
        for (seed, name), (proc, start) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[seed, name]
            if proc.returncode != 0:
                log = seed_runs(args.runs, seed) / f"{name}.log"
                raise TLCMError(f"variant {name}, seed {seed} failed (exit {proc.returncode}); see {log}")
            console.print(f"[green]done[/] {name}, seed {seed} in {time.time() - start:.0f} s")
    text = table(args.runs, needed, 10 * args.samples_per_digit)
    write_results(args.table, text)
    write_sources(args.table.with_suffix(".json"), sources(args.runs, needed))
    console.print(text, highlight=False, soft_wrap=True)  # soft_wrap: table rows stay whole in a log
    console.print(
        f"merged these rows into {args.table}, their runs' scores into {args.table.with_suffix('.json')}"
    )


def sources(runs: Path, names: list[str]) -> dict:
    """The finished runs of ``names`` on disk, as the committed source of their table rows:
    {variant: {"s<seed>": {"eval": its eval.json rows, "train_eval_seconds": ...}}}."""
    out: dict = {}
    for name in names:
        for path in sorted(runs.glob(f"s*/{name}/eval.json")):
            info = path.parent / "ablation.json"
            run = {"eval": json.loads(path.read_text())}
            if info.is_file():
                run.update(json.loads(info.read_text()))
            out.setdefault(name, {})[path.parent.parent.name] = run
    return out


def by_steps(seeds: dict) -> dict[int, list[dict]]:
    """Steps -> the eval rows of one variant's runs (its ``sources`` entry), seed by seed."""
    out: dict[int, list[dict]] = {}
    for run in seeds.values():
        for row in run["eval"]:
            out.setdefault(row["steps"], []).append(row)
    return out


def scores(runs: Path, name: str) -> dict[int, list[dict]]:
    """Steps -> the eval.json rows of ``name`` over every seed folder of ``runs`` that has one."""
    return by_steps(sources(runs, [name]).get(name, {}))


def spread(values: list[float], digits: int) -> str:
    """``mean`` for one value, ``mean (min-max)`` for several."""
    mean = f"{sum(values) / len(values):.{digits}f}"
    return mean if len(values) == 1 else f"{mean} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def teacher_row(prompts: int) -> str:
    """The table's last row: the miniature teacher's (DDIM + CFG) alignment / FD at its lowest-FD w
    per step count, from the committed teacher table scored on ``prompts`` prompts (the variants'
    count), or a row saying there is none."""
    from tlcm.summary import committed_teacher, repo_path
    from tlcm.toy import MINIATURE_SD

    found = committed_teacher(MINIATURE_SD, prompts)
    if found is None:
        return f"| teacher | no committed teacher table at {prompts} prompts | - | - | - | - | - | - | - |"
    path, best = found
    cells = [
        f"{best[n]['alignment']:.3f} / {best[n]['fd']:.2f} (w {best[n]['w']:g})" if n in best else "-"
        for n in (2, 4, 8, 1)
    ]
    what = f"DDIM + CFG, its lowest-FD w per step count ({repo_path(path)})"
    return f"| teacher | {what} | - | - | {' | '.join(cells)} | - |"


def table(runs: Path, names: list[str], prompts: int) -> str:
    """Markdown table of the variants' alignment / FD at 2, 4, 8 and 1 steps, mean (min-max) over
    the seeds on disk; "-" where the variant's grid has fewer milestones (M = 1 samples in one step
    only); last, the teacher at the same step counts and ``prompts`` (``teacher_row``)."""
    lines = [
        "| variant | what changes | parent | seeds | 2 steps | 4 steps | 8 steps | 1 step | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        seeds_of = sources(runs, [name]).get(name, {})  # each seed's eval.json and ablation.json, once
        rows = by_steps(seeds_of)
        seconds = [run["train_eval_seconds"] for run in seeds_of.values() if "train_eval_seconds" in run]
        v = VARIANTS[name]
        cells = [
            f"{spread([r['alignment'] for r in rows[n]], 3)} / {spread([r['fd'] for r in rows[n]], 2)}"
            if n in rows
            else "-"
            for n in (2, 4, 8, 1)
        ]
        seeds = len(rows[1]) if 1 in rows else 0
        mean_seconds = sum(seconds) / len(seconds) if seconds else float("nan")
        head = f"| {name} | {v.description} | {v.parent or '-'} | {seeds}"
        lines.append(f"{head} | {' | '.join(cells)} | {mean_seconds:.0f} |")
    lines.append(teacher_row(prompts))
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- ablation table: begin -->", "<!-- ablation table: end -->"


def _table_rows(text: str) -> dict[str, str]:
    """Variant name -> its line, for the rows (after the two header lines) of a ``table``."""
    return {line.split(" | ", 1)[0][2:]: line for line in text.splitlines()[2:] if line.startswith("| ")}


def merge_tables(old: str, new: str) -> str:
    """The table ``new`` plus the rows of ``old`` for variants it lacks, in ladder order (unknown
    variants last): a run of some variants updates their rows and keeps every other row."""
    rows = {**_table_rows(old), **_table_rows(new)}
    order = [v.name for v in ROWS if v.name in rows] + [n for n in rows if n not in VARIANTS]
    return "\n".join([*new.splitlines()[:2], *(rows[n] for n in order)]) + "\n"


def write_sources(path: Path, new: dict) -> None:
    """Merge ``new`` (``sources``) into the JSON file ``path``: each variant in ``new`` replaced
    whole, the others kept (as ``merge_tables`` keeps the rows of variants not run)."""
    old = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**old, **new}, indent=1, sort_keys=True) + "\n")


def write_results(path: Path, text: str) -> None:
    """Merge the table ``text`` into the one between the BEGIN/END markers of ``path``
    (``merge_tables``; create the file if needed)."""
    old = path.read_text() if path.is_file() else f"# Ablations\n\n{BEGIN}\n{END}\n"
    if BEGIN not in old or END not in old:
        old += f"\n{BEGIN}\n{END}\n"
    head, rest = old.split(BEGIN, 1)
    current, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{merge_tables(current.strip(), text)}{END}{tail}")


def main(args: Args) -> None:
    check_counts({"--jobs": args.jobs, "--samples-per-digit": args.samples_per_digit})
    check_counts({"--steps": args.steps}, minimum=0)
    published = Args()
    if args.steps and not args.only and (args.table == published.table or args.runs == published.runs):
        raise TLCMError(
            f"--steps {args.steps} trains a quick trial: pass --table and --runs other than "
            f"{published.table} and {published.runs} (e.g. --runs /tmp/abl --table /tmp/abl.md), "
            "so the published rows and their runs stay"
        )
    if args.only:
        _train_one(args)
    elif args.rescore:
        _rescore(args)
    else:
        _schedule(args)


if __name__ == "__main__":
    run_cli(lambda: main(tyro.cli(Args, prog="python -m ablations.run")))
