"""The GAN loss: hand-derived loss values, use on plain tensors with toy denoisers, checkpoint round
trip, weight files, config validation, and 2-step smoke trains on the tiny SD pipeline.

Toy setup for the hand-derived tests: a VP schedule with one timestep (alphas_cumprod = [0.36]),
prediction_type "sample" (the model output IS x0_hat); student: x0_hat = scale * x; the student's
1-step grid is [0], so fake = scale * noise (with gradients) and real = its detached 1-step sample.
The stub discriminator is linear: D(z) = sum(w * z) per sample, so grad_z D = w; it records the
timesteps of each call. Real images (real = "data") come from a table of known latents.
"""

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from device_discipline import device_discipline  # noqa: F401  (every test runs under DeviceDiscipline)
from engine_helpers import shrink
from safetensors.torch import save_file
from torch import nn

from recipes import PRESETS
from tlcm.checks import validate_recipe
from tlcm.conditioning import Conditioning
from tlcm.config import Phase, StudentConfig
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import StudentGrid
from tlcm.diffusion.sampling import sample_latents, teacher_timesteps
from tlcm.diffusion.schedule import FlowSchedule, VPSchedule
from tlcm.engine import train
from tlcm.errors import TLCMError
from tlcm.losses.auxiliary import AuxOptimizer
from tlcm.losses.base import StepContext
from tlcm.losses.dmd import DMD, DMDConfig
from tlcm.losses.gan import (
    GAN,
    GANConfig,
    accuracies,
    discriminator_loss,
    generator_loss,
    noise_fraction,
    pooled,
    r1_penalty,
    renoise_timesteps,
)
from tlcm.losses.mlcd import MLCDConfig
from tlcm.losses.shared import CONSISTENCY_PAIR, ConsistencyPair, prediction_key, samples_key
from tlcm.models.base import BaseModel
from tlcm.models.discriminator import Discriminator, PatchHeads
from tlcm.models.student import Student

LN2, LN3 = torch.log(torch.tensor(2.0)), torch.log(torch.tensor(3.0))


class LinearHeads(nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, features):
        return (features[0] * self.w).flatten(1).sum(1)


