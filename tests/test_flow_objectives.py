"""The FLOW forms of the distillation objectives (MLCD, LCD, DMD, the shared one-step prediction),
pinned by hand on a small rectified-flow schedule, as tests/test_objectives.py pins the VP forms.

Conventions. ``FlowSchedule(T = 12, shift)``: x_t = (1 - sigma) x0 + sigma eps with sigma = t / T,
float timesteps in [0, T] (t = 0 clean, t = T pure noise); every network outputs the velocity
v = eps - x0, so x0_hat = x_t - sigma_t v and one deterministic (DDIM = Euler) step t -> s is
x_s = x_t + (sigma_s - sigma_t) v. Everything below is recomputed from these formulas
(``_sig``, ``_euler``, ``_hand_milestones``), never read back from ``Schedule``.

Milestones, M = 4: t_k = T shift(k / M), shift(f) = S f / (1 + (S - 1) f):
    shift 1: [0, 3, 6, 9, 12]          shift 3: [0, 6, 9, 10.8, 12]
so a bug that uses the unshifted k T / M on a shifted schedule, or the VP sampler's t_k - 1
offset (the top step must be T itself, pure noise), changes the timesteps and the values.

Random draws are replayed by hand from the step's seeded generator, in the order the losses make
them (documented per test), so t_m, t_n, the states and the noises are all recomputed here.
float64 latents (autouse fixture); flow timesteps are float32 (sigma in float32: 1e-6 tolerance).
A denoiser reads its prompt from ``cond.prompt_embeds[:, 0, 0]`` (one scalar e per sample), so
classifier-free guidance acts as e_u + w (e_c - e_u) wherever the output is affine in e.
"""

from __future__ import annotations

import pytest
import torch
from objective_helpers import ExactFake, prompt_cond, prompt_scalar
from objective_helpers import context as _context
from torch import nn

from tlcm.data.states import TrajectoryStates
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import StudentGrid, milestones
from tlcm.diffusion.schedule import FlowSchedule
from tlcm.diffusion.solvers import ddim_step, teacher_solve
from tlcm.losses.base import StepContext
from tlcm.losses.distances import l2
from tlcm.losses.dmd import DMD, DMDConfig
from tlcm.losses.lcd import LCD, LCDConfig
from tlcm.losses.mlcd import MLCD, MLCDConfig, mlcd_loss
from tlcm.losses.shared import student_prediction

T = 12
M = 4
LATENT = (1, 2, 2)


pytestmark = pytest.mark.usefixtures("float64")  # by-hand maths in float64 (conftest.py)


# --------------------------------------------------------------------------------------------
# By-hand flow maths.


def _shift(f, shift):
    """SD3's static shift, by hand: S f / (1 + (S - 1) f)."""
    f = torch.as_tensor(f, dtype=torch.float64)
    return shift * f / (1 + (shift - 1) * f)


def _hand_milestones(shift, num=M):
    """[T shift(k / M) for k = 0..M] in float64: shift 1 [0, 3, 6, 9, 12], shift 3 [0, 6, 9, 10.8, 12]."""
    return T * _shift(torch.arange(num + 1, dtype=torch.float64) / num, shift)


def _sig(t):
    """sigma_t = t / T, shaped (B, 1, 1, 1) (a scalar t broadcasts)."""
    return (torch.as_tensor(t, dtype=torch.float64) / T).reshape(-1, 1, 1, 1)


def _euler(x, v, t, s):
    """The flow ODE's Euler step t -> s: x + (sigma_s - sigma_t) v."""
    return x + (_sig(s) - _sig(t)) * v


def _x0(x, v, t):
    """x0_hat = x_t - sigma_t v."""
    return x - _sig(t) * v


def _close(actual, expected):
    """By hand vs the library: flow sigmas are float32 (t.float() / T), 1e-7 relative."""
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=1e-6)


def _close_t(actual, expected):
    """Float32 flow timesteps (ulp of 12 is 1e-6) against float64 by-hand ones."""
    torch.testing.assert_close(
        actual.double(), torch.as_tensor(expected, dtype=torch.float64), atol=1e-5, rtol=0
    )


# --------------------------------------------------------------------------------------------
# Toy networks and the one place that builds a StepContext.


def _ctx(student, teacher, schedule, **fields) -> StepContext:
    """test_objectives' one StepContext builder, on a flow ``schedule``."""
    return _context(student, teacher, schedule=schedule, **fields)


def _teacher_v(x, t, e):
    """Curved flow teacher, v = 0.8 tanh(2 x) + 0.04 t + e: nonlinear in x (the number of Euler
    steps matters), t-dependent (a wrong timestep shows), affine in e (CFG = e_u + w (e_c - e_u))."""
    return 0.8 * torch.tanh(2 * x) + 0.04 * torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1, 1, 1) + e


