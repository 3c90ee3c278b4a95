"""Input checks before anything heavy loads: one clear line per problem (what, where, how to fix).

``validate_recipe`` checks a whole training recipe (the Trainer calls it before the model loads);
``check_device``, ``check_out_dir`` and ``check_out_file`` serve the sample / evaluate /
trajectory CLIs too; ``check_lora_targets`` checks LoRA target names against a UNet.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tlcm.config import EXPORT_FORMATS, Recipe
from tlcm.data.prompts import load_prompts
from tlcm.errors import TLCMError
from tlcm.toy import MINIATURE_DIGITS, MINIATURE_PROMPTS
from tlcm.toy.data import prompt_digit

if TYPE_CHECKING:  # tlcm.models imports diffusers: the functions that read a model folder import it
    from tlcm.models.families import Family

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
"""Extensions an image output (a sample grid) may have."""
MAX_BATCH_SIZE = 65536
"""Largest batch size a phase may have: far above any distillation's (the paper's: 4 to 32), far
below what would ask for terabytes of memory at the first step (a mistyped 1e12)."""
MAX_GUIDANCE_SCALE = 100.0
"""Largest classifier-free guidance scale accepted (typical: 1 to 15); far larger ones overflow the
teacher's output to inf / NaN, which would then read as a learning-rate problem."""
LORA_LAYERS = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Embedding)
"""Module types peft can put a LoRA adapter on (of those a diffusers UNet holds)."""


def env_world_size() -> int:
    """Processes of the run: $WORLD_SIZE as torchrun sets it, 1 without torchrun."""
    raw = os.environ.get("WORLD_SIZE", "1")
    if not raw.strip().isdigit() or int(raw) < 1:
        raise TLCMError(
            f"WORLD_SIZE={raw!r} in the environment is not a positive integer: unset it, or launch "
            "with torchrun --nproc_per_node N"
        )
    return int(raw)


def check_counts(values: dict[str, int | float | None], minimum: float = 1) -> None:
    """Refuse the first flag of ``values`` (flag -> value; None: not given) whose value is below
    ``minimum`` or not finite: a one-line TLCMError naming that flag."""
    for flag, value in values.items():
        if value is not None and not (math.isfinite(value) and value >= minimum):
            raise TLCMError(f"{flag} must be >= {minimum:g}, got {value}")


TEACHER_SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "pndm": "PNDMScheduler",
    "default": None,
}
"""--scheduler name -> diffusers class name of the teacher's sampler (default: the folder's own)."""


def check_teacher_scheduler(name: str, flag: str = "--scheduler") -> None:
    """A --scheduler name of ``TEACHER_SCHEDULERS``, or a one-line TLCMError listing them."""
    if name not in TEACHER_SCHEDULERS:
        raise TLCMError(f"{flag} {name} is unknown: use one of {', '.join(TEACHER_SCHEDULERS)}")


