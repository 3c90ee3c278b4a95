"""The method zoo at equal compute: ``python -m ablations.zoo [--methods A B] [--miniatures unet flow]
[--seeds 0 1 2] [--budget N] [--jobs 2] [--dry-run]``.

Every method of ``recipes.zoo.ZOO`` plus ``tlcm-full`` and ``tlcm-paper`` (recipes PRESETS: our
default and the paper's four phases) is trained on the UNet
miniature ("unet", MINIATURE_SD) and the flow miniature ("flow", MINIATURE_SD3, as the
tlcm-full-flow preset swaps it in) with the same budget of denoiser evaluations
(``BaseModel.evaluations``: every network call of the training steps, in samples; a CFG call on 2B
counts 2B). The default budget is what tlcm-full's recipe costs on the UNet miniature.

Equal compute, how: each phase's evaluations per optimizer step are measured by a probe (the
engine's own ``build_phase`` / ``train_step`` for ``--probe-steps`` steps of every phase, seed 0,
cached in ``RUNS/<miniature>/probe.json``); a method's phase steps are then scaled by one factor so
that sum(steps x evaluations per step) meets the budget (``scale_steps``: within one step of the
dearest phase). Data-state consistency phases cost the same every step; MLCD's MDS states depend
on the drawn segments, so the probe's mean is an estimate: the table shows each run's counted
total (metrics.jsonl's ``denoiser_evals``).

Each (miniature, seed, method) trains in its own process (one torch thread, ``--jobs`` at a time)
into ``RUNS/<miniature>/s<seed>/<method>``, is scored at 1, 2, 4 and 8 steps (those <= its M;
above: "n/a") with the toy metrics on ``10 x --samples-per-digit`` prompts, with the method's own
sampler (its StudentGrid) and with the shipped TLCM sampler (``recipes.tlcm.MINIATURE_SAMPLER``'s
gammas on the method's grid). A finished run (zoo.json present) is reused unless ``--fresh``, and
only when it was scored on this call's prompt count and trained with its budget and phase steps
(else the call is refused, naming the run); the tables (docs/zoo.md) and the plots (beside the
table: docs/zoo-fd.png, docs/zoo-frontier.png; need matplotlib) are regenerated from every run on
disk. A method of an ``--import``ed module's PRESETS joins ``--methods`` by its preset name.

A quick trial (about a minute per run on one core; its rows stand for that trial only, so it is
refused into the published docs/zoo.md and runs/zoo)::

    python -m ablations.zoo --budget 2000 --probe-steps 2 --samples-per-digit 2 --miniatures unet \
        --methods tlcm-full pcm --seeds 0 --runs /tmp/z --table /tmp/z.md
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import tyro
from rich.console import Console

from ablations.tables import spread, teacher_cell
from ablations.zoo_checks import (
    GENERATED,
    TITLE,
    check_reuse,
    check_seeds,
    check_table,
    check_trial,
    table_prompts,
)
from ablations.zoo_plots import frontier, plot, pyplot
from ablations.zoo_runs import (
    MINIATURE_MODELS,
    MINIATURE_NAMES,
    SAMPLERS,
    STEPS,
    better_sampler,
    collect,
    finished_runs,
    method_means,
    run_dir,
    teacher_best,
)
from tlcm.checks import check_counts
from tlcm.errors import TLCMError, run_cli
from tlcm.train import import_flags, import_recipe_modules

console = Console()

BASE_METHOD = "tlcm-full"
"""The method whose recipe sets the default budget (on the UNet miniature)."""


@dataclass
class Args:
    """Train and score the method zoo at equal compute on the miniatures."""

    methods: tuple[str, ...] = ()
    """Methods (default: every method of recipes.zoo.ZOO, tlcm-full and tlcm-paper); any preset
    name, an ``--import MODULE``'s PRESETS included."""
    miniatures: tuple[str, ...] = ("unet", "flow")
    """Miniatures: unet (MINIATURE_SD), flow (MINIATURE_SD3)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds (``--recipes.runtime.seed``)."""
    budget: int = 0
    """Denoiser evaluations (samples) per run; 0: tlcm-full's recipe cost on the UNet miniature
    (its probe's evaluations per step x its phase steps)."""
    runs: Path = Path("runs/zoo")
    """Folder of the runs (``<miniature>/s<seed>/<method>``) and probes."""
    table: Path = Path("docs/zoo.md")
    """The markdown tables, regenerated from the runs on disk (a file the zoo did not write is
    refused, not replaced)."""
    plot: Path | None = None
    """FD vs steps per method (skipped without matplotlib); default: beside the table, its name with
    -fd.png (docs/zoo-fd.png)."""
    frontier: Path | None = None
    """Alignment vs FD at 2 and 4 steps per method, the teacher's w sweep beside (skipped without
    matplotlib); default: beside the table, its name with -frontier.png (docs/zoo-frontier.png)."""
    jobs: int = 2
    """Runs trained at once (one torch thread each)."""
    samples_per_digit: int = 50
    """Evaluation prompts per digit (x 10)."""
    probe_steps: int = 10
    """Optimizer steps per phase of the cost probe."""
    imports: Annotated[tuple[str, ...], tyro.conf.arg(name="import")] = ()
    """Modules to import first (``--import my_recipes``: my_recipes.py in this folder or on
    PYTHONPATH, or its path), as python -m tlcm.train --import does: their losses and PRESETS
    register, and a preset's name can join ``--methods``; each run's process imports them too."""
    fresh: bool = False
    """Retrain the selected runs even when finished (their folders are removed first)."""
    dry_run: bool = False
    """Print the budget, each method's phase steps and the planned runs; train nothing (the probes
    run if not cached)."""
    only: str = ""
    """Internal: train and score ``miniature/method`` in this process (the first of ``seeds``)."""
    phase_steps: str = ""
    """Internal: the JSON phase -> steps of ``--only``."""

    def __post_init__(self) -> None:
        """The plots' default paths: beside the table."""
        if self.plot is None:
            self.plot = self.table.with_name(f"{self.table.stem}-fd.png")
        if self.frontier is None:
            self.frontier = self.table.with_name(f"{self.table.stem}-frontier.png")


