"""A thirteenth red-team audit, area cli (2026-12-07; 35 mutants, 19 of the first 31 survived at
first, each now caught; the 4 added later were written with their tests): the command line
(tlcm/train.py: unknown presets and flags, what a finished or pre-empted run does), the recipe
tree's documented defaults (tlcm/config.py), resume (tlcm/resume.py: the fields free to change, the
model fingerprint, the refusal's wording, the run-folder helpers), the loss registry, tlcm.sample's
flag checks, the phase-end sample grids, the process-wide stop-signal handler and the guards'
messages, on lines no earlier catalogue edits. The survivors were the end-of-run scoring (only
ever tested with fsdp off and one sample per digit), defaults nothing read back (resume on, the
caption column), the fingerprint's path handling (a model under a hidden folder such as
~/.cache/huggingface, a file moved between component folders), messages checked only in part, and
the process handler's reuse. Their tests are direct calls in tests/test_cli_units.py (under 2 s
for the file). No source bug found.

Skipped as equivalent: resume._file_digest's ``size <= SAMPLES * SAMPLE_BYTES`` as ``<`` (a file of
exactly 1 MiB read whole or as its 16 contiguous 64 KiB slices hashes the same bytes); recipe_dict's
``str(k)`` dropped (every key of the recipe tree is a str); resume._flatten's ``and tree`` dropped
(nearly: an empty dict then vanishes, but a change to or from one that holds fields shows as those
fields added or removed)."""

from run import Mutant

TRAIN = "tlcm/train.py"
CONFIG = "tlcm/config.py"
RESUME = "tlcm/resume.py"
REGISTRY = "tlcm/losses/registry.py"
SAMPLE = "tlcm/sample.py"
GRIDS = "tlcm/sample_grids.py"
PREEMPT = "tlcm/preemption.py"
GUARDS = "tlcm/guards.py"

BAD = "tests/test_bad_inputs.py::test_bad_input"
T_BAD_PRESET = f"{BAD}[unknown recipe preset (with --help)]"
T_BAD_LOSS_FIELD = f"{BAD}[misspelled loss field of the preset]"
T_BAD_FIELD = f"{BAD}[misspelled recipe field]"
T_BAD_STRAY = f"{BAD}[stray value]"
T_BAD_TEACHER_STEPS = f"{BAD}[teacher steps >= schedule timesteps]"
T_BAD_EMPTY_PROMPT = f"{BAD}[empty prompt]"
T_BAD_LR_SEED = f"{BAD}[rerun with another lr and seed]"
T_BAD_BASE = f"{BAD}[rerun with another base model of the same architecture]"

T_NEG_FLAG = (
    "tests/test_reliability_units.py::test_a_misspelled_negative_flag_gets_its_negative_spelling_suggested"
)
T_REFUSAL8 = (
    "tests/test_reliability_units.py::test_a_refusal_names_every_change_up_to_eight_then_counts_the_rest"
)
T_EQ_FLAG = "tests/test_plumbing.py::test_a_misspelled_flag_with_its_value_after_equals_gets_a_suggestion"
T_SCORED = "tests/test_plumbing.py::test_only_a_finished_run_on_rank_0_is_scored_and_summarised"
T_PHASE_GRID = (
    "tests/test_plumbing.py::test_phase_grid_picks_ten_prompts_spread_over_the_set_one_row_per_step_count"
)
T_LOSS_ONCE = "tests/test_plumbing.py::test_a_loss_name_is_registered_once"
T_SMOKE = "tests/test_interface_units.py::test_a_smoke_recipe_keeps_the_phases_at_its_steps_and_batch_without_init_from"
T_SIGTERM = "tests/test_checkpoint.py::test_sigterm_exits_with_the_documented_code"
T_RESUME_FIELDS = (
    "tests/test_checkpoint.py::test_resume_refuses_another_recipe_naming_the_fields_unless_asked"
)
T_FINGERPRINT = (
    "tests/test_checkpoint.py::test_the_model_fingerprint_sees_other_weights_of_the_same_size_not_a_move"
)
T_RUN_STUDENT = "tests/test_checkpoint.py::test_a_runs_student_loads_on_the_base_model_it_was_trained_on"
T_CAPTION = "tests/test_real_images.py::test_caption_column_picks_the_captions_and_the_fingerprint"
T_PREEMPT_UNITS = "tests/test_preemption_units.py"
T_SKIP_TEN = "tests/test_engine.py::test_skip_allows_the_documented_ten_steps_in_a_row"