class LinearDiscriminator(Discriminator):
    """D(z) = sum(w * z): features are the input itself, the "head" is w."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.heads = LinearHeads(w)
        self.times: list[torch.Tensor] = []

    def features(self, x, t, cond):
        self.times.append(t)
        return [x]


def _context(batch=2, shape=(1, 2, 2), scale=0.5, seed=0, num_train_timesteps=1, grid=None, **fields):
    """A StepContext on the toy schedule, the x0 = scale * x student, a teacher predicting x0 = 0;
    the student grid is 1 step on 1 milestone on the 1-timestep schedule, else the default (8, 4);
    ``fields``: more StepContext.standalone fields (real_images, prompt_index)."""
    param = nn.Parameter(torch.tensor(scale))
    alphas = (
        torch.linspace(0.999, 0.36, num_train_timesteps) if num_train_timesteps > 1 else torch.tensor([0.36])
    )
    ctx = StepContext.standalone(
        student=lambda x, t, cond: param * x,
        teacher=Guided(lambda x, t, cond: torch.zeros_like(x), 2.0, Conditioning(torch.ones(1, 2, 3))),
        schedule=VPSchedule(alphas, prediction_type="sample"),
        cond=Conditioning(torch.zeros(batch, 2, 3)),
        generator=torch.Generator().manual_seed(seed),
        latent_shape=shape,
        grid=grid or (StudentGrid(1, 1) if num_train_timesteps == 1 else StudentGrid()),
        **fields,
    )
    return param, ctx


REAL_TABLE = torch.linspace(-2.0, 3.0, 6 * 4).view(6, 1, 2, 2)
"""Latents of 6 "real images" (1, 2, 2), for real = "data"."""


def _real_images(calls: list | None = None, table: torch.Tensor = REAL_TABLE):
    """``PhaseContext.real_images``: rows ``index`` of ``table`` (each call's index is recorded)."""

    def read(index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if calls is not None:
            calls.append(index.clone())
        return table[index]

    return read


def test_loss_formulas_by_hand():
    """Nonsaturating with logits 0 and ln 3: softplus(0) = ln 2, softplus(-ln 3) = ln(4/3),
    softplus(ln 3) = ln 4. Hinge with fake logits (0.5, -2), real (0.5, 2): L_G = (-0.5, 2),
    L_D = (relu(0.5) + relu(1.5), relu(-1) + relu(-1)) = (2, 0)."""
    zero_ln3 = torch.stack([torch.tensor(0.0), LN3])
    ln4_3 = torch.log(torch.tensor(4 / 3))
    torch.testing.assert_close(generator_loss(zero_ln3, "nonsaturating"), torch.stack([LN2, ln4_3]))
    torch.testing.assert_close(
        discriminator_loss(zero_ln3, zero_ln3, "nonsaturating"),
        torch.stack([2 * LN2, ln4_3 + 2 * LN2]),
    )
    fake, real = torch.tensor([0.5, -2.0]), torch.tensor([0.5, 2.0])
    torch.testing.assert_close(generator_loss(fake, "hinge"), torch.tensor([-0.5, 2.0]))
    torch.testing.assert_close(discriminator_loss(real, fake, "hinge"), torch.tensor([2.0, 0.0]))


def test_relu_generator_loss_and_accuracies_by_hand():
    """PCM's L_G = relu(1 - d): logits (0.5, 2, -1) -> (0.5, 0, 2), gradient (-1, 0, -1) (none past
    the margin; "hinge" -d would give -1 everywhere). Accuracy: real logits (1, -1, 0, 2) -> 2 of 4
    are > 0; fake logits (-1, 0, 3, -0.5) -> 2 of 4 are < 0 (a logit of 0 is wrong on both sides)."""
    d = torch.tensor([0.5, 2.0, -1.0], requires_grad=True)
    loss = generator_loss(d, "relu")
    torch.testing.assert_close(loss, torch.tensor([0.5, 0.0, 2.0]))
    loss.sum().backward()
    torch.testing.assert_close(d.grad, torch.tensor([-1.0, 0.0, -1.0]))
    acc = accuracies(torch.tensor([1.0, -1.0, 0.0, 2.0]), torch.tensor([-1.0, 0.0, 3.0, -0.5]))
    torch.testing.assert_close(acc, torch.tensor([0.5, 0.5]))
    acc = accuracies(torch.tensor([0.1, 0.2]), torch.tensor([0.3, -4.0]))
    torch.testing.assert_close(acc, torch.tensor([1.0, 0.5]))


def test_r1_of_a_linear_discriminator_is_the_squared_weight_norm():
    """D(z) = sum(w * z) -> grad_z D = w, ||w||^2 = 1 + 4 + 9 + 16 = 30 for every sample."""
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 2)
    z = torch.randn(3, 1, 2, 2, requires_grad=True)
    logits = LinearDiscriminator(w)(z, torch.zeros(3), None)
    torch.testing.assert_close(r1_penalty(logits, z), torch.full((3,), 30.0))


@pytest.mark.parametrize(
    "loss_type, g_loss_type", [("nonsaturating", "auto"), ("hinge", "auto"), ("hinge", "relu")]
)
def test_gan_component_by_hand_with_a_linear_discriminator(loss_type, g_loss_type):
    """fake = scale * eps (eps the noise the prediction started from), real = detached sample r.
    L_G = mean_b g(d_b), d_b = w . fake_b. Nonsaturating: g(d) = softplus(-d), so
    dL_G/dscale = mean_b -sigmoid(-d_b) w . eps_b; hinge: g(d) = -d, dL_G/dscale = mean_b -w . eps_b;
    generator_loss "relu": g(d) = relu(1 - d), dL_G/dscale = mean_b -[d_b < 1] w . eps_b.
    No gradient reaches w.
    The head update on two micro-batches (AdamW, beta1 = 0, first step) moves w by
    -lr * sign(dL_D/dw), L_D the mean of both micro-batches' losses; R1 (gamma = 2) adds
    gamma / 2 * ||w||^2 to L_D and gamma * w to its gradient. The metrics are those means; the
    accuracies are those of the logits before the update (w)."""
    w = torch.tensor([0.3, -0.2, 0.1, 0.4]).view(1, 2, 2)
    config = GANConfig(input="latent", loss_type=loss_type, generator_loss=g_loss_type, r1_weight=2.0)
    gan = GAN(config, discriminator=LinearDiscriminator(w), device="cpu")

    def expected(ctx):
        """(L_G, dL_G/dscale, L_D, mean D(fake), dL_D/dw without R1, accuracies) of one micro-batch."""
        eps = ctx.computed("student_prediction/1/1").x_t
        real = ctx.computed("student_samples/1/1/0")
        d_fake, d_real = (0.5 * eps * w).flatten(1).sum(1), (real * w).flatten(1).sum(1)
        w_eps = (eps * w).flatten(1).sum(1)
        acc = torch.stack([(d_real > 0).float().mean(), (d_fake < 0).float().mean()])
        if loss_type == "nonsaturating":
            d_loss = (F.softplus(-d_real) + F.softplus(d_fake)).mean()
            dw = (
                -torch.sigmoid(-d_real).view(-1, 1, 1, 1) * real
                + torch.sigmoid(d_fake).view(-1, 1, 1, 1) * 0.5 * eps
            )
        else:
            d_loss = (torch.relu(1 - d_real) + torch.relu(1 + d_fake)).mean()
            dw = (
                -(d_real < 1).float().view(-1, 1, 1, 1) * real
                + (d_fake > -1).float().view(-1, 1, 1, 1) * 0.5 * eps
            )
        if g_loss_type == "relu":
            g_loss, grad = F.relu(1 - d_fake).mean(), (-(d_fake < 1).float() * w_eps).mean()
        elif loss_type == "nonsaturating":
            g_loss, grad = F.softplus(-d_fake).mean(), (-torch.sigmoid(-d_fake) * w_eps).mean()
        else:
            g_loss, grad = -d_fake.mean(), -w_eps.mean()
        return g_loss, grad, d_loss, d_fake.mean(), dw.mean(0), acc

    (scale, ctx), (_, other) = _context(seed=0), _context(seed=1)
    loss = gan(ctx)["gan"]
    loss.backward()
    gan(other)
    g_loss, grad, d_loss, d_fake, dw, acc = expected(ctx)
    _, _, d_loss_other, d_fake_other, dw_other, acc_other = expected(other)
    torch.testing.assert_close(loss, g_loss)
    torch.testing.assert_close(scale.grad, grad)
    assert gan.discriminator.heads.w.grad is None
    metrics = gan.aux_step([ctx, other])
    assert set(metrics) == {
        "gan/d_loss",
        "gan/d_real",
        "gan/d_fake",
        "gan/r1",
        "gan/d_acc_real",
        "gan/d_acc_fake",
    }
    assert all(v.dim() == 0 for v in metrics.values())
    torch.testing.assert_close(metrics["gan/d_acc_real"], (acc[0] + acc_other[0]) / 2)
    torch.testing.assert_close(metrics["gan/d_acc_fake"], (acc[1] + acc_other[1]) / 2)
    torch.testing.assert_close(metrics["gan/d_loss"], (d_loss + d_loss_other) / 2)
    torch.testing.assert_close(metrics["gan/d_fake"], (d_fake + d_fake_other) / 2)
    torch.testing.assert_close(metrics["gan/r1"], w.square().sum())
    step = torch.sign((dw + dw_other) / 2 + 2.0 * w)
    torch.testing.assert_close(gan.discriminator.heads.w.detach(), w - config.disc_lr * step)


def test_patch_heads_by_hand():
    """PCM's heads (discriminator_sd15.py DiscriminatorHead): per level, per head, h = a(f),
    out = conv1x1(b(h) + h), a and b conv3x3 -> GroupNorm(gcd(32, C)) -> LeakyReLU(0.01); one
    flattened logit map (B, H W) per head, level by level."""
    torch.manual_seed(0)
    heads = PatchHeads([4, 8], per_level=2)
    feats = [torch.randn(2, 4, 3, 3), torch.randn(2, 8, 2, 2)]

    def block(seq, x, groups):
        conv, norm = seq[0], seq[1]
        y = F.group_norm(F.conv2d(x, conv.weight, conv.bias, padding=1), groups, norm.weight, norm.bias)
        return F.leaky_relu(y, 0.01)

    out = heads(feats)
    assert [o.shape for o in out] == [(2, 9), (2, 9), (2, 4), (2, 4)]
    expected = []
    for level, f, groups in zip(heads.levels, feats, (4, 8), strict=True):
        for head in level:
            h = block(head.a, f, groups)
            expected.append(F.conv2d(block(head.b, h, groups) + h, head.out.weight, head.out.bias).flatten(1))
    for o, e in zip(out, expected, strict=True):
        torch.testing.assert_close(o, e)


def test_patch_logits_losses_apply_per_patch_then_average():
    """Patch logits: the loss on every patch, the mean over each head's patches, then over heads
    (PCM's d_loss / g_loss); not the loss of the mean logit. Head 1 (2 patches) [2, -2], head 2
    (4 patches) all 0.5, one sample: relu(1 - d): (0 + 3) / 2 = 1.5 and 0.5, so 1.0 (the pooled
    logit 0.25 would give 0.75); relu(1 + d): (3 + 0) / 2, 1.5: 1.5; -d: 0 and -0.5: -0.25;
    softplus(-d): (sp(-2) + sp(2)) / 2 and sp(-0.5)."""
    logits = [torch.tensor([[2.0, -2.0]]), torch.full((1, 4), 0.5)]
    sp = F.softplus
    torch.testing.assert_close(pooled(logits), torch.tensor([0.25]))
    torch.testing.assert_close(generator_loss(logits, "relu"), torch.tensor([1.0]))
    torch.testing.assert_close(generator_loss(logits, "hinge"), torch.tensor([-0.25]))
    ns = ((sp(torch.tensor(-2.0)) + sp(torch.tensor(2.0))) / 2 + sp(torch.tensor(-0.5))) / 2
    torch.testing.assert_close(generator_loss(logits, "nonsaturating"), ns.view(1))
    fake = [-t for t in logits]  # relu(1 + d) on fake: head 1 [-2, 2] -> 1.5, head 2 -0.5 -> 0.5
    torch.testing.assert_close(discriminator_loss(logits, fake, "hinge"), torch.tensor([2.0]))
    torch.testing.assert_close(discriminator_loss(logits, fake, "nonsaturating"), 2 * ns.view(1))


class PatchLinearHeads(nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, features):
        return [(features[0] * self.w).flatten(1), (features[0] * -self.w).flatten(1)[:, :2]]


def test_gan_with_patch_logits_by_hand():
    """GAN on a discriminator with two patch heads, d1 = w * z (4 patches) and d2 = the first two
    of -w * z: L_G = mean_b mean_heads mean_patches relu(1 - d) on the fake, L_D the hinge per
    patch likewise; the logged logits and accuracies are of the pooled logit per sample."""
    w = torch.tensor([3.0, -3.0, 0.4, 2.5]).view(1, 2, 2)
    disc = LinearDiscriminator(w)
    disc.heads = PatchLinearHeads(w)
    gan = GAN(GANConfig(input="latent", loss_type="hinge", generator_loss="relu"), discriminator=disc)
    _, ctx = _context(seed=3, batch=4)
    loss = gan(ctx)["gan"]
    eps = ctx.computed("student_prediction/1/1").x_t
    real = ctx.computed("student_samples/1/1/0")

    def heads(z):
        d = (z * w).flatten(1)
        return d, -d[:, :2]

    def per_sample(f, z):
        return torch.stack([f(d).mean(1) for d in heads(z)]).mean(0)

    torch.testing.assert_close(loss, per_sample(lambda d: F.relu(1 - d), 0.5 * eps).mean())
    metrics = gan.aux_step([ctx])
    d_loss = per_sample(lambda d: F.relu(1 - d), real) + per_sample(lambda d: F.relu(1 + d), 0.5 * eps)
    torch.testing.assert_close(metrics["gan/d_loss"], d_loss.mean())
    d_real, d_fake = per_sample(lambda d: d, real), per_sample(lambda d: d, 0.5 * eps)
    torch.testing.assert_close(metrics["gan/d_real"], d_real.mean())
    torch.testing.assert_close(metrics["gan/d_acc_real"], (d_real > 0).float().mean())
    torch.testing.assert_close(metrics["gan/d_acc_fake"], (d_fake < 0).float().mean())


@pytest.mark.parametrize("noise_level", [0, 500])
def test_timm_latent_gan_on_plain_tensors(noise_level):
    """A timm discriminator on 8 x 8 latents from toy callables: the student gets a gradient, the
    frozen backbone and the heads none from L_G; aux_step changes only the heads."""
    config = GANConfig(input="latent", timm_model="resnet18", noise_level=noise_level, r1_weight=1.0)
    config.validate(1000, StudentGrid())
    gan = GAN(config, latent_channels=4, device="cpu")
    scale, ctx = _context(shape=(4, 8, 8), num_train_timesteps=1000)
    gan(ctx)["gan"].backward()
    assert scale.grad is not None and scale.grad != 0
    disc = gan.discriminator
    assert all(p.grad is None for p in disc.parameters())
    heads = {k: v.clone() for k, v in disc.heads.state_dict().items()}
    backbone = {k: v.clone() for k, v in disc.backbone.state_dict().items()}
    metrics = gan.aux_step([ctx])
    assert {"gan/d_loss", "gan/d_real", "gan/d_fake", "gan/r1", "gan/d_acc_real", "gan/d_acc_fake"} == set(
        metrics
    )
    assert any(not torch.equal(heads[k], v) for k, v in disc.heads.state_dict().items())
    assert all(torch.equal(backbone[k], v) for k, v in disc.backbone.state_dict().items())
    assert not disc.backbone.training


def test_pixel_discriminator_resize_reaches_every_pixel_when_shrinking():
    """1024 px decoded images shrink to the backbone's 64 px antialiased: every pixel gets a
    gradient (plain bilinear: 4 of each 16 x 16 block, 1.6 %); enlarging (the miniature's 32 px)
    stays plain bilinear, bit for bit."""
    disc = GAN(GANConfig(input="pixel"), latent_channels=4).discriminator
    disc.backbone = nn.Identity()  # the resize and normalisation only
    images = torch.rand(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0), requires_grad=True)
    disc.features(images, None, None).sum().backward()
    assert (images.grad != 0).all()
    small = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    plain = F.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.equal(disc.features(small, None, None), ((plain + 1) / 2 - disc.mean) / disc.std)


