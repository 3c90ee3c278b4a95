"""The numbers the benchmarks report, each against its formula written out with made-up timings
(no model, no GPU; benchmarks/gpu.py end to end is tests/test_gpu_benchmark.py): relative
differences, s / sample, samples / s, TFLOP / step and projected hours of a timed phase, the global
steps the phases use, the speed section's projections, speed-ups and net evaluations per step, the
report's tables and units, the results files and their provenance, the UNet call log, and the
memory benchmark's peak RSS unit."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks import common, gpu_report, gpu_runs, gpu_speed, memory

PAPER_MLCD_SAMPLES = 12_000 * 32
"""The paper's SDXL MLCD phase: 12k iterations at batch 32."""


class FakeTrainer:
    """``build_phase`` / ``train_step`` as the benchmarks call them: each step records its global
    step, makes one (2, 3) x (3, 4) matmul, counts ``evals_per_step`` denoiser evaluations and
    returns one 0-dim term."""

    def __init__(self, recipe=None, evals_per_step: int = 16) -> None:
        self.steps, self.built, self.denoiser_evals = [], [], 0
        self.evals_per_step = evals_per_step
        self.base = SimpleNamespace(graphs=None)

    def build_phase(self, name, phase, step):
        self.built.append((name, step))
        return SimpleNamespace(phase=phase)

    def train_step(self, built, step):
        self.steps.append(step)
        torch.mm(torch.ones(2, 3), torch.ones(3, 4))  # 2 x 2 x 3 x 4 = 48 FLOPs (multiply and add)
        self.denoiser_evals += self.evals_per_step
        return {"loss": torch.tensor(float(step))}, True


# ---- benchmarks/gpu_runs.py ---------------------------------------------------------------------


def test_relative_differences_divide_by_the_larger_magnitude():
    a, b = {"x": 1.0, "y": -4.0, "z": 0.0, "only_a": 1.0}, {"x": 2.0, "y": -3.0, "z": 0.0}
    expected = {"x": 0.5, "y": 0.25, "z": 0.0}  # |1 - 2| / 2, |-4 + 3| / 4, both 0
    assert gpu_runs.relative_differences(a, b) == pytest.approx(expected)
    assert gpu_runs.relative_differences(b, a) == pytest.approx(expected)  # symmetric


def test_a_timed_phase_reports_per_sample_rates_and_the_papers_hours():
    """s / sample = s / step / the global batch (all its micro-batches), samples / s its inverse,
    projected h = s / sample x the preset's batch x the paper's iterations / 3600."""
    phase = SimpleNamespace(batch_size=8, grad_accum=2)
    paper = SimpleNamespace(batch_size=32, steps=12_000)
    row = gpu_runs.time_phase(FakeTrainer(), "mlcd", phase, paper, "cpu", 0, 3)
    s = row["s_per_step"]
    assert row["micro_batch"] == 4 and row["grad_accum"] == 2 and row["finite_steps"] == 3
    assert s == pytest.approx(sum(row["step_times_s"]) / 3)
    assert row["s_per_sample"] == pytest.approx(s / 8)
    assert row["samples_per_s"] == pytest.approx(8 / s)
    assert row["projected_hours"] == pytest.approx(s / 8 * 32 * 12_000 / 3600)
    assert (row["preset_batch"], row["paper_iterations"]) == (32, 12_000)
    assert row["tflop_per_step"] == pytest.approx(48 / 1e12)  # the warm-up step's, counted
    assert row["achieved_tflop_per_s"] == pytest.approx(48 / 1e12 / s)


def test_the_phases_use_consecutive_global_steps(monkeypatch):
    """Each phase: one warm-up step then the timed ones, at the global steps after the previous
    phase's (no step, and so no draw, repeated)."""
    made = []
    monkeypatch.setattr(gpu_runs, "Trainer", lambda recipe: made.append(FakeTrainer()) or made[-1])
    monkeypatch.setattr(gpu_runs, "free", lambda device: None)  # gc.collect: a second per phase
    phase = SimpleNamespace(batch_size=2, grad_accum=1)
    recipe = SimpleNamespace(phases={"mlcd": phase, "lcd": phase})
    paper = SimpleNamespace(batch_size=32, steps=1)
    preset = SimpleNamespace(phases={"mlcd": paper, "lcd": paper})
    rows = []
    gpu_runs.time_phases(recipe, preset, "cpu", 2, lambda: True, rows.append)
    (trainer,) = made
    assert trainer.built == [("mlcd", 0), ("lcd", 3)]
    assert trainer.steps == [0, 1, 2, 3, 4, 5]
    assert [r["phase"] for r in rows] == ["(load)", "mlcd", "lcd"]


# ---- benchmarks/gpu_speed.py --------------------------------------------------------------------


def test_projections_are_per_sample_and_add_the_cache_build_per_trajectory():
    rows = [
        {"status": "done", "s_per_step": 2.0, "batch": 8},
        {"status": "done", "s_per_step": 1.0, "batch": 8, "cache_build_s": 16.0, "cache_trajectories": 8},
        {"status": "failed: OOM"},
    ]
    gpu_speed.project(rows)
    assert rows[0]["projected_mlcd_hours"] == pytest.approx(PAPER_MLCD_SAMPLES * 2.0 / 8 / 3600)
    train_h = PAPER_MLCD_SAMPLES * 1.0 / 8 / 3600
    assert rows[1]["projected_mlcd_hours"] == pytest.approx(train_h)
    # one trajectory serves `uses` training samples: SAMPLES / uses trajectories at 2 s each
    assert rows[1]["projected_mlcd_hours_with_cache"] == pytest.approx(
        {
            15: train_h + PAPER_MLCD_SAMPLES / 15 * 2.0 / 3600,
            60: train_h + PAPER_MLCD_SAMPLES / 60 * 2.0 / 3600,
        }
    )
    assert "projected_mlcd_hours" not in rows[2]


