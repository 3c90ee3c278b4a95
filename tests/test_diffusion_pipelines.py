"""TLCM schedulers inside real diffusers pipelines (tiny random models, CPU)."""

import numpy as np
import torch
from diffusers import StableDiffusionXLPipeline
from tiny_pipelines import IMAGE_SIZE

from tlcm import TLCMScheduler
from tlcm.diffusion.scheduler import TLCMFlowScheduler


def run(pipe, size: int = IMAGE_SIZE) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    kwargs = {"height": size, "width": size, "generator": generator, "output_type": "np"}
    return pipe("a handwritten digit seven", num_inference_steps=4, guidance_scale=0, **kwargs).images


def test_stable_diffusion_pipeline(tiny_sd):
    tiny_sd.scheduler = TLCMScheduler.from_config(tiny_sd.scheduler.config)
    images = run(tiny_sd)
    assert images.shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3) and np.isfinite(images).all()
    assert tiny_sd.scheduler.timesteps.tolist() == [999, 749, 499, 124]
    assert tiny_sd.scheduler.step_index == 4


def test_stable_diffusion_xl_pipeline_from_folder(tiny_sdxl_dir):
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir)
    pipe.scheduler = TLCMScheduler.from_config(pipe.scheduler.config, gamma=0.0)
    images = run(pipe)
    assert images.shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3) and np.isfinite(images).all()
    assert pipe.scheduler.timesteps.tolist() == [999, 749, 499, 124]
    again = run(pipe)
    np.testing.assert_allclose(images, again, atol=1e-6)


def test_stable_diffusion_3_flow_pipeline(tiny_sd3):
    tiny_sd3.scheduler = TLCMFlowScheduler.from_config(tiny_sd3.scheduler.config)
    images = run(tiny_sd3, size=16)
    assert images.shape == (1, 16, 16, 3) and np.isfinite(images).all()
    torch.testing.assert_close(tiny_sd3.scheduler.sigmas, torch.tensor([1.0, 0.9, 0.75, 0.3, 0.0]))
    assert tiny_sd3.scheduler.step_index == 4
