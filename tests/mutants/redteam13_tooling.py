"""A thirteenth red-team audit, area tooling (2026-12-07; 29 mutants, 29 survived at first, each
now caught): the scripts behind the published comparison tables and plots (ablations/run.py's
--rescore, variants.py's rows against their own descriptions, zoo.py's cost probe and its cache,
table cells, docs header, plot and frontier, plot.py's curves, disc_probe.py's probe loop) and the
CPU benchmarks' reported numbers (unet_calls.py's analytic MDS expectation and table rows,
graphs.py's "x eager", warm-up column and capture split, engine_overhead.py's bootstrap interval,
IQR, null-loss warm-up and per-step overhead, memory.py's peak RSS units and rows, common.py's
"miniature built" check), on lines no earlier catalogue edits. At first every mutant survived
tests/test_ablation_units.py, test_ablations.py and test_zoo.py (ablations/) or
test_cpu_benchmark_units.py and test_benchmark_units.py (benchmarks/): each now names a test of
tests/test_tooling_units.py (trainers, scorers, subprocesses, the GAN and matplotlib replaced by
fakes; ~3 s for the file). Runner: 339 s for the 29 on one core.

A real bug, fixed: ablations/disc_probe.py's ``probe`` scored D every ``steps // 3`` updates, so a
``--steps`` that is not a multiple of 3 gave a last score before the last update (100: after 33, 66
and 99 updates) or more than three scores under the table's "after 1/3, 2/3, 3/3" header (4: four
scores, 2: two). It now scores after steps * k // 3 updates, k = 1, 2, 3 (at least 1); 300 (what
docs/disc-probe.md ran) is unchanged. The mutant "disc-probe-scores-every-third-rounded-down" is
the source before the fix.

Skipped as equivalent: the ladder base built from tlcm-paper's phases over tlcm-full's (equal
MLCD / LCD, as round 10 noted); AdamW's 0-dim ``step`` counted in memory.py's optimizer state
(bytes, under 0.01 MiB); unet_calls' upper median of an even number of step times (a documented
"median", the tests' fake steps all take 1 s: a lower median is a matter of convention, not a bug).
"""

from run import Mutant

LADDER = "ablations/run.py"
VARIANTS = "ablations/variants.py"
ZOO = "ablations/zoo.py"
PLOT = "ablations/plot.py"
PROBE = "ablations/disc_probe.py"
UNET_CALLS = "benchmarks/unet_calls.py"
GRAPHS = "benchmarks/graphs.py"
OVERHEAD = "benchmarks/engine_overhead.py"
MEMORY = "benchmarks/memory.py"
COMMON = "benchmarks/common.py"

T = "tests/test_tooling_units.py::"
T_RESCORE = T + "test_rescore_keeps_the_runs_grid_and_takes_the_recipes_sampler"
T_MLCD_FIELDS = T + "test_each_ladder_rows_stage_1_has_the_states_and_distance_it_names"
T_STEPS_NAMED = T + "test_rows_naming_their_stage_steps_train_those_steps"
T_ZOO_COST = T + "test_the_zoo_tables_cost_cells_are_minutes_under_their_headers"
T_ZOO_DOCS = T + "test_the_zoo_docs_count_seeds_not_runs_and_prompts_as_ten_per_digit"
T_PROBE = T + "test_the_probe_rates_are_each_phases_own_evaluations_per_step"
T_PROBE_CACHE = T + "test_a_probe_cached_with_other_steps_is_measured_again"
T_ZOO_PLOT = T + "test_the_zoo_plot_draws_fd_on_top_and_the_own_sampler_solid"
T_ZOO_XERR = T + "test_the_frontiers_fd_bars_reach_each_methods_lowest_and_highest_seed"
T_PLOT_MAIN = T + "test_the_ladder_curves_put_fd_left_and_the_seed_range_as_error_bars"
T_PROBE_THIRDS = T + "test_the_disc_probe_scores_after_a_third_two_thirds_and_all_updates"
T_PROBE_HELD = T + "test_the_disc_probe_trains_off_the_held_out_pairs_and_scores_real_as_real"
T_MDS_EXPECTED = T + "test_the_expected_mds_cfg_evals_are_the_mean_segment_plus_the_target"
T_CALL_ROWS = T + "test_the_call_tables_expected_sample_evals_count_both_halves_of_a_cfg_call"
T_X_EAGER = T + "test_x_eager_is_the_speed_up_of_the_graphed_step"
T_CAPTURES = T + "test_a_capture_in_the_first_timed_step_counts_as_timed"
T_BOOTSTRAP = T + "test_the_bootstrap_interval_is_95_percent_not_the_range"
T_NULL_WARMUP = T + "test_the_null_loss_timing_leaves_its_first_tenth_out"
T_OVERHEAD_ROWS = (
    "tests/test_cpu_benchmark_units.py::test_the_overhead_rows_add_the_loop_body_and_read_the_iqr"
)
T_MAXRSS = T + "test_the_workers_peak_rss_is_in_bytes_not_kib"
T_MEMORY_ROWS = T + "test_the_memory_tables_step_peak_is_over_the_rss_after_the_trainer"
T_MINIATURE_READY = T + "test_a_miniature_without_its_build_info_is_not_ready"

