"""Schedule maths: alphas from diffusers, clean boundary, conversions, config dispatch."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from tlcm.diffusion.schedule import FlowSchedule, VPSchedule, schedule_from_config
from tlcm.diffusion.scheduler import TLCMFlowScheduler

SD_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
}


def test_vp_alphas_match_diffusers_and_hand_values():
    """scaled_linear: beta_0 = 0.00085, so alpha(0)^2 = 1 - 0.00085 = 0.99915; t = -1 is clean (1, 0)."""
    schedule = VPSchedule.from_config(DDIMScheduler(**SD_CONFIG).config)
    ref = DDIMScheduler(**SD_CONFIG).alphas_cumprod
    t = torch.tensor([-1, 0, 499, 999])
    assert (
        schedule.num_train_timesteps == 1000
        and schedule.max_timestep == 999
        and schedule.clean_timestep == -1
    )
    assert schedule.alpha(t)[0] == 1.0 and schedule.sigma(t)[0] == 0.0
    assert schedule.alpha(t)[1] ** 2 == pytest.approx(0.99915, abs=1e-6)
    torch.testing.assert_close(schedule.alpha(t[1:]) ** 2, ref[t[1:]])
    torch.testing.assert_close(schedule.alpha(t) ** 2 + schedule.sigma(t) ** 2, torch.ones(4))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_vp_conversions_round_trip(prediction_type):
    """model_output_from(x0, eps) fed back at x_t = a x0 + s eps gives x0 and eps again."""
    schedule = VPSchedule.from_config({**SD_CONFIG, "prediction_type": prediction_type})
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 5, 5, generator=gen), torch.randn(3, 4, 5, 5, generator=gen)
    t = torch.tensor([0, 500, 999])
    x_t = schedule.add_noise(x0, eps, t)
    out = schedule.model_output_from(x0, eps, t)
    torch.testing.assert_close(schedule.to_x0(out, x_t, t), x0, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(schedule.to_eps(out, x_t, t), eps, atol=2e-4, rtol=1e-4)


def test_vp_velocity_matches_diffusers():
    """v = alpha eps - sigma x0 (Salimans & Ho), as DDPMScheduler.get_velocity."""
    schedule = VPSchedule.from_config({**SD_CONFIG, "prediction_type": "v_prediction"})
    x0, eps, t = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3), torch.tensor([10, 900])
    expected = DDPMScheduler(**SD_CONFIG).get_velocity(x0, eps, t)
    torch.testing.assert_close(schedule.model_output_from(x0, eps, t), expected)


def test_flow_alpha_sigma_and_round_trip_on_packed_latents():
    """sigma = t / T: t = 250 -> sigma 0.25, alpha 0.75; v = eps - x0; works on (B, N, D) latents."""
    schedule = FlowSchedule(1000)
    t = torch.tensor([0.0, 250.0, 1000.0])
    torch.testing.assert_close(schedule.sigma(t), torch.tensor([0.0, 0.25, 1.0]))
    torch.testing.assert_close(schedule.alpha(t), torch.tensor([1.0, 0.75, 0.0]))
    x0, eps = torch.randn(3, 6, 8), torch.randn(3, 6, 8)
    x_t = schedule.add_noise(x0, eps, t)
    torch.testing.assert_close(x_t[1], 0.75 * x0[1] + 0.25 * eps[1])
    out = schedule.model_output_from(x0, eps, t)
    torch.testing.assert_close(out, eps - x0)
    torch.testing.assert_close(schedule.to_x0(out, x_t, t), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(schedule.to_eps(out, x_t, t), eps, atol=1e-5, rtol=1e-5)


def test_add_noise_from_a_noisy_state_by_hand():
    """q(x_t | x_s) = a x_s + std eps. VP (PCM's noise_travel): a^2 = abar_t / abar_s, std^2 =
    1 - a^2. Flow, s = 250, t = 500: a = 0.5 / 0.75 = 2/3, std^2 = 0.25 - (2/3 * 0.25)^2 = 2/9.
    The composition keeps the marginal: the x0 coefficient is alpha(t), the noise variance
    sigma(t)^2 ((a sigma_s)^2 + std^2); from the clean boundary it is add_noise."""
    vp = VPSchedule.from_config(DDIMScheduler(**SD_CONFIG).config)
    abar = DDIMScheduler(**SD_CONFIG).alphas_cumprod
    s, t = torch.tensor([249, 0]), torch.tensor([499, 999])
    one, zero = torch.ones(2, 1), torch.zeros(2, 1)
    ratio = abar[t] / abar[s]
    torch.testing.assert_close(vp.add_noise_from(one, zero, s, t), ratio.sqrt().view(2, 1))
    torch.testing.assert_close(vp.add_noise_from(zero, one, s, t), (1 - ratio).sqrt().view(2, 1))
    flow = FlowSchedule(1000)
    fs, ft = torch.tensor([250.0]), torch.tensor([500.0])
    torch.testing.assert_close(
        flow.add_noise_from(torch.ones(1, 1), torch.zeros(1, 1), fs, ft), torch.tensor([[2 / 3]])
    )
    torch.testing.assert_close(
        flow.add_noise_from(torch.zeros(1, 1), torch.ones(1, 1), fs, ft), torch.tensor([[(2 / 9) ** 0.5]])
    )
    for schedule, s, t in (
        (vp, torch.tensor([-1, 100, 600]), torch.tensor([300, 600, 999])),
        (flow, torch.tensor([0.0, 100.0, 600.0]), torch.tensor([300.0, 600.0, 1000.0])),
    ):
        x0, e1, e2 = torch.randn(3, 2), torch.randn(3, 2), torch.randn(3, 2)
        x_t = schedule.add_noise_from(schedule.add_noise(x0, e1, s), e2, s, t)
        signal = schedule.add_noise_from(schedule.add_noise(x0, 0 * e1, s), 0 * e2, s, t)
        torch.testing.assert_close(signal, schedule.alpha(t).view(3, 1) * x0)
        a = schedule.alpha(t) / schedule.alpha(s)
        std = (x_t - signal - (a * schedule.sigma(s)).view(3, 1) * e1) / e2
        torch.testing.assert_close(
            (a * schedule.sigma(s)).square() + std[:, 0].square(), schedule.sigma(t).square()
        )
        clean = torch.full_like(t, schedule.clean_timestep)
        torch.testing.assert_close(schedule.add_noise_from(x0, e2, clean, t), schedule.add_noise(x0, e2, t))


def test_flow_shift_matches_flow_match_euler():
    """shift 3 at sigma 0.5: 3 * 0.5 / (1 + 2 * 0.5) = 0.75; diffusers' training sigmas agree."""
    schedule = FlowSchedule.from_config(FlowMatchEulerDiscreteScheduler(shift=3.0).config)
    assert schedule.shift == 3.0 and schedule.max_timestep == 1000 and schedule.clean_timestep == 0
    assert schedule.shift_sigmas(torch.tensor(0.5)).item() == pytest.approx(0.75)
    reference = FlowMatchEulerDiscreteScheduler(shift=3.0)
    base = torch.linspace(1, 1000, 1000).flip(0) / 1000
    torch.testing.assert_close(schedule.shift_sigmas(base), reference.sigmas)


def test_schedule_from_config_dispatch():
    assert isinstance(schedule_from_config(DDIMScheduler(**SD_CONFIG).config), VPSchedule)
    assert isinstance(schedule_from_config(FlowMatchEulerDiscreteScheduler().config), FlowSchedule)
    assert isinstance(schedule_from_config(TLCMFlowScheduler().config), FlowSchedule)
    unipc = UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0)
    flow = schedule_from_config(unipc.config)
    assert isinstance(flow, FlowSchedule) and flow.shift == 3.0
    dynamic = schedule_from_config(
        FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True).config
    )
    assert dynamic.shift == 1.0
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        VPSchedule(torch.ones(10), "flow_prediction")


