"""A twelfth red-team audit, area interfaces (2026-12-06; 23 mutants, 18 survived at first, each now
caught): what every loss and recipe goes through. StepContext (tlcm/losses/base.py): the batch size
(the conditioning's, not the prompt texts'), the host generator (on the CPU the step's own stream;
on an accelerator a CPU one seeded from the step's seed, made once per step), the real latents
(refused without prompt indices, encoded once per step), ``computed(key, None)`` and
PhaseContext's ``uniform_calls`` default (a standalone context pads no calls); run_cli and note
(tlcm/errors.py): one literal line (brackets escaped, no wrapping at the console width), an empty
RANK is rank 0, the rank prefix; the file helpers (tlcm/files.py): reading the umask puts it back,
honour_umask leaves folders alone, write_failed's one line; the recipe tree (tlcm/config.py):
``shown_steps`` and ``smoke_recipe``. All but the default grid, ``computed``, Ctrl-C's 130, the
recipe_dict tuples and the rank prefix were caught only by the unit tests written for them in
tests/test_interface_units.py (the file helpers' in tests/test_plumbing.py). Dropped as equivalent in the tests' world: ``randn`` / ``rand`` on the
generator's device instead of the conditioning's (the same on the CPU), ``str(k)`` of recipe_dict's
keys (always strings), ``bool | int`` (bool is an int). No bug was found in the source."""

from run import Mutant

BASE = "tlcm/losses/base.py"
CONFIG = "tlcm/config.py"
ERRORS = "tlcm/errors.py"
FILES = "tlcm/files.py"

T_NEW = "tests/test_interface_units.py"
T_PLUMBING = "tests/test_plumbing.py"
T_CTX = f"{T_NEW}::test_a_standalone_context_reads_the_phases_grid_and_the_conditionings_batch"
T_CHAIN = f"{T_NEW}::test_a_standalone_chain_prediction_makes_one_plus_k_student_calls"
T_HOST_CPU = f"{T_NEW}::test_host_draws_on_the_cpu_continue_the_steps_own_stream"
T_HOST_ACC = f"{T_NEW}::test_host_draws_on_an_accelerator_follow_the_steps_seed_once_per_step"
T_REAL = f"{T_NEW}::test_real_latents_need_prompt_indices_and_are_encoded_once_per_step"
T_COMPUTED = f"{T_NEW}::test_computed_answers_the_default_even_when_it_is_none"
T_BRACKETS = f"{T_NEW}::test_an_error_naming_brackets_is_one_literal_line"
T_CTRL_C = f"{T_NEW}::test_ctrl_c_exits_130_with_one_line"
T_NOTE = f"{T_NEW}::test_a_note_prints_its_brackets_literally_on_one_line"
T_EMPTY_RANK = f"{T_NEW}::test_an_empty_rank_is_rank_0"
T_UMASK_KEPT = f"{T_PLUMBING}::test_reading_the_umask_leaves_it_as_it_was"
T_FOLDERS = f"{T_PLUMBING}::test_honour_umask_leaves_folders_enterable"
T_WRITE_FAILED = f"{T_PLUMBING}::test_a_failed_write_is_one_line_with_the_reason_and_the_file"
T_SHOWN = f"{T_NEW}::test_shown_steps_are_the_recipes_inference_steps_else_the_grids"
T_SMOKE = f"{T_NEW}::test_a_smoke_recipe_keeps_the_phases_at_its_steps_and_batch_without_init_from"
T_LOSSES = "tests/test_losses.py"
T_SHARED = "tests/test_shared_work.py"
T_RUN_CLI_CODES = (
    "tests/test_preemption_units.py::test_run_cli_exits_with_the_errors_own_code_and_130_after_ctrl_c"
)
T_RANK_LINE = "tests/test_preemption_units.py::test_a_rank_with_an_unsignalled_handler_prints_its_own_error"
T_RECIPE_DICT = "tests/test_config_units.py"