def test_teacher_real_source_and_pixel_input_need_a_decoder():
    """real="teacher": CFG-DDIM samples of the x0 = 0 teacher are exactly 0; pixel input without a
    decode function fails with a clear message."""
    gan = GAN(GANConfig(input="latent", real="teacher", teacher_steps=2), latent_channels=4)
    _, ctx = _context(shape=(4, 8, 8), num_train_timesteps=1000)
    gan(ctx)
    assert torch.equal(ctx.computed("teacher_samples/2"), torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="no decode function"):
        GAN(GANConfig(input="pixel"), latent_channels=4)(
            _context(shape=(4, 8, 8), num_train_timesteps=1000)[1]
        )


def test_real_data_side_is_the_real_image_latents():
    """real = "data": D's real input is ``ctx.real_latents()``, rows prompt_index (3, 0) of the image
    table, read once per step (G's forward, L_D and the accuracy share it; with q = 1 no
    student samples are drawn at all); with the linear D the logged L_D, mean logits and accuracies are those
    of R = table[(3, 0)] and fake = 0.5 eps. Without real images: the data.images message."""
    w = torch.tensor([0.3, -0.2, 0.1, 0.4]).view(1, 2, 2)
    gan = GAN(GANConfig(input="latent", real="data"), discriminator=LinearDiscriminator(w))
    calls = []
    _, ctx = _context(real_images=_real_images(calls), prompt_index=torch.tensor([3, 0]))
    gan(ctx)["gan"].backward()
    metrics = gan.aux_step([ctx])
    real, eps = REAL_TABLE[[3, 0]], ctx.computed("student_prediction/1/1").x_t
    d_real, d_fake = (real * w).flatten(1).sum(1), (0.5 * eps * w).flatten(1).sum(1)
    assert len(calls) == 1 and calls[0].tolist() == [3, 0]
    assert torch.equal(gan.inputs(ctx)[0], real)
    torch.testing.assert_close(metrics["gan/d_real"], d_real.mean())
    torch.testing.assert_close(metrics["gan/d_loss"], (F.softplus(-d_real) + F.softplus(d_fake)).mean())
    torch.testing.assert_close(metrics["gan/d_acc_real"], (d_real > 0).float().mean())
    torch.testing.assert_close(metrics["gan/d_acc_fake"], (d_fake < 0).float().mean())
    assert ctx.computed("student_samples/1/1/0", None) is None  # the student's samples: not drawn
    assert GANConfig(real="data").data_needs() == {"images": ('real "data"', 'use real "student"')}
    assert GANConfig().data_needs() == {} and GANConfig(real="teacher").data_needs() == {}
    with pytest.raises(TLCMError, match="--recipes.data.images"):
        gan(_context()[1])


def test_real_data_without_images_is_refused_for_the_recipe(tmp_path):
    recipe = _gan_recipe(tmp_path / "model", tmp_path / "run", input="latent", real="data")
    with pytest.raises(TLCMError, match=r'losses.gan.real "data" needs --recipes.data.images DIR'):
        validate_recipe(recipe, world_size=1)


def test_consistency_real_side_needs_mlcd_listed_before_it_in_the_recipe(tiny_sd_dir, tmp_path):
    """real "consistency" reads MLCD's pair of the step: refused before anything loads when no MLCD
    loss comes before the GAN in the phase (after it, or none), accepted when it does."""
    recipe = _gan_recipe(tiny_sd_dir, tmp_path / "run", input="latent", real="consistency")
    validate_recipe(recipe, world_size=1)
    phase = recipe.phases["gan"]
    gan, mlcd = phase.losses["gan"], phase.losses["mlcd"]
    for losses in ({"gan": gan, "mlcd": mlcd}, {"gan": gan}):
        bad = replace(recipe, phases={"gan": replace(phase, losses=losses)})
        with pytest.raises(TLCMError) as err:
            validate_recipe(bad, world_size=1)
        assert str(err.value) == (
            "--recipes.phases.gan.losses.gan reads the step's 'consistency_pair', which no loss listed "
            "before it leaves: list an \"mlcd\" loss (its online output and target) before 'gan' in "
            "--recipes.phases.gan.losses"
        )


@pytest.mark.parametrize("independent", [False, True])
def test_independent_noise_draws_tau_and_eps_per_side(independent):
    """noise_level 999 on a 1000-step schedule, real = "data": z = alpha(tau) x + sigma(tau) eps on
    each side. Shared (the default): one tau and one eps (recovered from z) for both sides; with
    independent_noise: both differ per side. D sees each side at its own tau (G's forward and the
    L_D pass on the fake: tau_fake; the real: tau_real)."""
    disc = LinearDiscriminator(torch.ones(1, 2, 2))
    config = GANConfig(input="latent", real="data", noise_level=999, independent_noise=independent)
    config.validate(1000, StudentGrid())
    gan = GAN(config, discriminator=disc)
    _, ctx = _context(
        batch=6, num_train_timesteps=1000, real_images=_real_images(), prompt_index=torch.arange(6)
    )
    z_real, z_fake, tau_real, tau_fake = gan.inputs(ctx)
    schedule, x_real, x_fake = ctx.schedule, REAL_TABLE, ctx.computed(prediction_key(ctx)).x0.detach()
    assert (tau_real >= 0).all() and (tau_fake >= 0).all() and (tau_real <= 999).all()

    def noise(z, x, tau):
        return (z - schedule.alpha(tau).view(-1, 1, 1, 1) * x) / schedule.sigma(tau).view(-1, 1, 1, 1)

    eps_real, eps_fake = noise(z_real, x_real, tau_real), noise(z_fake.detach(), x_fake, tau_fake)
    if independent:
        assert (tau_real != tau_fake).any() and not torch.allclose(eps_real, eps_fake, atol=1e-2)
    else:
        assert torch.equal(tau_real, tau_fake)
        torch.testing.assert_close(eps_real, eps_fake, atol=1e-4, rtol=1e-4)
    gan(ctx)
    gan.aux_step([ctx])
    assert [t.tolist() for t in disc.times] == [tau_fake.tolist(), tau_real.tolist(), tau_fake.tolist()]


def test_renoise_timesteps_map_fractions_onto_clean_to_noise_level_by_hand(monkeypatch):
    """tau = clean + f (noise_level - clean) on the schedule's grid (rounded on VP, whose clean end
    is t = -1; real on flow, clean at 0), and the GAN re-noises each side at the tau of its drawn
    fraction: with every f pinned to 0.25 and noise_level 999 on a 1000-step VP schedule, D sees
    tau = -1 + 0.25 x 1000 = 249 on both sides."""
    vp = VPSchedule(torch.linspace(0.999, 0.01, 1000))
    f = torch.tensor([0.0, 0.25, 0.5, 0.9995])
    assert renoise_timesteps(vp, f, 500).tolist() == [-1, 124, 250, 500]  # -1 + f 501, rounded
    flow = FlowSchedule(1000)
    torch.testing.assert_close(renoise_timesteps(flow, f, 500), f * 500)

    monkeypatch.setattr("tlcm.losses.gan.noise_fraction", lambda ctx, b, *_: torch.full((b,), 0.25))
    config = GANConfig(input="latent", real="data", noise_level=999, independent_noise=True)
    gan = GAN(config, discriminator=LinearDiscriminator(torch.ones(1, 2, 2)))
    _, ctx = _context(
        batch=3, num_train_timesteps=1000, real_images=_real_images(), prompt_index=torch.arange(3)
    )
    _, _, tau_real, tau_fake = gan.inputs(ctx)
    assert tau_real.tolist() == tau_fake.tolist() == [249, 249, 249]


