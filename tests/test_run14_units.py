"""Red-team round 14, area run: the refusals that stop a bad run before it costs anything, the
resume's check of a changed recipe, the memory plan's arithmetic at its edges, the sample CLI's
sampler flags and the latent LPIPS distance's dtypes; each a direct call (no model loads)."""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from engine_helpers import shrink

import tlcm.checks as checks
import tlcm.memory_plan as memory_plan
from recipes import PRESETS
from tlcm.card import DIFFUSERS_FILE
from tlcm.checks import check_compile_backend, check_counts, check_device, check_out_file, check_run_folder
from tlcm.config import Phase, RuntimeConfig, recipe_dict
from tlcm.errors import TLCMError
from tlcm.losses.base import Loss
from tlcm.losses.latent_lpips import DEFAULT_WEIGHTS, LatentLPIPS, latent_lpips_distance, load_latent_lpips
from tlcm.memory_plan import GiB, Peak, plan_micro_batch
from tlcm.resume import check_has_checkpoint, check_resume, recipe_changes, run_changes, student_model
from tlcm.summary import REPO
from tlcm.toy import MINIATURE_SD

# ---- checks ---------------------------------------------------------------------------------------


def test_an_infinite_count_is_refused_and_a_meta_device_is_not_a_device():
    """check_counts refuses values that are not finite (--n inf), and check_device refuses a
    device type tlcm cannot run on (meta: no data) in one line naming it."""
    with pytest.raises(TLCMError, match="--n must be >= 1, got inf"):
        check_counts({"--n": math.inf})
    with pytest.raises(TLCMError, match="device type 'meta' is not supported"):
        check_device("meta", "--device")


def test_an_output_file_leaves_its_folder_made_and_its_own_path_free(tmp_path):
    """check_out_file creates (and probes) the folder the file goes in, never a folder at the
    file's own path (the grid could then never be written there); a file is not a run folder."""
    out = tmp_path / "new" / "grid.png"
    check_out_file(out, "--out")
    assert out.parent.is_dir() and not out.exists()
    (tmp_path / "run.txt").write_text("not a run")
    with pytest.raises(TLCMError, match="is not a folder: pass a tlcm run folder"):
        check_run_folder(tmp_path / "run.txt", "--student")


def test_the_debug_backend_the_refusal_recommends_is_accepted():
    check_compile_backend("aot_eager", "--compile-backend")


@pytest.fixture
def recipe(tmp_path):
    return shrink(PRESETS["mlcd"], MINIATURE_SD, tmp_path / "run")


def test_kohya_is_a_lora_export_only(recipe):
    """A LoRA student may export kohya too; a full fine-tune may not (it has no LoRA)."""
    rt = replace(recipe.runtime, export_formats=("diffusers", "kohya"))
    lora = replace(recipe, runtime=rt, student=replace(recipe.student, full_finetune=False))
    checks.validate_recipe(lora, world_size=1)
    full = replace(lora, student=replace(lora.student, full_finetune=True))
    with pytest.raises(TLCMError, match="kohya holds a LoRA, but this student is a full fine-tune"):
        checks.validate_recipe(full, world_size=1)


def test_real_image_data_refuses_a_prompt_file_and_takes_shard_patterns_and_the_miniature(
    recipe, tmp_path, monkeypatch
):
    """With real images the prompts are their captions: a prompt file as well is refused. A
    webdataset brace pattern and the miniature's digits (written on first use, so possibly not
    there yet) need not exist as paths."""
    images = tmp_path / "images"
    images.mkdir()
    both = replace(recipe, data=replace(recipe.data, images=images, prompts=tmp_path / "p.txt"))
    with pytest.raises(TLCMError, match="are both set: with real images the prompts are their captions"):
        checks.validate_recipe(both, world_size=1)
    shards = replace(recipe, data=replace(recipe.data, images=tmp_path / "shards-{000..009}.tar"))
    checks.validate_recipe(shards, world_size=1)
    digits = tmp_path / "cache" / "miniature-digits"
    monkeypatch.setattr(checks, "MINIATURE_DIGITS", digits)
    checks.validate_recipe(replace(recipe, data=replace(recipe.data, images=digits)), world_size=1)
    with pytest.raises(TLCMError, match="does not exist"):
        checks.validate_recipe(
            replace(recipe, data=replace(recipe.data, images=tmp_path / "x")), world_size=1
        )


