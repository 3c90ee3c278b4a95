"""The memory plan: from a fake measure (peak = fixed + per-sample x micro-batch, less with
checkpointing), the largest divisor that fits, no checkpointing when it fits, checkpointing when
tight, one clear error when impossible; the engine runs a phase with the planned grad_accum."""

import json
import math
from dataclasses import replace

import pytest
from engine_helpers import small_recipe

import tlcm.memory_plan as memory_plan
from tlcm.engine import train
from tlcm.errors import TLCMError
from tlcm.memory_plan import GiB, plan_micro_batch


def fake(fixed_gib=10.0, per_sample_gib=4.0, checkpointed_gib=1.0, oom_above=math.inf):
    calls = []

    def measure(b, checkpointing):
        calls.append((b, checkpointing))
        per = checkpointed_gib if checkpointing else per_sample_gib
        return math.inf if b > oom_above else (fixed_gib + per * b) * GiB

    return measure, calls


def test_fits_without_checkpointing_takes_the_largest_divisor():
    measure, calls = fake()
    plan = plan_micro_batch(32, 200 * GiB, measure)  # 10 + 4 * 32 = 138 <= 180
    assert (plan.micro_batch, plan.checkpointing) == (32, False)
    assert calls == [(1, False), (2, False)]  # two measurements, no checkpointed ones needed
    plan = plan_micro_batch(32, 100 * GiB, measure)  # usable 90: 10 + 4 * 16 = 74 fits, 32 not
    assert (plan.micro_batch, plan.checkpointing) == (16, False)
    assert plan.peak == pytest.approx(74 * GiB)


def test_extra_bytes_count_against_the_budget():
    measure, _ = fake(checkpointed_gib=3.0)
    plan = plan_micro_batch(32, 100 * GiB, measure, extra=20 * GiB)  # 90 - 20: 10 + 4 * 8 fits
    assert plan.micro_batch == 8 and not plan.checkpointing  # checkpointed: 16, not over twice 8


def test_tight_budget_checkpoints():
    measure, _ = fake()
    plan = plan_micro_batch(32, 40 * GiB, measure)  # usable 36: 4 without, 16 (26 GiB) with
    assert (plan.micro_batch, plan.checkpointing) == (16, True)
    measure, _ = fake(oom_above=1)
    plan = plan_micro_batch(8, 40 * GiB, measure)  # out of memory above b = 1 in both modes
    assert (plan.micro_batch, plan.checkpointing) == (1, False)


def test_user_choices_are_kept():
    measure, calls = fake()
    plan = plan_micro_batch(32, 200 * GiB, measure, checkpointing=True)
    assert (plan.micro_batch, plan.checkpointing) == (32, True) and all(c for _, c in calls)
    measure, calls = fake()
    plan = plan_micro_batch(32, 40 * GiB, measure, micro_batch=8)  # 42 GiB without: checkpoint
    assert (plan.micro_batch, plan.checkpointing) == (8, True)
    assert {b for b, _ in calls} == {8}


def test_impossible_budget_is_one_clear_line():
    measure, _ = fake()
    with pytest.raises(TLCMError) as err:
        plan_micro_batch(32, 8 * GiB, measure, phase="mlcd")
    message = str(err.value)
    assert "\n" not in message and "memory plan mlcd" in message
    assert "micro-batch 1 with gradient checkpointing needs 11.0 GiB" in message
    assert "memory-budget-gib" in message


def test_engine_runs_the_planned_micro_batch(tiny_sd_dir, tmp_path, monkeypatch, capfd):
    measured = []

    def measure_step(trainer, phase, losses):
        def measure(b, checkpointing):
            measured.append((b, checkpointing))
            return (1 + 2 * b) * GiB

        return measure

    monkeypatch.setattr(memory_plan, "measure_step", measure_step)
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=1)
    recipe = replace(
        recipe,
        phases={"stage": replace(recipe.phases["stage"], batch_size=4)},
        runtime=replace(recipe.runtime, memory_budget_gib=5.0),  # usable 4.5: micro-batch 1 fits
    )
    run = train(recipe)
    assert measured[:2] == [(1, False), (2, False)]
    assert run.state.global_step == 1
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(record["mlcd"])
    assert not run.student.net.is_gradient_checkpointing  # the plan left checkpointing off
    out = " ".join(capfd.readouterr().err.split())
    assert "memory plan stage: micro-batch 1 x accum 4, checkpointing off" in out
