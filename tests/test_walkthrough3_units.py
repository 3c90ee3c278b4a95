"""Bugs found by walking through tlcm as a practitioner with their own model and data (user
walkthrough 3), each pinned by a direct call."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import tlcm.evaluate as evaluate
from tlcm.diffusion.milestones import StudentGrid
from tlcm.errors import TLCMError
from tlcm.models.student import Student


def _fake_student_scoring(monkeypatch, calls: list[str]) -> None:
    """``evaluate.student`` without models: each stage appends its name to ``calls``."""
    trained = SimpleNamespace(config=SimpleNamespace(grid=StudentGrid()), denoiser=lambda: "student")
    monkeypatch.setattr(Student, "from_run", staticmethod(lambda base, run: trained))
    monkeypatch.setattr(evaluate, "_load", lambda *args: calls.append("load"))
    monkeypatch.setattr(evaluate, "_check_args", lambda *args: None)
    monkeypatch.setattr(evaluate, "student_model", lambda run, model, msl, note: (run, msl))
    monkeypatch.setattr(evaluate, "ToyMetrics", lambda assets: None)

    def scores(base, denoiser, steps, samples_per_digit, metrics, grid):
        calls.append("score")
        return [{"steps": n, "prompts": 10, "alignment": 0.5, "fd": 1.0} for n in steps]

    monkeypatch.setattr(evaluate, "student_scores", scores)


def test_a_run_folder_it_cannot_write_to_is_refused_before_scoring_and_out_writes_elsewhere(
    tmp_path, monkeypatch
):
    """evaluate student --run on read-only media: the scores would be lost after all the sampling
    (an OSError traceback at the end). Refused before anything loads, naming --out; with --out the
    scores go there and the run folder is not written."""
    calls: list[str] = []
    _fake_student_scoring(monkeypatch, calls)
    with pytest.raises(TLCMError, match=r"--run /sys/kernel: it is not writable .*pass --out FILE\.json"):
        evaluate.student("/sys/kernel", steps=(2,), samples_per_digit=1)
    assert calls == []
    run = tmp_path / "run"
    run.mkdir()
    rows = evaluate.student(run, steps=(2,), samples_per_digit=1, out=tmp_path / "scores.json")
    assert calls == ["load", "score"] and list(run.iterdir()) == []
    assert json.loads((tmp_path / "scores.json").read_text()) == rows
    with pytest.raises(TLCMError, match=r"--out .*scores\.md must end in \.json"):
        evaluate.student(run, steps=(2,), samples_per_digit=1, out=tmp_path / "scores.md")


def test_training_time_and_evaluations_of_a_resumed_run_count_every_session(
    tiny_sd_dir, tmp_path, monkeypatch
):
    """A run stopped after 2 of 4 steps and resumed: its training seconds (model card, end summary)
    and denoiser evaluations are the whole run's, as an uninterrupted run's, not the last
    session's. Each step takes 10 s of a fake clock."""
    from engine_helpers import interrupt_after, small_recipe
    from test_benchmark_units import Clock

    import tlcm.engine as engine

    clock = Clock()
    monkeypatch.setattr(engine.time, "perf_counter", clock.perf_counter)
    step = engine.Trainer.train_step

    def timed(self, state, global_step):
        clock.advance(10.0)
        return step(self, state, global_step)

    monkeypatch.setattr(engine.Trainer, "train_step", timed)
    whole = engine.train(small_recipe(tiny_sd_dir, tmp_path / "whole", steps=4))
    assert whole.train_seconds == 40.0 and whole.denoiser_evals > 0
    recipe = small_recipe(tiny_sd_dir, tmp_path / "resumed", steps=4)
    trainer = engine.Trainer(recipe)
    interrupt_after(trainer, 2)
    assert trainer.run().preempted
    resumed = engine.train(recipe)
    assert resumed.train_seconds == 40.0
    assert resumed.denoiser_evals == whole.denoiser_evals
    card = (tmp_path / "resumed" / "student" / "README.md").read_text()
    assert "Training time: 40.0 s wall clock" in card


