"""What benchmarks/gpu.py times: training phases through the real ``Trainer.train_step``, the miniature
recipe end to end with its toy scores, and the exported student in a plain diffusers pipeline."""

from __future__ import annotations

import gc
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from recipes.tlcm import tlcm_full, tlcm_full_sdxl
from tlcm.config import Recipe
from tlcm.engine import Trainer

GIB = 2**30
PAPER_ITERATIONS = {"mlcd": 12_000, "lcd": 2_000, "preference": 500, "dmd_gan": 1_000}
"""The paper's iterations per phase (the tlcm-full-sdxl preset's steps)."""
MICRO_BATCH = {
    "sdxl": {"mlcd": 8, "lcd": 8, "preference": 2, "dmd_gan": 2},
    "sd15": {"mlcd": 16, "lcd": 16, "preference": 4, "dmd_gan": 4},
    "tiny": {"mlcd": 1, "lcd": 2, "preference": 2, "dmd_gan": 2},
}
"""Micro-batch per phase (global batch = the preset's, the rest by gradient accumulation): SDXL's
fitted an H200 with gradient checkpointing (../shared/GPU.md); SD1.5 at 512 px takes twice as many."""
TINY_BATCH = 2


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / GIB if device.startswith("cuda") else None


def phase_recipe(model: Path, clip: Path, out: Path, device: str, size: str, timed_steps: int) -> Recipe:
    """``recipes:tlcm-full-sdxl`` on ``model`` with 1 + ``timed_steps`` steps per phase, the preset's batch
    sizes (tiny: 2) split into ``MICRO_BATCH[size]`` micro-batches, gradient checkpointing (not
    tiny), ``clip`` as the PickScore folder; no memory plan (the micro-batches are fixed here);
    nothing written but the student export. Tiny: batch 2, DMD with one fake-score update per step
    (the preset: 5)."""
    base = tlcm_full_sdxl()
    phases = {}
    for name, phase in base.phases.items():
        batch = TINY_BATCH if size == "tiny" else phase.batch_size
        losses = dict(phase.losses)
        if name == "preference":
            losses[name] = replace(losses[name], clip_folder=str(clip))
        if name == "dmd_gan" and size == "tiny":  # the CPU mode's cost is mostly fake-score updates
            losses["dmd"] = replace(losses["dmd"], fake_updates=1)
        accum = batch // MICRO_BATCH[size][name]
        phases[name] = replace(
            phase, steps=1 + timed_steps, batch_size=batch, grad_accum=accum, losses=losses
        )
    runtime = replace(
        base.runtime,
        out_dir=out,
        device=device,
        gradient_checkpointing=size != "tiny",
        memory_plan=False,
        sample_grid=False,
        checkpoint_every=0,
        resume=False,
        eval_samples_per_digit=0,
    )
    return replace(base, model=replace(base.model, path=model), phases=phases, runtime=runtime)


