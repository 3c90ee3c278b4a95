"""A seventh red-team audit, area "consistency" (2026-12-06; 28 mutants, 11 survived then, each now
caught): breakages of MLCD, LCD, ADD's distillation term, the distances, the solvers and the
losses' shared work on lines that no earlier catalogue edits. The survivors were: single-jump
states made at the recipe's fixed w while the target used each sample's w, the LCM lattice option
inverted, the EMA target's calls missing from the evaluation count, guidance_range accepted with
MDS states (the step then failed deep inside), p = 1 teacher substep refused, MLCD's and LCD's
distance_weights ignored, ADD's distance option ignored, its pixel distance taken in bf16, its
pixel prediction decoded without gradients, and DMD2's backward-simulation chain converting the
student's velocity at the next time (only an eps / v network shows it: the flow test)."""

from run import Mutant

MLCD = "tlcm/losses/mlcd.py"
LCD = "tlcm/losses/lcd.py"
ADD = "tlcm/losses/add.py"
DIST = "tlcm/losses/distances.py"
SOLVERS = "tlcm/diffusion/solvers.py"
SHARED = "tlcm/losses/shared.py"

T_OBJ = "tests/test_objectives.py"
T_FLOW = "tests/test_flow_objectives.py"
T_ADD = "tests/test_add.py"
T_SOLVERS = "tests/test_diffusion_solvers.py"
T_SHARED = "tests/test_shared_work.py"
T_CONS = "tests/test_consistency_maths.py"