# ---- memory plan ----------------------------------------------------------------------------------


def _linear(fixed_gib, per_gib, checkpointed_gib=None):
    calls = []

    def measure(b, checkpointing):
        calls.append((b, checkpointing))
        per = checkpointed_gib if checkpointing and checkpointed_gib is not None else per_gib
        return (fixed_gib + per * b) * GiB

    return measure, calls


def test_an_impossible_plan_measures_each_step_once():
    """Each measurement is a whole training step: the refusal's figure reuses them."""
    measure, calls = _linear(10.0, 4.0, 1.0)
    with pytest.raises(TLCMError, match="needs 11.0 GiB"):
        plan_micro_batch(4, 8 * GiB, measure)
    assert sorted(calls) == [(1, False), (1, True), (2, False), (2, True)]


def test_the_margin_is_kept_free_and_the_usable_edge_fits():
    """10 + 4 b GiB, batch 2, under 19 GiB: 17.1 usable, so micro-batch 1 (14 GiB), not 2 (18);
    with margin 0 a step of exactly the limit (26 GiB at b = 4) is planned."""
    measure, _ = _linear(10.0, 4.0)
    plan = plan_micro_batch(2, 19 * GiB, measure, checkpointing=False)
    assert (plan.micro_batch, plan.peak) == (1, 14 * GiB)
    measure, _ = _linear(10.0, 4.0)
    plan = plan_micro_batch(4, 26 * GiB, measure, margin=0.0, checkpointing=False)
    assert (plan.micro_batch, plan.peak) == (4, 26 * GiB)


def test_where_only_the_smallest_runs_its_reserved_peak_decides():
    """Out of memory at b = 2: micro-batch 1 is planned from its measured peak, the higher of
    allocated (1 GiB) and reserved (5 GiB, what the budget caps): 5 fits 10, not 3."""

    def measure(b, checkpointing):
        return Peak(1 * GiB, 5 * GiB) if b == 1 else math.inf

    plan = plan_micro_batch(2, 10 * GiB, measure, margin=0.0)
    assert (plan.micro_batch, plan.peak) == (1, 5 * GiB)
    with pytest.raises(TLCMError, match="micro-batch 1 with gradient checkpointing needs 5.0 GiB"):
        plan_micro_batch(2, 3 * GiB, measure, margin=0.0)


def test_a_cpu_run_with_the_plan_on_but_no_budget_is_not_planned():
    """runtime.memory_plan on a CPU device without a budget: nothing to measure, the phase as is."""
    trainer = SimpleNamespace(
        recipe=SimpleNamespace(runtime=RuntimeConfig(memory_plan=True)),
        dist=SimpleNamespace(device=torch.device("cpu"), world_size=1),
    )
    phase = Phase(steps=1, lr=1e-3, batch_size=8, grad_accum=2, losses={})
    assert memory_plan.plan_phase(trainer, "p", phase, {}, []) is phase


class _OutOfMemory(RuntimeError):
    """Like torch.cuda.OutOfMemoryError: a RuntimeError, not a MemoryError."""


class _Memory:
    OutOfMemory = _OutOfMemory

    def __init__(self):
        self.state, self.top = 0.0, Peak(0.0, 0.0)

    def bump(self, peak):
        self.top = Peak(max(self.top.allocated, peak.allocated), max(self.top.reserved, peak.reserved))

    def reset(self):
        self.top = Peak(0.0, 0.0)

    reset_peak = reset

    def allocated(self):
        return 500.0 + self.state

    def peak(self):
        return self.top

    def release(self):
        pass


