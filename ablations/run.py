"""Train and score the ablation ladder:
``python -m ablations.run [--variants A B ...] [--seeds 0 1 2] [--jobs 2]``.

Each variant and seed trains in its own process (one torch thread each, ``--jobs`` at a time; a
row starts when its parent's student of the same seed exists) into ``runs/s<seed>/<variant>``, is
scored with the toy metrics at 1, 2, 4 and 8 steps, and the markdown table of alignment and FD
(mean over the seeds found on disk, with the min-max spread) goes to docs/ablations.md: the rows of
the variants run (and their parents) replace theirs, every other row stays. Finished runs
(eval.json present) are reused unless ``--fresh``: only when trained with this call's ``--steps``
(their ablation.json) and scored on its prompt count (their eval.json), as a table does not mix
either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import tyro
from rich.console import Console

from ablations.tables import spread, teacher_cell
from ablations.variants import VARIANTS, add_variants, unknown_variant, variant_recipe
from tlcm.checks import check_counts
from tlcm.errors import TLCMError, run_cli
from tlcm.train import import_flags, import_recipe_modules, module_name

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
    teacher: Path | None = None
    """A teacher table for the table's teacher row, scored on this call's prompt count (python -m
    tlcm.evaluate teacher-table --samples-per-digit N --out T.json); default: the committed one
    at that count, when there is one."""
    imports: Annotated[tuple[str, ...], tyro.conf.arg(name="import")] = ()
    """Modules to import first (``--import my_rows``: my_rows.py in this folder or on PYTHONPATH),
    as python -m tlcm.train --import does (their losses and PRESETS register); each one's
    ``VARIANTS``, a tuple of ablations.variants.Variant, joins the ladder's rows."""
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
        json.dumps(
            {
                "train_eval_seconds": time.time() - start,
                "trial_steps": args.steps,
                "samples_per_digit": args.samples_per_digit,
            }
        )
    )


def import_variants(modules: tuple[str, ...]) -> None:
    """Import ``modules`` as ``python -m tlcm.train --import`` does (``import_recipe_modules``) and
    add each one's ``VARIANTS`` to the ladder (``add_variants``); a module without them is refused."""
    if not modules:
        return
    import_recipe_modules(import_flags(modules))
    for name in modules:
        rows = getattr(sys.modules[module_name(name)], "VARIANTS", None)
        if rows is None:
            raise TLCMError(
                f"--import {name}: the module defines no VARIANTS: add a tuple of ablations.variants."
                'Variant, e.g. VARIANTS = (Variant("mlcd-skip10", "MLCD skip 10", ("mlcd",), '
                'mlcd={"skip": 10}),)'
            )
        add_variants(rows, f"--import {name}")


def _listed(items: list[str], most: int = 6) -> str:
    """``items`` joined by commas, the first ``most`` of them and how many more."""
    more = f" and {len(items) - most} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def _finished_to_rescore(args: Args) -> list[tuple[int, str]]:
    """(seed, variant) of the named variants' (all without --variants) finished runs at --seeds;
    the named ones missing are listed, and none at all is refused naming them."""
    names = args.variants or tuple(VARIANTS)
    _needed(names)  # an unknown name: one line with a suggestion
    pairs = [(seed, name) for seed in args.seeds for name in names]
    done = [(s, n) for s, n in pairs if (seed_runs(args.runs, s) / n / "eval.json").is_file()]
    missing = [str(seed_runs(args.runs, s) / n) for s, n in pairs if (s, n) not in done]
    if not done:
        raise TLCMError(
            f"--rescore: no finished run (eval.json) in {_listed(missing)}: train them first "
            f"(python -m ablations.run without --rescore) or check --runs {args.runs} and --seeds"
        )
    if missing and args.variants:
        console.print(f"[yellow]skipped[/] (no finished run): {_listed(missing)}")
    return done


