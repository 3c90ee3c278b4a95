"""The miniatures' build objective (tlcm/toy/build.py ``denoising_loss``, used by build.py and
build_flow.py) is the one their shipped teachers were trained with: on real digits the shipped UNet
and transformer fit it far better than an untrained network, and far better than they fit the
objective with a swapped pair or a flipped target (a build script that trained those would not
have made these teachers). Measured on 64 real digits, fixed noise (2026-12-07): UNet 0.24 (random
UNet 1.13; alpha and sigma swapped 0.58; x0 as the target 1.51); transformer 0.81 (v = x0 - eps
5.57; sigma and 1 - sigma swapped 1.94)."""

from functools import partial

import pytest
import torch
from diffusers import StableDiffusion3Pipeline, StableDiffusionPipeline, UNet2DConditionModel

from tlcm.diffusion.schedule import FlowSchedule, VPSchedule
from tlcm.toy import MINIATURE_SD, MINIATURE_SD3
from tlcm.toy.build import denoising_loss, unet_prediction
from tlcm.toy.build_flow import MAX_SEQUENCE_LENGTH, encode, flow_prediction

N = 64


@pytest.fixture(scope="module")
def digits():
    """(N real digit images (N, 3, 32, 32), their prompts, noise (N, 4, 8, 8), uniform draws (N,))."""
    pytest.importorskip("sklearn")
    from tlcm.toy.data import real_pairs

    images, texts, _ = real_pairs(N, seed=0)
    g = torch.Generator().manual_seed(0)
    return images, texts, torch.randn(N, 4, 8, 8, generator=g), torch.rand(N, generator=g)


@torch.no_grad()
def test_the_shipped_unet_fits_the_build_objective(digits):
    images, texts, eps, u = digits
    pipe = StableDiffusionPipeline.from_pretrained(MINIATURE_SD, safety_checker=None)
    x0 = pipe.vae.encode(images).latent_dist.mean * pipe.vae.config.scaling_factor
    ids = pipe.tokenizer(texts, padding="max_length", max_length=77, return_tensors="pt").input_ids
    cond = pipe.text_encoder(ids)[0]
    schedule = VPSchedule(pipe.scheduler.alphas_cumprod)
    t = (u * 1000).long()
    shipped = denoising_loss(schedule, partial(unet_prediction, pipe.unet, cond=cond), x0, eps, t)
    untrained = UNet2DConditionModel.from_config(pipe.unet.config)
    random = denoising_loss(schedule, partial(unet_prediction, untrained, cond=cond), x0, eps, t)
    assert shipped < 0.35 < 1.0 < random, (shipped, random)


@torch.no_grad()
def test_the_shipped_flow_transformer_fits_the_build_objective(digits):
    images, texts, eps, u = digits
    pipe = StableDiffusion3Pipeline.from_pretrained(MINIATURE_SD3, text_encoder_3=None, tokenizer_3=None)
    x0 = pipe.vae.encode(images).latent_dist.mean * pipe.vae.config.scaling_factor
    emb, pooled = encode(pipe, texts, MAX_SEQUENCE_LENGTH)
    predict = partial(flow_prediction, pipe.transformer, cond=emb, pooled=pooled)
    assert denoising_loss(FlowSchedule(), predict, x0, eps, u * 1000) < 1.2


def test_the_build_objective_weights_each_sample_by_hand():
    """Min-SNR's per-sample weights multiply each sample's mean squared error, then the batch mean:
    with a network that predicts 0 the loss is mean_b w_b mean(eps_b^2) (VP) and
    mean_b w_b mean((eps_b - x0_b)^2) (flow)."""
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    weight = torch.tensor([0.5, 2.0, 0.0])

    def zero(x_t, t):
        return torch.zeros_like(x_t)

    vp = VPSchedule(torch.linspace(0.99, 0.01, 1000))
    by_hand = (weight * eps.square().mean((1, 2, 3))).mean()
    loss = denoising_loss(vp, zero, x0, eps, torch.tensor([1, 500, 999]), weight)
    torch.testing.assert_close(loss, by_hand)
    by_hand = (weight * (eps - x0).square().mean((1, 2, 3))).mean()
    t = torch.tensor([100.0, 500.0, 900.0])
    torch.testing.assert_close(denoising_loss(FlowSchedule(), zero, x0, eps, t, weight), by_hand)
    torch.testing.assert_close(
        denoising_loss(FlowSchedule(), zero, x0, eps, t), (eps - x0).square().mean((1, 2, 3)).mean()
    )
