"""Round 15, the lead's own changes (2026-12-07; each caught): what a practitioner bringing their
own model and data meets (found by a user-walkthrough helper): the run's denoiser evaluations under
torchrun summed over processes (each process counted its own share, and the end summary printed
rank 0's); the training time of a resumed run counting every session (the model card said the
last session's); ``evaluate student`` refusing a run folder it cannot write before sampling, and
its --out; the trajectory cache built from an image folder's captions (--images) and its refusal
naming them; a folder of fp16-variant weights loaded; a plain progress line where the output is
not a terminal; messages that name what the user passed (sample's empty prompt, export's default
--out, compare's teacher-table hint with the run's base model, the embedding cache that cannot be
made)."""

from run import Mutant

ENGINE = "tlcm/engine.py"
DIST = "tlcm/distributed.py"
EVAL = "tlcm/evaluate.py"
TRAJ = "tlcm/data/trajectories.py"
FAMILY = "tlcm/models/families/base.py"
REPORT = "tlcm/report.py"

W3 = "tests/test_walkthrough3_units.py"
T_TIME = f"{W3}::test_training_time_and_evaluations_of_a_resumed_run_count_every_session"
T_EVAL = f"{W3}::test_a_run_folder_it_cannot_write_to_is_refused_before_scoring_and_out_writes_elsewhere"
T_TRAJ = f"{W3}::test_a_trajectory_cache_is_built_from_an_image_folders_captions_and_its_refusal_says_how"
T_VARIANT = f"{W3}::test_a_folder_of_fp16_variant_weights_loads_that_variant"
T_LOG = f"{W3}::test_a_log_that_is_not_a_terminal_gets_a_plain_progress_line_every_30_seconds"
T_MSG = f"{W3}::test_small_messages_name_what_the_user_passed"
T_CHECK = f"{W3}::test_check_reports_every_broken_sample_at_once"
T_BLANK = "tests/test_cli_units.py::test_one_blank_prompt_among_others_is_refused"
T_SHARD_PEAK = f"{W3}::test_the_weight_guard_reads_a_blow_up_on_one_fsdp2_shard_whole"
CONTRACT = "tests/test_loss_contract.py"
T_DP = f"{CONTRACT}::test_two_processes_equal_one_process_with_two_micro_batches"
T_FSDP = f"{CONTRACT}::test_fsdp2_two_processes_equal_one_process_and_resume_exactly"

MUTANTS = [
    Mutant(
        "evals-one-process-share",
        DIST,
        "    dist.all_reduce(total)\n    return int(total.item())",
        "    return int(total.item())",
        (T_DP,),
        "under torchrun each process's share is logged as the run's count: 2 processes read half",
    ),
    Mutant(
        "evals-resumed-base-on-every-rank",
        ENGINE,
        "self.denoiser_evals = saved if self.dist.is_main else 0",
        "self.denoiser_evals = saved",
        (T_FSDP,),
        "a resumed 2-process run counts its checkpoint's evaluations twice",
    ),
    Mutant(
        "seconds-of-the-last-session",
        ENGINE,
        "self._seconds_before = (restored.train_seconds or 0.0) if restored else 0.0",
        "self._seconds_before = 0.0",
        (T_TIME,),
        "the model card's training time of a resumed run is its last session's",
    ),
    Mutant(
        "seconds-not-saved",
        ENGINE,
        "            train_seconds=self.train_seconds(),\n",
        "",
        (T_TIME,),
        "checkpoints record no training time: a resume starts the clock at zero",
    ),
    Mutant(
        "eval-run-writability-unchecked",
        EVAL,
        '        check_out_dir(run, "--run", "pass --out FILE.json to write the scores elsewhere")',
        "        pass",
        (T_EVAL,),
        "a read-only run folder is found after all the sampling: an OSError and the scores lost",
    ),
    Mutant(
        "eval-out-ignored",
        EVAL,
        "path = Path(out) if out is not None else run / name",
        "path = run / name",
        (T_EVAL,),
        "--out is checked but the scores still go into the run folder",
    ),
    Mutant(
        "traj-images-ignored",
        TRAJ,
        "        prompts = [source.text(i) for i in range(len(source))]",
        "        prompts = load_prompts(None, flag='--prompts')",
        (T_TRAJ,),
        "--images builds the miniature prompts' cache: the run refuses it again",
    ),
    Mutant(
        "traj-hint-without-the-caption-column",
        TRAJ,
        'column = f" --caption-column {caption_column}" if caption_column != "text" else ""',
        'column = ""',
        (T_TRAJ,),
        "the rebuild command reads captions from the default column: another prompt list",
    ),
    Mutant(
        "variant-not-passed",
        FAMILY,
        "local_files_only=True, variant=variant, **absent",
        "local_files_only=True, **absent",
        (T_VARIANT,),
        "an fp16-variant folder is refused as damaged (no model.safetensors)",
    ),
    Mutant(
        "variant-where-plain-weights-are",
        FAMILY,
        "if names and None not in names:",
        "if names:",
        (T_VARIANT,),
        "a plain folder is loaded as a variant (diffusers then finds no variant files)",
    ),
    Mutant(
        "log-line-every-report",
        REPORT,
        "now - self._logged < LOG_LINE_SECONDS and not task.finished",
        "False",
        (T_LOG,),
        "a redirected log gets a line at every logged step (log_every 1: every step)",
    ),
    Mutant(
        "log-line-misses-the-phase-end",
        REPORT,
        "now - self._logged < LOG_LINE_SECONDS and not task.finished",
        "now - self._logged < LOG_LINE_SECONDS",
        (T_LOG,),
        "the log's last line of a phase is not its last step",
    ),
    Mutant(
        "compare-hint-scores-the-miniature",
        EVAL,
        'f" --model {base}" if base is not None',
        'f"" if base is not None',
        (T_MSG,),
        "the teacher-table hint for a run on one's own base scores the miniature",
    ),
    Mutant(
        "late-check-stops-at-the-first",
        "tlcm/data/images.py",
        "            except TLCMError as err:\n                problems.append(err)",
        "            except TLCMError:\n                raise",
        (T_CHECK,),
        "--check names one broken sample per rerun",
    ),
    Mutant(
        "late-check-names-all",
        "tlcm/data/images.py",
        "problems[:VERIFY_SHOWN]",
        "problems",
        (T_CHECK,),
        "a folder of 10,000 broken images is one 10,000-part line",
    ),
    Mutant(
        "late-blank-prompt-counted-from-zero",
        "tlcm/sample.py",
        "enumerate(args.prompt, start=1)",
        "enumerate(args.prompt)",
        (T_BLANK,),
        "--prompt 'a seven' '' names prompt #1 as the empty one",
    ),
    Mutant(
        "late-export-default-out-named-as-passed",
        "tlcm/export.py",
        '"--out" if args.out else "the default --out"',
        '"--out"',
        (T_MSG,),
        "the refusal names --out, a flag the user did not pass",
    ),
    Mutant(
        "late-shard-peak-averaged",
        "tlcm/guards.py",
        "    return limit + world_size * (peak - limit).clamp(min=0)",
        "    return peak",
        (T_SHARD_PEAK,),
        "FSDP2 with 8 processes: a weight of 5e4 on one shard reads 6.25e3 and passes max_weight_abs 1e4",
    ),
    Mutant(
        "late-shard-excess-not-scaled",
        "tlcm/guards.py",
        "    return limit + world_size * (peak - limit).clamp(min=0)",
        "    return limit + (peak - limit).clamp(min=0)",
        (T_SHARD_PEAK,),
        "the guard reads limit + excess / processes: a blow-up reads barely over the limit",
    ),
]