def test_speedups_are_over_eager_and_terms_compared_only_on_the_same_draws():
    rows = [
        {"status": "done", "s_per_step": 2.0, "terms": {"loss": 1.0}},
        {"status": "done", "s_per_step": 1.0, "terms": {"loss": 1.5}},
        {"status": "done", "s_per_step": 4.0, "terms": {"loss": 9.0}, "other_draws": True},
    ]
    gpu_speed._compare(rows)
    assert [r["speedup_vs_eager"] for r in rows] == pytest.approx([1.0, 2.0, 0.5])
    assert rows[1]["max_term_rel_diff"] == pytest.approx(0.5 / 1.5)
    assert rows[0]["max_term_rel_diff"] == 0.0 and "max_term_rel_diff" not in rows[2]


def test_a_timed_variant_counts_net_evaluations_per_timed_step():
    trainer = FakeTrainer(evals_per_step=16)
    built = SimpleNamespace(phase=SimpleNamespace(batch_size=4))
    row = gpu_speed.time_variant(trainer, built, "cpu", 3, None)
    # warm-up steps 0, 1, the sync-counted step 2, then 3 timed steps 3, 4, 5
    assert trainer.steps == [0, 1, 2, 3, 4, 5]
    assert row["denoiser_evals_per_step"] == 16
    assert row["samples_per_s"] == pytest.approx(4 / row["s_per_step"])
    assert row["terms"] == {"loss": 3.0}  # the first timed step's


# ---- benchmarks/gpu_report.py -------------------------------------------------------------------


def test_the_phase_table_puts_the_total_under_projected_hours_and_the_store_in_mb():
    done = {"phase": "mlcd", "status": "done", "batch": 32, "micro_batch": 8, "grad_accum": 4}
    done |= {"s_per_step": 1.0, "s_per_sample": 1 / 32, "peak_gib": 40.0, "tflop_per_step": 300.0}
    done |= {"achieved_tflop_per_s": 300.0, "preset_batch": 32, "paper_iterations": 12_000}
    done |= {"projected_hours": 104.0}
    sec = {"status": "done", "phases": [done], "projected_hours_total": 104.0}
    sec |= {
        "fsdp_requested": True,
        "sharded": False,
        "embedding_cache": {"bytes": 3_000_000, "chunk_files": 1},
    }
    tables = {
        title: (columns, rows) for title, columns, rows in gpu_report.tables({"sections": {"flux": sec}})
    }
    columns, rows = tables[gpu_report.TRAINING["flux"]]
    assert [len(r) for r in rows] == [len(columns)] * 2
    hours = columns.index("projected h")
    assert [r[0] for r in rows] == ["mlcd", "total"] and rows[1][hours] == "104"
    assert rows[0][columns.index("preset batch x iters")] == "32 x 12000"
    columns, rows = tables["FLUX: FSDP and the embedding store on disk"]
    assert rows[0][columns.index("embedding store MB")] == "3.0"  # 3e6 bytes: MB, not MiB (2.9)


def test_the_first_section_always_runs_and_later_ones_only_within_the_time_limit(tmp_path):
    args = SimpleNamespace(work_dir=tmp_path, tiny=True, sections=["a", "b"], time_limit=0, out=tmp_path)
    report = gpu_report.Report(args, "cpu")
    assert [report.allow(), report.allow()] == [True, False]
    args.time_limit = None
    assert gpu_report.Report(args, "cpu").allow() and report.allow()


# ---- benchmarks/common.py -----------------------------------------------------------------------


def test_results_go_to_the_given_folder_as_json_and_a_markdown_table(tmp_path):
    meta = {"command": "python -m benchmarks.x", "device": "cpu"}
    common.write_results(
        "redteam-probe", "Title", meta, [("T", ["a", "b", "c"], [[1, 2, 3]])], {"k": 1}, ["n"], tmp_path, True
    )
    assert json.loads((tmp_path / "redteam-probe.json").read_text())["data"] == {"k": 1}
    md = (tmp_path / "redteam-probe.md").read_text().splitlines()
    table = md[md.index("| a | b | c |") :][:3]
    assert table == ["| a | b | c |", "|---|---|---|", "| 1 | 2 | 3 |"]
    assert not (common.RESULTS / "redteam-probe.json").exists()


def test_provenance_reports_the_threads_torch_uses_beside_the_ones_asked_for(tmp_path):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        info = common.provenance("cpu", 7, tmp_path, "tiny")
    finally:
        torch.set_num_threads(previous)
    assert (info["threads"], info["requested_threads"]) == (1, 7)


def test_the_call_log_counts_samples_per_unet_call():
    class Net(torch.nn.Module):
        def forward(self, sample, timestep, encoder_hidden_states=None):
            return sample

    log, net = common.CallLog(), Net()
    handles = common.count_unet_calls([net], log)
    try:
        net(torch.zeros(3, 4, 8, 8), 1)
        with torch.no_grad():
            net(sample=torch.zeros(5, 4, 8, 8), timestep=1)
    finally:
        for h in handles:
            h.remove()
    assert log.calls == [("untagged", 3, True, None), ("untagged", 5, False, None)]


# ---- benchmarks/memory.py -----------------------------------------------------------------------


def test_the_peak_rss_is_read_in_bytes():
    """VmHWM (kB in /proc/self/status) and ru_maxrss (KiB on Linux) are both this process's peak RSS."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("no /proc")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert 0.5 * peak <= memory._vm_hwm() <= 2 * peak
