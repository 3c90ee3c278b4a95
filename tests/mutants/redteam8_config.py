"""An eighth red-team audit, area config (2026-12-06; 20 mutants, 19 survived at first, each now
caught): the GPU benchmark's code paths that its CPU rehearsal runs, on lines no earlier catalogue
edits: how each phase's recipe is built (the preset's batch in MICRO_BATCH micro-batches, 1 + timed
steps, checkpointing on the GPU, DMD's 5 fake-score updates and 1024 px flow models outside tiny
mode), how steps are timed (the device synchronised before the clock is read, each step on its own
clock, the speed section's median, the inference warm-up left out), what is counted (finite steps),
which run is labelled checkpointing on, the inference speed-ups and the teacher's own scheduler;
plus validation edges (gamma 1 = LCM, max-skipped-fraction 0), smoke_recipe's resume flag (the
benchmarks start fresh), the loss class in recipe_dict (caught at first only by a training test,
tests/test_export.py::test_model_card; now by a unit test) and the wandb run's exit code. The
benchmark mutants are caught by unit tests with a fake clock whose ``sync`` is the device's work
(tests/test_benchmark_units.py), not by the 2-minute rehearsal."""

from run import Mutant

RUNS = "benchmarks/gpu_runs.py"
SPEED = "benchmarks/gpu_speed.py"
OPTIONS = "benchmarks/gpu_options.py"
CONFIG = "tlcm/config.py"
CHECKS = "tlcm/checks.py"
TRACKERS = "tlcm/trackers.py"

UNITS = "tests/test_benchmark_units.py"
T_FULL = f"{UNITS}::test_a_full_phase_recipe_keeps_the_presets_batch_in_micro_batches_of_micro_batch"
T_TINY = f"{UNITS}::test_a_tiny_or_whole_phase_recipe_runs_its_own_batch"
T_CLOCK = f"{UNITS}::test_a_timed_step_waits_for_the_device_and_is_timed_alone"
T_MEDIAN = f"{UNITS}::test_the_speed_rows_take_the_median_of_device_synchronised_steps"
T_WARM = f"{UNITS}::test_inference_times_leave_the_warm_up_call_out"
T_CKPT = f"{UNITS}::test_the_checkpointing_rows_are_labelled_by_the_run_that_had_it_on"
T_INFER = f"{UNITS}::test_inference_speedups_are_the_teachers_seconds_over_each_rows"
T_FRESH = f"{UNITS}::test_a_benchmark_recipe_starts_fresh"
T_DICT = "tests/test_config_units.py::test_recipe_dict_names_each_loss_class_and_writes_plain_json_values"
T_RECIPE_EDGES = "tests/test_bad_inputs.py::test_a_recipe_at_the_edges_of_its_ranges_validates"
T_WANDB = "tests/test_trackers.py::test_a_wandb_run_is_marked_failed_only_when_the_run_failed"
T_EDGES = "tests/test_bad_inputs.py::test_the_edges_of_every_range_pass_and_one_past_them_fails"

