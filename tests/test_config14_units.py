"""The recipe tree's defaults, the presets against the papers and references they reproduce, and the
ablation ladder's rows against their own descriptions (red-team round 14, area config:
tlcm/config.py, recipes/, ablations/variants.py).

Each default is checked through what it does (the optimizer settings every preset inherits, the
device "auto" resolves to, the dtype of the frozen weights and of the stored embeddings); each
preset value against the document that states it (docs/method.md for the TLCM paper,
docs/zoo-methods.md and recipes/zoo.py's docstrings for the zoo); each ladder row against the words
of its description (docs/ablations.md prints them as the row's "what changes")."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ablations.variants import VARIANTS, variant_recipe
from recipes import PRESETS
from recipes.tlcm import MINIATURE_SAMPLER, tlcm_full
from recipes.zoo import ZOO
from tlcm.conditioning import Conditioning
from tlcm.config import DataConfig, ModelConfig, Phase, RuntimeConfig
from tlcm.toy import MINIATURE_SD, MINIATURE_SD3

RUNS = Path("runs")


def _phases():
    """(preset, phase name, Phase) of every preset."""
    return [(name, p, phase) for name, recipe in PRESETS.items() for p, phase in recipe.phases.items()]


def _miniature(recipe) -> bool:
    return Path(recipe.model.path) in (Path(MINIATURE_SD), Path(MINIATURE_SD3))


def _row(name: str):
    return variant_recipe(VARIANTS[name], RUNS)


# ---- tlcm/config.py: the defaults every preset inherits -------------------------------------------


def test_adamw_decays_weights_only_where_the_reference_does():
    """The phase default is AdamW without weight decay; DMD2 (train_sd.py: 0.01) and LADD (AMD's
    optimizers.py: 1e-2) are the only presets whose references set one (docs/zoo-methods.md)."""
    assert Phase().weight_decay == 0.0
    decayed = {(name, p) for name, p, phase in _phases() if phase.weight_decay != 0.0}
    assert decayed == {("dmd2", "dmd2"), ("ladd", "ladd")}
    assert {PRESETS[n].phases[p].weight_decay for n, p in decayed} == {0.01}


def test_gradients_are_clipped_at_1_unless_the_reference_clips_at_10():
    """Phase's default clips the gradient norm at 1 (recipes/zoo.py's ladd: "gradient clips 1";
    0 would disable clipping); DMD2's clip 10 (train_sd.py) is the one preset that changes it."""
    assert Phase().max_grad_norm == 1.0
    clips = {(name, p): phase.max_grad_norm for name, p, phase in _phases()}
    assert {k for k, v in clips.items() if v != 1.0} == {("dmd2", "dmd2")}
    assert clips[("dmd2", "dmd2")] == 10.0


def test_every_preset_trains_at_a_constant_lr_without_warmup():
    """The presets run constant lrs (recipes/zoo.py's DMD2: "constant lrs", "no lr warmup"; the
    paper states no schedule); the cosine rows of the ladder are the only scheduled runs."""
    assert (Phase().lr_schedule, Phase().lr_warmup_steps) == ("constant", 0)
    for name, p, phase in _phases():
        assert (phase.lr_schedule, phase.lr_warmup_steps) == ("constant", 0), (name, p)


def test_the_miniature_presets_lora_has_scale_1():
    """recipes/zoo.py: "the LoRA's alpha = rank (scale 1)"; tlcm-full's rank 16 / alpha 16 likewise;
    the SDXL preset: rank 64, alpha 64 (docs/design.md)."""
    for name, recipe in PRESETS.items():
        assert recipe.student.lora_alpha == recipe.student.lora_rank, name


def test_every_preset_writes_phase_grids_and_the_diffusers_lora():
    """RuntimeConfig: a sample grid PNG at the end of each phase, the student exported as a
    diffusers LoRA (pytorch_lora_weights.safetensors, what the card's snippet and tlcm.sample load)."""
    for name, recipe in PRESETS.items():
        assert recipe.runtime.sample_grid is True, name
        assert recipe.runtime.export_formats == ("diffusers",), name


def test_the_default_device_is_cuda_where_there_is_one(monkeypatch):
    """device "auto": cuda if available, else cpu (RuntimeConfig's docstring), as the engine's
    process setup resolves it."""
    from tlcm.distributed import init_distributed

    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert init_distributed(RuntimeConfig().device).device == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert init_distributed(RuntimeConfig().device).device == torch.device("cpu")


def test_the_default_frozen_weights_are_bf16_on_cuda_with_autocast():
    """ModelConfig.frozen_dtype "auto": bf16 on CUDA with bf16 autocast, else fp32."""
    from tlcm.models.base import frozen_dtype

    default = ModelConfig().frozen_dtype
    assert frozen_dtype(default, "cuda", True) == torch.bfloat16
    assert frozen_dtype(default, "cpu", True) == torch.float32
    assert frozen_dtype(default, "cuda", False) == torch.float32


