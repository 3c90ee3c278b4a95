"""A thirteenth red-team audit, area state (2026-12-07; 29 mutants, 15 survived at first, each now
caught; 456 s of one core): checkpoints (folders named, pruned and fallen back to by global step, a
hand-written `latest` with a newline, losses.pt unpickled with weights_only, the weight limit's
edge, an empty student tensor, a fresh run, the damaged pointer's notice, which tensors hold NaN),
the reporter (appending, a torn last line, NaN as null, trackers only on the reporting process,
closed as a success or a failure, the resume's cut), the trackers (a misspelt name, tensorboard's
purge step: its test is skipped where tensorboard is not installed, hence the survivor), the
trajectory cache (the clamped top edge, the t = 0 state, the prompt's first row, the segment's
lower edge, the CFG scale checked, the trajectory and grid point drawn independently: one uniform
for both kept every marginal), the embedding store (an unknown storage dtype, the format version,
which side of a fingerprint difference is which, a reading process re-reading the manifest) and
the loss base (a partial loss checkpoint refused).

Skipped as equivalent: the manifest check's ``if strict`` inverted in the embedding store (the
store reads chunk 0 at once, whose non-strict re-read raises the same refusal; replaced by the
reader mutant), argsort without stable=True over the cache's prompt indices (a prompt's
trajectories still drawn uniformly), the embedding chunk file name's hash prefix length, the
resident shared fields stored with all rows (only row 0 is read), the manifest mtime shortcut
(a re-read gives the same entries) and a corrupted chunk's entry kept (it is replaced when
re-encoded).

Real bug found, not fixed here (tlcm/engine.py is another helper's this round): a resumed run
restores ``denoiser_evals`` from the last metrics.jsonl line (``Reporter.last``), which lags the
checkpoint whenever it falls between ``log_every`` lines or a stop signal lands between them
(log_every 3, stop after step 2: 52 evaluations instead of 86); tests/test_state_units.py holds
it as a strict xfail."""

from run import Mutant

CKPT = "tlcm/checkpoint.py"
REPORT = "tlcm/report.py"
TRAJ = "tlcm/data/trajectories.py"
EMB = "tlcm/data/embeddings.py"
BASE = "tlcm/losses/base.py"
TRACK = "tlcm/trackers.py"

T_CK = "tests/test_checkpoint.py"
T_CK_POINTER = f"{T_CK}::test_a_damaged_latest_pointer_falls_back_with_one_notice"
T_CK_SKIPPED = f"{T_CK}::test_skipped_steps_survive_a_resume"
T_CK_LATER = f"{T_CK}::test_resume_inside_a_later_phase_equals_the_uninterrupted_run"
T_CK_RECIPE = f"{T_CK}::test_resume_refuses_another_recipe_naming_the_fields_unless_asked"
T_CK_NAN = f"{T_CK}::test_nan_or_absurd_latest_weights_fall_back_to_the_previous_checkpoint"
T_TR = "tests/test_trackers.py"
T_TR_CLOSED = f"{T_TR}::test_sinks_are_closed_on_an_exception"
T_TR_SINKS = f"{T_TR}::test_sinks_get_the_numbers_of_metrics_jsonl"
T_TR_MISSING = f"{T_TR}::test_missing_tracker_package_is_one_line_before_the_model_loads"
T_CK_RERUN = f"{T_CK}::test_a_rerun_without_checkpoints_does_not_append_to_the_old_log"
T_TR_TORN = f"{T_TR}::test_a_resume_keeps_its_checkpoint_steps_line_and_drops_a_torn_one"
T_TR_TB = f"{T_TR}::test_tensorboard_scalars_and_hparams_equal_metrics_jsonl_after_a_resume"
T_TJ = "tests/test_trajectories.py"
T_TJ_GRID = f"{T_TJ}::test_grid_holds_every_milestone_and_skip_points"
T_TJ_STATES = f"{T_TJ}::test_cached_states_equal_a_direct_teacher_recomputation"
T_TJ_REFUSED = f"{T_TJ}::test_corrupted_or_mismatched_caches_are_refused"
T_TJ_REACH = f"{T_TJ}::test_sampling_reaches_every_segment_grid_pair_and_trajectory"
T_TJ_SAMPLE = f"{T_TJ}::test_sampling_is_deterministic_and_consistent_with_the_grid"
T_EM = "tests/test_embeddings.py"
T_EM_MALFORMED = f"{T_EM}::test_a_malformed_manifest_or_a_failed_write_is_refused_in_one_line"
T_EM_OTHER = f"{T_EM}::test_another_text_encoder_is_refused_in_one_line"
T_L = "tests/test_loss_contract.py"

