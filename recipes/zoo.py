"""The published few-step methods (consistency, distribution matching, adversarial) as recipes of
tlcm's losses, on the UNet miniature (the method zoo, issue 23). Each one cites its reference, the
values it takes from it, and every deviation; docs/zoo-methods.md holds the references' settings
with file and line.

Shared deviations, the same for every method here (so that they compare on equal terms):
- the miniature: its teacher (CFG scale 2, where SD1.5 samples at 7.5), its real training digits
  (``MINIATURE_DIGITS``: the captions are the prompts; the references train on CC3M / CC12M /
  LAION), LoRA rank 16 (the references: 64), fp32 AdamW (they: 8-bit Adam), batch 16;
- per-sample w ranges are the references' ranges scaled by 2 / 7.5 (the miniature's w over
  SD1.5's), written in our CFG form (their LCM form's w + 1);
- lr 1e-3 and 300 steps per consistency phase: the miniature's tuned stage-1 values (TLCM's own
  stage 1 runs at 10x the paper's lr here too); the references' 1e-4 .. 1e-6 at this budget barely
  move a random-init LoRA; with the l2 distance (TCD, TSCD) 1e-4 (``L2_LR``, measured).
  ``ablations.zoo`` sets the steps for equal compute;
- distribution matching and adversarial phases (dmd2, ladd): 300 steps, a real-score CFG scale
  scaled by 2 / 7.5 like the w ranges, the LoRA's alpha = rank (scale 1; DMD2's LoRA: 64 / 8);
- no c_skip / c_out boundary parametrization (LCM's is < 1e-5 away from plain x0 for t >= 19);
- the lowest segment's edge is the discrete t = 0 (alpha 0.99957, sigma 0.029), not the clean
  t = -1: with one segment (lcm-lora, tcd, TSCD's last stage) the segment map is DDIM to t = 0,
  g = A(t) f + (s_0 / s_t) x_t, which keeps some of x_t (0.22 at t = 19, 0.08 at 124, 0.03 at 499;
  a referee's walkthrough 10), where LCM's target is its f (about x0_hat for t >= 19).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from recipes.tlcm import preference, stage2
from tlcm.config import DataConfig, Phase, Recipe, RuntimeConfig, StudentConfig
from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.add import ADDDistillConfig
from tlcm.losses.dmd import DMDConfig
from tlcm.losses.gan import GANConfig
from tlcm.losses.mlcd import MLCDConfig
from tlcm.toy import MINIATURE_DIGITS, TEACHER_GUIDANCE_SCALE

SD15_GUIDANCE = 7.5
"""SD1.5's usual CFG scale, against which the references chose their w ranges."""


def miniature_w(lcm_lo: float, lcm_hi: float) -> tuple[float, float]:
    """An LCM-form w range [lo, hi] of an SD1.5 reference as our CFG form (w + 1) on the miniature
    (times TEACHER_GUIDANCE_SCALE / 7.5): LCM-LoRA's [5, 15] -> (1.6, 4.27)."""
    scale = TEACHER_GUIDANCE_SCALE / SD15_GUIDANCE
    return (round((lcm_lo + 1) * scale, 2), round((lcm_hi + 1) * scale, 2))


L2_LR = 1e-4
"""lr of the consistency phases with the l2 distance (TCD, TSCD): the references train l2 at a
lower lr than LCM-LoRA's Huber (TCD's community run: 4.5e-6 vs LCM-LoRA's 1e-4), and at the zoo's
1e-3 l2 drifted on both miniatures (measured: the tcd and hyper_sd_tscd docstrings)."""


def consistency(steps: int = 300, lr: float = 1e-3, **mlcd) -> Phase:
    """A consistency phase on real digits: states "data", LCM's 50-point DDIM lattice, skip 20."""
    config = MLCDConfig(states="data", timesteps="lattice", skip=20, **mlcd)
    return Phase(steps=steps, lr=lr, batch_size=16, losses={"mlcd": config})


def _recipe(name: str, grid: StudentGrid, phases: dict[str, Phase]) -> Recipe:
    """The zoo's recipe frame; sample grids and evaluation at 1, 2, 4, 8 steps, those <= M."""
    return Recipe(
        student=StudentConfig(grid=grid),
        data=DataConfig(images=MINIATURE_DIGITS),
        phases=phases,
        runtime=RuntimeConfig(out_dir=Path(f"runs/{name}"), eval_samples_per_digit=20),
    )


