"""A second red-team audit (2026-12-06; 56 mutants, 7 survived then, each now caught): breakages of the
maths that no other catalogue makes, on lines none of their mutants edits (the losses' less-
travelled lines, the solvers' and samplers' generators and indices, the auxiliary optimizer, the
engine's step and lr schedule, gradient averaging, the student's auxiliary adapters, rewards and the
trajectory cache); see run.py."""

from run import Mutant

MLCD = "tlcm/losses/mlcd.py"
LCD = "tlcm/losses/lcd.py"
SHARED = "tlcm/losses/shared.py"
SOLVERS = "tlcm/diffusion/solvers.py"
SAMPLING = "tlcm/diffusion/sampling.py"
AUX = "tlcm/losses/auxiliary.py"
DMD = "tlcm/losses/dmd.py"
PREF = "tlcm/losses/preference.py"
ADD = "tlcm/losses/add.py"
GAN = "tlcm/losses/gan.py"
ENGINE = "tlcm/engine.py"
DIST = "tlcm/distributed.py"
STUDENT = "tlcm/models/student.py"
REWARDS = "tlcm/rewards/base.py"
TRAJ = "tlcm/data/trajectories.py"

T_LOSSES = "tests/test_losses.py"
T_OBJ = "tests/test_objectives.py"
T_FLOW_OBJ = "tests/test_flow_objectives.py"
T_SHARED = "tests/test_shared_work.py"
T_SOLVE = "tests/test_diffusion_solvers.py"
T_SAMPLE = "tests/test_sample.py"
T_PIPE = "tests/test_diffusion_pipelines.py"
T_DMD = "tests/test_dmd.py"
T_PREF = "tests/test_preference.py"
T_ADD = "tests/test_add.py"
T_GAN = "tests/test_gan.py"
T_ENGINE = "tests/test_engine.py"
T_CKPT = "tests/test_checkpoint.py"
T_DIST = "tests/test_distributed.py"
T_ADAPTERS = "tests/test_adapters.py"
T_TRAJ = "tests/test_trajectories.py"
T_CONTRACT = "tests/test_loss_contract.py"
T_RESUME = "tests/test_loss_contract.py::test_resume_mid_phase_equals_the_uninterrupted_run"
T_DP = "tests/test_loss_contract.py::test_two_processes_equal_one_process_with_two_micro_batches"