def _curved_teacher(calls: list | None = None):
    """``_teacher_v`` as a denoiser; records (x, t, e) of each call."""

    def teacher(x, t, cond):
        if calls is not None:
            calls.append((x.detach().clone(), t.clone(), cond.prompt_embeds[:, 0, 0].clone()))
        return _teacher_v(x, t, prompt_scalar(cond, x))

    return teacher


class Affine(nn.Module):
    """Velocity v = c + b x + k t, ``c`` a trainable latent-shaped offset. Records (x, t, grad on)."""

    def __init__(self, c: torch.Tensor, b: float, k: float) -> None:
        super().__init__()
        self.c = nn.Parameter(c.clone())
        self.b, self.k = b, k
        self.calls: list[tuple[torch.Tensor, torch.Tensor, bool]] = []

    def forward(self, x, t, cond=None):
        self.calls.append((x.detach().clone(), t.clone(), torch.is_grad_enabled()))
        return self.c + self.b * x + self.k * t.to(x.dtype).view(-1, 1, 1, 1)

    def hand(self, x, t):
        return (
            self.c.detach()
            + self.b * x
            + self.k * torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1, 1, 1)
        )


# ============================================================================================
# 1. Flow schedule maths by hand.


def test_flow_schedule_maths_by_hand():
    """x_t = (1 - t/T) x0 + (t/T) eps; for v = eps - x0: x0 = x_t - sigma v, eps = x_t + (1 - sigma) v,
    and the perfect model's output is eps - x0 (at any t). The deterministic DDIM step is the Euler
    step x_t + (sigma_s - sigma_t) v (a_s x0 + s_s (x_t - a_t x0) / s_t with a = 1 - s simplifies
    to it), exact on a straight path (v = eps - x0 from x_t lands on add_noise(x0, eps, s)), and a
    step to s = 0 returns x0_hat. ``timestep_at`` / ``milestones`` are T shift(k / M); the
    student's grid is the milestones at the inference indices with NO offset (top = T): M = 4,
    q = 2 -> k = [4, 2], q = 3 -> [4, 3, 1]; M = q = 1 -> [T]."""
    schedule = FlowSchedule(num_train_timesteps=T, shift=3.0)
    g = torch.Generator().manual_seed(0)
    x0, eps, v = (torch.randn(3, *LATENT, generator=g) for _ in range(3))
    t, s = torch.tensor([12.0, 7.5, 1.2]), torch.tensor([9.0, 0.0, 0.3])

    _close(schedule.add_noise(x0, eps, t), (1 - _sig(t)) * x0 + _sig(t) * eps)
    x_t = torch.randn(3, *LATENT, generator=g)
    _close(schedule.to_x0(v, x_t, t), x_t - _sig(t) * v)
    _close(schedule.to_eps(v, x_t, t), x_t + (1 - _sig(t)) * v)
    _close(schedule.model_output_from(x0, eps, t), eps - x0)
    on_path = schedule.add_noise(x0, eps, t)
    _close(schedule.to_x0(eps - x0, on_path, t), x0)
    _close(schedule.to_eps(eps - x0, on_path, t), eps)

    x0_hat = schedule.to_x0(v, x_t, t)
    _close(ddim_step(schedule, x_t, x0_hat, t, s), _euler(x_t, v, t, s))
    _close(ddim_step(schedule, on_path, x0, t, s), (1 - _sig(s)) * x0 + _sig(s) * eps)
    _close(ddim_step(schedule, x_t, x0_hat, t, torch.zeros(3)), x0_hat)

    for shift, table in [(1.0, [0, 3, 6, 9, 12]), (3.0, [0, 6, 9, 10.8, 12])]:
        flow = FlowSchedule(T, shift)
        _close_t(milestones(M, flow), table)
        _close_t(milestones(M, flow), _hand_milestones(shift))
        assert milestones(M, flow).dtype == torch.float32
        _close_t(StudentGrid(M, 2).timesteps(None, flow), [table[4], table[2]])
        _close_t(StudentGrid(M, 3).timesteps(None, flow), [table[4], table[3], table[1]])
        _close_t(StudentGrid(1, 1).timesteps(None, flow), [12.0])


