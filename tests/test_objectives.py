"""Every objective pinned by a known-answer toy problem: a step must land where the maths says, so a
flipped sign, a swapped pair or a wrong target FAILS (not merely "the loss fell along its own
gradient", which any sign passes).

Conventions. prediction_type "sample" everywhere: a denoiser's output IS its x0 prediction, so
the by-hand maths reads directly. Timestep coefficients are recomputed by hand from the
alphas_cumprod lists (``Hand``), not read from ``Schedule``. float64 throughout (autouse fixture).
A denoiser reads its prompt from ``cond.prompt_embeds[:, 0, 0]`` (one scalar e per sample), so
classifier-free guidance acts as e_u + w (e_c - e_u) wherever the output is affine in e.

The student's sampling grid (M = num_milestones, q = steps) is set in ONE place, ``context``
(``StepContext.grid``, a tlcm.diffusion.milestones.StudentGrid).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from objective_helpers import (
    LONG,
    LONG_AC,
    TOY,
    TOY_AC,
    ExactFake,
    GaussianStudent,
    context,
    posterior_mean,
    prompt_cond,
    prompt_scalar,
)
from torch import nn

from tlcm.data.states import TrajectoryStates
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.distances import l2
from tlcm.losses.dmd import DMD, DMDConfig, dmd_gradient
from tlcm.losses.gan import GAN, GANConfig, discriminator_loss, generator_loss
from tlcm.losses.lcd import LCD, LCDConfig, lcd_loss
from tlcm.losses.mlcd import MLCD, MLCDConfig, mlcd_loss, segment_map
from tlcm.losses.preference import Preference, PreferenceConfig, dpo_loss, reward_hinge
from tlcm.losses.shared import CONSISTENCY_PAIR, student_prediction
from tlcm.models.discriminator import Discriminator
from tlcm.models.families import FAMILIES
from tlcm.rewards import REWARDS, Reward

pytestmark = pytest.mark.usefixtures("float64")  # by-hand maths in float64 (conftest.py)


# --------------------------------------------------------------------------------------------
# The one place that sets the student's grid (M, q).


# --------------------------------------------------------------------------------------------
# By-hand schedule maths and toy denoisers.


class Hand:
    """a_t, s_t and DDIM recomputed from an alphas_cumprod list (t = -1: a = 1, s = 0)."""

    def __init__(self, ac: list[float]) -> None:
        self.a_table = torch.tensor([1.0] + [math.sqrt(v) for v in ac])
        self.s_table = torch.tensor([0.0] + [math.sqrt(1 - v) for v in ac])

    def a(self, t):
        return self.a_table[torch.as_tensor(t).long() + 1].view(-1, 1, 1, 1)

    def s(self, t):
        return self.s_table[torch.as_tensor(t).long() + 1].view(-1, 1, 1, 1)

    def ddim(self, x, x0, t, s):
        """a_s x0 + s_s (x - a_t x0) / s_t (DDIM, eta = 0)."""
        return self.a(s) * x0 + self.s(s) * (x - self.a(t) * x0) / self.s(t)


HAND_TOY, HAND_LONG = Hand(TOY_AC), Hand(LONG_AC)


def _close(actual, expected):
    """By hand vs the library: the schedule stores a_t, s_t in float32 (1e-7 relative)."""
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=1e-6)


def _curved_teacher(calls: list | None = None):
    """x0 = 0.8 tanh(2 x) + 0.05 (t + 1) + e: nonlinear in x (a curved ODE trajectory, so the
    number of DDIM steps matters), t-dependent, and affine in the prompt scalar e (CFG gives
    e_u + w (e_c - e_u)). Records (x, t, e) of each call."""

    def teacher(x, t, cond):
        if calls is not None:
            calls.append((x.detach().clone(), t.clone(), cond.prompt_embeds[:, 0, 0].clone()))
        return 0.8 * torch.tanh(2 * x) + 0.05 * (t.view(-1, 1, 1, 1) + 1) + prompt_scalar(cond, x)

    return teacher


def _hand_teacher_x0(x, t, e_eff):
    """The curved teacher's guided x0 at effective prompt scalar e_eff = e_u + w (e_c - e_u)."""
    return 0.8 * torch.tanh(2 * x) + 0.05 * (torch.as_tensor(t).view(-1, 1, 1, 1) + 1) + e_eff


class Affine(nn.Module):
    """x0 = c + b x + k (t + 1): ``c`` a trainable latent-shaped offset, b and k fixed. Records
    (x, t, grad enabled) of each call."""

    def __init__(self, c: torch.Tensor, b: float, k: float = 0.0) -> None:
        super().__init__()
        self.c = nn.Parameter(c.clone())
        self.b, self.k = b, k
        self.calls: list[tuple[torch.Tensor, torch.Tensor, bool]] = []

    def forward(self, x, t, cond=None):
        self.calls.append((x.detach().clone(), t.clone(), torch.is_grad_enabled()))
        return self.c + self.b * x + self.k * (t.view(-1, 1, 1, 1) + 1)

    def hand(self, x, t, c=None):
        c = self.c.detach() if c is None else c
        return c + self.b * x + self.k * (torch.as_tensor(t).view(-1, 1, 1, 1) + 1)


# ============================================================================================
# 1. DMD on Gaussians with closed-form scores.


class LearnedFake(nn.Module):
    """A fake score of the Gaussian family: posterior mean of N(m, exp(log_sd)^2), trainable."""

    def __init__(self, m: float, sd: float) -> None:
        super().__init__()
        self.m, self.log_sd = nn.Parameter(torch.tensor(m)), nn.Parameter(torch.tensor(math.log(sd)))

    def denoiser(self):
        return lambda x, t, cond: posterior_mean(x, t, self.m, self.log_sd.exp() ** 2)

    def parameters(self, recurse: bool = True):
        return list(super().parameters(recurse))


MU_C, MU_U, W_REAL, SD_R = 0.75, 0.25, 2.0, 1.0
MU_R = MU_U + W_REAL * (MU_C - MU_U)
"""The real score: the teacher is the posterior mean of N(e, SD_R^2), e the prompt scalar. The
posterior mean is affine in the mean at fixed (x_t, t): pm(m) = (1 - a k) m + k x_t with
k = a var / (a^2 var + s^2), so the CFG of the teacher at scale w is exactly the posterior mean of
N(e_u + w (e_c - e_u), SD_R^2): p_real = N(MU_R = 1.25, 1)."""


def _gaussian_teacher(calls: list | None = None):
    def teacher(x, t, cond):
        if calls is not None:
            calls.append((x.clone(), t.clone(), cond.prompt_embeds[:, 0, 0].clone()))
        return posterior_mean(x, t, prompt_scalar(cond, x), SD_R**2)

    return teacher


def _dmd(student, fake, seed, batch=128, teacher_calls=None, **config):
    """DMD with t' uniform over the toy schedule's 0..2, real CFG scale W_REAL (the context's 5.0
    must be ignored), latents (1, 4, 4): 16 coordinates per normaliser."""
    cfg = DMDConfig(t_min=0, t_max=2, real_guidance_scale=W_REAL, **config)
    loss = DMD(cfg, fake)
    ctx = context(
        student,
        _gaussian_teacher(teacher_calls),
        cond=[MU_C] * batch,
        uncond=[MU_U],
        w=5.0,
        seed=seed,
        latent_shape=(1, 4, 4),
    )
    return loss, ctx


def test_dmd_gradient_is_fake_minus_real_over_the_real_distance():
    """DMD eq. 8: grad = (x0_fake - x0_real) / mean|x0 - x0_real|: the step x0 - grad moves x0
    towards the real x0 prediction and away from the fake one. x0 = 3, real = 1, fake = 2 (x0 is
    on the fake's side): normaliser |3 - 1| = 2, grad = 0.5 > 0, x0 - grad = 2.5 (towards real).
    Swapping real and fake, or the normaliser's sign, flips it; a normaliser measured to the fake
    (|3 - 2| = 1) doubles it."""
    x0, real, fake = torch.full((1, 2), 3.0), torch.full((1, 2), 1.0), torch.full((1, 2), 2.0)
    torch.testing.assert_close(dmd_gradient(x0, real, fake), torch.full((1, 2), 0.5))


