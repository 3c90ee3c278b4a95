"""What the user reads after a run (red-team round 11): the end-of-run summary's files, seconds,
commands and paths; ``tlcm.evaluate`` teacher-table's files and guidance scales, ``student``'s step
range and denoiser, ``compare``'s side-by-side order; the results table's json and image grid; the
model card's scores commands, first-move gamma and timestep table; metrics.jsonl's it/s and what the
trackers get."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from tlcm.config import ModelConfig, StudentConfig
from tlcm.errors import TLCMError
from tlcm.summary import RESULTS, run_summary
from tlcm.toy import MINIATURE_SD

SCORES = [
    {"steps": n, "prompts": 200, "alignment": a, "fd": fd}
    for n, a, fd in ((1, 0.78, 40.0), (2, 0.93, 9.5), (4, 0.95, 6.5), (8, 0.94, 5.9))
]


def _run(root: Path, *folders: str) -> Path:
    """A finished run's folder (short: wrapped prose keeps its paths whole) with eval.json and
    ``folders``."""
    run = root / "r"
    run.mkdir()
    for folder in folders:
        (run / folder).mkdir()
    (run / "eval.json").write_text(json.dumps(SCORES))
    return run


# ---- the end-of-run summary -------------------------------------------------------------------


def test_summary_of_another_base_model_suggests_commands_on_the_run_and_no_docs_numbers(tmp_path):
    """Another base model than the miniature: the suggested compare command reads RUN/eval.json
    (--run RUN, not the model's folder), and docs/results.md's miniature numbers are not offered
    as this model's."""
    run = _run(tmp_path, "student")
    model = tmp_path / "my-sd"
    text = run_summary(run, ModelConfig(path=model), 3.0, SCORES)
    assert f"\n  python -m tlcm.evaluate compare --run {run} --teacher T.json\n" in text
    assert "docs/results.md" not in text and "evaluate student" not in text


def test_summary_lists_only_the_files_written_and_the_seconds_as_seconds(tmp_path):
    """A run without checkpoints/, samples/ or metrics.jsonl (no save, no sample grid): the listing
    names only what exists; 241 s of training reads 241 s; 1234 evaluations read 1,234."""
    run = _run(tmp_path, "student")
    text = run_summary(run, ModelConfig(), 241.0, None, evals=1234)
    listed = [line.split()[0] for line in text.splitlines() if line.startswith("  ")]
    assert listed == ["student/", "eval.json"]
    assert text.startswith(
        f"Finished: 241 s of training, 1,234 denoiser evaluations (samples). Everything is in {run}/:"
    )


def test_the_console_summary_paths_resolve_from_the_working_directory(tmp_path, monkeypatch):
    """Printed from a working directory outside the repository, the teacher table's path is one
    that exists from there, and the 500-prompt note names the eval.json that ``evaluate student``
    replaces (RUN/eval.json)."""
    run = _run(tmp_path, "student")
    monkeypatch.chdir(tmp_path)
    text = run_summary(run, ModelConfig(), 241.0, SCORES)
    words = " ".join(text.split())
    (shown,) = re.findall(r"(\S*teacher_table_200\.json)", words)
    assert Path(shown).is_file() and Path(shown).resolve() == (RESULTS / "teacher_table_200.json").resolve()
    assert f"thisreplaces{run}/eval.json" in "".join(text.split())  # wrapped prose may break a path at a -


def test_the_summary_keeps_a_hyphenated_run_path_whole_on_one_line(tmp_path):
    """The 500-prompt note names RUN/eval.json inside prose wrapped at 100 columns: a run folder
    with hyphens (runs/tlcm-full) or a path over 100 characters stays whole on one line, to be
    copied, not broken at a hyphen or cut."""
    run = tmp_path / "tlcm-full-with-a-long-hyphenated-name-as-runs-get"
    run.mkdir()
    text = run_summary(run, ModelConfig(), 241.0, SCORES)
    assert any(f"{run}/eval.json" in line for line in text.splitlines())


# ---- python -m tlcm.evaluate ------------------------------------------------------------------


def _stub_teacher_table(monkeypatch, tiny_sd_dir, tmp_path, scales, name):
    """teacher-table on the tiny SD with the toy metrics stubbed: its rows and, per row, the 2-step
    latents its sampler gives (fixed noise and prompts)."""
    import tlcm.evaluate

    seen = []

    def scored(base, sampler, samples_per_digit, metrics=None):
        cond, uncond = base.encode(["a red digit", "a blue digit"])
        noise = torch.randn((2, *base.latent_shape), generator=torch.Generator().manual_seed(0))
        seen.append(sampler(cond, uncond, noise, torch.Generator().manual_seed(1)))
        return SimpleNamespace(alignment=0.5, fd=1.0)

    monkeypatch.setattr(tlcm.evaluate, "evaluate_toy", scored)
    monkeypatch.setattr(tlcm.evaluate, "ToyMetrics", lambda assets: None)
    with torch.no_grad():
        rows = tlcm.evaluate.teacher_table(scales, (2,), 1, model=tiny_sd_dir, out=tmp_path / name)
    return rows, seen


def test_teacher_table_writes_json_and_markdown_and_samples_each_row_at_its_w(
    tiny_sd_dir, tmp_path, monkeypatch
):
    """The JSON (what compare and the summary read) holds the rows, the .md beside it the table;
    each row is sampled at its own w: the w 3 row's latents are those of a table of w 3 alone, and
    differ from the w 1 row's (CFG changes the sample)."""
    rows, (at1, at3) = _stub_teacher_table(monkeypatch, tiny_sd_dir, tmp_path, (1.0, 3.0), "t.json")
    assert json.loads((tmp_path / "t.json").read_text()) == rows
    assert (tmp_path / "t.md").read_text().startswith("| w | steps | alignment | fd |")
    _, (alone,) = _stub_teacher_table(monkeypatch, tiny_sd_dir, tmp_path, (3.0,), "u.json")
    torch.testing.assert_close(at3, alone, rtol=0, atol=0)
    assert not torch.allclose(at1, at3)


def _stub_student(monkeypatch):
    """evaluate.student without a model: the student's denoiser is "student", the base's "base";
    returns the (denoiser, steps) each scoring got."""
    import tlcm.evaluate as evaluate
    from tlcm.diffusion.milestones import StudentGrid
    from tlcm.models.student import Student

    trained = SimpleNamespace(config=SimpleNamespace(grid=StudentGrid()), denoiser=lambda: "student")
    monkeypatch.setattr(Student, "from_run", staticmethod(lambda base, run: trained))
    monkeypatch.setattr(evaluate, "_load", lambda *args: SimpleNamespace(denoiser=lambda: "base"))
    monkeypatch.setattr(evaluate, "ToyMetrics", lambda assets: None)
    calls = []

    def scores(base, denoiser, steps, samples_per_digit, metrics, grid):
        calls.append((denoiser, tuple(steps)))
        return [{"steps": n, "prompts": 10 * samples_per_digit, "alignment": 0.5, "fd": 1.0} for n in steps]

    monkeypatch.setattr(evaluate, "student_scores", scores)
    return evaluate, calls


def test_evaluate_student_scores_the_students_denoiser_at_1_to_M_steps(tmp_path, monkeypatch):
    """M = 8 (the default grid): --steps 8 is scored (the default table's last row), --steps 9 is
    refused; the scored denoiser is the student's, not the base model's."""
    evaluate, calls = _stub_student(monkeypatch)
    run = tmp_path / "run"
    run.mkdir()
    evaluate.student(run, steps=(8,), samples_per_digit=1)
    evaluate.student(run, samples_per_digit=1)
    assert calls == [("student", (8,)), ("student", (1, 2, 4, 8))]
    with pytest.raises(TLCMError, match=r"--steps must be in 1..8 \(this student's M\), got 9"):
        evaluate.student(run, steps=(9,), samples_per_digit=1)


def test_compare_sets_each_step_counts_teacher_and_student_rows_together(tmp_path):
    """compare's rows: by step count, the student's row then the teacher's at that step count."""
    from tlcm.evaluate import compare

    run = _run(tmp_path)
    text = compare(run, RESULTS / "teacher_table_200.json")
    rows = [line.split(" | ")[:2] for line in text.splitlines()[2:] if line.startswith("| ")]
    assert rows == [
        [who, str(n)]
        for n in (1, 2, 4, 8)
        for who in (f"| student {run.name} (sampler not recorded)", "| teacher DDIM+CFG")
    ]


# ---- the results table and image grid ---------------------------------------------------------


def test_results_json_lists_the_rows_in_the_tables_order(tmp_path):
    from tlcm.eval.table import write_results

    rows = [
        {"model": "A", "steps": 4, "fid": 30.0},
        {"model": "B", "steps": 1, "fid": 20.0},
        {"model": "A", "steps": 1, "fid": 40.0},
    ]
    md, js = write_results(rows, ["fid"], tmp_path)
    in_md = [tuple(line.split(" | ")[:2]) for line in md.read_text().splitlines()[2:]]
    assert in_md == [("| A", "1"), ("| A", "4"), ("| B", "1")]
    assert [(r["model"], r["steps"]) for r in json.loads(js.read_text())] == [("A", 1), ("A", 4), ("B", 1)]


def test_image_grid_puts_each_model_on_a_row_below_the_prompts(tmp_path):
    """2 models x 3 prompts of uniform colours, 32 px thumbnails, 4 px padding, prompts in a top
    band of 32 // 4 = 8 px: image (r, c) covers x in label + c 36 + [0, 32), y in 8 + r 36 + [0, 32)."""
    from tlcm.eval.table import image_grid

    colours = [[(255, 0, 0), (0, 255, 0), (0, 0, 255)], [(255, 255, 0), (0, 255, 255), (255, 0, 255)]]
    rows = []
    for r, line in enumerate(colours):
        files = []
        for c, colour in enumerate(line):
            files.append(tmp_path / f"{r}{c}.png")
            Image.new("RGB", (20, 20), colour).save(files[-1])
        rows.append((f"model {r}", files))
    out = image_grid(rows, tmp_path / "grid.png", prompts=["a", "b", "c"], thumb=32, label_width=50)
    with Image.open(out) as grid:
        assert grid.size == (50 + 3 * 36, 8 + 2 * 36)
        for r, line in enumerate(colours):
            for c, colour in enumerate(line):
                x, y = 50 + c * 36, 8 + r * 36
                for dx, dy in ((1, 1), (30, 30), (1, 30), (30, 1)):
                    assert grid.getpixel((x + dx, y + dy)) == colour, (r, c, dx, dy)


# ---- the model card ---------------------------------------------------------------------------


def test_card_scores_commands_name_the_run_and_the_first_move_gamma(tmp_path):
    """A student exported to RUN/student: the card's scores commands take --run RUN (the folder with
    the checkpoints and eval.json), and a grid of gamma 0 with first_gamma 1 says both."""
    from tlcm.card import render_model_card
    from tlcm.diffusion.milestones import StudentGrid
    from tlcm.export import export_student
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student

    grid = StudentGrid(num_milestones=4, steps=4, gamma=0.0, first_gamma=1.0)
    student = Student(BaseModel.load(MINIATURE_SD), StudentConfig(lora_rank=2, grid=grid))
    run = tmp_path / "r"
    export_student(student, run / "student")
    at10 = [{**r, "prompts": 10} for r in SCORES[:3]]
    body = render_model_card(student, run / "student", "r", scores=at10)
    assert f"\n  python -m tlcm.evaluate compare --run {run} --teacher T.json\n" in body
    assert f"\n  python -m tlcm.evaluate student --run {run}\n" in body
    assert "gamma\n0 (1 for the first move, from pure noise) (1: fresh noise" in body
    plain = Student(BaseModel.load(MINIATURE_SD), StudentConfig(lora_rank=2))
    export_student(plain, tmp_path / "p" / "student")
    assert "first move" not in render_model_card(plain, tmp_path / "p" / "student", "p")


def test_card_timestep_table_has_every_step_count_up_to_M_and_sgm_uniform_of_its_T():
    """M = 4: rows 1, 2, 4 (4 = M included). A 500-timestep schedule: sgm_uniform steps at
    linspace(499, 0, n + 1) without the last point, n = 2 -> 499, 249.5."""
    from tlcm.card import timestep_rows
    from tlcm.diffusion.scheduler import TLCMScheduler

    rows = timestep_rows(TLCMScheduler(num_milestones=4), 4)
    assert [r["steps"] for r in rows] == [1, 2, 4]
    rows = {r["steps"]: r for r in timestep_rows(TLCMScheduler(num_train_timesteps=500), 8)}
    assert rows[2]["sgm_uniform"] == "499, 249.5"
    assert rows[1]["sgm_uniform"] == "499"


# ---- metrics.jsonl ----------------------------------------------------------------------------


class _Clock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_it_per_s_is_one_over_each_steps_seconds_from_the_phase_start(tmp_path, monkeypatch):
    """Reporter made at t 0, phase started at t 100, steps reported at 100.5 and 101.5: 2 and 1 it/s
    (each step's own seconds; the first counted from the phase's start, not the Reporter's)."""
    import tlcm.report

    clock = _Clock()
    monkeypatch.setattr(tlcm.report, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    reporter = tlcm.report.Reporter(tmp_path)
    clock.now = 100.0
    reporter.start_phase("mlcd", 10, 0)
    for now, step in ((100.5, 1), (101.5, 2)):
        clock.now = now
        reporter.report({"global_step": step}, {})
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["it_per_s"] for line in lines] == [2.0, 1.0]


def test_the_trackers_get_the_numbers_but_not_the_flags(tmp_path):
    """A metrics line's numbers go to the sinks at its global step; the booleans (skipped) and
    strings (phase) do not: a tracker plots numbers."""
    from tlcm.report import Reporter

    got = []
    sink = SimpleNamespace(log=lambda values, step: got.append((step, values)), close=lambda failed: None)
    reporter = Reporter(tmp_path)
    reporter.sinks.append(sink)
    reporter.report({"phase": "mlcd", "step": 2, "global_step": 7, "loss": 0.5, "skipped": False}, {})
    ((step, values),) = got
    assert step == 7 and sorted(values) == ["it_per_s", "loss", "step"] and values["loss"] == 0.5


def test_compare_refuses_a_teacher_table_of_mixed_prompt_counts(tmp_path):
    """A teacher table whose rows were scored on 200 and on 500 prompts (two tables concatenated)
    is no comparison for a 200-prompt student: its best w per step count would come from the
    500-prompt rows (lower FD from more images), as the summary's committed_teacher refuses too."""
    from tlcm.evaluate import compare

    run = _run(tmp_path)
    table = [
        {"steps": 2, "w": 2.0, "prompts": 200, "alignment": 0.9, "fd": 9.0},
        {"steps": 2, "w": 2.0, "prompts": 500, "alignment": 0.9, "fd": 7.0},
    ]
    (tmp_path / "T.json").write_text(json.dumps(table))
    with pytest.raises(
        TLCMError, match="T.json holds rows scored on 200 and 500 prompts: FD depends on the prompt count"
    ):
        compare(run, tmp_path / "T.json")
