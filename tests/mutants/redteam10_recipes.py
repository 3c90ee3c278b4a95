"""A tenth red-team audit, area recipes (2026-12-06; 25 mutants, 25 survived at first, each now
caught): the recipe presets and the values their documents cite (recipes/tlcm.py, recipes/zoo.py,
recipes/__init__.py). tests/test_presets.py pins each documented setting to a written-out value, but
not the ones below: tlcm-paper's DMD + GAN phase (the paper's lr 1e-5, its steps against the
others, the GAN's weight 0.05 and re-noised inputs), the large presets' PickScore folder, every
preset's run folder (one writing into another's resumes that run's checkpoint), recipes:lcd
continuing recipes:mlcd's folder, the zoo's steps (300 per consistency phase; the phase ratios of
docs/zoo.md's budget-scaled rows: hyper-sd-tscd's stages against its feedback phase, pcm-lcd's 10 : 1,
tlcm-paper's four phases), PCM's M = 4 for training as for sampling, the GANs' optimizers (pcm-adv's,
add's and ladd's reference lr x 10 for the heads, one lr for dmd2's student, fake score and heads,
ladd's weight decay on the student), the zoo's batch 16, its 200 evaluation prompts, the real digits
every zoo recipe needs (no test ran the recipe check on the presets), and recipes.zoo.ZOO against
PRESETS. Each is caught by tests/test_recipe_units.py, which reads the cited value from
docs/method.md, docs/design.md, docs/results.md, docs/zoo-methods.md or docs/zoo.md rather than
re-typing it. Dropped as equivalent: deleting pcm-adv's or add's ``disc_lr=1e-4`` (GANConfig's
default), ladd's ``teacher_steps=25`` (the default) or a GAN's ``weight=1.0`` (LossConfig's default),
and rebuilding the SDXL phase's ``DMDConfig(fake_updates=5)`` by ``replace`` of dmd_gan's (they
differ in fake_updates only). Settings test_presets.py already pins (w ranges, grids, distances,
skip, the SDXL table) were left unmutated."""

from run import Mutant

TLCM = "recipes/tlcm.py"
ZOO = "recipes/zoo.py"
PRESETS = "recipes/__init__.py"

T_PRESETS = "tests/test_presets.py"
U = "tests/test_recipe_units.py::"
T_RUN_FOLDER = U + "test_every_preset_writes_its_own_run_folder"
T_LCD = U + "test_lcd_continues_the_mlcd_presets_run"
T_REGISTRY = U + "test_the_zoo_registry_builds_the_preset_of_its_name"
T_CHECK = U + "test_every_miniature_preset_passes_the_recipe_check"
T_EVAL = U + "test_the_built_in_evaluation_is_the_documented_200_prompts"
T_PAPER_LR = U + "test_the_adversarial_phase_runs_at_the_papers_lr"
T_PAPER_GAN = U + "test_tlcm_papers_gan_is_design_mds_on_re_noised_latents"
T_PICKSCORE = U + "test_the_large_presets_reward_is_the_documented_pickscore_folder"
T_ZOO_TABLE = U + "test_the_zoo_tables_runs_are_the_presets_phases_scaled_by_one_factor"
T_STAGE1_BUDGET = U + "test_the_zoos_consistency_phases_have_tlcm_fulls_stage_1_budget"
T_PCM_PHASES = U + "test_pcm_trains_on_the_phases_it_samples"
T_BATCH = U + "test_every_zoo_phase_has_the_shared_batch_and_rank"
T_DMD2 = U + "test_dmd2_trains_student_fake_score_and_discriminator_at_one_lr"
T_PCM_ADV = U + "test_pcm_adv_discriminator_lr_is_pcms_times_the_zoo_factor"
T_ADD = U + "test_add_trains_student_and_heads_at_the_recalled_lr_times_the_zoo_factor"
T_LADD = U + "test_ladd_trains_student_and_heads_with_amds_one_optimizer_setting"