def check_device(device: str, flag: str) -> None:
    """Refuse a device string torch cannot parse, or one this machine does not have ("auto" passes)."""
    if device == "auto":
        return
    fix = f"use {flag} auto, cpu, cuda or cuda:N"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise TLCMError(f"{flag} {device!r} is not a torch device: {fix}") from err
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise TLCMError(
                f"{flag} {device}: torch sees no CUDA GPU on this machine (torch.cuda.is_available() is "
                f"False): use {flag} cpu (or auto), or install a CUDA build of torch"
            )
        if dev.index is not None and dev.index >= count:
            raise TLCMError(f"{flag} {device}: torch sees {count} GPU(s): use cuda:0..cuda:{count - 1}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise TLCMError(f"{flag} mps: the MPS backend is not available on this machine: {fix}")
    elif dev.type != "cpu":
        raise TLCMError(f"{flag} {device}: device type {dev.type!r} is not supported: {fix}")


def check_gamma(gamma: float | None, flag: str) -> None:
    """A sampler gamma in [0, 1] (None: not given)."""
    if gamma is not None and not 0.0 <= gamma <= 1.0:
        raise TLCMError(f"{flag} must be in [0, 1] (1: LCM, 0: DDIM), got {gamma}")


def check_seed(seed: int, flag: str, limit: int = 2**63) -> None:
    """A seed torch generators accept (|seed| < ``limit``; 2**63: any int64)."""
    if not -limit < seed < limit:
        raise TLCMError(
            f"{flag} {seed} is out of range: use a seed with |seed| < 2**{limit.bit_length() - 1}"
        )


def check_guidance_scale(scale: float, flag: str) -> None:
    """A classifier-free guidance scale in 0..MAX_GUIDANCE_SCALE (NaN, inf and huge values refused)."""
    if not 0 <= scale <= MAX_GUIDANCE_SCALE:
        raise TLCMError(
            f"{flag} must be a finite number in 0..{MAX_GUIDANCE_SCALE:g} (typical: 1 to 15), got {scale}"
        )


def check_resolution(path: Path, resolution: int | None, family: Family, flag: str) -> None:
    """A training resolution (pixels, square; None: the pipeline's default) that the model folder
    ``path`` can take: a positive multiple of its VAE's scale factor times what its network needs
    (a UNet's downsamplings, a transformer's patch size), read from the config.json files."""
    from tlcm.models.families.base import read_config

    if resolution is None:
        return
    vae = 2 ** max(len(read_config(path / "vae" / "config.json").get("block_out_channels", [0] * 4)) - 1, 0)
    multiple = vae * family.latent_multiple(read_config(path / family.net / "config.json"))
    if resolution < 1 or resolution % multiple:
        low = max(resolution // multiple * multiple, multiple)
        raise TLCMError(
            f"{flag} {resolution}: {path} takes images whose side is a multiple of {multiple} pixels "
            f"(VAE scale factor {vae} x {multiple // vae} for its {family.net}): use e.g. {low} or "
            f"{low + multiple}"
        )


def _folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be (created and) written, or None after creating it and a temp file."""
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is an existing file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tlcm-write-probe-"):
            pass
    except OSError as err:
        return f"it is not writable ({err.strerror or err})"
    return None


def check_out_dir(path: Path, flag: str, fix: str = "pass a folder you can write to") -> None:
    """Create the output folder ``path`` and probe it with a temporary file; an existing file there,
    or a folder that cannot be created or written (read-only file system, permissions), raises
    (the message ends with ``fix``)."""
    problem = _folder_problem(Path(path))
    if problem:
        raise TLCMError(f"{flag} {path}: {problem}: {fix}")


def check_run_folder(path: Path | None, flag: str, example: str = "runs/tlcm-full") -> None:
    """A run folder argument (``--student``, ``--run``, ``init_from``): None (not given) or an
    existing folder; ``example`` is a run folder the message shows."""
    if path is not None and not Path(path).is_dir():
        raise TLCMError(f"{flag} {path} is not a folder: pass a tlcm run folder (e.g. {example})")


def check_out_file(path: Path, flag: str, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> None:
    """An output file path: ending in one of ``suffixes`` (default: image extensions), not a folder,
    in a folder that can be created (it is) and written."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        ends = ", ".join(suffixes[:-1]) + f" or {suffixes[-1]}" if len(suffixes) > 1 else suffixes[0]
        raise TLCMError(f"{flag} {path} must end in {ends}")
    if path.is_dir():
        raise TLCMError(f"{flag} {path} is an existing folder: pass a file path such as {path / path.name}")
    problem = _folder_problem(path.parent)
    if problem:
        raise TLCMError(f"{flag} {path}: folder {path.parent}: {problem}: pass a path you can write to")


def check_trackers(trackers: Iterable[str], flag: str) -> None:
    """Each tracker's package (named like the tracker and its pyproject extra) must be installed."""
    for name in trackers:
        if importlib.util.find_spec(name) is None:
            raise TLCMError(
                f"{flag} {name}: the {name} package is not installed: pip install {name} "
                f"(or pip install -e '.[{name}]' in a tlcm checkout), or drop {name} from {flag}"
            )


def check_compile_backend(backend: str, flag: str) -> None:
    """``backend`` must be a name ``torch.compile`` knows (dynamo's registry, its debug backends
    included); "inductor", the default, needs no lookup."""
    if backend == "inductor":
        return
    import torch._dynamo

    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise TLCMError(
            f"{flag} {backend!r} is not a torch.compile backend: use inductor (the default), aot_eager "
            f"(no kernels generated: a quick check), or one of {', '.join(known)}"
        )


def has_lora_loader(pipeline: str) -> bool:
    """Whether diffusers' pipeline class ``pipeline`` has ``load_lora_weights`` (PixArt's has none in
    diffusers 0.42; a class diffusers lacks: False)."""
    import diffusers

    return hasattr(getattr(diffusers, pipeline, None), "load_lora_weights")


def check_export_formats(formats: Iterable[str], flag: str, lora: bool = True, family=None) -> None:
    """Export formats: a non-empty subset of EXPORT_FORMATS; kohya only for a LoRA student of a
    family with a kohya format (SD1.5 / SDXL; ``family`` None: not checked)."""
    formats = list(formats)
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown or not formats:
        what = f"{unknown[0]!r} is not an export format" if unknown else "is empty"
        raise TLCMError(f"{flag} {what}: use one or more of {', '.join(EXPORT_FORMATS)}")
    if "kohya" in formats and not lora:
        raise TLCMError(
            f"{flag} kohya holds a LoRA, but this student is a full fine-tune (exported as a diffusers "
            f"folder): use {flag} diffusers, or train a LoRA"
        )
    if "kohya" in formats and family is not None and family.kohya is None:
        raise TLCMError(
            f"{flag} kohya: the kohya LoRA format is for SD1.5 / SDXL UNets, this base model is "
            f"{family.name}: use {flag} diffusers (its diffusers LoRA loads with pipe.load_lora_weights)"
            if has_lora_loader(family.pipeline_name)
            else f"{family.name}: use {flag} pipeline (the student merged; {family.pipeline_name} has no "
            "load_lora_weights)"
        )


def _lora_able(name: str, module: torch.nn.Module) -> bool:
    """A layer peft can adapt: a Linear / Conv / Embedding, or one peft already wraps (a UNet that
    carries adapters), but not peft's own sub-layers (lora_A, lora_B, base_layer)."""
    if ".lora_" in name or name.endswith(".base_layer"):
        return False
    return isinstance(module, LORA_LAYERS) or hasattr(module, "base_layer")


def _suffix(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[-2:]) if parts[-1].isdigit() and len(parts) > 1 else parts[-1]


def present_targets(net: torch.nn.Module, targets: Iterable[str]) -> tuple[str, ...]:
    """The names of ``targets`` that match a LoRA-able layer of ``net`` (peft's rule, as
    ``check_lora_targets``): a family's default list on a network that lacks some (SD3's last block
    has no text-stream output projections)."""
    layers = [name for name, module in net.named_modules() if _lora_able(name, module)]
    return tuple(t for t in targets if any(n == t or n.endswith(f".{t}") for n in layers))


def check_lora_targets(
    unet: torch.nn.Module, targets: Iterable[str], flag: str = "--recipes.student.target-modules"
) -> None:
    """Raise TLCMError unless every name of ``targets`` matches a LoRA-able layer (Linear, Conv,
    Embedding) of ``unet`` by peft's rule: a module's full name equals it or ends in ".NAME".

    peft silently skips a name that matches nothing when another name matches (a typo trains fewer
    layers than asked) and fails with a traceback when none matches; this names the unknown ones and
    lists the commonest valid suffixes of this UNet.
    """
    targets = list(targets)
    layers = [name for name, module in unet.named_modules() if _lora_able(name, module)]
    unknown = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in layers)]
    if unknown or not targets:
        valid = ", ".join(s for s, _ in Counter(_suffix(n) for n in layers).most_common(12))
        verb = "matches" if len(unknown) == 1 else "match"
        what = f"{', '.join(unknown)} {verb} no" if targets else "is empty: it must name at least one"
        raise TLCMError(
            f"{flag}: {what} Linear/Conv layer of the {type(unet).__name__}; "
            f"use names that end its module names, e.g. {valid}"
        )