def _rescore(args: Args) -> None:
    """Rewrite eval.json of every finished run of the named variants and seeds with the sampler of
    the variant's recipe (the run's checkpoint: its LoRA and grid M)."""
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student
    from tlcm.toy.scores import student_scores

    for seed, name in _finished_to_rescore(args):
        runs = seed_runs(args.runs, seed)
        run = runs / name
        recipe = variant_recipe(VARIANTS[name], runs)
        base = BaseModel.load(recipe.model.path)  # fresh: a student adds its adapter to the base
        trained = Student.from_run(base, run)
        grid = trained.config.grid.with_sampler(recipe.student.grid.gamma, recipe.student.grid.first_gamma)
        steps = grid.shown_steps
        rows = student_scores(base, trained.denoiser(), steps, args.samples_per_digit, student_grid=grid)
        (run / "eval.json").write_text(json.dumps(rows, indent=1) + "\n")
        console.print(f"[green]rescored[/] {name}, seed {seed} ({grid.describe_sampler()})")


def _needed(names: tuple[str, ...]) -> list[str]:
    """``names`` plus their ancestors, in ladder order."""
    want = set()
    for name in names or tuple(VARIANTS):
        if name not in VARIANTS:
            raise unknown_variant(name)
        while name:
            want.add(name)
            parent = VARIANTS[name].parent
            if parent is not None and parent not in VARIANTS:
                raise unknown_variant(parent, f"variant {name!r}: unknown parent")
            name = parent
    return [name for name in VARIANTS if name in want]


def _schedule(args: Args) -> None:
    named, needed = set(args.variants or VARIANTS), _needed(args.variants)
    for name in needed:  # a variant's misspelt phase, loss or field: here, not in a child's log
        variant_recipe(VARIANTS[name], args.runs)
    prompts = 10 * args.samples_per_digit
    todo = [
        (seed, n)
        for seed in args.seeds
        for n in needed
        if (args.fresh and n in named) or not (seed_runs(args.runs, seed) / n / "eval.json").is_file()
    ]
    _check_before_running(args, needed, todo, prompts)
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
                   "--steps", str(args.steps), *import_flags(args.imports)]  # fmt: skip
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
    text = table(args.runs, needed, prompts, args.teacher)
    found = write_sources(args.table.with_suffix(".json"), sources(args.runs, needed))
    note = "" if args.table == Args.table else legend(found, prompts, args.steps)  # docs/: its prose
    write_results(args.table, text, note)
    shown = f"{note}\n\n{text}" if note else text
    console.print(shown, highlight=False, soft_wrap=True, markup=False)  # soft_wrap: rows whole in a log
    console.print(
        f"merged these rows into {args.table}, their runs' scores into {args.table.with_suffix('.json')}"
    )


def _check_before_running(args: Args, needed: list[str], todo: list[tuple[int, str]], prompts: int) -> None:
    """Refuse, before any run starts, a --teacher scored on another prompt count than ``prompts``
    and what the table would mix with this call's rows: reused runs and rows kept in --table
    trained with another --steps or scored on another prompt count (``check_mix``)."""
    teacher_table(prompts, args.teacher)  # a --teacher of another prompt count: before any run
    check_mix(_kept(args, needed, todo), args.steps, prompts, f"runs in {args.runs}")
    table_json = args.table.with_suffix(".json")
    kept_rows = {k: v for k, v in read_sources(table_json).items() if k not in needed}
    check_mix(kept_rows, args.steps, prompts, f"rows kept in {args.table} ({table_json})")


def _kept(args: Args, needed: list[str], todo: list[tuple[int, str]]) -> dict:
    """The ``sources`` of the finished runs of ``needed`` that this call keeps: every seed folder
    of --runs (the table reads them all) less the runs in ``todo``."""
    retrained = {(f"s{seed}", name) for seed, name in todo}
    return {
        name: kept
        for name, seeds in sources(args.runs, needed).items()
        if (kept := {s: run for s, run in seeds.items() if (s, name) not in retrained})
    }


