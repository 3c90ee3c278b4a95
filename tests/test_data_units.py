"""Units of the training path's data and model plumbing (red-team round 11; the text-embedding
store's are in tests/test_embeddings.py, beside its prompts and chunks): the teacher trajectory
cache (k = T/M, a prompt without trajectories refused, stale shards, the loss's skip), the frozen
base (frozen components, decode slices in output pixels, autocast in the weights' dtype), the score
registry's views, the unrelated prompts' draw and the wandb tracker."""

from __future__ import annotations

import json
import shutil
import sys
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_pipelines import SD_SCHEDULER

import tlcm.models.base
from tlcm.data import sha256_file
from tlcm.data.trajectories import CacheArgs, TrajectoryCache, build_cache, check_cache_args, trajectory_grid
from tlcm.diffusion.schedule import VPSchedule
from tlcm.errors import TLCMError
from tlcm.models.base import BaseModel


@pytest.fixture(scope="module")
def sd(tiny_sd_dir) -> BaseModel:
    return BaseModel.load(tiny_sd_dir)


# ---- teacher trajectory cache (tlcm/data/trajectories.py) ------------------------------------

TRAJ_PROMPTS = ["a red cube", "two blue spheres"]
M, K, W = 2, 250, 3.0


def test_a_skip_of_t_over_m_is_accepted_and_one_more_refused(tiny_sd_dir, tmp_path):
    """k = T/M (each segment one teacher jump, t_n = t_s) is the upper bound of trajectory_grid and
    of the CLI's checks; T/M + 1 is refused by both."""
    schedule = VPSchedule.from_config(SD_SCHEDULER)
    assert trajectory_grid(schedule, 2, 500) == [999, 500, 0]
    with pytest.raises(ValueError, match="skip must be in 1..500"):
        trajectory_grid(schedule, 2, 501)
    check_cache_args(CacheArgs(model=tiny_sd_dir, num_milestones=2, skip=500, out=tmp_path / "a"))
    with pytest.raises(TLCMError, match="--skip 501 must be in 1..500"):
        check_cache_args(CacheArgs(model=tiny_sd_dir, num_milestones=2, skip=501, out=tmp_path / "b"))


@pytest.fixture(scope="module")
def small_cache(sd, tmp_path_factory):
    """2 prompts x 1 trajectory, M = 2, k = 250, float32, one shard."""
    out = tmp_path_factory.mktemp("traj")
    build_cache(sd, TRAJ_PROMPTS, out, 1, M, K, W, seed=3, dtype="float32")
    return out


def test_a_cache_where_a_prompt_has_no_trajectory_is_refused(sd, small_cache, tmp_path):
    """Both rows relabelled as prompt 0 (manifest sha256 updated): prompt 1 has no trajectory to
    draw, so opening refuses the cache instead of handing prompt 1 another prompt's states."""
    folder = tmp_path / "copy"
    shutil.copytree(small_cache, folder)
    shard = folder / "shard-00000.safetensors"
    tensors = load_file(shard)
    save_file({"states": tensors["states"], "prompt_index": torch.zeros(2, dtype=torch.long)}, shard)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = sha256_file(shard)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TLCMError, match=r"samples per prompt differ \(expected >= 1 each, found \[2, 0\]\)"):
        TrajectoryCache.open(folder, sd, TRAJ_PROMPTS, M, K, W)


def test_a_rebuild_into_fewer_shards_removes_the_old_ones(sd, tmp_path):
    """Shards of 1 row (two files), then the same cache rebuilt in shards of 2 (one file): the
    second shard file of the first build is gone, and the folder opens."""
    out = tmp_path / "traj"
    build_cache(sd, TRAJ_PROMPTS, out, 1, M, K, W, shard_size=1, dtype="float32")
    assert sorted(p.name for p in out.glob("shard-*")) == [
        "shard-00000.safetensors",
        "shard-00001.safetensors",
    ]
    build_cache(sd, TRAJ_PROMPTS, out, 1, M, K, W, shard_size=2, dtype="float32")
    assert sorted(p.name for p in out.glob("shard-*")) == ["shard-00000.safetensors"]
    TrajectoryCache.open(out, sd, TRAJ_PROMPTS, M, K, W)


def test_the_mlcd_loss_requires_the_caches_milestones_and_skip(sd, small_cache):
    """``require`` (the MLCD loss's check) passes the cache's own M and k and refuses another of
    either, in one line naming what differs."""
    cache = TrajectoryCache.open(small_cache, sd, TRAJ_PROMPTS)
    cache.require(M, K)
    with pytest.raises(TLCMError, match="skip differs \\(expected 125 by the MLCD loss's skip, found 250\\)"):
        cache.require(M, 125)
    with pytest.raises(TLCMError, match="num_milestones differs"):
        cache.require(4, K)


# ---- the frozen base (tlcm/models/base.py) ---------------------------------------------------


