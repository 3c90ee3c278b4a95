"""A fourteenth red-team audit, area bench (2026-12-07; 35 mutants, all 35 survived at first, each
now caught): the CPU benchmarks on lines no earlier catalogue edits. benchmarks/common.py: --model
auto's choice, --device auto, a full fine-tune passed through shrink, each hooked UNet's own LoRA
flag (a late-bound closure), the provenance lines of the .md; benchmarks/unet_calls.py: the cache
mode's expectation and its build arguments, teacher calls per step, the student's grad / no-grad
split, the adapters-on check, the median step, a zero expectation's cell, the 'given draws' cell,
the all-in-their-mode note, the discrete uniform's std, the cache's CFG evals per trajectory, the
LCD column's p; benchmarks/engine_overhead.py: the engine step timed after its device sync, the
hand-written loop's zero_grad and weight decay (three steps against the engine), the bootstrap's
seed, the adapter toggle's per-toggle cost and share, the difference row's IQR, the 'identical
work' check, the extra step for the last pair's loop body; benchmarks/memory.py: which
configuration trains what, the inventory at the last step, saved activations without the weights,
the CUDA peak reset, trainable bytes; benchmarks/graphs.py: terms compared at every step, --out,
--warmup / --steps. At first every mutant survived its nearest existing tests
(test_cpu_benchmark_units.py, test_tooling_units.py, test_benchmark_units.py); each now names a
test of tests/test_bench14_units.py (faked clocks, trainers, CUDA calls and subprocesses; one test
runs the tiny pipeline for three steps). Runner: 1600 s for the 35 against the existing tests,
1480 s against the new ones (plus 34 s for the reseeded bootstrap test), one core.

No real bug found. Written but left out to keep 35 (their tests are in the file): a custom folder
labelled "miniature", the thread count not set, the CUDA device's name only for "cuda" (not
"cuda:0"), the teacher's mean call batch over all calls, the table's grad + no-grad cell swapped,
the hand-written step timed before its sync, the buffers left out of the weights, a failed worker
that printed its line accepted, the graphed weights compared with themselves."""

from run import Mutant

COMMON = "benchmarks/common.py"
UNET_CALLS = "benchmarks/unet_calls.py"
OVERHEAD = "benchmarks/engine_overhead.py"
MEMORY = "benchmarks/memory.py"
GRAPHS = "benchmarks/graphs.py"

N = "tests/test_bench14_units.py::"

