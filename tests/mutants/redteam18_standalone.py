"""Round 18, the seventh walkthrough's fixes to tlcm's losses in another project's own loop
(tlcm/losses/base.py, auxiliary.py, dmd.py, mlcd.py; 2026-12-08): a loss called on a
``StepContext.standalone`` context validates its config against the context's schedule and grid
(once, again when it changes; never on the engine's contexts), warns once when the loop forgets
``aux_step`` / ``after_student_step`` (not under gradient accumulation, not under the engine, not for
a DMD with a frozen fake score or a stop-gradient MLCD), ``standalone`` refuses an unguided teacher,
a missing generator, a latent shape that is not (C, h, w) and prompts that do not match the batch,
and a frozen fake score names DMD and ``requires_grad_(True)``."""

from run import Mutant

BASE = "tlcm/losses/base.py"
W = "tests/test_walkthrough7_standalone_units.py::"
T_RANGE = W + "test_a_standalone_loss_refuses_an_out_of_range_config_in_one_line"
T_TYPO = W + "test_a_standalone_loss_refuses_a_misspelt_choice"
T_NEW = W + "test_a_new_loss_is_validated_once_and_again_only_when_its_config_changes"
T_FORGOT = W + "test_forgetting_dmds_aux_step_warns_once_naming_the_loss_and_the_call"
T_CALLED = W + "test_calling_aux_step_each_step_or_after_accumulated_micro_batches_does_not_warn"
T_AFTER = W + "test_forgetting_after_student_step_warns_and_calling_it_does_not"
T_ENGINE = W + "test_the_engines_contexts_never_warn"
T_TEACHER = W + "test_standalone_refuses_a_teacher_without_guidance"
T_PROMPTS = W + "test_standalone_refuses_prompts_that_do_not_match_the_batch"
T_SHAPE = W + "test_standalone_refuses_a_latent_shape_that_is_not_c_h_w"
T_GEN = W + "test_standalone_refuses_a_missing_generator"
T_FROZEN = W + "test_a_frozen_fake_score_names_dmd_and_requires_grad"

