"""Bugs found by walking through the README as a new user, each pinned by a direct call."""

from __future__ import annotations

from dataclasses import replace

from engine_helpers import small_recipe

from tlcm.engine import previous_outputs, train
from tlcm.summary import run_files


def _stale_run(folder):
    """What an earlier run with other phases and formats leaves in ``folder``."""
    for name in ("checkpoints/step-0000007", "student/scheduler", "samples"):
        (folder / name).mkdir(parents=True)
    (folder / "checkpoints" / "latest").write_text("step-0000007")
    for name in ("student/pytorch_lora_weights.safetensors", "student/old_kohya.safetensors"):
        (folder / name).write_bytes(b"old")
    for name in ("samples/0-mlcd.png", "samples/2-dmd.png", "eval.json", "eval-gamma1.json"):
        (folder / name).write_text("old")


def test_previous_outputs_names_an_earlier_runs_results_and_nothing_else(tmp_path):
    _stale_run(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "samples" / "mine.png").write_text("mine")
    names = sorted(str(p.relative_to(tmp_path)) for p in previous_outputs(tmp_path))
    assert names == sorted(
        ["checkpoints", "student", "eval.json", "eval-gamma1.json", "samples/0-mlcd.png", "samples/2-dmd.png"]
    )
    assert previous_outputs(tmp_path / "absent") == []


def test_no_resume_leaves_no_earlier_student_scores_or_grids_to_pass_as_the_new_runs(tiny_sd_dir, tmp_path):
    """--recipes.runtime.no-resume ("start over there") removed only checkpoints/: the earlier run's
    kohya LoRA, eval.json and its other phases' grids stayed and the summary listed them as this run's."""
    _stale_run(tmp_path)
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=1)
    train(replace(recipe, runtime=replace(recipe.runtime, resume=False)))
    assert not (tmp_path / "student" / "old_kohya.safetensors").exists()
    assert (tmp_path / "student" / "pytorch_lora_weights.safetensors").read_bytes() != b"old"
    assert not (tmp_path / "eval.json").exists() and not (tmp_path / "eval-gamma1.json").exists()
    assert not (tmp_path / "samples" / "2-dmd.png").exists()
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step-0000001"
    assert "eval.json" not in {p.name for p, _ in run_files(tmp_path)}


def test_a_value_after_a_switch_says_the_switch_takes_none():
    """``--recipes.runtime.sample-grid False`` (diffusers scripts' habit) was answered "every value
    follows its --recipes.FIELD flag", which it did."""
    from tlcm.train import unknown_arguments

    argv = ["recipes:mlcd", "--recipes.runtime.sample-grid", "False"]
    assert unknown_arguments(["False"], argv) == (
        "--recipes.runtime.sample-grid takes no value (got False): write --recipes.runtime.sample-grid "
        "to turn it on, --recipes.runtime.no-sample-grid to turn it off"
    )
    argv = ["recipes:mlcd", "--recipes.runtime.no-resume", "true"]
    line = unknown_arguments(["true"], argv)
    assert line.startswith("--recipes.runtime.no-resume takes no value (got true)")
    argv = ["recipes:mlcd", "--recipes.phases.mlcd.steps", "1", "2"]  # not a switch: as before
    assert unknown_arguments(["2"], argv).startswith("unexpected argument(s) 2: every value follows")


