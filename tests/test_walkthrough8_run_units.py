"""Walkthrough 8 (a SLURM rehearsal on CPU): one training per run folder (RUN/.lock), a stop whose
save a dead process broke says so in one line, a full disk under torch.save says "No space left on
device" with the free space, and the run's first line names device, processes and precision."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from engine_helpers import interrupt_after, small_recipe

import tlcm.checkpoint as ckpt
from tlcm.checkpoint import TrainState, load_latest, resume_from, save_checkpoint
from tlcm.distributed import DistInfo, StopFailed, collective_failure, cpu_fallback, startup_line
from tlcm.engine import Trainer
from tlcm.errors import TLCMError
from tlcm.files import LOCK_FILE, lock_run

HOLDER = """
import sys
from tlcm.files import lock_run
lock = lock_run(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()
"""


def _holder(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s lock (until its stdin closes or it is killed)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_process_is_refused_in_one_line_and_a_killed_holders_lock_is_taken_over(tmp_path):
    """The lock is the kernel's (flock), across processes: a second one is refused, naming the folder,
    the holder's pid and host, and what to do, and changes nothing; after the holder's kill -9 the
    lock file remains but refuses nothing (the kernel released the lock)."""
    holder = _holder(tmp_path)
    try:
        text = (tmp_path / LOCK_FILE).read_text()
        assert json.loads(text)["pid"] == holder.pid
        with pytest.raises(TLCMError) as info:
            lock_run(tmp_path)
        message = str(info.value)
        assert info.value.exit_code == 2 and "\n" not in message
        assert f"{tmp_path} is in use by pid {holder.pid} on host {socket.gethostname()}" in message
        assert "--recipes.runtime.out-dir" in message
        assert (tmp_path / LOCK_FILE).read_text() == text  # the refused process wrote nothing
    finally:
        holder.kill()  # SIGKILL: no clean-up in the holder
        holder.wait()
    assert (tmp_path / LOCK_FILE).is_file()  # stale, but unlocked
    lock = lock_run(tmp_path)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()  # released: the file goes with the lock


def test_one_process_shares_its_lock_and_the_last_release_unlocks(tmp_path):
    """Two Trainers of one folder in one process (a test, a notebook) share the lock; the folder is
    unlocked (its file removed) only when both released it, and then another process may take it."""
    first, second = lock_run(tmp_path), lock_run(tmp_path)
    first.release()
    first.release()  # idempotent: the second holder still holds it
    assert (tmp_path / LOCK_FILE).is_file()
    probe = [sys.executable, "-c", "import sys; from tlcm.files import lock_run; lock_run(sys.argv[1])"]
    refused = subprocess.run([*probe, str(tmp_path)], capture_output=True, text=True)
    assert refused.returncode != 0 and "is in use by pid" in refused.stderr
    second.release()
    assert not (tmp_path / LOCK_FILE).exists()
    assert subprocess.run([*probe, str(tmp_path)], capture_output=True).returncode == 0


def test_training_locks_its_folder_on_rank_0_only_until_run_ends(tiny_sd_dir, tmp_path, monkeypatch):
    """A second training of a folder in use is refused before the model loads (nothing written); the
    run holds the lock until it ends (a rerun of the finished run re-exports, unlocked again); a
    rank > 0 takes no lock; reading the run (load_latest: sample, evaluate) is never refused."""
    recipe = small_recipe(tiny_sd_dir, tmp_path / "run", steps=1)
    (tmp_path / "run").mkdir()
    holder = _holder(tmp_path / "run")
    try:
        with pytest.raises(TLCMError, match=rf"is in use by pid {holder.pid} on host"):
            Trainer(recipe)
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()
    trainer = Trainer(recipe)
    assert (tmp_path / "run" / LOCK_FILE).is_file() and trainer.lock.held
    trainer.run()
    assert not trainer.lock.held and not (tmp_path / "run" / LOCK_FILE).exists()
    holder = _holder(tmp_path / "run")  # another training now: the run is still readable
    try:
        assert load_latest(tmp_path / "run", "cpu").state.global_step == 1
    finally:
        holder.kill()
        holder.wait()
    Trainer(recipe).run()  # the finished run again: re-exported
    calls = []
    monkeypatch.setattr("tlcm.engine.lock_run", lambda folder: calls.append(folder))
    assert Trainer(recipe, DistInfo(1, 1, torch.device("cpu"))).lock is None and calls == []


def test_a_failed_start_unlocks_the_folder(tiny_sd_dir, tmp_path, monkeypatch):
    """A Trainer that fails after taking the lock (here: loading the model) releases it and removes
    its file: the command line then removes the folder it created (tlcm/train.py main)."""
    recipe = small_recipe(tiny_sd_dir, tmp_path / "run", steps=1)

    def failing_load(*args, **kwargs):
        assert (tmp_path / "run" / LOCK_FILE).is_file()  # locked before the model loads
        raise RuntimeError("cannot load")

    monkeypatch.setattr("tlcm.engine.BaseModel.load", failing_load)
    try:
        Trainer(recipe)
    except RuntimeError as err:  # as in tlcm.train main: the traceback (and the Trainer) still alive
        assert str(err) == "cannot load"
        assert list((tmp_path / "run").iterdir()) == []
    else:
        pytest.fail("the failing load did not raise")


GLOO_CLOSED = "[../third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:1"


def test_a_stop_whose_save_a_dead_process_broke_says_so_in_one_line(tiny_sd_dir, tmp_path):
    """After a stop was asked for, a collective's failure (another process was killed with -9) is one
    line naming the latest checkpoint and a non-zero exit that is not 75, not gloo's traceback."""
    recipe = small_recipe(tiny_sd_dir, tmp_path / "run", steps=4)
    recipe = replace(recipe, runtime=replace(recipe.runtime, checkpoint_every=1))
    trainer = Trainer(recipe)
    interrupt_after(trainer, 2)
    save = trainer._save

    def dying_save(state, opt, losses):
        if state.global_step == 2:
            raise RuntimeError(GLOO_CLOSED)
        save(state, opt, losses)

    trainer._save = dying_save
    with pytest.raises(StopFailed) as info:
        trainer.run()
    message = str(info.value)
    assert info.value.exit_code not in (0, 2, 75) and "\n" not in message
    assert "could not save a checkpoint (another process died)" in message
    assert message.endswith("the latest checkpoint is step 1; rerun the same command to resume from it")
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_a_collective_failure_without_a_stop_or_another_error_is_raised_as_it_is(tiny_sd_dir, tmp_path):
    recipe = small_recipe(tiny_sd_dir, tmp_path / "run", steps=2)
    trainer = Trainer(recipe)

    def dying_save(state, opt, losses):
        raise RuntimeError(GLOO_CLOSED)

    trainer._save = dying_save  # no stop asked for: not a stop's failure
    with pytest.raises(RuntimeError, match="Connection closed") as info:
        trainer.run()
    assert not isinstance(info.value, TLCMError)
    trainer = Trainer(recipe)
    interrupt_after(trainer, 1)

    def broken_save(state, opt, losses):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    trainer._save = broken_save
    with pytest.raises(RuntimeError, match="illegal memory access") as info:
        trainer.run()
    assert not isinstance(info.value, TLCMError)


def test_collective_failures_and_the_latest_checkpoint_line(tmp_path):
    assert collective_failure(RuntimeError(GLOO_CLOSED))
    assert collective_failure(torch.distributed.DistBackendError("NCCL communicator was aborted"))
    assert not collective_failure(RuntimeError("CUDA error: out of memory"))
    assert not collective_failure(ValueError("gloo"))
    assert resume_from(tmp_path) == "the latest checkpoint is none; rerun the same command to start over"
    save_checkpoint(tmp_path, TrainState(0, 3, 3), {"w": torch.zeros(2)}, {}, {})
    assert resume_from(tmp_path).startswith("the latest checkpoint is step 3; rerun")


@pytest.mark.parametrize(
    "text",
    [
        "[enforce fail at inline_container.cc:672] . unexpected pos 1264064 vs 1263952",
        "[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0",
    ],
)
def test_torch_saves_full_disk_says_no_space_left_with_the_free_space(tmp_path, monkeypatch, text):
    """torch.save's full-disk RuntimeError (its C++ source's words) becomes "No space left on device
    (X MiB free on MOUNT)", as the safetensors writer's ENOSPC reads."""

    def failing_save(obj, path, *args, **kwargs):
        raise RuntimeError(text)

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    with pytest.raises(TLCMError) as info:
        save_checkpoint(tmp_path, TrainState(0, 1, 1), {"w": torch.zeros(2)}, {}, {})
    message = str(info.value)
    assert "No space left on device (" in message and " MiB free on /" in message
    assert "inline_container" not in message and "unexpected pos" not in message


def test_another_torch_writer_error_keeps_its_first_line(tmp_path, monkeypatch):
    def failing_save(obj, path, *args, **kwargs):
        raise RuntimeError("PytorchStreamWriter something else\nsecond line")

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    with pytest.raises(TLCMError, match="PytorchStreamWriter something else") as info:
        save_checkpoint(tmp_path, TrainState(0, 1, 1), {"w": torch.zeros(2)}, {}, {})
    assert "No space left" not in str(info.value)


def test_the_startup_line_names_device_processes_backend_and_precision():
    cpu = torch.device("cpu")
    assert startup_line(DistInfo(0, 1, cpu), torch.float32, False) == (
        "training on cpu, 1 process, frozen weights float32"
    )
    assert startup_line(DistInfo(0, 2, cpu), torch.float32, False) == (
        "training on cpu, 2 processes (no process group), frozen weights float32"
    )
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
        assert startup_line(DistInfo(0, 1, torch.device("cuda", 0)), torch.bfloat16, True) == (
            f"training on cuda ({gpu}), 1 process, frozen weights bfloat16, bf16 autocast"
        )


def test_device_auto_falling_back_to_the_cpu_warns_unless_the_miniature(monkeypatch):
    cpu = DistInfo(0, 1, torch.device("cpu"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    warning = cpu_fallback(cpu, "auto", miniature=False)
    assert warning.startswith("warning: no GPU visible (CUDA_VISIBLE_DEVICES='')")
    assert "--recipes.runtime.device cpu" in warning
    assert cpu_fallback(cpu, "auto", miniature=True) is None  # the miniature trains on CPUs
    assert cpu_fallback(cpu, "cpu", miniature=False) is None  # asked for
    assert cpu_fallback(DistInfo(0, 1, torch.device("cuda", 0)), "auto", miniature=False) is None


def test_a_training_prints_its_startup_line_first_and_the_warning(tiny_sd_dir, tmp_path, capfd):
    recipe = small_recipe(tiny_sd_dir, tmp_path / "run", steps=1)
    Trainer(recipe).release()
    out = capfd.readouterr()
    assert out.out.splitlines()[0] == "training on cpu, 1 process, frozen weights float32"
    assert "training on" not in out.err  # stderr holds problems only (a bad input: its one line)
    auto = replace(recipe, runtime=replace(recipe.runtime, device="auto"))
    if not torch.cuda.is_available():
        Trainer(auto).release()
        assert "warning: no GPU visible" in capfd.readouterr().err


def test_two_torchrun_style_ranks_only_rank_0_prints_the_line(tiny_sd_dir, tmp_path, capfd):
    recipe = small_recipe(tiny_sd_dir, tmp_path / "run", steps=1)
    Trainer(recipe, DistInfo(1, 1, torch.device("cpu")))
    assert "training on" not in capfd.readouterr().out
