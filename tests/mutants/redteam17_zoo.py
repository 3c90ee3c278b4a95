"""Round 17, the sixth walkthrough's fixes to the method zoo (ablations/zoo.py; 2026-12-07): a
--table file the zoo did not write is refused, not replaced, and so is a trial into the published
docs/zoo.md and runs/zoo; the plots go beside the table; a run scored on another prompt count or
trained with another budget or phase steps is not reused (any method the tables show); each run
records its budget and prompt count; the tables take both from the runs; mixed seed counts are
said and one seed is not "apart"; the methods shown are listed; without matplotlib no plots are
claimed and the notice comes once; the console copy keeps its brackets; --seeds is checked; an
--import'ed preset joins --methods and each run's process imports it."""

from run import Mutant

ZOO = "ablations/zoo.py"
W = "tests/test_walkthrough6_zoo_units.py::"
T_FOREIGN = W + "test_a_table_file_the_zoo_did_not_write_is_refused_not_replaced"
T_SOURCES = W + "test_a_sources_file_without_its_table_is_refused"
T_TRIAL = W + "test_a_trial_into_the_published_table_or_runs_is_refused"
T_BESIDE = W + "test_the_plots_go_beside_the_table_by_default"
T_PROMPTS = W + "test_a_run_scored_on_another_prompt_count_is_not_reused"
T_OTHER = W + "test_a_run_of_a_method_not_asked_for_is_checked_too"
T_BUDGET = W + "test_a_run_trained_with_another_budget_is_not_reused"
T_STEPS = W + "test_a_run_with_other_phase_steps_is_not_reused"
T_FRESH = W + "test_fresh_retrains_a_run_of_other_settings"
T_RECORD = W + "test_each_run_gets_the_budget_and_records_it_with_its_prompt_count"
T_FROM_RUNS = W + "test_the_tables_prompt_count_and_budget_come_from_the_runs"
T_TWO_COUNTS = W + "test_the_tables_refuse_runs_of_two_prompt_counts"
T_SEEDS = W + "test_mixed_seed_counts_are_said_and_one_seed_is_not_apart"
T_NO_MPL = W + "test_without_matplotlib_no_plots_are_claimed_and_the_notice_comes_once"
T_BAD_SEEDS = W + "test_bad_seeds_are_refused"
T_IMPORT = W + "test_an_imported_preset_joins_the_zoo_and_each_runs_process_imports_it"

