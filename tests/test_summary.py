"""What a newcomer sees while training and after: the progress display in a narrow terminal, the
end-of-run summary (where every file went, the student's scores beside the teacher's on the same
prompts, what the metrics mean), ``tlcm.evaluate compare`` refusing scores on different prompt
counts, and ``tlcm.evaluate student`` saying that it replaced the run's eval.json."""

import io
import json
import re
import shutil
import time

import pytest
import torch
from rich.console import Console

from tlcm.checkpoint import TrainState, save_checkpoint
from tlcm.config import ModelConfig, StudentConfig
from tlcm.errors import TLCMError
from tlcm.evaluate import cli, compare
from tlcm.models.base import BaseModel
from tlcm.models.student import Student
from tlcm.report import Reporter
from tlcm.summary import RESULTS, run_summary
from tlcm.toy import MINIATURE_SD

SCORES = [
    {"steps": n, "prompts": 200, "alignment": a, "fd": fd}
    for n, a, fd in ((1, 0.78, 40.0), (2, 0.93, 9.5), (4, 0.95, 6.5), (8, 0.94, 5.9))
]


def _run(root):
    """A finished run's folder as the engine and tlcm.train leave it."""
    run = root / "tlcm-full"
    for folder in ("student/scheduler", "samples", "checkpoints"):
        (run / folder).mkdir(parents=True)
    for file in ("student/pytorch_lora_weights.safetensors", "student/README.md", "samples/0-mlcd.png"):
        (run / file).write_bytes(b"")
    (run / "metrics.jsonl").write_text("{}\n")
    (run / "eval.json").write_text(json.dumps(SCORES))
    return run


def test_summary_says_where_everything_went_and_scores_beside_the_teacher_at_the_same_prompts(tmp_path):
    run = _run(tmp_path)
    text = run_summary(run, ModelConfig(), 241.0, SCORES)
    words = " ".join(text.split())  # the prose is wrapped at 100 columns
    assert f"Everything is in {run}/:" in text
    for name in ("student/", "samples/", "metrics.jsonl", "eval.json", "checkpoints/"):
        assert f"\n  {name} " in text
    assert "README.md, pytorch_lora_weights.safetensors, scheduler/" in text  # what the export holds
    assert "the same 200 prompts" in words and "benchmarks/results/teacher_table_200.json" in words
    assert "| 2 | 0.930 | 0.905 | 9.50 | 9.49 | 2 |" in text  # the teacher's best 2-step w at 200 prompts
    assert "digit classifier's accuracy" in words and "Frechet distance" in words
    assert "docs/results.md quotes 500 prompts" in words  # why the docs' numbers are lower
    assert f"\n  python -m tlcm.evaluate student --run {run}\n" in text
    assert f"python -m tlcm.sample --student {run} --steps 4" in text

    at500 = [{**r, "prompts": 500} for r in SCORES]
    text = run_summary(run, ModelConfig(), 241.0, at500)
    words = " ".join(text.split())
    assert "the same 500 prompts" in words and "teacher_table.json" in words and "quotes" not in words
    assert "| 2 | 0.930 | 0.926 | 9.50 | 7.80 | 2 |" in text


def test_summary_of_another_base_model_has_no_teacher_and_says_how_to_get_one(tmp_path):
    run = _run(tmp_path)
    text = run_summary(run, ModelConfig(path=tmp_path / "my-sd"), 3.0, SCORES)
    assert "no committed teacher table" in " ".join(text.split()) and f"--model {tmp_path / 'my-sd'}" in text
    sample = next(line for line in text.splitlines() if line.startswith("Sample it:"))
    assert "| 2 | 0.930 | 9.50 |" in text and f"--student {run} --steps 4" in sample  # on the run's model
    assert "--model" not in sample
    assert run_summary(run, ModelConfig(), 3.0, None).count("\n") < 10  # no scores: the files only