def test_renoise_timesteps_of_uniform_fractions_are_uniform_over_every_integer():
    """D's tau from f ~ U[0, 1) on a VP schedule: each integer of clean..noise_level equally likely,
    both ends included (-1, 0 and 1 a third each of 6000 draws; rounding f (noise_level - clean)
    would give the ends a quarter each). f = 1 (a logit-normal draw can round to it) stays at
    noise_level."""
    vp = VPSchedule(torch.linspace(0.999, 0.01, 1000))
    tau = renoise_timesteps(vp, torch.rand(6000, generator=torch.Generator().manual_seed(0)), 1)
    for share in (torch.bincount(tau + 1, minlength=3).double() / 6000).tolist():
        assert abs(share - 1 / 3) < 0.03
    assert renoise_timesteps(vp, torch.tensor([1.0]), 500).tolist() == [500]


def _pair_context(schedule, t_s, t_m, segments=4, seed=0):
    """A context on ``schedule`` holding an MLCD ``ConsistencyPair`` (3 samples, (1, 2, 2)): online =
    scale * X (X fixed, scale the student's parameter, 0.5), target = T (fixed), at t_s, t_m."""
    scale, ctx = _context(batch=3, num_train_timesteps=1000, seed=seed)
    ctx.phase = replace(ctx.phase, schedule=schedule)
    x = torch.linspace(-1.0, 2.0, 12).view(3, 1, 2, 2)
    target = torch.linspace(3.0, -2.0, 12).view(3, 1, 2, 2)
    pair = ConsistencyPair(scale * x, target, t_s, t_m, segments)
    ctx.shared(CONSISTENCY_PAIR, lambda: pair)
    return scale, ctx, x, target


@pytest.mark.parametrize("flow", [False, True])
def test_consistency_real_side_is_pcms_adversarial_pair_by_hand(flow):
    """real = "consistency" (PCM's adversarial consistency loss): the real side is the MLCD target
    T, the fake the online output scale * X (gradients to scale only through it); both carried
    forward from t_s to ONE tau in t_s .. upper - 1 of t_m's segment (M = 4: upper 250, 500, 1000;
    flow: t_s .. upper) with fresh noise per side: z = a x + std eps, a = alpha(tau) / alpha(t_s).
    With the linear D and generator_loss "relu": L_G = mean relu(1 - w . z_fake), dL_G/dscale =
    mean -[w . z_fake < 1] a w . X. D sees tau on both sides (G's pass, then real, fake)."""
    schedule = FlowSchedule(1000) if flow else VPSchedule(torch.linspace(0.999, 0.01, 1000))
    t_s = torch.tensor([0.0, 250.0, 500.0]) if flow else torch.tensor([-1, 250, 612])
    t_m = torch.tensor([120.0, 400.0, 900.0]) if flow else torch.tensor([120, 400, 900])
    w = torch.tensor([0.3, -0.2, 0.1, 0.4]).view(1, 2, 2)
    disc = LinearDiscriminator(w)
    config = GANConfig(input="latent", real="consistency", loss_type="hinge", generator_loss="relu")
    config.validate(1000, StudentGrid(4, 4))
    gan = GAN(config, discriminator=disc)
    scale, ctx, x, target = _pair_context(schedule, t_s, t_m)
    z_real, z_fake, tau_real, tau_fake = gan.inputs(ctx)
    assert torch.equal(tau_real, tau_fake)
    upper = torch.tensor([250.0, 500.0, 1000.0])
    assert (tau_real >= t_s).all() and (tau_real <= (upper if flow else upper - 1)).all()
    gen = torch.Generator().manual_seed(0)  # the step's draws: u of tau, then each side's noise
    u = torch.rand(3, generator=gen)
    eps_real, eps_fake = (torch.randn(3, 1, 2, 2, generator=gen) for _ in range(2))
    torch.testing.assert_close(tau_real, schedule.uniform_timesteps(u, t_s, upper if flow else upper - 1))
    a = schedule.alpha(tau_real) / schedule.alpha(t_s)
    std = (schedule.sigma(tau_real).square() - (a * schedule.sigma(t_s)).square()).sqrt()
    torch.testing.assert_close(z_real, a.view(-1, 1, 1, 1) * target + std.view(-1, 1, 1, 1) * eps_real)
    torch.testing.assert_close(
        z_fake.detach(), a.view(-1, 1, 1, 1) * 0.5 * x + std.view(-1, 1, 1, 1) * eps_fake
    )
    loss = gan(ctx)["gan"]
    loss.backward()
    d_fake = (z_fake.detach() * w).flatten(1).sum(1)
    torch.testing.assert_close(loss, F.relu(1 - d_fake).mean())
    grad = (-(d_fake < 1).float() * a * (x * w).flatten(1).sum(1)).mean()
    torch.testing.assert_close(scale.grad, grad)
    metrics = gan.aux_step([ctx])
    d_real = (z_real * w).flatten(1).sum(1)
    torch.testing.assert_close(metrics["gan/d_real"], d_real.mean())
    torch.testing.assert_close(metrics["gan/d_acc_real"], (d_real > 0).float().mean())
    assert [t.tolist() for t in disc.times] == [tau_real.tolist()] * 3


@pytest.mark.parametrize("u, expected", [(0.0, 250), (0.99999, 499)])
def test_consistency_tau_window_ends_by_hand(u, expected):
    """tau spans t_s .. upper - 1 of the sample's segment (PCM's randint(edge, edge + T / M), upper
    excluded): VP, M = 4, t_s = 250, t_m = 400 (segment 250..500): u = 0 -> 250, u -> 1 -> 499."""
    config = GANConfig(input="latent", real="consistency")
    gan = GAN(config, discriminator=LinearDiscriminator(torch.ones(1, 2, 2)))
    schedule = VPSchedule(torch.linspace(0.999, 0.01, 1000))
    _, ctx, _, _ = _pair_context(schedule, torch.full((3,), 250), torch.full((3,), 400))
    ctx.rand = lambda *shape: torch.full(shape, u)
    assert gan.inputs(ctx)[2].tolist() == [expected] * 3


def test_consistency_real_side_without_mlcd_says_what_to_do():
    gan = GAN(
        GANConfig(input="latent", real="consistency"), discriminator=LinearDiscriminator(torch.ones(1, 2, 2))
    )
    with pytest.raises(TLCMError, match='list an "mlcd" loss first in the phase'):
        gan(_context()[1])


@pytest.mark.parametrize("distribution", ["uniform", "logit_normal", "shifted"])
def test_tau_distribution_fractions_by_hand(distribution):
    """f of tau = clean + f (noise_level - clean) from the step's generator: uniform u, sigmoid(n)
    for logit_normal, 3 u / (1 + 2 u) for shifted (shift 3); shifted puts more mass towards noise."""
    _, ctx = _context(seed=7)
    f = noise_fraction(ctx, 2000, distribution, 3.0)
    gen = torch.Generator().manual_seed(7)
    if distribution == "logit_normal":
        expected = torch.sigmoid(torch.randn(2000, generator=gen))
    else:
        u = torch.rand(2000, generator=gen)
        expected = u if distribution == "uniform" else 3 * u / (1 + 2 * u)
    torch.testing.assert_close(f, expected)
    assert 0 <= f.min() and f.max() <= 1
    if distribution == "shifted":
        assert f.mean() > 0.6  # uniform: 0.5


def test_accuracy_is_measured_before_the_update():
    """disc_steps 2 at lr 1: D starts wrong on every real sample (w = -0.1, real latents 10: d_real
    = -4), and its first update turns them right (w -> 0.9). gan/d_acc_real is the accuracy before
    the update (0: held out), while gan/d_real is the last update's mean logit (> 0)."""
    table = torch.full((2, 1, 2, 2), 10.0)
    gan = GAN(
        GANConfig(input="latent", real="data", disc_steps=2, disc_lr=1.0),
        discriminator=LinearDiscriminator(torch.full((1, 2, 2), -0.1)),
    )
    _, ctx = _context(real_images=_real_images(table=table), prompt_index=torch.tensor([0, 1]))
    fake = ctx.shared("x", lambda: gan.inputs(ctx)[1]).detach()
    d_fake = (fake * -0.1).flatten(1).sum(1)
    metrics = gan.aux_step([ctx])
    assert metrics["gan/d_acc_real"].item() == 0.0 and metrics["gan/d_real"].item() > 0
    torch.testing.assert_close(metrics["gan/d_acc_fake"], (d_fake < 0).float().mean())


