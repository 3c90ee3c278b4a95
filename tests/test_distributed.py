"""torchrun on CPU (gloo): 2 processes x 1 micro-batch == 1 process x 2 accumulated micro-batches
with the same global batch (the engine seeds micro-batch j of step s from (seed, s, j))."""

import os
import subprocess
import sys

import pytest
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


@pytest.mark.slow
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


def test_clip_grad_norm_mixes_fsdp2_shards_and_plain_tensors():
    """A discriminator's trunk LoRA (DTensor shards) and heads (plain): one l2 norm over both kinds
    and every gradient scaled by max_norm / norm; torch's clip_grad_norm_ refuses the mix. On a
    1-process gloo group: grads 2 on a (4, 3) shard and 3 on a (2,) tensor, norm sqrt(66)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from tlcm.distributed import clip_grad_norm

    if dist.is_initialized():
        pytest.skip("a process group is already up in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
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
    finally:
        dist.destroy_process_group()
