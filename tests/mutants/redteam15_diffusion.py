"""A fifteenth red-team audit, area diffusion (2026-12-07; 36 mutants, 17 survived the diffusion
tests at first, each now caught): the lines of tlcm/diffusion no catalogue edited yet. The
scheduler's bookkeeping (a first step at a later timestep without set_begin_index, init_noise_sigma,
the static-shift flow scheduler given FluxPipeline's mu, the flow scheduler's defaults gamma 1 and
use_flow_sigmas), the guided teacher's with_scale, the milestones (M = T, t_m never on t_s, the
flow grid's offset 0), the student grid (the check of every gamma, with_sampler's check, the
default q-step grid, the defaults skip 20 and training_gamma 1), the schedules (the flow timestep
dtype, both ends: VP T - 1, flow T; sigma = t / T whatever the shift; the prediction types VP can
convert; a flow config's own T), the solvers (p = 0, the padded MDS held at t_m, tlcm_step's
refusals, gamma 0 as DDIM) and sample_latents (progress calls, no timesteps, the flow teacher's 0
steps).

Real bug found and fixed (tlcm/diffusion/sampling.py): sample_latents drew fresh noise for every
move, TLCMScheduler only for moves that use it; with a DDIM first move before stochastic ones
(--first-gamma 0 --gamma 1 or 0.5) every later move took another draw, so tlcm.sample, the sample
grids and evaluation gave another image than the exported scheduler in diffusers for the same seed
(tests/test_diffusion15_units.py::test_sample_latents_takes_the_exported_schedulers_noise_for_the_same_seed;
the mutant sa-ddim-first-move-takes-a-draw-bug undoes it). The other unused draws (all-DDIM
teachers, the last DDIM moves) are kept: they change no sample and keep the generator streams of
training and evaluation as they were.

Skipped as equivalent: index_for_timestep's second match (indices[0] instead: set_timesteps refuses
repeated timesteps, so there is never a second match), Guided's per-sample scale shape check relaxed
to numel() in (1, B) (a (1,) scale broadcasts to the same scalar guidance), StudentGrid.with_sampler's
``else self.first_gamma`` (dead: both None already returned), VPSchedule.from_config without its key
filter (DDPMScheduler.from_config drops unknown keys itself), schedule_from_config without its
``name == "TLCMFlowScheduler"`` (that config has a shift and no betas: flow anyway) and
scale_model_input returning sample * init_noise_sigma (1: the same tensor; init_noise_sigma itself is
mutated)."""

from run import Mutant

SCHED = "tlcm/diffusion/scheduler.py"
MS = "tlcm/diffusion/milestones.py"
SCH = "tlcm/diffusion/schedule.py"
SOL = "tlcm/diffusion/solvers.py"
SAM = "tlcm/diffusion/sampling.py"
DEN = "tlcm/diffusion/denoiser.py"

U = "tests/test_diffusion15_units.py"
T_SCHEDULER = "tests/test_diffusion_scheduler.py"
T_MS = "tests/test_diffusion_milestones.py"
T_SOL = "tests/test_diffusion_solvers.py"
T_DDIM = f"{T_SCHEDULER}::test_gamma_zero_matches_ddim"