def test_a_trajectory_cache_is_built_from_an_image_folders_captions_and_its_refusal_says_how(
    tiny_sd_dir, tmp_path
):
    """An image-folder run's prompts are its captions (an empty one included), which no prompt
    file reproduces (.txt drops blank lines): tlcm.data.trajectories --images builds the cache
    the run accepts, and a mismatch's rebuild command names --images (and the caption column),
    not the miniature prompts it used to rebuild in a circle."""
    from test_data14_units import _folder

    from tlcm.data.trajectories import TrajectoryCache
    from tlcm.data.trajectories import cli as build
    from tlcm.models.base import BaseModel

    rows = [{"file_name": "0.png", "caption": "a red square"}, {"file_name": "1.png", "caption": ""}]
    images = _folder(tmp_path / "data", rows)
    out = tmp_path / "cache"
    flags = ["--model", str(tiny_sd_dir), "--out", str(out), "--device", "cpu", "--samples-per-prompt", "1"]
    build([*flags, "--images", str(images), "--caption-column", "caption", "--num-milestones", "2"])
    base = BaseModel.load(tiny_sd_dir, device="cpu")
    cache = TrajectoryCache.open(out, base, ["a red square", ""], images=images, caption_column="caption")
    assert cache.prompt_count.tolist() == [1, 1]
    want = f"--model {tiny_sd_dir} --images {images} --caption-column caption --out {out}"
    with pytest.raises(TLCMError, match=want):
        TrajectoryCache.open(out, base, ["a red square", "x"], images=images, caption_column="caption")
    with pytest.raises(TLCMError, match="--images and --prompts: pass one"):
        build([*flags, "--images", str(images), "--prompts", str(tmp_path / "p.txt")])


def test_a_folder_of_fp16_variant_weights_loads_that_variant(tiny_sd_dir, tmp_path):
    """A hub repo's fp16 branch (``save_pretrained(variant="fp16")``: *.fp16.safetensors only)
    was refused as damaged ("no file named model.safetensors ... re-download"): diffusers loads a
    variant only when asked. It now loads, with the plain folder's weights; plain files win where
    both are there, and two variants without plain files are refused in one line."""
    from diffusers import StableDiffusionPipeline

    from tlcm.models.base import BaseModel
    from tlcm.models.families.base import weights_variant

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir)
    pipe.save_pretrained(tmp_path / "v", variant="fp16")
    assert weights_variant(tiny_sd_dir) is None and weights_variant(tmp_path / "v") == "fp16"
    loaded = BaseModel.load(tmp_path / "v", device="cpu")
    for name, value in pipe.unet.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[name].float(), value.float()), name
    pipe.save_pretrained(tmp_path / "v", variant="bf16")
    with pytest.raises(TLCMError, match=r"variants bf16, fp16 and no plain ones"):
        weights_variant(tmp_path / "v")
    pipe.save_pretrained(tmp_path / "v")
    assert weights_variant(tmp_path / "v") is None


def test_a_log_that_is_not_a_terminal_gets_a_plain_progress_line_every_30_seconds(
    tmp_path, monkeypatch, capsys
):
    """`tlcm.train ... > log` (nohup, SLURM): rich draws no live bar there, so the log stayed empty
    until a phase ended. One plain line (phase, step / steps, it/s, ETA, terms) at most every 30 s
    and at the phase's last step; steps in between write metrics.jsonl only. The ETA: the steps left
    at the phase's mean time per step (10 s after 1 step: 4 x 10 s; 45 s after 3: 2 x 15 s); a
    resumed phase counts from where it resumed (2 of 6 done, 1 step in 8 s: 3 x 8 s)."""
    from test_benchmark_units import Clock

    import tlcm.report

    clock = Clock()
    monkeypatch.setattr(tlcm.report.time, "perf_counter", clock.perf_counter)
    with tlcm.report.Reporter(tmp_path) as reporter:
        assert not reporter.console.is_terminal
        reporter.start_phase("mlcd", 5, 0)
        for step, seconds in enumerate((10.0, 10.0, 25.0, 1.0, 1.0), start=1):
            clock.advance(seconds)
            reporter.report({"step": step, "global_step": step}, {"mlcd": 0.5 / step})
    lines = [line for line in capsys.readouterr().err.splitlines() if re.match(r"mlcd \d/5 ", line)]
    assert lines == [
        "mlcd 1/5 0.10 it/s ETA 0:00:40 mlcd=0.5",
        "mlcd 3/5 0.04 it/s ETA 0:00:30 mlcd=0.1667",
        "mlcd 5/5 1.00 it/s ETA 0:00:00 mlcd=0.1",
    ]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 5
    with tlcm.report.Reporter(tmp_path / "resumed") as reporter:
        reporter.start_phase("lcd", 6, 2)
        clock.advance(8.0)
        reporter.report({"step": 3, "global_step": 3}, {"lcd": 1.0})
    assert "lcd 3/6 0.12 it/s ETA 0:00:24 lcd=1" in capsys.readouterr().err.splitlines()


