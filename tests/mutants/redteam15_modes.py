"""A fifteenth red-team audit, the engine's modes (2026-12-07; 33 mutants, 22 survived at first, each
now caught; ~690 s of one busy core): what changes training on several processes, under FSDP2, with
gradient checkpointing or an embedding cache, and what a checkpoint and a resume keep, where the
single-process bit-exact contracts (tests/test_loss_contract.py) see nothing. The engine (a resumed
phase's losses seeded by the phase's first global step; a run stopped in its first phase resuming
every later phase from its start, and a finished run's last checkpoint sitting after its last phase;
a stop signal to one process of two stopping both after the step; rank 0 alone writing checkpoints
under FSDP2, the embedding cache and the damaged-folder renames; every process waiting at the
barrier for a stop's save; fsdp on one process unsharded; gradient_checkpointing really switched
on; "auto" precision fp32 on the CPU), tlcm/distributed.py (FSDP2's gradients not averaged a second
time, DTensors gathered inside lists and tuples, a resumed shard cast to the parameter's dtype,
every block its own FSDP2 unit with fp32 reduction), tlcm/checkpoint.py (pickles loaded with
weights_only, max_weight_abs read on the student's weights alone (AdamW's step count is a float
tensor), an empty weight, NaN inside a tuple) and the memory plan (the losses' buffers restored
after measuring, the peaks all-reduced with MAX). The barrier mutant was not run against the
existing tests: only the slow torchrun tests call ``_preempted`` on two processes.

Real bugs found: none.

Skipped as equivalent: tlcm/data/states.py (a frozen dataclass; its field order is already
mutated), ``grad_norm``'s ``full_tensor`` read as ``to_local`` and ``_local_bytes`` counting a whole
DTensor (the same on one process: they differ only across torchrun processes), and dropping the
auxiliary optimizers' parameters from ``_zero_grads`` (AuxOptimizer.step sets its gradients to None
before its first backward, so the measurement's leftovers never reach an update)."""

from run import Mutant

ENGINE = "tlcm/engine.py"
DIST = "tlcm/distributed.py"
CKPT = "tlcm/checkpoint.py"
PLAN = "tlcm/memory_plan.py"

U = "tests/test_modes15_units.py"
T_ENG = "tests/test_engine.py"
T_SIGTERM = f"{T_ENG}::test_resume_after_sigterm_equals_uninterrupted_run"
T_CK = "tests/test_checkpoint.py"
T_LATER = f"{T_CK}::test_resume_inside_a_later_phase_equals_the_uninterrupted_run"
T_FALLBACK = f"{T_CK}::test_a_damaged_latest_checkpoint_falls_back_to_the_newest_complete_one"
T_UNSOUND = (
    f"{T_CK}::test_nan_or_absurd_latest_weights_fall_back_to_the_previous_checkpoint",
    f"{T_CK}::test_absurd_negative_weights_are_unsound_too",
)
T_DIST = "tests/test_distributed.py"
T_MP = "tests/test_memory_plan.py"
T_MEASURED = f"{T_MP}::test_measure_step_leaves_training_exactly_as_it_was"

