"""A fifteenth red-team audit, area consistency (2026-12-07; 37 mutants, 26 survived at first, each now
caught): MLCD and LCD (tlcm/losses/mlcd.py, lcd.py), the step's shared work (shared.py), the distances,
the aux optimizer and the loss base / registry, on the lines no catalogue edited yet. Holes found and
closed: the edges of MLCD's ranges (ema_decay 0 in / 1 out, guidance_range (w, w) in / lo = 0 and lo > hi
out, segments T in / T + 1 and -1 out), an unknown distance or weights for a plain distance refused at
validate for MLCD and LCD, states a caller hands in (``StepContext.states``) used as they are, the EMA
target (a copy of EVERY trainable weight and of no frozen one, moved each, saved in the checkpoint, its
calls counted by a built loss), the draws of a step (per-sample w, TCD's target time, LCD's full-range
t_m) from the step's generator only, LCD's full-range t_m (integer timesteps, no pile-up at T), the aux
optimizer's defaults (those of DMD's and the GAN's configs) and betas that are not a pair, every loss's
default weight 1, and the data each MLCD states option reads, LCD's states being the step's shared student
sample. Caught at once: the teacher step without CFG (MLCD, LCD), the MDS states at w = 1, a default
target time "random", x0 converted at the wrong time (segment map, LCD goal and prediction), LCD's
full-range segment index, pseudo-Huber's offset, MLCD leaving no consistency pair, weights for l2 ignored
(tests/test_latent_lpips.py).

Real bugs found: none.

Skipped as equivalent: TCD's random target time also raising t_n to max(t_n, s) (s is drawn in [t_s, t_n], so
t_n never moves); near-duplicates of mutants other catalogues hold (the Huber reductions, the student samples'
gamma)."""

from run import Mutant

MLCD = "tlcm/losses/mlcd.py"
LCD = "tlcm/losses/lcd.py"
SHARED = "tlcm/losses/shared.py"
DIST = "tlcm/losses/distances.py"
AUX = "tlcm/losses/auxiliary.py"
BASE = "tlcm/losses/base.py"

U = "tests/test_consistency15_units.py"
U_EDGES = f"{U}::test_mlcd_validate_takes_the_edges_of_its_ranges_and_refuses_past_them"
U_DIST = f"{U}::test_an_unknown_distance_or_weights_for_a_plain_distance_are_refused_by_validate"
U_EMA = f"{U}::test_ema_target_starts_at_a_copy_of_every_trainable_weight_and_moves_each"
U_CKPT = f"{U}::test_ema_target_weights_are_in_the_checkpoint_and_come_back"
U_SEED = f"{U}::test_the_same_step_seed_gives_the_same_loss_whatever_the_global_rng"
U_FULL = f"{U}::test_lcd_full_range_draws_integer_t_m_uniform_over_the_range_above_the_first_segment"
U_AUX = f"{U}::test_aux_optimizer_defaults_are_the_owning_losses_config_defaults"
OBJ = "tests/test_objectives.py"
FLOW = "tests/test_flow_objectives.py"
T_MLCD_HAND = f"{OBJ}::test_mlcd_component_timesteps_and_value_by_hand"
T_MLCD_FLOW = f"{FLOW}::test_mlcd_flow_component_by_hand"
T_LCD_FLOW = f"{FLOW}::test_lcd_flow_component_states_timesteps_and_value_by_hand"

