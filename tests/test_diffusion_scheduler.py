"""TLCMScheduler / TLCMFlowScheduler against diffusers' LCM, DDIM and FlowMatchEuler schedulers."""

import logging
import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler, LCMScheduler

from tlcm import TLCMScheduler
from tlcm.diffusion.sampling import ddim_timesteps, sample_latents, teacher_timesteps
from tlcm.diffusion.schedule import FlowSchedule, VPSchedule
from tlcm.diffusion.scheduler import TLCMFlowScheduler

SD_CONFIG = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def toy_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.3 * x + torch.cos(x) * float(t) / 1000


def run_loop(scheduler, seed: int = 0) -> list[torch.Tensor]:
    """The pipelines' loop; returns prev_sample of every step (same start noise and generator)."""
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(123))
    gen = torch.Generator().manual_seed(seed)
    states = []
    for t in scheduler.timesteps:
        x = scheduler.step(toy_model(x, t), t, x, generator=gen).prev_sample
        states.append(x)
    return states


def test_gamma_one_matches_lcm_scheduler(caplog):
    """With c_skip ~ 0, c_out ~ 1 (timestep_scaling 1e6: c_skip = 0.25 / (124e6^2 + 0.25) < 1e-17) LCM's
    step is x0_hat then a_s x0_hat + s_s noise, i.e. TLCM with gamma = 1 at the same timesteps."""
    lcm = LCMScheduler(**SD_CONFIG, timestep_scaling=1e6)
    with caplog.at_level(logging.ERROR):
        lcm.set_timesteps(timesteps=[999, 749, 499, 124])
    ours = TLCMScheduler.from_config(lcm.config)
    ours.set_timesteps(4)
    assert ours.timesteps.tolist() == lcm.timesteps.tolist()
    for got, expected in zip(run_loop(ours), run_loop(lcm), strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_gamma_zero_matches_ddim():
    """DDIM trailing, 4 steps: 999 -> 749 -> 499 -> 249 -> -1 (alpha = 1): same as TLCM trailing, gamma 0."""
    ddim = DDIMScheduler(**SD_CONFIG, timestep_spacing="trailing", set_alpha_to_one=True, clip_sample=False)
    ddim.set_timesteps(4)
    ours = TLCMScheduler(**SD_CONFIG, gamma=0.0, timestep_policy="trailing")
    ours.set_timesteps(4)
    assert ours.timesteps.tolist() == ddim.timesteps.tolist() == [999, 749, 499, 249]
    for got, expected in zip(run_loop(ours), run_loop(ddim), strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_gamma_zero_matches_ddim_for_v_and_x0_students(prediction_type):
    """A v-prediction (SD2 / zero-SNR) or x0 student, trailing 4 steps, gamma 0, is DDIM's loop
    with the same prediction type: set_timesteps moves the schedule to its device and must keep
    how the model output is read (x0 = a x_t - s v, or the output itself), not fall back to eps."""
    config = {**SD_CONFIG, "prediction_type": prediction_type}
    ddim = DDIMScheduler(**config, timestep_spacing="trailing", set_alpha_to_one=True, clip_sample=False)
    ddim.set_timesteps(4)
    ours = TLCMScheduler(**config, gamma=0.0, timestep_policy="trailing")
    ours.set_timesteps(4, device="cpu")
    for got, expected in zip(run_loop(ours), run_loop(ddim), strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_first_gamma_sets_only_the_move_from_pure_noise():
    """gamma 0 with first_gamma 1, 4 steps: the first move is LCM's (fresh noise from the
    generator), the others DDIM's: the same states as a gamma-1 scheduler for step 1 followed by a
    gamma-0 scheduler from step 2 on; and ``sample_latents`` (training's sample grids, evaluation)
    gives the same states."""
    mixed = TLCMScheduler(**SD_CONFIG, gamma=0.0, first_gamma=1.0)
    mixed.set_timesteps(4)
    lcm, ddim = TLCMScheduler(**SD_CONFIG, gamma=1.0), TLCMScheduler(**SD_CONFIG, gamma=0.0)
    lcm.set_timesteps(4)
    ddim.set_timesteps(4)
    ddim.set_begin_index(1)
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(123))
    gen = torch.Generator().manual_seed(0)
    expected = [lcm.step(toy_model(x, lcm.timesteps[0]), lcm.timesteps[0], x, generator=gen).prev_sample]
    for t in ddim.timesteps[1:]:
        expected.append(ddim.step(toy_model(expected[-1], t), t, expected[-1], generator=gen).prev_sample)
    got = run_loop(mixed)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got[1], run_loop(lcm)[1], atol=1e-3)  # later moves are not LCM's

    def denoiser(x, t, cond):
        return toy_model(x, t[0])

    noise = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(123))
    latents = sample_latents(
        denoiser, VPSchedule.from_config(mixed.config), None, noise, mixed.timesteps.tolist(), 0.0,
        generator=torch.Generator().manual_seed(0), first_gamma=1.0,
    )  # fmt: skip
    torch.testing.assert_close(latents, got[-1], atol=1e-5, rtol=1e-5)


