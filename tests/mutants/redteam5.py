"""A fifth red-team audit (2026-12-06; 50 mutants, 34 survived then, each now caught): breakages that
no other catalogue makes, on lines none of their mutants edits, in the files no catalogue touched:
the stop signals (the first one kept, SIGHUP honoured, handlers restored, a second Ctrl-C), the
one-line errors (exit codes, a rank waiting for its stop), the files' modes, image grids, the
evaluation pipeline's students and samplers, the training command line, and the numbers that get
reported: the benchmarks' FLOP counts, samples/s, projected hours, speed-ups, relative differences,
units and their tables, the ablation ladder's table (columns, seeds, which rows win a merge) and
the method zoo's plan and verdict (leftover steps, which sampler, whether the seeds lie apart, when
the docs say preliminary); plus the loss and score registries and the toy scores' evaluation noise.
Four benchmark mutants were caught then only by the slow tiny run of benchmarks/gpu.py (2 minutes
each); they name the fast tests of test_benchmark_units.py instead; see run.py."""

from run import Mutant

PREEMPT = "tlcm/preemption.py"
ERRORS = "tlcm/errors.py"
FILES = "tlcm/files.py"
IMAGES = "tlcm/images.py"
GRIDS = "tlcm/sample_grids.py"
PIPELINE = "tlcm/eval/pipeline.py"
TRAIN = "tlcm/train.py"
COMMON = "benchmarks/common.py"
REPORT = "benchmarks/gpu_report.py"
RUNS = "benchmarks/gpu_runs.py"
SPEED = "benchmarks/gpu_speed.py"
MEMORY = "benchmarks/memory.py"
LADDER = "ablations/run.py"
ZOO = "ablations/zoo.py"
REGISTRY = "tlcm/losses/registry.py"
SCORING = "tlcm/scoring/__init__.py"
TOY_SCORES = "tlcm/toy/scores.py"

T_STOP = "tests/test_checkpoint.py::test_stop_signals_save_and_exit_75"
T_CTRL_C = "tests/test_checkpoint.py::test_a_second_ctrl_c_aborts_in_one_line"
T_RANK = "tests/test_checkpoint.py::test_under_torchrun_only_rank_0_prints_an_input_error"
T_PRE_UNITS = "tests/test_preemption_units.py"
T_NONFINITE = "tests/test_engine.py::test_nonfinite_loss_is_named_and_stops_or_skips"
T_UMASK = "tests/test_faults.py::test_every_file_a_run_writes_has_the_umask_mode"
T_FAULTS = "tests/test_faults.py::test_a_lora_that_fits_the_model_only_in_part_is_refused"
T_GRID = "tests/test_precision.py::test_phase_grid_runs_a_lora_student_on_bf16_weights_in_bf16"
T_EVAL_BF16 = "tests/test_precision.py::test_evaluation_runs_a_lora_student_on_bf16_weights_in_bf16"
T_GEN = "tests/test_eval_generate.py::test_students_from_an_export_a_lora_file_a_checkpoint_and_a_unet"
T_CLI = "tests/test_cli.py::test_a_run_refused_after_the_model_loaded_leaves_no_empty_folder"
T_BAD = "tests/test_bad_inputs.py::test_bad_input[misspelled recipe field]"
T_BAD_LOSS = "tests/test_bad_inputs.py::test_bad_input[misspelled loss field of the preset]"
T_PLUMBING = "tests/test_plumbing.py"
T_GPU_LIMIT = "tests/test_gpu_benchmark.py::test_time_limit_stops_after_the_running_section"
T_BENCH = "tests/test_benchmark_units.py"
T_ABL = "tests/test_ablations.py"
T_ZOO_STEPS = "tests/test_zoo.py::test_scaled_steps_meet_the_budget_within_one_step"
T_ZOO_VERDICT = "tests/test_zoo.py::test_the_verdict_names_the_lowest_fd_and_our_rank"
T_ZOO_DOCS = "tests/test_zoo.py::test_write_docs_labels_one_seed_preliminary"
T_ZOO_LEFTOVER = "tests/test_zoo.py::test_the_leftover_budget_goes_to_the_largest_remainders_first"
T_ZOO_SAMPLER = "tests/test_zoo.py::test_a_methods_better_sampler_is_the_one_with_the_lower_mean_fd"
T_ZOO_PRELIM = (
    "tests/test_zoo.py::test_the_docs_are_preliminary_while_any_miniature_has_fewer_than_three_seeds"
)
T_LOSSES = "tests/test_imports.py"
T_SCORING = "tests/test_eval.py"

