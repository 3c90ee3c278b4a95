"""Round 17, the sixth walkthrough's fixes to the ablation ladder (ablations/run.py, plot.py,
variants.py; each caught): a table refuses runs (and kept rows) scored on another prompt count or
trained with another --steps, a run records its --steps, an --import's VARIANTS reach the runs, --teacher is checked before any run and
names its count, a trial table's legend, a misspelt parent or variant gets a suggestion,
--rescore and --seeds name what is missing, and the plot's prompt count comes from its data."""

from run import Mutant

LADDER = "ablations/run.py"
PLOT = "ablations/plot.py"
VARIANTS = "ablations/variants.py"
W = "tests/test_walkthrough6_ablation_units.py::"
T_PROMPTS = W + "test_reused_runs_scored_on_another_prompt_count_are_refused_before_any_run"
T_KEPT = W + "test_rows_kept_in_the_table_at_another_prompt_count_are_refused"
T_TEACHER_ROW = W + "test_the_teacher_row_names_its_prompt_count_and_takes_a_teacher_table"
T_TEACHER_FIRST = W + "test_a_teacher_of_another_prompt_count_is_refused_before_any_run"
T_TEACHER_TABLE = W + "test_a_teacher_table_of_the_calls_count_fills_the_teacher_row"
T_RECORD = W + "test_a_run_records_its_trial_steps_and_prompt_count"
T_STEPS = W + "test_a_run_trained_with_other_steps_is_refused_naming_it_and_both_values"
T_FRESH = W + "test_fresh_retrains_a_run_of_other_steps_instead_of_refusing_it"
T_LEGEND = W + "test_a_trial_table_says_what_its_cells_are_its_prompts_seeds_and_steps"
T_LEGEND_FULL = W + "test_the_published_table_gets_no_legend_and_a_full_length_trial_no_steps_note"
T_PARENT = W + "test_a_misspelt_parent_is_one_line_naming_the_variant_and_close_names"
T_SUGGEST = W + "test_an_unknown_variant_gets_a_suggestion"
T_PLOT_UNKNOWN = W + "test_the_plot_calls_an_unknown_row_unknown_with_a_suggestion"
T_PLOT_RETIRED = W + "test_the_plot_draws_a_retired_rows_runs"
T_TITLE = W + "test_the_plots_title_gives_the_prompt_count_of_its_data"
T_PLOT_TEACHER = W + "test_the_plot_refuses_students_of_another_prompt_count_than_the_teacher"
T_PLOT_MIX = W + "test_the_plot_refuses_runs_of_several_prompt_counts"
T_RESCORE = W + "test_rescore_without_any_finished_run_names_the_missing_runs"
T_SEEDS = W + "test_an_empty_or_negative_seed_list_is_refused"
T_IMPORT_SCHED = W + "test_an_imported_modules_variants_are_scheduled_with_the_import"
T_IMPORT_BAD = W + "test_an_imported_module_without_proper_variants_is_refused"

