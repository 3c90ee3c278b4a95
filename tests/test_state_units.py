"""Units of the run's state (red-team round 13): checkpoints (a hand-written `latest`, a foreign
pickle, the weight limit's edge, empty tensors, a fresh run, folders named, pruned and fallen back
to by global step), the metrics reporter (appends, a torn last line, NaN as valid JSON, trackers
only on the reporting process, closed as a success), the trackers (a misspelt name, tensorboard's
purge step), the teacher trajectory cache (independent trajectory and grid point), the
text-embedding store (storage dtypes, format versions, which side of a fingerprint is which, a
reading process), the loss base (a loss's checkpoint restores all of it or refuses), and the
denoiser-evaluation count across a resume between log lines (a real bug, fixed: the checkpoint
holds the count)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from engine_helpers import interrupt_after, small_recipe
from torch import nn

from tlcm.checkpoint import TrainState, load_latest, nonfinite_paths, save_checkpoint, unsound
from tlcm.engine import Trainer
from tlcm.errors import TLCMError
from tlcm.losses.base import Loss
from tlcm.report import Reporter


def _save(out: Path, step: int, value: float, losses: dict | None = None) -> Path:
    weights = {"w": torch.full((2,), value)}
    return save_checkpoint(out, TrainState(0, step, step), weights, {}, losses or {}, phases=[("p", 9)])


# ---- checkpoints -------------------------------------------------------------------------------
def test_a_hand_written_latest_with_a_newline_names_its_folder(tmp_path):
    """`echo step-0000001 > checkpoints/latest` (a user rolling back by hand: a trailing newline)
    names step 1, not the newer step 2: it is loaded, without a damage notice."""
    for step in (1, 2):
        _save(tmp_path, step, float(step))
    (tmp_path / "checkpoints" / "latest").write_text("step-0000001\n")
    lines: list[str] = []
    loaded = load_latest(tmp_path, "cpu", say=lines.append)
    assert loaded.state.global_step == 1 and lines == []


class Foreign:
    """Not a tensor, a number or a container: torch.load(weights_only=True) refuses it."""


def test_a_checkpoint_pickling_foreign_objects_is_not_unpickled(tmp_path):
    """losses.pt is read with weights_only (the module doc: pickles with weights_only): one holding
    an arbitrary object (a pickle could run any code) is damage, and the previous one loads."""
    _save(tmp_path, 1, 1.0)
    _save(tmp_path, 2, 2.0, losses={"x": Foreign()})
    lines: list[str] = []
    loaded = load_latest(tmp_path, "cpu", say=lines.append)
    assert loaded.state.global_step == 1 and len(lines) == 1 and "step-0000002" in lines[0]


def test_a_weight_at_the_limit_is_sound_and_one_above_is_not():
    """The limit is the largest magnitude allowed (|w| > limit is unsound)."""
    tree = {"student": {"w": torch.tensor([-4.0, 2.0])}, "optimizer": {}, "losses": {}}
    assert unsound(tree, 4.0) is None
    assert "student/w holds |w| = 4 > 3" in unsound(tree, 3.0)


def test_a_student_with_an_empty_tensor_is_sound():
    """An empty weight (a zero-size LoRA bank) holds no blow-up: sound, not a crash."""
    tree = {"student": {"empty": torch.zeros(0, 3), "w": torch.ones(2)}, "optimizer": {}, "losses": {}}
    assert unsound(tree, 10.0) is None


def test_a_run_without_checkpoints_loads_none(tmp_path):
    """A fresh run (no checkpoints folder, or an empty one) starts from scratch: None, no error."""
    assert load_latest(tmp_path, "cpu") is None
    (tmp_path / "checkpoints").mkdir()
    assert load_latest(tmp_path, "cpu") is None


def test_nonfinite_paths_names_exactly_the_nan_and_inf_tensors():
    tree = {
        "a": torch.ones(2),
        "b": [torch.tensor([1.0, math.nan]), torch.arange(3)],
        "c": torch.tensor(math.inf),
    }
    assert nonfinite_paths(tree) == ["b/0", "c"]
    assert nonfinite_paths({"a": torch.ones(2)}) == []


# ---- the reporter and trackers ------------------------------------------------------------------
class FakeSink:
    def __init__(self) -> None:
        self.logged: list = []
        self.closed: str | None = None

    def log(self, values, step):
        self.logged.append((step, values))

    def close(self, failed=False):
        self.closed = "failed" if failed else "ok"


def test_last_skips_a_torn_last_line(tmp_path):
    """A kill mid-write leaves a torn last line: the running totals continue from the last whole one."""
    lines = [json.dumps({"global_step": s, "denoiser_evals": 10 * s}) for s in (1, 2)] + [
        '{"global_step": 3, "de'
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    assert Reporter(tmp_path).last("denoiser_evals") == 20


def test_each_report_appends_one_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"global_step": 1, "loss": 1.0}) + "\n")
    reporter = Reporter(tmp_path)
    for step in (2, 3):
        reporter.report({"global_step": step, "loss": 0.5}, {})
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["global_step"] for line in lines] == [1, 2, 3]


def test_nan_and_inf_are_written_as_null_and_named(tmp_path):
    """Every line is strict JSON (no bare NaN / Infinity tokens) and names its non-finite values."""
    reporter = Reporter(tmp_path)
    reporter.report({"global_step": 1, "loss": math.nan, "norm": math.inf, "lr": 0.5}, {})

    def refuse(token):
        raise ValueError(f"non-JSON token {token}")

    line = json.loads((tmp_path / "metrics.jsonl").read_text(), parse_constant=refuse)
    assert line["loss"] is None and line["norm"] is None and line["lr"] == 0.5
    assert line["nonfinite"] == ["loss", "norm"]


def test_a_disabled_reporter_opens_no_tracker(tmp_path, monkeypatch):
    """Only the reporting process (rank 0) opens trackers; the others' Reporter is disabled."""
    import tlcm.report

    opened = []
    monkeypatch.setattr(tlcm.report, "open_sinks", lambda *args: opened.append(args) or [FakeSink()])
    with Reporter(tmp_path / "rank1", enabled=False, trackers=("tensorboard",)) as reporter:
        assert reporter.sinks == []
    assert opened == [] and not (tmp_path / "rank1").exists()