@pytest.mark.parametrize("mu, sd", [(-1.0, 0.5), (3.0, 2.0), (-1.0, 2.0), (3.0, 0.5)])
def test_dmd_step_moves_the_student_towards_the_real_gaussian(mu, sd):
    """p_real = N(MU_R, SD_R^2) = N(1.25, 1), student N(mu, sd^2), exact scores. With
    x_t' = a x0 + s eps, x0 = mu + sd z and k_v = a v / (a^2 v + s^2) (increasing in v):
        fake - real = (mu - MU_R)(1 - a k_r) + (k_f - k_r)(x_t' - a mu),
        E[fake - real] = (mu - MU_R) s^2 / (a^2 SD_R^2 + s^2)        (sign of mu - MU_R),
        E[(fake - real) z] = a sd (k_f - k_r)                        (sign of sd - SD_R).
    d L_DMD / d x0 = grad / D (the stop-gradient makes the loss's gradient exactly the DMD
    gradient), so dL/dmu = E[grad] has the sign of mu - MU_R and dL/dsd = E[grad z] that of
    sd - SD_R (the per-sample normaliser is a positive weight over 16 coordinates). SGD therefore
    brings mu to MU_R and sd to SD_R from every side; a reversed update, swapped real/fake, a
    negated normaliser, or the context's CFG scale (5) instead of the config's (2) all fail."""
    student = GaussianStudent(mu, sd)
    start = (abs(mu - MU_R), abs(sd - SD_R))
    for step in range(5):
        loss, ctx = _dmd(student, ExactFake(student), seed=step)
        student.zero_grad()
        loss(ctx)["dmd"].backward()
        if step == 0:
            assert math.copysign(1, student.mu.grad) == math.copysign(1, mu - MU_R)
            assert math.copysign(1, student.sd.grad) == math.copysign(1, sd - SD_R)
        with torch.no_grad():
            for p in (student.mu, student.sd):
                p -= 0.3 * p.grad
    assert abs(student.mu.item() - MU_R) < 0.8 * start[0]
    assert abs(student.sd.item() - SD_R) < 0.8 * start[1]


def test_dmd_converges_to_the_real_gaussian():
    """The exact DMD fixed point is p_fake = p_real (then fake = real and grad = 0 exactly, not
    only on average): 60 SGD steps from N(-1, 0.4^2) reach N(MU_R, SD_R^2) = N(1.25, 1) (and
    not N(MU_C, 1) = N(0.75, 1), the unguided teacher's)."""
    student = GaussianStudent(-1.0, 0.4)
    for step in range(60):
        loss, ctx = _dmd(student, ExactFake(student), seed=step, batch=64)
        student.zero_grad()
        loss(ctx)["dmd"].backward()
        with torch.no_grad():
            for p in (student.mu, student.sd):
                p -= 0.3 * p.grad
    assert student.mu.item() == pytest.approx(MU_R, abs=1e-3)
    assert student.sd.item() == pytest.approx(SD_R, abs=1e-3)


def test_dmd_student_gradient_by_hand():
    """From the recorded calls: z the student's input (x0 = mu + sd z), (x_t', t') the teacher's
    cond half, which the fake must see too. real = pm(MU_R, SD_R^2)(x_t'), fake =
    pm(mu, sd^2)(x_t'), g = (fake - real) / mean_{c,h,w}|x0 - real|; L = mean_b 1/2 mean_i g^2
    with d L / d x0 = g / (B D), hence dL/dmu = mean_b mean_i g and dL/dsd = mean_b mean_i g z."""
    student, calls = GaussianStudent(-0.5, 1.5), []
    fake = ExactFake(student)
    loss, ctx = _dmd(student, fake, seed=7, batch=8, teacher_calls=calls)
    value = loss(ctx)["dmd"]
    value.backward()
    (z,) = student.inputs
    (x_t, t, e), ((fake_x, fake_t),) = calls[0], fake.calls
    assert len(calls) == 1 and x_t.shape[0] == 16  # one CFG call: cond half, then uncond half
    torch.testing.assert_close(e, torch.tensor([MU_C] * 8 + [MU_U] * 8))
    x_t, t = x_t[:8], t[:8]
    torch.testing.assert_close(fake_x, x_t)
    torch.testing.assert_close(fake_t, t)
    with torch.no_grad():
        x0 = -0.5 + 1.5 * z
        real = posterior_mean(x_t, t, MU_R, SD_R**2)
        g = (posterior_mean(x_t, t, -0.5, 1.5**2) - real) / (x0 - real).abs().mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(value, 0.5 * g.square().mean())
    torch.testing.assert_close(student.mu.grad, g.mean())
    torch.testing.assert_close(student.sd.grad, (g * z).mean())


def test_dmd_fake_score_learns_the_students_distribution():
    """aux_step trains the fake score by denoising the student's (detached) samples: for x0 ~
    N(mu_f, sd_f^2) the minimiser of E||x0 - pm_{m,v}(x_t)||^2 over the Gaussian family is
    (m, v) = (mu_f, sd_f^2) (the posterior mean is the MMSE estimator). From the teacher's
    N(1.25, 1), 40 AdamW updates (lr 0.1) reach the student's N(-1, 0.5^2), not the teacher's."""
    student, fake = GaussianStudent(-1.0, 0.5), LearnedFake(MU_R, SD_R)
    loss, ctx = _dmd(student, fake, seed=3, batch=64, fake_updates=40, fake_lr=0.1)
    loss.aux_step([ctx])
    assert fake.m.item() == pytest.approx(-1.0, abs=0.1)  # from 1.25
    assert fake.log_sd.exp().item() == pytest.approx(0.5, abs=0.15)  # from 1


# ============================================================================================
# 2. Diffusion-DPO.


def test_dpo_loss_gradient_favours_the_winner():
    """Diffusion-DPO eq. 14: L = -log sigmoid(-beta/2 [(e_w - e_l) - (r_w - r_l)]), dL/de_w =
    beta/2 sigmoid(beta/2 Delta) > 0 and dL/de_l = -dL/de_w: a step lowers the winner's error and
    raises the loser's, so the implicit margin (e_w - r_w) - (e_l - r_l) falls, by exactly
    lr * 2 * beta/2 * sigmoid(beta/2 Delta). The references get no gradient."""
    beta, lr = 4.0, 0.1
    err = torch.tensor([0.3, 0.5], requires_grad=True)  # e_w, e_l
    ref = torch.tensor([0.4, 0.4])
    delta = (err[0] - err[1]) - (ref[0] - ref[1])
    dpo_loss(err[:1], err[1:], ref[:1], ref[1:], beta).sum().backward()
    slope = beta / 2 * torch.sigmoid(beta / 2 * delta.detach())
    torch.testing.assert_close(err.grad, torch.stack([slope, -slope]))
    new = err.detach() - lr * err.grad
    torch.testing.assert_close((new[0] - new[1]) - (ref[0] - ref[1]), delta.detach() - 2 * lr * slope)


B_DPO = 0.5
"""The DPO toy UNet: x0 = c + B_DPO x_t / a_t (``DPOUNet``)."""


class DPOUNet(nn.Module):
    """A UNet-like module, x0 = c + B_DPO x_t / a_t: with x_t = a x + s eps the residual is
    x - x0 = (1 - B_DPO) x - c - B_DPO s eps / a, so the winner-minus-loser residual
    (1 - B_DPO)(x_w - x_l) is the same at every t (shared eps). Records its calls."""

    def __init__(self, c: torch.Tensor) -> None:
        super().__init__()
        self.c = nn.Parameter(c.clone())
        self.calls: list[tuple[int, bool, torch.Tensor]] = []

    def forward(self, x, t, encoder_hidden_states=None):
        out = self.c + B_DPO * x / HAND_TOY.a(t)
        self.calls.append((x.shape[0], torch.is_grad_enabled(), out.detach().clone()))
        return SimpleNamespace(sample=out)


U_DPO = torch.tensor([1.0, -2.0, 0.5, 1.5], dtype=torch.float64).view(1, 2, 2)


class LinearReward(Reward):
    """r(x) = mean(U_DPO * x): the reward prefers samples far along U_DPO."""

    def score(self, images, prompts):
        return (images * U_DPO).flatten(1).mean(1)

    def unrelated(self, prompts, generator):
        return list(prompts)


def _error(denoiser, x, eps, t):
    """e(x) = mean (x - x0_hat(a x + s eps, t))^2 per sample, by hand (prediction "sample")."""
    x_t = HAND_TOY.a(t) * x + HAND_TOY.s(t) * eps
    return (denoiser(x_t, t, None) - x).square().flatten(1).mean(1)


