"""Export a trained student: ``python -m tlcm.export RUN --format kohya`` converts an existing run
(``--import MODULE`` first where its model family comes from a module of yours: tlcm/user_modules.py).

Files of an export folder (RUN/student/ by default; the engine writes the formats of
``--recipes.runtime.export-formats``, default diffusers only):

- ``pytorch_lora_weights.safetensors`` (diffusers): the peft state dict of the "student" adapter
  with the network's prefix (``unet.`` or ``transformer.``: what the family's pipeline's
  ``load_lora_weights`` reads), ``unet.<module>.lora_A.weight`` (rank x in) / ``lora_B.weight`` (out x
  rank), and the LoRA config (rank, alpha, targets) as the header's ``lora_adapter_metadata``, so
  ``pipe.load_lora_weights(RUN/student)`` scales by alpha / rank even when alpha != rank.
- ``<run name>_kohya.safetensors`` (kohya / ComfyUI / A1111): per LoRA'd module (Linear and Conv2d
  alike) three tensors, the module path with "." -> "_" under ``lora_unet_``::

      unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight
        -> lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight
      ...lora_B.weight -> ...lora_up.weight        (same tensor: conv down k x k, conv up 1 x 1)
      (new)            -> ...alpha                 (0-dim float32: the LoRA alpha; scale alpha / rank)

  These are the diffusers module names kohya's sd-scripts use for SD1.5; ComfyUI maps them for
  SDXL too, and diffusers' ``load_lora_weights`` reads them for both. SD1.5 / SDXL only.
- ``pipeline/`` (format "pipeline"): the whole diffusers pipeline with the student merged into
  its network (``Student.fused_state_dict``: W + (alpha / r) B A, in the base weights' dtype) and
  the TLCM scheduler as its scheduler (model_index.json names ``["tlcm", "TLCMScheduler"]``, which
  diffusers' loader imports): ``DiffusionPipeline.from_pretrained(RUN/student/pipeline)`` samples
  in 1-8 steps with no LoRA to load and no adapter matmuls. The base's other components (text
  encoders, tokenizers, VAE, licence files) are copied, not linked: for SDXL about 7 GB more on
  disk. Each export replaces it whole.
- ``scheduler/``: the TLCMScheduler (VP) or TLCMFlowScheduler (SD3 / FLUX) config on the
  student's grid; ``README.md``: the model card (tlcm/card.py). A full fine-tune exports the
  network's folder (``unet/`` or ``transformer/``, diffusers) instead of a LoRA.

Two identical runs write byte-identical .safetensors files: tensors sorted by name, contiguous on
the CPU, and the header's metadata sorted (``save_safetensors``; safetensors itself writes it in
hash order, which changes from call to call), the LoRA config's sets as sorted lists.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import torch
import tyro
from rich.console import Console

from tlcm.card import CARD_FILE, DIFFUSERS_FILE, kohya_file, list_pipeline, write_model_card
from tlcm.checks import check_device, check_export_formats, check_out_dir
from tlcm.diffusion.milestones import StudentGrid
from tlcm.errors import TLCMError, note, run_cli
from tlcm.files import save_tensors, write_failed
from tlcm.resume import check_has_checkpoint, run_folder, student_model, trained_imports
from tlcm.user_modules import cli_args

if TYPE_CHECKING:  # the model libraries load when exporting starts: --help and flag errors are quick
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student


def run_name(run_dir: Path) -> str:
    """A run folder's name ("tlcm-full" for runs/tlcm-full), naming its kohya file."""
    return Path(run_dir).resolve().name or "tlcm"


