"""Walkthrough 8's resume and batch-split findings (a SLURM rehearsal on CPU): a requeue on another
process count whose grad-accum keeps every phase's micro-batch split resumes without a flag (item
3), the refusal names the grad-accum values that would keep it; a phase not started yet may change
its steps under --recipes.runtime.resume-changed (item 11); every phase whose batch does not split
over the processes is named in one refusal (item 9). Units: run records as dicts, no training."""

from __future__ import annotations

from dataclasses import replace

import pytest
from engine_helpers import shrink

from recipes import PRESETS
from tlcm.checks import validate_recipe
from tlcm.config import Recipe, recipe_dict
from tlcm.errors import TLCMError
from tlcm.resume import check_phases, check_resume, run_changes
from tlcm.toy import MINIATURE_SD


@pytest.fixture
def full(tmp_path) -> Recipe:
    """tlcm-full (mlcd, lcd, dmd) shrunk: batch 4, 2 steps a phase."""
    return shrink(PRESETS["tlcm-full"], MINIATURE_SD, tmp_path / "run", batch_size=4)


def _accum(recipe: Recipe, accum: int | dict[str, int], **runtime) -> Recipe:
    per = accum if isinstance(accum, dict) else dict.fromkeys(recipe.phases, accum)
    phases = {n: replace(p, grad_accum=per.get(n, p.grad_accum)) for n, p in recipe.phases.items()}
    return replace(recipe, phases=phases, runtime=replace(recipe.runtime, **runtime))


def _record(recipe: Recipe, processes: int) -> dict:
    return {"recipe": recipe_dict(recipe), "model": {"path": "m", "fingerprint": "f"}, "processes": processes}


def _folder(tmp_path):
    return tmp_path / "run" / "checkpoints" / "step-0000004"


def test_another_process_count_that_keeps_the_micro_batches_resumes(full, tmp_path):
    """2 processes x grad-accum 1 -> 1 x 2 (and back, and 2 x 2 -> 1 x 4 -> 4 x 1) keep micro-batch
    j of step s seeded by (seed, s, j): no change, resumed with one line that says so."""
    two = _record(full, 2)
    assert run_changes(_record(_accum(full, 2), 1), two) == []
    assert run_changes(two, _record(_accum(full, 2), 1)) == []
    assert run_changes(_record(_accum(full, 2), 2), _record(_accum(full, 4), 1)) == []
    for processes, accum in ((4, 1), (2, 2)):
        assert run_changes(_record(_accum(full, 4), 1), _record(_accum(full, accum), processes)) == []
    said: list[str] = []
    check_resume(two, _record(_accum(full, 2), 1), _folder(tmp_path), False, said.append)
    assert len(said) == 1 and "saved on 2 processes; on 1 process every phase keeps" in said[0], said
    said.clear()
    check_resume(two, two, _folder(tmp_path), False, said.append)  # the same record: silent
    assert said == []


def test_a_changed_split_is_refused_naming_the_grad_accum_that_keeps_it(full, tmp_path):
    """2 x 1 -> 1 x 1 changes every phase's micro-batches: refused, with the grad-accum flags that
    keep them; a phase already moved to grad-accum 2 is neither a change nor in the hint."""
    with pytest.raises(TLCMError) as refused:
        check_resume(_record(full, 2), _record(full, 1), _folder(tmp_path), False, print)
    line = str(refused.value)
    assert "processes 2 -> 1 (checkpoint -> this run)" in line
    flags = " ".join(f"--recipes.phases.{n}.grad-accum 2" for n in full.phases)
    assert f"pass {flags} to keep the checkpoint's micro-batches" in line, line
    partly = _accum(full, {"mlcd": 2})
    changes = run_changes(_record(full, 2), _record(partly, 1))
    assert changes == ["processes 2 -> 1"], changes  # mlcd's grad-accum 1 -> 2 keeps its split
    with pytest.raises(TLCMError) as refused:
        check_resume(_record(full, 2), _record(partly, 1), _folder(tmp_path), False, print)
    assert "--recipes.phases.mlcd.grad-accum" not in str(refused.value)
    assert "lcd.grad-accum 2 --recipes.phases.dmd.grad-accum 2 to keep" in str(refused.value)
    single = replace(full, phases={n: replace(p, batch_size=1) for n, p in full.phases.items()})
    with pytest.raises(TLCMError) as refused:  # a batch of 1 has no 2 micro-batches: no advice
        check_resume(_record(single, 2), _record(single, 1), _folder(tmp_path), False, print)
    assert "grad-accum" not in str(refused.value) and "processes 2 -> 1" in str(refused.value)
    with pytest.raises(TLCMError) as refused:  # 4 x 1 -> 2 processes: grad-accum 4 / 2
        check_resume(_record(full, 4), _record(full, 2), _folder(tmp_path), False, print)
    flags = " ".join(f"--recipes.phases.{n}.grad-accum 2" for n in full.phases)
    assert f"pass {flags} to keep" in str(refused.value)
    # the same process count: grad-accum is the split, a change as before
    assert run_changes(_record(full, 1), _record(partly, 1)) == ["phases.mlcd.grad-accum 1 -> 2"]


