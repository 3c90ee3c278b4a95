"""The recipe presets against the documents that cite their values (recipes/tlcm.py, recipes/zoo.py,
recipes/__init__.py).

tests/test_presets.py pins each documented setting to a written-out value. These tests read the
cited value from the document itself (docs/method.md, docs/design.md, docs/results.md,
docs/zoo-methods.md, docs/zoo.md) wherever it is written there, so that the document and the recipe
are held together, and check the relations the documents state between settings: one lr for a
GAN's student and heads, the zoo's factor 10 on a reference's lr, the phases' step ratios of the
budget-scaled runs, one run folder per preset, stage 2 continuing stage 1's folder, the zoo's
registry building the same recipes as PRESETS, and every miniature preset passing the recipe check.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest

from recipes import PRESETS
from recipes.zoo import ZOO
from tlcm.checks import validate_recipe
from tlcm.config import Recipe
from tlcm.losses.mlcd import MLCDConfig
from tlcm.losses.preference import PreferenceConfig
from tlcm.toy import MINIATURE_SD, MINIATURE_SD3

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"([0-9][0-9.,]*(?:e-?[0-9]+)?)"
"""A number as the documents write it: 300, 1,000, 0.05, 1e-5."""


@cache
def doc(name: str) -> str:
    """docs/NAME with every run of whitespace (line breaks included) as one space."""
    return " ".join((ROOT / "docs" / name).read_text().split())


def cited(name: str, pattern: str) -> tuple[str, ...]:
    """The groups of the one match of ``pattern`` in docs/NAME (NUMBER groups: plain strings)."""
    found = re.findall(pattern, doc(name))
    assert len(found) == 1, f"docs/{name}: {pattern!r} matched {len(found)} times, expected once"
    return found[0] if isinstance(found[0], tuple) else (found[0],)


def number(text: str) -> float:
    """A documented number as a float ("1,000" -> 1000.0)."""
    return float(text.replace(",", ""))


def miniature(recipe: Recipe) -> bool:
    """Whether the recipe's model is one of the shipped miniatures (the UNet or the flow one)."""
    return Path(recipe.model.path) in (Path(MINIATURE_SD), Path(MINIATURE_SD3))


ZOO_NAMES = sorted(ZOO)
ZOO_LR_FACTOR = number(cited("zoo-methods.md", r"\(× ([0-9]+), the zoo's LoRA factor\)")[0])
"""The zoo's factor on a reference's lr for a LoRA student at the miniature's budget
(docs/zoo-methods.md section 6; recipes/zoo.py applies it to every GAN's reference lr)."""


# ---- one run folder per preset, stage 2 after stage 1, one registry -------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_writes_its_own_run_folder(name):
    """``python -m tlcm.train recipes:NAME`` writes (and resumes from) runs/NAME: two presets sharing
    a folder would resume each other's checkpoints."""
    assert PRESETS[name].runtime.out_dir == Path("runs") / name


def test_lcd_continues_the_mlcd_presets_run():
    """recipes:lcd is "stage 2 only, continuing a stage-1 run" (README, recipes/tlcm.py): its student
    starts from the folder recipes:mlcd writes, and it runs stage 2 where mlcd runs stage 1."""
    assert PRESETS["lcd"].student.init_from == PRESETS["mlcd"].runtime.out_dir
    assert tuple(PRESETS["mlcd"].phases) == ("mlcd",) and tuple(PRESETS["lcd"].phases) == ("lcd",)
    assert PRESETS["mlcd"].student.init_from is None


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_the_zoo_registry_builds_the_preset_of_its_name(name):
    """ablations.zoo trains recipes.zoo.ZOO[NAME]; ``recipes:NAME`` is PRESETS[NAME]: the same
    recipe, or the zoo's table names one method and measures another."""
    assert ZOO[name]() == PRESETS[name]