def _batch_problem(flag: str, batch: int, accum: int, world: int) -> str | None:
    """The global batch must split into world x accum equal micro-batches (each weighs the same):
    what is wrong, in one clause, or None."""
    chunks = world * accum
    parts = f"{world} processes x {flag}.grad-accum {accum}" if world > 1 else f"{flag}.grad-accum {accum}"
    if batch < chunks:
        return (
            f"{flag}.batch-size {batch} is smaller than {parts} = {chunks} micro-batches: "
            f"use a multiple of {chunks} (e.g. {chunks})"
        )
    if batch % chunks:
        low = batch // chunks * chunks
        return (
            f"{flag}.batch-size {batch} does not split into {chunks} equal micro-batches ({parts}): "
            f"use {low} or {low + chunks}"
        )
    return None


DATA_HOW = {
    "trajectory_cache": "build it with python -m tlcm.data.trajectories",
    "images": "an image folder (metadata.jsonl or NAME.txt captions) or webdataset shards; the "
    "miniature's digits: python -m tlcm.data.images --write-miniature DIR",
}
"""How to make each ``DataConfig`` folder a loss may need (``LossConfig.data_needs``)."""


_SCALARS = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}
"""Annotations checked by ``check_field_types`` -> the types a value may have (an int is a float)."""


