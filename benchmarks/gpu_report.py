"""gpu.py's results: the ``Report`` rewritten to OUT/gpu.json and OUT/gpu.md after every update, and
its markdown tables."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from benchmarks.common import provenance, write_results


class Report:
    """The run's results, rewritten to OUT/gpu.json and .md on every ``update``."""

    def __init__(self, args, device: str) -> None:
        self.args, self.start = args, time.perf_counter()
        self.meta = provenance(
            device, torch.get_num_threads(), Path(args.work_dir), "tiny" if args.tiny else "full"
        )
        self.meta |= {"sections": ",".join(args.sections), "time_limit_s": args.time_limit}
        self.data: dict = {"sections": {s: {"status": "pending"} for s in args.sections}}
        self.started_any = False

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allow(self) -> bool:
        """May a new section / phase start? Always the first; then only within the time limit."""
        ok = not self.started_any or self.args.time_limit is None or self.elapsed() < self.args.time_limit
        self.started_any = True
        return ok

    def section(self, name: str) -> dict:
        return self.data["sections"][name]

    def update(self) -> None:
        self.data["elapsed_s"] = round(self.elapsed(), 1)
        write_results(
            "gpu", "GPU benchmark", self.meta, tables(self.data), self.data, notes(), self.args.out, True
        )


def _f(value, fmt: str = "{:.2f}") -> str:
    return "" if value is None else fmt.format(value)


def tables(data: dict) -> list[tuple[str, list[str], list[list]]]:
    """Markdown tables of what is done so far."""
    sections, out = data["sections"], []
    status = [[name, s["status"], _f(s.get("seconds"), "{:.1f}")] for name, s in sections.items()]
    out.append(("Sections", ["section", "status", "seconds"], status))
    if sections.get("build", {}).get("models"):
        rows = [
            [
                k,
                *(_f(v.get(c), "{:.1f}") for c in ("unet", "text_encoder", "text_encoder_2", "vae")),
                _f(v["build_s"], "{:.1f}"),
            ]
            for k, v in sections["build"]["models"].items()
        ]
        out.append(
            (
                "Models built (M parameters)",
                ["model", "unet", "text_encoder", "text_encoder_2", "vae", "build + save s"],
                rows,
            )
        )
    columns = [
        "phase",
        "batch (micro x accum)",
        "s / step",
        "samples / s",
        "peak GiB",
        "TFLOP / step",
        "TFLOP/s",
        "paper iters",
        "projected h",
    ]
    for kind in ("sdxl", "sd15"):
        phases = [r for r in sections.get(kind, {}).get("phases", []) if r["phase"] != "(load)"]
        rows = [
            [r["phase"], f"{r['batch']} ({r['micro_batch']} x {r['grad_accum']})"]
            + (
                [
                    _f(r["s_per_step"]),
                    _f(r["samples_per_s"]),
                    _f(r["peak_gib"], "{:.1f}"),
                    _f(r["tflop_per_step"], "{:.3g}"),
                    _f(r["achieved_tflop_per_s"], "{:.3g}"),
                    r["paper_iterations"],
                    _f(r["projected_hours"], "{:.3g}"),
                ]
                if r.get("status") == "done"
                else [r.get("status", "")] + [""] * 6
            )
            for r in phases
        ]
        load = next((r for r in sections.get(kind, {}).get("phases", []) if r["phase"] == "(load)"), None)
        if load:  # Trainer built: seconds, and GiB allocated (the frozen model) in the peak column
            rows.insert(
                0, ["(load)", "", _f(load["load_s"]), "", _f(load.get("allocated_after_load_gib"), "{:.1f}")]
            )
            rows[0] += [""] * 4
        if rows:
            total = sections[kind].get("projected_hours_total")
            rows.append(["total", "", "", "", "", "", "", "", _f(total, "{:.3g}")])
            out.append((f"{kind.upper()}: tlcm-full-sdxl phases", columns, rows))
    mini = sections.get("miniature", {}).get("runs", [])
    if mini:
        steps = [s["steps"] for s in mini[0]["scores"]]
        cols = ["precision", "train s", "steps / s"] + [f"align / FD @{n}" for n in steps]
        rows = [
            [r["precision"], _f(r["train_s"], "{:.1f}"), _f(r["steps_per_s"])]
            + [f"{s['alignment']:.3f} / {s['fd']:.1f}" for s in r["scores"]]
            for r in mini
        ]
        out.append(("Miniature tlcm-full", cols, rows))
    inf = sections.get("inference", {}).get("rows", [])
    if inf:
        rows = [
            [r["model"], r["steps"], r["cfg"], _f(r["s_per_image"], "{:.3f}"), _f(r["speedup_vs_teacher"])]
            for r in inf
        ]
        out.append(
            (
                "SDXL inference, batch 1, latents out",
                ["model", "steps", "CFG", "s / image", "x teacher"],
                rows,
            )
        )
    return out


def notes() -> list[str]:
    return [
        "Random weights: timings and memory are those of the real architectures, not of trained models.",
        "s / step: mean of the timed Trainer.train_step calls after one warm-up step; the warm-up step ran "
        "under torch.utils.flop_counter.FlopCounterMode, which gave TFLOP / step (matmul, conv, attention; "
        "with gradient checkpointing the recomputed forward is counted too).",
        "projected h = s / step x the paper's iterations (12k / 2k / 500 / 1k).",
        "Preference phase: a tiny random CLIP folder stands in for PickScore; DMD + GAN: the preset's timm "
        "resnet18 discriminator on decoded pixels. SD1.5 runs the same four phases (its own micro-batches).",
        "Tiny mode (CPU): tlcm/toy/tiny.py models, batch 2, DMD with 1 fake-score update (not 5); "
        "its numbers only show that every field is produced.",
    ]
