"""A tenth red-team audit, area reliability and command-line plumbing (2026-12-06; 25 mutants, 23
survived at first, each now caught): checkpoints (a leftover step folder without state.json taken
for a saved one, a save failing on a full disk: its temporary folder left behind and torch.save's
RuntimeError kept raw, the weight limit recorded in a checkpoint beating the one given, the fallback
notice naming the last checkpoint passed over, NaN in the optimizer state counted sound), resume
(a field hidden behind an unchecked one whose name prefixes it, a refusal of 8 changes naming
7, a damaged latest state.json forgetting the base model a run's student loads on), the model folder
checks (components model_index.json lists, tokenizer_2's vocabulary, a non-UTF-8 model_index.json
as a traceback, the training flag named to tlcm.sample / evaluate, trained_betas ignored),
tlcm.train's suggestion of a bool's no- flag, ``evaluate student --gamma`` overwriting eval.json, and
the prompt sets (COCO captions of unlisted images, the caption drawn by the file's order, a seeded
subset ignoring the seed, --num-prompts 0, Parti's byte-order mark, blank .jsonl prompts). Only the
two durability mutants of ``latest`` were caught at first (test_checkpoint.py's fsync-order and
crash tests); the new tests are direct calls in tests/test_reliability_units.py (no training).

A real bug, fixed: tlcm/data/prompts.py split a .jsonl prompt file with ``str.splitlines``, which also
breaks at U+0085, U+2028 and U+2029, characters JSON allows raw inside a string
(``json.dumps(..., ensure_ascii=False)`` writes them so): such a valid JSON Lines file was refused
("not JSON"). ``prompts-jsonl-line-separators-split`` undoes the fix (it survived the existing tests
too: the 23rd). tlcm/data/images.py read metadata.jsonl the same way (found by the helper, fixed by
sharing prompts.py's ``json_lines``; tlcm/eval/score.py's prompts.jsonl too):
``images-metadata-split-at-line-separators``, the 26th. A second, fixed after the audit: a save at
a step whose complete folder ``latest`` never named (a crash after the folder's rename) replaced only
its state.json, keeping the crashed attempt's weights (other weights under ``resume-changed`` or on a
nondeterministic GPU): the update in place is now for the folder ``latest`` names only
(``ckpt-crashed-attempts-folder-kept``, the 27th). Dropped: tlcm/data/states.py is a frozen dataclass without logic; model_fingerprint's
``size <= SAMPLES * SAMPLE_BYTES`` -> ``<`` is equivalent (a file of exactly 1 MiB hashed whole or as
16 adjoining 64 KiB slices feeds sha256 the same bytes)."""

from run import Mutant

CKPT = "tlcm/checkpoint.py"
RESUME = "tlcm/resume.py"
FOLDERS = "tlcm/models/folders.py"
TRAIN = "tlcm/train.py"
EVALUATE = "tlcm/evaluate.py"
EVAL_PROMPTS = "tlcm/eval/prompts.py"
PROMPTS = "tlcm/data/prompts.py"