class _FakeBase:
    """What EmbeddingStore reads of a model: its device, its encoder's dtype and ``encode``."""

    device = torch.device("cpu")
    family = SimpleNamespace(encoder_dtype=lambda pipe: torch.float32)
    pipe = None

    def encode(self, prompts):
        g = torch.Generator().manual_seed(len(prompts))
        cond = torch.randn(len(prompts), 2, 3, generator=g) / 3  # not representable in fp16
        return Conditioning(cond), Conditioning(torch.zeros(len(prompts), 2, 3))


def test_the_default_embedding_storage_keeps_the_encoders_bits():
    """DataConfig.embedding_dtype "encoder" (the default): the text encoder's output dtype, exact;
    float16 / bfloat16 only when asked (then every embedding is rounded)."""
    from tlcm.data.embeddings import EmbeddingStore

    base, prompts = _FakeBase(), ["a", "b", "c"]
    store = EmbeddingStore(base, prompts, None, DataConfig().embedding_dtype)
    expected = base.encode(prompts)[0].prompt_embeds
    assert torch.equal(store.get(torch.tensor([0, 1, 2])).prompt_embeds, expected)


# ---- recipes/tlcm.py: the TLCM paper's phases ------------------------------------------------------


@pytest.mark.parametrize("name", ["tlcm-full-sdxl", "tlcm-full-sd3", "tlcm-full-flux", "tlcm-paper"])
def test_the_papers_dmd_scores_with_the_teacher_and_its_gan_is_data_free(name):
    """docs/method.md, "Distribution matching": s_real is the pre-trained score model (the teacher
    with CFG: the recipe's w, real_guidance_scale 0); "Adversarial learning", Eq. (13): real = the
    student's own q-step samples (data-free: no image folder)."""
    recipe = PRESETS[name]
    phase = recipe.phases["dmd_gan"]
    assert phase.losses["dmd"].real_guidance_scale in (0.0, recipe.model.guidance_scale)
    assert phase.losses["gan"].real == "student"
    assert recipe.data.images is None


def test_the_teacher_real_gan_rows_keep_tlcm_fulls_whole_dmd():
    """ "tlcm-full's DMD + a GAN ...": the DMD term of those rows is tlcm-full's DMD config, every
    field (2 fake updates on a LoRA fake score, real score at w = 1.5), not another DMD."""
    full = tlcm_full().phases["dmd"].losses["dmd"]
    for name in ("+gan-teacher-real", "+gan-teacher-real-clean"):
        assert _row(name).phases["dmd_gan"].losses["dmd"] == full, name


# ---- recipes/zoo.py: the references' settings -------------------------------------------------------


def test_ladds_real_side_is_the_teachers_25_step_samples():
    """recipes/zoo.py's ladd: "real: the teacher's samples ..., made on the fly by CFG-DDIM in 25
    steps at the miniature's w = 2"."""
    gan = PRESETS["ladd"].phases["ladd"].losses["gan"]
    assert (gan.real, gan.teacher_steps) == ("teacher", 25)
    assert PRESETS["ladd"].model.guidance_scale == 2.0


@pytest.mark.parametrize("name", ["lcm-lora", "tcd", "tcd-huber", "tcd-huber-low-w"])
def test_one_segment_methods_sample_on_8_milestones(name):
    """LCM-LoRA "sampled LCM-style ... on M = 8 milestones", TCD and the tcd-huber compositions on
    the same grid: docs/zoo.md scores them at 1, 2, 4 and 8 steps, which needs M = 8."""
    grid = PRESETS[name].student.grid
    assert (grid.num_milestones, grid.steps) == (8, 4)
    assert PRESETS[name].shown_steps == (1, 2, 4, 8)


@pytest.mark.parametrize("name", ["dmd2", "add", "ladd", "pcm-adv"])
def test_the_zoos_discriminators_read_the_teachers_latent_features(name):
    """DMD2, ADD, LADD and PCM's adversarial loss use tlcm's teacher-feature discriminator on
    latents (recipes/zoo.py: "the frozen teacher's encoder on latents"; a random-init timm backbone
    on the miniature's 32 px digits "would be a strawman")."""
    (phase,) = PRESETS[name].phases.values()
    gan = phase.losses["gan"]
    assert (gan.backbone, gan.input) == ("teacher", "latent")


def test_pcm_lcds_stage_2_is_tlcms_lcd_at_its_lr():
    """pcm-lcd: "followed by TLCM's stage 2 ... l2, lr 1e-4, the teacher's w = 2": the LCD phase is
    recipes:tlcm-full's stage 2 at 30 steps."""
    lcd = PRESETS["pcm-lcd"].phases["lcd"]
    stage2 = tlcm_full().phases["lcd"]
    assert (lcd.lr, lcd.losses["lcd"].distance) == (1e-4, "l2")
    assert lcd.losses == stage2.losses and lcd.steps == 30


def test_the_zoo_registry_is_every_zoo_preset():
    assert all(ZOO[name]() == PRESETS[name] for name in ZOO)


# ---- ablations/variants.py: each row does what its description says --------------------------------


