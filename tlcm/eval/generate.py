"""``python -m tlcm.evaluate generate``: one image per prompt of a prompt set, resumably.

Output folder: ``meta.json`` (the model and sampler settings; a rerun with other settings is
refused), ``prompts.jsonl`` (index, prompt, COCO image), ``images/00000.png`` ... Images are
written as they come and skipped when present, so a killed run resumes by running it again.
Under torchrun each rank takes every world-th prompt (no process group needed). Image i starts
from noise drawn by a CPU generator seeded with (seed * 1_000_003 + i) mod 2^32 (``noise_generator``),
which also feeds the sampler's fresh noise: two models (teacher, students) see the same starting
noise for the same prompt, in any batch size and on any number of processes.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress

from tlcm.checks import check_device, check_gamma, check_out_dir, check_seed, check_teacher_scheduler
from tlcm.errors import TLCMError
from tlcm.eval.prompts import load_prompt_set


@dataclass
class GenerateArgs:
    """Generate evaluation images of a teacher or a student for a prompt set."""

    model: Path
    """Local diffusers folder (SD1.5 or SDXL): the teacher, or the student's base."""
    prompts: Path
    """Prompt set: COCO captions_*.json, PartiPrompts .tsv, HPSv2 benchmark .json (or a folder of
    them), .txt or .jsonl."""
    out: Path
    """Output folder (images/, prompts.jsonl, meta.json); rerun the same command to resume."""
    student: Path | None = None
    """A tlcm run, an export folder (RUN/student), a LoRA .safetensors or a UNet folder."""
    steps: int | None = None
    """Sampling steps (default: 4 for a student, 25 for a teacher)."""
    gamma: float | None = None
    """Student: TLCMScheduler gamma (1 LCM-style fresh noise, 0 DDIM); default: the export's (1)."""
    num_milestones: int = 8
    """Student given as a bare LoRA / UNet: the M of its TLCM grid (exports carry their own)."""
    scheduler: str = "ddim"
    """Teacher sampler: ddim, euler, euler-a, dpm++, pndm or default (the folder's)."""
    guidance_scale: float = 8.0
    """Teacher CFG scale w (students sample without CFG)."""
    num_prompts: int | None = None
    """N prompts, a fixed-seed subset (default: 5000 for COCO, all for other sets)."""
    seed: int = 0
    """Seed of the prompt subset and of every image's noise."""
    batch_size: int = 8
    """Images per pipeline call."""
    resolution: int | None = None
    """Image height = width (default: the model's, 1024 for SDXL, 512 for SD1.5)."""
    label: str | None = None
    """Model name in the results table (default: from the student / model path and sampler)."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Torch device (bf16 on GPU, fp32 on CPU); under torchrun, cuda:LOCAL_RANK."""


def check_args(args: GenerateArgs) -> None:
    """The checks that need no model: one-line TLCMErrors."""
    from tlcm.models.folders import check_model_folder

    if args.steps is not None and args.steps < 1:
        raise TLCMError(f"--steps must be >= 1, got {args.steps}")
    if args.batch_size < 1:
        raise TLCMError(f"--batch-size must be >= 1, got {args.batch_size}")
    check_gamma(args.gamma, "--gamma")
    if args.num_milestones < 1:
        raise TLCMError(f"--num-milestones must be >= 1, got {args.num_milestones}")
    if not math.isfinite(args.guidance_scale):
        raise TLCMError(f"--guidance-scale must be a finite number, got {args.guidance_scale}")
    check_teacher_scheduler(args.scheduler)
    if args.resolution is not None and (args.resolution < 8 or args.resolution % 8):
        raise TLCMError(f"--resolution must be a multiple of 8, got {args.resolution}")
    check_seed(args.seed, "--seed", 2**31)
    check_device(args.device, "--device")
    check_model_folder(args.model, "--model")
    if args.student is not None and not args.student.exists():
        raise TLCMError(f"--student {args.student} does not exist")
    check_out_dir(args.out / "images", "--out")


