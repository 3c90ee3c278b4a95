"""Atomic, durable checkpoints, exact resume, and a fallback when the newest checkpoint is damaged.

Layout: ``out_dir/checkpoints/step-0000123/`` holds student.safetensors (trainable weights, with
the LoRA config and student grid in its header), optimizer.pt, losses.pt (loss-owned models, their
optimizers, DPO references, EMA targets) and state.json (loop position, the recipe's phases, the
global steps skipped so far, and the run record that a resume compares: tlcm/resume.py).

Guarantees:
- A folder is written under a temporary name, every file fsynced, then renamed; ``checkpoints/
  latest`` (a file naming the folder) is replaced atomically last (written to a temporary file,
  fsynced, renamed, the folder fsynced): after a crash or a power loss it names a complete folder.
  No folder that ``latest`` names is ever removed: a save at the global step of the folder
  ``latest`` names (the phase-end save right after a periodic one, a stop-signal save right after
  either) only replaces that folder's state.json, atomically (the weights of one global step are the
  same). Any other folder of that step (a crash's leftover that ``latest`` never named: an earlier
  attempt's weights, or a changed recipe's under ``resume-changed``) is written anew.
- ``load_latest`` falls back to the newest sound checkpoint, saying which one and why in one line,
  when the one ``latest`` names is missing or damaged (truncated file, bad JSON), holds NaN/inf or
  absurd weights (``unsound``), or ``latest`` itself is damaged (empty, not UTF-8, naming no
  folder). Only the training process (``repair=True``) renames damaged folders ``damaged-step-...``
  (kept for inspection, never resumed from or overwritten); read-only commands (sample, evaluate,
  export, ``Student.from_run``) change nothing in the run and work on a read-only run folder.
- ``unsound`` lets the engine refuse to save NaN/inf state or absurd weights (and ``nonfinite_paths``
  the model loader refuse NaN/inf model weights).
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from tlcm.errors import TLCMError
from tlcm.files import save_tensors, write_failed


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

    def tensors(self) -> dict:
        """Everything it holds as one tree (for ``unsound``)."""
        return {"student": self.student, "optimizer": self.optimizer, "losses": self.losses}

    folder: Path
    state: TrainState
    student: dict[str, torch.Tensor]
    optimizer: dict
    losses: dict
    metadata: dict[str, str] = field(default_factory=dict)
    phases: list[tuple[str, int]] = field(default_factory=list)
    run: dict | None = None
    """The run record of tlcm/resume.py (recipe, model fingerprint, processes); None: older."""
    skipped: list[int] = field(default_factory=list)
    """Global steps skipped (on_nonfinite "skip") up to this checkpoint."""
    denoiser_evals: int | None = None
    """The run's denoiser evaluations up to this checkpoint (``Trainer.run_evals``); None:
    a checkpoint from before this field."""
    train_seconds: float | None = None
    """The run's training wall seconds up to this checkpoint, over all its sessions (a resumed run
    continues from it); None: a checkpoint from before this field."""

    @property
    def finished_phase(self) -> bool:
        """True when the checkpoint sits at the end of a phase (not mid-phase, not pre-empted)."""
        if self.state.step == 0:
            return True
        index = self.state.phase_index
        return index < len(self.phases) and self.state.step == self.phases[index][1]


def _fsync(path: Path) -> None:
    """Flush a file's data or a folder's entries to the disk (a folder: best effort, since some
    file systems refuse to fsync folders)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably: a fsynced temporary file renamed over
    it, then its folder fsynced (a crash or power loss leaves the old content or the new, never an
    empty or partial file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)


def _write_json(path: Path, value: Any) -> None:
    _write_durably(path, json.dumps(value).encode())


TORCH_WRITE_ERRORS = ("PytorchStreamWriter", "unexpected pos")
"""How ``torch.save``'s RuntimeError says the disk refused a write (seen on /dev/full)."""


TORCH_DISK_FULL = ("unexpected pos", "failed writing")
"""The ``TORCH_WRITE_ERRORS`` that mean the disk took fewer bytes than written: a full disk (or
quota), what the safetensors writer reports as ENOSPC."""


def torch_write_error(err: RuntimeError, root: Path) -> OSError:
    """``torch.save``'s write error as the OSError it is: a full disk (``TORCH_DISK_FULL``) as
    ENOSPC with the free space left on ``root``'s disk (torch's own text names only its C++
    source), anything else its first line."""
    if not any(k in str(err) for k in TORCH_DISK_FULL):
        return OSError(str(err).splitlines()[0])
    where = root if root.exists() else next(p for p in root.parents if p.exists())
    mount = where.resolve()
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    free = shutil.disk_usage(where).free / 2**20
    return OSError(errno.ENOSPC, f"No space left on device ({free:.1f} MiB free on {mount})")


