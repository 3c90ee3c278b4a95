"""Round 17 (2026-12-07; each caught): DMD's t' and fake-score t, Diffusion-DPO's t and the GAN's
re-noising tau are uniform over every integer of their range on a VP schedule (rounding u (hi - lo)
drew the two ends half as often as the rest)."""

from run import Mutant

T_DMD = "tests/test_dmd.py::test_dmd_timesteps_are_uniform_over_every_integer_of_their_range"
T_DPO = "tests/test_preference.py::test_dpo_timesteps_are_uniform_over_every_integer_of_the_schedule"
T_GAN = "tests/test_gan.py::test_renoise_timesteps_of_uniform_fractions_are_uniform_over_every_integer"

MUTANTS = [
    Mutant(
        "dmd-timesteps-rounded",
        "tlcm/losses/dmd.py",
        "return ctx.schedule.uniform_timesteps(ctx.rand(ctx.batch_size), lo, hi)",
        "return ctx.schedule.discretize(lo + ctx.rand(ctx.batch_size) * (hi - lo))",
        (T_DMD,),
        "t' and the fake's t drawn by rounding: lo and hi half as likely as the integers between",
    ),
    Mutant(
        "dpo-timesteps-rounded",
        "tlcm/losses/preference.py",
        "t = schedule.uniform_timesteps(ctx.rand(b), 0, schedule.max_timestep).repeat(2)",
        "t = schedule.discretize(ctx.rand(b) * schedule.max_timestep).repeat(2)",
        (T_DPO,),
        "DPO's t drawn by rounding: t = 0 and t = T - 1 half as likely",
    ),
    Mutant(
        "gan-renoise-rounded",
        "tlcm/losses/gan.py",
        "return schedule.uniform_timesteps(f, schedule.clean_timestep, noise_level)",
        "return schedule.discretize(schedule.clean_timestep + f * (noise_level - schedule.clean_timestep))",
        (T_GAN,),
        "D's tau drawn by rounding: the clean end and noise_level half as likely",
    ),
    Mutant(
        "dmd-fake-range-ignored",
        "tlcm/losses/dmd.py",
        "eps, t = ctx.randn(*x0.shape), self._timesteps(ctx, *self.config.fake_t_range())",
        "eps, t = ctx.randn(*x0.shape), self._timesteps(ctx, self.config.t_min, self.config.t_max)",
        (T_DMD,),
        "the fake score trains on t' = [t_min, t_max] instead of [fake_t_min, fake_t_max]",
    ),
]

T_DISK = "tests/test_export_pipeline.py::test_a_disk_without_room_is_refused_before_anything_is_written"
T_ETA = (
    "tests/test_walkthrough3_units.py::"
    "test_a_log_that_is_not_a_terminal_gets_a_plain_progress_line_every_30_seconds"
)

MUTANTS += [
    Mutant(
        "pipeline-export-space-unchecked",
        "tlcm/export.py",
        "    check_free_space(folder, need)\n",
        "",
        (T_DISK,),
        "the pipeline export fills the disk partway (FLUX: about 34 GB) before failing",
    ),
    Mutant(
        "pipeline-export-forgets-the-fused-network",
        "tlcm/export.py",
        "need = sum(map(tree_bytes, copied)) + sum(v.numel() * v.element_size() for v in fused.values())",
        "need = sum(map(tree_bytes, copied))",
        (T_DISK,),
        "the space check leaves out the network's weights, the largest part of the pipeline",
    ),
    Mutant(
        "pipeline-export-space-ignores-the-replaced-export",
        "tlcm/export.py",
        "free = shutil.disk_usage(existing).free + (tree_bytes(folder) if folder.exists() else 0)",
        "free = shutil.disk_usage(existing).free",
        (T_DISK,),
        "a re-export on a nearly full disk refused, though removing the old one frees the room",
    ),
    Mutant(
        "eta-from-the-start-of-the-run",
        "tlcm/report.py",
        "max(task.completed - done, 1)",
        "max(task.completed, 1)",
        (T_ETA,),
        "a resumed phase's ETA counts the steps of the earlier session as done in this one's time",
    ),
    Mutant(
        "eta-counts-steps-done",
        "tlcm/report.py",
        "left = (task.total - task.completed) * (now - start)",
        "left = task.completed * (now - start)",
        (T_ETA,),
        "the ETA grows as the phase ends",
    ),
]

