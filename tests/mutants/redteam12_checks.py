"""A twelfth red-team audit, area checks (2026-12-06; 22 mutants, 16 survived at first, each now
caught): validate_recipe's ranges (max-grad-norm 0 and max-weight-abs inf, the documented "off"
values; NaN / inf limits the ``not x > 0`` idiom refuses: LoRA alpha, the divergence guard, the
memory budget; the warm-up shorter than the phase; the batch split over processes x grad-accum),
the output file's extension case, LoRA targets by peft's rule (whole name or ".NAME" suffix, never
peft's base_layer; present_targets likewise), devices this machine lacks (MPS, a CUDA GPU torch
cannot use), the resolution multiple (the VAE factor), and the memory plan (tlcm/memory_plan.py):
the largest fitting micro-batch, checkpointing tried after, and only when the whole batch does not
fit uncheckpointed, the budget in GiB, the planned checkpointing applied and a user's kept, the
allocator's limit capped at the device and a zero limit refused. The warm-up mutant was caught at
first only by test_bad_input[warm-up as long as the phase] letting a 300-step CPU training run into
the runner's timeout (still running after 5 minutes): it names a direct validate_recipe test
instead."""

from run import Mutant

CHECKS = "tlcm/checks.py"
PLAN = "tlcm/memory_plan.py"

T_BAD_TORCHRUN = (
    "tests/test_bad_inputs.py::test_bad_input[batch not divisible by processes x grad-accum (torchrun)]"
)
T_FITS = "tests/test_memory_plan.py::test_fits_without_checkpointing_takes_the_largest_divisor"
T_IMPOSSIBLE = "tests/test_memory_plan.py::test_impossible_budget_is_one_clear_line"
T_PRESETS = "tests/test_memory_plan.py::test_presets_fit_an_80_gib_budget_on_an_h200"

U = "tests/test_check_units.py"
T_U_RECIPE = f"{U}::test_a_recipe_takes_the_edges_that_mean_off_and_refuses_non_finite_limits"
T_U_SUFFIX = f"{U}::test_an_image_path_may_end_in_an_upper_case_extension"
T_U_TARGETS = f"{U}::test_lora_targets_match_whole_module_names_or_dot_suffixes_only"
T_U_DEVICE = f"{U}::test_devices_this_machine_lacks_are_refused"
T_U_RESOLUTION = f"{U}::test_resolution_multiple_is_the_vae_factor_times_the_unets_downsamplings"
T_U_GIB = f"{U}::test_the_budget_is_in_gib_not_gb"
T_U_CKPT = f"{U}::test_plan_phase_applies_the_planned_checkpointing_and_keeps_the_users"
T_U_BIND = f"{U}::test_a_budget_over_the_device_or_eaten_by_outside_memory"
T_U_TIGHT = f"{U}::test_checkpointing_is_tried_when_only_the_smallest_micro_batch_fits_without_it"
T_U_PHASE = f"{U}::test_a_phase_warms_up_for_fewer_than_its_steps_and_splits_over_every_process"