def lcm_lora() -> Recipe:
    """LCM-LoRA (Luo et al. 2023, arXiv 2311.05556; diffusers' train_lcm_distill_lora_sd_wds.py):
    one segment (consistency to the clean end), the online LoRA under no_grad as target (no EMA),
    one CFG-DDIM teacher step t_{n+k} -> t_n on the 50-point lattice (k = 20), per-sample w from
    LCM's [5, 15], the elementwise pseudo-Huber with c = 0.001, real latents noised to t_{n+k};
    sampled LCM-style (fresh noise every move, gamma = 1) on M = 8 milestones.
    Deviations (beyond the module's): inference timesteps 999/749/499/124 (the grid's) where
    LCMScheduler takes 999/759/499/259 at 4 steps."""
    phase = consistency(segments=1, distance="elementwise_huber", guidance_range=miniature_w(5.0, 15.0))
    return _recipe("lcm-lora", StudentGrid(gamma=1.0), {"lcm": phase})


def pcm() -> Recipe:
    """PCM (Wang et al. 2024, arXiv 2405.18407; G-U-N/Phased-Consistency-Model
    train_pcm_lora_sd15.py, its runs' settings): M = 4 phases, each sample consistent to its
    phase's lower edge (the student's own DDIM to the edge, target from t_n, stop-grad online
    LoRA), the 50-point lattice, per-sample w from PCM's [4, 5], elementwise pseudo-Huber c = 0.001;
    sampled deterministically (DDIM, gamma = 0) on the 4 phase edges.
    Deviations: phase edges 0/250/500/750 (PCM's lattice gives 0/239/499/739); 8 steps need M = 8
    (PCM trains one LoRA per M); the student's AdamW weight decay 0 (PCM's runs: 1e-3; about 3e-4
    relative decay over 300 steps at lr 1e-3). PCM's optional adversarial term is ``pcm_adv``."""
    phase = consistency(distance="elementwise_huber", guidance_range=miniature_w(4.0, 5.0))
    grid = StudentGrid(num_milestones=4, steps=4, gamma=0.0)
    return _recipe("pcm", grid, {"pcm": phase})


def pcm_adv() -> Recipe:
    """PCM with its adversarial consistency loss (arXiv 2405.18407;
    train_pcm_lora_sd15_adv.py and its run in train_pcm_lora_sd15.sh; docs/zoo-methods.md section 2):
    ``pcm`` plus a GAN whose real side is the consistency target and whose fake is the online
    phase-edge prediction (``GANConfig(real="consistency")``), both carried forward from the edge
    to one tau uniform on edge .. edge + T/M - 1 with fresh noise per side (PCM's ``noise_travel``);
    D = PCM's patch heads (``head="patch"``: 4 residual conv3x3 heads per level, its SD1.5
    ``num_h_per_head``, the loss on every patch logit) on the frozen teacher UNet's features with
    the prompt, hinge loss, the student's term relu(1 - D(fake)) at ``adv_weight`` 0.1; D's AdamW
    betas (0, 0.999), weight decay 1e-3 (the run's adam_weight_decay), clip 1.

    Deviations (beyond ``pcm``'s): M = 4 phases (PCM's SDXL adversarial run; its SD1.5 one trains
    2), so that it compares with ``pcm`` at the same M; D lr 1e-4 (PCM's adv_lr 1e-5 x 10, as the
    zoo's consistency lr); D's features are the UNet encoder's (conv_in, down, mid blocks; PCM: all
    9 levels, the up blocks too); D updates after every student step on that
    step's pair (PCM alternates: even steps update D only, odd steps the student; the same 1:1
    ratio, without PCM's discarded consistency passes on D's steps); the first phase's window starts
    at t = 0, as PCM's.

    Measured (3 seeds, the zoo's budget, FD at 1 / 2 / 4 steps): UNet 54.5 / 9.90 / 4.93, flow
    42.2 / 10.58 / 5.36, within pcm's seeds; D stays at chance (held-out 0.50), with these heads as
    with 1x1 pooled ones."""
    gan = GANConfig(
        weight=0.1,
        loss_type="hinge",
        generator_loss="relu",
        real="consistency",
        backbone="teacher",
        input="latent",
        disc_lr=1e-4,
        disc_betas=(0.0, 0.999),
        disc_weight_decay=1e-3,
        head="patch",
    )
    base = pcm()
    phase = base.phases["pcm"]
    return _recipe("pcm-adv", base.student.grid, {"pcm": replace(phase, losses={**phase.losses, "gan": gan})})