MUTANTS = [
    # ---- ablations/run.py: --rescore -----------------------------------------------------------
    Mutant(
        "ladder-rescore-gammas-swapped",
        LADDER,
        "recipe.student.grid.gamma, recipe.student.grid.first_gamma",
        "recipe.student.grid.first_gamma, recipe.student.grid.gamma",
        (T_RESCORE,),
        "--rescore scores tlcm-full's rows with gamma 1 then DDIM swapped: not the recipe's sampler",
    ),
    Mutant(
        "ladder-rescore-with-the-recipes-m",
        LADDER,
        "grid = trained.config.grid.with_sampler(",
        "grid = recipe.student.grid.with_sampler(",
        (T_RESCORE,),
        "--rescore samples a run with the current recipe's M, not the checkpoint's own grid",
    ),
    # ---- ablations/variants.py -----------------------------------------------------------------
    Mutant(
        "variants-stage-1-fields-ignored",
        VARIANTS,
        'overrides["mlcd"] = {"mlcd": variant.mlcd}',
        'overrides.setdefault("mlcd", {})',
        (T_MLCD_FIELDS,),
        "every row's stage 1 is tlcm-full's (mds, l2): the single-jump, LPIPS and Huber rows are copies",
    ),
    Mutant(
        "variants-3x-gamma0-lcd-at-100-steps",
        VARIANTS,
        'grid=replace(MINIATURE_SAMPLER, training_gamma=0.0),\n            phase_fields={"lcd": {"steps": 300}}),',
        'grid=replace(MINIATURE_SAMPLER, training_gamma=0.0),\n            phase_fields={"lcd": {"steps": 100}}),',
        (T_STEPS_NAMED,),
        "+lcd-3x-training-gamma0 says 900 + 300 steps and trains 900 + 100",
    ),
    # ---- ablations/zoo.py ----------------------------------------------------------------------
    Mutant(
        "zoo-table-train-and-cpu-minutes-swapped",
        ZOO,
        'cost = (evals, train_min, cpu_min, d_acc) if sampler == "own"',
        'cost = (evals, cpu_min, train_min, d_acc) if sampler == "own"',
        (T_ZOO_COST,),
        "the CPU minutes sit under 'train min' and the training's wall minutes under 'CPU min'",
    ),
    Mutant(
        "zoo-docs-seed-count-counts-runs",
        ZOO,
        "seeds += [len(v) for v in infos.values() if v]",
        "seeds.append(len(found))",
        (T_ZOO_DOCS,),
        "three methods of one seed read as 3 seeds: the 'Preliminary' warning disappears",
    ),
    Mutant(
        "zoo-docs-prompts-are-the-per-digit-count",
        "ablations/zoo_checks.py",
        "    return next(iter(counts), 10 * args.samples_per_digit)",
        "    return next(iter(counts), args.samples_per_digit)",
        (T_ZOO_DOCS,),
        "docs/zoo.md says 50 prompts and finds no teacher table at 50 prompts",
    ),
    Mutant(
        "zoo-probe-rates-cumulative",
        ZOO,
        "rates[name] = (trainer.denoiser_evals - before) / probe_steps",
        "rates[name] = trainer.denoiser_evals / probe_steps",
        (T_PROBE,),
        "a later phase's rate includes the earlier phases' evaluations: its steps are scaled down",
    ),
    Mutant(
        "zoo-probe-cache-ignores-probe-steps",
        ZOO,
        'if entry.get("probe_steps") == args.probe_steps and set(',
        "if set(",
        (T_PROBE_CACHE,),
        "--probe-steps 50 reuses a 10-step probe: the asked-for precision is silently ignored",
    ),
    Mutant(
        "zoo-plot-sampler-styles-swapped",
        "ablations/zoo_plots.py",
        'for sampler, style in (("own", "-"), ("tlcm", "--")):',
        'for sampler, style in (("own", "--"), ("tlcm", "-")):',
        (T_ZOO_PLOT,),
        "the legend's 'own sampler' (solid) line draws the TLCM sampler's scores and vice versa",
    ),
    Mutant(
        "zoo-plot-fd-row-draws-alignment",
        "ablations/zoo_plots.py",
        '                for row, key in enumerate(("fd", "alignment")):\n                    values =',
        '                for row, key in enumerate(("alignment", "fd")):\n                    values =',
        (T_ZOO_PLOT,),
        "the methods' alignment is drawn on the row labelled FD (log scale) and FD on the alignment row",
    ),
    Mutant(
        "zoo-frontier-fd-bar-flipped",
        "ablations/zoo_plots.py",
        "xerr=[[fd - min(seeds)], [max(seeds) - fd]]",
        "xerr=[[max(seeds) - fd], [fd - min(seeds)]]",
        (T_ZOO_XERR,),
        "a skewed seed range is drawn mirrored: the bar does not reach the seeds' lowest and highest FD",
    ),
    # ---- ablations/plot.py ---------------------------------------------------------------------
    Mutant(
        "plot-error-bars-flipped",
        PLOT,
        "err = [[m - min(v) for m, v in pairs], [max(v) - m for m, v in pairs]]",
        "err = [[max(v) - m for m, v in pairs], [m - min(v) for m, v in pairs]]",
        (T_PLOT_MAIN,),
        "the min-max error bars are mirrored around the mean",
    ),
    Mutant(
        "plot-fd-panel-draws-alignment",
        PLOT,
        'for ax, key in ((ax_fd, "fd"), (ax_align, "alignment")):',
        'for ax, key in ((ax_fd, "alignment"), (ax_align, "fd")):',
        (T_PLOT_MAIN,),
        "the rows' alignment is drawn in the panel titled FD beside the teacher's FD curves",
    ),
    # ---- ablations/disc_probe.py ---------------------------------------------------------------
    Mutant(
        "disc-probe-scores-every-third-rounded-down",
        PROBE,
        "        if step + 1 in thirds:\n",
        "        if (step + 1) % max(1, args.steps // 3) == 0:\n",
        (T_PROBE_THIRDS,),
        "the source before this round's fix: --steps 100 scores after 33, 66 and 99 updates (the "
        "'3/3' column misses the last), --steps 4 gives four scores under three columns",
    ),
    Mutant(
        "disc-probe-trains-on-the-held-out-pairs",
        PROBE,
        "idx = torch.randint(0, n_train, (16,), generator=g)",
        "idx = torch.randint(0, len(real), (16,), generator=g)",
        (T_PROBE_HELD,),
        "D trains on the pairs its 'held-out' accuracy is measured on: the accuracy is inflated",
    ),
    Mutant(
        "disc-probe-accuracy-sides-swapped",
        PROBE,
        "return accuracies(d(zr, tr, cond[idx]), d(zf, tf, cond[idx])).mean().item()",
        "return accuracies(d(zf, tf, cond[idx]), d(zr, tr, cond[idx])).mean().item()",
        (T_PROBE_HELD,),
        "the real and fake logits are swapped: a perfect D reads 0, chance stays 0.5",
    ),
    # ---- benchmarks/unet_calls.py --------------------------------------------------------------
    Mutant(
        "unet-calls-mds-mean-segment-m-over-2",
        UNET_CALLS,
        '"teacher_cfg": (m + 1) / 2 + 1,',
        '"teacher_cfg": m / 2 + 1,',
        (T_MDS_EXPECTED,),
        "L uniform in 1..M has mean (M + 1) / 2: the analytic MDS teacher cost is half an eval low",
    ),
    Mutant(
        "unet-calls-teacher-sample-evals-expected-once",
        UNET_CALLS,
        '_cell(r["teacher_sample_evals_per_sample"], 2 * e["teacher_cfg"])',
        '_cell(r["teacher_sample_evals_per_sample"], e["teacher_cfg"])',
        (T_CALL_ROWS,),
        "the table's expected teacher sample-evals forget the CFG call's doubled batch",
    ),
    Mutant(
        "unet-calls-total-expected-counts-cfg-once",
        UNET_CALLS,
        '_cell(r["sample_evals_per_sample"], 2 * e["teacher_cfg"] + e["student"])',
        '_cell(r["sample_evals_per_sample"], e["teacher_cfg"] + e["student"])',
        (T_CALL_ROWS,),
        "the total's expectation counts a CFG call once: every measured total looks too high",
    ),
    # ---- benchmarks/graphs.py ------------------------------------------------------------------
    Mutant(
        "graphs-x-eager-inverted",
        GRAPHS,
        "f\"{r['eager_ms'] / r['graphs_ms']:.2f}\",",
        "f\"{r['graphs_ms'] / r['eager_ms']:.2f}\",",
        (T_X_EAGER,),
        "'x eager' is graphed / eager: a 3x speed-up reads 0.33",
    ),
    Mutant(
        "graphs-warm-up-captures-read-after-a-timed-step",
        GRAPHS,
        "if step == warmup - 1:",
        "if step == warmup:",
        (T_CAPTURES,),
        "a capture in the first timed step is counted as a warm-up one: 'captures timed' reads 0",
    ),
    Mutant(
        "graphs-warm-up-seconds-swapped",
        GRAPHS,
        "f\"{r['warmup_s'][False]:.1f} / {r['warmup_s'][True]:.1f}\",",
        "f\"{r['warmup_s'][True]:.1f} / {r['warmup_s'][False]:.1f}\",",
        (T_X_EAGER,),
        "the column 'warm-up s (eager / graphs)' shows the graphed Trainer's (captures) first",
    ),
    # ---- benchmarks/engine_overhead.py ---------------------------------------------------------
    Mutant(
        "overhead-null-loss-warm-up-kept",
        OVERHEAD,
        "return engine[reps // 10 :], manual[reps // 10 :]",
        "return engine, manual",
        (T_NULL_WARMUP,),
        "the null-loss steps' first tenth (first calls, allocations) is among the measured ones",
    ),
    Mutant(
        "overhead-bootstrap-interval-is-the-range",
        OVERHEAD,
        "return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]",
        "return medians[0], medians[-1]",
        (T_BOOTSTRAP,),
        "the '95 % bootstrap interval' is the range of 2000 resampled medians (~99.9 %)",
    ),
    Mutant(
        "overhead-python-overhead-without-the-loop-body",
        OVERHEAD,
        "statistics.median(null_engine) - statistics.median(null_manual) + statistics.median(tail)",
        "statistics.median(null_engine) - statistics.median(null_manual)",
        (T_OVERHEAD_ROWS,),
        "the 'null-loss difference + loop body' row leaves out the loop body",
    ),
    # ---- benchmarks/memory.py ------------------------------------------------------------------
    Mutant(
        "memory-ru-maxrss-kib-read-as-bytes",
        MEMORY,
        "ru_maxrss * 1024 / MIB",
        "ru_maxrss / MIB",
        (T_MAXRSS,),
        "ru_maxrss is in KiB on Linux: the process's peak RSS row reads 1024 times too small",
    ),
    Mutant(
        "memory-step-peak-over-the-rss-after-imports",
        MEMORY,
        "else f\"{r['peak_rss_during_steps_mib'] - r['rss_after_trainer_mib']:.1f}\"",
        "else f\"{r['peak_rss_during_steps_mib'] - r['rss_after_imports_mib']:.1f}\"",
        (T_MEMORY_ROWS,),
        "'peak during the steps - RSS after Trainer' subtracts the RSS after the imports: the models count",
    ),
    # ---- benchmarks/common.py ------------------------------------------------------------------
    Mutant(
        "common-miniature-ready-without-build-info",
        COMMON,
        "return MINIATURE_UNET.is_file() and BUILD_INFO.is_file() and (",
        "return MINIATURE_UNET.is_file() and (",
        (T_MINIATURE_READY,),
        "a half-built miniature (build_info.json is written last) is benchmarked and labelled 'miniature'",
    ),
]
