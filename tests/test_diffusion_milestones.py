"""Milestones, segments, MLCD timestep sampling and the inference timestep tables."""

import pytest
import torch

from tlcm.diffusion.milestones import (
    StudentGrid,
    inference_milestone_indices,
    inference_timesteps,
    milestones,
    sample_segment_timesteps,
    segment_index,
)
from tlcm.diffusion.schedule import FlowSchedule, VPSchedule
from tlcm.diffusion.scheduler import TLCMFlowScheduler

SD_CONFIG = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}


def test_milestones_uniform():
    assert milestones(8, 1000).tolist() == [0, 125, 250, 375, 500, 625, 750, 875, 1000]
    assert milestones(4, 1000).tolist() == [0, 250, 500, 750, 1000]
    assert milestones().dtype == torch.long


@pytest.mark.parametrize(
    "num_segments, expected",
    [
        (3, [0, 333, 667, 1000]),  # 1000/3 = 333.3, 2000/3 = 666.7
        (6, [0, 167, 333, 500, 667, 833, 1000]),  # 166.7, 333.3, 500, 666.7, 833.3
        (7, [0, 143, 286, 429, 571, 714, 857, 1000]),  # 142.86, 285.71, 428.57, 571.43, 714.29, 857.14
    ],
)
def test_milestones_of_a_vp_schedule_round_k_t_over_m(num_segments, expected):
    """t_k = round(k T / M) (T = 1000) where k T / M is not an integer, from a VP schedule (its
    ``timestep_at``) and from T alike: truncated, M = 3 would put t_2 at 666 instead of 667."""
    schedule = VPSchedule(torch.linspace(0.99, 0.01, 1000))
    assert milestones(num_segments, schedule).tolist() == expected
    assert milestones(num_segments, 1000).tolist() == expected


def test_segment_index_half_open_segments():
    """Segment s is (t_s, t_{s+1}]: 125 is in segment 0, 126 in 1, 999 in 7; t = 0 -> 0."""
    t = torch.tensor([0, 1, 125, 126, 500, 501, 999])
    assert segment_index(t, milestones(8, 1000)).tolist() == [0, 0, 0, 1, 3, 4, 7]


def test_inference_timesteps_authors_table():
    """Candidates t_k - 1 = int(linspace(999, 0, 9))[:-1]; the authors' 1- to 8-step subsets."""
    assert inference_timesteps(8).tolist() == [999, 874, 749, 624, 499, 374, 249, 124]
    assert inference_timesteps(2).tolist() == [999, 499]
    assert inference_timesteps(3).tolist() == [999, 499, 124]
    assert inference_timesteps(4).tolist() == [999, 749, 499, 124]
    assert inference_timesteps(1).tolist() == [999]
    # 5-7 steps: the authors' tables too (docs/method.md), not "trailing" (walkthrough 9)
    assert inference_timesteps(5).tolist() == [999, 749, 499, 249, 124]
    assert inference_timesteps(6).tolist() == [999, 749, 499, 374, 249, 124]
    assert inference_timesteps(7).tolist() == [999, 749, 624, 499, 374, 249, 124]


def test_inference_timesteps_trailing():
    """k_i = M - floor(i M / n + 1/2): n = 3 -> k = [8, 5, 3]; n = 4 -> [8, 6, 4, 2]."""
    assert inference_timesteps(3, policy="trailing").tolist() == [999, 624, 374]
    assert inference_timesteps(4, policy="trailing").tolist() == [999, 749, 499, 249]
    assert inference_timesteps(5, policy="trailing").tolist() == [999, 749, 624, 374, 249]
    assert inference_milestone_indices(2, num_segments=4) == [4, 2]
    assert inference_timesteps(2, num_segments=4).tolist() == [999, 499]


@pytest.mark.parametrize("n", [0, 9])
def test_inference_timesteps_out_of_range(n):
    with pytest.raises(
        ValueError, match=rf"num_inference_steps must be in 1\.\.8 for M=8 milestones, got {n}"
    ):
        inference_timesteps(n)


def test_unknown_policy():
    with pytest.raises(ValueError, match="timestep policy must be one of"):
        inference_milestone_indices(4, policy="leading")


def test_sample_segment_timesteps_vp_ranges():
    """VP: t_m integer in (t_s, min(t_{s+1}, 999)], t_n = max(t_m - 20, t_s)."""
    schedule = VPSchedule.from_config(SD_CONFIG)
    ms = milestones(8, 1000)
    gen = torch.Generator().manual_seed(0)
    segments, t_m, t_n = sample_segment_timesteps(schedule, ms, 4000, skip=20, generator=gen)
    assert t_m.dtype == torch.long and t_n.dtype == torch.long
    lo, hi = ms[segments], ms[segments + 1].clamp(max=999)
    assert (t_m > lo).all() and (t_m <= hi).all() and (t_n >= lo).all()
    torch.testing.assert_close(t_n, torch.maximum(t_m - 20, lo))
    assert set(segments.tolist()) == set(range(8))
    top = t_m[segments == 7]
    assert top.max() <= 999 and top.min() >= 876 and len(set(top.tolist())) > 100