def save_checkpoint(
    out_dir: Path,
    state: TrainState,
    student: dict[str, torch.Tensor],
    optimizer: dict,
    losses: dict,
    keep: int = 2,
    metadata: dict[str, str] | None = None,
    phases: list[tuple[str, int]] | None = None,
    run: dict | None = None,
    skipped: list[int] | None = None,
    denoiser_evals: int | None = None,
    train_seconds: float | None = None,
) -> Path:
    """Write a checkpoint atomically and durably and point ``latest`` at it; keep it and the
    newest ``keep`` earlier ones (fallbacks when the latest is damaged). ``metadata`` goes into
    student.safetensors' header (e.g. the LoRA config); ``phases`` is the recipe's
    [(name, steps), ...] and ``run`` its run record, both checked on resume; ``skipped``: the
    global steps skipped so far; ``denoiser_evals`` the run's evaluation count and
    ``train_seconds`` its training wall seconds so far."""
    root = out_dir / "checkpoints"
    final = root / f"step-{state.global_step:07d}"
    record = {**asdict(state), "phases": [list(p) for p in phases or []], "skipped": list(skipped or [])}
    if run is not None:
        record["run"] = run
    if denoiser_evals is not None:
        record["denoiser_evals"] = int(denoiser_evals)
    if train_seconds is not None:
        record["train_seconds"] = float(train_seconds)
    tmp = root / f".tmp-{final.name}"
    try:
        if (final / "state.json").is_file() and _pointer(root)[0] == final:  # same global step
            _write_json(final / "state.json", record)  # (this run's own save): update the position only
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            weights = {k: v.detach().contiguous().cpu() for k, v in student.items()}
            save_tensors(weights, tmp / "student.safetensors", metadata=metadata)
            torch.save(optimizer, tmp / "optimizer.pt")
            torch.save(losses, tmp / "losses.pt")
            (tmp / "state.json").write_text(json.dumps(record))
            for name in ("student.safetensors", "optimizer.pt", "losses.pt", "state.json", "."):
                _fsync(tmp / name)
            shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover (no state.json), never `latest`
            os.replace(tmp, final)
            _fsync(root)
        _write_durably(root / "latest", final.name.encode())
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
        if isinstance(err, RuntimeError) and not any(k in str(err) for k in TORCH_WRITE_ERRORS):
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # `latest` still names the previous complete checkpoint
        cause = err if isinstance(err, OSError) else torch_write_error(err, root)
        raise write_failed(f"a checkpoint to {root} (the previous checkpoints are intact)", cause) from err
    for old in sorted(p for p in root.glob("step-*") if p != final)[: -keep or None]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(folder: Path, device: torch.device | str) -> Checkpoint:
    """Read one checkpoint folder (pickles with weights_only); raises on any damage."""
    record = json.loads((folder / "state.json").read_text())
    phases = [(str(n), int(s)) for n, s in record.pop("phases", [])]
    run, skipped = record.pop("run", None), [int(s) for s in record.pop("skipped", [])]
    evals, seconds = record.pop("denoiser_evals", None), record.pop("train_seconds", None)
    state = TrainState(**record)
    student = load_file(folder / "student.safetensors", device=str(device))
    with safe_open(folder / "student.safetensors", "pt") as f:
        metadata = f.metadata() or {}
    optimizer = torch.load(folder / "optimizer.pt", map_location=device, weights_only=True)
    losses = torch.load(folder / "losses.pt", map_location=device, weights_only=True)
    return Checkpoint(
        folder, state, student, optimizer, losses, metadata, phases, run, skipped, evals, seconds
    )


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


WEIGHT_LIMIT = 1e4
"""``RuntimeConfig.max_weight_abs``'s default: the limit ``load_latest`` applies to a checkpoint
whose run record does not say the run's own."""

STEP_FOLDER = re.compile(r"step-\d+")


def _pointer(root: Path) -> tuple[Path | None, str | None]:
    """The folder ``root/latest`` names (None if it has none) and what is wrong with it (None: fine
    or no pointer at all)."""
    pointer = root / "latest"
    if not pointer.is_file():
        return None, None
    try:
        name = pointer.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    except OSError as err:
        return None, f"cannot be read ({err.strerror})"
    if not name:
        return None, "is empty"
    if not STEP_FOLDER.fullmatch(name) or not (root / name).is_dir():
        return None, f"names {name[:60]!r}, not a checkpoint folder here"
    return root / name, None