@pytest.mark.parametrize("name", [n for n in sorted(PRESETS) if n != "lcd" and miniature(PRESETS[n])])
def test_every_miniature_preset_passes_the_recipe_check(name, tmp_path):
    """What ``python -m tlcm.train recipes:NAME`` checks before loading anything: the shipped
    miniature presets pass it (their data folders, loss fields and grids), out_dir aside (a write
    probe: here a temporary folder). lcd needs mlcd's run first."""
    recipe = PRESETS[name]
    validate_recipe(replace(recipe, runtime=replace(recipe.runtime, out_dir=tmp_path / "run")), world_size=1)


def test_the_built_in_evaluation_is_the_documented_200_prompts():
    """docs/results.md: "The run scores itself on 200 prompts (20 per digit ...)", beside the
    teacher's table on the same 200 prompts: every miniature preset docs/zoo.md compares."""
    prompts, per_digit = map(
        number, cited("results.md", r"scores itself on ([0-9]+) prompts \(([0-9]+) per digit")
    )
    assert prompts == 10 * per_digit
    for name in [*ZOO_NAMES, "tlcm-full", "tlcm-paper", "tlcm-full-flow"]:
        assert PRESETS[name].runtime.eval_samples_per_digit == per_digit, name


# ---- the TLCM presets -------------------------------------------------------------------------------


def test_the_adversarial_phase_runs_at_the_papers_lr():
    """docs/method.md: "DMD + GAN run together for 1,000 iterations, batch 4, lr 1e-5 (Sec. 5.1)".
    The SDXL preset takes all three; tlcm-paper (the paper's four phases on the miniature) its lr
    (at 1e-4 FD rose, ablations/LOG.md)."""
    pattern = rf"DMD \+ GAN run together for {NUMBER} iterations, batch {NUMBER}, lr {NUMBER} \("
    steps, batch, lr = map(number, cited("method.md", pattern))
    for name in ("tlcm-full-sdxl", "tlcm-full-sd3", "tlcm-full-flux"):
        phase = PRESETS[name].phases["dmd_gan"]
        assert (phase.steps, phase.batch_size, phase.lr) == (steps, batch, lr), name
    assert PRESETS["tlcm-paper"].phases["dmd_gan"].lr == lr


def test_tlcm_papers_gan_is_design_mds_on_re_noised_latents():
    """docs/design.md, "Recipe values for phases 3-4 on the miniature": "the GAN
    (teacher-UNet-encoder discriminator on re-noised latents, weight 0.05 ...)"; the paper's D sees
    forward-diffused latents (docs/method.md, Eq. (13)). noise_level 0 would be clean latents."""
    (weight,) = cited(
        "design.md", rf"teacher-UNet-encoder discriminator on re-noised latents, weight {NUMBER}"
    )
    gan = PRESETS["tlcm-paper"].phases["dmd_gan"].losses["gan"]
    assert gan.weight == number(weight)
    assert (gan.backbone, gan.input) == ("teacher", "latent")
    assert 0 < gan.noise_level < 1000


def test_the_large_presets_reward_is_the_documented_pickscore_folder():
    """docs/design.md's SDXL table: reward feedback "(PickScore folder `models/pickscore`; the
    paper's MPS is not available)", reused by the SD3 / FLUX presets."""
    (folder,) = cited("design.md", r"PickScore folder `([^`]+)`")
    for name in ("tlcm-full-sdxl", "tlcm-full-sd3", "tlcm-full-flux"):
        reward = PRESETS[name].phases["preference"].losses["preference"]
        assert isinstance(reward, PreferenceConfig)
        assert (reward.reward, reward.clip_folder) == ("pickscore", folder), name


# ---- steps: the zoo's budget-scaled rows and the 300-step phases -----------------------------------

ZOO_ROW = re.compile(r"^\| ([a-z0-9-]+) \(([a-z0-9_]+ [0-9]+(?:, [a-z0-9_]+ [0-9]+)*)\) \|", re.M)
"""A method row of docs/zoo.md's tables: ``| NAME (phase steps, phase steps, ...) |``."""