def test_optimizer_settings_reach_adamw():
    """disc_* / fake_* fields become the AdamW param group (betas, weight decay) and the clip; the
    defaults are the former fixed (0, 0.99), 0, 1. Weight decay moves a zero-gradient parameter by
    -lr wd p; the clip caps the gradient AdamW sees (4 -> 1; 10 or 0: left at 4)."""
    w = torch.ones(1, 2, 2)
    gan = GAN(
        GANConfig(disc_betas=(0.9, 0.999), disc_weight_decay=0.01, disc_max_grad_norm=10.0),
        discriminator=LinearDiscriminator(w),
    )
    assert isinstance(gan.optimizer.opt, torch.optim.AdamW)
    group = gan.optimizer.opt.param_groups[0]
    assert (group["betas"], group["weight_decay"], gan.optimizer.max_grad_norm) == ((0.9, 0.999), 0.01, 10.0)
    group = GAN(GANConfig(), discriminator=LinearDiscriminator(w)).optimizer.opt.param_groups[0]
    assert (group["betas"], group["weight_decay"]) == ((0.0, 0.99), 0.0)

    class Fake(nn.Module):
        def __init__(self):
            super().__init__()
            self.b = nn.Parameter(torch.tensor(0.0))

    dmd = DMD(DMDConfig(fake_betas=(0.5, 0.9), fake_weight_decay=0.1, fake_max_grad_norm=0.0), Fake())
    group = dmd.opt.opt.param_groups[0]
    assert (group["betas"], group["weight_decay"], dmd.opt.max_grad_norm) == ((0.5, 0.9), 0.1, 0.0)
    group = DMD(DMDConfig(), Fake()).opt.opt.param_groups[0]
    assert (group["betas"], group["weight_decay"], DMD(DMDConfig(), Fake()).opt.max_grad_norm) == (
        (0.0, 0.99),
        0.0,
        1.0,
    )

    p = nn.Parameter(torch.tensor([2.0]))
    AuxOptimizer([p], lr=0.1, weight_decay=0.5).step(lambda c: 0 * p.sum(), [None])
    torch.testing.assert_close(p.detach(), torch.tensor([2.0 * (1 - 0.1 * 0.5)]))
    for clip, seen in [(1.0, 1.0), (10.0, 4.0), (0.0, 4.0)]:
        q = nn.Parameter(torch.tensor([0.0]))
        opt = AuxOptimizer([q], lr=0.1, max_grad_norm=clip)
        grads = []
        opt.opt.register_step_pre_hook(lambda o, args, kwargs, q=q, grads=grads: grads.append(q.grad.item()))
        opt.step(lambda c, q=q: 4 * q.sum(), [None])
        assert grads == [pytest.approx(seen)], clip


def test_checkpoint_round_trip_restores_heads_and_optimizer():
    """Two updates of A, its state through torch.save/load(weights_only) into a fresh B whose heads
    were perturbed: same heads, same optimizer state, and the next update of both is identical."""
    config = GANConfig(input="latent", timm_model="resnet18")
    a, b = GAN(config, 4), GAN(config, 4)
    with torch.no_grad():
        for p in b.discriminator.heads.parameters():
            p.add_(1.0)
    for seed in (0, 1):
        a.aux_step([_context(shape=(4, 8, 8), seed=seed, num_train_timesteps=1000)[1]])
    buffer = io.BytesIO()
    torch.save(a.checkpoint_state(), buffer)
    buffer.seek(0)
    b.load_checkpoint_state(torch.load(buffer, weights_only=True))
    sa, sb = a.checkpoint_state(), b.checkpoint_state()
    assert all(torch.equal(sa["heads"][k], sb["heads"][k]) for k in sa["heads"])
    for i, state in sa["optimizer"]["state"].items():
        assert all(torch.equal(v, sb["optimizer"]["state"][i][k]) for k, v in state.items())
    for gan in (a, b):
        gan.aux_step([_context(shape=(4, 8, 8), seed=2, num_train_timesteps=1000)[1]])
    ha, hb = a.discriminator.heads.state_dict(), b.discriminator.heads.state_dict()
    assert all(torch.equal(ha[k], hb[k]) for k in ha)


def test_backbone_weight_file_loads_and_mismatch_is_named(tmp_path):
    """A resnet18 classifier checkpoint (fc keys ignored) loads into the pixel backbone, and its
    3-channel stem is adapted for 4-channel latents; a file lacking a key names it."""
    import timm

    weights = timm.create_model("resnet18", pretrained=False).state_dict()
    save_file(weights, tmp_path / "r18.safetensors")
    gan = GAN(GANConfig(backbone_weights=str(tmp_path / "r18.safetensors")), 4)
    torch.testing.assert_close(
        gan.discriminator.backbone.state_dict()["layer1.0.conv1.weight"], weights["layer1.0.conv1.weight"]
    )
    latent = GAN(GANConfig(input="latent", backbone_weights=str(tmp_path / "r18.safetensors")), 4)
    assert latent.discriminator.backbone.state_dict()["conv1.weight"].shape[1] == 4
    del weights["layer2.0.bn1.running_mean"]
    torch.save(weights, tmp_path / "r18.pth")
    with pytest.raises(TLCMError, match=r"missing keys \(1\): layer2.0.bn1.running_mean"):
        GAN(GANConfig(backbone_weights=str(tmp_path / "r18.pth")), 4)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("loss_type", "wasserstein", "loss_type must be one of nonsaturating, hinge"),
        ("real", "dataset", "real must be one of student, teacher, data"),
        ("generator_loss", "wasserstein", "generator_loss must be one of auto, nonsaturating, hinge, relu"),
        ("tau_distribution", "beta", "tau_distribution must be one of uniform, logit_normal, shifted"),
        ("independent_noise", True, "set noise_level > 0"),
        ("tau_distribution", "shifted", "set noise_level > 0"),
        ("tau_shift", 0.5, "tau_shift must be >= 1"),
        ("disc_betas", (1.0, 0.99), r"disc_betas must be two values in \[0, 1\)"),
        ("disc_weight_decay", -0.1, "need disc_weight_decay >= 0"),
        ("disc_max_grad_norm", -1.0, "disc_max_grad_norm >= 0"),
        ("input", "rgb", "input must be one of pixel, latent"),
        ("timm_model", "resnet_nonexistent", "not a timm model"),
        ("out_indices", (2, 3, 7), "no features_only levels"),
        ("backbone_weights", "/no/such/file.safetensors", "is not a file"),
        ("noise_level", 1000, "noise_level must be in 0..999"),
        ("disc_steps", 0, "disc_steps must be >= 1"),
        ("backbone", "teacher", 'needs input "latent"'),
        ("real", "consistency_x", "real must be one of student, teacher, data, consistency"),
    ],
)
def test_invalid_config_values_are_refused(field, value, message):
    GANConfig().validate(1000, StudentGrid())
    with pytest.raises(ValueError, match=message):
        replace(GANConfig(), **{field: value}).validate(1000, StudentGrid())


@pytest.mark.parametrize(
    "model, out_indices, error",
    [
        ("resnet18", (2, 3, 7), IndexError),  # a CNN's level past its last
        ("vit_small_patch16_224", (20,), AssertionError),  # a ViT's block past its last
    ],
)
def test_timm_levels_a_model_lacks_are_refused_naming_them(model, out_indices, error):
    """What timm raises for out_indices a model has not (checked on the meta device) becomes the
    one ValueError naming the model and the levels, with timm's own message after it."""
    config = GANConfig(timm_model=model, out_indices=out_indices)
    with pytest.raises(ValueError, match=rf"timm_model {model!r} has no features_only levels") as err:
        config.validate(1000, StudentGrid())
    assert isinstance(err.value.__cause__, error)


@pytest.mark.parametrize(
    "raised, refused",
    [
        (RuntimeError("features_only not implemented for LeVit in non-convolutional mode."), True),
        (ValueError("Unknown feature class"), True),
        (ImportError("cannot import name 'xyz' from 'timm.layers'"), False),
    ],
)
def test_only_timms_refusals_are_reported_as_missing_levels(monkeypatch, raised, refused):
    """The except around timm.create_model catches what timm raises about features_only (and a
    meta-device op: RuntimeError); anything else (a broken timm install) propagates as it is."""
    import timm

    def create_model(*args, **kwargs):
        raise raised

    monkeypatch.setattr(timm, "create_model", create_model)
    with pytest.raises(ValueError if refused else type(raised)) as err:
        GANConfig().validate(1000, StudentGrid())
    if refused:
        assert "has no features_only levels" in str(err.value) and err.value.__cause__ is raised
    else:
        assert err.value is raised


