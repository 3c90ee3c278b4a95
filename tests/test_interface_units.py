"""The interfaces every loss and recipe goes through, in one process and without training: what a
``StepContext`` hands a loss (tlcm/losses/base.py), the recipe tree's derived values
(tlcm/config.py) and ``run_cli``'s one line (tlcm/errors.py); the file helpers' (tlcm/files.py)
are in tests/test_plumbing.py, beside its umask helper."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tlcm import errors, preemption
from tlcm.conditioning import Conditioning
from tlcm.config import Phase, Recipe, StudentConfig, smoke_recipe
from tlcm.diffusion.milestones import StudentGrid
from tlcm.diffusion.schedule import VPSchedule
from tlcm.errors import TLCMError, note, run_cli
from tlcm.losses.base import StepContext
from tlcm.losses.shared import predict_student
from tlcm.preemption import StopSignals

SCHEDULE = VPSchedule(torch.linspace(0.99, 0.05, 1000), prediction_type="sample")


def context(generator=None, batch: int = 2, **extra) -> StepContext:
    """A standalone context of ``batch`` prompts; no networks (nothing here calls them)."""
    return StepContext.standalone(
        student=None,
        teacher=None,
        schedule=None,
        latent_shape=(2, 2, 2),
        cond=Conditioning(torch.zeros(batch, 2, 3)),
        generator=torch.Generator().manual_seed(0) if generator is None else generator,
        **extra,
    )


class AcceleratorGenerator:
    """A step generator as the engine seeds it on an accelerator: only its device and initial seed
    are read by ``host_generator``."""

    device = torch.device("cuda")

    def __init__(self, seed: int):
        self.seed = seed

    def initial_seed(self) -> int:
        return self.seed


# ---- StepContext -------------------------------------------------------------------------------


def test_a_standalone_context_reads_the_phases_grid_and_the_conditionings_batch():
    """``ctx.grid`` is the grid the phase was given (the recipe's one owner of M and q), and the batch
    size is the conditioning's, even when no prompt texts are passed (a standalone context)."""
    grid = StudentGrid(num_milestones=4, steps=2)
    ctx = context(batch=3, grid=grid)
    assert ctx.grid == grid and (ctx.grid.num_milestones, ctx.grid.steps) == (4, 2)
    assert ctx.batch_size == 3 and ctx.prompts == []


def test_a_standalone_chain_prediction_makes_one_plus_k_student_calls():
    """A standalone (single-process) context pads no calls: DMD2's "chain" backward simulation
    calls the student 1 + k times, k the step's first host draw in 0..q-1 (q - 1 + 1 calls only
    under FSDP2's uniform_calls)."""
    grid = StudentGrid(num_milestones=8, steps=4, backward_simulation="chain")
    calls = []

    def student(x, t, cond):
        calls.append(t)
        return 0.5 * x

    seen = set()
    for seed in range(6):
        k = int(torch.randint(4, (1,), generator=torch.Generator().manual_seed(seed)))
        calls.clear()
        ctx = StepContext.standalone(
            student=student,
            teacher=None,
            schedule=SCHEDULE,
            latent_shape=(2, 2, 2),
            cond=Conditioning(torch.zeros(2, 2, 3)),
            generator=torch.Generator().manual_seed(seed),
            grid=grid,
        )
        with torch.no_grad():
            predict_student(ctx)
        assert len(calls) == 1 + k, seed
        seen.add(k)
    assert min(seen) < 3  # some draw stopped before the last move


def test_host_draws_on_the_cpu_continue_the_steps_own_stream():
    """On a CPU step the host draws are the step generator's: a host draw after a device draw is the
    stream's next number, not its first again."""
    ctx = context(torch.Generator().manual_seed(7))
    first = ctx.rand(3)
    host = torch.rand(3, generator=ctx.host_generator)
    reference = torch.Generator().manual_seed(7)
    assert torch.equal(first, torch.rand(3, generator=reference))
    assert torch.equal(host, torch.rand(3, generator=reference))
    assert not torch.equal(host, first)


def test_host_draws_on_an_accelerator_follow_the_steps_seed_once_per_step():
    """On an accelerator the host generator is a CPU one seeded like the step's (the engine's
    (seed, step, micro-batch)), made once per step: two host draws of a step continue one stream,
    and another step's seed gives other numbers."""
    ctx = context(AcceleratorGenerator(1234))
    a = torch.rand(4, generator=ctx.host_generator)
    b = torch.rand(4, generator=ctx.host_generator)
    reference = torch.Generator().manual_seed(1234)
    assert torch.equal(a, torch.rand(4, generator=reference))
    assert torch.equal(b, torch.rand(4, generator=reference))
    other = context(AcceleratorGenerator(99))
    assert not torch.equal(torch.rand(4, generator=other.host_generator), a)


def test_real_latents_need_prompt_indices_and_are_encoded_once_per_step():
    """Without prompt indices the real images cannot be read (the one-line error, the reader is not
    called); with them, two losses asking in one step get the same encoding (one call)."""
    calls = []

    def real_images(index, generator):
        calls.append(index)
        return torch.randn(len(index), 2, 2, 2, generator=generator)

    with pytest.raises(TLCMError, match="real images"):
        context(real_images=real_images).real_latents()
    assert calls == []
    ctx = context(real_images=real_images, prompt_index=torch.tensor([3, 5]))
    first, second = ctx.real_latents(), ctx.real_latents()
    assert len(calls) == 1 and first is second


def test_computed_answers_the_default_even_when_it_is_none():
    ctx = context()
    assert ctx.computed("nothing", None) is None and ctx.computed("nothing", 0) == 0
    with pytest.raises(KeyError, match="nothing"):
        ctx.computed("nothing")
    ctx.shared("x", lambda: 5)
    assert ctx.computed("x", None) == 5


# ---- run_cli and notes ---------------------------------------------------------------------------


@pytest.fixture
def one_process(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setattr(preemption, "_process", None)


def exit_line(err: BaseException, capsys) -> tuple[int, str]:
    def main():
        raise err

    with pytest.raises(SystemExit) as info:
        run_cli(main)
    return info.value.code, capsys.readouterr().err


def test_an_error_naming_brackets_is_one_literal_line(one_process, capsys):
    """A message with square brackets (a glob, a flag value, a path) is printed as written, and a
    long one stays one line (no wrapping at the console's width)."""
    message = "no image matches data/[ab]*.png [/x] [bold]; " + "a very long explanation " * 12
    assert exit_line(TLCMError(message), capsys) == (2, f"error: {message}\n")


def test_ctrl_c_exits_130_with_one_line(one_process, capsys):
    code, err = exit_line(KeyboardInterrupt(), capsys)
    assert code == 128 + 2 and err.count("\n") == 1 and err.startswith("interrupted (Ctrl-C)")


def test_a_note_prints_its_brackets_literally_on_one_line(capsys):
    line = "[bold]kept[/bold] " + "x" * 200
    note(line)
    assert capsys.readouterr().err == line + "\n"


def test_an_empty_rank_is_rank_0(monkeypatch, capsys):
    """RANK set but empty is no torchrun rank > 0: the error comes at once, without a rank prefix."""
    monkeypatch.setenv("RANK", "")
    monkeypatch.setattr(errors, "RANK_GRACE_SECONDS", 0.2)
    monkeypatch.setattr(preemption, "_process", StopSignals())  # installed, nothing received
    assert exit_line(TLCMError("bad flag"), capsys) == (2, "error: bad flag\n")


# ---- the recipe tree ---------------------------------------------------------------------------


def test_shown_steps_are_the_recipes_inference_steps_else_the_grids():
    grid = StudentGrid(num_milestones=4, steps=2)
    assert Recipe(student=StudentConfig(grid=grid)).shown_steps == (1, 2, 4)
    assert Recipe(student=StudentConfig(grid=grid), inference_steps=(3,)).shown_steps == (3,)


def test_a_smoke_recipe_keeps_the_phases_at_its_steps_and_batch_without_init_from(tmp_path):
    recipe = Recipe(
        student=StudentConfig(init_from=Path("runs/stage1"), lora_rank=8),
        phases={"a": Phase(steps=100, batch_size=16, lr=3e-5), "b": Phase(steps=50, batch_size=8)},
    )
    recipe = replace(recipe, runtime=replace(recipe.runtime, sample_grid=True, checkpoint_every=10))
    smoke = smoke_recipe(recipe, tmp_path / "model", tmp_path / "out", steps=3, batch_size=5, lora_rank=4)
    assert {n: (p.steps, p.batch_size, p.lr) for n, p in smoke.phases.items()} == {
        "a": (3, 5, 3e-5),
        "b": (3, 5, 1e-4),
    }
    assert smoke.student.init_from is None and smoke.student.lora_rank == 4
    assert smoke.model.path == tmp_path / "model" and smoke.runtime.out_dir == tmp_path / "out"
    assert not smoke.runtime.sample_grid and smoke.runtime.checkpoint_every == 0
    assert smoke.inference_steps == (1, 2)
