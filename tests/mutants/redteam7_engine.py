"""A seventh red-team audit, area engine (2026-12-06; 28 mutants, 11 survived then, each now caught):
breakages of the training loop and its state on lines no other catalogue edits: which prompts a
step draws and which process trains on which micro-batch (and on which GPU), the lr schedule's pace
and the lr that is logged, the phase's step counter, skips in a row, the gradients' average over
processes, the divergence guard's peak, the checkpoint's `latest` pointer, its read-only loads and
finished phases, the memory plan's accumulation, AdamW moments, kept auxiliary state, measured
batch and falling lines, the trajectory cache's segment draw and shard rows, the real images'
captions (order, shards) and EXIF orientation, the kohya alpha and the resume check's new fields.
The 11 survivors (the last-prompt draw, ranks sharing micro-batches, the per-micro-batch lr
schedule, the gradient average's offsets, the process's GPU, the l2 weight peak, the top segment,
EXIF, new recipe fields, a falling memory line, the skip streak) name the unit tests written for
them (each under 2 s), with the older test beside them where it is the natural home."""

from run import Mutant

ENGINE = "tlcm/engine.py"
DIST = "tlcm/distributed.py"
CKPT = "tlcm/checkpoint.py"
GUARDS = "tlcm/guards.py"
PLAN = "tlcm/memory_plan.py"
TRAJ = "tlcm/data/trajectories.py"
IMAGES = "tlcm/data/images.py"
EXPORT = "tlcm/export.py"
RESUME = "tlcm/resume.py"

T_PROMPTS = "tests/test_engine.py::test_each_step_draws_its_own_prompts_and_a_rerun_draws_the_same"
T_RESUME = "tests/test_engine.py::test_resume_after_sigterm_equals_uninterrupted_run"
T_COSINE = "tests/test_engine.py::test_cosine_lr_schedule_is_logged_and_resumes_where_it_stopped"
T_CLIPPED = (
    "tests/test_engine.py::test_gradients_are_clipped_to_max_grad_norm_and_the_unclipped_norm_is_logged"
)
T_IN_A_ROW = "tests/test_engine.py::test_max_consecutive_skips_counts_only_skips_in_a_row"
T_NONFINITE = "tests/test_engine.py::test_nonfinite_loss_is_named_and_stops_or_skips"
T_INIT_UNFINISHED = "tests/test_checkpoint.py::test_init_from_refuses_an_unfinished_phase_and_another_lora"
T_CRASH = "tests/test_checkpoint.py::test_a_crash_anywhere_in_a_save_leaves_latest_loadable"
T_FALLBACK = (
    "tests/test_checkpoint.py::test_a_damaged_latest_checkpoint_falls_back_to_the_newest_complete_one"
)
T_ABSURD = "tests/test_checkpoint.py::test_absurd_negative_weights_are_unsound_too"
T_BLOWN = "tests/test_engine.py::test_blown_up_weights_are_never_saved"
T_PLAN_PHASE = (
    "tests/test_memory_plan.py::test_plan_phase_plans_the_per_process_batch_and_keeps_a_users_grad_accum"
)
T_LOCAL_RANK = "tests/test_distributed.py::test_each_process_takes_the_gpu_of_its_local_rank"
T_FALLING = "tests/test_memory_plan.py::test_a_peak_that_falls_with_the_batch_is_held_flat"
T_MEASURE = "tests/test_memory_plan.py::test_measure_step_measures_the_whole_step_with_every_aux_step"
T_SAMPLING = "tests/test_trajectories.py::test_sampling_is_deterministic_and_consistent_with_the_grid"
T_ROUND_TRIP = "tests/test_real_images.py::test_generic_writers_round_trip_random_images"
T_RESIZE = "tests/test_real_images.py::test_images_are_resized_on_the_shorter_side_and_centre_cropped"
T_KOHYA = "tests/test_export.py::test_kohya_key_mapping"
T_PAIRS = "tests/test_real_images.py::test_the_engine_pairs_each_prompt_with_its_own_image"
T_RECIPE_CHANGES = (
    "tests/test_checkpoint.py::test_resume_refuses_another_recipe_naming_the_fields_unless_asked"
)

