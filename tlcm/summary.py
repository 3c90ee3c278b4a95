"""What ``python -m tlcm.train`` prints at the end: where the run's files went and (with
``--recipes.runtime.eval-samples-per-digit``) the student's toy scores next to the teacher's on the
same prompts, with what the metrics mean. The model card's scores section is the same text.

FD depends on the number of prompts (fewer images: a higher FD for the same model), so scores are
only set side by side at equal prompt counts: the teacher's come from a committed teacher table of
the bundled base model at the student's prompt count (``python -m tlcm.evaluate teacher-table``).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tlcm.toy import MINIATURE_SD, MINIATURE_SD3
from tlcm.user_modules import imported_flags

if TYPE_CHECKING:
    from tlcm.config import ModelConfig

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
"""The repository's committed results."""

TEACHER_TABLES = {
    MINIATURE_SD.resolve(): ("teacher_table.json", "teacher_table_200.json"),
    MINIATURE_SD3.resolve(): ("teacher_table_flow.json", "teacher_table_flow_500.json"),
}
"""Committed teacher tables (files of RESULTS) of each bundled base model, one per prompt count."""

DOCS_PROMPTS = 500
"""The prompt count of the tlcm-full scores quoted in docs/results.md."""

METRICS = (
    "alignment: the digit classifier's accuracy on the prompt's digit (higher is better; real digits "
    "0.995). FD: Frechet distance to the real digits in that classifier's feature space (lower is "
    "better; it is higher on fewer prompts)."
)


