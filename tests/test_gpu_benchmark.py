"""benchmarks/gpu.py in its tiny CPU mode: every section produces its fields, results are written as
it goes, and a time limit stops it cleanly with the partial results on disk."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu  # the repository root is on sys.path: pyproject.toml, pytest pythonpath


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-bench")
    data = gpu.main(["--device", "cpu", "--out", str(out), "--work-dir", str(out / "work")])
    return out, data


def test_every_section_produces_its_fields(tiny_run):
    out, data = tiny_run
    sections = data["sections"]
    assert list(sections) == list(gpu.SECTIONS)
    assert all(s["status"] == "done" for s in sections.values()), {
        k: s["status"] for k, s in sections.items()
    }
    for kind in ("sdxl", "sd15"):
        assert sections["build"]["models"][kind]["unet"] > 0
        phases = [r for r in sections[kind]["phases"] if r["phase"] != "(load)"]
        assert [r["phase"] for r in phases] == ["mlcd", "lcd", "preference", "dmd_gan"]
        for r in phases:
            assert r["status"] == "done" and r["finite_steps"] == r["timed_steps"] == 1
            assert r["s_per_step"] > 0 and r["tflop_per_step"] > 0 and r["achieved_tflop_per_s"] > 0
            assert r["samples_per_s"] == pytest.approx(r["batch"] / r["s_per_step"])
            assert r["projected_hours"] == pytest.approx(r["s_per_step"] * r["paper_iterations"] / 3600)
        assert phases[0]["grad_accum"] == 2  # the tiny MLCD phase runs two micro-batches
        total = sum(r["projected_hours"] for r in phases)
        assert sections[kind]["projected_hours_total"] == pytest.approx(total)
    runs = sections["miniature"]["runs"]
    assert [r["precision"] for r in runs] == ["bf16", "fp32"]
    for r in runs:
        assert r["train_s"] > 0 and [s["steps"] for s in r["scores"]] == [1, 2]
        assert all(0 <= s["alignment"] <= 1 and s["fd"] >= 0 for s in r["scores"])
    rows = {r["model"]: r for r in sections["inference"]["rows"]}
    assert set(rows) == {"student, LoRA unfused", "student, LoRA fused", "teacher"}
    assert all(r["s_per_image"] > 0 for r in rows.values())
    assert rows["teacher"]["speedup_vs_teacher"] == 1.0
    written = json.loads((out / "gpu.json").read_text())
    assert written["data"]["sections"]["inference"]["status"] == "done"
    assert written["meta"]["torch"] and written["meta"]["date"] and written["meta"]["command"]  # sys.argv
    md = (out / "gpu.md").read_text()
    assert "SDXL: tlcm-full-sdxl phases" in md and "Miniature tlcm-full" in md and "x teacher" in md


def test_time_limit_stops_after_the_running_section(tmp_path):
    data = gpu.main(
        ["--device", "cpu", "--out", str(tmp_path), "--sections", "build,sd15,inference"]
        + ["--time-limit", "0", "--work-dir", str(tmp_path / "work")]
    )
    status = {k: s["status"] for k, s in data["sections"].items()}
    assert status == {"build": "done", "sd15": "skipped (time limit)", "inference": "skipped (time limit)"}
    written = json.loads((tmp_path / "gpu.json").read_text())["data"]["sections"]
    assert written["build"]["models"]["sd15"]["unet"] > 0 and written["sd15"]["status"] == status["sd15"]
    assert "skipped (time limit)" in (tmp_path / "gpu.md").read_text()


def test_unknown_section_is_refused():
    with pytest.raises(SystemExit):
        gpu.parse(["--sections", "build,warp"])