def prompt_counts(found: dict) -> dict[int, list[str]]:
    """Prompt count -> the runs ("<variant> s<seed>") of ``found`` (``sources``) scored on it; rows
    without a count (eval.json written before it was recorded) left out."""
    out: dict[int, list[str]] = {}
    for name, seeds in found.items():
        for seed, run in seeds.items():
            for count in sorted({r["prompts"] for r in run["eval"] if r.get("prompts")}):
                out.setdefault(count, []).append(f"{name} {seed}")
    return out


def describe_counts(counts: dict[int, list[str]]) -> str:
    """``prompt_counts`` in words: "20 prompts (a s0, b s1) and 30 prompts (c s0)"."""
    return " and ".join(f"{count} prompts ({_listed(runs)})" for count, runs in sorted(counts.items()))


def check_mix(found: dict, steps: int, prompts: int, where: str) -> None:
    """Refuse runs of ``found`` (``sources``; ``where`` names them) trained with another --steps
    than ``steps`` (their ablation.json's trial_steps; none recorded: 0, the recipe's) or scored
    on another prompt count than ``prompts``: their rows would not compare with this call's."""
    other = [
        f"{name} {seed} (--steps {run.get('trial_steps', 0)})"
        for name, seeds in found.items()
        for seed, run in seeds.items()
        if run.get("trial_steps", 0) != steps
    ]
    if other:
        raise TLCMError(
            f"{where}: {_listed(other)} trained with another --steps than this call's {steps} (0: the "
            "recipe's), so their rows would not compare: retrain them (--fresh, naming them in "
            "--variants and their seeds in --seeds) or use another --runs and --table"
        )
    counts = {c: runs for c, runs in prompt_counts(found).items() if c != prompts}
    if counts:
        raise TLCMError(
            f"{where}: scored on {describe_counts(counts)}, this call on {prompts} (--samples-per-digit "
            f"{prompts // 10}): FD depends on the prompt count, so they do not compare; score them again "
            f"(--rescore --samples-per-digit {prompts // 10}), pass the --samples-per-digit they were "
            "scored with, or use another --runs and --table"
        )


def legend(found: dict, prompts: int, steps: int) -> str:
    """The line above a trial table (not docs/ablations.md, whose prose says it): what a cell is,
    the prompt count, the seeds of its rows (``found``: the table's sources) and, for a --steps
    trial, that its rows are one."""
    seeds = sorted({seed for runs in found.values() for seed in runs}, key=lambda s: (len(s), s))
    text = (
        f"Cells: alignment / FD on {prompts} prompts at 2, 4, 8 and 1 sampling steps, the mean "
        f"(min-max) over the seeds on disk ({', '.join(seeds)})"
    )
    if steps:
        text += f"; rows are {steps}-step trials (--steps {steps}: every phase trained {steps} steps)"
    return text + "."


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


def teacher_table(prompts: int, teacher: Path | None = None) -> tuple[Path, dict[int, dict]] | None:
    """(file, ``best_teacher`` rows) of the teacher table at ``prompts`` prompts: ``teacher``
    (--teacher; refused when scored on another count) or the committed one (None: there is none)."""
    from tlcm.evaluate import prompt_count
    from tlcm.summary import best_teacher, committed_teacher
    from tlcm.toy import MINIATURE_SD

    if teacher is None:
        return committed_teacher(MINIATURE_SD, prompts)
    make = f"python -m tlcm.evaluate teacher-table --samples-per-digit {prompts // 10} --out {teacher}"
    if not teacher.is_file():
        raise TLCMError(f"--teacher {teacher} does not exist: make it ({make})")
    rows = json.loads(teacher.read_text())
    theirs = prompt_count(rows, teacher)
    if theirs is not None and theirs != prompts:
        raise TLCMError(
            f"--teacher {teacher} was scored on {theirs} prompts, the variants on {prompts}: FD depends "
            f"on the prompt count, so they do not compare; make one at {prompts} ({make}) or pass "
            f"--samples-per-digit {theirs // 10}"
        )
    return teacher, best_teacher(rows)


