"""Walkthrough 11 (2026-12-07; each caught): a model family added from a module of one's own.
``register_family`` checks a family and refuses a taken pipeline name; every CLI takes
``--import``; the "Sample it:" line carries the run's imports; the unsupported-pipeline refusal
names register_family + --import and does not send a run's user to a flag they did not pass."""

from run import Mutant

W = "tests/test_walkthrough11_units.py"
T_REFUSE = f"{W}::test_register_family_refuses_a_taken_pipeline_and_a_family_missing_what_it_must_define"
T_CLI = f"{W}::test_every_cli_takes_import"
T_LINE = f"{W}::test_the_sample_it_line_carries_the_runs_imports"
T_FOLDER = f"{W}::test_an_unsupported_pipeline_says_how_to_add_a_family_and_whence_the_folder_came"
T_ROUTE = f"{W}::test_a_family_of_ones_own_trains_and_samples_with_import"
FAMILIES = "tlcm/models/families/__init__.py"

MUTANTS = [
    Mutant(
        "register-family-takes-a-taken-pipeline",
        FAMILIES,
        "        if taken is not None and other",
        "        if False and taken is not None and other",
        (T_REFUSE,),
        "a second family for StableDiffusionPipeline silently replaces the shipped one",
    ),
    Mutant(
        "register-family-skips-the-folders",
        FAMILIES,
        "    if lacking or len(set(folders)) != len(folders):",
        "    if False:",
        (T_REFUSE,),
        "a family without a VAE folder registers, and fails later when a folder loads",
    ),
    *(
        Mutant(
            f"no-import-in-{file.split('/')[-1][:-3]}",
            file,
            "args=cli_args(args)",
            "args=args",
            (T_CLI,),
            f"python -m {file[:-3].replace('/', '.')} --import MODULE: tyro's usage box",
        )
        for file in ("tlcm/sample.py", "tlcm/export.py", "tlcm/evaluate.py", "tlcm/data/trajectories.py")
    ),
    Mutant(
        "sample-it-without-the-imports",
        "tlcm/summary.py",
        'f"python -m tlcm.sample{imported_flags()}"',
        'f"python -m tlcm.sample"',
        (T_LINE,),
        "the run's own Sample it: command fails: the family's module is not imported",
    ),
    Mutant(
        "unsupported-pipeline-from-a-run-says-pass-one-to-model",
        "tlcm/models/folders.py",
        "            if run is not None\n",
        "            if False\n",
        (T_FOLDER,),
        "sample --student RUN: 'pass one to --model', a flag the user did not pass",
    ),
    Mutant(
        "unsupported-pipeline-says-nothing-of-families",
        "tlcm/models/folders.py",
        '            else f"pass one to {flag}, or {ADD_FAMILY}"',
        '            else f"pass one to {flag}"',
        (T_FOLDER,),
        "the refusal hides that a family can be added from one's own module",
    ),
    Mutant(
        "sample-forgets-the-model-came-from-the-run",
        "tlcm/sample.py",
        "    run = args.student if from_run else None\n",
        "    run = None\n",
        (T_ROUTE,),
        "tlcm.sample --student RUN without the run's --import: 'pass one to --model'",
    ),
]
