"""Breakages of what a run keeps and what it reports: resume and checkpoints (tlcm/checkpoint.py,
the engine's ``_restore`` / ``_save`` / ``build_phase`` / ``phase_lr_schedule``), the memory plan
(tlcm/memory_plan.py), real images -> latents (tlcm/data/images.py) and decode / dtypes
(tlcm/models/base.py, the family's decode), and the evaluation (tlcm/eval/generate.py,
tlcm/eval/score.py, tlcm/evaluate.py); see run.py. Each targets node ids: the slow files are never
run whole. No mutant is equivalent (each was seen to survive or fail a test that tells its output
apart). Found equivalent for one test and so caught elsewhere: "resume-data-order-from-phase-step"
is invisible to the loss contract's "mlcd-then-dmd" resume (it stops at global step 3, the end of
phase a, where phase step and global step agree): test_checkpoint's later-phase resume catches it.

"student-noise-from-another-seed" was equivalent until 2026-12-05: ``noise_generator`` seeded
``(seed << 32) + index`` and torch's CPU generator keeps only a seed's low 32 bits, so every
--seed drew the same noise (a bug, now fixed: tests/test_eval_generate.py
``test_each_seed_and_image_starts_from_its_own_noise``)."""

from run import Mutant

ENGINE = "tlcm/engine.py"
PLAN = "tlcm/memory_plan.py"
IMAGES = "tlcm/data/images.py"
BASE = "tlcm/models/base.py"
FAMILY = "tlcm/models/families/base.py"
GENERATE = "tlcm/eval/generate.py"
SCORE = "tlcm/eval/score.py"
EVALUATE = "tlcm/evaluate.py"

RESUME = "tests/test_engine.py::test_resume_after_sigterm_equals_uninterrupted_run"
COSINE = "tests/test_engine.py::test_cosine_lr_schedule_is_logged_and_resumes_where_it_stopped"
CONTRACT = "tests/test_loss_contract.py::test_resume_mid_phase_equals_the_uninterrupted_run"
DAMAGED_RESUME = "tests/test_checkpoint.py::test_resume_from_a_damaged_latest_equals_the_uninterrupted_run"
LATER_PHASE = "tests/test_checkpoint.py::test_resume_inside_a_later_phase_equals_the_uninterrupted_run"
SKIPPED_RESUME = "tests/test_checkpoint.py::test_skipped_steps_survive_a_resume"
MP = "tests/test_memory_plan.py::"
RI = "tests/test_real_images.py::"
EG = "tests/test_eval_generate.py::"
PRECISION = "tests/test_precision.py::"