def methods() -> dict:
    """Method name -> recipe function: tlcm-full first, the paper's four phases (tlcm-paper), then
    recipes.zoo.ZOO."""
    from recipes.tlcm import tlcm_full, tlcm_paper
    from recipes.zoo import ZOO

    return {BASE_METHOD: tlcm_full, "tlcm-paper": tlcm_paper, **ZOO}


def on_miniature(recipe, miniature: str):
    """``recipe`` on the ``miniature``: "unet" unchanged, "flow" with tlcm-full-flow's model swap
    (MINIATURE_SD3, 8 T5 slots)."""
    if miniature == "unet":
        return recipe
    if miniature == "flow":
        model = replace(recipe.model, path=MINIATURE_MODELS["flow"], max_sequence_length=8)
        return replace(recipe, model=model)
    raise TLCMError(f"unknown miniature {miniature!r}; known: unet, flow")


def method_recipe(method: str, miniature: str, steps: dict[str, int] | None = None):
    """The Recipe of ``method`` on ``miniature`` with its phases' ``steps`` (default: the recipe's)."""
    from recipes import PRESETS

    table = methods()
    if method not in table and method not in PRESETS:
        raise TLCMError(
            f"unknown method {method!r}; known: {', '.join(table)} (or any preset). To add one, "
            "put its Recipe in a module's PRESETS dict and pass --import MODULE (run from its folder)"
        )
    recipe = on_miniature(table[method]() if method in table else PRESETS[method], miniature)
    recipe = replace(recipe, inference_steps=recipe.student.grid.shown_steps)  # those its M allows
    if steps:
        phases = {n: replace(p, steps=steps[n]) for n, p in recipe.phases.items()}
        recipe = replace(recipe, phases=phases)
    return recipe


def scale_steps(steps: dict[str, int], rates: dict[str, float], budget: float) -> dict[str, int]:
    """Phase steps scaled by one factor so that sum(steps x rates) meets ``budget``: each phase's
    scaled steps rounded down (at least 1), then steps added (largest remainder first) while a step
    brings the total closer to the budget. The total is within one step of the dearest phase (half
    of one, unless the 1-step floor overshoots)."""
    cost = sum(steps[n] * rates[n] for n in steps)
    if cost <= 0:
        raise ValueError(f"phases {steps} cost no denoiser evaluations")
    exact = {n: steps[n] * budget / cost for n in steps}
    out = {n: max(1, math.floor(v)) for n, v in exact.items()}
    left = budget - sum(out[n] * rates[n] for n in out)
    for n in sorted(exact, key=lambda n: exact[n] - math.floor(exact[n]), reverse=True):
        if left >= rates[n] / 2:
            out[n] += 1
            left -= rates[n]
    return out