def kohya_state_dict(lora: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """A peft LoRA state dict (``<module>.lora_A.weight`` / ``lora_B.weight``, no adapter name) in
    kohya's format (see the module docstring), every module with ``alpha``."""
    parts = {"lora_A.weight": "lora_down.weight", "lora_B.weight": "lora_up.weight"}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in lora.items():
        module, _, part = key.rpartition(".lora_")
        if f"lora_{part}" not in parts:
            raise ValueError(f"{key} is not a plain LoRA weight (lora_A / lora_B): kohya has no name for it")
        name = "lora_unet_" + module.replace(".", "_")
        out[f"{name}.{parts[f'lora_{part}']}"] = tensor
        out[f"{name}.alpha"] = torch.tensor(float(alpha), dtype=torch.float32, device="cpu")
    return out


def _sorted_json(value: Any) -> Any:
    """``value`` with every set a sorted list (JSON, and the same bytes in every process)."""
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, dict):
        return {k: _sorted_json(v) for k, v in value.items()}
    return value


def save_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> Path:
    """``safetensors.torch.save_file`` with reproducible bytes: contiguous CPU tensors and the
    header's metadata sorted by key (rewritten in place: the same JSON in another key order)."""
    save_tensors({k: v.detach().contiguous().cpu() for k, v in sorted(tensors.items())}, path, metadata)
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        if "__metadata__" in header:
            header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(raw) > size:  # cannot happen (same JSON, other key order); never write a bad file
            raise RuntimeError(f"{path}: the sorted safetensors header grew ({len(raw)} > {size} bytes)")
        f.seek(8)
        f.write(raw.ljust(size))
    return path