def test_step_output_and_last_step_returns_denoised():
    scheduler = TLCMScheduler()
    scheduler.set_timesteps(2)
    x = torch.randn(1, 4, 3, 3)
    first = scheduler.step(torch.zeros_like(x), 999, x)
    a = scheduler.alphas_cumprod[999].sqrt()
    torch.testing.assert_close(first.denoised, x / a)
    last = scheduler.step(torch.zeros_like(x), 499, first.prev_sample, return_dict=False)
    assert torch.equal(last[0], last[1])
    torch.testing.assert_close(last[0], first.prev_sample / scheduler.alphas_cumprod[499].sqrt())
    scheduler.set_timesteps(2)
    half = scheduler.step(torch.zeros_like(x).half(), 999, x.half(), return_dict=False)
    assert half[0].dtype == half[1].dtype == torch.float16


def test_an_fp16_step_is_the_float32_step_rounded_once():
    """fp16 pipelines: ``step`` computes in float32 and rounds its results once, so prev_sample and
    denoised of fp16 inputs are exactly the float32 step's (on the same fp16 values) cast to fp16
    (gamma 0: no noise; 999 -> 749 where a = 0.068, so fp16 arithmetic would lose digits of
    x0 = (x - s eps) / a)."""
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(1)).half()
    output = toy_model(x.float(), 999).half()
    half, full = TLCMScheduler(gamma=0.0), TLCMScheduler(gamma=0.0)
    half.set_timesteps(4)
    full.set_timesteps(4)
    got, expected = half.step(output, 999, x), full.step(output.float(), 999, x.float())
    assert torch.equal(got.denoised, expected.denoised.half())
    assert torch.equal(got.prev_sample, expected.prev_sample.half())


def test_from_ddim_config_save_and_load(tmp_path, caplog):
    ddim = DDIMScheduler(**SD_CONFIG, prediction_type="v_prediction", steps_offset=1, clip_sample=False)
    with caplog.at_level(logging.WARNING):
        scheduler = TLCMScheduler.from_config(ddim.config, gamma=0.5)
    assert "not expected" not in caplog.text
    assert scheduler.config.prediction_type == "v_prediction" and scheduler.config.gamma == 0.5
    torch.testing.assert_close(scheduler.alphas_cumprod, ddim.alphas_cumprod)
    scheduler.save_pretrained(tmp_path)
    loaded = TLCMScheduler.from_pretrained(tmp_path)
    public = [
        {k: v for k, v in c.items() if not k.startswith("_")} for c in (loaded.config, scheduler.config)
    ]
    assert public[0] == public[1] and loaded.config.gamma == 0.5
    loaded.set_timesteps(3)
    assert loaded.timesteps.tolist() == [999, 499, 124]


@pytest.mark.parametrize("n", [0, 9])
def test_out_of_range_steps(n):
    with pytest.raises(
        ValueError, match=rf"num_inference_steps must be in 1\.\.8 for M=8 milestones, got {n}"
    ):
        TLCMScheduler().set_timesteps(n)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="gamma must be in"):
        TLCMScheduler(gamma=1.5)
    with pytest.raises(ValueError, match="strictly descending"):
        TLCMScheduler().set_timesteps(timesteps=[499, 999])
    with pytest.raises(ValueError, match="set_timesteps"):
        TLCMScheduler().step(torch.zeros(1), 999, torch.zeros(1))


def test_custom_timesteps_begin_index_and_add_noise():
    scheduler = TLCMScheduler()
    scheduler.set_timesteps(timesteps=[999, 624, 249])
    assert scheduler.num_inference_steps == 3 and len(scheduler) == 1000
    scheduler.set_begin_index(1)
    x = torch.randn(1, 4, 3, 3)
    scheduler.step(torch.zeros_like(x), 624, x, generator=torch.Generator().manual_seed(0))
    assert scheduler.step_index == 2
    x0, noise, t = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3), torch.tensor([10, 700])
    torch.testing.assert_close(
        scheduler.add_noise(x0, noise, t), DDPMScheduler(**SD_CONFIG).add_noise(x0, noise, t)
    )


