"""The presets' settings pinned to their documented sources (recipes.PRESETS).

Every expected value below is written out from a document, never recomputed with the code under
test (a test that calls ``recipes.zoo.miniature_w`` to get its expected range cannot fail):

- tlcm-full-sdxl and its SD3 / FLUX variants, and tlcm-paper's M / k / q / p: the TLCM paper
  (arXiv 2406.05768 v6) as docs/method.md restates it, and the preset tables of docs/design.md
  ("The SDXL preset", "The SD3 / FLUX presets");
- tlcm-full / tlcm-full-flow / tlcm-paper on the miniature: docs/results.md, docs/ablations.md and
  docs/design.md (the shipped sampler ``recipes.tlcm.MINIATURE_SAMPLER``: first move gamma 1, then
  DDIM, gamma 0);
- the zoo (recipes/zoo.py): the references' settings in docs/zoo-methods.md, the zoo's shared
  decisions in docs/design.md ("The method zoo": w ranges scaled by 2 / 7.5 in our CFG form, rank
  16, batch 16, lr 1e-3 with Huber and 1e-4 with l2) and docs/results.md / docs/zoo.md.

Scaled guidance values show their arithmetic. The zoo's LCM-form w ranges become our CFG form
w' = w + 1 (docs/zoo-methods.md, "Shared conventions", CFG forms) and are scaled by the miniature
teacher's w over SD1.5's, 2 / 7.5 (docs/design.md, "Decisions, the same for every method"); the
recipes round to 2 decimals, so those pins allow half a unit of the last decimal.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from recipes import PRESETS
from tlcm.config import Recipe
from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.dmd import DMDConfig

ROUNDED = 0.005
"""Tolerance of a value the recipe rounds to 2 decimals (half a unit of the last decimal)."""


@dataclass(frozen=True)
class Pin:
    """One documented setting: ``path`` in ``preset`` must equal ``expected`` (floats within
    ``tol``; tuples element-wise), as ``source`` states."""

    preset: str
    path: str
    expected: Any
    source: str
    tol: float = 1e-12


def first_move_gamma(grid: StudentGrid, recipe: Recipe) -> float:
    """The gamma of the sampler's first move (StudentGrid.first_gamma; None: the grid's gamma)."""
    return grid.gamma if grid.first_gamma is None else grid.first_gamma


def real_score_w(dmd: DMDConfig, recipe: Recipe) -> float:
    """The CFG scale of DMD's real score (DMDConfig.real_guidance_scale; 0: the recipe's teacher w)."""
    return dmd.real_guidance_scale or recipe.model.guidance_scale


DERIVED: dict[str, Callable[[Any, Recipe], Any]] = {
    "first_move_gamma": first_move_gamma,
    "real_score_w": real_score_w,
}
"""Path leaves that are not fields: the effective value a field's ``None`` / 0 default stands for."""


def resolve(recipe: Recipe, path: str) -> Any:
    """The value at a dotted ``path`` of ``recipe``: attributes, dict keys (phase and loss names),
    and a last segment from ``DERIVED``."""
    *parents, leaf = path.split(".")
    value: Any = recipe
    for name in parents:
        value = value[name] if isinstance(value, dict) else getattr(value, name)
    if leaf in DERIVED:
        return DERIVED[leaf](value, recipe)
    return value[leaf] if isinstance(value, dict) else getattr(value, leaf)


# ---- the TLCM paper's values (SDXL, and its SD3 / FLUX variants) ---------------------------------

METHOD = "docs/method.md"
SDXL_TABLE = 'docs/design.md, "The SDXL preset (`recipes:tlcm-full-sdxl`): the paper\'s values"'
FLOW_PRESETS = 'docs/design.md, "The SD3 / FLUX presets"'