MUTANTS = [
    # ---- scheduler.py ---------------------------------------------------------------------------
    Mutant(
        "sched-first-step-starts-at-index-zero",
        SCHED,
        "self.index_for_timestep(timestep) if self._begin_index is None else self._begin_index",
        "0 if self._begin_index is None else self._begin_index",
        (f"{U}::test_a_first_step_at_a_later_timestep_moves_on_from_that_timestep",),
        "a pipeline that starts mid-grid without set_begin_index moves to timesteps[1] again",
    ),
    Mutant(
        "sched-config-gamma-ignored",
        SCHED,
        "            gamma = self.config.gamma\n",
        "            gamma = 1.0\n",
        (T_DDIM,),
        "the scheduler's gamma (0: DDIM) ignored: always LCM's fresh noise",
    ),
    Mutant(
        "sched-prev-sample-stays-float32",
        SCHED,
        "prev_sample, denoised = prev_sample.to(dtype), denoised.to(dtype)",
        "prev_sample, denoised = prev_sample, denoised.to(dtype)",
        (f"{T_SCHEDULER}::test_step_output_and_last_step_returns_denoised",),
        "an fp16 pipeline's latents come back float32 and the UNet call fails on dtype",
    ),
    Mutant(
        "sched-init-noise-sigma-of-euler",
        SCHED,
        "    init_noise_sigma = 1.0\n",
        "    init_noise_sigma = 14.6146\n",
        (f"{U}::test_init_noise_sigma_is_the_unit_std_of_pure_noise",),
        "pipelines scale the start latents by init_noise_sigma: an Euler-style sigma_max blows them up",
    ),
    Mutant(
        "sched-flow-mu-shifts-a-static-scheduler",
        SCHED,
        "        if self.config.use_dynamic_shifting:\n",
        "        if self.config.use_dynamic_shifting or mu is not None:\n",
        (f"{U}::test_a_static_shift_flow_scheduler_ignores_the_pipelines_mu",),
        "FluxPipeline always passes mu: a static-shift scheduler would take the resolution shift instead",
    ),
    Mutant(
        "sched-flow-sigmas-without-final-zero",
        SCHED,
        "self.sigmas = torch.cat([shifted, shifted.new_zeros(1)]).float().to(device)",
        "self.sigmas = shifted.float().to(device)",
        (f"{T_SCHEDULER}::test_flow_scheduler_matches_flow_match_euler",),
        "sigmas lose their final 0 and the timesteps their last step",
    ),
    Mutant(
        "sched-flow-default-gamma-ddim",
        SCHED,
        "        gamma: float = 1.0,\n        use_flow_sigmas: bool = True,",
        "        gamma: float = 0.0,\n        use_flow_sigmas: bool = True,",
        (f"{U}::test_the_flow_scheduler_defaults_to_the_lcm_move_and_its_own_sigmas",),
        "a flow scheduler made with defaults runs DDIM moves instead of the paper's LCM moves",
    ),
    Mutant(
        "sched-flow-use-flow-sigmas-off",
        SCHED,
        "use_flow_sigmas: bool = True,",
        "use_flow_sigmas: bool = False,",
        (f"{U}::test_the_flow_scheduler_defaults_to_the_lcm_move_and_its_own_sigmas",),
        "FluxPipeline then passes its own linspace sigmas: the student runs off its milestone grid",
    ),
    # ---- denoiser.py ----------------------------------------------------------------------------
    Mutant(
        "guided-with-scale-keeps-the-old-scale",
        DEN,
        "return replace(self, scale=scale)",
        "return replace(self)",
        (f"{U}::test_with_scale_guides_with_the_new_scale_and_keeps_the_rest",),
        "DMD's real score is guided with the teacher's w instead of its own",
    ),
    # ---- milestones.py --------------------------------------------------------------------------
    Mutant(
        "ms-milestones-refuse-m-equal-t",
        MS,
        "if not 1 <= num_segments <= num_train_timesteps:",
        "if not 1 <= num_segments < num_train_timesteps:",
        (f"{U}::test_m_equal_to_t_is_one_segment_per_timestep",),
        "M = T (StudentGrid.check accepts it) refused by milestones",
    ),
    Mutant(
        "ms-t-m-may-hit-the-lower-milestone",
        MS,
        "        offset = u * (hi - lo)\n",
        "        offset = u * (hi - lo + 1)\n",
        (f"{T_MS}::test_sample_segment_timesteps_vp_ranges",),
        "t_m = t_s belongs to the segment below: segments are half-open (t_s, t_{s+1}]",
    ),
    Mutant(
        "ms-flow-inference-offset-one",
        MS,
        "values = (table[ks] - offset).tolist()",
        "values = (table[ks] - 1).tolist()",
        (f"{T_MS}::test_a_flow_students_training_grid_is_the_exported_schedulers_grid",),
        "flow students sampled one timestep below pure noise",
    ),
    Mutant(
        "ms-check-skips-first-gamma",
        MS,
        'for name in ("gamma", "training_gamma", "first_gamma"):',
        'for name in ("gamma", "training_gamma"):',
        (f"{U}::test_student_grid_check_refuses_each_gamma_outside_zero_one",),
        "a recipe's first_gamma 1.5 is accepted and the first move's noise std is imaginary",
    ),
    Mutant(
        "ms-check-steps-below-m",
        MS,
        "if not 1 <= self.steps <= self.num_milestones:",
        "if not 1 <= self.steps < self.num_milestones:",
        ("tests/test_dmd.py",),
        "q = M (every milestone) refused",
    ),
    Mutant(
        "ms-with-sampler-unchecked",
        MS,
        "        grid.check()\n        return grid",
        "        return grid",
        (f"{U}::test_with_sampler_refuses_a_gamma_outside_zero_one",),
        "--gamma 2 accepted by with_sampler",
    ),
    Mutant(
        "ms-grid-timesteps-default-m",
        MS,
        "n = num_steps or self.steps",
        "n = num_steps or self.num_milestones",
        (f"{U}::test_student_grid_defaults_are_the_papers_and_timesteps_default_to_q",),
        "the training q-step grid becomes the M-step grid",
    ),
    Mutant(
        "ms-default-skip",
        MS,
        "    skip: float = 20,\n",
        "    skip: float = 10,\n",
        (f"{U}::test_sample_segment_timesteps_default_skip_is_the_papers_20",),
        "Sec. 4.1's skip k = 20 as the default",
    ),
    Mutant(
        "ms-default-training-gamma-ddim",
        MS,
        "    training_gamma: float = 1.0\n",
        "    training_gamma: float = 0.0\n",
        (f"{U}::test_student_grid_defaults_are_the_papers_and_timesteps_default_to_q",),
        "the paper's LCM sampler inside training replaced by DDIM by default",
    ),
    # ---- schedule.py ----------------------------------------------------------------------------
    Mutant(
        "sc-flow-timesteps-long",
        SCH,
        "return torch.long if self.discrete else torch.float32",
        "return torch.long",
        (f"{T_SCHEDULER}::test_sample_latents_on_a_shifted_flow_grid_is_the_flow_schedulers_loop",),
        "a flow grid's real-valued timesteps truncated to integers in sample_latents",
    ),
    Mutant(
        "sc-vp-max-timestep-t",
        SCH,
        "        return self.num_train_timesteps - 1\n",
        "        return self.num_train_timesteps\n",
        (f"{T_MS}::test_sample_segment_timesteps_vp_ranges",),
        "VP timestep T (past alphas_cumprod) drawn in the top segment",
    ),
    Mutant(
        "sc-flow-sigma-shifted-twice",
        SCH,
        "return t.float() / self.num_train_timesteps",
        "return self.shift_sigmas(t.float() / self.num_train_timesteps)",
        (f"{T_SCHEDULER}::test_flow_scheduler_matches_flow_match_euler",),
        "sigma = t / T whatever the shift: the shift picks the timesteps, not the map",
    ),
    Mutant(
        "sc-flow-max-timestep-t-minus-one",
        SCH,
        "        return float(self.num_train_timesteps)\n",
        "        return float(self.num_train_timesteps - 1)\n",
        (f"{U}::test_flow_mds_starts_at_pure_noise_t",),
        "flow MDS starts one timestep below pure noise (sigma 0.999), where its noise is not x_T",
    ),
    Mutant(
        "sc-flow-timestep-at-unshifted",
        SCH,
        "return (self.shift_sigmas(fraction) * self.num_train_timesteps).float()",
        "return (fraction * self.num_train_timesteps).float()",
        (f"{T_MS}::test_a_flow_students_training_grid_is_the_exported_schedulers_grid",),
        "training milestones unshifted while the exported scheduler shifts them",
    ),
    Mutant(
        "sc-vp-accepts-flow-prediction",
        SCH,
        "if prediction_type not in VP_PREDICTION_TYPES:",
        "if prediction_type not in (*VP_PREDICTION_TYPES, FLOW_PREDICTION_TYPE):",
        (f"{U}::test_a_vp_schedule_refuses_a_prediction_type_it_cannot_convert",),
        "a VP schedule with flow_prediction silently takes the output as x0",
    ),
    Mutant(
        "sc-flow-from-config-ignores-t",
        SCH,
        'return cls(config.get("num_train_timesteps", 1000), float(shift))',
        "return cls(1000, float(shift))",
        (f"{U}::test_a_flow_schedule_from_config_keeps_its_t",),
        "a flow config with T != 1000 gets sigma = t / 1000",
    ),
    # ---- solvers.py -----------------------------------------------------------------------------
    Mutant(
        "so-zero-substeps-accepted",
        SOL,
        "    if substeps < 1:\n",
        "    if substeps < 0:\n",
        (f"{U}::test_teacher_solve_refuses_zero_substeps",),
        "p = 0 returns x_t unsolved, silently",
    ),
    Mutant(
        "so-mds-rounds-unclamped",
        SOL,
        "tau = schedule.discretize(start + (t_m - start) * (r / steps).clamp(max=1))",
        "tau = schedule.discretize(start + (t_m - start) * (r / steps))",
        (f"{U}::test_padded_mds_calls_the_teacher_only_on_each_samples_own_grid",),
        "a finished sample's padded rounds call the teacher past its t_m (below the clean end)",
    ),
    Mutant(
        "so-tlcm-step-gamma-unchecked",
        SOL,
        '    if not 0.0 <= gamma <= 1.0:\n        raise ValueError(f"gamma must be in [0, 1], got {gamma}")\n'
        "    if gamma == 0.0:",
        "    if gamma == 0.0:",
        (f"{U}::test_tlcm_step_refuses_bad_gamma_and_missing_noise",),
        "gamma 1.5 puts s' below the clean end",
    ),
    Mutant(
        "so-tlcm-step-noise-unchecked",
        SOL,
        "    if noise is None:\n",
        "    if noise is None and False:\n",
        (f"{U}::test_tlcm_step_refuses_bad_gamma_and_missing_noise",),
        "a stochastic move without noise is a TypeError deep inside",
    ),
    Mutant(
        "so-tlcm-step-gamma-zero-not-ddim",
        SOL,
        "    if gamma == 0.0:\n        return ddim_step(schedule, x_t, x0_hat, t, s)\n",
        "",
        (T_DDIM,),
        "gamma 0 asks for noise it does not use",
    ),
    # ---- sampling.py ----------------------------------------------------------------------------
    Mutant(
        "sa-teacher-flow-grid-unshifted",
        SAM,
        "return schedule.timestep_at(fraction).tolist()",
        "return (fraction * schedule.num_train_timesteps).tolist()",
        (f"{T_SCHEDULER}::test_teacher_timesteps_by_hand",),
        "the teacher's flow grid ignores the shift",
    ),
    Mutant(
        "sa-on-step-off-by-one",
        SAM,
        "            on_step(i)\n",
        "            on_step(i + 1)\n",
        (f"{U}::test_sample_latents_reports_each_step_once_and_refuses_no_steps",),
        "progress reported one step ahead",
    ),
    Mutant(
        "sa-on-step-skips-the-last",
        SAM,
        "        if on_step is not None:\n            on_step(i)\n        if i == len(timesteps) - 1:\n"
        "            return x0\n",
        "        if i == len(timesteps) - 1:\n            return x0\n        if on_step is not None:\n"
        "            on_step(i)\n",
        (f"{U}::test_sample_latents_reports_each_step_once_and_refuses_no_steps",),
        "the progress bar stops one step short",
    ),
    Mutant(
        "sa-empty-timesteps-return-the-noise",
        SAM,
        '    raise ValueError("timesteps must not be empty")',
        "    return x",
        (f"{U}::test_sample_latents_reports_each_step_once_and_refuses_no_steps",),
        "no timesteps: the noise is returned as a sample",
    ),
    Mutant(
        "sa-ddim-first-move-takes-a-draw-bug",
        SAM,
        "        if move_gamma > 0 or gamma == 0:\n",
        "        if True:\n",
        (f"{U}::test_sample_latents_takes_the_exported_schedulers_noise_for_the_same_seed",),
        "the real bug undone: --first-gamma 0 --gamma 1 samples differ from the exported scheduler's",
    ),
    Mutant(
        "sa-flow-teacher-zero-steps",
        SAM,
        "    if num_steps < 1:\n",
        "    if num_steps < 0:\n",
        (f"{U}::test_flow_teacher_timesteps_refuse_zero_steps",),
        "0 teacher steps: an empty flow grid",
    ),
]