MUTANTS = [
    # ------------------------------------------------------------------ resume and checkpoints
    Mutant(
        "resume-forgets-optimizer-state",
        ENGINE,
        "            opt.load_state_dict(restored.optimizer)\n",
        "",
        (RESUME,),
        "a resumed phase starts AdamW from fresh moments",
    ),
    Mutant(
        "resume-forgets-loss-state",
        ENGINE,
        "loss.load_checkpoint_state(restored.losses[n])",
        "pass",
        (f"{CONTRACT}[dmd]", f"{CONTRACT}[mlcd-ema]"),
        "the fake score / discriminator / EMA target restart from their initialisation on resume",
    ),
    Mutant(
        "resume-restarts-lr-schedule",
        ENGINE,
        "lr_schedule = phase_lr_schedule(phase, opt, start)",
        "lr_schedule = phase_lr_schedule(phase, opt, 0)",
        (COSINE,),
        "a resumed phase runs its warm-up / cosine again from step 0",
    ),
    Mutant(
        "lr-schedule-peak-from-current-lr",
        ENGINE,
        'group["initial_lr"] = phase.lr',
        'group["initial_lr"] = group["lr"]',
        (COSINE,),
        "a resumed schedule scales from the lr it stopped at instead of the phase's peak",
    ),
    Mutant(
        "resume-data-order-from-phase-step",
        ENGINE,
        "index, start, restored.state.global_step if restored else state.global_step",
        "index, start, start if restored else state.global_step",
        (LATER_PHASE,),
        "a resume inside the second phase draws the prompts / noise of another global step",
    ),
    Mutant(
        "periodic-checkpoint-position-before-the-step",
        ENGINE,
        "                            self._save(state, opt, losses)\n",
        "                            self._save(TrainState(index, step, state.global_step - 1), opt, losses)\n",
        (DAMAGED_RESUME,),
        "the checkpoint holds the weights after step k but says k - 1: a resume repeats step k",
    ),
    Mutant(
        "resume-forgets-skipped-steps",
        ENGINE,
        "self.skipped = list(checkpoint.skipped)",
        "self.skipped = []",
        (SKIPPED_RESUME,),
        "the steps skipped before a resume vanish (max_skipped_fraction counts fewer)",
    ),
    # ------------------------------------------------------------------ the memory plan
    Mutant(
        "save-drops-skipped-steps",
        ENGINE,
        "            skipped=self.skipped,\n",
        "            skipped=[],\n",
        (SKIPPED_RESUME,),
        "checkpoints record no skipped steps: a resume forgets them",
    ),
    Mutant(
        "micro-batch-need-not-divide-the-batch",
        PLAN,
        "[b for b in range(1, batch + 1) if batch % b == 0]",
        "list(range(1, batch + 1))",
        (MP + "test_fits_without_checkpointing_takes_the_largest_divisor",),
        "a micro-batch of 20 for a batch of 32: grad_accum 1, 12 samples dropped",
    ),
    Mutant(
        "plan-ignores-the-reserved-peak",
        PLAN,
        "lines = [_fit([(b, p.allocated) for b, p in points]), _fit([(b, p.reserved) for b, p in points])]",
        "lines = [_fit([(b, p.allocated) for b, p in points])]",
        (MP + "test_the_reserved_line_counts_fragmentation",),
        "fragmentation (the allocator's reserved bytes, which the budget caps) is not counted",
    ),
    Mutant(
        "plan-ignores-the-optimizer-moments",
        PLAN,
        "peaks = [(b, max(fixed + per * b for fixed, per in lines) + extra) for b in candidates]",
        "peaks = [(b, max(fixed + per * b for fixed, per in lines)) for b in candidates]",
        (MP + "test_extra_bytes_count_against_the_budget",),
        "the student's AdamW moments (made at step 1) are left out of the prediction",
    ),
    Mutant(
        "plan-trusts-an-over-budget-measurement",
        PLAN,
        "return (b1, p1.high + extra) if p1.high + extra <= usable else None",
        "return (b1, p1.high + extra)",
        (MP + "test_a_measured_peak_over_the_budget_is_never_planned",),
        "b2 ran out of memory and b1's MEASURED peak is over the budget: planned anyway",
    ),
    Mutant(
        "plan-uses-the-global-batch",
        PLAN,
        "batch = phase.batch_size // trainer.dist.world_size",
        "batch = phase.batch_size",
        (MP + "test_plan_phase_plans_the_per_process_batch_and_keeps_a_users_grad_accum",),
        "under torchrun each process plans (and accumulates) for the whole global batch",
    ),
    # ------------------------------------------------------------------ real images -> latents
    Mutant(
        "latents-not-scaled",
        IMAGES,
        "out.append((z - shift) * scale)",
        "out.append(z - shift)",
        (RI + "test_latents_invert_the_miniature_decode",),
        "real latents in the VAE's raw units, not the network's (std != 1)",
    ),
    Mutant(
        "latents-shifted-the-wrong-way",
        IMAGES,
        "out.append((z - shift) * scale)",
        "out.append((z + shift) * scale)",
        (RI + "test_latents_honour_the_vae_shift_factor",),
        "SD3 / FLUX latents moved by +shift instead of -shift",
    ),
    Mutant(
        "folder-caption-of-the-next-row",
        IMAGES,
        "            return self._texts[index]\n",
        "            return self._texts[(index + 1) % len(self._texts)]\n",
        (RI + "test_folder_and_shards_hold_the_miniature_pairs",),
        "an image folder pairs each image with the next line's caption",
    ),
    Mutant(
        "engine-prompts-not-in-row-order",
        ENGINE,
        "self.prompts = [self.images.text(i) for i in range(len(self.images))]",
        "self.prompts = [self.images.text(i) for i in reversed(range(len(self.images)))]",
        (RI + "test_the_engine_pairs_each_prompt_with_its_own_image",),
        "the training prompts are the captions, but of other rows than the latents drawn with them",
    ),
    Mutant(
        "images-in-sorted-order",
        IMAGES,
        "return torch.stack([self.image(i) for i in indices.tolist()])",
        "return torch.stack([self.image(i) for i in sorted(indices.tolist())])",
        (
            RI + "test_latents_invert_the_miniature_decode",
            RI + "test_the_engine_pairs_each_prompt_with_its_own_image",
        ),
        "a micro-batch's images come back sorted: not aligned with its prompts",
    ),
    Mutant(
        "resize-one-pixel-too-large",
        IMAGES,
        "x = TF.resize(x, [self.resolution], antialias=True)",
        "x = TF.resize(x, [self.resolution + 1], antialias=True)",
        (RI + "test_folder_and_shards_hold_the_miniature_pairs",),
        "the crop off by one: the image resized to R + 1 and cropped",
    ),
    # ------------------------------------------------------------------ decode and dtypes
    Mutant(
        "decode-without-inverse-scaling",
        FAMILY,
        "        z = latents / scale + shift\n",
        "        z = latents + shift\n",
        (RI + "test_latents_invert_the_miniature_decode",),
        "decode feeds the network's latents to the VAE unscaled",
    ),
    Mutant(
        "denoiser-output-not-fp32",
        BASE,
        "return family.forward(net, x.to(dtype), t, cond.to(dtype)).float()",
        "return family.forward(net, x.to(dtype), t, cond.to(dtype))",
        ("tests/test_frozen_dtype.py::test_bf16_frozen_fp32_adapters_and_upcast_vae",),
        "bf16 frozen weights hand the losses bf16 outputs",
    ),
    Mutant(
        "frozen-dtype-bf16-on-cpu",
        BASE,
        'return torch.bfloat16 if torch.device(device).type == "cuda" and autocast else torch.float32',
        'return torch.bfloat16 if torch.device(device).type == "cuda" or autocast else torch.float32',
        ("tests/test_frozen_dtype.py::test_auto_is_bf16_only_on_cuda_with_autocast",),
        '"auto" loads bf16 frozen weights on the CPU',
    ),
    # ------------------------------------------------------------------ evaluation
    Mutant(
        "student-noise-of-the-next-image",
        GENERATE,
        "generators = [noise_generator(args.seed, i) for i in batch]",
        "generators = [noise_generator(args.seed, i + (args.student is not None)) for i in batch]",
        (EG + "test_teacher_and_student_get_the_same_prompts_and_noise",),
        "the student's image i starts from the teacher's noise of image i + 1",
    ),
    Mutant(
        "student-noise-from-another-seed",
        GENERATE,
        "generators = [noise_generator(args.seed, i) for i in batch]",
        "generators = [noise_generator(args.seed + (args.student is not None), i) for i in batch]",
        (EG + "test_teacher_and_student_get_the_same_prompts_and_noise",),
        "the student's images start from the noise of seed + 1",
    ),
    Mutant(
        "student-prompts-from-another-seed",
        GENERATE,
        "records = load_prompt_set(args.prompts, args.num_prompts, args.seed)",
        "records = load_prompt_set(args.prompts, args.num_prompts, args.seed + (args.student is not None))",
        (EG + "test_teacher_and_student_get_the_same_prompts_and_noise",),
        "the student's prompt subset differs from the teacher's",
    ),
    Mutant(
        "mean-score-over-the-last-batch",
        SCORE,
        "    return total / len(run.files)\n",
        "    return total / len(images)\n",
        (EG + "test_mean_score_averages_every_image_with_its_own_prompt",),
        "the sum over all images divided by the last batch's size",
    ),
    Mutant(
        "score-prompts-of-the-first-batch",
        SCORE,
        "scorer(images, run.prompts[start : start + batch_size])",
        "scorer(images, run.prompts[:batch_size])",
        (EG + "test_mean_score_averages_every_image_with_its_own_prompt",),
        "every batch scored against the first batch's prompts",
    ),
    Mutant(
        "fid-t-against-the-reference",
        SCORE,
        "row[m] = None if same else fid_from_stats(stats, ref_stats[m])",
        'row[m] = None if same else fid_from_stats(stats, ref_stats["fid"])',
        (EG + "test_fid_t_compares_with_the_teacher_folder",),
        "FID-T computed against the real images instead of the teacher's",
    ),
    Mutant(
        "teacher-table-scores-the-largest-step-count",
        EVALUATE,
        "grid = teacher_timesteps(n, base.schedule)",
        "grid = teacher_timesteps(max(steps), base.schedule)",
        (PRECISION + "test_teacher_table_samples_each_row_with_its_own_step_count",),
        "every row of the teacher table sampled with the same (largest) step count",
    ),
    Mutant(
        "evaluate-student-gamma-swapped",
        EVALUATE,
        "grid = trained.config.grid.with_sampler(gamma, first_gamma)",
        "grid = trained.config.grid.with_sampler(first_gamma, gamma)",
        (PRECISION + "test_evaluate_student_samples_with_the_gamma_asked_for",),
        "--gamma sets only the first move, --first-gamma every move",
    ),
]