def tcd() -> Recipe:
    """TCD (Zheng et al. 2024, arXiv 2402.19159; training from the community script, the official
    repository has inference only): LCM-LoRA's setting with both branches mapped to a random
    earlier time s in [0, t_n] (the trajectory consistency function), l2 (its README runs),
    per-sample w from [5, 15]; sampled with TCD's strategic stochastic sampling, gamma = 0.3.
    Deviations: s uniform on integers in [0, t_n] (the community script: on the lattice points
    <= t_n); gamma's intermediate time snapped as tlcm_step documents; lr 1e-4 (``L2_LR``); the
    student's AdamW weight decay 0 (the community README's runs: 0.01).

    Measured (UNet miniature, 1 seed, 1433 steps, 500 prompts, alignment / FD at 1 / 2 / 4 / 8
    steps): at the zoo's lr 1e-3 l2 drifted (0.696 / 53.95, 0.852 / 34.04, 0.910 / 31.58,
    0.950 / 27.20; flow: FD 90 / 72 / 83 / 82); at 1e-4 0.808 / 35.68, 0.900 / 8.29, 0.938 / 9.56,
    0.988 / 11.20 (flow 20.24 / 11.43 / 12.04 / 15.26); with LCM's elementwise Huber at 1e-3
    (not TCD's setting) 0.874 / 25.17, 0.926 / 6.17, 0.960 / 6.63, 0.992 / 6.58."""
    phase = consistency(lr=L2_LR, segments=1, target_time="random", guidance_range=miniature_w(5.0, 15.0))
    return _recipe("tcd", StudentGrid(gamma=0.3), {"tcd": phase})


def hyper_sd_tscd() -> Recipe:
    """Hyper-SD (Ren et al. 2024, arXiv 2404.13686; weights only: the stages from the paper as its
    community reimplementation and secondary summaries read them): trajectory segmented consistency
    distillation (TSCD), four successive phases on 8 -> 4 -> 2 -> 1 segments, each mapping both
    branches to a random s inside the segment (TCD-style), l2, per-sample w from [5, 15]; then its
    human-feedback learning, ReFL-style reward feedback (``feedback_phase``); sampled with DDIM
    (gamma = 0), as the Hyper-SD LoRAs' model card samples.
    Deviations: 75 steps per TSCD stage (the same 300 as one phase elsewhere); no MSE / adversarial
    weight ramp, no score-distillation stage (paper unread); lr 1e-4 (``L2_LR``: at 1e-3 the flow
    miniature's FD rose 59 / 118 / 171 / 206 at 1 / 2 / 4 / 8 steps, at 1e-4 25.4 / 17.2 / 18.9 /
    21.5; 1 seed); the feedback's deviations in ``feedback_phase``."""
    w = miniature_w(5.0, 15.0)
    phases = {
        f"tscd{m}": consistency(steps=75, lr=L2_LR, segments=m, target_time="random", guidance_range=w)
        for m in (8, 4, 2, 1)
    }
    grid = StudentGrid(gamma=0.0, training_gamma=0.0, backward_simulation="chain")
    return _recipe("hyper-sd-tscd", grid, {**phases, "feedback": feedback_phase()})


def feedback_phase(steps: int = 40) -> Phase:
    """Hyper-SD's human-feedback learning as ReFL (Xu et al. 2023, arXiv 2304.05977; THUDM/ImageReward
    ReFL.py, which Hyper-SD's summaries name): the student denoises from noise without gradients to
    a random step of its sampler, predicts x0 in one step with gradients, and the reward of the
    decoded prediction is pushed over a threshold, L = relu(alpha - r(x0_hat, c)) (ReFL:
    ``F.relu(-rewards + 2)`` on ImageReward; lr 1e-5). Here: the preference loss's reward hinge
    with no unrelated-prompt term (``negative_weight`` 0), the miniature's digit reward (log p of
    the prompt's digit) with alpha = ``DIGIT_S0`` (p > 0.99), the states by the recipe grid's
    backward simulation "chain" on its 4-step DDIM sampler (``training_gamma`` 0), batch 8, lr 1e-5
    (TLCM's reward phase on the miniature, ``recipes.tlcm.preference``).
    Deviations: the reward (Hyper-SD: LAION aesthetic and ImageReward, plus an instance-segmentation
    perceptual loss, not modelled); the step drawn from all 4 of the sampler's steps (ReFL: one of
    the last 10 of 40); no grad_scale 1e-3 (AdamW is scale-free up to eps) and no pre-training loss
    regularizer (ImageReward's option; Hyper-SD's use unknown)."""
    return preference(steps=steps, negative_weight=0.0)


