"""An eleventh red-team audit, area outputs (2026-12-06; 27 mutants, 20 of the first 25 survived at
first, each now caught): what the user reads after a run. The end-of-run summary (tlcm/summary.py:
the files it lists, the training seconds, the commands it suggests for another base model, the
docs/results.md note, the console's paths from another working directory, the eval.json it says is
replaced), ``python -m tlcm.evaluate`` (teacher-table's JSON beside its markdown and the w each row
is sampled at, student's 1..M step range and scored denoiser, compare's step-by-step order and
rounding), the results table's json order and image grid (tlcm/eval/table.py), the model card's
scores commands, first-move gamma and timestep table (tlcm/card.py) and metrics.jsonl's it/s and
tracker numbers (tlcm/report.py). Ten of the survivors had no test at all naming their code (the
runner's "NO TESTS RAN" against an empty tests/test_output_units.py); the others passed the tests
named. ``evaluate-student-scores-the-teacher`` was caught at first only by accident (the gamma-file
test's stub base is None, so ``base.denoiser()`` raised); tests/test_output_units.py now checks the
scored denoiser is the student's. The 26th mutant undoes this round's fix of a real bug: ``compare``
took a teacher table of mixed prompt counts (rows at 200 and 500) as "not recorded" and set it
beside a 200-prompt student, its best w from the 500-prompt rows (tlcm/evaluate.py; it now refuses,
as summary.committed_teacher does). The 27th undoes the second fix: the summary's and the model
card's wrapped prose broke the paths in it at hyphens (textwrap's default; a run folder such as
runs/tlcm-full, the pytest temporary folders) and cut paths over 100 characters, so the eval.json
it names could not be copied from the text (tlcm/summary.py; now wrapped at spaces only).
tlcm/eval/metrics.py got no mutant: its unmutated lines need open_clip / transformers weights whose
tests (tests/test_eval.py) already pin the scores, or are equivalent on square images (HPS's centre
crop). Dropped as equivalent: the sampler closure's
``w=w, n=n`` defaults (the sampler runs inside its loop iteration), ``committed_teacher``'s ``if
prompts`` (no table has rows of prompts None), ``alphas_cumprod.double()`` -> float (the scheduler
holds float32: the same values reach the float64 arithmetic).
"""

from run import Mutant

SUMMARY = "tlcm/summary.py"
EVALUATE = "tlcm/evaluate.py"
TABLE = "tlcm/eval/table.py"
CARD = "tlcm/card.py"
REPORT = "tlcm/report.py"

T_SUMMARY = "tests/test_summary.py::test_summary_says_where_everything_went_and_scores_beside_the_teacher_at_the_same_prompts"
T_OTHER_BASE = (
    "tests/test_summary.py::test_summary_of_another_base_model_has_no_teacher_and_says_how_to_get_one"
)
T_COMPARE_COUNTS = "tests/test_summary.py::test_compare_refuses_scores_on_different_prompt_counts"
T_COMPARE_BEST = (
    "tests/test_summary.py::test_compare_sets_the_teachers_best_w_per_step_count_beside_the_student"
)
T_TEACHER_DDIM = "tests/test_summary.py::test_the_teacher_table_scores_deterministic_ddim_with_cfg"
T_EVAL_GAMMA = "tests/test_reliability_units.py::test_evaluate_student_with_a_gamma_writes_its_own_file"
T_PAPER_TABLE = "tests/test_eval.py::test_results_table_in_the_papers_layout"
T_EXTRA_METRICS = "tests/test_eval.py::test_results_table_places_and_rounds_the_extra_metrics"
T_COMFY_SAMPLER = (
    "tests/test_export.py::test_comfyui_steps_say_when_the_student_ships_another_sampler_than_lcm"
)
T_CARD_SIGMAS = "tests/test_export.py::test_card_comfyui_sigmas_and_sgm_uniform_timesteps_by_hand"
T_SINKS_EXC = "tests/test_trackers.py::test_sinks_are_closed_on_an_exception"
T_NARROW = "tests/test_summary.py::test_the_progress_display_wraps_in_a_narrow_terminal_instead_of_cutting"
T_NEW = "tests/test_output_units.py"