def test_dpo_component_prefers_the_winner_against_a_frozen_reference(monkeypatch):
    """Built through PreferenceConfig.build from a Student-like object, so the reference is
    whatever build freezes. Candidates: two 1-step samples per prompt, x = c + B_DPO z / 0.6; the
    linear reward makes the winner the one further along U. With the implicit margin
    Delta_b = (e_w - e_ref,w) - (e_l - e_ref,l) and d_b = x_w - x_l, the toy's residual
    difference (1 - B_DPO) d_b is t- and eps-free, so exactly
        dL/dc = -(beta (1 - B_DPO) / D) mean_b sigmoid(beta/2 Delta_b) d_b.
    Step 1 (model = reference, Delta = 0, sigmoid = 1/2): U . dL/dc = -(beta (1-B)/2) mean_b
    (r_w - r_l) < 0, so SGD raises the reward of the student's samples, and the winners gain
    likelihood over the losers relative to the reference: sum_b Delta_b = -2 (1 - B)
    mean(delta_c . sum_b d_b), delta_c = -lr dL/dc proportional to sum_b d_b, so < 0 (measured
    with eps and t of our own: the margin is the same at every t and eps). Step 2 (same pairs):
    Delta_b now damps the gradient by sigmoid(beta/2 Delta_b): a live "reference" (Delta = 0
    forever) repeats step 1's gradient and fails; swapped winner/loser or a negated beta flip the
    gradient's sign."""
    monkeypatch.setitem(REWARDS, "test-objectives-linear", lambda spec, device: LinearReward())
    beta, lr, batch = 20.0, 0.5, 6
    unet = DPOUNet(torch.zeros(1, 2, 2))
    student = SimpleNamespace(
        net=unet,
        base=SimpleNamespace(device="cpu", family=FAMILIES["StableDiffusionPipeline"], evaluations=0),
        trainable_parameters=lambda: dict(unet.named_parameters()),
    )
    cfg = PreferenceConfig(mode="dpo", reward="test-objectives-linear", beta=beta)
    loss = cfg.build(student)
    frozen_c = unet.c.detach().clone()

    def live(x, t, cond):
        return unet(x, t).sample

    def reference(x, t, cond):
        return frozen_c + B_DPO * x / HAND_TOY.a(t)

    def run_step():
        unet.calls.clear()
        unet.zero_grad()
        ctx = context(live, None, cond=[0.0] * batch, seed=11, decode=lambda z: z)
        loss(ctx)["preference"].backward()
        draws = [out for n, grad, out in unet.calls if n == batch and not grad]
        x_a, x_b = draws[:2]  # the two 1-step candidates (draws 0 and 1)
        r_a, r_b = LinearReward()(x_a, None), LinearReward()(x_b, None)
        a_wins = (r_a >= r_b).view(-1, 1, 1, 1)
        return unet.c.grad.clone(), torch.where(a_wins, x_a, x_b), torch.where(a_wins, x_b, x_a), r_a

    def margin(x_w, x_l):
        """Delta_b at 3 timesteps and 2 noises of our own: (batch,) per (t, eps), all equal."""
        out = []
        for t_value in (0, 1, 2):
            for seed in (0, 1):
                eps = torch.randn(x_w.shape, generator=torch.Generator().manual_seed(seed))
                t = torch.full((batch,), t_value)
                e_w = _error(live, x_w, eps, t) - _error(reference, x_w, eps, t)
                e_l = _error(live, x_l, eps, t) - _error(reference, x_l, eps, t)
                out.append(e_w - e_l)
        return torch.stack(out)

    def expected_grad(delta, d):
        return -(beta * (1 - B_DPO) / 4) * (torch.sigmoid(beta / 2 * delta).view(-1, 1, 1, 1) * d).mean(0)

    grad1, x_w, x_l, r1 = run_step()
    with torch.no_grad():
        torch.testing.assert_close(margin(x_w, x_l), torch.zeros(6, batch))
    torch.testing.assert_close(grad1, expected_grad(torch.zeros(batch), x_w - x_l))
    assert (U_DPO * grad1).sum() < 0
    with torch.no_grad():
        unet.c -= lr * grad1
        delta = margin(x_w, x_l)
    torch.testing.assert_close(delta, delta[:1].expand_as(delta))
    assert delta.sum() < 0  # the winner gained likelihood over the loser, relative to the reference

    grad2, x_w2, x_l2, r2 = run_step()
    assert (r2 > r1).all()  # the student's candidates moved along U: higher reward
    torch.testing.assert_close(x_w2 - x_l2, x_w - x_l)  # the same pairs, shifted by the step
    with torch.no_grad():
        torch.testing.assert_close(margin(x_w2, x_l2), delta)
    torch.testing.assert_close(grad2, expected_grad(delta[0], x_w - x_l))
    assert grad2.norm() < 0.9 * grad1.norm()


# ============================================================================================
# 3. Reward hinge.


def test_reward_hinge_gradients_and_dead_zone():
    """L = relu(s0 - r_pos) + lambda relu(r_neg - s_neg): dL/dr_pos = -1 while r_pos < s0 (a step
    raises it), dL/dr_neg = +lambda while r_neg > s_neg (a step lowers it); past the thresholds
    both gradients are exactly 0. s0 = 1, s_neg = 0, lambda = 0.5."""
    r_pos = torch.tensor([0.2, 1.5, 1.5, 0.2], requires_grad=True)
    r_neg = torch.tensor([0.4, -0.3, 0.4, -0.3], requires_grad=True)
    value = reward_hinge(r_pos, r_neg, 1.0, 0.0, 0.5)
    torch.testing.assert_close(value.detach(), torch.tensor([0.8 + 0.2, 0.0, 0.2, 0.8]))
    value.sum().backward()
    assert torch.equal(r_pos.grad, torch.tensor([-1.0, 0.0, 0.0, -1.0]))
    assert torch.equal(r_neg.grad, torch.tensor([0.5, 0.0, 0.5, 0.0]))


class PromptReward(Reward):
    """r(x, p) = x[index of p] (coordinate i of the flattened latent for prompt "p<i>");
    the unrelated prompt of "p<i>" is "p<i+1 mod 3>"."""

    def score(self, images, prompts):
        index = torch.tensor([int(p[1:]) for p in prompts])
        return images.flatten(1)[torch.arange(len(prompts)), index]

    def unrelated(self, prompts, generator):
        return [f"p{(int(p[1:]) + 1) % 3}" for p in prompts]


def test_reward_feedback_component_by_hand():
    """Student x0 = C[i] for prompt i (one latent per sample); s0 = 1, s_neg = 0, lambda = 0.5.
    Sample 0: r_pos = 0 < s0, r_neg = 0.5 > 0: both terms live, loss 1 + 0.25.
    Sample 1: r_pos = 2 > s0, r_neg = -0.5 < 0: loss 0 and EXACTLY zero gradient.
    Sample 2: r_pos = 2, r_neg = 0.5: only the negative term, loss 0.25.
    Mean 0.5; dL/dC = (1/3)(-e_{pos} [r_pos < s0] + lambda e_{neg} [r_neg > s_neg]): a step raises
    sample 0's reward and lowers samples 0 and 2's unrelated-prompt reward, C[1] stays put."""
    c = torch.zeros(3, 1, 2, 2)
    c.view(3, 4)[0, 1] = 0.5
    c.view(3, 4)[1, 1], c.view(3, 4)[1, 2] = 2.0, -0.5
    c.view(3, 4)[2, 2], c.view(3, 4)[2, 0] = 2.0, 0.5
    table = nn.Parameter(c.clone())

    def student(x, t, cond):
        return table[cond.prompt_embeds[:, 0, 0].long()]

    cfg = PreferenceConfig(mode="reward", s0=1.0, s_neg=0.0, negative_weight=0.5)
    loss = Preference(cfg, PromptReward())
    prompts = ["p0", "p1", "p2"]
    ctx = context(student, None, cond=[0.0, 1.0, 2.0], prompts=prompts, decode=lambda z: z)
    value = loss(ctx)["preference"]
    torch.testing.assert_close(value, torch.tensor(0.5))
    value.backward()
    expected = torch.zeros(3, 4)
    expected[0, 0], expected[0, 1], expected[2, 0] = -1 / 3, 0.5 / 3, 0.5 / 3
    torch.testing.assert_close(table.grad.view(3, 4), expected)
    assert torch.equal(table.grad[1], torch.zeros(1, 2, 2))
    reward = PromptReward()
    before = (reward(c, prompts), reward(c, reward.unrelated(prompts, None)))
    with torch.no_grad():
        after_c = table - 0.1 * table.grad
    after = (reward(after_c, prompts), reward(after_c, reward.unrelated(prompts, None)))
    assert after[0][0] > before[0][0] and after[1][0] < before[1][0] and after[1][2] < before[1][2]
    assert torch.equal(after_c[1], c[1])