def aux_adamw(prefix: str) -> dict:
    """DMD2's AdamW settings (train_sd.py: betas (0.9, 0.999), weight decay 0.01, clip 10) as the
    fields of a loss-owned optimizer (``fake_*`` of DMDConfig, ``disc_*`` of GANConfig)."""
    return {f"{prefix}_betas": (0.9, 0.999), f"{prefix}_weight_decay": 0.01, f"{prefix}_max_grad_norm": 10.0}


DISC_RANK = 8
"""Rank of the zoo's trained discriminator trunk (``GANConfig.disc_rank``). With the frozen teacher
trunk (rank 0) DMD2's discriminator stayed near chance in training (held-out accuracy over the
last 20 % of steps 0.59 on the UNet miniature, 0.58 on flow, 3 seeds); with rank 8, 0.77 and 0.59
(1 update per student update); with rank 8 and ``disc_steps`` 5, 0.80 and 0.83. Against a fixed
student the rank-8 trunk separates on both (docs/gan.md, docs/disc-probe.md).
DMD2's FD moved within its seeds (its own LCM sampler, gamma 1 at every move: UNet 29.2 / 8.66 /
11.8 at 1 / 2 / 4 steps vs 28.9 / 8.53 / 11.5; flow 26.0 / 17.1 / 37.7 vs 26.6 / 17.6 / 38.1;
with the TLCM sampler 1- and 2-step FD are the same and 4-step FD 6.94 vs 6.79 and 25.7 vs 26.4;
docs/results.md quotes the TLCM sampler's 6.94 and 25.7): its GAN weight is 5e-3."""

SDXL_GUIDANCE_TO_MINIATURE = TEACHER_GUIDANCE_SCALE / SD15_GUIDANCE
"""A real-score CFG scale (our form = DMD2's Imagen form) of a reference, on the miniature."""


