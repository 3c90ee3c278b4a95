"""ADD (arXiv 2311.17042, docs/zoo-methods.md section 6): its distillation loss and the student's
states from real data (``StudentGrid(backward_simulation="data")``), pinned by hand.

As tests/test_objectives.py: prediction_type "sample" (a denoiser's output is its x0), the
schedule's coefficients recomputed from the alphas_cumprod list, float64, every random draw
replayed by hand from the step's seed (``predict_student`` draws k, then the noise; ADD then u for
t, then its re-noising eps), so a wrong formula, a missing stop-gradient or swapped tensors FAIL.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from tlcm.conditioning import Conditioning
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import StudentGrid
from tlcm.diffusion.schedule import FlowSchedule, VPSchedule
from tlcm.errors import TLCMError
from tlcm.losses import LOSSES
from tlcm.losses.add import ADDDistill, ADDDistillConfig, add_weighting
from tlcm.losses.base import StepContext
from tlcm.losses.shared import prediction_key, student_prediction

AC = [0.99 - 0.08 * i for i in range(12)]
"""12 timesteps, alphas_cumprod 0.99, 0.91, ..., 0.11; the student's M = q = 4 grid is 11, 8, 5, 2."""
SCHEDULE = VPSchedule(torch.tensor(AC), prediction_type="sample")
E_C, E_U, W = 0.7, -0.2, 1.5
"""The prompt scalar of every sample, the unconditional one, the recipe's teacher scale."""


pytestmark = pytest.mark.usefixtures("float64")  # by-hand maths in float64 (conftest.py)


def a(t):
    return torch.tensor([math.sqrt(AC[int(i)]) for i in torch.as_tensor(t).view(-1)]).view(-1, 1, 1, 1)


def s(t):
    return torch.tensor([math.sqrt(1 - AC[int(i)]) for i in torch.as_tensor(t).view(-1)]).view(-1, 1, 1, 1)


def _close(actual, expected):
    """By hand vs the library: the schedule stores a_t, s_t in float32 (1e-7 relative)."""
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=1e-6)


def _prompts(value: float, batch: int) -> Conditioning:
    return Conditioning(torch.full((batch, 2, 3), value))


class Student(nn.Module):
    """x0 = c + 0.5 x + 0.02 (t + 1), ``c`` trainable; records (x, t, grad enabled)."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.linspace(-0.3, 0.4, 4).view(1, 2, 2))
        self.calls: list[tuple[torch.Tensor, torch.Tensor, bool]] = []

    def forward(self, x, t, cond):
        self.calls.append((x.detach().clone(), t.clone(), torch.is_grad_enabled()))
        return self.c + 0.5 * x + 0.02 * (t.view(-1, 1, 1, 1) + 1)

    def hand(self, x, t):
        return self.c.detach() + 0.5 * x + 0.02 * (torch.as_tensor(t).view(-1, 1, 1, 1) + 1)


class Teacher:
    """A stand-in teacher, x0 = 0.8 tanh(2 x) + 0.05 (t + 1) + e (e: the prompt scalar, so CFG
    gives e_u + w (e_c - e_u)); records each call (x, t, batch, x.requires_grad, grad enabled)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, x, t, cond):
        self.calls.append(
            {
                "x": x.detach().clone(),
                "t": t.clone(),
                "batch": len(x),
                "requires_grad": x.requires_grad,
                "grad_enabled": torch.is_grad_enabled(),
            }  # fmt: skip
        )
        e = cond.prompt_embeds[:, 0, 0].view(-1, 1, 1, 1)
        return 0.8 * torch.tanh(2 * x) + 0.05 * (t.view(-1, 1, 1, 1) + 1) + e

    @staticmethod
    def hand(x, t, w):
        return (
            0.8 * torch.tanh(2 * x)
            + 0.05 * (torch.as_tensor(t).view(-1, 1, 1, 1) + 1)
            + E_U
            + w * (E_C - E_U)
        )


