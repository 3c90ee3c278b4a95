"""The pipeline that generates evaluation images: a local diffusers folder (SD1.5 / SDXL), optionally
with a student on it, and its sampler.

Students (``--student``), any of:
- a tlcm run folder: its export ``RUN/student/`` when present, else its latest checkpoint;
- an export folder: ``pytorch_lora_weights.safetensors`` (diffusers LoRA) or ``unet/`` (full
  fine-tune), with ``scheduler/`` (the TLCMScheduler config of its grid);
- a LoRA file (.safetensors, diffusers or kohya format);
- a full UNet folder (``config.json`` + weights, as ``UNet2DConditionModel.save_pretrained`` writes).
Students sample with TLCMScheduler (no CFG); teachers with a diffusers scheduler and CFG.
"""

from __future__ import annotations

from pathlib import Path

import diffusers
import torch
from diffusers.utils import logging as diffusers_logging
from safetensors import SafetensorError, safe_open

from tlcm.checks import TEACHER_SCHEDULERS, check_teacher_scheduler
from tlcm.diffusion.milestones import StudentGrid
from tlcm.errors import TLCMError
from tlcm.export import DIFFUSERS_FILE, tlcm_scheduler
from tlcm.models.base import BaseModel, frozen_dtype
from tlcm.models.families import FAMILIES
from tlcm.models.student import Student

NETS = tuple(dict.fromkeys(family.net for family in FAMILIES.values()))
"""Folder names of a full fine-tune's network in an export folder (the families' ``net``)."""


def student_kind(path: Path) -> str:
    """ "run", "export", "lora" or "unet" for a --student path (see the module docstring)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".safetensors":
        return "lora"
    if path.is_dir():
        if (path / DIFFUSERS_FILE).is_file() or any((path / n / "config.json").is_file() for n in NETS):
            return "export"
        if (path / "config.json").is_file():
            return "unet"
        if (path / "checkpoints").is_dir() or (path / "student").is_dir():
            return "run"
    raise TLCMError(
        f"--student {path} is none of: a tlcm run folder, an export folder ({DIFFUSERS_FILE} or "
        f"{' / '.join(f'{n}/' for n in NETS)}), a LoRA .safetensors file, a {' / '.join(NETS)} folder "
        "(config.json)"
    )


def student_label(path: Path) -> str:
    """A short name for a student path: the run's name for RUN/student, else the file / folder stem."""
    path = Path(path).resolve()
    return path.parent.name if path.name == "student" else path.stem


def _load_net(base: BaseModel, folder: Path) -> None:
    """Replace the base's denoising network by the full fine-tune in ``folder``."""
    try:
        net = type(base.net).from_pretrained(folder, dtype=base.net.dtype, local_files_only=True)
    except (OSError, ValueError) as err:
        detail = " ".join(str(err).split())[:200]
        raise TLCMError(
            f"--student {folder} is not a loadable {type(base.net).__name__} folder ({detail})"
        ) from err
    base.pipe.register_modules(**{base.family.net: net.to(base.device).eval().requires_grad_(False)})


def apply_student(base: BaseModel, path: Path, num_milestones: int = 8):
    """Put the student at ``path`` into ``base.pipe`` (in place) and return its TLCM scheduler
    (the export's scheduler/ when there is one, else the base's with ``num_milestones``)."""
    path, kind = Path(path), student_kind(path)
    scheduler = tlcm_scheduler(base, StudentGrid(num_milestones, 1))
    if kind == "run":
        export = path / "student"
        if export.is_dir() and student_kind(export) == "export":
            return apply_student(base, export, num_milestones)
        grid = Student.from_run(base, path).config.grid  # adds the LoRA adapter to base.net
        return tlcm_scheduler(base, grid)
    if kind == "unet":
        _load_net(base, path)
        return scheduler
    if kind == "export":
        if (path / "scheduler" / "scheduler_config.json").is_file():
            scheduler = type(scheduler).from_pretrained(path / "scheduler")
        if (path / base.family.net / "config.json").is_file():
            _load_net(base, path / base.family.net)
            return scheduler
        path = path / DIFFUSERS_FILE
    load_lora(base, path)
    return scheduler


def load_lora(base: BaseModel, path: Path) -> None:
    """Load the LoRA file ``path`` (diffusers or kohya format) into ``base.pipe`` as adapter
    "student"; refuse it unless it adapts at least one layer and every layer it names (a LoRA of
    another architecture loads nothing, or part of itself, with a mere warning: the base model, or a
    part-student, would be scored as the student)."""
    try:
        with safe_open(path, "pt") as f:
            wanted = sum(k.endswith((".lora_A.weight", ".lora_down.weight")) for k in f.keys())
        level = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # its "no LoRA keys for ..." warnings: judged below
        try:
            base.pipe.load_lora_weights(path.parent, weight_name=path.name, adapter_name="student")
        finally:
            diffusers_logging.set_verbosity(level)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        raise TLCMError(f"--student {path} does not load as a LoRA of {base.path}: {str(err)[:200]}") from err
    modules = [m for m in base.pipe.components.values() if isinstance(m, torch.nn.Module)]
    loaded = sum(n.endswith(".lora_A.student.weight") for m in modules for n, _ in m.named_parameters())
    if loaded == 0 or loaded < wanted:
        raise TLCMError(
            f"--student {path}: {f'only {loaded}' if loaded else 'none'} of its {wanted} LoRA layers match "
            f"a layer of {base.path} (--model): it is a LoRA of another model; pass the base model it was "
            "trained on to --model"
        )


def teacher_scheduler(base: BaseModel, name: str):
    """The base's scheduler config in the diffusers class of --scheduler ``name``."""
    check_teacher_scheduler(name)
    cls_name = TEACHER_SCHEDULERS[name]
    if cls_name is None:
        return base.pipe.scheduler
    return getattr(diffusers, cls_name).from_config(base.pipe.scheduler.config)


def load_pipeline(
    model: Path, device: str, student: Path | None, steps: int, scheduler: str, gamma: float | None,
    num_milestones: int,
) -> BaseModel:  # fmt: skip
    """The base model (bf16 on GPU, fp32 on CPU) with the student and sampler in ``base.pipe``."""
    dtype = frozen_dtype("auto", device, autocast=True)
    base = BaseModel.load(model, device=device, dtype=dtype, flag="--model")
    if student is None:
        base.pipe.scheduler = teacher_scheduler(base, scheduler)
        return base
    sampler = apply_student(base, student, num_milestones)
    if gamma is not None:
        sampler = type(sampler).from_config(sampler.config, gamma=gamma, first_gamma=None)  # every move
    m = sampler.config.num_milestones
    if not 1 <= steps <= m:
        raise TLCMError(f"--steps {steps}: this student samples 1..{m} steps (its M = {m} milestones)")
    base.pipe.scheduler = sampler
    return base