def teacher_row(prompts: int, teacher: Path | None = None) -> str:
    """The table's last row: the miniature teacher's (DDIM + CFG) alignment / FD at its lowest-FD w
    per step count, from the teacher table scored on ``prompts`` prompts (the variants' count;
    ``teacher_table``), or a row saying there is none."""
    from tlcm.summary import repo_path

    found = teacher_table(prompts, teacher)
    if found is None:
        return (
            f"| teacher | no committed teacher table at {prompts} prompts (--teacher T.json: python -m "
            f"tlcm.evaluate teacher-table --samples-per-digit {prompts // 10} --out T.json) "
            "| - | - | - | - | - | - | - |"
        )
    path, best = found
    cells = [teacher_cell(best, n) for n in (2, 4, 8, 1)]
    what = f"DDIM + CFG on {prompts} prompts, its lowest-FD w per step count ({repo_path(path)})"
    return f"| teacher | {what} | - | - | {' | '.join(cells)} | - |"


def table(runs: Path, names: list[str], prompts: int, teacher: Path | None = None) -> str:
    """Markdown table of the variants' alignment / FD at 2, 4, 8 and 1 steps, mean (min-max) over
    the seeds on disk; "-" where the variant's grid has fewer milestones (M = 1 samples in one step
    only); last, the teacher at the same step counts and ``prompts`` (``teacher_row``; ``teacher``:
    --teacher)."""
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
    lines.append(teacher_row(prompts, teacher))
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- ablation table: begin -->", "<!-- ablation table: end -->"


def _table_rows(text: str) -> dict[str, str]:
    """Variant name -> its line, for the rows (after the two header lines) of a ``table``."""
    return {line.split(" | ", 1)[0][2:]: line for line in text.splitlines()[2:] if line.startswith("| ")}


def merge_tables(old: str, new: str) -> str:
    """The table ``new`` plus the rows of ``old`` for variants it lacks, in ladder order (unknown
    variants last): a run of some variants updates their rows and keeps every other row."""
    rows = {**_table_rows(old), **_table_rows(new)}
    order = [n for n in VARIANTS if n in rows] + [n for n in rows if n not in VARIANTS]
    return "\n".join([*new.splitlines()[:2], *(rows[n] for n in order)]) + "\n"


def read_sources(path: Path) -> dict:
    """The ``sources`` kept beside a table (``write_sources``; {} when there is none)."""
    return json.loads(path.read_text()) if path.is_file() else {}


def write_sources(path: Path, new: dict) -> dict:
    """Merge ``new`` (``sources``) into the JSON file ``path``: each variant in ``new`` replaced
    whole, the others kept (as ``merge_tables`` keeps the rows of variants not run). Returns what
    it wrote."""
    merged = {**read_sources(path), **new}
    path.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
    return merged


def write_results(path: Path, text: str, legend: str = "") -> None:
    """Merge the table ``text`` into the one between the BEGIN/END markers of ``path``
    (``merge_tables``; create the file if needed), ``legend`` (when given) above it."""
    old = path.read_text() if path.is_file() else f"# Ablations\n\n{BEGIN}\n{END}\n"
    if BEGIN not in old or END not in old:
        old += f"\n{BEGIN}\n{END}\n"
    head, rest = old.split(BEGIN, 1)
    current, tail = rest.split(END, 1)
    rows = "\n".join(line for line in current.splitlines() if line.startswith("|"))  # no old legend
    above = f"{legend}\n\n" if legend else ""
    path.write_text(f"{head}{BEGIN}\n{above}{merge_tables(rows, text)}{END}{tail}")


def main(args: Args) -> None:
    import_variants(args.imports)
    check_counts({"--jobs": args.jobs, "--samples-per-digit": args.samples_per_digit})
    check_counts({"--steps": args.steps}, minimum=0)
    if not args.seeds:
        raise TLCMError("--seeds needs at least one seed (e.g. --seeds 0 1 2)")
    check_counts({"--seeds": min(args.seeds)}, minimum=0)
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