def test_flow_teacher_solve_is_p_euler_steps_on_float_substeps():
    """teacher_solve t -> s in p = 3 CFG sub-steps on tau_j = t + (s - t) j / 3, NOT rounded (flow
    timesteps are real): t = 10.8, s = 4.8 -> [10.8, 8.8, 6.8, 4.8], each an Euler step with the
    guided v = v_u + w (v_c - v_u), i.e. e_eff = e_u + w (e_c - e_u) = -0.1 + 3 * 0.5 = 1.4. One
    teacher call per sub-step (batch 2B, cond half first)."""
    schedule, calls = FlowSchedule(T, 3.0), []
    x = torch.randn(2, *LATENT, generator=torch.Generator().manual_seed(3))
    t, s = torch.full((2,), 10.8), torch.full((2,), 4.8)
    out = teacher_solve(
        Guided(_curved_teacher(calls), 3.0, prompt_cond([-0.1])),
        schedule,
        x,
        t,
        s,
        prompt_cond([0.4, 0.4]),
        3,
    )
    taus = [10.8, 8.8, 6.8, 4.8]
    assert len(calls) == 3
    for (_, tau, e), want in zip(calls, taus[:-1], strict=True):
        _close_t(tau, [want] * 4)
        torch.testing.assert_close(e, torch.tensor([0.4, 0.4, -0.1, -0.1]))
    hand = x
    for tau, nxt in zip(taus[:-1], taus[1:], strict=True):
        hand = _euler(hand, _teacher_v(hand, tau, 1.4), tau, nxt)
    _close(out, hand)


# ============================================================================================
# 2. MLCD (stage 1), flow.


MLCD_E_C, MLCD_E_U, MLCD_W = 0.4, -0.1, 3.0
MLCD_E = MLCD_E_U + MLCD_W * (MLCD_E_C - MLCD_E_U)
"""-0.1 + 3 * 0.5 = 1.4 (halves swapped: 0.4 + 3 * (-0.5) = -1.1)."""
MLCD_SKIP, MLCD_BATCH = 2, 8


def _mlcd_draws(seed, batch, shift):
    """Replay of MLCD's draws (states = "single_jump"): sample_segment_timesteps draws segment s ~
    randint(0, M) then u ~ U[0, 1) (float64); then the state's noise ~ N(0, 1) (B, 1, 2, 2).
    By hand: lo = t_s, hi = min(t_{s+1}, T), t_m = hi - u (hi - lo) in (t_s, t_{s+1}] (continuous,
    no flooring), t_n = max(t_m - k, t_s)."""
    g = torch.Generator().manual_seed(seed)
    seg = torch.randint(0, M, (batch,), generator=g)
    u = torch.rand(batch, generator=g, dtype=torch.float64)
    noise = torch.randn(batch, *LATENT, generator=g)
    table = _hand_milestones(shift)
    lo, hi = table[seg], table[seg + 1].clamp(max=T)
    t_m = hi - u * (hi - lo)
    return seg, t_m, torch.maximum(t_m - MLCD_SKIP, lo), lo, noise