MUTANTS = [
    # ---- benchmarks/common.py -------------------------------------------------------------------
    Mutant(
        "common-auto-takes-tiny-when-the-miniature-is-built",
        COMMON,
        '    if arg == "auto":\n        if miniature_ready():',
        '    if arg == "auto":\n        if not miniature_ready():',
        (N + "test_auto_takes_the_built_miniature_else_the_tiny_pipeline_and_a_folder_is_custom",),
        "--model auto benchmarks the tiny random pipeline when the miniature is built (and the "
        "miniature's folder, labelled as such, when it is not)",
    ),
    Mutant(
        "common-auto-device-picks-cuda-without-one",
        COMMON,
        'device = "cuda" if torch.cuda.is_available() else "cpu"',
        'device = "cpu" if torch.cuda.is_available() else "cuda"',
        (N + "test_setup_torch_resolves_auto_by_cuda_and_sets_the_threads",),
        "--device auto runs on the CPU where a GPU is present and asks for CUDA where none is",
    ),
    Mutant(
        "common-shrink-drops-the-full-fine-tune",
        COMMON,
        "recipe, model, out_dir, steps, batch_size, device, resume=False, full_finetune=full_finetune",
        "recipe, model, out_dir, steps, batch_size, device, resume=False, full_finetune=False",
        (N + "test_shrink_passes_a_full_fine_tune_on",),
        "memory.py's 'full' configuration trains a LoRA student: the LoRA vs full fine-tune columns "
        "measure the same thing",
    ),
    Mutant(
        "common-hook-reads-the-last-unets-lora",
        COMMON,
        "def hook(module, args, kwargs, lora=lora):",
        "def hook(module, args, kwargs):",
        (N + "test_each_hooked_unet_logs_its_own_lora_flag",),
        "the closure reads the loop's last ``lora``: with two UNets hooked, every call logs the "
        "adapters state of the last one's LoRA layer",
    ),
    Mutant(
        "common-markdown-drops-the-provenance",
        COMMON,
        'md += [f"- {k}: {v}" for k, v in meta.items() if k != "command"]',
        'md += [f"- {k}: {v}" for k, v in meta.items() if k == "command"]',
        (N + "test_the_markdown_lists_the_provenance_below_the_command",),
        "the .md results list the command twice and lose the device, threads, versions, load "
        "average: which machine gave the numbers",
    ),
    # ---- benchmarks/unet_calls.py ---------------------------------------------------------------
    Mutant(
        "unet-calls-cache-expected-as-a-single-jump",
        UNET_CALLS,
        'if cfg.states == "single_jump":',
        'if cfg.states in ("single_jump", "cache"):',
        (N + "test_the_cache_mode_expects_no_teacher_call",),
        'states="cache" is expected to cost 2 teacher CFG evals per sample: its measured 0 reads as a '
        "missing teacher call",
    ),
    Mutant(
        "unet-calls-cache-built-with-skip-and-milestones-swapped",
        UNET_CALLS,
        "        recipe.student.grid.num_milestones,\n        cfg.skip,",
        "        cfg.skip,\n        recipe.student.grid.num_milestones,",
        (N + "test_the_trajectory_cache_is_built_with_the_recipes_grid_skip_and_guidance",),
        "the trajectory cache is built with M = skip and skip = M: another grid than the recipe's",
    ),
    Mutant(
        "unet-calls-teacher-calls-per-sample",
        UNET_CALLS,
        '"teacher_calls_per_step": len(teacher) / steps,',
        '"teacher_calls_per_step": len(teacher) / samples,',
        (N + "test_measure_counts_teacher_calls_per_step_and_their_mean_batch",),
        "'teacher UNet calls / step' is divided by the samples: B times too few",
    ),
    Mutant(
        "unet-calls-student-grad-and-nograd-swapped",
        UNET_CALLS,
        '"student_calls_per_step_grad": sum(1 for c in student if c[2]) / steps,',
        '"student_calls_per_step_grad": sum(1 for c in student if not c[2]) / steps,',
        (N + "test_measure_counts_teacher_calls_per_step_and_their_mean_batch",),
        "the student's calls with grad are counted from the no-grad ones: LCD reads 5 + 5",
    ),
    Mutant(
        "unet-calls-adapters-on-read-from-the-grad-flag",
        UNET_CALLS,
        '"teacher_calls_with_adapters_on": sum(1 for c in teacher if c[3]),',
        '"teacher_calls_with_adapters_on": sum(1 for c in teacher if c[2]),',
        (N + "test_measure_reports_teacher_calls_that_ran_with_the_adapters_on",),
        "the check reads the grad flag (always off for the teacher): a teacher run with the LoRA on "
        "is never reported",
    ),
    Mutant(
        "unet-calls-median-of-unsorted-times",
        UNET_CALLS,
        '"median_step_s": sorted(step_times)[len(step_times) // 2],',
        '"median_step_s": step_times[len(step_times) // 2],',
        (N + "test_measure_reports_the_median_step_time",),
        "'engine step, median ms' is the middle step's time, not the median",
    ),
    Mutant(
        "unet-calls-zero-expectation-hidden",
        UNET_CALLS,
        "    if expected is not None:\n        text += (",
        "    if expected:\n        text += (",
        (N + "test_the_cache_columns_expected_zero_teacher_evals_is_shown",),
        "the cache mode's expected 0 teacher evals is dropped from its cell: a measured 0.00 shows "
        "no expectation, a wrong non-zero one no mismatch",
    ),
    Mutant(
        "unet-calls-given-cfg-evals-read-from-the-calls",
        UNET_CALLS,
        '_cell(r["teacher_cfg_evals_per_sample"], e["teacher_cfg"], g.get("teacher_cfg"))',
        '_cell(r["teacher_cfg_evals_per_sample"], e["teacher_cfg"], g.get("calls"))',
        (N + "test_the_given_draws_cells_read_their_own_exact_values",),
        "the 'given draws' value of the CFG evals row is the drawn UNet calls per step: the exact "
        "check compares two different quantities",
    ),
    Mutant(
        "unet-calls-all-fine-note-ignores-teacher-grad",
        UNET_CALLS,
        '                or r["untagged_calls"]\n                or r["teacher_calls_with_grad"]\n',
        '                or r["untagged_calls"]\n',
        (N + "test_the_all_calls_in_their_mode_note_needs_no_teacher_call_with_grad",),
        "a teacher call run with grad still gets the 'every teacher call ran ... without grad' note",
    ),
    Mutant(
        "unet-calls-std-of-a-continuous-uniform",
        UNET_CALLS,
        "std = ((m * m - 1) / 12) ** 0.5",
        "std = (m * m / 12) ** 0.5",
        (N + "test_the_notes_give_the_discrete_uniforms_std_and_the_caches_cfg_evals",),
        "the note's std of L uniform in 1..M is the continuous uniform's sqrt(M^2 / 12)",
    ),
    Mutant(
        "unet-calls-cache-note-counts-sample-evals",
        UNET_CALLS,
        "per_traj = sum(c[1] for c in built.calls) / n_traj / 2",
        "per_traj = sum(c[1] for c in built.calls) / n_traj",
        (N + "test_the_notes_give_the_discrete_uniforms_std_and_the_caches_cfg_evals",),
        "the cache note's 'CFG evals per trajectory' counts both halves of each CFG pair: twice",
    ),
    Mutant(
        "unet-calls-lcd-row-runs-p-4",
        UNET_CALLS,
        "lcd_cfg = LCDConfig(teacher_substeps=3)  # q = 4: the default student grid",
        "lcd_cfg = LCDConfig(teacher_substeps=4)  # q = 4: the default student grid",
        (N + "test_the_notes_give_the_discrete_uniforms_std_and_the_caches_cfg_evals",),
        "the column named 'LCD q=4 p=3' measures p = 4",
    ),
    # ---- benchmarks/engine_overhead.py ----------------------------------------------------------
    Mutant(
        "overhead-engine-time-read-before-the-device-sync",
        OVERHEAD,
        """            profilers["engine"].disable()
        _sync(device)
        rec["engine_step"]""",
        """            profilers["engine"].disable()
        rec["engine_step"]""",
        (N + "test_on_a_gpu_each_timed_step_waits_for_its_device_work",),
        "on a GPU the engine step is timed before its kernels finish: its device work lands in the "
        "hand-written step or the loop body",
    ),
    Mutant(
        "overhead-hand-written-grads-never-zeroed",
        OVERHEAD,
        "        self.opt.zero_grad(set_to_none=True)\n        loss.backward()",
        "        loss.backward()",
        (N + "test_the_hand_written_loop_matches_the_engine_over_three_steps",),
        "the hand-written loop accumulates gradients over steps: from the third step on other "
        "weights, other losses (and one zero_grad fewer timed)",
    ),
    Mutant(
        "overhead-hand-written-adamw-default-decay",
        OVERHEAD,
        "self.opt = torch.optim.AdamW(self.params, lr=phase.lr, weight_decay=phase.weight_decay)",
        "self.opt = torch.optim.AdamW(self.params, lr=phase.lr)",
        (N + "test_the_hand_written_loop_matches_the_engine_over_three_steps",),
        "the hand-written AdamW decays with torch's default 0.01, not the phase's weight decay",
    ),
    Mutant(
        "overhead-bootstrap-unseeded",
        OVERHEAD,
        "rng = random.Random(0)",
        "rng = random.Random()",
        (N + "test_the_bootstrap_interval_is_reproducible",),
        "the bootstrap interval changes from run to run over the same timings",
    ),
    Mutant(
        "overhead-toggle-cost-not-per-toggle",
        OVERHEAD,
        "api = (time.perf_counter() - start) / repeats",
        "api = time.perf_counter() - start",
        (N + "test_the_adapter_toggle_costs_are_seconds_per_toggle",),
        "the diffusers toggle's cost is that of 100 toggles: its share of the step 100x too big",
    ),
    Mutant(
        "overhead-difference-iqr-of-the-ratios",
        OVERHEAD,
        "q, qd = statistics.quantiles(ratios, n=4), statistics.quantiles(diffs, n=4)",
        "q, qd = statistics.quantiles(ratios, n=4), statistics.quantiles(ratios, n=4)",
        (N + "test_the_difference_row_reads_the_differences_quartiles",),
        "the difference row's IQR is the ratios' quartiles, in ms",
    ),
    Mutant(
        "overhead-toggle-share-per-call",
        OVERHEAD,
        "f\"{100 * teacher_calls * toggle['api_s'] / med_e:.1f} %\"",
        "f\"{100 * toggle['api_s'] / med_e:.1f} %\"",
        (N + "test_the_toggles_share_counts_every_teacher_call_of_a_step",),
        "the toggles' share of the step counts one toggle per step, not one per teacher call",
    ),
    Mutant(
        "overhead-calls-match-on-counts-only",
        OVERHEAD,
        'calls_match = rec["calls"]["engine"] == rec["calls"]["manual"]',
        'calls_match = rec["calls"]["engine"]["unet_calls"] == rec["calls"]["manual"]["unet_calls"]',
        (N + "test_a_sample_eval_mismatch_invalidates_the_comparison",),
        "the 'identical model work' note ignores the batch sizes and teacher calls: loops doing "
        "different work are declared comparable",
    ),
    Mutant(
        "overhead-run-one-pair-short",
        OVERHEAD,
        'mlcd(), model, Path(tmp) / "run", args.steps + args.warmup + 1, args.batch_size, device',
        'mlcd(), model, Path(tmp) / "run", args.steps + args.warmup, args.batch_size, device',
        (N + "test_the_run_has_one_step_more_than_the_measured_and_warm_up_pairs",),
        "the last step's loop body is not observable: --steps N measures N - 1 pairs",
    ),
    # ---- benchmarks/memory.py -------------------------------------------------------------------
    Mutant(
        "memory-full-config-trains-lora",
        MEMORY,
        '"full": (True, "mlcd", {}),',
        '"full": (False, "mlcd", {}),',
        (N + "test_each_memory_configuration_trains_what_its_name_says",),
        "the 'full' column is a second LoRA run",
    ),
    Mutant(
        "memory-full-fake-score-is-lora",
        MEMORY,
        '"lora+dmd-full-fake": (False, "dmd", {"fake_updates": 1, "fake_score": "full"}),',
        '"lora+dmd-full-fake": (False, "dmd", {"fake_updates": 1}),',
        (N + "test_each_memory_configuration_trains_what_its_name_says",),
        "the full-copy fake score column runs DMD's default LoRA fake score",
    ),
    Mutant(
        "memory-inventory-at-a-step-never-reached",
        MEMORY,
        "if global_step == args.steps - 1:",
        "if global_step == args.steps:",
        (N + "test_the_worker_takes_the_inventory_at_the_last_step",),
        "the inventory is never taken: every byte row reads n/a",
    ),
    Mutant(
        "memory-activations-are-the-weights",
        MEMORY,
        "activations = {k: v for k, v in saved.items() if k not in weight_ptrs}",
        "activations = {k: v for k, v in saved.items() if k in weight_ptrs}",
        (N + "test_saved_activations_leave_the_weights_out",),
        "'tensors saved for backward (not weights)' adds up the weights saved, not the activations",
    ),
    Mutant(
        "memory-cuda-peak-not-reset",
        MEMORY,
        "            torch.cuda.reset_peak_memory_stats()\n",
        "",
        (N + "test_the_cuda_peak_is_that_of_the_steps_not_of_the_loading",),
        "'CUDA max allocated during the steps' is the process's peak: the loading counts",
    ),
    Mutant(
        "memory-trainable-counts-the-frozen",
        MEMORY,
        "            if p.requires_grad:\n                trainable",
        "            if not p.requires_grad:\n                trainable",
        (N + "test_the_inventory_adds_trainable_weights_grads_buffers_and_optimizer_state",),
        "'trainable parameters' adds up the frozen base weights",
    ),
    # ---- benchmarks/graphs.py -------------------------------------------------------------------
    Mutant(
        "graphs-terms-compared-at-the-last-step-only",
        GRAPHS,
        "terms_equal &= all(",
        "terms_equal = all(",
        (N + "test_a_difference_at_any_step_or_in_the_weights_is_not_bit_identical",),
        "'bit-identical terms' is the last step's: an earlier difference is forgotten",
    ),
    Mutant(
        "graphs-out-ignored",
        GRAPHS,
        "notes, args.out or RESULTS",
        "notes, RESULTS",
        (N + "test_graphs_main_writes_to_out_and_passes_warmup_and_steps",),
        "--out is ignored: a trial run overwrites the committed benchmarks/results/graphs.*",
    ),
    Mutant(
        "graphs-warmup-and-steps-swapped",
        GRAPHS,
        "rows.append(measure(model, device, batch, args.warmup, args.steps))",
        "rows.append(measure(model, device, batch, args.steps, args.warmup))",
        (N + "test_graphs_main_writes_to_out_and_passes_warmup_and_steps",),
        "--warmup 20 --steps 30 times 20 steps after 30 untimed ones",
    ),
]
