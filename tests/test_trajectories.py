"""Teacher trajectory cache: states equal the teacher's CFG-DDIM by hand, MLCD from the cache makes
zero teacher calls, corrupted or mismatched caches are refused in one line, sampling is exact."""

import json
import shutil
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
import tyro
from device_discipline import device_discipline  # noqa: F401  (every test runs under DeviceDiscipline)
from diffusers import DDPMScheduler, StableDiffusionPipeline
from engine_helpers import TEST_DEVICE, shrink
from family_helpers import registered_copy
from tiny_pipelines import SD_SCHEDULER

from recipes import PRESETS
from tlcm.data.trajectories import CacheArgs, TrajectoryCache, build_cache, main, trajectory_grid
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import StudentGrid
from tlcm.diffusion.schedule import VPSchedule
from tlcm.engine import Trainer
from tlcm.errors import TLCMError
from tlcm.losses.base import StepContext
from tlcm.losses.mlcd import MLCDConfig
from tlcm.models.base import BaseModel
from tlcm.models.families.sd import StableDiffusion

PROMPTS = ["a red cube", "two blue spheres"]
M, K, W = 2, 250, 3.0
"""Two segments, skip 250: grid [999, 749, 500, 250, 0] (4 teacher steps per trajectory)."""


@pytest.fixture(scope="module")
def base(tiny_sd_dir):
    return BaseModel.load(tiny_sd_dir)


@pytest.fixture(scope="module")
def cache_dir(base, tmp_path_factory):
    """2 prompts x 3 samples in float32, shards of 4 rows (two shards), teacher batches of 2."""
    out = tmp_path_factory.mktemp("cache")
    build_cache(base, PROMPTS, out, 3, M, K, W, seed=7, shard_size=4, batch_size=2, dtype="float32")
    return out


def test_grid_holds_every_milestone_and_skip_points():
    schedule = VPSchedule.from_config(SD_SCHEDULER)
    assert trajectory_grid(schedule, 2, 250) == [999, 749, 500, 250, 0]
    grid = trajectory_grid(schedule, 8, 20)
    top, second = [999, 979, 959, 939, 919, 899, 879], [875, 855, 835, 815, 795, 775, 755]
    assert grid[:14] == top + second and grid[-8:] == [125, 105, 85, 65, 45, 25, 5, 0] and len(grid) == 57
    assert set(range(125, 1000, 125)) <= set(grid)
    with pytest.raises(ValueError, match="skip must be in 1..125"):
        trajectory_grid(schedule, 8, 126)


def test_cached_states_equal_a_direct_teacher_recomputation(base, cache_dir):
    """Row 4 = prompt 1, sample 1. By hand: x_999 = randn of seed 7 * 1_000_003 + 4; each step
    eps = eps_u + w (eps_c - eps_u), x0 = (x - s_t eps) / a_t, x_s = a_s x0 + s_s eps with
    a = sqrt(alphas_cumprod) of diffusers' own DDPM table (t = 0 included: a_0 < 1)."""
    cache = TrajectoryCache.open(cache_dir, base, PROMPTS, M, K, W)
    assert cache.manifest["grid"] == [999, 749, 500, 250, 0] and cache.manifest["teacher_unet_calls"] == 3 * 4
    states = cache._slices[1][0]  # shard 1 holds rows 4, 5
    assert states.shape == (5, *base.latent_shape)
    assert cache._handles[1].get_tensor("prompt_index").tolist() == [1, 1]
    x = torch.randn(base.latent_shape, generator=torch.Generator().manual_seed(7 * 1_000_003 + 4))[None]
    torch.testing.assert_close(states[0:1], x, rtol=0, atol=0)
    acp = DDPMScheduler(**SD_SCHEDULER).alphas_cumprod.double()
    cond, uncond = base.encode([PROMPTS[1]])
    with torch.no_grad():
        for g, (t, s) in enumerate([(999, 749), (749, 500), (500, 250), (250, 0)]):
            x_in = states[g : g + 1]  # one step from the stored state must land on the next stored one
            eps_c = base.net(x_in, torch.tensor([t]), encoder_hidden_states=cond.prompt_embeds).sample
            eps_u = base.net(x_in, torch.tensor([t]), encoder_hidden_states=uncond.prompt_embeds).sample
            eps = (eps_u + W * (eps_c - eps_u)).double()
            x0 = (x_in.double() - (1 - acp[t]).sqrt() * eps) / acp[t].sqrt()
            step = (acp[s].sqrt() * x0 + (1 - acp[s]).sqrt() * eps).float()
            torch.testing.assert_close(states[g + 1 : g + 2], step, rtol=1e-4, atol=1e-4)


