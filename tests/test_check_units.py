"""The input checks and the memory plan at the edges earlier tests left open: the values a recipe
documents as "off" (max-grad-norm 0, max-weight-abs inf) pass and non-finite limits (NaN budget,
NaN guard, inf LoRA alpha) are refused; an upper-case image extension; LoRA targets matched by
peft's rule (a whole name or a ".NAME" suffix; never peft's own base_layer); devices this machine
lacks; the resolution multiple (the VAE's scale factor as diffusers computes it); and the memory
plan: GiB (not GB), the planned checkpointing applied and a user's kept, a budget over the device
capped at the device, a budget eaten by outside memory refused, checkpointing tried when only the
smallest micro-batch fits without it."""

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from engine_helpers import shrink
from peft import LoraConfig

import tlcm.memory_plan as memory_plan
from recipes import PRESETS
from tlcm.checks import (
    check_device,
    check_lora_targets,
    check_out_file,
    check_resolution,
    present_targets,
    validate_recipe,
)
from tlcm.config import Phase, RuntimeConfig
from tlcm.errors import TLCMError
from tlcm.memory_plan import GiB, plan_micro_batch
from tlcm.models.families import FAMILIES
from tlcm.models.folders import check_model_folder

# --- validate_recipe ------------------------------------------------------------------------------


def test_a_recipe_takes_the_edges_that_mean_off_and_refuses_non_finite_limits(tmp_path):
    """The miniature's mlcd recipe: max-grad-norm 0 (documented: no clipping) and max-weight-abs inf
    (documented: no divergence guard) pass; an infinite LoRA alpha (scale alpha / rank = inf), a
    NaN divergence guard (every comparison with NaN is False: it would never fire) and a NaN memory
    budget are refused, each naming its flag."""
    from tlcm.toy import MINIATURE_SD

    recipe = shrink(PRESETS["mlcd"], MINIATURE_SD, tmp_path / "run")
    name = next(iter(recipe.phases))
    no_clip = replace(recipe, phases={name: replace(recipe.phases[name], max_grad_norm=0.0)})
    validate_recipe(no_clip, world_size=1)
    validate_recipe(replace(recipe, runtime=replace(recipe.runtime, max_weight_abs=math.inf)), world_size=1)
    student = replace(recipe.student, full_finetune=False, lora_alpha=math.inf)
    with pytest.raises(TLCMError, match="--recipes.student.lora-alpha must be > 0"):
        validate_recipe(replace(recipe, student=student), world_size=1)
    with pytest.raises(TLCMError, match="--recipes.runtime.max-weight-abs must be > 0"):
        validate_recipe(
            replace(recipe, runtime=replace(recipe.runtime, max_weight_abs=math.nan)), world_size=1
        )
    with pytest.raises(TLCMError, match="--recipes.runtime.memory-budget-gib must be > 0"):
        validate_recipe(
            replace(recipe, runtime=replace(recipe.runtime, memory_budget_gib=math.nan)), world_size=1
        )


def test_the_digit_reward_on_prompts_that_name_no_digit_is_refused_before_training(tmp_path):
    """Walkthrough 11: tlcm-paper on prompts of its own failed with a traceback when its third phase
    (reward feedback with the digit reward) started; now validate_recipe refuses it in one line
    naming the reward's flag and the first prompt without a digit. Digit prompts pass."""
    from tlcm.toy import MINIATURE_SD

    recipe = shrink(PRESETS["tlcm-paper"], MINIATURE_SD, tmp_path / "run")
    other, digits = tmp_path / "other.txt", tmp_path / "digits.txt"
    other.write_text("a handwritten digit seven\na city at night\n")
    digits.write_text("a handwritten digit seven\nthe number 3\n")
    with pytest.raises(TLCMError, match=r"\.losses\.preference\.reward digit .* has 'a city at night'"):
        validate_recipe(replace(recipe, data=replace(recipe.data, prompts=other)), world_size=1)
    validate_recipe(replace(recipe, data=replace(recipe.data, prompts=digits)), world_size=1)


