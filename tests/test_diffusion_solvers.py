"""Solvers: DDIM/Euler against diffusers, CFG batching, teacher sub-steps, MDS, the TLCM step."""

from itertools import pairwise

import pytest
import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

from tlcm.conditioning import Conditioning
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.schedule import FlowSchedule, VPSchedule
from tlcm.diffusion.solvers import ddim_step, mds_trajectory, teacher_solve, tlcm_step

SD_CONFIG = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


class ToyDenoiser:
    """out = 0.5 x + t / 1000 + c, c = mean of the sample's prompt embedding; records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[float]]] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        c = cond.prompt_embeds.mean(dim=(1, 2))
        self.calls.append((x.shape[0], c.tolist()))
        return 0.5 * x + (t.float() / 1000 + c).view(-1, 1, 1, 1)


def sample_ids(n: int) -> Conditioning:
    """Sample i carries the constant embedding i + 1, so the toy denoiser's c names the sample."""
    return Conditioning(prompt_embeds=torch.arange(1.0, n + 1).view(n, 1, 1).expand(n, 3, 2).contiguous())


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize(("t", "s"), [(999, 749), (500, 250), (260, 10), (249, -1)])
def test_ddim_step_matches_diffusers(prediction_type, t, s):
    """DDIMScheduler(eta=0) with 4 steps jumps t -> t - 250; prev < 0 uses alpha = 1 (set_alpha_to_one)."""
    reference = DDIMScheduler(
        **SD_CONFIG, prediction_type=prediction_type, set_alpha_to_one=True, clip_sample=False
    )
    reference.set_timesteps(4)
    schedule = VPSchedule.from_config(reference.config)
    gen = torch.Generator().manual_seed(t)
    x, out = torch.randn(2, 4, 6, 6, generator=gen), torch.randn(2, 4, 6, 6, generator=gen)
    expected = reference.step(out, t, x, eta=0.0).prev_sample
    tt, ss = torch.full((2,), t), torch.full((2,), s)
    torch.testing.assert_close(ddim_step(schedule, x, schedule.to_x0(out, x, tt), tt, ss), expected)


def test_ddim_step_flow_equals_euler():
    """Flow DDIM == FlowMatchEulerDiscreteScheduler's Euler step x + (sigma_next - sigma) v, per step."""
    reference = FlowMatchEulerDiscreteScheduler()
    reference.set_timesteps(sigmas=[1.0, 0.6, 0.3])
    schedule = FlowSchedule()
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    for i, t in enumerate(reference.timesteps):
        v = torch.sin(x) - 0.3 * x
        expected = reference.step(v, t, x).prev_sample
        tt, ss = t.expand(2), (reference.sigmas[i + 1] * 1000).expand(2)
        x = ddim_step(schedule, x, schedule.to_x0(v, x, tt), tt, ss)
        torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)


def test_ddim_step_to_same_timestep_is_identity():
    schedule = VPSchedule.from_config(SD_CONFIG)
    x, x0 = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    t = torch.tensor([1, 500, 999])
    torch.testing.assert_close(ddim_step(schedule, x, x0, t, t), x)
    torch.testing.assert_close(ddim_step(schedule, x, x0, t, torch.full_like(t, -1)), x0)


def test_guided_teacher_one_batched_call():
    """out_u + w (out_c - out_u) with out = 0.5 x + t/1000 + c: c_u = 0 -> 0.5 x + t/1000 + w c_cond."""
    denoiser = ToyDenoiser()
    cond, uncond = sample_ids(3), Conditioning(prompt_embeds=torch.zeros(1, 3, 2))
    x, t = torch.randn(3, 4, 5, 5), torch.tensor([999, 500, 10])
    out = Guided(denoiser, 7.5, uncond)(x, t, cond)
    expected = 0.5 * x + (t / 1000 + 7.5 * torch.tensor([1.0, 2.0, 3.0])).view(3, 1, 1, 1)
    torch.testing.assert_close(out, expected)
    assert denoiser.calls == [(6, [1.0, 2.0, 3.0, 0.0, 0.0, 0.0])]


def test_guided_teacher_w1_skips_unconditional():
    denoiser = ToyDenoiser()
    x, t = torch.randn(3, 4, 5, 5), torch.tensor([999, 500, 10])
    out = Guided(denoiser, 1.0)(x, t, sample_ids(3))
    torch.testing.assert_close(out, 0.5 * x + (t / 1000 + torch.tensor([1.0, 2.0, 3.0])).view(3, 1, 1, 1))
    assert denoiser.calls == [(3, [1.0, 2.0, 3.0])]
    with pytest.raises(ValueError, match="unconditional"):
        Guided(denoiser, 2.0)(x, t, sample_ids(3))
    with pytest.raises(ValueError, match="one unconditional sample"):
        Guided(denoiser, 2.0, Conditioning(prompt_embeds=torch.zeros(3, 3, 2)))


