"""A fourteenth red-team audit, area ablations (2026-12-07; 35 mutants, 32 survived at first, each
now caught; runner: 1694 s of one core at first, 1391 s now (a shared machine), first against tests/test_ablation_units.py,
test_tooling_units.py, test_ablations.py and test_zoo.py's table tests): the lines behind the
published tables (docs/zoo.md, docs/ablations.md, docs/disc-probe.md) that no earlier catalogue
edits. The zoo (ablations/zoo.py): the refusal of a plan that costs nothing, the leftover spent,
the default and a negative --budget, the probe cache per miniature and per phase set, the flow
miniature's model and its teacher table, a pre-empted run never recorded as finished, zoo.json's
sampler names and CPU seconds, the scheduler's --fresh (retrained, its old folder removed first),
each seed's own --seeds, a failed run stopping the schedule, --jobs as a ceiling, the D accuracy of a
run whose GAN is its last phase, the docs' cost range (lowest to highest), the plot's mean over
seeds and the frontier's teacher at its own step count, the verdict's lowest pick. The ladder
(ablations/run.py): an unknown variant in one line, each seed's done check and --seeds, a failed
run, --jobs, the parents' rows in the table, resume=False of one run, --rescore over a seed without
a run. ablations/plot.py's one-line refusals (no teacher table, a row without runs).
ablations/disc_probe.py: the captions shuffled with the digits, sections appended, the noisy side
re-noised, the optimizer settings passed to the GAN. New tests: tests/test_ablations14_units.py
(fakes for training, scoring, subprocesses, matplotlib and the GAN; ~5 s).

No real bug found; none skipped as equivalent. Noted, not changed: disc_probe's ``--steps`` 1 or 2
gives one or two scores under the table's three "after 1/3, 2/3, 3/3" columns (there are not three
distinct update counts to score after), and disc_probe's main checks no counts (--held-out >=
--real fails inside torch.randint)."""

from run import Mutant

ZOO = "ablations/zoo.py"
LADDER = "ablations/run.py"
PLOT = "ablations/plot.py"
PROBE = "ablations/disc_probe.py"

T_AU = "tests/test_ablation_units.py"
T_TU = "tests/test_tooling_units.py"
T_AB = "tests/test_ablations.py"
_Z = "tests/test_zoo.py::"
T_ZOO = tuple(
    _Z + name
    for name in (
        "test_scaled_steps_meet_the_budget_within_one_step",
        "test_the_budget_recipe_keeps_its_steps",
        "test_the_runner_reuses_finished_runs",
        "test_the_table_shows_mean_min_max_and_na_above_m",
        "test_write_docs_labels_one_seed_preliminary",
        "test_the_verdict_names_the_lowest_fd_and_our_rank",
        "test_the_table_reports_the_discriminators_held_out_accuracy",
        "test_the_leftover_budget_goes_to_the_largest_remainders_first",
        "test_a_methods_better_sampler_is_the_one_with_the_lower_mean_fd",
        "test_the_docs_are_preliminary_while_any_miniature_has_fewer_than_three_seeds",
    )
)
Z_OLD = (T_AU, T_TU, *T_ZOO)
L_OLD = (T_AU, T_TU, T_AB)
P_OLD = (T_AU, T_TU)
T = "tests/test_ablations14_units.py::"