def test_export_of_a_folder_without_a_checkpoint_creates_nothing_there(tmp_path):
    """``python -m tlcm.export FOLDER`` on a folder that is no run refused it, but only after creating
    FOLDER/student."""
    import pytest

    from tlcm.errors import TLCMError
    from tlcm.export import ExportArgs
    from tlcm.export import main as export_main

    with pytest.raises(TLCMError, match="has no checkpoint"):
        export_main(ExportArgs(run=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_latent_lpips_weights_of_another_format_do_not_advise_weights_only_false(tmp_path):
    """Passing the training record (the .json beside the weights) as distance_weights answered with
    torch's advice to re-run torch.load with weights_only=False, which tlcm never does."""
    import pytest

    from tlcm.errors import TLCMError
    from tlcm.losses.latent_lpips import load_latent_lpips

    path = tmp_path / "llp.json"
    path.write_text('{"steps": 3}')
    with pytest.raises(TLCMError, match=r"pickle \(weights_only\) nor a .safetensors file") as err:
        load_latent_lpips(path)
    assert "weights_only` set to `False`" not in str(err.value)
    assert "python -m tlcm.latent_lpips.train --out" in str(err.value)


def test_export_kohya_of_a_flow_student_names_the_flag_and_creates_no_folder(tmp_path):
    """``python -m tlcm.export RUN --format kohya`` of an SD3 / FLUX student was refused as "export
    formats kohya ... use export formats diffusers" (not tlcm.export's flag), after creating --out."""
    import json

    import pytest

    from tlcm.errors import TLCMError
    from tlcm.export import ExportArgs
    from tlcm.export import main as export_main
    from tlcm.toy import MINIATURE_SD3

    step = tmp_path / "run" / "checkpoints" / "step-0000001"
    step.mkdir(parents=True)
    (step.parent / "latest").write_text(step.name)
    (step / "state.json").write_text(json.dumps({"run": {"recipe": {"model": {"path": str(MINIATURE_SD3)}}}}))
    with pytest.raises(TLCMError, match="^--format kohya: .* use --format diffusers"):
        export_main(ExportArgs(run=tmp_path / "run", format=("kohya",), out=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_captions_under_another_key_suggest_the_caption_column_flag(tmp_path):
    """A metadata.jsonl whose captions are under "caption" (diffusers' --caption_column habit) named
    the keys found but not the flag that reads them; a later line missing the column does not get
    the hint (the earlier lines had it)."""
    import json

    import pytest
    from PIL import Image

    from tlcm.data.images import ImageTextSource
    from tlcm.errors import TLCMError

    for name in ("0.png", "1.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    meta = tmp_path / "metadata.jsonl"
    meta.write_text(json.dumps({"file_name": "0.png", "caption": "a 3", "n": 3}) + "\n")
    flag = "if 'caption' holds the caption, pass --recipes.data.caption-column caption$"
    with pytest.raises(TLCMError, match=r"found no 'text' field \(keys: file_name, caption, n\): " + flag):
        ImageTextSource(tmp_path, 8)
    meta.write_text(
        json.dumps({"file_name": "0.png", "text": "a"})
        + "\n"
        + json.dumps({"file_name": "1.png", "caption": "b"})
    )
    with pytest.raises(TLCMError, match=r"metadata.jsonl:2: .*: write one \{"):
        ImageTextSource(tmp_path, 8)


def test_a_run_stopped_before_its_first_checkpoint_is_not_told_of_checkpoints(tmp_path):
    """A blow-up at step 1 of a fresh run (lr 1e6) said "the checkpoints in RUN/checkpoints are
    untouched ... the rerun resumes from the last checkpoint with --resume-changed": there were none,
    and a plain rerun starts over. With a checkpoint, the advice is as before."""
    from tlcm.config import RuntimeConfig
    from tlcm.guards import LOWER_LR, diverged, nonfinite

    rt = RuntimeConfig(out_dir=tmp_path)
    fresh = str(diverged(rt, "mlcd", 1, 1e30))
    assert "no checkpoint was saved yet (lower --recipes.phases.mlcd.lr: the rerun starts over)" in fresh
    assert "untouched" not in fresh and "resume-changed" not in fresh
    (tmp_path / "checkpoints" / "step-0000002").mkdir(parents=True)
    (tmp_path / "checkpoints" / "latest").write_text("step-0000002")
    later = str(diverged(rt, "mlcd", 3, 1e30))
    assert (
        f"the checkpoints in {tmp_path / 'checkpoints'} are untouched ({LOWER_LR.format(phase='mlcd')})"
        in later
    )
    import pytest
    import torch

    with pytest.raises(
        Exception, match=r"untouched \(lower .*; or set --recipes.runtime.on-nonfinite skip\)$"
    ):
        nonfinite(rt, "mlcd", 3, {"mlcd": torch.tensor(float("nan"))}, 1, print)


def test_sampling_an_export_folder_names_it_and_the_tools_that_sample_it(tmp_path):
    """``tlcm.sample --student EXPORT`` (``tlcm.export --out EXPORT``: LoRA + scheduler, away from its
    run) said only "has no checkpoint", after loading the base model; now, before loading anything,
    it names the export and tlcm.evaluate generate, which samples exports. A folder that is neither:
    as before."""
    import pytest

    from tlcm.errors import TLCMError
    from tlcm.sample import SampleArgs
    from tlcm.sample import main as sample_main

    export = tmp_path / "export"
    (export / "scheduler").mkdir(parents=True)
    (export / "pytorch_lora_weights.safetensors").write_bytes(b"lora")
    with pytest.raises(TLCMError, match=rf"{export} is an exported student .*generate --student {export}$"):
        sample_main(SampleArgs(prompt=["a 3"], student=export))
    with pytest.raises(TLCMError, match=r"has no checkpoint: pass a tlcm run folder"):
        sample_main(SampleArgs(prompt=["a 3"], student=tmp_path))
