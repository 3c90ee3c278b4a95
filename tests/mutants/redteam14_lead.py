"""Round 14, the lead's own changes (2026-12-07; 21 mutants, each caught): what a researcher
extending tlcm meets (found by a user-walkthrough helper): a loss breaking the contract refused in
one line (tlcm/losses/base.py: ``build_loss``, ``checked_terms``, ``check_reaches_student``), a
Python recipe's wrongly typed field (tlcm/checks.py ``check_field_types``), ``tlcm.train --import``
for recipes outside the repository, the discriminator probe's counts, a variant's misspelt phase, loss or field refused before any
ablation run starts and the ladder's ``--steps`` quick trial kept out of the published table
(ablations/). The latent LPIPS trainer's family scaling is in redteam13_outputs2 beside the
mutants of the lines it replaced."""

from run import Mutant

BASE = "tlcm/losses/base.py"
ENGINE = "tlcm/engine.py"
VARIANTS = "ablations/variants.py"
LADDER = "ablations/run.py"
TRAIN = "tlcm/train.py"
CHECKS = "tlcm/checks.py"
PROBE = "ablations/disc_probe.py"

W2 = "tests/test_walkthrough2_units.py"
ABL = "tests/test_ablation_units.py"
T_TERMS = f"{W2}::test_objective_refuses_a_term_that_is_not_a_scalar_tensor"
T_GRAD = f"{W2}::test_objective_refuses_terms_without_a_gradient"
T_BUILD = f"{W2}::test_a_build_that_returns_no_loss_is_one_line_naming_the_config"
T_MISSPELT = f"{ABL}::test_a_variants_misspelt_phase_loss_or_field_is_one_line_naming_it"
T_EARLY = f"{ABL}::test_the_ladder_refuses_a_broken_variant_before_starting_any_run"
CLI = "tests/test_cli_units.py"
T_IMPORT = f"{CLI}::test_import_adds_the_modules_presets_and_registers_its_losses"
T_IMPORT_NO = f"{CLI}::test_import_refusals_say_what_and_how"
T_TYPES = "tests/test_check_units.py::test_a_python_recipes_wrongly_typed_field_is_one_line_naming_its_flag"
T_TYPES_FIRST = "tests/test_check_units.py::test_validate_recipe_checks_the_field_types_first"
T_TRIAL = f"{ABL}::test_a_quick_trial_trains_every_phase_for_its_steps_and_stays_out_of_the_published_table"