def test_an_fsdp2_runs_summary_says_why_it_has_no_scores_and_how_to_get_them(tmp_path):
    """Walkthrough 8: the FSDP2 run's summary dropped the grids and scores without a word."""
    run = _run(tmp_path)
    text = " ".join(run_summary(run, ModelConfig(), 3.0, None, sharded=True).split())
    assert "FSDP2: no sample grids or scores" in text
    assert f"python -m tlcm.evaluate student --run {run}" in text
    assert "FSDP2" not in run_summary(run, ModelConfig(), 3.0, None)


def test_compare_refuses_scores_on_different_prompt_counts(tmp_path):
    run = _run(tmp_path)
    with pytest.raises(TLCMError, match="scores 200 prompts, --teacher .* 500: FD depends on the prompt"):
        compare(run, RESULTS / "teacher_table.json")
    text = compare(run, RESULTS / "teacher_table_200.json")
    assert "| student tlcm-full (sampler not recorded) | 2 | - | 200 | 0.930 | 9.500 |" in text
    assert "| teacher DDIM+CFG | 2 | 2.000 | 200 | 0.905 | 9.489 |" in text
    old = [{k: r[k] for k in ("steps", "alignment", "fd")} for r in SCORES]  # written before "prompts"
    (run / "eval.json").write_text(json.dumps(old))
    text = compare(run, RESULTS / "teacher_table.json")  # labelled, not refused
    assert "| student tlcm-full (sampler not recorded) | 2 | - | not recorded | 0.930 | 9.500 |" in text


def test_evaluate_student_says_it_replaced_the_runs_scores(tmp_path, capsys):
    run = tmp_path / "run"
    torch.manual_seed(0)
    student = Student(BaseModel.load(MINIATURE_SD), StudentConfig(lora_rank=4))
    save_checkpoint(run, TrainState(1, 0, 1), student.state_dict(), {}, {}, metadata=student.metadata())
    args = ["student", "--run", str(run), "--steps", "1", "--samples-per-digit", "1"]
    cli(args)
    assert f"wrote {run / 'eval.json'}\n" in capsys.readouterr().out
    cli(args)
    out = capsys.readouterr().out
    assert f"wrote {run / 'eval.json'} (replacing its earlier scores" in out and "| 1 | 10 |" in out
    assert json.loads((run / "eval.json").read_text())[0]["prompts"] == 10


@pytest.mark.parametrize("width", [60, 80])
def test_the_progress_display_wraps_in_a_narrow_terminal_instead_of_cutting(width, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(width))  # rich's width of a terminal (80 in a log)
    reporter = Reporter(tmp_path)
    reporter.start_phase("dmd-gan", 150, 10)
    show = {"dmd": 0.01234, "fake_score": 0.5678, "gan": 1.234, "disc": 0.6931}
    for step in (11, 12):
        time.sleep(0.05)  # a realistic it/s (tens, not millions)
        reporter.report({"global_step": step}, show)
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    console.print(reporter.progress.make_tasks_table(reporter.progress.tasks))
    lines = console.file.getvalue().splitlines()
    assert reporter.console.width == width and "\u2026" not in "".join(lines)  # nothing cut off ("...")
    assert all(s in lines[0] for s in ("dmd-gan", "12/150", "it/s"))  # the progress itself, and its ETA:
    assert re.search(r" \d:\d\d:\d\d ", lines[0])
    terms = [f"{k}={v:.4g}" for k, v in show.items()]
    assert all(t in "".join(line.strip() for line in lines) for t in terms)  # the terms, wrapped
    assert width < 80 or all(any(t in line for line in lines) for t in terms)  # at 80: each on one line


def test_the_suggested_teacher_table_scores_the_students_prompt_count(tmp_path):
    """200 prompts = 10 digits x 20 samples per digit: the command to score the teacher at the
    same count says --samples-per-digit 20; with no count recorded, the docs' 500 -> 50."""
    run = _run(tmp_path)
    text = run_summary(run, ModelConfig(path=tmp_path / "my-sd"), 3.0, SCORES)
    assert "--steps 1 2 4 8 --samples-per-digit 20 --out T.json" in text
    unknown = [{k: r[k] for k in ("steps", "alignment", "fd")} for r in SCORES]
    text = run_summary(run, ModelConfig(path=tmp_path / "my-sd"), 3.0, unknown)
    assert "--samples-per-digit 50 --out T.json" in text