T_CRASH = "tests/test_checkpoint.py::test_a_crash_anywhere_in_a_save_leaves_latest_loadable"
T_FSYNC = "tests/test_checkpoint.py::test_a_save_fsyncs_every_file_before_its_rename_and_the_folders_after"
T_DAMAGED = "tests/test_checkpoint.py::test_a_damaged_latest_checkpoint_falls_back_to_the_newest_complete_one"
T_POINTER = "tests/test_checkpoint.py::test_a_damaged_latest_pointer_falls_back_with_one_notice"
T_UNSOUND = "tests/test_checkpoint.py::test_nan_or_absurd_latest_weights_fall_back_to_the_previous_checkpoint"
T_NEGATIVE = "tests/test_checkpoint.py::test_absurd_negative_weights_are_unsound_too"
T_ONE_SIDED = "tests/test_checkpoint.py::test_a_field_only_one_recipe_has_is_a_change_either_way"
T_PROMPT_LENGTH = "tests/test_checkpoint.py::test_a_given_prompt_length_overrides_the_runs_recorded_one"
T_BAD = "tests/test_bad_inputs.py::test_bad_input"
T_BAD_FILE = f"{T_BAD}[model path is a file]"
T_BAD_JSON = f"{T_BAD}[model_index.json not JSON]"
T_BAD_VOCAB = f"{T_BAD}[tokenizer without vocabulary]"
T_BAD_COMPONENT = f"{T_BAD}[model component folder missing]"
T_BAD_LOSS_FIELD = f"{T_BAD}[misspelled loss field of the preset]"
T_BAD_TIMESTEPS = f"{T_BAD}[scheduler of 10 timesteps (MLCD's skip beyond T/M)]"
T_CLI_MODEL = "tests/test_cli.py::test_missing_and_non_diffusers_model_folder"
T_CLI_PROMPTS = "tests/test_cli.py::test_empty_prompt_file"
T_FLAG_VALUE = "tests/test_plumbing.py::test_a_misspelled_flag_with_its_value_after_equals_gets_a_suggestion"
T_COCO = "tests/test_eval.py::test_coco_captions_one_seeded_caption_per_seeded_image"
T_SETS = "tests/test_eval.py::test_parti_hps_txt_jsonl_parsers_and_seeded_subsets"
T_COMPARE = "tests/test_summary.py::test_the_suggested_teacher_table_scores_the_students_prompt_count"
T_CAPTION_SEPARATORS = (
    "tests/test_real_images.py::test_a_caption_holding_a_unicode_line_separator_is_one_record"
)
T_UNITS = "tests/test_reliability_units.py"