@pytest.mark.parametrize(
    "field, value", [("noise_level", 300), ("independent_noise", True), ("tau_distribution", "shifted")]
)
def test_consistency_real_side_refuses_its_own_re_noising(field, value):
    """real "consistency" re-noises within the segment: noise_level and the other re-noising
    options would be ignored, so each alone is refused by name."""
    GANConfig(real="consistency").validate(1000, StudentGrid())
    config = replace(GANConfig(real="consistency"), **{field: value})
    with pytest.raises(
        ValueError, match='real "consistency" re-noises both sides within the consistency segment'
    ):
        config.validate(1000, StudentGrid())


def test_more_student_steps_than_milestones_are_refused_for_the_recipe(tmp_path):
    """q = 9 on M = 8 (what GANConfig(student_steps=9) used to refuse) is the recipe's grid's error,
    named by its flag; M = 0 likewise."""
    recipe = _gan_recipe(tmp_path / "model", tmp_path / "run", input="latent")
    for grid, message in [
        (StudentGrid(8, 9), "--recipes.student.grid: steps (q) must be in 1..8 (M), got 9"),
        (StudentGrid(0, 1), "--recipes.student.grid: num_milestones (M) must be in 1..1000, got 0"),
    ]:
        bad = replace(recipe, student=replace(recipe.student, grid=grid))
        with pytest.raises(TLCMError) as err:
            validate_recipe(bad, world_size=1)
        assert str(err.value) == message


def _gan_recipe(model_dir, out_dir, **gan):
    base = shrink(PRESETS["mlcd"], model_dir, out_dir)
    losses = {"mlcd": MLCDConfig(states="single_jump"), "gan": GANConfig(weight=0.5, **gan)}
    return replace(base, phases={"gan": Phase(steps=2, lr=1e-3, batch_size=2, losses=losses)})


@pytest.mark.parametrize(
    "gan",
    [
        {"input": "pixel"},
        {"input": "latent", "noise_level": 300, "loss_type": "hinge"},
        {"input": "latent", "backbone": "teacher", "noise_level": 300, "r1_weight": 0.1},
    ],
)
def test_gan_phase_smoke_trains_two_steps(gan, tiny_sd_dir, tmp_path):
    run = train(_gan_recipe(tiny_sd_dir, tmp_path, **gan))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and run.state.global_step == 2
    assert [r["global_step"] for r in records] == [1, 2] and [r["step"] for r in records] == [1, 2]
    for record in records:
        assert "nonfinite" not in record
        for key in ("mlcd", "gan", "gan/d_loss", "gan/d_real", "gan/d_fake", "grad_norm", "gan/d_acc_real"):
            assert torch.isfinite(torch.tensor(record[key])), key
        assert 0 <= record["gan/d_acc_real"] <= 1 and 0 <= record["gan/d_acc_fake"] <= 1


def test_gan_resume_is_exact(tiny_sd_dir, tmp_path):
    """2 steps with a checkpoint after each; resuming from step 1 reproduces step 2's student,
    heads and logged losses exactly (the random backbone is rebuilt from the config's seed)."""
    recipe = _gan_recipe(tiny_sd_dir, tmp_path, input="latent")
    recipe = replace(recipe, runtime=replace(recipe.runtime, checkpoint_every=1))
    first = train(recipe)
    ckpt = tmp_path / "checkpoints"
    heads = torch.load(ckpt / "step-0000002" / "losses.pt", weights_only=True)["gan"]["heads"]
    log = (tmp_path / "metrics.jsonl").read_text().splitlines()
    (ckpt / "latest").write_text("step-0000001")
    resumed = train(recipe)
    a, b = first.student.state_dict(), resumed.student.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    again = torch.load(ckpt / "step-0000002" / "losses.pt", weights_only=True)["gan"]["heads"]
    assert all(torch.equal(heads[k], again[k]) for k in heads)
    terms = lambda line: {k: v for k, v in json.loads(line).items() if k.startswith(("gan", "mlcd"))}  # noqa: E731
    assert terms((tmp_path / "metrics.jsonl").read_text().splitlines()[-1]) == terms(log[-1])


def test_teacher_unet_features_are_the_base_unets_with_adapters_off(tiny_sd_dir):
    """The encoder features equal the mid-block output of the full teacher call (adapters off),
    and differ from the student's once its LoRA is non-zero."""
    base = BaseModel.load(tiny_sd_dir)
    student = Student(base, StudentConfig(lora_rank=4, lora_alpha=4.0))
    with torch.no_grad():
        for p in student.trainable_parameters().values():
            p.add_(0.1)
    gan = GANConfig(input="latent", backbone="teacher").build(student)
    x, t = torch.randn(2, 4, 16, 16), torch.tensor([999, 300])
    cond, _ = base.encode(["a", "b"])
    seen = []
    hook = base.net.mid_block.register_forward_hook(lambda m, i, out: seen.append(out))
    with torch.no_grad():
        student.teacher()(x, t, cond)
        student.denoiser()(x, t, cond)
        ours = gan.discriminator.features(x, t, cond)
    hook.remove()
    torch.testing.assert_close(ours[-1], seen[0])
    assert (seen[1] - seen[0]).abs().max() > 1e-4
    assert len(ours) == len(base.net.config.block_out_channels) + 1


def _trunk_gan(tiny_sd_dir):
    """A tiny-SD student (LoRA rank 4, its adapter non-zero) and a teacher-feature GAN whose trunk
    has its own rank-2 LoRA (``disc_rank``); the same every call (seeded)."""
    torch.manual_seed(0)
    base = BaseModel.load(tiny_sd_dir)
    student = Student(base, StudentConfig(lora_rank=4, lora_alpha=4.0))
    with torch.no_grad():
        for p in student.trainable_parameters().values():
            p.add_(0.1)
    config = GANConfig(input="latent", backbone="teacher", disc_rank=2, disc_lr=1e-2, noise_level=300)
    return base, student, config.build(student)


def _mid_block(base, run) -> torch.Tensor:
    seen = []
    hook = base.net.mid_block.register_forward_hook(lambda m, i, out: seen.append(out))
    with torch.no_grad():
        run()
    hook.remove()
    return seen[0]


def test_disc_rank_trunk_runs_under_its_own_adapter(tiny_sd_dir):
    """The trunk starts as the teacher (the new adapter's B is zero: features = the adapters-off
    UNet's, not the student's), and once its LoRA moves, the features are the UNet's under the
    "disc" adapter: neither the teacher's nor the student's."""
    base, student, gan = _trunk_gan(tiny_sd_dir)
    x, t = torch.randn(2, 4, 16, 16), torch.tensor([999, 300])
    cond, _ = base.encode(["a", "b"])
    features = lambda: gan.discriminator.features(x, t, cond)[-1]  # noqa: E731
    teacher = _mid_block(base, lambda: student.teacher()(x, t, cond))
    torch.testing.assert_close(_mid_block(base, features), teacher)
    with torch.no_grad():
        for p in gan.trunk.parameters():
            p.add_(0.05)
    own = _mid_block(base, lambda: gan.trunk.denoiser()(x, t, cond))
    torch.testing.assert_close(_mid_block(base, features), own)
    assert (own - teacher).abs().max() > 1e-4
    assert (own - _mid_block(base, lambda: student.denoiser()(x, t, cond))).abs().max() > 1e-4


def test_disc_rank_trunk_trains_on_the_discriminator_loss_only(tiny_sd_dir):
    """aux_step moves the trunk's LoRA (and not the student's); the student's L_G, whose backward
    runs through the trunk on detached copies of its LoRA, sends it no gradient and leaves D's
    update unchanged; the checkpoint round trip restores the trunk."""
    base, student, gan = _trunk_gan(tiny_sd_dir)
    cond, _ = base.encode(["a", "b"])

    def ctx():
        return StepContext.standalone(
            student=student.denoiser(),
            teacher=Guided(student.teacher(), 2.0, base.encode([""])[0]),
            schedule=base.schedule,
            cond=cond,
            generator=torch.Generator().manual_seed(0),
            latent_shape=base.latent_shape,
            grid=StudentGrid(),
        )

    start = {k: v.clone() for k, v in gan.trunk.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    first = ctx()
    gan(first)["gan"].backward()  # L_G: through D to the student, none to the trunk's LoRA
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in student.trainable_parameters().values())
    assert all(p.grad is None for p in gan.trunk.parameters())
    gan.aux_step([first])
    with_generator = {k: v.clone() for k, v in gan.trunk.state_dict().items()}
    assert any(not torch.equal(with_generator[k], start[k]) for k in with_generator)
    student_after = student.state_dict()  # once: each call copies every LoRA tensor
    assert all(torch.equal(v, student_after[k]) for k, v in student_before.items())

    _, student, gan = _trunk_gan(tiny_sd_dir)  # the same start, no generator pass before D's update
    gan.aux_step([ctx()])
    alone = gan.trunk.state_dict()
    assert all(torch.equal(alone[k], with_generator[k]) for k in alone)

    state = gan.checkpoint_state()
    _, _, fresh = _trunk_gan(tiny_sd_dir)
    fresh.load_checkpoint_state(state)
    restored = fresh.trunk.state_dict()
    assert all(torch.equal(restored[k], alone[k]) for k in alone)


