"""Round-15 red-team units of the diffusion core (tests/mutants/redteam15_diffusion.py): the scheduler's
step bookkeeping and defaults, the flow scheduler's shift with a pipeline's mu, the guided
teacher's ``with_scale``, the student grid's checks and defaults, the flow schedule's ends, the
solvers' refusals, the padded MDS's timesteps and ``sample_latents``'s progress calls.

Every expected value is written out by hand (DDIM with a zero noise prediction is x_t a_s / a_t,
the SD3 shift is 3f / (1 + 2f), ...), or taken from diffusers' own schedulers.
"""

import pytest
import torch
from diffusers import DDPMScheduler, LCMScheduler
from test_diffusion_scheduler import run_loop, toy_model
from test_diffusion_solvers import SD_CONFIG, ToyDenoiser, sample_ids

from tlcm import TLCMScheduler
from tlcm.conditioning import Conditioning
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import StudentGrid, milestones, sample_segment_timesteps, segment_index
from tlcm.diffusion.sampling import sample_latents, teacher_timesteps
from tlcm.diffusion.schedule import FlowSchedule, VPSchedule
from tlcm.diffusion.scheduler import TLCMFlowScheduler
from tlcm.diffusion.solvers import mds_trajectory, teacher_solve, tlcm_step


class TimestepRecorder:
    """A denoiser that predicts 0 (eps or v) and records the (B,) timesteps of every call."""

    def __init__(self) -> None:
        self.timesteps: list[list[float]] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        self.timesteps.append(t.tolist())
        return torch.zeros_like(x)


# ---- scheduler.py --------------------------------------------------------------------------------


def test_a_first_step_at_a_later_timestep_moves_on_from_that_timestep():
    """A pipeline whose first ``step`` is at timesteps[1] = 749 (no set_begin_index) starts there:
    the move goes 749 -> 499, DDIM (gamma 0) with eps = 0: x0 = x / a_749, x_499 = a_499 x0, i.e.
    x a_499 / a_749 (a = sqrt(alphas_cumprod) of diffusers' DDPMScheduler); step_index is then 2."""
    scheduler = TLCMScheduler(**SD_CONFIG, gamma=0.0)
    scheduler.set_timesteps(4)  # [999, 749, 499, 124]
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    out = scheduler.step(torch.zeros_like(x), 749, x)
    a = DDPMScheduler(**SD_CONFIG).alphas_cumprod.sqrt()
    assert scheduler.step_index == 2
    torch.testing.assert_close(out.prev_sample, x * a[499] / a[749])


def test_init_noise_sigma_is_the_unit_std_of_pure_noise():
    """Pipelines draw the start latents as randn * init_noise_sigma. The student's top timestep is
    (nearly) pure noise of unit variance: VP alpha^2 + sigma^2 = 1, flow x_T = eps; so 1, as
    diffusers' own LCMScheduler (not Euler's sigma_max ~ 14.6)."""
    assert TLCMScheduler.init_noise_sigma == LCMScheduler().init_noise_sigma == 1.0
    assert TLCMFlowScheduler().init_noise_sigma == 1.0
    scheduler = TLCMScheduler()
    assert scheduler.scale_model_input(x := torch.randn(2, 3)) is x


def test_a_static_shift_flow_scheduler_ignores_the_pipelines_mu():
    """FluxPipeline passes ``mu`` whatever the scheduler's config says; without use_dynamic_shifting
    the static SD3 shift sigma' = 3 f / (1 + 2 f) applies to the milestone fractions [1, 6/8, 4/8,
    1/8]: [1, 0.9, 0.75, 0.3] then 0, mu or no mu."""
    scheduler = TLCMFlowScheduler(shift=3.0)
    scheduler.set_timesteps(4, mu=0.8)
    torch.testing.assert_close(scheduler.sigmas, torch.tensor([1.0, 0.9, 0.75, 0.3, 0.0]))
    torch.testing.assert_close(scheduler.timesteps, torch.tensor([1000.0, 900.0, 750.0, 300.0]))


