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


Table = tuple[str, list[str], list[list]]
PHASE_COLUMNS = ["phase", "batch (micro x accum)", "s / step", "s / sample", "peak GiB", "TFLOP / step"]
PHASE_COLUMNS += ["TFLOP/s", "preset batch x iters", "projected h"]
TRAINING = {
    "sdxl": "SDXL: tlcm-full-sdxl phases",
    "flux": "FLUX.1-dev: tlcm-full-flux phases, one micro-batch per step",
    "sd3": "SD3.5-Large: tlcm-full-sd3 phases, one micro-batch per step",
    "sd15": "SD1.5: tlcm-full-sdxl phases",
}
INFERENCE = {"inference": "SDXL", "flux-inference": "FLUX.1-dev"}


def tables(data: dict) -> list[Table]:
    """Markdown tables of what is done so far. A section whose tables cannot be made (a half-written
    row of a failed run) gets one row naming the error instead: the report is rewritten after every
    phase, and an exception here would end the benchmark and lose every later section."""
    sections = data["sections"]
    status = [[name, s["status"], _f(s.get("seconds"), "{:.1f}")] for name, s in sections.items()]
    out = [("Sections", ["section", "status", "seconds"], status)]
    out += _models(data.get("models", {}))
    for name, sec in sections.items():
        try:
            out += _section_tables(name, sec)
        except Exception as err:  # noqa: BLE001 - keep the report writable, name what failed
            error = f"{type(err).__name__}: {err}; its raw values are in gpu.json"
            out.append((f"{name}: tables not made", ["error"], [[error]]))
    return out


def _section_tables(name: str, sec: dict) -> list[Table]:
    out: list[Table] = []
    if name in TRAINING:
        out += _phases(TRAINING[name], sec)
        out += _large_facts(name, sec)
    elif name in INFERENCE:
        out += _inference(f"{INFERENCE[name]} inference, batch 1, latents out", sec.get("rows", []))
    elif name == "options":
        out += _phases("SDXL options: one timed step each", sec)
        out += _checkpointing(sec.get("checkpointing"))
        out += _memory_plan(sec.get("memory_plan"))
    elif name == "miniature":
        out += _miniature(sec.get("runs", []))
    elif name == "speed":
        backend = sec.get("compile_backend", "inductor")
        for key, title in SPEED.items():
            out += _speed(
                title + ("" if backend == "inductor" else f" (compiled: {backend})"), sec.get(key, [])
            )
        out += _projections(sec.get("sdxl_mlcd", []))
    return out


def _models(models: dict) -> list[Table]:
    if not models:
        return []
    columns = [
        "model",
        "denoiser",
        "text encoders",
        "vae",
        "published",
        "dtype",
        "saved GB",
        "build + save s",
    ]
    rows = []
    for kind, m in models.items():
        net = m.get("unet", m.get("transformer"))
        texts = " + ".join(_f(v, "{:.5g}") for k, v in sorted(m.items()) if k.startswith("text_encoder"))
        rows.append(
            [kind, _f(net, "{:.5g}"), texts, _f(m["vae"], "{:.5g}"), _f(m.get("expected_net"), "{:.0f}")]
        )
        rows[-1] += [m["dtype"], _f(m["saved_gb"], "{:.3g}"), _f(m["build_s"], "{:.1f}")]
    return [("Models built (M parameters)", columns, rows)]


def _phases(title: str, sec: dict) -> list[Table]:
    rows = []
    for r in sec.get("phases", []) if isinstance(sec.get("phases"), list) else []:
        if r["phase"] == "(load)":  # Trainer built: seconds, and GiB allocated (the frozen model) as peak
            rows.append(["(load)", "", _f(r["load_s"]), "", _f(r.get("allocated_after_load_gib"), "{:.1f}")])
            rows[-1] += [""] * 4
            continue
        name = f"{r['phase']} ({r['variant']})" if r.get("variant") else r["phase"]
        if r.get("status") != "done":
            rows.append([name, r.get("batch", ""), r.get("status", "")] + [""] * 6)
            continue
        rows.append([name, f"{r['batch']} ({r['micro_batch']} x {r['grad_accum']})", _f(r["s_per_step"])])
        rows[-1] += [_f(r["s_per_sample"]), _f(r["peak_gib"], "{:.1f}"), _f(r["tflop_per_step"], "{:.3g}")]
        rows[-1] += [
            _f(r["achieved_tflop_per_s"], "{:.3g}"),
            f"{r['preset_batch']} x {r['paper_iterations']}",
        ]
        rows[-1].append(_f(r["projected_hours"], "{:.3g}"))
    if rows and "projected_hours_total" in sec:
        rows.append(["total", "", "", "", "", "", "", "", _f(sec["projected_hours_total"], "{:.3g}")])
    return [(title, PHASE_COLUMNS, rows)] if rows else []