def planned_cost(steps: dict[str, int], rates: dict[str, float]) -> float:
    """sum(steps x evaluations per step) of a plan."""
    return sum(steps[n] * rates[n] for n in steps)


def probe_rates(recipe, probe_steps: int) -> dict[str, float]:
    """Phase -> denoiser evaluations per optimizer step of ``recipe`` (seed 0), measured with the
    engine's ``build_phase`` / ``train_step`` over ``probe_steps`` steps of each phase in a
    throw-away folder (its phases in order, each from the previous one's student)."""
    from tlcm.engine import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        runtime = replace(
            recipe.runtime,
            out_dir=Path(tmp),
            sample_grid=False,
            eval_samples_per_digit=0,
            resume=False,
            seed=0,
        )
        trainer = Trainer(replace(recipe, runtime=runtime))
        rates, global_step = {}, 0
        for name, phase in recipe.phases.items():
            state = trainer.build_phase(name, phase, global_step)
            before = trainer.denoiser_evals
            for _ in range(probe_steps):
                trainer.train_step(state, global_step)
                global_step += 1
            rates[name] = (trainer.denoiser_evals - before) / probe_steps
    return rates


def probes(args: Args, miniature: str, names: list[str]) -> dict[str, dict[str, float]]:
    """Method -> phase -> evaluations per step on ``miniature``, cached in RUNS/<miniature>/probe.json
    (a method's entry is reused when it was probed with the same steps and phases)."""
    path = args.runs / miniature / "probe.json"
    cache = json.loads(path.read_text()) if path.is_file() else {}
    for name in names:
        recipe = method_recipe(name, miniature)
        entry = cache.get(name, {})
        if entry.get("probe_steps") == args.probe_steps and set(entry.get("rates", {})) == set(recipe.phases):
            continue
        console.print(f"[cyan]probing[/] {name} on {miniature} ({args.probe_steps} steps per phase)")
        cache[name] = {"probe_steps": args.probe_steps, "rates": probe_rates(recipe, args.probe_steps)}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache, indent=1) + "\n")
    return {name: cache[name]["rates"] for name in names}


def plan(args: Args) -> tuple[float, dict[str, dict[str, dict[str, int]]], dict]:
    """(budget, miniature -> method -> phase steps, miniature -> method -> rates)."""
    names = list(args.methods or methods())
    for name in names:
        method_recipe(name, "unet")  # unknown names fail before any probe
    rates = {m: probes(args, m, names) for m in args.miniatures}
    budget = float(args.budget)
    if budget <= 0:
        base = probes(args, "unet", [BASE_METHOD])[BASE_METHOD]
        recipe = method_recipe(BASE_METHOD, "unet")
        budget = planned_cost({n: p.steps for n, p in recipe.phases.items()}, base)
    steps = {
        m: {
            name: scale_steps(
                {n: p.steps for n, p in method_recipe(name, m).phases.items()}, rates[m][name], budget
            )
            for name in names
        }
        for m in args.miniatures
    }
    return budget, steps, rates


def _train_one(args: Args) -> None:
    """Train ``--only`` (miniature/method) at ``--phase-steps`` for the first seed; score it with
    its own sampler (RUN/eval.json) and the TLCM sampler; write RUN/zoo.json (the run's cost)."""
    from recipes.tlcm import MINIATURE_SAMPLER
    from tlcm.toy.scores import student_scores
    from tlcm.train import train_and_score

    miniature, method = args.only.split("/")
    seed, steps = args.seeds[0], json.loads(args.phase_steps)
    out = run_dir(args.runs, miniature, seed, method)
    recipe = method_recipe(method, miniature, steps)
    grid = recipe.student.grid
    scored = grid.shown_steps
    runtime = replace(recipe.runtime, out_dir=out, seed=seed, eval_samples_per_digit=args.samples_per_digit)
    cpu, wall = time.process_time(), time.time()
    run = train_and_score(replace(recipe, runtime=runtime, inference_steps=scored))
    if run.preempted:
        raise TLCMError(f"{out} was pre-empted: rerun to resume")
    tlcm_grid = grid.with_sampler(MINIATURE_SAMPLER.gamma, MINIATURE_SAMPLER.first_gamma)
    if tlcm_grid == grid:  # the method samples with the TLCM sampler already
        shutil.copyfile(out / SAMPLERS["own"], out / SAMPLERS["tlcm"])
    else:
        rows = student_scores(
            run.base, run.student.denoiser(), scored, args.samples_per_digit, student_grid=tlcm_grid
        )
        (out / SAMPLERS["tlcm"]).write_text(json.dumps(rows, indent=1) + "\n")
    info = {
        "method": method,
        "miniature": miniature,
        "seed": seed,
        "phase_steps": steps,
        "budget": args.budget,
        "prompts": 10 * args.samples_per_digit,
        "denoiser_evals": run.denoiser_evals,
        "train_seconds": run.train_seconds,
        "train_eval_wall_seconds": time.time() - wall,
        "train_eval_cpu_seconds": time.process_time() - cpu,
        "num_milestones": grid.num_milestones,
        "own_sampler": grid.describe_sampler(),
        "tlcm_sampler": tlcm_grid.describe_sampler(),
    }
    (out / "zoo.json").write_text(json.dumps(info, indent=1) + "\n")