def test_the_flow_scheduler_defaults_to_the_lcm_move_and_its_own_sigmas():
    """Defaults: gamma 1 (the paper's LCM move: x_next = sigma_next noise + (1 - sigma_next) x0_hat,
    x0_hat = x - sigma v) and use_flow_sigmas True, so that FluxPipeline leaves the sigmas to the
    scheduler (it passes its own linspace(1, 1/n, n) otherwise, off the milestone grid).
    1000 -> 750 with v = 0.5 x: x0_hat = 0.5 x, x_750 = 0.75 noise + 0.25 * 0.5 x."""
    scheduler = TLCMFlowScheduler()
    assert scheduler.config.gamma == 1.0 and scheduler.config.use_flow_sigmas is True
    scheduler.set_timesteps(4)  # sigmas [1, 0.75, 0.5, 0.125, 0]
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    out = scheduler.step(0.5 * x, 1000.0, x, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(out.denoised, 0.5 * x)
    torch.testing.assert_close(out.prev_sample, 0.75 * noise + 0.25 * 0.5 * x)


# ---- denoiser.py ---------------------------------------------------------------------------------


def test_with_scale_guides_with_the_new_scale_and_keeps_the_rest():
    """``with_scale(w)`` (DMD's real score) is the same teacher at the new w: out_u + w (out_c -
    out_u) = 0.5 x + t / 1000 + w c for the toy denoiser (c_uncond = 0), w = 5 not the original 2."""
    denoiser, uncond = ToyDenoiser(), Conditioning(prompt_embeds=torch.zeros(1, 3, 2))
    teacher = Guided(denoiser, 2.0, uncond)
    real = teacher.with_scale(5.0)
    assert real.scale == 5.0 and real.denoiser is denoiser and real.uncond is uncond
    x, t = torch.randn(2, 4, 5, 5), torch.tensor([999, 10])
    expected = 0.5 * x + (t / 1000 + 5.0 * torch.tensor([1.0, 2.0])).view(2, 1, 1, 1)
    torch.testing.assert_close(real(x, t, sample_ids(2)), expected)


# ---- milestones.py -------------------------------------------------------------------------------


def test_m_equal_to_t_is_one_segment_per_timestep():
    """M = T (the largest M that StudentGrid.check accepts): t_k = k, so segment (k, k + 1] holds
    the one timestep k + 1; M = T + 1 is refused."""
    table = milestones(1000, 1000)
    assert torch.equal(table, torch.arange(1001))
    t = torch.arange(1, 1001)
    assert torch.equal(segment_index(t, table), t - 1)
    StudentGrid(num_milestones=1000, steps=4).check(1000)
    with pytest.raises(ValueError, match="num_segments must be in 1..1000"):
        milestones(1001, 1000)


@pytest.mark.parametrize("name", ["gamma", "training_gamma", "first_gamma"])
def test_student_grid_check_refuses_each_gamma_outside_zero_one(name):
    """Each of the three samplers' gamma is a noise weight in [0, 1]: both ends pass, 1.5 and -0.1
    are refused naming the field."""
    for good in (0.0, 1.0):
        StudentGrid(**{name: good}).check()
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match=rf"{name} must be in \[0, 1\]"):
            StudentGrid(**{name: bad}).check()


def test_with_sampler_refuses_a_gamma_outside_zero_one():
    """``with_sampler`` (a command line's --gamma / --first-gamma) checks what it makes."""
    for kwargs in ({"gamma": 2.0}, {"gamma": -0.5}, {"first_gamma": 1.5}, {"gamma": 0.5, "first_gamma": 3}):
        with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
            StudentGrid().with_sampler(**kwargs)


def test_student_grid_defaults_are_the_papers_and_timesteps_default_to_q():
    """The paper's grid: M = 8 milestones, q = 4 steps, the LCM sampler (gamma 1) at inference and
    in training, "sample" backward simulation; ``timesteps()`` with no count is the q = 4 grid
    [999, 749, 499, 124] (the authors' table), and q = 2 gives [999, 499]."""
    grid = StudentGrid()
    assert (grid.num_milestones, grid.steps, grid.gamma, grid.first_gamma) == (8, 4, 1.0, None)
    assert (grid.training_gamma, grid.backward_simulation) == (1.0, "sample")
    assert grid.timesteps().tolist() == [999, 749, 499, 124]
    assert StudentGrid(8, 2).timesteps().tolist() == [999, 499]


def test_sample_segment_timesteps_default_skip_is_the_papers_20():
    """arXiv 2406.05768 Sec. 4.1: skip k = 20 by default, t_n = max(t_m - 20, t_s)."""
    schedule, table = VPSchedule.from_config(SD_CONFIG), milestones(8, 1000)
    gen = torch.Generator().manual_seed(0)
    segments, t_m, t_n = sample_segment_timesteps(schedule, table, 500, generator=gen)
    assert torch.equal(t_n, torch.maximum(t_m - 20, table[segments]))
    assert (t_m - t_n == 20).any()


# ---- schedule.py ---------------------------------------------------------------------------------


def test_flow_mds_starts_at_pure_noise_t():
    """Flow: the noisiest timestep is T itself (sigma = 1, x_T = eps), so MDS's first call is at
    1000 and L = 2 steps to t_m = 500 go 1000 -> 750 -> 500."""
    flow = FlowSchedule()
    assert flow.max_timestep == 1000.0 and flow.sigma(torch.tensor([1000.0])).item() == 1.0
    recorder = TimestepRecorder()
    noise = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    out = mds_trajectory(recorder, flow, noise, torch.tensor([500.0]), torch.tensor([2]), sample_ids(1))
    assert recorder.timesteps == [[1000.0], [750.0]]
    torch.testing.assert_close(out, noise)  # v = 0: Euler steps x + (sigma_s - sigma_t) v keep x


def test_a_vp_schedule_refuses_a_prediction_type_it_cannot_convert():
    """VP converts epsilon, v_prediction and sample only; a flow model's "flow_prediction" (or a
    typo) would otherwise be taken for x0 silently."""
    alphas_cumprod = DDPMScheduler(**SD_CONFIG).alphas_cumprod
    for bad in ("flow_prediction", "v-prediction"):
        with pytest.raises(ValueError, match="prediction_type must be one of"):
            VPSchedule(alphas_cumprod, bad)


