"""Round 19, the lead's changes (2026-12-07): the miniatures' build objective (tlcm/toy/build.py
``denoising_loss``, shared by build.py and build_flow.py), which the previous rounds never broke:
the shipped teachers must fit it and its per-sample weights must be the Min-SNR ones; and the
presets' lines in ``python -m tlcm.train --help`` (recipes.DESCRIPTIONS, an imported module's own)."""

from run import Mutant

BUILD = "tlcm/toy/build.py"
T = "tests/test_toy_build_units.py::"
T_UNET = T + "test_the_shipped_unet_fits_the_build_objective"
T_FLOW = T + "test_the_shipped_flow_transformer_fits_the_build_objective"
T_HAND = T + "test_the_build_objective_weights_each_sample_by_hand"
TRAIN = "tlcm/train.py"
T_HELP = (
    "tests/test_cli_units.py::test_every_preset_has_a_line_in_the_help_and_an_imported_one_brings_its_own"
)

MUTANTS = [
    Mutant(
        "build-noise-and-data-swapped",
        BUILD,
        "    x_t = schedule.add_noise(x0, eps, t)\n",
        "    x_t = schedule.add_noise(eps, x0, t)\n",
        (T_UNET, T_FLOW),
        "the teachers trained on x_t = alpha eps + sigma x0: a model of the wrong forward process",
    ),
    Mutant(
        "build-target-is-x0",
        BUILD,
        "(predict(x_t, t) - schedule.model_output_from(x0, eps, t))",
        "(predict(x_t, t) - x0)",
        (T_UNET, T_FLOW, T_HAND),
        "the teachers trained to predict x0 while their configs say eps / flow velocity",
    ),
    Mutant(
        "build-weight-dropped",
        BUILD,
        "    return (err if weight is None else weight * err).mean()",
        "    return err.mean()",
        (T_HAND,),
        "--min-snr-gamma silently ignored: every step weighted 1",
    ),
    Mutant(
        "help-without-the-imported-descriptions",
        TRAIN,
        "        Presets = tyro.extras.subcommand_type_from_defaults(PRESETS, DESCRIPTIONS)",
        "        Presets = tyro.extras.subcommand_type_from_defaults(PRESETS)",
        (T_HELP,),
        "--help lists the shipped presets' lines, but an imported module's presets without theirs",
    ),
    Mutant(
        "help-takes-descriptions-of-presets-the-module-lacks",
        TRAIN,
        '"DESCRIPTIONS", {}).items() if p in presets})',
        '"DESCRIPTIONS", {}).items()})',
        (T_HELP,),
        "a module's line for a preset it does not define joins (or replaces) another preset's",
    ),
]
