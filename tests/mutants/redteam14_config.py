"""A fourteenth red-team audit, area config (2026-12-07): the recipe tree's defaults (tlcm/config.py),
the presets (recipes/tlcm.py, recipes/zoo.py) against the papers and references they reproduce
(docs/method.md, docs/zoo-methods.md) and the ablation ladder's rows against their own descriptions
(ablations/variants.py), on the lines earlier catalogues leave alone.

35 mutants, 28 survived at first, each now caught by tests/test_config14_units.py; about 29 min of
one shared core for the first run. The existing tests pin every documented preset value one by one
(tests/test_presets.py) and the rows named in earlier rounds, so what survived was what no pin
names: the phase defaults every preset inherits (torch's weight decay 0.01, clipping off, a
cosine schedule, alpha half the rank), runtime and model defaults whose effect the tests always
set explicitly (no phase grid, a kohya-only export, device "cpu", fp32 frozen weights on CUDA,
fp16-rounded embeddings), the TLCM paper's DMD + GAN on SDXL (s_real at the miniature's w = 1.5
instead of the teacher's, real = data instead of the student's own samples), zoo values that are
GANConfig's or StudentGrid's defaults (LADD's 25 teacher steps, LCM-LoRA's and TCD's M = 8, ADD's
teacher-feature discriminator) or a second phase (pcm-lcd's LCD lr), tlcm-paper's DMD fake
updates (the ladder's "+gan-teacher-real" rows claim tlcm-full's DMD), and almost every ablation
row's own setting against its description (full range, DPO, timm on pixels, warm-up and both
stages cosine, DMD lr and w, stage-2 distance, D on clean latents, the Huber row's parent, the
gamma-0 row's training gamma).

No real bug found in the area: every preset and ladder row matched its document. Equivalents
skipped (not in the catalogue): ``ladder_base``'s phase-merge order (tlcm-paper's and tlcm-full's
mlcd / lcd phases are equal), ``recipe_dict``'s ``str(k)`` on dict keys (every recipe dict is keyed
by names already) and ``stage2``'s ``distance`` argument dropped (no caller passes one)."""

from run import Mutant

CONFIG = "tlcm/config.py"
TLCM = "recipes/tlcm.py"
ZOO = "recipes/zoo.py"
VARIANTS = "ablations/variants.py"

T_PRESETS = "tests/test_presets.py"
T_RECIPES = "tests/test_recipe_units.py"
T_ENGINE = "tests/test_engine.py"
T_CK = "tests/test_checkpoint.py"
T_CK_UNFINISHED = f"{T_CK}::test_init_from_refuses_an_unfinished_phase_and_another_lora"
T_NONFINITE = f"{T_ENGINE}::test_nonfinite_loss_is_named_and_stops_or_skips"
T_WEIGHT = "tests/test_reliability_units.py"
T_CFG = "tests/test_config14_units.py"

