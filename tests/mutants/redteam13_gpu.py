"""A thirteenth red-team audit, area gpu (2026-12-07): the GPU benchmark's lines no earlier
catalogue edits (benchmarks/gpu.py, gpu_runs.py, gpu_speed.py, gpu_options.py, gpu_report.py).
34 mutants; 32 survived at first against tests/test_benchmark_units.py and
tests/test_gpu_models_units.py, each now caught by tests/test_gpu_bench_units.py (direct calls,
CUDA calls faked, 25 tests in ~1 s). The two caught at first: the default steps
(test_sections_run_in_the_benchmarks_order...) and the projection from the timed phase (only by
luck: the fake phase of test_the_phases_use_consecutive_global_steps has no ``steps``, so that phase
failed; no test checked that the hours use the preset's batch and iterations). It is the code of a
one-shot 15-minute H200 session where a wrong number or a crash wastes the session: peak
GiB (2**30, the allocator's maximum, reset per phase), projected hours from the preset's batch and
the paper's iterations (not the timed run's), phases and sections refused by the time limit, the
last timed step's terms (the checkpointing comparison's step 1), the miniature's steps / s, the
speed section's first-step seconds, largest term difference, lr 0, SDXL micro-batch of 8, the
miniature's 20 timed steps, the trajectory-cache row and host-sync counting, the memory plan's
rows, the option preset (DPO, teacher-feature GAN at t = 500), gpu.py's defaults, section loop,
published sizes and FLUX's one micro-batch per step, and the columns of gpu.md's tables.

One REAL bug, fixed: gpu_report._checkpointing read ``off["terms"]`` when the checkpointing-off run
had failed (out of memory is the likely failure: that run is there to show the memory
checkpointing saves) and has no terms: a KeyError in ``tables()``, raised by the report's rewrite
after the part, again by main()'s rewrite after recording the section's failure, outside its
try: the whole benchmark stopped, losing every later section (sd3, flux-inference, ...) and the
files' last state. Now ``off.get("terms", {})``; test_a_failed_run_without_checkpointing_leaves_
the_report_writable; mutant gpu-report-failed-off-run-crashes puts it back.

Equivalent mutants skipped: ``statistics.median`` -> ``mean`` in _time_call (inference repeats:
3, median is undocumented; a choice, not a bug); swapping the order of ``kernels`` among flash /
cuDNN / efficient (rows are labelled); PLAN_BUDGET_GIB 79 -> 80 (a constant the test would only
restate); ``if i and not allow()`` -> ``if not allow()`` in _group (the group's first row was just
allowed; a second call only re-asks the clock)."""

from run import Mutant

GPU = "benchmarks/gpu.py"
RUNS = "benchmarks/gpu_runs.py"
SPEED = "benchmarks/gpu_speed.py"
OPTIONS = "benchmarks/gpu_options.py"
REPORT = "benchmarks/gpu_report.py"

T = "tests/test_gpu_bench_units.py"
T_PEAK = f"{T}::test_peak_memory_is_the_allocators_maximum_in_gib"
T_PEAK_PHASE = f"{T}::test_each_phase_reports_its_own_peak_memory_and_the_loaded_weights"
T_PAPER = f"{T}::test_projected_hours_use_the_presets_batch_and_iterations_not_the_timed_runs"
T_REFUSED = f"{T}::test_phases_refused_by_the_time_limit_are_each_reported_skipped"
T_LAST = f"{T}::test_a_phase_keeps_the_warm_up_steps_terms_and_the_last_timed_steps"
T_MINI = f"{T}::test_the_miniature_run_scales_every_phase_and_reports_its_own_steps_per_second"
T_FIRST = f"{T}::test_the_first_step_seconds_are_the_first_warm_up_steps"
T_MAXDIFF = f"{T}::test_the_term_difference_is_the_largest_over_the_terms"
T_LR0 = f"{T}::test_a_speed_trainer_is_built_at_lr_0_on_the_miniatures_batch"
T_SDXL8 = f"{T}::test_the_sdxl_speed_rows_run_one_checkpointed_micro_batch_of_8"
T_RUN_SPEED = f"{T}::test_the_speed_section_runs_uncompiled_rows_first_and_the_miniature_at_least_20_steps"
T_CACHE = f"{T}::test_the_trajectory_cache_row_trains_on_its_8_prompts_with_no_teacher_calls"
T_SYNCS = f"{T}::test_host_syncs_counts_every_synchronising_call_and_restores_the_mode"
T_PLAN = f"{T}::test_the_memory_plan_rows_report_the_plans_accumulation_and_line"
T_CKPT = f"{T}::test_the_checkpointing_comparison_reads_step_1_from_the_timed_steps_terms"
T_PRESET = f"{T}::test_the_option_preset_is_dpo_and_the_timm_pixel_gan_at_the_presets_batches"
T_DEFAULTS = f"{T}::test_defaults_are_2_timed_steps_on_a_gpu_and_1_in_tiny_mode"
T_MAIN = f"{T}::test_every_section_after_the_time_limit_is_marked_skipped_and_a_failure_does_not_stop_the_run"
T_MODELS = f"{T}::test_a_built_model_row_gives_the_published_size_in_the_counts_unit"
T_LARGE = f"{T}::test_flux_times_one_step_of_one_micro_batch_per_phase_and_sdxl_the_presets_batch"
T_PHASE_TABLE = f"{T}::test_the_phase_table_puts_each_number_under_its_column"
T_SPEED_TABLE = f"{T}::test_the_speed_table_puts_each_number_under_its_column"
T_CKPT_TABLE = f"{T}::test_the_checkpointing_table_puts_step_0_and_step_1_differences_in_their_columns"
T_OFF_FAILED = f"{T}::test_a_failed_run_without_checkpointing_leaves_the_report_writable"
T_PLAN_TABLE = f"{T}::test_the_memory_plan_table_gives_micro_batch_times_accumulation"