def test_a_phase_warms_up_for_fewer_than_its_steps_and_splits_over_every_process(tmp_path):
    """A warm-up of steps - 1 passes, one of all the phase's steps (the lr would never leave the
    warm-up) does not; a batch of 6 at grad-accum 2 on 2 processes is 4 micro-batches of 1.5
    samples: refused, although it splits into grad-accum 2 alone."""
    from tlcm.toy import MINIATURE_SD

    recipe = shrink(PRESETS["mlcd"], MINIATURE_SD, tmp_path / "run")
    name = next(iter(recipe.phases))

    def with_phase(**fields):
        return replace(recipe, phases={name: replace(recipe.phases[name], **fields)})

    validate_recipe(with_phase(steps=5, lr_warmup_steps=4), world_size=1)
    with pytest.raises(TLCMError, match=f"--recipes.phases.{name}.lr-warmup-steps must be in 0..4"):
        validate_recipe(with_phase(steps=5, lr_warmup_steps=5), world_size=1)
    validate_recipe(with_phase(batch_size=6, grad_accum=2), world_size=1)
    with pytest.raises(TLCMError, match="batch-size 6 does not split into 4 equal micro-batches"):
        validate_recipe(with_phase(batch_size=6, grad_accum=2), world_size=2)


# --- paths, devices, LoRA targets, resolution -----------------------------------------------------


def test_an_image_path_may_end_in_an_upper_case_extension(tmp_path):
    for name in ("grid.PNG", "grid.Jpg", "grid.webp"):
        check_out_file(tmp_path / name, "--out")
    with pytest.raises(TLCMError, match="must end in .png, .jpg, .jpeg or .webp"):
        check_out_file(tmp_path / "grid.tif", "--out")


def test_lora_targets_match_whole_module_names_or_dot_suffixes_only(tiny_sd):
    """peft adapts a module whose full name equals a target or ends in ".TARGET": "q" matches no
    layer of the UNet although "to_q" ends in "q"; "conv_in" (a top-level layer: its full name)
    does, for check_lora_targets and present_targets alike, and so does it for peft itself. peft's
    own wrapped "base_layer" is never a target."""
    unet = tiny_sd.unet
    with pytest.raises(TLCMError, match="q matches no Linear/Conv layer"):
        check_lora_targets(unet, ["to_k", "q"])
    check_lora_targets(unet, ["conv_in", "to_q"])
    assert present_targets(unet, ["conv_in", "q", "to_q", "proj_in"]) == ("conv_in", "to_q", "proj_in")
    unet.add_adapter(LoraConfig(r=2, target_modules=["conv_in", "to_q"]), adapter_name="student")
    assert hasattr(unet.conv_in, "base_layer")  # peft took the full name too
    with pytest.raises(TLCMError, match="base_layer matches no"):
        check_lora_targets(unet, ["base_layer"])