def paper_phase_pins(preset: str, via: str) -> list[Pin]:
    """The paper's Sec. 5.1 phases, grid and sampler, which tlcm-full-sdxl takes and the SD3 / FLUX
    presets reuse (``via``: the document that says so for ``preset``)."""
    mlcd, lcd = "phases.mlcd", "phases.lcd"
    pref, dmd = "phases.preference", "phases.dmd_gan"
    pins = [
        (
            "phases",
            ("mlcd", "lcd", "preference", "dmd_gan"),
            f"{METHOD}, 'The bag of techniques': Sec. 5.1 runs MLCD, LCD, MPS, then DMD + GAN",
        ),
        ("student.grid.num_milestones", 8, f"{METHOD}, 'Stage 1': M = 8 segments (Sec. 5.1)"),
        ("student.grid.steps", 4, f"{METHOD}, 'Stage 2': q = 4 sampling steps (Sec. 5.1)"),
        ("student.grid.gamma", 1.0, f"{METHOD}, 'Inference': fresh noise between steps, gamma = 1"),
        ("student.grid.first_move_gamma", 1.0, f"{METHOD}, 'Inference' (LCM sampler, every move)"),
        ("student.grid.training_gamma", 1.0, f"{METHOD}, 'Stage 2': Alg. 2's q-step LCM sampler"),
        ("student.lora_rank", 64, f"{METHOD}, 'Stage 1': rank 64 in the authors' inference.py"),
        (f"{mlcd}.steps", 12_000, f"{METHOD}, 'Stage 1': 12,000 iterations (Sec. 5.1)"),
        (f"{mlcd}.lr", 1e-4, f"{METHOD}, 'Stage 1': lr 1e-4 (Sec. 5.1)"),
        (f"{mlcd}.losses.mlcd.skip", 20, f"{METHOD}, 'Stage 1': skip k = 20 (Sec. 4.1)"),
        (f"{mlcd}.losses.mlcd.states", "mds", f"{METHOD}, 'Stage 1': data-free MDS states (Alg. 1)"),
        (f"{mlcd}.losses.mlcd.target", "stopgrad", f"{METHOD}, 'Stage 1': EMA removed (Sec. 4.1)"),
        (f"{lcd}.steps", 2_000, f"{METHOD}, 'Stage 2': 2,000 iterations (Sec. 5.1)"),
        (f"{lcd}.lr", 1e-5, f"{METHOD}, 'Stage 2': lr 1e-5 (Sec. 5.1)"),
        (f"{lcd}.losses.lcd.teacher_substeps", 3, f"{METHOD}, 'Stage 2': p = 3 sub-steps (Sec. 5.1)"),
        (f"{lcd}.losses.lcd.full_range", False, f"{METHOD}, 'Stage 2': sparse milestones (Table 2)"),
        (f"{pref}.steps", 500, f"{METHOD}, 'Preference learning': 500 iterations (Sec. 5.1)"),
        (f"{pref}.batch_size", 8, f"{METHOD}, 'Preference learning': batch 8 (Sec. 5.1)"),
        (f"{pref}.lr", 1e-5, f"{METHOD}, 'Preference learning': lr 1e-5 (Sec. 5.1)"),
        (f"{pref}.losses.preference.mode", "reward", f"{METHOD}, 'Preference learning': Eq. (11)"),
        (f"{pref}.losses.preference.s0", 16.0, f"{METHOD}, 'Preference learning': s0 = 16"),
        (f"{pref}.losses.preference.s_neg", 0.0, f"{METHOD}, Eq. (11): max(s(x0_hat, c_neg), 0)"),
        (f"{dmd}.steps", 1_000, f"{METHOD}, 'Adversarial learning': DMD + GAN 1,000 iterations"),
        (f"{dmd}.batch_size", 4, f"{METHOD}, 'Adversarial learning': batch 4 (Sec. 5.1)"),
        (f"{dmd}.lr", 1e-5, f"{METHOD}, 'Adversarial learning': lr 1e-5 (Sec. 5.1)"),
        (f"{dmd}.losses.gan.disc_lr", 1e-4, f"{METHOD}, 'Adversarial learning': D lr 1e-4"),
        (
            f"{dmd}.losses.dmd.fake_updates",
            5,
            f"{METHOD}, 'Distribution matching' [open]: DMD2's 5 fake updates; {SDXL_TABLE}",
        ),
        (
            "runtime.memory_plan",
            True,
            "docs/design.md, memory plan: on by default in the SDXL / SD3 / FLUX presets",
        ),
    ]
    return [Pin(preset, path, expected, f"{source}; via {via}") for path, expected, source in pins]


PAPER_PINS = [
    Pin("tlcm-full-sdxl", "model.guidance_scale", 8.0, f"{METHOD}, 'Notation': w = 8 fixed (Sec. 5.1)"),
    Pin("tlcm-full-sdxl", "phases.mlcd.batch_size", 32, f"{SDXL_TABLE}: 32 (ours, the paper gives none)"),
    Pin("tlcm-full-sdxl", "phases.lcd.batch_size", 32, f"{SDXL_TABLE}: 32 (ours, the paper gives none)"),
    Pin("tlcm-full-sdxl", "student.lora_alpha", 64.0, f"{SDXL_TABLE}: LoRA rank 64 (alpha 64)"),
    Pin("tlcm-full-sdxl", "runtime.checkpoint_every", 500, f"{SDXL_TABLE}: checkpoints every 500 steps"),
    *paper_phase_pins("tlcm-full-sdxl", SDXL_TABLE),
    Pin("tlcm-full-sd3", "model.guidance_scale", 7.0, f"{FLOW_PRESETS}: SD3 w = 7 (pipeline default)"),
    Pin("tlcm-full-sd3", "model.max_sequence_length", 256, f"{FLOW_PRESETS}: SD3 256 T5 tokens"),
    Pin("tlcm-full-sd3", "model.resolution", 1024, f"{FLOW_PRESETS}: at 1024 px"),
    *paper_phase_pins("tlcm-full-sd3", FLOW_PRESETS),
    Pin("tlcm-full-flux", "model.guidance_scale", 3.5, f"{FLOW_PRESETS}: FLUX.1-dev guidance input w = 3.5"),
    Pin("tlcm-full-flux", "model.max_sequence_length", 512, f"{FLOW_PRESETS}: FLUX 512 T5 tokens"),
    Pin("tlcm-full-flux", "model.resolution", 1024, f"{FLOW_PRESETS}: at 1024 px"),
    Pin("tlcm-full-flux", "runtime.fsdp", True, f"{FLOW_PRESETS}: FLUX shards under torchrun"),
    Pin("tlcm-full-flux", "runtime.gradient_checkpointing", True, f"{FLOW_PRESETS}: FLUX checkpoints"),
    *paper_phase_pins("tlcm-full-flux", FLOW_PRESETS),
]
"""The paper's values (docs/method.md cites arXiv 2406.05768 v6 by section) and the large-model
presets' own (docs/design.md)."""


