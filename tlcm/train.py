"""Train a recipe: ``python -m tlcm.train [--import MODULE] recipes:NAME [--recipes.FIELD VALUE ...]``.

Presets live in the top-level ``recipes`` package, or in a module of your own given with
``--import`` (its ``PRESETS`` dict joins them; importing it registers its losses and model
families: tlcm/user_modules.py); every field of the recipe tree is a flag (see ``--help`` of a
preset). Runs under torchrun unchanged.
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import tyro

from recipes import DESCRIPTIONS, PRESETS
from tlcm.checks import validate_recipe
from tlcm.config import Recipe, recipe_dict
from tlcm.errors import TLCMError, note, run_cli
from tlcm.preemption import install_for_process
from tlcm.summary import run_summary
from tlcm.toy.assets import digit_assets
from tlcm.user_modules import IMPORTED, import_flags, import_modules, module_name  # noqa: F401 (ablations/ import them from here)

if TYPE_CHECKING:  # the engine (diffusers, peft) is imported when training starts: --help is quick
    from tlcm.engine import Run

Presets = tyro.extras.subcommand_type_from_defaults(PRESETS, DESCRIPTIONS)


@dataclass
class TrainArgs:
    """Distil a diffusion model with a tlcm recipe."""

    recipes: Presets  # type: ignore[valid-type]
    """The recipe preset and its overrides."""


def train_and_score(recipe: Recipe) -> Run:
    """Train, then (eval_samples_per_digit > 0, a digit miniature: ``tlcm.toy.assets.digit_assets``;
    another model gets one line saying why not) score the student on rank 0 and write
    RUN/eval.json; rank 0 of a finished run prints the summary (tlcm/summary.py). Rank 0 holds the
    run folder's lock (``tlcm.files.lock_run``, shared with the Trainer's) until the scores and the
    card are written: another training of the folder is refused until then."""
    from tlcm.checks import check_out_dir
    from tlcm.distributed import close_distributed, other_process_failed
    from tlcm.engine import train
    from tlcm.files import lock_run

    lock = None
    if os.environ.get("RANK", "0") in ("", "0"):
        check_out_dir(recipe.runtime.out_dir, "--recipes.runtime.out-dir")
        lock = lock_run(recipe.runtime.out_dir)
    try:
        try:
            run = train(recipe)
        except RuntimeError as err:
            if (failed := other_process_failed(err)) is None:
                raise
            raise failed from err
        finally:
            close_distributed()
        if run.preempted or not run.is_main:
            return run
        sharded = recipe.runtime.fsdp and int(os.environ.get("WORLD_SIZE", "1")) > 1  # shards need all ranks
        scored = recipe.runtime.eval_samples_per_digit > 0 and not sharded
        assets = digit_assets(recipe.model.path) if scored else None
        if scored and assets is None:
            note(
                f"no end-of-run scores: {recipe.model.path} is not a digit miniature (the digit classifier "
                "and FD statistics beside a tlcm.toy.build pipeline score only those); score the student "
                "with metrics of your own (python -m tlcm.sample --student RUN), or pass "
                "--recipes.runtime.eval-samples-per-digit 0"
            )
        scores = _score(run, recipe, assets) if assets is not None else None
    finally:
        if lock is not None:
            lock.release()
    print(run_summary(run.out_dir, recipe.model, run.train_seconds, scores, run.denoiser_evals, sharded))
    return run


def _score(run: Run, recipe: Recipe, assets: Path) -> list[dict]:
    """The student's toy scores by the digit metrics in ``assets``, written to RUN/eval.json and
    into the export's model card."""
    from tlcm.card import write_model_card
    from tlcm.export import run_name
    from tlcm.files import write_failed
    from tlcm.toy.metrics import ToyMetrics
    from tlcm.toy.scores import student_scores

    scores = student_scores(
        run.base,
        run.student.denoiser(),
        recipe.shown_steps,
        recipe.runtime.eval_samples_per_digit,
        metrics=ToyMetrics(assets),
        student_grid=recipe.student.grid,
    )
    try:
        (run.out_dir / "eval.json").write_text(json.dumps(scores, indent=1) + "\n")
    except OSError as err:
        raise write_failed(f"the scores to {run.out_dir / 'eval.json'}", err) from err
    folder, name = run.out_dir / "student", run_name(run.out_dir)  # the export's card, now with scores
    write_model_card(run.student, folder, name, recipe, run.train_seconds, scores)
    return scores


def main(args: TrainArgs) -> None:
    """Exit codes: 0 done, 2 bad input (one line), 3 non-finite loss / gradient or a diverged student
    (nothing saved from that step), 75 pre-empted: a stop signal (SIGTERM, SIGINT / Ctrl-C, SIGHUP;
    under torchrun on any rank) saved a checkpoint (rerun the same command), 130 a second Ctrl-C
    aborted without saving."""
    out = args.recipes.runtime.out_dir
    fresh = not out.exists()
    try:
        validate_recipe(args.recipes)  # what the Trainer checks first, before the model libraries load
        run = train_and_score(args.recipes)
    except BaseException:
        if fresh:  # refused before anything was written (a bad flag found once the model loaded)
            with contextlib.suppress(OSError):  # not empty, or another rank removed it: keep it
                out.rmdir()
        raise
    if run.preempted:
        from tlcm.engine import PREEMPTED_EXIT_CODE

        sys.exit(PREEMPTED_EXIT_CODE)