def _ctx(student, teacher, batch=6, seed=0, grid=None, w=W, schedule=SCHEDULE, **extra) -> StepContext:
    return StepContext.standalone(
        student=student,
        teacher=Guided(teacher, w, _prompts(E_U, 1)),
        schedule=schedule,
        cond=_prompts(E_C, batch),
        generator=torch.Generator().manual_seed(seed),
        latent_shape=(1, 2, 2),
        grid=grid or StudentGrid(1, 1),
        **extra,
    )


def _replay(seed, batch, lo, hi, shape=(1, 2, 2)):
    """The step's draws by hand, M = q = 1: k (all 0), the student's noise z, u for t (every
    integer of [lo, hi] equally likely), the re-noising eps."""
    gen = torch.Generator().manual_seed(seed)
    torch.randint(1, (batch,), generator=gen)
    z = torch.randn((batch, *shape), generator=gen)
    u = torch.rand(batch, generator=gen)
    t = lo + (u * (hi - lo + 1)).floor().long()
    eps = torch.randn((batch, *shape), generator=gen)
    return z, t, eps


@pytest.mark.parametrize(
    ("weighting", "guidance"), [("exponential", 0.0), ("uniform", 0.0), ("exponential", 3.0)]
)
def test_add_distill_value_target_and_gradient_by_hand(weighting, guidance):
    """M = q = 1 (the prediction from pure noise z at t = 11): x_hat = student(z, 11); t uniform on
    0..11; x_t = a_t sg(x_hat) + s_t eps; the teacher's guided x0 x_psi = teacher(x_t, t) with
    e_u + w (e_c - e_u) (w: the recipe's 1.5, or guidance_scale 3), ONE teacher call of 2B (CFG);
    L = mean_b c(t_b) mean_d (x_hat - x_psi)^2, c(t) = alphas_cumprod[t] (exponential) or 1, and
    d L / d x_hat = 2 c(t) (x_hat - x_psi) / (B D), so the student's c gets its batch sum."""
    batch, seed = 64, 3
    student, teacher = Student(), Teacher()
    ctx = _ctx(student, teacher, batch=batch, seed=seed)
    loss = ADDDistill(ADDDistillConfig(weighting=weighting, guidance_scale=guidance))
    value = loss(ctx)["add_distill"]
    x_hat = ctx.computed(prediction_key(ctx)).x0
    x_hat.retain_grad()
    value.backward()

    z, t, eps = _replay(seed, batch, 0, 11)
    assert len(set(t.tolist())) > 8
    hand_x_hat = student.hand(z, 11)
    _close(x_hat.detach(), hand_x_hat)
    (call,) = teacher.calls
    assert call["batch"] == 2 * batch and torch.equal(call["t"], torch.cat([t, t]))
    x_t = a(t) * hand_x_hat + s(t) * eps
    _close(call["x"][:batch], x_t)
    x_psi = Teacher.hand(x_t, t, guidance or W)
    c = torch.tensor([AC[i] for i in t.tolist()]) if weighting == "exponential" else torch.ones(batch)
    per_sample = (hand_x_hat - x_psi).square().flatten(1).mean(1)
    _close(value.detach(), (c * per_sample).mean())
    grad = 2 * c.view(-1, 1, 1, 1) * (hand_x_hat - x_psi) / (batch * 4)
    _close(x_hat.grad, grad)
    _close(student.c.grad, grad.sum(0))