U = "tests/test_state_units.py"
T_U_GLOBAL = f"{U}::test_checkpoints_are_named_pruned_and_fallen_back_to_by_global_step"
T_U_PICKLE = f"{U}::test_a_checkpoint_pickling_foreign_objects_is_not_unpickled"
T_U_LIMIT = f"{U}::test_a_weight_at_the_limit_is_sound_and_one_above_is_not"
T_U_EMPTY = f"{U}::test_a_student_with_an_empty_tensor_is_sound"
T_U_APPEND = f"{U}::test_each_report_appends_one_line"
T_U_LAST = f"{U}::test_last_skips_a_torn_last_line"
T_U_DISABLED = f"{U}::test_a_disabled_reporter_opens_no_tracker"
T_U_MISSPELT = f"{U}::test_a_misspelt_tracker_is_refused"
T_U_PURGE = f"{U}::test_a_resumed_tensorboard_writer_purges_from_the_step_after_the_checkpoint"
T_U_INDEPENDENT = f"{U}::test_the_trajectory_and_the_grid_point_are_drawn_independently"
T_U_DTYPE = f"{U}::test_an_unknown_storage_dtype_is_refused_in_one_line"
T_U_VERSION = f"{U}::test_a_cache_of_another_format_version_is_refused"
T_U_SIDES = f"{U}::test_a_fingerprint_refusal_says_what_the_cache_holds_and_what_the_model_is"
T_U_READER = f"{U}::test_a_reading_process_uses_the_chunks_the_writer_cached_after_it_started"
T_U_LOSS = f"{U}::test_a_loss_checkpoint_restores_everything_or_refuses"
T_U_EVALS = f"{U}::test_a_resume_between_log_lines_counts_every_denoiser_evaluation"

