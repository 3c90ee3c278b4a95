"""MLCD and LCD as plain functions on tensors and toy denoisers: no engine, no recipe, no model.

The schedule has three timesteps with Pythagorean coefficients, alphas_cumprod = [0.9216, 0.64,
0.36]: (a, s) = (0.96, 0.28) at t = 0, (0.8, 0.6) at t = 1, (0.6, 0.8) at t = 2. With
prediction_type "sample" the denoiser's output IS x0_hat. Student: x0_hat = 0.5 x (a trainable
scale); teacher: x0_hat = 0, whatever the prompt (so CFG changes nothing).
"""

import pytest
import torch

from tlcm.conditioning import Conditioning
from tlcm.data.states import TrajectoryStates
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.schedule import VPSchedule
from tlcm.losses.distances import elementwise_huber, get_distance, l2, pseudo_huber
from tlcm.losses.lcd import lcd_loss
from tlcm.losses.mlcd import mlcd_loss, segment_map

SCHEDULE = VPSchedule(torch.tensor([0.9216, 0.64, 0.36]), prediction_type="sample")
COND = Conditioning(torch.zeros(1, 2, 3))
NULL = Conditioning(torch.ones(1, 2, 3))


def _student():
    scale = torch.nn.Parameter(torch.tensor(0.5))
    return scale, lambda x, t, cond: scale * x


def _teacher(calls):
    def teacher(x, t, cond):
        calls.append(x.shape[0])
        return torch.zeros_like(x)

    return teacher


def t(v):
    return torch.tensor([v])


def _mlcd_at_2_1_0(student, calls, x_tn=None):
    """mlcd_loss with x_tm = 1, t_m = 2, t_n = 1, t_s = 0, w = 3, l2, the x0 = 0 teacher."""
    x_tm = torch.ones(1, 1, 2, 2)
    states = TrajectoryStates(x_tm, t(2), t(1), t(0), x_tn)
    return mlcd_loss(student, student, Guided(_teacher(calls), 3.0, NULL), SCHEDULE, states, COND, l2)


def test_segment_map_by_hand():
    """x = 1 at t = 2 -> t_s = 0: x0 = 0.5, eps = (1 - 0.6 * 0.5) / 0.8 = 0.875,
    g = 0.96 * 0.5 + 0.28 * 0.875 = 0.725."""
    _, student = _student()
    g = segment_map(student, SCHEDULE, torch.ones(1, 1, 2, 2), t(2), t(0), COND)
    torch.testing.assert_close(g, torch.full((1, 1, 2, 2), 0.725))


def test_mlcd_loss_by_hand():
    """x_tm = 1, t_m = 2, t_n = 1, t_s = 0.
    Teacher (x0 = 0) CFG-DDIM 2 -> 1: x_tn = 0.6 * (1 - 0) / 0.8 = 0.75.
    Student side g(x_tm, 2) = 0.725 (test above). Target side at x_tn = 0.75, t = 1: x0 = 0.375,
    eps = (0.75 - 0.8 * 0.375) / 0.6 = 0.75, g = 0.96 * 0.375 + 0.28 * 0.75 = 0.57.
    L = (0.725 - 0.57)^2 = 0.024025; dL/dscale only through the student side:
    dg/dscale at x_tm = 0.96 * 1 + 0.28 * (-0.6 / 0.8) = 0.75, so dL/dscale = 2 * 0.155 * 0.75."""
    scale, student = _student()
    calls: list[int] = []
    loss = _mlcd_at_2_1_0(student, calls)
    torch.testing.assert_close(loss, torch.tensor([0.024025]))
    assert calls == [2]  # one CFG call: cond + uncond in one batch
    loss.sum().backward()
    torch.testing.assert_close(scale.grad, torch.tensor(2 * 0.155 * 0.75))


def test_mlcd_loss_with_cached_x_tn_calls_no_teacher():
    _, student = _student()
    calls: list[int] = []
    loss = _mlcd_at_2_1_0(student, calls, x_tn=torch.full((1, 1, 2, 2), 0.75))
    assert calls == []
    torch.testing.assert_close(loss, torch.tensor([0.024025]))