@pytest.mark.parametrize("distance", ["huber", "elementwise_huber"])
def test_add_distill_takes_the_configured_distance(distance):
    """distance "huber": per sample sqrt(mean_d (x_hat - x_psi)^2 + 0.03^2) - 0.03 (iCT's
    pseudo-Huber on the per-element mean); "elementwise_huber": mean_d sqrt((x_hat - x_psi)^2 +
    0.001^2) - 0.001 (LCM's): L = mean_b alpha_bar_t d_b, not the l2 of the default."""
    batch, seed = 32, 3
    student = Student()
    ctx = _ctx(student, Teacher(), batch=batch, seed=seed)
    value = ADDDistill(ADDDistillConfig(distance=distance))(ctx)["add_distill"]
    z, t, eps = _replay(seed, batch, 0, 11)
    x_hat = student.hand(z, 11)
    diff = x_hat - Teacher.hand(a(t) * x_hat + s(t) * eps, t, W)
    if distance == "huber":
        d = (diff.square().flatten(1).mean(1) + 0.03**2).sqrt() - 0.03
    else:
        d = ((diff.square() + 0.001**2).sqrt() - 0.001).flatten(1).mean(1)
    c = torch.tensor([AC[i] for i in t.tolist()])
    _close(value.detach(), (c * d).mean())
    assert abs(float((c * diff.square().flatten(1).mean(1)).mean() - value.detach())) > 1e-3  # not l2


def test_add_distill_converts_eps_outputs_to_x0_by_hand():
    """On an epsilon-prediction schedule (the same alphas_cumprod) both networks output noise: the
    student's x_hat = (z - s_11 out) / a_11 at pure noise z, the teacher's target x_psi =
    (x_t - s_t eps_psi) / a_t with its guided output eps_psi; L = mean_b alpha_bar_t mean_d
    (x_hat - x_psi)^2, not a regression onto the teacher's raw output."""
    batch, seed = 32, 2
    student, teacher = Student(), Teacher()
    schedule = VPSchedule(torch.tensor(AC), prediction_type="epsilon")
    ctx = _ctx(student, teacher, batch=batch, seed=seed, schedule=schedule)
    value = ADDDistill(ADDDistillConfig())(ctx)["add_distill"]
    z, t, eps = _replay(seed, batch, 0, 11)
    x_hat = (z - s(11) * student.hand(z, 11)) / a(11)
    _close(ctx.computed(prediction_key(ctx)).x0.detach(), x_hat)
    x_t = a(t) * x_hat + s(t) * eps
    x_psi = (x_t - s(t) * Teacher.hand(x_t, t, W)) / a(t)
    c = torch.tensor([AC[i] for i in t.tolist()])
    _close(value.detach(), (c * (x_hat - x_psi).square().flatten(1).mean(1)).mean())


def test_the_teacher_sees_the_stopped_prediction():
    """sg(x_hat): the teacher's input carries no graph and its call runs without gradients, so the
    student's gradient is only the regression's (the by-hand test above) and the teacher's
    activations are not kept. (w = 1: the teacher gets x_t itself, not CFG's concatenation.)"""
    teacher = Teacher()
    ctx = _ctx(Student(), teacher, w=1.0)
    ADDDistill(ADDDistillConfig())(ctx)["add_distill"].backward()
    (call,) = teacher.calls
    assert not call["requires_grad"] and not call["grad_enabled"]


def test_exponential_weighting_is_alpha_bar():
    """c(t) = alpha(t)^2: alphas_cumprod[t] on a VP schedule (t = -1, clean: 1), (1 - sigma)^2 on a
    flow schedule (ours; sigma = t / T); "uniform" is 1."""
    t = torch.tensor([-1, 0, 5, 11])
    _close(add_weighting(SCHEDULE, t, "exponential").double(), torch.tensor([1.0, AC[0], AC[5], AC[11]]))
    flow = FlowSchedule(shift=1.0)
    tf = torch.tensor([0.0, 250.0, 500.0, 1000.0])
    _close(add_weighting(flow, tf, "exponential").double(), torch.tensor([1.0, 0.5625, 0.25, 0.0]))
    assert torch.equal(add_weighting(SCHEDULE, t, "uniform"), torch.ones(4, dtype=torch.float32))