def diffusers_lora(
    student: Student, weights: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The diffusers-format LoRA of ``student`` with ``weights`` (its state dict): (tensors, metadata)."""
    prefix = student.base.family.net
    config = {f"{prefix}.{k}": v for k, v in _sorted_json(student.lora_config.to_dict()).items()}
    metadata = {"format": "pt", "lora_adapter_metadata": json.dumps(config, indent=2, sort_keys=True)}
    return {f"{prefix}.{k}": v for k, v in weights.items()}, metadata


def kohya_lora(
    student: Student, weights: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The kohya-format LoRA of ``student``: (tensors, safetensors metadata: kohya's ss_* network
    keys, which A1111 shows and sorts by, and the student grid)."""
    config = student.config
    metadata = {
        "format": "pt",
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(config.lora_rank),
        "ss_network_alpha": str(config.lora_alpha),
        "ss_base_model_version": student.base.family.kohya,
        "tlcm_student_grid": json.dumps(asdict(config.grid)),
    }
    return kohya_state_dict(weights, config.lora_alpha), metadata


def tlcm_scheduler(base: BaseModel, grid: StudentGrid):
    """The family's TLCM scheduler (TLCMScheduler / TLCMFlowScheduler) from the base pipeline's
    scheduler config, on the student's ``grid`` (M milestones, gamma)."""
    import tlcm.diffusion.scheduler

    cls = getattr(tlcm.diffusion.scheduler, base.family.scheduler)
    return cls.from_config(
        base.pipe.scheduler.config,
        num_milestones=grid.num_milestones,
        gamma=grid.gamma,
        first_gamma=grid.first_gamma,
    )


PIPELINE_FOLDER = "pipeline"
"""The "pipeline" format's folder in the export folder."""


def export_pipeline(student: Student, folder: Path) -> Path:
    """Write the base pipeline with ``student`` merged to ``folder`` (see the module docstring):
    every top-level entry of the base folder but its network, scheduler, model_index.json, hidden
    files and Markdown (the base's own card) is copied; the network's config and fused weights
    (in the dtype the base stores its network in, whatever dtype training loaded it in; named
    with the base's weights variant, if any, so that ``from_pretrained(variant=...)`` reads every
    component alike), the TLCM scheduler and model_index.json are written. A ``folder`` left
    by an earlier export is replaced; any other existing one is refused, and so is a disk without
    room for the copies and the fused weights (``check_free_space``), before anything is written."""
    from tlcm.models.families.base import weights_variant

    base, family = student.base, student.base.family
    source = Path(base.path)
    if folder.exists() and not (folder / "model_index.json").is_file():
        raise TLCMError(f"{folder} exists and is not an exported pipeline: move it away, or pass --out DIR")
    copied = [item for item in sorted(source.iterdir()) if _copied(item, family.net)]
    variant = weights_variant(source)
    fused = student.fused_state_dict()
    dtype = stored_dtype(source / family.net, variant)
    if dtype is not None:
        fused = {k: v.to(dtype) if v.is_floating_point() else v for k, v in fused.items()}
    need = sum(map(tree_bytes, copied)) + sum(v.numel() * v.element_size() for v in fused.values())
    check_free_space(folder, need)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for item in copied:
        if item.is_dir():
            shutil.copytree(item, folder / item.name)
        else:
            shutil.copy2(item, folder / item.name)
    index = json.loads((source / "model_index.json").read_text())
    index["scheduler"] = ["tlcm", family.scheduler]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    tlcm_scheduler(base, student.config.grid).save_pretrained(folder / "scheduler")
    net = folder / family.net
    student.net.save_config(net)
    weights = "diffusion_pytorch_model" + (f".{variant}" if variant else "") + ".safetensors"
    save_safetensors(fused, {"format": "pt"}, net / weights)
    return folder


def _copied(item: Path, net: str) -> bool:
    """Whether the pipeline export copies this top-level entry of the base folder as it is."""
    skip = item.name in (net, "scheduler", "model_index.json") or item.suffix == ".md"
    return not (skip or item.name.startswith("."))


def tree_bytes(path: Path) -> int:
    """Bytes of the file ``path``, or of every file under the folder ``path``."""
    return path.stat().st_size if path.is_file() else sum(tree_bytes(p) for p in path.iterdir())


def check_free_space(folder: Path, need: int) -> None:
    """Refuse (one-line TLCMError) to write ``need`` bytes to ``folder`` (replacing what is there)
    when its disk has less free: the export would fill it partway, for the size of a pipeline
    (SDXL about 7 GB, FLUX about 34 GB)."""
    existing = folder if folder.exists() else next(p for p in folder.parents if p.exists())
    free = shutil.disk_usage(existing).free + (tree_bytes(folder) if folder.exists() else 0)
    if free < need:
        raise TLCMError(
            f"the pipeline export to {folder} needs {need / 1e9:.2f} GB and its disk has {free / 1e9:.2f} GB "
            "free: free space there, or write it to another disk (the run's checkpoint is kept): "
            "python -m tlcm.export RUN --format pipeline --out DIR"
        )


def stored_dtype(folder: Path, variant: str | None) -> torch.dtype | None:
    """The floating dtype of the first tensor of ``folder``'s (variant) .safetensors weights (one
    tensor read), or None where they are not safetensors."""
    from safetensors import safe_open

    from tlcm.models.families.base import WEIGHTS

    for file in sorted(folder.glob("*.safetensors")):
        match = WEIGHTS.fullmatch(file.name)
        if match is not None and match[1] == variant:
            with safe_open(file, "pt") as f:
                for key in f.keys():
                    tensor = f.get_tensor(key)
                    if tensor.is_floating_point():
                        return tensor.dtype
    return None


def export_student(
    student: Student,
    out_dir: Path,
    formats: tuple[str, ...] = ("diffusers",),
    name: str = "tlcm",
    weights: dict[str, torch.Tensor] | None = None,
) -> list[Path]:
    """Write ``student`` to ``out_dir`` in ``formats`` plus the TLCMScheduler config of its grid
    (``out_dir/scheduler``); ``name`` names the kohya file. Returns the written weight files (a
    full fine-tune: the network's folder). ``weights``: the student's state dict when the caller
    has it (FSDP2: gathered on every process), else read here. A failed write (a full disk, a
    read-only folder) raises a one-line TLCMError."""
    family = student.base.family
    check_export_formats(formats, "export formats", lora=not student.config.full_finetune, family=family)
    out_dir = Path(out_dir)
    weights = student.state_dict() if weights is None else weights
    files = {"diffusers": (DIFFUSERS_FILE, diffusers_lora), "kohya": (kohya_file(name), kohya_lora)}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tlcm_scheduler(student.base, student.config.grid).save_pretrained(out_dir / "scheduler")
        written = []
        if student.config.full_finetune:  # the diffusers model folder: config + one safetensors file
            folder = out_dir / family.net
            student.net.save_config(folder)
            save_safetensors(weights, {"format": "pt"}, folder / "diffusion_pytorch_model.safetensors")
            written.append(folder)
        else:
            written += [
                save_safetensors(*build(student, weights), out_dir / file)
                for file, build in (files[f] for f in dict.fromkeys(formats) if f in files)
            ]
        if PIPELINE_FOLDER in formats:
            written.append(export_pipeline(student, out_dir / PIPELINE_FOLDER))
        return written
    except OSError as err:
        raise write_failed(f"the student to {out_dir}", err) from err


@dataclass
class ExportArgs:
    """Export a tlcm run's student (its latest checkpoint) as a diffusers and / or kohya LoRA."""

    run: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """The tlcm run folder (e.g. runs/tlcm-full)."""
    format: tuple[str, ...] = ("kohya",)
    """Formats to write: kohya (ComfyUI / A1111: RUN_NAME_kohya.safetensors), diffusers
    (pytorch_lora_weights.safetensors) and / or pipeline (pipeline/: the base pipeline with the
    student merged and the TLCM scheduler: DiffusionPipeline.from_pretrained loads it as it is)."""
    out: Path | None = None
    """Output folder (default: RUN/student); gets the scheduler config and, when it has none, a
    model card."""
    model: Path | None = None
    """The base model folder (default: the one the run was trained on)."""
    device: str = "cpu"
    """Torch device to load the model on."""


def main(args: ExportArgs) -> list[Path]:
    """Convert; returns the written weight files."""
    from tlcm.models.base import BaseModel
    from tlcm.models.families import FAMILIES
    from tlcm.models.folders import check_model_folder
    from tlcm.models.student import Student

    check_export_formats(args.format, "--format")
    args = replace(args, run=run_folder(args.run, "RUN"))
    check_device(args.device, "--device")
    card = args.run / "student" / CARD_FILE
    out = args.out or args.run / "student"
    check_has_checkpoint(args.run, "RUN")  # before check_out_dir creates RUN/student there
    model = student_model(args.run, args.model, None, note)[0]
    run = None if args.model else args.run
    family = FAMILIES[check_model_folder(model, "--model", run, trained_imports(args.run) if run else ())]
    check_export_formats(args.format, "--format", family=family)  # kohya: SD / SDXL only
    check_out_dir(
        out, "--out" if args.out else "the default --out", "pass --out DIR (a folder you can write to)"
    )
    student = Student.from_run(BaseModel.load(model, device=args.device, flag="--model"), args.run)
    name = run_name(args.run)
    written = export_student(student, out, args.format, name)
    try:
        if not (out / CARD_FILE).is_file():
            if card.is_file():
                shutil.copyfile(card, out / CARD_FILE)
            else:
                scores = args.run / "eval.json"  # python -m tlcm.train's end-of-run evaluation
                scores = json.loads(scores.read_text()) if scores.is_file() else None
                write_model_card(student, out, name, scores=scores)
        if PIPELINE_FOLDER in args.format:  # a kept card: list pipeline/ (once)
            text = (out / CARD_FILE).read_text()
            listed = list_pipeline(text)
            if listed != text:
                (out / CARD_FILE).write_text(listed)
    except OSError as err:
        raise write_failed(f"the model card to {out}", err) from err
    for path in written:
        Console().print(f"wrote {path}")
    return written


def cli(args: list[str] | None = None) -> list[Path]:
    """The command line: parse ``args`` (default: sys.argv) and export."""
    return main(tyro.cli(ExportArgs, args=cli_args(args), prog="python -m tlcm.export"))


if __name__ == "__main__":
    run_cli(cli)
