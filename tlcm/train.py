"""Train a recipe: ``python -m tlcm.train recipes:NAME [--recipes.FIELD VALUE ...]``.

Presets live in the top-level ``recipes`` package; every field of the recipe tree is a flag (see
``--help`` of a preset). Runs under torchrun unchanged.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

import tyro

from recipes import PRESETS
from tlcm.card import write_model_card
from tlcm.config import Recipe
from tlcm.distributed import close_distributed
from tlcm.engine import PREEMPTED_EXIT_CODE, Run, train
from tlcm.errors import TLCMError, run_cli
from tlcm.export import run_name
from tlcm.toy.evaluation import student_scores

Presets = tyro.extras.subcommand_type_from_defaults(PRESETS)


@dataclass
class TrainArgs:
    """Distil a diffusion model with a tlcm recipe."""

    recipes: Presets  # type: ignore[valid-type]
    """The recipe preset and its overrides."""


def train_and_score(recipe: Recipe) -> Run:
    """Train, then (eval_samples_per_digit > 0: miniature pipeline) score the student on rank 0 and
    write RUN/eval.json."""
    try:
        run = train(recipe)
    finally:
        close_distributed()
    sharded = recipe.runtime.fsdp and int(os.environ.get("WORLD_SIZE", "1")) > 1  # shards need all ranks
    if run.preempted or not run.is_main or recipe.runtime.eval_samples_per_digit <= 0 or sharded:
        return run
    scores = student_scores(
        run.base,
        run.student.denoiser(),
        recipe.inference_steps,
        recipe.runtime.eval_samples_per_digit,
        student_grid=recipe.student.grid,
    )
    (run.out_dir / "eval.json").write_text(json.dumps(scores, indent=1) + "\n")
    folder, name = run.out_dir / "student", run_name(run.out_dir)  # the export's card, now with scores
    write_model_card(run.student, folder, name, recipe, run.train_seconds, scores)
    for row in scores:
        print(f"student {row['steps']} steps: alignment {row['alignment']:.3f}  FD {row['fd']:.3f}")
    return run


def main(args: TrainArgs) -> None:
    """Exit codes: 0 done, 2 bad input (one line), 3 non-finite loss / gradient (nothing saved from
    that step), 75 pre-empted by SIGTERM after saving a checkpoint (rerun the same command)."""
    if train_and_score(args.recipes).preempted:
        sys.exit(PREEMPTED_EXIT_CODE)


def check_preset_names(argv: list[str]) -> None:
    """Refuse an unknown ``recipes:NAME`` in ``argv`` (tyro would print the top-level help and exit 0
    for ``recipes:UNKNOWN --help``)."""
    for arg in argv:
        if arg.startswith("recipes:") and arg.removeprefix("recipes:") not in PRESETS:
            presets = ", ".join(f"recipes:{name}" for name in PRESETS)
            raise TLCMError(f"unknown recipe {arg}; presets: {presets}")


def cli(argv: list[str] | None = None) -> None:
    """The command line: ``argv`` (default: sys.argv[1:]) -> ``main``."""
    argv = sys.argv[1:] if argv is None else argv
    check_preset_names(argv)
    main(tyro.cli(TrainArgs, args=argv, config=(tyro.conf.CascadeSubcommandArgs,)))


if __name__ == "__main__":
    run_cli(cli)
