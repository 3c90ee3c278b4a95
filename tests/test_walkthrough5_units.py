"""The fixes of the fifth CPU walkthrough's findings 7, 9, 10 and 11, one direct call each:
gpu_check.sh keeps its default sections when given other arguments, the tiny benchmark never writes
to benchmarks/results by default, the memory plan's CPU refusal names the flag to drop, FSDP2's
view-tensor warning is filtered (and only it), the end summary's sample command writes into the
run, and ``tlcm.export --format pipeline`` lists pipeline/ in the kept training card."""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks import gpu
from benchmarks.common import RESULTS
from tlcm import distributed
from tlcm.checks import TLCMError
from tlcm.config import ModelConfig
from tlcm.memory_plan import CudaMemory
from tlcm.summary import run_summary

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check_args(tmp_path: Path, *argv: str) -> str:
    """The arguments gpu_check.sh passes to ``python -m benchmarks.gpu``, with a fake PYTHON that
    prints them (run in an empty folder: no wheels to install, no benchmark)."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "ARGS: $*"\n')
    fake.chmod(0o755)
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
    env = {**os.environ, "OUT": str(out), "PYTHON": str(fake)}
    subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), *argv],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    line = next(x for x in (out / "gpu.log").read_text().splitlines() if "-m benchmarks.gpu" in x)
    return line.split("--time-limit 330 ", 1)[1]


def test_gpu_check_keeps_the_first_calls_sections_unless_sections_are_given(tmp_path):
    """Walkthrough 5, finding 9: with any argument the default sections were dropped, so
    ``--steps 2`` built every model (~59 GB on a 64 GiB disk)."""
    first = "--sections build,sdxl,inference,speed"
    assert _gpu_check_args(tmp_path) == f"{first} --steps 1"
    assert _gpu_check_args(tmp_path, "--steps", "2") == f"{first} --steps 2"
    assert _gpu_check_args(tmp_path, "--device", "cpu") == f"{first} --device cpu"
    assert (
        _gpu_check_args(tmp_path, "--sections", "build,flux", "--steps", "2")
        == "--sections build,flux --steps 2"
    )
    assert _gpu_check_args(tmp_path, "--sections=build,sd3") == "--sections=build,sd3"


def test_tiny_benchmark_writes_to_a_temp_folder_unless_out_is_given(tmp_path):
    """Finding 9: ``--device cpu`` without --out wrote tiny numbers over the committed GPU results."""
    assert gpu.parse(["--device", "cpu"]).out == gpu.TINY_OUT != RESULTS
    assert gpu.parse(["--device", "cuda", "--tiny"]).out == gpu.TINY_OUT
    assert not gpu.TINY_OUT.resolve().is_relative_to(ROOT)
    assert gpu.parse(["--device", "cuda"]).out == RESULTS
    assert gpu.parse(["--device", "cpu", "--out", str(tmp_path)]).out == tmp_path


def test_memory_plan_refusal_on_cpu_names_the_budget_flag():
    """Finding 10: the CPU refusal said "drop the memory plan"; the flag to drop is the budget (the
    plan itself is skipped off CUDA without one: plan_phase)."""
    with pytest.raises(TLCMError) as err:
        CudaMemory(torch.device("cpu"))
    text = " ".join(str(err.value).split())
    assert "drop --recipes.runtime.memory-budget-gib" in text
    assert "without a budget the plan, --recipes.runtime.memory-plan, is skipped" in text


VIEW = (
    "FSDP2-wrapped module (FSDPFluxTransformer2DModel) returned a view tensor. An in-place op on this "
    "view (e.g., `x += y`) will silently drop the pre-backward hook and skip the all-gather, which can "
    "cause backward to fail or produce wrong gradients."
)


def test_fsdp2_view_warning_is_filtered_only_from_torch_fsdp():
    """Finding 7: FSDP2 warns ~4 times a step on FLUX; the FSDP2 gradient-equality tests show the
    gradients right. Only that message, only from torch.distributed.fsdp, is ignored."""
    fsdp = "torch.distributed.fsdp._fully_shard._fsdp_state"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        distributed.quiet_view_warning()
        warnings.warn_explicit(VIEW, UserWarning, "_fsdp_state.py", 1, module=fsdp)
        warnings.warn_explicit("another warning", UserWarning, "_fsdp_state.py", 2, module=fsdp)
        warnings.warn_explicit(VIEW, UserWarning, "mine.py", 3, module="tlcm.mine")
    assert [(str(w.message)[:15], w.filename) for w in seen] == [
        ("another warning", "_fsdp_state.py"),
        ("FSDP2-wrapped m", "mine.py"),
    ]


def test_shard_installs_the_filter_for_a_network_returning_a_view(cpu_mesh):
    """The real warning: a one-process FSDP2 network whose output is a view warns without the
    filter (torch's own code) and not after ``shard``."""
    from torch.distributed.fsdp import fully_shard

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(x).view(-1)

    x = torch.ones(2, 4)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fully_shard(Net(), mesh=cpu_mesh)(x)
        before = [str(w.message) for w in seen if "returned a view tensor" in str(w.message)]
        distributed.shard(Net(), [], torch.device("cpu"), None)(x)
        after = [str(w.message) for w in seen if "returned a view tensor" in str(w.message)]
    assert len(before) == 1 and after == before


def test_summary_sample_command_writes_into_the_run(tmp_path):
    """Finding 11: "Sample it:" had no --out, so tlcm.sample wrote outputs/samples.png in the
    working directory (the repository)."""
    run = tmp_path / "run"
    run.mkdir()
    text = run_summary(run, ModelConfig(), 3.0, None)
    sample = next(line for line in text.splitlines() if line.startswith("Sample it:"))
    assert f"--out {run / 'samples.png'}" in sample


CARD = """# TLCM student

Files: `pytorch_lora_weights.safetensors` (diffusers), `scheduler/` (the TLCMScheduler config), this card.

## Recipe

```json
{"seed": 0}
```
"""


def test_export_pipeline_after_training_lists_pipeline_in_the_kept_card(monkeypatch, tmp_path):
    """Finding 11: ``tlcm.export RUN --format pipeline`` kept the training card (with its recipe)
    and left pipeline/ out of its files."""
    import tlcm.export as export
    import tlcm.models.folders
    from tlcm.card import PIPELINE_FILES, list_pipeline
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "student").mkdir()
    (run / "student" / "README.md").write_text(CARD)

    def export_student(student, out, formats, name):
        (out / "pipeline").mkdir()
        return [out / "pipeline"]

    monkeypatch.setattr(export, "check_has_checkpoint", lambda *a: None)
    monkeypatch.setattr(export, "student_model", lambda *a: (tmp_path / "model", None))
    monkeypatch.setattr(tlcm.models.folders, "check_model_folder", lambda *a, **k: "StableDiffusionPipeline")
    monkeypatch.setattr(BaseModel, "load", lambda *a, **k: None)
    monkeypatch.setattr(Student, "from_run", lambda *a, **k: SimpleNamespace())
    monkeypatch.setattr(export, "export_student", export_student)
    export.main(export.ExportArgs(run=run, format=("pipeline",)))
    card = (run / "student" / "README.md").read_text()
    assert card == CARD.replace(", `scheduler/`", PIPELINE_FILES + ", `scheduler/`")
    assert card.count("`pipeline/`") == 1 and '{"seed": 0}' in card  # the recipe kept
    assert list_pipeline(card) == card  # listed once
    assert list_pipeline("# edited\nFiles: mine\n") == "# edited\nFiles: mine\n"