MUTANTS = [
    # ---- stop signals ------------------------------------------------------------------------
    Mutant(
        "preempt-first-ctrl-c-aborts",
        PREEMPT,
        "if self.received is not None and signum == signal.SIGINT and single:",
        "if signum == signal.SIGINT and single:",
        (T_PRE_UNITS, T_STOP),
        "the first Ctrl-C raises KeyboardInterrupt: the work since the last checkpoint is lost",
    ),
    Mutant(
        "preempt-world-size-default",
        PREEMPT,
        'single = os.environ.get("WORLD_SIZE", "1") in ("", "1")',
        'single = os.environ.get("WORLD_SIZE", "0") in ("", "1")',
        (T_PRE_UNITS, T_CTRL_C),
        "outside torchrun (no WORLD_SIZE) a second Ctrl-C only repeats the request: it cannot abort",
    ),
    Mutant(
        "preempt-records-the-last-signal",
        PREEMPT,
        "self.received = self.received or signal.Signals(signum).name",
        "self.received = signal.Signals(signum).name",
        (T_PRE_UNITS, T_STOP),
        "a SIGHUP after SIGTERM overwrites it: the exit line names the wrong signal",
    ),
    Mutant(
        "preempt-sighup-not-handled",
        PREEMPT,
        'for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2")',
        'for name in ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2")',
        (T_PRE_UNITS, T_STOP),
        "a closed terminal (SIGHUP) kills the run instead of saving a checkpoint",
    ),
    Mutant(
        "preempt-handlers-reset-not-restored",
        PREEMPT,
        "            signal.signal(s, handler)",
        "            signal.signal(s, signal.SIG_DFL)",
        (T_PRE_UNITS, T_STOP),
        "after Trainer.run as a library the caller's own handlers are gone (reset to the default)",
    ),
    Mutant(
        "preempt-main-thread-never-installs",
        PREEMPT,
        "if threading.current_thread() is not threading.main_thread():",
        "if threading.current_thread() is threading.main_thread():",
        (T_PRE_UNITS, T_STOP),
        "Trainer.run in the main thread installs no handler: SIGTERM kills the run unsaved",
    ),
    # ---- one-line errors ---------------------------------------------------------------------
    Mutant(
        "errors-exit-code-always-2",
        ERRORS,
        "        sys.exit(err.exit_code)",
        "        sys.exit(2)",
        (T_PRE_UNITS, T_NONFINITE),
        "a NaN loss exits 2 (bad input) instead of 3: a scheduler retries a diverged run as a typo",
    ),
    Mutant(
        "errors-rank-stops-waiting-at-once",
        ERRORS,
        "if signals is not None and signals.received:",
        "if signals is not None:",
        (T_PRE_UNITS, T_RANK),
        "under torchrun a rank > 0's own error is never printed: it counts the handler as a stop",
    ),
    # ---- file modes --------------------------------------------------------------------------
    Mutant(
        "files-umask-mode-executable",
        FILES,
        "return 0o666 & ~mask",
        "return 0o777 & ~mask",
        (T_PLUMBING, T_UMASK),
        "every checkpoint and export file is executable (0755 under umask 022)",
    ),
    Mutant(
        "files-honour-umask-top-level-only",
        FILES,
        'for file in (f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]:',
        'for file in (f for f in path.glob("*") if f.is_file()) if path.is_dir() else [path]:',
        (T_PLUMBING, T_UMASK),
        "a save_pretrained folder's nested files (unet/, scheduler/) keep diffusers' 0600",
    ),
    # ---- image grids -------------------------------------------------------------------------
    Mutant(
        "images-upscale-floor",
        IMAGES,
        "factor = max(1, -(-min_side // images.shape[-1]))",
        "factor = max(1, min_side // images.shape[-1])",
        (T_PLUMBING, T_GRID),
        "a 48 px image is not upscaled (floor of 64 / 48): grids below the promised minimum side",
    ),
    Mutant(
        "images-clamp-at-zero",
        IMAGES,
        "images = images.detach().float().cpu().clamp(-1, 1) * 0.5 + 0.5",
        "images = images.detach().float().cpu().clamp(0, 1) * 0.5 + 0.5",
        (T_PLUMBING, T_GRID),
        "images in [-1, 1] clamped to [0, 1]: every dark pixel is mid-grey",
    ),
    Mutant(
        "grid-first-ten-prompts",
        GRIDS,
        "prompts = list(prompts[:: max(1, len(prompts) // 10)][:10])",
        "prompts = list(prompts[:10])",
        (T_PLUMBING, T_GRID),
        "the sample grid shows the first 10 training prompts, not 10 spread over them (digits 0-9)",
    ),
    Mutant(
        "grid-rows-by-step-count",
        GRIDS,
        "return save_grid(torch.cat(rows), path, nrow=len(prompts))",
        "return save_grid(torch.cat(rows), path, nrow=len(inference_steps))",
        (T_PLUMBING, T_GRID),
        "the grid wraps after len(steps) images: its rows are no longer one step count each",
    ),
    # ---- evaluation pipeline -----------------------------------------------------------------
    Mutant(
        "pipeline-label-of-run-export",
        PIPELINE,
        'return path.parent.name if path.name == "student" else path.stem',
        "return path.stem",
        (T_PLUMBING, T_GEN),
        "every RUN/student export is labelled 'student' in the results table",
    ),
    Mutant(
        "pipeline-export-scheduler-ignored",
        PIPELINE,
        'if (path / "scheduler" / "scheduler_config.json").is_file():',
        'if (path / "scheduler_config.json").is_file():',
        (T_PLUMBING, T_GEN),
        "an export's own scheduler/ (its M, gammas) is ignored: an M = 4 student sampled on M = 8",
    ),
    Mutant(
        "pipeline-partial-lora-accepted",
        PIPELINE,
        "if loaded == 0 or loaded < wanted:",
        "if loaded == 0:",
        (T_FAULTS, T_GEN),
        "a LoRA of which only some layers match the model is scored as the student",
    ),
    Mutant(
        "pipeline-euler-a-is-euler",
        "tlcm/checks.py",
        '"euler-a": "EulerAncestralDiscreteScheduler",',
        '"euler-a": "EulerDiscreteScheduler",',
        (T_PLUMBING, T_GEN),
        "--scheduler euler-a samples the teacher with plain Euler",
    ),
    # ---- training command line ---------------------------------------------------------------
    Mutant(
        "train-refused-run-leaves-its-folder",
        TRAIN,
        "if fresh:  # refused before anything was written",
        "if not fresh:  # refused before anything was written",
        (T_CLI,),
        "a bad flag found once the model loaded leaves an empty run folder behind",
    ),
    Mutant(
        "train-flag-value-not-split",
        TRAIN,
        'close = difflib.get_close_matches(flag.split("=", 1)[0], known, n=1, cutoff=0.75)',
        "close = difflib.get_close_matches(flag, known, n=1, cutoff=0.75)",
        (T_PLUMBING, T_BAD, T_BAD_LOSS),
        "--recipes.phases.mlcd.lrr=3 gets no 'did you mean': the value is matched with the flag",
    ),
    Mutant(
        "train-preempted-run-scored",
        TRAIN,
        "if run.preempted or not run.is_main:",
        "if not run.is_main:",
        (T_PLUMBING, T_STOP),
        "a pre-empted run is scored and summarised as if it had finished",
    ),
    # ---- benchmarks: shared plumbing ---------------------------------------------------------
    Mutant(
        "bench-results-default-folder",
        COMMON,
        '(out_dir / f"{name}.json").write_text(',
        '(RESULTS / f"{name}.json").write_text(',
        (T_BENCH, T_GPU_LIMIT),
        "--out is ignored for the JSON: it overwrites benchmarks/results/ (the committed numbers)",
    ),
    Mutant(
        "bench-markdown-separator-short",
        COMMON,
        'lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]',
        'lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) - 1)]',
        (T_BENCH, T_GPU_LIMIT),
        "the separator has one cell too few: GitHub renders no table",
    ),
    Mutant(
        "bench-provenance-requested-threads",
        COMMON,
        '"threads": torch.get_num_threads(),',
        '"threads": threads,',
        (T_BENCH, T_GPU_LIMIT),
        "the results report the threads asked for, not the ones torch used",
    ),
    Mutant(
        "bench-call-log-channels",
        COMMON,
        "log.calls.append((log.role, int(sample.shape[0]), torch.is_grad_enabled(), adapters))",
        "log.calls.append((log.role, int(sample.shape[1]), torch.is_grad_enabled(), adapters))",
        (T_BENCH,),
        "UNet calls are counted in channels (4), not in samples",
    ),
    # ---- benchmarks: gpu report --------------------------------------------------------------
    Mutant(
        "report-total-column-shifted",
        REPORT,
        'rows.append(["total", "", "", "", "", "", "", "", _f(sec["projected_hours_total"], "{:.3g}")])',
        'rows.append(["total", "", "", "", "", "", "", _f(sec["projected_hours_total"], "{:.3g}")])',
        (T_BENCH, T_GPU_LIMIT),
        "the total projected hours land in the 'preset batch x iters' column",
    ),
    Mutant(
        "report-embedding-store-mib",
        REPORT,
        '_f(cache["bytes"] / 1e6, "{:.1f}")',
        '_f(cache["bytes"] / 2**20, "{:.1f}")',
        (T_BENCH, T_GPU_LIMIT),
        "the 'embedding store MB' column is in MiB",
    ),
    Mutant(
        "report-first-section-time-limited",
        REPORT,
        "ok = not self.started_any or self.args.time_limit is None or self.elapsed() < self.args.time_limit",
        "ok = self.args.time_limit is None or self.elapsed() < self.args.time_limit",
        (T_BENCH, T_GPU_LIMIT),
        "--time-limit 0 skips even the first section: a run reports nothing",
    ),
    # ---- benchmarks: timed phases ------------------------------------------------------------
    Mutant(
        "runs-rel-diff-one-sided",
        RUNS,
        "return {k: abs(a[k] - b[k]) / max(abs(a[k]), abs(b[k]), 1e-30) for k in a if k in b}",
        "return {k: abs(a[k] - b[k]) / max(abs(a[k]), 1e-30) for k in a if k in b}",
        (T_BENCH,),
        "relative differences divided by the first value only: 1 vs 2 reads 1.0, 2 vs 1 reads 0.5",
    ),
    Mutant(
        "runs-projected-in-minutes",
        RUNS,
        'row["projected_hours"] = row["s_per_sample"] * paper.batch_size * paper.steps / 3600',
        'row["projected_hours"] = row["s_per_sample"] * paper.batch_size * paper.steps / 60',
        (T_BENCH,),
        "projected hours are minutes: a 2 h phase reported as 120 h",
    ),
    Mutant(
        "runs-s-per-micro-batch",
        RUNS,
        '"s_per_sample": s / phase.batch_size,',
        '"s_per_sample": s / (phase.batch_size // phase.grad_accum),',
        (T_BENCH,),
        "s / sample divides by the micro-batch: accumulated steps look grad_accum x slower",
    ),
    Mutant(
        "runs-phases-repeat-a-global-step",
        RUNS,
        "global_step += 1 + timed_steps",
        "global_step += timed_steps",
        (T_BENCH,),
        "each phase's warm-up repeats the previous phase's last global step (its draws)",
    ),
    Mutant(
        "runs-flops-in-giga",
        RUNS,
        '"tflop_per_step": flops / 1e12,',
        '"tflop_per_step": flops / 1e9,',
        (T_BENCH,),
        "TFLOP / step is GFLOP / step: every phase 1000 x dearer than it is",
    ),
    # ---- benchmarks: speed section -----------------------------------------------------------
    Mutant(
        "speed-projection-per-step",
        SPEED,
        'train_h = PAPER_MLCD_SAMPLES * row["s_per_step"] / row["batch"] / 3600',
        'train_h = PAPER_MLCD_SAMPLES * row["s_per_step"] / 3600',
        (T_BENCH,),
        "the paper's MLCD hours at s / step per sample: batch x too many",
    ),
    Mutant(
        "speed-cache-build-not-per-trajectory",
        SPEED,
        'per_trajectory = row["cache_build_s"] / row["cache_trajectories"]',
        'per_trajectory = row["cache_build_s"]',
        (T_BENCH,),
        "the cache's build cost counted per cache, not per trajectory",
    ),
    Mutant(
        "speed-speedup-inverted",
        SPEED,
        'row["speedup_vs_eager"] = eager["s_per_step"] / row["s_per_step"]',
        'row["speedup_vs_eager"] = row["s_per_step"] / eager["s_per_step"]',
        (T_BENCH,),
        "a 2x faster variant reports x 0.5",
    ),
    Mutant(
        "speed-evals-per-step-off-by-one",
        SPEED,
        'row["denoiser_evals_per_step"] = (trainer.denoiser_evals - evals) / timed_steps',
        'row["denoiser_evals_per_step"] = (trainer.denoiser_evals - evals) / (timed_steps + 1)',
        (T_BENCH,),
        "net evals / step divided by one step too many (the sync-counted step is not in the count)",
    ),
    Mutant(
        "memory-vm-hwm-in-kib",
        MEMORY,
        'return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024',
        'return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))',
        (T_BENCH,),
        "the peak RSS read in KiB and reported as bytes: 1024 x too small",
    ),
    # ---- ablation ladder ---------------------------------------------------------------------
    Mutant(
        "ladder-spread-max-min",
        "ablations/tables.py",
        'return mean if len(values) == 1 else f"{mean} ({min(values):.{digits}f}-{max(values):.{digits}f})"',
        'return mean if len(values) == 1 else f"{mean} ({max(values):.{digits}f}-{min(values):.{digits}f})"',
        (T_ABL,),
        "the seeds' spread printed max-min",
    ),
    Mutant(
        "ladder-columns-in-step-order",
        LADDER,
        "            for n in (2, 4, 8, 1)",
        "            for n in (1, 2, 4, 8)",
        (T_ABL,),
        "the cells come 1, 2, 4, 8 under the header's 2, 4, 8, 1: every column mislabelled",
    ),
    Mutant(
        "ladder-seeds-counts-step-counts",
        LADDER,
        "seeds = len(rows[1]) if 1 in rows else 0",
        "seeds = len(rows)",
        (T_ABL,),
        "the seeds column counts step counts (4), not seeds",
    ),
    Mutant(
        "ladder-old-rows-win-the-merge",
        LADDER,
        "rows = {**_table_rows(old), **_table_rows(new)}",
        "rows = {**_table_rows(new), **_table_rows(old)}",
        (T_ABL,),
        "a rerun's rows are dropped for the stale ones already in docs/ablations.md",
    ),
    # ---- method zoo --------------------------------------------------------------------------
    Mutant(
        "zoo-remainders-smallest-first",
        ZOO,
        "for n in sorted(exact, key=lambda n: exact[n] - math.floor(exact[n]), reverse=True):",
        "for n in sorted(exact, key=lambda n: exact[n] - math.floor(exact[n])):",
        (T_ZOO_LEFTOVER, T_ZOO_STEPS),
        "the budget's leftover steps go to the phases with the smallest remainders first",
    ),
    Mutant(
        "zoo-better-sampler-is-worse",
        "ablations/zoo_runs.py",
        "return min(cells) if cells else None",
        "return max(cells) if cells else None",
        (T_ZOO_SAMPLER, T_ZOO_VERDICT),
        "the verdict and frontier read each method at its worse sampler",
    ),
    Mutant(
        "zoo-seeds-apart-overlap",
        ZOO,
        'apart = "-" if top == BASE_METHOD else ("yes" if max(seeds) < min(ours[3]) else "no")',
        'apart = "-" if top == BASE_METHOD else ("yes" if min(seeds) < min(ours[3]) else "no")',
        (T_ZOO_VERDICT,),
        "'seeds apart: yes' where the best's seeds overlap tlcm-full's",
    ),
    Mutant(
        "zoo-preliminary-max-seeds",
        ZOO,
        "preliminary = seeds and min(seeds) < 3",
        "preliminary = seeds and max(seeds) < 3",
        (T_ZOO_PRELIM, T_ZOO_DOCS),
        "a zoo with 3 seeds on one miniature and 1 on the other is not marked preliminary",
    ),
    # ---- registries and toy scores -----------------------------------------------------------
    Mutant(
        "registry-duplicate-loss-overrides",
        REGISTRY,
        "if name in LOSSES and LOSSES[name] is not cls:",
        "if name in LOSSES and LOSSES[name] is cls:",
        (T_PLUMBING, T_LOSSES),
        "a second loss under a taken name silently replaces the built-in one",
    ),
    Mutant(
        "scoring-duplicate-factory-overrides",
        SCORING,
        "if current is not None and current is not factory:",
        "if current is not None and current is factory:",
        (T_PLUMBING, T_SCORING),
        "a second metric under a taken name silently replaces the built-in one",
    ),
    Mutant(
        "scoring-delete-drops-the-other-use",
        SCORING,
        "        if not SCORES[name]:\n            del SCORES[name]",
        "        if SCORES[name]:\n            del SCORES[name]",
        (T_PLUMBING, T_SCORING),
        "unregistering a score's reward also removes its metric",
    ),
    Mutant(
        "toy-scores-every-batch-same-noise",
        TOY_SCORES,
        "latents = sampler(cond, uncond, noise[start : start + batch_size].to(base.device), step_gen)",
        "latents = sampler(cond, uncond, noise[:batch_size].to(base.device), step_gen)",
        (T_PLUMBING, T_EVAL_BF16),
        "every batch of 250 evaluation prompts starts from the first batch's noise",
    ),
]