def _context(base, cache, teacher, idx, num_milestones=M):
    """MLCD's M is the student grid's (q = 1: MLCD does not read it)."""
    cond, uncond = base.encode([PROMPTS[i] for i in idx.tolist()])
    return StepContext.standalone(
        student=base.denoiser(),
        teacher=Guided(teacher, W, uncond[:1]),
        schedule=base.schedule,
        cond=cond,
        generator=torch.Generator().manual_seed(0),
        latent_shape=base.latent_shape,
        prompt_index=idx,
        trajectories=cache,
        grid=StudentGrid(num_milestones=num_milestones, steps=1),
    )


def test_mlcd_from_the_cache_makes_zero_teacher_calls(base, cache_dir):
    cache, calls, teacher = TrajectoryCache.open(cache_dir, base, PROMPTS, M, K, W), [], base.denoiser()

    def counting_teacher(x, t, cond):
        calls.append(len(x))
        return teacher(x, t, cond)

    idx = torch.tensor([0, 1, 1, 0])
    holder = SimpleNamespace(net=base.net, base=base)  # what build() reads of a Student
    from_cache = MLCDConfig(skip=K, states="cache").build(holder)
    loss = from_cache(_context(base, cache, counting_teacher, idx))["mlcd"]
    assert calls == [] and torch.isfinite(loss)
    on_the_fly = MLCDConfig(skip=K, states="mds").build(holder)
    on_the_fly(_context(base, cache, counting_teacher, idx))
    assert len(calls) >= 2  # on the fly: >= 1 MDS step + 1 teacher step, each a CFG pair (batch 2B)
    with pytest.raises(
        TLCMError,
        match="num_milestones differs \\(expected 4 by --recipes.student.grid.num-milestones, found 2\\)",
    ):
        from_cache(_context(base, cache, teacher, idx, num_milestones=4))
    with pytest.raises(TLCMError, match="skip differs \\(expected 20 by the MLCD loss's skip, found 250\\)"):
        MLCDConfig(skip=20, states="cache").build(holder)(_context(base, cache, teacher, idx))
    with pytest.raises(TLCMError, match="trajectory-cache"):
        MLCDConfig(states="cache").build(holder)(_context(base, None, teacher, idx))
    # a loss with its own segments (M = 2, the cache's) reads the cache whatever the student grid's M
    own_segments = MLCDConfig(skip=K, states="cache", segments=M).build(holder)
    assert torch.isfinite(own_segments(_context(base, cache, teacher, idx, num_milestones=4))["mlcd"])


def _refusal(folder, base, prompts=PROMPTS, m=M, k=K, w=W) -> str:
    with pytest.raises(TLCMError) as err:
        TrajectoryCache.open(folder, base, prompts, m, k, w)
    message = str(err.value)
    assert "\n" not in message and "rebuild with python -m tlcm.data.trajectories" in message
    return message


def test_corrupted_or_mismatched_caches_are_refused(base, cache_dir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(cache_dir, folder)
    assert "num_milestones differs (expected 4, found 2)" in _refusal(folder, base, m=4)
    assert "skip differs (expected 20, found 250)" in _refusal(folder, base, k=20)
    assert "guidance_scale differs (expected 8.0, found 3.0)" in _refusal(folder, base, w=8.0)
    message = _refusal(folder, base, prompts=[PROMPTS[0], "two green spheres"])
    assert "prompts differs" in message and "'two green spheres'" in message
    assert "expected 3 prompts" in _refusal(folder, base, prompts=[*PROMPTS, "a third"])
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "teacher_fingerprint": "0" * 64}))
    assert "teacher_fingerprint differs" in _refusal(folder, base)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    shard = folder / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-10:] = bytes(b ^ 0xFF for b in data[-10:])
    shard.write_bytes(bytes(data))
    message = _refusal(folder, base)
    assert "shard-00001.safetensors: corrupted: sha256 differs" in message
    shard.unlink()
    assert "shard-00001.safetensors: shard listed in manifest.json is missing" in _refusal(folder, base)
    (folder / "manifest.json").unlink()
    assert "unreadable manifest" in _refusal(folder, base)