def zoo_rows() -> list[tuple[str, dict[str, int]]]:
    """(method, {phase: steps at the budget}) of every method row of docs/zoo.md (both miniatures)."""
    text = (ROOT / "docs" / "zoo.md").read_text()
    rows = []
    for name, cells in ZOO_ROW.findall(text):
        steps = {}
        for cell in cells.split(", "):
            phase, n = cell.split(" ")
            steps[phase] = int(n)
        rows.append((name, steps))
    return rows


def test_the_zoo_tables_runs_are_the_presets_phases_scaled_by_one_factor():
    """docs/zoo.md: "the method's phase steps scaled by one factor to meet the budget" (ablations.zoo
    rounds each to the nearest, so each doc_i = f s_i +- 1 and the ratios doc_i / s_i agree within
    2 / min s). The rows were trained from the presets: their phases, in order, and step ratios."""
    rows = zoo_rows()
    assert {name for name, _ in rows} >= {*ZOO_NAMES, "tlcm-full", "tlcm-paper"}
    for name, documented in rows:
        steps = {phase: p.steps for phase, p in PRESETS[name].phases.items()}
        assert tuple(steps) == tuple(documented), name
        ratios = [documented[p] / steps[p] for p in steps]
        assert max(ratios) - min(ratios) <= 2 / min(steps.values()), (name, steps, documented)


def test_the_zoos_consistency_phases_have_tlcm_fulls_stage_1_budget():
    """docs/design.md: the references' lrs "barely move a LoRA in 300 steps", so the zoo's
    consistency phases run the miniature's tuned stage-1 values (recipes/zoo.py: "lr 1e-3 and 300
    steps per consistency phase"; its distribution-matching and adversarial phases 300 steps too);
    Hyper-SD's four stages share those 300 ("the same 300 as one phase elsewhere")."""
    (documented,) = cited("design.md", rf"barely move a LoRA in {NUMBER} steps")
    stage1 = PRESETS["tlcm-full"].phases["mlcd"]
    assert stage1.steps == number(documented)
    for name in ZOO_NAMES:
        phases = PRESETS[name].phases
        tscd = [p.steps for n, p in phases.items() if n.startswith("tscd")]
        if tscd:
            assert sum(tscd) == stage1.steps and len(set(tscd)) == 1, name
            continue
        first = next(iter(phases.values()))
        assert first.steps == stage1.steps, name
        mlcd = first.losses.get("mlcd")
        if isinstance(mlcd, MLCDConfig) and mlcd.distance == "elementwise_huber":
            assert first.lr == stage1.lr, name  # the tuned stage-1 lr with LCM's Huber


def test_pcm_trains_on_the_phases_it_samples():
    """docs/zoo-methods.md section 2: "`--multiphase` (default 8; runs: 4, ...)": PCM trains one
    LoRA per M and samples its M phase edges. The pcm recipes' consistency loss (``segments`` 0:
    the grid's M) trains on the runs' M = 4, the grid they sample."""
    default, runs = map(int, cited("zoo-methods.md", r"`--multiphase` \(default ([0-9]+); runs: ([0-9]+)"))
    assert default != runs  # the script default is not the runs' value: which one the recipe takes matters
    for name in ("pcm", "pcm-adv", "pcm-lcd", "pcm-lcd-low-w"):
        recipe = PRESETS[name]
        loss = recipe.phases["pcm"].losses["mlcd"]
        assert (loss.segments or recipe.student.grid.num_milestones) == runs, name
        assert recipe.student.grid.num_milestones == recipe.student.grid.steps == runs, name


# ---- batch and the GANs' optimizers ----------------------------------------------------------------