def test_teacher_solve_equals_manual_substeps():
    """p = 3 from 999 -> 874: grid 999, 957.3, 915.7, 874 rounds to [999, 957, 916, 874]; 500 -> 250 to
    [500, 417, 333, 250]; equals three manual guided DDIM steps."""
    schedule = VPSchedule.from_config(SD_CONFIG)
    cond, uncond = sample_ids(2), Conditioning(prompt_embeds=torch.zeros(1, 3, 2))
    x = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    denoiser = ToyDenoiser()
    teacher = Guided(denoiser, 3.0, uncond)
    got = teacher_solve(teacher, schedule, x, torch.tensor([999, 500]), torch.tensor([874, 250]), cond, 3)
    grid = [torch.tensor(g) for g in ([999, 500], [957, 417], [916, 333], [874, 250])]
    expected = x
    for tau, tau_next in pairwise(grid):
        out = Guided(ToyDenoiser(), 3.0, uncond)(expected, tau, cond)
        expected = ddim_step(schedule, expected, schedule.to_x0(out, expected, tau), tau, tau_next)
    torch.testing.assert_close(got, expected)
    assert [batch for batch, _ in denoiser.calls] == [4, 4, 4]


def test_mds_trajectory_per_sample_steps():
    """L = [1, 3, 2] to t_m = [875, 250, 500]: grids [999, 875], [999, 749, 500, 250], [999, 750, 500]
    (749.5 rounds to even). Rounds call the denoiser on samples {0, 1, 2}, {1, 2}, {1}: sum(L) = 6."""
    schedule = VPSchedule.from_config(SD_CONFIG)
    cond = sample_ids(3)
    noise = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    denoiser = ToyDenoiser()
    got = mds_trajectory(
        denoiser, schedule, noise, torch.tensor([875, 250, 500]), torch.tensor([1, 3, 2]), cond
    )
    assert denoiser.calls == [(3, [1.0, 2.0, 3.0]), (2, [2.0, 3.0]), (1, [2.0])]
    for i, grid in enumerate([[999, 875], [999, 749, 500, 250], [999, 750, 500]]):
        x = noise[i : i + 1]
        for t, s in pairwise(grid):
            tt, ss = torch.tensor([t]), torch.tensor([s])
            x = ddim_step(schedule, x, schedule.to_x0(ToyDenoiser()(x, tt, cond[i : i + 1]), x, tt), tt, ss)
        assert torch.equal(got[i : i + 1], x), f"sample {i} moved after its grid ended or took a wrong step"


@pytest.mark.parametrize("schedule", [VPSchedule.from_config(SD_CONFIG), FlowSchedule(shift=3.0)])
def test_mds_trajectory_with_fixed_rounds_is_the_same_trajectory(schedule):
    """``rounds`` (FSDP2: the same calls on every process): exactly ``rounds`` calls of the whole
    batch, and every sample ends where its own L-step grid ends (a sample moved past its L fails)."""
    cond = sample_ids(3)
    noise = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    t_m, lengths = schedule.discretize(torch.tensor([875.0, 250.0, 500.0])), torch.tensor([1, 3, 2])
    reference = mds_trajectory(ToyDenoiser(), schedule, noise, t_m, lengths, cond)
    denoiser = ToyDenoiser()
    padded = mds_trajectory(denoiser, schedule, noise, t_m, lengths, cond, rounds=8)
    assert [batch for batch, _ in denoiser.calls] == [3] * 8
    torch.testing.assert_close(padded, reference, atol=1e-6, rtol=1e-6)


def test_mds_trajectory_with_the_guided_teacher():
    """Round 2 guides only sample 1: the teacher's one unconditional sample broadcasts to the subset."""
    schedule = FlowSchedule()
    cond, uncond = sample_ids(2), Conditioning(prompt_embeds=torch.zeros(1, 3, 2))
    denoiser = ToyDenoiser()
    noise = torch.randn(2, 4, 5, 5)
    got = mds_trajectory(
        Guided(denoiser, 2.0, uncond),
        schedule,
        noise,
        torch.tensor([900.0, 400.0]),
        torch.tensor([1, 2]),
        cond,
    )
    assert [batch for batch, _ in denoiser.calls] == [4, 2]
    one = teacher_solve(
        Guided(ToyDenoiser(), 2.0, uncond),
        schedule,
        noise[:1],
        torch.tensor([1000.0]),
        torch.tensor([900.0]),
        cond[:1],
    )
    torch.testing.assert_close(got[:1], one)
    two = teacher_solve(
        Guided(ToyDenoiser(), 2.0, uncond),
        schedule,
        noise[1:],
        torch.tensor([1000.0]),
        torch.tensor([400.0]),
        cond[1:],
        2,
    )
    torch.testing.assert_close(got[1:], two)