def dmd2(steps: int = 300) -> Recipe:
    """DMD2 (Yin et al. 2024, arXiv 2405.14867; tianweiy/DMD2 main/train_sd.py, sd_guidance.py,
    sd_unified_model.py, its 4-step SDXL LoRA run; docs/zoo-methods.md section 5), 4 steps:

    - regression-free distribution matching (DMD2 drops DMD's regression loss): t' uniform in
      [20, 980], real score the teacher with CFG 8 (Imagen form) scaled to the miniature
      (8 x 2 / 7.5 = 2.13), the normalised gradient, L = 1/2 mse;
    - the fake score a full copy of the UNet (fp32, unguided) trained on t ~ U{0..999} with the
      epsilon (model-output) MSE, a fresh no-grad student sample for every fake update, 5 fake
      updates per student update (TTUR 5: the update order G, F x 5 of train_sd.py's
      generator-every-5th-iteration loop);
    - backward simulation as DMD2's ``sample_backward``: one step count k in 0..3 per micro-batch,
      the student's own LCM sampler run k moves from fresh noise, the prediction made there;
    - the 4-step grid 999 / 749 / 499 / 249 (M = 4, q = 4: DMD2's ``denoising_step_list``; the
      miniature's M = 8 grid would give 999 / 749 / 499 / 124) sampled LCM-style (gamma 1: x0,
      fresh noise to the next t), DMD2's inference (LCMScheduler with those timesteps);
    - the GAN on real images: non-saturating, G weight 5e-3 (``gen_cls_loss_weight``, SDXL), real
      = the miniature's real digits with their captions, both sides re-noised to tau in [0, 999]
      with independent tau and noise;
    - every AdamW (student, fake score, discriminator heads) with betas (0.9, 0.999), weight decay
      0.01, gradient clip 10; constant lrs;
    - lr 2e-4 for student, fake score and discriminator (DMD2's LoRA run: 5e-5 for all): of
      x 2 / 4 / 10 (10: the module's consistency factor) on one seed, 300 steps, 200 prompts, FD
      at 2 / 4 steps was 11.8 / 13.4, 11.5 / 11.9 and 17.5 / 18.6 (teacher 9.5 / 6.8).

    Deviations (beyond the module's): the discriminator is tlcm's teacher-feature one with a trunk
    that learns (the teacher's encoder with its own rank-8 LoRA, ``DISC_RANK``, + heads; DMD2 puts
    its head on the fake score's bottleneck, trained with the fake loss at weight 1e-2, so its trunk
    learns too: ours is a separate adapter, not the fake score's) and it updates 5 times per student
    update (``disc_steps``, DMD2's ratio) on that step's samples (DMD2: once with each of its 5 fake
    updates, on fresh samples). With 1 update per student update D stayed at chance in training on
    flow (held-out 0.54 over the last 20 %, seed 0; with the student frozen it separated, so the
    moving student outran it); with 5 it separates (0.80) and FD moved within noise (22.5 / 14.4 /
    22.3 vs 23.7 / 14.5 / 23.0 at 1 / 2 / 4 steps; ablations/LOG.md 2026-12-05). D has its own clip
    (DMD2 clips fake score and head together); no lr warmup (DMD2: ``constant_with_warmup``, 500
    iterations of 16k-19k, 3 %: a fixed count here would refuse shorter runs); fresh fake samples
    keep the micro-batch's prompts (DMD2 draws new ones); the backward-simulation step count is
    drawn per micro-batch, not shared by the whole batch and all processes; the GAN's D inputs at
    tau in [clean, 999] (DMD2: 0..999); batch 16 where DMD2 trains on 128; LoRA scale 1 (DMD2's
    LoRA: rank 64, alpha 8).
    DMD2's 1-step SDXL variant (ODE-pair regression pretraining at t = 399) is not this recipe."""
    dmd = DMDConfig(
        real_guidance_scale=round(8.0 * SDXL_GUIDANCE_TO_MINIATURE, 2),
        fake_score="full",
        fake_lr=2e-4,
        fake_updates=5,
        fake_t_min=0,
        fake_t_max=999,
        fake_samples="fresh",
        **aux_adamw("fake"),
    )
    gan = GANConfig(
        weight=5e-3,
        real="data",
        backbone="teacher",
        input="latent",
        disc_rank=DISC_RANK,
        noise_level=999,
        independent_noise=True,
        disc_lr=2e-4,
        disc_steps=5,
        **aux_adamw("disc"),
    )
    phase = Phase(
        steps=steps,
        lr=2e-4,
        batch_size=16,
        losses={"dmd": dmd, "gan": gan},
        max_grad_norm=10.0,
        weight_decay=0.01,
    )
    grid = StudentGrid(num_milestones=4, steps=4, gamma=1.0, backward_simulation="chain")
    return _recipe("dmd2", grid, {"dmd2": phase})


