"""The published consistency methods as recipes of tlcm's losses, on the UNet miniature (the method
zoo, issue 23). Each one cites its reference, the values it takes from it, and every deviation;
docs/zoo-methods.md holds the references' settings with file and line.

Shared deviations, the same for every method here (so that they compare on equal terms):
- the miniature: its teacher (CFG scale 2, where SD1.5 samples at 7.5), its real training digits
  (``MINIATURE_DIGITS``: the captions are the prompts; the references train on CC3M / CC12M /
  LAION), LoRA rank 16 (the references: 64), fp32 AdamW (they: 8-bit Adam), batch 16;
- per-sample w ranges are the references' ranges scaled by 2 / 7.5 (the miniature's w over
  SD1.5's), written in our CFG form (their LCM form's w + 1);
- lr 1e-3 and 300 steps per consistency phase: the miniature's tuned stage-1 values (TLCM's own
  stage 1 runs at 10x the paper's lr here too); the references' 1e-4 .. 1e-6 at this budget barely
  move a random-init LoRA. ``ablations.zoo`` sets the steps for equal compute;
- no c_skip / c_out boundary parametrization (LCM's is < 1e-5 away from plain x0 for t >= 19);
  the clean boundary is t = -1 (alpha = 1), LCM's lowest target t = 0.
"""

from __future__ import annotations

from pathlib import Path

from tlcm.config import DataConfig, Phase, Recipe, RuntimeConfig, StudentConfig
from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.mlcd import MLCDConfig
from tlcm.toy import MINIATURE_DIGITS, TEACHER_GUIDANCE_SCALE

SD15_GUIDANCE = 7.5
"""SD1.5's usual CFG scale, against which the references chose their w ranges."""


def miniature_w(lcm_lo: float, lcm_hi: float) -> tuple[float, float]:
    """An LCM-form w range [lo, hi] of an SD1.5 reference as our CFG form (w + 1) on the miniature
    (times TEACHER_GUIDANCE_SCALE / 7.5): LCM-LoRA's [5, 15] -> (1.6, 4.27)."""
    scale = TEACHER_GUIDANCE_SCALE / SD15_GUIDANCE
    return (round((lcm_lo + 1) * scale, 2), round((lcm_hi + 1) * scale, 2))


def consistency(steps: int = 300, **mlcd) -> Phase:
    """A consistency phase on real digits: states "data", LCM's 50-point DDIM lattice, skip 20."""
    config = MLCDConfig(states="data", timesteps="lattice", skip=20, **mlcd)
    return Phase(steps=steps, lr=1e-3, batch_size=16, losses={"mlcd": config})


def _recipe(name: str, grid: StudentGrid, phases: dict[str, Phase]) -> Recipe:
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
    Deviations: phase edges 0/250/500/750 (PCM's lattice gives 0/239/499/739); no adversarial term
    (PCM's optional one: our GAN lacks its real = target side, forward re-noising from the edge and
    alternating D steps; docs/zoo-methods.md); 8 steps need M = 8 (PCM trains one LoRA per M)."""
    phase = consistency(distance="elementwise_huber", guidance_range=miniature_w(4.0, 5.0))
    grid = StudentGrid(num_milestones=4, steps=4, gamma=0.0)
    return _recipe("pcm", grid, {"pcm": phase})


def tcd() -> Recipe:
    """TCD (Zheng et al. 2024, arXiv 2402.19159; training from the community script, the official
    repository has inference only): LCM-LoRA's setting with both branches mapped to a random
    earlier time s in [0, t_n] (the trajectory consistency function), l2 (its README runs),
    per-sample w from [5, 15]; sampled with TCD's strategic stochastic sampling, gamma = 0.3.
    Deviations: s uniform on integers in [0, t_n] (the community script: on the lattice points
    <= t_n); gamma's intermediate time snapped as tlcm_step documents."""
    phase = consistency(segments=1, target_time="random", guidance_range=miniature_w(5.0, 15.0))
    return _recipe("tcd", StudentGrid(gamma=0.3), {"tcd": phase})


def hyper_sd_tscd() -> Recipe:
    """Hyper-SD's trajectory segmented consistency distillation (Ren et al. 2024, arXiv 2404.13686;
    weights only: the stages from the paper as its community reimplementation reads them): four
    successive phases on 8 -> 4 -> 2 -> 1 segments, each mapping both branches to a random s inside
    the segment (TCD-style), l2, per-sample w from [5, 15]; sampled with DDIM (gamma = 0), as the
    Hyper-SD LoRAs' model card samples.
    Deviations: 75 steps per stage (the same 300 as one phase elsewhere); only the TSCD part: no
    MSE / adversarial weight ramp, no human-feedback or score-distillation stage (paper unread)."""
    w = miniature_w(5.0, 15.0)
    phases = {
        f"tscd{m}": consistency(steps=75, segments=m, target_time="random", guidance_range=w)
        for m in (8, 4, 2, 1)
    }
    return _recipe("hyper-sd-tscd", StudentGrid(gamma=0.0), phases)


ZOO = {
    "lcm-lora": lcm_lora,
    "pcm": pcm,
    "tcd": tcd,
    "hyper-sd-tscd": hyper_sd_tscd,
}
"""The zoo's methods (recipe functions); tlcm-full is the preset of recipes/tlcm.py."""