# ---- the miniature presets: tlcm-full, tlcm-full-flow, tlcm-paper ---------------------------------

RESULTS = 'docs/results.md, "The default student (`recipes:tlcm-full`) vs the teacher"'
FLOW_RESULTS = 'docs/results.md, "TLCM on the flow-matching miniature"'
DESIGN_PRESETS = "docs/design.md, 'Two miniature presets'"


def miniature_pins(preset: str) -> list[Pin]:
    """tlcm-full's phases and shipped sampler as docs/results.md lists them (tlcm-full-flow is
    "`recipes:tlcm-full` ... on the SD3-style rectified-flow miniature", docs/results.md)."""
    pins = [
        ("phases", ("mlcd", "lcd", "dmd"), f"{RESULTS}: MLCD -> LCD -> DMD; docs/ablations.md verdicts"),
        # The shipped sampler, recipes.tlcm.MINIATURE_SAMPLER: LCM's fresh noise for the first move
        # (from pure noise), deterministic DDIM after it (why: docs/ablations.md, docs/results.md).
        ("student.grid.gamma", 0.0, f"{RESULTS}: DDIM after the first move (MINIATURE_SAMPLER)"),
        ("student.grid.first_gamma", 1.0, f"{RESULTS}: gamma 1 for the first move (MINIATURE_SAMPLER)"),
        ("student.grid.num_milestones", 8, f"{RESULTS}: stage 1 M = 8"),
        ("student.grid.steps", 4, f"{RESULTS}: stage 2 q = 4"),
        ("student.lora_rank", 16, f"{RESULTS}: LoRA rank 16 on the miniature UNet"),
        ("phases.mlcd.steps", 300, f"{RESULTS}: stage 1 300 steps"),
        ("phases.mlcd.batch_size", 16, f"{RESULTS}: stage 1 batch 16"),
        ("phases.mlcd.lr", 1e-3, f"{RESULTS}: stage 1 lr 1e-3"),
        ("phases.mlcd.losses.mlcd.skip", 20, f"{RESULTS}: stage 1 k = 20"),
        ("phases.mlcd.losses.mlcd.states", "mds", f"{RESULTS}: stage 1 MDS states"),
        ("phases.mlcd.losses.mlcd.distance", "l2", f"{RESULTS}: stage 1 l2"),
        ("phases.lcd.steps", 100, f"{RESULTS}: stage 2 100 steps"),
        ("phases.lcd.lr", 1e-4, f"{RESULTS}: stage 2 lr 1e-4"),
        ("phases.lcd.losses.lcd.teacher_substeps", 3, f"{RESULTS}: stage 2 p = 3"),
        ("phases.lcd.losses.lcd.full_range", False, f"{RESULTS}: stage 2 sparse milestones"),
        ("phases.lcd.losses.lcd.distance", "l2", f"{RESULTS}: stage 2 l2 (docs/ablations.md)"),
        ("phases.dmd.steps", 150, f"{RESULTS}: DMD 150 steps"),
        ("phases.dmd.batch_size", 8, f"{RESULTS}: DMD batch 8"),
        ("phases.dmd.lr", 3e-5, f"{RESULTS}: DMD lr 3e-5"),
        ("phases.dmd.losses.dmd.real_score_w", 1.5, f"{RESULTS}: DMD real score = the teacher at w = 1.5"),
        ("phases.dmd.losses.dmd.fake_updates", 2, f"{RESULTS}: LoRA fake score, 2 updates per step"),
        ("phases.dmd.losses.dmd.fake_score", "lora", f"{RESULTS}: LoRA fake score"),
    ]
    return [Pin(preset, path, expected, source) for path, expected, source in pins]