def _trunk_step(tiny_sd_dir, aux_first: bool):
    """One GAN step of ``_trunk_gan`` in an own loop (a standalone context): the student's LoRA
    gradient of L_G, then the trunk's LoRA and the heads after D's update, with ``aux_step``
    before or after the student's backward."""
    base, student, gan = _trunk_gan(tiny_sd_dir)
    ctx = StepContext.standalone(
        student=student.denoiser(),
        teacher=Guided(student.teacher(), 2.0, base.encode([""])[0]),
        schedule=base.schedule,
        cond=base.encode(["a", "b"])[0],
        generator=torch.Generator().manual_seed(0),
        latent_shape=base.latent_shape,
        grid=StudentGrid(),
    )
    loss = gan(ctx)["gan"]
    if aux_first:
        gan.aux_step([ctx])
        loss.backward()
    else:
        loss.backward()
        gan.aux_step([ctx])
    grads = {n: p.grad.clone() for n, p in student.trainable_parameters().items()}
    return grads, gan.trunk.state_dict(), gan.discriminator.heads.state_dict()


def test_disc_rank_aux_step_may_come_before_the_students_backward(tiny_sd_dir):
    """With a trained trunk (disc_rank 2), aux_step before the student's backward failed with an
    in-place autograd error: L_G's graph held the trunk's LoRA weights, which D's AdamW step then
    changed (cloning the heads had fixed disc_rank 0 only). L_G now runs on copies of them: either
    order gives the same student gradient (D as at forward) and the same D update, bit for bit."""
    grads_after, trunk_after, heads_after = _trunk_step(tiny_sd_dir, aux_first=False)
    grads_first, trunk_first, heads_first = _trunk_step(tiny_sd_dir, aux_first=True)
    assert any(g.abs().max() > 0 for g in grads_after.values())
    _, _, start = _trunk_gan(tiny_sd_dir)
    assert any(not torch.equal(trunk_after[k], v) for k, v in start.trunk.state_dict().items())
    for got, want in ((grads_first, grads_after), (trunk_first, trunk_after), (heads_first, heads_after)):
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_disc_rank_needs_the_teacher_backbone():
    with pytest.raises(ValueError, match='disc_rank must be >= 0 and needs backbone "teacher"'):
        GANConfig(disc_rank=4).validate(1000, StudentGrid())
    with pytest.raises(ValueError, match="disc_rank must be >= 0"):
        GANConfig(input="latent", backbone="teacher", disc_rank=-1).validate(1000, StudentGrid())
    assert GANConfig(input="latent", backbone="teacher", disc_rank=4).adapters() == {"disc": 4}
    assert GANConfig(input="latent", backbone="teacher").adapters() == {}


def test_pooled_heads_by_hand():
    """The projected discriminator's heads: per level, conv1x1 -> LeakyReLU(0.2) -> conv1x1 to one
    channel, the logit map averaged over space, then the levels averaged: D = mean_l mean_ij
    head_l(f_l)[i, j] (a level's map and the number of levels do not scale the logit)."""
    from tlcm.models.discriminator import Heads

    torch.manual_seed(0)
    heads = Heads([3, 5], hidden=4)
    feats = [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)]
    per_level = []
    for head, f in zip(heads.levels, feats, strict=True):
        h = F.leaky_relu(F.conv2d(f, head[0].weight, head[0].bias), 0.2)
        out = F.conv2d(h, head[2].weight, head[2].bias)
        per_level.append(out.sum((1, 2, 3)) / out[0].numel())
    torch.testing.assert_close(heads(feats), (per_level[0] + per_level[1]) / 2)


@pytest.mark.parametrize("gamma", [0.5, 3.0])
def test_r1_adds_gamma_w_to_the_heads_gradient(gamma):
    """R1 of the linear D is ||grad_z D||^2 = ||w||^2, and L_D gets gamma / 2 of it: the gradient
    the optimizer sees (no clipping) is L_D's plus gamma / 2 * 2 w = gamma w, whatever L_D's."""
    w = torch.tensor([0.3, -0.2, 0.1, 0.4]).view(1, 2, 2)
    grads = []
    for weight in (0.0, gamma):
        gan = GAN(
            GANConfig(input="latent", r1_weight=weight, disc_max_grad_norm=0.0),
            discriminator=LinearDiscriminator(w),
        )
        heads = gan.discriminator.heads
        gan.optimizer.opt.register_step_pre_hook(lambda o, a, k, h=heads: grads.append(h.w.grad.clone()))
        gan.aux_step([_context(seed=4)[1]])
    torch.testing.assert_close(grads[1] - grads[0], gamma * w)


def test_the_discriminators_update_sends_nothing_to_the_student():
    """The discriminator's step sees the student's prediction DETACHED: run while the student's
    graph is still alive (before its backward, which the engine runs first: the generator loss
    holds the heads' weights the update changes), it leaves the student without a gradient."""
    w = torch.tensor([0.3, -0.2, 0.1, 0.4]).view(1, 2, 2)
    gan = GAN(GANConfig(input="latent", r1_weight=0.0), discriminator=LinearDiscriminator(w))
    scale, ctx = _context(seed=5)
    assert gan(ctx)["gan"].requires_grad  # the student's graph, alive
    gan.aux_step([ctx])
    assert not torch.equal(gan.discriminator.heads.w.detach(), w)  # the discriminator stepped
    assert scale.grad is None


def _linear_teacher_context(seed: int = 0, k: float = 0.5) -> tuple[StepContext, Guided]:
    """A StepContext on the toy 1000-step VP schedule (prediction "sample") whose teacher predicts
    x0 = k x (CFG of a linear denoiser: k x again): its samples depend on the sampler's gamma (DDIM
    keeps them a multiple of the start noise; LCM's fresh noise does not). The student and grid are
    ``_context``'s."""
    _, ctx = _context(shape=(1, 2, 2), num_train_timesteps=1000, seed=seed)
    teacher = Guided(lambda x, t, cond: k * x, 2.0, Conditioning(torch.ones(1, 2, 3)))
    ctx.phase = replace(ctx.phase, teacher=teacher)
    return ctx, teacher