def import_recipe_modules(argv: list[str]) -> list[str]:
    """Import each ``--import MODULE`` of ``argv`` (tlcm/user_modules.py: repeatable, anywhere in
    it, a module name or a .py file's path) before the command line is built: the import registers
    the module's losses (``@register_loss``) and families (``register_family``), and its ``PRESETS``
    dict (name -> Recipe) joins ``recipes.PRESETS``. Returns ``argv`` without them."""
    rest, names = import_modules(argv)
    for name in names:
        module = sys.modules[name]
        presets = getattr(module, "PRESETS", {})
        if presets is PRESETS:  # the module added its presets to recipes.PRESETS itself
            continue
        for preset, recipe in presets.items():
            if not isinstance(recipe, Recipe):
                raise TLCMError(
                    f"--import {name}: PRESETS[{preset!r}] is not a tlcm.config.Recipe "
                    f"(got {type(recipe).__name__})"
                )
            if PRESETS.get(preset, recipe) is not recipe:
                raise TLCMError(f"--import {name}: its preset {preset!r} is already a preset: rename it")
            PRESETS[preset] = recipe
        DESCRIPTIONS.update({p: d for p, d in getattr(module, "DESCRIPTIONS", {}).items() if p in presets})
    if names:
        global Presets
        Presets = tyro.extras.subcommand_type_from_defaults(PRESETS, DESCRIPTIONS)  # TrainArgs' annotation
    return rest


def check_preset_names(argv: list[str]) -> None:
    """Refuse an unknown ``recipes:NAME`` in ``argv`` (tyro would print the top-level help and exit 0
    for ``recipes:UNKNOWN --help``)."""
    for arg in argv:
        if arg.startswith("recipes:") and arg.removeprefix("recipes:") not in PRESETS:
            presets = [f"recipes:{name}" for name in PRESETS]
            close = difflib.get_close_matches(arg, presets, n=1, cutoff=0.75)
            guess = f" (did you mean {close[0]}?)" if close else ""
            empty = [f"--import {module}" for module, count in IMPORTED.items() if not count]
            hint = (
                f"; {', '.join(empty)} added no presets (a module adds them with a PRESETS dict: "
                '{"my-recipe": Recipe(...)})'
                if empty
                else ""
            )
            raise TLCMError(f"unknown recipe {arg}{guess}{hint}; presets: {', '.join(presets)}")


def preset_flags(name: str) -> list[str]:
    """Every field flag of the preset ``name`` (``--recipes.phases.mlcd.lr``; a bool also as
    ``--recipes.runtime.no-resume``), from its recipe tree: the words an unknown flag is matched to."""

    def walk(value, path: str):
        if not isinstance(value, dict):
            last = path.rsplit(".", 1)
            yield path
            if isinstance(value, bool):
                yield f"{last[0]}.no-{last[1]}"
            return
        for key, item in value.items():
            if key != "class":  # a loss config's tag in recipe_dict, not a field
                yield from walk(item, f"{path}.{key.replace('_', '-')}")

    return list(walk(recipe_dict(PRESETS[name]), "--recipes"))


def unknown_arguments(unknown: list[str], argv: list[str]) -> str:
    """One line for the arguments tyro did not recognise: each unknown flag with the closest flags
    of the chosen preset, and where its full list is."""
    name = next((a.removeprefix("recipes:") for a in argv if a.startswith("recipes:")), None)
    flags = [a for a in unknown if a.startswith("-")]
    known = preset_flags(name) if name in PRESETS else []
    if not flags:
        for before, value in itertools.pairwise(argv):  # --recipes.runtime.sample-grid False: a switch
            on = before.replace(".no-", ".", 1) if ".no-" in before else before
            off = ".no-".join(on.rsplit(".", 1))
            if value in unknown and on in known and off in known:
                return (
                    f"{before} takes no value (got {value}): write {on} to turn it on, {off} to turn it off"
                )
        return f"unexpected argument(s) {' '.join(unknown)}: every value follows its --recipes.FIELD flag"
    guesses = []
    for flag in flags:
        close = difflib.get_close_matches(flag.split("=", 1)[0], known, n=1, cutoff=0.75)
        guesses.append(f"{flag} (did you mean {close[0]}?)" if close else flag)
    where = f"recipes:{name}" if name in PRESETS else "recipes:NAME"
    return (
        f"unknown flag(s) {', '.join(guesses)}: python -m tlcm.train {where} --help lists every flag "
        "of the preset"
    )


def cli(argv: list[str] | None = None) -> None:
    """The command line: ``argv`` (default: sys.argv[1:]) -> ``main``. An unknown flag is one line
    naming the preset's closest flags (tyro's own message lists those of every preset)."""
    argv = import_recipe_modules(sys.argv[1:] if argv is None else argv)
    check_preset_names(argv)
    args, unknown = tyro.cli(
        TrainArgs,
        args=argv,
        prog="python -m tlcm.train",
        config=(tyro.conf.CascadeSubcommandArgs,),
        return_unknown_args=True,
    )
    if unknown:
        raise TLCMError(unknown_arguments(unknown, argv))
    main(args)


if __name__ == "__main__":
    install_for_process()  # stop signals save and exit 75, also while loading and while exiting
    run_cli(cli)