def test_tlcm_step_gamma_one_zero_and_vp_tcd():
    """gamma 1: a_s x0 + s_s n; gamma 0: DDIM; gamma 0.5 at s = 499: s' = round(0.5 (499 + 1)) - 1 = 249."""
    schedule = VPSchedule.from_config(SD_CONFIG)
    x, x0, noise = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1)).unbind(0)
    x, x0, noise = x[None], x0[None], noise[None]
    t, s = torch.tensor([999]), torch.tensor([499])
    a, sig = schedule.alpha, schedule.sigma
    torch.testing.assert_close(tlcm_step(schedule, x, x0, t, s, 1.0, noise), a(s) * x0 + sig(s) * noise)
    torch.testing.assert_close(tlcm_step(schedule, x, x0, t, s, 0.0, None), ddim_step(schedule, x, x0, t, s))
    mid = torch.tensor([249])
    ratio = a(s) / a(mid)
    expected = (
        ratio * ddim_step(schedule, x, x0, t, mid) + (sig(s) ** 2 - (ratio * sig(mid)) ** 2).sqrt() * noise
    )
    torch.testing.assert_close(tlcm_step(schedule, x, x0, t, s, 0.5, noise), expected)
    with pytest.raises(ValueError, match="gamma must be in"):
        tlcm_step(schedule, x, x0, t, s, 1.5, noise)


def test_tlcm_step_flow_tcd_hand_values():
    """Flow, x_t = eps_hat at t = T, s = 500, gamma 0.5 -> s' = 250: x_s' = 0.75 x0 + 0.25 eps_hat,
    x_s = (0.5 / 0.75) x_s' + sqrt(0.25 - (2/3 * 0.25)^2) n = 0.5 x0 + eps_hat / 6 + 0.4714045 n."""
    schedule = FlowSchedule()
    x0, eps_hat, noise = torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 2, 2), -1.0)
    got = tlcm_step(schedule, eps_hat, x0, torch.tensor([1000.0]), torch.tensor([500.0]), 0.5, noise)
    torch.testing.assert_close(got, torch.full((1, 1, 2, 2), 0.5 + 2 / 6 - 0.4714045))
    lcm = tlcm_step(schedule, eps_hat, x0, torch.tensor([1000.0]), torch.tensor([500.0]), 1.0, noise)
    torch.testing.assert_close(lcm, torch.full((1, 1, 2, 2), 0.5 - 0.5))


def test_ddim_step_from_a_clean_state_keeps_it_whatever_x0_hat():
    """From sigma_t = 0 (flow t = 0, VP t = -1) the state is its own x0 and holds no noise: the
    step to s gives a_s x_t (+ s_s * 0), whatever x0_hat the caller passes (no 0 / 0, and not a
    jump to x0_hat). Flow t = 0 -> 0: x_t; -> 500: 0.5 x_t. VP -1 -> -1: x_t; -> 499: a_499 x_t
    with a_499^2 = alphas_cumprod[499] from diffusers."""
    x, other = torch.full((2, 1, 2, 2), 3.0), torch.full((2, 1, 2, 2), -5.0)
    flow = FlowSchedule()
    zero = torch.zeros(2)
    torch.testing.assert_close(ddim_step(flow, x, other, zero, zero), x)
    torch.testing.assert_close(ddim_step(flow, x, other, zero, torch.full((2,), 500.0)), 0.5 * x)
    vp = VPSchedule.from_config(SD_CONFIG)
    clean = torch.full((2,), -1)
    torch.testing.assert_close(ddim_step(vp, x, other, clean, clean), x)
    a = DDIMScheduler(**SD_CONFIG).alphas_cumprod[499].sqrt()
    torch.testing.assert_close(ddim_step(vp, x, other, clean, torch.full((2,), 499)), a * x)


def test_tlcm_step_flow_tcd_gamma_quarter_by_hand():
    """gamma 0.25 (not the symmetric 0.5): s' = (1 - 0.25) 500 = 375. Flow, x_t = eps_hat = 2 at
    t = T, x0 = 1, noise = -1: x_s' = 0.625 + 0.375 * 2 = 1.375; ratio = 0.5 / 0.625 = 0.8;
    std = sqrt(0.25 - (0.8 * 0.375)^2) = 0.4; x_s = 0.8 * 1.375 - 0.4 = 0.7."""
    schedule = FlowSchedule()
    x0, eps_hat, noise = torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 2, 2), -1.0)
    got = tlcm_step(schedule, eps_hat, x0, torch.tensor([1000.0]), torch.tensor([500.0]), 0.25, noise)
    torch.testing.assert_close(got, torch.full((1, 1, 2, 2), 0.7))