def _large_facts(kind: str, sec: dict) -> list[Table]:
    cache = sec.get("embedding_cache")
    if not cache:
        return []
    row = [sec["fsdp_requested"], sec["sharded"], _f(cache["bytes"] / 1e6, "{:.1f}"), cache["chunk_files"]]
    columns = ["preset's fsdp", "sharded (1 process)", "embedding store MB", "chunk files"]
    return [(f"{kind.upper()}: FSDP and the embedding store on disk", columns, [row])]


def _inference(title: str, rows: list[dict]) -> list[Table]:
    if not rows:
        return []
    columns = ["model", "steps", "CFG", "s / image", "x teacher"]
    cells = [
        [r["model"], r["steps"], r["cfg"], _f(r["s_per_image"], "{:.3f}"), _f(r["speedup_vs_teacher"])]
        for r in rows
    ]
    return [(title, columns, cells)]


def _checkpointing(runs) -> list[Table]:
    title = "SDXL DMD + GAN at batch 1, checkpointing on vs off"
    if not isinstance(runs, dict):
        return [] if runs is None else [(title, ["status"], [[runs]])]
    on, off = runs["on"], runs["off"]
    first, second = runs.get("relative_difference_step0", {}), runs.get("relative_difference_step1", {})
    rows = [["status", on["status"], off["status"], "", ""]]
    for key, label in (("s_per_step", "s / step"), ("peak_gib", "peak GiB")):
        rows.append([label, _f(on.get(key), "{:.3g}"), _f(off.get(key), "{:.3g}"), "", ""])
    for key, value in on.get("terms", {}).items():
        rows.append([key, _f(value, "{:.6g}"), _f(off.get("terms", {}).get(key), "{:.6g}")])
        rows[-1] += [_f(first.get(key), "{:.2e}"), _f(second.get(key), "{:.2e}")]
    columns = ["quantity", "checkpointing on (step 0)", "off (step 0)", "rel. diff. step 0", "step 1"]
    return [(title, columns, rows)]


def _memory_plan(rows) -> list[Table]:
    if not isinstance(rows, list):
        return [] if rows is None else [("SDXL memory plan (the preset as shipped)", ["status"], [[rows]])]
    columns = ["phase", "batch", "micro x accum", "checkpointing", "plan s", "plan"]
    cells = [
        [
            r["phase"],
            r["batch"],
            f"{r['micro_batch']} x {r['grad_accum']}",
            r["checkpointing"],
            _f(r["plan_s"]),
        ]
        + [r["plan"] or "no plan (CPU)"]
        if r["status"] == "done"
        else [r["phase"], r["batch"], r["status"], "", "", ""]
        for r in rows
    ]
    return [("SDXL memory plan (the preset as shipped)", columns, cells)]


SPEED = {
    "sdxl_mlcd": "Speed: SDXL MLCD, one micro-batch of 8, checkpointed",
    "miniature_mlcd": "Speed: miniature MLCD (recipes:mlcd, batch 16)",
}
SPEED_COLUMNS = ["variant", "s / step", "samples / s", "x eager", "peak GiB", "first step s"]
SPEED_COLUMNS += ["net evals / step", "host syncs / step", "max term rel. diff.", "graph captures"]


def _projections(rows: list[dict]) -> list[Table]:
    """The paper's SDXL MLCD phase (12k x 32 samples) in hours at each row's speed."""
    cells = []
    for r in rows:
        if r.get("status") == "done" and "projected_mlcd_hours" in r:
            with_cache = r.get("projected_mlcd_hours_with_cache", {})
            extra = ", ".join(f"{h:.3g} at {uses} uses" for uses, h in with_cache.items())
            cells.append([r["variant"], _f(r["projected_mlcd_hours"], "{:.3g}"), extra])
    columns = ["variant", "training h", "with the cache's build (uses per trajectory)"]
    return [("Projected: the paper's SDXL MLCD phase on this GPU", columns, cells)] if cells else []


def _captures(row: dict) -> str:
    """Graph captures of a row (its host-sync count includes those of the step it counted in)."""
    if "graph_captures" not in row:
        return ""
    return f"{row['graph_captures']} ({row.get('captures_in_sync_count_step', 0)} in the sync-counted step)"


