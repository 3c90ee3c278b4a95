"""``python -m tlcm.evaluate score``: score generated folders and write the results table + grid.

Each metric's model is loaded once and scores every folder before the next one loads, so only one
metric network is in memory at a time. FID compares a folder's images with ``--reference`` (real
images, e.g. COCO val2017); FID-T with ``--teacher`` (the teacher's generated folder, same prompts
and noise). Inception statistics of the reference and the teacher are cached under
``OUT/fid_stats/`` and reused while their files are unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from rich.console import Console
from rich.progress import Progress

from tlcm.checks import check_device, check_out_dir
from tlcm.data.prompts import json_lines
from tlcm.errors import TLCMError
from tlcm.eval.fid import fid_from_stats, image_stats, load_inception
from tlcm.eval.table import COLUMNS, image_grid, results_markdown, write_results
from tlcm.eval.weights import MetricWeights

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
PAPER_METRICS = ("fid", "clip", "aesthetic", "imagereward")


@dataclass
class ScoreArgs:
    """Score generated image folders (python -m tlcm.evaluate generate) and tabulate them."""

    images: tuple[Path, ...]
    """Generated folders, one table row each (model and step count from their meta.json)."""
    out: Path = Path("eval/results")
    """Output folder: results.md, results.json, grid.png, fid_stats/."""
    metrics: tuple[str, ...] = PAPER_METRICS
    """Metrics: fid, fid-t, clip, pickscore, hps, aesthetic, imagereward (default: Table 1's)."""
    reference: Path | None = None
    """Real images for FID (e.g. COCO val2017/): every .png / .jpg / .webp in the folder."""
    teacher: Path | None = None
    """The teacher's generated folder, for FID-T."""
    weights: MetricWeights = field(default_factory=MetricWeights)
    batch_size: int = 32
    """Images per metric forward pass."""
    grid_prompts: int = 6
    """Prompts (columns) in grid.png."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Torch device of the metric networks (float32)."""


@dataclass
class Generated:
    """A generated folder: its table label and step count, image files and prompts (index order)."""

    folder: Path
    label: str
    steps: int
    files: list[Path]
    prompts: list[str]


def load_generated(folder: Path, flag: str = "--images") -> Generated:
    """A complete generate output folder, or a one-line TLCMError."""
    folder = Path(folder)
    if not (folder / "meta.json").is_file() or not (folder / "prompts.jsonl").is_file():
        raise TLCMError(f"{flag} {folder} is not a generate output (no meta.json / prompts.jsonl)")
    try:
        meta = json.loads((folder / "meta.json").read_text())
        records = [json.loads(line) for line in json_lines((folder / "prompts.jsonl").read_text()) if line]
    except ValueError as err:
        raise TLCMError(f"{folder}: meta.json or prompts.jsonl is not JSON ({err}): rerun generate") from err
    files = [folder / "images" / f"{r['index']:05d}.png" for r in records]
    done = sum(f.is_file() for f in files)
    if done < len(files):
        raise TLCMError(
            f"{folder} has {done} of {len(files)} images: finish it by rerunning its generate command"
        )
    return Generated(folder, meta["label"], meta["steps"], files, [r["prompt"] for r in records])


def image_files(folder: Path, flag: str) -> list[Path]:
    """The image files of a plain folder (or of a generate output), sorted; at least 2."""
    folder = Path(folder)
    if (folder / "meta.json").is_file():
        return load_generated(folder, flag).files
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES] if folder.is_dir() else []
    files.sort()
    if len(files) < 2:
        raise TLCMError(f"{flag} {folder} holds {len(files)} images (.png/.jpg/.webp): FID needs 2 or more")
    return files


def check_args(args: ScoreArgs) -> None:
    unknown = [m for m in args.metrics if m not in COLUMNS]
    if unknown or not args.metrics:
        raise TLCMError(f"--metrics {' '.join(unknown)}: choose from {', '.join(COLUMNS)}")
    if not args.images:
        raise TLCMError("--images needs at least one generated folder")
    if "fid" in args.metrics and args.reference is None:
        raise TLCMError("--metrics fid needs --reference FOLDER (real images, e.g. COCO val2017/)")
    if "fid-t" in args.metrics and args.teacher is None:
        raise TLCMError("--metrics fid-t needs --teacher FOLDER (the teacher's generated images)")
    if args.batch_size < 1 or args.grid_prompts < 0:
        raise TLCMError("--batch-size must be >= 1 and --grid-prompts >= 0")
    check_device(args.device, "--device")
    check_out_dir(args.out, "--out")


def _mean_score(scorer, run: Generated, batch_size: int, advance) -> float:
    total = 0.0
    for start in range(0, len(run.files), batch_size):
        images = []
        for file in run.files[start : start + batch_size]:
            with Image.open(file) as image:
                images.append(image.convert("RGB"))
        with torch.no_grad():
            total += float(scorer(images, run.prompts[start : start + batch_size]).double().sum())
        advance(len(images))
    return total / len(run.files)


def score(args: ScoreArgs) -> list[dict]:
    """Score every folder with every metric; writes results.md / .json and grid.png; returns the rows."""
    from tlcm.eval.metrics import SCORERS  # torchvision, CLIP: imported to score, not for --help

    check_args(args)
    runs = [load_generated(f) for f in args.images]
    rows = [
        {"model": r.label, "steps": r.steps, "images": len(r.files), "folder": str(r.folder)} for r in runs
    ]
    fids = [m for m in ("fid", "fid-t") if m in args.metrics]
    refs = {"fid": image_files(args.reference, "--reference") if "fid" in fids else []}
    refs["fid-t"] = image_files(args.teacher, "--teacher") if "fid-t" in fids else []
    cache = Path(args.out) / "fid_stats"
    passes = len(args.metrics) - len(fids) + bool(fids)  # FID and FID-T share one feature pass
    total = sum(len(r.files) for r in runs) * passes + sum(len(v) for v in refs.values())
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("scoring", total=total)
        advance = lambda n: progress.advance(task, n)  # noqa: E731
        if fids:
            net = load_inception(args.weights.inception, args.device)
            ref_stats = {m: image_stats(net, refs[m], args.batch_size, cache, advance) for m in fids}
            for run, row in zip(runs, rows, strict=True):
                stats = image_stats(net, run.files, args.batch_size, None, advance)
                for m in fids:
                    same = m == "fid-t" and run.folder.resolve() == Path(args.teacher).resolve()
                    row[m] = None if same else fid_from_stats(stats, ref_stats[m])
            del net
        for metric in (m for m in args.metrics if m not in fids):
            progress.update(task, description=f"scoring: {metric}")
            scorer = SCORERS[metric](args.weights, torch.device(args.device))
            for run, row in zip(runs, rows, strict=True):
                row[metric] = _mean_score(scorer, run, args.batch_size, advance)
            del scorer
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    write_results(rows, list(args.metrics), Path(args.out))
    shared = [i for i in range(min(len(r.prompts) for r in runs)) if len({r.prompts[i] for r in runs}) == 1]
    if args.grid_prompts and shared:
        cols = shared[: args.grid_prompts]  # the same prompts (and noise) in every row
        grid = [(f"{r.label}, {r.steps} steps", [r.files[i] for i in cols]) for r in runs]
        image_grid(grid, Path(args.out) / "grid.png", [runs[0].prompts[i] for i in cols])
    Console().print(results_markdown(rows, list(args.metrics)))
    return rows