def paper_on_miniature_pins() -> list[Pin]:
    """tlcm-paper: "the paper's four phases and LCM sampler" (docs/design.md) at the miniature's
    values (docs/method.md, Sec. 5.1 row of the equation map)."""
    pins = [
        ("phases", ("mlcd", "lcd", "preference", "dmd_gan"), f"{DESIGN_PRESETS}: the paper's four phases"),
        ("student.grid.gamma", 1.0, f"{DESIGN_PRESETS}: the paper's LCM sampler (docs/results.md)"),
        ("student.grid.first_move_gamma", 1.0, f"{DESIGN_PRESETS}: the LCM sampler on every move"),
        ("student.grid.num_milestones", 8, f"{METHOD}, 'Stage 1': M = 8"),
        ("student.grid.steps", 4, f"{METHOD}, 'Stage 2': q = 4"),
        ("phases.mlcd.losses.mlcd.skip", 20, f"{METHOD}, 'Stage 1': k = 20"),
        ("phases.lcd.losses.lcd.teacher_substeps", 3, f"{METHOD}, 'Stage 2': p = 3"),
        ("model.guidance_scale", 2.0, f"{RESULTS}: CFG teacher w = 2 (the miniature's, docs/toy.md)"),
        (
            "phases.dmd_gan.losses.dmd.real_score_w",
            2.0,
            "docs/ablations.md, 'What decided the default': DMD + GAN at w = 2 (tlcm-paper)",
        ),
        (
            "phases.dmd_gan.losses.gan.backbone",
            "teacher",
            "docs/ablations.md, row +gan: the teacher-UNet discriminator",
        ),
        ("phases.preference.steps", 40, "docs/ablations.md, row +preference-l2: 40 steps"),
        ("phases.preference.lr", 1e-5, "docs/ablations.md, row +preference-l2: lr 1e-5"),
        ("phases.preference.losses.preference.mode", "reward", "docs/ablations.md: reward feedback"),
        ("phases.preference.losses.preference.reward", "digit", "docs/ablations.md: the digit classifier"),
        # docs/design.md, 'Reward feedback': s0 = log 0.99 = -0.01005, s_neg = log 0.01 = -4.605
        # (the recipe writes them rounded: -0.01 and -4.6).
        ("phases.preference.losses.preference.s0", math.log(0.99), "docs/design.md, 'Reward feedback'"),
        ("phases.preference.losses.preference.s_neg", math.log(0.01), "docs/design.md, 'Reward feedback'"),
    ]
    tols = {"s0": 1e-4, "s_neg": 0.01}
    return [
        Pin("tlcm-paper", path, expected, source, tols.get(path.rsplit(".", 1)[-1], 1e-12))
        for path, expected, source in pins
    ]


MINIATURE_PINS = [
    *miniature_pins("tlcm-full"),
    *miniature_pins("tlcm-full-flow"),
    Pin(
        "tlcm-full-flow", "model.path.name", "miniature-sd3", f"{FLOW_RESULTS}: tlcm/toy/assets/miniature-sd3"
    ),
    Pin(
        "tlcm-full-flow",
        "model.max_sequence_length",
        8,
        f"{FLOW_RESULTS}: --recipes.model.max-sequence-length 8",
    ),
    *paper_on_miniature_pins(),
]


# ---- the zoo: published methods and our compositions ---------------------------------------------

ZM = "docs/zoo-methods.md"
ZOO_DECISIONS = "docs/design.md, 'Decisions, the same for every method'"
ZOO_RESULTS = 'docs/results.md, "The method zoo"'

# LCM-form w ranges in our CFG form (w + 1), times 2 / 7.5:
LCM_LORA_W = (1.6, 4.27)
"""LCM-LoRA's [5, 15] (docs/zoo-methods.md section 1): (5 + 1) x 2 / 7.5 = 1.6,
(15 + 1) x 2 / 7.5 = 4.2667 -> 4.27 (docs/results.md: "1.6-4.27")."""
PCM_W = (1.33, 1.6)
"""PCM's SD1.5 runs' [4, 5] (docs/zoo-methods.md section 2): (4 + 1) x 2 / 7.5 = 1.3333 -> 1.33,
(5 + 1) x 2 / 7.5 = 1.6 (docs/results.md: "w in [1.33, 1.6]")."""
LOW_W = (1.5, 2.5)
"""The low-w compositions' range, the miniature teacher's w = 2 +- 0.5 (docs/results.md)."""
DMD2_REAL_W = 2.13
"""DMD2's real-score CFG 8 (SDXL run, Imagen form = our form; docs/zoo-methods.md section 5) scaled
to the miniature: 8 x 2 / 7.5 = 2.1333 -> 2.13."""


def consistency_pins(preset: str, phase: str, w: tuple[float, float], distance: str) -> list[Pin]:
    """A zoo consistency phase: real-digit states on LCM's 50-point lattice with skip k = 20
    (docs/zoo-methods.md, "Shared conventions"), the method's w range (rounded, ``ROUNDED``), its
    distance, batch 16 and the lr for that distance (docs/design.md's zoo decisions)."""
    loss = f"phases.{phase}.losses.mlcd"
    lr = {"elementwise_huber": 1e-3, "l2": 1e-4}[distance]
    return [
        Pin(preset, f"{loss}.states", "data", f"{ZM}, 'Shared conventions': real-image states"),
        Pin(preset, f"{loss}.timesteps", "lattice", f"{ZM}, 'Shared conventions': the N = 50 lattice"),
        Pin(preset, f"{loss}.skip", 20, f"{ZM}, 'Shared conventions': topk = T // N = 20"),
        Pin(
            preset,
            f"{loss}.guidance_range",
            w,
            f"{ZM} w range, CFG form x 2 / 7.5 ({ZOO_DECISIONS})",
            ROUNDED,
        ),
        Pin(preset, f"{loss}.distance", distance, f"{ZM}: the reference's distance"),
        Pin(preset, f"phases.{phase}.batch_size", 16, f"{ZOO_DECISIONS}: batch 16"),
        Pin(preset, f"phases.{phase}.lr", lr, f"{ZOO_DECISIONS}: lr 1e-3 with LCM's Huber, 1e-4 with l2"),
    ]