U = "tests/test_cli_units.py"
T_U_FLAGS = f"{U}::test_every_suggested_flag_is_one_tyro_takes"
T_U_HINT = f"{U}::test_a_stray_value_is_not_called_a_flag_and_the_help_hint_names_the_preset"
T_U_SCORED = f"{U}::test_a_finished_run_is_scored_at_the_grids_step_counts_on_its_own_grid"
T_U_SCORING_OFF = f"{U}::test_scoring_is_off_at_zero_samples_and_skipped_only_for_real_shards"
T_U_RESUMES = f"{U}::test_every_preset_resumes_a_rerun_by_default"
T_U_CAPTION = f"{U}::test_the_default_caption_column_reads_the_image_folders_tlcm_writes"
T_U_SMOKE = f"{U}::test_a_smoke_recipe_never_evaluates_and_runs_on_the_device_given"
T_U_FREE = f"{U}::test_the_fields_design_md_calls_free_may_change_on_a_resume_and_the_seed_may_not"
T_U_PATHS = f"{U}::test_the_fingerprint_covers_each_files_path_not_only_its_name"
T_U_HIDDEN = f"{U}::test_models_under_a_hidden_folder_are_still_fingerprinted"
T_U_INIT_BASE = f"{U}::test_init_from_another_base_model_suggests_the_checkpoints_model"
T_U_OVERRIDES = f"{U}::test_loss_config_applies_the_overrides"
T_U_BLANK = f"{U}::test_one_blank_prompt_among_others_is_refused"
T_U_GRID = f"{U}::test_phase_grids_use_the_grids_first_move_gamma_and_the_seed_given"
T_U_LOADING = f"{U}::test_a_signal_during_loading_is_kept_for_the_training_block"
T_U_PRESET = f"{U}::test_unknown_preset_names_the_presets_as_the_command_line_spells_them"
T_U_EXIT = f"{U}::test_a_preempted_run_exits_75_and_a_finished_one_returns"
T_U_REFUSAL = f"{U}::test_a_refusal_names_the_run_folder_and_says_how_the_model_changed"
T_U_NOTE = f"{U}::test_a_student_on_its_own_base_gets_no_note_and_on_another_one_does"
T_U_RUN_FOLDER = f"{U}::test_a_runs_checkpoints_or_export_folder_names_the_run"
T_U_TEACHER_STEPS = f"{U}::test_the_teacher_takes_at_most_t_minus_one_steps_refused_before_loading"
T_U_NONFINITE = f"{U}::test_a_nonfinite_step_names_only_its_nonfinite_terms"
T_U_SKIPPED = f"{U}::test_a_mostly_skipped_phase_says_how_many_of_its_steps"