def test_teacher_real_side_is_the_teachers_ddim_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """real = "teacher": D's real input is the teacher's deterministic DDIM sample (gamma 0) from
    the step's noise on its teacher_steps grid: with an x-dependent teacher it equals
    ``sample_latents(teacher, ..., noise, grid, gamma=0)`` recomputed here from the same noise, and
    differs from the LCM-style sample (gamma 1) of that noise."""
    noises: list[torch.Tensor] = []

    def recording(
        denoiser: Guided,
        schedule: VPSchedule,
        cond: Conditioning,
        noise: torch.Tensor,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        noises.append(noise.clone())
        return sample_latents(denoiser, schedule, cond, noise, *args, **kwargs)

    monkeypatch.setattr("tlcm.losses.gan.sample_latents", recording)
    gan = GAN(GANConfig(input="latent", real="teacher", teacher_steps=4), latent_channels=1)
    ctx, teacher = _linear_teacher_context()
    real = gan.inputs(ctx)[0]
    assert len(noises) == 1
    grid = teacher_timesteps(4, ctx.schedule)
    ddim = sample_latents(teacher, ctx.schedule, ctx.cond, noises[0], grid, gamma=0.0)
    torch.testing.assert_close(real, ddim)
    torch.testing.assert_close(ctx.computed("teacher_samples/4"), ddim)
    fresh = torch.Generator().manual_seed(3)
    lcm = sample_latents(teacher, ctx.schedule, ctx.cond, noises[0], grid, gamma=1.0, generator=fresh)
    assert (lcm - ddim).abs().max() > 1e-2  # the teacher's sample depends on gamma


@pytest.mark.parametrize("order", [("student", "teacher"), ("teacher", "student")])
def test_gans_with_different_real_sources_share_no_inputs(order: tuple[str, str]) -> None:
    """Two GANs of one step (latent input, clean) with real "student" and real "teacher" keep their
    own real sides: each GAN's real input is its own source (the student's q-step samples, the
    teacher's DDIM samples), whichever runs first; one shared (real, fake) pair for both would hand
    the second GAN the first one's real side. The fake (the student's one-step prediction) is the
    same tensor for both."""
    ctx, _ = _linear_teacher_context(seed=2)
    gans = {
        real: GAN(GANConfig(input="latent", real=real, teacher_steps=2), discriminator=LinearDiscriminator(w))
        for real, w in (("student", torch.ones(1, 2, 2)), ("teacher", -torch.ones(1, 2, 2)))
    }
    inputs = {real: gans[real].inputs(ctx) for real in order}
    keys = {"student": samples_key(ctx), "teacher": "teacher_samples/2"}
    sources = {real: ctx.computed(key, None) for real, key in keys.items()}
    assert sources["student"] is not None and sources["teacher"] is not None  # each drew its own
    assert (sources["student"] - sources["teacher"]).abs().max() > 1e-2
    for real in order:
        assert torch.equal(inputs[real][0], sources[real])
    assert torch.equal(inputs["student"][1], inputs["teacher"][1])


def test_teacher_feature_discriminator_sees_clean_latents_at_t_0(tiny_sd_dir: Path) -> None:
    """The VP schedule's clean timestep is -1 (the GAN's tau at noise_level 0), outside the UNet's
    0..T-1: the teacher-feature D runs the network at t = 0 there, so its features and logits at
    t = -1 are exactly those at t = 0, not the UNet's own features at t = -1 (which differ from
    its t = 0 ones in the deeper levels)."""
    base = BaseModel.load(tiny_sd_dir)
    assert base.schedule.clean_timestep == -1
    config = GANConfig(input="latent", backbone="teacher")
    disc = GAN(config, latent_channels=4, teacher=(base.family, base.net)).discriminator
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond, _ = base.encode(["a", "b"])
    with torch.no_grad():
        at = {t: disc.features(x, torch.full((2,), t), cond) for t in (-1, 0)}
        logits = {t: disc(x, torch.full((2,), t), cond) for t in (-1, 0)}
        unclamped = base.family.features(base.net, x, torch.full((2,), -1), cond)
    for clean, zero in zip(at[-1], at[0], strict=True):
        torch.testing.assert_close(clean, zero, rtol=0, atol=0)
    torch.testing.assert_close(logits[-1], logits[0], rtol=0, atol=0)
    assert (unclamped[-1] - at[-1][-1]).abs().max() > 1e-2  # the UNet at t = -1 is not at t = 0


def test_pixel_gan_decodes_each_side_from_its_own_latents():
    """input "pixel": D's real input is the decoded real side (here the student's detached q-step
    sample) and its fake input the decoded one-step prediction, each decoded from its own latents
    (decode = tanh, a stand-in VAE decoder); the real image carries no gradient, the fake one does.
    Both are decoded once per step under their own shared key, so one side must never be handed
    the other's image: with real == fake D would have nothing to learn."""
    gan = GAN(GANConfig(input="pixel"), discriminator=LinearDiscriminator(torch.ones(1, 2, 2)))
    _, ctx = _context(batch=3, seed=6, decode=torch.tanh)
    real, fake, _, _ = gan.inputs(ctx)
    real_latents = ctx.computed(samples_key(ctx))
    fake_latents = ctx.computed(prediction_key(ctx)).x0
    assert (real_latents - fake_latents.detach()).abs().max() > 1e-2  # the two sides differ
    torch.testing.assert_close(real, torch.tanh(real_latents), rtol=0, atol=0)
    torch.testing.assert_close(fake.detach(), torch.tanh(fake_latents.detach()), rtol=0, atol=0)
    assert not real.requires_grad and fake.requires_grad


@pytest.mark.parametrize("disc_steps", [1, 3])
def test_disc_steps_updates_per_step_and_the_last_ones_logged(disc_steps):
    """disc_steps n: aux_step makes exactly n head updates (optimizer steps) on the step's batch;
    gan/d_loss, gan/d_real and gan/d_fake are those of the LAST update, i.e. computed with the
    heads as the (n - 1)-th update left them (docs/gan.md): with the linear D, d = w . z, and
    L_D = mean softplus(-d_real) + softplus(d_fake) at that w (recorded before each step)."""
    w0 = torch.tensor([0.3, -0.2, 0.1, 0.4]).view(1, 2, 2)
    gan = GAN(
        GANConfig(input="latent", disc_steps=disc_steps, disc_lr=0.3), discriminator=LinearDiscriminator(w0)
    )
    heads = gan.discriminator.heads
    seen: list[torch.Tensor] = []
    gan.optimizer.opt.register_step_pre_hook(lambda *args: seen.append(heads.w.detach().clone()))
    _, ctx = _context(batch=4, seed=8)
    real, fake, _, _ = gan.inputs(ctx)
    metrics = gan.aux_step([ctx])
    assert len(seen) == disc_steps
    assert len({tuple(w.flatten().tolist()) for w in [*seen, heads.w.detach()]}) == disc_steps + 1
    last = seen[-1]
    d_real, d_fake = (real * last).flatten(1).sum(1), (fake.detach() * last).flatten(1).sum(1)
    torch.testing.assert_close(metrics["gan/d_loss"], (F.softplus(-d_real) + F.softplus(d_fake)).mean())
    torch.testing.assert_close(metrics["gan/d_real"], d_real.mean())
    torch.testing.assert_close(metrics["gan/d_fake"], d_fake.mean())


def test_timm_backbone_stays_frozen_in_train_mode():
    """The engine puts losses in train mode; the timm backbone must stay in eval mode (frozen
    BatchNorm statistics): a sample's logit does not depend on the rest of its batch, and D's
    update leaves the backbone's running statistics as they were (resume rebuilds the backbone
    from the seed, so a drifting backbone could not be restored)."""
    gan = GAN(GANConfig(input="latent", timm_model="resnet18"), latent_channels=4)
    gan.train()
    disc = gan.discriminator
    assert not disc.backbone.training and disc.heads.training
    x = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.zeros(4)
    with torch.no_grad():
        torch.testing.assert_close(disc(x[:1], t[:1], None), disc(x, t, None)[:1])
    buffers = {k: v.clone() for k, v in disc.backbone.state_dict().items()}
    gan.aux_step([_context(shape=(4, 8, 8), num_train_timesteps=1000)[1]])
    assert all(torch.equal(buffers[k], v) for k, v in disc.backbone.state_dict().items())


def test_pixel_discriminator_normalises_with_the_backbones_imagenet_statistics():
    """Pixel input: images in [-1, 1] -> [0, 1] -> (x - mean) / std with the backbone's own
    statistics, ImageNet's for resnet18 (timm's IMAGENET_DEFAULT_MEAN / _STD, the reference): a
    white image (1) becomes (1 - mean) / std per channel, a black one (-1) -mean / std."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    disc = GAN(GANConfig(input="pixel"), latent_channels=4).discriminator
    disc.backbone = nn.Identity()  # the normalisation only (64 px: no resize)
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
    images = torch.cat([torch.ones(1, 3, 64, 64), -torch.ones(1, 3, 64, 64)])
    expected = torch.cat([((1 - mean) / std).expand(1, 3, 64, 64), (-mean / std).expand(1, 3, 64, 64)])
    torch.testing.assert_close(disc.features(images, None, None), expected)


def test_the_heads_and_a_random_backbone_come_from_the_configs_seed():
    """GANConfig.seed alone decides the heads' and a random timm backbone's initialisation: the same
    seed gives the same weights whatever the global RNG's state (resume rebuilds the backbone from
    it; the checkpoint holds only the heads), another seed other weights."""

    def weights(seed: int, global_seed: int) -> dict[str, torch.Tensor]:
        with torch.random.fork_rng(devices=[]):  # leaves the suite's global RNG as it was
            torch.manual_seed(global_seed)
            disc = GAN(GANConfig(input="latent", seed=seed), latent_channels=4).discriminator
        return {k: v.clone() for k, v in disc.state_dict().items()}

    a, b, other = weights(0, global_seed=1), weights(0, global_seed=2), weights(1, global_seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    heads = [k for k in a if k.startswith("heads.")]
    backbone = [k for k in a if k.startswith("backbone.") and k.endswith("conv1.weight")]
    assert heads and backbone
    assert all(not torch.equal(a[k], other[k]) for k in heads + backbone)


def test_re_noised_inputs_depend_only_on_the_steps_generator():
    """D's re-noising (noise_level > 0: tau and eps of each side) draws from the step's generator
    only: two contexts seeded alike give the same inputs bit for bit whatever torch's global RNG
    did in between, so a resumed run or another rank replays the step exactly; another step seed
    gives other inputs."""
    config = GANConfig(input="latent", real="data", noise_level=999, independent_noise=True)
    gan = GAN(config, discriminator=LinearDiscriminator(torch.ones(1, 2, 2)))

    def inputs(seed: int, global_seed: int) -> list[torch.Tensor]:
        _, ctx = _context(
            batch=4,
            seed=seed,
            num_train_timesteps=1000,
            real_images=_real_images(),
            prompt_index=torch.arange(4),
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(global_seed)
            return [v.detach() for v in gan.inputs(ctx)]

    first, again, other = inputs(0, global_seed=1), inputs(0, global_seed=2), inputs(1, global_seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])
