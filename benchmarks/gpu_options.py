"""benchmarks/gpu.py's "options" section, on the SDXL folder: (a) the DMD + GAN phase with the
product's default discriminator (timm resnet18 on decoded pixels; the preset's is the teacher-feature
one) and (b) the preference phase in Diffusion-DPO mode, one timed step
each; (c) DMD + GAN with gradient checkpointing on and off, two fresh Trainers at the same global
step (same seeds): their logged terms, the terms' relative differences, peak memory, s / step;
(d) the memory plan's choice for each phase of ``recipes:tlcm-full-sdxl`` as shipped, and how long
planning took."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.gpu_runs import MICRO_BATCH, free, phase_recipe, relative_differences, sync, time_phases
from recipes.tlcm import tlcm_full_sdxl
from tlcm.config import Recipe
from tlcm.engine import Trainer
from tlcm.losses.gan import GANConfig

PLAN_BUDGET_GIB = 79.0
"""The memory plan's budget on CUDA: an 80 GB H100 / A100 as torch sees it (79.1-79.2 GiB)."""
VARIANTS = {"dmd_gan": "timm pixel GAN", "preference": "Diffusion-DPO"}


def option_preset() -> Recipe:
    """tlcm-full-sdxl's DMD + GAN phase with the product's default discriminator (``GANConfig()``
    at the preset's discriminator lr and weight: a frozen random-init timm resnet18 with trainable
    heads on decoded images resized to 64 px, clean inputs; the VAE decode with gradients is its
    cost) and its preference phase in "dpo" mode (same reward model, batch and iterations)."""
    base = tlcm_full_sdxl()
    dmd, pref = base.phases["dmd_gan"], base.phases["preference"]
    preset = dmd.losses["gan"]
    gan = GANConfig(weight=preset.weight, disc_lr=preset.disc_lr)
    dpo = replace(pref.losses["preference"], mode="dpo")
    phases = {
        "dmd_gan": replace(dmd, losses={**dmd.losses, "gan": gan}),
        "preference": replace(pref, losses={"preference": dpo}),
    }
    return replace(base, phases=phases)


def checkpointing_runs(model: Path, clip: Path, work: Path, device: str, tiny: bool) -> dict:
    """The preset's DMD + GAN phase at batch 1 (one micro-batch), gradient checkpointing on, then
    off: each a fresh Trainer, its warm-up step at global step 0 and one timed step at step 1 (terms
    logged; the two runs draw the same numbers, so the terms differ only by what checkpointing changes)."""
    base = tlcm_full_sdxl()
    base = replace(base, phases={"dmd_gan": base.phases["dmd_gan"]})
    out: dict = {}
    for on in (True, False):
        recipe = phase_recipe(
            base, model, clip, work / f"run-ckpt-{on}", device, 1, {"dmd_gan": 1}, tiny, True
        )
        recipe = replace(recipe, runtime=replace(recipe.runtime, gradient_checkpointing=on))
        rows: list[dict] = []
        time_phases(recipe, base, device, 1, lambda: True, rows.append)  # the Trainer is dropped
        free(device)
        out["on" if on else "off"] = {**rows[-1], "load_s": rows[0]["load_s"]}
    if all(out[k]["status"] == "done" for k in ("on", "off")):
        for key, step in (("terms", 0), ("last_terms", 1)):
            out[f"relative_difference_step{step}"] = relative_differences(out["on"][key], out["off"][key])
    return out


def memory_plans(model: Path, clip: Path, work: Path, device: str, tiny: bool) -> list[dict]:
    """``Trainer.build_phase`` of each phase of the preset as shipped (its batches, grad_accum 1,
    checkpointing off, the memory plan on; on CUDA with a budget of ``PLAN_BUDGET_GIB``; on the CPU
    no plan is made): the micro-batch, accumulation and checkpointing it leaves, the plan's line,
    and the seconds of the build (the losses' construction and the plan's measured steps)."""
    base = tlcm_full_sdxl()
    whole = {name: phase.batch_size for name, phase in base.phases.items()}  # grad_accum 1: planned
    recipe = phase_recipe(base, model, clip, work / "run-plan", device, 0, whole, tiny, True)
    cuda = device.startswith("cuda")
    runtime = replace(
        recipe.runtime,
        memory_plan=True,
        memory_budget_gib=PLAN_BUDGET_GIB if cuda else None,
        gradient_checkpointing=base.runtime.gradient_checkpointing,
    )
    trainer = Trainer(replace(recipe, runtime=runtime))
    lines: list[str] = []
    show = trainer.reporter.print

    def keep(line: str) -> None:  # the plan says what it chose in one printed line
        lines.append(line)
        show(line)

    trainer.reporter.print = keep
    rows = []
    try:
        for name, phase in recipe.phases.items():
            lines.clear()
            row: dict = {"phase": name, "batch": phase.batch_size}
            start = time.perf_counter()
            try:
                built = trainer.build_phase(name, phase, 0)
                sync(device)
                accum = built.phase.grad_accum
                row |= {"status": "done", "plan_s": time.perf_counter() - start, "grad_accum": accum}
                row |= {"micro_batch": phase.batch_size // accum}
                row["checkpointing"] = trainer.student.net.is_gradient_checkpointing
                row["plan"] = next((line for line in lines if line.startswith("memory plan")), None)
                del built
            except Exception as err:  # noqa: BLE001 - a phase that does not fit: say so, plan the next
                row["status"] = f"failed: {type(err).__name__}: {str(err)[:300]}"
            free(device)
            rows.append(row)
    finally:
        del trainer
        free(device)
        if cuda:  # the budget capped this process's allocator: lift the cap for what follows
            torch.cuda.set_per_process_memory_fraction(1.0)
    return rows


def run_options(
    sec: dict, model: Path, clip: Path, work: Path, device: str, tiny: bool, allow: Callable[[], bool], update
) -> None:
    """(a) - (d) into ``sec`` ("phases", "checkpointing", "memory_plan"), ``update()`` after each; a
    part ``allow()`` refuses is recorded as skipped."""
    sec["phases"] = []

    def add(row: dict) -> None:
        sec["phases"].append({**row, "variant": VARIANTS.get(row["phase"], "")})
        update()

    base = option_preset()
    micro = MICRO_BATCH["tiny" if tiny else "sdxl"]
    recipe = phase_recipe(base, model, clip, work / "run-options", device, 1, micro, tiny)
    time_phases(recipe, base, device, 1, allow, add)  # the Trainer is dropped
    free(device)
    for key, part in (("checkpointing", checkpointing_runs), ("memory_plan", memory_plans)):
        sec[key] = part(model, clip, work, device, tiny) if allow() else "skipped (time limit)"
        update()