MUTANTS = [
    # ---- ablations/zoo.py: the budget and the step scaling ---------------------------------------
    Mutant(
        "zoo-costless-plan-divides-by-zero",
        ZOO,
        "    if cost <= 0:\n",
        "    if cost < 0:\n",
        (T + "test_a_plan_that_costs_nothing_is_refused_naming_its_phases",),
        "phases that cost no evaluations (a probe that counted nothing) end in a bare ZeroDivisionError, "
        "not the refusal naming the phases",
    ),
    Mutant(
        "zoo-leftover-never-spent",
        ZOO,
        "            left -= rates[n]\n",
        "",
        (*Z_OLD,),
        "every phase with half a step's remainder gets a step: the run overshoots the budget",
    ),
    Mutant(
        "zoo-zero-budget-not-defaulted",
        ZOO,
        "    if budget <= 0:\n",
        "    if budget < 0:\n",
        (*Z_OLD,),
        "the default --budget 0 scales every phase to its 1-step floor instead of tlcm-full's cost",
    ),
    Mutant(
        "zoo-negative-budget-accepted",
        ZOO,
        '    check_counts({"--budget": args.budget}, minimum=0)\n',
        "",
        (T + "test_a_negative_zoo_budget_is_refused_before_anything_runs",),
        "--budget -5 (a typo) silently becomes the default budget instead of a refusal",
    ),
    # ---- ablations/zoo.py: the cost probe's cache --------------------------------------------------
    Mutant(
        "zoo-probe-cache-shared-by-the-miniatures",
        ZOO,
        'path = args.runs / miniature / "probe.json"',
        'path = args.runs / "probe.json"',
        (T + "test_each_miniature_has_its_own_probe_cache",),
        "the flow miniature reuses the UNet's probed rates: its steps are scaled with the wrong costs",
    ),
    Mutant(
        "zoo-probe-cache-ignores-changed-phases",
        ZOO,
        'if entry.get("probe_steps") == args.probe_steps and set(entry.get("rates", {})) == set(recipe.phases):',
        'if entry.get("probe_steps") == args.probe_steps:',
        (T + "test_a_probe_cached_for_other_phases_is_measured_again",),
        "a method whose phases changed reuses its old rates: a KeyError, or a stale rate for a renamed phase",
    ),
    # ---- ablations/zoo.py: recipes and one run ------------------------------------------------------
    Mutant(
        "zoo-flow-miniature-is-the-unet",
        ZOO,
        'path=MINIATURE_MODELS["flow"], max_sequence_length=8',
        "path=recipe.model.path, max_sequence_length=8",
        (T + "test_the_flow_miniature_trains_the_flow_model",),
        "the 'flow miniature' runs train and score the UNet miniature: the flow tables are a second UNet",
    ),
    Mutant(
        "zoo-preempted-run-recorded-as-finished",
        ZOO,
        '    if run.preempted:\n        raise TLCMError(f"{out} was pre-empted: rerun to resume")\n',
        "",
        (T + "test_a_preempted_zoo_run_is_not_recorded_as_finished",),
        "a pre-empted run writes zoo.json: it is reused as finished and its half-trained scores enter the tables",
    ),
    Mutant(
        "zoo-sampler-descriptions-swapped",
        ZOO,
        '"own_sampler": grid.describe_sampler(),\n        "tlcm_sampler": tlcm_grid.describe_sampler(),',
        '"own_sampler": tlcm_grid.describe_sampler(),\n        "tlcm_sampler": grid.describe_sampler(),',
        (T + "test_a_zoo_runs_record_names_its_samplers_and_its_cpu_seconds",),
        "the table's own-sampler row names the TLCM sampler's gammas and vice versa",
    ),
    Mutant(
        "zoo-cpu-seconds-since-the-process-started",
        ZOO,
        '"train_eval_cpu_seconds": time.process_time() - cpu,',
        '"train_eval_cpu_seconds": time.process_time(),',
        (T + "test_a_zoo_runs_record_names_its_samplers_and_its_cpu_seconds",),
        "the CPU minutes count the imports and model loads before training, not training and scoring",
    ),
    # ---- ablations/zoo.py: the scheduler ------------------------------------------------------------
    Mutant(
        "zoo-fresh-reuses-finished-runs",
        ZOO,
        "if done and not args.fresh:",
        "if done:",
        (T + "test_fresh_retrains_a_finished_zoo_run_in_an_emptied_folder",),
        "--fresh retrains nothing that has finished: the option does nothing",
    ),
    Mutant(
        "zoo-fresh-keeps-the-old-folder",
        ZOO,
        "            if args.fresh and out.exists():\n                shutil.rmtree(out)\n",
        "",
        (T + "test_fresh_retrains_a_finished_zoo_run_in_an_emptied_folder",),
        "--fresh trains into the old run's folder: the run resumes from its old checkpoints",
    ),
    Mutant(
        "zoo-every-seed-trains-the-first-seed",
        ZOO,
        '"--seeds", str(seed), "--samples-per-digit", str(args.samples_per_digit),',
        '"--seeds", str(args.seeds[0]), "--samples-per-digit", str(args.samples_per_digit),',
        (T + "test_the_zoo_trains_each_seed_with_its_seed_and_prompt_count",),
        "--seeds 0 1 2 trains seed 0 three times (into s0): the other seeds never appear",
    ),
    Mutant(
        "zoo-failed-run-ignored",
        ZOO,
        "            if proc.returncode != 0:\n                log = run_dir(",
        "            if proc.returncode < 0:\n                log = run_dir(",
        (T + "test_a_failed_zoo_run_stops_the_schedule_naming_its_log",),
        "a run that exits 1 (a crash) is reported done: the tables silently lack it",
    ),
    Mutant(
        "zoo-one-job-too-many",
        ZOO,
        "while todo and len(running) < args.jobs:",
        "while todo and len(running) <= args.jobs:",
        (T + "test_the_zoo_never_runs_more_than_jobs_at_once",),
        "--jobs 2 runs three trainings at once on a machine sized for two",
    ),
    # ---- ablations/zoo.py: the tables ---------------------------------------------------------------
    Mutant(
        "zoo-d-acc-over-non-gan-rows",
        ZOO,
        'rows = [r for r in map(json.loads, lines) if "gan/d_acc_real" in r]',
        "rows = list(map(json.loads, lines))",
        (T + "test_the_d_accuracy_reads_only_the_gan_rows_of_a_multi_phase_run",),
        "a method whose GAN is its last phase (tlcm-full's dmd) has earlier rows without D: a KeyError",
    ),
    Mutant(
        "zoo-flow-compared-with-the-unet-teacher",
        "ablations/zoo_runs.py",
        "return committed_teacher(MINIATURE_MODELS[miniature], prompts)",
        'return committed_teacher(MINIATURE_MODELS["unet"], prompts)',
        (T + "test_the_flow_table_compares_with_the_flow_teacher",),
        "the flow miniature's teacher row, verdict and 'below the teacher' are the UNet teacher's",
    ),
    Mutant(
        "zoo-lowest-picked-by-alignment",
        ZOO,
        "order = sorted(best, key=lambda name: best[name][0])",
        "order = sorted(best, key=lambda name: best[name][1])",
        (*Z_OLD,),
        "the verdict's 'lowest mean FD' is the method with the lowest alignment",
    ),
    Mutant(
        "zoo-cost-range-unsorted",
        ZOO,
        'evals = sorted({i["denoiser_evals"] for i in found})',
        'evals = [i["denoiser_evals"] for i in found]',
        (T + "test_the_docs_cost_range_runs_from_the_cheapest_to_the_dearest_run",),
        "'Counted training cost per run: A to B' reads the first and last run found, not the lowest and highest",
    ),
    Mutant(
        "zoo-plot-draws-the-first-seed",
        "ablations/zoo_plots.py",
        "                        [sum(v) / len(v) for v in values],\n",
        "                        [v[0] for v in values],\n",
        (T + "test_the_zoo_plot_draws_the_mean_over_the_seeds",),
        "the plot's line is seed 0's scores, not the mean over the seeds its caption promises",
    ),
    Mutant(
        "zoo-frontier-teacher-of-every-step-count",
        "ablations/zoo_plots.py",
        'teacher = sorted((r for r in sweep if r["steps"] == n), key=lambda r: r["w"])',
        'teacher = sorted(sweep, key=lambda r: r["w"])',
        (T + "test_the_frontier_draws_the_teachers_sweep_at_its_own_step_count",),
        "the 2-step panel draws the teacher's 4-step (and 50-step) points as its trade-off",
    ),
    # ---- ablations/run.py ---------------------------------------------------------------------------
    Mutant(
        "ladder-unknown-variant-is-a-keyerror",
        LADDER,
        "        if name not in VARIANTS:\n            raise unknown_variant(",
        "        if name is None:\n            raise unknown_variant(",
        (T + "test_an_unknown_variant_is_one_line_naming_the_known_ones",),
        "--variants tlcm-ful ends in a KeyError traceback, not the one line listing the known variants",
    ),
    Mutant(
        "ladder-done-read-from-the-first-seed",
        LADDER,
        'or not (seed_runs(args.runs, seed) / n / "eval.json").is_file()',
        'or not (seed_runs(args.runs, args.seeds[0]) / n / "eval.json").is_file()',
        (T + "test_a_seed_is_done_only_when_its_own_run_is",),
        "--seeds 0 1 after seed 0 finished trains nothing: seed 1 looks done",
    ),
    Mutant(
        "ladder-every-seed-trains-the-first-seed",
        LADDER,
        '"--seeds", str(seed), "--samples-per-digit"',
        '"--seeds", str(args.seeds[0]), "--samples-per-digit"',
        (T + "test_each_seed_of_the_ladder_trains_with_its_own_seed",),
        "every seed's process trains seed 0 into s0: the seed spread is one seed",
    ),
    Mutant(
        "ladder-failed-run-ignored",
        LADDER,
        "            if proc.returncode != 0:\n",
        "            if proc.returncode < 0:\n",
        (T + "test_a_failed_ladder_run_stops_naming_its_log",),
        "a variant that crashes (exit 1) is reported done; its children start from a missing student",
    ),
    Mutant(
        "ladder-one-job-too-many",
        LADDER,
        "if len(running) >= args.jobs or (parent in todo or parent in running):",
        "if len(running) > args.jobs or (parent in todo or parent in running):",
        (T + "test_the_ladder_never_runs_more_than_jobs_at_once",),
        "--jobs 1 runs two variants at once",
    ),
    Mutant(
        "ladder-table-without-the-parents",
        LADDER,
        "text = table(args.runs, needed, prompts, args.teacher)",
        "text = table(args.runs, list(args.variants or VARIANTS), prompts, args.teacher)",
        (T + "test_the_ladder_table_holds_the_parents_trained_for_a_row",),
        "a row's parents, trained for it, keep their old rows in docs/ablations.md (the docstring: they are replaced)",
    ),
    Mutant(
        "ladder-one-run-resumes-an-old-run",
        LADDER,
        "eval_samples_per_digit=args.samples_per_digit, resume=False, seed=seed)",
        "eval_samples_per_digit=args.samples_per_digit, seed=seed)",
        (T + "test_a_ladder_run_starts_from_scratch_not_from_an_old_checkpoint",),
        "--fresh resumes the old run from its checkpoints (the recipe's resume=True): nothing is retrained",
    ),
    Mutant(
        "ladder-rescore-without-a-finished-run",
        LADDER,
        'done = [(s, n) for s, n in pairs if (seed_runs(args.runs, s) / n / "eval.json").is_file()]',
        "done = pairs",
        (T + "test_rescore_skips_the_seeds_without_a_finished_run",),
        "--rescore --seeds 0 1 with only seed 0 run fails on seed 1's missing checkpoint",
    ),
    # ---- ablations/plot.py --------------------------------------------------------------------------
    Mutant(
        "plot-missing-teacher-table-is-a-traceback",
        PLOT,
        "    if not path.is_file():\n        raise TLCMError(",
        "    if path is None:\n        raise TLCMError(",
        (T + "test_a_missing_teacher_table_is_one_line_naming_the_command",),
        "without benchmarks/results/teacher_table.json: a FileNotFoundError, not the command that makes it",
    ),
    Mutant(
        "plot-row-without-runs-is-a-traceback",
        PLOT,
        "        if not rows:\n            raise TLCMError(",
        "        if rows is None:\n            raise TLCMError(",
        (T + "test_a_row_without_runs_is_one_line_naming_the_command",),
        "a --rows name without runs ends in an IndexError, not the command that trains it",
    ),
    # ---- ablations/disc_probe.py --------------------------------------------------------------------
    Mutant(
        "disc-probe-captions-not-shuffled-with-the-digits",
        PROBE,
        "x, texts = x[order], [texts[i] for i in order.tolist()]",
        "x, texts = x[order], texts",
        (T + "test_the_disc_probe_keeps_each_digit_with_its_caption",),
        "the real digits are shuffled and their captions not: D's real side pairs digits with wrong prompts",
    ),
    Mutant(
        "disc-probe-overwrites-earlier-sections",
        PROBE,
        "    if not args.out.exists():\n        args.out.write_text(INTRO)\n",
        "    args.out.write_text(INTRO)\n",
        (T + "test_the_disc_probe_appends_a_section_per_command",),
        "each command replaces docs/disc-probe.md: the sections of earlier runs are lost",
    ),
    Mutant(
        "disc-probe-noisy-side-not-renoised",
        PROBE,
        "            z = schedule.add_noise(z, torch.randn(z.shape, generator=g), t)\n",
        "",
        (T + "test_the_disc_probe_renoises_both_sides_above_clean",),
        "with noise_level > 0 D gets clean latents labelled with noisy times: not what the GAN sees",
    ),
    Mutant(
        "disc-probe-ignores-the-weight-decay",
        PROBE,
        "        disc_weight_decay=args.disc_weight_decay,\n",
        "",
        (T + "test_the_disc_probe_builds_d_with_the_asked_optimizer",),
        "--disc-weight-decay 0.01 (DMD2's) is dropped: the header says 0.01, D trains with 0",
    ),
]