@pytest.mark.parametrize("gamma", [1.0, 0.0])
def test_flow_scheduler_matches_flow_match_euler(gamma):
    """Shift 3, 4 steps: milestone sigmas [1, 0.75, 0.5, 0.125] -> [1, 0.9, 0.75, 0.3]; gamma 1 equals
    FlowMatchEuler's stochastic sampling ((1 - s') x0 + s' noise), gamma 0 its Euler steps."""
    reference = FlowMatchEulerDiscreteScheduler(shift=3.0, stochastic_sampling=gamma == 1.0)
    reference.set_timesteps(sigmas=[1.0, 0.75, 0.5, 0.125])
    ours = TLCMFlowScheduler.from_config(reference.config, gamma=gamma)
    ours.set_timesteps(4)
    torch.testing.assert_close(ours.sigmas, torch.tensor([1.0, 0.9, 0.75, 0.3, 0.0]))
    torch.testing.assert_close(ours.timesteps, reference.timesteps)
    for got, expected in zip(run_loop(ours), run_loop(reference), strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_sample_latents_on_a_shifted_flow_grid_is_the_flow_schedulers_loop():
    """Training's and evaluation's sampler (``sample_latents``) on a flow schedule with shift 3 and
    8 steps walks the exported TLCMFlowScheduler's real-valued grid: milestone sigmas k / 8 shifted
    to 3f / (1 + 2f), e.g. k = 7: 2.625 / 2.75 -> t = 954.5..., and ends on the same latents
    (gamma 0: deterministic Euler moves, no noise to match)."""
    scheduler = TLCMFlowScheduler(shift=3.0, gamma=0.0)
    scheduler.set_timesteps(8)
    assert scheduler.timesteps[1].item() == pytest.approx(1000 * 2.625 / 2.75)
    expected = run_loop(scheduler)[-1]

    def denoiser(x, t, cond):
        return toy_model(x, t[0])

    noise = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(123))
    schedule = FlowSchedule.from_config(scheduler.config)
    latents = sample_latents(denoiser, schedule, None, noise, scheduler.timesteps.tolist(), 0.0)
    torch.testing.assert_close(latents, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "shift_type, hand",
    [("exponential", [1.0, math.exp(0.8) / (math.exp(0.8) + 1)]), ("linear", [1.0, 0.8 / (0.8 + 1)])],
)
def test_flow_scheduler_dynamic_shift_and_scale_noise(shift_type, hand):
    """Dynamic shift at mu = 0.8 of the 2 milestone sigmas (1, 0.5): exponential e^mu / (e^mu +
    1/sigma - 1), linear mu / (mu + 1/sigma - 1) (FLUX; sigma 1 stays 1), as diffusers'
    FlowMatchEulerDiscreteScheduler with that time_shift_type."""
    reference = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type=shift_type)
    reference.set_timesteps(sigmas=[1.0, 0.5], mu=0.8)
    ours = TLCMFlowScheduler(use_dynamic_shifting=True, time_shift_type=shift_type)
    ours.set_timesteps(2, mu=0.8)
    torch.testing.assert_close(ours.sigmas, reference.sigmas)
    torch.testing.assert_close(ours.sigmas, torch.tensor([*hand, 0.0]))
    with pytest.raises(ValueError, match="mu"):
        ours.set_timesteps(2)
    x0, noise = torch.randn(1, 16, 8), torch.randn(1, 16, 8)
    noisy = ours.scale_noise(x0, ours.timesteps[1:], noise)
    torch.testing.assert_close(noisy, (1 - ours.sigmas[1]) * x0 + ours.sigmas[1] * noise)


def test_tcd_gamma_step_by_hand():
    """gamma 0.3 (TCD), 4 steps [999, 749, 499, 124], epsilon model output e at 999: x0_hat =
    (x - s_999 e) / a_999; s' = round(-1 + 0.7 (749 + 1)) = 524; DDIM to s' gives a_524 x0_hat +
    s_524 e; then forward-diffused to 749 with fresh noise n (the generator's first draw):
    r x_s' + sqrt(s_749^2 - r^2 s_524^2) n, r = a_749 / a_524 (alphas from diffusers' DDPM)."""
    scheduler = TLCMScheduler(**SD_CONFIG, gamma=0.3)
    scheduler.set_timesteps(4)
    ac = DDPMScheduler(**SD_CONFIG).alphas_cumprod.double()
    a, s = ac.sqrt(), (1 - ac).sqrt()
    x = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    e = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(2))
    out = scheduler.step(e, 999, x, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(3)).double()
    x0 = (x.double() - s[999] * e.double()) / a[999]
    r = a[749] / a[524]
    expected = r * (a[524] * x0 + s[524] * e.double()) + (s[749] ** 2 - (r * s[524]) ** 2).sqrt() * noise
    torch.testing.assert_close(out.denoised, x0.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.prev_sample, expected.float(), atol=1e-5, rtol=1e-5)


