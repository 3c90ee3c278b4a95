"""Atomic checkpoints and exact resume.

Layout: ``out_dir/checkpoints/step-000123/`` holds student.safetensors, optimizer.pt, losses.pt
(loss-owned models and their optimizers) and state.json (phase index, step in phase). A folder
is written under a temporary name and renamed; ``checkpoints/latest`` (a file naming the folder)
is replaced atomically last, so it never points at a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tlcm.errors import TLCMError


@dataclass
class TrainState:
    """Where the loop is: phase ``phase_index`` has completed ``step`` optimizer steps."""

    phase_index: int
    step: int
    global_step: int


def save_checkpoint(
    out_dir: Path,
    state: TrainState,
    student: dict[str, torch.Tensor],
    optimizer: dict,
    losses: dict,
    keep: int = 2,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a checkpoint atomically and point ``latest`` at it; keep the newest ``keep`` ones.
    ``metadata`` goes into student.safetensors' header (e.g. the LoRA config)."""
    root = out_dir / "checkpoints"
    final = root / f"step-{state.global_step:07d}"
    tmp = root / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in student.items()}
    save_file(weights, tmp / "student.safetensors", metadata=metadata)
    torch.save(optimizer, tmp / "optimizer.pt")
    torch.save(losses, tmp / "losses.pt")
    (tmp / "state.json").write_text(json.dumps(asdict(state)))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer = root / ".latest.tmp"
    pointer.write_text(final.name)
    os.replace(pointer, root / "latest")
    for old in sorted(p for p in root.glob("step-*") if p != final)[: -keep or None]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The folder ``latest`` points at, or None when the run has no checkpoint."""
    pointer = out_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    folder = pointer.parent / pointer.read_text().strip()
    if not (folder / "state.json").is_file():
        raise TLCMError(f"{pointer} points at {folder}, which is not a complete checkpoint: delete {pointer}")
    return folder


def load_checkpoint(folder: Path, device: torch.device) -> tuple[TrainState, dict, dict, dict]:
    """(state, student weights, optimizer state, loss states) of a checkpoint folder (weights_only)."""
    state = TrainState(**json.loads((folder / "state.json").read_text()))
    student = load_file(folder / "student.safetensors", device=str(device))
    optimizer = torch.load(folder / "optimizer.pt", map_location=device, weights_only=True)
    losses = torch.load(folder / "losses.pt", map_location=device, weights_only=True)
    return state, student, optimizer, losses
