"""Checkpoints: `latest` never names a missing folder (a crash at every file-system operation of a
save; every file fsynced before its rename), a damaged latest checkpoint or pointer falls back to the
newest complete one (read-only commands change nothing in the run), NaN or absurd weights are never
saved nor resumed from, the engine refuses to resume or initialise from checkpoints that do not fit
the recipe, the model or the process count, and SIGTERM / SIGINT / SIGHUP save and exit 75."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from engine_helpers import interrupt_after, small_recipe

import tlcm.checkpoint as ckpt
from tlcm.checkpoint import TrainState, load_latest, save_checkpoint
from tlcm.config import RuntimeConfig
from tlcm.engine import PREEMPTED_EXIT_CODE, Trainer, train
from tlcm.errors import TLCMError


def _save(out: Path, step: int, value: float, phase_index: int = 0) -> Path:
    weights = {"w": torch.full((2,), value)}
    return save_checkpoint(out, TrainState(phase_index, step, step), weights, {}, {}, phases=[("p", 9)])


class Crash(Exception):
    pass


@pytest.mark.parametrize("same_step", [False, True], ids=["new-step", "same-step"])
def test_a_crash_anywhere_in_a_save_leaves_latest_loadable(tmp_path, same_step, monkeypatch):
    """Crash at the k-th os.replace / os.fsync / shutil.rmtree / weights write of a save, for every
    k: `latest` then names a complete checkpoint, either the previous save or the new one."""
    calls = {"n": 0, "crash_at": -1}
    real = {
        "replace": ckpt.os.replace,
        "fsync": ckpt.os.fsync,
        "rmtree": ckpt.shutil.rmtree,
        "save_tensors": ckpt.save_tensors,
    }

    def counted(name):
        def call(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == calls["crash_at"]:
                raise Crash(name)
            return real[name](*args, **kwargs)

        return call

    for name in real:
        target = ckpt.os if name in ("replace", "fsync") else ckpt.shutil if name == "rmtree" else ckpt
        monkeypatch.setattr(target, name, counted(name))
    crashes = 0
    for crash_at in range(1, 30):
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
    loaded = load_latest(tmp_path, "cpu", say=lines.append)  # read-only: the run is left as it is
    assert loaded.state.global_step == 2 and len(lines) == 1 and "step-0000003" in lines[0]
    assert newest.is_dir() and not (tmp_path / "checkpoints" / "damaged-step-0000003").exists()
    assert load_latest(tmp_path, "cpu", say=lines.append, repair=True).state.global_step == 2
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


def _two_phases(recipe, later_steps: int, resume_changed: bool = False):
    """``recipe``'s phase "stage" (2 steps), then "later" (``later_steps``)."""
    stage = replace(recipe.phases["stage"], steps=2)
    phases = {"stage": stage, "later": replace(stage, steps=later_steps)}
    return replace(recipe, phases=phases, runtime=replace(recipe.runtime, resume_changed=resume_changed))


def test_resume_changed_takes_other_steps_for_a_phase_not_started(tiny_sd_dir, tmp_path):
    """Walkthrough 8: a run stopped in its first phase resumes with more steps for the next one under
    resume_changed (the engine asks tlcm.resume.check_phases); without the flag it is refused."""
    first = Trainer(_two_phases(small_recipe(tiny_sd_dir, tmp_path), 2))
    interrupt_after(first, 1)
    assert first.run().preempted
    with pytest.raises(TLCMError, match="resume-changed accepts other steps for later"):
        train(_two_phases(small_recipe(tiny_sd_dir, tmp_path), 3))
    train(_two_phases(small_recipe(tiny_sd_dir, tmp_path), 3, resume_changed=True))
    log = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["global_step"] for line in log] == [1, 2, 3, 4, 5]


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