def _speed(title: str, rows: list[dict]) -> list[Table]:
    cells = []
    for r in rows:
        if r.get("status") != "done":
            cells.append([r["variant"], r.get("status", "")] + [""] * (len(SPEED_COLUMNS) - 2))
            continue
        cells.append([r["variant"], _f(r["s_per_step"], "{:.3g}"), _f(r["samples_per_s"], "{:.3g}")])
        cells[-1] += [
            _f(r.get("speedup_vs_eager")),
            _f(r["peak_gib"], "{:.1f}"),
            _f(r["first_step_s"], "{:.1f}"),
        ]
        cells[-1] += [
            _f(r["denoiser_evals_per_step"], "{:.0f}"),
            _f(r["host_syncs_per_step"], "{}"),
            _f(r.get("max_term_rel_diff"), "{:.1e}"),
            _captures(r),
        ]
    return [(title, SPEED_COLUMNS, cells)] if cells else []


def _miniature(runs: list[dict]) -> list[Table]:
    if not runs:
        return []
    steps = [s["steps"] for s in runs[0]["scores"]]
    columns = ["precision", "train s", "steps / s"] + [f"align / FD @{n}" for n in steps]
    rows = []
    for r in runs:
        if "train_s" not in r:  # the fp32 run the time limit refused: say so, not blank cells
            rows.append([r["precision"], r.get("status", "")] + [""] * (len(columns) - 2))
            continue
        rows.append(
            [r["precision"], _f(r.get("train_s"), "{:.1f}"), _f(r.get("steps_per_s"))]
            + [f"{s['alignment']:.3f} / {s['fd']:.1f}" for s in r["scores"]]
        )
    return [("Miniature tlcm-full", columns, rows)]


def notes() -> list[str]:
    return [
        "Random weights: timings and memory are those of the real architectures, not of trained models.",
        "s / step: mean of the timed Trainer.train_step calls after one warm-up step (SDXL / SD1.5: --steps, "
        "default 2; SD3 / FLUX and the options: 1); the warm-up step ran under "
        "torch.utils.flop_counter.FlopCounterMode, which gave TFLOP / step (matmul, conv, attention; with "
        "gradient checkpointing the recomputed forward is counted too) and the logged terms.",
        "projected h = s / sample x the preset's batch x the paper's iterations (the preset's steps: "
        "12k / 2k / 500 / 1k at batches 32 / 32 / 8 / 4): the preset's batch at the measured s / sample. "
        "SDXL / SD1.5 run the preset's batch (micro-batches of gpu_runs.MICRO_BATCH, with gradient "
        "accumulation); SD3 / FLUX run one micro-batch per step (MICRO_BATCH: 2 / 2 / 1 / 1), all with "
        "gradient checkpointing and no memory plan.",
        "SD3 / FLUX: text embeddings cached on disk (data.embedding_cache; the 40 miniature prompts: one "
        "chunk); (load) s includes hashing the text encoders for the cache's fingerprint. The FLUX preset "
        "asks for FSDP; with one process the Trainer ignores it (sharded: False).",
        "Preference phase: a tiny random CLIP folder stands in for PickScore; DMD + GAN: the preset's "
        "teacher-feature discriminator (the frozen network's features on latents re-noised up to t = 500, "
        "trainable heads). SD1.5 runs the same four phases (its own micro-batches).",
        "Options (SDXL): the product's default GAN (a frozen random timm resnet18 on decoded pixels "
        "resized to 64 px, trainable heads) and Diffusion-DPO at the preset's batches; checkpointing on "
        "vs off: two fresh Trainers, the preset's DMD + GAN at batch 1, terms of global steps 0 and 1 (same "
        "seeds), s / step of step 1; memory plan: build_phase of the preset as shipped (plan on, budget "
        "79 GiB on CUDA: an 80 GB card), plan s includes building the phase's losses.",
        "Inference: the exported LoRA in a plain diffusers pipeline with its TLCM scheduler, 4 steps, vs the "
        "teacher's 25 (SDXL: CFG 8; FLUX.1-dev: guidance 3.5 through its guidance embedding, no CFG); SDXL "
        "fp16, FLUX bf16; a FLUX student trained 2 steps per phase by the flux section (else untrained).",
        "Speed: every variant trains at lr 0 (same weights and draws at each global step), 2 untimed "
        "warm-up steps (first step s: compilation included), 1 step with host syncs counted (CUDA sync "
        "debug mode), then the timed steps (median); max term rel. diff.: the first timed step's logged "
        "terms against eager's. SDPA backends are forced for the whole step (torch.nn.attention."
        "sdpa_kernel), the recomputation in backward included. The trajectory-cache row trains on its "
        "8 prompts (other states: not compared); net evals / step counts samples through the network.",
        "Tiny mode (CPU): tlcm/toy/tiny.py models, batch 2 (SD3 / FLUX: one micro-batch, 16 px, 16 T5 "
        "tokens), DMD with 1 fake-score update (not 5), no memory plan (it measures CUDA memory); its "
        "numbers only show that every field is produced.",
    ]