def test_use_flow_sigmas_alone_makes_a_flow_schedule():
    """Each of the documented flow signs suffices on its own: a UniPC / DPM config in flow mode
    (``use_flow_sigmas``) that leaves ``prediction_type`` out and keeps its (unused) betas is flow,
    with its ``flow_shift``; without that flag the same config is VP."""
    config = {"_class_name": "UniPCMultistepScheduler", **SD_CONFIG, "flow_shift": 3.0}
    flow = schedule_from_config({**config, "use_flow_sigmas": True})
    assert isinstance(flow, FlowSchedule) and flow.shift == 3.0
    assert isinstance(schedule_from_config({**config, "use_flow_sigmas": False}), VPSchedule)


def test_uniform_timesteps_cover_both_ends_on_vp_and_are_affine_on_flow():
    """Schedule.uniform_timesteps (TCD's target time in MLCD, ADD's re-noising t): on a VP schedule
    every integer of [lo, hi] per sample, both ends, equally often; on flow lo + u (hi - lo)."""
    u = (torch.arange(4000, dtype=torch.float64) + 0.5) / 4000  # an even grid over [0, 1)
    vp = VPSchedule(torch.linspace(0.99, 0.01, 1000))
    lo, hi = torch.tensor([3, 10]).repeat(2000), torch.tensor([6, 10]).repeat(2000)
    t = vp.uniform_timesteps(u, lo, hi)
    assert t.dtype == torch.long
    first, second = t[0::2], t[1::2]
    assert torch.equal(torch.bincount(first - 3), torch.full((4,), 500))  # 3, 4, 5, 6 alike
    assert torch.equal(second, torch.full_like(second, 10))  # lo = hi: that timestep
    assert set(vp.uniform_timesteps(u, 0, 999).tolist()) == set(range(1000))
    flow = FlowSchedule(1000)
    s = flow.uniform_timesteps(u, 200.0, 800.0)
    assert s.dtype == torch.float32
    torch.testing.assert_close(s, (200 + u * 600).float())