# ============================================================================================
# 4. GAN.


class LinearD(Discriminator):
    """D(z) = sum(w * z) per sample: its features are the input, its "head" is w."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.heads = _Heads(w)

    def features(self, x, t, cond):
        return [x]


class _Heads(nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, features):
        return (features[0] * self.w).flatten(1).sum(1)


@pytest.mark.parametrize("loss_type", ["nonsaturating", "hinge"])
def test_gan_formulas_push_real_up_and_fake_down(loss_type):
    """Nonsaturating: L_G = softplus(-d_f), L_D = softplus(-d_r) + softplus(d_f); hinge: L_G = -d_f,
    L_D = relu(1 - d_r) + relu(1 + d_f). At logits 0 (inside the hinge margin): dL_G/dd_f < 0
    (a generator step raises D(fake)); dL_D/dd_r < 0 and dL_D/dd_f > 0 (a discriminator step
    raises D(real), lowers D(fake)). Hinge past the margins (d_r > 1, d_f < -1): zero gradient."""
    real, fake = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    generator_loss(fake, loss_type).sum().backward()
    assert fake.grad.item() < 0
    fake.grad = None
    discriminator_loss(real, fake, loss_type).sum().backward()
    assert real.grad.item() < 0 < fake.grad.item()
    if loss_type == "hinge":
        real, fake = torch.tensor([1.5], requires_grad=True), torch.tensor([-1.5], requires_grad=True)
        discriminator_loss(real, fake, loss_type).sum().backward()
        assert real.grad.item() == 0 and fake.grad.item() == 0


@pytest.mark.parametrize("loss_type", ["nonsaturating", "hinge"])
def test_gan_component_moves_d_and_then_the_fake_towards_the_real(loss_type):
    """Real = the teacher's 1-step sample (teacher x0 = 1 everywhere: real = 1); fake = the
    student's one-step prediction c + 0.1 z with c = -1 (every coordinate < 0). D(z) = w . z
    with small w0 (|logits| < 1: inside the hinge margin).
    D step (AdamW, beta1 = 0: first update w -= lr sign(dL_D/dw)): dL_D/dw = mean_b
    [l_r'(d_r) real_b + l_f'(d_f) fake_b] with l_r' < 0 < l_f', real > 0 > fake: every coordinate
    < 0, so w += lr: D(real) = w . 1 rises by lr D, D(fake) falls by lr sum(-fake) > 0.
    G step: dL_G/dc = mean_b g'(d_b) w with g' < 0 and now w > 0: SGD moves c along +w, so
    D(fake) rises and the fake gets closer to the real 1. Swapped real/fake or a flipped
    generator sign reverses one of them."""
    w0 = torch.tensor([0.02, -0.01, 0.03, 0.0]).view(1, 2, 2)
    cfg = GANConfig(input="latent", real="teacher", teacher_steps=1, loss_type=loss_type, disc_lr=0.01)
    gan = GAN(cfg, discriminator=LinearD(w0), device="cpu")
    student = Affine(torch.full((1, 2, 2), -1.0), b=0.1)
    teacher = lambda x, t, cond: torch.ones_like(x)  # noqa: E731

    ctx = context(student, teacher, cond=[0.0] * 4, seed=0)
    gan.aux_step([ctx])
    fake = -1.0 + 0.1 * student.calls[0][0]
    w1 = gan.discriminator.heads.w.detach().clone()
    torch.testing.assert_close(w1, w0 + 0.01, atol=1e-6, rtol=0)
    d = lambda w, x: (w * x).flatten(1).sum(1)  # noqa: E731
    assert (d(w1, torch.ones(4, 1, 2, 2)) > d(w0, torch.ones(4, 1, 2, 2))).all()
    assert (d(w1, fake) < d(w0, fake)).all()

    student.calls.clear()
    ctx = context(student, teacher, cond=[0.0] * 4, seed=1)
    gan(ctx)["gan"].backward()
    assert gan.discriminator.heads.w.grad is None
    z = student.calls[0][0]
    old = student.c.detach() + 0.1 * z
    with torch.no_grad():
        student.c -= 0.5 * student.c.grad
    new = student.c.detach() + 0.1 * z
    assert (d(w1, new) > d(w1, old)).all()
    assert (new - 1).norm() < (old - 1).norm()


# ============================================================================================
# 5. Classifier-free guidance.


def test_guided_teacher_extrapolates_beyond_cond_away_from_uncond():
    """out(x, t, e) = 0.5 x + 0.01 t + e records each call. cond e = (1, 2, 3), uncond e = 0.5
    (one sample, expanded), w = 3: ONE call of batch 6, cond first; guided = out_u + w (out_c -
    out_u) = 0.5 x + 0.01 t + 0.5 + 3 (e_c - 0.5), i.e. past cond by (w - 1)(e_c - e_u) > 0, away
    from uncond. Reading the halves the other way round gives out_c + w (out_u - out_c) instead."""
    calls = []

    def denoiser(x, t, cond):
        calls.append((x.clone(), t.clone(), cond.prompt_embeds[:, 0, 0].clone()))
        return 0.5 * x + 0.01 * t.view(-1, 1, 1, 1) + prompt_scalar(cond, x)

    x = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([2, 0, 1])
    guided = Guided(denoiser, 3.0, prompt_cond([0.5]))(x, t, prompt_cond([1.0, 2.0, 3.0]))
    ((xs, ts, es),) = calls
    torch.testing.assert_close(xs, torch.cat([x, x]))
    assert torch.equal(ts, torch.cat([t, t]))
    torch.testing.assert_close(es, torch.tensor([1.0, 2.0, 3.0, 0.5, 0.5, 0.5]))
    base = 0.5 * x + 0.01 * t.view(-1, 1, 1, 1)
    e_c = torch.tensor([1.0, 2.0, 3.0]).view(-1, 1, 1, 1)
    out_c, out_u = base + e_c, base + 0.5
    torch.testing.assert_close(guided, out_u + 3.0 * (out_c - out_u))
    assert ((guided - out_c) * (out_c - out_u) > 0).all()  # beyond cond, on the far side from uncond
    torch.testing.assert_close(guided - out_c, 2.0 * (out_c - out_u))


# ============================================================================================
# 6. LCD.


LCD_E_C, LCD_E_U, LCD_W = 0.3, -0.2, 2.5
LCD_E = LCD_E_U + LCD_W * (LCD_E_C - LCD_E_U)
"""The curved teacher's effective prompt scalar under CFG: -0.2 + 2.5 * 0.5 = 1.05."""


def _hand_solve(x, t_grid, hand=HAND_LONG):
    """The teacher's CFG-DDIM solve along ``t_grid`` (a list of (B,) timesteps), by hand."""
    for tau, nxt in zip(t_grid[:-1], t_grid[1:], strict=True):
        x = hand.ddim(x, _hand_teacher_x0(x, tau, LCD_E), tau, nxt)
    return x


