"""Round 16, the lead's own changes (2026-12-07; each caught): a resume compares the training data by
content (``data_fingerprint`` in the run record); the toy evaluation's step noise and the sampler's
fresh draws come from a host generator (the same scores on any device); the "pipeline" export
format (the base pipeline with the student merged and the TLCM scheduler)."""

from run import Mutant

RESUME = "tlcm/resume.py"
ENGINE = "tlcm/engine.py"
SAMPLING = "tlcm/diffusion/sampling.py"
SCORES = "tlcm/toy/scores.py"
STUDENT = "tlcm/models/student.py"
EXPORT = "tlcm/export.py"
CHECKS = "tlcm/checks.py"
CARD = "tlcm/card.py"
INIT = "tlcm/__init__.py"

D = "tests/test_resume_data_units.py"
T_FP = f"{D}::test_the_data_fingerprint_reads_every_prompt_in_order_and_the_image_source"
T_CHANGE = f"{D}::test_changed_data_is_a_change_and_an_older_record_is_not_compared"
T_EDIT = f"{D}::test_a_prompt_file_edited_in_place_is_refused_and_the_same_prompts_elsewhere_resume"
T_RECORD = f"{D}::test_the_record_of_a_run_holds_its_data"
H = "tests/test_host_generator_units.py"
T_EVAL_GEN = f"{H}::test_the_evaluation_step_generator_is_on_the_host_whatever_the_models_device"
T_DRAW = f"{H}::test_a_host_generator_draws_the_step_noise_on_the_host_then_moves_it"
P = "tests/test_export_pipeline.py"
T_FUSED = f"{P}::test_fused_weights_are_the_base_plus_the_scaled_lora_product_per_layer"
T_LOADS = f"{P}::test_the_pipeline_loads_in_plain_diffusers_and_samples_the_students_images"
T_FLOW = f"{P}::test_a_flow_students_pipeline_gets_the_flow_scheduler"
T_AGAIN = f"{P}::test_a_re_export_replaces_the_pipeline_and_a_foreign_folder_is_refused"
T_RUN = f"{P}::test_a_run_exports_its_pipeline_and_fsdp_is_refused_up_front"

