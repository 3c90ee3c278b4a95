"""Few-step sampling from the command line: ``python -m tlcm.sample --steps 4 --prompt "..."``.

Without ``--student`` the base model (teacher) samples with CFG + deterministic DDIM on an evenly
spaced grid of ``--steps`` steps; with ``--student RUN`` the trained student samples with the TLCM
sampler. Writes one PNG grid: a row per prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import tyro
from rich.console import Console
from rich.progress import Progress

from tlcm.diffusion.milestones import inference_timesteps
from tlcm.errors import TLCMError, run_cli
from tlcm.images import save_grid
from tlcm.models.base import BaseModel
from tlcm.models.student import Student
from tlcm.sampling import ddim_timesteps, sample_latents
from tlcm.toy import MINIATURE_SD, TEACHER_GUIDANCE_SCALE


@dataclass
class SampleArgs:
    """Sample a grid of images from a diffusers folder (default: the miniature pipeline)."""

    prompt: tuple[str, ...] = ("a handwritten digit seven",)
    """Prompts; the grid has one row per prompt."""
    steps: int = 4
    """Number of sampling steps (UNet calls per image; CFG makes each a batched pair)."""
    model: Path = MINIATURE_SD
    """Local diffusers folder of the base model."""
    guidance_scale: float = TEACHER_GUIDANCE_SCALE
    """Classifier-free guidance scale w of the teacher."""
    num_per_prompt: int = 8
    """Images per prompt (the grid's columns)."""
    seed: int = 0
    """Seed of the initial noise."""
    out: Path = Path("outputs/samples.png")
    """Where to write the PNG grid."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Torch device."""
    student: Path | None = None
    """A tlcm run folder (e.g. runs/tlcm-full): sample its student with the TLCM sampler (no CFG,
    fresh noise between steps, the authors' milestone timesteps; --steps in 1..8)."""


def main(args: SampleArgs) -> Path:
    """Sample and write the grid; returns its path."""
    if args.steps < 1:
        raise TLCMError(f"--steps must be >= 1, got {args.steps}")
    if not args.prompt or not all(p.strip() for p in args.prompt):
        raise TLCMError("--prompt needs at least one non-empty prompt")
    base = BaseModel.load(args.model, device=args.device)
    prompts = [p for p in args.prompt for _ in range(args.num_per_prompt)]
    cond, uncond = base.encode(prompts)
    generator = torch.Generator(device=base.device).manual_seed(args.seed)
    noise = torch.randn((len(prompts), *base.latent_shape), generator=generator, device=base.device)
    if args.student is None:
        denoiser, gamma, w = base.denoiser(), 0.0, args.guidance_scale
        timesteps = ddim_timesteps(args.steps, base.schedule.num_train_timesteps)
    else:
        if not 1 <= args.steps <= 8:
            raise TLCMError(f"--steps must be in 1..8 for a student (M = 8 milestones), got {args.steps}")
        denoiser, gamma, w = Student.from_run(base, args.student).denoiser(), 1.0, 1.0
        timesteps = inference_timesteps(args.steps, 8, base.schedule.num_train_timesteps).tolist()
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"sampling {len(prompts)} images", total=args.steps)
        latents = sample_latents(
            denoiser,
            base.schedule,
            cond,
            noise,
            timesteps,
            gamma=gamma,
            uncond=uncond,
            guidance_scale=w,
            generator=generator,
            on_step=lambda i: progress.advance(task),
        )
        images = base.decode(latents)
    path = save_grid(images, args.out, nrow=args.num_per_prompt)
    Console().print(f"wrote {path} ({len(args.prompt)} x {args.num_per_prompt} images, {args.steps} steps)")
    return path


if __name__ == "__main__":
    run_cli(lambda: main(tyro.cli(SampleArgs)))