def test_timesteps_are_uniform_over_the_whole_range():
    """t_min .. t_max inclusive, every integer equally likely (the ends too: not rounded reals);
    the default range is the schedule's whole one (0..T-1); a flow schedule draws reals."""
    loss = ADDDistill(ADDDistillConfig(t_min=2, t_max=6))
    t = loss.timesteps(_ctx(Student(), Teacher(), batch=5000))
    counts = torch.bincount(t, minlength=12)
    assert set(t.tolist()) == set(range(2, 7)) and counts[2:7].min() > 900 and counts[2:7].max() < 1100
    t = ADDDistill(ADDDistillConfig()).timesteps(_ctx(Student(), Teacher(), batch=2000))
    assert set(t.tolist()) == set(range(12))
    flow_ctx = StepContext.standalone(
        student=Student(), teacher=Guided(Teacher()), schedule=FlowSchedule(), cond=_prompts(0.0, 500),
        generator=torch.Generator().manual_seed(0), latent_shape=(1, 2, 2),
    )  # fmt: skip
    t = ADDDistill(ADDDistillConfig(t_min=100)).timesteps(flow_ctx)
    assert t.dtype == torch.float32 and 100 <= t.min() and t.max() <= 1000 and len(set(t.tolist())) == 500


def test_pixel_space_decodes_the_shared_prediction_and_the_target():
    """space "pixel": d on decoded images, the prediction's decode (with gradients) the shared one
    (``decoded_prediction``), the target's without gradients: L = mean c(t) mean (D(x_hat) -
    D(x_psi))^2 for the stand-in decoder D(z) = tanh(z) repeated to 3 channels; no decoder: a
    clear error. The gradient reaches the student through the prediction's decode: d L / d c is
    autograd's of the by-hand loss as a function of c (x_psi held fixed, the teacher's input is
    sg(x_hat)), not zero as with a detached prediction decoded under grad mode."""
    batch, seed = 16, 1
    decodes = []

    def decode(z):
        decodes.append(torch.is_grad_enabled())
        return torch.tanh(z).repeat(1, 3, 1, 1)

    student = Student()
    ctx = _ctx(student, Teacher(), batch=batch, seed=seed, decode=decode)
    value = ADDDistill(ADDDistillConfig(space="pixel"))(ctx)["add_distill"]
    assert decodes == [True, False]
    assert f"decoded/{prediction_key(ctx)}" in ctx._work
    z, t, eps = _replay(seed, batch, 0, 11)
    c_hand = student.c.detach().clone().requires_grad_()
    x_hat = c_hand + 0.5 * z + 0.02 * 12
    x_psi = Teacher.hand(a(t) * x_hat.detach() + s(t) * eps, t, W)
    c = torch.tensor([AC[i] for i in t.tolist()])
    hand = (c * (torch.tanh(x_hat) - torch.tanh(x_psi)).square().flatten(1).mean(1)).mean()
    _close(value.detach(), hand.detach())
    value.backward()
    hand.backward()
    assert c_hand.grad.abs().min() > 1e-4
    _close(student.c.grad, c_hand.grad)
    with pytest.raises(ValueError, match="no decode function"):
        ADDDistill(ADDDistillConfig(space="pixel"))(_ctx(Student(), Teacher()))


def test_pixel_distance_of_bf16_decodes_is_taken_in_float32():
    """A bf16 VAE decodes both images in bf16; the distance and the loss are taken in float32 (at
    least): the loss is float32 and equals mean_b c(t_b) mean (P - Q)^2 computed in float64 from
    the very bf16 images P, Q (1e-6 relative). In bf16 (8 bits of mantissa) the squares and the
    means round at ~4e-3 relative, so the small differences that drive the gradient are lost."""
    batch, seed = 16, 1
    images = []

    def decode(z):
        images.append(torch.tanh(z).repeat(1, 3, 4, 4).to(torch.bfloat16))  # (B, 3, 8, 8) in bf16
        return images[-1]

    ctx = _ctx(Student(), Teacher(), batch=batch, seed=seed, decode=decode)
    value = ADDDistill(ADDDistillConfig(space="pixel"))(ctx)["add_distill"]
    assert value.dtype == torch.float32
    pred, target = (image.double() for image in images)
    _, t, _ = _replay(seed, batch, 0, 11)
    c = torch.tensor([AC[i] for i in t.tolist()])
    hand = (c * (pred - target).square().flatten(1).mean(1)).mean()
    torch.testing.assert_close(value.double(), hand, atol=0, rtol=1e-6)