MUTANTS = [
    # ---- tlcm/config.py: the defaults every recipe inherits ------------------------------------
    Mutant(
        "phase-weight-decay-torchs-default",
        CONFIG,
        "    weight_decay: float = 0.0\n",
        "    weight_decay: float = 0.01\n",
        (f"{T_CFG}::test_adamw_decays_weights_only_where_the_reference_does",),
        "torch's AdamW default (0.01) as the phase default: every preset silently decays its LoRA",
    ),
    Mutant(
        "phase-clipping-off-by-default",
        CONFIG,
        "    max_grad_norm: float = 1.0\n",
        "    max_grad_norm: float = 0.0\n",
        (f"{T_CFG}::test_gradients_are_clipped_at_1_unless_the_reference_clips_at_10",),
        "gradient clipping silently off in every phase that does not set it",
    ),
    Mutant(
        "phase-cosine-schedule-by-default",
        CONFIG,
        '"linear", "cosine"] = "constant"',
        '"linear", "cosine"] = "cosine"',
        (f"{T_CFG}::test_every_preset_trains_at_a_constant_lr_without_warmup",),
        "every phase decays its lr to 0 unless it says otherwise",
    ),
    Mutant(
        "student-lora-scale-one-half",
        CONFIG,
        "    lora_alpha: float = 16.0\n",
        "    lora_alpha: float = 8.0\n",
        (f"{T_CFG}::test_the_miniature_presets_lora_has_scale_1",),
        "the miniature recipes' LoRA at scale 0.5 where the zoo documents alpha = rank (scale 1)",
    ),
    Mutant(
        "student-unfinished-init-allowed",
        CONFIG,
        "    init_from_unfinished: bool = False\n",
        "    init_from_unfinished: bool = True\n",
        (T_CK_UNFINISHED,),
        "stage 2 starts silently from a pre-empted stage 1",
    ),
    Mutant(
        "runtime-nonfinite-skipped-by-default",
        CONFIG,
        'on_nonfinite: Literal["stop", "skip"] = "stop"',
        'on_nonfinite: Literal["stop", "skip"] = "skip"',
        (T_NONFINITE,),
        "a NaN step is skipped instead of stopping the run, by default",
    ),
    Mutant(
        "runtime-no-sample-grid-by-default",
        CONFIG,
        "    sample_grid: bool = True\n",
        "    sample_grid: bool = False\n",
        (f"{T_CFG}::test_every_preset_writes_phase_grids_and_the_diffusers_lora",),
        "no phase-end sample grid unless asked",
    ),
    Mutant(
        "runtime-exports-kohya-by-default",
        CONFIG,
        'export_formats: tuple[str, ...] = ("diffusers",)',
        'export_formats: tuple[str, ...] = ("kohya",)',
        (f"{T_CFG}::test_every_preset_writes_phase_grids_and_the_diffusers_lora",),
        "the default export is not the diffusers LoRA the card and sample load",
    ),
    Mutant(
        "runtime-divergence-guard-off",
        CONFIG,
        "    max_weight_abs: float = WEIGHT_LIMIT\n",
        '    max_weight_abs: float = float("inf")\n',
        (T_WEIGHT, f"{T_CK}::test_nan_or_absurd_latest_weights_fall_back_to_the_previous_checkpoint"),
        "the divergence guard disabled by default",
    ),
    Mutant(
        "model-frozen-weights-fp32-by-default",
        CONFIG,
        'frozen_dtype: FrozenDtype = "auto"',
        'frozen_dtype: FrozenDtype = "fp32"',
        (f"{T_CFG}::test_the_default_frozen_weights_are_bf16_on_cuda_with_autocast",),
        "a GPU run keeps fp32 frozen weights (twice the memory) unless told",
    ),
    Mutant(
        "data-embeddings-rounded-to-half-by-default",
        CONFIG,
        'embedding_dtype: Literal["encoder", "float16", "bfloat16"] = "encoder"',
        'embedding_dtype: Literal["encoder", "float16", "bfloat16"] = "float16"',
        (f"{T_CFG}::test_the_default_embedding_storage_keeps_the_encoders_bits",),
        "every prompt embedding rounded to fp16 by default (documented: exact)",
    ),
    Mutant(
        "runtime-resume-accepts-changes-by-default",
        CONFIG,
        "    resume_changed: bool = False\n",
        "    resume_changed: bool = True\n",
        (f"{T_CK}::test_resume_refuses_another_recipe_naming_the_fields_unless_asked",),
        "a rerun with another recipe resumes silently instead of being refused",
    ),
    Mutant(
        "runtime-log-every-tenth-step",
        CONFIG,
        "    log_every: int = 1\n",
        "    log_every: int = 10\n",
        ("tests/test_trackers.py::test_sinks_get_the_numbers_of_metrics_jsonl",),
        "metrics.jsonl gets one line in ten by default",
    ),
    Mutant(
        "runtime-cpu-by-default",
        CONFIG,
        '    device: str = "auto"\n',
        '    device: str = "cpu"\n',
        (f"{T_CFG}::test_the_default_device_is_cuda_where_there_is_one",),
        "a GPU machine trains on the CPU unless told",
    ),
    # ---- recipes/tlcm.py -------------------------------------------------------------------------
    Mutant(
        "tlcm-paper-dmd-gan-fake-updates-dmd2s",
        TLCM,
        'losses = {"dmd": DMDConfig(fake_updates=2), "gan": MINIATURE_GAN}',
        'losses = {"dmd": DMDConfig(fake_updates=5), "gan": MINIATURE_GAN}',
        (f"{T_CFG}::test_the_teacher_real_gan_rows_keep_tlcm_fulls_whole_dmd",),
        "the ladder's +gan-teacher-real rows claim tlcm-full's DMD: 2 fake updates, not 5",
    ),
    Mutant(
        "sdxl-real-score-at-the-miniatures-fd-best-w",
        TLCM,
        'dmd.losses["dmd"] = DMDConfig(fake_updates=5)',
        'dmd.losses["dmd"] = DMDConfig(fake_updates=5, real_guidance_scale=FD_BEST_GUIDANCE)',
        (f"{T_CFG}::test_the_papers_dmd_scores_with_the_teacher_and_its_gan_is_data_free",),
        "the paper's s_real is the CFG teacher at w = 8, not the miniature's 1.5",
    ),
    Mutant(
        "sdxl-gan-real-side-is-data",
        TLCM,
        '    dmd.losses["dmd"] = DMDConfig(fake_updates=5)\n',
        '    dmd.losses["dmd"] = DMDConfig(fake_updates=5)\n    dmd.losses["gan"] = replace(dmd.losses["gan"], real="data")\n',
        (f"{T_CFG}::test_the_papers_dmd_scores_with_the_teacher_and_its_gan_is_data_free",),
        "the paper's real = the student's own q-step samples (Eq. 13), data-free",
    ),
    # ---- recipes/zoo.py --------------------------------------------------------------------------
    Mutant(
        "ladd-teacher-samples-in-50-steps",
        ZOO,
        "        teacher_steps=25,\n",
        "        teacher_steps=50,\n",
        (f"{T_CFG}::test_ladds_real_side_is_the_teachers_25_step_samples",),
        "recipes:ladd documents CFG-DDIM in 25 steps (AMD's 50 is its offline set)",
    ),
    Mutant(
        "lcm-lora-on-4-milestones",
        ZOO,
        'return _recipe("lcm-lora", StudentGrid(gamma=1.0), {"lcm": phase})',
        'return _recipe("lcm-lora", StudentGrid(num_milestones=4, steps=4, gamma=1.0), {"lcm": phase})',
        (f"{T_CFG}::test_one_segment_methods_sample_on_8_milestones",),
        "LCM-LoRA is documented sampled on M = 8 milestones (its 8-step row needs M = 8)",
    ),
    Mutant(
        "tcd-on-4-milestones",
        ZOO,
        'return _recipe("tcd", StudentGrid(gamma=0.3), {"tcd": phase})',
        'return _recipe("tcd", StudentGrid(num_milestones=4, steps=4, gamma=0.3), {"tcd": phase})',
        (f"{T_CFG}::test_one_segment_methods_sample_on_8_milestones",),
        "TCD's 8-step row needs M = 8",
    ),
    Mutant(
        "dmd2-discriminator-on-pixels",
        ZOO,
        '        input="latent",\n        disc_rank=DISC_RANK,',
        '        input="pixel",\n        disc_rank=DISC_RANK,',
        (T_PRESETS, T_RECIPES),
        "DMD2's D sees latents (its head on the fake score's bottleneck)",
    ),
    Mutant(
        "add-discriminator-timm",
        ZOO,
        '        backbone="teacher",\n        input="latent",\n        noise_level=0,',
        '        backbone="timm",\n        input="latent",\n        noise_level=0,',
        (f"{T_CFG}::test_the_zoos_discriminators_read_the_teachers_latent_features",),
        "ADD's recipe documents the teacher-feature D (a random-init timm one: a strawman)",
    ),
    Mutant(
        "ladd-discriminator-on-pixels",
        ZOO,
        '        input="latent",\n        noise_level=749,',
        '        input="pixel",\n        noise_level=749,',
        (T_PRESETS, T_RECIPES),
        "LADD: latent adversarial distillation, D on the teacher's latent features",
    ),
    Mutant(
        "pcm-lcd-lcd-at-the-zoos-lr",
        ZOO,
        '{"pcm": phase, "lcd": stage2(steps=30)}',
        '{"pcm": phase, "lcd": stage2(steps=30, lr=1e-3)}',
        (f"{T_CFG}::test_pcm_lcds_stage_2_is_tlcms_lcd_at_its_lr",),
        "pcm-lcd's LCD is documented as TLCM's stage 2: l2 at lr 1e-4",
    ),
    # ---- ablations/variants.py: each row does what its description says -------------------------
    Mutant(
        "variants-full-range-row-sparse",
        VARIANTS,
        '{"lcd": {"lcd": {"full_range": True, "distance": "latent_lpips"}}}',
        '{"lcd": {"lcd": {"full_range": False, "distance": "latent_lpips"}}}',
        (f"{T_CFG}::test_the_full_range_row_draws_t_m_over_the_whole_range",),
        "+full-range-stage2 says t_m uniform in (T/M, T]",
    ),
    Mutant(
        "variants-dpo-row-trains-reward",
        VARIANTS,
        '{"preference": {"preference": {"mode": "dpo"}}}',
        '{"preference": {"preference": {"mode": "reward"}}}',
        (f"{T_CFG}::test_the_dpo_row_trains_diffusion_dpo_and_the_reward_row_reward_feedback",),
        "+preference-dpo says Diffusion-DPO",
    ),
    Mutant(
        "variants-timm-row-on-latents",
        VARIANTS,
        '{"backbone": "timm", "input": "pixel", "noise_level": 0}',
        '{"backbone": "timm", "input": "latent", "noise_level": 0}',
        (f"{T_CFG}::test_the_timm_row_reads_pixels_with_the_timm_backbone",),
        "+gan-timm says the timm resnet18 on pixels",
    ),
    Mutant(
        "variants-cosine-row-without-warmup",
        VARIANTS,
        '{"lr_schedule": "cosine", "lr_warmup_steps": 20}',
        '{"lr_schedule": "cosine", "lr_warmup_steps": 0}',
        (f"{T_CFG}::test_the_cosine_rows_warm_up_20_steps_and_decay_both_stages",),
        "mds-states-l2-cosine says lr warm-up (20 steps)",
    ),
    Mutant(
        "variants-cosine-stage-2-linear",
        VARIANTS,
        'phase_fields={"lcd": {"lr_schedule": "cosine"}}',
        'phase_fields={"lcd": {"lr_schedule": "linear"}}',
        (f"{T_CFG}::test_the_cosine_rows_warm_up_20_steps_and_decay_both_stages",),
        "mlcd+lcd-l2-cosine says both stages cosine",
    ),
    Mutant(
        "variants-dmd-lr-row-at-1e-5",
        VARIANTS,
        'phase_fields={"dmd": {"lr": 1e-4}}',
        'phase_fields={"dmd": {"lr": 1e-5}}',
        (f"{T_CFG}::test_the_dmd_lever_rows_change_only_what_they_name",),
        "tlcm-full-dmd-lr1e-4 says lr 1e-4",
    ),
    Mutant(
        "variants-dmd-w2-row-at-fd-best-w",
        VARIANTS,
        '{"dmd": {"dmd": {"real_guidance_scale": 2.0}}}',
        '{"dmd": {"dmd": {"real_guidance_scale": 1.5}}}',
        (f"{T_CFG}::test_the_dmd_lever_rows_change_only_what_they_name",),
        "tlcm-full-dmd-w2 says its real score at w = 2",
    ),
    Mutant(
        "variants-lcd-latent-lpips-row-l2",
        VARIANTS,
        'parent="mds-states-l2",\n            losses={"lcd": {"lcd": {"distance": "latent_lpips"}}}),',
        'parent="mds-states-l2",\n            losses={"lcd": {"lcd": {"distance": "l2"}}}),',
        (f"{T_CFG}::test_the_stage_2_distance_rows_train_the_distance_they_name",),
        "+lcd-latent-lpips says stage 2 with latent LPIPS",
    ),
    Mutant(
        "variants-clean-gan-row-re-noised",
        VARIANTS,
        '"teacher_steps": 8, "noise_level": 0,',
        '"teacher_steps": 8,',
        (f"{T_CFG}::test_the_clean_gan_row_shows_d_clean_latents_at_lr_1e_3",),
        "+gan-teacher-real-clean says D on clean latents",
    ),
    Mutant(
        "variants-huber-full-row-after-l2-stages",
        VARIANTS,
        '("dmd",),\n            parent="mlcd+lcd-huber"),',
        '("dmd",),\n            parent="mlcd+lcd-l2"),',
        (f"{T_CFG}::test_the_huber_row_is_huber_in_both_of_its_stages",),
        "tlcm-full-huber says the Huber in both stages",
    ),
    Mutant(
        "variants-3x-gamma0-row-first-move",
        VARIANTS,
        'parent="mds-states-l2-3x", grid=replace(MINIATURE_SAMPLER, training_gamma=0.0),',
        'parent="mds-states-l2-3x", grid=replace(MINIATURE_SAMPLER, first_gamma=0.0),',
        (f"{T_CFG}::test_the_gamma0_rows_change_only_the_training_states_gamma",),
        "+lcd-3x-training-gamma0 says stage 2 on DDIM q-step states (training gamma), not the sampler",
    ),
]