def grid_pins(preset: str, gamma: float, source: str, milestones: int | None = None) -> list[Pin]:
    """The preset's own sampler: one gamma on every move (first move included) and, where the
    reference fixes it, M (= q) milestones."""
    pins = [
        Pin(preset, "student.grid.gamma", gamma, source),
        Pin(preset, "student.grid.first_move_gamma", gamma, source),
        Pin(preset, "student.lora_rank", 16, f"{ZOO_DECISIONS}: rank 16"),
    ]
    if milestones is not None:
        pins += [
            Pin(preset, "student.grid.num_milestones", milestones, source),
            Pin(preset, "student.grid.steps", milestones, source),
        ]
    return pins


LCM_SAMPLER = (
    f"{ZM} section 1, Inference: LCMScheduler, fresh noise every move (gamma 1); docs/zoo.md: own (gamma 1)"
)
PCM_SAMPLER = f"{ZM} section 2, Inference: DDIM (trailing), M = 4 phases; docs/zoo.md: own (gamma 0)"
TCD_SAMPLER = f"{ZM} section 3, Inference: TCDScheduler eta (gamma) 0.3; docs/zoo.md: own (gamma 0.3)"
DMD2_SAMPLER = f"{ZM} section 5: LCMScheduler on 999 / 749 / 499 / 249 (gamma 1, M = 4)"

PCM_ADV = f"{ZM} section 2, GAN rows and 'On tlcm today'"
DMD2 = f"{ZM} section 5 (and item 8, 'Now in tlcm')"
ADD = f"{ZM} section 6, 'On tlcm today' (values recalled from the paper)"
LADD = f"{ZM} section 7 (and item 10, 'Now in tlcm')"

