"""A red-team audit (2026-12-06; 72 mutants, 21 survived then, each now caught): breakages of the maths
that the other catalogues do not make, on lines none of their mutants touches (schedules, solvers,
samplers, CFG, the losses' less-travelled branches, the discriminator, the student's adapters,
conditioning, embeddings, metrics and the zoo's recipes); see run.py."""

from run import Mutant

SCHEDULE = "tlcm/diffusion/schedule.py"
SOLVERS = "tlcm/diffusion/solvers.py"
SAMPLING = "tlcm/diffusion/sampling.py"
DENOISER = "tlcm/diffusion/denoiser.py"
MILESTONES = "tlcm/diffusion/milestones.py"
SCHEDULER = "tlcm/diffusion/scheduler.py"
COND = "tlcm/conditioning.py"
DMD = "tlcm/losses/dmd.py"
ADD = "tlcm/losses/add.py"
AUX = "tlcm/losses/auxiliary.py"
DIST = "tlcm/losses/distances.py"
GAN = "tlcm/losses/gan.py"
PREF = "tlcm/losses/preference.py"
LCD = "tlcm/losses/lcd.py"
MLCD = "tlcm/losses/mlcd.py"
STUDENT = "tlcm/models/student.py"
DISC = "tlcm/models/discriminator.py"
EMB = "tlcm/data/embeddings.py"
FID = "tlcm/eval/fid.py"
TOY_METRICS = "tlcm/toy/metrics.py"
IMAGEREWARD = "tlcm/eval/imagereward.py"
GENERATE = "tlcm/eval/generate.py"
CLIP = "tlcm/scoring/clip.py"
ZOO = "recipes/zoo.py"
RECIPES = "recipes/tlcm.py"
SHARED = "tlcm/losses/shared.py"
METRICS = "tlcm/eval/metrics.py"
SAMPLE = "tlcm/sample.py"

T_SCHED = "tests/test_diffusion_schedule.py"
T_SOLVE = "tests/test_diffusion_solvers.py"
T_MILES = "tests/test_diffusion_milestones.py"
T_SCHEDULERS = "tests/test_diffusion_scheduler.py"
T_ZOO_COMP = "tests/test_zoo_components.py"
T_COND = "tests/test_conditioning.py"
T_DMD = "tests/test_dmd.py"
T_ADD = "tests/test_add.py"
T_GAN = "tests/test_gan.py"
T_PREF = "tests/test_preference.py"
T_LOSSES = "tests/test_losses.py"
T_ADAPTERS = "tests/test_adapters.py"
T_EMB = "tests/test_embeddings.py"
T_EVAL = "tests/test_eval.py"
T_TOY = "tests/test_toy.py"
T_PRESETS = "tests/test_presets.py"
T_SAMPLE = "tests/test_sample.py"
OBJ_LCD = ("tests/test_objectives.py", "tests/test_flow_objectives.py", "-k", "lcd and not mlcd")
OBJ_MLCD = ("tests/test_objectives.py", "-k", "mlcd")
T_DMD_OBJ = ("tests/test_dmd.py", "tests/test_objectives.py", "-k", "dmd")
T_SHARED_OBJ = (
    "tests/test_shared_work.py",
    "tests/test_objectives.py",
    "-k",
    "shared or backward or chain or prediction",
)

