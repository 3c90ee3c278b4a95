"""Shared plumbing of the benchmark scripts: model folder choice, recipe shrinking, UNet call
counting, and writing ``benchmarks/results/<name>.json`` / ``.md`` with the run's provenance."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from tlcm.config import Recipe, smoke_recipe
from tlcm.toy import ASSET_DIR, MINIATURE_SD

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MINIATURE_UNET = MINIATURE_SD / "unet" / "diffusion_pytorch_model.safetensors"
BUILD_INFO = ASSET_DIR / "build_info.json"
console = Console() if sys.stdout.isatty() else Console(width=160)


def miniature_ready() -> bool:
    """The committed miniature pipeline is complete: its UNet weights and build_info.json exist
    (``python -m tlcm.toy.build`` writes build_info.json last, after the pipeline folder)."""
    return MINIATURE_UNET.is_file() and BUILD_INFO.is_file() and (MINIATURE_SD / "model_index.json").is_file()


def tiny_sd_folder() -> Path:
    """tlcm/toy/tiny.py's random SD pipeline saved once to a temp folder (the fallback)."""
    path = Path(tempfile.gettempdir()) / "tlcm-bench-tiny-sd"
    if not (path / "model_index.json").is_file():
        from tlcm.toy.tiny import tiny_sd_pipeline

        tiny_sd_pipeline().save_pretrained(path)
    return path


def resolve_model(arg: str) -> tuple[Path, str]:
    """``--model``: "auto" (miniature if built, else the tiny random pipeline), "miniature",
    "tiny", or a diffusers folder. Returns (folder, label)."""
    if arg == "auto":
        if miniature_ready():
            return MINIATURE_SD, "miniature"
        console.print(
            f"[yellow]miniature pipeline not built ({MINIATURE_UNET} or {BUILD_INFO} missing): "
            "using the tiny random pipeline of tlcm/toy/tiny.py"
        )
        return tiny_sd_folder(), "tiny-random"
    if arg == "miniature":
        return MINIATURE_SD, "miniature"
    if arg == "tiny":
        return tiny_sd_folder(), "tiny-random"
    return Path(arg), "custom"


def add_common_args(parser) -> None:
    """--model, --threads, --device: shared by every script."""
    parser.add_argument(
        "--model",
        default="auto",
        help='"auto" (miniature pipeline if built, else tiny random), "miniature", "tiny", or a '
        "diffusers folder (default: auto)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: fastest for tiny models on a busy 2-core machine)",
    )
    parser.add_argument("--device", default="cpu", help='torch device: "cpu" (default), "cuda", "auto"')


def setup_torch(threads: int, device: str) -> str:
    """Set the thread count; resolve "auto" to cuda/cpu. Returns the device string."""
    torch.set_num_threads(threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return device


def shrink(
    recipe: Recipe,
    model: Path,
    out_dir: Path,
    steps: int,
    batch_size: int,
    device: str,
    full_finetune: bool = False,
) -> Recipe:
    """``tlcm.config.smoke_recipe`` without resume (every benchmark run starts fresh)."""
    return smoke_recipe(
        recipe, model, out_dir, steps, batch_size, device, resume=False, full_finetune=full_finetune
    )


@dataclass
class CallLog:
    """Every UNet forward: (role, batch size, grad enabled, LoRA adapters enabled)."""

    calls: list[tuple[str, int, bool, bool | None]] = field(default_factory=list)
    role: str = "untagged"


def _lora_layer(unet: torch.nn.Module):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return next((m for m in unet.modules() if isinstance(m, BaseTunerLayer)), None)


def count_unet_calls(unets: list[torch.nn.Module], log: CallLog) -> list[Any]:
    """Forward pre-hooks on ``unets`` appending (role, batch, grad, adapters on) per call; returns
    the hook handles. The batch is the ``sample`` argument's first dimension."""
    handles = []
    for unet in unets:
        lora = _lora_layer(unet)

        def hook(module, args, kwargs, lora=lora):
            sample = args[0] if args else kwargs["sample"]
            adapters = None if lora is None else not lora.disable_adapters
            log.calls.append((log.role, int(sample.shape[0]), torch.is_grad_enabled(), adapters))

        handles.append(unet.register_forward_pre_hook(hook, with_kwargs=True))
    return handles


def tagged(factory: Callable[[], Callable], role: str, log: CallLog) -> Callable[[], Callable]:
    """Wrap a denoiser factory (``Student.denoiser`` / ``Student.teacher``) so that every UNet call
    made through its denoisers is logged under ``role``."""

    def make():
        inner = factory()

        def call(x, t, cond):
            previous, log.role = log.role, role
            try:
                return inner(x, t, cond)
            finally:
                log.role = previous

        return call

    return make


def provenance(device: str, threads: int, model: Path, model_label: str) -> dict[str, Any]:
    """Exact command, versions, thread count, device, date, load average of this run."""
    info = {
        "command": shlex.join(
            [
                Path(sys.executable).relative_to(ROOT).as_posix()
                if Path(sys.executable).is_relative_to(ROOT)
                else sys.executable,
                *sys.argv,
            ]
        ),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "requested_threads": threads,
        "device": f"{device} ({torch.cuda.get_device_name()})" if device.startswith("cuda") else device,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "model": str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else str(model),
        "model_label": model_label,
    }
    return info


def show_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print ``rows`` as a rich table."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col == columns[0] else "right")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    console.print(table)


def markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    """``rows`` as a GitHub markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(
    name: str,
    title: str,
    meta: dict[str, Any],
    tables: list[tuple[str, list[str], list[list]]],
    data: dict[str, Any],
    notes: list[str],
    out_dir: Path = RESULTS,
    quiet: bool = False,
) -> None:
    """Write OUT/<name>.json (meta + data + tables) and OUT/<name>.md (human-readable); OUT defaults
    to benchmarks/results."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": meta,
        "data": data,
        "tables": [{"title": t, "columns": c, "rows": r} for t, c, r in tables],
        "notes": notes,
    }
    (out_dir / f"{name}.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    md = [f"# {title}", "", f"Command: `{meta['command']}`", ""]
    md += [f"- {k}: {v}" for k, v in meta.items() if k != "command"]
    for t, c, r in tables:
        md += ["", *([f"## {t}", ""] if t != title else []), markdown_table(c, r)]
    if notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    (out_dir / f"{name}.md").write_text("\n".join(md) + "\n")
    if not quiet:
        console.print(f"wrote {out_dir / name}.json and .md")
