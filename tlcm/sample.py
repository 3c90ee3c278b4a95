"""Few-step sampling from the command line: ``python -m tlcm.sample --steps 4 --prompt "..."``
(``--import MODULE``: a module of yours, e.g. one that registers a model family; tlcm/user_modules.py).

Without ``--student`` the base model (teacher) samples with CFG + deterministic DDIM on an evenly
spaced grid of ``--steps`` steps; with ``--student RUN`` the trained student samples with the TLCM
sampler. Writes one PNG grid: a row per prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
import tyro
from rich.console import Console
from rich.progress import Progress

from tlcm.checks import (
    check_device,
    check_gamma,
    check_guidance_scale,
    check_out_file,
    check_run_folder,
    check_seed,
)
from tlcm.config import FrozenDtype
from tlcm.data.prompts import clean_prompt
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.sampling import sample_latents, teacher_timesteps
from tlcm.errors import TLCMError, note, run_cli
from tlcm.resume import check_has_checkpoint, run_folder, student_model, trained_imports
from tlcm.toy import MINIATURE_SD, TEACHER_GUIDANCE_SCALE
from tlcm.user_modules import cli_args


@dataclass
class SampleArgs:
    """Sample a grid of images from a diffusers folder (default: the miniature pipeline)."""

    prompt: tuple[str, ...] = ("a handwritten digit seven",)
    """Prompts; the grid has one row per prompt."""
    steps: int = 4
    """Number of sampling steps (UNet calls per image; CFG makes each a batched pair)."""
    model: Path | None = None
    """Local diffusers folder of the base model (default: with --student the one its run was trained
    on, else the miniature pipeline)."""
    guidance_scale: float = TEACHER_GUIDANCE_SCALE
    """Classifier-free guidance scale w of the teacher."""
    num_per_prompt: int = 8
    """Images per prompt (the grid's columns)."""
    seed: int = 0
    """Seed of the initial noise and of the sampler's fresh noise between steps (a CPU generator:
    the same images on any device)."""
    out: Path = Path("outputs/samples.png")
    """Where to write the image grid (.png, .jpg, .jpeg or .webp)."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Torch device."""
    dtype: FrozenDtype = "auto"
    """Frozen weights' dtype; bf16 / fp16 weights sample under autocast to it (the student's fp32
    LoRA too). "auto": bf16 on CUDA, fp32 on CPU."""
    max_sequence_length: int | None = None
    """T5 tokens of SD3 / FLUX prompts (None: with --student the run's, else the pipeline's default;
    the flow miniature: 8)."""
    student: Path | None = None
    """A tlcm run folder (e.g. runs/tlcm-full): sample its student with the TLCM sampler (no CFG,
    the milestone timesteps and gamma of the grid it was trained on; --steps in 1..M)."""
    gamma: float | None = None
    """With --student: the sampler's gamma for every move instead of the run's (1: LCM, 0: DDIM)."""
    first_gamma: float | None = None
    """With --student: the gamma of the first move (from pure noise) instead of the run's."""


def check_sample_args(args: SampleArgs, from_run: bool = False) -> None:
    """The checks that need no model (flags, output path, folders): one-line TLCMErrors
    (``from_run``: --model is the base model --student's run recorded, not a flag's)."""
    from tlcm.models.folders import check_model_folder, scheduler_timesteps

    if args.num_per_prompt < 1:
        raise TLCMError(f"--num-per-prompt must be >= 1 (images per prompt), got {args.num_per_prompt}")
    check_guidance_scale(args.guidance_scale, "--guidance-scale")
    check_gamma(args.gamma, "--gamma")
    check_gamma(args.first_gamma, "--first-gamma")
    check_device(args.device, "--device")
    check_seed(args.seed, "--seed")
    check_out_file(args.out, "--out")
    check_run_folder(args.student, "--student")
    if args.student is None:
        for flag, value in (("--gamma", args.gamma), ("--first-gamma", args.first_gamma)):
            if value is not None:
                raise TLCMError(f"{flag} sets the student's sampler: pass --student RUN, or drop {flag}")
    elif args.guidance_scale != TEACHER_GUIDANCE_SCALE:
        raise TLCMError("--guidance-scale is the teacher's: a student samples without CFG; drop it")
    run = args.student if from_run else None
    check_model_folder(args.model, "--model", run, trained_imports(run) if run is not None else ())
    steps = scheduler_timesteps(args.model)
    if args.student is None and args.steps >= steps:
        raise TLCMError(
            f"--steps {args.steps}: the teacher's DDIM grid has at most {steps - 1} steps on the "
            f"{steps}-timestep schedule of {args.model}: use --steps 1..{steps - 1}"
        )


def main(args: SampleArgs) -> Path:
    """Sample and write the grid; returns its path."""
    if args.steps < 1:
        raise TLCMError(f"--steps must be >= 1, got {args.steps}")
    if not args.prompt:
        raise TLCMError("--prompt needs at least one prompt")
    empty = [i for i, p in enumerate(args.prompt, start=1) if not clean_prompt(p)]
    if empty:
        raise TLCMError(f"--prompt #{empty[0]} of {len(args.prompt)} is empty: give it text or drop it")
    from_run = args.student is not None and args.model is None
    if args.student is not None:
        run = run_folder(args.student, "--student")
        model, length = student_model(run, args.model, args.max_sequence_length, note)
        args = replace(args, student=run, model=model, max_sequence_length=length)
    args = replace(args, model=args.model or MINIATURE_SD)
    check_sample_args(args, from_run)
    if args.student is not None:  # before the base model loads
        check_has_checkpoint(args.student, "--student")
    # the model libraries (diffusers, peft, torchvision) load here: --help and bad input are quick
    from tlcm.images import save_grid
    from tlcm.models.base import BaseModel, frozen_dtype
    from tlcm.models.student import Student

    base = BaseModel.load(
        args.model,
        device=args.device,
        dtype=frozen_dtype(args.dtype, args.device, autocast=True),
        flag="--model",
        max_sequence_length=args.max_sequence_length,
    )
    prompts = [p for p in args.prompt for _ in range(args.num_per_prompt)]
    cond, uncond = base.encode(prompts)
    generator = torch.Generator().manual_seed(args.seed)  # host: the same images on any device
    noise = torch.randn((len(prompts), *base.latent_shape), generator=generator).to(base.device)
    if args.student is None:
        denoiser, gamma, first_gamma = Guided(base.denoiser(), args.guidance_scale, uncond[:1]), 0.0, None
        timesteps = teacher_timesteps(args.steps, base.schedule)
    else:
        trained = Student.from_run(base, args.student)
        trained.fuse()  # LoRA merged into the UNet: plain UNet calls from here on
        grid = trained.config.grid.with_sampler(args.gamma, args.first_gamma)
        if not 1 <= args.steps <= grid.num_milestones:
            raise TLCMError(
                f"--steps must be in 1..{grid.num_milestones} for this student "
                f"(M = {grid.num_milestones} milestones), got {args.steps}"
            )
        denoiser = trained.denoiser()
        gamma, first_gamma = grid.gamma, grid.first_gamma
        timesteps = grid.timesteps(args.steps, base.schedule).tolist()
    with Progress(console=Console(stderr=True), transient=True) as progress, base.autocast():
        task = progress.add_task(f"sampling {len(prompts)} images", total=args.steps)
        latents = sample_latents(
            denoiser,
            base.schedule,
            cond,
            noise,
            timesteps,
            gamma=gamma,
            generator=generator,
            on_step=lambda i: progress.advance(task),
            first_gamma=first_gamma,
        )
        images = base.decode(latents)
    path = save_grid(images, args.out, nrow=args.num_per_prompt)
    Console().print(f"wrote {path} ({len(args.prompt)} x {args.num_per_prompt} images, {args.steps} steps)")
    return path


def cli(args: list[str] | None = None) -> Path:
    """The command line: parse ``args`` (default: sys.argv) and sample."""
    return main(tyro.cli(SampleArgs, args=cli_args(args), prog="python -m tlcm.sample"))


if __name__ == "__main__":
    run_cli(cli)