MUTANTS = [
    # ---- checkpoints -------------------------------------------------------------------------
    Mutant(
        "ckpt-pointer-renamed-before-it-is-written",
        CKPT,
        '    with tmp.open("wb") as handle:\n        handle.write(data)',
        '    with tmp.open("wb") as handle:\n        os.replace(tmp, path)\n        handle.write(data)',
        (T_FSYNC, T_CRASH),
        "`latest` (and a same-step state.json) is published empty and filled afterwards: a crash or a "
        "power loss in between leaves an empty pointer",
    ),
    Mutant(
        "ckpt-pointer-data-not-fsynced",
        CKPT,
        "        handle.flush()\n        os.fsync(handle.fileno())\n",
        "        handle.flush()\n",
        (T_FSYNC,),
        "the new `latest` is renamed over the old one before its bytes reach the disk: after a power "
        "loss it can be empty",
    ),
    Mutant(
        "ckpt-same-step-update-of-a-leftover-folder",
        CKPT,
        'if (final / "state.json").is_file() and _pointer(root)[0] == final:',
        "if final.is_dir() and _pointer(root)[0] == final:",
        (T_CRASH, T_DAMAGED, f"{T_UNITS}::test_a_leftover_folder_of_the_saved_step_is_replaced_whole"),
        "a leftover folder of this step without state.json (a half-pruned or half-written one) gets "
        "only a state.json and `latest` names it: no weights behind the pointer",
    ),
    Mutant(
        "ckpt-crashed-attempts-folder-kept",
        CKPT,
        'if (final / "state.json").is_file() and _pointer(root)[0] == final:',
        'if (final / "state.json").is_file():',
        (f"{T_UNITS}::test_a_complete_folder_latest_never_named_is_replaced_whole",),
        "the fix of this audit undone: a complete step folder that `latest` never named (a crash after "
        "its rename) keeps the earlier attempt's weights under this run's state.json",
    ),
    Mutant(
        "ckpt-failed-save-leaves-its-temp-folder",
        CKPT,
        "        shutil.rmtree(tmp, ignore_errors=True)  # `latest` still names",
        "        pass  # `latest` still names",
        (T_CRASH, f"{T_UNITS}::test_a_save_that_fails_on_a_full_disk_is_one_line_and_leaves_nothing_behind"),
        "a save that fails on a full disk leaves its half-written temporary folder there, holding the "
        "space the next save needs",
    ),
    Mutant(
        "ckpt-torch-write-error-kept-raw",
        CKPT,
        "and not any(k in str(err) for k in TORCH_WRITE_ERRORS):",
        "and any(k in str(err) for k in TORCH_WRITE_ERRORS):",
        (T_CRASH, f"{T_UNITS}::test_a_save_that_fails_on_a_full_disk_is_one_line_and_leaves_nothing_behind"),
        "torch.save's full-disk RuntimeError escapes as a traceback (and any other RuntimeError is "
        "reported as a full disk)",
    ),
    Mutant(
        "ckpt-recorded-limit-beats-the-given-one",
        CKPT,
        'limit or runtime.get("max_weight_abs") or WEIGHT_LIMIT',
        'runtime.get("max_weight_abs") or limit or WEIGHT_LIMIT',
        (T_UNSOUND, f"{T_UNITS}::test_the_weight_limit_given_beats_the_one_the_checkpoint_recorded"),
        "a resume with a lower --recipes.runtime.max-weight-abs still resumes from a checkpoint beyond "
        "it (the limit the checkpoint's run recorded wins over the one given)",
    ),
    Mutant(
        "ckpt-fallback-line-names-the-last-problem",
        CKPT,
        'say(f"checkpoint {problems[0]} (damaged',
        'say(f"checkpoint {problems[-1]} (damaged',
        (T_DAMAGED, T_POINTER, f"{T_UNITS}::test_the_fallback_notice_names_the_checkpoint_latest_named"),
        "with two damaged checkpoints (or a damaged pointer and a damaged checkpoint) the notice names "
        "the last one passed over, not what `latest` named",
    ),
    Mutant(
        "ckpt-nan-in-the-optimizer-is-sound",
        CKPT,
        "    bad = nonfinite_paths(tree)\n",
        '    bad = nonfinite_paths({"student": tree.get("student", {})})\n',
        (T_UNSOUND, T_NEGATIVE, f"{T_UNITS}::test_nan_in_the_optimizer_state_is_unsound"),
        "NaN in the optimizer's moments (or a loss model's state) is saved and resumed from: the next "
        "step turns the student NaN again",
    ),
    # ---- resume ------------------------------------------------------------------------------
    Mutant(
        "resume-unchecked-by-name-prefix",
        RESUME,
        'return any(path == u or path.startswith(f"{u}.") for u in UNCHECKED)',
        "return any(path.startswith(u) for u in UNCHECKED)",
        (T_ONE_SIDED, f"{T_UNITS}::test_unchecked_fields_match_whole_names_not_prefixes"),
        "a field whose name starts with an unchecked one (runtime.compile_mode: runtime.compile) may "
        "change on a resume unnoticed",
    ),
    Mutant(
        "resume-refusal-names-seven-of-eight-changes",
        RESUME,
        'shown = "; ".join(changes[:8])',
        'shown = "; ".join(changes[:7])',
        (T_ONE_SIDED, f"{T_UNITS}::test_a_refusal_names_every_change_up_to_eight_then_counts_the_rest"),
        "a refusal of 8 changes names 7 of them, with no 'and N more': a changed field is not named",
    ),
    Mutant(
        "resume-damaged-record-forgets-the-base-model",
        RESUME,
        "        except (OSError, ValueError):  # a damaged checkpoint: the next one's record\n"
        "            continue",
        "        except (OSError, ValueError):  # a damaged checkpoint: the next one's record\n"
        "            return None",
        (T_PROMPT_LENGTH, f"{T_UNITS}::test_a_damaged_latest_record_still_names_the_base_model"),
        "a damaged latest state.json makes sample / evaluate / export load the student on the "
        "miniature instead of the base model the earlier checkpoints record",
    ),
    # ---- model folders -----------------------------------------------------------------------
    Mutant(
        "folders-listed-components-not-checked",
        FOLDERS,
        "components = dict.fromkeys([*FAMILIES[name].components, *listed])",
        "components = dict.fromkeys(FAMILIES[name].components)",
        (
            T_BAD_COMPONENT,
            T_CLI_MODEL,
            f"{T_UNITS}::test_components_model_index_lists_must_be_there_unless_null",
        ),
        "a component model_index.json lists beyond the family's (SD3's T5) may be missing: the "
        "pipeline load fails later with a traceback",
    ),
    Mutant(
        "folders-second-tokenizer-vocabulary-unchecked",
        FOLDERS,
        'if c.startswith("tokenizer") and not any(',
        'if c == "tokenizer" and not any(',
        (
            T_BAD_VOCAB,
            f"{T_UNITS}::test_every_tokenizer_needs_a_vocabulary_and_a_t5_one_may_be_sentencepiece",
        ),
        "SDXL's / FLUX's tokenizer_2 without a vocabulary passes: transformers builds an empty "
        "tokenizer and the run fails at the first prompt",
    ),
    Mutant(
        "folders-non-utf8-index-traceback",
        FOLDERS,
        "except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:",
        "except (OSError, json.JSONDecodeError) as err:",
        (T_BAD_JSON, f"{T_UNITS}::test_a_model_index_that_is_not_utf8_is_one_line"),
        "a model_index.json that is not UTF-8 ends in a UnicodeDecodeError traceback, not the one line",
    ),
    Mutant(
        "folders-file-error-names-the-training-flag",
        FOLDERS,
        'f"model folder {path} is a file, not a folder: pass a local diffusers folder ({flag} DIR)"',
        'f"model folder {path} is a file, not a folder: pass a local diffusers folder '
        '(--recipes.model.path DIR)"',
        (T_BAD_FILE, f"{T_UNITS}::test_the_model_folder_errors_name_the_flag_given"),
        "tlcm.sample / evaluate / the trajectory cache name a flag they do not have",
    ),
    Mutant(
        "folders-trained-betas-ignored",
        FOLDERS,
        "value = len(betas) if isinstance(betas, list) and betas else config.get(",
        "value = config.get(",
        (
            T_BAD_TIMESTEPS,
            f"{T_UNITS}::test_the_timestep_count_of_a_scheduler_with_trained_betas_is_diffusers_own",
        ),
        "a scheduler with trained_betas is read as num_train_timesteps long, not as its betas' length",
    ),
    # ---- tlcm.train's flags ------------------------------------------------------------------
    Mutant(
        "train-no-flags-not-suggested",
        TRAIN,
        '                yield f"{last[0]}.no-{last[1]}"',
        "                pass",
        (
            T_FLAG_VALUE,
            T_BAD_LOSS_FIELD,
            f"{T_UNITS}::test_a_misspelled_negative_flag_gets_its_negative_spelling_suggested",
        ),
        "a misspelled --recipes.runtime.no-resume gets no suggestion (the bool's no- spelling is not "
        "among the preset's flags)",
    ),
    # ---- evaluation --------------------------------------------------------------------------
    Mutant(
        "evaluate-gamma-file-needs-both-flags",
        EVALUATE,
        "    if gamma is not None or first_gamma is not None:\n        first =",
        "    if gamma is not None and first_gamma is not None:\n        first =",
        (T_COMPARE, f"{T_UNITS}::test_evaluate_student_with_a_gamma_writes_its_own_file"),
        "evaluate student --gamma 0.5 overwrites RUN/eval.json (the run's own scores) instead of "
        "writing RUN/eval-gamma0.5.json",
    ),
    # ---- prompt sets -------------------------------------------------------------------------
    Mutant(
        "coco-caption-ids-without-an-image",
        EVAL_PROMPTS,
        "ids = sorted(i for i in captions if i in files)",
        "ids = sorted(captions)",
        (T_COCO, f"{T_UNITS}::test_coco_captions_of_images_the_file_does_not_list_are_never_drawn"),
        "a caption whose image_id has no image entry is drawn: KeyError traceback",
    ),
    Mutant(
        "coco-caption-pick-depends-on-file-order",
        EVAL_PROMPTS,
        "rng.choice(sorted(captions[i]))",
        "rng.choice(captions[i])",
        (T_COCO, f"{T_UNITS}::test_the_coco_caption_drawn_depends_on_the_seed_not_on_the_files_order"),
        "the caption drawn for an image depends on the annotations' order in the file, not on the "
        "seed and the caption ids: two copies of the same captions give two prompt sets",
    ),
    Mutant(
        "prompt-subset-seed-ignored",
        EVAL_PROMPTS,
        "sorted(random.Random(seed).sample(range(len(prompts)), num))",
        "sorted(random.Random(num).sample(range(len(prompts)), num))",
        (T_SETS, f"{T_UNITS}::test_a_prompt_subset_is_drawn_with_the_seed_in_the_files_order"),
        "--seed does not change which prompts of a .txt / .jsonl / Parti / HPSv2 set are drawn",
    ),
    Mutant(
        "parti-byte-order-mark-kept",
        EVAL_PROMPTS,
        'with open(path, encoding="utf-8-sig", newline="") as f:',
        'with open(path, encoding="utf-8", newline="") as f:',
        (T_SETS, f"{T_UNITS}::test_a_parti_file_with_a_byte_order_mark_is_read"),
        "a PartiPrompts.tsv saved with a byte-order mark has a '\\ufeffPrompt' column: refused",
    ),
    Mutant(
        "prompt-set-zero-prompts-accepted",
        EVAL_PROMPTS,
        "if num is not None and num < 1:",
        "if num is not None and num < 0:",
        (T_COCO, T_SETS, f"{T_UNITS}::test_a_prompt_subset_is_drawn_with_the_seed_in_the_files_order"),
        "--num-prompts 0 draws the whole COCO default (5000) or an empty set instead of the one line",
    ),
    # ---- training prompts --------------------------------------------------------------------
    Mutant(
        "prompts-jsonl-blank-prompt-accepted",
        PROMPTS,
        "if not isinstance(prompt, str) or not clean_prompt(prompt):",
        "if not isinstance(prompt, str):",
        (T_CLI_PROMPTS, f"{T_UNITS}::test_a_jsonl_prompt_of_blanks_is_refused_naming_its_line"),
        'a .jsonl line {"prompt": "  "} becomes an empty training prompt instead of the one line',
    ),
    Mutant(
        "prompts-jsonl-line-separators-split",
        PROMPTS,
        "    return text.translate(JSON_LINE_BREAKS).splitlines()",
        "    return text.splitlines()",
        (
            T_CLI_PROMPTS,
            f"{T_UNITS}::test_a_jsonl_prompt_holding_a_unicode_line_separator_is_one_prompt",
            T_CAPTION_SEPARATORS,
        ),
        "the fix of this audit undone: a .jsonl prompt holding a raw U+2028 / U+2029 / U+0085 (valid "
        "JSON, as json.dumps(ensure_ascii=False) writes it) is cut in two by str.splitlines: 'not JSON'",
    ),
    Mutant(
        "images-metadata-split-at-line-separators",
        "tlcm/data/images.py",
        "for number, line in enumerate(json_lines(text), 1):",
        "for number, line in enumerate(text.splitlines(), 1):",
        (T_CAPTION_SEPARATORS,),
        "the same bug in the image folder's metadata.jsonl (found by this audit, fixed with the prompts' "
        "json_lines): a caption holding a raw U+2028 cuts its record in two, 'not JSON'",
    ),
]
