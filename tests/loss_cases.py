"""One small recipe per registered loss (and per option that owns state), shared by the loss
contract tests (tests/test_loss_contract.py) and their torchrun worker (tests/dp_worker.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from engine_helpers import shrink

from recipes import PRESETS
from recipes.tlcm import MINIATURE_GAN
from tlcm.config import Phase, Recipe
from tlcm.data.images import save_image_folder, write_once
from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.add import ADDDistillConfig
from tlcm.losses.dmd import DMDConfig
from tlcm.losses.gan import GANConfig
from tlcm.losses.lcd import LCDConfig
from tlcm.losses.mlcd import MLCDConfig
from tlcm.losses.preference import PreferenceConfig
from tlcm.toy.data import all_prompts

CASES: dict[str, dict[str, dict]] = {
    "mlcd": {"p": {"mlcd": MLCDConfig()}},
    "mlcd-ema": {"p": {"mlcd": MLCDConfig(target="ema", ema_decay=0.5)}},
    "lcd": {"p": {"lcd": LCDConfig(teacher_substeps=2)}},
    "dmd": {"p": {"dmd": DMDConfig(fake_updates=2, fake_lr=1e-2)}},
    "gan-unet": {"p": {"gan": replace(MINIATURE_GAN, weight=1.0, disc_lr=1e-2)}},
    "gan-timm-r1": {"p": {"gan": GANConfig(input="latent", input_size=0, r1_weight=1.0, disc_lr=1e-2)}},
    "gan-trunk": {"p": {"gan": replace(MINIATURE_GAN, weight=1.0, disc_lr=1e-2, disc_rank=2)}},  # LoRA trunk
    "gan-data": {  # the method zoo's GAN options: DMD2 / LADD-style real images, noise per side
        "p": {
            "gan": replace(
                MINIATURE_GAN,
                weight=1.0,
                disc_lr=1e-2,
                real="data",
                independent_noise=True,
                tau_distribution="logit_normal",
                disc_betas=(0.9, 0.999),
                disc_weight_decay=0.01,
                disc_max_grad_norm=10.0,
            )
        }
    },
    "preference-dpo": {"p": {"preference": PreferenceConfig(mode="dpo", beta=50.0)}},
    "preference-reward": {"p": {"preference": PreferenceConfig(mode="reward", s0=-0.01, s_neg=-4.6)}},
    "mlcd-then-dmd": {"a": {"mlcd": MLCDConfig()}, "b": {"dmd": DMDConfig(fake_updates=1)}},
    "dmd2": {  # DMD2's switches: fresh student draws per fake update, fake t over 0..T-1; "chain" grid
        "p": {
            "dmd": DMDConfig(fake_updates=2, fake_lr=1e-2, fake_samples="fresh", fake_t_min=0, fake_t_max=999)
        }
    },
    "mlcd-data": {  # the method zoo's consistency options: LCM / TCD on real images
        "p": {
            "mlcd": MLCDConfig(
                states="data", timesteps="lattice", target_time="random", guidance_range=(2.0, 6.0)
            )
        }
    },
    "pcm-adv": {  # PCM's adversarial consistency: the GAN on MLCD's online output and target, PCM's heads
        "p": {
            "mlcd": MLCDConfig(),
            "gan": replace(
                MINIATURE_GAN,
                weight=1.0,
                disc_lr=1e-2,
                noise_level=0,
                real="consistency",
                loss_type="hinge",
                generator_loss="relu",
                head="patch",
                heads_per_level=2,
            ),
        }
    },
    "add": {  # ADD: the distillation loss on decoded images + the hinge GAN on real data
        "p": {
            "add_distill": ADDDistillConfig(weight=2.5, space="pixel"),
            "gan": replace(MINIATURE_GAN, weight=1.0, disc_lr=1e-2, loss_type="hinge", real="data"),
        }
    },
}
"""Case name -> phases (name -> losses). Every registered loss appears in at least one case."""

CASE_GRIDS = {
    "dmd2": StudentGrid(num_milestones=4, steps=4, backward_simulation="chain"),
    "add": StudentGrid(num_milestones=4, steps=4, backward_simulation="data"),
}
"""Cases whose student grid is not the default: DMD2's backward simulation draws its step count
on the host and pads it to q - 1 moves under FSDP2 (``shared.predict_student``); ADD's student
states are real latents noised to the grid (they need data.images)."""


FSDP_CASES = (
    "mlcd",
    "lcd",
    "dmd",
    "gan-unet",
    "gan-timm-r1",
    "gan-trunk",
    "gan-data",
    "preference-reward",
    "mlcd-then-dmd",
    "mlcd-data",
    "dmd2",
    "add",
    "pcm-adv",
)
"""The cases FSDP2 runs (an EMA target and a DPO reference call the network with swapped-in weights:
refused under FSDP2). "mlcd-then-dmd" switches phases to one whose loss trains an adapter the
first phase did not (DMD's fake score): the engine adds it before sharding (``LossConfig.adapters``)
and the phase re-initialises it, as in one process. Their MLCD states are "single_jump"
(``case_recipe(fsdp=True)``): FSDP2 runs MDS as M masked rounds, equal to the subset rounds only
to rounding (tests/test_diffusion_solvers.py), which AdamW at lr 1e-2 amplifies on near-zero
gradients beyond any useful tolerance."""


def case_recipe(
    name: str,
    model: Path,
    out_dir: Path,
    steps: int = 3,
    batch_size: int = 2,
    grad_accum: int = 1,
    fsdp: bool = False,
) -> Recipe:
    """The case's phases, ``steps`` each, lr 1e-2 (so that every step moves the weights a lot);
    ``fsdp``: the FSDP2 comparison's form (MLCD states single_jump; the flag is the caller's)."""
    base = shrink(PRESETS["mlcd"], model, out_dir, steps=steps, batch_size=batch_size)
    phases = {
        phase: Phase(
            steps=steps,
            lr=1e-2,
            batch_size=batch_size,
            grad_accum=grad_accum,
            losses={k: fsdp_form(v) if fsdp else v for k, v in losses.items()},
        )
        for phase, losses in CASES[name].items()
    }
    needs = {
        field for losses in CASES[name].values() for loss in losses.values() for field in loss.data_needs()
    }
    if name in CASE_GRIDS and CASE_GRIDS[name].backward_simulation == "data":
        needs.add("images")
    if "images" in needs:
        base = replace(base, data=replace(base.data, images=real_images(out_dir.parent), prompts=None))
    if name in CASE_GRIDS:
        base = replace(base, student=replace(base.student, grid=CASE_GRIDS[name]))
    return replace(base, phases=phases)


def fsdp_form(loss):
    """``loss`` in the FSDP2 comparison's form: MLCD's MDS states single_jump (see ``FSDP_CASES``),
    any other loss as it is."""
    mds = isinstance(loss, MLCDConfig) and loss.states == "mds"
    return replace(loss, states="single_jump") if mds else loss


def real_images(root: Path) -> Path:
    """``root/real-images``: 40 smooth random 32 px images captioned with the miniature's prompts,
    written once (torchrun's processes may ask at the same time)."""
    gen = torch.Generator().manual_seed(0)
    images = F.interpolate(torch.rand(40, 3, 4, 4, generator=gen), size=32, mode="bilinear") * 2 - 1
    prompts = all_prompts()
    captions = [prompts[i % len(prompts)] for i in range(40)]
    return write_once(root / "real-images", lambda scratch: save_image_folder(scratch, images, captions))


def in_bf16(recipe: Recipe) -> Recipe:
    """``recipe`` in the CUDA default's precision on any device: frozen weights bf16, bf16 autocast
    (adapters, heads and optimizer state stay fp32)."""
    model, runtime = (
        replace(recipe.model, frozen_dtype="bf16"),
        replace(recipe.runtime, mixed_precision="bf16"),
    )
    return replace(recipe, model=model, runtime=runtime)