MUTANTS = [
    # ---- StepContext (tlcm/losses/base.py) ---------------------------------------------------
    Mutant(
        "step-grid-is-the-default-grid",
        BASE,
        'grid = property(lambda self: self.phase.grid, doc="``phase.grid``")',
        'grid = property(lambda self: StudentGrid(), doc="``phase.grid``")',
        (T_SHARED, T_LOSSES, T_CTX),
        "every loss reads the default student grid, whatever grid the phase (the recipe) fixed",
    ),
    Mutant(
        "step-batch-size-from-the-prompt-texts",
        BASE,
        "        return len(self.cond)",
        "        return len(self.prompts)",
        (T_CTX,),
        "the batch size is the number of prompt texts, 0 in a standalone context that passes none",
    ),
    Mutant(
        "host-generator-fresh-on-the-cpu",
        BASE,
        'if self.generator.device.type == "cpu":',
        'if self.generator.device.type != "cpu":',
        (T_HOST_CPU,),
        "on a CPU step the host draws come from a new generator re-seeded like the step's: they repeat "
        "the step generator's first draws instead of continuing its stream",
    ),
    Mutant(
        "host-generator-made-at-every-call",
        BASE,
        'return self.shared("host_generator", lambda: torch.Generator().manual_seed(seed))',
        "return torch.Generator().manual_seed(seed)",
        (T_HOST_ACC,),
        "on an accelerator each read of host_generator restarts the seeded stream: two host draws in "
        "one step are the same numbers",
    ),
    Mutant(
        "host-generator-seeded-from-the-global-seed",
        BASE,
        "seed = self.generator.initial_seed()  # the engine's",
        "seed = torch.initial_seed()  # the engine's",
        (T_HOST_ACC,),
        "on an accelerator the host draws follow torch's global seed, not the step's (seed, step, "
        "micro-batch): every step and micro-batch draws the same host numbers",
    ),
    Mutant(
        "real-latents-without-prompt-indices",
        BASE,
        "if self.phase.real_images is None or self.prompt_index is None:",
        "if self.phase.real_images is None:",
        (T_REAL,),
        "a context without prompt indices hands None to the image reader instead of the one-line error",
    ),
    Mutant(
        "real-latents-encoded-at-every-call",
        BASE,
        'return self.shared("real_latents", lambda: self.phase.real_images(self.prompt_index, self.generator))',
        "return self.phase.real_images(self.prompt_index, self.generator)",
        (T_REAL,),
        "each loss reading the real latents encodes the images again, drawing new VAE noise: two losses "
        "of a step see different real latents",
    ),
    Mutant(
        "computed-none-default-raises",
        BASE,
        "        if default is _MISSING:\n",
        "        if default is _MISSING or default is None:\n",
        (T_SHARED, T_COMPUTED),
        "ctx.computed(key, None) raises KeyError for work nobody computed instead of answering None",
    ),
    Mutant(
        "phase-context-uniform-calls-by-default",
        BASE,
        "    uniform_calls: bool = False\n",
        "    uniform_calls: bool = True\n",
        (T_CHAIN,),
        "a standalone / single-process context pads its teacher calls as under FSDP2",
    ),
    # ---- run_cli and notes (tlcm/errors.py) --------------------------------------------------
    Mutant(
        "run-cli-reads-markup-in-the-message",
        ERRORS,
        '_say(f"[bold red]error:[/] {escape(str(err))}")',
        '_say(f"[bold red]error:[/] {err}")',
        (T_BRACKETS,),
        "a message naming [brackets] (a flag value, a glob) is read as rich markup: parts vanish or "
        "rich raises its own MarkupError with a traceback",
    ),
    Mutant(
        "error-line-wrapped-at-the-console-width",
        ERRORS,
        "    Console(stderr=True).print(line, highlight=False, soft_wrap=True)",
        "    Console(stderr=True).print(line, highlight=False)",
        (T_BRACKETS,),
        "a long error becomes several lines at the console's width (80 when not a terminal): not one line",
    ),
    Mutant(
        "note-reads-markup",
        ERRORS,
        "Console(stderr=True).print(escape(line), highlight=False, soft_wrap=True)",
        "Console(stderr=True).print(line, highlight=False, soft_wrap=True)",
        (T_NOTE,),
        "a notice naming [brackets] is read as rich markup",
    ),
    Mutant(
        "empty-rank-waits-like-rank-1",
        ERRORS,
        'if rank not in ("", "0"):',
        'if rank != "0":',
        (T_EMPTY_RANK,),
        "RANK set but empty (as some launchers export it) counts as a rank > 0: the error waits the grace "
        "time and comes prefixed with '[rank ]'",
    ),
    Mutant(
        "ctrl-c-exits-1",
        ERRORS,
        "        sys.exit(INTERRUPTED_EXIT_CODE)",
        "        sys.exit(1)",
        (T_RUN_CLI_CODES, T_CTRL_C),
        "Ctrl-C exits 1 instead of 130 (128 + SIGINT)",
    ),
    Mutant(
        "rank-prefix-read-as-markup",
        ERRORS,
        "line = f\"{escape(f'[rank {rank}]')} {line}\"",
        'line = f"[rank {rank}] {line}"',
        (T_RANK_LINE,),
        "a rank > 0's prefix '[rank 1]' is read as a rich style tag: the line loses the rank it names",
    ),
    # ---- files (tlcm/files.py) ---------------------------------------------------------------
    Mutant(
        "umask-mode-leaves-the-umask-at-077",
        FILES,
        "    mask = os.umask(0o077)\n    os.umask(mask)\n",
        "    mask = os.umask(0o077)\n",
        (T_UMASK_KEPT,),
        "reading the umask sets it to 077 for good: every file written afterwards is private (0600)",
    ),
    Mutant(
        "honour-umask-chmods-folders-too",
        FILES,
        'for file in (f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]:',
        'for file in path.rglob("*") if path.is_dir() else [path]:',
        (T_FOLDERS,),
        "the sub-folders of an export get the files' mode 0644: no one (but root) can enter them",
    ),
    Mutant(
        "write-failed-drops-the-file-name",
        FILES,
        '    where = f" ({err.filename})" if err.filename else ""',
        '    where = ""',
        (T_WRITE_FAILED,),
        "the one-line error of a failed write no longer says which file",
    ),
    Mutant(
        "write-failed-prints-the-oserror-repr",
        FILES,
        "{err.strerror or err}{where}",
        "{err}{where}",
        (T_WRITE_FAILED,),
        "the line carries '[Errno 28] ...: 'FILE'' and then the file again",
    ),
    # ---- the recipe tree (tlcm/config.py) ----------------------------------------------------
    Mutant(
        "shown-steps-ignore-inference-steps",
        CONFIG,
        "return self.inference_steps or self.student.grid.shown_steps",
        "return self.student.grid.shown_steps",
        (T_SHOWN,),
        "the recipe's inference_steps are never shown nor evaluated: always the grid's default",
    ),
    Mutant(
        "smoke-recipe-keeps-init-from",
        CONFIG,
        "student=replace(recipe.student, init_from=None, **student),",
        "student=replace(recipe.student, **student),",
        (T_SMOKE,),
        "a smoke run of recipes:lcd loads the stage-1 run folder it names (absent in a smoke test)",
    ),
    Mutant(
        "smoke-recipe-swaps-steps-and-batch",
        CONFIG,
        "replace(p, steps=steps, batch_size=batch_size)",
        "replace(p, steps=batch_size, batch_size=steps)",
        (T_SMOKE,),
        "steps and batch size swapped (equal at their defaults, 2)",
    ),
    Mutant(
        "recipe-dict-tuples-as-strings",
        CONFIG,
        "if isinstance(value, list | tuple):",
        "if isinstance(value, list):",
        (T_RECIPE_DICT,),
        "tuples (inference_steps, export formats, targets) become their repr strings in recipe.json",
    ),
]