def add(steps: int = 300) -> Recipe:
    """ADD (Sauer et al. 2023, arXiv 2311.17042, SD-Turbo / SDXL-Turbo; no official training code and
    the paper text not reachable here: the values below are recalled from the paper, not read;
    docs/zoo-methods.md section 6), 4 steps:

    - L = L_adv + lambda L_distill with lambda = 2.5 (``add_distill``'s weight; the GAN's 1);
    - L_distill (tlcm/losses/add.py): the student's prediction x_hat re-noised with fresh noise to
      t uniform over the teacher's whole range, the guided teacher's x0 of sg(x_hat) as the target
      (the recipe's w), c(t) = alpha_bar_t ("exponential", the best of ADD's ablation against the
      SDS and NFSD weightings), d = squared l2 on decoded images ("pixel");
    - L_adv: the hinge loss (G -D(fake), D relu(1 - D(real)) + relu(1 + D(fake))) on clean inputs
      (ADD's discriminator sees images, not re-noised ones), real = real images with their
      captions (the miniature's digits);
    - the student's states: real data noised to its timesteps 999 / 749 / 499 / 249, one uniform
      per sample (``StudentGrid(backward_simulation="data")``: ADD's "samples from noisy data,
      produced from real images through a forward diffusion process"), the top one too;
    - sampled like LCM (gamma 1: x0, then fresh noise to the next timestep), as ADD samples;
    - lr 1e-4 for student and discriminator heads: ADD's 1e-5 (recalled) x 10, the module's factor
      for a LoRA student at this budget.

    Deviations (beyond the module's, whose adversarial-phase ones apply: 300 steps, batch 16, LoRA
    scale 1): the discriminator. ADD's is a frozen DINOv2 ViT-S on pixels with trainable heads
    conditioned on the text and on a real image's embedding, with an R1 penalty (weight recalled as
    1e-5); the miniature has no pretrained DINOv2 for its 32 px digits (a random-init frozen timm
    backbone would be a strawman), so this uses tlcm's teacher-feature discriminator as ``ladd``
    does (the frozen teacher's encoder on latents at t = 0 + trainable 1x1 heads, conditioned on
    the prompt only), without R1 (its weight is calibrated for DINOv2's pixel features, and it would
    cost a double backward through the encoder), with tlcm's head optimizer (AdamW betas (0, 0.99),
    clip 1: ADD's unread); the distillation's t range and teacher CFG scale unread (the whole range,
    the miniature's w = 2); batch 16 where ADD trains on 128 (recalled).

    On the flow miniature it diverges (FD 59-232 over 3 seeds). Seed 0 with the GAN's weight at
    0.1 scored 53.0 / 52.8 / 55.1 at 1 / 2 / 4 steps, with the GAN off (distillation alone) 73.7 /
    38.6 / 38.8 at alignment 0.89 / 0.98 / 0.99: the distillation target alone is mode-seeking
    there, and the GAN (whose D does not separate: its logits on both sides drift up together)
    adds a drift on top."""
    distill = ADDDistillConfig(weight=2.5, weighting="exponential", distance="l2", space="pixel")
    gan = GANConfig(
        weight=1.0,
        loss_type="hinge",
        real="data",
        backbone="teacher",
        input="latent",
        noise_level=0,
        disc_lr=1e-4,
    )
    phase = Phase(steps=steps, lr=1e-4, batch_size=16, losses={"gan": gan, "add_distill": distill})
    grid = StudentGrid(num_milestones=4, steps=4, gamma=1.0, backward_simulation="data")
    return _recipe("add", grid, {"add": phase})


def ladd(steps: int = 300) -> Recipe:
    """LADD (Sauer et al. 2024, arXiv 2403.12015; no official code and the paper unread here: the
    settings of two reimplementations, NVIDIA FastGen's ``LADDModel``
    (fastgen/methods/distribution_matching/ladd.py) and AMD Nitro's SD2.1 one (train.py,
    core/network/unet_D.py); docs/zoo-methods.md section 7), adversarial distillation only:

    - one loss, the non-saturating GAN (G softplus(-D(fake)), D softplus(D(fake)) +
      softplus(-D(real)); FastGen's, AMD's BCE is the same), weight 1, no distillation term;
    - D: trainable heads on the frozen teacher's features of the re-noised latent, with the prompt
      (both; tlcm's teacher-feature discriminator: conv_in, the down blocks and the mid block);
    - real: the teacher's samples (LADD's synthetic data; AMD: SD2.1, cfg 3, 50 steps), made on
      the fly by CFG-DDIM in 25 steps at the miniature's w = 2;
    - D inputs re-noised to tau uniform on the integers -1..749, the clean t = -1 among them (1 in
      751; AMD's ``--D_ts 0-750``: 0..749), tau and noise drawn per side (FastGen's default draws
      them apart too);
    - one D update per student update (AMD's strict alternation); AdamW betas (0.9, 0.999),
      weight decay 0.01 for student and heads (AMD's optimizers.py); lr 1e-5 for both (AMD's 1e-6
      x 10, as the module's consistency phases). Measured (one seed, 300 steps, 200 prompts): FD
      at 1 / 2 / 4 steps 211 / 42.9 / 17.9, the samples still the teacher's blur at few steps
      (teacher 48 / 9.5 / 6.8); at lr 1e-4 the GAN alone degraded them (359 / 180 / 50);
    - DMD2's 4-step grid and sampler (999 / 749 / 499 / 249, gamma 1), the prediction's states by
      backward simulation ("chain"), so that it compares with ``dmd2`` on equal terms.

    Deviations (beyond the module's): the student's states are its own sampler's (FastGen noises
    real data to a fixed t list, AMD starts from pure noise at 999 for one step); the teacher's
    samples are drawn fresh every step (LADD: a fixed synthetic set, AMD's paired with their
    noise); D's features are the UNet encoder's (FastGen: chosen transformer blocks; AMD: mid +
    down 0, 1 with 4x4 conv heads), its heads 1x1 convs; gradient clips 1 (unread in both);
    no approximate R1 (FastGen's default weight is 0), no student_update_freq 5 (FastGen's default),
    no misaligned-pairs fakes (AMD's option); all LADD paper values (D layers, tau density, data,
    lr, iterations) unread."""
    gan = GANConfig(
        weight=1.0,
        real="teacher",
        teacher_steps=25,
        backbone="teacher",
        input="latent",
        noise_level=749,
        independent_noise=True,
        disc_lr=1e-5,
        disc_betas=(0.9, 0.999),
        disc_weight_decay=0.01,
    )
    phase = Phase(steps=steps, lr=1e-5, batch_size=16, losses={"gan": gan}, weight_decay=0.01)
    grid = StudentGrid(num_milestones=4, steps=4, gamma=1.0, backward_simulation="chain")
    return _recipe("ladd", grid, {"ladd": phase})


