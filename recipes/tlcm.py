"""The TLCM recipes on the miniature pipeline (defaults sized for a laptop CPU) and on SDXL.

A recipe is a function returning a Recipe; variants copy a base with ``dataclasses.replace``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tlcm.config import ModelConfig, Phase, Recipe, RuntimeConfig, StudentConfig
from tlcm.losses.lcd import LCDConfig
from tlcm.losses.mlcd import MLCDConfig


def stage1(steps: int = 300, lr: float = 1e-3, batch_size: int = 16) -> Phase:
    """MLCD phase (paper: 12k iterations, lr 1e-4 on SDXL)."""
    return Phase(steps=steps, lr=lr, batch_size=batch_size, losses={"mlcd": MLCDConfig()})


def stage2(steps: int = 100, lr: float = 1e-4, batch_size: int = 16) -> Phase:
    """LCD phase (paper: 2k iterations, lr 1e-5 on SDXL)."""
    return Phase(steps=steps, lr=lr, batch_size=batch_size, losses={"lcd": LCDConfig()})


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
    """Stage 1 then stage 2 on one student (the bag of techniques joins in a later issue)."""
    return Recipe(
        phases={"mlcd": stage1(), "lcd": stage2()},
        runtime=RuntimeConfig(out_dir=Path("runs/tlcm-full"), eval_samples_per_digit=20),
    )


def tlcm_full_sdxl() -> Recipe:
    """The paper's SDXL values: LoRA rank 64, w = 8, 12k / 2k iterations, lr 1e-4 / 1e-5."""
    base = tlcm_full()
    return replace(
        base,
        model=ModelConfig(path=Path("models/sdxl"), guidance_scale=8.0),
        student=StudentConfig(lora_rank=64, lora_alpha=64.0),
        phases={"mlcd": stage1(12_000, 1e-4, 32), "lcd": stage2(2_000, 1e-5, 32)},
        runtime=RuntimeConfig(out_dir=Path("runs/tlcm-full-sdxl"), checkpoint_every=500),
    )