MUTANTS = [
    # ---- MLCD ----------------------------------------------------------------------------
    Mutant(
        "mlcd-ema-init-aliases-live-weights",
        MLCD,
        "params = {n: p.detach().clone() for n, p in student_module.named_parameters() if p.requires_grad}",
        "params = {n: p.detach() for n, p in student_module.named_parameters() if p.requires_grad}",
        (T_LOSSES, T_OBJ),
        "the EMA buffers share storage with the live LoRA: the EMA target is the online student",
    ),
    Mutant(
        "mlcd-top-segment-never-drawn",
        MLCD,
        "seg = torch.randint(num_milestones, (b,), generator=host, device=host.device)",
        "seg = torch.randint(num_milestones - 1, (b,), generator=host, device=host.device)",
        (T_LOSSES, T_OBJ),
        "segment M - 1 (the noisiest) is never trained",
    ),
    Mutant(
        "mlcd-data-states-noised-to-tn",
        MLCD,
        "return TrajectoryStates(schedule.add_noise(x0, ctx.randn(*x0.shape), t_m), t_m, t_n, t_s)",
        "return TrajectoryStates(schedule.add_noise(x0, ctx.randn(*x0.shape), t_n), t_m, t_n, t_s)",
        (T_LOSSES, T_OBJ),
        'states "data": the real latent noised to t_n but labelled t_m',
    ),
    Mutant(
        "mlcd-sum-over-batch",
        MLCD,
        'return {"mlcd": self.distance(online, goal).mean()}',
        'return {"mlcd": self.distance(online, goal).sum()}',
        (T_LOSSES, T_OBJ, T_CONTRACT),
        "the batch reduction: the loss (and lr) scale with the micro-batch size",
    ),
    Mutant(
        "mlcd-stopgrad-target-is-teacher",
        MLCD,
        "            return ctx.student\n",
        "            return ctx.teacher\n",
        (T_LOSSES, T_OBJ),
        "the stop-grad target network is the guided teacher, not the student",
    ),
    Mutant(
        "mlcd-mds-noise-global-rng",
        MLCD,
        "            noise = ctx.randn(ctx.batch_size, *ctx.latent_shape)\n",
        "            noise = torch.randn(ctx.batch_size, *ctx.latent_shape, device=ctx.device)\n",
        (T_LOSSES, T_OBJ, T_CKPT),
        "the MDS start noise from the global RNG, not the step's generator: no exact resume / reproducibility",
    ),
    # ---- LCD -----------------------------------------------------------------------------
    Mutant(
        "lcd-top-milestone-clamped-one-low",
        LCD,
        "t_m = schedule.discretize(t_m.clamp(max=schedule.max_timestep))",
        "t_m = schedule.discretize(t_m.clamp(max=schedule.max_timestep - 1))",
        (*("tests/test_objectives.py", "tests/test_flow_objectives.py", "tests/test_losses.py"),),
        "the top milestone state one timestep below T (a flow schedule: T - 1 of a unit range)",
    ),
    Mutant(
        "lcd-state-noised-to-tn",
        LCD,
        "x_tm = schedule.add_noise(x0, noise, t_m)",
        "x_tm = schedule.add_noise(x0, noise, t_n)",
        (T_OBJ, T_FLOW_OBJ, T_LOSSES),
        "Eq. (9): x_{t_m} noised to t_n but treated as at t_m",
    ),
    Mutant(
        "lcd-sum-over-batch",
        LCD,
        'return {"lcd": loss.mean()}',
        'return {"lcd": loss.sum()}',
        (T_OBJ, T_FLOW_OBJ, T_LOSSES, T_CONTRACT),
        "the batch reduction: sum, not mean",
    ),
    # ---- shared work ---------------------------------------------------------------------
    Mutant(
        "shared-student-samples-global-generator",
        SHARED,
        "        generator=ctx.generator,\n    )",
        "        generator=None,\n    )",
        (T_SHARED, T_OBJ, T_LOSSES, T_RESUME + "[lcd]"),
        "the q-step sampler's fresh noise from the global RNG, not the step's generator",
    ),
    Mutant(
        "shared-student-samples-gamma-one",
        SHARED,
        "        ctx.grid.training_gamma,\n        generator=ctx.generator,",
        "        1.0,\n        generator=ctx.generator,",
        (T_SHARED, T_OBJ, T_LOSSES),
        "student_samples ignores the grid's training_gamma (always LCM noise)",
    ),
    Mutant(
        "shared-decoded-prediction-detached",
        SHARED,
        "return decoded(ctx, prediction_key(ctx), student_prediction(ctx).x0)",
        "return decoded(ctx, prediction_key(ctx), student_prediction(ctx).x0.detach())",
        (T_SHARED, T_PREF, T_ADD, T_GAN),
        "reward feedback / pixel GAN / pixel ADD get no gradient through the decoded prediction",
    ),
    Mutant(
        "shared-chain-last-grid-point-never",
        SHARED,
        "k = int(torch.randint(len(grid), (1,), generator=host, device=host.device))",
        "k = int(torch.randint(len(grid) - 1, (1,), generator=host, device=host.device))",
        (T_SHARED, T_OBJ, T_DMD),
        "backward simulation never trains the last step of the q-step grid",
    ),
    Mutant(
        "shared-chain-off-for-two-steps",
        SHARED,
        'if ctx.grid.backward_simulation == "chain" and num_steps > 1:',
        'if ctx.grid.backward_simulation == "chain" and num_steps > 2:',
        (T_SHARED, T_OBJ, T_DMD),
        'q = 2 with backward_simulation "chain" silently falls back to "sample"',
    ),
    # ---- solvers / sampling --------------------------------------------------------------
    Mutant(
        "teacher-solve-conditioned-on-next-time",
        SOLVERS,
        "        x0_hat = schedule.to_x0(denoiser(x, tau, cond), x, tau)\n        x = ddim_step(",
        "        x0_hat = schedule.to_x0(denoiser(x, tau_next, cond), x, tau)\n        x = ddim_step(",
        (T_SOLVE, T_OBJ, T_LOSSES),
        "each sub-step's teacher call at the target time, not the current one",
    ),
    Mutant(
        "mds-rounds-where-swapped",
        SOLVERS,
        "x = torch.where(moving, ddim_step(schedule, x, x0_hat, tau, tau_next), x)",
        "x = torch.where(moving, x, ddim_step(schedule, x, x0_hat, tau, tau_next))",
        (T_SOLVE, T_OBJ, T_LOSSES),
        "uniform-calls MDS: the finished samples move and the moving ones stay",
    ),
    Mutant(
        "mds-starts-one-below-T",
        SOLVERS,
        "start = torch.full_like(t_m, schedule.max_timestep, dtype=torch.float64)",
        "start = torch.full_like(t_m, schedule.max_timestep - 1, dtype=torch.float64)",
        (T_SOLVE, T_OBJ, T_LOSSES),
        "the pure noise x_T labelled one timestep below T for the first teacher call",
    ),
    Mutant(
        "tcd-ddim-to-s-not-s-mid",
        SOLVERS,
        "x_mid = ddim_step(schedule, x_t, x0_hat, t, s_mid)",
        "x_mid = ddim_step(schedule, x_t, x0_hat, t, s)",
        (T_SOLVE, T_SAMPLE),
        "TCD's step: DDIM lands on s, then is forward-diffused as if it were at s'",
    ),
    Mutant(
        "sampler-fresh-noise-global-rng",
        SAMPLING,
        "fresh = torch.randn(x.shape, generator=generator, device=where, dtype=x.dtype)",
        "fresh = torch.randn(x.shape, device=where, dtype=x.dtype)",
        (T_SAMPLE, T_SOLVE, T_PIPE, T_RESUME + "[lcd]"),
        "the sampler's fresh noise ignores the generator: seeded sampling is not reproducible",
    ),
    Mutant(
        "sampler-first-gamma-ignored",
        SAMPLING,
        "x = tlcm_step(schedule, x, x0, t, s, move_gamma, fresh)",
        "x = tlcm_step(schedule, x, x0, t, s, gamma, fresh)",
        (T_SAMPLE, T_SOLVE, T_PIPE),
        "first_gamma is never used",
    ),
    # ---- the auxiliary optimizer ---------------------------------------------------------
    Mutant(
        "aux-no-gradient-all-reduce",
        AUX,
        "        average_gradients(self.params, world_size())\n",
        "",
        (T_DIST, T_DP, T_DMD, T_GAN),
        "the fake score / discriminator updates are not averaged over processes",
    ),
    Mutant(
        "aux-clip-at-one-whatever-the-config",
        AUX,
        "clip_grad_norm(self.params, self.max_grad_norm)",
        "clip_grad_norm(self.params, 1.0)",
        (T_DMD, T_GAN),
        "fake_max_grad_norm / disc_max_grad_norm ignored (always 1)",
    ),
    Mutant(
        "aux-adamw-default-weight-decay",
        AUX,
        "self.opt = torch.optim.AdamW(self.params, lr=lr, betas=betas, weight_decay=weight_decay)",
        "self.opt = torch.optim.AdamW(self.params, lr=lr, betas=betas)",
        (T_DMD, T_GAN),
        "weight decay 0.01 (AdamW's default) instead of the configured 0",
    ),
    # ---- DMD -----------------------------------------------------------------------------
    Mutant(
        "dmd-gradient-real-fake-swapped",
        DMD,
        "grad = dmd_gradient(x0.detach(), real, fake)",
        "grad = dmd_gradient(x0.detach(), fake, real)",
        (T_DMD, T_OBJ),
        "the normaliser |x0 - fake| and the direction real - fake: the student climbs away from the data",
    ),
    Mutant(
        "dmd-fake-t-min-ignored",
        DMD,
        "lo = self.t_min if self.fake_t_min is None else self.fake_t_min",
        "lo = self.t_min",
        (T_DMD,),
        "fake_t_min (DMD2's 0) never reaches the fake score's timesteps",
    ),
    Mutant(
        "dmd-sum-over-batch",
        DMD,
        'return {"dmd": loss.mean()}',
        'return {"dmd": loss.sum()}',
        (T_DMD, T_OBJ, T_CONTRACT),
        "the batch reduction: sum, not mean",
    ),
    # ---- preference ----------------------------------------------------------------------
    Mutant(
        "dpo-first-candidate-decoded-under-seconds-key",
        PREF,
        "r_a = self.reward(decoded(ctx, samples_key(ctx, 0), x_a), ctx.prompts)",
        "r_a = self.reward(decoded(ctx, samples_key(ctx, 1), x_a), ctx.prompts)",
        (T_PREF, T_OBJ),
        "x_a's images cached under x_b's key: r_b reads x_a's images, r_a == r_b, a always wins",
    ),
    Mutant(
        "dpo-loser-is-winner",
        PREF,
        "x_w, x_l = torch.where(a_wins, x_a, x_b), torch.where(a_wins, x_b, x_a)",
        "x_w, x_l = torch.where(a_wins, x_a, x_b), torch.where(a_wins, x_a, x_b)",
        (T_PREF, T_OBJ),
        "the loser is the winner: the DPO logit is 0, no preference signal",
    ),
    Mutant(
        "dpo-error-summed-over-pixels",
        PREF,
        "err = (ctx.student(x_t, t, cond) - target).square().flatten(1).mean(1)",
        "err = (ctx.student(x_t, t, cond) - target).square().flatten(1).sum(1)",
        (T_PREF, T_OBJ),
        "the student's error summed, the reference's averaged: the DPO logit mixes scales",
    ),
    Mutant(
        "unrelated-prompt-duplicate-not-skipped",
        REWARDS,
        "out.append(prompts[(i + shift + j) % n])",
        "out.append(prompts[(i + shift) % n])",
        (T_PREF,),
        "a batch with repeated prompts: the 'unrelated' prompt can be the same text, so the negative "
        "hinge pushes the reward of the prompt itself down",
    ),
    # ---- ADD -----------------------------------------------------------------------------
    Mutant(
        "add-t-min-ignored",
        ADD,
        "return schedule.uniform_timesteps(ctx.rand(ctx.batch_size), cfg.t_min, hi)",
        "return schedule.uniform_timesteps(ctx.rand(ctx.batch_size), 0, hi)",
        (T_ADD,),
        "t_min ignored: the re-noising timesteps start at 0",
    ),
    # ---- GAN -----------------------------------------------------------------------------
    Mutant(
        "gan-consistency-fake-time-not-tau",
        GAN,
        "                tau_fake = tau_real\n",
        "",
        (T_GAN,),
        'real = "consistency": the fake side is noised to tau but D is told it is clean',
    ),
    # ---- engine --------------------------------------------------------------------------
    Mutant(
        "engine-aux-steps-before-student-step",
        ENGINE,
        "        opt.step()\n        metrics: dict[str, torch.Tensor] = {}\n        for loss in losses.values():\n"
        "            with self.autocast:\n                metrics.update(loss.aux_step(contexts))\n"
        "            loss.after_student_step()\n",
        "        metrics: dict[str, torch.Tensor] = {}\n        for loss in losses.values():\n"
        "            with self.autocast:\n                metrics.update(loss.aux_step(contexts))\n"
        "        opt.step()\n        for loss in losses.values():\n            loss.after_student_step()\n",
        ("tests/test_engine.py::test_aux_step_sees_the_student_after_its_update",),
        'the auxiliary models update before the student steps: DMD2\'s fake_samples="fresh" draws '
        "come from the pre-update student (equivalent for the default shared inputs: disjoint parameters)",
    ),
    Mutant(
        "engine-micro-batches-split-per-process-only",
        ENGINE,
        "micro_batches = order.tensor_split(world * accum)",
        "micro_batches = order.tensor_split(accum)",
        (T_DIST, T_DP, T_ENGINE),
        "the global batch cut into accum pieces, not world * accum: processes index past or overlap",
    ),
    Mutant(
        "engine-every-process-same-micro-batches",
        ENGINE,
        "for j in range(self.dist.rank * accum, (self.dist.rank + 1) * accum):",
        "for j in range(accum):",
        (T_DIST, T_DP, T_ENGINE),
        "every process trains micro-batches 0..accum-1 with the same seeds: the others are never seen",
    ),
    Mutant(
        "engine-prompts-same-every-step",
        ENGINE,
        "prompt_gen = torch.Generator().manual_seed(step_seed(seed, global_step, -1))",
        "prompt_gen = torch.Generator().manual_seed(step_seed(seed, 0, -1))",
        ("tests/test_engine.py::test_each_step_draws_its_own_prompts_and_a_rerun_draws_the_same",),
        "the prompt draw's seed ignores the step: the same prompts every step",
    ),
    Mutant(
        "engine-lr-schedule-restarts-on-resume",
        ENGINE,
        "        last_epoch=start - 1,\n",
        "        last_epoch=-1,\n",
        (T_ENGINE, T_CKPT, T_RESUME),
        "a resumed phase restarts its warmup / decay from step 0",
    ),
    Mutant(
        "engine-adamw-default-weight-decay",
        ENGINE,
        "opt = torch.optim.AdamW(params, lr=phase.lr, weight_decay=phase.weight_decay)",
        "opt = torch.optim.AdamW(params, lr=phase.lr)",
        ("tests/test_engine.py::test_the_student_optimizer_uses_the_phases_weight_decay",),
        "the phase's weight_decay ignored (AdamW's default 0.01)",
    ),
    Mutant(
        "engine-student-grads-not-averaged",
        ENGINE,
        "        average_gradients(params, world)\n",
        "",
        (T_DIST, T_DP, T_ENGINE),
        "the student's gradients are not all-reduced: each process steps on its own micro-batches",
    ),
    # ---- distributed ---------------------------------------------------------------------
    Mutant(
        "dist-every-grad-reads-first-slice",
        DIST,
        "p.grad = flat[offset : offset + g.numel()].view_as(g).clone()",
        "p.grad = flat[: g.numel()].view_as(g).clone()",
        (T_DIST, T_DP),
        "every parameter's averaged gradient read from the start of the flat buffer",
    ),
    Mutant(
        "dist-terms-summed-not-averaged",
        DIST,
        "return dict(zip(terms, stacked / world_size, strict=True))",
        "return dict(zip(terms, stacked, strict=True))",
        (T_DIST, T_DP),
        "logged terms (and the NaN / peak / stop decision inputs) summed over processes",
    ),
    Mutant(
        "dist-mixed-clip-coefficient-unclamped",
        DIST,
        "coef = (max_norm / (total + 1e-6)).clamp(max=1.0)",
        "coef = max_norm / (total + 1e-6)",
        (T_DIST,),
        "mixed FSDP2 / plain clipping scales small gradients UP to max_norm",
    ),
    # ---- student / adapters --------------------------------------------------------------
    Mutant(
        "student-auxiliary-keeps-adapter-of-another-rank",
        STUDENT,
        "if existing is None or existing.r != rank:",
        "if existing is None:",
        (T_ADAPTERS, T_DMD),
        "an auxiliary adapter of another rank is kept: fake_rank / disc_rank silently ignored",
    ),
    Mutant(
        "student-auxiliary-not-reinitialised",
        STUDENT,
        "        load_weights(self.net, fresh_lora_state(self.net, name), name)\n",
        "",
        (T_ADAPTERS, T_DMD),
        "a phase's fake score starts where a previous phase's left off, not at the teacher",
    ),
    # ---- trajectory cache ----------------------------------------------------------------
    Mutant(
        "cache-position-past-segment",
        TRAJ,
        "pos = self.seg_first[seg] + (u * (self.seg_lower[seg] - self.seg_first[seg])).long()",
        "pos = self.seg_first[seg] + (u * (self.seg_lower[seg] - self.seg_first[seg] + 1)).long()",
        (T_TRAJ,),
        "t_m may be the segment's edge itself: a pair that crosses into the segment below",
    ),
    Mutant(
        "cache-shard-of-row-left",
        TRAJ,
        "shard = torch.searchsorted(self.shard_start, rows, right=True) - 1",
        "shard = torch.searchsorted(self.shard_start, rows) - 1",
        (T_TRAJ,),
        "a row at a shard's first index read from the previous shard (row 0: the last shard)",
    ),
    # ---- second batch ----------------------------------------------------------------------
    Mutant(
        "mlcd-pair-segments-from-student-grid",
        MLCD,
        "segments = self.config.num_segments(ctx.grid)",
        "segments = ctx.grid.num_milestones",
        (T_GAN, T_OBJ, T_LOSSES),
        "the ConsistencyPair says the student grid's M, not this loss's segments: PCM's GAN re-noises "
        "within the wrong segment when a phase trains fewer segments (TSCD)",
    ),
    Mutant(
        "mlcd-segments-from-student-grid",
        MLCD,
        "num_milestones, host, b = cfg.num_segments(ctx.grid), ctx.host_generator, ctx.batch_size",
        "num_milestones, host, b = ctx.grid.num_milestones, ctx.host_generator, ctx.batch_size",
        (T_OBJ, T_LOSSES),
        "the loss's segments override ignored when drawing segments / MDS steps",
    ),
    Mutant(
        "mlcd-cache-checked-against-student-grid",
        MLCD,
        "cache.require(cfg.num_segments(ctx.grid), cfg.skip)",
        "cache.require(ctx.grid.num_milestones, cfg.skip)",
        (T_TRAJ, T_OBJ, T_LOSSES),
        "a cache of the student grid's M accepted for a loss of other segments (and the right one refused)",
    ),
    Mutant(
        "mlcd-skip-bound-from-student-grid",
        MLCD,
        "longest = num_train_timesteps // self.num_segments(grid)",
        "longest = num_train_timesteps // grid.num_milestones",
        (T_LOSSES, T_OBJ),
        "the skip <= T/M check uses the student's M, not the loss's segments",
    ),
    Mutant(
        "aux-unreached-params-skipped",
        AUX,
        "                p.grad = torch.zeros_like(p)\n",
        "                continue\n",
        (T_DMD, T_GAN, T_DIST, T_DP),
        "a parameter the loss did not reach keeps grad None: AdamW skips it (no momentum / decay), and "
        "under torchrun the processes' AdamW states drift apart",
    ),
    Mutant(
        "engine-warmup-ignored",
        ENGINE,
        "num_warmup_steps=phase.lr_warmup_steps,",
        "num_warmup_steps=0,",
        (T_ENGINE, T_CKPT),
        "lr_warmup_steps ignored",
    ),
    Mutant(
        "dist-mixed-clip-norm-summed",
        DIST,
        "total = torch.linalg.vector_norm(torch.stack(norms))",
        "total = torch.stack(norms).sum()",
        (T_DIST,),
        "the mixed FSDP2 / plain total norm is the sum of the two groups' norms, not their l2",
    ),
    Mutant(
        "student-adapters-leave-last-aux-active",
        STUDENT,
        "        self.net.set_adapter(STUDENT_ADAPTER)  # add_adapter activated the last one and froze the rest\n",
        "",
        (T_ADAPTERS, T_DMD, T_GAN),
        "after adding auxiliary adapters the last one stays the live selection: the student trains through it",
    ),
    Mutant(
        "cache-build-prompt-of-row-transposed",
        TRAJ,
        "idx, local = (chunk // samples_per_prompt).to(device), chunk - first",
        "idx, local = (chunk % len(prompts)).to(device), chunk - first",
        (T_TRAJ,),
        "row r = p * samples_per_prompt + j read as j * P + p: trajectories of the wrong prompt stored",
    ),
    Mutant(
        "gan-generator-sum-over-batch",
        GAN,
        'return {"gan": generator_loss(logits, kind).mean()}',
        'return {"gan": generator_loss(logits, kind).sum()}',
        (T_GAN, T_CONTRACT),
        "the generator loss summed over the batch",
    ),
]
