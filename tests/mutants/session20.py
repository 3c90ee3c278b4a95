"""The twentieth round (2026-12-07, each mutant written with its test and caught): the run folder
stays locked through tlcm.train's scoring and card."""

from run import Mutant

C = "tests/test_cli_units.py"
T_SCORE_LOCK = f"{C}::test_the_run_folder_stays_locked_until_the_scores_and_card_are_written"

MUTANTS = [
    Mutant(
        "scoring-unlocked",
        "tlcm/train.py",
        "        lock = lock_run(recipe.runtime.out_dir)\n",
        "        lock = None\n",
        (T_SCORE_LOCK,),
        "another training may start in the folder while eval.json and the card are rewritten",
    ),
    Mutant(
        "lock-released-before-scoring",
        "tlcm/train.py",
        "        scores = None if recipe.runtime.eval_samples_per_digit <= 0 or sharded else _score(run, recipe)\n",
        "        lock.release()\n"
        "        scores = None if recipe.runtime.eval_samples_per_digit <= 0 or sharded else _score(run, recipe)\n",
        (T_SCORE_LOCK,),
        "the lock ends with the Trainer's run, before the scores (the gap walkthrough 8 left)",
    ),
]