MUTANTS = [
    # ---- MLCD ----------------------------------------------------------------------------------
    Mutant(
        "mlcd-single-jump-states-at-the-fixed-w",
        MLCD,
        "x_tm = mds_trajectory(self._teacher(ctx), schedule,",
        "x_tm = mds_trajectory(ctx.teacher, schedule,",
        (T_OBJ + "::test_mlcd_single_jump_states_and_target_share_each_samples_w",),
        "with guidance_range and single_jump (or any teacher-made states) x_tm is made at the recipe's "
        "fixed w while x_tn uses each sample's own w: the pair mixes two guidance scales",
    ),
    Mutant(
        "mlcd-lattice-option-inverted",
        MLCD,
        'lattice = cfg.timesteps == "lattice"',
        'lattice = cfg.timesteps == "uniform"',
        (T_OBJ + "::test_mlcd_lattice_timesteps_are_the_ddim_lattice_points_of_each_segment",),
        "timesteps='lattice' (LCM's DDIM lattice) draws t_m uniformly and the paper's default "
        "draws on the lattice: every zoo LCM recipe and every TLCM run trains other timesteps",
    ),
    Mutant(
        "mlcd-cached-x_tn-recomputed",
        MLCD,
        "        if x_tn is None:\n",
        "        if True:\n",
        ("tests/test_trajectories.py::test_mlcd_from_the_cache_makes_zero_teacher_calls",),
        "a trajectory cache's x_tn is thrown away and the teacher called again: the cache's "
        "'zero teacher calls per step' is lost",
    ),
    Mutant(
        "mlcd-ema-target-reads-the-live-weights",
        MLCD,
        'params = {n: getattr(self, f"ema_{i}") for i, n in enumerate(self.ema_names)}',
        "params = {n: p.detach() for n, p in self.student_module[0].named_parameters() if p.requires_grad}",
        (T_OBJ, "-k", "mlcd"),
        "target='ema' builds its goal from the live weights: the EMA is kept but never used",
    ),
    Mutant(
        "mlcd-skip-of-a-whole-segment-refused",
        MLCD,
        "if not 1 <= self.skip <= longest:",
        "if not 1 <= self.skip < longest:",
        ("tests/test_losses.py", T_OBJ, "-k", "mlcd"),
        "skip = T/M (every t_n at the segment's edge, e.g. k = 125 for M = 8) is refused though valid",
    ),
    Mutant(
        "mlcd-ema-target-calls-not-counted",
        MLCD,
        "return functional_denoiser(self.student_module[0], params, self.family, self.counter)",
        "return functional_denoiser(self.student_module[0], params, self.family, None)",
        (T_OBJ + "::test_mlcd_ema_target_calls_count_as_evaluations",),
        "the EMA target's network calls are missing from the model's evaluation count: the "
        "reported UNet calls (and the benchmarks' FLOPs) undercount every EMA step",
    ),
    Mutant(
        "mlcd-per-sample-w-accepted-with-mds",
        MLCD,
        '            "mds": "MDS advances only some samples per round",\n',
        "",
        (T_CONS + "::test_mlcd_per_sample_guidance_is_refused_with_mds_and_cache_states",),
        "guidance_range with the default MDS states is accepted at validation; the step then fails "
        "deep inside the MDS rounds (a per-sample w of B against a batch of active samples)",
    ),
    Mutant(
        "mlcd-segments-drawn-twice",
        MLCD,
        "sample_segment_timesteps(schedule, grid, b, cfg.skip, on_device, ctx.generator, lattice)",
        "sample_segment_timesteps(schedule, grid, b, cfg.skip, None, ctx.generator, lattice)",
        (T_OBJ, "-k", "mlcd"),
        "t_m is drawn in another segment than the one whose edge t_s and MDS step count are used: "
        "the student is mapped to a wrong edge and the states take the wrong number of steps",
    ),
    Mutant(
        "mlcd-distance-weights-ignored",
        MLCD,
        "        self.distance = get_distance(config.distance, config.distance_weights)\n        self.student_module",
        "        self.distance = get_distance(config.distance)\n        self.student_module",
        (T_CONS + "::test_mlcd_and_lcd_measure_with_their_own_latent_lpips_weights",),
        "MLCD's distance_weights is ignored: latent LPIPS with the shipped miniature weights on any VAE",
    ),
    # ---- LCD -----------------------------------------------------------------------------------
    Mutant(
        "lcd-states-not-re-noised",
        LCD,
        "            ctx.randn(*x0.shape),\n",
        "            torch.zeros_like(x0),\n",
        (T_OBJ, T_FLOW, "-k", "lcd and not mlcd"),
        "LCD's x_tm is a_t x0_q with no noise (Eq. (9) forward-diffuses with eps): the student "
        "is trained on states off the trajectory it samples from",
    ),
    Mutant(
        "lcd-target-network-is-the-teacher",
        LCD,
        "            ctx.student,\n            ctx.student,\n            ctx.teacher,\n",
        "            ctx.student,\n            ctx.teacher,\n            ctx.teacher,\n",
        (T_OBJ, T_FLOW, "-k", "lcd and not mlcd"),
        "LCD's goal is the guided teacher's x0 at t_n, not the stop-grad student's: stage 2 "
        "regresses on the teacher's one-step x0 (blurry) instead of self-consistency",
    ),
    Mutant(
        "lcd-full-range-gap-of-the-top-segment",
        LCD,
        "gap = grid[1] - grid[0]",
        "gap = grid[-1] - grid[-2]",
        (T_OBJ, T_FLOW, "-k", "lcd and not mlcd"),
        "full_range on a shifted flow grid starts t_m above the top segment's width, not the "
        "lowest segment's: the lower segments are never trained",
    ),
    Mutant(
        "lcd-milestones-from-the-global-rng",
        LCD,
        "torch.randint(num_milestones, (ctx.batch_size,), generator=ctx.generator, device=ctx.device)",
        "torch.randint(num_milestones, (ctx.batch_size,), device=ctx.device)",
        (T_OBJ, T_FLOW, "-k", "lcd and not mlcd"),
        "LCD's milestones come from the global RNG, not the step's seeded generator: a resumed run "
        "(and every rank alike) draws other t_m than the uninterrupted one",
    ),
    Mutant(
        "lcd-one-substep-refused",
        LCD,
        "if self.teacher_substeps < 1:",
        "if self.teacher_substeps <= 1:",
        (T_CONS + "::test_lcd_accepts_one_teacher_substep_and_refuses_none",),
        "teacher_substeps = 1 (the paper's p = 1 of Table 3) is refused",
    ),
    Mutant(
        "lcd-distance-weights-ignored",
        LCD,
        "self.distance = get_distance(config.distance, config.distance_weights)",
        "self.distance = get_distance(config.distance)",
        (T_CONS + "::test_mlcd_and_lcd_measure_with_their_own_latent_lpips_weights",),
        "LCD's distance_weights is ignored: latent LPIPS with the shipped miniature weights on any VAE",
    ),
    # ---- ADD -----------------------------------------------------------------------------------
    Mutant(
        "add-weight-and-distance-averaged-apart",
        ADD,
        'return {"add_distill": (add_weighting(schedule, t, cfg.weighting).to(dtype) * distance).mean()}',
        'return {"add_distill": add_weighting(schedule, t, cfg.weighting).to(dtype).mean() * distance.mean()}',
        (T_ADD,),
        "E[c] E[d] instead of E[c d]: each sample's distance is weighted by the batch's mean c(t), "
        "so noisy re-noisings count as much as clean ones",
    ),
    Mutant(
        "add-distance-in-the-input-dtype",
        ADD,
        "dtype = torch.promote_types(pred.dtype, torch.float32)",
        "dtype = pred.dtype",
        (T_ADD + "::test_pixel_distance_of_bf16_decodes_is_taken_in_float32",),
        "bf16 decodes/latents give a bf16 distance and loss: its mean over many pixels loses the "
        "small differences that drive the gradient",
    ),
    Mutant(
        "add-an-own-student-draw",
        ADD,
        "x0 = student_prediction(ctx).x0",
        'x0 = __import__("tlcm.losses.shared", fromlist=["p"]).predict_student(ctx).x0',
        (T_ADD,),
        "ADD's distillation pushes on a prediction of its own, not the one the GAN pushes on: one "
        "more student call, and the two terms train different samples",
    ),
    Mutant(
        "add-pixel-prediction-decoded-without-gradients",
        ADD,
        "pred = decoded_prediction(ctx)",
        "pred = decoded(ctx, prediction_key(ctx), x0.detach())",
        (T_ADD + "::test_pixel_space_decodes_the_shared_prediction_and_the_target",),
        "space='pixel' gives the loss no gradient to the student: ADD's distillation term does nothing",
    ),
    Mutant(
        "add-distance-option-ignored",
        ADD,
        "self.distance = DISTANCES[config.distance]",
        'self.distance = DISTANCES["l2"]',
        (T_ADD + "::test_add_distill_takes_the_configured_distance",),
        "ADD's distance='huber' (or elementwise_huber) silently trains with l2",
    ),
    # ---- distances -----------------------------------------------------------------------------
    Mutant(
        "distance-name-ignored",
        DIST,
        "    return DISTANCES[name]\n",
        '    return DISTANCES["l2"]\n',
        ("tests/test_losses.py", "tests/test_latent_lpips.py"),
        "distance='huber' (or elementwise_huber) in MLCD/LCD silently trains with l2",
    ),
    Mutant(
        "elementwise-huber-default-c-tenfold",
        DIST,
        "def elementwise_huber(pred: torch.Tensor, target: torch.Tensor, c: float = 0.001)",
        "def elementwise_huber(pred: torch.Tensor, target: torch.Tensor, c: float = 0.01)",
        ("tests/test_losses.py", "tests/test_latent_lpips.py::test_registered_distances_by_hand"),
        "LCM's / PCM's huber with c = 0.01, not diffusers' 0.001: an l2-like loss for the small "
        "latent differences late in training",
    ),
    Mutant(
        "latent-lpips-weights-file-ignored",
        DIST,
        "return LEARNED_DISTANCES[name](Path(weights) if weights else None)",
        "return LEARNED_DISTANCES[name](None)",
        ("tests/test_latent_lpips.py::test_selectable_in_mlcd_and_lcd",),
        "distance_weights is silently ignored: MLCD/LCD use the miniature VAE's shipped latent LPIPS "
        "on another VAE's latents",
    ),
    # ---- solvers -------------------------------------------------------------------------------
    Mutant(
        "mds-x0-converted-at-the-next-tau",
        SOLVERS,
        "x0_hat = schedule.to_x0(denoiser(x_r, tau, cond[active]), x_r, tau)",
        "x0_hat = schedule.to_x0(denoiser(x_r, tau, cond[active]), x_r, tau_next)",
        (T_SOLVERS,),
        "MDS converts the teacher's eps / v output with the next timestep's a, s: the data-free "
        "states are off the teacher's trajectory (sample-prediction models hide it)",
    ),
    Mutant(
        "mds-rounds-x0-converted-at-the-next-tau",
        SOLVERS,
        "x0_hat = schedule.to_x0(denoiser(x, tau, cond), x, tau)\n            moving",
        "x0_hat = schedule.to_x0(denoiser(x, tau, cond), x, tau_next)\n            moving",
        (T_SOLVERS,),
        "under FSDP2's uniform calls the MDS states differ from the single-GPU ones",
    ),
    Mutant(
        "tlcm-step-clean-timestep-is-zero",
        SOLVERS,
        "clean = schedule.clean_timestep",
        "clean = 0",
        (T_SOLVERS,),
        "on a VP schedule gamma = 1 sampling DDIMs to t = 0 (not clean data) and re-noises from "
        "there: every multistep sample keeps t = 0's noise",
    ),
    # ---- shared work ---------------------------------------------------------------------------
    Mutant(
        "chain-x0-converted-at-the-next-time",
        SHARED,
        "x0 = ctx.schedule.to_x0(ctx.student(x, t, ctx.cond), x, t)",
        "x0 = ctx.schedule.to_x0(ctx.student(x, t, ctx.cond), x, s)",
        (T_FLOW, "-k", "chain_flow"),
        "DMD2's backward simulation converts the student's eps / v with the next time's a, s: the "
        "chain's states are not what the student's sampler reaches",
    ),
    Mutant(
        "chain-reuses-the-first-fresh-noise",
        SHARED,
        "fresh = [ctx.randn(*x.shape) for _ in range(len(grid) - 1)]",
        "fresh = [ctx.randn(*x.shape)] * (len(grid) - 1)",
        (T_SHARED, T_OBJ, "-k", "chain"),
        "every move of the chain re-noises with the same noise: correlated states, not the "
        "sampler's distribution",
    ),
]
