"""TLCM schedulers inside real diffusers pipelines (tiny random models, CPU)."""

import math

import numpy as np
import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline, StableDiffusionXLPipeline
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
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


def test_stable_diffusion_3_pipeline_from_folder_without_t5(tiny_sd3_dir, tiny_sd3):
    # a saved T5-less SD3 folder needs the missing components passed explicitly
    pipe = StableDiffusion3Pipeline.from_pretrained(tiny_sd3_dir, text_encoder_3=None, tokenizer_3=None)
    # gamma = 0: SD3 / FLUX pipelines call scheduler.step without the generator, so gamma > 0 would
    # draw the fresh noise from the global torch RNG and two calls would differ
    pipe.scheduler = TLCMFlowScheduler.from_config(pipe.scheduler.config, gamma=0.0)
    tiny_sd3.scheduler = TLCMFlowScheduler.from_config(tiny_sd3.scheduler.config, gamma=0.0)
    np.testing.assert_allclose(run(pipe, size=16), run(tiny_sd3, size=16), atol=1e-6)


def test_flux_pipeline_from_folder_dynamic_shift(tiny_flux_dir):
    pipe = FluxPipeline.from_pretrained(tiny_flux_dir)
    pipe.scheduler = TLCMFlowScheduler.from_config(pipe.scheduler.config)
    assert pipe.scheduler.config.use_dynamic_shifting
    generator = torch.Generator().manual_seed(0)
    images = pipe(
        "a handwritten digit seven",
        num_inference_steps=4,
        guidance_scale=3.5,
        height=IMAGE_SIZE,
        width=IMAGE_SIZE,
        max_sequence_length=32,
        generator=generator,
        output_type="np",
    ).images
    assert images.shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3) and np.isfinite(images).all()
    # 32 px -> 16 x 16 latents (VAE factor 2) -> 8 x 8 packed 2 x 2 patches = 64 image tokens
    mu = calculate_shift((IMAGE_SIZE // 4) ** 2, 256, 4096, 0.5, 1.15)
    fractions = [k / 8 for k in (8, 6, 4, 1)]  # authors' 4-step milestones of M = 8
    expected = [math.exp(mu) / (math.exp(mu) + 1 / s - 1) for s in fractions] + [0.0]
    torch.testing.assert_close(pipe.scheduler.sigmas, torch.tensor(expected))
    torch.testing.assert_close(pipe.scheduler.timesteps, torch.tensor(expected[:-1]) * 1000)
    assert pipe.scheduler.step_index == 4


def test_stable_diffusion_3_pipeline_with_t5_from_folder(tiny_sd3_t5_dir):
    pipe = StableDiffusion3Pipeline.from_pretrained(tiny_sd3_t5_dir)
    assert pipe.text_encoder_3 is not None and pipe.tokenizer_3 is not None
    pipe.scheduler = TLCMFlowScheduler.from_config(pipe.scheduler.config)
    images = run(pipe, size=16)
    assert images.shape == (1, 16, 16, 3) and np.isfinite(images).all()
    torch.testing.assert_close(pipe.scheduler.sigmas, torch.tensor([1.0, 0.9, 0.75, 0.3, 0.0]))
    assert pipe.scheduler.step_index == 4