@pytest.mark.parametrize("substeps, grid", [(1, [9, 0]), (3, [9, 6, 3, 0])])
def test_lcd_target_is_the_target_networks_x0_after_p_teacher_substeps(substeps, grid):
    """x0 (detached clean latent) re-noised to t_m = 9: x_tm = a_9 x0 + s_9 eps. The teacher (CFG,
    curved: its x0 depends on tanh(2x)) solves 9 -> 0 in p DDIM sub-steps on tau_j = round(9 - 9j/p):
    p = 1 [9, 0], p = 3 [9, 6, 3, 0]; the two end points differ (curvature). Goal = the TARGET
    network's x0 at (x_tn, t_n = 0) (a network of its own here, t-dependent, so a wrong network or
    timestep shows); L = mean (f(x_tm, 9) - goal)^2, dL/dc = 2 (f - goal) / D (per sample, then
    the batch mean): SGD moves the student's prediction straight towards the by-hand goal."""
    x0 = torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    student = Affine(torch.zeros(1, 2, 2), b=0.5, k=0.02)
    target = Affine(torch.full((1, 2, 2), 0.1), b=0.3, k=-0.03)
    t_m, t_n = torch.tensor([9, 9]), torch.tensor([0, 0])
    teacher = Guided(_curved_teacher(), LCD_W, prompt_cond([LCD_E_U]))
    value = lcd_loss(
        student, target, teacher, LONG, x0, eps, t_m, t_n, prompt_cond([LCD_E_C] * 2), substeps, l2
    )
    x_tm = HAND_LONG.a(9) * x0 + HAND_LONG.s(9) * eps
    x_tn = _hand_solve(x_tm, [torch.tensor([g, g]) for g in grid])
    other = _hand_solve(x_tm, [torch.tensor([g, g]) for g in ([9, 6, 3, 0] if substeps == 1 else [9, 0])])
    assert (x_tn - other).abs().max() > 0.02  # p matters on this teacher
    goal, pred = target.hand(x_tn, t_n), student.hand(x_tm, t_m)
    _close(value, (pred - goal).square().flatten(1).mean(1))
    value.mean().backward()
    _close(student.c.grad, (2 * (pred - goal) / 4).mean(0))
    assert target.c.grad is None
    with torch.no_grad():
        student.c -= student.c.grad
    assert (student.hand(x_tm, t_m) - goal).norm() < (pred - goal).norm()


def test_lcd_component_states_timesteps_and_value_by_hand():
    """LCD with M = 4 milestones [0, 3, 6, 9, 12] on the 12-step schedule, q = 2, p = 3. States:
    the student's 2-step sample x0_q (its second no-grad call's output; inference grid [11, 5])
    re-noised to t_m in the milestones {3, 6, 9, 12 -> 11}; t_n = t_m - T/M = t_m - 3; the teacher
    solves t_m -> t_n in 3 CFG sub-steps (timesteps t_m, t_m - 1, t_m - 2); the target (the
    stop-grad student) predicts at (x_tn, t_n) without gradients, the student at (x_tm, t_m) with.
    The loss is the batch mean of the by-hand l2."""
    student, teacher_calls = Affine(torch.zeros(1, 2, 2), b=0.5, k=0.02), []
    cfg = LCDConfig(teacher_substeps=3)
    ctx = context(
        student,
        _curved_teacher(teacher_calls),
        schedule=LONG,
        cond=[LCD_E_C] * 6,
        uncond=[LCD_E_U],
        w=LCD_W,
        seed=5,
        grid=(4, 2),
    )
    value = LCD(cfg)(ctx)["lcd"]
    sample_calls, (target_call, pred_call) = student.calls[:2], student.calls[2:]
    assert [(int(t[0]), g) for _, t, g in sample_calls] == [(11, False), (5, False)]
    assert not target_call[2] and pred_call[2]
    (x_tn, t_n, _), (x_tm, t_m, _) = target_call, pred_call
    assert set(t_m.tolist()) <= {3, 6, 9, 11}
    assert torch.equal(t_n, t_m - 3)
    assert [c[1][:6].tolist() for c in teacher_calls] == [(t_m - j).tolist() for j in range(3)]
    torch.testing.assert_close(teacher_calls[0][0][:6], x_tm)
    _close(x_tn, _hand_solve(x_tm, [t_m - j for j in range(4)]))
    goal, pred = student.hand(x_tn, t_n), student.hand(x_tm, t_m)
    _close(value, (pred - goal).square().mean())


# ============================================================================================
# 7. MLCD.


MLCD_E_C, MLCD_E_U, MLCD_W = 0.4, -0.1, 3.0
MLCD_E = MLCD_E_U + MLCD_W * (MLCD_E_C - MLCD_E_U)
"""-0.1 + 3 * 0.5 = 1.4."""


def _mlcd_by_hand(student, target, x_tm, t_m, t_n, t_s, hand=HAND_TOY):
    """(student side g(x_tm, t_m), goal g_target(x_tn, t_n)) with x_tn one CFG-DDIM step of the
    curved teacher t_m -> t_n, g(x, t) = DDIM(x, f(x, t), t -> t_s)."""
    x_tn = hand.ddim(x_tm, _hand_teacher_x0(x_tm, t_m, MLCD_E), t_m, t_n)
    goal = hand.ddim(x_tn, target.hand(x_tn, t_n), t_n, t_s)
    return hand.ddim(x_tm, student.hand(x_tm, t_m), t_m, t_s), goal, x_tn


def test_mlcd_goal_is_one_teacher_step_then_the_target_to_the_segment_edge():
    """Toy schedule, per sample (t_m, t_n, t_s) = (2, 1, 0), (2, 0, -1), (1, 0, -1) (t = -1: clean,
    a = 1, s = 0). x_tn = DDIM(x_tm, x0_teacher^CFG(x_tm, t_m), t_m -> t_n) (one teacher step, not
    x_tm itself, not the student's step); goal = segment_map(target, x_tn, t_n, t_s) =
    DDIM(x_tn, f_target(x_tn, t_n), t_n -> t_s); L = mean (g_student(x_tm, t_m) - goal)^2. The
    goal built from x_tm, or with t_n and t_s swapped, is far from it (checked, so the by-hand
    comparison can tell). Minimising over c (target frozen): g = coef f + ..., coef = a_s -
    s_s a_m / s_m = 0.75, 1, 1 > 0, so the student's segment-map output converges to the goal."""
    x_tm = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(4))
    t_m, t_n, t_s = torch.tensor([2, 2, 1]), torch.tensor([1, 0, 0]), torch.tensor([0, -1, -1])
    student = Affine(torch.zeros(3, 1, 2, 2), b=0.5, k=0.02)  # an offset per sample
    target = Affine(torch.full((1, 2, 2), 0.2), b=0.3, k=-0.05)
    teacher_calls = []
    args = (Guided(_curved_teacher(teacher_calls), MLCD_W, prompt_cond([MLCD_E_U])), TOY)
    cond = (TrajectoryStates(x_tm, t_m, t_n, t_s), prompt_cond([MLCD_E_C] * 3), l2)

    value = mlcd_loss(student, target, *args, *cond)
    g, goal, x_tn = _mlcd_by_hand(student, target, x_tm, t_m, t_n, t_s)
    assert len(teacher_calls) == 1 and torch.equal(teacher_calls[0][1], torch.cat([t_m, t_m]))
    _close(value, (g - goal).square().flatten(1).mean(1))
    _close(segment_map(target, TOY, x_tn, t_n, t_s, None), goal)
    wrong_state = HAND_TOY.ddim(x_tm, target.hand(x_tm, t_m), t_m, t_s)
    wrong_times = HAND_TOY.ddim(x_tn[:1], target.hand(x_tn[:1], 0), 0, 1)  # row 0: t_s = 0, t_n = 1
    assert (wrong_state - goal).abs().amax((1, 2, 3)).min() > 0.05
    assert (wrong_times - goal[:1]).abs().max() > 0.05

    opt = torch.optim.SGD([student.c], lr=6.0)
    for _ in range(40):
        opt.zero_grad()
        mlcd_loss(student, target, *args, *cond).mean().backward()
        opt.step()
    assert target.c.grad is None
    moved = segment_map(student, TOY, x_tm, t_m, t_s, None).detach()
    _close(moved, goal)


def _mlcd_run(batch: int, seed: int, grid: tuple[int, int], **extra):
    """(the Affine student, the curved teacher's call log, a context on the 12-step schedule with
    prompt scalars e_c = 0.4, e_u = -0.1 at w = 3) for MLCD component tests."""
    student, teacher_calls = Affine(torch.zeros(1, 2, 2), b=0.5, k=0.02), []
    ctx = context(
        student,
        _curved_teacher(teacher_calls),
        schedule=LONG,
        cond=[MLCD_E_C] * batch,
        uncond=[MLCD_E_U],
        w=MLCD_W,
        seed=seed,
        grid=grid,
        **extra,
    )
    return student, teacher_calls, ctx