def test_a_flow_schedule_from_config_keeps_its_t():
    """A flow config with num_train_timesteps 500: sigma = t / 500 (t = 250 is halfway), max 500."""
    flow = FlowSchedule.from_config({"num_train_timesteps": 500, "shift": 1.0})
    assert flow.max_timestep == 500.0 and flow.sigma(torch.tensor([250.0])).item() == 0.5


# ---- solvers.py ----------------------------------------------------------------------------------


def test_teacher_solve_refuses_zero_substeps():
    """p = 0 sub-steps would return x_t unsolved: refused."""
    x, t = torch.zeros(1, 4, 2, 2), torch.tensor([999])
    with pytest.raises(ValueError, match="substeps must be >= 1"):
        teacher_solve(TimestepRecorder(), VPSchedule.from_config(SD_CONFIG), x, t, t - 125, sample_ids(1), 0)


def test_padded_mds_calls_the_teacher_only_on_each_samples_own_grid():
    """``rounds`` pads every sample to 8 calls; a sample done after L steps is called at its t_m
    again (held there), never past it: L = [1, 3, 2] to t_m = [875, 250, 500] sees timesteps in
    [t_m, 999] only (unclamped, sample 1's round 7 would be 999 - 749 * 7 / 3 < 0)."""
    schedule, recorder = VPSchedule.from_config(SD_CONFIG), TimestepRecorder()
    noise = torch.randn(3, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    t_m = torch.tensor([875, 250, 500])
    mds_trajectory(recorder, schedule, noise, t_m, torch.tensor([1, 3, 2]), sample_ids(3), rounds=8)
    seen = torch.tensor(recorder.timesteps)  # (rounds, B)
    assert seen.shape == (8, 3)
    assert (seen >= t_m).all() and (seen <= 999).all()
    assert seen[-1].tolist() == t_m.tolist()


def test_tlcm_step_refuses_bad_gamma_and_missing_noise():
    """gamma outside [0, 1] is no sampler (s' = c + (1 - gamma)(s - c) leaves [c, s]); a gamma > 0
    move needs fresh noise (gamma 0, DDIM, does not)."""
    schedule = VPSchedule.from_config(SD_CONFIG)
    x, t, s = torch.randn(1, 4, 2, 2), torch.tensor([999]), torch.tensor([499])
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\]"):
            tlcm_step(schedule, x, x, t, s, bad, torch.randn_like(x))
    with pytest.raises(ValueError, match="needs fresh noise"):
        tlcm_step(schedule, x, x, t, s, 0.5, None)
    tlcm_step(schedule, x, x, t, s, 0.0, None)


# ---- sampling.py ---------------------------------------------------------------------------------


def test_sample_latents_reports_each_step_once_and_refuses_no_steps():
    """``on_step(i)`` after each of the n steps, i = 0..n-1, the last included (progress bars); no
    timesteps at all is refused rather than returning the noise as a sample."""
    schedule, recorder = VPSchedule.from_config(SD_CONFIG), TimestepRecorder()
    noise = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    done: list[int] = []
    out = sample_latents(recorder, schedule, sample_ids(2), noise, [999, 499, 124], 0.0, on_step=done.append)
    assert done == [0, 1, 2] and recorder.timesteps == [[999] * 2, [499] * 2, [124] * 2]
    assert out.shape == noise.shape
    with pytest.raises(ValueError, match="timesteps must not be empty"):
        sample_latents(recorder, schedule, sample_ids(2), noise, [], 0.0)


def test_flow_teacher_timesteps_refuse_zero_steps():
    """0 teacher steps would be an empty flow grid (no sample at all): refused."""
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        teacher_timesteps(0, FlowSchedule())


@pytest.mark.parametrize(("gamma", "first_gamma"), [(1.0, 0.0), (0.5, 0.0), (0.0, 1.0), (0.5, None)])
def test_sample_latents_takes_the_exported_schedulers_noise_for_the_same_seed(gamma, first_gamma):
    """Real bug (round 15): ``sample_latents`` (tlcm.sample, sample grids, evaluation) and the
    exported TLCMScheduler in a diffusers loop must give the same sample for the same start noise
    and step generator. The scheduler draws noise only for moves that use it; with a DDIM first
    move (first_gamma 0) before LCM / TCD moves, sample_latents drew an unused tensor first, so
    every later move took another draw: a different image than the pipeline's for --first-gamma 0."""
    scheduler = TLCMScheduler(**SD_CONFIG, gamma=gamma, first_gamma=first_gamma)
    scheduler.set_timesteps(4)
    expected = run_loop(scheduler)[-1]  # start noise seed 123, step generator seed 0

    def denoiser(x, t, cond):
        return toy_model(x, t[0])

    noise = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(123))
    got = sample_latents(
        denoiser, VPSchedule.from_config(scheduler.config), None, noise, scheduler.timesteps.tolist(),
        gamma, generator=torch.Generator().manual_seed(0), first_gamma=first_gamma,
    )  # fmt: skip
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