def test_teacher_timesteps_by_hand():
    """VP: linspace(T - 1, 0, n + 1) without its last point, rounded half to even: n = 1 -> [999],
    2 -> [999, 500] (499.5), 4 -> [999, 749, 500, 250]. Flow: T shift(1 - i / n), i = 0..n-1,
    starting at pure noise T: shift 3, n = 2 -> [1000, 750] (3 * 0.5 / 2 = 0.75); n = 1 -> [1000]."""
    assert ddim_timesteps(1) == [999]
    assert ddim_timesteps(2) == [999, 500]
    assert ddim_timesteps(4) == [999, 749, 500, 250]
    assert teacher_timesteps(2, VPSchedule.from_config(SD_CONFIG)) == [999, 500]
    flow = FlowSchedule(1000, shift=3.0)
    assert teacher_timesteps(2, flow) == pytest.approx([1000.0, 750.0])
    assert teacher_timesteps(1, flow) == pytest.approx([1000.0])
    with pytest.raises(ValueError, match="num_steps must be in"):
        ddim_timesteps(1000)


@pytest.mark.parametrize("cls", [TLCMScheduler, TLCMFlowScheduler])
def test_gamma_and_first_gamma_outside_zero_one_are_refused(cls):
    """gamma weighs the fresh noise (sqrt(gamma), sqrt(1 - gamma)): only [0, 1] is a sampler; both
    ends are valid (0: DDIM, 1: LCM)."""
    for bad in ({"gamma": -0.1}, {"first_gamma": -0.5}, {"gamma": 1.01}, {"first_gamma": 2.0}):
        with pytest.raises(ValueError, match="must be in \\[0, 1\\]"):
            cls(**bad)
    for good in ({"gamma": 0.0}, {"gamma": 1.0, "first_gamma": 0.0}, {"first_gamma": 1.0}):
        cls(**good)


def test_custom_timesteps_must_be_distinct_descending_and_below_T():
    """T = 1000 training timesteps are 0..999 (alphas_cumprod has 1000 entries): 1000 is refused, as
    are a repeated or rising timestep and an empty list; 999..0 pass. Passing both a step count and
    timesteps is refused (diffusers' schedulers: "Can only pass one of")."""
    scheduler = TLCMScheduler()
    for bad in ([1000, 500], [999, 499, 499], [499, 999], [999, -1], []):
        with pytest.raises(ValueError, match=r"strictly descending integers in 0\.\.999"):
            scheduler.set_timesteps(timesteps=bad)
    scheduler.set_timesteps(timesteps=[999, 0])
    assert scheduler.timesteps.tolist() == [999, 0]
    with pytest.raises(ValueError, match="exactly one of"):
        scheduler.set_timesteps(4, timesteps=[999, 499])
    with pytest.raises(ValueError, match="exactly one of"):
        scheduler.set_timesteps()


@pytest.mark.parametrize("kind", ["vp", "flow"])
def test_set_timesteps_forgets_a_previous_begin_index(kind):
    """An img2img call sets a begin index; the next set_timesteps (a new text-to-image call) starts
    at the first timestep again, as diffusers' own schedulers reset it (LCMScheduler,
    FlowMatchEulerDiscreteScheduler: begin_index None after set_timesteps)."""
    ours, reference = (
        (TLCMScheduler(), LCMScheduler(**SD_CONFIG))
        if kind == "vp"
        else (TLCMFlowScheduler(), FlowMatchEulerDiscreteScheduler())
    )
    for scheduler in (ours, reference):
        scheduler.set_timesteps(4)
        scheduler.set_begin_index(2)
        scheduler.set_timesteps(4)
        assert scheduler.begin_index is None
    x = torch.randn(1, 4, 3, 3)
    ours.step(torch.zeros_like(x), ours.timesteps[0], x, generator=torch.Generator().manual_seed(0))
    assert ours.step_index == 1  # started at timesteps[0], not at the stale index 2