@pytest.mark.parametrize("segments, width", [(0, 3), (2, 6)])
def test_mlcd_component_timesteps_and_value_by_hand(segments, width):
    """MLCD, single_jump states, M = 4 segments [0, 3, 6, 9, 12] on the 12-step schedule, skip
    k = 2. The teacher's first call is at T - 1 = 11 (noise -> x_tm in one CFG-DDIM step), its
    second at t_m on x_tm (one step to x_tn). t_s = the segment's lower edge, t_m in (t_s, t_s + 3],
    t_n = max(t_m - 2, t_s); the stop-grad student predicts at (x_tn, t_n) without gradients, the
    student at (x_tm, t_m) with; the loss is the batch mean of the by-hand l2 to the edge t_s."""
    cfg = MLCDConfig(skip=2, states="single_jump", segments=segments)
    batch = 8
    student, teacher_calls, ctx = _mlcd_run(batch, seed=2, grid=(4, 1))
    value = MLCD(cfg, student)(ctx)["mlcd"]
    (x_tn, t_n, grad_tn), (x_tm, t_m, grad_tm) = student.calls
    assert not grad_tn and grad_tm
    t_s = (torch.div(t_m - 1, width, rounding_mode="floor") * width).clamp(min=0)
    assert len(set(t_s.tolist())) > 1  # several segments in the batch
    assert torch.equal(t_n, torch.maximum(t_m - 2, t_s))
    (noise, t_first, _), (x_tm_teacher, t_second, _) = teacher_calls
    assert torch.equal(t_first[:batch], torch.full((batch,), 11)) and torch.equal(t_second[:batch], t_m)
    noise = noise[:batch]
    x_jump = HAND_LONG.ddim(noise, _hand_teacher_x0(noise, 11, MLCD_E), torch.full((batch,), 11), t_m)
    _close(x_tm, x_jump)
    torch.testing.assert_close(x_tm_teacher[:batch], x_tm)
    g, goal, hand_tn = _mlcd_by_hand(student, student, x_tm, t_m, t_n, t_s, hand=HAND_LONG)
    _close(x_tn, hand_tn)
    _close(value, (g - goal).square().mean())
    pair = ctx.computed(CONSISTENCY_PAIR)  # left for PCM's adversarial term: online with gradients
    assert pair.online.requires_grad and not pair.target.requires_grad
    _close(pair.online, g)
    _close(pair.target, goal)
    assert torch.equal(pair.t_s, t_s) and torch.equal(pair.t_m, t_m) and pair.segments == 12 // width


def test_mlcd_lattice_timesteps_are_the_ddim_lattice_points_of_each_segment():
    """timesteps="lattice" with skip k = 2 on the 12-step schedule: LCM's DDIM lattice {k - 1, 2k -
    1, ..., T - 1} = {1, 3, 5, 7, 9, 11}; with M = 4 segments (0, 3], (3, 6], (6, 9], (9, 11] every
    t_m is one of the points of its own segment ({1, 3}, {5}, {7, 9}, {11}), all six drawn in a
    batch of 64, and t_n = max(t_m - 2, t_s). The default "uniform" draws every integer of the
    segment, even ones too (off the lattice), so the option must reach the sampler."""
    drawn = {}
    for timesteps in ("lattice", "uniform"):
        student, _, ctx = _mlcd_run(64, seed=4, grid=(4, 1))
        MLCD(MLCDConfig(skip=2, states="single_jump", timesteps=timesteps), student)(ctx)
        (_, t_n, _), (_, t_m, _) = student.calls
        t_s = (torch.div(t_m - 1, 3, rounding_mode="floor") * 3).clamp(min=0)
        assert ((t_s < t_m) & (t_m <= t_s + 3)).all()
        assert torch.equal(t_n, torch.maximum(t_m - 2, t_s))
        drawn[timesteps] = set(t_m.tolist())
    assert drawn["lattice"] == {1, 3, 5, 7, 9, 11}
    assert drawn["uniform"] & {2, 4, 6, 8, 10}


def test_mlcd_single_jump_states_and_target_share_each_samples_w():
    """states "single_jump" with guidance_range (2, 4): ONE per-sample w_i ~ U[2, 4] for the step
    (``ctx.shared("mlcd/teacher")``) guides both teacher calls: the jump from noise at T - 1 = 11
    to x_tm, x_tm = DDIM(z, x0^CFG(z, 11; w_i), 11 -> t_m), and the step t_m -> t_n that makes x_tn,
    each with e_eff = e_u + w_i (e_c - e_u). A state made at the recipe's fixed w = 3 would pair it
    with a target made at w_i (the states of Alg. 1 come from the guided teacher, Eq. (8))."""
    batch = 32
    cfg = MLCDConfig(skip=2, states="single_jump", guidance_range=(2.0, 4.0))
    student, teacher_calls, ctx = _mlcd_run(batch, seed=6, grid=(4, 1))
    MLCD(cfg, student)(ctx)
    w = ctx.computed("mlcd/teacher").scale
    assert w.shape == (batch,) and 2 <= w.min() and w.max() <= 4 and w.std() > 0.3
    e_eff = (MLCD_E_U + w * (MLCD_E_C - MLCD_E_U)).view(-1, 1, 1, 1)
    (x_tn, t_n, _), (x_tm, t_m, _) = student.calls
    (noise, t_first, _), _ = teacher_calls
    noise, eleven = noise[:batch], torch.full((batch,), 11)
    assert torch.equal(t_first[:batch], eleven)
    _close(x_tm, HAND_LONG.ddim(noise, _hand_teacher_x0(noise, 11, e_eff), eleven, t_m))
    _close(x_tn, HAND_LONG.ddim(x_tm, _hand_teacher_x0(x_tm, t_m, e_eff), t_m, t_n))
    fixed = HAND_LONG.ddim(noise, _hand_teacher_x0(noise, 11, MLCD_E), eleven, t_m)
    assert (fixed - x_tm).abs().max() > 0.05  # the fixed w would show


def test_mlcd_mds_states_take_m_minus_s_teacher_steps_by_hand():
    """MLCD, states "mds" (Alg. 1), M = 4 segments [0, 3, 6, 9, 12] on the 12-step schedule, k = 2:
    sample i in segment s_i descends from pure noise at T - 1 = 11 to t_m in L_i = M - s_i equal
    CFG-DDIM steps on tau_j = round(11 + (t_m - 11) j / L_i) (the top segment 1 step, the lowest 4).
    Round r calls the teacher on the samples with L_i > r only (batch 2 #{L_i > r}: CFG doubles it),
    then one call at t_m on all of them for x_tn. s_i is read off the recorded t_m (t_m in
    (3 s, 3 s + 3]); the noise is the first round's input (every sample takes part in it)."""
    batch = 12
    student, teacher_calls, ctx = _mlcd_run(batch, seed=3, grid=(4, 1))
    MLCD(MLCDConfig(skip=2, states="mds"), student)(ctx)
    (_, t_m, _) = student.calls[1]
    seg = torch.div(t_m - 1, 3, rounding_mode="floor")
    lengths = 4 - seg
    assert len(set(lengths.tolist())) >= 3  # several step counts in the batch
    rounds, (last_x, last_t, _) = teacher_calls[:-1], teacher_calls[-1]
    assert [len(x) for x, _, _ in rounds] == [2 * int((lengths > r).sum()) for r in range(4)]
    assert torch.equal(last_t[:batch], t_m)
    noise = rounds[0][0][:batch]
    assert torch.equal(rounds[0][1][:batch], torch.full((batch,), 11))
    hand = []
    for i in range(batch):
        x, n = noise[i : i + 1], int(lengths[i])
        taus = [round(11 + (int(t_m[i]) - 11) * j / n) for j in range(n + 1)]
        for tau, nxt in zip(taus[:-1], taus[1:], strict=True):
            x = HAND_LONG.ddim(x, _hand_teacher_x0(x, tau, MLCD_E), tau, nxt)
        hand.append(x)
    _close(last_x[:batch], torch.cat(hand))
    _close(student.calls[1][0], torch.cat(hand))


def test_mlcd_mds_states_under_uniform_calls_are_the_same_states():
    """FSDP2's uniform calls (``PhaseContext.uniform_calls``): MDS makes M = 4 rounds of teacher
    calls on the whole batch whatever the segments (finished samples are masked), so every process
    calls the network alike; the states are those of the per-sample M - s_i steps (the test above):
    the same x_tm reaches the student, to float rounding (one round fewer would stop the lowest
    segment's 4-step trajectory at step 3). The teacher is called M + 1 times (the rounds, then
    x_tn), each on the whole batch (2B: CFG)."""
    batch, states = 12, {}
    for uniform in (False, True):
        student, teacher_calls, ctx = _mlcd_run(batch, seed=3, grid=(4, 1), uniform_calls=uniform)
        MLCD(MLCDConfig(skip=2, states="mds"), student)(ctx)
        states[uniform] = student.calls[1][0]
        seg = torch.div(student.calls[1][1] - 1, 3, rounding_mode="floor")
        assert 0 in seg.tolist()  # the lowest segment (4 steps) is in the batch
        if uniform:
            assert [len(x) for x, _, _ in teacher_calls] == [2 * batch] * 5
    _close(states[True], states[False])