def test_sampling_is_deterministic_and_consistent_with_the_grid(base, cache_dir):
    cache = TrajectoryCache.open(cache_dir, base, PROMPTS, M, K, W)
    idx = torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])
    first = cache.sample(idx, torch.Generator().manual_seed(3))
    again = cache.sample(idx, torch.Generator().manual_seed(3))
    for key in ("x_tm", "t_m", "t_n", "t_s", "x_tn"):
        torch.testing.assert_close(getattr(first, key), getattr(again, key), rtol=0, atol=0)
    grid = cache.manifest["grid"]
    times = zip(first.t_m.tolist(), first.t_n.tolist(), first.t_s.tolist(), strict=True)
    for t_m, t_n, t_s in times:
        assert t_m in (999, 749, 500, 250) and t_n == grid[grid.index(t_m) + 1]
        assert t_s == (500 if t_m > 500 else 0) and t_s < t_m and first.t_m.dtype == torch.long
    assert first.x_tm.shape == (8, *base.latent_shape) and first.x_tm.dtype == torch.float32
    other = cache.sample(idx, torch.Generator().manual_seed(4))
    assert not torch.equal(first.x_tm, other.x_tm)
    # each sample's pair is a stored trajectory of ITS prompt (rows p * 3 .. p * 3 + 2) at t_m, t_n
    rows = [cache._slices[0][r] for r in range(4)] + [cache._slices[1][r] for r in range(2)]
    for b, p in enumerate(idx.tolist()):
        at = grid.index(int(first.t_m[b]))
        assert any(
            torch.equal(rows[r][at], first.x_tm[b]) and torch.equal(rows[r][at + 1], first.x_tn[b])
            for r in range(3 * p, 3 * p + 3)
        ), (b, p)