def test_sinks_of_a_run_that_ends_normally_are_closed_as_a_success(tmp_path):
    sink = FakeSink()
    with Reporter(tmp_path) as reporter:
        reporter.sinks.append(sink)
        reporter.report({"global_step": 1, "loss": 0.5}, {})
    assert sink.closed == "ok" and sink.logged == [
        (1, {"loss": 0.5, "it_per_s": sink.logged[0][1]["it_per_s"]})
    ]


def test_a_misspelt_tracker_is_refused(tmp_path):
    from tlcm.trackers import open_sinks

    with pytest.raises(ValueError, match="unknown tracker 'tensorbord': use one of tensorboard, wandb"):
        open_sinks(("tensorbord",), tmp_path, None, None)


# ---- the loss base ------------------------------------------------------------------------------
class WithTarget(Loss):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2, 2)
        self.register_buffer("ema", torch.zeros(2))


def test_a_loss_checkpoint_restores_everything_or_refuses():
    """The contract (tlcm/losses/base.py): everything a loss needs to continue is in its
    checkpoint; one missing a part (an EMA target) is refused, not loaded over a fresh one."""
    saved = WithTarget()
    with torch.no_grad():
        saved.ema.fill_(3.0)
    state = saved.checkpoint_state()
    fresh = WithTarget()
    fresh.load_checkpoint_state(state)
    assert torch.equal(fresh.ema, torch.full((2,), 3.0)) and torch.equal(fresh.head.weight, saved.head.weight)
    with pytest.raises(RuntimeError, match="ema"):
        WithTarget().load_checkpoint_state({k: v for k, v in state.items() if k != "ema"})


