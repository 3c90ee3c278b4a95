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


def test_backward_simulation_sample_by_hand():
    """StudentGrid(M = q = 2, backward_simulation "sample") on the toy schedule, grid t = 2, 1: k
    uniform per sample (the step's first draw), then noise z; at k = 0 the state is z itself (pure
    noise at the top), at k = 1 the step's (detached) 2-step sample x_q re-noised to t = 1:
    x_t = 0.8 x_q + 0.6 z; the prediction (with gradients) is the student's at (x_t, grid[k])."""
    from tlcm.losses.shared import samples_key, student_prediction

    scale = torch.nn.Parameter(torch.tensor(0.5))
    seen = []

    def student(x, t, cond):
        seen.append(t.clone())
        return scale * x

    batch, seed = 16, 3
    ctx = toy_context(student, None, batch=batch, seed=seed, grid=StudentGrid(2, 2))
    pred = student_prediction(ctx)
    gen = torch.Generator().manual_seed(seed)
    k = torch.randint(2, (batch,), generator=gen)
    z = torch.randn((batch, 2, 2, 2), generator=gen)
    assert set(k.tolist()) == {0, 1}
    sample = ctx.computed(samples_key(ctx))
    assert not sample.requires_grad and (sample - z).abs().max() > 0.1
    top = (k == 0).view(-1, 1, 1, 1)
    x_t = torch.where(top, z, 0.8 * sample + 0.6 * z)
    assert torch.equal(pred.t, torch.tensor([2, 1])[k]) and torch.equal(seen[-1], pred.t)
    torch.testing.assert_close(pred.x_t, x_t)
    torch.testing.assert_close(pred.x0, 0.5 * x_t)
    pred.x0.sum().backward()
    torch.testing.assert_close(scale.grad, x_t.sum())  # no gradient through the detached sample


def test_student_sample_draws_are_independent_and_cached_per_draw():
    """student_samples(ctx, draw): draws 0 and 1 are two samples from different noise (DPO's two
    candidates), each computed once per step (asking again returns the same tensor, no call)."""
    from tlcm.losses.shared import student_samples

    c = Counter()
    ctx = toy_context(c.student, None, batch=3, grid=StudentGrid(2, 2))
    first, second = student_samples(ctx, 0), student_samples(ctx, 1)
    assert c.student_calls == 4 and (first - second).abs().max() > 1e-3
    assert student_samples(ctx, 0) is first and student_samples(ctx, 1) is second
    assert c.student_calls == 4


def test_a_one_step_grid_predicts_from_pure_noise_in_one_call():
    """q = 1 (M = 2, toy T = 3): the grid is [2], so k = 0 for every sample and the state is the
    step's noise z itself at t = 2 (its second draw, after k): one student call and no q-step
    sample drawn (a sample would only be thrown away)."""
    from tlcm.losses.shared import samples_key, student_prediction

    c = Counter()
    ctx = toy_context(c.student, None, batch=3, seed=5, grid=StudentGrid(2, 1))
    pred = student_prediction(ctx)
    gen = torch.Generator().manual_seed(5)
    assert torch.randint(1, (3,), generator=gen).tolist() == [0, 0, 0]
    z = torch.randn((3, 2, 2, 2), generator=gen)
    assert c.student_calls == 1 and ctx.computed(samples_key(ctx), None) is None
    assert pred.t.tolist() == [2, 2, 2]
    torch.testing.assert_close(pred.x_t, z)
    torch.testing.assert_close(pred.x0, 0.5 * z)