def check_field_types(value, flag: str) -> None:
    """Refuse a field of the recipe tree ``value`` (a dataclass, or a dict of them: phases, losses)
    whose value does not have its annotated type (int, float, bool, str, ``X | None``), and a
    phase's loss that is not a ``LossConfig`` instance: a recipe written in Python, e.g.
    ``Phase(steps="2")`` or ``losses={"mine": MyLossConfig}``, gets one line naming the field as a
    flag instead of a traceback from whichever check or step reads it first (the CLI's values
    are typed by tyro already)."""
    from tlcm.losses.base import LossConfig

    if isinstance(value, dict):
        for key, item in value.items():
            if flag.endswith(".losses") and not isinstance(item, LossConfig):
                if isinstance(item, type):
                    raise TLCMError(
                        f"{flag}.{key} is the class {item.__name__}: write {key!r}: {item.__name__}()"
                    )
                raise TLCMError(f"{flag}.{key} is a {type(item).__name__}, not a LossConfig instance")
            check_field_types(item, f"{flag}.{key}")
        return
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return
    for field in dataclasses.fields(value):
        item, hint = getattr(value, field.name), str(field.type).replace(" ", "")
        name = f"{flag}.{field.name.replace('_', '-')}"
        optional = hint.endswith("|None")
        allowed = _SCALARS.get(hint.removesuffix("|None"))
        if allowed and not (optional and item is None):
            if not isinstance(item, allowed) or (bool not in allowed and isinstance(item, bool)):
                kind = hint.removesuffix("|None") + (" or None" if optional else "")
                raise TLCMError(f"{name} must be {kind}, got {item!r} ({type(item).__name__})")
        else:
            check_field_types(item, name)