MUTANTS = [
    # ---- engine.py ----------------------------------------------------------------------------------
    Mutant(
        "engine-resumed-phase-seeds-its-losses-at-the-resume-step",
        ENGINE,
        "torch.manual_seed(step_seed(self.recipe.runtime.seed, global_step - start, -2))",
        "torch.manual_seed(step_seed(self.recipe.runtime.seed, global_step, -2))",
        (f"{U}::test_a_resumed_phase_builds_its_losses_from_the_phases_first_step_seed", T_LATER),
        "a resumed phase's losses start from other random initialisations than the phase's own",
    ),
    Mutant(
        "engine-resume-after-one-step-drops-the-optimizer",
        ENGINE,
        "        if start > 0:\n            opt.load_state_dict(restored.optimizer)",
        "        if start > 1:\n            opt.load_state_dict(restored.optimizer)",
        (T_LATER,),
        "a phase resumed after its first step restarts AdamW's moments and the losses' state",
    ),
    Mutant(
        "engine-next-phase-keeps-the-restored-position",
        ENGINE,
        "phase, losses, opt, restored = built.phase, built.losses, built.optimizer, None",
        "phase, losses, opt = built.phase, built.losses, built.optimizer",
        (f"{U}::test_a_run_stopped_in_its_first_phase_resumes_every_later_phase_from_its_start",),
        "resumed mid-phase, every later phase starts at the checkpoint's step (skips its first steps)",
    ),
    Mutant(
        "engine-phase-end-save-names-the-finished-phase",
        ENGINE,
        "self._save(TrainState(index + 1, 0, state.global_step), opt, losses)",
        "self._save(TrainState(index, 0, state.global_step), opt, losses)",
        (f"{U}::test_a_run_stopped_in_its_first_phase_resumes_every_later_phase_from_its_start",),
        "a rerun of a finished run (or a crash after a phase) trains the finished phase again",
    ),
    Mutant(
        "engine-a-stop-signal-of-one-process-of-two-is-missed",
        ENGINE,
        "self._stop = self._stop or bool(stop > 0)",
        "self._stop = self._stop or bool(stop >= 1)",
        (f"{U}::test_a_stop_signal_on_one_process_of_two_stops_both_after_the_step",),
        "a SIGTERM to one torchrun process (the averaged flag 1/2) stops nobody: the job is killed",
    ),
    Mutant(
        "engine-the-stopping-step-is-not-taken",
        ENGINE,
        "            if not bool(finite):\n                return terms, False",
        "            return terms, False",
        (T_SIGTERM,),
        "the step a stop signal arrives in is thrown away (and counted non-finite)",
    ),
    Mutant(
        "engine-every-fsdp-process-writes-the-checkpoint",
        ENGINE,
        "        if not self.dist.is_main:\n            return\n        rt = self.recipe.runtime",
        "        rt = self.recipe.runtime",
        (f"{U}::test_only_rank_0_writes_a_checkpoint_even_when_every_process_gathers",),
        "under FSDP2 every process writes the same checkpoint folder at once",
    ),
    Mutant(
        "engine-save-swaps-optimizer-and-loss-states",
        ENGINE,
        "            optimizer,\n            loss_states,\n            metadata=",
        "            loss_states,\n            optimizer,\n            metadata=",
        (T_SIGTERM,),
        "optimizer.pt holds the losses' state and losses.pt AdamW's",
    ),
    Mutant(
        "engine-fsdp-on-one-process-shards",
        ENGINE,
        "self.sharded = rt.fsdp and self.dist.world_size > 1",
        "self.sharded = rt.fsdp",
        (f"{U}::test_fsdp_on_one_process_trains_unsharded",),
        "--recipes.runtime.fsdp without torchrun shards over no process group (a traceback)",
    ),
    Mutant(
        "engine-gradient-checkpointing-never-switched-on",
        ENGINE,
        "self.student.set_gradient_checkpointing(rt.gradient_checkpointing)",
        "self.student.set_gradient_checkpointing(False)",
        (
            f"{U}::test_the_runtime_switches_gradient_checkpointing_on_the_students_network",
            "tests/test_loss_contract.py::test_gradient_checkpointing_gives_bit_identical_gradients[mlcd]",
        ),
        "gradient_checkpointing silently off: same gradients, the memory it promised is not saved",
    ),
    Mutant(
        "engine-every-process-writes-the-embedding-cache",
        ENGINE,
        "writable=self.dist.is_main",
        "writable=True",
        (f"{U}::test_only_rank_0_writes_the_embedding_cache",),
        "every torchrun process writes the same chunk files of the embedding cache",
    ),
    Mutant(
        "engine-every-process-repairs-damaged-checkpoints",
        ENGINE,
        "rt.out_dir, self.dist.device, self.reporter.print, self.dist.is_main, rt.max_weight_abs",
        "rt.out_dir, self.dist.device, self.reporter.print, True, rt.max_weight_abs",
        (f"{U}::test_only_rank_0_moves_a_damaged_checkpoint_aside",),
        "every process renames the damaged folders (a race; a slower one finds its folder gone)",
    ),
    Mutant(
        "engine-auto-precision-runs-bf16-on-the-cpu",
        ENGINE,
        'rt.mixed_precision == "auto" and self.dist.device.type == "cuda"',
        'rt.mixed_precision == "auto"',
        (f"{U}::test_auto_precision_on_the_cpu_is_fp32",),
        "the default precision trains a CPU run in bf16",
    ),
    Mutant(
        "engine-no-process-waits-for-the-stop-save",
        ENGINE,
        "        if self.dist.world_size > 1:\n            torch.distributed.barrier()\n",
        "",
        (f"{U}::test_a_stopping_process_of_two_waits_for_the_save_before_it_exits",),
        "rank 1 exits 75 while rank 0 still writes: torchrun kills rank 0 mid-save",
    ),
    # ---- distributed.py -----------------------------------------------------------------------------
    Mutant(
        "distributed-fsdp-shards-averaged-again",
        DIST,
        "params = [p for p in params if not isinstance(p, DTensor)]  # FSDP2 reduced those in backward",
        "params = list(params)",
        (f"{U}::test_average_gradients_leaves_fsdp2_gradients_alone",),
        "FSDP2's already averaged gradients divided by the process count again",
    ),
    Mutant(
        "distributed-full-tensors-leaves-lists-sharded",
        DIST,
        "    if isinstance(tree, list | tuple):\n        return type(tree)(full_tensors(v) for v in tree)\n",
        "",
        (f"{U}::test_full_tensors_gathers_inside_lists_and_tuples",),
        "a checkpoint keeps DTensor shards found inside lists (an optimizer's, a loss's state)",
    ),
    Mutant(
        "distributed-shard-like-keeps-the-checkpoint-dtype",
        DIST,
        "distribute_tensor(value.to(like.device, like.dtype), like.device_mesh, like.placements)",
        "distribute_tensor(value.to(like.device), like.device_mesh, like.placements)",
        (f"{U}::test_shard_like_lays_a_checkpoint_tensor_out_in_the_live_dtype",),
        "a resumed FSDP2 state tensor keeps the checkpoint's dtype, not the parameter's",
    ),
    Mutant(
        "distributed-shard-skips-the-blocks",
        DIST,
        "    for block in blocks:\n        fully_shard(block, mesh=mesh, mp_policy=policy)\n",
        "",
        (f"{U}::test_shard_wraps_every_block_then_the_root_and_reduces_in_fp32",),
        "one FSDP2 unit for the whole network: gathered whole on every process at every forward",
    ),
    Mutant(
        "distributed-fsdp-reduces-in-the-compute-dtype",
        DIST,
        "reduce_dtype=torch.float32)",
        "reduce_dtype=param_dtype)",
        (f"{U}::test_shard_wraps_every_block_then_the_root_and_reduces_in_fp32",),
        "bf16 gradients summed over processes in bf16",
    ),
    Mutant(
        "distributed-one-process-joins-a-group",
        DIST,
        "if world > 1 and not dist.is_initialized():",
        "if world >= 1 and not dist.is_initialized():",
        (f"{T_DIST}::test_each_process_takes_the_gpu_of_its_local_rank",),
        "a plain python -m tlcm.train tries to join a torchrun group",
    ),
    # ---- checkpoint.py ------------------------------------------------------------------------------
    Mutant(
        "checkpoint-optimizer-pickle-loaded-unsafely",
        CKPT,
        'torch.load(folder / "optimizer.pt", map_location=device, weights_only=True)',
        'torch.load(folder / "optimizer.pt", map_location=device, weights_only=False)',
        (f"{U}::test_a_checkpoint_pickle_that_would_run_code_is_refused_unrun", T_FALLBACK),
        "a resume unpickles arbitrary objects: a planted optimizer.pt runs code",
    ),
    Mutant(
        "checkpoint-weight-limit-reads-the-optimizer-too",
        CKPT,
        'found = [(p, t) for p, t in _float_tensors(tree.get("student", {}), "student") if t.numel()]',
        "found = [(p, t) for p, t in _float_tensors(tree) if t.numel()]",
        (f"{U}::test_the_weight_limit_reads_the_students_weights_only", *T_UNSOUND),
        "AdamW's step count (a float tensor) passes max_weight_abs after 1e4 steps: no save, no resume",
    ),
    Mutant(
        "checkpoint-an-empty-weight-breaks-unsound",
        CKPT,
        'found = [(p, t) for p, t in _float_tensors(tree.get("student", {}), "student") if t.numel()]',
        'found = [(p, t) for p, t in _float_tensors(tree.get("student", {}), "student")]',
        (f"{U}::test_the_weight_limit_reads_the_students_weights_only", *T_UNSOUND),
        "an empty trainable tensor: max() of nothing, a traceback at every save",
    ),
    Mutant(
        "checkpoint-a-phase-start-is-not-a-finished-phase",
        CKPT,
        "        if self.state.step == 0:\n            return True\n",
        "",
        (f"{T_ENG}::test_lcd_continues_from_a_stage1_run",),
        "init_from refuses a finished run (its last checkpoint: after the last phase, step 0)",
    ),
    Mutant(
        "checkpoint-nan-in-a-tuple-is-missed",
        CKPT,
        "        items = enumerate(tree) if isinstance(tree, list | tuple) else ()",
        "        items = enumerate(tree) if isinstance(tree, list) else ()",
        (f"{U}::test_nan_inside_a_tuple_of_loss_state_is_found", *T_UNSOUND),
        "NaN in a loss's tuple state is saved and resumed from",
    ),
    Mutant(
        "checkpoint-repair-keeps-a-damaged-folder-in-place",
        CKPT,
        '            problems.append(f"{folder.name}: {type(err).__name__}: {str(err).splitlines()[0][:120]}")\n'
        "            passed.append(folder)\n",
        '            problems.append(f"{folder.name}: {type(err).__name__}: {str(err).splitlines()[0][:120]}")\n',
        (T_FALLBACK,),
        "a damaged folder stays step-N: the next save at step N overwrites the evidence",
    ),
    # ---- memory_plan.py -----------------------------------------------------------------------------
    Mutant(
        "memory-plan-line-through-one-point",
        PLAN,
        "points = [(b, measure(b, checkpointing)) for b in candidates[:2]]",
        "points = [(b, measure(b, checkpointing)) for b in candidates[:1]]",
        (
            f"{T_MP}::test_fits_without_checkpointing_takes_the_largest_divisor",
            f"{T_MP}::test_tight_budget_checkpoints",
        ),
        "the peak taken as proportional to the micro-batch (no fixed part): a plan that does not fit",
    ),
    Mutant(
        "memory-plan-snapshot-aliases-the-live-state",
        PLAN,
        'return tree.detach().to("cpu", copy=True)',
        'return tree.detach().to("cpu")',
        (T_MEASURED,),
        "on the CPU the snapshot IS the live state: measuring changes the losses' models for good",
    ),
    Mutant(
        "memory-plan-buffers-not-restored",
        PLAN,
        "            buffer.copy_(buffers[key])",
        "            pass",
        (f"{U}::test_measuring_restores_the_losses_buffers", T_MEASURED),
        "buffers an aux_step changed while measuring stay changed in training",
    ),
    Mutant(
        "memory-plan-peaks-summed-over-processes",
        PLAN,
        "dist.all_reduce(both, op=dist.ReduceOp.MAX)",
        "dist.all_reduce(both, op=dist.ReduceOp.SUM)",
        (f"{U}::test_every_process_plans_on_the_largest_peak_of_any", T_MEASURED),
        "each process plans on the sum of every process's peak: micro-batches far too small",
    ),
    Mutant(
        "memory-plan-a-budget-alone-plans-nothing",
        PLAN,
        "if not (rt.memory_plan or rt.memory_budget_gib is not None):",
        "if not rt.memory_plan:",
        ("tests/test_check_units.py::test_the_budget_is_in_gib_not_gb",),
        "--recipes.runtime.memory-budget-gib without --memory-plan is ignored",
    ),
    Mutant(
        "memory-plan-measurement-draws-from-the-training-rng",
        PLAN,
        "with torch.random.fork_rng(devices=rng_devices):",
        "with torch.random.fork_rng(devices=rng_devices, enabled=False):",
        (T_MEASURED,),
        "measuring advances the global RNG: a planned run draws other numbers than an unplanned one",
    ),
    Mutant(
        "memory-plan-gradients-kept-after-measuring",
        PLAN,
        "    for p in params:\n        p.grad = None",
        "    pass",
        (T_MEASURED,),
        "the measurement's gradients stay on the network",
    ),
]