MUTANTS = [
    # ---- recipes/tlcm.py: the miniature's tlcm-paper phases ----------------------------------
    Mutant(
        "tlcm-paper-gan-weight-tenfold",
        TLCM,
        'MINIATURE_GAN = GANConfig(weight=0.05, backbone="teacher", input="latent", noise_level=500)',
        'MINIATURE_GAN = GANConfig(weight=0.5, backbone="teacher", input="latent", noise_level=500)',
        (T_PRESETS, T_PAPER_GAN),
        "tlcm-paper's GAN at weight 0.5, not docs/design.md's 0.05: the ablation rows measured "
        "another recipe",
    ),
    Mutant(
        "tlcm-paper-gan-on-clean-latents",
        TLCM,
        'MINIATURE_GAN = GANConfig(weight=0.05, backbone="teacher", input="latent", noise_level=500)',
        'MINIATURE_GAN = GANConfig(weight=0.05, backbone="teacher", input="latent", noise_level=0)',
        (T_PRESETS, T_PAPER_GAN),
        "the miniature's discriminator sees clean latents (noise_level 0), not the paper's "
        "forward-diffused ones (Eq. (13); docs/design.md: 're-noised latents')",
    ),
    Mutant(
        "tlcm-paper-dmd-gan-lr-1e-4",
        TLCM,
        "def dmd_gan(steps: int = 60, lr: float = 1e-5, batch_size: int = 8) -> Phase:",
        "def dmd_gan(steps: int = 60, lr: float = 1e-4, batch_size: int = 8) -> Phase:",
        (T_PRESETS, T_PAPER_LR),
        "tlcm-paper's DMD + GAN at lr 1e-4, not the paper's 1e-5 (Sec. 5.1; at 1e-4 FD rose, "
        "ablations/LOG.md); the SDXL preset passes its lr and hides it",
    ),
    Mutant(
        "tlcm-paper-dmd-gan-100-steps",
        TLCM,
        "def dmd_gan(steps: int = 60, lr: float = 1e-5, batch_size: int = 8) -> Phase:",
        "def dmd_gan(steps: int = 100, lr: float = 1e-5, batch_size: int = 8) -> Phase:",
        (T_PRESETS, T_ZOO_TABLE),
        "tlcm-paper's DMD + GAN phase 100 steps: no longer the recipe docs/zoo.md's budget-scaled "
        "row (mlcd 320, lcd 106, preference 43, dmd_gan 64) was trained from",
    ),
    Mutant(
        "sdxl-reward-from-the-wrong-folder",
        TLCM,
        '"clip_folder": "models/pickscore"',
        '"clip_folder": "models/clip"',
        (T_PRESETS, T_PICKSCORE),
        "tlcm-full-sdxl's reward model loaded from models/clip, not docs/design.md's PickScore folder "
        "models/pickscore (a plain CLIP scores another preference)",
    ),
    Mutant(
        "sd3-flux-write-into-the-sdxl-run-folder",
        TLCM,
        'runtime = replace(recipe.runtime, out_dir=Path(f"runs/{name}"), **runtime)',
        "runtime = replace(recipe.runtime, **runtime)",
        (T_PRESETS, T_RUN_FOLDER),
        "tlcm-full-sd3 and -flux keep tlcm-full-sdxl's out_dir: an SD3 run resumes the SDXL run's "
        "checkpoint (or refuses it) in runs/tlcm-full-sdxl",
    ),
    Mutant(
        "flow-writes-into-the-tlcm-full-folder",
        TLCM,
        'runtime=replace(recipe.runtime, out_dir=Path("runs/tlcm-full-flow"))',
        "runtime=recipe.runtime",
        (T_PRESETS, T_RUN_FOLDER),
        "tlcm-full-flow writes (and resumes from) runs/tlcm-full, the UNet miniature's run",
    ),
    Mutant(
        "lcd-starts-from-a-fresh-lora",
        TLCM,
        'student=StudentConfig(init_from=Path("runs/mlcd")),',
        "student=StudentConfig(),",
        (T_PRESETS, T_LCD),
        "recipes:lcd ('stage 2 only, continuing a stage-1 run') trains stage 2 on a random LoRA",
    ),
    # ---- recipes/__init__.py: the registry ------------------------------------------------------
    Mutant(
        "presets-mlcd-registered-as-lcd",
        PRESETS,
        '    "mlcd": mlcd(),',
        '    "mlcd": lcd(),',
        (T_PRESETS, T_RUN_FOLDER, T_LCD),
        "recipes:mlcd runs stage 2 (from a runs/mlcd that nothing wrote); mlcd and lcd are in no pin "
        "table (UNDOCUMENTED)",
    ),
    # ---- recipes/zoo.py: steps --------------------------------------------------------------------
    Mutant(
        "zoo-consistency-200-steps",
        ZOO,
        "def consistency(steps: int = 300, lr: float = 1e-3, **mlcd) -> Phase:",
        "def consistency(steps: int = 200, lr: float = 1e-3, **mlcd) -> Phase:",
        (T_PRESETS, T_STAGE1_BUDGET),
        "the zoo's consistency phases at 200 steps, not the 300 the module's tuned lr was chosen for",
    ),
    Mutant(
        "hyper-sd-stages-100-steps",
        ZOO,
        'f"tscd{m}": consistency(steps=75, lr=L2_LR,',
        'f"tscd{m}": consistency(steps=100, lr=L2_LR,',
        (T_PRESETS, T_ZOO_TABLE, T_STAGE1_BUDGET),
        "Hyper-SD's four TSCD stages 400 steps, not 'the same 300 as one phase elsewhere': the "
        "stages' share of the budget against the feedback phase moves (docs/zoo.md's row)",
    ),
    Mutant(
        "hyper-sd-feedback-paper-500-steps",
        ZOO,
        "def feedback_phase(steps: int = 40) -> Phase:",
        "def feedback_phase(steps: int = 500) -> Phase:",
        (T_PRESETS, T_ZOO_TABLE),
        "Hyper-SD's feedback phase at TLCM's SDXL 500 iterations, not the miniature reward phase's 40",
    ),
    Mutant(
        "pcm-lcd-lcd-at-stage2-default-steps",
        ZOO,
        '{"pcm": phase, "lcd": stage2(steps=30)}',
        '{"pcm": phase, "lcd": stage2()}',
        (T_PRESETS, T_ZOO_TABLE),
        "pcm-lcd's LCD phase at stage2's 100 steps: the phases' 10 : 1 ratio (docs/zoo.md: pcm 1102, "
        "lcd 110) becomes 3 : 1",
    ),
    # ---- recipes/zoo.py: PCM ---------------------------------------------------------------------
    Mutant(
        "pcm-trains-its-script-default-8-phases",
        ZOO,
        'phase = consistency(distance="elementwise_huber", guidance_range=miniature_w(4.0, 5.0))',
        'phase = consistency(segments=8, distance="elementwise_huber", guidance_range=miniature_w(4.0, 5.0))',
        (T_PRESETS, T_PCM_PHASES),
        "pcm trains on PCM's script default --multiphase 8 while sampling its 4 phase edges (its runs: "
        "4): the student is consistent to edges the sampler never stops at",
    ),
    Mutant(
        "pcm-adv-disc-lr-unscaled",
        ZOO,
        "        disc_lr=1e-4,\n        disc_betas=(0.0, 0.999),",
        "        disc_lr=1e-5,\n        disc_betas=(0.0, 0.999),",
        (T_PRESETS, T_PCM_ADV),
        "pcm-adv's D at PCM's adv_lr 1e-5 without the zoo's x 10 (the docstring's 'D lr 1e-4')",
    ),
    Mutant(
        "pcm-adv-discriminator-on-pixels",
        ZOO,
        '        backbone="teacher",\n        input="latent",\n        disc_lr=1e-4,\n        disc_betas',
        '        backbone="teacher",\n        input="pixel",\n        disc_lr=1e-4,\n        disc_betas',
        (T_PRESETS, T_CHECK),
        "pcm-adv's teacher-feature D fed decoded pixels: the recipe check refuses the preset",
    ),
    # ---- recipes/zoo.py: DMD2, ADD, LADD ---------------------------------------------------------
    Mutant(
        "dmd2-fake-lr-default",
        ZOO,
        "        fake_lr=2e-4,",
        "        fake_lr=1e-4,",
        (T_PRESETS, T_DMD2),
        "DMD2's fake score at DMDConfig's default 1e-4, not the generator's lr (DMD2: fake lr = "
        "generator lr)",
    ),
    Mutant(
        "dmd2-reference-batch-128",
        ZOO,
        '        batch_size=16,\n        losses={"dmd": dmd, "gan": gan},',
        '        batch_size=128,\n        losses={"dmd": dmd, "gan": gan},',
        (T_PRESETS, T_BATCH),
        "dmd2 at DMD2's SDXL batch 128, not the zoo's shared batch 16",
    ),
    Mutant(
        "add-disc-lr-recalled-unscaled",
        ZOO,
        "        disc_lr=1e-4,\n    )\n    phase = Phase(steps=steps, lr=1e-4,",
        "        disc_lr=1e-5,\n    )\n    phase = Phase(steps=steps, lr=1e-4,",
        (T_PRESETS, T_ADD),
        "ADD's discriminator heads at the recalled 1e-5 without the zoo's x 10 ('lr 1e-4 for student "
        "and discriminator heads')",
    ),
    Mutant(
        "ladd-disc-lr-tenfold",
        ZOO,
        "        disc_lr=1e-5,",
        "        disc_lr=1e-4,",
        (T_PRESETS, T_LADD),
        "LADD's heads at 1e-4, the student at 1e-5: AMD trains G and D at one lr ('lr 1e-5 for both')",
    ),
    Mutant(
        "ladd-student-weight-decay-dropped",
        ZOO,
        'losses={"gan": gan}, weight_decay=0.01)',
        'losses={"gan": gan})',
        (T_PRESETS, T_LADD),
        "LADD's student AdamW without AMD's weight decay 1e-2 (Phase's default 0), its heads with it",
    ),
    # ---- recipes/zoo.py: the frame and the registry ----------------------------------------------
    Mutant(
        "zoo-recipes-without-real-digits",
        ZOO,
        "data=DataConfig(images=MINIATURE_DIGITS),",
        "data=DataConfig(),",
        (T_PRESETS, T_CHECK),
        "the zoo's recipes have no real images: every consistency phase (states 'data') and the data "
        "GANs are refused by the recipe check",
    ),
    Mutant(
        "zoo-eval-500-prompts",
        ZOO,
        'runtime=RuntimeConfig(out_dir=Path(f"runs/{name}"), eval_samples_per_digit=20),',
        'runtime=RuntimeConfig(out_dir=Path(f"runs/{name}"), eval_samples_per_digit=50),',
        (T_PRESETS, T_EVAL),
        "the zoo's runs score themselves on 500 prompts, not docs/results.md's built-in 200 (20 per "
        "digit): their printed scores no longer sit beside teacher_table_200.json's",
    ),
    Mutant(
        "pcm-lcd-low-w-writes-into-pcm-lcd",
        ZOO,
        'return replace(recipe, phases=phases, runtime=replace(recipe.runtime, out_dir=Path("runs/pcm-lcd-low-w")))',
        "return replace(recipe, phases=phases)",
        (T_PRESETS, T_RUN_FOLDER),
        "pcm-lcd-low-w writes (and resumes from) runs/pcm-lcd",
    ),
    Mutant(
        "zoo-registry-pcm-lcd-is-low-w",
        ZOO,
        '    "pcm-lcd": pcm_lcd,',
        '    "pcm-lcd": pcm_lcd_low_w,',
        (T_PRESETS, T_REGISTRY),
        "ablations.zoo trains pcm-lcd-low-w under the name pcm-lcd (recipes.zoo.ZOO, not PRESETS)",
    ),
]
