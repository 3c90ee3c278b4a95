"""Each of tlcm's losses in your own training loop: a plain diffusers pipeline, a peft LoRA and a
loop of your own, no tlcm engine, recipe or Student (examples/own_loop.py trains and scores MLCD
this way; this script shows every other loss for a few steps, and how to save and resume each).

What every loss needs is a ``StepContext`` (``StepContext.standalone``): the student and the guided
teacher as denoisers ``f(x (B, C, h, w), t (B,), cond) -> model output``, the schedule, the latent
shape (C, h, w), the student's grid, the batch's conditioning and a torch.Generator; a loss that
looks at pixels (the pixel GAN, reward feedback, Diffusion-DPO's reward) also ``decode``
(``pipeline_decoder(pipe)``: latents -> images in [-1, 1]) and ``prompts`` (one per sample). A
step is then:

    terms = loss(ctx)                      # {term: 0-dim tensor}, a graph to the student
    sum(terms.values()).backward(); opt.step(); opt.zero_grad()
    loss.aux_step([ctx])                   # DMD's fake score / GAN's discriminator: their update
    loss.after_student_step()              # MLCD with target="ema": the EMA target follows

(``aux_step`` and ``after_student_step`` do nothing for the losses that have no model of their
own, so calling both always is safe.) To save a loss, ``loss.checkpoint_state()`` (its fake score
or discriminator and their optimizers, a DPO reference's weights), not ``state_dict()``; to resume,
``load_checkpoint_state`` on a loss built the same way.

    python -m examples.own_losses                      # every loss, 2 steps each (~20 s on one core)
    python -m examples.own_losses --losses dmd gan --steps 5
"""

from __future__ import annotations

import argparse
import copy
import io
from collections.abc import Callable

import torch
from diffusers import StableDiffusionPipeline
from peft import LoraConfig

from examples.own_loop import denoiser, encode
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import StudentGrid
from tlcm.diffusion.schedule import VPSchedule
from tlcm.losses.base import Loss, StepContext
from tlcm.losses.dmd import DMD, DMDConfig
from tlcm.losses.gan import GAN, GANConfig
from tlcm.losses.mlcd import MLCD, MLCDConfig
from tlcm.losses.preference import Preference, PreferenceConfig
from tlcm.models.families import family_of, pipeline_decoder
from tlcm.models.student import TrainableCopy
from tlcm.rewards import RewardSpec, build_reward
from tlcm.toy import MINIATURE_SD, TEACHER_GUIDANCE_SCALE
from tlcm.toy.data import all_prompts


def losses(pipe: StableDiffusionPipeline, student_net: torch.nn.Module) -> dict[str, Callable[[], Loss]]:
    """Name -> a function building that loss on the miniature (called twice: to train, then to
    resume from the first one's checkpoint_state)."""
    teacher_net = pipe.unet
    reward = build_reward("digit", RewardSpec())  # the miniature's digit classifier (a log-probability)
    trainable = {n: p.detach().clone() for n, p in student_net.named_parameters() if p.requires_grad}
    return {
        # stage 1 with latent LPIPS as its distance (the shipped weights: the miniature VAE's latents)
        # and an EMA target (after_student_step moves it)
        "mlcd-latent-lpips": lambda: MLCD(MLCDConfig(distance="latent_lpips", target="ema"), student_net),
        # DMD's fake score: a trainable fp32 copy of the teacher UNet (tlcm's TrainableCopy; for an
        # SD3 / FLUX pipeline the same with pipe.transformer)
        "dmd": lambda: DMD(DMDConfig(), TrainableCopy(teacher_net, family_of(pipe))),
        # the teacher-feature discriminator: the frozen teacher UNet's encoder, trained heads, on latents
        "gan": lambda: GAN(
            GANConfig(backbone="teacher", input="latent"), teacher=(family_of(pipe), teacher_net)
        ),
        # reward feedback: its thresholds s0 / s_neg default to the reward's own scale
        "reward": lambda: Preference(PreferenceConfig(mode="reward"), reward),
        # Diffusion-DPO against the student as it starts: with_reference_weights keeps those weights
        # in checkpoint_state (a reference passed as reference=... is not saved)
        "dpo": lambda: Preference.with_reference_weights(
            PreferenceConfig(mode="dpo"), reward, student_net, trainable
        ),
    }


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, float]]]:
    parser = argparse.ArgumentParser(
        prog="python -m examples.own_losses", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--losses", nargs="+", default=None, help="which (default: all)")
    parser.add_argument("--steps", type=int, default=2, help="steps per loss (default 2)")
    parser.add_argument("--batch", type=int, default=4, help="prompts per step (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    pipe = StableDiffusionPipeline.from_pretrained(MINIATURE_SD, safety_checker=None)
    teacher_net = pipe.unet.requires_grad_(False)
    student_net = copy.deepcopy(teacher_net)
    student_net.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    params = [p for p in student_net.parameters() if p.requires_grad]
    config = teacher_net.config
    common = {
        "student": denoiser(student_net),
        "teacher": Guided(denoiser(teacher_net), TEACHER_GUIDANCE_SCALE, encode(pipe, [""])),
        "schedule": VPSchedule.from_config(pipe.scheduler.config),
        "latent_shape": (config.in_channels, config.sample_size, config.sample_size),
        "grid": StudentGrid(num_milestones=8, steps=4),
        "decode": pipeline_decoder(pipe),
    }
    builders = losses(pipe, student_net)
    unknown = sorted(set(args.losses or ()) - set(builders))
    if unknown:
        parser.error(f"unknown loss(es) {', '.join(unknown)}; known: {', '.join(builders)}")
    prompts, logged = all_prompts(), {}
    for name in args.losses or builders:
        loss, opt = builders[name](), torch.optim.AdamW(params, lr=1e-4)
        gen = torch.Generator().manual_seed(args.seed)
        logged[name] = []
        for step in range(args.steps):
            batch = [prompts[i] for i in torch.randint(len(prompts), (args.batch,), generator=gen).tolist()]
            ctx = StepContext.standalone(
                **common, cond=encode(pipe, batch), prompts=batch, generator=gen, step=step
            )
            terms = loss(ctx)
            sum(terms.values()).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            aux = loss.aux_step([ctx])  # after the student's backward: the fake score / discriminator
            loss.after_student_step()
            logged[name].append({k: v.item() for k, v in {**terms, **aux}.items()})
            shown = ", ".join(f"{k} {v:.4g}" for k, v in logged[name][-1].items())
            print(f"{name} step {step + 1}/{args.steps}: {shown}")
        saved = io.BytesIO()  # a file in your loop: torch.save(loss.checkpoint_state(), "loss.pt")
        torch.save(loss.checkpoint_state(), saved)
        saved.seek(0)
        builders[name]().load_checkpoint_state(torch.load(saved, weights_only=True))
        print(f"{name}: checkpoint_state saved and loaded ({saved.getbuffer().nbytes / 1e6:.1f} MB)")
    return logged


if __name__ == "__main__":
    main()