def repo_path(path: Path) -> str:
    """``path`` relative to the repository when inside it (the bundled miniatures:
    tlcm/toy/assets/...; no user's home folder in what is shown or shared), else as given."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def shell_path(path: Path) -> str:
    """``path`` as a command printed to this shell takes it: relative to the working directory when
    inside it, else absolute (a command quoted with a repository path fails elsewhere)."""
    resolved, here = Path(path).resolve(), Path.cwd().resolve()
    return str(resolved.relative_to(here)) if resolved.is_relative_to(here) else str(resolved)


def from_repo_path(name: str) -> Path:
    """A path as ``repo_path`` shows it: a relative one that does not exist from the working
    directory but does in the repository (a bundled miniature) resolves there."""
    path = Path(name)
    return REPO / path if not path.is_absolute() and not path.exists() and (REPO / path).exists() else path


def best_teacher(rows: list[dict]) -> dict[int, dict]:
    """Steps -> the teacher-table row with the lowest FD at that step count (the teacher's best w)."""
    best: dict[int, dict] = {}
    for r in rows:
        if r["steps"] not in best or r["fd"] < best[r["steps"]]["fd"]:
            best[r["steps"]] = r
    return best


def committed_teacher(model: Path, prompts: int | None) -> tuple[Path, dict[int, dict]] | None:
    """(file, ``best_teacher`` rows) of the committed teacher table of the bundled base ``model``
    scored on ``prompts`` prompts; None for another model or prompt count (or none recorded)."""
    for name in TEACHER_TABLES.get(Path(model).resolve(), ()) if prompts else ():
        path = RESULTS / name
        rows = json.loads(path.read_text()) if path.is_file() else []
        if rows and all(r.get("prompts") == prompts for r in rows):
            return path, best_teacher(rows)
    return None


def scores_table(scores: list[dict], teacher: dict[int, dict] | None) -> str:
    """Markdown: the student's alignment and FD per step count, beside the teacher's (when given)
    at its best w for that step count."""
    if teacher is None:
        lines = ["| steps | alignment | FD |", "|---|---|---|"]
        return "\n".join(lines + [f"| {r['steps']} | {r['alignment']:.3f} | {r['fd']:.2f} |" for r in scores])
    lines = [
        "| steps | alignment: student | teacher | FD: student | teacher | teacher's w |",
        "|---|---|---|---|---|---|",
    ]
    for r in scores:
        t = teacher.get(r["steps"])
        them = (f"{t['alignment']:.3f}", f"{t['fd']:.2f}", f"{t['w']:g}") if t else ("-", "-", "-")
        cells = (str(r["steps"]), f"{r['alignment']:.3f}", them[0], f"{r['fd']:.2f}", *them[1:])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fill_keeping_paths(text: str) -> str:
    """Prose wrapped at 100 columns at spaces only: a path in it (runs/tlcm-full/eval.json, or one
    over 100 characters) stays whole on one line, to be copied (textwrap breaks at hyphens and cuts
    long words by default)."""
    return textwrap.fill(text, 100, break_long_words=False, break_on_hyphens=False)


def scores_text(scores: list[dict], model: Path, run: Path, show: Callable[[Path], str] = repo_path) -> str:
    """The scores table with what it is: the prompt count, where the teacher's scores come from
    (or how to get them), what the metrics mean, and why docs/results.md's numbers differ; prose
    wrapped at 100 columns, commands on lines of their own; ``show`` writes the paths (the model card:
    ``repo_path``; the console: ``shell_path``)."""
    prompts = scores[0].get("prompts")
    found = committed_teacher(model, prompts)
    on = f"{prompts} prompts" if prompts else "the evaluation prompts (their count not recorded)"
    if found:
        path, teacher = found
        head = [
            f"Toy metrics (docs/toy.md) on the same {on} and noise: the student (TLCM sampler, no "
            "CFG) and the teacher (deterministic DDIM, or Euler on a flow model, + CFG at its best w "
            f"per step count; {show(path)}):"
        ]
    else:
        teacher, spd = None, (prompts or DOCS_PROMPTS) // 10
        head = [
            f"Toy metrics (docs/toy.md) of the student (TLCM sampler, no CFG) on {on}. There is no "
            "committed teacher table of this base model at this prompt count; to score the teacher "
            "and compare:",
            f"  python -m tlcm.evaluate teacher-table --model {show(model)} --steps 1 2 4 8 "
            f"--samples-per-digit {spd} --out T.json",
            f"  python -m tlcm.evaluate compare --run {show(run)} --teacher T.json",
        ]
    lines = [
        _fill_keeping_paths(head[0]),
        *head[1:],
        "",
        scores_table(scores, teacher),
        "",
        textwrap.fill(METRICS, 100),
    ]
    if Path(model).resolve() == MINIATURE_SD.resolve() and prompts != DOCS_PROMPTS:
        lines += [
            _fill_keeping_paths(
                f"docs/results.md quotes {DOCS_PROMPTS} prompts, hence its lower FDs (an FD from fewer "
                f"images is higher); to score the student on those (this replaces {run}/eval.json):"
            ),
            f"  python -m tlcm.evaluate student --run {show(run)}",
        ]
    return "\n".join(lines)


def _listing(path: Path) -> str:
    """A folder's entries, folders with a trailing / ("" if it is no folder)."""
    return ", ".join(sorted(p.name + "/" * p.is_dir() for p in path.iterdir())) if path.is_dir() else ""


def run_files(run: Path) -> list[tuple[Path, str]]:
    """(path, what it is) of the outputs of a finished run that exist."""
    student = run / "student"
    what = {
        student: f"the student ({_listing(student)}): its README.md says how to use it",
        run / "samples": "sample grids after each phase (one row per step count)",
        run / "metrics.jsonl": "losses and lr of the logged steps",
        run / "eval.json": "the student's toy scores",
        run / "checkpoints": "the training state (rerun the same command to resume; tlcm.export reads it)",
    }
    return [(path, text) for path, text in what.items() if path.exists()]


def run_summary(
    run: Path,
    model: ModelConfig,
    seconds: float,
    scores: list[dict] | None,
    evals: int | None = None,
    sharded: bool = False,
) -> str:
    """The end-of-run text of a finished run in folder ``run`` on the base ``model``: its files,
    the training cost (``evals``: denoiser evaluations in samples, when given), the scores
    (``scores_text``) and how to sample the student; ``sharded`` (FSDP2 over several processes):
    says why the sample grids and scores are missing and how to score the student. The printed
    commands carry this process's ``--import`` flags (tlcm/user_modules.py: a family, loss or
    preset of your own module)."""
    cost = f", {evals:,} denoiser evaluations (samples)" if evals is not None else ""
    lines = [f"Finished: {seconds:.0f} s of training{cost}. Everything is in {run}/:"]
    lines += [f"  {path.name + '/' * path.is_dir():<15} {text}" for path, text in run_files(run)]
    if scores:
        lines += ["", scores_text(scores, model.path, run, shell_path)]
    if sharded:
        lines += [
            "",
            "FSDP2: no sample grids or scores (one process cannot run the sharded network alone); "
            "score the exported student: "
            f"python -m tlcm.evaluate{imported_flags()} student --run {shell_path(run)}",
        ]
    prompt = "the number 3, handwritten" if Path(model.path).resolve() in TEACHER_TABLES else "your prompt"
    command = (
        f"python -m tlcm.sample{imported_flags()}"  # the run's modules (a family of your own, say)
        f" --student {shell_path(run)} --steps 4"  # the run's base model and T5 length
        f" --out {shell_path(run / 'samples.png')}"  # not outputs/ of the working directory
    )
    lines += ["", f'Sample it: {command} --prompt "{prompt}"']
    return "\n".join(lines)
