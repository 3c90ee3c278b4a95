"""The TLCM recipes on the miniature pipeline (defaults sized for a laptop CPU) and on SDXL.

A recipe is a function returning a Recipe; variants copy a base with ``dataclasses.replace``
(ablations/variants.py derives the paper's ablation ladder from ``tlcm_full`` that way).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tlcm.config import ModelConfig, Phase, Recipe, RuntimeConfig, StudentConfig
from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.dmd import DMDConfig
from tlcm.losses.gan import GANConfig
from tlcm.losses.lcd import LCDConfig
from tlcm.losses.mlcd import MLCDConfig
from tlcm.losses.preference import PreferenceConfig
from tlcm.rewards.digit import DIGIT_S0, DIGIT_S_NEG
from tlcm.toy import MINIATURE_SD3

MINIATURE_SAMPLER = StudentGrid(gamma=0.0, first_gamma=1.0)
"""The miniature default's grid (M = 8, q = 4) and sampler: LCM's fresh noise for the first move
(from pure noise), deterministic DDIM moves after it. Against constant gammas it keeps 2-step
alignment (the first move's) and lets FD fall with more steps (ablations/LOG.md, 2026-11-30)."""


def stage1(steps: int = 300, lr: float = 1e-3, batch_size: int = 16, distance: str = "l2") -> Phase:
    """MLCD phase (paper: 12k iterations, lr 1e-4 on SDXL)."""
    return Phase(steps=steps, lr=lr, batch_size=batch_size, losses={"mlcd": MLCDConfig(distance=distance)})


def stage2(steps: int = 100, lr: float = 1e-4, batch_size: int = 16, distance: str = "l2") -> Phase:
    """LCD phase (paper: 2k iterations, lr 1e-5 on SDXL)."""
    return Phase(steps=steps, lr=lr, batch_size=batch_size, losses={"lcd": LCDConfig(distance=distance)})


def preference(steps: int = 40, lr: float = 1e-5, batch_size: int = 8, **config) -> Phase:
    """Reward feedback, the paper's choice (paper: 500 iterations, batch 8, lr 1e-5, MPS, s0 = 16).
    The miniature's reward is its digit classifier; ``mode="dpo"`` switches to Diffusion-DPO. At
    lr 1e-4 the student over-optimised the classifier here (FD at 2 steps 12.9 -> 20.2,
    ablations/LOG.md); the paper's 1e-5 keeps FD."""
    defaults = {"mode": "reward", "reward": "digit", "s0": DIGIT_S0, "s_neg": DIGIT_S_NEG}
    return Phase(
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        losses={"preference": PreferenceConfig(**{**defaults, **config})},
    )


MINIATURE_GAN = GANConfig(weight=0.05, backbone="teacher", input="latent", noise_level=500)
"""The miniature's discriminator: the paper's kind (the frozen teacher UNet's encoder on re-noised
latents, trainable heads). The product default (GANConfig(): a frozen random-init timm resnet18 on
decoded pixels) barely separated real from fake here (ablation row +gan-timm)."""


def dmd_gan(steps: int = 60, lr: float = 1e-5, batch_size: int = 8) -> Phase:
    """DMD + GAN together (paper: 1k iterations, batch 4, lr 1e-5, discriminator lr 1e-4). At lr
    1e-4 the FD at 4 steps rose from 10.6 to 15.3 here (ablations/LOG.md); the paper's 1e-5 lowers it."""
    losses = {"dmd": DMDConfig(fake_updates=2), "gan": MINIATURE_GAN}
    return Phase(steps=steps, lr=lr, batch_size=batch_size, losses=losses)


FD_BEST_GUIDANCE = 1.5
"""The miniature teacher's lowest-FD guidance scale from 8 steps on (docs/toy.md: FD 3.1 at 50
steps, against 3.7 at the training scale w = 2)."""


def dmd(steps: int = 150, lr: float = 3e-5, batch_size: int = 8) -> Phase:
    """DMD alone, its real score at the teacher's FD-best guidance (``FD_BEST_GUIDANCE``), not the
    MLCD targets' w = 2, to pull the student towards the teacher's best distribution (at w = 2 or
    lr 1e-4 it raised FD at 4 and 8 steps; ablations/LOG.md, 2026-11-30)."""
    losses = {"dmd": DMDConfig(fake_updates=2, real_guidance_scale=FD_BEST_GUIDANCE)}
    return Phase(steps=steps, lr=lr, batch_size=batch_size, losses=losses)


def mlcd() -> Recipe:
    """Stage 1 only: multistep latent consistency distillation."""
    return Recipe(phases={"mlcd": stage1()}, runtime=RuntimeConfig(out_dir=Path("runs/mlcd")))


def lcd() -> Recipe:
    """Stage 2 only, continuing a stage-1 run (``--recipes.student.init-from runs/mlcd``)."""
    return Recipe(
        student=StudentConfig(init_from=Path("runs/mlcd")),
        phases={"lcd": stage2()},
        runtime=RuntimeConfig(out_dir=Path("runs/lcd")),
    )


def tlcm_full() -> Recipe:
    """The miniature's default: MLCD -> LCD -> DMD (real score at w = 1.5), sampled with fresh
    noise after the first step only (``MINIATURE_SAMPLER``: first move gamma 1, then DDIM).

    A phase stays in the default only if it lowers FD at 2 or 4 steps on paired seeds: the range of
    its per-seed differences against its parent excludes zero (DMD was kept so, on 5 seeds;
    docs/ablations.md, "What decided the default"). On the two-ink miniature the paper's reward
    feedback and GAN did not (they raised FD or left it unchanged); the paper's four phases are
    ``tlcm_paper``, and ``--recipes.phases`` edits either recipe. Distance l2 for MLCD and LCD: on
    the miniature the shipped latent LPIPS (the paper's best configuration) raised 1- and 2-step FD
    (docs/ablations.md); ``--recipes.phases.mlcd.losses.mlcd.distance latent_lpips`` (and lcd)
    selects it."""
    return Recipe(
        student=StudentConfig(grid=MINIATURE_SAMPLER),
        phases={"mlcd": stage1(), "lcd": stage2(), "dmd": dmd()},
        runtime=RuntimeConfig(out_dir=Path("runs/tlcm-full"), eval_samples_per_digit=20),
    )


def tlcm_paper() -> Recipe:
    """The paper's four phases on one student: MLCD -> LCD -> preference -> DMD + GAN (real score
    at the MLCD targets' w), sampled with the paper's gamma = 1 (LCM)."""
    return Recipe(
        phases={
            "mlcd": stage1(),
            "lcd": stage2(),
            "preference": preference(),
            "dmd_gan": dmd_gan(),
        },
        runtime=RuntimeConfig(out_dir=Path("runs/tlcm-paper"), eval_samples_per_digit=20),
    )


def tlcm_full_sdxl() -> Recipe:
    """The paper's SDXL values (arXiv 2406.05768 Sec. 5.1; LoRA rank 64 from the authors'
    inference.py): LoRA rank 64, w = 8, M = 8, p = 3, q = 4; iterations 12k / 2k / 500 / 1k at lr
    1e-4 / 1e-5 / 1e-5 / 1e-5.

    Reward feedback with s0 = 16 (the paper's MPS scale; here a local PickScore folder, whose
    matched scores may all lie above 16, where that term would never train: check with python -m
    tlcm.evaluate reward-thresholds --reward pickscore --clip-folder models/pickscore --model
    models/sdxl --guidance-scale 8 and set .s0 / .s-neg on its scale).

    DMD + GAN at batch 4 with discriminator lr 1e-4, the discriminator the paper's kind (Eq. (13):
    on re-noised latents, from the SDXL UNet): ``MINIATURE_GAN``, the frozen UNet's encoder
    features on latents re-noised up to t = 500 with trainable heads, weight 0.05 (neither the
    re-noising range nor the weight is given by the paper: the miniature's measured values; the
    paper also trains the trunk, ``disc_rank`` > 0 does that at LoRA cost).

    Distance l2: the shipped latent LPIPS fits the miniature's VAE only; for SDXL train one
    (python -m tlcm.latent_lpips.train --model /models/sdxl) and pass
    --recipes.phases.mlcd.losses.mlcd.distance latent_lpips and .distance-weights FILE (and for
    lcd).

    Memory: the batches 32 / 32 / 8 / 4 (the paper's for preference and DMD + GAN; it gives none for
    MLCD and LCD) fit one 80 GB GPU (derived from H200
    measurements) through the memory plan, on by default here (``--recipes.runtime.memory-plan``):
    per phase it measures whole micro-batch steps and picks the micro-batch, accumulation and
    gradient checkpointing for the device (or for ``--recipes.runtime.memory-budget-gib``). Its
    expected choices at 80 GiB, and the fixed values to use without it, are in docs/design.md,
    "Memory arithmetic per phase"."""
    pickscore = {"reward": "pickscore", "clip_folder": "models/pickscore", "s0": 16.0, "s_neg": 0.0}
    dmd = dmd_gan(1_000, 1e-5, 4)  # its GAN: MINIATURE_GAN, discriminator lr 1e-4 (the paper's)
    dmd.losses["dmd"] = DMDConfig(fake_updates=5)
    return Recipe(
        model=ModelConfig(path=Path("models/sdxl"), guidance_scale=8.0, pipeline="StableDiffusionXLPipeline"),
        student=StudentConfig(lora_rank=64, lora_alpha=64.0),
        phases={
            "mlcd": stage1(12_000, 1e-4, 32),
            "lcd": stage2(2_000, 1e-5, 32),
            "preference": preference(500, 1e-5, 8, **pickscore),
            "dmd_gan": dmd,
        },
        runtime=RuntimeConfig(out_dir=Path("runs/tlcm-full-sdxl"), checkpoint_every=500, memory_plan=True),
    )


def large_model(
    path: str, pipeline: str, guidance_scale: float, max_sequence_length: int | None, name: str, **runtime
) -> Recipe:
    """``tlcm_full_sdxl``'s phases, LoRA and runtime (the paper's SDXL values, the memory plan on) on
    another base model (a ``pipeline`` folder) at 1024 px: the paper gives no values for flow models
    (docs/design.md, "The SD3 / FLUX presets", says where each comes from). ``runtime``:
    RuntimeConfig fields to change."""
    recipe = tlcm_full_sdxl()
    model = ModelConfig(
        path=Path(path),
        guidance_scale=guidance_scale,
        resolution=1024,
        max_sequence_length=max_sequence_length,
        pipeline=pipeline,
    )
    runtime = replace(recipe.runtime, out_dir=Path(f"runs/{name}"), **runtime)
    return Recipe(model=model, student=recipe.student, phases=recipe.phases, runtime=runtime)


def tlcm_full_sd3() -> Recipe:
    """SD3 / SD3.5 (models/sd3): w = 7 (StableDiffusion3Pipeline's default guidance_scale), 256 T5
    tokens (its default max_sequence_length); LoRA on the family's attention + MLP projections
    (diffusers' SD3 DreamBooth-LoRA targets); phases, rank 64, iterations and lrs as the paper's SDXL."""
    return large_model("models/sd3", "StableDiffusion3Pipeline", 7.0, 256, "tlcm-full-sd3")


def tlcm_full_flux() -> Recipe:
    """FLUX.1-dev (models/flux): a guidance-distilled teacher, guided by its guidance input at w =
    3.5 (FluxPipeline's default guidance_scale; the student is trained and sampled with that input
    too), 512 T5 tokens (its default); otherwise as ``tlcm_full_sd3``. 12 B parameters: FSDP2 on
    (``--recipes.runtime.fsdp``: the transformer sharded over the processes of a torchrun; one
    process: ignored, and FLUX fits one 80 GB GPU by the arithmetic of docs/design.md) and gradient
    checkpointing on (no uncheckpointed micro-batch of one fits 80 GB: the plan then only checks it)."""
    return large_model(
        "models/flux", "FluxPipeline", 3.5, 512, "tlcm-full-flux", fsdp=True, gradient_checkpointing=True
    )


def tlcm_full_flow() -> Recipe:
    """``tlcm_full`` on the flow-matching miniature (tlcm/toy/assets/miniature-sd3: the same digits,
    an SD3-style transformer trained with rectified flow; 8 T5 slots, the build's). Its phases and
    sampler were chosen on the UNet miniature; here they beat the paper's four phases on FD at 1, 4
    and 8 steps beyond the seed spread, at 2 steps on the mean only (3 seeds, ranges overlapping;
    docs/results.md)."""
    recipe = tlcm_full()
    model = ModelConfig(path=MINIATURE_SD3, max_sequence_length=8)
    return replace(recipe, model=model, runtime=replace(recipe.runtime, out_dir=Path("runs/tlcm-full-flow")))