def test_mlcd_ema_target_moves_one_minus_decay_and_makes_the_goal():
    """MLCD(target="ema", ema_decay=0.9): the EMA buffers start at the student's trainable weights;
    after_student_step moves them a fraction 1 - decay = 0.1 of the way to the live weights
    (Consistency Models eq. 8: theta^- <- decay theta^- + (1 - decay) theta), here 0 -> 0.1 for
    a live c = 1. The goal is then the network with the EMA weights swapped in (c = 0.1, not the
    live 1 nor 0.9), without gradients; the online side uses the live weights."""
    family = SimpleNamespace(forward=lambda net, x, t, cond: net(x, t, cond))
    cfg = MLCDConfig(skip=2, states="single_jump", target="ema", ema_decay=0.9)
    batch = 6
    student, _, ctx = _mlcd_run(batch, seed=2, grid=(4, 1))
    loss = MLCD(cfg, student, family)
    _close(loss.ema_0, torch.zeros(1, 2, 2))
    with torch.no_grad():
        student.c.fill_(1.0)
    loss.after_student_step()
    _close(loss.ema_0, torch.full((1, 2, 2), 0.1))
    _close(student.c.detach(), torch.ones(1, 2, 2))  # the live weights are left alone
    value = loss(ctx)["mlcd"]
    (x_tn, t_n, grad_tn), (x_tm, t_m, grad_tm) = student.calls
    assert not grad_tn and grad_tm
    t_s = (torch.div(t_m - 1, 3, rounding_mode="floor") * 3).clamp(min=0)
    ema = torch.full((1, 2, 2), 0.1)
    goal = HAND_LONG.ddim(x_tn, student.hand(x_tn, t_n, c=ema), t_n, t_s)
    g = HAND_LONG.ddim(x_tm, student.hand(x_tm, t_m), t_m, t_s)
    _close(value, (g - goal).square().mean())


def test_mlcd_ema_target_calls_count_as_evaluations():
    """The EMA target is the student's network with the EMA weights swapped in, called outside the
    engine's student denoiser, so MLCD adds its calls to the model's evaluation count itself
    (``counter``: the BaseModel whose ``evaluations`` the reported network calls and FLOPs read):
    one target call of the whole batch per step, B = 6 samples; the stop-grad target is the
    engine's own student denoiser and adds nothing here."""
    family = SimpleNamespace(forward=lambda net, x, t, cond: net(x, t, cond))
    batch = 6
    for target, expected in (("ema", batch), ("stopgrad", 0)):
        counter = SimpleNamespace(evaluations=0)
        cfg = MLCDConfig(skip=2, states="single_jump", target=target, ema_decay=0.9)
        student, _, ctx = _mlcd_run(batch, seed=2, grid=(4, 1))
        MLCD(cfg, student, family, counter=counter)(ctx)
        assert counter.evaluations == expected


# ============================================================================================
# 7. Consistency options of the method zoo (LCM / PCM / TCD): real-image states, a random target
#    time s, per-sample guidance.


def test_mlcd_real_states_random_target_time_and_per_sample_w_by_hand(monkeypatch):
    """MLCD(states="data", target_time="random", guidance_range=(2, 4)) on the 12-step schedule,
    one segment [0, 12] (k = 2). x_tm is the micro-batch's real latent x0 = 3 noised to t_m (not a
    teacher state: (x_tm - a x0) / s is standard normal); x_tn one CFG-DDIM step of the teacher with
    each sample's own w_i (e_eff = e_u + w_i (e_c - e_u)); both branches map to s uniform in
    [t_s, t_n] = [0, t_n] (TCD), not the edge 0; L = mean (g_student(x_tm, t_m -> s) - goal)^2."""
    import tlcm.losses.mlcd as mlcd_module

    seen = []
    original = mlcd_module.segment_maps
    monkeypatch.setattr(mlcd_module, "segment_maps", lambda *a: seen.append(a[4]) or original(*a))
    batch, x0 = 64, torch.full((64, 1, 2, 2), 3.0)
    cfg = MLCDConfig(skip=2, states="data", target_time="random", guidance_range=(2.0, 4.0))
    real = {"real_images": lambda index, generator: x0[index], "prompt_index": torch.arange(batch)}
    student, teacher_calls, ctx = _mlcd_run(batch, seed=5, grid=(1, 1), **real)
    value = MLCD(cfg, student)(ctx)["mlcd"]
    (x_tn, t_n, _), (x_tm, t_m, grad_tm) = student.calls
    assert grad_tm and len(teacher_calls) == 1
    eps = (x_tm - HAND_LONG.a(t_m) * x0) / HAND_LONG.s(t_m)
    assert abs(float(eps.mean())) < 0.2 and abs(float(eps.std()) - 1) < 0.2  # real x0 re-noised
    w = ctx.computed("mlcd/teacher").scale
    assert w.shape == (batch,) and 2 <= w.min() and w.max() <= 4 and w.std() > 0.3
    e_eff = (MLCD_E_U + w * (MLCD_E_C - MLCD_E_U)).view(-1, 1, 1, 1)
    _close(x_tn, HAND_LONG.ddim(x_tm, _hand_teacher_x0(x_tm, t_m, e_eff), t_m, t_n))
    (states,) = seen
    s = states.t_s
    assert ((0 <= s) & (s <= t_n)).all() and (s > 0).float().mean() > 0.5 and len(set(s.tolist())) > 3
    goal = HAND_LONG.ddim(x_tn, student.hand(x_tn, t_n), t_n, s)
    g = HAND_LONG.ddim(x_tm, student.hand(x_tm, t_m), t_m, s)
    _close(value, (g - goal).square().mean())


# ============================================================================================
# 8. DMD2's switches (tianweiy/DMD2; docs/zoo-methods.md section 5): the fake score's own timestep
#    range, a fresh student sample per fake update, backward simulation along the sampler's chain.


class RecordingFake(nn.Module):
    """Fake score x0 = b x (b trainable); records (x_t, t, b at the call) of each call."""

    def __init__(self, b: float = 0.5) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.tensor(b))
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def denoiser(self):
        def fake(x, t, cond):
            self.calls.append((x.detach().clone(), t.clone(), self.b.detach().clone()))
            return self.b * x

        return fake

    def parameters(self, recurse: bool = True):
        return list(super().parameters(recurse))


class GradRecordingGaussian(GaussianStudent):
    """GaussianStudent that also records whether gradients were on in each call."""

    def __init__(self, mu: float, sd: float) -> None:
        super().__init__(mu, sd)
        self.grad: list[bool] = []

    def forward(self, x, t, cond):
        self.grad.append(torch.is_grad_enabled())
        return super().forward(x, t, cond)


def _dmd2(student, fake, seed, batch, grid=(1, 1), **config):
    """DMD on the 3-step toy schedule with t' in 0..2 by default, the Gaussian teacher, latents
    (1, 4, 4); ``config`` overrides any DMDConfig field."""
    cfg = DMDConfig(**{"t_min": 0, "t_max": 2, "real_guidance_scale": W_REAL, **config})
    teacher = _gaussian_teacher()
    ctx = context(
        student, teacher, cond=[MU_C] * batch, uncond=[MU_U], seed=seed, latent_shape=(1, 4, 4), grid=grid
    )
    return DMD(cfg, fake), ctx


def _standard_normal(eps: torch.Tensor) -> bool:
    return abs(float(eps.mean())) < 0.1 and abs(float(eps.std()) - 1) < 0.1