MUTANTS = [
    # ---- checkpoint.py ---------------------------------------------------------------------------
    Mutant(
        "ckpt-skipped-steps-not-saved",
        CKPT,
        '"skipped": list(skipped or [])}',
        '"skipped": []}',
        (T_CK_SKIPPED,),
        "the global steps skipped so far are lost at every save: a resumed run forgets them",
    ),
    Mutant(
        "ckpt-folder-named-by-the-phase-step",
        CKPT,
        'final = root / f"step-{state.global_step:07d}"',
        'final = root / f"step-{state.step:07d}"',
        (T_U_GLOBAL,),
        "the folder is named by the step in the phase: phase 2's step 1 replaces phase 1's step 1",
    ),
    Mutant(
        "ckpt-run-record-not-saved",
        CKPT,
        '    if run is not None:\n        record["run"] = run\n',
        '    if run is None:\n        record["run"] = run\n',
        (T_CK_RECIPE,),
        "the run record is never saved: a resume with another recipe is not refused",
    ),
    Mutant(
        "ckpt-pointer-newline-not-stripped",
        CKPT,
        'name = pointer.read_bytes().decode("utf-8").strip()',
        'name = pointer.read_bytes().decode("utf-8")',
        (T_CK_POINTER,),
        "a `latest` written by hand (echo step-... > latest: a trailing newline) is called damaged",
    ),
    Mutant(
        "ckpt-losses-pickle-not-weights-only",
        CKPT,
        'losses = torch.load(folder / "losses.pt", map_location=device, weights_only=True)',
        'losses = torch.load(folder / "losses.pt", map_location=device, weights_only=False)',
        (T_U_PICKLE,),
        "losses.pt is unpickled in full: a checkpoint can run arbitrary code, a foreign object loads",
    ),
    Mutant(
        "ckpt-weight-at-the-limit-is-unsound",
        CKPT,
        "            if peak > limit:",
        "            if peak >= limit:",
        (T_U_LIMIT,),
        "a weight exactly at --max-weight-abs is refused (documented: larger than the limit)",
    ),
    Mutant(
        "ckpt-empty-student-tensor-measured",
        CKPT,
        '_float_tensors(tree.get("student", {}), "student") if t.numel()]',
        '_float_tensors(tree.get("student", {}), "student")]',
        (T_U_EMPTY,),
        "an empty student tensor's max() raises: a student with one is never saved",
    ),
    Mutant(
        "ckpt-no-checkpoint-is-an-error",
        CKPT,
        "    if not candidates:\n        return None\n",
        "    if candidates is None:\n        return None\n",
        (T_CK_RERUN,),
        "a fresh run (no checkpoints folder) raises 'no loadable checkpoint' instead of starting",
    ),
    Mutant(
        "ckpt-damaged-pointer-not-reported",
        CKPT,
        'problems = [f"{root.name}/latest {pointer_problem}"] if pointer_problem else []',
        "problems = []",
        (T_CK_POINTER,),
        "a damaged `latest` is passed over silently",
    ),
    Mutant(
        "ckpt-nonfinite-paths-names-the-finite",
        CKPT,
        "for (path, _), flag in zip(found, flags, strict=True) if not flag]",
        "for (path, _), flag in zip(found, flags, strict=True) if flag]",
        (T_CK_NAN,),
        "the fallback line and the refusal name a finite tensor instead of the NaN one",
    ),
    # ---- report.py -------------------------------------------------------------------------------
    Mutant(
        "report-metrics-overwritten-each-line",
        REPORT,
        'with self.path.open("a") as f:',
        'with self.path.open("w") as f:',
        (T_U_APPEND,),
        "metrics.jsonl keeps only the last line",
    ),
    Mutant(
        "report-last-stops-at-a-torn-line",
        REPORT,
        "            except json.JSONDecodeError:\n                continue\n",
        "            except json.JSONDecodeError:\n                return 0\n",
        (T_U_LAST,),
        "a torn last line (a crash mid-write) restarts the resumed run's running totals at 0",
    ),
    Mutant(
        "report-nonfinite-values-written-as-nan",
        REPORT,
        "clean = {k: None if k in bad else v for k, v in record.items()}",
        "clean = dict(record)",
        (T_TR_SINKS,),
        "NaN is written as the bare token NaN: metrics.jsonl is no longer JSON",
    ),
    Mutant(
        "report-disabled-reporter-opens-trackers",
        REPORT,
        "        if self.enabled:\n            self.sinks += open_sinks(",
        "        if True:\n            self.sinks += open_sinks(",
        (T_U_DISABLED,),
        "every process of a multi-process run opens its own tensorboard / wandb run",
    ),
    Mutant(
        "report-clean-exit-marks-sinks-failed",
        REPORT,
        "sink.close(failed=exc[0] is not None)",
        "sink.close(failed=exc[0] is None)",
        (T_TR_CLOSED,),
        "a wandb run is marked failed when the training succeeded and vice versa",
    ),
    Mutant(
        "report-truncate-never-rewrites",
        REPORT,
        "        if len(keep) != len(lines):",
        "        if len(keep) == len(lines):",
        (T_TR_TORN,),
        "a resumed run appends after the lines it rewrites: duplicated steps in metrics.jsonl",
    ),
    # ---- trackers.py -----------------------------------------------------------------------------
    Mutant(
        "trackers-unknown-name-ignored",
        TRACK,
        '            else:\n                raise ValueError(f"unknown tracker',
        '            else:\n                continue\n                raise ValueError(f"unknown tracker',
        (T_U_MISSPELT,),
        "a misspelt tracker (tensorbord) is ignored silently: the run logs nowhere",
    ),
    Mutant(
        "trackers-tensorboard-purge-step-dropped",
        TRACK,
        "SummaryWriter(str(log_dir), purge_step=purge_step)",
        "SummaryWriter(str(log_dir))",
        (T_U_PURGE,),
        "a resumed run's tensorboard shows the rewritten steps twice",
    ),
    # ---- trajectories.py -------------------------------------------------------------------------
    Mutant(
        "trajectories-top-edge-not-clamped",
        TRAJ,
        "return [*edges[:-1], min(edges[-1], int(schedule.max_timestep))]",
        "return [*edges[:-1], max(edges[-1], int(schedule.max_timestep))]",
        (T_TJ_GRID,),
        "the grid starts at t = T (1000), outside the VP schedule's 0..999",
    ),
    Mutant(
        "trajectories-last-state-never-stored",
        TRAJ,
        "            for g in range(len(grid) - 1):",
        "            for g in range(len(grid) - 2):",
        (T_TJ_STATES,),
        "the t = 0 state is never written: segment 0's last pair reads uninitialised memory",
    ),
    Mutant(
        "trajectories-prompt-first-inclusive",
        TRAJ,
        "self.prompt_first = self.prompt_count.cumsum(0) - self.prompt_count",
        "self.prompt_first = self.prompt_count.cumsum(0)",
        (T_TJ_REACH,),
        "prompt p reads prompt p+1's trajectories",
    ),
    Mutant(
        "trajectories-segment-lower-edge-is-the-upper",
        TRAJ,
        "self.seg_lower = torch.tensor([grid.index(t) for t in edges[:-1]])",
        "self.seg_lower = torch.tensor([grid.index(t) for t in edges[1:]]) + 1",
        (T_TJ_REACH,),
        "only each segment's top pair is drawn",
    ),
    Mutant(
        "trajectories-guidance-scale-unchecked",
        TRAJ,
        '            "guidance_scale": guidance_scale,\n        }',
        "        }",
        (T_TJ_REFUSED,),
        "a cache built with another teacher CFG scale is used",
    ),
    Mutant(
        "trajectories-position-and-trajectory-one-draw",
        TRAJ,
        "u, v = torch.rand(2, b, generator=generator, device=on, dtype=torch.float64)",
        "u = v = torch.rand(b, generator=generator, device=on, dtype=torch.float64)",
        (T_U_INDEPENDENT,),
        "the trajectory and the grid point come from one uniform: they are correlated (early "
        "trajectories only ever give high-noise points of a segment)",
    ),
    # ---- embeddings.py ---------------------------------------------------------------------------
    Mutant(
        "embeddings-unknown-dtype-not-refused",
        EMB,
        "        if name not in STORAGE:\n            raise TLCMError(",
        "        if name in ():\n            raise TLCMError(",
        (T_U_DTYPE,),
        "an unknown storage dtype is a KeyError, not a one-line refusal",
    ),
    Mutant(
        "embeddings-reader-never-rereads-the-manifest",
        EMB,
        "            if self._key(k) not in self._entries:\n                self._read_manifest(strict=False)",
        "            if self._key(k) in ():\n                self._read_manifest(strict=False)",
        (T_U_READER,),
        "a reading process (rank > 0) encodes every chunk rank 0 cached after it opened the store",
    ),
    Mutant(
        "embeddings-version-unchecked",
        EMB,
        "        if found != (FORMAT, VERSION):",
        "        if found[0] != FORMAT:",
        (T_U_VERSION,),
        "a cache of another format version is read as this one",
    ),
    Mutant(
        "embeddings-fingerprint-difference-swapped",
        EMB,
        "{cached.get(key, 'absent')} in the cache, {ours.get(key, 'absent')} in this model",
        "{ours.get(key, 'absent')} in the cache, {cached.get(key, 'absent')} in this model",
        (T_U_SIDES,),
        "the refusal says the cache holds what this model holds and vice versa",
    ),
    # ---- losses/base.py --------------------------------------------------------------------------
    Mutant(
        "loss-checkpoint-state-loads-partially",
        BASE,
        "        self.load_state_dict(state)\n",
        "        self.load_state_dict(state, strict=False)\n",
        (T_U_LOSS,),
        "a loss's checkpoint missing an EMA target or owned model loads silently (a fresh one)",
    ),
    # ---- engine.py: a resume's running totals (the lead's fixes of this round's finding) ------------
    Mutant(
        "engine-evals-restored-from-the-lagging-metrics-line",
        "tlcm/engine.py",
        'saved = saved if saved is not None else self.reporter.last("denoiser_evals")',
        'saved = self.reporter.last("denoiser_evals")',
        ("tests/test_state_units.py::test_a_resume_between_log_lines_counts_every_denoiser_evaluation",),
        "a resume between log lines loses the evaluations since the last metrics line (the zoo's cost)",
    ),
    Mutant(
        "checkpoint-evals-not-saved",
        CKPT,
        '        record["denoiser_evals"] = int(denoiser_evals)\n',
        "        pass\n",
        ("tests/test_state_units.py::test_a_resume_between_log_lines_counts_every_denoiser_evaluation",),
        "the checkpoint does not hold the evaluation count: a resume falls back to the metrics line",
    ),
    Mutant(
        "engine-skip-streak-restarts-on-resume",
        "tlcm/engine.py",
        "        while restored and restored.state.global_step - streak in self.skipped:\n",
        "        while False:\n",
        ("tests/test_state_units.py::test_a_resume_in_the_middle_of_skipped_steps_continues_their_count",),
        "a run pre-empted mid-streak skips more steps in a row than max_consecutive_skips allows",
    ),
]