MUTANTS = [
    Mutant(
        "bench-accum-is-the-micro-batch",
        RUNS,
        "accum = batch // micro[name]",
        "accum = micro[name]",
        (T_FULL,),
        "SDXL's MLCD at batch 32 runs 8 micro-batches of 4 instead of 4 of 8: the phase is timed at "
        "another micro-batch than MICRO_BATCH says (and its memory, the point of the run, is wrong)",
    ),
    Mutant(
        "bench-full-runs-one-micro-batch",
        RUNS,
        "TINY_BATCH if tiny else phase.batch_size",
        "TINY_BATCH if tiny else micro[name]",
        (T_FULL,),
        "the full (GPU) run times one micro-batch instead of the preset's global batch: no gradient "
        "accumulation is measured, s / sample is of another batch than the one projected",
    ),
    Mutant(
        "bench-phase-steps-without-the-warm-up",
        RUNS,
        "steps=1 + timed_steps, batch_size=batch",
        "steps=timed_steps, batch_size=batch",
        (T_FULL, T_TINY),
        "each phase is built with one step fewer than the warm-up plus the timed steps call: the last "
        "timed step runs past the phase's end (lr schedule at its end, a phase of 1 step with --steps 1)",
    ),
    Mutant(
        "bench-full-dmd-one-fake-update",
        RUNS,
        'if "dmd" in losses and tiny:',
        'if "dmd" in losses:',
        (T_FULL,),
        "the GPU run's DMD phase does 1 fake-score update per step instead of the preset's 5: its "
        "s / step and projected hours come out several times too small",
    ),
    Mutant(
        "bench-no-checkpointing-on-the-gpu",
        RUNS,
        "gradient_checkpointing=not tiny,",
        "gradient_checkpointing=tiny,",
        (T_FULL, T_TINY),
        "the full run trains without gradient checkpointing: the MICRO_BATCH sizes chosen for "
        "checkpointing run out of memory (or time another configuration)",
    ),
    Mutant(
        "bench-full-flow-models-at-16-px",
        RUNS,
        "flow = TINY_FLOW if tiny and base.model.resolution else {}",
        "flow = TINY_FLOW if base.model.resolution else {}",
        (T_FULL,),
        "the full SD3 / FLUX runs train at 16 px with 16 T5 tokens instead of the presets' 1024 px: "
        "every number of those sections is hundreds of times too small",
    ),
    Mutant(
        "bench-clock-read-before-the-device-sync",
        RUNS,
        "        terms, ok = trainer.train_step(built, step + 1 + i)\n        sync(device)\n"
        "        times.append(time.perf_counter() - start)\n",
        "        terms, ok = trainer.train_step(built, step + 1 + i)\n"
        "        times.append(time.perf_counter() - start)\n        sync(device)\n",
        (T_CLOCK,),
        "on CUDA the clock is read when the kernels are queued, not done: s / step measures the "
        "host's launch time, the GPU's work is left out",
    ),
    Mutant(
        "bench-step-times-cumulative",
        RUNS,
        "    for i in range(timed_steps):\n        start = time.perf_counter()\n",
        "    start = time.perf_counter()\n    for i in range(timed_steps):\n",
        (T_CLOCK,),
        "each timed step's seconds run from the first timed step's start: the k-th step counts k "
        "steps, s / step is (n + 1) / 2 times too large",
    ),
    Mutant(
        "bench-every-timed-step-finite",
        RUNS,
        "finite += bool(ok)",
        "finite += 1",
        (T_CLOCK,),
        "a phase whose steps were all non-finite (skipped) reports them finite: a broken phase "
        "looks timed and fine",
    ),
    Mutant(
        "speed-clock-read-before-the-device-sync",
        SPEED,
        "            terms, _ = trainer.train_step(built, step)\n            sync(device)\n"
        "            times.append(time.perf_counter() - start)\n",
        "            terms, _ = trainer.train_step(built, step)\n"
        "            times.append(time.perf_counter() - start)\n            sync(device)\n",
        (T_MEDIAN,),
        "the speed section times kernel launches, not the GPU's work: every variant looks as fast "
        "as its host, and the speed-ups are noise",
    ),
    Mutant(
        "speed-mean-not-median",
        SPEED,
        "s = statistics.median(times)",
        "s = statistics.mean(times)",
        (T_MEDIAN,),
        "a graph capture or recompilation in one timed step inflates the row's s / step (the "
        "report says median): the graphs rows look slower than they are",
    ),
    Mutant(
        "inference-warm-up-timed",
        RUNS,
        "    call()  # warm-up\n",
        "",
        (T_WARM,),
        "the first (warm-up) pipeline call, with its cuDNN autotuning and allocations, is one of "
        "the timed ones: s / image of 2 repeats is the mean of a cold and a warm call",
    ),
    Mutant(
        "options-checkpointing-on-and-off-swapped",
        OPTIONS,
        'out["on" if on else "off"]',
        'out["off" if on else "on"]',
        (T_CKPT,),
        "the checkpointing on / off table swaps its columns: checkpointing looks faster and hungrier",
    ),
    Mutant(
        "inference-speedup-inverted",
        RUNS,
        'row["speedup_vs_teacher"] = teacher["s_per_image"] / row["s_per_image"]',
        'row["speedup_vs_teacher"] = row["s_per_image"] / teacher["s_per_image"]',
        (T_INFER,),
        "the \"x teacher\" column gives the student's seconds over the teacher's: a 12x faster "
        "student reads 0.08",
    ),
    Mutant(
        "inference-teacher-on-the-student-scheduler",
        RUNS,
        "    pipe.scheduler = teacher_scheduler\n",
        "",
        (T_INFER,),
        "the teacher is timed with the student's exported TLCM scheduler at 25 steps instead of its "
        "own sampler: the baseline of every speed-up is another sampler's",
    ),
    Mutant(
        "config-smoke-recipe-always-resumes",
        CONFIG,
        "            resume=resume,\n",
        "            resume=True,\n",
        (T_FRESH,),
        "a benchmark (shrink: resume=False) resumes from the checkpoint an earlier run left in its "
        "folder and times nothing, or a finished phase",
    ),
    Mutant(
        "config-recipe-dict-without-loss-class",
        CONFIG,
        "return {**tag, **{f.name: plain(getattr(value, f.name)) for f in fields(value)}}",
        "return {f.name: plain(getattr(value, f.name)) for f in fields(value)}",
        (T_DICT,),
        "the saved recipe no longer says which loss class a term is: two losses with the same "
        "fields are indistinguishable in recipe.json and in the trackers' config",
    ),
    Mutant(
        "checks-gamma-one-refused",
        CHECKS,
        "if gamma is not None and not 0.0 <= gamma <= 1.0:",
        "if gamma is not None and not 0.0 <= gamma < 1.0:",
        (T_EDGES,),
        "--gamma 1 (the LCM sampler, as the message itself says) is refused",
    ),
    Mutant(
        "checks-max-skipped-fraction-zero-refused",
        CHECKS,
        "if not 0 <= rt.max_skipped_fraction <= 1:",
        "if not 0 < rt.max_skipped_fraction <= 1:",
        (T_RECIPE_EDGES,),
        "--recipes.runtime.max-skipped-fraction 0 (no skipped step tolerated) is refused",
    ),
    Mutant(
        "trackers-wandb-exit-code-inverted",
        TRACKERS,
        "exit_code=1 if failed else 0",
        "exit_code=0 if failed else 1",
        (T_WANDB,),
        "every finished wandb run is marked failed and every crashed one finished",
    ),
]
