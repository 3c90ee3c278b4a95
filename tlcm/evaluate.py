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

from tlcm.errors import run_cli
from tlcm.models.base import BaseModel
from tlcm.sampling import ddim_timesteps, sample_latents
from tlcm.toy import MINIATURE_SD
from tlcm.toy.evaluation import evaluate_toy
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
    out: Path = Path("benchmarks/results/teacher_table.json"),
    device: str = "cpu",
) -> list[dict]:
    """Score the teacher (deterministic DDIM + CFG, trailing grid) for every (w, steps) pair.

    Writes ``out`` (json rows) and ``out`` with suffix .md (markdown table).
    """
    base = BaseModel.load(model, device=device)
    metrics = ToyMetrics()
    rows = []
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("teacher table", total=len(guidance_scales) * len(steps))
        for w in guidance_scales:
            for n in steps:
                start = time.time()

                def sampler(cond, uncond, noise, gen, w=w, n=n):
                    grid = ddim_timesteps(n, base.schedule.num_train_timesteps)
                    return sample_latents(base.denoiser(), base.schedule, cond, noise, grid, 0.0, uncond, w, gen)

                scores = evaluate_toy(base, sampler, samples_per_digit, metrics=metrics)
                rows.append(
                    {"w": w, "steps": n, "alignment": scores.alignment, "fd": scores.fd,
                     "seconds": round(time.time() - start, 1)}
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


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    run_cli(lambda: tyro.extras.subcommand_cli_from_dict({"teacher-table": teacher_table}))