MUTANTS = [
    # ---- the data in the run record --------------------------------------------------------------
    Mutant(
        "data-fingerprint-no-separator",
        RESUME,
        '        digest.update(prompt.encode() + b"\\0")',
        "        digest.update(prompt.encode())",
        (T_FP,),
        'prompts "ab", "c" read as "a", "bc": a re-split prompt file resumes unnoticed',
    ),
    Mutant(
        "data-fingerprint-without-images",
        RESUME,
        '        digest.update(f"images/{images.fingerprint()}".encode())',
        "        pass",
        (T_FP,),
        "an image folder whose captions are unchanged but whose source changed resumes unnoticed",
    ),
    Mutant(
        "data-fingerprint-sorted",
        RESUME,
        "    for prompt in prompts:\n        digest.update(",
        "    for prompt in sorted(prompts):\n        digest.update(",
        (T_FP,),
        "reordered prompts (another draw per index) read as the same data",
    ),
    Mutant(
        "data-change-not-compared",
        RESUME,
        '    if data is not None and now is not None and data.get("fingerprint") != now["fingerprint"]:',
        "    if False:",
        (T_CHANGE, T_EDIT),
        "a prompt file edited between sessions resumes silently: one student, two prompt sets",
    ),
    Mutant(
        "data-old-record-compared",
        RESUME,
        '    if data is not None and now is not None and data.get("fingerprint") != now["fingerprint"]:',
        '    if now is not None and (data or {}).get("fingerprint") != now["fingerprint"]:',
        (T_CHANGE,),
        "every checkpoint from before data fingerprints is refused on resume",
    ),
    Mutant(
        "data-record-of-no-prompts",
        ENGINE,
        "run_record(recipe, self.dist.world_size, self.prompts, self.images)",
        "run_record(recipe, self.dist.world_size, [], self.images)",
        (T_RECORD, T_EDIT),
        "the engine records no prompts: every data change resumes",
    ),
    # ---- host generators -------------------------------------------------------------------------
    Mutant(
        "eval-step-generator-on-the-model-device",
        SCORES,
        "    step_gen = torch.Generator().manual_seed(EVAL_SEED + 1)",
        "    step_gen = torch.Generator(device=base.device).manual_seed(EVAL_SEED + 1)",
        (T_EVAL_GEN,),
        "an LCM / TCD sampler's toy scores differ between the CPU and a GPU",
    ),
    Mutant(
        "fresh-noise-drawn-on-the-latents-device",
        SAMPLING,
        "            where = x.device if generator is None else generator.device",
        "            where = x.device",
        (T_DRAW,),
        "a host generator with GPU latents raises (or draws another stream) in every stochastic move",
    ),
    Mutant(
        "fresh-noise-left-on-the-host",
        SAMPLING,
        "dtype=x.dtype).to(x.device)",
        "dtype=x.dtype)",
        (T_DRAW,),
        "host-drawn step noise is added to GPU latents: a device error at the first stochastic move",
    ),
    Mutant(
        "phase-grid-generator-on-the-model-device",
        "tlcm/sample_grids.py",
        "    gen = torch.Generator().manual_seed(seed)",
        "    gen = torch.Generator(base.device).manual_seed(seed)",
        (f"{H}::test_the_phase_grids_noise_comes_from_a_host_generator",),
        "a run's sample grids differ between the CPU and a GPU for the same seed",
    ),
    Mutant(
        "pipeline-network-in-the-training-dtype",
        EXPORT,
        "    if dtype is not None:\n        fused = {",
        "    if False:\n        fused = {",
        (f"{P}::test_an_fp16_variant_base_gets_an_fp16_variant_network_that_loads_with_the_rest",),
        "an fp16 base's export holds fp32 weights under an fp16 name: twice the size, dtype mismatch",
    ),
    Mutant(
        "pipeline-network-without-variant-name",
        EXPORT,
        '+ (f".{variant}" if variant else "") + ".safetensors"',
        '+ ".safetensors"',
        (f"{P}::test_an_fp16_variant_base_gets_an_fp16_variant_network_that_loads_with_the_rest",),
        "an fp16-variant export's network is not found by from_pretrained(variant='fp16')",
    ),
    Mutant(
        "legacy-transformers-variant-unseen",
        "tlcm/models/families/base.py",
        "(?:diffusion_pytorch_model|pytorch_model|model)",
        "(?:diffusion_pytorch_model|model)",
        (f"{P}::test_older_transformers_weights_names_count_as_a_variant",),
        "a text encoder with only pytorch_model.fp16.bin is loaded without its variant: refused as damaged",
    ),
    # ---- the pipeline export ---------------------------------------------------------------------
    Mutant(
        "fused-delta-subtracted",
        STUDENT,
        "value = (value.float() + deltas.pop(key).float()).to(value.dtype)",
        "value = (value.float() - deltas.pop(key).float()).to(value.dtype)",
        (T_FUSED, T_LOADS),
        "the exported pipeline runs W - BA: neither base nor student",
    ),
    Mutant(
        "fused-merged-layer-added-twice",
        STUDENT,
        "            and STUDENT_ADAPTER not in layer.merged_adapters\n",
        "",
        (T_FUSED,),
        "after fuse() (sample.py) the delta is added to weights that hold it already",
    ),
    Mutant(
        "fused-keeps-the-wrapper-names",
        STUDENT,
        '            key = key.replace(".base_layer.", ".")\n',
        "",
        (T_FUSED, T_LOADS),
        "the fused weights keep peft's base_layer names: the plain UNet loads none of them",
    ),
    Mutant(
        "pipeline-keeps-the-base-scheduler",
        EXPORT,
        '    index["scheduler"] = ["tlcm", family.scheduler]\n',
        "",
        (T_LOADS, T_FLOW),
        "from_pretrained loads the base's DDIM scheduler: a 2-step DDIM of the student, wrong images",
    ),
    Mutant(
        "pipeline-vp-scheduler-for-flow",
        EXPORT,
        '    index["scheduler"] = ["tlcm", family.scheduler]\n',
        '    index["scheduler"] = ["tlcm", "TLCMScheduler"]\n',
        (T_FLOW,),
        "an SD3 / FLUX pipeline gets the VP scheduler",
    ),
    Mutant(
        "pipeline-base-network-weights",
        EXPORT,
        "    fused = student.fused_state_dict()\n",
        "    fused = student.base.net.state_dict()\n",
        (T_LOADS, T_FLOW),
        "the exported pipeline holds peft-wrapped base weights, not the merged student",
    ),
    Mutant(
        "pipeline-stale-files-kept",
        EXPORT,
        "        shutil.rmtree(folder)\n    folder.mkdir(parents=True)",
        "        pass\n    folder.mkdir(parents=True, exist_ok=True)",
        (T_AGAIN,),
        "a re-export leaves an earlier export's files beside the new ones",
    ),
    Mutant(
        "pipeline-foreign-folder-removed",
        EXPORT,
        'if folder.exists() and not (folder / "model_index.json").is_file():',
        "if False:",
        (T_AGAIN,),
        "an --out folder of the user's is deleted by the export",
    ),
    Mutant(
        "pipeline-format-ignored",
        EXPORT,
        "        if PIPELINE_FOLDER in formats:\n",
        "        if False:\n",
        (T_LOADS, T_RUN),
        "--format pipeline writes nothing",
    ),
    Mutant(
        "pipeline-under-fsdp-accepted",
        CHECKS,
        '    if "pipeline" in recipe.runtime.export_formats and recipe.runtime.fsdp and world > 1:',
        "    if False:",
        (T_RUN,),
        "an FSDP2 run trains for hours and then cannot merge its sharded network",
    ),
    Mutant(
        "pipeline-not-on-the-card",
        CARD,
        '    if (out_dir / "pipeline" / "model_index.json").is_file():',
        "    if False:",
        (T_RUN,),
        "the card does not list the pipeline folder it sits beside",
    ),
    Mutant(
        "tlcm-not-a-scheduler-library",
        INIT,
        '    if name == "SchedulerMixin":',
        '    if name == "SchedulerMixin_":',
        (T_LOADS,),
        "DiffusionPipeline.from_pretrained refuses the exported pipeline's ['tlcm', ...] scheduler",
    ),
    # ---- the SDXL preset's discriminator ----------------------------------------------------------
    Mutant(
        "sdxl-gan-the-timm-pixel-default",
        "recipes/tlcm.py",
        '    dmd.losses["dmd"] = DMDConfig(fake_updates=5)\n',
        '    dmd.losses["dmd"] = DMDConfig(fake_updates=5)\n    dmd.losses["gan"] = GANConfig(disc_lr=1e-4)\n',
        (
            "tests/test_gpu_bench_units.py::test_the_option_preset_is_dpo_and_the_timm_pixel_gan_at_the_presets_batches",
        ),
        "the SDXL preset's discriminator is a random resnet18 on 64 px decoded images, not the paper's kind",
    ),
    # ---- the tables' committed sources -----------------------------------------------------------
    Mutant(
        "ladder-sources-not-written",
        "ablations/run.py",
        '    found = write_sources(args.table.with_suffix(".json"), sources(args.runs, needed))\n',
        "    found = sources(args.runs, needed)\n",
        ("tests/test_sources_units.py::test_a_ladder_run_writes_its_sources_beside_its_table",),
        "a ladder run leaves its per-seed rows in runs/ only: the table has no committed source",
    ),
    Mutant(
        "ladder-sources-replace-the-file",
        "ablations/run.py",
        "    merged = {**read_sources(path), **new}",
        "    merged = new",
        (
            "tests/test_sources_units.py::test_the_ladders_sources_hold_every_seeds_rows_and_merge_like_the_table",
        ),
        "a run of one variant drops every other row's source, while the table keeps those rows",
    ),
    Mutant(
        "ladder-sources-one-seed",
        "ablations/run.py",
        "            out.setdefault(name, {})[path.parent.parent.name] = run",
        "            out[name] = {path.parent.parent.name: run}",
        (
            "tests/test_sources_units.py::test_the_ladders_sources_hold_every_seeds_rows_and_merge_like_the_table",
        ),
        "only the last seed's rows are kept: the table's min-max has no source",
    ),
    Mutant(
        "zoo-sources-not-written",
        "ablations/zoo.py",
        '    args.table.with_suffix(".json").write_text(json.dumps(sources(args.runs, names), indent=1) + "\\n")\n',
        "",
        (
            "tests/test_sources_units.py::test_the_zoo_docs_come_with_every_runs_cost_and_both_samplers_scores",
        ),
        "docs/zoo.md is regenerated without its runs' scores",
    ),
    Mutant(
        "zoo-sources-own-sampler-only",
        "ablations/zoo_runs.py",
        "        for sampler, name in SAMPLERS.items():\n            path = info_path.parent / name\n            if path.is_file():",
        "        for sampler, name in list(SAMPLERS.items())[:1]:\n            path = info_path.parent / name\n            if path.is_file():",
        (
            "tests/test_sources_units.py::test_the_zoo_docs_come_with_every_runs_cost_and_both_samplers_scores",
        ),
        "the TLCM sampler's scores (half the zoo table) have no source",
    ),
    # ---- reward thresholds -----------------------------------------------------------------------
    Mutant(
        "thresholds-hinges-swapped",
        "tlcm/eval/reward_thresholds.py",
        '        "positive_active": (matched < s0).float().mean().item(),\n        "negative_active": (unrelated > s_neg)',
        '        "positive_active": (unrelated < s0).float().mean().item(),\n        "negative_active": (matched > s_neg)',
        ("tests/test_reward_thresholds_units.py::test_a_hinge_is_active_where_it_has_a_gradient",),
        "each hinge's share read off the other prompt's scores",
    ),
    Mutant(
        "thresholds-boundary-counted",
        "tlcm/eval/reward_thresholds.py",
        '"positive_active": (matched < s0)',
        '"positive_active": (matched <= s0)',
        ("tests/test_reward_thresholds_units.py::test_a_hinge_is_active_where_it_has_a_gradient",),
        "a sample exactly at s0 (no gradient) counted as training",
    ),
    Mutant(
        "thresholds-unrelated-is-the-own-prompt",
        "tlcm/eval/reward_thresholds.py",
        "            unrelated.append(scorer.score(features, others).float().cpu())",
        "            unrelated.append(scorer.score(features, batch).float().cpu())",
        (
            "tests/test_reward_thresholds_units.py::test_each_image_is_scored_with_its_prompt_then_an_unrelated_one",
        ),
        "the unrelated distribution is the matched one: s_neg set on the wrong scores",
    ),
    Mutant(
        "thresholds-prompts-not-cycled",
        "tlcm/eval/reward_thresholds.py",
        "    texts = [texts[i % len(texts)] for i in range(samples)]\n",
        "",
        (
            "tests/test_reward_thresholds_units.py::test_each_image_is_scored_with_its_prompt_then_an_unrelated_one",
        ),
        "--samples ignored: only the prompt file's count is sampled",
    ),
    Mutant(
        "ladder-table-without-the-teacher",
        "ablations/run.py",
        "    lines.append(teacher_row(prompts, teacher))\n",
        "",
        (
            "tests/test_ablations.py::test_the_table_reads_every_seed_folder_and_puts_each_step_count_under_its_column",
        ),
        "the ladder's table compares the variants with nothing at their step counts",
    ),
    Mutant(
        "ladder-teacher-at-its-worst-w",
        "tlcm/summary.py",
        '        if r["steps"] not in best or r["fd"] < best[r["steps"]]["fd"]:',
        '        if r["steps"] not in best or r["fd"] > best[r["steps"]]["fd"]:',
        (
            "tests/test_ablations.py::test_the_table_reads_every_seed_folder_and_puts_each_step_count_under_its_column",
        ),
        "the teacher's row shows its worst guidance scale: every student looks better than it is",
    ),
    # ---- the FID statistics cache's key ----------------------------------------------------------
    Mutant(
        "fid-key-without-modification-times",
        "tlcm/eval/fid.py",
        "(s := f.stat()).st_size, s.st_mtime_ns] for f in files]",
        "(s := f.stat()).st_size] for f in files]",
        (
            "tests/test_datamath15_units.py::test_the_statistics_cache_key_sees_an_image_rewritten_in_place_and_other_inception_weights",
        ),
        "an image re-generated in place at the same size reuses the old statistics",
    ),
    Mutant(
        "fid-key-inception-by-name-only",
        "tlcm/eval/fid.py",
        "[[inception.name, inception.stat().st_size if inception.is_file() else None]]",
        "[[inception.name]]",
        (
            "tests/test_datamath15_units.py::test_the_statistics_cache_key_sees_an_image_rewritten_in_place_and_other_inception_weights",
        ),
        "other Inception weights under the same file name reuse the statistics of the first",
    ),
    # ---- reward feedback at micro-batch 1 ----------------------------------------------------------
    Mutant(
        "unrelated-of-one-is-itself",
        "tlcm/losses/preference.py",
        "    if len(set(prompts)) > 1 or len(set(pool)) < 2:",
        "    if len(set(prompts)) > 0 or len(set(pool)) < 2:",
        (
            "tests/test_preference.py::test_a_micro_batch_of_one_takes_its_unrelated_prompt_from_the_runs_prompts",
            "tests/test_preference.py::test_the_hinge_at_micro_batch_one_scores_an_unrelated_prompt_and_trains",
        ),
        "at micro-batch 1 the unrelated prompt is the prompt: r_neg = r_pos, the hinge trains nothing",
    ),
    Mutant(
        "unrelated-pool-drawn-always",
        "tlcm/losses/preference.py",
        "    if len(set(prompts)) > 1 or len(set(pool)) < 2:",
        "    if len(set(pool)) < 2:",
        (
            "tests/test_preference.py::test_a_micro_batch_of_one_takes_its_unrelated_prompt_from_the_runs_prompts",
        ),
        "every micro-batch draws pool prompts: other unrelated prompts than the paper's in-batch ones",
    ),
    Mutant(
        "engine-without-the-runs-prompts",
        "tlcm/engine.py",
        "            all_prompts=self.prompts,\n",
        "",
        ("tests/test_preference.py::test_the_engine_gives_losses_every_prompt_of_the_run",),
        "the pool is empty in training: micro-batch 1 falls back to the prompt itself",
    ),
    Mutant(
        "pipeline-refused-in-one-process",
        "tlcm/checks.py",
        '    if "pipeline" in recipe.runtime.export_formats and recipe.runtime.fsdp and world > 1:',
        '    if "pipeline" in recipe.runtime.export_formats and recipe.runtime.fsdp:',
        ("tests/test_export_pipeline.py::test_a_run_exports_its_pipeline_and_fsdp_is_refused_up_front",),
        "a one-GPU FLUX run (fsdp ignored) cannot export its pipeline",
    ),
    Mutant(
        "default-prompts-accepted-for-another-model",
        "tlcm/checks.py",
        "    if recipe.data.on_miniature_prompts(recipe.model.path):",
        "    if False:",
        ("tests/test_bad_inputs.py",),
        "an SDXL run without --recipes.data.prompts trains on the 40 digit prompts, silently",
    ),
    Mutant(
        "reward-folder-unchecked",
        "tlcm/losses/preference.py",
        "        for field in REWARD_FILES.get(self.reward, ()):  # before training, not when the phase starts",
        "        for field in ():  # before training, not when the phase starts",
        (
            "tests/test_bad_inputs.py",
            "tests/test_reward_thresholds_units.py::test_reward_weights_are_checked_before_the_teacher_loads",
        ),
        "a missing PickScore folder is found after the MLCD and LCD phases",
    ),
    Mutant(
        "preset-family-unchecked",
        "tlcm/checks.py",
        "        expected is not None\n        and (pipeline",
        "        False\n        and (pipeline",
        ("tests/test_bad_inputs.py",),
        "recipes:tlcm-full-flux on an SDXL folder trains SDXL with FLUX's guidance, tokens and FSDP",
    ),
    Mutant(
        "flux-preset-without-its-family",
        "recipes/tlcm.py",
        '        "models/flux", "FluxPipeline", 3.5,',
        '        "models/flux", None, 3.5,',
        ("tests/test_bad_inputs.py",),
        "the FLUX preset accepts any folder",
    ),
]