ZOO_PINS = [
    # LCM-LoRA
    *consistency_pins("lcm-lora", "lcm", LCM_LORA_W, "elementwise_huber"),
    Pin("lcm-lora", "phases.lcm.losses.mlcd.segments", 1, f"{ZM} section 1: consistency to the clean end"),
    Pin(
        "lcm-lora", "phases.lcm.losses.mlcd.target", "stopgrad", f"{ZM} section 1: online LoRA under no_grad"
    ),
    *grid_pins("lcm-lora", 1.0, LCM_SAMPLER),
    # PCM (its sampler: DDIM, gamma 0, on its M = 4 phase edges)
    *consistency_pins("pcm", "pcm", PCM_W, "elementwise_huber"),
    Pin("pcm", "phases.pcm.losses.mlcd.target", "stopgrad", f"{ZM} section 2: stop-grad online LoRA"),
    *grid_pins("pcm", 0.0, PCM_SAMPLER, milestones=4),
    # PCM with its adversarial consistency loss
    *consistency_pins("pcm-adv", "pcm", PCM_W, "elementwise_huber"),
    *grid_pins("pcm-adv", 0.0, PCM_SAMPLER, milestones=4),
    Pin("pcm-adv", "phases.pcm.losses.gan.real", "consistency", f"{PCM_ADV}: real = the consistency target"),
    Pin("pcm-adv", "phases.pcm.losses.gan.loss_type", "hinge", f"{PCM_ADV}: D hinge"),
    Pin("pcm-adv", "phases.pcm.losses.gan.generator_loss", "relu", f"{PCM_ADV}: G relu(1 - D(fake))"),
    Pin("pcm-adv", "phases.pcm.losses.gan.weight", 0.1, f"{PCM_ADV}: adv_weight 0.1"),
    Pin("pcm-adv", "phases.pcm.losses.gan.disc_betas", (0.0, 0.999), f"{PCM_ADV}: D betas (0, 0.999)"),
    Pin("pcm-adv", "phases.pcm.losses.gan.disc_weight_decay", 1e-3, f"{PCM_ADV}: wd = the runs' 1e-3"),
    Pin("pcm-adv", "phases.pcm.losses.gan.head", "patch", "docs/design.md: pcm-adv uses PCM's patch heads"),
    Pin("pcm-adv", "phases.pcm.losses.gan.heads_per_level", 4, f"{PCM_ADV}: num_h_per_head 4 (SD1.5)"),
    Pin("pcm-adv", "phases.pcm.losses.gan.backbone", "teacher", f"{PCM_ADV}: the frozen teacher UNet"),
    # TCD (community training script; official sampler)
    *consistency_pins("tcd", "tcd", LCM_LORA_W, "l2"),
    Pin("tcd", "phases.tcd.losses.mlcd.segments", 1, f"{ZM} section 3: LCM-LoRA's setting"),
    Pin("tcd", "phases.tcd.losses.mlcd.target_time", "random", f"{ZM} section 3: a random s <= t_n"),
    *grid_pins("tcd", 0.3, TCD_SAMPLER),
    # Hyper-SD TSCD + its human feedback
    Pin(
        "hyper-sd-tscd",
        "phases",
        ("tscd8", "tscd4", "tscd2", "tscd1", "feedback"),
        f"{ZM} section 4: stages 8, 4, 2, 1, then a feedback phase",
    ),
    *[
        pin
        for m in (8, 4, 2, 1)
        for pin in (
            *consistency_pins("hyper-sd-tscd", f"tscd{m}", LCM_LORA_W, "l2"),
            Pin("hyper-sd-tscd", f"phases.tscd{m}.losses.mlcd.segments", m, f"{ZM} section 4: k = {m}"),
            Pin(
                "hyper-sd-tscd",
                f"phases.tscd{m}.losses.mlcd.target_time",
                "random",
                f"{ZM} section 4: s in segment",
            ),
        )
    ],
    *grid_pins("hyper-sd-tscd", 0.0, f"{ZM} section 4, Inference: DDIMScheduler (trailing), model card"),
    Pin("hyper-sd-tscd", "student.grid.backward_simulation", "chain", f"{ZM} section 4, the recipe: 'chain'"),
    Pin("hyper-sd-tscd", "student.grid.training_gamma", 0.0, f"{ZM} section 4: its own 4-step DDIM sampler"),
    Pin("hyper-sd-tscd", "phases.feedback.losses.preference.mode", "reward", f"{ZM} section 4: reward hinge"),
    Pin(
        "hyper-sd-tscd",
        "phases.feedback.losses.preference.negative_weight",
        0.0,
        f"{ZM} section 4: no c_neg term",
    ),
    Pin(
        "hyper-sd-tscd",
        "phases.feedback.losses.preference.s0",
        -0.01,
        f"{ZM} section 4: s0 = -0.01 (p > 0.99)",
    ),
    Pin("hyper-sd-tscd", "phases.feedback.batch_size", 8, f"{ZM} section 4: batch 8"),
    Pin("hyper-sd-tscd", "phases.feedback.lr", 1e-5, f"{ZM} section 4: lr 1e-5"),
    # DMD2
    Pin(
        "dmd2", "phases.dmd2.losses.dmd.real_guidance_scale", DMD2_REAL_W, f"{DMD2}: CFG 8 x 2 / 7.5", ROUNDED
    ),
    Pin("dmd2", "phases.dmd2.losses.dmd.t_min", 20, f"{DMD2}: t ~ U{{20..980}}"),
    Pin("dmd2", "phases.dmd2.losses.dmd.t_max", 980, f"{DMD2}: t ~ U{{20..980}}"),
    Pin("dmd2", "phases.dmd2.losses.dmd.fake_score", "full", f"{DMD2}: a full UNet copy"),
    Pin("dmd2", "phases.dmd2.losses.dmd.fake_updates", 5, f"{DMD2}: dfake_gen_update_ratio 5 (SDXL)"),
    Pin("dmd2", "phases.dmd2.losses.dmd.fake_t_min", 0, f"{DMD2}: fake t ~ U{{0..999}}"),
    Pin("dmd2", "phases.dmd2.losses.dmd.fake_t_max", 999, f"{DMD2}: fake t ~ U{{0..999}}"),
    Pin("dmd2", "phases.dmd2.losses.dmd.fake_samples", "fresh", f"{DMD2}: a fresh generator sample"),
    Pin("dmd2", "phases.dmd2.losses.dmd.fake_betas", (0.9, 0.999), f"{DMD2}: AdamW betas (0.9, 0.999)"),
    Pin("dmd2", "phases.dmd2.losses.dmd.fake_weight_decay", 0.01, f"{DMD2}: wd 0.01"),
    Pin("dmd2", "phases.dmd2.losses.dmd.fake_max_grad_norm", 10.0, f"{DMD2}: clip 10"),
    Pin("dmd2", "phases.dmd2.losses.gan.loss_type", "nonsaturating", f"{DMD2}: non-saturating GAN"),
    Pin("dmd2", "phases.dmd2.losses.gan.weight", 5e-3, f"{DMD2}: gen_cls_loss_weight 5e-3 (SDXL)"),
    Pin("dmd2", "phases.dmd2.losses.gan.real", "data", f"{DMD2}: real image latents"),
    Pin("dmd2", "phases.dmd2.losses.gan.independent_noise", True, f"{DMD2}: independent t and noise"),
    Pin("dmd2", "phases.dmd2.losses.gan.noise_level", 999, f"{DMD2}: D inputs at t in 0..999"),
    Pin("dmd2", "phases.dmd2.losses.gan.disc_betas", (0.9, 0.999), f"{DMD2}: AdamW betas (0.9, 0.999)"),
    Pin("dmd2", "phases.dmd2.losses.gan.disc_weight_decay", 0.01, f"{DMD2}: wd 0.01"),
    Pin("dmd2", "phases.dmd2.losses.gan.disc_max_grad_norm", 10.0, f"{DMD2}: clip 10"),
    Pin("dmd2", "phases.dmd2.losses.gan.disc_rank", 8, "docs/design.md, Discriminators: DMD2 rank 8"),
    Pin("dmd2", "phases.dmd2.losses.gan.disc_steps", 5, "docs/design.md, Discriminators: disc_steps 5"),
    Pin("dmd2", "phases.dmd2.max_grad_norm", 10.0, f"{DMD2}: clip 10"),
    Pin("dmd2", "phases.dmd2.weight_decay", 0.01, f"{DMD2}: wd 0.01"),
    Pin("dmd2", "student.grid.backward_simulation", "chain", f"{DMD2}: sample_backward = 'chain'"),
    *grid_pins("dmd2", 1.0, DMD2_SAMPLER, milestones=4),
    # ADD
    Pin("add", "phases.add.losses.add_distill.weight", 2.5, f"{ADD}: lambda = 2.5"),
    Pin("add", "phases.add.losses.add_distill.weighting", "exponential", f"{ADD}: exponential c(t)"),
    Pin("add", "phases.add.losses.add_distill.distance", "l2", f"{ADD}: squared l2"),
    Pin("add", "phases.add.losses.add_distill.space", "pixel", f"{ADD}: in pixel space"),
    Pin("add", "phases.add.losses.gan.loss_type", "hinge", f"{ADD}: the hinge loss"),
    Pin("add", "phases.add.losses.gan.real", "data", f"{ADD}: the GAN's real 'data' side"),
    Pin("add", "phases.add.losses.gan.noise_level", 0, f"{ADD}: clean inputs"),
    Pin(
        "add",
        "phases.add.losses.gan.disc_rank",
        0,
        "docs/design.md, Discriminators: ADD keeps a frozen trunk",
    ),
    Pin("add", "phases.add.lr", 1e-4, f"{ADD}: the student lr 1e-5 x 10"),
    Pin(
        "add", "student.grid.backward_simulation", "data", f"{ADD}: noised real data at 999 / 749 / 499 / 249"
    ),
    *grid_pins("add", 1.0, f"{ADD}: 999 / 749 / 499 / 249; docs/zoo.md: own (gamma 1)", milestones=4),
    # LADD
    Pin("ladd", "phases.ladd.losses", ("gan",), f"{LADD}: the GAN alone"),
    Pin("ladd", "phases.ladd.losses.gan.loss_type", "nonsaturating", f"{ZM} section 7: FastGen's losses"),
    Pin("ladd", "phases.ladd.losses.gan.real", "teacher", f"{LADD}: real = on-the-fly teacher samples"),
    Pin("ladd", "phases.ladd.losses.gan.backbone", "teacher", f"{LADD}: teacher features"),
    # tau uniform in [0, 750): the integers 0..749
    Pin("ladd", "phases.ladd.losses.gan.noise_level", 749, f"{LADD}: tau uniform in [0, 750)"),
    Pin("ladd", "phases.ladd.losses.gan.independent_noise", True, f"{LADD}: drawn per side (AMD)"),
    Pin("ladd", "phases.ladd.losses.gan.disc_betas", (0.9, 0.999), f"{ZM} section 7: AMD's AdamW betas"),
    Pin("ladd", "phases.ladd.losses.gan.disc_weight_decay", 0.01, f"{ZM} section 7: AMD's wd 1e-2"),
    Pin(
        "ladd",
        "phases.ladd.losses.gan.disc_rank",
        0,
        "docs/design.md, Discriminators: LADD keeps a frozen trunk",
    ),
    Pin("ladd", "phases.ladd.lr", 1e-5, "docs/design.md, Discriminators: LADD at its lr 1e-5"),
    Pin("ladd", "student.grid.backward_simulation", "chain", f"{LADD}: DMD2's backward simulation"),
    *grid_pins("ladd", 1.0, f"{LADD}: DMD2's 4-step grid; docs/zoo.md: own (gamma 1)", milestones=4),
    # Compositions of ours (docs/results.md)
    Pin("pcm-lcd", "phases", ("pcm", "lcd"), f"{ZOO_RESULTS}: pcm's phase, then TLCM's LCD"),
    *consistency_pins("pcm-lcd", "pcm", PCM_W, "elementwise_huber"),
    *grid_pins(
        "pcm-lcd", 0.0, f"{ZOO_RESULTS}: pcm-lcd's own sampler; docs/zoo.md: own (gamma 0)", milestones=4
    ),
    Pin("pcm-lcd-low-w", "phases", ("pcm", "lcd"), f"{ZOO_RESULTS}: pcm-lcd with another w range"),
    *consistency_pins("pcm-lcd-low-w", "pcm", LOW_W, "elementwise_huber"),
    *grid_pins("pcm-lcd-low-w", 0.0, "docs/zoo.md: own (gamma 0)", milestones=4),
    *consistency_pins("tcd-huber", "tcd", LCM_LORA_W, "elementwise_huber"),
    Pin(
        "tcd-huber",
        "phases.tcd.losses.mlcd.target_time",
        "random",
        f"{ZOO_RESULTS}: TCD's random target time",
    ),
    Pin("tcd-huber", "phases.tcd.losses.mlcd.segments", 1, f"{ZOO_RESULTS}: TCD's (one segment)"),
    *grid_pins("tcd-huber", 0.3, f"{ZOO_RESULTS}: gamma 0.3; docs/zoo.md: own (gamma 0.3)"),
    *consistency_pins("tcd-huber-phased", "tcd", LCM_LORA_W, "elementwise_huber"),
    Pin("tcd-huber-phased", "phases.tcd.losses.mlcd.target_time", "random", f"{ZOO_RESULTS}: as tcd-huber"),
    Pin("tcd-huber-phased", "phases.tcd.losses.mlcd.segments", 4, f"{ZOO_RESULTS}: on PCM's 4 phases"),
    *grid_pins("tcd-huber-phased", 0.3, f"{ZOO_RESULTS}: as tcd-huber, on PCM's 4 phases", milestones=4),
    *consistency_pins("tcd-huber-low-w", "tcd", LOW_W, "elementwise_huber"),
    Pin("tcd-huber-low-w", "phases.tcd.losses.mlcd.target_time", "random", f"{ZOO_RESULTS}: as tcd-huber"),
    Pin("tcd-huber-low-w", "phases.tcd.losses.mlcd.segments", 1, f"{ZOO_RESULTS}: as tcd-huber"),
    *grid_pins("tcd-huber-low-w", 0.3, f"{ZOO_RESULTS}: as tcd-huber; docs/zoo.md: own (gamma 0.3)"),
]
"""The zoo's documented settings (docs/zoo-methods.md, docs/design.md, docs/results.md, docs/zoo.md)."""