def validate_recipe(recipe: Recipe, world_size: int | None = None) -> None:
    """Raise TLCMError naming the recipe field (as a CLI flag) for the first invalid value.

    ``world_size``: processes of the run (default: $WORLD_SIZE, 1 without torchrun); each phase's
    batch must split into world_size x grad_accum equal micro-batches. Timesteps are checked against
    the model's own T (its scheduler's). Reads only small files (the model's model_index.json and
    config files); creates ``runtime.out_dir`` (a write probe) once all else passed.
    """
    from tlcm.models.families import FAMILIES
    from tlcm.models.folders import check_model_folder, scheduler_timesteps

    world = env_world_size() if world_size is None else world_size
    check_field_types(recipe, "--recipes")
    expected = recipe.model.pipeline  # first: every other value is that family's
    if (
        expected is not None
        and (pipeline := check_model_folder(recipe.model.path, "--recipes.model.path")) != expected
    ):
        raise TLCMError(
            f"--recipes.model.path {recipe.model.path} is a {pipeline} folder, but this recipe's values "
            f"are for a {expected} (--recipes.model.pipeline): use the preset of its family (recipes:"
            "tlcm-full-sdxl, -sd3, -flux), or pass --recipes.model.pipeline None to train it with "
            "these values on purpose"
        )
    num_train_timesteps = scheduler_timesteps(recipe.model.path)
    if not recipe.phases:
        raise TLCMError("the recipe has no phases: add at least one under recipe.phases")
    try:
        recipe.student.grid.check(num_train_timesteps)
    except ValueError as err:
        raise TLCMError(f"--recipes.student.grid: {err}") from err
    if recipe.student.grid.backward_simulation == "data" and recipe.data.images is None:
        raise TLCMError(
            '--recipes.student.grid.backward-simulation "data" (the student\'s states: real images '
            f"noised to its grid) needs --recipes.data.images DIR ({DATA_HOW['images']}), or use "
            'backward-simulation "sample"'
        )
    splits = []  # every phase whose batch does not split over the processes: one line for all
    for name, phase in recipe.phases.items():
        _check_phase(name, phase, recipe, num_train_timesteps)
        splits.append(_batch_problem(f"--recipes.phases.{name}", phase.batch_size, phase.grad_accum, world))
    if any(splits):
        raise TLCMError("; ".join(p for p in splits if p))
    grid = recipe.student.grid
    for n in recipe.inference_steps:
        if not 1 <= n <= grid.num_milestones:
            raise TLCMError(
                f"--recipes.inference-steps: each must be in 1..{grid.num_milestones} "
                f"(M = --recipes.student.grid.num-milestones), got {n}"
            )
    _check_student(recipe.student)
    check_guidance_scale(recipe.model.guidance_scale, "--recipes.model.guidance-scale")
    family = FAMILIES[check_model_folder(recipe.model.path, "--recipes.model.path")]
    check_resolution(Path(recipe.model.path), recipe.model.resolution, family, "--recipes.model.resolution")
    _check_data(recipe)
    _check_runtime(recipe.runtime, recipe.student.full_finetune, family)
    if "pipeline" in recipe.runtime.export_formats and recipe.runtime.fsdp and world > 1:
        raise TLCMError(
            "--recipes.runtime.export-formats pipeline merges the student into the whole network, which "
            f"FSDP2 holds in shards over the {world} processes: leave pipeline out and export it after "
            "training, in one process: python -m tlcm.export RUN --format pipeline (one process ignores "
            "--recipes.runtime.fsdp)"
        )