MUTANTS = [
    # ---- 1. configs validated on the standalone path ---------------------------------------------
    Mutant(
        "standalone-config-never-validated",
        BASE,
        "        self._validate_standalone(ctx, state)\n",
        "",
        (T_RANGE, T_TYPO, T_NEW),
        "DMDConfig(t_max=5000) fails with an IndexError in the schedule, fake_score='ful' is accepted",
    ),
    Mutant(
        "standalone-config-validated-every-call",
        BASE,
        "if seen is not None and seen == (num_train_timesteps, ctx.grid, config):",
        "if False:",
        (T_NEW,),
        "every forward re-runs validate (a timm model built on the meta device per GAN step)",
    ),
    Mutant(
        "standalone-config-change-not-revalidated",
        BASE,
        'state["validated"] = (num_train_timesteps, ctx.grid, copy.copy(config))',
        'state["validated"] = (num_train_timesteps, ctx.grid, config)',
        (T_NEW,),
        "a config edited after the first call (the object itself kept) is never checked again",
    ),
    Mutant(
        "engine-contexts-treated-as-standalone",
        BASE,
        'if getattr(ctx, "_standalone", False):',
        "if ctx is not None:",
        (T_NEW, T_ENGINE),
        "the engine's contexts are validated a second time and counted for the forgotten-call warning",
    ),
    Mutant(
        "standalone-contexts-not-marked",
        BASE,
        "        ctx._standalone = True\n",
        "",
        (T_RANGE, T_FORGOT),
        "a standalone context looks like the engine's: no validation, no warning",
    ),
    # ---- 2. a forgotten aux_step / after_student_step warns once ---------------------------------
    Mutant(
        "forgotten-aux-step-never-warns",
        BASE,
        "if count >= OWN_LOOP_FORWARDS and (",
        "if False and (",
        (T_FORGOT, T_AFTER),
        "a loop without aux_step trains DMD against a fake score equal to the teacher, silently",
    ),
    Mutant(
        "forgotten-call-warns-every-forward",
        BASE,
        '                state["warned"].add(name)\n',
        "",
        (T_FORGOT,),
        "the warning repeats at every forward after the third",
    ),
    Mutant(
        "accumulated-micro-batches-warn",
        BASE,
        "(len(steps) >= 2 or count >= OWN_LOOP_FORWARDS_ONE_STEP)",
        "(True or count >= OWN_LOOP_FORWARDS_ONE_STEP)",
        (T_CALLED,),
        "4 accumulated micro-batches of one step before one aux_step are taken for a forgotten call",
    ),
    Mutant(
        "override-does-not-reset-the-count",
        BASE,
        "                setattr(cls, name, _marks_own_loop_call(name, method))\n",
        "                pass\n",
        (T_CALLED, T_AFTER),
        "DMD.aux_step / an EMA's after_student_step do not count as called: a correct loop is warned",
    ),
    Mutant(
        "aux-optimizer-owner-not-asked-for-aux-step",
        BASE,
        '            calls += ("aux_step",)\n',
        "            pass\n",
        (T_AFTER,),
        "a GAN (its discriminator's AuxOptimizer) is never warned about a forgotten aux_step",
    ),
    Mutant(
        "frozen-fake-score-dmd-asks-for-aux-step",
        "tlcm/losses/dmd.py",
        'return ("aux_step",) if self.config.fake_updates else ()',
        'return ("aux_step",)',
        (T_CALLED,),
        "DMD with fake_updates 0 (nothing to train) warns that aux_step is never called",
    ),
    Mutant(
        "stopgrad-mlcd-asks-for-after-student-step",
        "tlcm/losses/mlcd.py",
        'return ("after_student_step",) if self.config.target == "ema" else ()',
        'return ("after_student_step",)',
        (T_AFTER,),
        "examples/own_loop.py's stop-gradient MLCD warns about an EMA it does not have",
    ),
    # ---- 3. StepContext.standalone refuses wrong inputs ------------------------------------------
    Mutant(
        "standalone-takes-an-unguided-teacher",
        BASE,
        "if teacher is not None and not isinstance(teacher, Guided):",
        "if False:",
        (T_TEACHER,),
        "a plain denoiser as the teacher: MLCD silently distils the teacher without CFG",
    ),
    Mutant(
        "standalone-refuses-no-teacher",
        BASE,
        "if teacher is not None and not isinstance(teacher, Guided):",
        "if not isinstance(teacher, Guided):",
        (T_TEACHER,),
        "teacher=None (a loss or test that never calls the teacher) is refused",
    ),
    Mutant(
        "standalone-takes-no-generator",
        BASE,
        'if "generator" in fields and not hasattr(fields["generator"], "initial_seed"):',
        "if False:",
        (T_GEN,),
        "generator=None: the draws come from the global RNG, no reproducibility",
    ),
    Mutant(
        "standalone-takes-any-latent-shape",
        BASE,
        "(isinstance(shape, Sequence) and len(shape) == 3)",
        "isinstance(shape, Sequence)",
        (T_SHAPE,),
        "latent_shape=(4, 8) or a 4-tuple is accepted and fails (or trains) far from the cause",
    ),
    Mutant(
        "standalone-takes-prompts-of-another-length",
        BASE,
        "(cond is not None and len(prompts) not in (0, len(cond)))",
        "False",
        (T_PROMPTS,),
        "one prompt for two samples: the digit reward scores the first sample only",
    ),
    # ---- 4. a frozen fake score names DMD and the fix --------------------------------------------
    Mutant(
        "frozen-fake-score-error-names-no-loss",
        "tlcm/losses/dmd.py",
        '            owner="DMD\'s fake score (the FakeScore passed to DMD)",\n',
        "",
        (T_FROZEN,),
        "the error says only 'the loss's own model': which loss, which model?",
    ),
    Mutant(
        "frozen-fake-score-error-gives-no-fix",
        "tlcm/losses/auxiliary.py",
        '"to train: call .requires_grad_(True) on it (a copy of a frozen teacher keeps "',
        '"to train ("',
        (T_FROZEN,),
        "the error does not say to call requires_grad_(True) on a deep copy of the frozen teacher",
    ),
]