@pytest.mark.parametrize(
    "pointer, why",
    [
        (b"", "latest is empty"),
        (b"\n", "latest is empty"),
        (b"step-\xff\xfe", "latest is not UTF-8 text"),
        (b"step-0000009", "latest names 'step-0000009', not a checkpoint folder"),
        (b"..", "latest names '..', not a checkpoint folder"),
        (b"latest", "latest names 'latest', not a checkpoint folder"),
    ],
    ids=["empty", "newline", "not-utf8", "missing-folder", "parent", "itself"],
)
def test_a_damaged_latest_pointer_falls_back_with_one_notice(tmp_path, pointer, why):
    """An empty pointer (a power loss before fsync), non-UTF-8 bytes or a name of no folder: the
    newest complete checkpoint, one line saying why, and nothing renamed (before: an empty pointer
    renamed `checkpoints` into itself, non-UTF-8 raised UnicodeDecodeError)."""
    for step in (1, 2):
        _save(tmp_path, step, float(step))
    (tmp_path / "checkpoints" / "latest").write_bytes(pointer)
    lines: list[str] = []
    for repair in (False, True):
        loaded = load_latest(tmp_path, "cpu", say=lines.append, repair=repair)
        assert loaded.state.global_step == 2 and torch.equal(loaded.student["w"], torch.full((2,), 2.0))
    assert len(lines) == 2 and why in lines[0] and "using " in lines[0]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "latest",
        "step-0000001",
        "step-0000002",
    ]


