"""The "pipeline" export format (tlcm/export.py ``export_pipeline``, ``Student.fused_state_dict``):
the whole diffusers pipeline with the student merged into its network and the TLCM scheduler, which
``DiffusionPipeline.from_pretrained`` loads as it is and which samples the student's images."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from diffusers import DiffusionPipeline
from engine_helpers import shrink
from safetensors.torch import load_file

from recipes import PRESETS
from tlcm import TLCMFlowScheduler, TLCMScheduler
from tlcm.checks import validate_recipe
from tlcm.config import StudentConfig
from tlcm.engine import train
from tlcm.errors import TLCMError
from tlcm.export import ExportArgs, export_pipeline, export_student
from tlcm.export import main as export_main
from tlcm.models.base import BaseModel
from tlcm.models.student import Student


def _student(folder, **config) -> Student:
    """A LoRA student whose every B is random (B starts at 0: each layer's delta then counts)."""
    torch.manual_seed(0)
    student = Student(BaseModel.load(folder), StudentConfig(lora_rank=4, lora_alpha=8.0, **config))
    with torch.no_grad():
        for name, param in student.net.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    return student


def test_fused_weights_are_the_base_plus_the_scaled_lora_product_per_layer(tiny_sd_dir):
    """W + (alpha / r) B A on every LoRA'd layer (here alpha / r = 2), the base weights elsewhere,
    the plain UNet's keys; a layer already merged by ``fuse`` is not added twice; an auxiliary
    adapter is left out."""
    student = _student(tiny_sd_dir)
    base = BaseModel.load(tiny_sd_dir).net.state_dict()
    student.add_adapters({"fake": 4})
    with torch.no_grad():
        for name, param in student.net.named_parameters():
            if ".lora_B.fake." in name:
                param.normal_(0, 1.0)
    fused = student.fused_state_dict()
    assert set(fused) == set(base)
    layers = {
        name: m for name, m in student.net.named_modules() if hasattr(m, "lora_A") and "student" in m.lora_A
    }
    assert layers
    for name, layer in layers.items():
        a, b = layer.lora_A["student"].weight, layer.lora_B["student"].weight
        w = base[f"{name}.weight"]
        by_hand = w + 2.0 * (b.flatten(1) @ a.flatten(1)).view(w.shape)  # conv: k x k down, 1 x 1 up
        torch.testing.assert_close(fused[f"{name}.weight"], by_hand, atol=1e-6, rtol=1e-5)
    lora = {f"{n}.weight" for n in layers}
    assert all(torch.equal(fused[k], v) for k, v in base.items() if k not in lora)
    student.fuse()
    torch.testing.assert_close(student.fused_state_dict(), fused, atol=1e-6, rtol=1e-5)


def test_the_pipeline_loads_in_plain_diffusers_and_samples_the_students_images(tiny_sd_dir, tmp_path):
    """DiffusionPipeline.from_pretrained(pipeline/) gives a TLCMScheduler on the student's grid and
    the student's images: the same 2-step images as the base pipeline with the exported LoRA and
    scheduler loaded (the route the card describes), and not the base model's."""
    student = _student(tiny_sd_dir)
    written = export_student(student, tmp_path, ("diffusers", "pipeline"))
    assert written == [tmp_path / "pytorch_lora_weights.safetensors", tmp_path / "pipeline"]
    index = json.loads((tmp_path / "pipeline" / "model_index.json").read_text())
    assert index["scheduler"] == ["tlcm", "TLCMScheduler"]
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    fused = DiffusionPipeline.from_pretrained(tmp_path / "pipeline")
    assert isinstance(fused.scheduler, TLCMScheduler)
    assert fused.scheduler.config.num_milestones == student.config.grid.num_milestones

    lora = DiffusionPipeline.from_pretrained(tiny_sd_dir)
    lora.load_lora_weights(tmp_path)
    lora.scheduler = TLCMScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    plain = DiffusionPipeline.from_pretrained(tiny_sd_dir)
    plain.scheduler = lora.scheduler

    def images(pipe):
        out = pipe(
            ["the number 3, handwritten"], num_inference_steps=2, guidance_scale=1.0, output_type="pt",
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        return out.images

    ours = images(fused)
    torch.testing.assert_close(ours, images(lora), atol=2e-4, rtol=0)
    assert (ours - images(plain)).abs().max() > 1e-2  # the student, not the base


def test_a_flow_students_pipeline_gets_the_flow_scheduler(tiny_sd3_dir, tmp_path):
    student = _student(tiny_sd3_dir)
    export_pipeline(student, tmp_path / "pipeline")
    index = json.loads((tmp_path / "pipeline" / "model_index.json").read_text())
    assert index["scheduler"] == ["tlcm", "TLCMFlowScheduler"]
    # the tiny SD3 has no T5 (tlcm loads it so too): diffusers wants that said
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "pipeline", text_encoder_3=None, tokenizer_3=None)
    assert isinstance(pipe.scheduler, TLCMFlowScheduler)
    weights = load_file(tmp_path / "pipeline" / "transformer" / "diffusion_pytorch_model.safetensors")
    torch.testing.assert_close(weights, student.fused_state_dict())


def test_a_re_export_replaces_the_pipeline_and_a_foreign_folder_is_refused(tiny_sd_dir, tmp_path):
    student = _student(tiny_sd_dir)
    folder = export_pipeline(student, tmp_path / "pipeline")
    (folder / "stale.txt").write_text("from an earlier export")
    export_pipeline(student, folder)
    assert not (folder / "stale.txt").exists() and (folder / "model_index.json").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(TLCMError, match="exists and is not an exported pipeline"):
        export_pipeline(student, mine)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_a_disk_without_room_is_refused_before_anything_is_written(tiny_sd_dir, tmp_path, monkeypatch):
    """The export needs the copied components (the base's files but its UNet, scheduler and
    model_index.json) plus the fused UNet's tensor bytes; a disk with one byte less free is refused
    naming both sizes and the way out, and an earlier export there is kept whole; the space the
    replaced export frees counts as free; exactly enough is written."""
    import shutil
    from collections import namedtuple

    def size(folder):
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

    student = _student(tiny_sd_dir)
    first = export_pipeline(student, tmp_path / "first")
    written = size(first)
    copied = size(tiny_sd_dir) - sum(size(tiny_sd_dir / d) for d in ("unet", "scheduler"))
    copied -= (tiny_sd_dir / "model_index.json").stat().st_size
    need = copied + sum(v.numel() * v.element_size() for v in student.fused_state_dict().values())
    free = {"bytes": 0}
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 0, free["bytes"]))
    for target, held in ((tmp_path / "new", 0), (first, written)):
        free["bytes"] = need - held - 1
        with pytest.raises(TLCMError, match=r"needs [\d.]+ GB and its disk has [\d.]+ GB free: .*--out DIR"):
            export_pipeline(student, target)
    assert not (tmp_path / "new").exists() and size(first) == written
    free["bytes"] = need - written
    export_pipeline(student, first)
    free["bytes"] = need
    export_pipeline(student, tmp_path / "new")
    assert size(tmp_path / "new") == written