class _Aux(Loss):
    """A loss whose aux_step leaves 150 bytes of new state (an optimizer's first moments)."""

    def __init__(self, memory):
        super().__init__()
        self.memory = memory

    def aux_step(self, contexts):
        self.memory.state += 150.0
        self.memory.bump(Peak(200.0, 210.0))
        return {}


def test_measure_step_counts_new_aux_state_in_both_peaks_and_a_real_oom_is_inf():
    """The objective peaks at (1000, 1100) bytes, the aux step leaves 150 more: the step's peak is
    (1150, 1250). A micro-batch of 2 raises the CUDA kind of out-of-memory (a RuntimeError):
    measured as inf, not a crash of the plan."""
    memory = _Memory()
    weight = torch.nn.Parameter(torch.ones(2))

    def objective(phase, losses, ctx):
        if ctx.b > 1:
            raise _OutOfMemory("CUDA out of memory")
        memory.bump(Peak(1000.0, 1100.0))
        return (weight * ctx.b).sum(), {}

    trainer = SimpleNamespace(
        dist=SimpleNamespace(device=torch.device("cpu"), world_size=1),
        student=SimpleNamespace(
            trainable_parameters=lambda: {"w": weight},
            set_gradient_checkpointing=lambda on: None,
            net=torch.nn.ParameterList([weight]),
        ),
        context=lambda index, generator, step: SimpleNamespace(b=len(index)),
        objective=objective,
        autocast=contextlib.nullcontext(),
    )
    measure = memory_plan.measure_step(trainer, None, {"aux": _Aux(memory)}, memory)
    assert measure(1, False) == Peak(1150.0, 1250.0)
    assert measure(2, False) == Peak(math.inf, math.inf)
    assert weight.grad is None


# ---- resume ---------------------------------------------------------------------------------------


def _record(processes=1, **model):
    return {"recipe": {}, "model": {"path": "m", "fingerprint": "f", **model}, "processes": processes}


def test_another_prompt_file_or_process_count_is_a_change(recipe):
    """The prompts are what is trained on: another file is a change; so is the process count."""
    other = replace(recipe, data=replace(recipe.data, prompts=Path("other.txt")))
    assert recipe_changes(recipe_dict(recipe), recipe_dict(other)) == ["data.prompts null -> other.txt"]
    assert run_changes(_record(1), _record(2)) == ["processes 1 -> 2"]


def test_an_old_checkpoint_resumes_with_a_notice_and_resume_changed_continues(tmp_path):
    folder = tmp_path / "run" / "checkpoints" / "step-0000003"
    said: list[str] = []
    check_resume(None, _record(), folder, False, said.append)
    assert len(said) == 1 and "predates stored recipes" in said[0]
    said.clear()
    check_resume(_record(1), _record(2), folder, True, said.append)
    assert len(said) == 1 and "resuming" in said[0] and "processes 1 -> 2" in said[0]
    with pytest.raises(TLCMError, match="processes 1 -> 2"):
        check_resume(_record(1), _record(2), folder, False, said.append)


def _run_recording(run: Path, model_path: str) -> Path:
    step = run / "checkpoints" / "step-0000001"
    step.mkdir(parents=True)
    (step / "state.json").write_text(json.dumps({"run": {"recipe": {"model": {"path": model_path}}}}))
    return run


def test_a_run_of_the_miniature_finds_it_from_anywhere_and_a_moved_model_is_refused(tmp_path, monkeypatch):
    """A run records the bundled miniature relative to the repository: sampled from another
    working directory it still resolves there. A recorded model that is gone is refused (not
    replaced by the miniature)."""
    monkeypatch.chdir(tmp_path)
    run = _run_recording(tmp_path / "a", str(MINIATURE_SD.relative_to(REPO)))
    assert student_model(run, None, None, print) == (MINIATURE_SD, None)
    gone = _run_recording(tmp_path / "b", str(tmp_path / "gone"))
    with pytest.raises(TLCMError, match="which is not a folder here: pass --model"):
        student_model(gone, None, None, print)