def test_every_loaded_component_is_frozen_and_in_eval_mode(sd):
    """Denoiser, text encoder and VAE: no parameter asks for gradients, no module trains."""
    modules = {n: m for n, m in sd.pipe.components.items() if isinstance(m, torch.nn.Module)}
    assert {"unet", "text_encoder", "vae"} <= set(modules)
    for name, module in modules.items():
        assert not any(p.requires_grad for p in module.parameters()), name
        assert not any(m.training for m in module.modules()), name


def test_decode_slices_count_output_pixels(tiny_sd_dir, monkeypatch):
    """DECODE_PIXELS counts image pixels (latent pixels x f^2): a budget of two images decodes 5
    latents in 3 VAE calls, the same images as one call."""
    base = BaseModel.load(tiny_sd_dir)
    latents = torch.randn(5, *base.latent_shape, generator=torch.Generator().manual_seed(0))
    whole = base.decode(latents)
    f = base.pipe.vae_scale_factor
    monkeypatch.setattr(tlcm.models.base, "DECODE_PIXELS", 2 * latents.shape[-2] * latents.shape[-1] * f * f)
    calls, decode = [], base.pipe.vae.decode
    monkeypatch.setattr(
        base.pipe.vae, "decode", lambda z, *a, **k: calls.append(len(z)) or decode(z, *a, **k)
    )
    sliced = base.decode(latents)
    assert calls == [2, 2, 1]
    torch.testing.assert_close(sliced, whole, rtol=1e-5, atol=1e-5)


def test_autocast_is_in_the_frozen_weights_dtype(tiny_sd_dir, sd):
    """fp16 frozen weights: sampling and decoding autocast to fp16 (not bf16); fp32: no autocast."""
    half = BaseModel.load(tiny_sd_dir, dtype=torch.float16)
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with half.autocast():
        assert torch.mm(a, b).dtype == torch.float16
    with sd.autocast():
        assert torch.mm(a, b).dtype == torch.float32


# ---- scores and rewards ----------------------------------------------------------------------


def test_a_views_names_and_length_are_its_uses_only():
    """A metric-only score is not among the rewards (iteration, length, the unknown-reward list)."""
    from tlcm.rewards import build_reward
    from tlcm.scoring import METRICS, REWARDS, SCORES, register_score

    rewards, metrics = list(REWARDS), len(METRICS)
    try:
        register_score("redteam11-probe", "metric")(lambda weights, device: None)
        assert list(REWARDS) == rewards and len(REWARDS) == len(rewards)
        assert "redteam11-probe" in list(METRICS) and len(METRICS) == metrics + 1
        with pytest.raises(ValueError, match="unknown reward") as err:
            build_reward("redteam11-probe", None)
        assert "redteam11-probe" not in str(err.value).split("known:")[1]
    finally:
        SCORES.pop("redteam11-probe", None)


def test_unrelated_prompts_are_uniform_over_the_other_prompts():
    """Three distinct prompts: the partner of prompt 0 is prompt 1 or prompt 2, each about half of
    3000 draws (a shift drawn in 0..n-1 would pick prompt 1 two times in three)."""
    from tlcm.rewards import shifted_prompts

    g = torch.Generator().manual_seed(0)
    partners = [shifted_prompts(["a", "b", "c"], g)[0] for _ in range(3000)]
    assert set(partners) == {"b", "c"}
    assert abs(partners.count("b") / 3000 - 0.5) < 0.04


# ---- trackers (tlcm/trackers.py) -------------------------------------------------------------


@pytest.fixture
def fake_wandb(monkeypatch):
    """A fake wandb module: records each run's init arguments, logs (values, step) and exit code."""
    runs = []

    def init(**kwargs):
        run = SimpleNamespace(kwargs=kwargs, logged=[], exit_codes=[])
        run.log = lambda values, step=None: run.logged.append((step, values))
        run.finish = lambda exit_code: run.exit_codes.append(exit_code)
        runs.append(run)
        return run

    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(init=init, Settings=dict))
    return runs


def test_wandb_logs_at_the_global_step(fake_wandb, tmp_path):
    """The sink passes metrics.jsonl's global step (here 7, then 9: a skipped record) to wandb."""
    from tlcm.trackers import WandbSink

    sink = WandbSink(tmp_path, {})
    sink.log({"loss": 0.5}, step=7)
    sink.log({"loss": 0.25}, step=9)
    assert fake_wandb[0].logged == [(7, {"loss": 0.5}), (9, {"loss": 0.25})]


def test_a_tracker_named_twice_opens_once_and_a_failed_open_closes_as_failed(fake_wandb, tmp_path):
    from tlcm.trackers import open_sinks

    assert len(open_sinks(("wandb", "wandb"), tmp_path, None, None)) == 1 and len(fake_wandb) == 1
    with pytest.raises(ValueError, match="unknown tracker 'nope'"):
        open_sinks(("wandb", "nope"), tmp_path, None, None)
    assert fake_wandb[1].exit_codes == [1]  # the wandb run opened first is closed as failed
