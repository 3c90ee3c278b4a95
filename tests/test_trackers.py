"""Optional trackers: every sink gets metrics.jsonl's numbers at its global steps (a fake sink;
tensorboard and offline wandb read back when installed), and a missing package is one line
before the model loads."""

import importlib.util
import json
import struct
from dataclasses import replace

import pytest
from engine_helpers import small_recipe

from tlcm.engine import NonFiniteLoss, Trainer, train
from tlcm.errors import run_cli
from tlcm.report import Reporter
from tlcm.train import cli


class FakeSink:
    def __init__(self):
        self.logged, self.closed = [], None

    def log(self, values, step):
        self.logged.append((step, values))

    def close(self, failed=False):
        self.closed = "failed" if failed else "ok"


def _recipe(model_dir, out_dir, trackers=(), steps=3, **kw):
    recipe = small_recipe(model_dir, out_dir, steps=steps, **kw)
    runtime = replace(recipe.runtime, trackers=trackers, on_nonfinite="skip", max_skipped_fraction=0.5)
    return replace(recipe, runtime=runtime)  # 1 of 3 steps skipped: within the phase's allowance


def _expected(out_dir):
    """metrics.jsonl as (global step, {name: number}) pairs, as sinks should see them."""
    lines = [json.loads(x) for x in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [
        (r["global_step"], {k: v for k, v in r.items() if type(v) in (int, float) and k != "global_step"})
        for r in lines
    ]


def test_sinks_get_the_numbers_of_metrics_jsonl(tiny_sd_dir, tmp_path):
    trainer = Trainer(_recipe(tiny_sd_dir, tmp_path, poison_step=1))  # step 2: NaN, null in the log
    sink = FakeSink()
    trainer.reporter.sinks.append(sink)
    trainer.run()
    expected = _expected(tmp_path)
    assert [s for s, _ in expected] == [1, 2, 3] and "norm" not in expected[1][1]
    assert sink.logged == expected and sink.closed == "ok"


def test_sinks_are_closed_on_an_exception(tmp_path):
    sink = FakeSink()
    reporter = Reporter(tmp_path)
    reporter.sinks.append(sink)
    with pytest.raises(RuntimeError), reporter:
        reporter.report({"phase": "p", "step": 1, "global_step": 1, "loss": 0.5, "skipped": False}, {})
        raise RuntimeError("boom")
    assert sink.logged[0][0] == 1 and sink.logged[0][1]["loss"] == 0.5 and sink.closed == "failed"
    assert reporter.sinks == []


def test_missing_tracker_package_is_one_line_before_the_model_loads(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    missing = lambda name, *a: None if name == "wandb" else real(name, *a)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", missing)
    monkeypatch.setattr("tlcm.engine.BaseModel.load", lambda *a, **k: pytest.fail("the model loaded"))
    out = tmp_path / "run"
    argv = ["recipes:mlcd", "--recipes.runtime.trackers", "wandb"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: cli([*argv, "--recipes.runtime.out-dir", str(out)]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--recipes.runtime.trackers wandb: the wandb package is not installed: pip install wandb" in err
    assert "pip install -e '.[wandb]'" in err and not out.exists()


def test_tensorboard_scalars_and_hparams_equal_metrics_jsonl_after_a_resume(tiny_sd_dir, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    crashed = _recipe(tiny_sd_dir, tmp_path, ("tensorboard",), steps=4, poison_step=3)
    crashed = replace(crashed, runtime=replace(crashed.runtime, checkpoint_every=2, on_nonfinite="stop"))
    with pytest.raises(NonFiniteLoss):  # logs steps 1-3, checkpoint at 2, stops at 4
        train(crashed)
    train(_recipe(tiny_sd_dir, tmp_path, ("tensorboard",), steps=4))  # resumes at 2: its step 3 replaces
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    expected = _expected(tmp_path)
    assert [s for s, _ in expected] == [1, 2, 3, 4]
    for tag in expected[0][1]:
        got = [(e.step, e.value) for e in events.Scalars(tag)]
        assert got == [(s, pytest.approx(v[tag], rel=1e-6)) for s, v in expected], tag
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 2
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["runtime.out_dir"].string_value == str(tmp_path)
    assert hparams["phases.stage.lr"].number_value == 1e-3


def _wandb_records(path):
    """The protobuf records of a .wandb file: a 7-byte W&B header, then LevelDB's log format."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, chunk, block = path.read_bytes(), 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's zero-padded tail
            pos += block - pos % block
            continue
        length, kind = struct.unpack_from("<HB", data, pos + 4)
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def test_wandb_offline_run_holds_metrics_and_recipe(tiny_sd_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "online")  # the code's mode="offline" wins: no network call
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(_recipe(tiny_sd_dir, tmp_path, ("wandb",), steps=2))
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    records = list(_wandb_records(run_file))
    rows = [r.history for r in records if r.WhichOneof("record_type") == "history"]
    items = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in row.item} for row in rows]
    history = [{k: v for k, v in row.items() if not k.startswith("_")} for row in items]  # _step, _runtime
    steps = [row.step.num for row in rows]
    expected = _expected(tmp_path)
    assert steps == [s for s, _ in expected]
    assert history == [pytest.approx(v, rel=1e-6) for _, v in expected]
    config = {
        i.key: json.loads(i.value_json)
        for r in records
        if r.WhichOneof("record_type") == "run"
        for i in r.run.config.update
    }
    assert config["runtime"]["out_dir"] == str(tmp_path) and config["runtime"]["trackers"] == ["wandb"]


def test_tensorboard_hparams_are_named_by_dotted_paths():
    """The recipe as hparams: nested keys joined by dots (phases.mlcd.lr), top-level keys as they are."""
    from tlcm.trackers import _flatten

    tree = {"phases": {"mlcd": {"lr": 1e-4, "steps": 3}}, "seed": 0}
    assert list(_flatten(tree)) == [("phases.mlcd.lr", 1e-4), ("phases.mlcd.steps", 3), ("seed", 0)]


def test_a_resume_keeps_its_checkpoint_steps_line_and_drops_a_torn_one(tmp_path, monkeypatch):
    """Resuming from the checkpoint of global step 2: metrics.jsonl keeps steps 1 and 2 and loses 3
    and a torn last line (a kill mid-write); the trackers purge from step 3 on (TensorBoard's
    purge_step: values at steps >= it go), so step 2's values stay."""
    import tlcm.report

    opened = []
    monkeypatch.setattr(tlcm.report, "open_sinks", lambda names, out, rec, purge: opened.append(purge) or [])
    lines = [json.dumps({"global_step": s, "loss": 0.5}) for s in (1, 2, 3)] + ['{"global_step": 4, "lo']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    reporter = Reporter(tmp_path, trackers=("tensorboard",))
    reporter.truncate(2)
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == lines[:2]
    with reporter:
        pass
    assert opened == [3]


def test_a_wandb_run_is_marked_failed_only_when_the_run_failed(monkeypatch, tmp_path):
    """WandbSink.close: exit code 0 for a run that ended normally, 1 for one that ended with an
    exception (wandb shows the run as crashed); the run is offline, named by its folder (a fake
    wandb module: the real one is an optional extra)."""
    import sys
    from types import SimpleNamespace

    from tlcm.trackers import WandbSink

    finished, inits = [], []

    def init(**kwargs):
        inits.append(kwargs)
        return SimpleNamespace(finish=lambda exit_code: finished.append(exit_code), log=None)

    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(init=init, Settings=dict))
    for failed in (False, True):
        WandbSink(tmp_path / "run", {"seed": 0}).close(failed=failed)
    assert finished == [0, 1]
    assert inits[0]["mode"] == "offline" and inits[0]["name"] == "run" and inits[0]["config"] == {"seed": 0}
