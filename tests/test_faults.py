"""Faults outside the recipe: every file a run writes gets the user's umask (safetensors' writer makes
0600 files), safetensors' I/O failures surface as OSError (one ``except`` turns a full disk into one
line), a LoRA that fits the model only in part is refused, and resolutions are checked against each
family's latent grid. The command-line faults themselves (full disk, read-only cache, model folders
whose parts do not fit) are rows of tests/bad_inputs.py."""

from __future__ import annotations

import errno
import os
from dataclasses import replace

import pytest
import torch
from engine_helpers import shrink
from safetensors import SafetensorError

import tlcm.files
from recipes import PRESETS
from tlcm.checks import check_resolution
from tlcm.errors import TLCMError
from tlcm.eval.pipeline import load_lora
from tlcm.files import save_tensors
from tlcm.models.base import BaseModel
from tlcm.models.families import FAMILIES
from tlcm.train import train_and_score


@pytest.fixture
def umask_027():
    """The process's umask set to 027 (new files 0640: neither the usual 0644 nor safetensors' 0600)."""
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def test_every_file_a_run_writes_has_the_umask_mode(tiny_sd_dir, tmp_path, umask_027):
    recipe = shrink(PRESETS["mlcd"], tiny_sd_dir, tmp_path / "run", steps=2, batch_size=1)
    recipe = replace(
        recipe,
        data=replace(recipe.data, embedding_cache=tmp_path / "emb"),
        runtime=replace(recipe.runtime, export_formats=("diffusers", "kohya"), checkpoint_every=1),
    )
    train_and_score(recipe)
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    kinds = {f.suffix for f in files}
    assert {".safetensors", ".json", ".jsonl", ".pt", ".md"} <= kinds  # exports, checkpoints, cache
    assert {f.relative_to(tmp_path).as_posix(): oct(f.stat().st_mode & 0o777) for f in files} == {
        f.relative_to(tmp_path).as_posix(): "0o640" for f in files
    }


def test_safetensors_io_errors_are_raised_as_oserror(tmp_path, monkeypatch):
    def full(tensors, path, metadata=None):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(tlcm.files, "save_file", full)
    with pytest.raises(OSError) as info:
        save_tensors({"a": torch.zeros(1)}, tmp_path / "a.safetensors")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "a.safetensors")

    def other(tensors, path, metadata=None):
        raise SafetensorError("not an I/O error")

    monkeypatch.setattr(tlcm.files, "save_file", other)
    with pytest.raises(SafetensorError):
        save_tensors({"a": torch.zeros(1)}, tmp_path / "a.safetensors")


def test_a_lora_that_fits_the_model_only_in_part_is_refused(tiny_sd_dir, tmp_path):
    base = BaseModel.load(tiny_sd_dir)
    (name, layer), *_ = ((n, m) for n, m in base.net.named_modules() if n.endswith("attn1.to_q"))
    lora = {
        f"unet.{name}.lora_A.weight": torch.zeros(2, layer.in_features),
        f"unet.{name}.lora_B.weight": torch.zeros(layer.out_features, 2),
    }
    save_tensors(lora, tmp_path / "fits.safetensors")
    load_lora(base, tmp_path / "fits.safetensors")
    stray = {k.replace(name, "no_such_block.to_q"): v.clone() for k, v in lora.items()}
    save_tensors({**lora, **stray}, tmp_path / "part.safetensors")
    with pytest.raises(TLCMError, match="only 1 of its 2 LoRA layers match a layer of"):
        load_lora(BaseModel.load(tiny_sd_dir), tmp_path / "part.safetensors")


@pytest.mark.parametrize(
    ("folder", "pipeline", "multiple"),
    [("tiny_sd_dir", "StableDiffusionPipeline", 4), ("tiny_flux_dir", "FluxPipeline", 4)],
)
def test_resolutions_must_be_multiples_of_the_latent_grid(folder, pipeline, multiple, request):
    """SD: VAE factor 2 x 2 for the UNet's one downsampling; FLUX: VAE factor 2 x its 2 x 2 packing."""
    path, family = request.getfixturevalue(folder), FAMILIES[pipeline]
    for resolution in (None, multiple, 4 * multiple):
        check_resolution(path, resolution, family, "--res")
    for resolution in (0, -multiple, multiple + 2, 1):
        with pytest.raises(TLCMError, match=f"--res {resolution}: .* multiple of {multiple} pixels"):
            check_resolution(path, resolution, family, "--res")