@pytest.mark.parametrize("shift, seed", [(1.0, 18), (3.0, 0)])
def test_mlcd_flow_component_by_hand(shift, seed):
    """MLCD on FlowSchedule(12, shift), M = 4, skip k = 2, states "single_jump", w = 3.
    Segments / t_m / t_n replayed (``_mlcd_draws``) on the SHIFTED milestones. Then, by hand:
      x_tm  = noise + (sigma_m - 1) V(noise, T)              (one teacher CFG Euler step T -> t_m)
      x_tn  = x_tm + (sigma_n - sigma_m) V(x_tm, t_m)        (one teacher CFG Euler step t_m -> t_n)
      goal  = x_tn + (sigma_s - sigma_n) f(x_tn, t_n)        (target = stop-grad student, jump to t_s;
                                                              at t_s = 0 this is its x0_hat)
      pred  = x_tm + (sigma_s - sigma_m) f(x_tm, t_m)
      L     = mean_b mean (pred - goal)^2,
      dL/dc = sum_b 2 (sigma_s - sigma_m)(pred - goal) / (B D)   (no gradient through the goal).
    V = teacher v at e_eff = 1.4. The seeds cover: a segment-0 sample (t_s = 0: the goal is clean),
    an unclamped t_n = t_m - 2 above segment 0, and a clamped t_n = t_s > 0; no sample has
    t_n = t_s = 0 (that case: test_mlcd_flow_goal_at_the_clean_edge_is_the_clean_state)."""
    schedule = FlowSchedule(num_train_timesteps=T, shift=shift)
    student, teacher_calls = Affine(torch.zeros(LATENT), b=0.5, k=0.02), []
    ctx = _ctx(
        student,
        _curved_teacher(teacher_calls),
        schedule,
        cond=[MLCD_E_C] * MLCD_BATCH,
        uncond=[MLCD_E_U],
        w=MLCD_W,
        seed=seed,
        grid=(M, 1),
    )
    value = MLCD(MLCDConfig(skip=MLCD_SKIP, states="single_jump"), student)(ctx)["mlcd"]

    seg, t_m, t_n, t_s, noise = _mlcd_draws(seed, MLCD_BATCH, shift)
    assert ((seg == 0) & (t_n > 0)).any() and not ((seg == 0) & (t_n == 0)).any()
    assert ((seg > 0) & (t_n > t_s)).any() and ((seg > 0) & (t_n == t_s)).any()

    (x_tn_rec, t_n_rec, grad_tn), (x_tm_rec, t_m_rec, grad_tm) = student.calls
    assert not grad_tn and grad_tm
    assert t_m_rec.dtype == torch.float32 and t_n_rec.dtype == torch.float32
    _close_t(t_m_rec, t_m)
    _close_t(t_n_rec, t_n)
    assert (t_m_rec != t_m_rec.round()).any()  # continuous timesteps, not integers

    (x_first, t_first, e_first), (x_second, t_second, _) = teacher_calls
    assert x_first.shape[0] == 2 * MLCD_BATCH  # one CFG call each: cond half, then uncond half
    torch.testing.assert_close(e_first, torch.tensor([MLCD_E_C] * MLCD_BATCH + [MLCD_E_U] * MLCD_BATCH))
    _close_t(t_first, [float(T)] * 2 * MLCD_BATCH)  # the jump starts at T (pure noise), not T - 1
    torch.testing.assert_close(x_first[:MLCD_BATCH], noise)
    _close_t(t_second[:MLCD_BATCH], t_m)

    x_tm = _euler(noise, _teacher_v(noise, T, MLCD_E), T, t_m)
    _close(x_tm_rec, x_tm)
    _close(x_second[:MLCD_BATCH], x_tm)
    x_tn = _euler(x_tm, _teacher_v(x_tm, t_m, MLCD_E), t_m, t_n)
    _close(x_tn_rec, x_tn)
    goal = _euler(x_tn, student.hand(x_tn, t_n), t_n, t_s)
    clean = seg == 0
    _close(goal[clean], _x0(x_tn, student.hand(x_tn, t_n), t_n)[clean])
    pred = _euler(x_tm, student.hand(x_tm, t_m), t_m, t_s)
    _close(value, (pred - goal).square().mean())

    value.backward()
    d = pred[0].numel()
    _close(student.c.grad, (2 * (_sig(t_s) - _sig(t_m)) * (pred - goal)).sum(0) / (MLCD_BATCH * d))


def test_mlcd_flow_goal_at_the_clean_edge_is_the_clean_state():
    """Segment 0 of a flow schedule has t_s = 0 = clean data. With t_m = 1.5 <= k = 2, t_n =
    max(t_m - k, 0) = 0: x_tn = x_tm - sigma_m V(x_tm, t_m) is already clean, and the target's
    jump 0 -> 0 must be the identity (x0_hat at t = 0 is x_tn itself), so
    L = mean (x_tm + (0 - sigma_m) f(x_tm, t_m) - x_tn)^2, finite."""
    schedule = FlowSchedule(T, 3.0)
    student = Affine(torch.zeros(LATENT), b=0.5, k=0.02)
    x_tm = torch.randn(2, *LATENT, generator=torch.Generator().manual_seed(9))
    t_m, zero = torch.full((2,), 1.5), torch.zeros(2)
    teacher = Guided(_curved_teacher(), MLCD_W, prompt_cond([MLCD_E_U]))
    states = TrajectoryStates(x_tm, t_m, zero, zero)
    value = mlcd_loss(student, student, teacher, schedule, states, prompt_cond([MLCD_E_C] * 2), l2)
    x_tn = _euler(x_tm, _teacher_v(x_tm, 1.5, MLCD_E), 1.5, 0.0)
    pred = _euler(x_tm, student.hand(x_tm, 1.5), 1.5, 0.0)
    _close(value, (pred - x_tn).square().flatten(1).mean(1))


# ============================================================================================
# 3. LCD (stage 2), flow.


LCD_E_C, LCD_E_U, LCD_W = 0.3, -0.2, 2.5
LCD_E = LCD_E_U + LCD_W * (LCD_E_C - LCD_E_U)
"""-0.2 + 2.5 * 0.5 = 1.05."""
LCD_BATCH, LCD_P = 6, 3
LCD_SAMPLE_K = [4, 2]
"""The q = 2 inference milestone indices for M = 4 (trailing: k_i = M - floor(i M / n + 1/2))."""