MUTANTS = [
    # ---- validate_recipe: ranges ----------------------------------------------------------------
    Mutant(
        "checks-max-grad-norm-zero-refused",
        CHECKS,
        "math.isfinite(phase.max_grad_norm) and phase.max_grad_norm >= 0",
        "math.isfinite(phase.max_grad_norm) and phase.max_grad_norm > 0",
        (T_U_RECIPE,),
        "max-grad-norm 0 (documented: disables clipping) is refused",
    ),
    Mutant(
        "checks-warmup-as-long-as-the-phase-accepted",
        CHECKS,
        "if not 0 <= phase.lr_warmup_steps < phase.steps:",
        "if not 0 <= phase.lr_warmup_steps <= phase.steps:",
        (T_U_PHASE,),
        "a warm-up of all the phase's steps is accepted: the lr never leaves the warm-up",
    ),
    Mutant(
        "checks-batch-split-ignores-the-processes",
        CHECKS,
        "    if batch % chunks:\n",
        "    if batch % accum:\n",
        (T_BAD_TORCHRUN, T_U_PHASE),
        "a global batch that splits into grad-accum but not world x grad-accum micro-batches passes",
    ),
    Mutant(
        "checks-lora-alpha-inf-accepted",
        CHECKS,
        "if not (math.isfinite(student.lora_alpha) and student.lora_alpha > 0):",
        "if not student.lora_alpha > 0:",
        (T_U_RECIPE,),
        "an infinite LoRA alpha (scale alpha / rank = inf) is accepted: the first step is NaN",
    ),
    Mutant(
        "checks-max-weight-abs-nan-accepted",
        CHECKS,
        "if not rt.max_weight_abs > 0:",
        "if rt.max_weight_abs <= 0:",
        (T_U_RECIPE,),
        "max-weight-abs NaN passes (NaN <= 0 is False): every weight comparison with it is False, "
        "the divergence guard never fires",
    ),
    Mutant(
        "checks-memory-budget-nan-accepted",
        CHECKS,
        "if rt.memory_budget_gib is not None and not rt.memory_budget_gib > 0:",
        "if rt.memory_budget_gib is not None and rt.memory_budget_gib <= 0:",
        (T_U_RECIPE,),
        "a NaN memory budget passes validation (NaN <= 0 is False) and reaches the allocator cap",
    ),
    # ---- paths, devices, LoRA targets, resolution ----------------------------------------------
    Mutant(
        "checks-out-file-suffix-case-sensitive",
        CHECKS,
        "if path.suffix.lower() not in suffixes:",
        "if path.suffix not in suffixes:",
        (T_U_SUFFIX,),
        "--out grid.PNG is refused (a camera's upper-case extension)",
    ),
    Mutant(
        "checks-lora-target-suffix-without-dot",
        CHECKS,
        'unknown = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in layers)]',
        "unknown = [t for t in targets if not any(n.endswith(t) for n in layers)]",
        (T_U_TARGETS,),
        "a target 'q' passes because 'to_q' ends in 'q'; peft matches whole name parts, so it trains "
        "nothing for 'q' (or fails)",
    ),
    Mutant(
        "checks-present-targets-miss-full-names",
        CHECKS,
        'return tuple(t for t in targets if any(n == t or n.endswith(f".{t}") for n in layers))',
        'return tuple(t for t in targets if any(n.endswith(f".{t}") for n in layers))',
        (T_U_TARGETS,),
        "a full module name (a top-level layer of the network) is dropped from the targets present",
    ),
    Mutant(
        "checks-peft-base-layer-is-a-target",
        CHECKS,
        'if ".lora_" in name or name.endswith(".base_layer"):',
        'if ".lora_" in name:',
        (T_U_TARGETS,),
        "peft's wrapped base_layer counts as a LoRA-able layer: 'base_layer' passes as a target name",
    ),
    Mutant(
        "checks-mps-availability-inverted",
        CHECKS,
        "if not torch.backends.mps.is_available():",
        "if torch.backends.mps.is_available():",
        (T_U_DEVICE,),
        "--device mps is accepted on a machine without MPS (and refused on a Mac)",
    ),
    Mutant(
        "checks-cuda-count-without-is-available",
        CHECKS,
        "count = torch.cuda.device_count() if torch.cuda.is_available() else 0",
        "count = torch.cuda.device_count()",
        (T_U_DEVICE,),
        "a GPU listed but unusable (torch.cuda.is_available() False: driver too old) is accepted",
    ),
    Mutant(
        "checks-vae-scale-factor-one-block-too-many",
        CHECKS,
        '.get("block_out_channels", [0] * 4)) - 1, 0)',
        '.get("block_out_channels", [0] * 4)), 0)',
        (T_U_RESOLUTION,),
        "the VAE's scale factor is 2**blocks, not 2**(blocks - 1): valid resolutions are refused",
    ),
    # ---- the memory plan --------------------------------------------------------------------------
    Mutant(
        "plan-smallest-fitting-micro-batch",
        PLAN,
        "return fits[-1] if fits else None",
        "return fits[0] if fits else None",
        (T_FITS,),
        "the plan takes the smallest micro-batch that fits (always 1): many more, slower steps",
    ),
    Mutant(
        "plan-checkpointing-tried-first",
        PLAN,
        "modes = [checkpointing] if checkpointing is not None else [False, True]",
        "modes = [checkpointing] if checkpointing is not None else [True, False]",
        (T_FITS,),
        "checkpointing is tried first and kept when the whole batch fits with it: recomputation that "
        "was not needed",
    ),
    Mutant(
        "plan-stops-when-the-smallest-fits",
        PLAN,
        "if fit[0] == candidates[-1]:",
        "if fit[0] == candidates[0]:",
        (T_U_TIGHT,),
        "the search stops once micro-batch 1 fits without checkpointing, never trying checkpointing, "
        "which would fit a far larger micro-batch",
    ),
    Mutant(
        "plan-error-names-the-larger-need",
        PLAN,
        "need = min(measured(candidates[0], m).high for m in modes) + extra",
        "need = max(measured(candidates[0], m).high for m in modes) + extra",
        (T_IMPOSSIBLE,),
        "the error reports the uncheckpointed need, not the smallest one",
    ),
    Mutant(
        "plan-budget-in-gb",
        PLAN,
        "rt.memory_budget_gib * GiB if rt.memory_budget_gib is not None else None",
        "rt.memory_budget_gib * 1e9 if rt.memory_budget_gib is not None else None",
        (T_U_GIB,),
        "--memory-budget-gib read as GB: 7 % less memory than asked",
    ),
    Mutant(
        "plan-users-checkpointing-overridden",
        PLAN,
        "checkpointing=True if rt.gradient_checkpointing else None,",
        "checkpointing=None,",
        (T_PRESETS, T_U_CKPT),
        "gradient_checkpointing on in the recipe is re-decided by the plan (switched off when it fits)",
    ),
    Mutant(
        "plan-planned-checkpointing-not-applied",
        PLAN,
        "trainer.student.set_gradient_checkpointing(plan.checkpointing)",
        "trainer.student.set_gradient_checkpointing(rt.gradient_checkpointing)",
        (T_U_CKPT,),
        "the plan chose checkpointing, but the student trains without it: out of memory at step 1",
    ),
    Mutant(
        "plan-budget-over-the-device-not-capped",
        PLAN,
        "limit = min(budget if budget is not None else total, total) - outside",
        "limit = (budget if budget is not None else total) - outside",
        (T_U_BIND,),
        "a budget over the device's memory is planned as if the device had it",
    ),
    Mutant(
        "plan-zero-limit-accepted",
        PLAN,
        "    if limit <= 0:\n",
        "    if limit < 0:\n",
        (T_U_BIND,),
        "a budget exactly eaten by outside memory caps the allocator at 0 bytes instead of one clear line",
    ),
]
