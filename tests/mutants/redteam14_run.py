"""A fourteenth red-team audit, area run (2026-12-07; 35 mutants, 28 survived at first, each now
caught; ~1480 s of one busy core): the refusals before a run costs anything (an infinite count, a meta
device, the write probe made a folder at the output FILE's path, a file taken for a run folder,
aot_eager (debug-tagged: the refusal's own advice) refused, kohya for a LoRA vs a full fine-tune,
real images with a prompt file as well, a webdataset brace pattern and the not-yet-written
miniature digits refused as missing), the memory plan (each whole-step measurement made once, the
margin, a peak exactly at the usable edge, the reserved peak where only micro-batch 1 runs, a CPU
run with the plan on but no budget, a CUDA out-of-memory (a RuntimeError) measured as inf, the aux
step's new state in the reserved peak), the resume check (another prompt file, the process count,
a checkpoint from before run records, --resume-changed continuing), the run's base model (the
bundled miniature resolved from another working directory, a moved-away model refused rather than
replaced by the miniature, an export missing one part still named an export), tlcm.sample's
--first-gamma (its range, needing --student) and RUN/student naming the run, and latent LPIPS
(fp64 latents, a target of another dtype, a zero-width block, a pickled list, a damaged pickle).

Real bug found and fixed (tlcm/losses/latent_lpips.py): a damaged latent LPIPS weights pickle (an
empty file, an interrupted copy, a text file named .pt) was an EOFError / OSError / KeyError
traceback at the first training step, after the models loaded; now one TLCMError naming the file
(tests/test_run14_units.py::test_a_damaged_weights_pickle_is_refused_in_one_line; the mutant
lpips-damaged-pickle-is-a-traceback undoes it).

Skipped as equivalent: the whole-file hash's size edge (``<=`` vs ``<`` at exactly 1 MiB: the 16
slices then tile the file), ``_flatten`` without its ``and tree`` (an empty dict against a value is
a change either way), the single-point line's ``p1 / b1`` (only b1 is then predicted), dropping the
safetensors "format" metadata (the shapes give the same config), and pred / target swapped in
LatentLPIPS.forward (the distance is symmetric)."""

from run import Mutant

CHECKS = "tlcm/checks.py"
PLAN = "tlcm/memory_plan.py"
RESUME = "tlcm/resume.py"
SAMPLE = "tlcm/sample.py"
LPIPS = "tlcm/losses/latent_lpips.py"
BASE = "tlcm/losses/base.py"

U = "tests/test_run14_units.py"
T_CHECK = "tests/test_check_units.py"
T_BAD = "tests/test_bad_inputs.py"
T_EDGES = f"{T_BAD}::test_the_edges_of_every_range_pass_and_one_past_them_fails"
T_OFF = f"{T_CHECK}::test_a_recipe_takes_the_edges_that_mean_off_and_refuses_non_finite_limits"
T_MP = "tests/test_memory_plan.py"
T_MP_FAKE = (
    f"{T_MP}::test_fits_without_checkpointing_takes_the_largest_divisor",
    f"{T_MP}::test_extra_bytes_count_against_the_budget",
    f"{T_MP}::test_tight_budget_checkpoints",
    f"{T_MP}::test_user_choices_are_kept",
    f"{T_MP}::test_impossible_budget_is_one_clear_line",
    f"{T_MP}::test_the_reserved_line_counts_fragmentation",
    f"{T_MP}::test_a_measured_peak_over_the_budget_is_never_planned",
    f"{T_MP}::test_a_peak_that_falls_with_the_batch_is_held_flat",
    f"{T_MP}::test_plan_phase_plans_the_per_process_batch_and_keeps_a_users_grad_accum",
    f"{T_MP}::test_a_budget_binds_the_allocator",
)
T_CLI = "tests/test_cli_units.py"
T_FREE = f"{T_CLI}::test_the_fields_design_md_calls_free_may_change_on_a_resume_and_the_seed_may_not"
T_RUNS = f"{T_CLI}::test_a_runs_checkpoints_or_export_folder_names_the_run"
T_LL = "tests/test_latent_lpips.py"