T_EVERY_PROMPT = "tests/test_engine.py::test_the_prompt_draw_reaches_every_prompt"
T_SPLIT = "tests/test_engine.py::test_two_processes_split_the_global_batch_as_one_process_accumulates_it"
T_LR_ACCUM = (
    "tests/test_engine.py::test_the_lr_schedule_steps_once_per_optimizer_step_whatever_the_accumulation"
)
T_PEAK = "tests/test_engine.py::test_the_weight_guard_reads_the_largest_weight_magnitude"
T_AVERAGE = "tests/test_distributed.py::test_average_gradients_averages_each_parameter_over_processes"
T_EVERY_SEGMENT = "tests/test_trajectories.py::test_sampling_reaches_every_segment_grid_pair_and_trajectory"
T_EXIF = "tests/test_real_images.py::test_a_photos_exif_orientation_is_applied"
T_NEW_FIELDS = "tests/test_checkpoint.py::test_a_field_only_one_recipe_has_is_a_change_either_way"

MUTANTS = [
    # ---- the training step: prompts, micro-batches, processes -----------------------------
    Mutant(
        "prompt-draw-never-picks-the-last-prompt",
        ENGINE,
        "order = torch.randint(len(self.prompts), (phase.batch_size,)",
        "order = torch.randint(len(self.prompts) - 1, (phase.batch_size,)",
        (T_EVERY_PROMPT, T_PROMPTS),
        "an off-by-one in the prompt draw: the last prompt (with real images: the last image-text "
        "pair) is never trained on",
    ),
    Mutant(
        "every-process-trains-on-the-first-micro-batches",
        ENGINE,
        "ctx = self.context(micro_batches[j], gen, global_step)",
        "ctx = self.context(micro_batches[j - self.dist.rank * accum], gen, global_step)",
        (T_SPLIT,),
        "data parallelism without sharding: every process trains on the same prompts (rank 0's), "
        "so N GPUs see 1/N of the global batch's prompts, the rest never",
    ),
    Mutant(
        "phase-step-counter-off-by-one",
        ENGINE,
        "state = TrainState(index, step + 1, state.global_step + 1)",
        "state = TrainState(index, step, state.global_step + 1)",
        (T_RESUME,),
        "checkpoints record one step fewer than the phase made: a resume repeats a step (and the "
        "phase's last step never counts as its end)",
    ),
    Mutant(
        "skip-streak-never-resets",
        ENGINE,
        "streak = 0 if finite else streak + 1",
        "streak = streak + (not finite)",
        (T_IN_A_ROW, T_NONFINITE),
        "max_consecutive_skips counts every skipped step of the run, not those in a row: a long run "
        "with a NaN now and then is stopped as if it had diverged",
    ),
    Mutant(
        "resume-skips-the-restored-phase-too",
        ENGINE,
        "if restored and index < restored.state.phase_index:",
        "if restored and index <= restored.state.phase_index:",
        (T_RESUME,),
        "a run resumed mid-phase jumps to the next phase: the rest of the interrupted phase never trains",
    ),
    Mutant(
        "logged-lr-read-after-the-step",
        ENGINE,
        'lr = opt.param_groups[0]["lr"]\n                        terms, finite = self.train_step(built, state.global_step)',
        'terms, finite = self.train_step(built, state.global_step)\n                        lr = opt.param_groups[0]["lr"]',
        (T_COSINE,),
        "metrics.jsonl's lr is the next step's (after the schedule stepped), not the one the step used",
    ),
    Mutant(
        "lr-schedule-stepped-per-micro-batch",
        ENGINE,
        "            state.lr_schedule.step()\n        return terms, finite",
        "            for _ in range(state.phase.grad_accum):\n                state.lr_schedule.step()\n"
        "        return terms, finite",
        (T_LR_ACCUM, T_COSINE),
        "with gradient accumulation the warm-up and cosine decay run grad_accum times too fast: "
        "the lr reaches 0 part-way through the phase",
    ),
    Mutant(
        "lr-schedule-shortened-on-resume",
        ENGINE,
        "num_training_steps=phase.steps,",
        "num_training_steps=phase.steps - start,",
        (T_COSINE,),
        "a resumed phase's cosine schedule is squeezed into the remaining steps: its lr differs from "
        "the uninterrupted run's",
    ),
    Mutant(
        "grad-norm-logged-after-clipping",
        ENGINE,
        'terms["grad_norm"] = grad_norm(torch.nn.utils.clip_grad_norm_(params, max_norm)).float()',
        "torch.nn.utils.clip_grad_norm_(params, max_norm)\n"
        '        terms["grad_norm"] = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]).float()',
        (T_CLIPPED,),
        "grad_norm logs the clipped norm (at most max_grad_norm): exploding gradients look tame",
    ),
    Mutant(
        "averaged-gradients-read-from-the-wrong-offset",
        DIST,
        "        offset += g.numel()",
        "        offset = g.numel()",
        (T_AVERAGE,),
        "under torchrun every parameter after the second gets its averaged gradient from the wrong "
        "slice of the flat buffer (or the step fails on a shape mismatch)",
    ),
    Mutant(
        "device-from-the-global-rank",
        DIST,
        'dev = torch.device("cuda", local)',
        'dev = torch.device("cuda", rank)',
        (T_LOCAL_RANK,),
        "on several nodes each process picks the GPU of its global rank: rank 8 of a node with 8 GPUs "
        "asks for cuda:8 (and on one node LOCAL_RANK is ignored)",
    ),
    # ---- guards and checkpoints ---------------------------------------------------------------
    Mutant(
        "weight-peak-is-the-l2-norm",
        GUARDS,
        "return torch.nn.utils.get_total_norm(local, math.inf)",
        "return torch.nn.utils.get_total_norm(local, 2.0)",
        (T_PEAK, T_BLOWN),
        "the divergence guard compares the l2 norm of all weights (grows with the model's size) with "
        "max_weight_abs, a per-weight magnitude: a large sound LoRA is called diverged",
    ),
    Mutant(
        "latest-pointer-written-before-the-folder-is-complete",
        CKPT,
        "            shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover",
        '            _write_durably(root / "latest", final.name.encode())\n'
        "            shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover",
        (T_CRASH,),
        "a crash between the pointer's write and the folder's rename leaves `latest` naming a "
        "folder that does not exist",
    ),
    Mutant(
        "read-only-load-renames-damaged-folders",
        CKPT,
        "for folder_passed in passed if repair else []:",
        "for folder_passed in passed if not repair else []:",
        (T_FALLBACK,),
        "sample / evaluate / export rename a run's damaged checkpoints (and fail on a read-only run)",
    ),
    Mutant(
        "unsound-checks-the-optimizers-magnitudes",
        CKPT,
        'found = [(p, t) for p, t in _float_tensors(tree.get("student", {}), "student") if t.numel()]',
        'found = [(p, t) for p, t in _float_tensors(tree.get("optimizer", {}), "optimizer") if t.numel()]',
        (T_ABSURD,),
        "blown-up student weights are saved and resumed from; AdamW's second moments (legitimately "
        "large) refuse sound checkpoints",
    ),
    Mutant(
        "a-mid-phase-checkpoint-counts-as-finished",
        CKPT,
        "return index < len(self.phases) and self.state.step == self.phases[index][1]",
        "return index < len(self.phases)",
        (T_INIT_UNFINISHED,),
        "init_from accepts a stage-1 run stopped mid-phase without --init-from-unfinished: stage 2 "
        "starts from a half-trained student",
    ),
    # ---- memory plan ---------------------------------------------------------------------------
    Mutant(
        "planned-grad-accum-from-the-global-batch",
        PLAN,
        "return replace(phase, grad_accum=batch // plan.micro_batch)",
        "return replace(phase, grad_accum=phase.batch_size // plan.micro_batch)",
        (T_PLAN_PHASE,),
        "under torchrun the planned accumulation counts every process's samples: each process's "
        "micro-batches are split world_size times too small",
    ),
    Mutant(
        "adamw-moments-counted-once",
        PLAN,
        "extra = 2 * sum(_local_bytes(p) for p in params)",
        "extra = sum(_local_bytes(p) for p in params)",
        (T_PLAN_PHASE,),
        "the plan counts one AdamW moment instead of two: a plan at the edge runs out of memory at "
        "the first optimizer step",
    ),
    Mutant(
        "aux-state-left-by-aux-step-not-counted",
        PLAN,
        "max(objective.allocated + kept, aux.allocated)",
        "max(objective.allocated, aux.allocated)",
        (T_MEASURE,),
        "the auxiliary optimizers' state that aux_step creates is not counted on top of the "
        "objective's peak: the next step's objective runs out of memory",
    ),
    # ---- data -----------------------------------------------------------------------------------
    Mutant(
        "cache-never-draws-the-top-segment",
        TRAJ,
        "seg = torch.randint(self.num_milestones, (b,), generator=generator, device=on)",
        "seg = torch.randint(self.num_milestones - 1, (b,), generator=generator, device=on)",
        (T_EVERY_SEGMENT, T_SAMPLING),
        "MLCD from the cache never trains the highest-noise segment (t_s = t_{M-1}): the student's "
        "first sampling step is untrained",
    ),
    Mutant(
        "shard-captions-indexed-within-the-shard",
        IMAGES,
        'members = {"png": _png(images[i]), "txt": texts[i].encode("utf-8")}',
        'members = {"png": _png(images[i]), "txt": texts[i - start].encode("utf-8")}',
        (T_ROUND_TRIP,),
        "every shard after the first pairs its images with the first shard's captions",
    ),
    Mutant(
        "exif-orientation-ignored",
        IMAGES,
        'pixels = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))',
        'pixels = np.asarray(opened.convert("RGB"))',
        (T_EXIF, T_RESIZE),
        "camera photos stored sideways with an EXIF orientation tag are trained on sideways",
    ),
    Mutant(
        "captions-sorted-away-from-their-images",
        ENGINE,
        "self.prompts = [self.images.text(i) for i in range(len(self.images))]",
        "self.prompts = sorted(self.images.text(i) for i in range(len(self.images)))",
        (T_PAIRS,),
        "with real images the prompts are no longer in row order: prompt index i trains image i "
        "with another image's caption",
    ),
    Mutant(
        "cache-row-read-without-its-shards-offset",
        TRAJ,
        "reads = zip(shard.tolist(), (rows - self.shard_start[shard]).tolist(), pos.tolist(), strict=True)",
        "reads = zip(shard.tolist(), rows.tolist(), pos.tolist(), strict=True)",
        (T_SAMPLING,),
        "rows of every shard after the first are read at their global index: another trajectory "
        "(another prompt's) or past the shard's end",
    ),
    Mutant(
        "memory-plan-trusts-a-falling-line",
        PLAN,
        "per_sample = max((p2 - p1) / (b2 - b1), 0.0) if b2 > b1 else p1 / b1",
        "per_sample = (p2 - p1) / (b2 - b1) if b2 > b1 else p1 / b1",
        (T_FALLING,),
        "a second measurement below the first (allocator noise, a freed cache) gives a falling line: "
        "larger micro-batches are predicted to need less memory and the largest is planned",
    ),
    Mutant(
        "memory-plan-measures-one-prompt-whatever-b",
        PLAN,
        'ctx = trainer.context(torch.zeros(b, dtype=torch.long, device="cpu"), gen, 0)',
        'ctx = trainer.context(torch.zeros(1, dtype=torch.long, device="cpu"), gen, 0)',
        (T_MEASURE,),
        "every candidate micro-batch is measured at batch 1: the line is flat and the plan picks "
        "the largest micro-batch, which runs out of memory",
    ),
    # ---- export and resume checks -------------------------------------------------------------
    Mutant(
        "kohya-alpha-is-the-rank",
        EXPORT,
        'out[f"{name}.alpha"] = torch.tensor(float(alpha), dtype=torch.float32, device="cpu")',
        'out[f"{name}.alpha"] = torch.tensor(float(tensor.shape[0] if part == "A" else '
        'tensor.shape[1]), dtype=torch.float32, device="cpu")',
        (T_KOHYA,),
        "the kohya file stores alpha = rank: ComfyUI / A1111 apply the LoRA at scale 1 instead of "
        "alpha / rank",
    ),
    Mutant(
        "resume-check-ignores-fields-new-in-this-recipe",
        RESUME,
        "for path in [*old, *(p for p in new if p not in old)]:",
        "for path in old:",
        (T_NEW_FIELDS, T_RECIPE_CHANGES),
        "a field the checkpoint's recipe lacks (set only now) is never reported: the resume mixes "
        "two trainings silently",
    ),
]