MUTANTS = [
    # ---- schedule -----------------------------------------------------------------------
    Mutant(
        "add-noise-from-ratio-not-squared",
        SCHEDULE,
        "std = (self.sigma(t).square() - (a * self.sigma(s)).square())",
        "std = (self.sigma(t).square() - a * self.sigma(s).square())",
        (T_SCHED, T_GAN),
        "q(x_t | x_s)'s std with a instead of a^2 on sigma_s^2: PCM's noise_travel gets the wrong marginal",
    ),
    Mutant(
        "vp-clean-row-appended-not-prepended",
        SCHEDULE,
        "torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod])",
        "torch.cat([alphas_cumprod, alphas_cumprod.new_ones(1)])",
        (T_SCHED, T_SOLVE),
        "the clean boundary row at the end of the table: every alpha(t) is alphas_cumprod[t + 1]",
    ),
    Mutant(
        "vp-v-target-alpha-sigma-swapped",
        SCHEDULE,
        "expand_like(self.alpha(t), x0) * eps - expand_like(self.sigma(t), x0) * x0",
        "expand_like(self.sigma(t), x0) * eps - expand_like(self.alpha(t), x0) * x0",
        (T_SCHED, T_DMD, T_PREF),
        "the v-prediction training target v = alpha eps - sigma x0 with alpha and sigma swapped",
    ),
    Mutant(
        "vp-sample-to-eps-swapped",
        SCHEDULE,
        "return (x_t - a * model_output) / s",
        "return (x_t - s * model_output) / a",
        (T_SCHED,),
        "eps from an x0 ('sample') prediction with alpha and sigma swapped",
    ),
    Mutant(
        "discretize-truncates",
        SCHEDULE,
        "return t.round().long() if self.discrete else t.float()",
        "return t.long() if self.discrete else t.float()",
        (T_SCHED, T_SOLVE, T_MILES),
        "VP timesteps truncated instead of rounded (teacher sub-steps, MDS grids, DMD's t')",
    ),
    Mutant(
        "vp-timestep-at-truncates",
        SCHEDULE,
        "return (fraction * self.num_train_timesteps).round().long()",
        "return (fraction * self.num_train_timesteps).long()",
        (T_MILES, T_SCHEDULERS, T_SCHED),
        "VP milestones k T / M truncated (M = 3, 6, 7: 333 / 666 instead of 333 / 667)",
    ),
    Mutant(
        "flow-shift-inverted",
        SCHEDULE,
        "return self.shift * sigmas / (1 + (self.shift - 1) * sigmas)",
        "return sigmas / (self.shift - (self.shift - 1) * sigmas)",
        (T_SCHED, T_SCHEDULERS, T_ZOO_COMP),
        "SD3's shift applied in reverse (the inverse map): sigmas pushed towards clean, not noise",
    ),
    Mutant(
        "flow-to-x0-sign",
        SCHEDULE,
        "return x_t - expand_like(self.sigma(t), x_t) * model_output",
        "return x_t + expand_like(self.sigma(t), x_t) * model_output",
        (T_SCHED,),
        "x0 = x_t + sigma v: the flow velocity's sign flipped",
    ),
    # ---- solvers / samplers ---------------------------------------------------------------
    Mutant(
        "teacher-solve-substeps-restart-from-x_t",
        SOLVERS,
        "x = ddim_step(schedule, x, x0_hat, tau, tau_next)",
        "x = ddim_step(schedule, x_t, x0_hat, tau, tau_next)",
        (T_SOLVE, *OBJ_LCD),
        "each of the p sub-steps moves the ORIGINAL state: only the last sub-step counts",
    ),
    Mutant(
        "mds-active-count-off-by-one",
        SOLVERS,
        "count = sum(n > r for n in lengths)",
        "count = sum(n >= r for n in lengths)",
        (T_SOLVE,),
        "one sample too many per MDS round: nonzero_static pads with index 0, sample 0 steps twice",
    ),
    Mutant(
        "tlcm-step-forward-ratio-dropped",
        SOLVERS,
        "return expand_like(ratio, x_t) * x_mid + expand_like(std, x_t) * noise",
        "return x_mid + expand_like(std, x_t) * noise",
        (T_SOLVE, T_SCHEDULERS),
        "TCD's forward diffusion s' -> s without the a_s / a_s' scale on x_s'",
    ),
    Mutant(
        "sample-moves-to-current-timestep",
        SAMPLING,
        "s = torch.full_like(t, timesteps[i + 1])",
        "s = torch.full_like(t, timesteps[i])",
        (T_SCHEDULERS, T_SOLVE, "tests/test_shared_work.py"),
        "the sampler moves t -> t (re-noises at the same time) instead of to the next timestep",
    ),
    Mutant(
        "ddim-timesteps-truncated",
        SAMPLING,
        "return [int(t) for t in grid.round()]",
        "return [int(t) for t in grid]",
        (T_SCHEDULERS, T_SOLVE),
        "the teacher's DDIM grid truncated: n=2 -> [999, 499] instead of [999, 500]",
    ),
    # ---- CFG / conditioning --------------------------------------------------------------
    Mutant(
        "cfg-uncond-first-in-batch",
        DENOISER,
        "cond.cat(self.uncond.expand_to(batch))",
        "self.uncond.expand_to(batch).cat(cond)",
        (T_SOLVE, T_ZOO_COMP, T_LOSSES),
        "the 2B batch's halves in the wrong order: the chunks read cond as uncond (inverted CFG)",
    ),
    Mutant(
        "conditioning-repeat-interleaves",
        COND,
        "return self._map(lambda t: t.repeat(n, *([1] * (t.dim() - 1))))",
        "return self._map(lambda t: t.repeat_interleave(n, dim=0))",
        (T_COND, T_PREF),
        "cond.repeat(2) interleaved: DPO's [winners; losers] paired with the wrong prompts",
    ),
    # ---- milestones / scheduler ----------------------------------------------------------
    Mutant(
        "lattice-last-point-never-drawn",
        MILESTONES,
        "(u * (last - first + 1)).floor()",
        "(u * (last - first)).floor()",
        (T_ZOO_COMP, T_MILES),
        "LCM's lattice t_m never takes the segment's top lattice point",
    ),
    Mutant(
        "segment-top-not-clamped-to-max",
        MILESTONES,
        "hi = milestones[segments + 1].double().clamp(max=schedule.max_timestep)",
        "hi = milestones[segments + 1].double()",
        (T_MILES, *OBJ_MLCD),
        "VP top segment (875, 1000]: t_m = 1000 is past the table (T - 1 = 999)",
    ),
    Mutant(
        "authors-table-4-steps",
        MILESTONES,
        "4: (8, 6, 4, 1),",
        "4: (8, 6, 4, 2),",
        (T_MILES, T_SCHEDULERS),
        "the authors' 4-step table ends at milestone 2 (249) instead of 1 (124)",
    ),
    Mutant(
        "flow-scheduler-timesteps-off-by-one",
        SCHEDULER,
        "self.timesteps = self.sigmas[:-1] * self.config.num_train_timesteps",
        "self.timesteps = self.sigmas[1:] * self.config.num_train_timesteps",
        (T_SCHEDULERS,),
        "the flow scheduler's timesteps one sigma later than its sigmas (the last is 0)",
    ),
    # ---- DMD ------------------------------------------------------------------------------
    Mutant(
        "dmd-timesteps-from-zero",
        DMD,
        "return ctx.schedule.uniform_timesteps(ctx.rand(ctx.batch_size), lo, hi)",
        "return ctx.schedule.uniform_timesteps(ctx.rand(ctx.batch_size), lo, lo + hi)",
        T_DMD_OBJ,
        "t' uniform on [lo, lo + hi] instead of [lo, hi]: past t_max (past T - 1 for the fake)",
    ),
    Mutant(
        "dmd-fake-loss-x0-eps-swapped",
        DMD,
        "return denoising_loss(self.fake.denoiser(), ctx.schedule, x0, eps, t, ctx.cond)",
        "return denoising_loss(self.fake.denoiser(), ctx.schedule, eps, x0, t, ctx.cond)",
        T_DMD_OBJ,
        "the fake score denoises noise with the student's sample as its noise",
    ),
    Mutant(
        "dmd-fake-t-max-ignored",
        DMD,
        "return lo, self.t_max if self.fake_t_max is None else self.fake_t_max",
        "return lo, self.t_max",
        (T_DMD,),
        "fake_t_max ignored: DMD2's fake score range [0, T - 1] stops at t_max",
    ),
    # ---- ADD ------------------------------------------------------------------------------
    Mutant(
        "add-t-max-is-T",
        ADD,
        "hi = schedule.max_timestep if cfg.t_max is None else cfg.t_max",
        "hi = schedule.num_train_timesteps if cfg.t_max is None else cfg.t_max",
        (T_ADD,),
        "VP re-noising t up to T = 1000, one past the table (alpha of t = 1000 reads past the end)",
    ),
    Mutant(
        "add-pixel-target-key-is-prediction",
        ADD,
        'target = decoded(ctx, f"add_distill/{id(self)}/{prediction_key(ctx)}", target)',
        "target = decoded(ctx, prediction_key(ctx), target)",
        (T_ADD,),
        "the target's decode shares the prediction's cache key: the 'target' is the decoded prediction",
    ),
    # ---- loss-owned optimizers ------------------------------------------------------------
    Mutant(
        "aux-betas-swapped",
        AUX,
        "betas = (float(betas[0]), float(betas[1]))",
        "betas = (float(betas[1]), float(betas[0]))",
        (T_GAN, T_DMD),
        "AdamW's beta1 / beta2 swapped for the fake score and the discriminator",
    ),
    Mutant(
        "aux-clips-at-zero",
        AUX,
        "if self.max_grad_norm > 0:",
        "if self.max_grad_norm >= 0:",
        (T_GAN, T_DMD),
        "max_grad_norm 0 (documented: no clipping) clips every gradient to norm 0",
    ),
    # ---- distances ------------------------------------------------------------------------
    Mutant(
        "elementwise-huber-c-not-squared",
        DIST,
        "((pred - target).square() + c**2).sqrt().sub(c)",
        "((pred - target).square() + c).sqrt().sub(c)",
        (T_LOSSES,),
        "LCM's pseudo-Huber sqrt(d^2 + c) - c: not 0 at d = 0, l2-like for |d| < sqrt(c)",
    ),
    # ---- GAN ------------------------------------------------------------------------------
    Mutant(
        "gan-patch-heads-summed",
        GAN,
        "return torch.stack([loss(head).mean(1) for head in logits]).mean(0)",
        "return torch.stack([loss(head).mean(1) for head in logits]).sum(0)",
        (T_GAN,),
        "patch logits summed over heads, not averaged (PCM's loss scales with the head count)",
    ),
    Mutant(
        "gan-shifted-tau-without-shift-factor",
        GAN,
        "shift * u / (1 + (shift - 1) * u)",
        "u / (1 + (shift - 1) * u)",
        (T_GAN,),
        "tau_distribution 'shifted' maps u to u / (1 + (s-1) u): towards clean, not noise",
    ),
    Mutant(
        "gan-renoise-ignores-clean",
        GAN,
        "return schedule.uniform_timesteps(f, schedule.clean_timestep, noise_level)",
        "return schedule.uniform_timesteps(f, 0, noise_level)",
        (T_GAN,),
        "tau in [0, noise_level] instead of [clean, noise_level] on VP (clean = -1)",
    ),
    Mutant(
        "gan-window-upper-is-lower-milestone",
        GAN,
        "upper = edges[segment_index(pair.t_m, edges) + 1]",
        "upper = edges[segment_index(pair.t_m, edges)]",
        (T_GAN,),
        "PCM's tau window ends at the segment's lower milestone (below t_s) instead of its upper",
    ),
    Mutant(
        "gan-window-includes-upper",
        GAN,
        "hi = upper - 1 if schedule.discrete else upper",
        "hi = upper",
        (T_GAN,),
        "PCM's window edge .. edge + T/M inclusive (PCM: randint excludes the upper edge)",
    ),
    Mutant(
        "gan-fake-renoised-with-real-noise",
        GAN,
        "fake = schedule.add_noise(fake, noise_fake, tau_fake)",
        "fake = schedule.add_noise(fake, noise_real, tau_fake)",
        (T_GAN,),
        "independent_noise: the fake side re-noised with the real side's eps",
    ),
    Mutant(
        "gan-fake-carried-backwards",
        GAN,
        "return real, schedule.add_noise_from(fake, ctx.randn(*fake.shape), pair.t_s, tau), tau",
        "return real, schedule.add_noise_from(fake, ctx.randn(*fake.shape), tau, pair.t_s), tau",
        (T_GAN,),
        "PCM's fake carried from tau to t_s instead of t_s to tau",
    ),
    Mutant(
        "gan-held-out-accuracy-slice",
        GAN,
        "held_out = torch.stack(stats).mean(0)[4:]",
        "held_out = torch.stack(stats).mean(0)[3:]",
        (T_GAN,),
        "gan/d_acc_real logs R1 and gan/d_acc_fake the real accuracy",
    ),
    Mutant(
        "disc-teacher-t-not-clamped",
        DISC,
        "t.clamp(min=0)",
        "t",
        (T_GAN,),
        "the teacher-feature D gets t = -1 (VP's clean boundary) as the UNet's timestep",
    ),
    # ---- preference -----------------------------------------------------------------------
    Mutant(
        "dpo-target-x0-eps-swapped",
        PREF,
        "schedule.model_output_from(x0, eps, t)",
        "schedule.model_output_from(eps, x0, t)",
        (T_PREF,),
        "DPO's denoising target built with x0 and eps swapped",
    ),
    Mutant(
        "dpo-reward-gap-signed",
        PREF,
        '"preference/reward_gap": (r_a - r_b).abs().mean()',
        '"preference/reward_gap": (r_a - r_b).mean()',
        (T_PREF,),
        "the logged reward gap of the DPO pairs signed (averages to ~0), not |r_a - r_b|",
    ),
    # ---- LCD / MLCD -----------------------------------------------------------------------
    Mutant(
        "lcd-full-range-from-zero",
        LCD,
        "t_m = gap + ctx.rand(ctx.batch_size) * (schedule.max_timestep - gap)",
        "t_m = ctx.rand(ctx.batch_size) * schedule.max_timestep",
        OBJ_LCD,
        "full_range t_m in [0, T) instead of (T/M, T]: t_n one segment down goes below clean",
    ),
    Mutant(
        "mlcd-uniform-calls-one-round-short",
        MLCD,
        "rounds = num_milestones if ctx.phase.uniform_calls else None",
        "rounds = num_milestones - 1 if ctx.phase.uniform_calls else None",
        OBJ_MLCD,
        "under FSDP2's uniform calls the lowest segment's M-step MDS trajectory stops one step short",
    ),
    # ---- student / adapters ---------------------------------------------------------------
    Mutant(
        "fresh-lora-bound-from-rank",
        STUDENT,
        "bound = (1.0 / math.prod(shape[1:])) ** 0.5",
        "bound = (1.0 / shape[0]) ** 0.5",
        (T_ADAPTERS,),
        "A's kaiming bound from the rank (out dim) instead of the fan-in",
    ),
    Mutant(
        "fresh-lora-b-random-a-zero",
        STUDENT,
        'if "lora_A" in key:',
        'if "lora_B" in key:',
        (T_ADAPTERS,),
        "LoRA init inverted: A zero, B random (still the base at first, but B gets no gradient until A moves; A's documented U(-1/sqrt(in)) draw gone)",
    ),
    Mutant(
        "auxiliary-lora-alpha-one",
        STUDENT,
        "config = LoraConfig(r=rank, lora_alpha=float(rank), target_modules=list(self.config.target_modules))",
        "config = LoraConfig(r=rank, lora_alpha=1.0, target_modules=list(self.config.target_modules))",
        (T_ADAPTERS, T_DMD),
        "an auxiliary adapter (fake score, D trunk) at scale 1 / rank instead of 1",
    ),
    Mutant(
        "from-run-rank-from-fan-in",
        STUDENT,
        'ranks = [v.shape[0] for k, v in latest.student.items() if "lora_A" in k]',
        'ranks = [v.shape[1] for k, v in latest.student.items() if "lora_A" in k]',
        (
            "tests/test_checkpoint.py",
            "tests/test_engine.py",
            "-k",
            "from_run or student_grid_has_one_owner or read_only_commands or runs_student",
        ),
        "a run folder's LoRA rank read from A's input dim",
    ),
    Mutant(
        "from-run-grid-m-q-swapped",
        STUDENT,
        'int(meta.get("num_milestones", 8)),\n                int(meta.get("student_steps", 4)),',
        'int(meta.get("student_steps", 4)),\n                int(meta.get("num_milestones", 8)),',
        (
            "tests/test_checkpoint.py",
            "tests/test_engine.py",
            "-k",
            "from_run or student_grid_has_one_owner or read_only_commands or runs_student",
        ),
        "a run folder's grid rebuilt with M and q swapped",
    ),
    # ---- embeddings -----------------------------------------------------------------------
    Mutant(
        "embeddings-uncond-is-first-prompt",
        EMB,
        'self.uncond = self._pick([(self._chunk(0), 0)], "uncond_")',
        'self.uncond = self._pick([(self._chunk(0), 0)], "")',
        (T_EMB,),
        "the unconditional embedding is prompt 0's: CFG guides against a real prompt",
    ),
    # ---- metrics --------------------------------------------------------------------------
    Mutant(
        "fid-crop-top-left",
        FID,
        "box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)",
        "box = (0, 0, side, side)",
        (T_EVAL,),
        "FID's square crop from the top-left corner, not the centre",
    ),
    Mutant(
        "fid-sum-of-means",
        FID,
        "self.sum += x.sum(0)",
        "self.sum += x.mean(0)",
        (T_EVAL,),
        "the running feature sum adds batch means: mu wrong with more than one image per batch",
    ),
    Mutant(
        "fd-sqrtm-not-rooted",
        TOY_METRICS,
        "return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T",
        "return (vecs * vals.clamp(min=0)) @ vecs.T",
        (T_TOY, T_EVAL),
        "the PSD square root returns the matrix itself: Frechet distance's cross term wrong",
    ),
    Mutant(
        "pickscore-logit-scale-not-exponentiated",
        CLIP,
        "float(self.clip.model.logit_scale.exp())",
        "float(self.clip.model.logit_scale)",
        (T_EVAL, T_PREF),
        "PickScore scaled by log(100) ~ 4.6 instead of 100",
    ),
    Mutant(
        "clip-reward-images-not-mapped-to-unit",
        CLIP,
        "x = (images.clamp(-1, 1) + 1) / 2",
        "x = images.clamp(-1, 1)",
        (T_PREF, T_EVAL),
        "the differentiable CLIP reward normalises [-1, 1] images as if they were [0, 1]",
    ),
    Mutant(
        "clip-text-not-normalised",
        CLIP,
        "emb = F.normalize(features_tensor(self.model.get_text_features(**ids)).float(), dim=-1)",
        "emb = features_tensor(self.model.get_text_features(**ids)).float()",
        (T_EVAL, T_PREF),
        "CLIP text embeddings not unit: the score is not a cosine",
    ),
    Mutant(
        "imagereward-mean-pooled-not-cls",
        IMAGEREWARD,
        "return (self.head(hidden[:, 0].float()) - REWARD_MEAN) / REWARD_STD",
        "return (self.head(hidden.mean(1).float()) - REWARD_MEAN) / REWARD_STD",
        (T_EVAL,),
        "ImageReward's head on the mean of the text tokens instead of the [CLS] token",
    ),
    Mutant(
        "generate-student-with-cfg",
        GENERATE,
        "w = 0.0 if args.student is not None else args.guidance_scale",
        "w = args.guidance_scale",
        ("tests/test_eval_generate.py",),
        "evaluation samples the distilled student with the teacher's CFG (w = 8, two calls per step)",
    ),
    # ---- the zoo's recipes ----------------------------------------------------------------
    Mutant(
        "zoo-w-range-not-cfg-form",
        ZOO,
        "return (round((lcm_lo + 1) * scale, 2), round((lcm_hi + 1) * scale, 2))",
        "return (round(lcm_lo * scale, 2), round(lcm_hi * scale, 2))",
        (T_PRESETS,),
        "the references' LCM-form w used as our CFG w (off by one before scaling)",
    ),
    Mutant(
        "zoo-pcm-samples-lcm-style",
        ZOO,
        "grid = StudentGrid(num_milestones=4, steps=4, gamma=0.0)",
        "grid = StudentGrid(num_milestones=4, steps=4, gamma=1.0)",
        (T_PRESETS,),
        "PCM sampled with fresh noise (gamma 1) instead of its deterministic DDIM",
    ),
    Mutant(
        "zoo-dmd2-real-scale-unscaled",
        ZOO,
        "real_guidance_scale=round(8.0 * SDXL_GUIDANCE_TO_MINIATURE, 2)",
        "real_guidance_scale=8.0",
        (T_PRESETS,),
        "DMD2's real-score CFG 8 (SDXL's) on the miniature whose teacher samples at w = 2",
    ),
    # ---- round 2 ----------------------------------------------------------------------------
    Mutant(
        "flow-config-dynamic-shift-kept",
        SCHEDULE,
        '1.0 if config.get("use_dynamic_shifting") else config.get("shift", config.get("flow_shift", 1.0))',
        'config.get("shift", config.get("flow_shift", 1.0))',
        (T_SCHED, "tests/test_families.py"),
        "a dynamic-shifting (FLUX) config's static shift (3.0) applied in training on top of mu",
    ),
    Mutant(
        "gan-teacher-real-sampled-lcm-style",
        GAN,
        "ctx.teacher, ctx.schedule, ctx.cond, noise, grid, 0.0, generator=ctx.generator",
        "ctx.teacher, ctx.schedule, ctx.cond, noise, grid, 1.0, generator=ctx.generator",
        (T_GAN,),
        "real = 'teacher': the teacher's CFG-DDIM samples drawn with fresh noise every step (gamma 1)",
    ),
    Mutant(
        "gan-logged-real-fake-means-swapped",
        GAN,
        "values = [loss, real_d.mean(), fake_d.mean(), r1, *accuracies(real_d, fake_d)]",
        "values = [loss, fake_d.mean(), real_d.mean(), r1, *accuracies(real_d, fake_d)]",
        (T_GAN,),
        "gan/d_real logs the fake side's mean logit and gan/d_fake the real side's",
    ),
    Mutant(
        "shared-prediction-never-at-last-grid-point",
        SHARED,
        "k = torch.randint(len(grid), (batch,), generator=ctx.generator, device=ctx.device)",
        "k = torch.randint(len(grid) - 1, (batch,), generator=ctx.generator, device=ctx.device)",
        T_SHARED_OBJ,
        "the one-step prediction is never trained from the q-step grid's last (lowest) timestep",
    ),
    Mutant(
        "shared-chain-with-inference-gamma",
        SHARED,
        "x = tlcm_step(ctx.schedule, x, x0, t, s, ctx.grid.training_gamma, fresh[i])",
        "x = tlcm_step(ctx.schedule, x, x0, t, s, ctx.grid.gamma, fresh[i])",
        T_SHARED_OBJ,
        "backward simulation 'chain' runs the inference sampler's gamma, not training_gamma",
    ),
    Mutant(
        "mlcd-pair-carries-t_n",
        MLCD,
        "ConsistencyPair(online, goal, states.t_s, states.t_m, segments)",
        "ConsistencyPair(online, goal, states.t_s, states.t_n, segments)",
        (T_GAN, *OBJ_MLCD),
        "PCM's pair says t_n for t_m: t_n = t_s falls in the segment below, the GAN's window is wrong",
    ),
    Mutant(
        "open-clip-score-unclamped",
        METRICS,
        "return (cos if self.hps else 100.0 * cos.clamp(min=0)).cpu()",
        "return (cos if self.hps else 100.0 * cos).cpu()",
        (T_EVAL,),
        "open_clip's CLIP score without max(cos, 0) (negative scores)",
    ),
    Mutant(
        "clip-transform-squashes",
        CLIP,
        "[T.Resize(size, bicubic), T.CenterCrop(size), T.ToTensor(), T.Normalize(list(mean), list(std))]",
        "[T.Resize((size, size), bicubic), T.ToTensor(), T.Normalize(list(mean), list(std))]",
        (T_EVAL,),
        "CLIP metrics' preprocessing squashes non-square images instead of short side + center crop",
    ),
    Mutant(
        "imagereward-normalised-by-multiplying",
        IMAGEREWARD,
        "return (self.head(hidden[:, 0].float()) - REWARD_MEAN) / REWARD_STD",
        "return (self.head(hidden[:, 0].float()) - REWARD_MEAN) * REWARD_STD",
        (T_EVAL,),
        "ImageReward's (r - mean) / std with a product: off by std^2 = 1.07",
    ),
    Mutant(
        "recipe-sdxl-guidance",
        RECIPES,
        'model=ModelConfig(path=Path("models/sdxl"), guidance_scale=8.0, pipeline=',
        'model=ModelConfig(path=Path("models/sdxl"), guidance_scale=7.5, pipeline=',
        (T_PRESETS,),
        "the paper's SDXL preset at w = 7.5 instead of Sec. 5.1's w = 8",
    ),
    Mutant(
        "recipe-miniature-sampler-gamma",
        RECIPES,
        "MINIATURE_SAMPLER = StudentGrid(gamma=0.0, first_gamma=1.0)",
        "MINIATURE_SAMPLER = StudentGrid(gamma=1.0, first_gamma=0.0)",
        (T_PRESETS,),
        "tlcm-full's shipped sampler gammas swapped (LCM moves after a deterministic first move)",
    ),
    # ---- round 3 ----------------------------------------------------------------------------
    Mutant(
        "flow-linear-time-shift-sign",
        SCHEDULER,
        "return mu / (mu + (1 / sigmas - 1))",
        "return mu / (mu + (1 / sigmas + 1))",
        (T_SCHEDULERS,),
        "time_shift_type 'linear': mu / (mu + 1/sigma + 1), sigma = 1 no longer maps to 1",
    ),
    Mutant(
        "gan-inputs-key-ignores-real",
        GAN,
        'key = f"gan/{cfg.input}/{cfg.real}/{prediction_key(ctx)}/{cfg.noise_level}{self._noise_tag()}"',
        'key = f"gan/{cfg.input}/{prediction_key(ctx)}/{cfg.noise_level}{self._noise_tag()}"',
        (T_GAN, "tests/test_shared_work.py"),
        "two GANs of one phase with different real sources share one cached (real, fake) pair",
    ),
    Mutant(
        "sample-teacher-lcm-gamma",
        SAMPLE,
        "Guided(base.denoiser(), args.guidance_scale, uncond[:1]), 0.0, None",
        "Guided(base.denoiser(), args.guidance_scale, uncond[:1]), 1.0, None",
        (T_SAMPLE,),
        "python -m tlcm.sample samples the teacher with fresh noise every step instead of DDIM",
    ),
    Mutant(
        "sample-student-first-gamma-dropped",
        SAMPLE,
        "gamma, first_gamma = grid.gamma, grid.first_gamma",
        "gamma, first_gamma = grid.gamma, None",
        (T_SAMPLE,),
        "tlcm.sample ignores the run's (or --first-gamma's) first-move gamma",
    ),
]