PINS = [*PAPER_PINS, *MINIATURE_PINS, *ZOO_PINS]

UNDOCUMENTED = {"mlcd", "lcd"}
"""Presets no document states a setting for (stage 1 or 2 alone, README's examples only)."""


def _as_comparable(value: Any) -> Any:
    """Dict keys (phase / loss names, in order) as a tuple; anything else unchanged."""
    return tuple(value) if isinstance(value, dict) else value


def _numeric(expected: Any) -> bool:
    """Whether ``expected`` is a float or a tuple of floats (compared within the pin's tol)."""
    if isinstance(expected, tuple):
        return any(isinstance(x, float) for x in expected)
    return isinstance(expected, float)


@pytest.mark.parametrize("pin", PINS, ids=[f"{p.preset}:{p.path}" for p in PINS])
def test_preset_value_matches_its_source(pin: Pin) -> None:
    """Each pinned setting of each preset equals the value its source document states."""
    actual = _as_comparable(resolve(PRESETS[pin.preset], pin.path))
    message = f"{pin.preset} {pin.path} = {actual!r}, documented {pin.expected!r} ({pin.source})"
    if _numeric(pin.expected):
        assert actual == pytest.approx(pin.expected, abs=pin.tol), message
    else:  # names, ints and flags exactly (True is not 1)
        assert actual == pin.expected and type(actual) is type(pin.expected), message