S = "tests/test_summary.py"
T_SAME = f"{S}::test_compare_refuses_another_models_teacher_and_names_each_run_and_sampler"
T_COMMITTED = f"{S}::test_teacher_table_refuses_to_replace_the_committed_table_with_another"
T_ROWS = f"{S}::test_the_teacher_table_scores_deterministic_ddim_with_cfg"

MUTANTS += [
    Mutant(
        "compare-any-teacher-model",
        "tlcm/evaluate.py",
        'recorded = {r["model"] for r in table if r.get("model")}',
        "recorded = set()",
        (T_SAME,),
        "a UNet student set beside the flow miniature's teacher table, labelled as its teacher",
    ),
    Mutant(
        "compare-student-sampler-unnamed",
        "tlcm/evaluate.py",
        'if "gamma" not in row:',
        "if True:",
        (T_SAME,),
        "every student row reads the same, whatever sampler scored it (a zoo run's own gamma 0)",
    ),
    Mutant(
        "compare-student-first-gamma-unnamed",
        "tlcm/evaluate.py",
        '("" if first is None else f", first move {first:g}")',
        '""',
        (T_SAME,),
        "the TLCM sampler (first move 1, then 0) reads as DDIM",
    ),
    Mutant(
        "teacher-table-overwrites-the-committed-table",
        "tlcm/evaluate.py",
        "    if Path(out).resolve() != COMMITTED_TABLE.resolve():\n        return\n",
        "    return\n",
        (T_COMMITTED,),
        "a 10-prompt trial without --out replaces the 500-prompt reference every table reads",
    ),
    Mutant(
        "teacher-table-guard-ignores-the-model",
        "tlcm/evaluate.py",
        '        changed.append("--model")',
        "        pass",
        (T_COMMITTED,),
        "the flow miniature's table written over the UNet miniature's",
    ),
    Mutant(
        "teacher-table-rows-name-no-model",
        "tlcm/evaluate.py",
        '"model": repo_path(model),',
        '"model": repo_path(MINIATURE_SD),',
        (T_ROWS,),
        "every teacher table claims the miniature as its model: compare then checks nothing",
    ),
    Mutant(
        "teacher-table-rows-sampler-fixed",
        "tlcm/evaluate.py",
        "sampler_name = TEACHER_SAMPLERS[base.schedule.discrete]",
        "sampler_name = TEACHER_SAMPLERS[False]",
        (T_ROWS,),
        "a DDIM teacher table labelled Euler",
    ),
]

T_IMPORT = (
    "tests/test_cli_units.py::"
    "test_import_takes_a_py_files_path_and_an_unknown_recipe_names_a_module_without_presets"
)

MUTANTS += [
    Mutant(
        "import-py-path-as-module-name",
        "tlcm/user_modules.py",
        'return Path(arg).stem if arg.endswith(".py") else arg',
        "return arg",
        (T_IMPORT,),
        "--import path/to/mine.py looks for path/to/mine/py.py",
    ),
    Mutant(
        "import-py-path-folder-not-on-path",
        "tlcm/user_modules.py",
        "        sys.path.insert(0, str(Path(arg).resolve().parent))\n",
        "",
        (T_IMPORT,),
        "a recipe file outside the working directory is not found by its own path",
    ),
    Mutant(
        "unknown-recipe-says-nothing-of-empty-modules",
        "tlcm/user_modules.py",
        'IMPORTED[name] = len(getattr(module, "PRESETS", {}))',
        "IMPORTED[name] = 1",
        (T_IMPORT,),
        "a module that forgot PRESETS gives only 'unknown recipe' and 21 names",
    ),
]

MUTANTS += [
    Mutant(
        "ladder-import-py-path-as-module-name",
        "ablations/run.py",
        "rows = getattr(sys.modules[module_name(name)], ",
        "rows = getattr(sys.modules[name], ",
        ("tests/test_walkthrough6_ablation_units.py::test_an_imported_py_files_variants_join_the_ladder",),
        "ablations.run --import path/to/rows.py imports the file, then looks for its rows under the path",
    ),
]