def time_phases(
    recipe: Recipe, device: str, timed_steps: int, allow: Callable[[], bool], report: Callable[[dict], None]
) -> Trainer:
    """Per phase: ``Trainer.build_phase`` (what training does at a phase start), one warm-up step
    under FlopCounterMode (its FLOPs, not timed), then ``timed_steps`` timed ``Trainer.train_step``
    calls; ``report(row)`` after each phase (a phase ``allow()`` refuses is reported skipped; one
    that raises is reported with its error). Returns the Trainer."""
    t0 = time.perf_counter()
    trainer = Trainer(recipe)
    sync(device)
    loaded = {"load_s": time.perf_counter() - t0}
    if device.startswith("cuda"):
        loaded["allocated_after_load_gib"] = torch.cuda.memory_allocated() / GIB
    report({"phase": "(load)", **loaded})
    global_step = 0
    for name, phase in recipe.phases.items():
        row = {"phase": name, "batch": phase.batch_size, "micro_batch": phase.batch_size // phase.grad_accum}
        row["grad_accum"] = phase.grad_accum
        if not allow():
            report({**row, "status": "skipped (time limit)"})
            continue
        try:
            built = trainer.build_phase(name, phase, global_step)
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            counter = FlopCounterMode(display=False)
            start = time.perf_counter()
            with counter:
                trainer.train_step(built, global_step)
            sync(device)
            row["warmup_flop_count_s"] = time.perf_counter() - start
            global_step += 1
            times, finite = [], 0
            for _ in range(timed_steps):
                start = time.perf_counter()
                _, ok = trainer.train_step(built, global_step)
                sync(device)
                times.append(time.perf_counter() - start)
                finite, global_step = finite + bool(ok), global_step + 1
            s = statistics.mean(times)
            flops = counter.get_total_flops()
            row |= {"status": "done", "timed_steps": timed_steps, "finite_steps": finite, "s_per_step": s}
            row |= {
                "step_times_s": times,
                "samples_per_s": phase.batch_size / s,
                "peak_gib": peak_gib(device),
            }
            row |= {"tflop_per_step": flops / 1e12, "achieved_tflop_per_s": flops / s / 1e12}
            iters = PAPER_ITERATIONS[name]
            row |= {"paper_iterations": iters, "projected_hours": s * iters / 3600}
        except Exception as err:  # noqa: BLE001 - an OOM in one phase must not lose the others
            row |= {"status": f"failed: {type(err).__name__}: {str(err)[:300]}"}
            row["traceback"] = traceback.format_exc()[-3000:]
        finally:
            built = counter = None
            free(device)
        report(row)
    return trainer


def miniature_run(device: str, precision: str, out: Path, fraction: float, samples: int, tiny: bool) -> dict:
    """``recipes:tlcm-full`` on the miniature pipeline in ``precision`` ("bf16" / "no"), its steps
    scaled by ``fraction`` (tiny: 2 per phase, batch 2), then its toy scores."""
    from tlcm.engine import train
    from tlcm.toy.scores import student_scores

    base = tlcm_full()
    phases = {
        name: replace(p, steps=2, batch_size=TINY_BATCH)
        if tiny
        else replace(p, steps=max(1, round(p.steps * fraction)))
        for name, p in base.phases.items()
    }
    runtime = replace(
        base.runtime,
        out_dir=out,
        device=device,
        mixed_precision=precision,
        sample_grid=False,
        checkpoint_every=0,
        resume=False,
        eval_samples_per_digit=0,
    )
    recipe = replace(base, phases=phases, runtime=runtime, inference_steps=(1, 2) if tiny else (1, 2, 4, 8))
    start = time.perf_counter()
    run = train(recipe)
    sync(device)
    train_s = time.perf_counter() - start
    steps = sum(p.steps for p in phases.values())
    start = time.perf_counter()
    scores = student_scores(
        run.base, run.student.denoiser(), recipe.inference_steps, samples, student_grid=recipe.student.grid
    )
    row = {
        "precision": "bf16" if precision == "bf16" else "fp32",
        "steps": {n: p.steps for n, p in phases.items()},
    }
    row |= {"train_s": train_s, "steps_per_s": steps / train_s, "eval_s": time.perf_counter() - start}
    row |= {"samples_per_digit": samples, "scores": scores}
    del run
    free(device)
    return row


def _time_call(pipe, device: str, repeats: int, **kwargs) -> dict:
    generator = torch.Generator(device).manual_seed(0)
    call = lambda: pipe("a photo of a cat", output_type="latent", generator=generator, **kwargs)  # noqa: E731
    start = time.perf_counter()
    call()  # warm-up
    sync(device)
    warm = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync(device)
        times.append(time.perf_counter() - start)
    return {"warmup_s": warm, "s_per_image": statistics.median(times), "times_s": times}


def time_inference(sdxl: Path, student: Path, device: str, repeats: int) -> list[dict]:
    """Batch 1 at the pipeline's default size (1024 px full, 32 px tiny), latents out: the student's
    LoRA in a plain StableDiffusionXLPipeline (fp16 on CUDA) with TLCMScheduler, 4 steps, guidance
    0, unfused and fused; the teacher (no LoRA, its own scheduler) at 25 steps with CFG 8."""
    from diffusers import StableDiffusionXLPipeline

    from tlcm.diffusion.scheduler import TLCMScheduler

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl, torch_dtype=dtype, local_files_only=True).to(
        device
    )
    pipe.set_progress_bar_config(disable=True)
    teacher_scheduler = pipe.scheduler
    pipe.load_lora_weights(student)
    pipe.scheduler = TLCMScheduler.from_pretrained(student / "scheduler")
    student_args = {"num_inference_steps": 4, "guidance_scale": 0.0}
    rows = [
        {
            "model": "student, LoRA unfused",
            "steps": 4,
            "cfg": False,
            **_time_call(pipe, device, repeats, **student_args),
        }
    ]
    pipe.fuse_lora()
    rows.append(
        {
            "model": "student, LoRA fused",
            "steps": 4,
            "cfg": False,
            **_time_call(pipe, device, repeats, **student_args),
        }
    )
    pipe.unfuse_lora()
    pipe.unload_lora_weights()
    pipe.scheduler = teacher_scheduler
    teacher = _time_call(pipe, device, repeats, num_inference_steps=25, guidance_scale=8.0)
    rows.append({"model": "teacher", "steps": 25, "cfg": True, **teacher})
    for row in rows:
        row["speedup_vs_teacher"] = teacher["s_per_image"] / row["s_per_image"]
    del pipe
    free(device)
    return rows
