"""Evaluation on the miniature pipeline: ``python -m tlcm.evaluate teacher-table``.

The teacher table scores DDIM + CFG over guidance scales and step counts with the toy metrics
(alignment: digit-classifier accuracy on the prompt's digit, the CLIP-score analogue; FD: Frechet
distance in the classifier's feature space to the real digits, the FID analogue), on the fixed
evaluation set (50 prompts per digit, fixed seeds).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import tyro
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tlcm.errors import TLCMError, run_cli
from tlcm.models.base import BaseModel
from tlcm.models.student import Student
from tlcm.sampling import ddim_timesteps, sample_latents
from tlcm.toy import ASSET_DIR, MINIATURE_SD
from tlcm.toy.evaluation import evaluate_toy, student_scores
from tlcm.toy.metrics import ToyMetrics


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """Rows of dicts -> a GitHub markdown table over ``columns`` (floats with 3 decimals)."""
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def teacher_table(
    guidance_scales: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 8.0),
    steps: tuple[int, ...] = (1, 2, 4, 8, 25, 50),
    samples_per_digit: int = 50,
    model: Path = MINIATURE_SD,
    assets: Path = ASSET_DIR,
    out: Path = Path("benchmarks/results/teacher_table.json"),
    device: str = "cpu",
) -> list[dict]:
    """Score the teacher (deterministic DDIM + CFG, trailing grid) for every (w, steps) pair.

    ``assets``: the folder with the metric assets (digit classifier, reference statistics) of the
    build that made ``model``: a rebuild (``python -m tlcm.toy.build --out DIR``) is scored with
    ``--model DIR/miniature-sd --assets DIR``. Writes ``out`` (json rows) and ``out`` with suffix
    .md (markdown table).
    """
    base = BaseModel.load(model, device=device)
    metrics = ToyMetrics(assets)
    rows = []
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("teacher table", total=len(guidance_scales) * len(steps))
        for w in guidance_scales:
            for n in steps:
                start = time.time()

                def sampler(cond, uncond, noise, gen, w=w, n=n):
                    grid = ddim_timesteps(n, base.schedule.num_train_timesteps)
                    return sample_latents(
                        base.denoiser(), base.schedule, cond, noise, grid, 0.0, uncond, w, gen
                    )

                scores = evaluate_toy(base, sampler, samples_per_digit, metrics=metrics)
                rows.append(
                    {
                        "w": w,
                        "steps": n,
                        "alignment": scores.alignment,
                        "fd": scores.fd,
                        "seconds": round(time.time() - start, 1),
                    }
                )
                progress.advance(task)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown_table(rows, ["w", "steps", "alignment", "fd"]))
    table = Table("w", "steps", "alignment", "FD", title="teacher: DDIM + CFG")
    for r in rows:
        table.add_row(str(r["w"]), str(r["steps"]), f"{r['alignment']:.3f}", f"{r['fd']:.2f}")
    Console().print(table)
    return rows


def student(
    run: Path,
    steps: tuple[int, ...] = (1, 2, 4, 8),
    samples_per_digit: int = 50,
    model: Path = MINIATURE_SD,
    assets: Path = ASSET_DIR,
    device: str = "cpu",
) -> list[dict]:
    """Score a trained student (a tlcm run folder: its latest checkpoint) with the TLCM sampler
    (no CFG, gamma = 1, the authors' milestone timesteps); writes RUN/eval.json. ``assets``: the
    metric assets of ``model``'s build (as in teacher-table)."""
    base = BaseModel.load(model, device=device)
    trained = Student.from_run(base, run)
    rows = student_scores(base, trained.denoiser(), steps, samples_per_digit, ToyMetrics(assets))
    (run / "eval.json").write_text(json.dumps(rows, indent=1) + "\n")
    Console().print(markdown_table(rows, ["steps", "alignment", "fd"]))
    return rows


def compare(
    run: Path = Path("runs/tlcm-full"),
    teacher: Path = Path("benchmarks/results/teacher_table.json"),
    out: Path | None = None,
) -> str:
    """Markdown: the student (RUN/eval.json) vs the teacher at its best w for each step count."""
    for path in (run / "eval.json", teacher):
        if not path.is_file():
            raise TLCMError(f"{path} is missing: run `python -m tlcm.evaluate student/teacher-table` first")
    table = json.loads(teacher.read_text())
    best: dict[int, dict] = {}
    for r in table:
        if r["steps"] not in best or r["fd"] < best[r["steps"]]["fd"]:
            best[r["steps"]] = r
    rows = [
        {"model": "teacher DDIM+CFG", **{k: r[k] for k in ("steps", "w", "alignment", "fd")}}
        for r in best.values()
    ]
    rows += [
        {"model": "student (TLCM sampler)", "w": "-", **r}
        for r in json.loads((run / "eval.json").read_text())
    ]
    rows.sort(key=lambda r: (r["steps"], r["model"]))
    text = markdown_table(rows, ["model", "steps", "w", "alignment", "fd"])
    if out is not None:
        out.write_text(text)
    Console().print(text)
    return text


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    commands = {"teacher-table": teacher_table, "student": student, "compare": compare}
    run_cli(lambda: tyro.extras.subcommand_cli_from_dict(commands))
