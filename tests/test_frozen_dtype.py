"""Frozen weights in bf16, trainable weights in fp32: the base UNet / text encoders / VAE are bf16,
every adapter, a full fine-tune's copy and the AdamW state are fp32, a force_upcast VAE stays fp32,
and a 2-step run on the tiny SD and SDXL pipelines trains with finite losses and exports fp32."""

import json
from dataclasses import replace

import pytest
import torch
from engine_helpers import shrink
from safetensors.torch import load_file
from tiny_pipelines import tiny_sd_pipeline, tiny_sdxl_pipeline

from recipes import PRESETS
from tlcm.checkpoint import load_latest
from tlcm.config import StudentConfig
from tlcm.engine import train
from tlcm.models.base import BaseModel, frozen_dtype
from tlcm.models.student import Student

FROZEN = ("unet", "text_encoder", "text_encoder_2", "vae")


def _save(pipe, path, force_upcast: bool):
    pipe.vae.register_to_config(force_upcast=force_upcast)
    pipe.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return _save(tiny_sd_pipeline(), tmp_path_factory.mktemp("sd-bf16"), force_upcast=False)


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory):
    return _save(tiny_sdxl_pipeline(), tmp_path_factory.mktemp("sdxl-bf16"), force_upcast=True)


def _frozen_bytes(base: BaseModel) -> int:
    return sum(
        p.numel() * p.element_size()
        for name in FROZEN
        if (m := getattr(base.pipe, name, None)) is not None
        for p in m.parameters()
    )


def test_auto_is_bf16_only_on_cuda_with_autocast():
    assert frozen_dtype("auto", "cpu", True) == torch.float32
    assert frozen_dtype("auto", "cuda", True) == torch.bfloat16
    assert frozen_dtype("auto", "cuda", False) == torch.float32
    assert frozen_dtype("bf16", "cpu", False) == torch.bfloat16


def test_bf16_frozen_fp32_adapters_and_upcast_vae(sd_dir, sdxl_dir):
    base = BaseModel.load(sd_dir, dtype=torch.bfloat16)
    for name in ("unet", "text_encoder", "vae"):
        assert {p.dtype for p in getattr(base.pipe, name).parameters()} == {torch.bfloat16}, name
    student = Student(base, StudentConfig(lora_rank=4, lora_alpha=4.0))
    aux = student.auxiliary("fake")
    trainable = [*student.trainable_parameters().values(), *aux.parameters()]
    assert trainable and {p.dtype for p in trainable} == {torch.float32}
    frozen = [p for n, p in base.net.named_parameters() if "lora_" not in n]
    assert {p.dtype for p in frozen} == {torch.bfloat16}
    cond, _ = base.encode(["a b"])
    x = torch.randn(1, *base.latent_shape)
    out = student.denoiser()(x, torch.tensor([500]), cond)  # no autocast: inputs are cast
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert base.decode(out).dtype == torch.float32
    xl = BaseModel.load(sdxl_dir, dtype=torch.bfloat16)  # force_upcast: the VAE stays fp32
    assert {p.dtype for p in xl.pipe.vae.parameters()} == {torch.float32}
    assert {p.dtype for p in xl.pipe.text_encoder_2.parameters()} == {torch.bfloat16}
    assert torch.isfinite(xl.decode(torch.randn(1, *xl.latent_shape))).all()
    full = Student(base, StudentConfig(full_finetune=True))
    assert {p.dtype for p in full.net.parameters()} == {torch.float32}
    full_aux = full.auxiliary("fake")
    assert {p.dtype for p in full_aux.parameters()} == {torch.float32}


def test_frozen_bytes_fp32_vs_bf16(sdxl_dir):
    sizes = {d: _frozen_bytes(BaseModel.load(sdxl_dir, dtype=d)) for d in (torch.float32, torch.bfloat16)}
    vae = sum(p.numel() for p in tiny_sdxl_pipeline().vae.parameters()) * 4  # force_upcast: stays fp32
    assert sizes[torch.bfloat16] == (sizes[torch.float32] - vae) // 2 + vae


@pytest.mark.parametrize("which", ["sd", "sdxl"])
def test_bf16_frozen_two_step_train(which, sd_dir, sdxl_dir, tmp_path):
    model = sd_dir if which == "sd" else sdxl_dir
    recipe = shrink(PRESETS["mlcd"], model, tmp_path)
    recipe = replace(recipe, model=replace(recipe.model, frozen_dtype="bf16"))
    run = train(recipe)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(torch.isfinite(torch.tensor(r["mlcd"])) for r in records)
    assert {p.dtype for p in run.student.trainable_parameters().values()} == {torch.float32}
    assert {p.dtype for n, p in run.base.net.named_parameters() if "lora_" not in n} == {torch.bfloat16}
    state = load_latest(tmp_path, torch.device("cpu")).optimizer["state"]
    moments = [v for s in state.values() for k, v in s.items() if k != "step"]
    assert moments and {v.dtype for v in moments} == {torch.float32}
    lora = load_file(tmp_path / "student" / "pytorch_lora_weights.safetensors")
    assert {v.dtype for v in lora.values()} == {torch.float32}


def test_a_full_finetune_on_bf16_frozen_weights_starts_from_the_saved_fp32_weights(sd_dir):
    """A full fine-tune's trainable copy of bf16 frozen weights holds the folder's fp32 weights bit
    for bit (reloaded in fp32), not the bf16-rounded ones upcast."""
    saved = load_file(sd_dir / "unet" / "diffusion_pytorch_model.safetensors")
    base = BaseModel.load(sd_dir, dtype=torch.bfloat16)
    full = Student(base, StudentConfig(full_finetune=True))
    copy = full.net.state_dict()
    assert set(saved) <= set(copy)
    rounded = 0
    for name, value in saved.items():
        assert copy[name].dtype == torch.float32 and torch.equal(copy[name], value.float()), name
        rounded += not torch.equal(value.float(), value.bfloat16().float())
    assert rounded > 0  # bf16 would have changed them
    assert {p.dtype for p in base.net.parameters()} == {torch.bfloat16}  # the teacher stays bf16