def test_every_zoo_phase_has_the_shared_batch_and_rank():
    """docs/design.md's zoo decisions: "batch 16, rank 16"; Hyper-SD's feedback phase is TLCM's
    reward phase on the miniature (recipes/zoo.py ``feedback_phase``: batch 8, as tlcm-paper's)."""
    batch, rank = map(number, cited("design.md", r"batch ([0-9]+), rank ([0-9]+); real images"))
    reward_batch = PRESETS["tlcm-paper"].phases["preference"].batch_size
    for name in ZOO_NAMES:
        recipe = PRESETS[name]
        assert recipe.student.lora_rank == rank, name
        for phase_name, phase in recipe.phases.items():
            expected = reward_batch if "preference" in phase.losses else batch
            assert phase.batch_size == expected, (name, phase_name)


def test_dmd2_trains_student_fake_score_and_discriminator_at_one_lr():
    """docs/zoo-methods.md section 5: DMD2's "fake lr = generator lr", FastGen's cross-check "lr
    5e-5 (student, fake, D)": recipes:dmd2 keeps one lr for the three (its docstring: "lr 2e-4 for
    student, fake score and discriminator"), above the reference's."""
    assert "fake lr = generator lr" in doc("zoo-methods.md")
    (reference,) = cited("zoo-methods.md", rf"lr {NUMBER} \(student, fake, D\)")
    phase = PRESETS["dmd2"].phases["dmd2"]
    assert phase.lr == phase.losses["dmd"].fake_lr == phase.losses["gan"].disc_lr
    assert phase.lr >= number(reference)


def test_pcm_adv_discriminator_lr_is_pcms_times_the_zoo_factor():
    """docs/zoo-methods.md section 2, GAN schedule: "`adv_weight` 0.1, D lr 1e-5"; recipes:pcm-adv
    takes the weight and "D lr 1e-4 (PCM's adv_lr 1e-5 x 10, as the zoo's consistency lr)"."""
    weight, lr = map(number, cited("zoo-methods.md", rf"`adv_weight` {NUMBER}, D lr {NUMBER},"))
    gan = PRESETS["pcm-adv"].phases["pcm"].losses["gan"]
    assert gan.weight == weight
    assert gan.disc_lr == pytest.approx(ZOO_LR_FACTOR * lr, rel=1e-12)


def test_add_trains_student_and_heads_at_the_recalled_lr_times_the_zoo_factor():
    """docs/zoo-methods.md section 6: "the student lr 1e-5 (× 10, the zoo's LoRA factor)";
    recipes/zoo.py: "lr 1e-4 for student and discriminator heads", L = L_adv + lambda L_distill
    (the GAN's weight 1, lambda = 2.5 as documented: "takes λ = 2.5")."""
    (lr,) = cited("zoo-methods.md", rf"the student lr {NUMBER} \(× [0-9]+, the zoo's LoRA factor\)")
    (lam,) = cited("zoo-methods.md", rf"takes λ = {NUMBER},")
    phase = PRESETS["add"].phases["add"]
    expected = pytest.approx(ZOO_LR_FACTOR * number(lr), rel=1e-12)
    assert phase.lr == expected and phase.losses["gan"].disc_lr == expected
    assert phase.losses["gan"].weight == 1.0 and phase.losses["add_distill"].weight == number(lam)


def test_ladd_trains_student_and_heads_with_amds_one_optimizer_setting():
    """docs/zoo-methods.md section 7, AMD: "AdamW β (0.9, 0.999), wd 1e-2, G/D lr 1e-6": one
    setting for generator and discriminator. recipes:ladd: "AdamW betas (0.9, 0.999), weight decay
    0.01 for student and heads; lr 1e-5 for both (AMD's 1e-6 x 10)"."""
    wd, lr = map(number, cited("zoo-methods.md", rf"AdamW β \(0\.9, 0\.999\), wd {NUMBER}, G/D lr {NUMBER}"))
    phase = PRESETS["ladd"].phases["ladd"]
    gan = phase.losses["gan"]
    assert phase.weight_decay == gan.disc_weight_decay == wd
    assert gan.disc_betas == (0.9, 0.999)
    expected = pytest.approx(ZOO_LR_FACTOR * lr, rel=1e-12)
    assert phase.lr == expected and gan.disc_lr == expected
