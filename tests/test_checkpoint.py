"""Checkpoints: `latest` never names a missing folder (a crash at every file-system operation of a
save), a damaged latest checkpoint falls back to the newest complete one, and the engine refuses to
resume or initialise from checkpoints that do not fit the recipe."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from engine_helpers import interrupt_after, small_recipe

import tlcm.checkpoint as ckpt
from tlcm.checkpoint import TrainState, load_latest, save_checkpoint
from tlcm.engine import PREEMPTED_EXIT_CODE, Trainer, train
from tlcm.errors import TLCMError


def _save(out: Path, step: int, value: float, phase_index: int = 0) -> Path:
    weights = {"w": torch.full((2,), value)}
    return save_checkpoint(out, TrainState(phase_index, step, step), weights, {}, {}, phases=[("p", 9)])


class Crash(Exception):
    pass


@pytest.mark.parametrize("same_step", [False, True], ids=["new-step", "same-step"])
def test_a_crash_anywhere_in_a_save_leaves_latest_loadable(tmp_path, same_step, monkeypatch):
    """Crash at the k-th os.replace / shutil.rmtree / file write of a save, for every k: `latest`
    then names a complete checkpoint, either the previous save or the new one."""
    calls = {"n": 0, "crash_at": -1}
    real = {"replace": ckpt.os.replace, "rmtree": ckpt.shutil.rmtree, "save_file": ckpt.save_file}

    def counted(name):
        def call(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == calls["crash_at"]:
                raise Crash(name)
            return real[name](*args, **kwargs)

        return call

    for name in real:
        target = ckpt.os if name == "replace" else ckpt.shutil if name == "rmtree" else ckpt
        monkeypatch.setattr(target, name, counted(name))
    crashes = 0
    for crash_at in range(1, 20):
        out = tmp_path / f"run{crash_at}"
        _save(out, 1, 1.0)
        _save(out, 2, 2.0, phase_index=1 if same_step else 0)
        calls.update(n=0, crash_at=crash_at)
        try:
            _save(out, 2 if same_step else 3, 3.0)
        except Crash:
            crashes += 1
        calls["crash_at"] = -1
        loaded = load_latest(out, "cpu", say=lambda line: pytest.fail(f"fell back: {line}"))
        assert loaded.state.global_step in ((2,) if same_step else (2, 3))
        expected = 2.0 if loaded.state.global_step == 2 else 3.0
        assert torch.equal(loaded.student["w"], torch.full((2,), expected))
    assert crashes >= 2  # the loop really crashed inside saves


def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_complete_one(tmp_path):
    for step in (1, 2, 3):
        _save(tmp_path, step, float(step))
    newest = tmp_path / "checkpoints" / "step-0000003"
    data = (newest / "student.safetensors").read_bytes()
    (newest / "student.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    lines: list[str] = []
    loaded = load_latest(tmp_path, "cpu", say=lines.append)
    assert loaded.state.global_step == 2 and len(lines) == 1 and "step-0000003" in lines[0]
    assert (tmp_path / "checkpoints" / "damaged-step-0000003").is_dir()  # kept aside, not resumed
    (tmp_path / "checkpoints" / "step-0000002" / "optimizer.pt").write_bytes(b"PK\x03\x04 garbage")
    (tmp_path / "checkpoints" / "latest").write_text("step-0000009")  # names a missing folder
    assert load_latest(tmp_path, "cpu", say=lines.append).state.global_step == 1
    (tmp_path / "checkpoints" / "step-0000001" / "state.json").write_text("{")
    with pytest.raises(TLCMError, match="no loadable checkpoint"):
        load_latest(tmp_path, "cpu", say=lines.append)


def _every_step(recipe):
    return replace(recipe, runtime=replace(recipe.runtime, checkpoint_every=1))


def test_resume_from_a_damaged_latest_equals_the_uninterrupted_run(tiny_sd_dir, tmp_path):
    straight = train(_every_step(small_recipe(tiny_sd_dir, tmp_path / "a", steps=4)))
    first = Trainer(_every_step(small_recipe(tiny_sd_dir, tmp_path / "b", steps=4)))
    interrupt_after(first, 3)
    first.run()
    damaged = tmp_path / "b" / "checkpoints" / "step-0000003" / "student.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:100])
    resumed = train(_every_step(small_recipe(tiny_sd_dir, tmp_path / "b", steps=4)))
    a, b = straight.student.state_dict(), resumed.student.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["global_step"] for line in log] == [1, 2, 3, 4]  # cut back, no duplicates


def test_resume_refuses_a_recipe_with_other_phases_or_steps(tiny_sd_dir, tmp_path):
    train(small_recipe(tiny_sd_dir, tmp_path, steps=2))
    with pytest.raises(
        TLCMError, match=r"trained with phases stage \(2 steps\) but this recipe has stage \(3"
    ):
        train(small_recipe(tiny_sd_dir, tmp_path, steps=3))
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=3)
    train(replace(recipe, runtime=replace(recipe.runtime, resume=False)))  # starts over, removing old
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step-0000003"


def test_init_from_refuses_an_unfinished_phase_and_another_lora(tiny_sd_dir, tmp_path):
    first = Trainer(small_recipe(tiny_sd_dir, tmp_path / "stage1", steps=3))
    interrupt_after(first, 1)
    assert first.run().preempted
    recipe = small_recipe(tiny_sd_dir, tmp_path / "stage2", steps=1)
    recipe = replace(recipe, student=replace(recipe.student, init_from=tmp_path / "stage1"))
    with pytest.raises(TLCMError, match="stopped mid-phase .* --recipes.student.init-from-unfinished"):
        train(recipe)
    unfinished = replace(recipe.student, init_from_unfinished=True)
    train(replace(recipe, student=unfinished))
    shutil.rmtree(tmp_path / "stage2")
    other_alpha = replace(recipe, student=replace(unfinished, lora_alpha=32.0))
    with pytest.raises(TLCMError, match="lora_alpha 4.0 != 32.0"):
        train(other_alpha)


def test_sigterm_exits_with_the_documented_code(tiny_sd_dir, tmp_path, capsys):
    from tlcm.errors import run_cli
    from tlcm.train import TrainArgs, main

    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=3, sigterm_step=0)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(TrainArgs(recipes=recipe)))
    assert exit_info.value.code == PREEMPTED_EXIT_CODE == 75
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step-0000001"


def test_a_rerun_without_checkpoints_does_not_append_to_the_old_log(tiny_sd_dir, tmp_path):
    """A run stopped before its first checkpoint (here: the checkpoint folder removed) starts over,
    and so does its metrics.jsonl: steps 1..4 once, not 1, 2, 1, 2, 3, 4."""
    train(small_recipe(tiny_sd_dir, tmp_path, steps=2))
    shutil.rmtree(tmp_path / "checkpoints")
    train(small_recipe(tiny_sd_dir, tmp_path, steps=4))
    log = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["global_step"] for line in log] == [1, 2, 3, 4]
