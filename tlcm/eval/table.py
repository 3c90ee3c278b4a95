"""The results table in the paper's layout (arXiv 2406.05768 Table 1; one row per model and step
count; FID, CLIP score, aesthetic, ImageReward, plus FID-T, PickScore and HPSv2.1 when scored) as
markdown and json, and an image grid of the same prompts across models (a row per model)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLUMNS = {
    "fid": ("FID", 2),
    "fid-t": ("FID-T", 2),
    "clip": ("CLIP score", 2),
    "pickscore": ("PickScore", 2),
    "hps": ("HPSv2.1", 4),
    "aesthetic": ("aesthetic", 2),
    "imagereward": ("ImageReward", 3),
}
"""Metric -> (column header, decimals), in the table's column order."""


def sort_rows(rows: list[dict]) -> list[dict]:
    """Rows grouped by model in order of first appearance, step counts ascending within a model."""
    first: dict[str, int] = {}
    for r in rows:
        first.setdefault(r["model"], len(first))
    return sorted(rows, key=lambda r: (first[r["model"]], r["steps"]))


def results_markdown(rows: list[dict], metrics: list[str]) -> str:
    """| model | steps | <metric headers> | rows; a metric a row lacks (None) shows as "-"."""
    metrics = [m for m in COLUMNS if m in metrics]
    header = ["model", "steps", *(COLUMNS[m][0] for m in metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in sort_rows(rows):
        cells = [str(r["model"]), str(r["steps"])]
        cells += ["-" if r.get(m) is None else f"{r[m]:.{COLUMNS[m][1]}f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(rows: list[dict], metrics: list[str], out: Path) -> tuple[Path, Path]:
    """Write ``out/results.md`` and ``out/results.json`` (the rows with every field); returns both."""
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "results.md", out / "results.json"
    md.write_text(results_markdown(rows, metrics))
    js.write_text(json.dumps(sort_rows(rows), indent=1) + "\n")
    return md, js


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def image_grid(
    rows: list[tuple[str, list[Path]]],
    out: Path,
    prompts: list[str] | None = None,
    thumb: int = 256,
    label_width: int = 200,
) -> Path:
    """A PNG grid: one row per (label, image files) (the same prompts in the same order in every
    row), each image resized to ``thumb`` px, the label written left of its row and, given
    ``prompts``, each column's prompt above it."""
    cols = max(len(files) for _, files in rows)
    pad, top = 4, 0 if prompts is None else thumb // 4
    size = (label_width + cols * (thumb + pad), top + len(rows) * (thumb + pad))
    grid = Image.new("RGB", size, "white")
    draw, font = ImageDraw.Draw(grid), _font(max(12, thumb // 14))
    small = _font(max(10, thumb // 20))
    for c, prompt in enumerate(prompts or []):
        text = _wrap(prompt, thumb // 8).split("\n")[:3]
        draw.multiline_text((label_width + c * (thumb + pad), 4), "\n".join(text), fill="black", font=small)
    for r, (label, files) in enumerate(rows):
        y = top + r * (thumb + pad)
        draw.multiline_text((8, y + 8), _wrap(label, 22), fill="black", font=font)
        for c, file in enumerate(files):
            with Image.open(file) as image:
                tile = image.convert("RGB").resize((thumb, thumb), Image.Resampling.LANCZOS)
            grid.paste(tile, (label_width + c * (thumb + pad), y))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out


def _wrap(text: str, width: int) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])