MUTANTS = [
    # ---- checks.py ------------------------------------------------------------------------------
    Mutant(
        "checks-counts-inf-accepted",
        CHECKS,
        "if value is not None and not (math.isfinite(value) and value >= minimum):",
        "if value is not None and not value >= minimum:",
        (T_EDGES, f"{U}::test_an_infinite_count_is_refused_and_a_meta_device_is_not_a_device"),
        "check_counts documents 'not finite' as refused: --n inf would loop or allocate forever",
    ),
    Mutant(
        "checks-device-of-another-type-accepted",
        CHECKS,
        '    elif dev.type != "cpu":\n        raise TLCMError(f"{flag} {device}: device type',
        '    elif dev.type not in ("cpu", "meta"):\n        raise TLCMError(f"{flag} {device}: device type',
        (
            f"{T_CHECK}::test_devices_this_machine_lacks_are_refused",
            f"{U}::test_an_infinite_count_is_refused_and_a_meta_device_is_not_a_device",
        ),
        "a meta / xla device passes the check and fails with a traceback once the model loads",
    ),
    Mutant(
        "checks-resolution-suggestion-below-the-multiple",
        CHECKS,
        "low = max(resolution // multiple * multiple, multiple)",
        "low = resolution // multiple * multiple",
        (f"{T_BAD}::test_bad_input[resolution 0]",),
        "the fix offered for a too small resolution is 0, itself refused",
    ),
    Mutant(
        "checks-out-file-probed-as-a-folder",
        CHECKS,
        "problem = _folder_problem(path.parent)",
        "problem = _folder_problem(path)",
        (
            f"{T_CHECK}::test_an_image_path_may_end_in_an_upper_case_extension",
            f"{U}::test_an_output_file_leaves_its_folder_made_and_its_own_path_free",
        ),
        "the write probe creates a FOLDER at the output file's path: the grid can then never be written",
    ),
    Mutant(
        "checks-run-folder-may-be-a-file",
        CHECKS,
        "if path is not None and not Path(path).is_dir():",
        "if path is not None and not Path(path).exists():",
        (
            f"{T_BAD}::test_bad_input[--student folder missing]",
            f"{U}::test_an_output_file_leaves_its_folder_made_and_its_own_path_free",
        ),
        "a file passed as --student / init_from is taken for a run folder",
    ),
    Mutant(
        "checks-compile-debug-backends-refused",
        CHECKS,
        "known = torch._dynamo.list_backends(exclude_tags=())",
        "known = torch._dynamo.list_backends()",
        (
            f"{T_BAD}::test_bad_input[unknown compile backend]",
            f"{U}::test_the_debug_backend_the_refusal_recommends_is_accepted",
        ),
        "aot_eager (debug-tagged), which the refusal itself recommends, is refused",
    ),
    Mutant(
        "checks-kohya-lora-flag-inverted",
        CHECKS,
        "lora=not full_finetune, family=family)",
        "lora=full_finetune, family=family)",
        (T_OFF, f"{U}::test_kohya_is_a_lora_export_only"),
        "a LoRA student's kohya export refused and a full fine-tune's accepted",
    ),
    Mutant(
        "checks-real-images-and-prompts-both-accepted",
        CHECKS,
        "    if images is not None and recipe.data.prompts is not None:\n",
        "    if images is not None and recipe.data.prompts is not None and False:\n",
        (
            T_OFF,
            f"{U}::test_real_image_data_refuses_a_prompt_file_and_takes_shard_patterns_and_the_miniature",
        ),
        "--recipes.data.prompts silently ignored when real images (whose captions are the prompts) are set",
    ),
    Mutant(
        "checks-webdataset-brace-pattern-must-exist",
        CHECKS,
        'pattern = "*" in str(images) or "{" in str(images)',
        'pattern = "*" in str(images)',
        (
            T_OFF,
            f"{U}::test_real_image_data_refuses_a_prompt_file_and_takes_shard_patterns_and_the_miniature",
        ),
        "a webdataset shard pattern shards-{000..009}.tar is refused as a missing path",
    ),
    Mutant(
        "checks-miniature-digits-must-exist-before-their-first-use",
        CHECKS,
        "if images is not None and not pattern and Path(images) != MINIATURE_DIGITS and",
        "if images is not None and not pattern and",
        (
            T_OFF,
            f"{U}::test_real_image_data_refuses_a_prompt_file_and_takes_shard_patterns_and_the_miniature",
        ),
        "the miniature's digit folder, written on first use, is refused on a fresh machine",
    ),
    Mutant(
        "checks-batch-suggestion-ignores-the-processes",
        CHECKS,
        "        low = batch // chunks * chunks\n",
        "        low = batch // accum * accum\n",
        (f"{T_BAD}::test_bad_input[batch not divisible by processes x grad-accum (torchrun)]",),
        "the batch sizes suggested do not split over the processes either",
    ),
    # ---- memory_plan.py -------------------------------------------------------------------------
    Mutant(
        "plan-measures-a-step-twice",
        PLAN,
        "        if (b, mode) not in memo:\n",
        "        if True:\n",
        (*T_MP_FAKE, f"{U}::test_an_impossible_plan_measures_each_step_once"),
        "each measurement is a whole training step on the GPU: the refusal re-measures micro-batch 1",
    ),
    Mutant(
        "plan-margin-ignored",
        PLAN,
        "    usable = limit * (1 - margin)\n",
        "    usable = limit\n",
        (*T_MP_FAKE, f"{U}::test_the_margin_is_kept_free_and_the_usable_edge_fits"),
        "the 10% kept free for the optimizer's temporaries is planned away: out of memory at step 1",
    ),
    Mutant(
        "plan-usable-edge-exclusive",
        PLAN,
        "fits = [(b, peak) for b, peak in peaks if peak <= usable]",
        "fits = [(b, peak) for b, peak in peaks if peak < usable]",
        (*T_MP_FAKE, f"{U}::test_the_margin_is_kept_free_and_the_usable_edge_fits"),
        "a micro-batch whose predicted peak is exactly the usable memory is not planned",
    ),
    Mutant(
        "plan-peak-high-is-the-lower",
        PLAN,
        "        return max(self.allocated, self.reserved)\n",
        "        return min(self.allocated, self.reserved)\n",
        (*T_MP_FAKE, f"{U}::test_where_only_the_smallest_runs_its_reserved_peak_decides"),
        "where only b1 runs, its allocated peak (not the reserved one the budget caps) is compared",
    ),
    Mutant(
        "plan-users-grad-accum-read-as-the-micro-batch",
        PLAN,
        "micro_batch=batch // phase.grad_accum if phase.grad_accum != 1 else None,",
        "micro_batch=phase.grad_accum if phase.grad_accum != 1 else None,",
        T_MP_FAKE,
        "a recipe's grad_accum 4 of batch 8 plans micro-batch 4: accumulation 2, not the recipe's",
    ),
    Mutant(
        "plan-phase-cpu-without-budget-measured",
        PLAN,
        '    if device.type != "cuda" and rt.memory_budget_gib is None:\n',
        '    if device.type != "cuda" and rt.memory_budget_gib is None and False:\n',
        (
            f"{T_CHECK}::test_the_budget_is_in_gib_not_gb",
            f"{U}::test_a_cpu_run_with_the_plan_on_but_no_budget_is_not_planned",
        ),
        "memory_plan on a CPU run without a budget: a CUDA measurement that refuses the run",
    ),
    Mutant(
        "bind-budget-cap-ignores-outside-memory",
        PLAN,
        "torch.cuda.set_per_process_memory_fraction(limit / total, device)",
        "torch.cuda.set_per_process_memory_fraction(budget / total, device)",
        T_MP_FAKE,
        "the allocator is capped at the whole budget although the CUDA context already holds part of it",
    ),
    Mutant(
        "measure-step-real-oom-not-caught",
        PLAN,
        "        except memory.OutOfMemory:\n",
        "        except MemoryError:\n",
        (*T_MP_FAKE, f"{U}::test_measure_step_counts_new_aux_state_in_both_peaks_and_a_real_oom_is_inf"),
        "torch.cuda.OutOfMemoryError is a RuntimeError: a micro-batch that does not fit crashes the plan",
    ),
    Mutant(
        "measure-step-kept-state-not-in-reserved",
        PLAN,
        "max(objective.reserved + kept, aux.reserved)",
        "max(objective.reserved, aux.reserved)",
        (*T_MP_FAKE, f"{U}::test_measure_step_counts_new_aux_state_in_both_peaks_and_a_real_oom_is_inf"),
        "the auxiliary optimizers' new state is not counted in the reserved peak",
    ),
    # ---- resume.py ------------------------------------------------------------------------------
    Mutant(
        "resume-prompts-unchecked",
        RESUME,
        '    "data.embedding_cache",\n',
        '    "data.embedding_cache",\n    "data.prompts",\n',
        (T_FREE, f"{U}::test_another_prompt_file_or_process_count_is_a_change"),
        "another prompt file resumes silently: one student trained on two prompt sets",
    ),
    Mutant(
        "resume-process-count-unchecked",
        RESUME,
        '    if saved.get("processes") != current["processes"] and (changed or not kept):\n',
        '    if saved.get("processes") != current["processes"] and False:\n',
        (
            f"{T_BAD}::test_bad_input[rerun with another process count]",
            f"{U}::test_another_prompt_file_or_process_count_is_a_change",
        ),
        "a resume on another process count changes the per-process batch and the random draws",
    ),
    Mutant(
        "resume-old-checkpoint-refused",
        RESUME,
        "    if saved is None:\n        say(",
        "    if saved is None and allow:\n        say(",
        (T_FREE, f"{U}::test_an_old_checkpoint_resumes_with_a_notice_and_resume_changed_continues"),
        "a checkpoint from before run records crashes the resume (None.get) instead of a notice",
    ),
    Mutant(
        "resume-changed-flag-still-refuses",
        RESUME,
        '(checkpoint -> now)")\n        return\n',
        '(checkpoint -> now)")\n',
        (
            f"{T_BAD}::test_bad_input[rerun with another lr and seed]",
            f"{U}::test_an_old_checkpoint_resumes_with_a_notice_and_resume_changed_continues",
        ),
        "--recipes.runtime.resume-changed prints its line and then refuses anyway",
    ),
    Mutant(
        "resume-trained-model-path-not-resolved",
        RESUME,
        'return {**model, "path": from_repo_path(path)} if path else None',
        'return {**model, "path": Path(path)} if path else None',
        (T_RUNS, f"{U}::test_a_run_of_the_miniature_finds_it_from_anywhere_and_a_moved_model_is_refused"),
        "a run of the bundled miniature (recorded relative to the repo) sampled from elsewhere fails",
    ),
    Mutant(
        "resume-missing-base-falls-back-to-the-miniature",
        RESUME,
        "    if base is None:\n        return MINIATURE_SD, length",
        "    if base is None or not base.is_dir():\n        return MINIATURE_SD, length",
        (T_RUNS, f"{U}::test_a_run_of_the_miniature_finds_it_from_anywhere_and_a_moved_model_is_refused"),
        "a run whose base model moved away is sampled on the miniature, silently",
    ),
    Mutant(
        "resume-export-needs-both-lora-and-scheduler",
        RESUME,
        'if not (run / DIFFUSERS_FILE).is_file() and not (run / "scheduler").is_dir():',
        'if not (run / DIFFUSERS_FILE).is_file() or not (run / "scheduler").is_dir():',
        (T_RUNS, f"{U}::test_an_export_missing_a_part_is_still_named_an_export"),
        "an export missing its scheduler folder is called 'no checkpoint' instead of an export",
    ),
    # ---- sample.py ------------------------------------------------------------------------------
    Mutant(
        "sample-first-gamma-range-unchecked",
        SAMPLE,
        '    check_gamma(args.first_gamma, "--first-gamma")\n',
        "",
        (
            f"{T_BAD}::test_bad_input[--gamma without --student]",
            f"{U}::test_first_gamma_is_checked_and_needs_a_student",
        ),
        "--first-gamma 5 with --student samples with an extrapolated first move",
    ),
    Mutant(
        "sample-first-gamma-without-student-ignored",
        SAMPLE,
        'for flag, value in (("--gamma", args.gamma), ("--first-gamma", args.first_gamma)):',
        'for flag, value in (("--gamma", args.gamma),):',
        (
            f"{T_BAD}::test_bad_input[--gamma without --student]",
            f"{U}::test_first_gamma_is_checked_and_needs_a_student",
        ),
        "--first-gamma without --student is silently ignored by the teacher's sampler",
    ),
    Mutant(
        "sample-export-folder-not-the-run",
        SAMPLE,
        "args = replace(args, student=run, model=model, max_sequence_length=length)",
        "args = replace(args, student=args.student, model=model, max_sequence_length=length)",
        (
            f"{T_BAD}::test_bad_input[--student one checkpoint of a run]",
            f"{U}::test_sample_takes_a_runs_export_folder_for_the_run",
        ),
        "--student RUN/student (the documented export) is refused as having no checkpoint",
    ),
    # ---- latent_lpips.py ------------------------------------------------------------------------
    Mutant(
        "lpips-cache-ignores-the-dtype",
        LPIPS,
        "return load_latent_lpips(path, device).to(dtype)",
        "return load_latent_lpips(path, device)",
        (
            f"{T_LL}::test_registered_distances_by_hand",
            f"{T_LL}::test_selectable_in_mlcd_and_lcd",
            f"{U}::test_latent_lpips_takes_fp64_latents_and_a_target_of_another_dtype",
        ),
        "the fp32 network on fp64 (or bf16) latents: a dtype error at the first step",
    ),
    Mutant(
        "lpips-target-not-cast-to-the-prediction",
        LPIPS,
        "taps = self.features(torch.cat([pred, target.to(pred.dtype)]))",
        "taps = self.features(torch.cat([pred, target]))",
        (
            f"{T_LL}::test_hand_derived_value",
            f"{T_LL}::test_registered_distances_by_hand",
            f"{U}::test_latent_lpips_takes_fp64_latents_and_a_target_of_another_dtype",
        ),
        "an fp64 (or fp32 under bf16) target promotes the batch: a dtype error in the network",
    ),
    Mutant(
        "lpips-zero-width-block-accepted",
        LPIPS,
        "if len(channels) != 5 or min(channels) < 1 or in_channels < 1:",
        "if len(channels) != 5 or in_channels < 1:",
        (
            f"{T_LL}::test_wrong_channel_count_is_refused",
            f"{U}::test_a_zero_width_block_and_a_pickled_list_are_refused",
        ),
        "a block of width 0 builds a network whose distance is NaN (0 / 0 normalised taps)",
    ),
    Mutant(
        "lpips-pickled-list-not-refused-in-one-line",
        LPIPS,
        "if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):",
        "if not all(isinstance(v, torch.Tensor) for v in state.values()):",
        (
            f"{T_LL}::test_pickle_round_trip_uses_weights_only",
            f"{T_LL}::test_pickle_with_code_is_refused",
            f"{U}::test_a_zero_width_block_and_a_pickled_list_are_refused",
        ),
        "a pickled list of tensors is an AttributeError traceback, not the one-line refusal",
    ),
    Mutant(
        "lpips-damaged-pickle-is-a-traceback",
        LPIPS,
        "    except (EOFError, OSError, RuntimeError, KeyError) as err:  # empty, truncated, not a torch file\n",
        "    except () as err:  # empty, truncated, not a torch file\n",
        (
            f"{T_LL}::test_pickle_with_code_is_refused",
            f"{U}::test_a_damaged_weights_pickle_is_refused_in_one_line",
        ),
        "undoes this round's fix: an empty or truncated .pt is an EOFError / OSError traceback at step 1",
    ),
]
