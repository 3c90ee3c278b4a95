"""Work shared between losses in one step is computed once: DMD, GAN and reward feedback in one
step call the student (and decode) no more often than the first of them alone."""

import torch
from toy_context import toy_context

from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.dmd import DMD, DMDConfig
from tlcm.losses.gan import GAN, GANConfig
from tlcm.losses.preference import Preference, PreferenceConfig
from tlcm.models.discriminator import Discriminator
from tlcm.rewards import Reward


class Counter:
    def __init__(self):
        self.student_calls = self.decodes = 0
        self.scale = torch.nn.Parameter(torch.tensor(0.5))

    def student(self, x, t, cond):
        self.student_calls += 1
        return self.scale * x

    def decode(self, z):
        self.decodes += 1
        return z


class SumHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, features):
        return (features[0] * self.w).flatten(1).sum(1)


class SumDiscriminator(Discriminator):
    def __init__(self):
        super().__init__()
        self.heads = SumHeads()

    def features(self, x, t, cond):
        return [x]


class ToyFake(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.b = torch.nn.Parameter(torch.tensor(0.1))

    def denoiser(self):
        return lambda x, t, c: self.b * x


class InkReward(Reward):
    def score(self, images, prompts):
        return images.flatten(1).mean(1)

    def unrelated(self, prompts, generator):
        return prompts


def _losses():
    return [
        DMD(DMDConfig(t_min=0, t_max=2), ToyFake()),
        GAN(GANConfig(input="pixel"), discriminator=SumDiscriminator()),
        Preference(PreferenceConfig(mode="reward", s0=1.0), InkReward()),
    ]


def _run(losses):
    c = Counter()
    teacher = lambda x, t, cond: torch.zeros_like(x)  # noqa: E731
    grid = StudentGrid(num_milestones=2, steps=2)
    ctx = toy_context(c.student, teacher, batch=3, decode=c.decode, grid=grid)
    total = sum(sum(loss(ctx).values()) for loss in losses)
    total.backward()
    return c


def test_one_prediction_and_one_decode_serve_dmd_gan_and_reward():
    dmd, gan, reward = _losses()
    alone = _run([dmd])
    together = _run([dmd, gan, reward])
    # q = 2: one 2-step sample (2 calls) + one prediction with gradients (1 call), whatever the losses
    assert alone.student_calls == together.student_calls == 3
    # GAN (pixel) decodes its real samples and the prediction; reward feedback reuses the latter
    assert together.decodes == 2
    assert together.scale.grad is not None


def test_student_samples_use_the_grids_training_gamma():
    """The q-step samples inside training follow ``grid.training_gamma``: 0 gives exactly the
    deterministic DDIM sample from the context's first noise draw; the paper's 1 (default) adds
    fresh noise between the steps, so it differs."""
    from tlcm.diffusion.sampling import sample_latents
    from tlcm.losses.shared import student_samples

    student = lambda x, t, c: 0.5 * x  # noqa: E731 - an x0 prediction
    ddim = toy_context(student, None, grid=StudentGrid(2, 2, training_gamma=0.0))
    lcm = toy_context(student, None, grid=StudentGrid(2, 2))
    noise = toy_context(student, None).randn(2, 2, 2, 2)
    grid = StudentGrid(2, 2).timesteps(None, ddim.schedule).tolist()
    assert grid == [2, 1]
    expected = sample_latents(student, ddim.schedule, ddim.cond, noise, grid, 0.0)
    torch.testing.assert_close(student_samples(ddim), expected)
    assert (student_samples(lcm) - expected).abs().max() > 1e-3