def test_the_full_range_row_draws_t_m_over_the_whole_range():
    """+full-range-stage2: "t_m uniform in (T/M, T]"; +full-range-lcd-l2 the same with l2;
    sparse-stage2 at the sparse milestones."""
    assert _row("+full-range-stage2").phases["lcd"].losses["lcd"].full_range is True
    assert _row("+full-range-lcd-l2").phases["lcd"].losses["lcd"].full_range is True
    assert _row("sparse-stage2").phases["lcd"].losses["lcd"].full_range is False


def test_the_dpo_row_trains_diffusion_dpo_and_the_reward_row_reward_feedback():
    assert _row("+preference-dpo").phases["preference"].losses["preference"].mode == "dpo"
    assert _row("+preference").phases["preference"].losses["preference"].mode == "reward"


def test_the_timm_row_reads_pixels_with_the_timm_backbone():
    """+gan-timm: "the default timm resnet18 (pixels)": clean decoded images."""
    gan = _row("+gan-timm").phases["dmd_gan"].losses["gan"]
    assert (gan.backbone, gan.input, gan.noise_level) == ("timm", "pixel", 0)


def test_the_cosine_rows_warm_up_20_steps_and_decay_both_stages():
    """mds-states-l2-cosine: "lr warm-up (20 steps) and cosine decay"; mlcd+lcd-l2-cosine: "+ stage
    2 with cosine decay (both stages cosine)", after the cosine stage 1."""
    stage1 = _row("mds-states-l2-cosine").phases["mlcd"]
    assert (stage1.lr_schedule, stage1.lr_warmup_steps) == ("cosine", 20)
    row = VARIANTS["mlcd+lcd-l2-cosine"]
    assert row.parent == "mds-states-l2-cosine"
    assert _row("mlcd+lcd-l2-cosine").phases["lcd"].lr_schedule == "cosine"


def test_the_dmd_lever_rows_change_only_what_they_name():
    """tlcm-full-dmd-lr1e-4: "tlcm-full's DMD at lr 1e-4"; tlcm-full-dmd-w2: "with its real score at
    w = 2": otherwise tlcm-full's DMD phase."""
    full = tlcm_full().phases["dmd"]
    lr = _row("tlcm-full-dmd-lr1e-4").phases["dmd"]
    assert lr.lr == 1e-4 and lr.losses == full.losses and lr.steps == full.steps
    w2 = _row("tlcm-full-dmd-w2").phases["dmd"]
    assert w2.losses["dmd"].real_guidance_scale == 2.0 and w2.lr == full.lr


def test_the_stage_2_distance_rows_train_the_distance_they_name():
    """+lcd-latent-lpips: "stage 2 with latent LPIPS (stage 1 l2)"; mlcd+lcd-huber: "+ stage 2
    (sparse) with the same Huber" after mds-states-huber."""
    assert _row("+lcd-latent-lpips").phases["lcd"].losses["lcd"].distance == "latent_lpips"
    assert _row(VARIANTS["+lcd-latent-lpips"].parent).phases["mlcd"].losses["mlcd"].distance == "l2"
    assert _row("mlcd+lcd-huber").phases["lcd"].losses["lcd"].distance == "elementwise_huber"


def test_the_clean_gan_row_shows_d_clean_latents_at_lr_1e_3():
    """+gan-teacher-real-clean: "D on clean latents, D lr 1e-3"; +gan-teacher-real re-noises them
    (tlcm-paper's GAN)."""
    clean = _row("+gan-teacher-real-clean").phases["dmd_gan"].losses["gan"]
    assert (clean.noise_level, clean.disc_lr) == (0, 1e-3)
    assert _row("+gan-teacher-real").phases["dmd_gan"].losses["gan"].noise_level > 0


def test_the_huber_row_is_huber_in_both_of_its_stages():
    """tlcm-full-huber: "tlcm-full with the Huber in both stages (+ its DMD)": its chain's stage 1
    and stage 2 use LCM's elementwise Huber, then tlcm-full's DMD."""
    chain, name = [], "tlcm-full-huber"
    while name:
        chain.insert(0, name)
        name = VARIANTS[name].parent
    phases = {}
    for row in chain:
        phases.update(_row(row).phases)
    assert list(phases) == ["mlcd", "lcd", "dmd"]
    assert phases["mlcd"].losses["mlcd"].distance == "elementwise_huber"
    assert phases["lcd"].losses["lcd"].distance == "elementwise_huber"
    assert phases["dmd"] == tlcm_full().phases["dmd"]


@pytest.mark.parametrize("name", ["+lcd-training-gamma0", "+lcd-3x-training-gamma0"])
def test_the_gamma0_rows_change_only_the_training_states_gamma(name):
    """ "stage 2 on DDIM (gamma 0) q-step states": the grid's training_gamma, nothing of the sampler
    the row is scored with (tlcm-full's: first move gamma 1, then DDIM)."""
    from dataclasses import replace

    grid = _row(name).student.grid
    assert grid == replace(MINIATURE_SAMPLER, training_gamma=0.0)