MUTANTS = [
    # ---- --table and the published paths --------------------------------------------------------
    Mutant(
        "zoo-replaces-a-foreign-table",
        "ablations/zoo_checks.py",
        "if lines[:1] != [TITLE] or not any(line.startswith(GENERATED) for line in lines):",
        "if not lines:",
        (T_FOREIGN,),
        "--table notes.md: the user's notes are replaced by the zoo's tables",
    ),
    Mutant(
        "zoo-table-checked-only-after-training",
        ZOO,
        "        check_trial(args)\n        check_table(args.table)\n",
        "        check_trial(args)\n",
        (T_FOREIGN,),
        "a foreign --table is found only when the first run has finished, after its training",
    ),
    Mutant(
        "zoo-replaces-a-foreign-sources-file",
        "ablations/zoo_checks.py",
        "    elif sources_file.exists():",
        "    elif False:",
        (T_SOURCES,),
        "the .json beside a new --table is replaced, whoever wrote it",
    ),
    Mutant(
        "zoo-trial-into-the-published-runs",
        "ablations/zoo_checks.py",
        "return {p.resolve() for p in (args.table, args.runs, args.plot, args.frontier)}",
        "return {p.resolve() for p in (args.table, args.plot, args.frontier)}",
        (T_TRIAL,),
        "a trial with its own --table trains into runs/zoo, mixing with the published runs",
    ),
    Mutant(
        "zoo-probe-steps-not-a-trial",
        "ablations/zoo_checks.py",
        '    "--probe-steps": "probe_steps",\n',
        "",
        (T_TRIAL,),
        "--probe-steps 2 (another plan) rewrites docs/zoo.md",
    ),
    Mutant(
        "zoo-plot-always-in-docs",
        ZOO,
        'self.plot = self.table.with_name(f"{self.table.stem}-fd.png")',
        'self.plot = Path("docs/zoo-fd.png")',
        (T_BESIDE,),
        "a trial's --table /tmp/z.md still overwrites docs/zoo-fd.png",
    ),
    # ---- reuse only runs of this call's settings ------------------------------------------------------
    Mutant(
        "zoo-reuses-another-prompt-count",
        "ablations/zoo_checks.py",
        "    if prompts - {want}:",
        "    if False:",
        (T_PROMPTS, T_OTHER),
        "runs scored on 20 prompts are reused and labelled 'on 30 prompts'",
    ),
    Mutant(
        "zoo-reuses-another-budget",
        "ablations/zoo_checks.py",
        "    if recorded_budget not in (None, budget):",
        "    if False:",
        (T_BUDGET,),
        "--budget 4000 reuses the runs trained at 2000",
    ),
    Mutant(
        "zoo-reuses-other-phase-steps",
        "ablations/zoo_checks.py",
        "if planned is not None and steps not in (None, planned):",
        "if False:",
        (T_STEPS,),
        "a run from before budgets were recorded is reused at other phase steps",
    ),
    Mutant(
        "zoo-checks-only-the-methods-asked-for",
        ZOO,
        "check_reuse(args, table_methods(args), budget, steps, todo)",
        "check_reuse(args, list(args.methods), budget, steps, todo)",
        (T_OTHER,),
        "an earlier call's pcm at 20 prompts sits in the 30-prompt table",
    ),
    Mutant(
        "zoo-fresh-still-refused",
        "ablations/zoo_checks.py",
        "        if args.fresh and (m, seed, name) in todo:\n            continue  # retrained\n",
        "",
        (T_FRESH,),
        "--fresh, the way out the refusal names, is refused too",
    ),
    Mutant(
        "zoo-run-not-given-the-budget",
        ZOO,
        'cmd += ["--budget", str(round(budget)), *import_flags(args.imports)]',
        "cmd += [*import_flags(args.imports)]",
        (T_RECORD,),
        "each run records budget 0: a later call cannot tell its budget",
    ),
    Mutant(
        "zoo-json-without-the-budget",
        ZOO,
        '        "budget": args.budget,\n',
        "",
        (T_RECORD,),
        "zoo.json does not record the budget",
    ),
    # ---- the tables -------------------------------------------------------------------------------------
    Mutant(
        "zoo-table-prompts-from-the-call",
        ZOO,
        "    prompts = table_prompts(args, names)\n",
        "    prompts = 10 * args.samples_per_digit\n",
        (T_FROM_RUNS,),
        "'Cells: alignment / FD on 30 prompts' over runs scored on 20",
    ),
    Mutant(
        "zoo-table-mixes-prompt-counts",
        "ablations/zoo_checks.py",
        "    if len(counts) > 1:",
        "    if False:",
        (T_TWO_COUNTS,),
        "20- and 30-prompt rows in one table",
    ),
    Mutant(
        "zoo-budget-from-the-call",
        ZOO,
        'budgets = sorted({i["budget"] for i in found if i.get("budget")}) or ([budget] if budget else [])',
        "budgets = [budget] if budget else []",
        (T_FROM_RUNS,),
        "'Budget: 4,000' under runs trained at 2,000",
    ),
    Mutant(
        "zoo-seed-count-over-every-method",
        ZOO,
        "seeds += [len(v) for v in infos.values() if v]",
        'seeds.append(len({i["seed"] for i in found}))',
        (T_SEEDS,),
        "a 1-seed method beside 2-seed ones: 'Preliminary: 2 seed(s)'",
    ),
    Mutant(
        "zoo-mixed-seed-counts-unsaid",
        ZOO,
        'if len(set(seeds)) > 1 else ""',
        'if False else ""',
        (T_SEEDS,),
        "the banner does not say rows have different seed counts",
    ),
    Mutant(
        "zoo-one-seed-apart",
        ZOO,
        '            if apart != "-" and min(len(seeds), len(ours[3])) < 2:\n'
        '                apart = "n/a"  # one seed: no range to tell apart\n',
        "",
        (T_SEEDS,),
        "a 1-seed method is 'seeds apart: yes' from tlcm-full",
    ),
    Mutant(
        "zoo-header-claims-every-method",
        ZOO,
        "shown += [n for n in names if infos[n] and n not in shown]",
        "shown += [n for n in names if n not in shown]",
        (T_SEEDS,),
        "the header lists every method of ZOO when two ran",
    ),
    # ---- without matplotlib; the console copy -------------------------------------------------------
    Mutant(
        "zoo-final-line-claims-plots",
        ZOO,
        'if pyplot() else "(no plots: no matplotlib)"',
        'if True else "(no plots: no matplotlib)"',
        (T_NO_MPL,),
        "'wrote ... and its plots zoo-fd.png' without matplotlib: no PNG exists",
    ),
    Mutant(
        "zoo-no-matplotlib-notice-per-plot",
        "ablations/zoo_plots.py",
        "@cache\ndef pyplot():",
        "def pyplot():",
        (T_NO_MPL,),
        "the skip notice twice per finished run",
    ),
    Mutant(
        "zoo-console-table-read-as-markup",
        ZOO,
        "console.print(text, highlight=False, soft_wrap=True, markup=False)",
        "console.print(text, highlight=False, soft_wrap=True)",
        (T_NO_MPL,),
        "rich eats '[alignment vs FD at 2 and 4 steps]' from the console copy",
    ),
    # ---- --seeds, --import ------------------------------------------------------------------------------
    Mutant(
        "zoo-empty-seeds-accepted",
        "ablations/zoo_checks.py",
        "    if not seeds:\n",
        "    if False:\n",
        (T_BAD_SEEDS,),
        "--seeds with no value trains nothing, rc 0",
    ),
    Mutant(
        "zoo-negative-seed-accepted",
        "ablations/zoo_checks.py",
        'check_counts({"--seeds": seed}, minimum=0)',
        'check_counts({"--seeds": seed}, minimum=-(10**9))',
        (T_BAD_SEEDS,),
        "--seeds -1 plans .../s-1/pcm",
    ),
    Mutant(
        "zoo-seed-twice-accepted",
        "ablations/zoo_checks.py",
        "if len(set(seeds)) < len(seeds):",
        "if False:",
        (T_BAD_SEEDS,),
        "--seeds 1 1 trains one run folder twice at once",
    ),
    Mutant(
        "zoo-preset-not-a-method",
        ZOO,
        "if method not in table and method not in PRESETS:",
        "if method not in table:",
        (T_IMPORT,),
        "--import mymethod --methods my-method: 'unknown method'",
    ),
    Mutant(
        "zoo-run-process-without-the-import",
        ZOO,
        "*import_flags(args.imports)]",
        "]",
        (T_IMPORT,),
        "each run's process does not import the module: its preset is unknown there",
    ),
    Mutant(
        "zoo-tables-drop-an-imported-methods-runs",
        ZOO,
        "return names + [n for n in dict.fromkeys([*args.methods, *on_disk]) if n not in names]",
        "return names + [n for n in args.methods if n not in names]",
        (T_IMPORT,),
        "a later call without --methods drops the imported method's runs from the tables",
    ),
]