def test_every_documented_preset_is_pinned() -> None:
    """A preset added to PRESETS gets pins (or joins UNDOCUMENTED on purpose)."""
    assert {pin.preset for pin in PINS} == set(PRESETS) - UNDOCUMENTED


def test_pins_are_unique() -> None:
    """No (preset, path) pinned twice, so a table edit cannot leave a stale duplicate behind."""
    keys = [(pin.preset, pin.path) for pin in PINS]
    assert len(keys) == len(set(keys))


def test_the_miniature_sampler_is_first_move_lcm_then_ddim() -> None:
    """recipes.tlcm.MINIATURE_SAMPLER itself (docs/results.md: "gamma 1 for the first move, DDIM
    after it"; docs/ablations.md scores every row with it), on the paper's M = 8, q = 4."""
    from recipes.tlcm import MINIATURE_SAMPLER

    assert (MINIATURE_SAMPLER.gamma, MINIATURE_SAMPLER.first_gamma) == (0.0, 1.0)
    assert (MINIATURE_SAMPLER.num_milestones, MINIATURE_SAMPLER.steps) == (8, 4)


def test_zoo_w_ranges_are_the_cfg_form_scaled() -> None:
    """The written expectations themselves: LCM-form [lo, hi] -> ((lo + 1) x 2 / 7.5, (hi + 1) x
    2 / 7.5) at 2 decimals (docs/zoo-methods.md CFG forms; docs/design.md's 2 / 7.5), and DMD2's 8
    x 2 / 7.5. Guards the constants above against a typo, independently of recipes/zoo.py."""
    for (lo, hi), written in (((5.0, 15.0), LCM_LORA_W), ((4.0, 5.0), PCM_W)):
        assert written == pytest.approx(((lo + 1) * 2 / 7.5, (hi + 1) * 2 / 7.5), abs=ROUNDED)
    assert pytest.approx(8.0 * 2 / 7.5, abs=ROUNDED) == DMD2_REAL_W
