"""The consistency losses' settings that the paper pins and ``validate`` must let through or refuse
before a run starts (arXiv 2406.05768, docs/method.md "Stage 1" and "Stage 2"): a refusal here is
one line at startup, instead of a failure deep inside the first training step."""

from __future__ import annotations

import pytest
import torch

from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.latent_lpips import LatentLPIPS, save_latent_lpips
from tlcm.losses.lcd import LCD, LCDConfig
from tlcm.losses.mlcd import MLCD, MLCDConfig


def test_lcd_accepts_one_teacher_substep_and_refuses_none():
    """p = teacher_substeps is the paper's Table 3 ablation over p = 1, 2, 3, 4: p = 1 (one
    CFG-DDIM step t_m -> t_n) is valid; p = 0 (no teacher step: x_tn = x_tm) is refused."""
    for p in (1, 2, 3, 4):
        LCDConfig(teacher_substeps=p).validate(1000, StudentGrid())
    with pytest.raises(ValueError, match=r"teacher_substeps \(p\) must be >= 1, got 0"):
        LCDConfig(teacher_substeps=0).validate(1000, StudentGrid())


def test_mlcd_per_sample_guidance_is_refused_with_mds_and_cache_states():
    """guidance_range draws a w per sample; MDS states advance only some samples per round (M - s
    steps each), which a per-sample w of the whole batch cannot guide, and a trajectory cache's
    x_{t_n} were made at its one w (the drawn w would go unused: walkthrough 9 found the loss
    identical with and without a range), so both are refused at validation. The other states take
    it, and "mds" / "cache" take the fixed w (0, 0)."""
    grid = StudentGrid()
    for states in ("mds", "cache"):
        with pytest.raises(
            ValueError, match=f'guidance_range needs states "data" or "single_jump", not "{states}"'
        ):
            MLCDConfig(states=states, guidance_range=(2.0, 4.0)).validate(1000, grid)
        MLCDConfig(states=states).validate(1000, grid)
    for states in ("single_jump", "data"):
        MLCDConfig(states=states, guidance_range=(2.0, 4.0)).validate(1000, grid)


def test_mlcd_lattice_timesteps_are_refused_with_cache_states():
    """A trajectory cache serves the t_m of its build grid (steps of skip from each milestone), so
    "lattice" with "cache" would go unused (walkthrough 10: the loss was identical with and without)."""
    grid = StudentGrid()
    with pytest.raises(ValueError, match='timesteps "lattice" would go unused with states "cache"'):
        MLCDConfig(states="cache", timesteps="lattice").validate(1000, grid)
    MLCDConfig(states="cache").validate(1000, grid)
    MLCDConfig(states="data", timesteps="lattice").validate(1000, grid)


def test_mlcd_and_lcd_measure_with_their_own_latent_lpips_weights(tmp_path):
    """distance "latent_lpips" with distance_weights FILE: the loss's distance is the network saved
    in FILE (a random 4-channel one, heads in [0.1, 1]): d(a, b) equals that network's, not the
    shipped miniature weights' (a VAE of other latents needs its own file, docs/method.md "Latent
    LPIPS")."""
    torch.manual_seed(0)
    net = LatentLPIPS(4, (2, 3, 4, 4, 5))
    for lin in net.lins:
        torch.nn.init.uniform_(lin.weight, 0.1, 1.0)
    path = tmp_path / "w.safetensors"
    save_latent_lpips(net, path)
    a, b = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    want = net(a, b)
    mlcd = MLCD(MLCDConfig(distance="latent_lpips", distance_weights=str(path)), torch.nn.Linear(1, 1))
    lcd = LCD(LCDConfig(distance="latent_lpips", distance_weights=str(path)))
    shipped = LCD(LCDConfig(distance="latent_lpips"))
    assert not torch.allclose(shipped.distance(a, b), want)
    for loss in (mlcd, lcd):
        torch.testing.assert_close(loss.distance(a, b), want)


def _student(x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
    """A toy eps-prediction f(x, t) = 0.5 x + t / 1000."""
    return 0.5 * x + t.float().view(-1, 1, 1, 1) / 1000


def _mlcd_pair(lowest_edge: str, t_m: torch.Tensor, t_n: torch.Tensor, t_s: torch.Tensor):
    """MLCD's loss and ``ConsistencyPair`` for given states (the cache path: no draws) on SD's VP
    schedule with the ``_student``; also x_tm, x_tn and the schedule."""
    from tlcm.conditioning import Conditioning
    from tlcm.data.states import TrajectoryStates
    from tlcm.diffusion.schedule import VPSchedule
    from tlcm.losses.base import StepContext
    from tlcm.losses.shared import CONSISTENCY_PAIR

    sd = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
    schedule = VPSchedule.from_config(sd)
    gen = torch.Generator().manual_seed(0)
    x_tm, x_tn = torch.randn(2, 3, 4, 8, 8, generator=gen)
    ctx = StepContext.standalone(
        student=_student, teacher=None, schedule=schedule, latent_shape=(4, 8, 8),
        cond=Conditioning(torch.zeros(3, 2, 4)), generator=gen,
        states=TrajectoryStates(x_tm, t_m, t_n, t_s, x_tn),
    )  # fmt: skip
    config = MLCDConfig(states="cache", segments=1, skip=20, lowest_edge=lowest_edge)
    loss = MLCD(config, torch.nn.Linear(1, 1))(ctx)["mlcd"]
    return loss, ctx.shared(CONSISTENCY_PAIR, lambda: None), x_tm, x_tn, schedule


def test_mlcd_lowest_edge_clean_maps_the_lowest_segment_to_the_x0_prediction():
    """lowest_edge "clean" (LCM / TCD / Hyper-SD's last stage: the target is f itself): the lowest
    segment's branches are the student's x0 predictions at t_m and t_n (walkthrough 10: with the
    discrete edge t = 0 they keep 0.22 of x_t at t = 19); another segment's edge stays. "discrete"
    is DDIM to t = 0: alpha_0 x0 + sigma_0 f."""
    t_m, t_n, t_s = torch.tensor([19, 499, 700]), torch.tensor([0, 479, 680]), torch.tensor([0, 0, 500])
    loss, pair, x_tm, x_tn, schedule = _mlcd_pair("clean", t_m, t_n, t_s)
    x0_m, x0_n = (
        schedule.to_x0(_student(x_tm, t_m), x_tm, t_m),
        schedule.to_x0(_student(x_tn, t_n), x_tn, t_n),
    )
    torch.testing.assert_close(pair.online[:2], x0_m[:2])
    torch.testing.assert_close(pair.target[:2], x0_n[:2])
    assert pair.t_s.tolist() == [-1, -1, 500]
    torch.testing.assert_close(loss, ((pair.online - pair.target) ** 2).mean())
    _, discrete, _, _, _ = _mlcd_pair("discrete", t_m, t_n, t_s)
    assert discrete.t_s.tolist() == [0, 0, 500]
    torch.testing.assert_close(discrete.online[2], pair.online[2])  # not the lowest segment: the same
    zero = torch.zeros(2, dtype=torch.long)
    a0, s0 = schedule.alpha(zero).view(-1, 1, 1, 1), schedule.sigma(zero).view(-1, 1, 1, 1)
    torch.testing.assert_close(discrete.online[:2], a0 * x0_m[:2] + s0 * _student(x_tm, t_m)[:2])
    with pytest.raises(ValueError, match='lowest_edge "clean" needs target_time "edge"'):
        MLCDConfig(lowest_edge="clean", target_time="random").validate(1000, StudentGrid())
