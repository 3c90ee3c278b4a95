"""A tenth red-team audit, area ablations (2026-12-06; 25 mutants, 25 survived at first, each now
caught): the ablation ladder's variants (ablations/variants.py: the base recipe whose grid every
row samples with, a row's init_from and out_dir, the grid override, the +dmd row's dropped term, the
stage-length rows' steps on the right phase, tlcm-full's DMD lr in the teacher-real GAN rows), its
runner (ablations/run.py: ancestors trained first, --fresh retraining only the named rows, a row
waiting for its running parent, the one-run entry's seed and its ablation.json, retired rows kept by
the merge), the method zoo (ablations/zoo.py: the 1-step floor and the half-step round-up of the
step scaling, the default budget from the UNet probe, each miniature planned with its own rates, the
TLCM sampler's gammas, "n/a" only above M, the teacher row's alignment / FD, the frontier's axes and
FD span), ablations/plot.py (the teacher's best w, the 2-step frontier's step count) and
ablations/disc_probe.py. Only tests/test_ablations.py's table and tests/test_zoo.py's budget and
table tests covered the area; the rest ran only in hour-long training sessions, so every mutant
needed a new test in tests/test_ablation_units.py (training, scoring, subprocesses and matplotlib
replaced by recording fakes).

A real bug, fixed: ablations/disc_probe.py's ``samples`` drew the fake side with the grid's gamma
only, ignoring its first move (``first_gamma``): for the tlcm-full runs that docs/disc-probe.md
probes (gamma 0, first move 1) the q = 4 fakes came from DDIM from pure noise, not from the
student's own sampler its scores used (the mutant "disc-probe-fakes-without-the-first-move" is
the source before the fix; docs/disc-probe.md's q = 4 rows predate it).

Dropped: five more mutants (phase fields ignored, a drop pair unpacked backwards, the table file
without markers overwritten, the zoo's run folder seed-first, TLCM scores copied when M matches) are
caught by the same new tests as the ones kept (the zoo's run folder also by test_zoo.py's table
test); the ladder base built from tlcm-paper's phases first is equivalent (tlcm-paper's MLCD and LCD
equal tlcm-full's), so the kept mutant swaps the base recipe instead; none of the kept ones is
equivalent."""

from run import Mutant

VARIANTS = "ablations/variants.py"
LADDER = "ablations/run.py"
ZOO = "ablations/zoo.py"
PLOT = "ablations/plot.py"
PROBE = "ablations/disc_probe.py"

T = "tests/test_ablation_units.py::"
T_CHAIN = T + "test_the_l2_chain_composes_the_shipped_presets"
T_GRID = T + "test_only_the_lcm_style_row_and_the_gamma_rows_change_the_grid"
T_DMD_ROW = T + "test_the_dmd_row_drops_the_gan_and_the_gan_rows_keep_both"
T_STAGES = T + "test_stage_length_rows_train_the_steps_their_descriptions_name"
T_GAN_REAL = T + "test_the_teacher_real_gan_rows_run_tlcm_fulls_dmd"
T_NEEDED = T + "test_a_variants_ancestors_come_first_in_ladder_order"
T_FRESH = T + "test_fresh_retrains_the_named_variants_and_reuses_their_ancestors"
T_PARENT_FIRST = T + "test_a_row_starts_once_its_parents_run_has_finished"
T_ONLY = T + "test_one_variant_trains_with_its_seed_into_its_seed_folder"
T_RETIRED = T + "test_rows_of_retired_variants_stay_after_the_ladders"
T_FLOOR = T + "test_no_phase_is_scaled_to_zero_steps"
T_ROUND_UP = T + "test_a_leftover_of_half_a_step_or_more_rounds_up"
T_PLAN = T + "test_the_default_budget_is_tlcm_fulls_unet_cost_and_each_miniature_plans_with_its_rates"
T_ZOO_RUN = T + "test_a_zoo_run_lands_where_the_tables_read_it_scored_with_both_samplers"
T_TABLE_M = T + "test_the_table_fills_every_step_count_up_to_m"
T_TEACHER_ROW = T + "test_the_teacher_row_is_the_committed_tables_lowest_fd_per_step_count"
T_FRONTIER = T + "test_the_frontier_plots_fd_on_x_and_lists_what_lies_beyond_its_span"
T_CURVES = T + "test_the_teacher_curves_are_fd_and_alignment_per_step_count_up_to_8"
T_TWO_STEP = T + "test_the_two_step_frontier_draws_each_rows_two_step_means"
T_PROBE_FAKES = T + "test_the_disc_probes_fakes_come_from_the_students_own_sampler"