def _lcd_by_hand(student, shift, seed):
    """Replay of LCD's draws and its states, by hand. Draw order: the student's q-step sample
    (student_samples: noise ~ N(0, 1), then one fresh N(0, 1) per step but the last), then
    t_m's milestone index ~ randint(M), then the re-noising eps ~ N(0, 1).
    q = 2 sample on the grid [t_4, t_2] (shift 1: [12, 6], shift 3: [12, 9]; no -1 offset):
      x0_a = noise - 1 * f(noise, 12);  x = (1 - sigma_2') x0_a + sigma_2' fresh  (gamma = 1, LCM);
      x0_q = x - sigma_2' f(x, t_2)  (the last step returns x0_hat).
    t_m = milestones[1:][index] (the top one is T itself: pure noise, sigma = 1);
    x_tm = (1 - sigma_m) x0_q + sigma_m eps."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(LCD_BATCH, *LATENT, generator=g)
    fresh = torch.randn(LCD_BATCH, *LATENT, generator=g)
    index = torch.randint(M, (LCD_BATCH,), generator=g)
    eps = torch.randn(LCD_BATCH, *LATENT, generator=g)
    table = _hand_milestones(shift)
    top, low = table[LCD_SAMPLE_K[0]], table[LCD_SAMPLE_K[1]]
    x0_a = _x0(noise, student.hand(noise, top), top)
    x = (1 - _sig(low)) * x0_a + _sig(low) * fresh
    x0_q = _x0(x, student.hand(x, low), low)
    t_m = table[1:][index]
    x_tm = (1 - _sig(t_m)) * x0_q + _sig(t_m) * eps
    return dict(noise=noise, x_low=x, x0_q=x0_q, index=index, t_m=t_m, x_tm=x_tm, grid=[top, low])


def _run_lcd(shift, seed):
    schedule = FlowSchedule(num_train_timesteps=T, shift=shift)
    student, teacher_calls = Affine(torch.zeros(LATENT), b=0.5, k=0.02), []
    ctx = _ctx(
        student,
        _curved_teacher(teacher_calls),
        schedule,
        cond=[LCD_E_C] * LCD_BATCH,
        uncond=[LCD_E_U],
        w=LCD_W,
        seed=seed,
        grid=(M, 2),
    )
    value = LCD(LCDConfig(teacher_substeps=LCD_P))(ctx)["lcd"]
    return student, teacher_calls, value


@pytest.mark.parametrize("shift, seed", [(1.0, 1), (3.0, 1)])
def test_lcd_flow_component_states_timesteps_and_value_by_hand(shift, seed):
    """LCD on FlowSchedule(12, shift), M = 4, q = 2, p = 3, w = 2.5 (``_lcd_by_hand`` for the states).
    The student's sample calls run at the flow grid [T shift(1), T shift(1/2)] (no -1 offset) without
    gradients; t_m are the SHIFTED milestones {t_1..t_4} (t_4 = T, not clamped to T - 1);
    the teacher solves t_m -> t_n in 3 Euler sub-steps at tau_j = t_m + (t_n - t_m) j / 3 (CFG,
    e_eff = 1.05); the target (stop-grad student) predicts x0 at (x_tn, t_n) without gradients:
        goal = x_tn - sigma_n f(x_tn, t_n),   pred = x_tm - sigma_m f(x_tm, t_m),
        L = mean_b mean (pred - goal)^2,      dL/dc = sum_b -2 sigma_m (pred - goal) / (B D).
    t_n: shift 1 (uniform milestones), t_n = t_m - T/M = the previous milestone t_{k-1}, asserted;
    shift 3: only 0 <= t_n < t_m is asserted here (the previous-milestone rule:
    test_lcd_flow_shifted_t_n_is_the_previous_milestone), the by-hand chain then uses the t_n the
    loss chose."""
    student, teacher_calls, value = _run_lcd(shift, seed)
    hand = _lcd_by_hand(student, shift, seed)
    indices = set(hand["index"].tolist())
    assert {0, 3} <= indices and len(indices) >= 3  # t_m = t_1 (t_n = 0), t_m = T (pure noise), one more

    sample_calls, (target_call, pred_call) = student.calls[:2], student.calls[2:]
    for (x, t, grad), want, x_want in zip(
        sample_calls, hand["grid"], [hand["noise"], hand["x_low"]], strict=True
    ):
        assert not grad
        _close_t(t, [float(want)] * LCD_BATCH)
        _close(x, x_want)
    assert not target_call[2] and pred_call[2]
    (x_tn_rec, t_n, _), (x_tm_rec, t_m_rec, _) = target_call, pred_call
    _close_t(t_m_rec, hand["t_m"])
    _close(x_tm_rec, hand["x_tm"])
    t_m = hand["t_m"]
    if shift == 1.0:
        _close_t(t_n, _hand_milestones(shift)[hand["index"]])
    assert (t_n >= 0).all() and (t_n.double() < t_m).all()
    t_n = t_n.double()

    assert len(teacher_calls) == LCD_P
    x = hand["x_tm"]
    for j, (x_rec, tau_rec, e_rec) in enumerate(teacher_calls):
        tau = t_m + (t_n - t_m) * j / LCD_P
        nxt = t_m + (t_n - t_m) * (j + 1) / LCD_P
        _close_t(tau_rec[:LCD_BATCH], tau)
        torch.testing.assert_close(e_rec, torch.tensor([LCD_E_C] * LCD_BATCH + [LCD_E_U] * LCD_BATCH))
        _close(x_rec[:LCD_BATCH], x)
        x = _euler(x, _teacher_v(x, tau, LCD_E), tau, nxt)
    _close(x_tn_rec, x)
    goal = _x0(x, student.hand(x, t_n), t_n)
    pred = _x0(hand["x_tm"], student.hand(hand["x_tm"], t_m), t_m)
    _close(value, (pred - goal).square().mean())
    value.backward()
    d = pred[0].numel()
    _close(student.c.grad, (-2 * _sig(t_m) * (pred - goal)).sum(0) / (LCD_BATCH * d))


def test_lcd_flow_shifted_t_n_is_the_previous_milestone():
    """On shifted milestones [0, 6, 9, 10.8, 12] the stage-2 pairs at the sparse milestones are
    (t_k, t_{k-1}): (6, 0), (9, 6), (10.8, 9), (12, 10.8). Today the loss uses t_m - (t_1 - t_0) =
    t_m - 6: (6, 0), (9, 3), (10.8, 4.8), (12, 6), i.e. targets off the student's grid."""
    student, _, _ = _run_lcd(3.0, 1)
    hand = _lcd_by_hand(student, 3.0, 1)
    _close_t(student.calls[2][1], _hand_milestones(3.0)[hand["index"]])