def tcd_huber_phase(segments: int, guidance_range: tuple[float, float] = miniature_w(5.0, 15.0)) -> Phase:
    """The compositions' consistency phase: TCD's random target time with LCM-LoRA's elementwise
    Huber at lr 1e-3, per-sample w from ``guidance_range`` (default LCM-LoRA's [5, 15] scaled to the
    miniature), on ``segments`` segments."""
    return consistency(
        segments=segments,
        target_time="random",
        distance="elementwise_huber",
        guidance_range=guidance_range,
    )


def tcd_huber() -> Recipe:
    """A composition, not a published method: TCD's trajectory consistency function (a random
    target time s in [0, t_n], stochastic sampling with gamma 0.3) trained with LCM-LoRA's
    elementwise pseudo-Huber at LCM's lr 1e-3, per-sample w from [5, 15] scaled to the miniature.
    The zoo's candidate for a better default than tlcm-full at few steps. Measured (3 seeds, the
    zoo's budget, 500 prompts; FD mean (alignment) at 1 / 2 / 4 / 8 steps): UNet 24.5 (0.859) /
    6.61 (0.933) / 6.47 (0.962) / 6.10 (0.990), the lowest at 2 steps (tlcm-full 38.0 / 7.21 /
    5.02 / 4.47); flow 12.3 / 8.62 (0.920) / 12.9 / 19.1, below the teacher's best Euler at 2 steps
    (9.55 at alignment 0.942; ``tcd_huber_low_w`` is lower still), worse than tlcm-full at 4 and 8
    (10.4, 12.0). Not the default: it loses at 4 steps (docs/results.md)."""
    return _recipe("tcd-huber", StudentGrid(gamma=0.3), {"tcd": tcd_huber_phase(segments=1)})


def tcd_huber_phased() -> Recipe:
    """A composition, not a published method: ``tcd_huber`` on PCM's four phases (M = 4 segments,
    the random target time s inside the sample's segment, as Hyper-SD's TSCD maps; sampled on the
    4-milestone grid with gamma 0.3). The hypothesis it tests: PCM's phases give the lowest 4-step
    FD on both miniatures and tcd-huber the lowest 2-step FD; together, both? Measured (3 seeds,
    FD mean (alignment) at 1 / 2 / 4 steps): no. UNet 44.6 / 10.4 (0.953) / 8.36 (0.979), flow
    26.8 / 13.3 (0.956) / 18.1 (0.985): worse than both parents at high alignment, so PCM's 4-step
    lead looks like its low guidance (w in [1.33, 1.6]), not its phases."""
    grid = StudentGrid(num_milestones=4, steps=4, gamma=0.3)
    return _recipe("tcd-huber-phased", grid, {"tcd": tcd_huber_phase(segments=4)})