def test_devices_this_machine_lacks_are_refused(monkeypatch):
    """MPS only where the backend is available; CUDA only where torch.cuda.is_available() (a GPU the
    driver lists but torch cannot use counts as none)."""
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(TLCMError, match="--device mps: the MPS backend is not available"):
        check_device("mps", "--device")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    check_device("mps", "--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for device in ("cuda", "cuda:0"):
        with pytest.raises(TLCMError, match="torch sees no CUDA GPU"):
            check_device(device, "--device")


def test_resolution_multiple_is_the_vae_factor_times_the_unets_downsamplings(tiny_sd_dir, tiny_sd):
    """The tiny SD pipeline: diffusers' VAE scale factor 2 (32 px images, 16 x 16 latents) times a
    UNet of two down blocks (one halving): sides must be multiples of 4. 4 and 32 pass, 6 does not."""
    assert tiny_sd.vae_scale_factor == 2
    family = FAMILIES[check_model_folder(tiny_sd_dir)]
    for side in (4, 32):
        check_resolution(tiny_sd_dir, side, family, "--resolution")
    with pytest.raises(TLCMError, match="multiple of 4 pixels .VAE scale factor 2 x 2"):
        check_resolution(tiny_sd_dir, 6, family, "--resolution")


# --- the memory plan --------------------------------------------------------------------------------


def _trainer(runtime, world_size=1):
    """A stand-in Trainer for plan_phase on the CPU: records the checkpointing set and the lines."""
    modes, lines = [], []
    trainer = SimpleNamespace(
        recipe=SimpleNamespace(runtime=runtime),
        dist=SimpleNamespace(device=torch.device("cpu"), world_size=world_size),
        student=SimpleNamespace(set_gradient_checkpointing=modes.append),
        reporter=SimpleNamespace(print=lines.append),
    )
    return trainer, modes, lines


def _measure_step(measured, fixed_gib, per_gib, checkpointed_gib):
    def measure_step(trainer, phase, losses):
        def measure(b, checkpointing):
            measured.append((b, checkpointing))
            return (fixed_gib + (checkpointed_gib if checkpointing else per_gib) * b) * GiB

        return measure

    return measure_step


def test_the_budget_is_in_gib_not_gb(monkeypatch):
    """A 10 GiB budget: 9 GiB usable, and a step of 1 + 0.95 b GiB fits the whole batch of 8 (8.6
    GiB). Read as 10 GB (9.31 GiB, 8.38 usable) only micro-batch 4 would."""
    measured = []
    monkeypatch.setattr(memory_plan, "measure_step", _measure_step(measured, 1.0, 0.95, 0.95))
    trainer, _, lines = _trainer(RuntimeConfig(memory_budget_gib=10.0))
    planned = memory_plan.plan_phase(trainer, "p", Phase(steps=1, lr=1e-3, batch_size=8, losses={}), {}, [])
    assert planned.grad_accum == 1
    assert "of 9.0 GiB usable (90% of 10.0)" in lines[-1]


def test_plan_phase_applies_the_planned_checkpointing_and_keeps_the_users(monkeypatch):
    """Under 10 GiB (9 usable), a step of 1 + 4 b GiB (1 + b checkpointed), batch 8: micro-batch 2
    without checkpointing, 8 with it (over twice 2): checkpointing is planned AND switched on. A
    recipe with gradient_checkpointing on keeps it even where everything fits without (100 GiB):
    only checkpointed steps are measured and the student is left checkpointing."""
    measured = []
    monkeypatch.setattr(memory_plan, "measure_step", _measure_step(measured, 1.0, 4.0, 1.0))
    phase = Phase(steps=1, lr=1e-3, batch_size=8, losses={})
    trainer, modes, lines = _trainer(RuntimeConfig(memory_budget_gib=10.0))
    planned = memory_plan.plan_phase(trainer, "p", phase, {}, [])
    assert planned.grad_accum == 1 and modes[-1] is True
    assert "micro-batch 8 x accum 1, checkpointing on" in lines[-1]
    measured.clear()
    trainer, modes, lines = _trainer(RuntimeConfig(memory_budget_gib=100.0, gradient_checkpointing=True))
    planned = memory_plan.plan_phase(trainer, "p", phase, {}, [])
    assert planned.grad_accum == 1 and modes[-1] is True and measured and all(c for _, c in measured)
    assert "checkpointing on" in lines[-1]


H200_TOTAL, OUTSIDE, RESERVED = 139.8 * GiB, 0.5 * GiB, 10 * GiB


def test_a_budget_over_the_device_or_eaten_by_outside_memory(monkeypatch):
    """A fake H200 (0.5 GiB held outside the allocator): a 200 GiB budget is the device's own
    memory less what is outside (the allocator cannot be given more than the device: fraction <= 1);
    a budget of exactly the outside 0.5 GiB leaves nothing and is refused in one line."""
    caps = []
    monkeypatch.setattr(
        torch.cuda, "mem_get_info", lambda device=None: (H200_TOTAL - OUTSIDE - RESERVED, H200_TOTAL)
    )
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: RESERVED)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, device=None: caps.append(f))
    cuda = torch.device("cuda", 0)
    budget = memory_plan.bind_budget(cuda, 200 * GiB)
    assert budget.limit == H200_TOTAL - OUTSIDE and all(0 < f <= 1 for f in caps)
    with pytest.raises(TLCMError, match="in use outside this process's allocator, leaving nothing"):
        memory_plan.bind_budget(cuda, OUTSIDE)


def test_checkpointing_is_tried_when_only_the_smallest_micro_batch_fits_without_it():
    """A step of 10 + 4 b GiB (10 + b checkpointed) under 17.5 GiB (15.75 usable), batch 32: only
    micro-batch 1 fits without checkpointing (14 GiB), 4 fits with it (14 GiB; 8 needs 18), over
    twice 1: checkpointing at micro-batch 4."""

    def measure(b, checkpointing):
        return (10 + (1 if checkpointing else 4) * b) * GiB

    plan = plan_micro_batch(32, 17.5 * GiB, measure)
    assert (plan.micro_batch, plan.checkpointing, plan.peak) == (4, True, pytest.approx(14 * GiB))