MUTANTS = [
    # ---- one prompt count and one --steps per table --------------------------------------------
    Mutant(
        "ladder-reused-runs-of-another-prompt-count",
        LADDER,
        "counts = {c: runs for c, runs in prompt_counts(found).items() if c != prompts}",
        "counts = {c: runs for c, runs in prompt_counts(found).items() if c is None}",
        (T_PROMPTS, T_KEPT),
        "a 30-prompt trial reuses 20-prompt runs: FD of both in one table, silently",
    ),
    Mutant(
        "ladder-kept-table-rows-unchecked",
        LADDER,
        '    check_mix(kept_rows, args.steps, prompts, f"rows kept in {args.table} ({table_json})")\n',
        "",
        (T_KEPT,),
        "the rows a call keeps in its --table may have been scored on another prompt count",
    ),
    Mutant(
        "ladder-trial-steps-not-recorded",
        LADDER,
        '                "trial_steps": args.steps,\n',
        "",
        (T_RECORD,),
        "ablation.json does not say a run was a --steps trial: a later call cannot tell",
    ),
    Mutant(
        "ladder-unrecorded-steps-match-anything",
        LADDER,
        'if run.get("trial_steps", 0) != steps',
        'if run.get("trial_steps", steps) != steps',
        (T_STEPS,),
        "a --steps 3 trial reuses full-length runs (no trial_steps recorded) as its parents",
    ),
    Mutant(
        "ladder-retrained-runs-counted-as-kept",
        LADDER,
        "if (kept := {s: run for s, run in seeds.items() if (s, name) not in retrained})",
        "if (kept := dict(seeds))",
        (T_FRESH,),
        "--fresh cannot replace a run of other --steps: the run it retrains is refused first",
    ),
    # ---- the teacher row ------------------------------------------------------------------------
    Mutant(
        "ladder-teacher-of-another-prompt-count",
        LADDER,
        "    if theirs is not None and theirs != prompts:\n",
        "    if theirs is None:\n",
        (T_TEACHER_ROW, T_TEACHER_FIRST),
        "--teacher on 500 prompts fills the teacher row of a 30-prompt trial",
    ),
    Mutant(
        "ladder-teacher-row-without-its-count",
        LADDER,
        'what = f"DDIM + CFG on {prompts} prompts, its lowest-FD w',
        'what = f"DDIM + CFG, its lowest-FD w',
        (T_TEACHER_ROW,),
        "the teacher row does not state the prompt count its FD was scored on",
    ),
    Mutant(
        "ladder-teacher-checked-after-training",
        LADDER,
        "    teacher_table(prompts, args.teacher)  # a --teacher of another prompt count: before any run\n",
        "",
        (T_TEACHER_FIRST,),
        "a wrong --teacher is refused only after every variant has trained",
    ),
    Mutant(
        "ladder-teacher-option-ignored",
        LADDER,
        "    lines.append(teacher_row(prompts, teacher))\n",
        "    lines.append(teacher_row(prompts))\n",
        (T_TEACHER_TABLE,),
        "--teacher T.json is accepted and the table still says there is no teacher table",
    ),
    Mutant(
        "ladder-teacher-missing-file-traceback",
        LADDER,
        "    if not teacher.is_file():\n",
        "    if teacher is None:\n",
        (T_TEACHER_ROW,),
        "a misspelt --teacher path ends in a FileNotFoundError traceback",
    ),
    # ---- the trial table's legend ---------------------------------------------------------------
    Mutant(
        "ladder-trial-table-without-legend",
        LADDER,
        'note = "" if args.table == Args.table else legend(found, prompts, args.steps)',
        'note = ""',
        (T_LEGEND,),
        "a trial table is rows only: no cell legend, prompt count, seeds or --steps",
    ),
    Mutant(
        "ladder-old-legend-read-as-rows",
        LADDER,
        'rows = "\\n".join(line for line in current.splitlines() if line.startswith("|"))',
        "rows = current.strip()",
        (T_LEGEND,),
        "the second call into a trial table reads the old legend's table header as a row",
    ),
    Mutant(
        "ladder-legend-steps-note-inverted",
        LADDER,
        "    if steps:\n        text +=",
        "    if not steps:\n        text +=",
        (T_LEGEND, T_LEGEND_FULL),
        "a --steps 5 trial's legend does not say its rows are 5-step trials",
    ),
    # ---- names ----------------------------------------------------------------------------------
    Mutant(
        "ladder-misspelt-parent-keyerror",
        LADDER,
        "            if parent is not None and parent not in VARIANTS:\n"
        '                raise unknown_variant(parent, f"variant {name!r}: unknown parent")\n',
        "",
        (T_PARENT,),
        "a Variant with parent='mlcd-skip1O' ends in a KeyError traceback",
    ),
    Mutant(
        "variants-no-did-you-mean",
        VARIANTS,
        """    hint = f" (did you mean {' or '.join(close)}?)" if close else \"\"""",
        '    hint = ""',
        (T_SUGGEST, T_PARENT),
        "--variants mlcd-skp10 lists forty names and no suggestion",
    ),
    Mutant(
        "plot-unknown-row-told-to-run-it",
        PLOT,
        "if not rows and name not in VARIANTS:",
        "if not rows and name is None:",
        (T_PLOT_UNKNOWN,),
        "ablations.plot --rows mlcd-skp10 says to run the variant that does not exist",
    ),
    Mutant(
        "plot-retired-row-refused",
        PLOT,
        "if not rows and name not in VARIANTS:",
        "if name not in VARIANTS:",
        (T_PLOT_RETIRED,),
        "a retired variant's runs on disk can no longer be drawn",
    ),
    # ---- --rescore and --seeds ------------------------------------------------------------------
    Mutant(
        "ladder-rescore-of-nothing-silent",
        LADDER,
        "    if not done:\n        raise TLCMError(",
        "    if not pairs:\n        raise TLCMError(",
        (T_RESCORE,),
        "--rescore --seeds 7 8 without such runs prints nothing and exits 0",
    ),
    Mutant(
        "ladder-empty-seeds-accepted",
        LADDER,
        "    if not args.seeds:\n",
        "    if args.seeds is None:\n",
        (T_SEEDS,),
        "--seeds with no values trains nothing and rewrites the table",
    ),
    Mutant(
        "ladder-negative-seed-accepted",
        LADDER,
        'check_counts({"--seeds": min(args.seeds)}, minimum=0)',
        'check_counts({"--seeds": max(args.seeds)}, minimum=0)',
        (T_SEEDS,),
        "--seeds 0 -1 trains into s-1",
    ),
    # ---- the plot's prompt count ----------------------------------------------------------------
    Mutant(
        "plot-title-500-prompts",
        PLOT,
        "fig.suptitle(f\"Two-ink miniature, {prompts or 'an unrecorded number of'} prompts, fixed noise\")",
        'fig.suptitle("Two-ink miniature, 500 prompts, fixed noise")',
        (T_TITLE,),
        "a 20-prompt plot is titled 500 prompts",
    ),
    Mutant(
        "plot-students-against-another-teacher-count",
        PLOT,
        "if ours and theirs and ours != theirs:",
        "if ours and theirs and ours > theirs:",
        (T_PLOT_TEACHER,),
        "20-prompt students are drawn against the 500-prompt teacher curves",
    ),
    Mutant(
        "plot-mixed-student-counts",
        PLOT,
        "    if len(counts) > 1:\n",
        "    if len(counts) > 2:\n",
        (T_PLOT_MIX,),
        "rows scored on 20 and 30 prompts are drawn as one comparison",
    ),
    Mutant(
        "plot-frontier-rows-unchecked",
        PLOT,
        "sources(args.runs, list(dict.fromkeys([*args.rows, *(v.name for v in ROWS)])))",
        "sources(args.runs, list(args.rows))",
        (T_PLOT_MIX,),
        "the 2-step frontier draws every row on disk, whatever prompt count it was scored on",
    ),
    # ---- --import ---------------------------------------------------------------------------------
    Mutant(
        "ladder-import-not-passed-to-the-runs",
        LADDER,
        '"--steps", str(args.steps), *import_flags(args.imports)]',
        '"--steps", str(args.steps)]',
        (T_IMPORT_SCHED,),
        "each scheduled run fails: its process does not import the module that defines its variant",
    ),
    Mutant(
        "variants-imported-name-clash-accepted",
        VARIANTS,
        "        if VARIANTS.get(v.name, v) is not v:\n",
        "        if v.name in ROWS:\n",
        (T_IMPORT_BAD,),
        "an imported 'tlcm-full' silently replaces the ladder's row of that name",
    ),
    Mutant(
        "ladder-import-without-variants-traceback",
        LADDER,
        "        if rows is None:\n",
        "        if rows is False:\n",
        (T_IMPORT_BAD,),
        "--import of a module without VARIANTS ends in a TypeError traceback",
    ),
]