def test_cli_builds_a_float16_cache_and_training_uses_it(base, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    args = tyro.cli(
        CacheArgs,
        args=[
            "--model",
            str(base.path),
            "--prompts",
            str(prompts),
            "--out",
            str(tmp_path / "cache"),
            "--samples-per-prompt",
            "2",
            "--num-milestones",
            "2",
            "--skip",
            "250",
            "--guidance-scale",
            "3.0",
            "--device",
            TEST_DEVICE,  # CUDA (benchmarks/gpu_tests.sh): the teacher in bf16 under autocast
        ],
    )
    manifest = main(args)
    out = capsys.readouterr().out
    assert "2 prompts x 2 trajectories x 5 states" in out and "teacher UNet calls: 4" in out
    assert manifest["dtype"] == "float16"
    recipe = shrink(PRESETS["mlcd"], base.path, tmp_path / "run", steps=1)
    mlcd = replace(recipe.phases["mlcd"].losses["mlcd"], skip=K, states="cache")
    recipe = replace(
        recipe,
        model=replace(recipe.model, guidance_scale=W),
        student=replace(recipe.student, grid=StudentGrid(num_milestones=M, steps=M)),
        data=replace(recipe.data, prompts=prompts, trajectory_cache=tmp_path / "cache"),
        phases={"mlcd": replace(recipe.phases["mlcd"], losses={"mlcd": mlcd})},
    )
    trainer, calls = Trainer(recipe), []
    teacher = trainer.student.teacher
    trainer.student.teacher = lambda: lambda x, t, c: calls.append(1) or teacher()(x, t, c)
    run = trainer.run()
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert calls == [] and torch.isfinite(torch.tensor(record["mlcd"])) and run.state.global_step == 1
    assert record["global_step"] == 1 and "nonfinite" not in record


def test_a_cache_with_an_older_fingerprint_is_refused_saying_how_to_rebuild(base, cache_dir, tmp_path):
    """The family fingerprints every component that determines the outputs ("<family>:<sha256>");
    a cache fingerprinted before that (a bare sha256 over unet/, text_encoder*/, the scheduler) is
    refused in one line that says why and how to rebuild, not reused."""
    folder = tmp_path / "old"
    shutil.copytree(cache_dir, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["teacher_fingerprint"].startswith("sd15:")
    (folder / "manifest.json").write_text(json.dumps({**manifest, "teacher_fingerprint": "ab" * 32}))
    message = _refusal(folder, base)  # one line with "rebuild with python -m tlcm.data.trajectories"
    assert "teacher_fingerprint differs" in message and "made by an older tlcm" in message
    assert f"--model {base.path} --out {folder}" in message  # the run's prompt file: none (miniature)


def test_a_failure_to_encode_the_prompts_leaves_no_cache_folder(base, tmp_path, monkeypatch):
    """The prompts are encoded before --out is made: a failure there (out of memory, a tokenizer
    error) leaves no empty folder behind."""

    def fail(prompts):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(base, "encode", fail)
    with pytest.raises(RuntimeError, match="out of memory"):
        build_cache(base, PROMPTS, tmp_path / "new", 1, M, K, W, dtype="float32")
    assert not (tmp_path / "new").exists()


def test_sampling_reaches_every_segment_grid_pair_and_trajectory(base, cache_dir):
    """The draw is uniform over segments, grid points and the prompt's trajectories, so over 200
    draws of prompt 1 (grid [999, 749, 500, 250, 0], M = 2: segment 1 holds t_m 999 and 749 above
    t_s = 500, segment 0 holds 500 and 250 above t_s = 0; 3 trajectories, rows 3..5) every
    (t_m, t_n, t_s) of the grid and every trajectory of the prompt appears (each missed with
    probability at most (3/4)^200), and nothing else: the highest-noise segment is trained too."""
    cache = TrajectoryCache.open(cache_dir, base, PROMPTS, M, K, W)
    drawn = cache.sample(torch.ones(200, dtype=torch.long), torch.Generator().manual_seed(0))
    times = set(zip(drawn.t_m.tolist(), drawn.t_n.tolist(), drawn.t_s.tolist(), strict=True))
    assert times == {(999, 749, 500), (749, 500, 500), (500, 250, 0), (250, 0, 0)}
    rows = [cache._slices[0][3]] + [cache._slices[1][r] for r in (0, 1)]  # shards of 4 rows: 3 | 4, 5
    grid = cache.manifest["grid"]
    used = {
        next(r for r, row in enumerate(rows) if torch.equal(row[grid.index(int(t))], x))
        for x, t in zip(drawn.x_tm, drawn.t_m, strict=True)
    }
    assert used == {0, 1, 2}


def test_the_rebuild_command_names_the_runs_prompt_file(base, cache_dir, tmp_path):
    """The refusal's rebuild command is pasted into a shell: it names the run's prompt file (it
    printed a literal "--prompts <prompt file>", which bash reads as a redirection), and the MLCD
    loss's refusal of another M / k (``require``) names it too."""
    prompts = tmp_path / "my-prompts.txt"
    with pytest.raises(
        TLCMError, match=f"--model {base.path} --prompts {prompts} --out {cache_dir} --num-milestones 4"
    ):
        TrajectoryCache.open(cache_dir, base, PROMPTS, 4, K, W, prompt_file=prompts)
    cache = TrajectoryCache.open(cache_dir, base, PROMPTS, M, K, W, prompt_file=prompts)
    with pytest.raises(
        TLCMError, match=f"--prompts {prompts} --out {cache_dir} --num-milestones {M} --skip 20"
    ):
        cache.require(M, 20)
    assert "<" not in _refusal(cache_dir, base, m=4)


class _TruncatingPipeline(StableDiffusionPipeline):
    pass


class _Truncating(StableDiffusion):
    """SD whose prompts are cut to max_sequence_length tokens (default 77): a VP family whose
    encoding length is a flag, as PixArt's T5 (walkthrough 11)."""

    name = tag = "traj-truncating"
    pipeline_name = "TrajTruncatingPipeline"

    @property
    def pipeline(self):
        return _TruncatingPipeline

    def encode(self, pipe, prompts, device, max_sequence_length, latent_shape):
        cut = lambda c: replace(c, prompt_embeds=c.prompt_embeds[:, : max_sequence_length or 77])  # noqa: E731
        return tuple(map(cut, super().encode(pipe, prompts, device, max_sequence_length, latent_shape)))


@pytest.fixture
def truncating_dir(tiny_sd_dir, tmp_path):
    """The tiny SD pipeline as a ``_Truncating`` family's folder (the family registered for the test)."""
    with registered_copy(tiny_sd_dir, tmp_path / "truncating", _Truncating()) as folder:
        yield folder


def test_a_cache_encoded_to_another_prompt_length_is_refused_and_another_dtype_noted(
    base, cache_dir, truncating_dir, tmp_path, capfd
):
    """A cache records its teacher's prompt length in tokens and weight dtype (walkthrough 9's gap):
    one made at length 8 is refused by a run at 12 (its rebuild command names --max-sequence-length
    12) and opens at 8; a cache made by bf16 teacher weights opens in an fp32 run with one line on
    stderr naming both and the flag that matches, and none when they match."""
    short = BaseModel.load(truncating_dir, max_sequence_length=8)
    build_cache(short, PROMPTS, tmp_path / "t8", 1, M, K, W, dtype="float32")
    manifest = json.loads((tmp_path / "t8" / "manifest.json").read_text())
    assert manifest["prompt_tokens"] == 8 and manifest["teacher_dtype"] == "float32"
    TrajectoryCache.open(tmp_path / "t8", short, PROMPTS, M, K, W)
    longer = BaseModel.load(truncating_dir, max_sequence_length=12)
    with pytest.raises(TLCMError) as err:
        TrajectoryCache.open(tmp_path / "t8", longer, PROMPTS, M, K, W)
    message = str(err.value)
    assert "prompt_tokens differs (expected 12, this run's prompt encoding, found 8)" in message
    assert message.endswith(f"--out {tmp_path / 't8'} --num-milestones {M} --skip {K} --guidance-scale {W} "
                            "--max-sequence-length 12")  # fmt: skip
    capfd.readouterr()
    TrajectoryCache.open(cache_dir, base, PROMPTS, M, K, W)
    assert capfd.readouterr().err == ""  # fp32 cache, fp32 run
    half = BaseModel.load(base.path, dtype=torch.bfloat16)
    build_cache(half, PROMPTS, tmp_path / "bf16", 1, M, K, W, dtype="float32")
    TrajectoryCache.open(tmp_path / "bf16", base, PROMPTS, M, K, W)
    said = " ".join(capfd.readouterr().err.split())
    assert f"trajectory cache {tmp_path / 'bf16'} was made by the teacher in bfloat16, this run's" in said
    assert "teacher weights are float32" in said and "rebuild with --frozen-dtype fp32 to match" in said
    TrajectoryCache.open(tmp_path / "bf16", half, PROMPTS, M, K, W)
    assert capfd.readouterr().err == ""


def test_the_cache_cli_loads_the_teacher_in_the_frozen_dtype_and_prompt_length_asked(
    truncating_dir, tmp_path
):
    """--frozen-dtype and --max-sequence-length load the teacher as the run's flags of those names
    do; the manifest records what the teacher ran in. A length below 1 is refused in one line."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    flags = ["--model", str(truncating_dir), "--prompts", str(prompts), "--out", str(tmp_path / "c"),
             "--samples-per-prompt", "1", "--num-milestones", "2", "--skip", "250",
             "--device", "cpu"]  # fmt: skip
    asked = ["--frozen-dtype", "bf16", "--max-sequence-length", "6"]
    manifest = main(tyro.cli(CacheArgs, args=[*flags, *asked]))
    assert manifest["teacher_dtype"] == "bfloat16" and manifest["prompt_tokens"] == 6
    assert main(tyro.cli(CacheArgs, args=flags))["teacher_dtype"] == "float32"  # auto on the CPU
    with pytest.raises(TLCMError, match=r"^--max-sequence-length must be >= 1, got 0$"):
        main(tyro.cli(CacheArgs, args=[*flags, "--max-sequence-length", "0"]))