MUTANTS = [
    # ---- the end-of-run summary (tlcm/summary.py) ----------------------------------------------
    Mutant(
        "summary-compare-command-runs-the-base-model",
        SUMMARY,
        'f"  python -m tlcm.evaluate compare --run {show(run)} --teacher T.json",',
        'f"  python -m tlcm.evaluate compare --run {show(model)} --teacher T.json",',
        (T_OTHER_BASE, T_NEW),
        "the command printed to compare with a new teacher table names the base model's folder as the "
        "run: it fails (no eval.json there)",
    ),
    Mutant(
        "summary-docs-note-for-any-base-model",
        SUMMARY,
        "if Path(model).resolve() == MINIATURE_SD.resolve() and prompts != DOCS_PROMPTS:",
        "if prompts != DOCS_PROMPTS:",
        (T_OTHER_BASE, T_NEW),
        "a student of the user's own base model is told docs/results.md's miniature FDs are its own at 500 "
        "prompts: a comparison with another model's numbers",
    ),
    Mutant(
        "summary-lists-files-the-run-lacks",
        SUMMARY,
        "return [(path, text) for path, text in what.items() if path.exists()]",
        "return list(what.items())",
        (T_SUMMARY, T_OTHER_BASE, T_NEW),
        "the summary points at checkpoints/ or samples/ a run did not write (--no-sample-grid, no save)",
    ),
    Mutant(
        "summary-training-time-in-minutes",
        SUMMARY,
        'lines = [f"Finished: {seconds:.0f} s of training{cost}.',
        'lines = [f"Finished: {seconds / 60:.0f} s of training{cost}.',
        (T_SUMMARY, T_NEW),
        "the training time is minutes labelled as seconds: a 241 s run reads 4 s",
    ),
    Mutant(
        "summary-console-shows-repository-paths",
        SUMMARY,
        'lines += ["", scores_text(scores, model.path, run, shell_path)]',
        'lines += ["", scores_text(scores, model.path, run, repo_path)]',
        (T_SUMMARY, T_NEW),
        "the console's teacher-table path is relative to the repository, which does not resolve from a "
        "working directory elsewhere",
    ),
    Mutant(
        "summary-no-teacher-table-alignment-and-fd-swapped",
        SUMMARY,
        "[f\"| {r['steps']} | {r['alignment']:.3f} | {r['fd']:.2f} |\" for r in scores]",
        "[f\"| {r['steps']} | {r['fd']:.2f} | {r['alignment']:.3f} |\" for r in scores]",
        (T_OTHER_BASE,),
        "without a teacher table the FD shows under 'alignment' and the alignment under 'FD'",
    ),
    Mutant(
        "summary-names-the-student-folders-eval-json",
        SUMMARY,
        "images is higher); to score the student on those (this replaces {run}/eval.json):",
        "images is higher); to score the student on those (this replaces {run}/student/eval.json):",
        (T_SUMMARY, T_NEW),
        "the summary says the 500-prompt scoring replaces RUN/student/eval.json; it replaces RUN/eval.json",
    ),
    Mutant(
        "summary-note-wraps-paths-at-hyphens",
        SUMMARY,
        "return textwrap.fill(text, 100, break_long_words=False, break_on_hyphens=False)",
        "return textwrap.fill(text, 100)",
        (T_NEW,),
        "the second fix of this round (a real bug): the wrapped note breaks RUN/eval.json at a hyphen "
        "(runs/tlcm-full) or cuts a path over 100 characters across two lines",
    ),
    # ---- python -m tlcm.evaluate ---------------------------------------------------------------
    Mutant(
        "teacher-table-markdown-overwrites-the-json",
        EVALUATE,
        'out.with_suffix(".md").write_text(markdown_table(rows, ["w", "steps", "alignment", "fd"]))',
        'out.write_text(markdown_table(rows, ["w", "steps", "alignment", "fd"]))',
        (T_TEACHER_DDIM, T_NEW),
        "the teacher table's JSON (what compare and the summary read) is overwritten by its markdown",
    ),
    Mutant(
        "teacher-table-every-row-at-the-first-w",
        EVALUATE,
        "teacher = Guided(base.denoiser(), w, uncond[:1])",
        "teacher = Guided(base.denoiser(), guidance_scales[0], uncond[:1])",
        (T_TEACHER_DDIM, T_NEW),
        "every row is sampled at the first guidance scale but labelled with its own w: the teacher's "
        "'best w' is noise",
    ),
    Mutant(
        "evaluate-student-refuses-M-steps",
        EVALUATE,
        "if not all(1 <= n <= grid.num_milestones for n in steps):",
        "if not all(1 <= n < grid.num_milestones for n in steps):",
        (T_EVAL_GAMMA, T_NEW),
        "--steps 8 of an M = 8 student (its default table's last row) is refused",
    ),
    Mutant(
        "evaluate-student-scores-the-teacher",
        EVALUATE,
        "rows = student_scores(base, trained.denoiser(), steps,",
        "rows = student_scores(base, base.denoiser(), steps,",
        (T_EVAL_GAMMA, T_NEW),
        "the student's scores are the base model's without CFG: the distilled LoRA never runs",
    ),
    Mutant(
        "compare-rows-grouped-by-model",
        EVALUATE,
        'rows.sort(key=lambda r: (r["steps"], r["model"]))',
        'rows.sort(key=lambda r: (r["model"], r["steps"]))',
        (T_COMPARE_BEST, T_COMPARE_COUNTS, T_NEW),
        "compare's table lists every student row after every teacher row: no step count side by side",
    ),
    Mutant(
        "compare-accepts-a-mixed-prompt-count-table",
        EVALUATE,
        "if len(recorded := sorted(counts - {None})) > 1:",
        "if len(recorded := sorted(counts - {None})) > 2:",
        (T_NEW,),
        "the fix of this round (a real bug): a teacher table of 200- and 500-prompt rows is compared with a "
        "200-prompt student, its best w taken from the 500-prompt rows (lower FD from more images)",
    ),
    Mutant(
        "evaluate-table-two-decimals",
        EVALUATE,
        'fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)',
        'fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)',
        (T_COMPARE_COUNTS,),
        "alignment (an accuracy on 200-500 prompts, steps of 0.002-0.005) is rounded to 0.01",
    ),
    # ---- results tables and grids (tlcm/eval/table.py) -----------------------------------------
    Mutant(
        "results-columns-in-the-asked-order",
        TABLE,
        "metrics = [m for m in COLUMNS if m in metrics]",
        "metrics = [m for m in metrics if m in COLUMNS]",
        (T_PAPER_TABLE, T_EXTRA_METRICS),
        "the columns follow --metrics' order, not the paper's Table 1",
    ),
    Mutant(
        "results-json-unsorted",
        TABLE,
        'js.write_text(json.dumps(sort_rows(rows), indent=1) + "\\n")',
        'js.write_text(json.dumps(rows, indent=1) + "\\n")',
        (T_NEW,),
        "results.json lists the rows in scoring order, results.md in the table's: the two disagree",
    ),
    Mutant(
        "image-grid-transposed",
        TABLE,
        "grid.paste(tile, (label_width + c * (thumb + pad), y))",
        "grid.paste(tile, (label_width + r * (thumb + pad), top + c * (thumb + pad)))",
        (T_NEW,),
        "the grid puts each model in a column under another model's label: rows are prompts",
    ),
    Mutant(
        "image-grid-first-row-over-the-prompts",
        TABLE,
        "y = top + r * (thumb + pad)",
        "y = r * (thumb + pad)",
        (T_NEW,),
        "the images start at the top, over the prompts written above them, and the last row's band stays empty",
    ),
    # ---- the model card (tlcm/card.py) ---------------------------------------------------------
    Mutant(
        "card-scores-name-the-student-folder-as-the-run",
        CARD,
        "scores_text(scores, base.path, out_dir.parent)",
        "scores_text(scores, base.path, out_dir)",
        (T_NEW,),
        "the card's commands say --run RUN/student: tlcm.evaluate finds no run (no checkpoints) there",
    ),
    Mutant(
        "card-timestep-table-drops-M",
        CARD,
        "for n in [s for s in CARD_STEPS if s <= num_milestones]:\n        scheduler.set_timesteps(n)\n",
        "for n in [s for s in CARD_STEPS if s < num_milestones]:\n        scheduler.set_timesteps(n)\n",
        (T_NEW,),
        "an M = 4 student's card lists the 1- and 2-step timesteps but not its 4-step ones",
    ),
    Mutant(
        "card-sgm-uniform-of-1000-timesteps",
        CARD,
        "uniform = sgm_uniform_timesteps(n, scheduler.config.num_train_timesteps)",
        "uniform = sgm_uniform_timesteps(n, 1000)",
        (T_CARD_SIGMAS, T_NEW),
        "the sgm_uniform column assumes 1000 training timesteps whatever the schedule",
    ),
    Mutant(
        "card-first-move-gamma-inverted",
        CARD,
        'first_move = "" if first is None else',
        'first_move = "" if first is not None else',
        (T_NEW,),
        "the card hides the first move's gamma of a grid that has one (and formats None for one that has not)",
    ),
    Mutant(
        "card-comfy-lcm-ignores-gamma",
        CARD,
        "lcm = grid.gamma == 1 and grid.first_gamma in (None, 1)",
        "lcm = grid.first_gamma in (None, 1)",
        (T_COMFY_SAMPLER,),
        "a gamma-0 student is sent to ComfyUI's lcm sampler (gamma 1) without a word",
    ),
    # ---- metrics.jsonl and the progress display (tlcm/report.py) -------------------------------
    Mutant(
        "report-speed-since-the-phase-start",
        REPORT,
        "        self._last = now\n        return round(speed, 3)",
        "        return round(speed, 3)",
        (T_NARROW, T_NEW),
        "it/s is steps per second since the phase started divided into one step: it falls as the phase runs",
    ),
    Mutant(
        "report-phase-clock-not-reset",
        REPORT,
        'completed=completed, terms="", speed="")\n        self._last = time.perf_counter()',
        'completed=completed, terms="", speed="")',
        (T_NEW,),
        "a phase's first it/s counts the time before the phase (model loading, the previous phase's export)",
    ),
    Mutant(
        "report-sinks-get-booleans",
        REPORT,
        'numbers = {k: v for k, v in line.items() if type(v) in (int, float) and k != "global_step"}',
        'numbers = {k: v for k, v in line.items() if isinstance(v, int | float) and k != "global_step"}',
        (T_SINKS_EXC, T_NEW),
        "the trackers get the 'skipped' flag (a bool) as a number: a tensorboard curve of True/False",
    ),
]