def settings(args: GenerateArgs, steps: int) -> dict:
    """What decides the images (meta.json); a resume must match it."""
    from tlcm.eval.pipeline import student_label

    student = args.student is not None
    teacher = f"{Path(args.model).name} ({args.scheduler}, w={args.guidance_scale:g})"
    label = args.label or (student_label(args.student) if student else teacher)
    return {
        "label": label,
        "model": str(Path(args.model).resolve()),
        "student": str(Path(args.student).resolve()) if student else None,
        "sampler": "tlcm" if student else args.scheduler,
        "steps": steps,
        "guidance_scale": None if student else args.guidance_scale,
        "gamma": args.gamma if student else None,
        "num_milestones": args.num_milestones if student else None,
        "seed": args.seed,
        "noise": NOISE_SEEDS,
        "resolution": args.resolution,
        "prompts": str(Path(args.prompts).resolve()),
        "num_prompts": args.num_prompts,
    }


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


NOISE_SEEDS = "(seed * 1_000_003 + index) mod 2^32"
"""How ``noise_generator`` seeds (in meta.json: folders made otherwise are refused). torch's CPU
generator keeps the seed's low 32 bits only, so the earlier (seed << 32) + index gave every
--seed the same noise."""


def noise_generator(seed: int, index: int) -> torch.Generator:
    """The CPU generator of image ``index`` (``NOISE_SEEDS``: distinct for every index below
    1_000_003 and seeds less than 4294 apart): its first draw is the starting noise."""
    return torch.Generator("cpu").manual_seed((seed * 1_000_003 + index) % 2**32)


def generate(args: GenerateArgs) -> int:
    """Generate the missing images of this process's share; returns how many it wrote."""
    check_args(args)  # before the model libraries load
    from tlcm.eval.pipeline import load_pipeline

    steps = args.steps or (4 if args.student is not None else 25)
    records = load_prompt_set(args.prompts, args.num_prompts, args.seed)
    meta, out = settings(args, steps), Path(args.out)
    if (out / "meta.json").is_file() and any((out / "images").glob("*.png")):
        try:
            old = json.loads((out / "meta.json").read_text())
        except ValueError as err:
            raise TLCMError(f"{out}/meta.json is not JSON ({err}): delete it to use these settings") from err
        changed = [k for k in meta if k != "label" and old.get(k) != meta[k]]
        if changed:
            raise TLCMError(
                f"{out} holds images made with other settings ({', '.join(changed)}): pass a new --out"
            )
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    todo = [i for i in range(rank, len(records), world) if not (out / "images" / f"{i:05d}.png").is_file()]
    console = Console(stderr=True)
    if not todo:
        console.print(f"{out}: all {len(records)} images of this rank's share are there")
        return 0
    device = args.device
    if world > 1 and torch.device(device).type == "cuda":
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    base = load_pipeline(  # its checks (steps, the student's files) come before anything is written
        args.model, device, args.student, steps, args.scheduler, args.gamma, args.num_milestones
    )
    _write_atomic(out / "meta.json", json.dumps(meta, indent=1) + "\n")
    lines = [json.dumps({"index": i, "prompt": r.prompt, "image": r.image}) for i, r in enumerate(records)]
    _write_atomic(out / "prompts.jsonl", "\n".join(lines) + "\n")
    pipe = base.pipe
    shape = base.family.latent_shape(pipe, args.resolution)
    size = shape[-1] * pipe.vae_scale_factor
    w = 0.0 if args.student is not None else args.guidance_scale
    with Progress(console=console, disable=rank != 0) as progress:
        task = progress.add_task(f"{meta['label']}, {steps} steps", total=len(todo))
        for start in range(0, len(todo), args.batch_size):
            batch = todo[start : start + args.batch_size]
            generators = [noise_generator(args.seed, i) for i in batch]
            latents = torch.stack([torch.randn(shape, generator=g, device="cpu") for g in generators])
            with base.autocast():  # bf16 base: LoRA in bf16, bf16 latents into an fp32 VAE
                images = pipe(
                    prompt=[records[i].prompt for i in batch], height=size, width=size,
                    num_inference_steps=steps, guidance_scale=w, generator=generators,
                    latents=base.family.pipeline_latents(latents.to(base.device, base.net.dtype)),
                    output_type="pil",
                ).images  # fmt: skip
            for i, image in zip(batch, images, strict=True):
                tmp = out / "images" / f".{i:05d}.{os.getpid()}.png"
                image.save(tmp)
                os.replace(tmp, out / "images" / f"{i:05d}.png")
            progress.advance(task, len(batch))
    if rank == 0:
        console.print(
            f"wrote {len(todo)} images ({size} px, {steps} steps) to {out / 'images'}; "
            f"score them with python -m tlcm.evaluate score (docs/evaluation.md)"
        )
    return len(todo)