MUTANTS = [
    Mutant(
        "terms-vector-accepted",
        BASE,
        "isinstance(value, torch.Tensor) and value.numel() == 1",
        "isinstance(value, torch.Tensor) and value.numel() >= 1",
        (T_TERMS,),
        "a per-sample loss vector passes: backward fails later with 'grad can be implicitly created only for scalar outputs'",
    ),
    Mutant(
        "no-gradient-refused-under-no-grad",
        BASE,
        "isinstance(total, torch.Tensor) and torch.is_grad_enabled() and not total.requires_grad",
        "isinstance(total, torch.Tensor) and not total.requires_grad",
        (T_GRAD,),
        "a probe of the objective without gradients (no backward follows) is refused",
    ),
    Mutant(
        "engine-skips-the-gradient-check",
        ENGINE,
        "        check_reaches_student(total, list(losses))\n",
        "",
        (T_GRAD,),
        "a detached loss trains nothing, silently (the optimizer steps on zero gradients)",
    ),
    Mutant(
        "engine-skips-the-term-check",
        ENGINE,
        "checked_terms(comp, loss, loss(ctx)).items()",
        "loss(ctx).items()",
        (T_TERMS,),
        "a float term: AttributeError 'float' object has no attribute 'float', far from the loss",
    ),
    Mutant(
        "build-returning-none-accepted",
        BASE,
        "    if not isinstance(loss, Loss):\n        cls = type(config)",
        "    if loss is NotImplemented:\n        cls = type(config)",
        (T_BUILD,),
        "a build() without return: AttributeError on None's .to()",
    ),
    Mutant(
        "variant-loss-fields-unchecked",
        VARIANTS,
        '            f"{where}, loss {name}: fields",\n            overrides.get(name, {}),\n',
        '            f"{where}, loss {name}: fields",\n            {},\n',
        (T_MISSPELT,),
        "a misspelt loss field: a TypeError from dataclasses.replace in the child's log",
    ),
    Mutant(
        "variant-override-phases-unchecked",
        VARIANTS,
        '    _unknown(f"{where}: overrides for phases it does not train", overridden, variant.phases)\n',
        "",
        (T_MISSPELT,),
        "an override of a phase the row does not train is silently ignored: the row is not what it says",
    ),
    Mutant(
        "ladder-checks-variants-in-the-child",
        LADDER,
        "        variant_recipe(VARIANTS[name], args.runs)\n",
        "        pass\n",
        (T_EARLY,),
        "a broken variant fails only after its parents trained, in a child's log",
    ),
    Mutant(
        "trial-steps-not-passed-to-the-child",
        LADDER,
        '"--steps", str(args.steps), *import_flags(args.imports)]',
        '"--steps", "0", *import_flags(args.imports)]',
        (T_TRIAL,),
        "--steps 5 trains the full recipe: a 'quick trial' of an hour",
    ),
    Mutant(
        "trial-steps-ignored-in-the-child",
        LADDER,
        "    if args.steps:\n        recipe = replace(",
        "    if args.steps < 0:\n        recipe = replace(",
        (T_TRIAL,),
        "the child trains the recipe's steps whatever --steps says",
    ),
    Mutant(
        "trial-allowed-into-the-published-table",
        LADDER,
        "(args.table == published.table or args.runs == published.runs)",
        "(args.table == published.table and args.runs == published.runs)",
        (T_TRIAL,),
        "a 5-step trial merges its row into docs/ablations.md when only --runs moved",
    ),
    Mutant(
        "import-presets-not-added",
        TRAIN,
        "            PRESETS[preset] = recipe\n",
        "            pass\n",
        (T_IMPORT,),
        "--import my_recipes recipes:mine: 'unknown recipe recipes:mine'",
    ),
    Mutant(
        "import-cli-type-not-rebuilt",
        TRAIN,
        "        Presets = tyro.extras.subcommand_type_from_defaults(PRESETS, DESCRIPTIONS)",
        "        Presets = Presets",
        (T_IMPORT,),
        "the module's presets pass the name check but tyro's subcommands do not have them",
    ),
    Mutant(
        "import-shadows-a-shipped-preset",
        TRAIN,
        "            if PRESETS.get(preset, recipe) is not recipe:",
        "            if preset not in PRESETS and PRESETS.get(preset, recipe) is not recipe:",
        (T_IMPORT_NO,),
        "a module's 'tlcm-full' silently replaces the shipped default recipe",
    ),
    Mutant(
        "import-hides-the-modules-own-missing-import",
        "tlcm/user_modules.py",
        '            if err.name is None or not (name == err.name or name.startswith(f"{err.name}.")):',
        "            if err.name is None or not name.startswith(err.name):",
        (T_IMPORT_NO,),
        "a module that imports a missing package is reported as not found itself: the user looks for the wrong file",
    ),
    Mutant(
        "types-bool-is-an-int",
        CHECKS,
        " or (bool not in allowed and isinstance(item, bool))",
        "",
        (T_TYPES,),
        "Phase(steps=True) passes as 1 step",
    ),
    Mutant(
        "types-int-is-not-a-float",
        CHECKS,
        '"float": (int, float)',
        '"float": (float,)',
        (T_TYPES,),
        "Phase(lr=1) refused although Python writes a whole-number float that way",
    ),
    Mutant(
        "types-loss-class-accepted",
        CHECKS,
        'if flag.endswith(".losses") and not isinstance(item, LossConfig):',
        'if flag.endswith(".losses") and not isinstance(item, (LossConfig, type)):',
        (T_TYPES,),
        "losses={'mlcd': MLCDConfig}: the class's shared_reads() fails with a TypeError traceback",
    ),
    Mutant(
        "types-not-checked-by-validate-recipe",
        CHECKS,
        '    check_field_types(recipe, "--recipes")\n',
        "",
        (T_TYPES_FIRST,),
        "Phase(steps='2'): TypeError '<' not supported between str and int",
    ),
    Mutant(
        "probe-steps-below-three",
        PROBE,
        "    if args.steps < 3:\n",
        "    if args.steps < 1:\n",
        ("tests/test_bad_inputs.py", "-k", "disc"),
        "--steps 2: two scores under the table's three columns (after 1/3, 2/3, 3/3)",
    ),
    Mutant(
        "probe-held-out-all-of-real",
        PROBE,
        "    if args.held_out >= args.real:\n",
        "    if args.held_out > args.real:\n",
        ("tests/test_bad_inputs.py", "-k", "disc"),
        "--held-out equal to --real: D trains on nothing, after the models loaded",
    ),
]