def test_a_save_fsyncs_every_file_before_its_rename_and_the_folders_after(tmp_path, monkeypatch):
    """The checkpoint files and the pointer reach the disk before the renames that publish them, and
    the renames themselves (their folders) after: a power loss cannot leave an empty `latest`."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, ckpt.os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", f"{src} -> {dst}"))
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "fsync", fsync)
    monkeypatch.setattr(ckpt.os, "replace", replace)
    _save(tmp_path, 1, 1.0)
    root = tmp_path.resolve() / "checkpoints"
    tmp = root / ".tmp-step-0000001"
    synced = [path for kind, path in events if kind == "fsync"]
    for name in ("student.safetensors", "optimizer.pt", "losses.pt", "state.json"):
        assert str(tmp / name) in synced, name
    order = [(kind, path.split("/")[-1]) for kind, path in events]
    publish = order.index(("replace", "step-0000001"))
    assert ("fsync", ".tmp-step-0000001") in order[:publish]  # the folder's entries, then the rename
    pointer = order.index(("replace", "latest"))
    assert order[pointer - 1] == ("fsync", ".latest.tmp") and order[pointer + 1] == ("fsync", "checkpoints")
    assert ("fsync", "checkpoints") in order[publish + 1 : pointer]
    assert (root / "latest").read_text() == "step-0000001"


def test_nan_or_absurd_latest_weights_fall_back_to_the_previous_checkpoint(tmp_path):
    """A checkpoint holding NaN (written before saves were checked, or a bit flip) or finite but
    absurd weights (a blow-up) is passed over for the previous sound one, instead of resuming into
    the same failure ("lower the lr") on every rerun."""
    _save(tmp_path, 1, 1.0)
    for step, value, why in ((2, float("nan"), "student/w holds NaN/inf"), (3, 1e30, "|w| = 1e+30 > 10000")):
        weights = {"w": torch.full((2,), value)}
        save_checkpoint(tmp_path, TrainState(0, step, step), weights, {}, {}, phases=[("p", 9)])
        lines: list[str] = []
        assert load_latest(tmp_path, "cpu", say=lines.append).state.global_step == 1
        assert why in lines[0]
    assert ckpt.WEIGHT_LIMIT == RuntimeConfig().max_weight_abs
    assert load_latest(tmp_path, "cpu", say=lines.append, limit=1e31).state.global_step == 3
    run = {"recipe": {"runtime": {"max_weight_abs": 1e31}}}  # the limit the run trained with
    save_checkpoint(tmp_path, TrainState(0, 4, 4), {"w": torch.full((2,), 1e30)}, {}, {}, run=run)
    assert load_latest(tmp_path, "cpu", say=lines.append).state.global_step == 4


def _two_checkpoints(tiny_sd_dir, out):
    recipe = small_recipe(tiny_sd_dir, out, steps=2)
    return train(replace(recipe, runtime=replace(recipe.runtime, checkpoint_every=1)))


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_read_only_commands_never_modify_a_run(tiny_sd_dir, tmp_path, monkeypatch):
    """Student.from_run (tlcm.sample --student, tlcm.evaluate student, tlcm.export) on a run whose
    latest checkpoint and pointer are damaged: it uses the newest complete checkpoint and changes
    nothing in the run, and works when every write there fails (a read-only run folder)."""
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student

    _two_checkpoints(tiny_sd_dir, tmp_path / "run")
    root = tmp_path / "run" / "checkpoints"
    (root / "step-0000002" / "optimizer.pt").write_bytes(b"PK\x03\x04 garbage")
    (root / "latest").write_bytes(b"")
    before = _tree(tmp_path / "run")
    base = BaseModel.load(tiny_sd_dir, "cpu")

    def refuse(*args, **kwargs):
        raise PermissionError(30, "Read-only file system")

    for name in ("rename", "replace", "unlink", "rmdir", "mkdir", "touch", "write_text", "write_bytes"):
        monkeypatch.setattr(Path, name, refuse)
    monkeypatch.setattr(os, "rename", refuse)
    monkeypatch.setattr(os, "replace", refuse)
    student = Student.from_run(base, tmp_path / "run")
    monkeypatch.undo()
    assert student.config.lora_rank == 4 and _tree(tmp_path / "run") == before


def _preempted(tiny_sd_dir, out, **recipe_changes):
    """A 3-step run stopped after step 1 (a checkpoint at step 1), then the recipe with changes."""
    first = Trainer(small_recipe(tiny_sd_dir, out, steps=3))
    interrupt_after(first, 1)
    assert first.run().preempted
    recipe = small_recipe(tiny_sd_dir, out, steps=3)
    for section, fields in recipe_changes.items():
        if section == "phase":
            recipe = replace(recipe, phases={"stage": replace(recipe.phases["stage"], **fields)})
        else:
            recipe = replace(recipe, **{section: replace(getattr(recipe, section), **fields)})
    return recipe


def test_resume_refuses_another_recipe_naming_the_fields_unless_asked(tiny_sd_dir, tmp_path, capsys):
    """Another lr and seed: refused in one line naming both; with resume_changed it resumes (one
    line saying what changed) and the next checkpoint stores the new recipe. Fields that do not
    alter training (log_every, checkpoint cadence, trackers, failure handling) may change."""
    recipe = _preempted(tiny_sd_dir, tmp_path, phase={"lr": 2e-3}, runtime={"seed": 1})
    with pytest.raises(TLCMError) as err:
        train(recipe)
    message = str(err.value)
    assert "phases.stage.lr 0.001 -> 0.002; runtime.seed 0 -> 1 (checkpoint -> this run)" in message
    assert "--recipes.runtime.resume-changed" in message and "\n" not in message
    on_purpose = replace(recipe, runtime=replace(recipe.runtime, resume_changed=True))
    assert train(on_purpose).state.global_step == 3
    assert "--recipes.runtime.resume-changed: resuming" in capsys.readouterr().err
    stored = json.loads((tmp_path / "checkpoints" / "step-0000003" / "state.json").read_text())
    assert stored["run"]["recipe"]["phases"]["stage"]["lr"] == 2e-3 and stored["run"]["processes"] == 1
    harmless = _preempted(
        tiny_sd_dir,
        tmp_path / "b",
        runtime={"log_every": 2, "checkpoint_every": 5, "on_nonfinite": "skip", "max_weight_abs": 1e5},
    )
    assert train(harmless).state.global_step == 3


def test_resume_refuses_another_base_model_and_process_count(tiny_sd_dir, tmp_path, capsys):
    """Another base of the same architecture (one weight changed: the fingerprint samples it),
    the same model moved (accepted), another process count, and a checkpoint from before run
    records (resumed, with a notice)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    moved = tmp_path / "moved"
    shutil.copytree(tiny_sd_dir, moved)
    recipe = _preempted(tiny_sd_dir, tmp_path / "run", model={"path": moved})
    trainer = Trainer(recipe)  # the same model elsewhere: resumes
    assert trainer._restore().state.global_step == 1
    (weights,) = (moved / "unet").glob("*.safetensors")
    with safe_open(weights, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(weights)
    tensors = {k: v * 1.001 if k.endswith("conv_in.weight") else v for k, v in tensors.items()}
    size = weights.stat().st_size
    save_file(tensors, weights, metadata=metadata)
    assert weights.stat().st_size == size  # a fine-tune: same architecture, same file sizes
    with pytest.raises(TLCMError, match=r"base model \S*tiny-sd\S* -> \S*moved \(fingerprint \w+ -> \w+\)"):
        train(recipe)
    state_file = tmp_path / "run" / "checkpoints" / "step-0000001" / "state.json"
    record = json.loads(state_file.read_text())
    record["run"]["processes"] = 2
    state_file.write_text(json.dumps(record))
    recipe = replace(recipe, model=replace(recipe.model, path=tiny_sd_dir))
    with pytest.raises(TLCMError, match=r"another recipe or model: processes 2 -> 1 \(checkpoint"):
        train(recipe)
    del record["run"]
    state_file.write_text(json.dumps(record))
    capsys.readouterr()
    assert train(recipe).state.global_step == 3
    assert "predates stored recipes: resuming with only its phases" in capsys.readouterr().err


class Unhandled(Exception):
    pass


@contextlib.contextmanager
def _unhandled_signals_fail():
    """While the block runs, a stop signal that the run does not handle raises Unhandled (instead
    of killing or interrupting pytest)."""

    def unhandled(signum, frame):
        raise Unhandled(signal.Signals(signum).name)

    previous = {s: signal.signal(s, unhandled) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_stop_signals_save_and_exit_75(tiny_sd_dir, tmp_path, capsys, name):
    """SIGTERM, Ctrl-C and a closed terminal all save after the step and exit 75 (before: SIGINT
    raised KeyboardInterrupt with a traceback and lost the phase, SIGHUP killed the process)."""
    from tlcm.errors import run_cli
    from tlcm.train import TrainArgs, main

    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=3, sigterm_step=0, signal_name=name)
    with _unhandled_signals_fail(), pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(TrainArgs(recipes=recipe)))
    assert exit_info.value.code == PREEMPTED_EXIT_CODE == 75
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step-0000001"
    err = capsys.readouterr().err
    assert f"{name}: saved a checkpoint at step 1; exit 75" in err and "Traceback" not in err
    assert err.index("1/3") < err.index("saved a checkpoint")  # the last line, below the final progress


