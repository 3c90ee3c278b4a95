"""What a resume must keep: the whole recipe, the base model, the training data and each phase's
micro-batch split (processes x grad_accum: another process count with the grad_accum that keeps it
resumes exactly, e.g. 2 processes x 1 -> 1 x 2; ``kept_splits``).

Every checkpoint's state.json stores a run record (``run_record``): the resolved recipe
(``tlcm.config.recipe_dict``), a fingerprint of the base model folder (``model_fingerprint``), one
of the training data (``data_fingerprint``: the prompts in order, and the real images' source) and
the number of processes. A resume compares the checkpoint's record with the current one and refuses,
in one line naming each changed field ("phases.mlcd.lr 0.001 -> 0.002; runtime.seed 0 -> 1"), any
change that alters training: resuming would mix two trainings in one student, and the model card
would describe only the second. ``--recipes.runtime.resume-changed`` continues anyway, on purpose
(the new values apply from the resumed step on; later checkpoints store them).

Fields that do not alter what is trained may change freely (``UNCHECKED``): where the run writes
and logs (out_dir, log_every, trackers, checkpoint_every, sample_grid, eval_samples_per_digit,
export_formats, inference_steps), how failures are handled (on_nonfinite, max_consecutive_skips,
max_skipped_fraction, max_weight_abs: e.g. the advised "on-nonfinite skip" rerun after a NaN stop),
where it runs (device), memory and speed switches (gradient_checkpointing: same values, recomputed;
compile, its backend and graphs: the same maths to rounding), the embedding cache's folder, the
flags themselves (resume, resume_changed), fields read only when a run starts at step 0
(student.init_from, init_from_unfinished), the family check's model.pipeline and the model's
path (the fingerprint is compared instead: a moved folder resumes, another model of the same
architecture does not).

The data is compared by content as well as by the recipe's paths: a prompt file edited in place,
or an image folder whose metadata.jsonl gained lines, is a change (the engine's draw would pick
other prompts from the resumed step on; the images themselves are not read). Checkpoints written before run
records existed are resumed as before, with one line saying that only their phases, steps and
student settings could be checked; those written before data fingerprints, without comparing data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlcm.card import CARD_FILE, DIFFUSERS_FILE
from tlcm.checkpoint import STEP_FOLDER, checkpoint_folders
from tlcm.checks import check_run_folder
from tlcm.config import Recipe, recipe_dict
from tlcm.errors import TLCMError
from tlcm.summary import from_repo_path
from tlcm.toy import MINIATURE_SD
from tlcm.user_modules import recorded_imports

if TYPE_CHECKING:
    from tlcm.data.images import ImageTextSource

UNCHECKED = (
    "model.path",
    "model.pipeline",
    "student.init_from",
    "student.init_from_unfinished",
    "data.embedding_cache",
    "runtime.out_dir",
    "runtime.device",
    "runtime.gradient_checkpointing",
    "runtime.compile",
    "runtime.compile_backend",
    "runtime.graphs",
    "runtime.resume",
    "runtime.resume_changed",
    "runtime.log_every",
    "runtime.trackers",
    "runtime.checkpoint_every",
    "runtime.on_nonfinite",
    "runtime.max_consecutive_skips",
    "runtime.max_skipped_fraction",
    "runtime.max_weight_abs",
    "runtime.sample_grid",
    "runtime.eval_samples_per_digit",
    "runtime.export_formats",
    "inference_steps",
)
"""Recipe fields (dotted Python names) that may change between a run and its resume."""

SAMPLE_BYTES, SAMPLES = 1 << 16, 16
"""Files up to SAMPLES x SAMPLE_BYTES (1 MiB) are hashed whole, larger ones by SAMPLES evenly spaced
slices of SAMPLE_BYTES (first and last included) plus their size."""


def _file_digest(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if size <= SAMPLES * SAMPLE_BYTES:
            digest.update(handle.read())
        else:
            for i in range(SAMPLES):
                handle.seek((size - SAMPLE_BYTES) * i // (SAMPLES - 1))
                digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def model_fingerprint(folder: Path) -> str:
    """A cheap fingerprint of a diffusers model folder: sha256 over every file's relative path, size
    and content (whole up to 1 MiB: configs, tokenizers; 16 slices of 64 KiB of larger ones: the
    weights), skipping hidden paths (.cache, .git) and *.md. Reads about 1 MiB per weights file
    (milliseconds for SDXL's 7 GB), yet tells apart two fine-tunes of one architecture, whose
    weights differ everywhere; a change confined to bytes between the slices would go unseen."""
    folder = Path(folder)
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or path.suffix == ".md":
            continue
        size = path.stat().st_size
        digest.update(f"{relative.as_posix()}\0{size}\0{_file_digest(path, size)}\n".encode())
    return digest.hexdigest()[:16]


def data_fingerprint(prompts: Sequence[str], images: ImageTextSource | None = None) -> dict:
    """The training data as a run record keeps it: {"prompts": count, "fingerprint": 16 hex digits of
    sha256 over every prompt in order (each followed by a NUL) and, with real images, their source's
    own ``fingerprint()`` (layout, caption column, metadata.jsonl bytes, the sidecar images' names
    and sizes with their caption files, or shard names and sizes; no image is read)}. Milliseconds
    for 100k prompts."""
    digest = hashlib.sha256()
    for prompt in prompts:
        digest.update(prompt.encode() + b"\0")
    if images is not None:
        digest.update(f"images/{images.fingerprint()}".encode())
    return {"prompts": len(prompts), "fingerprint": digest.hexdigest()[:16]}


def run_record(
    recipe: Recipe, processes: int, prompts: Sequence[str], images: ImageTextSource | None = None
) -> dict:
    """What a checkpoint stores to check a resume: the recipe, the model's and the data's
    fingerprints (``prompts``: the run's, in the engine's order; ``images``: its real image source),
    the process count."""
    return {
        "recipe": recipe_dict(recipe),
        "model": {"path": str(recipe.model.path), "fingerprint": model_fingerprint(recipe.model.path)},
        "data": data_fingerprint(prompts, images),
        "processes": processes,
        "imports": recorded_imports(),  # not compared: named when a reader lacks the run's family
    }


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(unset)"
    if isinstance(value, float):
        return format(value, "g")
    return value if isinstance(value, str) else json.dumps(value)


_ABSENT = object()


def _unchecked(path: str) -> bool:
    return any(path == u or path.startswith(f"{u}.") for u in UNCHECKED)


def recipe_changes(saved: dict, current: dict, same: Collection[str] = ()) -> list[str]:
    """The fields of two ``recipe_dict``s that differ and alter training, as "field old -> new"
    (flag spelling: hyphens, e.g. "phases.mlcd.lr-schedule constant -> cosine"); ``same``: dotted
    fields known not to alter it here (a grad_accum whose micro-batch split is kept)."""
    old, new = _flatten(saved), _flatten(current)
    changes = []
    for path in [*old, *(p for p in new if p not in old)]:
        before, after = old.get(path, _ABSENT), new.get(path, _ABSENT)
        if before != after and not _unchecked(path) and path not in same:
            changes.append(f"{path.replace('_', '-')} {_show(before)} -> {_show(after)}")
    return changes


def _splits(record: dict) -> dict[str, int | None]:
    """Each phase's micro-batch split in a run record: processes x grad_accum, the number of
    micro-batches its global batch is cut into (micro-batch j of step s draws from (seed, s, j),
    whichever process computes it). None where the record does not fix it: no process count, or a
    grad_accum of 1 under the memory plan (runtime.memory_plan or memory_budget_gib), which lets
    the plan choose it on the device (not recorded)."""
    recipe = record.get("recipe") or {}
    runtime = recipe.get("runtime") or {}
    planned = bool(runtime.get("memory_plan")) or runtime.get("memory_budget_gib") is not None
    processes = record.get("processes")
    splits: dict[str, int | None] = {}
    for name, phase in (recipe.get("phases") or {}).items():
        accum = (phase or {}).get("grad_accum", 1)
        fixed = isinstance(processes, int) and isinstance(accum, int) and not (planned and accum == 1)
        splits[name] = processes * accum if fixed else None
    return splits


def kept_splits(saved: dict, current: dict) -> tuple[list[str], list[str]]:
    """(phases of both run records whose micro-batch split is the same, those whose split is
    another or not known). Across process counts the split is what a resume must keep: N
    processes x grad_accum k draw the same micro-batches as 1 process x N k (docs/design.md,
    "Determinism, resume, data parallelism"; with accumulation on each process as well, the
    gradients are summed in another order: equal to float rounding). Nothing else of the run
    depends on the process count: checkpoints hold full tensors (FSDP2 gathers them) and no
    per-process random state, the prompt order comes from (seed, s)."""
    before, after = _splits(saved), _splits(current)
    kept, changed = [], []
    for name in (n for n in after if n in before):
        split = before[name]
        (kept if split is not None and split == after[name] else changed).append(name)
    return kept, changed


def _processes(n: object) -> str:
    return f"{n} process" if n == 1 else f"{n} processes"


def split_hint(saved: dict, current: dict) -> tuple[str, str]:
    """For a resume on another process count that changes some phase's micro-batch split: (the
    grad-accum flags that keep the splits, "--recipes.phases.NAME.grad-accum K ..."; why the other
    phases' cannot be kept), each "" when there is nothing to say."""
    processes = current["processes"]
    if saved.get("processes") == processes:
        return "", ""
    recipe = current.get("recipe") or {}
    before, runtime, phases = _splits(saved), recipe.get("runtime") or {}, recipe.get("phases") or {}
    planned = bool(runtime.get("memory_plan")) or runtime.get("memory_budget_gib") is not None
    flags, unsplit, unknown = [], {}, []
    for name in kept_splits(saved, current)[1]:
        split, batch = before[name], (phases.get(name) or {}).get("batch_size")
        if split is not None and isinstance(batch, int) and batch % split:
            continue  # another batch size too (named as a change): the old split is no option
        if split is None:
            unknown += [name] if isinstance(saved.get("processes"), int) else []
        elif split % processes or (planned and split == processes):  # grad-accum 1: the plan's
            unsplit.setdefault(split, []).append(name)
        else:
            flags.append(f"--recipes.phases.{name}.grad-accum {split // processes}")
    why = [
        f"no grad-accum splits the {split} micro-batch{'es' * (split > 1)} of {', '.join(names)} over "
        f"{_processes(processes)}"
        for split, names in unsplit.items()
    ]
    if unknown:
        why.append(f"the memory plan chose the micro-batches of {', '.join(unknown)}, not recorded")
    return " ".join(flags), "; ".join(why)


def run_changes(saved: dict, current: dict) -> list[str]:
    """What differs between a checkpoint's run record and this run's: recipe fields, the base
    model (by fingerprint), the training data (by fingerprint; not compared with a record that
    predates it), the process count. Another process count and grad_accum that keep each phase's
    micro-batch split (``kept_splits``) are no change."""
    kept, changed = kept_splits(saved, current)
    same = [f"phases.{name}.grad_accum" for name in kept]
    changes = recipe_changes(saved.get("recipe", {}), current["recipe"], same)
    before, after = saved.get("model", {}), current["model"]
    if before.get("fingerprint") != after["fingerprint"]:
        same = before.get("path") == after["path"]
        where = f"{after['path']} changed" if same else f"{before.get('path')} -> {after['path']}"
        changes.append(
            f"base model {where} (fingerprint {before.get('fingerprint')} -> {after['fingerprint']})"
        )
    data, now = saved.get("data"), current.get("data")
    if data is not None and now is not None and data.get("fingerprint") != now["fingerprint"]:
        changes.append(
            f"training data changed ({data.get('prompts')} -> {now['prompts']} prompts, fingerprint "
            f"{data.get('fingerprint')} -> {now['fingerprint']})"
        )
    if saved.get("processes") != current["processes"] and (changed or not kept):
        changes.append(f"processes {saved.get('processes')} -> {current['processes']}")
    return changes


def check_resume(saved: dict | None, current: dict, folder: Path, allow: bool, say) -> None:
    """Refuse (TLCMError) to resume from the checkpoint ``folder`` whose run record ``saved`` differs
    from ``current`` in anything that alters training, unless ``allow`` (--recipes.runtime.
    resume-changed: one line says what changed). ``saved`` None: a checkpoint from before run
    records, resumed with a one-line notice."""
    if saved is None:
        say(
            f"{folder} predates stored recipes: resuming with only its phases, steps and student "
            "settings checked"
        )
        return
    changes = run_changes(saved, current)
    if not changes:
        if saved.get("processes") != current["processes"]:
            say(
                f"{folder} was saved on {_processes(saved.get('processes'))}; on "
                f"{_processes(current['processes'])} every phase keeps its micro-batches (processes x "
                "grad-accum): the same training"
            )
        return
    shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
    if allow:
        say(f"--recipes.runtime.resume-changed: resuming {folder} with {shown} (checkpoint -> now)")
        return
    flags, why = split_hint(saved, current) if any(c.startswith("processes ") for c in changes) else ("", "")
    keep = f"pass {flags} to keep the checkpoint's micro-batches (processes x grad-accum: an exact resume), "
    raise TLCMError(
        f"{folder.parent.parent} was trained with another recipe or model: {shown} (checkpoint -> "
        f"this run); resuming would mix two trainings{f' ({why})' if why else ''}: "
        f"{keep if flags else ''}use a new --recipes.runtime.out-dir, --recipes.runtime.no-resume to "
        "start over there, or --recipes.runtime.resume-changed to continue with the new values on purpose"
    )


def check_phases(
    saved: Sequence[tuple[str, int]],
    phases: Sequence[tuple[str, int]],
    phase_index: int,
    step: int,
    run: Path,
    allow: bool,
) -> None:
    """Refuse (TLCMError) to resume the run folder ``run`` from a checkpoint written by the phases
    ``saved`` [(name, steps)] after ``step`` steps of its phase ``phase_index`` under the recipe's
    ``phases``: a resume needs the same phases in the same order with the same steps, except that
    with ``allow`` (--recipes.runtime.resume-changed) a phase not started yet (nothing of it is
    trained) may have other steps: those after ``phase_index``, and that one itself at ``step`` 0
    (a phase-end checkpoint is the next phase at step 0). ``saved`` empty (a checkpoint from before
    this field): not checked."""
    saved, phases = [tuple(p) for p in saved], [tuple(p) for p in phases]
    if not saved or saved == phases:
        return
    started = slice(0, phase_index + (step > 0))
    later = [n for (n, s), (_, c) in zip(saved, phases, strict=False) if s != c]
    if [n for n, _ in saved] == [n for n, _ in phases] and saved[started] == phases[started]:
        if allow:
            return
        hint = (
            f" (--recipes.runtime.resume-changed accepts other steps for {', '.join(later)}: "
            f"{'a phase' if len(later) == 1 else 'phases'} not started yet)"
        )
    else:
        hint = ""
    describe = lambda ps: ", ".join(f"{n} ({s} steps)" for n, s in ps)  # noqa: E731
    raise TLCMError(
        f"{run} was trained with phases {describe(saved)} but this recipe has {describe(phases)}: "
        f"resume needs the same phases and steps{hint}; use a new --recipes.runtime.out-dir, or "
        "--recipes.runtime.no-resume to start over there"
    )


def _newest_record(run_dir: Path) -> dict | None:
    """The run record of the newest readable checkpoint of ``run_dir`` ({} for one from before run
    records), or None: no checkpoint. Reads state.json files only."""
    for folder in checkpoint_folders(Path(run_dir)):
        try:
            return json.loads((folder / "state.json").read_text()).get("run") or {}
        except (OSError, ValueError):  # a damaged checkpoint: the next one's record
            continue
    return None


def trained_model(run_dir: Path) -> dict | None:
    """The base model section of the recipe that the newest checkpoint of ``run_dir`` records
    (``ModelConfig`` as a dict: path, max_sequence_length, ...; the path as the recipe named it, a
    bundled miniature named relative to the repository resolved there), or None: no checkpoint, or
    only ones from before run records."""
    run = _newest_record(run_dir) or {}
    model = dict((run.get("recipe") or {}).get("model") or {})
    path = model.get("path") or (run.get("model") or {}).get("path")
    return {**model, "path": from_repo_path(path)} if path else None


def trained_imports(run_dir: Path) -> list[str]:
    """The ``--import`` modules the run ``run_dir`` was trained with (its newest checkpoint's record,
    ``user_modules.recorded_imports``; [] when none, or recorded before 2026-12-07)."""
    return list((_newest_record(run_dir) or {}).get("imports") or [])


def student_model(
    run_dir: Path, model: Path | None, max_sequence_length: int | None, say, flag: str = "--model"
) -> tuple[Path, int | None]:
    """The base model folder and T5 prompt length to load the student of ``run_dir`` with: the given
    ones, else those its run was trained with, else the miniature's. ``say`` gets one line when
    ``model`` is not the model the run was trained on (a LoRA may be used on another base of the
    same architecture, on purpose)."""
    trained = trained_model(run_dir) or {}
    length = max_sequence_length if max_sequence_length is not None else trained.get("max_sequence_length")
    base = trained.get("path")
    if model is not None:
        if base is not None and base.is_dir() and Path(model).is_dir():
            if model_fingerprint(model) != model_fingerprint(base):
                say(f"note: {run_dir} was trained on {base}; using its student on {flag} {model}")
        return Path(model), length
    if base is None:
        return MINIATURE_SD, length
    if not base.is_dir():
        raise TLCMError(
            f"{run_dir} was trained on {base}, which is not a folder here: pass {flag} with that "
            "base model's diffusers folder"
        )
    return base, length


def check_init_base(saved: dict | None, current: dict, flag: str) -> None:
    """Refuse (TLCMError) to start a run from a checkpoint (``init_from``) whose run record ``saved``
    names another base model (by fingerprint) than this run's record ``current``: its LoRA belongs
    to that model. ``saved`` None (a checkpoint from before run records): not checked."""
    before = (saved or {}).get("model") or {}
    if saved is None or before.get("fingerprint") == current["model"]["fingerprint"]:
        return
    raise TLCMError(
        f"{flag} was trained on another base model ({before.get('path')}, fingerprint "
        f"{before.get('fingerprint')}) than --recipes.model.path {current['model']['path']} "
        f"(fingerprint {current['model']['fingerprint']}): start from a run of this model, or pass "
        f"--recipes.model.path {before.get('path')}"
    )


def check_has_checkpoint(run: Path, flag: str) -> None:
    """Refuse a run folder argument (``flag``) without checkpoints before anything loads; an exported
    student (LoRA + scheduler, away from its run) is named as one, with the tools that sample it."""
    if checkpoint_folders(run):
        return
    if not (run / DIFFUSERS_FILE).is_file() and not (run / "scheduler").is_dir():
        raise TLCMError(f"{flag} {run} has no checkpoint: pass a tlcm run folder (e.g. runs/tlcm-full)")
    raise TLCMError(
        f"{flag} {run} is an exported student (LoRA + scheduler), not a run folder: pass its run, or "
        f"sample it in diffusers as its {CARD_FILE} shows, or with python -m tlcm.evaluate generate "
        f"--student {run}"
    )


def run_folder(path: Path, flag: str) -> Path:
    """The run folder that a student argument (``--student``, ``--run``, ``init_from``) names: a run
    itself, or its export (RUN/student) or checkpoints folder, which hold the same student. One
    checkpoint (RUN/checkpoints/step-N) is refused: a run's student is its latest checkpoint, and
    a path that is not a folder (``checks.check_run_folder``)."""
    check_run_folder(path, flag)
    path = Path(path)
    if path.name in ("student", "checkpoints") and (path.parent / "checkpoints").is_dir():
        return path.parent
    if STEP_FOLDER.fullmatch(path.name) and path.parent.name == "checkpoints":
        raise TLCMError(
            f"{flag} {path} is one checkpoint of the run {path.parent.parent}: pass the run folder "
            "(its latest checkpoint is the student)"
        )
    return path