def test_checkpoints_are_named_pruned_and_fallen_back_to_by_global_step(tmp_path):
    """Phase 0 of 5 steps, then phase 1: its step 1 is global step 6, newer than phase 0's end.
    With keep=2 the newest by global step survive (5, 6, 7), and a damaged latest (7) falls back
    to global step 6, not to phase 0's end."""
    for phase, step, global_step in [(0, 4, 4), (0, 5, 5), (1, 1, 6), (1, 2, 7)]:
        state = TrainState(phase, step, global_step)
        final = save_checkpoint(tmp_path, state, {"w": torch.full((2,), float(global_step))}, {}, {}, keep=2)
    (final / "student.safetensors").write_bytes(b"torn")
    lines: list[str] = []
    loaded = load_latest(tmp_path, "cpu", say=lines.append)
    assert loaded.state.global_step == 6 and torch.equal(loaded.student["w"], torch.full((2,), 6.0))
    assert len(lines) == 1


# ---- the trajectory cache -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_prompt_cache(tiny_sd_dir, tmp_path_factory):
    from tlcm.data.trajectories import TrajectoryCache, build_cache
    from tlcm.models.base import BaseModel

    base = BaseModel.load(tiny_sd_dir)
    out = tmp_path_factory.mktemp("traj")
    build_cache(
        base, ["a red cube"], out, 3, 2, 250, 3.0, seed=1, shard_size=8, batch_size=3, dtype="float32"
    )
    return TrajectoryCache.open(out, base, ["a red cube"], 2, 250, 3.0)


def test_the_trajectory_and_the_grid_point_are_drawn_independently(one_prompt_cache):
    """Grid [999, 749, 500, 250, 0] (M = 2, k = 250): each segment holds 2 points; the prompt has 3
    trajectories. Uniform, independent draws reach all 2 x 3 (point in segment, trajectory) pairs
    in 400 draws (each missed with probability (5/6)^400); one uniform for both would give 4."""
    cache = one_prompt_cache
    drawn = cache.sample(torch.zeros(400, dtype=torch.long), torch.Generator().manual_seed(0))
    grid = cache.manifest["grid"]
    rows = [cache._slices[0][r] for r in range(3)]
    pairs = set()
    for x, t in zip(drawn.x_tm, drawn.t_m.tolist(), strict=True):
        g = grid.index(int(t))
        trajectory = next(r for r, row in enumerate(rows) if torch.equal(row[g], x))
        pairs.add(({999: 0, 749: 1, 500: 0, 250: 1}[int(t)], trajectory))
    assert pairs == {(p, r) for p in (0, 1) for r in range(3)}


# ---- the text-embedding store -------------------------------------------------------------------
PROMPTS = ["a red cube", "two blue spheres", "a green cone"]


@pytest.fixture(scope="module")
def sd(tiny_sd_dir):
    from tlcm.models.base import BaseModel

    return BaseModel.load(tiny_sd_dir)


def test_an_unknown_storage_dtype_is_refused_in_one_line(sd):
    from tlcm.data.embeddings import EmbeddingStore

    with pytest.raises(TLCMError, match="embedding dtype float8: use encoder, float16, bfloat16, float32"):
        EmbeddingStore(sd, PROMPTS, dtype="float8")


def test_a_cache_of_another_format_version_is_refused(sd, tmp_path):
    from tlcm.data.embeddings import EmbeddingStore

    folder = tmp_path / "emb"
    EmbeddingStore(sd, PROMPTS, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "version": manifest["version"] + 1}))
    with pytest.raises(
        TLCMError, match=r"format \('tlcm-embeddings', 2\) differs from \('tlcm-embeddings', 1\)"
    ):
        EmbeddingStore(sd, PROMPTS, folder)


def test_a_fingerprint_refusal_says_what_the_cache_holds_and_what_the_model_is(sd, tmp_path):
    from tlcm.data.embeddings import EmbeddingStore

    folder = tmp_path / "emb"
    EmbeddingStore(sd, PROMPTS, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    ours = manifest["fingerprint"]["pipeline"]
    manifest["fingerprint"]["pipeline"] = "OtherPipeline"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TLCMError) as err:
        EmbeddingStore(sd, PROMPTS, folder)
    assert f"pipeline: OtherPipeline in the cache, {ours} in this model" in str(err.value)