def test_lcd_loss_by_hand():
    """x0 = 1, noise = 0 -> x_tm = 0.6 at t_m = 2. Teacher, p = 1 step to t_n = 1:
    x_tn = 0.6 * 0.6 / 0.8 = 0.45. Student x0 at t_m: 0.3; target x0 at t_n: 0.225.
    L = 0.075^2 = 0.005625."""
    _, student = _student()
    calls: list[int] = []
    x0, noise = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    teacher = Guided(_teacher(calls), 3.0, NULL)
    loss = lcd_loss(student, student, teacher, SCHEDULE, x0, noise, t(2), t(1), COND, 1, l2)
    torch.testing.assert_close(loss, torch.tensor([0.005625]))
    assert calls == [2]


def test_distances_by_hand():
    """d = 0.3 everywhere: l2 = 0.09; pseudo-Huber(c = 0.4) = sqrt(0.09 + 0.16) - 0.4 = 0.1."""
    a, b = torch.full((2, 1, 2, 2), 0.3), torch.zeros(2, 1, 2, 2)
    torch.testing.assert_close(l2(a, b), torch.full((2,), 0.09))
    torch.testing.assert_close(pseudo_huber(a, b, c=0.4), torch.full((2,), 0.1))


def test_elementwise_huber_by_hand():
    """LCM's huber: per element sqrt(d^2 + c^2) - c, then the sample's mean. d = (0.3, -0.4, 0, 1.2)
    with c = 0.4: (0.1, sqrt(0.32) - 0.4, 0, sqrt(1.6) - 0.4) -> mean 0.2827; NOT the per-sample
    form sqrt(mean d^2 + c^2) - c = 0.3632 (a mean inside the root gives another number)."""
    d = torch.tensor([0.3, -0.4, 0.0, 1.2]).view(1, 1, 2, 2)
    want = (0.1 + (0.32**0.5 - 0.4) + 0.0 + (1.6**0.5 - 0.4)) / 4
    torch.testing.assert_close(elementwise_huber(d, torch.zeros_like(d), c=0.4), torch.tensor([want]))
    assert abs(float(pseudo_huber(d, torch.zeros_like(d), c=0.4)) - want) > 0.05
    assert get_distance("elementwise_huber") is elementwise_huber


@pytest.mark.parametrize("distance", [l2, pseudo_huber])
def test_losses_are_zero_when_student_equals_teacher_trajectory(distance):
    """A student that predicts x0 = 0 like the teacher is self-consistent: both losses vanish."""
    calls: list[int] = []
    teacher = _teacher(calls)
    x = torch.randn(3, 4, 2, 2)
    ts = torch.tensor([2, 2, 1])
    states = TrajectoryStates(x, ts, ts - 1, torch.zeros(3, dtype=torch.long))
    loss = mlcd_loss(
        teacher, teacher, Guided(teacher, 2.0, NULL), SCHEDULE, states, COND.expand_to(3), distance
    )
    torch.testing.assert_close(loss, torch.zeros(3), atol=1e-6, rtol=0)


def test_mlcd_skip_is_bounded_by_the_losss_own_segments():
    """k <= T / M with M the loss's ``segments`` when set (the student grid's M otherwise): on
    T = 1000 with a grid of M = 8, segments 4 allows k up to 250 (the grid's M would stop at
    125) and refuses 251; without segments, 126 is refused (T / 8 = 125)."""
    from tlcm.diffusion.milestones import StudentGrid
    from tlcm.losses.mlcd import MLCDConfig

    grid = StudentGrid(num_milestones=8)
    MLCDConfig(segments=4, skip=250).validate(1000, grid)
    with pytest.raises(ValueError, match=r"skip must be in 1\.\.250 \(T/M\), got 251"):
        MLCDConfig(segments=4, skip=251).validate(1000, grid)
    with pytest.raises(ValueError, match=r"skip must be in 1\.\.125 \(T/M\), got 126"):
        MLCDConfig(skip=126).validate(1000, grid)
