"""Peak memory of training steps (MLCD: LoRA student vs full fine-tune; DMD: LoRA fake score vs a
full copy) and the base-UNet weight copies held in memory. Each configuration runs in a fresh
subprocess (``--worker NAME``).

CPU: resident set size (psutil), its peak (VmHWM, reset through /proc/self/clear_refs after the
Trainer is built, so the peak is that of the training steps; ru_maxrss as fallback). CUDA:
torch.cuda.max_memory_allocated over the steps (reset after the Trainer is built).
Copies of the base UNet: every UNet2DConditionModel alive in the process (gc) is found; the unique
data_ptrs of their base (non-LoRA) weights divided by the tensors of one UNet = copies held. Bytes
of all module parameters / buffers, gradients and optimizer state alive at the last step are
added up by unique storage.

    .venv/bin/python -m benchmarks.memory [--steps 2] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import psutil
import torch

from benchmarks.common import (
    add_common_args,
    console,
    provenance,
    resolve_model,
    setup_torch,
    show_table,
    shrink,
    write_results,
)

CONFIGS = {
    "lora": (False, "mlcd", {}),
    "full": (True, "mlcd", {}),
    "lora+dmd": (False, "dmd", {"fake_updates": 1}),
    "lora+dmd-full-fake": (False, "dmd", {"fake_updates": 1, "fake_score": "full"}),
}
"""Configuration name -> (StudentConfig.full_finetune, the phase's one loss, its overrides): MLCD
with a LoRA / full student, DMD with its default LoRA fake score / a full-copy fake score."""
MIB = 2**20
MARK = "MEMORY-RESULT "


def _vm_hwm() -> int | None:
    try:
        return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
    except (OSError, AttributeError):
        return None


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _storage(t: torch.Tensor) -> tuple[int, int]:
    return t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()


def inventory() -> dict:
    """UNet weight copies and bytes by kind (unique storages) of everything alive now."""
    from diffusers import UNet2DConditionModel

    with warnings.catch_warnings():  # isinstance on deprecated torch objects warns
        warnings.simplefilter("ignore")
        objects = gc.get_objects()
        unets = [o for o in objects if isinstance(o, UNet2DConditionModel)]
        modules = [o for o in objects if isinstance(o, torch.nn.Module)]
        optimizers = [o for o in objects if isinstance(o, torch.optim.Optimizer)]
    base_ptrs, per_unet, unet_bytes = set(), [], 0
    for unet in unets:
        base = [p for n, p in unet.named_parameters() if "lora_" not in n]
        per_unet.append(len(base))
        unet_bytes = sum(p.numel() * p.element_size() for p in base)
        base_ptrs.update(p.data_ptr() for p in base)
    weights, trainable, grads = {}, {}, {}
    for m in modules:
        for p in m.parameters(recurse=False):
            weights.update([_storage(p)])
            if p.requires_grad:
                trainable.update([_storage(p)])
            if p.grad is not None:
                grads.update([_storage(p.grad)])
        for b in m.buffers(recurse=False):
            weights.update([_storage(b)])
    opt_state = {}
    for o in optimizers:
        for state in o.state.values():
            opt_state.update(_storage(v) for v in state.values() if torch.is_tensor(v) and v.dim() > 0)
    return {
        "unet_modules_alive": len(unets),
        "base_weight_tensors_per_unet": per_unet[0] if per_unet else 0,
        "unique_base_weight_data_ptrs": len(base_ptrs),
        "base_unet_copies": len(base_ptrs) / per_unet[0] if per_unet else 0,
        "one_base_unet_mib": unet_bytes / MIB,
        "module_weights_mib": sum(weights.values()) / MIB,
        "trainable_mib": sum(trainable.values()) / MIB,
        "trainable_tensors": len(trainable),
        "grads_mib": sum(grads.values()) / MIB,
        "optimizer_state_mib": sum(opt_state.values()) / MIB,
        "weight_ptrs": set(weights),
    }


def worker(args) -> None:
    """Train ``args.steps`` steps of the configuration in this process; print one JSON line."""
    from recipes.tlcm import mlcd
    from tlcm.engine import Trainer
    from tlcm.losses import loss_config

    device = setup_torch(args.threads, args.device)
    model, _ = resolve_model(args.model)
    proc = psutil.Process()
    rss_start = proc.memory_info().rss
    with tempfile.TemporaryDirectory() as tmp:
        recipe = shrink(
            mlcd(),
            model,
            Path(tmp) / "run",
            args.steps,
            args.batch_size,
            device,
            full_finetune=CONFIGS[args.worker][0],
        )
        _, loss, overrides = CONFIGS[args.worker]
        phase = replace(recipe.phases["mlcd"], losses={loss: loss_config(loss, **overrides)})
        recipe = replace(recipe, phases={"mlcd": phase})
        trainer = Trainer(recipe)
        gc.collect()
        rss_loaded = proc.memory_info().rss
        hwm_reset = _reset_hwm()
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.synchronize()
            cuda_loaded = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        real_step, found = trainer.train_step, {}

        def step(built, global_step):
            saved: dict[int, int] = {}

            def pack(t: torch.Tensor) -> torch.Tensor:
                saved.update([_storage(t)])
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                out = real_step(built, global_step)
            if global_step == args.steps - 1:  # the optimizer, its state and the grads are alive here
                found.update(inventory())
                weight_ptrs = found.pop("weight_ptrs")
                activations = {k: v for k, v in saved.items() if k not in weight_ptrs}
                found["saved_activations_mib"] = sum(activations.values()) / MIB
            return out

        trainer.train_step = step
        trainer.run()
        result = {
            "config": args.worker,
            "rss_after_imports_mib": rss_start / MIB,
            "rss_after_trainer_mib": rss_loaded / MIB,
            "peak_rss_during_steps_mib": (_vm_hwm() or 0) / MIB if hwm_reset else None,
            "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB,
            **found,
        }
        if cuda:
            torch.cuda.synchronize()
            result["cuda_allocated_after_trainer_mib"] = cuda_loaded / MIB
            result["cuda_max_allocated_during_steps_mib"] = torch.cuda.max_memory_allocated() / MIB
    print(MARK + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_args(parser)
    parser.add_argument("--steps", type=int, default=2, help="training steps per configuration (default 2)")
    parser.add_argument(
        "--batch-size", type=int, default=16, help="training batch B (default 16, the recipe's)"
    )
    parser.add_argument("--worker", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    device = setup_torch(args.threads, args.device)
    model, label = resolve_model(args.model)
    meta = provenance(device, args.threads, model, label)
    results = []
    for name in CONFIGS:
        console.print(f"[bold]{name}[/]: fresh subprocess, {args.steps} steps x batch {args.batch_size}")
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.memory",
            "--worker",
            name,
            "--model",
            str(model),
            "--threads",
            str(args.threads),
            "--device",
            device,
            "--steps",
            str(args.steps),
            "--batch-size",
            str(args.batch_size),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
        if proc.returncode or not lines:
            console.print(proc.stdout[-3000:], proc.stderr[-3000:])
            raise SystemExit(f"worker {name} failed (exit {proc.returncode})")
        results.append(json.loads(lines[-1][len(MARK) :]))
    columns = ["measure"] + [f"{r['config']} student" for r in results]

    def row(label: str, key: str, fmt: str = "{:.1f}") -> list[str]:
        return [label] + ["n/a" if r.get(key) is None else fmt.format(r[key]) for r in results]

    rows = [
        row("base-UNet weight copies held", "base_unet_copies", "{:g}"),
        row("UNet2DConditionModel objects alive", "unet_modules_alive", "{:d}"),
        row("unique base-weight data_ptrs / tensors per UNet", "unique_base_weight_data_ptrs", "{:d}"),
        row("one base UNet's weights, MiB", "one_base_unet_mib", "{:.2f}"),
        row("all module weights + buffers (UNets, VAE, text encoder), MiB", "module_weights_mib"),
        row("trainable parameters, MiB", "trainable_mib", "{:.2f}"),
        row("gradients, MiB", "grads_mib", "{:.2f}"),
        row("AdamW state, MiB", "optimizer_state_mib", "{:.2f}"),
        row("tensors saved for backward in the step (not weights), MiB", "saved_activations_mib"),
        row("RSS after imports, MiB", "rss_after_imports_mib"),
        row("RSS after Trainer built, MiB", "rss_after_trainer_mib"),
        row("peak RSS during the steps, MiB", "peak_rss_during_steps_mib"),
        row("peak RSS of the process (ru_maxrss), MiB", "ru_maxrss_mib"),
        ["peak RSS during the steps - RSS after Trainer, MiB"]
        + [
            "n/a"
            if r.get("peak_rss_during_steps_mib") is None
            else f"{r['peak_rss_during_steps_mib'] - r['rss_after_trainer_mib']:.1f}"
            for r in results
        ],
    ]
    rows[2] = [rows[2][0]] + [
        f"{r['unique_base_weight_data_ptrs']} / {r['base_weight_tensors_per_unet']}" for r in results
    ]
    if any("cuda_max_allocated_during_steps_mib" in r for r in results):
        rows += [
            row("CUDA allocated after Trainer built, MiB", "cuda_allocated_after_trainer_mib"),
            row("CUDA max allocated during the steps, MiB", "cuda_max_allocated_during_steps_mib"),
        ]
    notes = [
        f"{args.steps} steps (MLCD mds or DMD) x batch {args.batch_size}, a fresh process per configuration; "
        f"{meta['device']}, {meta['threads']} torch thread(s)",
        "LoRA: the student and the teacher are the same UNet object (adapters toggled), so one copy of "
        "the base weights; full fine-tune: a deep copy is trained and the base UNet is the teacher, so two",
        "RSS includes the Python/torch runtime, the VAE and the text encoder; the model-attributable part "
        "is the byte inventory rows (unique storages alive at the last step; saved-for-backward tensors "
        "counted by torch.autograd.graph.saved_tensors_hooks during the last step)",
    ]
    title = (
        "Training-step memory: LoRA vs full fine-tune, DMD fake score LoRA vs full copy "
        f"({label} pipeline, B = {args.batch_size})"
    )
    show_table(title, columns, rows)
    for n in notes:
        console.print(f"- {n}")
    write_results("memory", title, meta, [(title, columns, rows)], {"results": results}, notes)


if __name__ == "__main__":
    main()
