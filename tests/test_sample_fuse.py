"""python -m tlcm.sample --student fuses the LoRA into the UNet: fused and unfused students agree."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from engine_helpers import shrink
from PIL import Image

from recipes import PRESETS
from tlcm.conditioning import Conditioning
from tlcm.config import StudentConfig
from tlcm.diffusion.schedule import schedule_from_config
from tlcm.engine import train
from tlcm.models.base import BaseModel
from tlcm.models.families import FAMILIES
from tlcm.models.student import Student
from tlcm.sample import SampleArgs
from tlcm.sample import main as sample_main


@pytest.mark.parametrize("which", ["sd", "sdxl"])
def test_fused_student_matches_unfused(which, tiny_sd, tiny_sdxl):
    pipe = tiny_sd if which == "sd" else tiny_sdxl
    family = FAMILIES[type(pipe).__name__]
    shape = family.latent_shape(pipe)
    base = BaseModel(pipe, schedule_from_config(pipe.scheduler.config), None, family, shape)
    base.pipe.unet.requires_grad_(False)
    student = Student(base, StudentConfig(lora_rank=4, lora_alpha=4.0))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in student.trainable_parameters().values():
            p.copy_(torch.randn_like(p) * 0.1)
    cond, _ = base.encode(["a", "b"])
    assert isinstance(cond, Conditioning)
    x, t = torch.randn(2, *base.latent_shape), torch.tensor([999, 300])
    with torch.no_grad():
        unfused, teacher = student.denoiser()(x, t, cond), student.teacher()(x, t, cond)
        student.fuse()
        fused = student.denoiser()(x, t, cond)
    assert (unfused - teacher).abs().max() > 1e-3  # the LoRA matters
    torch.testing.assert_close(fused, unfused, rtol=1e-4, atol=1e-5)


def test_sample_cli_fused_grid_matches_unfused(tiny_sd_dir, tmp_path, monkeypatch):
    train(shrink(PRESETS["mlcd"], tiny_sd_dir, tmp_path / "run"))
    args = SampleArgs(
        prompt=("a",), steps=2, model=tiny_sd_dir, num_per_prompt=2, device="cpu", student=tmp_path / "run"
    )
    fused = np.asarray(Image.open(sample_main(replace(args, out=tmp_path / "fused.png"))), dtype=int)
    monkeypatch.setattr(Student, "fuse", lambda self: None)
    unfused = np.asarray(Image.open(sample_main(replace(args, out=tmp_path / "unfused.png"))), dtype=int)
    assert np.abs(fused - unfused).max() <= 1  # 8-bit rounding of fp-close images


def test_fuse_merges_only_the_students_adapter(tiny_sd_dir):
    """With an auxiliary adapter (DMD's fake score) beside it, fuse merges the student's LoRA alone:
    the fused student is the unfused student, not the student plus the fake score's update."""
    student = Student(BaseModel.load(tiny_sd_dir), StudentConfig(lora_rank=2, lora_alpha=4.0))
    fake = student.auxiliary("fake")
    torch.manual_seed(2)
    with torch.no_grad():
        for p in [*student.trainable_parameters().values(), *fake.parameters()]:
            p.copy_(torch.randn_like(p) * 0.1)
    cond, _ = student.base.encode(["a", "b"])
    x, t = torch.randn(2, *student.base.latent_shape), torch.tensor([999, 300])
    with torch.no_grad():
        unfused, faked = student.denoiser()(x, t, cond), fake.denoiser()(x, t, cond)
        assert (unfused - faked).abs().max() > 1e-3  # the two adapters differ
        student.fuse()
        fused = student.denoiser()(x, t, cond)
    torch.testing.assert_close(fused, unfused, rtol=1e-4, atol=1e-5)