def test_sample_segment_timesteps_fixed_segments_flow():
    """Flow: real t_m in (t_s, t_{s+1}], up to T = 1000 in the top segment."""
    ms = milestones(8, 1000)
    segments = torch.tensor([0, 7] * 500)
    _, t_m, t_n = sample_segment_timesteps(FlowSchedule(), ms, 1000, skip=20, segments=segments)
    assert t_m.dtype == torch.float32
    assert (t_m[::2] > 0).all() and (t_m[::2] <= 125).all()
    assert (t_m[1::2] > 875).all() and (t_m[1::2] <= 1000).all()
    torch.testing.assert_close(t_n, torch.maximum(t_m - 20, ms[segments].float()))


def test_with_sampler_gamma_sets_every_move_first_gamma_only_the_first():
    """--gamma alone: every move (the run's first-move gamma is dropped); --first-gamma alone: the
    first move only; both: each; neither: the run's sampler; out of [0, 1]: ValueError."""
    run = StudentGrid(gamma=0.0, first_gamma=1.0)
    assert run.with_sampler() == run
    assert run.with_sampler(gamma=0.5) == StudentGrid(gamma=0.5)
    assert run.with_sampler(first_gamma=0.2) == StudentGrid(gamma=0.0, first_gamma=0.2)
    assert run.with_sampler(0.5, 0.7) == StudentGrid(gamma=0.5, first_gamma=0.7)
    assert run.describe_sampler() == "gamma 0, first move 1"
    with pytest.raises(ValueError, match="first_gamma must be in"):
        run.with_sampler(first_gamma=1.5)


def test_lattice_points_on_a_milestone_belong_to_the_segment_below():
    """Segments are (t_s, t_{s+1}], so is the lattice's share of them. Flow, shift 1, skip k = T / M
    = 125: the N = 8 lattice points are the milestones 125 i themselves, so segment s holds exactly
    one, its upper edge: t_m = t_{s+1} and t_n = max(t_m - 125, t_s) = t_s in every draw. VP,
    k = 1: the lattice is every integer 0..999, so t_m covers exactly t_s + 1..min(t_{s+1}, 999)."""
    ms = milestones(8, FlowSchedule())
    segments = torch.arange(8).repeat(50)
    gen = torch.Generator().manual_seed(0)
    _, t_m, t_n = sample_segment_timesteps(
        FlowSchedule(), ms, 400, skip=125, segments=segments, generator=gen, lattice=True
    )
    assert torch.equal(t_m, ms[segments + 1]) and torch.equal(t_n, ms[segments])
    vp, ms = VPSchedule.from_config(SD_CONFIG), milestones(8, 1000)
    segments = torch.tensor([0, 3, 7]).repeat(2000)
    _, t_m, _ = sample_segment_timesteps(vp, ms, 6000, skip=1, segments=segments, generator=gen, lattice=True)
    assert set(t_m[0::3].tolist()) == set(range(1, 126))
    assert set(t_m[1::3].tolist()) == set(range(376, 501))
    assert set(t_m[2::3].tolist()) == set(range(876, 1000))


def test_shown_steps_are_the_default_counts_up_to_m_inclusive():
    """Sample grids and evaluations show 1, 2, 4, 8 steps where they fit the grid: M = 8 shows all
    four (8 steps: every milestone), M = 4 stops at its own 4, M = 3 at 2, M = 1 shows the 1 step."""
    assert StudentGrid(num_milestones=8).shown_steps == (1, 2, 4, 8)
    assert StudentGrid(num_milestones=4, steps=2).shown_steps == (1, 2, 4)
    assert StudentGrid(num_milestones=3, steps=2).shown_steps == (1, 2)
    assert StudentGrid(num_milestones=1, steps=1).shown_steps == (1,)


def test_a_flow_students_training_grid_is_the_exported_schedulers_grid():
    """On a shifted flow schedule the student's grid inside training (``StudentGrid.timesteps``)
    is TLCMFlowScheduler's for every step count: real-valued timesteps T shift(k / M), e.g. shift 3,
    k = 7 of 8: 1000 * 2.625 / 2.75 = 954.54..., not an integer."""
    flow = FlowSchedule(shift=3.0)
    for n in range(1, 9):
        scheduler = TLCMFlowScheduler(shift=3.0)
        scheduler.set_timesteps(n)
        torch.testing.assert_close(StudentGrid(8, n).timesteps(n, flow), scheduler.timesteps)
    assert StudentGrid(8, 8).timesteps(8, flow)[1].item() == pytest.approx(1000 * 2.625 / 2.75)