def test_lcd_flow_full_range_t_n_is_one_segment_of_its_own_down():
    """LCD(full_range=True) on the shifted milestones [0, 6, 9, 10.8, 12] (widths 6, 3, 1.8, 1.2):
    t_m is real in [t_1, T] = [6, 12]; with t_m in segment (t_{k-1}, t_k], t_n = t_m - (t_k -
    t_{k-1}), the width of t_m's OWN segment (not of the one below, nor the first), by hand from
    the recorded t_m."""
    schedule = FlowSchedule(num_train_timesteps=T, shift=3.0)
    student = Affine(torch.zeros(LATENT), b=0.5, k=0.02)
    batch = 32
    ctx = _ctx(
        student,
        _curved_teacher(),
        schedule,
        cond=[LCD_E_C] * batch,
        uncond=[LCD_E_U],
        w=LCD_W,
        seed=2,
        grid=(M, 2),
    )
    LCD(LCDConfig(teacher_substeps=1, full_range=True))(ctx)
    (_, t_n, _), (_, t_m, _) = student.calls[2:]
    table = _hand_milestones(3.0)
    t_m = t_m.double()
    assert ((t_m >= 6) & (t_m <= T)).all() and (t_m != t_m.round()).any()
    k = torch.searchsorted(table, t_m, right=False)  # t_m in (t_{k-1}, t_k]
    assert {2, 3, 4} <= set(k.tolist())  # each segment above the first, of widths 3, 1.8, 1.2
    _close_t(t_n, t_m - (table[k] - table[k - 1]))


# ============================================================================================
# 4. DMD, flow.


MU_C, MU_U, W_REAL, SD_R = 0.75, 0.25, 2.0, 1.0
MU_R = MU_U + W_REAL * (MU_C - MU_U)
"""Real distribution N(MU_R = 1.25, SD_R^2) (the teacher's CFG at the config's w = 2, not the
context's 5)."""
DMD_BATCH, DMD_LATENT, T_MIN, T_MAX = 8, (1, 4, 4), 1, 11


def _pm(x, t, mean, var):
    """Flow posterior mean E[x0 | x_t] for x0 ~ N(mean, var), x_t = a x0 + s eps, a = 1 - s:
    mean + a var (x_t - a mean) / (a^2 var + s^2)."""
    s = _sig(t)
    a = 1 - s
    return mean + a * var * (x - a * mean) / (a**2 * var + s**2)


def _pm_velocity(x, t, mean, var):
    """The exact flow model's output for that Gaussian: E[v | x_t] = E[eps | x_t] - E[x0 | x_t]
    = (x_t - a x0_hat) / s - x0_hat = (x_t - x0_hat) / s. Affine in ``mean`` at fixed x_t."""
    return (x - _pm(x, t, mean, var)) / _sig(t)


