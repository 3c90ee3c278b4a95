"""Shared fixtures: tiny random SD / SDXL / SD3 / FLUX pipelines (tests/tiny_pipelines.py), fresh per test.

Tests run torch on one intra-op thread: with tiny models, thread hand-off and spin-waiting cost more
than they save, and on a busy 2-core machine two threads made the tiny pipelines ~50x slower
(6 s instead of 0.12 s per 4-step SD call).
"""

import sys
from pathlib import Path

import pytest
import torch
from tiny_pipelines import (
    save_tiny_clip,
    tiny_flux_pipeline,
    tiny_sd3_pipeline,
    tiny_sd_pipeline,
    tiny_sdxl_pipeline,
)

torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked slow run first (stable order otherwise): with one process per core
    (pytest-xdist, pyproject's addopts) the long ones start at once on different workers instead of
    leaving one worker busy after the other has finished."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _forget_recipe_imports():
    """``--import`` records each imported module in ``tlcm.train.IMPORTED`` (process-wide: the
    unknown-preset message names modules that added no presets); a test's imports are forgotten
    after it, so they do not reach another test's messages in the same worker."""
    train = sys.modules.get("tlcm.train")
    before = dict(train.IMPORTED) if train is not None else {}
    yield
    train = sys.modules.get("tlcm.train")
    if train is not None:
        train.IMPORTED.clear()
        train.IMPORTED.update(before)


@pytest.fixture
def float64():
    """torch's default dtype float64 for the test (by-hand maths: test_objectives, test_add, ...)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def tiny_sd():
    """A fresh seeded tiny StableDiffusionPipeline (PNDM scheduler, 32 px images, 16 x 16 latents)."""
    return tiny_sd_pipeline()


@pytest.fixture
def tiny_sdxl():
    """A fresh seeded tiny StableDiffusionXLPipeline (Euler scheduler, 32 px images, 16 x 16 latents)."""
    return tiny_sdxl_pipeline()


@pytest.fixture
def tiny_sd3():
    """A fresh seeded tiny StableDiffusion3Pipeline without T5 (flow matching, shift 3, 16 px images)."""
    return tiny_sd3_pipeline()


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> Path:
    """The tiny SD pipeline saved once per session as a diffusers folder (tests never write into it)."""
    path = tmp_path_factory.mktemp("tiny-sd")
    tiny_sd_pipeline().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory) -> Path:
    """The tiny SDXL pipeline saved once per session as a diffusers folder (safetensors weights)."""
    path = tmp_path_factory.mktemp("tiny-sdxl")
    tiny_sdxl_pipeline().save_pretrained(path)
    return path


@pytest.fixture
def tiny_flux():
    """A fresh seeded tiny FluxPipeline (CLIP + T5, guidance embeds, dynamic shifting; 32 px images,
    16 x 16 x 4 latents packed into 64 tokens of 16)."""
    return tiny_flux_pipeline()


@pytest.fixture(scope="session")
def tiny_sd3_dir(tmp_path_factory) -> Path:
    """The tiny SD3 pipeline without T5 saved once per session as a diffusers folder. Its
    model_index.json lists text_encoder_3 / tokenizer_3 as [null, null], which diffusers does not
    treat as optional: load with ``from_pretrained(path, text_encoder_3=None, tokenizer_3=None)``."""
    path = tmp_path_factory.mktemp("tiny-sd3")
    tiny_sd3_pipeline().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_sd3_t5_dir(tmp_path_factory) -> Path:
    """The tiny SD3 pipeline with the tiny T5 (text_encoder_3 / tokenizer_3) saved once per session."""
    path = tmp_path_factory.mktemp("tiny-sd3-t5")
    tiny_sd3_pipeline(t5=True).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_flux_dir(tmp_path_factory) -> Path:
    """The tiny FLUX pipeline saved once per session as a diffusers folder (tests never write into it)."""
    path = tmp_path_factory.mktemp("tiny-flux")
    tiny_flux_pipeline().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A tiny random CLIP model + tokenizer folder (for the CLIP-based rewards)."""
    path = tmp_path_factory.mktemp("tiny-clip")
    save_tiny_clip(path)
    return path


@pytest.fixture
def cpu_mesh():
    """A one-process gloo process group for the test (skipped when one is already up in this
    process), and its (1,)-device CPU mesh; the group is destroyed afterwards."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    if dist.is_initialized():
        pytest.skip("a process group is already up in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()
