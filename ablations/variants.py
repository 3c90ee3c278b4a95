"""The paper's ablation ladder (arXiv 2406.05768 Table 2; docs/method.md, "Ablation") as variants
of the shipped recipes.

A variant never copies a recipe: it picks phases of ``ladder_base()`` (``recipes:tlcm-full``'s
MLCD and LCD, ``recipes:tlcm-paper``'s preference and DMD + GAN, ``recipes.tlcm.dmd()``) and
changes their fields with ``dataclasses.replace`` (switch a state source or a distance, drop a
loss term, a phase's steps or lr). Every row samples with tlcm-full's grid and sampler.
Rows that only ADD phases to an earlier row name it as ``parent`` and train just their new
phases from the parent's student (``student.init_from``): the ladder costs one stage 1 per
distinct stage-1 setting, not one per row. (Such a continuation draws other random numbers than a
from-scratch run of the same recipe, since step seeds restart at 0.)
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, replace
from pathlib import Path

from recipes.tlcm import MINIATURE_SAMPLER, dmd, tlcm_full, tlcm_paper
from tlcm.config import Phase, Recipe
from tlcm.diffusion.milestones import StudentGrid
from tlcm.errors import TLCMError


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
    phase_fields: dict | None = None
    """Per phase: Phase field overrides (e.g. steps, lr)."""


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
_DMD = dmd()
AS_TLCM_FULL_DMD = {"steps": _DMD.steps, "lr": _DMD.lr}
"""Phase fields that give a DMD + GAN phase tlcm-full's DMD steps and lr."""
FULL_REAL_SCORE = {"real_guidance_scale": _DMD.losses["dmd"].real_guidance_scale}
"""DMD fields that give it tlcm-full's real-score guidance."""
L2_CHAIN: tuple[Variant, ...] = (
    Variant("mds-states-l2", "MDS states, l2 distance (stage 1 only)", ("mlcd",),
            mlcd={"states": "mds", "distance": "l2"}),
    Variant("mlcd+lcd-l2", "+ stage 2 (sparse), l2: MLCD + LCD", ("lcd",), parent="mds-states-l2",
            losses={"lcd": {"lcd": {"distance": "l2"}}}),
    Variant("tlcm-full", "+ DMD, real score at w = 1.5 (150 steps, lr 3e-5): recipes:tlcm-full", ("dmd",),
            parent="mlcd+lcd-l2"),
    Variant("+preference-l2", "+ reward feedback (digit classifier, 40 steps, lr 1e-5)", ("preference",),
            parent="mlcd+lcd-l2"),
    Variant("tlcm-paper", "+ preference, DMD + GAN (w = 2): recipes:tlcm-paper", ("preference", "dmd_gan"),
            parent="mlcd+lcd-l2"),
    Variant("+gan-teacher-real", "tlcm-full's DMD + a GAN whose real side is the teacher's 8-step samples",
            ("dmd_gan",), parent="mlcd+lcd-l2", phase_fields={"dmd_gan": AS_TLCM_FULL_DMD},
            losses={"dmd_gan": {"dmd": FULL_REAL_SCORE,
                                "gan": {"real": "teacher", "teacher_steps": 8}}}),
)  # fmt: skip
"""The recipe as shipped (l2 distance) and what the paper adds to it: the rows that decide which
phases the default keeps."""
STAGE_LENGTHS: tuple[Variant, ...] = tuple(
    row
    for x in (2, 3)
    for row in (
        Variant(f"mds-states-l2-{x}x", f"stage 1 of tlcm-full, {300 * x} steps", ("mlcd",),
                mlcd={"states": "mds", "distance": "l2"}, phase_fields={"mlcd": {"steps": 300 * x}}),
        Variant(f"mlcd+lcd-l2-{x}x", f"MLCD + LCD, {x}x stages ({300 * x} + {100 * x} steps)", ("lcd",),
                parent=f"mds-states-l2-{x}x", phase_fields={"lcd": {"steps": 100 * x}}),
        Variant(f"mlcd-{x}x+lcd-l2", f"{x}x stage 1 only ({300 * x} + 100 steps)", ("lcd",),
                parent=f"mds-states-l2-{x}x"),
    )
)  # fmt: skip
"""MLCD + LCD with longer stages: FD and alignment vs training length (the CPU budget)."""
LEVERS: tuple[Variant, ...] = (
    Variant("mds-states-l2-cosine", "stage 1 with lr warm-up (20 steps) and cosine decay", ("mlcd",),
            mlcd={"states": "mds", "distance": "l2"},
            phase_fields={"mlcd": {"lr_schedule": "cosine", "lr_warmup_steps": 20}}),
    Variant("mlcd+lcd-l2-cosine", "+ stage 2 with cosine decay (both stages cosine)", ("lcd",),
            parent="mds-states-l2-cosine", phase_fields={"lcd": {"lr_schedule": "cosine"}}),
    Variant("+full-range-lcd-l2", "stage 2 with t_m uniform in (T/M, T] (l2) instead of sparse", ("lcd",),
            parent="mds-states-l2", losses={"lcd": {"lcd": {"full_range": True}}}),
    Variant("+lcd-latent-lpips", "stage 2 with latent LPIPS (stage 1 l2)", ("lcd",), parent="mds-states-l2",
            losses={"lcd": {"lcd": {"distance": "latent_lpips"}}}),
    Variant("+lcd-training-gamma0", "stage 2 on DDIM (gamma 0) q-step states", ("lcd",),
            parent="mds-states-l2", grid=replace(MINIATURE_SAMPLER, training_gamma=0.0)),
    Variant("+lcd-3x-training-gamma0", "as +lcd-training-gamma0 after 3x stages (900 + 300 steps)", ("lcd",),
            parent="mds-states-l2-3x", grid=replace(MINIATURE_SAMPLER, training_gamma=0.0),
            phase_fields={"lcd": {"steps": 300}}),
    Variant("+gan-teacher-real-clean", "as +gan-teacher-real, D on clean latents, D lr 1e-3", ("dmd_gan",),
            parent="mlcd+lcd-l2", phase_fields={"dmd_gan": AS_TLCM_FULL_DMD},
            losses={"dmd_gan": {"dmd": FULL_REAL_SCORE,
                                "gan": {"real": "teacher", "teacher_steps": 8, "noise_level": 0,
                                        "disc_lr": 1e-3}}}),
    Variant("tlcm-full-dmd-lr1e-4", "tlcm-full's DMD at lr 1e-4", ("dmd",), parent="mlcd+lcd-l2",
            phase_fields={"dmd": {"lr": 1e-4}}),
    Variant("tlcm-full-dmd-w2", "tlcm-full's DMD with its real score at w = 2 (the MLCD targets')", ("dmd",),
            parent="mlcd+lcd-l2", losses={"dmd": {"dmd": {"real_guidance_scale": 2.0}}}),
    Variant("mds-states-huber", "stage 1 with LCM's elementwise pseudo-Huber (c = 0.001) instead of l2",
            ("mlcd",), mlcd={"states": "mds", "distance": "elementwise_huber"}),
    Variant("mlcd+lcd-huber", "+ stage 2 (sparse) with the same Huber", ("lcd",), parent="mds-states-huber",
            losses={"lcd": {"lcd": {"distance": "elementwise_huber"}}}),
    Variant("tlcm-full-huber", "tlcm-full with the Huber in both stages (+ its DMD)", ("dmd",),
            parent="mlcd+lcd-huber"),
)  # fmt: skip
"""One-seed levers around tlcm-full (issue 11): lr schedules, stage 2's range and distance, DMD."""
ROWS = L2_CHAIN + STAGE_LENGTHS + LEVERS + LADDER
"""Every shipped row, in table order."""
VARIANTS = {v.name: v for v in ROWS}
"""Name -> variant, in table order: ``ROWS``, then the rows of modules imported with
``python -m ablations.run --import`` (``add_variants``)."""