class FlowGaussianStudent(nn.Module):
    """v = x - (mu + sd x): at t = T (sigma = 1) x0_hat = x - v = mu + sd z for z the noise."""

    def __init__(self, mu: float, sd: float) -> None:
        super().__init__()
        self.mu, self.sd = nn.Parameter(torch.tensor(mu)), nn.Parameter(torch.tensor(sd))
        self.inputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, t, cond):
        self.inputs.append((x.detach().clone(), t.clone()))
        return x - (self.mu + self.sd * x)


class FlowExactFake(ExactFake):
    """The ideal fake score: the velocity of the CURRENT student's N(mu, sd^2). Records (x_t', t')."""

    def output(self, x, t, mean, var):
        return _pm_velocity(x, t, mean, var)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_dmd_flow_student_gradient_by_hand(shift):
    """DMD on FlowSchedule(12, shift), M = q = 1: the student's one-step prediction is made at
    t = T (the flow grid's top, sigma = 1, pure noise z): x0 = mu + sd z. Draws (replayed): k ~
    randint(1), z ~ N(0, 1), then t' = t_min + u (t_max - t_min) with u ~ U[0, 1) (continuous:
    flow timesteps are not rounded), then eps ~ N(0, 1); x_t' = (1 - sigma') x0 + sigma' eps.
    Real x0 = pm(x_t'; MU_R, 1) (teacher velocities, CFG at w = 2 in one call of batch 2B), fake
    x0 = pm(x_t'; mu, sd^2), g = (fake - real) / mean_{c,h,w} |x0 - real|;
    L = mean_b 1/2 mean_i g^2, dL/dmu = mean g, dL/dsd = mean g z."""
    schedule = FlowSchedule(num_train_timesteps=T, shift=shift)
    student, calls = FlowGaussianStudent(-0.5, 1.5), []
    fake = FlowExactFake(student)

    def teacher(x, t, cond):
        calls.append((x.clone(), t.clone(), cond.prompt_embeds[:, 0, 0].clone()))
        return _pm_velocity(x, t, prompt_scalar(cond, x), SD_R**2)

    ctx = _ctx(
        student,
        teacher,
        schedule,
        cond=[MU_C] * DMD_BATCH,
        uncond=[MU_U],
        w=5.0,
        seed=7,
        grid=(1, 1),
        latent_shape=DMD_LATENT,
    )
    value = DMD(DMDConfig(t_min=T_MIN, t_max=T_MAX, real_guidance_scale=W_REAL), fake)(ctx)["dmd"]
    value.backward()

    g = torch.Generator().manual_seed(7)
    torch.randint(1, (DMD_BATCH,), generator=g)
    z = torch.randn(DMD_BATCH, *DMD_LATENT, generator=g)
    t = T_MIN + torch.rand(DMD_BATCH, generator=g) * (T_MAX - T_MIN)
    eps = torch.randn(DMD_BATCH, *DMD_LATENT, generator=g)

    ((z_rec, t_student),) = student.inputs
    _close_t(t_student, [float(T)] * DMD_BATCH)
    torch.testing.assert_close(z_rec, z)
    (x_rec, t_rec, e), ((fake_x, fake_t),) = calls[0], fake.calls
    assert len(calls) == 1 and x_rec.shape[0] == 2 * DMD_BATCH
    torch.testing.assert_close(e, torch.tensor([MU_C] * DMD_BATCH + [MU_U] * DMD_BATCH))
    _close_t(t_rec[:DMD_BATCH], t)
    assert (t_rec != t_rec.round()).any() and (t_rec >= T_MIN).all() and (t_rec < T_MAX).all()
    x0 = -0.5 + 1.5 * z
    x_t = (1 - _sig(t)) * x0 + _sig(t) * eps
    _close(x_rec[:DMD_BATCH], x_t)
    torch.testing.assert_close(fake_x, x_rec[:DMD_BATCH])
    torch.testing.assert_close(fake_t, t_rec[:DMD_BATCH])

    real = _pm(x_t, t, MU_R, SD_R**2)
    grad = (_pm(x_t, t, -0.5, 1.5**2) - real) / (x0 - real).abs().mean((1, 2, 3), keepdim=True)
    _close(value, 0.5 * grad.square().mean())
    _close(student.mu.grad, grad.mean())
    _close(student.sd.grad, (grad * z).mean())


# ============================================================================================
# 5. The student's shared one-step prediction, flow.