# ---- a recipe written in Python with wrong types (walkthrough of 2026-12-07) -----------------------


def test_a_python_recipes_wrongly_typed_field_is_one_line_naming_its_flag():
    from recipes import PRESETS
    from tlcm.checks import check_field_types
    from tlcm.losses.mlcd import MLCDConfig

    for recipe in PRESETS.values():  # every shipped preset passes
        check_field_types(recipe, "--recipes")
    full = PRESETS["tlcm-full"]
    mlcd = full.phases["mlcd"]

    def refused(phase, message):
        with pytest.raises(TLCMError, match=message):
            check_field_types(replace(full, phases={"mlcd": phase}), "--recipes")

    refused(replace(mlcd, steps="2"), r"^--recipes\.phases\.mlcd\.steps must be int, got '2' \(str\)$")
    refused(
        replace(mlcd, batch_size=2.0), r"--recipes\.phases\.mlcd\.batch-size must be int, got 2\.0 \(float\)"
    )
    refused(replace(mlcd, steps=True), r"--recipes\.phases\.mlcd\.steps must be int, got True \(bool\)")
    refused(replace(mlcd, lr="1e-4"), r"--recipes\.phases\.mlcd\.lr must be float, got '1e-4' \(str\)")
    refused(
        replace(mlcd, losses={"mlcd": replace(MLCDConfig(), weight="1")}),
        r"--recipes\.phases\.mlcd\.losses\.mlcd\.weight must be float, got '1' \(str\)",
    )
    refused(
        replace(mlcd, losses={"mlcd": MLCDConfig}),
        r"--recipes\.phases\.mlcd\.losses\.mlcd is the class MLCDConfig: write 'mlcd': MLCDConfig\(\)",
    )
    refused(replace(mlcd, losses={"mlcd": {"skip": 3}}), r"losses\.mlcd is a dict, not a LossConfig instance")
    check_field_types(replace(full, phases={"mlcd": replace(mlcd, lr=1)}), "--recipes")  # an int is a float
    runtime = replace(full.runtime, seed="0")
    with pytest.raises(TLCMError, match=r"--recipes\.runtime\.seed must be int, got '0' \(str\)"):
        check_field_types(replace(full, runtime=runtime), "--recipes")


def test_validate_recipe_checks_the_field_types_first():
    from recipes import PRESETS
    from tlcm.checks import validate_recipe

    full = PRESETS["tlcm-full"]
    phase = replace(full.phases["mlcd"], steps="2")
    with pytest.raises(TLCMError, match=r"--recipes\.phases\.mlcd\.steps must be int, got '2' \(str\)"):
        validate_recipe(replace(full, phases={"mlcd": phase}), world_size=1)


def test_a_pipeline_without_load_lora_weights_is_pointed_to_the_merged_export():
    """Walkthrough 11: PixArt's pipeline has no load_lora_weights, yet the kohya refusal and the
    card's diffusers snippet told its users to call it; they now point to --format pipeline."""
    from tlcm.card import _diffusers_use
    from tlcm.checks import check_export_formats, has_lora_loader

    assert has_lora_loader("StableDiffusionXLPipeline") and not has_lora_loader("NoSuchPipeline")
    family = SimpleNamespace(name="mine", kohya=None, pipeline_name="NoSuchPipeline")
    with pytest.raises(TLCMError, match=r"use --f pipeline \(the student merged; NoSuchPipeline has no"):
        check_export_formats(["kohya"], "--f", family=family)
    sd3 = SimpleNamespace(name="sd3", kohya=None, pipeline_name="StableDiffusion3Pipeline")
    with pytest.raises(TLCMError, match=r"use --f diffusers \(its diffusers LoRA loads with pipe"):
        check_export_formats(["kohya"], "--f", family=sd3)
    student = SimpleNamespace(
        base=SimpleNamespace(
            family=SimpleNamespace(pipeline_name="NoSuchPipeline", net="transformer", scheduler="S")
        ),
        config=SimpleNamespace(full_finetune=False),
    )
    text = _diffusers_use(student, "base", "out", 4)
    assert "NoSuchPipeline has no `load_lora_weights`" in text and "--format pipeline" in text