def test_a_teacher_table_of_mixed_prompt_counts_is_not_set_beside_the_student(tmp_path, monkeypatch):
    """FD depends on the prompt count: a committed table whose rows were scored on 200 and on 500
    prompts is no comparison for a 200-prompt student (None); one of 200-prompt rows is, and gives
    the lowest-FD row per step count (w 2 here: FD 9 < 11)."""
    import tlcm.summary

    rows = [
        {"steps": 2, "w": 2.0, "prompts": 200, "alignment": 0.9, "fd": 9.0},
        {"steps": 2, "w": 4.0, "prompts": 500, "alignment": 0.9, "fd": 4.0},
    ]
    monkeypatch.setattr(tlcm.summary, "RESULTS", tmp_path)
    for name in tlcm.summary.TEACHER_TABLES[MINIATURE_SD.resolve()]:
        (tmp_path / name).write_text(json.dumps(rows))
    assert tlcm.summary.committed_teacher(MINIATURE_SD, 200) is None
    rows[1].update(prompts=200, w=4.0, fd=11.0)
    (tmp_path / "teacher_table.json").write_text(json.dumps(rows))
    path, best = tlcm.summary.committed_teacher(MINIATURE_SD, 200)
    assert path == tmp_path / "teacher_table.json" and best[2]["w"] == 2.0


def test_compare_sets_the_teachers_best_w_per_step_count_beside_the_student(tmp_path):
    """compare lists, per step count, the one teacher row of lowest FD (its best w), not every w it
    scored: a table of w 1 and w 3 at 1 and 2 steps gives w 1 at 1 step (FD 50 < 60) and w 3 at 2
    steps (FD 9 < 20), two teacher rows beside the student's four."""
    run = _run(tmp_path)
    table = [
        {"steps": 1, "w": 1.0, "prompts": 200, "alignment": 0.5, "fd": 50.0},
        {"steps": 1, "w": 3.0, "prompts": 200, "alignment": 0.6, "fd": 60.0},
        {"steps": 2, "w": 1.0, "prompts": 200, "alignment": 0.7, "fd": 20.0},
        {"steps": 2, "w": 3.0, "prompts": 200, "alignment": 0.8, "fd": 9.0},
    ]
    (tmp_path / "T.json").write_text(json.dumps(table))
    text = compare(run, tmp_path / "T.json")
    teacher = [line for line in text.splitlines() if line.startswith("| teacher")]
    assert teacher == [  # a table without "sampler" (written before it was recorded) names both
        "| teacher DDIM (flow: Euler)+CFG | 1 | 1.000 | 200 | 0.500 | 50.000 |",
        "| teacher DDIM (flow: Euler)+CFG | 2 | 3.000 | 200 | 0.800 | 9.000 |",
    ]
    assert sum(line.startswith("| student") for line in text.splitlines()) == len(SCORES)


def test_the_teacher_table_scores_deterministic_ddim_with_cfg(tiny_sd_dir, tmp_path, monkeypatch):
    """teacher-table samples the teacher (+ CFG) with deterministic DDIM (gamma 0 on every move): its
    2-step latents come from the starting noise alone, the same with two different step generators
    (LCM's gamma 1 would mix the generator's fresh noise into the second step), and each row is
    scored on 10 x samples_per_digit prompts, naming the model it scored and its sampler (what compare
    checks a student's base against). The toy metrics are stubbed out: only the sampler runs."""
    from types import SimpleNamespace

    import tlcm.evaluate

    seen = []

    def scored(base, sampler, samples_per_digit, metrics=None):
        cond, uncond = base.encode(["a", "b"])
        noise = torch.randn((2, *base.latent_shape), generator=torch.Generator().manual_seed(0))
        seen.append([sampler(cond, uncond, noise, torch.Generator().manual_seed(s)) for s in (1, 2)])
        return SimpleNamespace(alignment=0.5, fd=1.0)

    monkeypatch.setattr(tlcm.evaluate, "evaluate_toy", scored)
    monkeypatch.setattr(tlcm.evaluate, "ToyMetrics", lambda assets: None)
    with torch.no_grad():
        rows = tlcm.evaluate.teacher_table(
            (2.0,), (2,), samples_per_digit=3, model=tiny_sd_dir, out=tmp_path / "t.json", device="cpu"
        )
    assert [(r["w"], r["steps"], r["prompts"]) for r in rows] == [(2.0, 2, 30)]
    assert rows[0]["model"] == str(tiny_sd_dir) and rows[0]["sampler"] == "DDIM+CFG"
    ((one, other),) = seen
    torch.testing.assert_close(other, one, rtol=0, atol=0)