PRED_BATCH, PRED_K = 6, [4, 3, 1]
"""q = 3 on M = 4: inference milestone indices [4, 3, 1] (trailing)."""


@pytest.mark.parametrize("shift, seed", [(1.0, 0), (3.0, 0)])
def test_student_prediction_flow_grid_and_states_by_hand(shift, seed):
    """shared.student_prediction on FlowSchedule(12, shift), M = 4, q = 3. Its grid is
    [T shift(k / 4) for k in (4, 3, 1)] = shift 1: [12, 9, 3], shift 3: [12, 10.8, 6] (not k T/M - 1:
    [11, 8, 2]). Draws (replayed): k ~ randint(3), noise ~ N(0, 1), then the 3-step student sample
    (its own noise, one fresh noise per step but the last, gamma = 1). t = grid[k];
    x_t = noise where k = 0 (t = T: pure noise), else (1 - sigma_t) x0_q + sigma_t noise;
    x0 = x_t - sigma_t f(x_t, t) with gradients (dx0/dc = -sigma_t)."""
    schedule = FlowSchedule(num_train_timesteps=T, shift=shift)
    student = Affine(torch.full(LATENT, 0.1), b=0.5, k=0.02)
    ctx = _ctx(student, None, schedule, cond=[0.0] * PRED_BATCH, uncond=[0.0], w=1.0, seed=seed, grid=(M, 3))
    pred = student_prediction(ctx)

    grid = _hand_milestones(shift)[PRED_K]
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(3, (PRED_BATCH,), generator=g)
    noise = torch.randn(PRED_BATCH, *LATENT, generator=g)
    x = torch.randn(PRED_BATCH, *LATENT, generator=g)
    for i, t_i in enumerate(grid.tolist()):
        x0_q = _x0(x, student.hand(x, t_i), t_i)
        if i < len(grid) - 1:
            s_i = grid[i + 1]
            x = (1 - _sig(s_i)) * x0_q + _sig(s_i) * torch.randn(PRED_BATCH, *LATENT, generator=g)
    assert set(k.tolist()) == {0, 1, 2}  # every grid timestep, pure noise at k = 0
    t = grid[k]
    x_t = torch.where((k == 0).view(-1, 1, 1, 1), noise, (1 - _sig(t)) * x0_q + _sig(t) * noise)

    _close_t(pred.t, t)
    _close(pred.x_t, x_t)
    _close(pred.x0, _x0(x_t, student.hand(x_t, t), t))
    pred.x0.sum().backward()
    _close(student.c.grad, (-_sig(t)).sum().expand(LATENT))


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_backward_simulation_chain_flow_by_hand(shift):
    """DMD2's backward simulation ("chain") on FlowSchedule(12, shift), M = 4, q = 3: grid as
    above (shift 1: [12, 9, 3], shift 3: [12, 10.8, 6]). Draws (replayed): k ~ randint(3) once for
    the micro-batch, noise z, the fresh noises n_1, n_2 up front. The student's own sampler (gamma
    = 1) runs k moves from z, each converting ITS velocity at the time it was evaluated:
    x0_i = x_i - sigma(t_i) v(x_i, t_i), x_{i+1} = (1 - sigma(t_{i+1})) x0_i + sigma(t_{i+1}) n_{i+1};
    the prediction is x0 = x_k - sigma(t_k) v(x_k, t_k) at t = grid[k]. (The VP chain tests use
    x0-predicting networks, where a conversion at the wrong time cannot show.)"""
    schedule = FlowSchedule(num_train_timesteps=T, shift=shift)
    grid, batch, seen = _hand_milestones(shift)[PRED_K], 4, set()
    for seed in range(8):
        student = Affine(torch.full(LATENT, 0.1), b=0.5, k=0.02)
        chain = StudentGrid(M, 3, backward_simulation="chain")
        ctx = _ctx(student, None, schedule, cond=[0.0] * batch, uncond=[0.0], w=1.0, seed=seed, grid=chain)
        pred = student_prediction(ctx)
        g = torch.Generator().manual_seed(seed)
        k = int(torch.randint(3, (1,), generator=g))
        x = torch.randn(batch, *LATENT, generator=g)
        fresh = [torch.randn(batch, *LATENT, generator=g) for _ in range(2)]
        for i in range(k):
            x0 = _x0(x, student.hand(x, grid[i]), grid[i])
            x = (1 - _sig(grid[i + 1])) * x0 + _sig(grid[i + 1]) * fresh[i]
        _close_t(pred.t, grid[k].expand(batch))
        _close(pred.x_t, x)
        _close(pred.x0, _x0(x, student.hand(x, grid[k]), grid[k]))
        seen.add(k)
    assert seen == {0, 1, 2}