def _check_phase(name: str, phase, recipe: Recipe, num_train_timesteps: int) -> None:
    """The phase's optimizer, batch and loss fields, and the data its losses need (the batch's
    split over the processes: ``_batch_problem``, for every phase at once)."""
    flag = f"--recipes.phases.{name}"
    if phase.steps < 1:
        raise TLCMError(f"{flag}.steps must be >= 1, got {phase.steps}")
    if not (math.isfinite(phase.lr) and phase.lr > 0):
        raise TLCMError(f"{flag}.lr must be a finite number > 0 (e.g. 1e-4), got {phase.lr}")
    if not (math.isfinite(phase.weight_decay) and phase.weight_decay >= 0):
        raise TLCMError(f"{flag}.weight-decay must be a finite number >= 0, got {phase.weight_decay}")
    if not (math.isfinite(phase.max_grad_norm) and phase.max_grad_norm >= 0):
        raise TLCMError(f"{flag}.max-grad-norm must be >= 0 (0 disables clipping), got {phase.max_grad_norm}")
    if not 0 <= phase.lr_warmup_steps < phase.steps:
        raise TLCMError(
            f"{flag}.lr-warmup-steps must be in 0..{phase.steps - 1} (fewer than the phase's "
            f"{phase.steps} steps), got {phase.lr_warmup_steps}"
        )
    if phase.grad_accum < 1:
        raise TLCMError(
            f"{flag}.grad-accum must be >= 1 (micro-steps per optimizer step), got {phase.grad_accum}"
        )
    if not 1 <= phase.batch_size <= MAX_BATCH_SIZE:
        raise TLCMError(f"{flag}.batch-size must be in 1..{MAX_BATCH_SIZE}, got {phase.batch_size}")
    if not phase.losses:
        raise TLCMError(f"phase {name!r} has no loss terms: add one under {flag}.losses")
    left: set[str] = set()
    for loss_name, loss in phase.losses.items():
        for key, first in loss.shared_reads().items():
            if key not in left:
                raise TLCMError(
                    f"{flag}.losses.{loss_name} reads the step's {key!r}, which no loss listed before "
                    f"it leaves: list {first} before {loss_name!r} in {flag}.losses"
                )
        left.update(loss.shared_leaves())
        if not math.isfinite(loss.weight):
            raise TLCMError(f"{flag}.losses.{loss_name}.weight must be a finite number, got {loss.weight}")
        for field, (why, otherwise) in loss.data_needs().items():
            if getattr(recipe.data, field) is None:
                option = field.replace("_", "-")
                raise TLCMError(
                    f"{flag}.losses.{loss_name}.{why} needs --recipes.data.{option} DIR "
                    f"({DATA_HOW[field]}), or {otherwise}"
                )
        try:
            loss.validate(num_train_timesteps, recipe.student.grid)
        except ValueError as err:
            where = f"T = {num_train_timesteps}, from {Path(recipe.model.path) / 'scheduler'}"
            raise TLCMError(_loss_problem(f"{flag}.losses.{loss_name}", loss, str(err), where)) from err


def _loss_problem(flag: str, loss, problem: str, where: str) -> str:
    """A loss config's ValueError as a line in flag spelling: a leading field name becomes its flag
    (``ema_decay must be ...`` -> ``FLAG.ema-decay must be ...``), other field names hyphens; the
    schedule's ``where`` is added when the problem names T or timesteps."""
    names = sorted((f.name for f in dataclasses.fields(loss)), key=len, reverse=True)
    lead = next((n for n in names if re.match(rf"{n}\b", problem)), None)
    line = f"{flag}.{lead.replace('_', '-')}{problem[len(lead) :]}" if lead else f"{flag}: {problem}"
    for name in names:
        line = re.sub(rf"(?<![.\w]){name}\b", name.replace("_", "-"), line)
    return f"{line} ({where})" if re.search(r"\bT\b|timestep", problem) else line


def _check_student(student) -> None:
    """LoRA rank / alpha and ``init_from``."""
    if not student.full_finetune:
        if student.lora_rank < 1:
            raise TLCMError(
                f"--recipes.student.lora-rank must be >= 1, got {student.lora_rank} "
                "(or train every weight with --recipes.student.full-finetune)"
            )
        if not (math.isfinite(student.lora_alpha) and student.lora_alpha > 0):
            raise TLCMError(
                "--recipes.student.lora-alpha must be > 0 (the LoRA scale is alpha / rank), "
                f"got {student.lora_alpha}"
            )
    check_run_folder(student.init_from, "--recipes.student.init-from", "runs/mlcd")


