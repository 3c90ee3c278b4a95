"""The GPU benchmark: full-size random-weight SDXL, SD1.5, SD3.5-Large and FLUX.1-dev built in code,
each phase of their presets (``recipes:tlcm-full-sdxl``, ``-sd3``, ``-flux``) timed through the real
``Trainer.train_step`` (s/step, s/sample, peak GiB, achieved TFLOP/s, projected hours for the paper's
iterations), options on SDXL (timm pixel GAN, Diffusion-DPO, DMD with gradient checkpointing on
vs off, the memory plan's choices), the exported SDXL and FLUX students in plain diffusers pipelines
(4 steps, LoRA fused / unfused) against their teachers' 25 steps, and the miniature
``recipes:tlcm-full`` in bf16 and fp32 with its toy scores.

Sections (``--sections``, run in the order of ``SECTIONS``, the most wanted first: a time limit
drops the last): build, sdxl, inference, speed, flux, options, sd3, flux-inference, miniature, sd15. Results
go to OUT/gpu.json and OUT/gpu.md after every phase (a timeout keeps what was done); no new section
or phase starts once ``--time-limit`` seconds have passed. ``--tiny`` (implied by ``--device cpu``)
uses the tiny pipelines of tlcm/toy/tiny.py, 1 timed step per phase and batch 2: the CPU mode
tests/test_gpu_benchmark.py runs. From the repository root:

    python -m benchmarks.gpu --out "$OUT" --time-limit 330      # on a GPU (benchmarks/gpu_check.sh)
    .venv/bin/python -m benchmarks.gpu --device cpu              # tiny CPU mode: TMPDIR/tlcm-gpu-bench-tiny
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.common import RESULTS, console, show_table
from benchmarks.gpu_models import (
    BUILT,
    EXPECTED_NET_PARAMS,
    SAVE_DTYPE,
    build_folder,
    folder_bytes,
    pickscore_folder,
)
from benchmarks.gpu_options import run_options
from benchmarks.gpu_report import Report, tables
from benchmarks.gpu_runs import (
    MICRO_BATCH,
    TINY_FLOW,
    free,
    miniature_run,
    phase_recipe,
    sync,
    time_inference,
    time_phases,
)
from benchmarks.gpu_speed import run_speed
from recipes.tlcm import tlcm_full_flux, tlcm_full_sd3, tlcm_full_sdxl

SECTIONS = ("build", "sdxl", "inference", "speed", "flux", "options", "sd3", "flux-inference", "miniature")
SECTIONS += ("sd15",)
"""In the order they run: the most wanted first, since a time limit drops the last."""
NEEDS = {"sdxl": "sdxl", "inference": "sdxl", "speed": "sdxl", "options": "sdxl", "flux": "flux"}
NEEDS |= {"flux-inference": "flux"}
NEEDS |= {"sd3": "sd3", "sd15": "sd15"}
"""The model folder each section runs on; "build" makes those of the selected sections."""
PRESETS = {"sdxl": tlcm_full_sdxl, "sd15": tlcm_full_sdxl, "sd3": tlcm_full_sd3, "flux": tlcm_full_flux}
"""The recipe each training section times (SD1.5 runs the SDXL preset's phases)."""
LARGE = ("sd3", "flux")
LARGE_TIMED_STEPS = 1
"""SD3 / FLUX: one timed step per phase, of one micro-batch (their steps take seconds each)."""


class Bench:
    """One run: its arguments, report and work folder; model folders built on demand (``ensure``)."""

    def __init__(self, args: argparse.Namespace, report: Report) -> None:
        self.args, self.report, self.device, self.work = args, report, args.device, args.work_dir
        self.suffix = "-tiny" if args.tiny else ""

    def ensure(self, kind: str) -> Path:
        """The ``kind`` model folder, built (and its parameter counts, size and seconds recorded in
        the report's "models") unless the work folder holds it complete."""
        folder = self.work / f"{kind}{self.suffix}"
        if not (folder / BUILT).is_file():
            start = time.perf_counter()
            counts = build_folder(
                kind, folder, self.device, self.args.tiny, self.work / f"t5-xxl{self.suffix}"
            )
            sync(self.device)
            row = {**counts, "build_s": time.perf_counter() - start, "dtype": str(SAVE_DTYPE[kind])[6:]}
            if not self.args.tiny:
                row["expected_net"] = EXPECTED_NET_PARAMS[kind] / 1e6
            self.report.data.setdefault("models", {})[kind] = row
            self.report.update()
        return folder

    def run(self, name: str) -> None:
        sec = self.report.section(name)
        if name == "build":
            for kind in dict.fromkeys(NEEDS[s] for s in self.args.sections if s in NEEDS):
                self.ensure(kind)
        elif name in PRESETS:
            self.train(sec, name)
        elif name in ("inference", "flux-inference"):
            self.inference(sec, NEEDS[name])
        elif name == "options":
            clip = pickscore_folder(self.work / "pickscore")
            args = (self.ensure("sdxl"), clip, self.work, self.device, self.args.tiny)
            run_options(sec, *args, self.report.allow, self.report.update)
        elif name == "miniature":
            self.miniature(sec)
        elif name == "speed":
            clip, args = pickscore_folder(self.work / "pickscore"), self.args
            model = self.ensure("sdxl")
            run_speed(
                sec,
                model,
                clip,
                self.work,
                self.device,
                args.tiny,
                args.steps,
                self.report.allow,
                self.report.update,
                args.compile_backend,
            )

    def train(self, sec: dict, kind: str) -> None:
        """Every phase of the ``kind`` preset (``time_phases``); SD3 / FLUX with one micro-batch per
        step and the text embeddings cached on disk; the SDXL / FLUX student exported."""
        sec["phases"] = []

        def add(row: dict) -> None:
            sec["phases"].append(row)
            done = [r for r in sec["phases"] if r.get("status") == "done"]
            sec["projected_hours_total"] = sum(r["projected_hours"] for r in done) if done else None
            self.report.update()

        large, preset = kind in LARGE, PRESETS[kind]()
        steps = LARGE_TIMED_STEPS if large else self.args.steps
        micro = MICRO_BATCH["tiny" if self.args.tiny else kind]
        clip, out = pickscore_folder(self.work / "pickscore"), self.work / f"run-{kind}"
        recipe = phase_recipe(
            preset, self.ensure(kind), clip, out, self.device, steps, micro, self.args.tiny, large
        )
        cache = self.work / f"embeddings-{kind}"
        if large:
            recipe = replace(recipe, data=replace(recipe.data, embedding_cache=cache))
        trainer = time_phases(recipe, preset, self.device, steps, self.report.allow, add)
        if large:
            sec |= {"fsdp_requested": recipe.runtime.fsdp, "sharded": trainer.sharded}
            files = list(cache.glob("chunk-*.safetensors"))
            sec["embedding_cache"] = {"bytes": folder_bytes(cache), "chunk_files": len(files)}
        if kind in ("sdxl", "flux"):
            from tlcm.export import export_student

            export_student(trainer.student, self.work / f"{kind}-student")
        del trainer
        free(self.device)

    def inference(self, sec: dict, kind: str) -> None:
        """``time_inference`` of the ``kind`` student (an untrained LoRA when its training section
        did not run in this work folder)."""
        model, student = self.ensure(kind), self.work / f"{kind}-student"
        if not (student / "pytorch_lora_weights.safetensors").is_file():
            _untrained_student(model, student, self.device, PRESETS[kind]())
            sec["student"] = f"untrained LoRA (the {kind} section did not run)"
        size = {}
        if self.args.tiny and kind in LARGE:
            side = TINY_FLOW["resolution"]
            size = {"height": side, "width": side, "max_sequence_length": TINY_FLOW["max_sequence_length"]}
        sec["rows"] = time_inference(kind, model, student, self.device, self.args.repeats, **size)

    def miniature(self, sec: dict) -> None:
        sec["runs"] = []
        for precision in ("bf16", "no"):
            if sec["runs"] and not self.report.allow():
                sec["runs"].append({"precision": precision, "status": "skipped (time limit)", "scores": []})
                break
            work, args = self.work / f"mini-{precision}", self.args
            sec["runs"].append(
                miniature_run(self.device, precision, work, args.mini_fraction, args.mini_samples, args.tiny)
            )
            self.report.update()


def _untrained_student(model: Path, out: Path, device: str, preset) -> None:
    from tlcm.export import export_student
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    export_student(Student(BaseModel.load(model, device=device, dtype=dtype), preset.student), out)


TINY_OUT = Path(tempfile.gettempdir()) / "tlcm-gpu-bench-tiny"
"""The tiny mode's default --out: not benchmarks/results, where the GPU's results are committed."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder of gpu.json / gpu.md (default benchmarks/results; tiny: TMPDIR/tlcm-gpu-bench-tiny, so "
        "that tiny numbers never overwrite the committed GPU results)",
    )
    parser.add_argument(
        "--time-limit", type=float, default=None, help="start no section / phase after S seconds"
    )
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    parser.add_argument(
        "--device", default="auto", help='"auto" (cuda if available), "cuda", "cpu" (implies --tiny)'
    )
    parser.add_argument("--tiny", action="store_true", help="tiny pipelines, batch 2, 1 timed step per phase")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps per SDXL / SD1.5 phase after the warm-up (default 2; tiny 1; SD3 / FLUX: 1)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed inference calls after a warm-up (default 3; tiny 1)"
    )
    parser.add_argument(
        "--mini-fraction", type=float, default=0.2, help="fraction of tlcm-full's steps (default 0.2)"
    )
    parser.add_argument(
        "--mini-samples", type=int, default=None, help="toy eval samples per digit (default 20; tiny 2)"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="model folders and runs (default: a temp folder)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's; tiny: 1)")
    parser.add_argument(
        "--compile-backend",
        default=None,
        help="torch.compile backend of the speed section's compiled rows (default inductor; tiny: "
        "aot_eager, which traces the same graphs without generating kernels: the code paths only)",
    )
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if unknown := set(args.sections) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    args.sections = [s for s in SECTIONS if s in args.sections]
    for flag, value in (
        ("--steps", args.steps),
        ("--repeats", args.repeats),
        ("--mini-samples", args.mini_samples),
    ):
        if value is not None and value < 1:  # else every phase fails after its build and warm-up
            parser.error(f"{flag} {value}: at least 1 timed step / call / sample is needed")
    if not 0 < args.mini_fraction <= 1:
        parser.error(f"--mini-fraction {args.mini_fraction}: a fraction of tlcm-full's steps in (0, 1]")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.tiny = args.tiny or args.device == "cpu"
    if args.out is None:
        args.out = TINY_OUT if args.tiny else RESULTS
    tiny_default = lambda v, full, tiny: v if v is not None else (tiny if args.tiny else full)  # noqa: E731
    args.steps, args.repeats = tiny_default(args.steps, 2, 1), tiny_default(args.repeats, 3, 1)
    args.mini_samples = tiny_default(args.mini_samples, 20, 2)
    args.threads = tiny_default(args.threads, None, 1)
    args.compile_backend = tiny_default(args.compile_backend, "inductor", "aot_eager")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    console.print(f"results go to {args.out}/gpu.json and gpu.md")
    with tempfile.TemporaryDirectory(prefix="tlcm-gpu-bench-") as tmp:
        args.work_dir = args.work_dir or Path(tmp)
        report = Report(args, args.device)
        report.update()
        bench = Bench(args, report)
        for name in args.sections:
            sec = report.section(name)
            if not report.allow():
                sec["status"] = "skipped (time limit)"
                report.update()
                continue
            console.print(f"[bold]{name}[/] (at {report.elapsed():.0f} s)")
            sec["status"], start = "running", time.perf_counter()
            report.update()
            try:
                bench.run(name)
                sec["status"] = "done"
            except Exception as err:  # noqa: BLE001 - record it, go on with the next section
                sec["status"] = f"failed: {type(err).__name__}: {str(err)[:500]}"
                console.print_exception(max_frames=8)
            sec["seconds"] = time.perf_counter() - start
            report.update()
    for title, columns, rows in tables(report.data):
        show_table(title, columns, rows)
    console.print(f"wrote {args.out / 'gpu.json'} and gpu.md in {report.elapsed():.0f} s")
    return report.data


if __name__ == "__main__":
    main()