@pytest.mark.parametrize("part", [DIFFUSERS_FILE, "scheduler"])
def test_an_export_missing_a_part_is_still_named_an_export(tmp_path, part):
    export = tmp_path / "student"
    export.mkdir()
    if part == "scheduler":
        (export / part).mkdir()
    else:
        (export / part).write_bytes(b"")
    with pytest.raises(TLCMError, match="is an exported student"):
        check_has_checkpoint(export, "--student")


# ---- sample ---------------------------------------------------------------------------------------


def test_first_gamma_is_checked_and_needs_a_student(tmp_path):
    from tlcm.sample import SampleArgs, check_sample_args

    args = SampleArgs(model=MINIATURE_SD, out=tmp_path / "g.png", device="cpu")
    with pytest.raises(TLCMError, match=r"--first-gamma must be in \[0, 1\]"):
        check_sample_args(replace(args, student=tmp_path, first_gamma=1.5))
    with pytest.raises(TLCMError, match="--first-gamma sets the student's sampler: pass --student RUN"):
        check_sample_args(replace(args, first_gamma=0.5))


class _Loaded(Exception):
    pass


def test_sample_takes_a_runs_export_folder_for_the_run(tmp_path, monkeypatch):
    """--student RUN/student (the export) names the run: its checkpoints are found, and loading
    the base model is reached."""
    from tlcm.models.base import BaseModel
    from tlcm.sample import SampleArgs, main

    run = tmp_path / "run"
    (run / "checkpoints" / "step-0000001").mkdir(parents=True)
    (run / "student").mkdir()

    def load(*args, **kwargs):
        raise _Loaded

    monkeypatch.setattr(BaseModel, "load", load)
    with pytest.raises(_Loaded):
        main(SampleArgs(student=run / "student", out=tmp_path / "g.png", device="cpu"))


# ---- latent LPIPS ---------------------------------------------------------------------------------


def test_latent_lpips_takes_fp64_latents_and_a_target_of_another_dtype():
    """The registered distance casts its network to the latents' dtype (fp64 here); a target of
    another dtype than the prediction is cast to it."""
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    distance = latent_lpips_distance(DEFAULT_WEIGHTS)
    single = distance(pred, target)
    double = distance(pred.double(), target.double())
    assert double.dtype == torch.float64 and torch.allclose(double.float(), single, rtol=1e-4, atol=1e-6)
    net = LatentLPIPS(4, (2, 2, 2, 2, 2))
    assert torch.equal(net(pred, target.double()), net(pred, target))


def test_a_zero_width_block_and_a_pickled_list_are_refused(tmp_path):
    with pytest.raises(ValueError, match="5 positive block widths"):
        LatentLPIPS(4, (0, 2, 2, 2, 2))
    path = tmp_path / "weights.pt"
    torch.save([torch.ones(2)], path)
    with pytest.raises(TLCMError, match="expected a state dict of tensors, got list"):
        load_latent_lpips(path)


@pytest.mark.parametrize("damage", ["empty", "truncated", "text"])
def test_a_damaged_weights_pickle_is_refused_in_one_line(tmp_path, damage):
    """An empty file, an interrupted copy or a text file named .pt: one TLCMError naming the file
    (they were an EOFError, an OSError and a KeyError traceback at the first training step)."""
    path = tmp_path / "weights.pt"
    torch.save(LatentLPIPS(4, (2, 2, 2, 2, 2)).state_dict(), path)
    data = {"empty": b"", "truncated": path.read_bytes()[:-100], "text": b"hello world"}[damage]
    path.write_bytes(data)
    with pytest.raises(TLCMError, match="damaged or not a torch file") as err:
        load_latent_lpips(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