def test_dmd_fake_score_timesteps_range_apart_from_t_prime():
    """DMD2 trains its fake score on t ~ U{0..T-1} while the student's t' stays in [t_min, t_max]
    (sd_guidance.py: compute_loss_fake vs compute_distribution_matching_loss). DMDConfig(t_min=1,
    t_max=2, fake_t_min=0, fake_t_max=2): the student's loss evaluates the fake at t' in {1, 2}
    only; aux_step's denoising loss at t in {0, 1, 2}, on x_t = a_t x0 + s_t eps re-noised from the
    step's prediction x0 (eps standard normal), with L_fake = mean (b x_t - x0)^2 (prediction type
    "sample": the target is x0). By default (None) the fake's t follow t' ({1, 2}, never 0)."""
    student, fake = GaussianStudent(-0.5, 1.5), RecordingFake()
    loss, ctx = _dmd2(student, fake, seed=11, batch=256, t_min=1, fake_t_min=0, fake_updates=1)
    loss(ctx)
    metrics = loss.aux_step([ctx])
    (_, t_prime, _), (x_t, t, b) = fake.calls
    assert set(t_prime.tolist()) == {1, 2}
    assert set(t.tolist()) == {0, 1, 2} and min((t == v).sum() for v in (0, 1, 2)) > 30
    x0 = ctx.computed("student_prediction/1/1").x0.detach()
    assert _standard_normal((x_t - HAND_TOY.a(t) * x0) / HAND_TOY.s(t))
    assert metrics["dmd/fake_loss"].item() == pytest.approx(float((b * x_t - x0).square().mean()), rel=1e-6)

    default = RecordingFake()
    loss, ctx = _dmd2(GaussianStudent(-0.5, 1.5), default, seed=11, batch=256, t_min=1, fake_updates=1)
    loss(ctx)
    loss.aux_step([ctx])
    assert set(default.calls[1][1].tolist()) == {1, 2}


@pytest.mark.parametrize("mode", ["fresh", "shared"])
def test_dmd_fresh_fake_samples_are_new_student_draws(mode):
    """fake_samples="fresh" (DMD2's train_sd.py draws a new generator sample for every fake step):
    3 fake updates call the student once for its loss and once more per update, each on new noise
    z_i (M = q = 1: predictions from pure noise), without gradients, as the student is at aux_step
    (mu moved by +1 after its loss, as its optimizer would): update i denoises x0_i = mu' + sd z_i,
    so eps_i = (x_t - a x0_i) / s is standard normal (against the loss's x0 its variance would be
    1 + 2 (a sd / s)^2 > 10 at t <= 1) and L_i = mean (b_i x_t - x0_i)^2 by hand. "shared" (the
    default) calls the student once and denoises the loss's own x0 in every update."""
    student, fake = GradRecordingGaussian(-0.5, 2.0), RecordingFake()
    loss, ctx = _dmd2(student, fake, seed=4, batch=256, fake_t_max=1, fake_updates=3, fake_samples=mode)
    loss(ctx)["dmd"].backward()
    shared_x0 = ctx.computed("student_prediction/1/1").x0.detach()
    with torch.no_grad():
        student.mu += 1.0
    metrics = loss.aux_step([ctx])
    updates = fake.calls[1:]
    assert len(updates) == 3
    if mode == "shared":
        assert len(student.inputs) == 1
        x0s = [shared_x0] * 3
    else:
        assert len(student.inputs) == 4 and student.grad == [True, False, False, False]
        zs = student.inputs[1:]
        assert all(
            not torch.equal(a, b) for i, a in enumerate(student.inputs) for b in student.inputs[i + 1 :]
        )
        x0s = [student.mu.detach() + student.sd.detach() * z for z in zs]
    hand = []
    for (x_t, t, b), x0 in zip(updates, x0s, strict=True):
        assert set(t.tolist()) <= {0, 1}
        assert _standard_normal((x_t - HAND_TOY.a(t) * x0) / HAND_TOY.s(t))
        hand.append((b * x_t - x0).square().mean())
    assert metrics["dmd/fake_loss"].item() == pytest.approx(float(torch.stack(hand).mean()), rel=1e-6)


def test_dmd_fresh_fake_samples_redraw_the_backward_simulation_state():
    """On a q = 2 grid ("sample" backward simulation) a fresh draw is a whole new prediction: a new
    2-step sample (2 calls) re-noised, then the prediction (1 call): the loss's step costs 3 student
    calls, each of 2 fresh updates 3 more; the fake's inputs never reuse the step's sample."""
    calls = []

    def student(x, t, cond):
        calls.append(x.detach().clone())
        return 0.5 * x

    loss, ctx = _dmd2(
        student, RecordingFake(), seed=2, batch=8, grid=(2, 2), fake_updates=2, fake_samples="fresh"
    )
    loss(ctx)
    assert len(calls) == 3
    loss.aux_step([ctx])
    assert len(calls) == 9
    assert all(not torch.equal(a, b) for i, a in enumerate(calls) for b in calls[i + 1 :])


def test_backward_simulation_chain_with_two_steps_by_hand():
    """q = 2 (M = 4: grid t = 11, 5 on the 12-step schedule) is a chain too, not "sample": one
    k ~ U{0, 1} for the micro-batch (every sample predicted at the same grid[k]), x_t = z at k = 0
    and the one LCM move a x0(z, 11) + s n_1 at k = 1; 1 + k student calls, the first k without
    gradients ("sample" would call it q = 2 times for the samples, then once, at a t per sample)."""
    seen = set()
    for seed in range(8):
        student = Affine(torch.zeros(1, 2, 2), b=0.5, k=0.02)
        grid = StudentGrid(4, 2, backward_simulation="chain")
        ctx = context(student, _curved_teacher(), schedule=LONG, cond=[0.0] * 5, seed=seed, grid=grid)
        pred = student_prediction(ctx)
        gen = torch.Generator().manual_seed(seed)
        k = int(torch.randint(2, (1,), generator=gen))
        z, n_1 = torch.randn((5, 1, 2, 2), generator=gen), torch.randn((5, 1, 2, 2), generator=gen)
        x = z if k == 0 else HAND_LONG.a(5) * student.hand(z, 11) + HAND_LONG.s(5) * n_1
        assert pred.t.tolist() == [[11, 5][k]] * 5
        _close(pred.x_t, x)
        assert [grad for _, _, grad in student.calls] == [False] * k + [True]
        seen.add(k)
    assert seen == {0, 1}


@pytest.mark.parametrize("gamma", [1.0, 0.0])
def test_backward_simulation_chain_by_hand(gamma):
    """StudentGrid(M = 4, q = 4, backward_simulation="chain") on the 12-step schedule: grid
    t = 11, 8, 5, 2. DMD2's backward simulation (sd_unified_model.py sample_backward): one
    k ~ U{0..3} per micro-batch (the generator's first draw on CPU), then noise z and the fresh
    noises n_1..n_3 (all drawn up front); the student's own sampler runs k moves from z,
    x_{i+1} = a x0_i + s n_{i+1} (training_gamma 1, LCM) or DDIM (0); the prediction is made at
    (x_k, grid[k]) with gradients: k + 1 student calls, the first k without gradients, and the
    chain carries no gradient (d sum x0 / d c = B). Under uniform_calls (FSDP2) the sampler runs
    all 3 moves: the same draws (the next one too), the same x_t and x0. Twelve seeds reach every k."""
    ts, seen = [11, 8, 5, 2], set()
    for seed in range(12):
        results = []
        for uniform in (False, True):
            student = Affine(torch.zeros(1, 2, 2), b=0.5, k=0.02)
            grid = StudentGrid(4, 4, training_gamma=gamma, backward_simulation="chain")
            ctx = context(
                student,
                _curved_teacher(),
                schedule=LONG,
                cond=[0.0] * 3,
                seed=seed,
                grid=grid,
                uniform_calls=uniform,
            )
            pred = student_prediction(ctx)
            gen = torch.Generator().manual_seed(seed)
            k = int(torch.randint(4, (1,), generator=gen))
            x = torch.randn((3, 1, 2, 2), generator=gen)
            fresh = [torch.randn((3, 1, 2, 2), generator=gen) for _ in range(3)]
            for i in range(k):
                x0 = student.hand(x, ts[i])
                if gamma == 1.0:
                    x = HAND_LONG.a(ts[i + 1]) * x0 + HAND_LONG.s(ts[i + 1]) * fresh[i]
                else:
                    x = HAND_LONG.ddim(x, x0, ts[i], ts[i + 1])
            _close(pred.x_t, x)
            assert pred.t.tolist() == [ts[k]] * 3
            _close(pred.x0, student.hand(x, ts[k]))
            moves = 3 if uniform else k
            assert [grad for _, _, grad in student.calls] == [False] * moves + [True]
            pred.x0.sum().backward()
            _close(student.c.grad, torch.full((1, 2, 2), 3.0))
            results.append((pred.x_t, pred.x0.detach(), ctx.randn(1)))  # + the next draw
        assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))
        seen.add(k)
    assert seen == {0, 1, 2, 3}
