"""Atomic checkpoints, exact resume, and a fallback when the newest checkpoint is damaged.

Layout: ``out_dir/checkpoints/step-0000123/`` holds student.safetensors (trainable weights, with
the LoRA config and student grid in its header), optimizer.pt, losses.pt (loss-owned models, their
optimizers, DPO references, EMA targets) and state.json (loop position + the recipe's phases).

Guarantees:
- A folder is written under a temporary name and renamed; ``checkpoints/latest`` (a file naming
  the folder) is replaced atomically last. No folder that ``latest`` names is ever removed: a save
  at a global step that already has a folder (the phase-end save right after a periodic one, a
  SIGTERM save right after either) only replaces that folder's state.json, atomically (the weights
  of one global step are the same).
- ``load_latest`` falls back to the newest loadable checkpoint, saying which one and why, when the
  one ``latest`` names is missing or damaged (truncated file, bad JSON); damaged folders are
  renamed ``damaged-step-...`` (kept for inspection, never resumed from or overwritten).
- ``nonfinite_paths`` lets the engine refuse to save NaN/inf state (and the loader refuse NaN/inf
  model weights).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from tlcm.errors import TLCMError


@dataclass
class TrainState:
    """Where the loop is: phase ``phase_index`` has completed ``step`` optimizer steps."""

    phase_index: int
    step: int
    global_step: int


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``phases``: [(name, steps), ...] of the recipe that wrote it (empty for
    checkpoints older than this field); ``metadata``: student.safetensors' header."""

    folder: Path
    state: TrainState
    student: dict[str, torch.Tensor]
    optimizer: dict
    losses: dict
    metadata: dict[str, str] = field(default_factory=dict)
    phases: list[tuple[str, int]] = field(default_factory=list)

    @property
    def finished_phase(self) -> bool:
        """True when the checkpoint sits at the end of a phase (not mid-phase, not pre-empted)."""
        if self.state.step == 0:
            return True
        index = self.state.phase_index
        return index < len(self.phases) and self.state.step == self.phases[index][1]


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def save_checkpoint(
    out_dir: Path,
    state: TrainState,
    student: dict[str, torch.Tensor],
    optimizer: dict,
    losses: dict,
    keep: int = 2,
    metadata: dict[str, str] | None = None,
    phases: list[tuple[str, int]] | None = None,
) -> Path:
    """Write a checkpoint atomically and point ``latest`` at it; keep the newest ``keep`` ones.
    ``metadata`` goes into student.safetensors' header (e.g. the LoRA config); ``phases`` is the
    recipe's [(name, steps), ...], checked on resume."""
    root = out_dir / "checkpoints"
    final = root / f"step-{state.global_step:07d}"
    record = {**asdict(state), "phases": [list(p) for p in phases or []]}
    if (final / "state.json").is_file():  # same global step, same weights: update the position only
        _write_json(final / "state.json", record)
    else:
        tmp = root / f".tmp-{final.name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        weights = {k: v.detach().contiguous().cpu() for k, v in student.items()}
        save_file(weights, tmp / "student.safetensors", metadata=metadata)
        torch.save(optimizer, tmp / "optimizer.pt")
        torch.save(losses, tmp / "losses.pt")
        (tmp / "state.json").write_text(json.dumps(record))
        shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover (no state.json), never `latest`
        os.replace(tmp, final)
    pointer = root / ".latest.tmp"
    pointer.write_text(final.name)
    os.replace(pointer, root / "latest")
    for old in sorted(p for p in root.glob("step-*") if p != final)[: -keep or None]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(folder: Path, device: torch.device | str) -> Checkpoint:
    """Read one checkpoint folder (pickles with weights_only); raises on any damage."""
    record = json.loads((folder / "state.json").read_text())
    phases = [(str(n), int(s)) for n, s in record.pop("phases", [])]
    state = TrainState(**record)
    student = load_file(folder / "student.safetensors", device=str(device))
    with safe_open(folder / "student.safetensors", "pt") as f:
        metadata = f.metadata() or {}
    optimizer = torch.load(folder / "optimizer.pt", map_location=device, weights_only=True)
    losses = torch.load(folder / "losses.pt", map_location=device, weights_only=True)
    return Checkpoint(folder, state, student, optimizer, losses, metadata, phases)


DAMAGE = (
    OSError,
    ValueError,
    KeyError,
    TypeError,
    RuntimeError,
    EOFError,
    SafetensorError,
    pickle.PickleError,
)
"""What reading a damaged checkpoint raises (truncated safetensors / zip pickles, bad JSON, ...)."""


def load_latest(
    out_dir: Path, device: torch.device | str, say: Callable[[str], None] = print
) -> Checkpoint | None:
    """The checkpoint ``latest`` names, or, when that one is missing or damaged, the newest
    loadable one (``say`` gets one line naming both and the reason). None when the run has no
    checkpoint; TLCMError when it has some but none loads."""
    root = out_dir / "checkpoints"
    folders = sorted((p for p in root.glob("step-*") if p.is_dir()), reverse=True)
    pointer = root / "latest"
    named = root / pointer.read_text().strip() if pointer.is_file() else None
    if named is None and not folders:
        return None
    candidates = ([named] if named is not None else []) + [p for p in folders if p != named]
    problems: list[str] = []
    for folder in candidates:
        try:
            checkpoint = load_checkpoint(folder, device)
        except DAMAGE as err:
            problems.append(f"{folder.name}: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
            continue
        if problems:
            for bad in candidates[: candidates.index(folder)]:  # moved aside: never overwritten, kept
                if bad.is_dir():
                    bad.rename(root / f"damaged-{bad.name}")
            say(f"checkpoint {problems[0]} (damaged or missing); resuming from {folder} instead")
        return checkpoint
    raise TLCMError(
        f"no loadable checkpoint in {root} ({'; '.join(problems)}): delete {root} to start over "
        "or restore a checkpoint folder"
    )


def _float_tensors(tree: Any, prefix: str = ""):
    """(key path, tensor) of every floating tensor in a nested dict / list / tuple."""
    if isinstance(tree, torch.Tensor):
        if tree.is_floating_point():
            yield prefix, tree
        return
    if isinstance(tree, dict):
        items = tree.items()
    else:
        items = enumerate(tree) if isinstance(tree, list | tuple) else ()
    for key, value in items:
        yield from _float_tensors(value, f"{prefix}/{key}" if prefix else str(key))


def nonfinite_paths(tree: Any) -> list[str]:
    """The key paths, in order, of the floating tensors holding NaN/inf in a nested dict / list
    (empty: all finite); one host sync per device for the whole tree."""
    found = list(_float_tensors(tree))
    flags = [torch.isfinite(t).all() for _, t in found]
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for flag in flags:
        by_device.setdefault(flag.device, []).append(flag)
    if all(bool(torch.stack(group).all()) for group in by_device.values()):
        return []
    return [path for (path, _), flag in zip(found, flags, strict=True) if not flag]