MUTANTS = [
    # ---- tlcm/train.py: the command line --------------------------------------------------------
    Mutant(
        "train-unknown-preset-suggestions-without-prefix",
        TRAIN,
        'presets = [f"recipes:{name}" for name in PRESETS]',
        "presets = list(PRESETS)",
        (T_U_PRESET, T_BAD_PRESET),
        "an unknown recipes:NAME lists the presets as bare names (not what the command line takes) and "
        "the close match is looked for among names without the recipes: its argument has",
    ),
    Mutant(
        "train-flag-suggestions-keep-underscores",
        TRAIN,
        "yield from walk(item, f\"{path}.{key.replace('_', '-')}\")",
        'yield from walk(item, f"{path}.{key}")',
        (T_U_FLAGS, T_BAD_LOSS_FIELD, T_NEG_FLAG),
        "an unknown flag is matched to --recipes.phases.mlcd.lr_schedule, a spelling tyro refuses",
    ),
    Mutant(
        "train-flag-suggestions-include-the-loss-class-tag",
        TRAIN,
        'if key != "class":  # a loss config\'s tag in recipe_dict, not a field',
        "if True:",
        (T_U_FLAGS, T_NEG_FLAG, T_EQ_FLAG),
        "recipe_dict's loss tag becomes a suggested flag: --recipes.phases.mlcd.losses.mlcd.class",
    ),
    Mutant(
        "train-stray-values-called-flags",
        TRAIN,
        'flags = [a for a in unknown if a.startswith("-")]',
        "flags = list(unknown)",
        (T_U_HINT, T_BAD_STRAY),
        "a stray value is reported as an unknown flag instead of 'every value follows its flag'",
    ),
    Mutant(
        "train-unknown-flag-help-never-names-the-preset",
        TRAIN,
        'where = f"recipes:{name}" if name in PRESETS else "recipes:NAME"',
        'where = "recipes:NAME"',
        (T_U_HINT, T_BAD_FIELD, T_EQ_FLAG),
        "the --help hint after an unknown flag names recipes:NAME instead of the preset given",
    ),
    Mutant(
        "train-one-process-fsdp-run-not-scored",
        TRAIN,
        'int(os.environ.get("WORLD_SIZE", "1")) > 1',
        'int(os.environ.get("WORLD_SIZE", "1")) >= 1',
        (T_U_SCORING_OFF, T_SCORED),
        "fsdp on one process (documented: ignored) skips the end-of-run evaluation as if sharded",
    ),
    Mutant(
        "train-eval-samples-zero-scores",
        TRAIN,
        "scored = recipe.runtime.eval_samples_per_digit > 0 and not sharded",
        "scored = recipe.runtime.eval_samples_per_digit >= 0 and not sharded",
        (T_U_SCORING_OFF, T_SCORED),
        "eval_samples_per_digit 0 (documented: off) still scores the student",
    ),
    Mutant(
        "train-scores-only-the-explicit-inference-steps",
        TRAIN,
        "        recipe.shown_steps,\n",
        "        recipe.inference_steps,\n",
        (T_U_SCORED, T_SCORED),
        "a recipe without inference_steps is scored at no step count (the grid's 1, 2, 4, 8 ignored)",
    ),
    Mutant(
        "train-scores-on-the-default-grid",
        TRAIN,
        "        student_grid=recipe.student.grid,\n",
        "",
        (T_U_SCORED, T_SCORED),
        "the student is scored on the default grid, not the one it was trained on",
    ),
    Mutant(
        "train-scores-written-to-another-file",
        TRAIN,
        '(run.out_dir / "eval.json").write_text(json.dumps(scores, indent=1) + "\\n")',
        '(run.out_dir / "scores.json").write_text(json.dumps(scores, indent=1) + "\\n")',
        (T_U_SCORED,),
        "the end-of-run scores go to RUN/scores.json; RUN/eval.json (README, tlcm.evaluate) stays absent",
    ),
    Mutant(
        "train-preempted-run-exits-0",
        TRAIN,
        "        sys.exit(PREEMPTED_EXIT_CODE)",
        "        return",
        (T_U_EXIT, T_SIGTERM),
        "a pre-empted run (checkpoint saved, not finished) exits 0: schedulers do not requeue it",
    ),
    # ---- tlcm/config.py: defaults -------------------------------------------------------------
    Mutant(
        "config-resume-off-by-default",
        CONFIG,
        "    resume: bool = True\n",
        "    resume: bool = False\n",
        (T_U_RESUMES,),
        "rerunning a run starts over (and removes its checkpoints) instead of resuming (README)",
    ),
    Mutant(
        "config-caption-column-default",
        CONFIG,
        'caption_column: str = "text"',
        'caption_column: str = "caption"',
        (T_U_CAPTION, T_CAPTION),
        "the default caption column is not diffusers' / datasets' 'text': every image folder is refused",
    ),
    Mutant(
        "config-smoke-recipe-keeps-the-evaluation",
        CONFIG,
        "            eval_samples_per_digit=0,\n",
        "",
        (T_U_SMOKE, T_SMOKE),
        "a smoke run of a preset with an evaluation (tlcm-full: 20 per digit) scores the student",
    ),
    Mutant(
        "config-smoke-recipe-always-on-the-cpu",
        CONFIG,
        "            device=device,\n",
        '            device="cpu",\n',
        (T_U_SMOKE,),
        "smoke_recipe(..., device='cuda') (the GPU benchmark's dry runs) runs on the CPU",
    ),
    # ---- tlcm/resume.py ------------------------------------------------------------------------
    Mutant(
        "resume-max-weight-abs-checked",
        RESUME,
        '    "runtime.max_weight_abs",\n',
        "",
        (T_U_FREE, T_RESUME_FIELDS),
        "a resume with another --recipes.runtime.max-weight-abs (failure handling, documented free) "
        "is refused",
    ),
    Mutant(
        "resume-embedding-cache-checked",
        RESUME,
        '    "data.embedding_cache",\n',
        "",
        (T_U_FREE,),
        "a resume with the embedding cache in another folder (documented free) is refused",
    ),
    Mutant(
        "resume-seed-unchecked",
        RESUME,
        '    "runtime.out_dir",\n',
        '    "runtime.out_dir",\n    "runtime.seed",\n',
        (T_U_FREE, T_BAD_LR_SEED, T_RESUME_FIELDS),
        "a resume with another seed (other draws from the resumed step on) is accepted silently",
    ),
    Mutant(
        "resume-fingerprint-by-file-name",
        RESUME,
        'digest.update(f"{relative.as_posix()}\\0{size}',
        'digest.update(f"{path.name}\\0{size}',
        (T_U_PATHS, T_FINGERPRINT),
        "the fingerprint hashes file names, not paths: two models whose files sit in other component "
        "folders (a VAE's weights in unet/) look the same",
    ),
    Mutant(
        "resume-fingerprint-hidden-parent-folder",
        RESUME,
        'if any(part.startswith(".") for part in relative.parts) or path.suffix == ".md":',
        'if any(part.startswith(".") for part in path.parts) or path.suffix == ".md":',
        (T_U_HIDDEN, T_FINGERPRINT),
        "a model under a hidden folder (~/.cache/huggingface/...) fingerprints no file at all: every "
        "such model has the same fingerprint, another base model resumes",
    ),
    Mutant(
        "resume-refusal-names-the-checkpoints-folder",
        RESUME,
        'f"{folder.parent.parent} was trained with another recipe or model',
        'f"{folder.parent} was trained with another recipe or model',
        (T_U_REFUSAL, T_REFUSAL8, T_RESUME_FIELDS),
        "the refusal names RUN/checkpoints as the run (its --recipes.runtime.out-dir is RUN)",
    ),
    Mutant(
        "resume-same-path-called-a-move",
        RESUME,
        'same = before.get("path") == after["path"]',
        'same = before.get("path") != after["path"]',
        (T_U_REFUSAL, T_BAD_BASE),
        "another base model in another folder is reported as 'PATH changed' and a model changed in "
        "place as a move",
    ),
    Mutant(
        "resume-student-note-for-the-same-model",
        RESUME,
        "if model_fingerprint(model) != model_fingerprint(base):",
        "if model_fingerprint(model) == model_fingerprint(base):",
        (T_U_NOTE, T_RUN_STUDENT),
        "sampling a student on its own base model (moved) prints 'trained on another model'",
    ),
    Mutant(
        "resume-checkpoints-folder-is-not-a-run",
        RESUME,
        'if path.name in ("student", "checkpoints") and',
        'if path.name in ("student",) and',
        (T_U_RUN_FOLDER, T_RUN_STUDENT),
        "--student RUN/checkpoints is taken for a run folder (no RUN/checkpoints/checkpoints)",
    ),
    Mutant(
        "resume-init-base-fix-names-this-runs-model",
        RESUME,
        "f\"--recipes.model.path {before.get('path')}\"\n",
        "f\"--recipes.model.path {current['model']['path']}\"\n",
        (T_U_INIT_BASE, T_RUN_STUDENT),
        "init_from on another base model suggests the path the run already uses as the fix",
    ),
    # ---- tlcm/losses/registry.py ------------------------------------------------------------
    Mutant(
        "registry-overrides-dropped",
        REGISTRY,
        "return LOSSES[name](**overrides)",
        "return LOSSES[name]()",
        (T_U_OVERRIDES, T_LOSS_ONCE),
        "loss_config('mlcd', weight=0.5) returns the defaults: the overrides are lost",
    ),
    # ---- tlcm/sample.py --------------------------------------------------------------------------
    Mutant(
        "sample-teacher-steps-bound-off-by-one",
        SAMPLE,
        "if args.student is None and args.steps >= steps:",
        "if args.student is None and args.steps > steps:",
        (T_U_TEACHER_STEPS, T_BAD_TEACHER_STEPS),
        "--steps T (1000) passes the flag check and fails with a ValueError after the model loaded",
    ),
    Mutant(
        "sample-one-blank-prompt-among-others-accepted",
        SAMPLE,
        "if not clean_prompt(p)]",
        "if not clean_prompt(p) and len(args.prompt) == 1]",
        (T_U_BLANK, T_BAD_EMPTY_PROMPT),
        "--prompt 'a seven' ' ' samples a row of an empty prompt",
    ),
    # ---- tlcm/sample_grids.py --------------------------------------------------------------------
    Mutant(
        "grid-first-gamma-dropped",
        GRIDS,
        "                first_gamma=grid.first_gamma,\n",
        "",
        (T_U_GRID, T_PHASE_GRID),
        "phase-end grids sample the first move with gamma, not the grid's first-move gamma",
    ),
    Mutant(
        "grid-seed-ignored",
        GRIDS,
        "gen = torch.Generator().manual_seed(seed)",
        "gen = torch.Generator().manual_seed(0)",
        (T_U_GRID, T_PHASE_GRID),
        "write_phase_grid's seed picks nothing: every seed draws the same noise",
    ),
    # ---- tlcm/preemption.py -------------------------------------------------------------------
    Mutant(
        "preempt-process-handler-replaced",
        PREEMPT,
        "    if _process is None:\n        _process = StopSignals()",
        "    if True:\n        _process = StopSignals()",
        (T_U_LOADING, T_PREEMPT_UNITS),
        "a second install_for_process drops the first one's received signal",
    ),
    Mutant(
        "preempt-block-ignores-the-process-handler",
        PREEMPT,
        "    if _process is not None:\n        yield _process",
        "    if _process is not None and False:\n        yield _process",
        (T_U_LOADING, T_PREEMPT_UNITS),
        "a signal received while the model loaded (kept by the process handler) is lost: the block "
        "installs a fresh handler",
    ),
    # ---- tlcm/guards.py --------------------------------------------------------------------------
    Mutant(
        "guards-skip-line-one-step-late",
        GUARDS,
        'say(f"[yellow]skipped step {step} of {phase}: non-finite {bad}")',
        'say(f"[yellow]skipped step {step + 1} of {phase}: non-finite {bad}")',
        (T_U_NONFINITE,),
        "the skip line counts the (already 1-based) step again: it names the step after the one "
        "metrics.jsonl marks as skipped",
    ),
    Mutant(
        "guards-skipped-phase-count-and-steps-swapped",
        GUARDS,
        'f"phase {phase!r} ended with {count} of its {steps} steps skipped',
        'f"phase {phase!r} ended with {steps} of its {count} steps skipped',
        (T_U_SKIPPED,),
        "a mostly skipped phase reads '10 of its 3 steps skipped'",
    ),
    Mutant(
        "guards-nonfinite-names-the-finite-terms",
        GUARDS,
        'bad = ", ".join(k for k, v in terms.items() if not torch.isfinite(v))',
        'bad = ", ".join(k for k, v in terms.items() if torch.isfinite(v))',
        (T_U_NONFINITE, T_SKIP_TEN),
        "the non-finite message names the finite terms instead of the NaN one",
    ),
]
