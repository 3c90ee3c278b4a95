"""benchmarks/gpu.py in its tiny CPU mode: every section produces its fields, results are written as
it goes, and a time limit stops it cleanly with the partial results on disk."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu  # the repository root is on sys.path: pyproject.toml, pytest pythonpath

PHASES = ["mlcd", "lcd", "preference", "dmd_gan"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-bench")
    data = gpu.main(["--device", "cpu", "--out", str(out), "--work-dir", str(out / "work")])
    return out, data


def check_phase(r: dict) -> None:
    """A timed phase row: its timings, FLOPs, logged terms and projection."""
    assert r["status"] == "done" and r["finite_steps"] == r["timed_steps"] == 1
    assert r["s_per_step"] > 0 and r["tflop_per_step"] > 0 and r["achieved_tflop_per_s"] > 0
    assert r["s_per_sample"] == pytest.approx(r["s_per_step"] / r["batch"])
    assert r["samples_per_s"] == pytest.approx(r["batch"] / r["s_per_step"])
    paper = r["s_per_sample"] * r["preset_batch"] * r["paper_iterations"] / 3600
    assert r["projected_hours"] == pytest.approx(paper)
    assert "grad_norm" in r["terms"] and set(r["terms"]) == set(r["last_terms"])


@pytest.mark.slow
def test_every_section_produces_its_fields(tiny_run):
    out, data = tiny_run
    sections = data["sections"]
    assert list(sections) == list(gpu.SECTIONS)
    assert all(s["status"] == "done" for s in sections.values()), {
        k: s["status"] for k, s in sections.items()
    }
    models = data["models"]
    assert set(models) == {"sdxl", "sd15", "sd3", "flux"}
    for m in models.values():
        assert m.get("unet", m.get("transformer", 0)) > 0 and m["saved_gb"] > 0 and m["build_s"] > 0
    assert models["sd3"]["text_encoder_3"] == models["flux"]["text_encoder_2"] > 0  # one T5, linked
    for kind in ("sdxl", "sd15", "sd3", "flux"):
        phases = [r for r in sections[kind]["phases"] if r["phase"] != "(load)"]
        assert [r["phase"] for r in phases] == PHASES
        for r in phases:
            check_phase(r)
        total = sum(r["projected_hours"] for r in phases)
        assert sections[kind]["projected_hours_total"] == pytest.approx(total)
    assert [r["grad_accum"] for r in sections["sdxl"]["phases"][1:]] == [2, 1, 1, 1]  # tiny MLCD: 1 x 2
    for kind in ("sd3", "flux"):  # one micro-batch per step, embeddings cached on disk
        sec = sections[kind]
        assert all(r["grad_accum"] == 1 for r in sec["phases"][1:])
        assert sec["fsdp_requested"] == (kind == "flux") and sec["sharded"] is False
        assert sec["embedding_cache"]["chunk_files"] == 1 and sec["embedding_cache"]["bytes"] > 0
    options = sections["options"]
    variants = {r["phase"]: r["variant"] for r in options["phases"][1:]}
    assert variants == {"dmd_gan": "timm pixel GAN", "preference": "Diffusion-DPO"}
    for r in options["phases"][1:]:
        check_phase(r)
    ckpt = options["checkpointing"]
    for key in ("on", "off"):
        check_phase(ckpt[key])
        assert ckpt[key]["batch"] == 1 and ckpt[key]["load_s"] > 0
    for step in (0, 1):
        diff = ckpt[f"relative_difference_step{step}"]
        assert set(diff) == set(ckpt["on"]["terms"]) and all(v >= 0 for v in diff.values())
    plans = options["memory_plan"]
    assert [r["phase"] for r in plans] == PHASES
    for r in plans:  # on the CPU the plan measures nothing: the preset's batch in one micro-batch
        assert r["status"] == "done" and r["micro_batch"] * r["grad_accum"] == r["batch"]
        assert r["plan_s"] >= 0 and r["plan"] is None and r["checkpointing"] is False
    speed = sections["speed"]  # same weights (lr 0) and draws: the variants differ only by rounding
    assert speed["compile_backend"] == "aot_eager"  # --tiny's default: the code paths, no kernels generated
    cached = speed["sdxl_mlcd"].pop(2)  # MLCD from the trajectory cache (before the compiled row)
    assert cached["variant"].startswith("eager, trajectory cache") and cached["status"] == "done"
    assert cached["cache_teacher_calls"] > 0 and cached["s_per_step"] > 0 and cached["speedup_vs_eager"] > 0
    assert "max_term_rel_diff" not in cached  # other prompts and states: not compared
    samples, build = 12_000 * 32, cached["cache_build_s"] / cached["cache_trajectories"]
    hours = samples * cached["s_per_step"] / cached["batch"] / 3600
    assert cached["projected_mlcd_hours"] == pytest.approx(hours)
    assert cached["projected_mlcd_hours_with_cache"][15] == pytest.approx(hours + samples / 15 * build / 3600)
    assert cached["denoiser_evals_per_step"] < speed["sdxl_mlcd"][0]["denoiser_evals_per_step"]
    graphed = ["graphs (no-grad calls replayed)", "compiled blocks", "compiled blocks + graphs"]
    for key, labels in (("sdxl_mlcd", ["eager, SDPA math", "compiled blocks"]), ("miniature_mlcd", graphed)):
        rows = speed[key]
        assert [r["variant"] for r in rows] == ["eager", *labels]
        assert len({r["denoiser_evals_per_step"] for r in rows}) == 1
        assert all(r["status"] == "done" and r["s_per_step"] > 0 and r["first_step_s"] > 0 for r in rows)
        assert rows[0]["speedup_vs_eager"] == 1.0 and rows[0]["max_term_rel_diff"] == 0.0
        replayed = [r for r in rows if "graphs" in r["variant"]]  # the CPU's replays: the eager ops
        assert all(r["graph_captures"] > 0 for r in replayed) and len(replayed) == 2 * (
            key == "miniature_mlcd"
        )
        assert all(r["max_term_rel_diff"] == 0.0 for r in replayed if "compiled" not in r["variant"])
        assert all(0 <= r["max_term_rel_diff"] < 1e-2 for r in rows[1:]), [  # aot_eager: 0 or rounding
            r["max_term_rel_diff"] for r in rows
        ]
        assert all(r["max_term_rel_diff"] > 0 for r in rows if "SDPA" in r["variant"])  # another kernel
        assert all(r["host_syncs_per_step"] is None for r in rows)  # counted on CUDA only
        assert all(("projected_mlcd_hours" in r) == (key == "sdxl_mlcd") for r in rows)  # SDXL's phase
    runs = sections["miniature"]["runs"]
    assert [r["precision"] for r in runs] == ["bf16", "fp32"]
    for r in runs:
        assert r["train_s"] > 0 and [s["steps"] for s in r["scores"]] == [1, 2]
        assert all(0 <= s["alignment"] <= 1 and s["fd"] >= 0 for s in r["scores"])
    for name in ("inference", "flux-inference"):
        rows = {r["model"]: r for r in sections[name]["rows"]}
        assert set(rows) == {"student, LoRA unfused", "student, LoRA fused", "teacher"}
        assert all(r["s_per_image"] > 0 for r in rows.values())
        assert rows["teacher"]["speedup_vs_teacher"] == 1.0
        assert rows["teacher"]["cfg"] == (name == "inference")
        assert "student" not in sections[name]  # the trained student of the section before
    written = json.loads((out / "gpu.json").read_text())
    assert written["data"]["sections"]["sd15"]["status"] == "done"
    assert written["meta"]["torch"] and written["meta"]["date"] and written["meta"]["command"]  # sys.argv
    md = (out / "gpu.md").read_text()
    for title in ("SDXL: tlcm-full-sdxl phases", "FLUX.1-dev: tlcm-full-flux", "SD3.5-Large: tlcm-full-sd3"):
        assert title in md
    for title in ("FLUX: FSDP and the embedding store", "SDXL options", "checkpointing on vs off"):
        assert title in md
    assert "SDXL memory plan" in md and "FLUX.1-dev inference" in md and "Miniature tlcm-full" in md
    assert "Speed: SDXL MLCD" in md and "Speed: miniature MLCD" in md


def test_time_limit_stops_after_the_running_section(tmp_path):
    data = gpu.main(
        ["--device", "cpu", "--out", str(tmp_path), "--sections", "build,sd15,inference"]
        + ["--time-limit", "0", "--work-dir", str(tmp_path / "work")]
    )
    status = {k: s["status"] for k, s in data["sections"].items()}
    assert status == {"build": "done", "sd15": "skipped (time limit)", "inference": "skipped (time limit)"}
    written = json.loads((tmp_path / "gpu.json").read_text())["data"]
    assert set(written["models"]) == {"sdxl", "sd15"}  # build made the folders of the selected sections
    assert written["models"]["sd15"]["unet"] > 0 and written["sections"]["sd15"]["status"] == status["sd15"]
    assert "skipped (time limit)" in (tmp_path / "gpu.md").read_text()


def test_unknown_section_is_refused():
    with pytest.raises(SystemExit):
        gpu.parse(["--sections", "build,warp"])