T_SECTIONS = "tests/test_gpu_models_units.py::test_sections_run_in_the_benchmarks_order_whatever_order_they_are_asked_in"

MUTANTS = [
    # ---- gpu_runs.py: memory, projections, phases -----------------------------------------------
    Mutant(
        "gpu-peak-in-gb",
        RUNS,
        "GIB = 2**30",
        "GIB = 10**9",
        (T_PEAK,),
        "peak GiB divided by 1e9: every memory number 7 % too high (an 80 GiB card reads 85.9)",
    ),
    Mutant(
        "gpu-peak-is-current-memory",
        RUNS,
        "torch.cuda.max_memory_allocated() / GIB",
        "torch.cuda.memory_allocated() / GIB",
        (T_PEAK,),
        "peak GiB reads what is allocated after the step (the weights), not the step's peak",
    ),
    Mutant(
        "gpu-peak-not-reset-per-phase",
        RUNS,
        '    if device.startswith("cuda"):\n        torch.cuda.reset_peak_memory_stats()\n'
        "    counter = FlopCounterMode(display=False)",
        "    counter = FlopCounterMode(display=False)",
        (T_PEAK_PHASE,),
        "each phase's peak is the run's peak so far: LCD reports MLCD's memory",
    ),
    Mutant(
        "gpu-projection-from-the-timed-phase",
        RUNS,
        "row = time_phase(trainer, name, phase, preset.phases[name], device, global_step, timed_steps)",
        "row = time_phase(trainer, name, phase, phase, device, global_step, timed_steps)",
        (T_PAPER,),
        "projected hours from the timed run's batch and 1 + --steps iterations, not the preset's "
        "32 x 12k: hours off by ~4 orders of magnitude",
    ),
    Mutant(
        "gpu-refused-phase-drops-the-rest",
        RUNS,
        'report({"phase": name, "batch": phase.batch_size, "status": "skipped (time limit)"})\n'
        "            continue",
        'report({"phase": name, "batch": phase.batch_size, "status": "skipped (time limit)"})\n'
        "            break",
        (T_REFUSED,),
        "after the first phase the time limit refuses, the later ones are missing from the report "
        "instead of marked skipped",
    ),
    Mutant(
        "gpu-last-terms-are-the-warm-ups",
        RUNS,
        "        terms, ok = trainer.train_step(built, step + 1 + i)\n",
        "        _, ok = trainer.train_step(built, step + 1 + i)\n",
        (T_LAST,),
        "last_terms are the warm-up step's: the checkpointing comparison's step 1 repeats step 0",
    ),
    Mutant(
        "gpu-miniature-steps-per-s-of-the-full-preset",
        RUNS,
        "steps = sum(p.steps for p in phases.values())",
        "steps = sum(p.steps for p in base.phases.values())",
        (T_MINI,),
        "the miniature's steps / s counts the preset's steps, not the fraction run: 5x too fast",
    ),
    Mutant(
        "gpu-miniature-phase-scaled-to-zero",
        RUNS,
        "replace(p, steps=max(1, round(p.steps * fraction)))",
        "replace(p, steps=round(p.steps * fraction))",
        (T_MINI,),
        "a small --mini-fraction rounds a phase to 0 steps (refused by the recipe check, or skipped)",
    ),
    # ---- gpu_speed.py ----------------------------------------------------------------------------
    Mutant(
        "gpu-speed-first-step-is-the-second",
        SPEED,
        'row.setdefault("first_step_s", time.perf_counter() - start)',
        'row["first_step_s"] = time.perf_counter() - start',
        (T_FIRST,),
        "first step s is the second warm-up step's: the compilation time is not shown",
    ),
    Mutant(
        "gpu-speed-smallest-term-difference",
        SPEED,
        'row["max_term_rel_diff"] = max(diffs, default=0.0)',
        'row["max_term_rel_diff"] = min(diffs, default=0.0)',
        (T_MAXDIFF,),
        "the smallest term difference: a kernel that changes one term a lot reads as exact",
    ),
    Mutant(
        "gpu-speed-trains-at-the-recipes-lr",
        SPEED,
        "built = trainer.build_phase(name, replace(phase, lr=0.0), 0)",
        "built = trainer.build_phase(name, phase, 0)",
        (T_LR0,),
        "variants train at the recipe's lr: the weights move, the SDPA rows in one Trainer see "
        "other weights than eager, their term differences are not rounding",
    ),
    Mutant(
        "gpu-speed-sdxl-whole-preset-batch",
        SPEED,
        'return phase_recipe(base, model, clip, work / "run-speed-sdxl", device, 0, micro, tiny, True)',
        'return phase_recipe(base, model, clip, work / "run-speed-sdxl", device, 0, micro, tiny)',
        (T_SDXL8,),
        "the speed rows run the preset's batch 32 in 4 micro-batches, not one micro-batch of 8 "
        "(4x the documented step time, and samples / s of another setting)",
    ),
    Mutant(
        "gpu-speed-miniature-too-few-steps",
        SPEED,
        "mini_steps = steps if tiny else max(steps, MINIATURE_TIMED_STEPS)",
        "mini_steps = steps if tiny else min(steps, MINIATURE_TIMED_STEPS)",
        (T_RUN_SPEED,),
        "the miniature's rows time --steps (1-2) launch-bound steps, not 20: the median is noise "
        "and graph captures of new shapes land in it",
    ),
    Mutant(
        "gpu-speed-gpu-forces-the-math-kernel",
        SPEED,
        'kernels = ("flash", "cudnn", "efficient") if device.startswith("cuda") else ("math",)',
        'kernels = ("flash", "cudnn", "efficient") if device == "cuda" else ("math",)',
        (T_RUN_SPEED,),
        "a device named cuda:0 times only the math kernel",
    ),
    Mutant(
        "gpu-speed-cache-row-compared-with-eager",
        SPEED,
        'built = {"other_draws": True,',
        'built = {"other_draws": False,',
        (T_CACHE,),
        "the trajectory-cache row's terms (other prompts and states) are compared with eager's",
    ),
    Mutant(
        "gpu-speed-cache-row-calls-the-teacher",
        SPEED,
        'losses = {"mlcd": replace(mlcd, states="cache")}',
        'losses = {"mlcd": mlcd}',
        (T_CACHE,),
        "the '0 teacher calls' row trains with states mds: the teacher runs, the cache is unused",
    ),
    Mutant(
        "gpu-speed-syncs-counted-once-per-line",
        SPEED,
        '        warnings.simplefilter("always")\n',
        "",
        (T_SYNCS,),
        "Python's default filter shows a warning once per code line: host syncs in a loop counted once",
    ),
    Mutant(
        "gpu-speed-sync-debug-left-on",
        SPEED,
        '        finally:\n            torch.cuda.set_sync_debug_mode("default")\n',
        "        finally:\n            pass\n",
        (T_SYNCS,),
        "sync debug mode stays 'warn': every later timed step pays a warning per sync",
    ),
    # ---- gpu_options.py ---------------------------------------------------------------------------
    Mutant(
        "gpu-options-plan-accum-of-the-recipe",
        OPTIONS,
        "accum = built.phase.grad_accum",
        "accum = phase.grad_accum",
        (T_PLAN,),
        "the memory plan table shows the recipe's accumulation 1, not the plan's choice",
    ),
    Mutant(
        "gpu-options-plan-line-of-an-earlier-phase",
        OPTIONS,
        "            lines.clear()\n",
        "",
        (T_PLAN,),
        "every phase's plan column shows the first phase's plan line",
    ),
    Mutant(
        "gpu-options-step-1-diff-from-step-0",
        OPTIONS,
        'for key, step in (("terms", 0), ("last_terms", 1)):',
        'for key, step in (("terms", 0), ("terms", 1)):',
        (T_CKPT,),
        "the step 1 relative differences repeat step 0's: the timed step is never compared",
    ),
    Mutant(
        "gpu-options-preference-not-dpo",
        OPTIONS,
        'dpo = replace(pref.losses["preference"], mode="dpo")',
        'dpo = pref.losses["preference"]',
        (T_PRESET,),
        "the Diffusion-DPO row times the reward mode (the sdxl section's preference phase again)",
    ),
    Mutant(
        "gpu-options-gan-is-the-presets",
        OPTIONS,
        "    gan = GANConfig(weight=preset.weight, disc_lr=preset.disc_lr)",
        "    gan = preset",
        (T_PRESET,),
        "the option row times the preset's teacher-feature GAN again, not the product default",
    ),
    # ---- gpu.py --------------------------------------------------------------------------------------
    Mutant(
        "gpu-default-steps-swapped",
        GPU,
        "tiny_default(args.steps, 2, 1)",
        "tiny_default(args.steps, 1, 2)",
        (T_SECTIONS, T_DEFAULTS),
        "the GPU run times 1 step per SDXL phase (documented 2), the CPU mode 2",
    ),
    Mutant(
        "gpu-refused-section-stops-the-loop",
        GPU,
        '                sec["status"] = "skipped (time limit)"\n                report.update()\n'
        "                continue\n",
        '                sec["status"] = "skipped (time limit)"\n                report.update()\n'
        "                break\n",
        (T_MAIN,),
        "after the first refused section the rest stay 'pending' in gpu.json / gpu.md",
    ),
    Mutant(
        "gpu-published-size-in-billions",
        GPU,
        'row["expected_net"] = EXPECTED_NET_PARAMS[kind] / 1e6',
        'row["expected_net"] = EXPECTED_NET_PARAMS[kind] / 1e9',
        (T_MODELS,),
        "the 'published' column in billions beside the counted millions (3 vs 2567.5)",
    ),
    Mutant(
        "gpu-large-models-time-steps-steps",
        GPU,
        "steps = LARGE_TIMED_STEPS if large else self.args.steps",
        "steps = self.args.steps",
        (T_LARGE,),
        "SD3 / FLUX time --steps steps per phase (20-35 s each), not 1: the session's time limit "
        "drops the sections after",
    ),
    Mutant(
        "gpu-large-models-at-sdxls-micro-batches",
        GPU,
        'micro = MICRO_BATCH["tiny" if self.args.tiny else kind]',
        'micro = MICRO_BATCH["tiny" if self.args.tiny else "sdxl"]',
        (T_LARGE,),
        "FLUX / SD3 run SDXL's micro-batches (8 / 8 / 2 / 2): out of memory on the 80 GB plan",
    ),
    # ---- gpu_report.py (gpu.md) -------------------------------------------------------------------
    Mutant(
        "gpu-report-failed-off-run-crashes",
        REPORT,
        '_f(off.get("terms", {}).get(key), "{:.6g}")',
        '_f(off["terms"].get(key), "{:.6g}")',
        (T_OFF_FAILED,),
        "the REAL bug fixed in this round: a failed checkpointing-off run (no terms) raises a "
        "KeyError in tables(), which stops the whole benchmark",
    ),
    Mutant(
        "gpu-report-peak-and-tflop-swapped",
        REPORT,
        '_f(r["peak_gib"], "{:.1f}"), _f(r["tflop_per_step"], "{:.3g}")',
        '_f(r["tflop_per_step"], "{:.3g}"), _f(r["peak_gib"], "{:.1f}")',
        (T_PHASE_TABLE,),
        "gpu.md's peak GiB column shows TFLOP / step and the reverse",
    ),
    Mutant(
        "gpu-report-load-memory-under-s-per-sample",
        REPORT,
        'rows.append(["(load)", "", _f(r["load_s"]), "", _f(r.get("allocated_after_load_gib"), "{:.1f}")])',
        'rows.append(["(load)", "", _f(r["load_s"]), _f(r.get("allocated_after_load_gib"), "{:.1f}"), ""])',
        (T_PHASE_TABLE,),
        "the loaded weights' GiB land in the s / sample column",
    ),
    Mutant(
        "gpu-report-speed-seconds-and-rate-swapped",
        REPORT,
        'cells.append([r["variant"], _f(r["s_per_step"], "{:.3g}"), _f(r["samples_per_s"], "{:.3g}")])',
        'cells.append([r["variant"], _f(r["samples_per_s"], "{:.3g}"), _f(r["s_per_step"], "{:.3g}")])',
        (T_SPEED_TABLE,),
        "the speed table's s / step shows samples / s: a faster variant reads slower",
    ),
    Mutant(
        "gpu-report-checkpointing-steps-swapped",
        REPORT,
        'rows[-1] += [_f(first.get(key), "{:.2e}"), _f(second.get(key), "{:.2e}")]',
        'rows[-1] += [_f(second.get(key), "{:.2e}"), _f(first.get(key), "{:.2e}")]',
        (T_CKPT_TABLE,),
        "step 0's relative differences under 'step 1' and the reverse",
    ),
    Mutant(
        "gpu-report-plan-micro-and-accum-swapped",
        REPORT,
        "f\"{r['micro_batch']} x {r['grad_accum']}\"",
        "f\"{r['grad_accum']} x {r['micro_batch']}\"",
        (T_PLAN_TABLE,),
        "the memory plan's micro x accum reads 4 x 8 for micro-batches of 8",
    ),
]
