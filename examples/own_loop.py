"""tlcm's MLCD loss in your own training loop: a plain diffusers pipeline and a peft LoRA, no tlcm
engine, recipe or Student.

What a loss needs is a ``StepContext`` (tlcm/losses/base.py): the student and the guided teacher as
denoisers ``f(x (B, C, h, w), t (B,), cond) -> model output``, the schedule, the latent shape, the
student's grid (M milestones, q steps) and the batch's text conditioning. This script builds one
per step from diffusers objects, trains a LoRA on the miniature UNet with stage 1 of the paper
(MLCD, arXiv 2406.05768 Eq. (7)), then samples 2 steps on the milestones and scores them against
the teacher's 2-step DDIM + CFG with the miniature's digit classifier (alignment: higher is better;
FD: lower is better; docs/toy.md).

    python examples/own_loop.py                   # 300 steps (the recipe's stage 1), ~2.5 min on 1 core
    python examples/own_loop.py --steps 2 --out /tmp/own-loop.png
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from peft import LoraConfig

from tlcm.conditioning import Conditioning
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import StudentGrid
from tlcm.diffusion.sampling import sample_latents, teacher_timesteps
from tlcm.diffusion.schedule import VPSchedule
from tlcm.images import save_grid
from tlcm.losses.base import StepContext
from tlcm.losses.mlcd import MLCD, MLCDConfig
from tlcm.models.families import pipeline_decoder
from tlcm.toy import MINIATURE_SD, TEACHER_GUIDANCE_SCALE
from tlcm.toy.data import all_prompts, eval_prompts
from tlcm.toy.metrics import ToyMetrics


def denoiser(unet):
    """A diffusers UNet as a tlcm denoiser: (x, t, cond) -> its eps prediction."""
    return lambda x, t, cond: unet(x, t, encoder_hidden_states=cond.prompt_embeds).sample


@torch.no_grad()  # the text encoder is frozen: no graph that a second backward (DMD's aux_step) reuses
def encode(pipe: StableDiffusionPipeline, prompts: list[str]) -> Conditioning:
    """(B, L, D) CLIP token embeddings of ``prompts`` as tlcm's Conditioning."""
    embeds, _ = pipe.encode_prompt(prompts, "cpu", 1, do_classifier_free_guidance=False)
    return Conditioning(embeds)


def train(pipe, steps: int, batch: int, lr: float, seed: int) -> torch.nn.Module:
    """The miniature UNet with a rank-16 LoRA trained ``steps`` MLCD steps; returns the student UNet
    (the pipeline's UNet stays the frozen teacher)."""
    teacher_net = pipe.unet.requires_grad_(False)
    student_net = copy.deepcopy(teacher_net)
    student_net.add_adapter(
        LoraConfig(r=16, lora_alpha=16, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    schedule = VPSchedule.from_config(pipe.scheduler.config)
    teacher = Guided(denoiser(teacher_net), TEACHER_GUIDANCE_SCALE, encode(pipe, [""]))
    config = pipe.unet.config
    latent_shape = (config.in_channels, config.sample_size, config.sample_size)
    loss = MLCD(MLCDConfig(), student_net)  # M = 8 segments (the grid's), skip k = 20, MDS states
    params = [p for p in student_net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    prompts, gen = all_prompts(), torch.Generator().manual_seed(seed)
    for step in range(steps):
        rows = torch.randint(len(prompts), (batch,), generator=gen).tolist()
        ctx = StepContext.standalone(
            student=denoiser(student_net),
            teacher=teacher,
            schedule=schedule,
            latent_shape=latent_shape,
            grid=StudentGrid(num_milestones=8, steps=4),
            cond=encode(pipe, [prompts[i] for i in rows]),
            generator=gen,
            step=step,
        )
        terms = loss(ctx)
        terms["mlcd"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 25 == 0 or step == steps - 1:
            print(f"step {step + 1}/{steps}: mlcd {terms['mlcd'].item():.3g}")
    return student_net


@torch.no_grad()
def two_step_images(pipe, student_net, per_digit: int) -> dict[str, torch.Tensor]:
    """(10 * per_digit, 3, 32, 32) images in [-1, 1] of the student (2 steps on the milestones,
    fresh noise after the first step, no CFG) and of the teacher (2-step DDIM, CFG w = 2), from the
    same noise."""
    schedule = VPSchedule.from_config(pipe.scheduler.config)
    prompts, _ = eval_prompts(per_digit)
    cond, config = encode(pipe, prompts), pipe.unet.config
    noise = torch.randn(
        len(prompts),
        config.in_channels,
        config.sample_size,
        config.sample_size,
        generator=torch.Generator().manual_seed(1),
    )
    teacher = Guided(denoiser(pipe.unet), TEACHER_GUIDANCE_SCALE, encode(pipe, [""]))
    runs = {
        "student": (denoiser(student_net), StudentGrid().timesteps(2, schedule).tolist(), 1.0),
        "teacher": (teacher, teacher_timesteps(2, schedule), 0.0),
    }
    images = {}
    for name, (model, timesteps, gamma) in runs.items():
        gen = torch.Generator().manual_seed(2)
        latents = sample_latents(model, schedule, cond, noise, timesteps, gamma, generator=gen)
        images[name] = pipeline_decoder(pipe)(latents)  # / scaling_factor through the VAE, clamped
    return images


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(prog="python examples/own_loop.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="MLCD steps (default 300)")
    parser.add_argument("--batch", type=int, default=16, help="prompts per step (default 16)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate of the LoRA")
    parser.add_argument("--per-digit", type=int, default=20, help="scored images per digit (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=Path("own-loop.png"), help="2-step samples, student above teacher"
    )
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    pipe = StableDiffusionPipeline.from_pretrained(MINIATURE_SD, safety_checker=None)
    student_net = train(pipe, args.steps, args.batch, args.lr, args.seed)
    images = two_step_images(pipe, student_net, args.per_digit)
    _, labels = eval_prompts(args.per_digit)
    metrics, scores = ToyMetrics(), {}
    for name, batch in images.items():
        result = metrics(batch, labels)
        scores[name] = (result.alignment, result.fd)
        print(f"{name} at 2 steps: alignment {result.alignment:.3f}, FD {result.fd:.2f}")
    first = list(range(10))  # eval_prompts cycles the digits: one image per digit, 0-9
    save_grid(torch.cat([images["student"][first], images["teacher"][first]]), args.out, nrow=10)
    print(f"wrote {args.out} (row 1: the student, row 2: the teacher; digits 0-9)")
    return scores


if __name__ == "__main__":
    main()