def latest_step(out_dir: Path) -> int | None:
    """The global step of the checkpoint ``latest`` names in run folder ``out_dir`` (None: none,
    or ``latest`` is damaged); reads only its state.json (else the folder's name)."""
    folder = _pointer(out_dir / "checkpoints")[0]
    if folder is None:
        return None
    try:
        return int(json.loads((folder / "state.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return int(folder.name.removeprefix("step-"))


def resume_from(out_dir: Path) -> str:
    """Where a rerun of run folder ``out_dir`` starts, for a message: "the latest checkpoint is step
    N; rerun ..." (or that there is none)."""
    step = latest_step(out_dir)
    if step is None:
        return "the latest checkpoint is none; rerun the same command to start over"
    return f"the latest checkpoint is step {step}; rerun the same command to resume from it"


def _in_load_order(root: Path, named: Path | None) -> list[Path]:
    """The step folders of ``root``: ``named`` (what ``latest`` names) first, then the others from
    the newest down."""
    folders = sorted((p for p in root.glob("step-*") if p.is_dir()), reverse=True)
    return ([named] if named is not None else []) + [p for p in folders if p != named]


def checkpoint_folders(out_dir: Path) -> list[Path]:
    """The checkpoint folders of a run in the order a load tries them: the one ``latest`` names,
    then the others from the newest down (empty: the run has none)."""
    root = out_dir / "checkpoints"
    return _in_load_order(root, _pointer(root)[0])


def load_latest(
    out_dir: Path,
    device: torch.device | str,
    say: Callable[[str], None] = print,
    repair: bool = False,
    limit: float | None = None,
) -> Checkpoint | None:
    """The checkpoint ``latest`` names, or, when that one is missing, damaged or unsound (NaN/inf
    anywhere, or a student weight beyond ``limit``: default the limit in its run record, else
    ``WEIGHT_LIMIT``), or ``latest`` itself is damaged, the newest sound one (``say`` gets one line
    naming both and the reason). Reads only; ``repair`` (the training process alone) renames the
    damaged folders passed over to ``damaged-step-...``. None when the run has no checkpoint;
    TLCMError when it has some but none loads."""
    root = out_dir / "checkpoints"
    named, pointer_problem = _pointer(root)
    candidates = _in_load_order(root, named)
    if not candidates:
        return None
    problems = [f"{root.name}/latest {pointer_problem}"] if pointer_problem else []
    passed: list[Path] = []
    for folder in candidates:
        try:
            checkpoint = load_checkpoint(folder, device)
        except DAMAGE as err:
            problems.append(f"{folder.name}: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
            passed.append(folder)
            continue
        runtime = ((checkpoint.run or {}).get("recipe") or {}).get("runtime") or {}
        bad = unsound(checkpoint.tensors(), limit or runtime.get("max_weight_abs") or WEIGHT_LIMIT)
        if bad:
            problems.append(f"{folder.name}: {bad}")
            passed.append(folder)
            continue
        if problems:
            for folder_passed in passed if repair else []:  # moved aside: never overwritten, kept
                if folder_passed.is_dir():
                    folder_passed.rename(root / f"damaged-{folder_passed.name}")
            say(f"checkpoint {problems[0]} (damaged, missing or unsound); using {folder} instead")
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


def unsound(tree: dict, limit: float) -> str | None:
    """Why a checkpoint's tensors (``{"student": ..., "optimizer": ..., "losses": ...}``) must not be
    saved or resumed from: the first tensor holding NaN/inf, or the first student weight larger
    than ``limit`` in magnitude (finite, but a blow-up: a resume would fail again); None: sound.
    One host sync per device for each of the two checks."""
    bad = nonfinite_paths(tree)
    if bad:
        return f"{bad[0]} holds NaN/inf"
    found = [(p, t) for p, t in _float_tensors(tree.get("student", {}), "student") if t.numel()]
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for path, tensor in found:
        by_device.setdefault(tensor.device, []).append((path, tensor.detach().abs().max().float()))
    for group in by_device.values():
        peaks = torch.stack([peak for _, peak in group]).tolist()
        for (path, _), peak in zip(group, peaks, strict=True):
            if peak > limit:
                return f"{path} holds |w| = {peak:.3g} > {limit:g} (--recipes.runtime.max-weight-abs)"
    return None
