"""Round 19, the lead's changes (2026-12-07): the miniatures' build objective (tlcm/toy/build.py
``denoising_loss``, shared by build.py and build_flow.py), which the previous rounds never broke:
the shipped teachers must fit it and its per-sample weights must be the Min-SNR ones; and the
presets' lines in ``python -m tlcm.train --help`` (recipes.DESCRIPTIONS, an imported module's own);
and a referee's walkthrough 9 findings: MLCD's per-sample w refused with a trajectory cache (made at
one w), the authors' 5-7-step tables, reward feedback without its unrelated hinge for a reward of
the image alone."""

from run import Mutant

BUILD = "tlcm/toy/build.py"
T = "tests/test_toy_build_units.py::"
T_UNET = T + "test_the_shipped_unet_fits_the_build_objective"
T_FLOW = T + "test_the_shipped_flow_transformer_fits_the_build_objective"
T_HAND = T + "test_the_build_objective_weights_each_sample_by_hand"
TRAIN = "tlcm/train.py"
MLCD = "tlcm/losses/mlcd.py"
MILESTONES = "tlcm/diffusion/milestones.py"
T_CACHE_W = (
    "tests/test_consistency_maths.py::test_mlcd_per_sample_guidance_is_refused_with_mds_and_cache_states"
)
PREF = "tlcm/losses/preference.py"
T_ALONE = "tests/test_preference.py::test_reward_feedback_with_a_reward_of_the_image_alone_raises_it"
T_TOWER = "tests/test_preference.py::test_reward_feedback_runs_the_clip_image_tower_once"
T_AUTHORS = "tests/test_diffusion_milestones.py::test_inference_timesteps_authors_table"
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
    Mutant(
        "mlcd-per-sample-w-accepted-with-a-cache",
        MLCD,
        """            "cache": "the cache's x_{t_n} were made at its one w: a drawn w would go unused",\n""",
        "",
        (T_CACHE_W,),
        "guidance_range with a trajectory cache accepted: the w drawn per sample is never used",
    ),
    Mutant(
        "authors-5-steps-trailing",
        MILESTONES,
        "    5: (8, 6, 4, 2, 1),\n",
        "",
        (T_AUTHORS,),
        "5 steps sample the trailing grid [999, 749, 624, 374, 249], not the authors' table",
    ),
    Mutant(
        "authors-7-steps-swapped",
        MILESTONES,
        "    7: (8, 6, 5, 4, 3, 2, 1),",
        "    7: (8, 7, 5, 4, 3, 2, 1),",
        (T_AUTHORS,),
        "7 steps at 874 instead of 749 after the first: not the authors' table",
    ),
    Mutant(
        "feedback-keeps-the-cancelling-hinge",
        PREF,
        "        if not self.reward.reads_prompts:",
        "        if False:",
        (T_ALONE, T_TOWER),
        "the aesthetic reward's two hinges cancel: reward feedback trains nothing between s_neg and s0",
    ),
    Mutant(
        "aesthetic-said-to-read-prompts",
        "tlcm/rewards/clip.py",
        'self.reads_prompts = name != "aesthetic"',
        'self.reads_prompts = name != "aesthetics"',
        (T_ALONE, T_TOWER),
        "the aesthetic head declared prompt-reading: its feedback keeps the hinge that cancels",
    ),
    Mutant(
        "sigusr1-not-a-stop-signal",
        "tlcm/preemption.py",
        'for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2")',
        'for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR2")',
        ("tests/test_preemption_units.py",),
        "SLURM's --signal=USR1 kills a rank without a checkpoint (walkthrough 8)",
    ),
    Mutant(
        "mlcd-lattice-accepted-with-a-cache",
        MLCD,
        '        if self.states == "cache" and self.timesteps == "lattice":',
        "        if False:",
        ("tests/test_consistency_maths.py::test_mlcd_lattice_timesteps_are_refused_with_cache_states",),
        "timesteps lattice with a trajectory cache accepted: the cache's own grid trains instead",
    ),
    Mutant(
        "engine-ignores-resume-changed-for-later-phases",
        "tlcm/engine.py",
        "                    rt.out_dir,\n                    rt.resume_changed,\n",
        "                    rt.out_dir,\n                    False,\n",
        ("tests/test_checkpoint.py::test_resume_changed_takes_other_steps_for_a_phase_not_started",),
        "a requeued run cannot give a phase it has not started more steps, even with resume-changed",
    ),
    Mutant(
        "digit-reward-on-other-prompts-accepted",
        "tlcm/checks.py",
        "    _check_digit_reward(recipe)\n",
        "",
        (
            "tests/test_check_units.py::test_the_digit_reward_on_prompts_that_name_no_digit_is_refused_before_training",
        ),
        "tlcm-paper on prompts of one's own trains two phases, then fails with a traceback (walkthrough 11)",
    ),
    Mutant(
        "lora-student-on-a-network-without-hooks-unchecked",
        "tlcm/models/student.py",
        '            if not hasattr(base.net, "add_adapter"):',
        "            if False:",
        (
            "tests/test_adapters.py::test_a_lora_student_on_a_network_without_diffusers_lora_hooks_says_what_to_do",
        ),
        "a LoRA student on PixArt's transformer: a raw AttributeError after the model loaded",
    ),
    Mutant(
        "card-tells-pixart-to-load-lora-weights",
        "tlcm/card.py",
        "    if lora and not has_lora_loader(pipeline):",
        "    if False:",
        (
            "tests/test_check_units.py::test_a_pipeline_without_load_lora_weights_is_pointed_to_the_merged_export",
        ),
        "the card's diffusers snippet calls load_lora_weights on a pipeline without it (walkthrough 11)",
    ),
]