def test_a_split_no_grad_accum_keeps_or_the_memory_plan_chose_is_refused_saying_why(full, tmp_path):
    """1 x 1 -> 2 processes: no grad-accum halves a micro-batch; under the memory plan a grad-accum
    of 1 is the plan's choice, not recorded: another process count is refused, with the reason."""
    with pytest.raises(
        TLCMError, match="no grad-accum splits the 1 micro-batch of mlcd, lcd, dmd over 2 processes"
    ):
        check_resume(_record(full, 1), _record(full, 2), _folder(tmp_path), False, print)
    planned = _accum(full, 1, memory_plan=True)
    assert "processes 2 -> 1" in run_changes(_record(planned, 2), _record(_accum(planned, 2), 1))
    with pytest.raises(
        TLCMError, match="the memory plan chose the micro-batches of mlcd, lcd, dmd, not recorded"
    ):
        check_resume(_record(planned, 2), _record(_accum(planned, 2), 1), _folder(tmp_path), False, print)
    with pytest.raises(TLCMError, match="the memory plan chose the micro-batches of mlcd, lcd, dmd"):
        check_resume(
            _record(planned, 2), _record(planned, 1), _folder(tmp_path), False, print
        )  # both unknown
    pinned = _accum(full, 2, memory_plan=True)  # a grad-accum other than 1: kept by the plan
    assert run_changes(_record(pinned, 2), _record(_accum(pinned, 4), 1)) == []


def test_resume_changed_accepts_other_steps_for_a_phase_not_started_yet(tmp_path):
    """A checkpoint in mlcd (phase 0, step 5): dmd's (phase 2) and lcd's steps may change with
    resume_changed; mlcd's (the checkpoint's phase) may not, nor may the phases' names or order.
    LCD's phase-end checkpoint is dmd (phase 2) at step 0: dmd may change, lcd may not. Without the
    flag the refusal says that the flag accepts it."""
    saved = [("mlcd", 12), ("lcd", 12), ("dmd", 4)]
    longer = [("mlcd", 12), ("lcd", 12), ("dmd", 6)]
    run = tmp_path / "run"
    check_phases(saved, saved, 0, 5, run, False)
    check_phases(saved, longer, 0, 5, run, True)
    check_phases(saved, [("mlcd", 12), ("lcd", 20), ("dmd", 6)], 0, 5, run, True)
    check_phases(saved, longer, 1, 3, run, True)
    check_phases(saved, longer, 2, 0, run, True)  # lcd's phase-end checkpoint: dmd not started
    with pytest.raises(TLCMError, match=r"resume-changed accepts other steps for dmd: a phase not started"):
        check_phases(saved, longer, 0, 5, run, False)
    for index, step, phases in (
        (2, 1, longer),  # dmd is the checkpoint's phase, one step in
        (1, 3, [("mlcd", 12), ("lcd", 8), ("dmd", 4)]),  # lcd is
        (2, 0, [("mlcd", 12), ("lcd", 8), ("dmd", 6)]),  # lcd is done
        (1, 0, [("mlcd", 10), ("lcd", 12), ("dmd", 4)]),  # mlcd is done
        (0, 5, [("mlcd", 12), ("dmd", 4), ("lcd", 12)]),  # another order
        (0, 5, [*saved, ("gan", 4)]),  # another phase
    ):
        with pytest.raises(TLCMError, match="resume needs the same phases and steps; use a new") as err:
            check_phases(saved, phases, index, step, run, True)
        assert "accepts other steps" not in str(err.value)
    check_phases([], longer, 0, 5, run, False)  # a checkpoint from before stored phases


def test_every_phase_whose_batch_does_not_split_is_named_at_once(full):
    """3 processes: mlcd, lcd (16) and dmd (8) are all refused in one line, each with its sizes."""
    phases = {n: replace(p, batch_size=8 if n == "dmd" else 16) for n, p in full.phases.items()}
    recipe = replace(full, phases=phases)
    with pytest.raises(TLCMError) as refused:
        validate_recipe(recipe, world_size=3)
    line = str(refused.value)
    for name, (low, high) in {"mlcd": (15, 18), "lcd": (15, 18), "dmd": (6, 9)}.items():
        assert f"--recipes.phases.{name}.batch-size" in line and f"use {low} or {high}" in line, line
    assert line.count("does not split into 3 equal micro-batches") == 3
    validate_recipe(replace(recipe, phases={n: replace(p, batch_size=6) for n, p in phases.items()}), 3)


def _field_help(cls: type, name: str) -> str:
    """The attribute docstring under ``name`` (what --help shows for it)."""
    import ast
    import inspect

    body = ast.parse(inspect.getsource(cls)).body[0].body
    for field, doc in zip(body, body[1:], strict=False):
        if isinstance(field, ast.AnnAssign) and field.target.id == name:
            return " ".join(doc.value.value.split())
    raise AssertionError(f"no field {name}")


def test_the_help_states_the_process_count_rule_and_what_resume_changed_allows():
    """--recipes.runtime.seed said the process count does not change results; it does, unless
    grad-accum keeps processes x grad-accum (item 4). --recipes.runtime.resume-changed names the
    steps of a phase not started yet (item 11)."""
    from tlcm.config import RuntimeConfig

    seed = _field_help(RuntimeConfig, "seed")
    assert "process count does not change" not in seed
    assert "N processes x grad_accum k equal 1 process x grad_accum N k" in seed
    assert "to float rounding" in seed
    changed = _field_help(RuntimeConfig, "resume_changed")
    assert "a phase not started yet may have other steps" in changed, changed