def test_a_run_exports_its_pipeline_and_fsdp_is_refused_up_front(tiny_sd_dir, tmp_path):
    """--recipes.runtime.export-formats pipeline writes RUN/student/pipeline and the card lists it;
    with fsdp the check refuses it before training (the network is in shards), naming the way out;
    python -m tlcm.export RUN --format pipeline writes it afterwards."""
    recipe = shrink(PRESETS["mlcd"], tiny_sd_dir, tmp_path / "run", steps=1)
    recipe = replace(recipe, runtime=replace(recipe.runtime, export_formats=("diffusers", "pipeline")))
    train(recipe)
    unet_file = "pipeline/unet/diffusion_pytorch_model.safetensors"
    assert (tmp_path / "run" / "student" / unet_file).is_file()
    assert "`pipeline/` (the whole pipeline" in (tmp_path / "run" / "student" / "README.md").read_text()
    sharded = replace(recipe, runtime=replace(recipe.runtime, fsdp=True))
    with pytest.raises(
        TLCMError, match="in shards over the 2 processes: .*python -m tlcm.export RUN --format pipeline"
    ):
        validate_recipe(sharded, world_size=2)
    validate_recipe(sharded, world_size=1)  # one process ignores fsdp: nothing is sharded
    written = export_main(ExportArgs(tmp_path / "run", format=("pipeline",), out=tmp_path / "later"))
    assert written == [tmp_path / "later" / "pipeline"]
    first, again = (
        load_file(tmp_path / "run" / "student" / unet_file),
        load_file(tmp_path / "later" / unet_file),
    )
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)


def test_an_fp16_variant_base_gets_an_fp16_variant_network_that_loads_with_the_rest(tiny_sd_dir, tmp_path):
    """A base saved as fp16 variant files (a hub repo's fp16 branch): the fused network is written
    as diffusion_pytorch_model.fp16.safetensors in fp16 (the base's storage, though training loaded
    it in fp32), and from_pretrained(variant="fp16") loads every component of the export."""
    source = DiffusionPipeline.from_pretrained(tiny_sd_dir, torch_dtype=torch.float16)
    source.save_pretrained(tmp_path / "base", variant="fp16")
    student = _student(tmp_path / "base")
    assert next(student.base.net.parameters()).dtype == torch.float32
    folder = export_pipeline(student, tmp_path / "pipeline")
    weights = load_file(folder / "unet" / "diffusion_pytorch_model.fp16.safetensors")
    assert {v.dtype for v in weights.values()} == {torch.float16}
    fused = student.fused_state_dict()
    assert all(torch.equal(weights[k], v.half()) for k, v in fused.items())
    pipe = DiffusionPipeline.from_pretrained(folder, variant="fp16", torch_dtype=torch.float16)
    assert isinstance(pipe.scheduler, TLCMScheduler) and pipe.unet.dtype == torch.float16


def test_older_transformers_weights_names_count_as_a_variant(tmp_path):
    """pytorch_model.fp16.bin (transformers' older name) is a variant file like model.fp16.safetensors:
    a text encoder with only that file makes the folder an fp16-variant one (loaded with
    variant="fp16", else transformers finds no plain weights); its plain file beside it does not."""
    from tlcm.models.families.base import weights_variant

    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    (tmp_path / "text_encoder").mkdir()
    (tmp_path / "text_encoder" / "pytorch_model.fp16.bin").write_bytes(b"")
    assert weights_variant(tmp_path) == "fp16"
    (tmp_path / "text_encoder" / "pytorch_model.bin").write_bytes(b"")
    assert weights_variant(tmp_path) is None
