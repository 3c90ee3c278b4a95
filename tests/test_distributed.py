"""torchrun on CPU (gloo): 2 processes x 1 micro-batch == 1 process x 2 accumulated micro-batches
with the same global batch (the engine seeds micro-batch j of step s from (seed, s, j))."""

import os
import subprocess
import sys

import torch
from safetensors.torch import load_file
from tiny_pipelines import tiny_sd_pipeline

COMMON = [
    "recipes:mlcd",
    "--recipes.phases.mlcd.steps",
    "2",
    "--recipes.phases.mlcd.batch-size",
    "4",
    "--recipes.student.lora-rank",
    "4",
    "--recipes.runtime.no-sample-grid",
    "--recipes.runtime.device",
    "cpu",
]


def _student(out_dir):
    folder = out_dir / "checkpoints" / (out_dir / "checkpoints" / "latest").read_text()
    return load_file(folder / "student.safetensors")


def test_two_process_step_equals_one_process_with_same_global_batch(tmp_path):
    model = tmp_path / "model"
    tiny_sd_pipeline().save_pretrained(model)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    args = [*COMMON, "--recipes.model.path", str(model)]
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "tlcm.train",
            *args,
            "--recipes.runtime.out-dir",
            str(tmp_path / "one"),
            "--recipes.phases.mlcd.grad-accum",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "tlcm.train",
            *args,
            "--recipes.runtime.out-dir",
            str(tmp_path / "two"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = _student(tmp_path / "one"), _student(tmp_path / "two")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)
    # LoRA B matrices start at zero: the two steps really moved the student
    assert max(a[k].abs().max().item() for k in a if "lora_B" in k) > 1e-4