MUTANTS = [
    # ---- mlcd.py: validate ----------------------------------------------------------------------
    Mutant(
        "mlcd-ema-decay-one-accepted",
        MLCD,
        "if not 0 <= self.ema_decay < 1:",
        "if not 0 <= self.ema_decay <= 1:",
        (U_EDGES,),
        "decay 1: an EMA target that never moves, the initial student forever",
    ),
    Mutant(
        "mlcd-ema-decay-zero-refused",
        MLCD,
        "if not 0 <= self.ema_decay < 1:",
        "if not 0 < self.ema_decay < 1:",
        (U_EDGES,),
        "the documented [0, 1) loses its valid edge 0",
    ),
    Mutant(
        "mlcd-w-range-zero-low-accepted",
        MLCD,
        "not 0 < lo <= hi:",
        "not 0 <= lo <= hi:",
        (U_EDGES,),
        "w = 0 (the unconditional teacher) drawn as a CFG scale",
    ),
    Mutant(
        "mlcd-w-range-point-refused",
        MLCD,
        "not 0 < lo <= hi:",
        "not 0 < lo < hi:",
        (U_EDGES,),
        "(w, w), one fixed per-sample w, refused",
    ),
    Mutant(
        "mlcd-w-range-any-order",
        MLCD,
        "not 0 < lo <= hi:",
        "not 0 < lo:",
        (U_EDGES,),
        "(4, 2) accepted: w drawn in [4, 2] (lo + (hi - lo) u), a typo trained on",
    ),
    Mutant(
        "mlcd-segments-T-refused",
        MLCD,
        "if not 0 <= self.segments <= num_train_timesteps:",
        "if not 0 <= self.segments < num_train_timesteps:",
        (U_EDGES,),
        "segments = T (one timestep per segment) refused",
    ),
    Mutant(
        "mlcd-segments-negative-accepted",
        MLCD,
        "if not 0 <= self.segments <= num_train_timesteps:",
        "if not self.segments <= num_train_timesteps:",
        (U_EDGES,),
        "segments -1 passes its own check and fails as 'skip must be in 1..-1000'",
    ),
    Mutant(
        "mlcd-distance-unchecked-at-validate",
        MLCD,
        "with a cache'\n            )\n        get_distance(self.distance, self.distance_weights)",
        "with a cache'\n            )",
        (U_DIST,),
        "a distance typo found only when the loss is built, after the models load",
    ),
    Mutant(
        "lcd-distance-unchecked-at-validate",
        LCD,
        'got {self.teacher_substeps}")\n        get_distance(self.distance, self.distance_weights)',
        'got {self.teacher_substeps}")',
        (U_DIST,),
        "the same for LCD",
    ),
    Mutant(
        "distance-weights-for-l2-ignored",
        DIST,
        "    if weights:\n        raise",
        "    if False:\n        raise",
        (U_DIST,),
        "a weights file given to l2 / huber silently dropped",
    ),
    Mutant(
        "mlcd-data-needs-swapped",
        MLCD,
        '{"cache": "trajectory_cache", "data": "images"}',
        '{"cache": "images", "data": "trajectory_cache"}',
        (f"{U}::test_mlcd_names_the_data_each_states_option_reads",),
        "states cache asks for real images, states data for a trajectory cache",
    ),
    # ---- mlcd.py: states, teacher, draws --------------------------------------------------------
    Mutant(
        "mlcd-given-states-ignored",
        MLCD,
        "            if ctx.states is not None:\n                return ctx.states\n",
        "",
        (f"{U}::test_mlcd_uses_the_states_a_caller_hands_in_without_a_cache_or_teacher_call",),
        "StepContext(states=...) of a caller's own loop refused for want of a cache",
    ),
    Mutant(
        "mlcd-teacher-step-unguided",
        MLCD,
        "target, teacher = self._target(ctx), self._teacher(ctx)",
        "target, teacher = self._target(ctx), self._teacher(ctx).denoiser",
        (T_MLCD_HAND,),
        "x_tn by the conditional teacher without CFG (Eq. (8)'s w dropped)",
    ),
    Mutant(
        "mlcd-mds-teacher-fixed-w",
        MLCD,
        "x_tm = mds_trajectory(self._teacher(ctx), schedule, noise, t_m, steps, ctx.cond, rounds)",
        "x_tm = mds_trajectory(ctx.teacher.with_scale(1.0), schedule, noise, t_m, steps, ctx.cond, rounds)",
        (f"{OBJ}::test_mlcd_mds_states_take_m_minus_s_teacher_steps_by_hand",),
        "MDS states without guidance",
    ),
    Mutant(
        "mlcd-default-target-time-random",
        MLCD,
        'target_time: Literal["edge", "random"] = "edge"',
        'target_time: Literal["edge", "random"] = "random"',
        (T_MLCD_HAND,),
        "the paper's segment edge replaced by TCD's random s by default",
    ),
    Mutant(
        "mlcd-segment-map-x0-at-edge",
        MLCD,
        "x0 = schedule.to_x0(denoiser(x, t, cond), x, t)",
        "x0 = schedule.to_x0(denoiser(x, t, cond), x, t_s)",
        (T_MLCD_FLOW,),
        "the network output converted to x0 at the edge, not at its own time",
    ),
    Mutant(
        "mlcd-w-from-the-global-rng",
        MLCD,
        "lo + (hi - lo) * ctx.rand(ctx.batch_size)",
        "lo + (hi - lo) * torch.rand(ctx.batch_size, device=ctx.device)",
        (U_SEED,),
        "per-sample w from torch's global generator: resume and process count change the run",
    ),
    Mutant(
        "mlcd-target-time-global-rng",
        MLCD,
        "uniform_timesteps(ctx.rand(ctx.batch_size), states.t_s, states.t_n)",
        "uniform_timesteps(torch.rand(ctx.batch_size, device=ctx.device), states.t_s, states.t_n)",
        (U_SEED,),
        "TCD's target time from the global generator",
    ),
    # ---- mlcd.py: the EMA target ----------------------------------------------------------------
    Mutant(
        "mlcd-ema-starts-at-zero",
        MLCD,
        "params = {n: p.detach().clone() for n, p",
        "params = {n: torch.zeros_like(p) for n, p",
        (U_EMA,),
        "the EMA target starts at zero weights, not the student's (the by-hand test's student is 0)",
    ),
    Mutant(
        "mlcd-ema-copies-frozen-weights",
        MLCD,
        "for n, p in student_module.named_parameters() if p.requires_grad}",
        "for n, p in student_module.named_parameters()}",
        (U_EMA,),
        "a LoRA student's EMA copies the whole frozen UNet (memory, checkpoint size)",
    ),
    Mutant(
        "mlcd-ema-only-first-weight",
        MLCD,
        '        for i, name in enumerate(self.ema_names):\n            getattr(self, f"ema_{i}").lerp_(',
        '        for i, name in enumerate(self.ema_names[:1]):\n            getattr(self, f"ema_{i}").lerp_(',
        (U_EMA,),
        "one weight of the target moves, the rest stay at the start (the by-hand student has one)",
    ),
    Mutant(
        "mlcd-ema-not-in-checkpoint",
        MLCD,
        'self.register_buffer(f"ema_{i}", params[name])',
        'self.register_buffer(f"ema_{i}", params[name], persistent=False)',
        (U_CKPT,),
        "a resume restarts the EMA target from the current student",
    ),
    Mutant(
        "mlcd-build-counter-dropped",
        MLCD,
        "student.base.family, counter=student.base)",
        "student.base.family, counter=None)",
        (f"{U}::test_a_built_ema_target_adds_its_calls_to_the_models_evaluations",),
        "the engine's denoiser evaluations miss the EMA target's calls",
    ),
    # ---- lcd.py ---------------------------------------------------------------------------------
    Mutant(
        "lcd-teacher-unguided",
        LCD,
        "            ctx.teacher,\n",
        "            ctx.teacher.denoiser,\n",
        (f"{OBJ}::test_lcd_component_states_timesteps_and_value_by_hand",),
        "the p sub-steps without CFG",
    ),
    Mutant(
        "lcd-goal-x0-at-t_m",
        LCD,
        "goal = schedule.to_x0(target(x_tn, t_n, cond), x_tn, t_n)",
        "goal = schedule.to_x0(target(x_tn, t_n, cond), x_tn, t_m)",
        (T_LCD_FLOW,),
        "the target's output converted at t_m (invisible on sample-prediction toys)",
    ),
    Mutant(
        "lcd-pred-x0-at-t_n",
        LCD,
        "pred = schedule.to_x0(student(x_tm, t_m, cond), x_tm, t_m)",
        "pred = schedule.to_x0(student(x_tm, t_m, cond), x_tm, t_n)",
        (T_LCD_FLOW,),
        "the student's output converted at t_n",
    ),
    Mutant(
        "lcd-full-range-overshoots-T",
        LCD,
        "t_m = gap + ctx.rand(ctx.batch_size) * (schedule.max_timestep - gap)",
        "t_m = gap + ctx.rand(ctx.batch_size) * schedule.max_timestep",
        (U_FULL,),
        "t_m past T clamped: a third of the ablation's batch at the top timestep",
    ),
    Mutant(
        "lcd-full-range-not-discretized",
        LCD,
        "t_m = schedule.discretize(t_m.clamp(max=schedule.max_timestep))",
        "t_m = t_m.clamp(max=schedule.max_timestep)",
        (U_FULL,),
        "fractional VP timesteps to the UNet and a floored alpha table index",
    ),
    Mutant(
        "lcd-full-range-one-segment-drawn",
        LCD,
        "k = segment_index(t_m.to(grid.dtype), grid) + 1",
        "k = segment_index(t_m.to(grid.dtype), grid).clamp(max=1) + 1",
        (f"{FLOW}::test_lcd_flow_full_range_t_n_is_one_segment_of_its_own_down",),
        "every full-range t_n one FIRST segment down (equal on VP, not on a shifted flow grid)",
    ),
    Mutant(
        "lcd-full-range-global-rng",
        LCD,
        "t_m = gap + ctx.rand(ctx.batch_size) *",
        "t_m = gap + torch.rand(ctx.batch_size, device=ctx.device) *",
        (U_SEED,),
        "full-range t_m from the global generator",
    ),
    # ---- distances, aux optimizer, base ---------------------------------------------------------
    Mutant(
        "pseudo-huber-offset-dropped",
        DIST,
        "+ c**2).sqrt() - c",
        "+ c**2).sqrt()",
        ("tests/test_losses.py::test_distances_by_hand",),
        "sqrt(d^2 + c^2) without - c: the loss of a perfect student is c, not 0",
    ),
    Mutant(
        "aux-betas-length-unchecked",
        AUX,
        "if len(betas) != 2 or not all(",
        "if not all(",
        (f"{U}::test_aux_settings_refuse_betas_that_are_not_a_pair",),
        "three betas pass the check and fail in AdamW at the first aux step",
    ),
    Mutant(
        "aux-default-betas",
        AUX,
        "        betas: tuple[float, float] = (0.0, 0.99),\n",
        "        betas: tuple[float, float] = (0.9, 0.999),\n",
        (U_AUX,),
        "the documented default is the losses' (0, 0.99)",
    ),
    Mutant(
        "aux-default-clip-off",
        AUX,
        "        max_grad_norm: float = 1.0,\n",
        "        max_grad_norm: float = 0.0,\n",
        (U_AUX,),
        "no clipping by default",
    ),
    Mutant(
        "loss-weight-default-two",
        BASE,
        "    weight: float = 1.0\n",
        "    weight: float = 2.0\n",
        (f"{U}::test_every_registered_loss_weighs_one_unless_told",),
        "every loss listed without a weight counts double",
    ),
    Mutant(
        "mlcd-leaves-no-pair",
        MLCD,
        "        return (CONSISTENCY_PAIR,)\n",
        "        return ()\n",
        ("tests/test_gan.py::test_consistency_real_side_needs_mlcd_listed_before_it_in_the_recipe",),
        "PCM's GAN refused even after an mlcd loss",
    ),
    Mutant(
        "lcd-samples-not-shared",
        LCD,
        "x0 = student_samples(ctx)",
        "x0 = student_samples(ctx, 1)",
        (f"{U}::test_lcd_states_are_the_steps_shared_student_samples",),
        "LCD draws its own q-step samples instead of the step's shared draw 0",
    ),
]