def test_a_second_ctrl_c_aborts_in_one_line(tiny_sd_dir, tmp_path, capsys):
    from tlcm.errors import run_cli
    from tlcm.train import TrainArgs, main

    recipe = small_recipe(
        tiny_sd_dir, tmp_path, steps=3, sigterm_step=0, signal_name="SIGINT", signal_count=2
    )
    try:
        with pytest.raises(SystemExit) as exit_info:
            run_cli(lambda: main(TrainArgs(recipes=recipe)))
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped run_cli")
    assert exit_info.value.code == 130
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines[-1].startswith("interrupted (Ctrl-C): stopped without saving")
    assert not (tmp_path / "checkpoints").exists()


def test_under_torchrun_only_rank_0_prints_an_input_error(monkeypatch, capsys):
    """Every rank validates the same recipe: one line from rank 0, the same exit code everywhere.
    A rank > 0 waits to be stopped by torchrun (which it is once rank 0 exits) and prints its own
    line only when it is not (an error of that rank alone)."""
    from tlcm import errors, preemption
    from tlcm.errors import run_cli

    def bad():
        raise TLCMError("--recipes.phases.mlcd.batch-size 10 does not split")

    stopped = preemption.StopSignals()
    stopped.received = "SIGTERM"  # torchrun stopped this rank after rank 0 exited
    monkeypatch.setattr(errors, "RANK_GRACE_SECONDS", 0.2)
    line = "error: --recipes.phases.mlcd.batch-size 10 does not split\n"
    for rank, process, printed in (("1", stopped, ""), ("0", None, line), ("1", None, f"[rank 1] {line}")):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setattr(preemption, "_process", process)
        with pytest.raises(SystemExit) as exit_info:
            run_cli(bad)
        assert exit_info.value.code == 2
        assert capsys.readouterr().err == printed