def _trained_on(run, model) -> None:
    """Give the run a checkpoint whose run record names ``model`` as its base."""
    step = run / "checkpoints" / "step-00000010"
    step.mkdir(parents=True)
    (step / "state.json").write_text(json.dumps({"run": {"recipe": {"model": {"path": str(model)}}}}))


def test_compare_refuses_another_models_teacher_and_names_each_run_and_sampler(tmp_path):
    """A teacher table records its model and sampler (the committed ones: the UNet miniature with
    DDIM, the flow one with Euler); a UNet student beside the flow teacher is refused, naming both
    models and the command for its own table. Several runs go in one table, each row named by its
    run and the gamma that scored it."""
    from tlcm.toy import MINIATURE_SD

    run = _run(tmp_path)
    _trained_on(run, MINIATURE_SD)
    with pytest.raises(TLCMError, match=r"scores the model tlcm/toy/assets/miniature-sd3, .* trained on "):
        compare(run, RESULTS / "teacher_table_flow.json")
    other = tmp_path / "pcm"
    shutil.copytree(run, other)
    scored = [{**r, "gamma": 0.0, "first_gamma": None} for r in SCORES]
    (other / "eval.json").write_text(json.dumps(scored))
    text = compare((run, other), RESULTS / "teacher_table_200.json")
    assert "| student pcm (gamma 0) | 2 | - | 200 | 0.930 | 9.500 |" in text
    assert "| student tlcm-full (sampler not recorded) | 2 | - | 200 | 0.930 | 9.500 |" in text
    assert "| teacher DDIM+CFG | 2 | 2.000 | 200 | 0.905 | 9.489 |" in text
    (other / "eval.json").write_text(json.dumps([{**r, "gamma": 0.0, "first_gamma": 1.0} for r in SCORES]))
    assert "| student pcm (gamma 0, first move 1) | 2 |" in compare(
        (other,), RESULTS / "teacher_table_200.json"
    )


def test_teacher_table_refuses_to_replace_the_committed_table_with_another(tmp_path, monkeypatch):
    """teacher-table's default --out is the committed 500-prompt table: a trial with fewer prompts,
    other steps, other w or another model is refused before anything loads (naming what changed),
    and the file is untouched; the same settings to another --out go ahead."""
    from tlcm import evaluate

    committed = evaluate.COMMITTED_TABLE.read_bytes()
    monkeypatch.setattr(evaluate, "_load", lambda *a: (_ for _ in ()).throw(RuntimeError("went ahead")))
    for kwargs, changed in [
        ({"samples_per_digit": 1}, "--samples-per-digit"),
        ({"steps": (1,)}, "--steps"),
        ({"guidance_scales": (2.0,)}, "--guidance-scales"),
        ({"model": evaluate.MINIATURE_SD.parent / "miniature-sd3"}, "--model"),
    ]:
        with pytest.raises(
            TLCMError, match=rf"--out defaults to .*teacher_table.json.* with {changed} changed"
        ):
            evaluate.teacher_table(out=evaluate.COMMITTED_TABLE, **kwargs)
    assert evaluate.COMMITTED_TABLE.read_bytes() == committed
    with pytest.raises(RuntimeError, match="went ahead"):
        evaluate.teacher_table(samples_per_digit=1, out=tmp_path / "T.json")
    with pytest.raises(RuntimeError, match="went ahead"):  # the full table may be remade in place
        evaluate.teacher_table(out=evaluate.COMMITTED_TABLE)