def test_backward_simulation_data_noises_real_latents_to_the_grid():
    """StudentGrid(M = 4, q = 4, backward_simulation "data"), grid 11, 8, 5, 2: k uniform per
    sample (every k drawn, 0 too), x_t = a x_real + s z at grid[k] with the micro-batch's own real
    latents (rows prompt_index) and fresh z, no student sample (1 student call, with gradients);
    at k = 0 (t = 11) the state is real data noised, not pure noise. Without real images: the
    clear error."""
    batch, seed = 40, 7
    real = torch.arange(batch * 4, dtype=torch.float64).view(batch, 1, 2, 2) / 40 - 1
    index = torch.arange(batch).flip(0)
    student = Student()
    grid = StudentGrid(4, 4, backward_simulation="data")
    ctx = _ctx(
        student, Teacher(), batch=batch, seed=seed, grid=grid,
        real_images=lambda rows, generator: real[rows], prompt_index=index,
    )  # fmt: skip
    pred = student_prediction(ctx)
    gen = torch.Generator().manual_seed(seed)
    k = torch.randint(4, (batch,), generator=gen)
    z = torch.randn((batch, 1, 2, 2), generator=gen)
    t = torch.tensor([11, 8, 5, 2])[k]
    assert set(k.tolist()) == {0, 1, 2, 3}
    assert torch.equal(pred.t, t)
    x_t = a(t) * real[index] + s(t) * z
    _close(pred.x_t, x_t)
    _close(pred.x0.detach(), student.hand(x_t, t))
    assert [grad for _, _, grad in student.calls] == [True]
    assert (pred.x_t[k == 0] - z[k == 0]).abs().max() > 0.1  # the top state holds the real latent
    no_data = _ctx(Student(), Teacher(), grid=grid)
    with pytest.raises(TLCMError, match="--recipes.data.images"):
        student_prediction(no_data)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("t_min", 999, "t_min < t_max"),
        ("t_max", 1000, "t_max <= 999"),
        ("t_max", 0, "t_min < t_max"),
        ("weighting", "sds", "weighting must be one of exponential, uniform"),
        ("space", "rgb", "space must be one of latent, pixel"),
        ("distance", "lpips", "distance must be one of l2"),
        ("guidance_scale", -1.0, "guidance_scale must be >= 0"),
    ],
)
def test_config_refuses_bad_values(field, value, message):
    ADDDistillConfig().validate(1000, StudentGrid())
    with pytest.raises(ValueError, match=re.escape(message)):
        ADDDistillConfig(**{field: value}).validate(1000, StudentGrid())


def test_registered_and_in_the_zoo_recipe():
    """``add_distill`` is a built-in loss; recipes:add combines it (lambda 2.5, exponential, pixel)
    with the hinge GAN on real data, the student's states real data noised to 999 / 749 / 499 / 249."""
    from recipes import PRESETS

    assert LOSSES["add_distill"] is ADDDistillConfig
    recipe = PRESETS["add"]
    (phase,) = recipe.phases.values()
    distill, gan = phase.losses["add_distill"], phase.losses["gan"]
    assert (distill.weight, distill.weighting, distill.space, distill.distance) == (
        2.5,
        "exponential",
        "pixel",
        "l2",
    )
    assert (gan.loss_type, gan.real, gan.backbone) == ("hinge", "data", "teacher")
    grid = recipe.student.grid
    assert grid.backward_simulation == "data" and grid.timesteps(None, 1000).tolist() == [999, 749, 499, 249]
    assert recipe.data.images is not None
