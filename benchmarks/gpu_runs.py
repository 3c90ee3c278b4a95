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

from recipes.tlcm import tlcm_full
from tlcm.config import Recipe
from tlcm.engine import Trainer
from tlcm.toy import MINIATURE_PROMPTS

GIB = 2**30
MICRO_BATCH = {
    "sdxl": {"mlcd": 8, "lcd": 8, "preference": 2, "dmd_gan": 2},
    "sd15": {"mlcd": 16, "lcd": 16, "preference": 4, "dmd_gan": 4},
    "sd3": {"mlcd": 2, "lcd": 2, "preference": 1, "dmd_gan": 1},
    "flux": {"mlcd": 2, "lcd": 2, "preference": 1, "dmd_gan": 1},
    "tiny": {"mlcd": 1, "lcd": 2, "preference": 2, "dmd_gan": 2},
}
"""Micro-batch per phase, with gradient checkpointing. SDXL's fitted an H200 (../shared/GPU.md);
SD1.5 at 512 px takes twice as many. SD3 / FLUX run ONE micro-batch per step (the global batch),
chosen to fit 80 GB surely: their frozen weights alone are 27 / 34 GB in bf16, and a 1024 px
VAE decode with gradients (preference, DMD + GAN) keeps ~12.6 GiB per image (tlcm/models/base.py)."""
TINY_BATCH = 2
TINY_FLOW = {"resolution": 16, "max_sequence_length": 16}
"""Tiny mode on SD3 / FLUX: 16 px images (the presets' 1024 px would be 4096 tokens), 16 T5 tokens."""


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / GIB if device.startswith("cuda") else None


def phase_recipe(
    base: Recipe,
    model: Path,
    clip: Path,
    out: Path,
    device: str,
    timed_steps: int,
    micro: dict[str, int],
    tiny: bool,
    whole: bool = False,
) -> Recipe:
    """The preset ``base`` on ``model`` with 1 + ``timed_steps`` steps per phase, each phase's global
    batch (the preset's; tiny: 2; ``whole``: one micro-batch) split into ``micro[phase]``
    micro-batches, gradient checkpointing (not tiny), ``clip`` as the PickScore folder, no memory
    plan (the micro-batches are fixed here), nothing written but the student export. Tiny: DMD with
    one fake-score update per step (the preset: 5), SD3 / FLUX at ``TINY_FLOW``."""
    phases = {}
    for name, phase in base.phases.items():
        batch = micro[name] if whole else TINY_BATCH if tiny else phase.batch_size
        losses = dict(phase.losses)
        if "preference" in losses:
            losses["preference"] = replace(losses["preference"], clip_folder=str(clip))
        if "dmd" in losses and tiny:  # the CPU mode's cost is mostly fake-score updates
            losses["dmd"] = replace(losses["dmd"], fake_updates=1)
        accum = batch // micro[name]
        phases[name] = replace(
            phase, steps=1 + timed_steps, batch_size=batch, grad_accum=accum, losses=losses
        )
    runtime = replace(
        base.runtime,
        out_dir=out,
        device=device,
        gradient_checkpointing=not tiny,
        memory_plan=False,
        sample_grid=False,
        checkpoint_every=0,
        resume=False,
        eval_samples_per_digit=0,
    )
    flow = TINY_FLOW if tiny and base.model.resolution else {}
    data = (
        replace(base.data, prompts=MINIATURE_PROMPTS) if base.data.on_miniature_prompts(model) else base.data
    )
    model_config = replace(base.model, path=model, pipeline=None, **flow)  # sd15 runs the SDXL phases
    return replace(base, model=model_config, data=data, phases=phases, runtime=runtime)