# ---- a resume's running totals ------------------------------------------------------------------
def test_a_resume_between_log_lines_counts_every_denoiser_evaluation(tiny_sd_dir, tmp_path):
    """log_every 3, a stop after global step 2 (no metrics line since the start): the resumed run
    reports the denoiser evaluations of all 4 steps, as the uninterrupted run does."""

    def recipe(out):
        r = small_recipe(tiny_sd_dir, out)
        return replace(r, runtime=replace(r.runtime, log_every=3))

    straight = Trainer(recipe(tmp_path / "a")).run()
    first = Trainer(recipe(tmp_path / "b"))
    interrupt_after(first, 2)
    assert first.run().preempted
    resumed = Trainer(recipe(tmp_path / "b")).run()
    assert resumed.denoiser_evals == straight.denoiser_evals


def test_a_resumed_tensorboard_writer_purges_from_the_step_after_the_checkpoint(tmp_path, monkeypatch):
    """The resumed run's SummaryWriter gets ``purge_step`` (TensorBoard then hides the cut steps of
    the earlier event files, even before the resumed run logs a line); a fake torch.utils.tensorboard
    records how the writer is made (tensorboard is an optional extra)."""
    import sys
    from types import ModuleType, SimpleNamespace

    made = []

    class Writer:
        def __init__(self, log_dir, purge_step=None):
            made.append((log_dir, purge_step))
            self.file_writer = SimpleNamespace(add_summary=lambda summary: None)

        def close(self):
            pass

    board, summary = ModuleType("torch.utils.tensorboard"), ModuleType("torch.utils.tensorboard.summary")
    board.SummaryWriter, summary.hparams = Writer, lambda flat, metrics: []
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", board)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard.summary", summary)
    from tlcm.trackers import open_sinks

    for sink in open_sinks(("tensorboard",), tmp_path, None, 3):
        sink.close()
    assert made == [(str(tmp_path / "tensorboard"), 3)]


def test_a_reading_process_uses_the_chunks_the_writer_cached_after_it_started(sd, tmp_path):
    """Rank 0 writes, the others read what the manifest lists (the module doc): a chunk rank 0
    cached after another process's store opened is read from the disk there, not encoded again."""
    from tlcm.data.embeddings import EmbeddingStore

    folder = tmp_path / "emb"
    writer = EmbeddingStore(sd, PROMPTS, folder, chunk_size=1)
    reader = EmbeddingStore(sd, PROMPTS, folder, writable=False, chunk_size=1)
    assert reader.encode_calls == 0
    written = writer.get(torch.tensor([2]))
    read = reader.get(torch.tensor([2]))
    assert reader.encode_calls == 0 and torch.equal(read.prompt_embeds, written.prompt_embeds)


def test_a_resume_in_the_middle_of_skipped_steps_continues_their_count(tiny_sd_dir, tmp_path):
    """max_consecutive_skips 1 and global steps 2 and 3 (1-based) non-finite: a run pre-empted
    after step 2 (one skip) and resumed must stop at step 3 (2 in a row), as the uninterrupted run
    does; the count of skips in a row restarted at 0 on resume, so the resumed run went on."""
    from tlcm.guards import NonFiniteLoss

    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=5)
    runtime = replace(recipe.runtime, on_nonfinite="skip", max_consecutive_skips=1, max_skipped_fraction=1.0)
    recipe = replace(recipe, runtime=runtime)

    def faked(trainer):  # global steps 1 and 2 (0-based `at`) report NaN and change nothing
        trainer._step = lambda phase, losses, opt, params, at: (
            {"norm": torch.tensor(float("nan") if at in (1, 2) else 1.0)},
            at not in (1, 2),
        )
        return trainer

    first = faked(Trainer(recipe))
    interrupt_after(first, 2)
    assert first.run().skipped_steps == [2]
    with pytest.raises(NonFiniteLoss, match="at step 3: 2 steps in a row skipped"):
        faked(Trainer(recipe)).run()