T_ABL = "tests/test_ablations.py"
T_ZOO_STEPS = "tests/test_zoo.py::test_scaled_steps_meet_the_budget_within_one_step"
T_ZOO_LEFTOVER = "tests/test_zoo.py::test_the_leftover_budget_goes_to_the_largest_remainders_first"
T_ZOO_TABLE = "tests/test_zoo.py::test_the_table_shows_mean_min_max_and_na_above_m"
T_ZOO_REUSE = "tests/test_zoo.py::test_the_runner_reuses_finished_runs"
T_ZOO_DOCS = "tests/test_zoo.py::test_write_docs_labels_one_seed_preliminary"

MUTANTS = [
    # ---- the ladder's variants (ablations/variants.py) ---------------------------------------
    Mutant(
        "variants-ladder-base-is-tlcm-paper",
        VARIANTS,
        "    full = tlcm_full()\n    return replace(full, phases=",
        "    full = tlcm_full()\n    return replace(tlcm_paper(), phases=",
        (T_ABL, T_CHAIN),
        "every row samples with tlcm-paper's grid (gamma 1), not tlcm-full's sampler, as docs/ablations.md says",
    ),
    Mutant(
        "variants-continue-from-own-folder",
        VARIANTS,
        "init_from=runs / variant.parent if variant.parent else None",
        "init_from=runs / variant.name if variant.parent else None",
        (T_ABL, T_CHAIN),
        "a continuation row initialises its student from its own (empty) folder, not its parent's run",
    ),
    Mutant(
        "variants-every-row-writes-the-runs-folder",
        VARIANTS,
        "runtime=replace(base.runtime, out_dir=runs / variant.name)",
        "runtime=replace(base.runtime, out_dir=runs)",
        (T_ABL, T_CHAIN),
        "every variant of a seed writes the same folder: each run overwrites the last, children read it",
    ),
    Mutant(
        "variants-grid-override-ignored",
        VARIANTS,
        "student = replace(student, grid=variant.grid or student.grid)",
        "student = replace(student, grid=student.grid)",
        (T_ABL, T_GRID),
        "single-jump-lcd trains M = 8 segments (not LCM's one), the gamma-0 rows train with gamma 1",
    ),
    Mutant(
        "variants-dmd-row-drops-the-dmd",
        VARIANTS,
        'drop=(("dmd_gan", "gan"),)),',
        'drop=(("dmd_gan", "dmd"),)),',
        (T_ABL, T_DMD_ROW),
        "the '+ DMD' row trains a GAN alone",
    ),
    Mutant(
        "variants-stage-length-lcd-steps-on-the-wrong-phase",
        VARIANTS,
        'parent=f"mds-states-l2-{x}x", phase_fields={"lcd": {"steps": 100 * x}}),',
        'parent=f"mds-states-l2-{x}x", phase_fields={"mlcd": {"steps": 100 * x}}),',
        (T_ABL, T_STAGES),
        "the 2x / 3x stage-2 steps go to a phase the row does not train: mlcd+lcd-l2-2x equals mlcd-2x+lcd-l2",
    ),
    Mutant(
        "variants-teacher-real-gan-at-the-papers-dmd-lr",
        VARIANTS,
        'AS_TLCM_FULL_DMD = {"steps": _DMD.steps, "lr": _DMD.lr}',
        'AS_TLCM_FULL_DMD = {"steps": _DMD.steps, "lr": 1e-5}',
        (T_ABL, T_GAN_REAL),
        "+gan-teacher-real's DMD at tlcm-paper's lr 1e-5, not tlcm-full's 3e-5: the GAN is not the only change",
    ),
    # ---- the ladder runner (ablations/run.py) ------------------------------------------------
    Mutant(
        "ladder-needed-without-ancestors",
        LADDER,
        "        while name:\n            want.add(name)",
        "        if name:\n            want.add(name)",
        (T_ABL, T_NEEDED),
        "--variants tlcm-full on a fresh folder starts it without its parents' runs (init_from missing)",
    ),
    Mutant(
        "ladder-fresh-retrains-ancestors",
        LADDER,
        "if (args.fresh and n in named) or not",
        "if args.fresh or not",
        (T_ABL, T_FRESH),
        "--fresh --variants X retrains X's whole chain, changing its parents' rows",
    ),
    Mutant(
        "ladder-child-starts-beside-its-running-parent",
        LADDER,
        "if len(running) >= args.jobs or (parent in todo or parent in running):",
        "if len(running) >= args.jobs or parent in todo:",
        (T_ABL, T_PARENT_FIRST),
        "a row starts while its parent is still training: it continues from a missing or half-written student",
    ),
    Mutant(
        "ladder-one-run-ignores-its-seed",
        LADDER,
        "eval_samples_per_digit=args.samples_per_digit, resume=False, seed=seed)",
        "eval_samples_per_digit=args.samples_per_digit, resume=False)",
        (T_ABL, T_ONLY),
        "every seed folder trains with the recipe's seed 0: the 'seeds' are copies, the spread is zero",
    ),
    Mutant(
        "ladder-run-time-written-beside-the-runs",
        LADDER,
        '(runs / variant.name / "ablation.json").write_text(',
        '(runs / "ablation.json").write_text(',
        (T_ABL, T_ONLY),
        "the run's time lands in s<seed>/ablation.json (every variant overwriting it): the seconds column is nan",
    ),
    Mutant(
        "ladder-merge-drops-retired-rows",
        LADDER,
        "order = [n for n in VARIANTS if n in rows] + [n for n in rows if n not in VARIANTS]",
        "order = [n for n in VARIANTS if n in rows]",
        (T_ABL, T_RETIRED),
        "a run of any variant deletes the rows of variants no longer in the ladder (contrary to the docstring)",
    ),
    # ---- the method zoo (ablations/zoo.py) ----------------------------------------------------
    Mutant(
        "zoo-scaled-phase-can-get-zero-steps",
        ZOO,
        "out = {n: max(1, math.floor(v)) for n, v in exact.items()}",
        "out = {n: math.floor(v) for n, v in exact.items()}",
        (T_ZOO_STEPS, T_FLOOR),
        "a short phase beside a long one is scaled away (0 steps): the method loses a phase",
    ),
    Mutant(
        "zoo-leftover-never-rounds-up",
        ZOO,
        "if left >= rates[n] / 2:",
        "if left >= rates[n]:",
        (T_ZOO_STEPS, T_ZOO_LEFTOVER, T_ROUND_UP),
        "a leftover of more than half a step is dropped: the run stays up to one step under the budget",
    ),
    Mutant(
        "zoo-flow-planned-with-unet-rates",
        ZOO,
        "{n: p.steps for n, p in method_recipe(name, m).phases.items()}, rates[m][name], budget",
        '{n: p.steps for n, p in method_recipe(name, m).phases.items()}, rates["unet"][name], budget',
        (T_ZOO_REUSE, T_PLAN),
        "the flow miniature's steps are scaled with the UNet's evaluations per step: not equal compute",
    ),
    Mutant(
        "zoo-default-budget-from-the-last-miniature",
        ZOO,
        'base = probes(args, "unet", [BASE_METHOD])[BASE_METHOD]',
        "base = probes(args, args.miniatures[-1], [BASE_METHOD])[BASE_METHOD]",
        (T_ZOO_REUSE, T_PLAN),
        "the default budget is tlcm-full's cost on the flow miniature, not on the UNet one (the docstring's)",
    ),
    Mutant(
        "zoo-tlcm-sampler-gammas-swapped",
        ZOO,
        "tlcm_grid = grid.with_sampler(MINIATURE_SAMPLER.gamma, MINIATURE_SAMPLER.first_gamma)",
        "tlcm_grid = grid.with_sampler(MINIATURE_SAMPLER.first_gamma, MINIATURE_SAMPLER.gamma)",
        (T_ZOO_RUN,),
        "the 'TLCM sampler' column is gamma 1 then DDIM swapped: DDIM first, then stochastic moves",
    ),
    Mutant(
        "zoo-table-na-at-m",
        ZOO,
        '                if n > m:\n                    cells.append("n/a")',
        '                if n >= m:\n                    cells.append("n/a")',
        (T_ZOO_TABLE, T_TABLE_M),
        "the scores at a method's own M steps show 'n/a': pcm's (M = 4) 4-step cells disappear",
    ),
    Mutant(
        "zoo-teacher-row-fd-and-alignment-swapped",
        "ablations/tables.py",
        "f\"{row['alignment']:.3f} / {row['fd']:.2f} (w {row['w']:g})\"",
        "f\"{row['fd']:.3f} / {row['alignment']:.2f} (w {row['w']:g})\"",
        (T_ZOO_TABLE, T_TEACHER_ROW),
        "the teacher row's cells read FD / alignment under the methods' alignment / FD",
    ),
    Mutant(
        "zoo-frontier-axes-swapped",
        "ablations/zoo_plots.py",
        'ax.errorbar(fd, align, xerr=[[fd - min(seeds)], [max(seeds) - fd]], fmt="o", ms=4,',
        'ax.errorbar(align, fd, xerr=[[fd - min(seeds)], [max(seeds) - fd]], fmt="o", ms=4,',
        (T_ZOO_DOCS, T_FRONTIER),
        "the methods are drawn at (alignment, FD) on axes labelled FD (x) and alignment (y)",
    ),
    Mutant(
        "zoo-frontier-span-from-the-highest-fd",
        "ablations/zoo_plots.py",
        'lowest = min([p[0] for p in points.values()] + [r["fd"] for r in teacher])',
        'lowest = max([p[0] for p in points.values()] + [r["fd"] for r in teacher])',
        (T_ZOO_DOCS, T_FRONTIER),
        "the x range is set from the worst FD: outliers are drawn, squashing the methods near the frontier",
    ),
    # ---- the plots (ablations/plot.py) -------------------------------------------------------
    Mutant(
        "plot-teacher-best-w-is-the-worst",
        PLOT,
        'if r["steps"] <= 8 and (r["steps"] not in best or r["fd"] < best[r["steps"]][0]):',
        'if r["steps"] <= 8 and (r["steps"] not in best or r["fd"] > best[r["steps"]][0]):',
        (T_CURVES,),
        "the 'best w per step count' teacher curve is the highest-FD w",
    ),
    Mutant(
        "plot-two-step-frontier-reads-one-step",
        PLOT,
        "rows = scores(args.runs, v.name).get(2)",
        "rows = scores(args.runs, v.name).get(1)",
        (T_TWO_STEP,),
        "the 2-step frontier draws the rows' 1-step scores against the teacher's 2-step DDIM",
    ),
    # ---- the discriminator probe (ablations/disc_probe.py) ------------------------------------
    Mutant(
        "disc-probe-fakes-without-the-first-move",
        PROBE,
        "                    generator=g,\n                    first_gamma=grid.first_gamma,\n",
        "                    generator=g,\n",
        (T_PROBE_FAKES,),
        "the source before this round's fix: the fake side of a tlcm-full run (gamma 0, first move 1) is "
        "sampled with DDIM from pure noise, not the student's own sampler that its scores used",
    ),
]
