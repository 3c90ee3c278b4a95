"""General components the method zoo needs (docs/zoo-methods.md): LCM's DDIM lattice of timesteps
and the teacher guided with a per-sample w. (MLCD's real-image states, TCD's random target time and
per-sample w inside the loss: tests/test_objectives.py section 7.)"""

from __future__ import annotations

import pytest
import torch

from tlcm.conditioning import Conditioning
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import milestones, sample_segment_timesteps
from tlcm.diffusion.schedule import FlowSchedule, VPSchedule

SD = VPSchedule(torch.linspace(0.9991, 0.0047, 1000))


def test_lattice_timesteps_are_lcms_ddim_solver_points():
    """One segment, k = 20: t_m ranges over exactly {19, 39, ..., 999} (diffusers' DDIMSolver with
    50 steps), t_n = max(t_m - 20, 0); M = 4 segments: every t_m is a lattice point inside its
    segment (t_s, t_{s+1}], and every point of the segment is drawn."""
    gen = torch.Generator().manual_seed(0)
    _, t_m, t_n = sample_segment_timesteps(SD, milestones(1, SD), 4000, 20, generator=gen, lattice=True)
    assert set(t_m.tolist()) == set(range(19, 1000, 20))
    assert torch.equal(t_n, (t_m - 20).clamp(min=0))
    grid = milestones(4, SD)
    seg, t_m, t_n = sample_segment_timesteps(SD, grid, 4000, 20, generator=gen, lattice=True)
    for s in range(4):
        got = set(t_m[seg == s].tolist())
        lo, hi = int(grid[s]), min(int(grid[s + 1]), 999)
        assert got == {t for t in range(19, 1000, 20) if lo < t <= hi}, s
    assert torch.equal(t_n, torch.maximum(t_m - 20, grid[seg]))


def test_flow_lattice_is_the_shifted_grid():
    """On a flow schedule the lattice is timestep_at(i / N) (N = T / k = 50): t_m takes those values,
    inside its segment."""
    flow = FlowSchedule(shift=3.0)
    gen = torch.Generator().manual_seed(0)
    grid = milestones(2, flow)
    seg, t_m, _ = sample_segment_timesteps(flow, grid, 2000, 20, generator=gen, lattice=True)
    points = flow.timestep_at(torch.arange(1, 51, dtype=torch.float64) / 50).float()
    assert torch.isin(t_m.float(), points).all() and len(set(t_m.tolist())) == 50
    assert ((grid[seg] < t_m) & (t_m <= grid[seg + 1])).all()


def test_per_sample_guidance_equals_each_sample_guided_alone():
    """Guided with a (B,) scale: row i equals the teacher guided with the float w_i, in one call of
    2B; a scale of the wrong length is refused."""
    calls = []

    def denoiser(x, t, cond):
        calls.append(len(x))
        return torch.tanh(x) * (1 + cond.prompt_embeds[:, :1, :1, None]) + 0.01 * t.view(-1, 1, 1, 1)

    x, t = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(1)), torch.tensor([5, 9, 2])
    cond = Conditioning(torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1))
    uncond = Conditioning(torch.zeros(1, 1, 1))
    w = torch.tensor([1.5, 4.0, 7.0])
    out = Guided(denoiser, w, uncond)(x, t, cond)
    assert calls == [6]
    for i in range(3):
        alone = Guided(denoiser, float(w[i]), uncond)(x[i : i + 1], t[i : i + 1], cond[i : i + 1])
        torch.testing.assert_close(out[i : i + 1], alone)
    with pytest.raises(ValueError, match="per-sample guidance"):
        Guided(denoiser, w[:2], uncond)(x, t, cond)


def test_per_sample_guidance_as_an_embedded_input():
    """A guidance-distilled conditioning takes each sample's w as its guidance input (one call of B)."""
    seen = []

    def denoiser(x, t, cond):
        seen.append(cond.guidance.clone())
        return x

    cond = Conditioning(torch.zeros(2, 1, 1), guidance=torch.full((2,), 3.5))
    Guided(denoiser, torch.tensor([2.0, 6.0]))(torch.zeros(2, 1, 1, 1), torch.zeros(2), cond)
    assert torch.equal(seen[0], torch.tensor([2.0, 6.0]))
