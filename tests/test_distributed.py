"""torchrun on CPU (gloo): 2 processes x 1 micro-batch == 1 process x 2 accumulated micro-batches
with the same global batch (the engine seeds micro-batch j of step s from (seed, s, j))."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from tiny_pipelines import tiny_sd_pipeline

from tlcm.toy import MINIATURE_PROMPTS

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


@pytest.mark.slow
def test_two_process_step_equals_one_process_with_same_global_batch(tmp_path):
    model = tmp_path / "model"
    tiny_sd_pipeline().save_pretrained(model)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    args = [*COMMON, "--recipes.model.path", str(model), "--recipes.data.prompts", str(MINIATURE_PROMPTS)]
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


def test_clip_grad_norm_mixes_fsdp2_shards_and_plain_tensors(cpu_mesh):
    """A discriminator's trunk LoRA (DTensor shards) and heads (plain): one l2 norm over both kinds
    and every gradient scaled by max_norm / norm; torch's clip_grad_norm_ refuses the mix. On a
    1-process gloo group: grads 2 on a (4, 3) shard and 3 on a (2,) tensor, norm sqrt(66)."""
    from torch.distributed.tensor import Shard, distribute_tensor

    from tlcm.distributed import clip_grad_norm

    mesh = cpu_mesh
    sharded = torch.nn.Parameter(distribute_tensor(torch.ones(4, 3), mesh, [Shard(0)]))
    plain = torch.nn.Parameter(torch.ones(2))
    sharded.grad = distribute_tensor(torch.full((4, 3), 2.0), mesh, [Shard(0)])
    plain.grad = torch.full((2,), 3.0)
    with pytest.raises(RuntimeError, match="mixed torch.Tensor and DTensor"):
        torch.nn.utils.clip_grad_norm_([sharded, plain], 1.0)
    total = clip_grad_norm([sharded, plain], 1.0)
    norm = 66**0.5
    assert type(total) is torch.Tensor and total.item() == pytest.approx(norm)
    torch.testing.assert_close(sharded.grad.full_tensor(), torch.full((4, 3), 2.0 / (norm + 1e-6)))
    torch.testing.assert_close(plain.grad, torch.full((2,), 3.0 / (norm + 1e-6)))
    assert clip_grad_norm([sharded, plain], 100.0).item() == pytest.approx(1.0)  # below max: kept
    torch.testing.assert_close(plain.grad, torch.full((2,), 3.0 / (norm + 1e-6)))


def test_average_gradients_averages_each_parameter_over_processes(monkeypatch):
    """average_gradients flattens every gradient into one buffer, all-reduces (sums) it over the
    processes and divides by their count. With a fake all-reduce that adds another process's
    gradients h (2 processes), each parameter's gradient becomes (g + h) / 2 in its own shape, a
    missing gradient counting as zero (h / 2). Three sizes (6, 4, 5), so a slice read at a wrong
    offset shows (or fails to reshape)."""
    from tlcm import distributed

    shapes = [(2, 3), (4,), (1, 5)]
    params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    mine = [torch.arange(6.0).view(2, 3), torch.full((4,), 10.0), None]
    other = [torch.full((2, 3), 2.0), -torch.arange(4.0), torch.arange(5.0).view(1, 5) + 1]
    for p, g in zip(params, mine, strict=True):
        p.grad = g
    flat_other = torch.cat([h.reshape(-1) for h in other])
    monkeypatch.setattr(distributed.dist, "all_reduce", lambda flat: flat.add_(flat_other))
    distributed.average_gradients(params, 2)
    for p, g, h in zip(params, mine, other, strict=True):
        expected = ((0.0 if g is None else g) + h) / 2
        torch.testing.assert_close(p.grad, expected, rtol=0, atol=0)


def test_each_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    """torchrun numbers the processes globally (RANK) and on their node (LOCAL_RANK), and a node's
    GPUs are cuda:0 .. cuda:n-1: process RANK 9 with LOCAL_RANK 1 (the second of node 2, 8 GPUs a
    node) uses cuda:1 and joins the nccl group as rank 9 of 16. Without torchrun: rank 0 of 1 on
    the given device, no group. (CUDA's set_device and the process group are faked: they record.)"""
    from tlcm import distributed

    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("device", device)))
    monkeypatch.setattr(
        distributed.dist, "init_process_group", lambda backend: calls.append(("group", backend))
    )
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    for name, value in (("WORLD_SIZE", "16"), ("RANK", "9"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    cuda1 = torch.device("cuda", 1)
    assert distributed.init_distributed("cuda") == distributed.DistInfo(9, 16, cuda1)
    assert calls == [("device", cuda1), ("group", "nccl")]
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name)
    calls.clear()
    assert distributed.init_distributed("cpu") == distributed.DistInfo(0, 1, torch.device("cpu"))
    assert calls == []