def term_values(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """``train_step``'s 0-dim terms as floats (one host transfer)."""
    return dict(zip(terms, torch.stack(list(terms.values())).tolist(), strict=True))


def relative_differences(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """|a - b| / max(|a|, |b|) per shared key (0 where both are 0)."""
    return {k: abs(a[k] - b[k]) / max(abs(a[k]), abs(b[k]), 1e-30) for k in a if k in b}


def time_phase(trainer: Trainer, name: str, phase, paper, device: str, step: int, timed_steps: int) -> dict:
    """``Trainer.build_phase`` (what training does at a phase start), one warm-up step at global step
    ``step`` under FlopCounterMode (its FLOPs and logged terms; not timed), then ``timed_steps``
    timed ``Trainer.train_step`` calls (the last one's terms kept too). ``paper``: the preset's phase
    (its batch and steps, the paper's iterations, give ``projected_hours``)."""
    row = {"phase": name, "batch": phase.batch_size, "micro_batch": phase.batch_size // phase.grad_accum}
    start = time.perf_counter()
    built = trainer.build_phase(name, phase, step)
    sync(device)
    row |= {"grad_accum": phase.grad_accum, "build_s": time.perf_counter() - start}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    counter = FlopCounterMode(display=False)
    start = time.perf_counter()
    with counter:
        terms, _ = trainer.train_step(built, step)
    sync(device)
    row["warmup_flop_count_s"] = time.perf_counter() - start
    row["terms"] = term_values(terms)
    times, finite = [], 0
    for i in range(timed_steps):
        start = time.perf_counter()
        terms, ok = trainer.train_step(built, step + 1 + i)
        sync(device)
        times.append(time.perf_counter() - start)
        finite += bool(ok)
    row["last_terms"] = term_values(terms)
    s, flops = statistics.mean(times), counter.get_total_flops()
    row |= {"status": "done", "timed_steps": timed_steps, "finite_steps": finite, "s_per_step": s}
    row |= {
        "step_times_s": times,
        "s_per_sample": s / phase.batch_size,
        "samples_per_s": phase.batch_size / s,
    }
    row |= {
        "peak_gib": peak_gib(device),
        "tflop_per_step": flops / 1e12,
        "achieved_tflop_per_s": flops / s / 1e12,
    }
    row |= {"preset_batch": paper.batch_size, "paper_iterations": paper.steps}
    row["projected_hours"] = row["s_per_sample"] * paper.batch_size * paper.steps / 3600
    return row


def time_phases(
    recipe: Recipe,
    preset: Recipe,
    device: str,
    timed_steps: int,
    allow: Callable[[], bool],
    report: Callable[[dict], None],
) -> Trainer:
    """``Trainer(recipe)`` (its load time), then ``time_phase`` for each phase (``preset``: the
    recipe it was made from); ``report(row)`` after each (a phase ``allow()`` refuses is reported
    skipped; one that raises is reported with its error). Returns the Trainer."""
    t0 = time.perf_counter()
    trainer = Trainer(recipe)
    sync(device)
    loaded = {"load_s": time.perf_counter() - t0}
    if device.startswith("cuda"):
        loaded["allocated_after_load_gib"] = torch.cuda.memory_allocated() / GIB
    report({"phase": "(load)", **loaded})
    global_step = 0
    for name, phase in recipe.phases.items():
        if not allow():
            report({"phase": name, "batch": phase.batch_size, "status": "skipped (time limit)"})
            continue
        try:
            row = time_phase(trainer, name, phase, preset.phases[name], device, global_step, timed_steps)
            global_step += 1 + timed_steps
        except Exception as err:  # noqa: BLE001 - an OOM in one phase must not lose the others
            row = {
                "phase": name,
                "batch": phase.batch_size,
                "status": f"failed: {type(err).__name__}: {str(err)[:300]}",
            }
            row["traceback"] = traceback.format_exc()[-3000:]
        finally:
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
        run.base, run.student.denoiser(), recipe.shown_steps, samples, student_grid=recipe.student.grid
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


PIPELINES = {
    "sdxl": ("StableDiffusionXLPipeline", torch.float16, 0.0, 8.0, True),
    "flux": ("FluxPipeline", torch.bfloat16, 3.5, 3.5, False),
}
"""Per model: the diffusers pipeline, its dtype on CUDA, the student's guidance_scale (SDXL: none;
FLUX.1-dev: its guidance input, what the student is trained with) and the teacher's (SDXL: CFG 8,
two UNet passes per step; FLUX.1-dev: the guidance embedding, one pass), whether the teacher uses CFG."""


def time_inference(kind: str, model: Path, student: Path, device: str, repeats: int, **size) -> list[dict]:
    """Batch 1 at the pipeline's default size (1024 px full; tiny: ``size``), latents out: the
    student's LoRA in a plain diffusers pipeline (``PIPELINES[kind]``; fp32 on the CPU) with its
    exported TLCM scheduler, 4 steps, unfused and fused; the teacher (no LoRA, its own scheduler) at
    25 steps."""
    import diffusers

    import tlcm.diffusion.scheduler
    from tlcm.models.families import FAMILIES

    name, dtype, student_scale, teacher_scale, cfg = PIPELINES[kind]
    dtype = dtype if device.startswith("cuda") else torch.float32
    pipe = (
        getattr(diffusers, name).from_pretrained(model, torch_dtype=dtype, local_files_only=True).to(device)
    )
    pipe.set_progress_bar_config(disable=True)
    teacher_scheduler = pipe.scheduler
    pipe.load_lora_weights(student)
    scheduler = getattr(tlcm.diffusion.scheduler, FAMILIES[name].scheduler)
    pipe.scheduler = scheduler.from_pretrained(student / "scheduler")
    rows = []
    for fused in (False, True):
        if fused:
            pipe.fuse_lora()
        timed = _time_call(pipe, device, repeats, num_inference_steps=4, guidance_scale=student_scale, **size)
        rows.append(
            {"model": f"student, LoRA {'fused' if fused else 'unfused'}", "steps": 4, "cfg": False, **timed}
        )
    pipe.unfuse_lora()
    pipe.unload_lora_weights()
    pipe.scheduler = teacher_scheduler
    teacher = _time_call(pipe, device, repeats, num_inference_steps=25, guidance_scale=teacher_scale, **size)
    rows.append({"model": "teacher", "steps": 25, "cfg": cfg, **teacher})
    for row in rows:
        row["speedup_vs_teacher"] = teacher["s_per_image"] / row["s_per_image"]
    del pipe
    free(device)
    return rows