def _check_data(recipe: Recipe) -> None:
    """The training data: a model other than the bundled miniatures needs its own prompts or images
    (unset, the prompts are the miniatures' 40 handwritten-digit ones); the data folders:
    trajectory cache, real images (whose captions replace the prompts), embedding cache."""
    if recipe.data.on_miniature_prompts(recipe.model.path):
        raise TLCMError(
            f"--recipes.model.path {recipe.model.path} would train on the miniature's 40 handwritten-digit "
            "prompts (--recipes.data.prompts unset): pass --recipes.data.prompts FILE (.txt, one prompt "
            "per line, or .jsonl) or --recipes.data.images DIR (their captions); to train on those 40 "
            f"on purpose: --recipes.data.prompts {MINIATURE_PROMPTS}"
        )
    cache = recipe.data.trajectory_cache
    if cache is not None and not Path(cache).is_dir():
        prompts = "" if recipe.data.prompts is None else f" --prompts {recipe.data.prompts}"
        raise TLCMError(
            f"--recipes.data.trajectory-cache {cache} is not a folder: build it with python -m "
            f"tlcm.data.trajectories --model {recipe.model.path}{prompts} --out {cache}"
        )
    images = recipe.data.images
    if images is not None and recipe.data.prompts is not None:
        raise TLCMError(
            f"--recipes.data.images {images} and --recipes.data.prompts {recipe.data.prompts} are both "
            "set: with real images the prompts are their captions; drop --recipes.data.prompts"
        )
    pattern = "*" in str(images) or "{" in str(images)
    if images is not None and not pattern and Path(images) != MINIATURE_DIGITS and not Path(images).exists():
        raise TLCMError(
            f"--recipes.data.images {images} does not exist: pass an image folder with metadata.jsonl or "
            f"webdataset shards ({DATA_HOW['images']})"
        )
    _check_digit_reward(recipe)
    embeddings = recipe.data.embedding_cache
    if embeddings is not None and Path(embeddings).exists() and not Path(embeddings).is_dir():
        raise TLCMError(
            f"--recipes.data.embedding-cache {embeddings} is a file, not a folder: pass a folder "
            "(created and filled on the first run)"
        )


def _check_digit_reward(recipe: Recipe) -> None:
    """The digit reward (the miniature's classifier) scores the digit each prompt names: refused
    before training on a prompt file with a prompt that names none (walkthrough 11: tlcm-paper on
    other prompts failed with a traceback when its third phase started)."""
    flags = [
        f"--recipes.phases.{name}.losses.{key}.reward"
        for name, phase in recipe.phases.items()
        for key, loss in phase.losses.items()
        if getattr(loss, "reward", None) == "digit"
    ]
    if not flags or recipe.data.prompts is None or recipe.data.images is not None:
        return
    for prompt in load_prompts(recipe.data.prompts):
        try:
            prompt_digit(prompt)
        except ValueError:
            raise TLCMError(
                f"{flags[0]} digit (the miniature's digit classifier) needs prompts that name a digit, "
                f"but --recipes.data.prompts {recipe.data.prompts} has {prompt!r}: for other prompts use "
                "reward clip or pickscore (with its .clip-folder)"
            ) from None


def _check_runtime(rt, full_finetune: bool, family) -> None:
    """Device, memory budget, seed, export formats, trackers, intervals, guards, out_dir."""
    flag = "--recipes.runtime"
    check_device(rt.device, f"{flag}.device")
    if rt.memory_budget_gib is not None and not rt.memory_budget_gib > 0:
        raise TLCMError(f"{flag}.memory-budget-gib must be > 0 (GiB), got {rt.memory_budget_gib}")
    check_seed(rt.seed, f"{flag}.seed")
    check_export_formats(rt.export_formats, f"{flag}.export-formats", lora=not full_finetune, family=family)
    check_trackers(rt.trackers, f"{flag}.trackers")
    check_compile_backend(rt.compile_backend, f"{flag}.compile-backend")
    if rt.checkpoint_every < 0:
        raise TLCMError(
            f"{flag}.checkpoint-every must be >= 0 (0: only at phase ends and on SIGTERM), "
            f"got {rt.checkpoint_every}"
        )
    if rt.log_every < 1:
        raise TLCMError(f"{flag}.log-every must be >= 1 (report every N steps), got {rt.log_every}")
    if not 0 <= rt.max_skipped_fraction <= 1:
        raise TLCMError(f"{flag}.max-skipped-fraction must be in 0..1, got {rt.max_skipped_fraction}")
    if not rt.max_weight_abs > 0:
        raise TLCMError(
            f"{flag}.max-weight-abs must be > 0 (inf disables the divergence guard), got {rt.max_weight_abs}"
        )
    if rt.eval_samples_per_digit < 0:
        raise TLCMError(
            f"{flag}.eval-samples-per-digit must be >= 0 (0: off), got {rt.eval_samples_per_digit}"
        )
    check_out_dir(rt.out_dir, f"{flag}.out-dir")