def pcm_lcd() -> Recipe:
    """A composition, not a published method: TLCM's two distillation stages with PCM's settings for
    the first. ``pcm``'s phase (M = 4 phases, each sample consistent to its phase's lower edge, real
    digits noised on LCM's lattice, elementwise pseudo-Huber, w in [1.33, 1.6]) followed by TLCM's
    stage 2, inter-segment consistency (``recipes.tlcm.stage2``: LCD, Eqs. (9)-(10), x0 at a
    milestone consistent with x0 one segment down after 3 teacher sub-steps, on the student's own
    4-step samples; l2, lr 1e-4, the teacher's w = 2), sampled like ``pcm`` (DDIM on the 4 edges).
    The hypothesis: PCM has the zoo's lowest 4-step FD, but its 2-step sampler jumps over a phase
    edge its student was never made consistent across; LCD trains exactly that. Phase steps 10 : 1
    (an LCD step costs 3x a PCM step: about 1/4 of the budget goes to LCD, as in tlcm-full).
    Measured (3 seeds, the zoo's budget; FD mean (alignment), the better sampler): UNet 5.37
    (0.832) / 3.93 (0.908) at 2 / 4 steps, the zoo's lowest at both; flow 6.85 (0.869) / 5.66
    (0.935), below the teacher's best Euler at both on every seed. Its alignment is the lowest of
    the consistency recipes at 2 steps (docs/results.md)."""
    base = pcm()
    phase = replace(base.phases["pcm"], steps=300)
    return _recipe("pcm-lcd", base.student.grid, {"pcm": phase, "lcd": stage2(steps=30)})


LOW_W = (1.5, 2.5)
"""``tcd_huber_low_w``'s per-sample w range: the miniature teacher's w = 2 +- 0.5 (CFG form)."""


def pcm_lcd_low_w() -> Recipe:
    """A composition, not a published method: ``pcm_lcd`` with PCM's per-sample w from [1.5, 2.5]
    (``LOW_W``, around the teacher's w = 2) instead of its [1.33, 1.6]. Measured (3 seeds, the
    zoo's budget): higher alignment than ``pcm_lcd`` at 2 and 4 steps on both miniatures; flow 6.53
    (0.900) at 2 steps, the zoo's lowest, 6.90 (0.965) at 4 (TLCM sampler); with the TLCM sampler
    on the UNet 6.39 (0.922) / 4.17 (0.931) at 2 / 4 steps against tlcm-full's 7.21 (0.927) / 5.02
    (0.948)."""
    recipe = pcm_lcd()
    phase = recipe.phases["pcm"]
    mlcd = replace(phase.losses["mlcd"], guidance_range=LOW_W)
    phases = {**recipe.phases, "pcm": replace(phase, losses={**phase.losses, "mlcd": mlcd})}
    return replace(recipe, phases=phases, runtime=replace(recipe.runtime, out_dir=Path("runs/pcm-lcd-low-w")))


def tcd_huber_low_w() -> Recipe:
    """A composition, not a published method: ``tcd_huber`` with per-sample w from [1.5, 2.5]
    (``LOW_W``, around the teacher's w = 2) instead of LCM-LoRA's [5, 15] scaled (1.6-4.27). A
    student without a w input learns one trajectory for the whole range; the teachers' own FD-best
    w falls with more steps (flow: 3 at 2 steps, 2 at 4, 1.5 at 8), and tcd-huber's FD rises from 2
    to 8 steps on flow. Measured (3 seeds, the zoo's budget; FD mean (alignment), the better of
    its own sampler and the TLCM sampler): flow 13.3 / 7.63 (0.888) / 6.77 (0.943) / 9.20 at 1 / 2 /
    4 / 8 steps: the lowest at 2 steps, below the teacher's best Euler at 2 and 4 (9.55 (0.942),
    7.05 (0.972)) on every seed, at lower alignment (tcd-huber: 8.62 (0.920) / 11.3 / 13.9). UNet
    23.1 / 7.33 (0.904) / 5.90 / 6.37: the lower range costs 2 steps there (tcd-huber 6.61
    (0.933)). A trade-off per family, not a default (docs/results.md)."""
    return _recipe("tcd-huber-low-w", StudentGrid(gamma=0.3), {"tcd": tcd_huber_phase(1, LOW_W)})


ZOO = {
    "lcm-lora": lcm_lora,
    "pcm": pcm,
    "pcm-adv": pcm_adv,
    "pcm-lcd": pcm_lcd,
    "pcm-lcd-low-w": pcm_lcd_low_w,
    "tcd": tcd,
    "hyper-sd-tscd": hyper_sd_tscd,
    "dmd2": dmd2,
    "add": add,
    "ladd": ladd,
    "tcd-huber": tcd_huber,
    "tcd-huber-phased": tcd_huber_phased,
    "tcd-huber-low-w": tcd_huber_low_w,
}
"""The zoo's methods (recipe functions); tlcm-full is the preset of recipes/tlcm.py. All but the
``tcd-huber`` ones (compositions of ours) are published methods."""