def _schedule(args: Args) -> None:
    budget, steps, rates = plan(args)
    names = list(args.methods or methods())
    console.print(
        f"budget: {budget:,.0f} denoiser evaluations per run"
        + (" (given)" if args.budget > 0 else f" ({BASE_METHOD}'s recipe on the UNet miniature, probed)")
    )
    todo = []
    for m in args.miniatures:
        for name in names:
            cost = planned_cost(steps[m][name], rates[m][name])
            per = ", ".join(f"{n} {s} x {rates[m][name][n]:g}" for n, s in steps[m][name].items())
            console.print(f"  {m:5} {name:15} steps x evals/step: {per} = {cost:,.0f}", highlight=False)
    planned = [(m, seed, name) for seed in args.seeds for m in args.miniatures for name in names]
    for m, seed, name in planned:
        done = (run_dir(args.runs, m, seed, name) / "zoo.json").is_file()
        if done and not args.fresh:
            continue
        todo.append((m, seed, name))
    check_reuse(args, table_methods(args), budget, steps, todo)  # before any training, and in a dry run too
    for key in planned:
        verb = "train" if key in todo else "reuse"
        console.print(f"  {verb} {run_dir(args.runs, *key)}", markup=False, highlight=False)
    if args.dry_run:
        return
    running: dict[tuple, tuple[subprocess.Popen, float]] = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    while todo or running:
        while todo and len(running) < args.jobs:
            m, seed, name = todo.pop(0)
            out = run_dir(args.runs, m, seed, name)
            if args.fresh and out.exists():
                shutil.rmtree(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            log = open(out.parent / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
            cmd = [sys.executable, "-m", "ablations.zoo", "--only", f"{m}/{name}", "--runs", str(args.runs),
                   "--seeds", str(seed), "--samples-per-digit", str(args.samples_per_digit),
                   "--phase-steps", json.dumps(steps[m][name])]  # fmt: skip
            cmd += ["--budget", str(round(budget)), *import_flags(args.imports)]
            running[m, seed, name] = (
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                time.time(),
            )
            console.print(f"[cyan]started[/] {m} {name}, seed {seed} (log {out.parent / f'{name}.log'})")
        time.sleep(2)
        for key, (proc, start) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[key]
            m, seed, name = key
            if proc.returncode != 0:
                log = run_dir(args.runs, m, seed, name).parent / f"{name}.log"
                raise TLCMError(f"{m} {name}, seed {seed} failed (exit {proc.returncode}); see {log}")
            console.print(f"[green]done[/] {m} {name}, seed {seed} in {time.time() - start:.0f} s")
            write_docs(args, budget)  # the tables so far
    text = write_docs(args, budget)
    console.print(text, highlight=False, soft_wrap=True, markup=False)  # rows whole in a log
    plots = f"and its plots {args.plot}, {args.frontier}" if pyplot() else "(no plots: no matplotlib)"
    console.print(f"wrote {args.table} (every run in {args.runs}) {plots}", markup=False, soft_wrap=True)


def table_methods(args: Args) -> list[str]:
    """The tables' methods: every method of ``methods()``, then those of ``--methods`` and of the
    run folders on disk beyond them (presets, an ``--import``ed module's among them)."""
    names = list(methods())
    on_disk = sorted({p.parent.name for m in MINIATURE_NAMES for p in (args.runs / m).glob("s*/*/zoo.json")})
    return names + [n for n in dict.fromkeys([*args.methods, *on_disk]) if n not in names]


D_ACC_TAIL = 0.2
"""The last fraction of a run's steps over which the table averages its discriminator's accuracy."""


def disc_accuracy(runs: Path, miniature: str, method: str) -> list[tuple[float, float]]:
    """Per finished seed of a method with a GAN: its discriminator's held-out accuracy on real and
    on fake samples (``gan/d_acc_real``, ``gan/d_acc_fake`` in metrics.jsonl: logits before D's
    update on those samples), each averaged over the last ``D_ACC_TAIL`` of its logged steps; their
    mean is the balanced accuracy (0.5: chance). [] without a GAN."""
    out = []
    for info_path in sorted((runs / miniature).glob(f"s*/{method}/zoo.json")):
        metrics = info_path.parent / "metrics.jsonl"
        lines = metrics.read_text().splitlines() if metrics.is_file() else []
        rows = [r for r in map(json.loads, lines) if "gan/d_acc_real" in r]
        tail = rows[int(len(rows) * (1 - D_ACC_TAIL)) :]
        if tail:
            real, fake = (sum(r[f"gan/d_acc_{side}"] for r in tail) / len(tail) for side in ("real", "fake"))
            out.append((real, fake))
    return out


def disc_cell(accuracy: list[tuple[float, float]]) -> str:
    """The table's D acc cell: balanced accuracy mean (min-max) over the seeds, then the mean
    accuracy on each side ("-" without a GAN)."""
    if not accuracy:
        return "-"
    real, fake = zip(*accuracy, strict=True)
    balanced = [(r + f) / 2 for r, f in accuracy]
    return f"{spread(balanced, 2)}; real {sum(real) / len(real):.2f}, fake {sum(fake) / len(fake):.2f}"


def table(runs: Path, miniature: str, names: list[str], prompts: int) -> str:
    """Markdown: one row per method and sampler, alignment / FD per step count as mean (min-max)
    over the seeds on disk, "n/a" above the method's M; the teacher's best w per step count; the
    training cost (counted denoiser evaluations, CPU minutes of training and scoring); a GAN's
    held-out discriminator accuracy (``disc_accuracy``)."""
    columns = ["method", "sampler", "seeds", *(f"{n} step{'s' * (n > 1)}" for n in STEPS)]
    columns += ["denoiser evals", "train min", "CPU min", "D acc"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name in names:
        infos, scores = collect(runs, miniature, name)
        if not infos:
            continue
        m = infos[0]["num_milestones"]
        evals = spread([i["denoiser_evals"] for i in infos], 0)
        train_min = spread([i["train_seconds"] / 60 for i in infos], 1)
        cpu_min = spread([i["train_eval_cpu_seconds"] / 60 for i in infos], 1)
        d_acc = disc_cell(disc_accuracy(runs, miniature, name))
        for sampler in SAMPLERS:
            cells = []
            for n in STEPS:
                rows = scores[sampler].get(n)
                if n > m:
                    cells.append("n/a")
                elif not rows:
                    cells.append("-")
                else:
                    align, fd = [r["alignment"] for r in rows], [r["fd"] for r in rows]
                    cells.append(f"{spread(align, 3)} / {spread(fd, 2)}")
            what = (
                f"own ({infos[0]['own_sampler']})"
                if sampler == "own"
                else f"TLCM ({infos[0]['tlcm_sampler']})"
            )
            steps = ", ".join(f"{p} {s}" for p, s in infos[0]["phase_steps"].items())
            label = f"{name} ({steps})" if sampler == "own" else ""
            cost = (evals, train_min, cpu_min, d_acc) if sampler == "own" else ("", "", "", "")
            lines.append(f"| {label} | {what} | {len(infos)} | {' | '.join(cells)} | {' | '.join(cost)} |")
    found = teacher_best(miniature, prompts)
    if found:
        path, best = found
        cells = [teacher_cell(best, n) for n in STEPS]
        solver = "Euler" if miniature == "flow" else "DDIM"
        lines.append(
            f"| teacher ({path}) | {solver} + CFG, best w | - | {' | '.join(cells)} | - | - | - | - |"
        )
    else:
        lines.append(
            f"| teacher | no committed teacher table at {prompts} prompts |" + " - |" * (len(columns) - 2)
        )
    return "\n".join(lines) + "\n"


def verdict(runs: Path, miniature: str, names: list[str], prompts: int) -> str:
    """Markdown: per step count, the method with the lowest mean FD (over its seeds, either
    sampler) with its alignment; where ``BASE_METHOD`` ranks and whether the best's seeds all lie
    below all of BASE_METHOD's (the FD ranges do not overlap); the teacher's best; the methods
    whose mean FD is below the teacher's best (issue 23's science targets, read from the table)."""
    found = teacher_best(miniature, prompts)
    teacher = found[1] if found else {}
    means = {name: method_means(runs, miniature, name) for name in names}
    lines = [
        f"| steps | lowest mean FD (alignment) | {BASE_METHOD}: FD (alignment), rank | seeds apart | "
        "teacher best: FD (alignment) | below the teacher's FD |",
        "|---|---|---|---|---|---|",
    ]
    for n in STEPS:
        best = {name: b for name, table_ in means.items() if (b := better_sampler(table_, n))}
        if not best:
            continue
        order = sorted(best, key=lambda name: best[name][0])
        top = order[0]
        fd, align, sampler, seeds = best[top]
        ours = best.get(BASE_METHOD)
        if ours is None:
            base, apart = "-", "-"
        else:
            base = f"{ours[0]:.2f} ({ours[1]:.3f}), {order.index(BASE_METHOD) + 1} of {len(order)}"
            apart = "-" if top == BASE_METHOD else ("yes" if max(seeds) < min(ours[3]) else "no")
            if apart != "-" and min(len(seeds), len(ours[3])) < 2:
                apart = "n/a"  # one seed: no range to tell apart
        t = teacher.get(n)
        below = [name for name in order if t and best[name][0] < t["fd"]]
        cells = [
            str(n),
            f"{top} ({'own' if sampler == 'own' else 'TLCM'} sampler) {fd:.2f} ({align:.3f})",
            base,
            apart,
            f"{t['fd']:.2f} ({t['alignment']:.3f}, w {t['w']:g})" if t else "-",
            (", ".join(below) or "none") if t else "no teacher table",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sources(runs: Path, names: list[str]) -> dict:
    """Every finished run on disk, as the committed source of docs/zoo.md:
    {miniature: {method: {"s<seed>": {"run": its zoo.json, "<sampler>": its score rows}}}}."""
    out: dict = {}
    for miniature in MINIATURE_NAMES:
        for method in names:
            found = finished_runs(runs, miniature, method)
            if found:
                out.setdefault(miniature, {})[method] = found
    return out


def _budget_note(found: list[dict], budget: float | None) -> str:
    """The docs' budget sentence: the budget the runs ``found`` recorded (else the call's)."""
    budgets = sorted({i["budget"] for i in found if i.get("budget")}) or ([budget] if budget else [])
    return f" Budget: {', '.join(f'{b:,.0f}' for b in budgets)}." if budgets else ""


def write_docs(args: Args, budget: float | None = None) -> str:
    """Regenerate ``args.table`` from every run on disk, and beside it (``args.table`` with .json)
    every run's cost and scores (``sources``: what the tables are computed from, committed with
    them), and the plots (with matplotlib); returns the text."""
    check_table(args.table)
    names = table_methods(args)
    prompts = table_prompts(args, names)
    parts, seeds, shown = [], [], []
    for m in ("unet", "flow"):
        infos = {n: collect(args.runs, m, n)[0] for n in names}
        found = [i for n in names for i in infos[n]]
        if not found:
            continue
        seeds += [len(v) for v in infos.values() if v]
        shown += [n for n in names if infos[n] and n not in shown]
        evals = sorted({i["denoiser_evals"] for i in found})
        parts += [f"## {MINIATURE_NAMES[m]}", "", table(args.runs, m, names, prompts)]
        parts += [
            "Who is lowest (FD: the lower the better; each method at its better sampler). 'seeds apart': "
            f"'yes' where the lowest method's worst seed has a lower FD than {BASE_METHOD}'s best seed "
            f"(their seed ranges do not overlap), 'no' where they overlap, '-' where {BASE_METHOD} is the "
            "lowest, 'n/a' where either has one seed (no range); it does not compare the lowest method "
            "with the runner-up:",
            "",
        ]
        parts += [verdict(args.runs, m, names, prompts)]
        parts.append(
            f"Counted training cost per run: {evals[0]:,} to {evals[-1]:,} denoiser evaluations (samples)."
            + _budget_note(found, budget)
        )
        parts.append("")
    preliminary = seeds and min(seeds) < 3
    mixed = f" for some methods, {max(seeds)} for others (the seeds column)" if len(set(seeds)) > 1 else ""
    text = "\n".join(
        [
            TITLE,
            "",
            *(
                [
                    f"**Preliminary: {min(seeds)} seed(s)**{mixed} (the spread over 3 seeds is not yet "
                    "known; differences smaller than docs/ablations.md's seed spreads mean nothing).",
                    "",
                ]
                if preliminary
                else []
            ),
            f"{GENERATED} from the runs in "
            f"`{args.runs}` (do not edit by hand); every run's cost and scores are written beside it, "
            f"`{args.table.with_suffix('.json').name}`. The runs themselves are not in the repository "
            "(runs/ is not tracked), so a clean clone regenerates these tables only by rerunning them "
            "(`python -m ablations.zoo --seeds 0 1 2 --jobs 2`; its cost: docs/results.md), and any run "
            "rewrites them from the runs it finds on disk. A quick trial writes elsewhere: "
            "`python -m ablations.zoo --budget 2000 --probe-steps 2 --samples-per-digit 2 --miniatures "
            "unet --runs /tmp/z --table /tmp/z.md` (about a minute per run). "
            f"Methods shown: {', '.join(f'`{n}`' for n in shown) or 'none'} (of `recipes.zoo.ZOO`, "
            "`tlcm-full`, `tlcm-paper`: the paper's four phases, and any preset given to `--methods`), "
            "each trained with the same budget of denoiser "
            "evaluations (`BaseModel.evaluations`: every network call of the training steps, "
            "teacher, student, target and auxiliary networks, in samples; a CFG call on 2B counts "
            "2B). Each phase's evaluations per step were measured by a probe of the engine's training "
            "step (ablations/zoo.py) and the method's phase steps scaled by one factor to meet the "
            "budget (the phases' steps are in the method column); 'denoiser evals' is the count of "
            "the actual runs.",
            "",
            f"Cells: alignment / FD on {prompts} prompts (fixed noise), mean (min-max) over the seeds; "
            "'n/a': more steps than the student's M. Samplers: the method's own (its StudentGrid) and "
            "the shipped TLCM sampler (recipes.tlcm.MINIATURE_SAMPLER's gammas on the method's grid). "
            "Teacher: DDIM (flow: Euler) + CFG at its lowest-FD w per step count, same prompts. "
            "train min: wall minutes of the training phases; CPU min: process CPU minutes of training "
            "and both scorings (one torch thread; the machine was shared, so wall times are noisy). "
            "D acc (methods with a GAN): the discriminator's held-out accuracy, the mean of its "
            "accuracy on real and on fake samples from its logits before it updates on them, over the "
            f"last {D_ACC_TAIL:.0%} of the steps, mean (min-max) over the seeds, then each side's mean; "
            "0.5 is chance: a GAN row near 0.5 did not separate real from fake, and what it changed is "
            "not a discriminator's doing (docs/gan.md). A high real and a low fake accuracy: D calls "
            "most samples real, the fakes included.",
            "",
            f"Plots: `{args.plot.name}` (FD and alignment vs steps per method) and `{args.frontier.name}` "
            "(alignment vs FD at 2 and 4 steps: where each method sits on the teacher's w trade-off).",
            "",
            f"![FD and alignment vs steps]({args.plot.name})",
            "",
            f"![alignment vs FD at 2 and 4 steps]({args.frontier.name})",
            "",
            *parts,
        ]
    )
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(text + "\n")
    args.table.with_suffix(".json").write_text(json.dumps(sources(args.runs, names), indent=1) + "\n")
    plot(args, names)
    frontier(args, names)
    return text


def main(args: Args) -> None:
    import_recipe_modules(import_flags(args.imports))
    check_counts({"--jobs": args.jobs, "--samples-per-digit": args.samples_per_digit})
    check_counts({"--budget": args.budget}, minimum=0)
    check_seeds(args.seeds)
    if args.only:
        _train_one(args)
    else:
        unknown = [m for m in args.miniatures if m not in MINIATURE_NAMES]
        if unknown:
            raise TLCMError(f"unknown miniature(s) {', '.join(unknown)}; known: {', '.join(MINIATURE_NAMES)}")
        check_trial(args)
        check_table(args.table)
        _schedule(args)


if __name__ == "__main__":
    run_cli(lambda: main(tyro.cli(Args, prog="python -m ablations.zoo")))
