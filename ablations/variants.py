"""The paper's ablation ladder (tlcm-method.md, "Ablation") as variants of ``recipes:tlcm-full``.

A variant never copies the recipe: it changes fields of tlcm-full's phases with
``dataclasses.replace`` (switch a state source or a distance, drop or add a loss term or phase).
Rows that only ADD phases to an earlier row name it as ``parent`` and train just their new
phases from the parent's student (``student.init_from``): the ladder costs one stage 1 per
distinct stage-1 setting, not one per row. (Such a continuation draws other random numbers than a
from-scratch run of the same recipe, since step seeds restart at 0.)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from recipes.tlcm import tlcm_full
from tlcm.config import Phase, Recipe
from tlcm.diffusion.milestones import StudentGrid


@dataclass(frozen=True)
class Variant:
    """A named ladder row: ``phases`` to train (after ``parent``'s student when given)."""

    name: str
    description: str
    phases: tuple[str, ...]
    parent: str | None = None
    mlcd: dict | None = None
    """MLCD field overrides of the stage-1 phase."""
    losses: dict | None = None
    """Per phase: loss name -> field overrides (a loss not in the phase is an error)."""
    drop: tuple[tuple[str, str], ...] = ()
    """(phase, loss) terms removed from tlcm-full's phases."""
    grid: StudentGrid | None = None
    """The student grid (M, q) when not tlcm-full's (the one owner of M: losses, sampling, export)."""


LADDER: tuple[Variant, ...] = (
    Variant("single-jump-lcd", "LCM-style: one segment (M = 1), single-jump teacher states", ("mlcd",),
            mlcd={"states": "single_jump", "distance": "l2"}, grid=StudentGrid(1, 1)),
    Variant("mlcd-single-jump", "MLCD, M = 8 segments, single-jump states", ("mlcd",),
            mlcd={"states": "single_jump", "distance": "l2"}),
    Variant("+latent-lpips", "+ latent LPIPS as the MLCD distance", ("mlcd",),
            mlcd={"states": "single_jump", "distance": "latent_lpips"}),
    Variant("mds-states", "MDS states (multistep teacher denoising)", ("mlcd",),
            mlcd={"states": "mds", "distance": "latent_lpips"}),
    Variant("+full-range-stage2", "+ stage 2 LCD, t_m uniform in (T/M, T]", ("lcd",), parent="mds-states",
            losses={"lcd": {"lcd": {"full_range": True, "distance": "latent_lpips"}}}),
    Variant("sparse-stage2", "stage 2 LCD at sparse milestones (MLCD+LCD)", ("lcd",), parent="mds-states",
            losses={"lcd": {"lcd": {"distance": "latent_lpips"}}}),
    Variant("+preference", "+ reward feedback (digit classifier)", ("preference",), parent="sparse-stage2"),
    Variant("+preference-dpo", "+ Diffusion-DPO instead (not in the paper)", ("preference",),
            parent="sparse-stage2", losses={"preference": {"preference": {"mode": "dpo"}}}),
    Variant("+dmd", "+ DMD (LoRA fake score)", ("dmd_gan",), parent="+preference",
            drop=(("dmd_gan", "gan"),)),
    Variant("+gan", "+ GAN (teacher-UNet discriminator)", ("dmd_gan",), parent="+preference"),
    Variant("+gan-timm", "+ GAN with the default timm resnet18 (pixels)", ("dmd_gan",), parent="+preference",
            losses={"dmd_gan": {"gan": {"backbone": "timm", "input": "pixel", "noise_level": 0}}}),
)  # fmt: skip
L2_CHAIN: tuple[Variant, ...] = (
    Variant("mds-states-l2", "MDS states, l2 distance", ("mlcd",), mlcd={"states": "mds", "distance": "l2"}),
    Variant("mlcd+lcd-l2", "+ stage 2 (sparse), l2: MLCD + LCD", ("lcd",), parent="mds-states-l2",
            losses={"lcd": {"lcd": {"distance": "l2"}}}),
    Variant("tlcm-full", "+ preference, DMD + GAN: recipes:tlcm-full", ("preference", "dmd_gan"),
            parent="mlcd+lcd-l2"),
)  # fmt: skip
"""The recipe as shipped (l2 distance), for the acceptance comparison full vs MLCD + LCD."""
VARIANTS = {v.name: v for v in LADDER + L2_CHAIN}


def _phase(base: Phase, overrides: dict, drop: set[str]) -> Phase:
    losses = {}
    for name, cfg in base.losses.items():
        if name in drop:
            continue
        losses[name] = replace(cfg, **overrides.get(name, {}))
    unknown = set(overrides) - set(base.losses)
    if unknown:
        raise ValueError(f"overrides for losses {sorted(unknown)} that the phase does not have")
    return replace(base, losses=losses)


def variant_recipe(variant: Variant, runs: Path, base: Recipe | None = None) -> Recipe:
    """The Recipe of ``variant`` writing ``runs/<name>`` (its parent's run in ``runs`` too)."""
    base = base or tlcm_full()
    overrides = dict(variant.losses or {})
    if variant.mlcd:
        overrides["mlcd"] = {"mlcd": variant.mlcd}
    phases = {
        name: _phase(
            base.phases[name], overrides.get(name, {}), {loss for p, loss in variant.drop if p == name}
        )
        for name in variant.phases
    }
    student = replace(base.student, init_from=runs / variant.parent if variant.parent else None)
    student = replace(student, grid=variant.grid or student.grid)
    return replace(
        base, student=student, phases=phases, runtime=replace(base.runtime, out_dir=runs / variant.name)
    )
