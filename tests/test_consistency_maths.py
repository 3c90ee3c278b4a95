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