def add_variants(variants, where: str) -> None:
    """Add ``variants`` (an imported module's ``VARIANTS``: Variant objects) after the other rows;
    anything else, or a name that is already a row, is refused in one line naming ``where``."""
    for v in variants:
        if not isinstance(v, Variant):
            raise TLCMError(
                f"{where}: VARIANTS holds a {type(v).__name__}, not an ablations.variants.Variant"
            )
        if VARIANTS.get(v.name, v) is not v:
            raise TLCMError(f"{where}: its variant {v.name!r} is already a ladder row: rename it")
        VARIANTS[v.name] = v


def unknown_variant(name: str, what: str = "unknown variant") -> TLCMError:
    """The one-line refusal of ``name``, not a variant of ``VARIANTS``: ``what`` it is, the close
    names (did you mean) and the known ones."""
    close = difflib.get_close_matches(name, VARIANTS, n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return TLCMError(f"{what} {name!r}{hint}; known: {', '.join(VARIANTS)}")


def ladder_base() -> Recipe:
    """tlcm-full (its grid and runtime) with every phase a ladder row can pick: tlcm-full's MLCD
    and LCD, tlcm-paper's preference and DMD + GAN, and the DMD-only phase ``dmd``."""
    full = tlcm_full()
    return replace(full, phases={**tlcm_paper().phases, **full.phases, "dmd": dmd()})


def _unknown(what: str, names, known) -> None:
    """Refuse ``names`` outside ``known`` in one line naming ``what`` and the known ones."""
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise TLCMError(f"{what}: unknown {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}")


def _phase(base: Phase, overrides: dict, drop: set[str], fields: dict, where: str) -> Phase:
    """``base`` with its losses' fields overridden (``overrides``: loss -> {field: value}), the
    losses in ``drop`` removed and its own ``fields`` replaced; ``where`` names it in refusals."""
    _unknown(f"{where}: losses", [*overrides, *drop], base.losses)
    _unknown(f"{where}: phase fields", fields, {f.name for f in dataclasses.fields(base)})
    losses = {}
    for name, cfg in base.losses.items():
        if name in drop:
            continue
        _unknown(
            f"{where}, loss {name}: fields",
            overrides.get(name, {}),
            {f.name for f in dataclasses.fields(cfg)},
        )
        losses[name] = replace(cfg, **overrides.get(name, {}))
    return replace(base, losses=losses, **fields)


def variant_recipe(variant: Variant, runs: Path, base: Recipe | None = None) -> Recipe:
    """The Recipe of ``variant`` writing ``runs/<name>`` (its parent's run in ``runs`` too)."""
    base = base or ladder_base()
    overrides = dict(variant.losses or {})
    if variant.mlcd:
        overrides["mlcd"] = {"mlcd": variant.mlcd}
    where = f"variant {variant.name!r}"
    overridden = [*overrides, *(variant.phase_fields or {})]
    _unknown(f"{where}: phases", [*variant.phases, *overridden], base.phases)
    _unknown(f"{where}: overrides for phases it does not train", overridden, variant.phases)
    phases = {
        name: _phase(
            base.phases[name],
            overrides.get(name, {}),
            {loss for p, loss in variant.drop if p == name},
            (variant.phase_fields or {}).get(name, {}),
            f"{where}, phase {name}",
        )
        for name in variant.phases
    }
    student = replace(base.student, init_from=runs / variant.parent if variant.parent else None)
    student = replace(student, grid=variant.grid or student.grid)
    return replace(
        base, student=student, phases=phases, runtime=replace(base.runtime, out_dir=runs / variant.name)
    )