def test_the_model_fingerprint_sees_other_weights_of_the_same_size_not_a_move(tmp_path):
    """Large files are sampled (16 x 64 KiB), yet two weights files of the same size whose bytes
    differ throughout (two fine-tunes) differ; a moved folder, hidden files and READMEs do not."""
    from tlcm.resume import model_fingerprint

    a = tmp_path / "a"
    (a / "unet").mkdir(parents=True)
    (a / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    weights = a / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(torch.randn(5 << 18).numpy().tobytes())  # 5 MiB
    before = model_fingerprint(a)
    shutil.copytree(a, tmp_path / "b")
    (tmp_path / "b" / ".cache").mkdir()
    (tmp_path / "b" / ".cache" / "x").write_text("download metadata")
    (tmp_path / "b" / "README.md").write_text("a model card")
    assert model_fingerprint(tmp_path / "b") == before
    weights.write_bytes(torch.randn(5 << 18).numpy().tobytes())
    assert model_fingerprint(a) != before


def test_skipped_steps_survive_a_resume(tiny_sd_dir, tmp_path):
    """Step 1 skipped (NaN, on_nonfinite "skip"), a stop after step 2, a resume to step 4: the run
    still counts step 1 as skipped (max_skipped_fraction is over the whole phase) and the final
    checkpoint's state.json records it."""

    def recipe():
        r = small_recipe(tiny_sd_dir, tmp_path, steps=4, poison_step=0)  # global step 0: the 1st
        return replace(r, runtime=replace(r.runtime, on_nonfinite="skip"))

    first = Trainer(recipe())
    interrupt_after(first, 2)
    stopped = first.run()
    assert stopped.preempted and stopped.skipped_steps == [1]
    resumed = train(recipe())
    assert resumed.state.global_step == 4 and resumed.skipped_steps == [1]
    stored = json.loads((tmp_path / "checkpoints" / "step-0000004" / "state.json").read_text())
    assert stored["skipped"] == [1]


def test_resume_inside_a_later_phase_equals_the_uninterrupted_run(tiny_sd_dir, tmp_path):
    """Two phases of 2 steps, stopped after global step 3 (phase b's step 1, where the phase's
    step and the global step differ): the resumed run draws the prompts and noise of global step 4
    and ends with the uninterrupted run's weights and log."""

    def recipe(out):
        r = small_recipe(tiny_sd_dir, out, steps=2)
        return replace(r, phases={"a": r.phases["stage"], "b": r.phases["stage"]})

    straight = train(recipe(tmp_path / "a"))
    first = Trainer(recipe(tmp_path / "b"))
    interrupt_after(first, 3)
    assert first.run().state == TrainState(1, 1, 3)
    resumed = train(recipe(tmp_path / "b"))
    assert resumed.state.global_step == straight.state.global_step == 4
    a, b = straight.student.state_dict(), resumed.student.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = lambda p: [json.loads(x) for x in (p / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert [(r["global_step"], r["mlcd"]) for r in log(tmp_path / "a")] == [
        (r["global_step"], r["mlcd"]) for r in log(tmp_path / "b")
    ]


def test_a_runs_student_loads_on_the_base_model_it_was_trained_on(tiny_sd_dir, tmp_path, capsys):
    """tlcm.sample / evaluate student / export default --model to the base model the run records
    (they used the miniature: a run of another model failed, naming a training flag, or a fine-tune
    of the same architecture sampled on the wrong weights); RUN/student and RUN/checkpoints name the
    run, one step folder is refused; another --model gets a note; a moved-away model an error; and
    init_from refuses a run of another base model."""
    from safetensors.torch import load_file, save_file

    from tlcm.resume import check_init_base, run_folder, student_model
    from tlcm.sample import cli as sample

    run = tmp_path / "run"
    recipe = small_recipe(tiny_sd_dir, run, steps=1)
    train(recipe)
    notes: list[str] = []
    assert student_model(run, None, None, notes.append) == (tiny_sd_dir, None) and notes == []
    assert run_folder(run / "student", "--student") == run_folder(run / "checkpoints", "--student") == run
    with pytest.raises(TLCMError, match=r"--student \S+step-0000001 is one checkpoint of the run"):
        run_folder(run / "checkpoints" / "step-0000001", "--student")
    grid = sample(["--student", str(run / "student"), "--steps", "1", "--num-per-prompt", "1", "--out",
                   str(tmp_path / "g.png"), "--device", "cpu"])  # fmt: skip
    assert grid.is_file()
    moved = tmp_path / "moved"
    shutil.copytree(tiny_sd_dir, moved)
    assert student_model(run, moved, None, notes.append) == (moved, None) and notes == []  # same model
    (weights,) = (moved / "unet").glob("*.safetensors")
    tensors = {k: v * 1.001 if k.endswith("conv_in.weight") else v for k, v in load_file(weights).items()}
    save_file(tensors, weights, metadata={"format": "pt"})  # a fine-tune of the same architecture
    assert student_model(run, moved, 8, notes.append) == (moved, 8)
    assert notes == [f"note: {run} was trained on {tiny_sd_dir}; using its student on --model {moved}"]
    with pytest.raises(TLCMError, match="was trained on another base model"):
        model, student = replace(recipe.model, path=moved), replace(recipe.student, init_from=run)
        train(
            replace(
                recipe, model=model, student=student, runtime=replace(recipe.runtime, out_dir=tmp_path / "n")
            )
        )
    check_init_base(None, {"model": {"path": "x", "fingerprint": "y"}}, "--flag")  # older records: no check
    state = run / "checkpoints" / "step-0000001" / "state.json"
    record = json.loads(state.read_text())
    record["run"]["recipe"]["model"]["path"] = str(tmp_path / "gone")
    state.write_text(json.dumps(record))
    with pytest.raises(TLCMError, match=r"was trained on \S+gone, which is not a folder here: pass --model"):
        student_model(run, None, None, notes.append)


def test_absurd_negative_weights_are_unsound_too(tmp_path):
    """The weight limit bounds |w|: a blow-up to -1e30 is passed over like one to +1e30, and a
    checkpoint whose largest magnitude is a negative weight within the limit is sound."""
    _save(tmp_path, 1, 1.0)
    save_checkpoint(
        tmp_path, TrainState(0, 2, 2), {"w": torch.tensor([1.0, -1e30])}, {}, {}, phases=[("p", 9)]
    )
    lines: list[str] = []
    assert load_latest(tmp_path, "cpu", say=lines.append).state.global_step == 1
    assert "student/w holds |w| = 1e+30 > 10000" in lines[0]
    assert ckpt.unsound({"student": {"w": torch.tensor([-9999.0, 2.0])}}, 1e4) is None


def test_pruning_keeps_the_newest_checkpoints(tmp_path):
    """``keep`` = 2: after saves at steps 1..5 the new checkpoint and the ``keep`` newest before it
    remain (steps 3, 4, 5: what a damaged latest falls back to); the oldest go."""
    for step in (1, 2, 3, 4, 5):
        save_checkpoint(tmp_path, TrainState(0, step, step), {"w": torch.ones(2)}, {}, {}, keep=2)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.glob("step-*")) == ["step-0000003", "step-0000004", "step-0000005"]
    assert (root / "latest").read_text() == "step-0000005"


def test_the_model_fingerprint_samples_the_whole_of_a_large_file(tmp_path):
    """Of a weights file over 1 MiB, 16 slices of 64 KiB spread from its first to its last byte
    are hashed: a changed last slice or a changed slice at the middle changes the fingerprint, a
    change between the slices does not (the documented blind spot)."""
    from tlcm.resume import SAMPLE_BYTES, SAMPLES, model_fingerprint

    (tmp_path / "unet").mkdir()
    weights = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(torch.randn(5 << 18).numpy().tobytes())  # 5 MiB
    weights.write_bytes(bytes(data))
    before = model_fingerprint(tmp_path)
    size = len(data)
    step = (size - SAMPLE_BYTES) // (SAMPLES - 1)  # slice i starts at (size - 64 KiB) * i / 15
    for where, seen in ((size - 1, True), (8 * step + 5, True), (step - 7, False)):
        changed = bytearray(data)
        changed[where] ^= 0xFF
        weights.write_bytes(bytes(changed))
        assert (model_fingerprint(tmp_path) != before) == seen, where
    weights.write_bytes(bytes(data))
    assert model_fingerprint(tmp_path) == before


def test_a_given_prompt_length_overrides_the_runs_recorded_one(tmp_path):
    """tlcm.sample / export load a run's student with --max-sequence-length when given, else the
    T5 length its run recorded; the base model is the recorded one either way."""
    from tlcm.resume import student_model

    model = tmp_path / "model"
    model.mkdir()
    run = {"recipe": {"model": {"path": str(model), "max_sequence_length": 16}}}
    save_checkpoint(tmp_path / "run", TrainState(0, 1, 1), {"w": torch.ones(2)}, {}, {}, run=run)
    assert student_model(tmp_path / "run", None, None, print) == (model, 16)
    assert student_model(tmp_path / "run", None, 8, print) == (model, 8)


def test_a_field_only_one_recipe_has_is_a_change_either_way():
    """recipe_changes compares the two recipes both ways: a field that only the checkpoint's recipe
    has, or only this run's (a loss added, a field new in this version), is a change shown as
    "(unset)" on the side that lacks it; a field the two share with equal values is none, and an
    unchecked one (runtime.log_every) never is."""
    from tlcm.resume import recipe_changes

    saved = {"phases": {"a": {"lr": 0.001}}, "runtime": {"log_every": 1}}
    current = {"phases": {"a": {"lr": 0.001, "ema_decay": 0.9}}, "runtime": {"log_every": 5, "seed": 1}}
    assert recipe_changes(saved, current) == [
        "phases.a.ema-decay (unset) -> 0.9",
        "runtime.seed (unset) -> 1",
    ]
    assert recipe_changes(current, saved) == [
        "phases.a.ema-decay 0.9 -> (unset)",
        "runtime.seed 1 -> (unset)",
    ]
    assert recipe_changes(saved, saved) == []
