"""The GPU benchmark: full-size random-weight SDXL and SD1.5 built in code, each phase of
``recipes:tlcm-full-sdxl`` timed through the real ``Trainer.train_step`` (s/step, samples/s, peak GiB,
achieved TFLOP/s, projected hours for the paper's iterations), the miniature ``recipes:tlcm-full``
in bf16 and fp32 with its toy scores, and the exported student in a plain diffusers pipeline
(4 steps, LoRA fused / unfused) against the teacher's 25 CFG steps.

Sections (``--sections``, run in this order): build, sdxl, inference, sd15, miniature. Results go to
OUT/gpu.json and OUT/gpu.md after every phase (a timeout keeps what was done); no new section or
phase starts once ``--time-limit`` seconds have passed. ``--tiny`` (implied by ``--device cpu``)
uses the tiny pipelines of tlcm/toy/tiny.py, 1 timed step per phase and batch 2: the CPU
mode tests/test_gpu_benchmark.py runs. From the repository root:

    python -m benchmarks.gpu --out "$OUT" --time-limit 420      # on a GPU (benchmarks/gpu_check.sh)
    .venv/bin/python -m benchmarks.gpu --device cpu              # tiny CPU mode
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import RESULTS, console, show_table
from benchmarks.gpu_models import EXPECTED_UNET_PARAMS, build_folder, pickscore_folder
from benchmarks.gpu_report import Report, tables
from benchmarks.gpu_runs import free, miniature_run, phase_recipe, time_inference, time_phases

SECTIONS = ("build", "sdxl", "inference", "sd15", "miniature")
"""In the order they run: the most wanted first, since a time limit drops the last."""


def run_section(name: str, report: Report, args, device: str, work: Path) -> None:
    sec = report.section(name)
    tiny, size = args.tiny, "tiny" if args.tiny else None
    folders = {k: work / f"{k}{'-tiny' if tiny else ''}" for k in ("sdxl", "sd15")}

    def ensure(kind: str) -> Path:
        if not (folders[kind] / "model_index.json").is_file():
            start = time.perf_counter()
            counts = build_folder(kind, folders[kind], device, tiny)
            sync = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
            sync()
            models = (
                report.section("build").setdefault("models", {}) if "build" in report.data["sections"] else {}
            )
            models[kind] = {**counts, "build_s": time.perf_counter() - start}
            if not tiny:
                models[kind]["expected_unet"] = EXPECTED_UNET_PARAMS[kind] / 1e6
        return folders[kind]

    if name == "build":
        sec["models"] = {}
        for kind in ("sdxl", "sd15"):
            ensure(kind)
    elif name in ("sdxl", "sd15"):
        sec["phases"] = []

        def add(row: dict) -> None:
            sec["phases"].append(row)
            done = [r for r in sec["phases"] if r.get("status") == "done"]
            sec["projected_hours_total"] = sum(r["projected_hours"] for r in done) if done else None
            report.update()

        recipe = phase_recipe(
            ensure(name),
            pickscore_folder(work / "pickscore"),
            work / f"run-{name}",
            device,
            size or name,
            args.steps,
        )
        trainer = time_phases(recipe, device, args.steps, report.allow, add)
        if name == "sdxl":
            from tlcm.export import export_student

            export_student(trainer.student, work / "sdxl-student")
        del trainer
        free(device)
    elif name == "miniature":
        sec["runs"] = []
        for precision in ("bf16", "no"):
            if sec["runs"] and not report.allow():
                sec["runs"].append({"precision": precision, "status": "skipped (time limit)", "scores": []})
                break
            sec["runs"].append(
                miniature_run(
                    device, precision, work / f"mini-{precision}", args.mini_fraction, args.mini_samples, tiny
                )
            )
            report.update()
    elif name == "inference":
        student = work / "sdxl-student"
        if not (student / "pytorch_lora_weights.safetensors").is_file():
            _untrained_student(ensure("sdxl"), student, device)
            sec["student"] = "untrained LoRA (the sdxl section did not run)"
        sec["rows"] = time_inference(ensure("sdxl"), student, device, args.repeats)


def _untrained_student(model: Path, out: Path, device: str) -> None:
    from recipes.tlcm import tlcm_full_sdxl
    from tlcm.export import export_student
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student

    export_student(Student(BaseModel.load(model, device=device), tlcm_full_sdxl().student), out)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder of gpu.json / gpu.md (default benchmarks/results)"
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
        "--steps", type=int, default=None, help="timed steps per phase after the warm-up (default 2; tiny 1)"
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
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if unknown := set(args.sections) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    args.sections = [s for s in SECTIONS if s in args.sections]
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.tiny = args.tiny or args.device == "cpu"
    tiny_default = lambda v, full, tiny: v if v is not None else (tiny if args.tiny else full)  # noqa: E731
    args.steps, args.repeats = tiny_default(args.steps, 2, 1), tiny_default(args.repeats, 3, 1)
    args.mini_samples = tiny_default(args.mini_samples, 20, 2)
    args.threads = tiny_default(args.threads, None, 1)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="tlcm-gpu-bench-") as tmp:
        args.work_dir = args.work_dir or Path(tmp)
        report = Report(args, args.device)
        report.update()
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
                run_section(name, report, args, args.device, args.work_dir)
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