def test_bf16_latents_stay_bf16_through_the_schedule_and_a_solver_step():
    """A bf16 training step: the schedule's float32 coefficients are cast to the latents' dtype
    (as diffusers' add_noise does), so add_noise, add_noise_from, the conversions and a DDIM step
    of bf16 latents return bf16, the float32 maths' values to bf16's precision, on VP
    (v-prediction) and flow (shift 3) alike."""
    from tlcm.diffusion.solvers import ddim_step

    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 3, 3, generator=gen), torch.randn(2, 4, 3, 3, generator=gen)
    vp = VPSchedule(DDPMScheduler(**SD_CONFIG).alphas_cumprod, "v_prediction")
    for schedule, t, s in [
        (vp, torch.tensor([10, 900]), torch.tensor([-1, 400])),
        (FlowSchedule(shift=3.0), torch.tensor([10.0, 900.0]), torch.tensor([0.0, 400.0])),
    ]:
        results = []
        for dtype in (torch.bfloat16, torch.float32):
            a, e = x0.to(dtype), eps.to(dtype)
            x_t = schedule.add_noise(a, e, t)
            out = schedule.model_output_from(a, e, t)
            results.append(
                [
                    x_t,
                    schedule.add_noise_from(x_t, e, t, t + 50),
                    out,
                    schedule.to_x0(out, x_t, t),
                    schedule.to_eps(out, x_t, t),
                    ddim_step(schedule, x_t, a, t, s),
                ]
            )
        for half, full in zip(*results, strict=True):
            assert half.dtype == torch.bfloat16
            torch.testing.assert_close(half.float(), full, rtol=0.05, atol=0.05)