def test_small_messages_name_what_the_user_passed(tiny_sd_dir, tmp_path):
    """tlcm.export's default --out that cannot be written says it is the default and how to pick
    another; compare's teacher-table hint names the run's own base model (else it scores the
    miniature); an embedding cache folder that cannot be made is not to be "deleted"."""
    import shutil

    from engine_helpers import small_recipe

    from tlcm.data.embeddings import EmbeddingStore
    from tlcm.engine import train
    from tlcm.export import cli as export

    run = train(small_recipe(tiny_sd_dir, tmp_path / "run", steps=1)).out_dir
    shutil.rmtree(run / "student")
    (run / "student").write_text("not a folder")
    with pytest.raises(TLCMError, match=r"the default --out .*student: .*: pass --out DIR"):
        export([str(run), "--format", "diffusers", "--device", "cpu"])
    (run / "eval.json").write_text(json.dumps([{"steps": 1, "prompts": 20, "alignment": 0.5, "fd": 9.0}]))
    teacher = tmp_path / "t.json"
    teacher.write_text(json.dumps([{"steps": 1, "w": 2.0, "prompts": 10, "alignment": 0.5, "fd": 9.0}]))
    with pytest.raises(TLCMError, match=rf"teacher-table --model {tiny_sd_dir} --samples-per-digit 2 "):
        evaluate.compare(run, teacher)
    from tlcm.models.base import BaseModel

    base = BaseModel.load(tiny_sd_dir, device="cpu")
    with pytest.raises(TLCMError, match=r"cannot write .*; make it writable or pass another folder") as info:
        EmbeddingStore(base, ["a"], Path("/sys/kernel/emb")).get(torch.tensor([0]))
    assert "delete" not in str(info.value)


def test_check_reports_every_broken_sample_at_once(tmp_path):
    """python -m tlcm.data.images --check stopped at the first broken sample: one rerun per
    problem. It now reads every sample and names each broken one (up to VERIFY_SHOWN) in one error."""
    from test_data14_units import _folder

    import tlcm.data.images as images

    rows = [{"file_name": f"{k}.png", "text": str(k)} for k in range(2)]
    folder = _folder(tmp_path / "data", rows)
    for k in range(2, 5):
        (folder / f"{k}.png").write_bytes(b"not an image")
    rows += [{"file_name": f"{k}.png", "text": str(k)} for k in range(2, 5)]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        TLCMError, match=r"^3 of 5 samples cannot be read: .*2\.png.*; .*3\.png.*; .*4\.png"
    ) as info:
        images.ImageTextSource(folder, 8).verify()
    assert "more" not in str(info.value)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(images, "VERIFY_SHOWN", 2)
        with pytest.raises(TLCMError, match=r"3\.png[^;]*; and 1 more$"):
            images.ImageTextSource(folder, 8).verify()


def test_a_single_file_checkpoint_is_refused_with_how_to_convert_it(tmp_path):
    """--recipes.model.path model.safetensors (the civitai / A1111 layout): the refusal says how to
    make the diffusers folder tlcm loads."""
    from tlcm.models.folders import check_model_folder

    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(
        TLCMError, match=r"from_single_file\(.*model\.safetensors\"\)\.save_pretrained\(DIR\)"
    ):
        check_model_folder(tmp_path / "model.safetensors")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(TLCMError, match=r"is a file, not a folder: pass a local diffusers folder .*DIR\)$"):
        check_model_folder(tmp_path / "notes.txt")


def test_the_weight_guard_reads_a_blow_up_on_one_fsdp2_shard_whole():
    """FSDP2: each process measures its own shards' peak and the step averages the terms over
    processes; the guard must see the largest shard peak, not 1 / processes of it. 8 processes,
    one shard at 5e4, limit 1e4: the mean of the shares is 5e4 (it was 6.25e3: passed). Shards all
    within the limit read as the limit at most; replicated weights (DDP) pass through; NaN stays NaN."""
    from tlcm.guards import peak_share

    def run_peak(peaks, limit=1e4, sharded=True):
        shares = [peak_share(torch.tensor(p), limit, len(peaks), sharded) for p in peaks]
        return float(torch.stack(shares).mean())

    assert run_peak([5e4] + [1.0] * 7) == pytest.approx(5e4)
    assert run_peak([9e3, 2.0]) <= 1e4
    assert run_peak([2e4, 3e4]) > 1e4
    assert run_peak([7.0, 7.0], sharded=False) == 7.0
    assert run_peak([7.0], sharded=True) == 7.0
    assert math.isnan(run_peak([float("nan"), 1.0]))
    assert run_peak([5.0, 1.0], limit=math.inf) == math.inf  # no guard: never trips
