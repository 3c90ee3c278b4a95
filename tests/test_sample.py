"""python -m tlcm.sample's samplers: the teacher samples with deterministic DDIM (gamma 0), a student
with its run's gamma and first-move gamma (or --gamma / --first-gamma's).

Each run goes through ``tlcm.sample.main`` with ``sample_latents`` wrapped: the wrapper records the
gamma / first_gamma it is given and the latents it returns, and calls through, with the run's own
step generator or (``swap``) a differently seeded one. A move with gamma 0 draws no noise into the
state, so a sampler whose moves are all DDIM returns the same latents with either generator; one
with a gamma > 0 move does not.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

import tlcm.sample
from recipes import PRESETS
from tlcm.config import smoke_recipe
from tlcm.diffusion.milestones import StudentGrid
from tlcm.engine import train
from tlcm.sample import SampleArgs
from tlcm.sample import main as sample_main

SAMPLER_GRID = StudentGrid(gamma=0.0, first_gamma=1.0)
"""The student run's trained sampler: LCM's fresh noise on the first move only, then DDIM."""


@pytest.fixture(scope="module")
def student_run(tiny_sd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step mlcd run on the tiny SD pipeline whose student grid has gamma 0, first_gamma 1
    (trained once for this module)."""
    out = tmp_path_factory.mktemp("sampler-run") / "run"
    recipe = PRESETS["mlcd"]
    grid = replace(recipe.student.grid, gamma=SAMPLER_GRID.gamma, first_gamma=SAMPLER_GRID.first_gamma)
    train(smoke_recipe(recipe, tiny_sd_dir, out, lora_rank=4, lora_alpha=4.0, grid=grid))
    return out


def _sample_call(
    monkeypatch: pytest.MonkeyPatch, args: SampleArgs, swap: bool = False
) -> tuple[tuple, dict[str, Any], torch.Tensor]:
    """Run ``tlcm.sample.main(args)`` with ``sample_latents`` wrapped; returns its one call's
    (positional args: denoiser, schedule, cond, noise, timesteps; keyword args; returned latents).
    ``swap``: the sampler's step generator is replaced by one seeded differently (the initial noise
    stays the run's)."""
    calls: list[tuple[tuple, dict[str, Any], torch.Tensor]] = []
    real = tlcm.sample.sample_latents

    def recording(*a: Any, **kw: Any) -> torch.Tensor:
        if swap:
            kw["generator"] = torch.Generator(device=kw["generator"].device).manual_seed(12345)
        latents = real(*a, **kw)
        calls.append((a, kw, latents.clone()))
        return latents

    monkeypatch.setattr(tlcm.sample, "sample_latents", recording)
    sample_main(args)
    assert len(calls) == 1
    return calls[0]


def _sample(
    monkeypatch: pytest.MonkeyPatch, args: SampleArgs, swap: bool = False
) -> tuple[dict[str, Any], torch.Tensor]:
    """``_sample_call``'s (the gamma and first_gamma the sampler was called with, its latents)."""
    _, kw, latents = _sample_call(monkeypatch, args, swap)
    return {"gamma": kw["gamma"], "first_gamma": kw["first_gamma"]}, latents


def test_teacher_samples_with_deterministic_ddim(
    tiny_sd_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --student the teacher samples with CFG + DDIM: gamma 0 on every move (no first-move
    override), so its 2-step latents do not depend on the step generator's noise: the same with
    another generator. gamma 1 (LCM's fresh noise) would mix that noise into the second step's
    input and change them."""
    args = SampleArgs(
        prompt=("a",), steps=2, model=tiny_sd_dir, num_per_prompt=2, device="cpu", out=tmp_path / "t.png"
    )
    seen, latents = _sample(monkeypatch, args)
    assert seen == {"gamma": 0.0, "first_gamma": None}
    _, swapped = _sample(monkeypatch, replace(args, out=tmp_path / "swapped.png"), swap=True)
    torch.testing.assert_close(swapped, latents, rtol=0, atol=0)


def test_student_samples_with_its_runs_first_move_gamma(
    student_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A student trained with gamma 0 and first_gamma 1 samples with both: the sampler gets
    first_gamma 1 (not None, which would make the first move DDIM too), so its 2-step latents (one
    move: the first) take the step generator's fresh noise and change with another generator."""
    args = SampleArgs(
        prompt=("a",), steps=2, num_per_prompt=2, device="cpu", student=student_run, out=tmp_path / "s.png"
    )
    seen, latents = _sample(monkeypatch, args)
    assert seen == {"gamma": SAMPLER_GRID.gamma, "first_gamma": SAMPLER_GRID.first_gamma}
    _, swapped = _sample(monkeypatch, replace(args, out=tmp_path / "swapped.png"), swap=True)
    assert (swapped - latents).abs().max() > 1e-3


def test_student_first_gamma_flag_overrides_the_runs(
    student_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--gamma 1 --first-gamma 0 on that run: the sampler gets first_gamma 0, so the 2-step sample's
    only move is DDIM and its latents are the same with another step generator (with the first
    move at --gamma's 1 they would not be)."""
    args = SampleArgs(
        prompt=("a",),
        steps=2,
        num_per_prompt=2,
        device="cpu",
        student=student_run,
        gamma=1.0,
        first_gamma=0.0,
        out=tmp_path / "s.png",
    )
    seen, latents = _sample(monkeypatch, args)
    assert seen == {"gamma": 1.0, "first_gamma": 0.0}
    _, swapped = _sample(monkeypatch, replace(args, out=tmp_path / "swapped.png"), swap=True)
    torch.testing.assert_close(swapped, latents, rtol=0, atol=0)


def test_the_grid_has_one_row_per_prompt(
    tiny_sd_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--prompt a b --num-per-prompt 3: the sampled batch is a, a, a, b, b, b (the grid's rows of
    num_per_prompt images are one prompt each), each row the prompt's own encoding."""
    from tlcm.models.base import BaseModel

    args = SampleArgs(
        prompt=("a seven", "a two"), steps=1, num_per_prompt=3, device="cpu", model=tiny_sd_dir,
        out=tmp_path / "s.png",
    )  # fmt: skip
    (_, _, cond, _, _), _, _ = _sample_call(monkeypatch, args)
    each, _ = BaseModel.load(tiny_sd_dir).encode(["a seven", "a two"])
    expected = each.prompt_embeds[torch.tensor([0, 0, 0, 1, 1, 1])]
    torch.testing.assert_close(cond.prompt_embeds, expected)
    # the PNG: make_grid puts 2 px of padding around every cell of side s, so c columns and r rows
    # are c (s + 2) + 2 by r (s + 2) + 2 pixels; 3 columns (num_per_prompt) and 2 rows (prompts)
    with Image.open(tmp_path / "s.png") as grid:
        width, height = grid.size
    assert (width - 2) % 3 == 0 and (height - 2) % 2 == 0
    assert (width - 2) // 3 == (height - 2) // 2  # square cells: 3 across, 2 down


def test_the_teacher_samples_the_steps_asked_for_on_the_trailing_ddim_grid(
    tiny_sd_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--steps 2 without --student: the sampler gets exactly 2 timesteps, DDIM's "trailing" grid
    linspace(T - 1, 0, 3) without its last point, rounded: [T - 1, round((T - 1) / 2)] ([999, 500] on
    a 1000-step schedule, as ddim_timesteps' docstring says), not a grid of another length."""
    from tlcm.models.folders import scheduler_timesteps

    args = SampleArgs(
        prompt=("a",), steps=2, model=tiny_sd_dir, num_per_prompt=1, device="cpu", out=tmp_path / "t.png"
    )
    (_, _, _, _, timesteps), _, _ = _sample_call(monkeypatch, args)
    t = scheduler_timesteps(tiny_sd_dir)
    assert [int(x) for x in timesteps] == [t - 1, round((t - 1) / 2)]


def test_the_seed_picks_the_starting_noise(
    tiny_sd_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--seed decides the initial noise: the same seed twice draws the same noise (reproducible
    grids), another seed other noise (a new set of images)."""
    args = SampleArgs(
        prompt=("a",), steps=1, model=tiny_sd_dir, num_per_prompt=2, device="cpu", out=tmp_path / "t.png"
    )
    noise = {}
    for key, seed in (("a", 3), ("again", 3), ("b", 4)):
        (_, _, _, noise[key], _), _, _ = _sample_call(monkeypatch, replace(args, seed=seed))
    torch.testing.assert_close(noise["again"], noise["a"], rtol=0, atol=0)
    assert (noise["b"] - noise["a"]).abs().max() > 0.1


def test_a_student_samples_with_every_milestone_and_no_more(
    student_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--steps M (the student's M milestones: its full grid) samples M steps from pure noise; M + 1
    is refused in one line."""
    from tlcm.errors import TLCMError

    m = PRESETS["mlcd"].student.grid.num_milestones
    args = SampleArgs(
        prompt=("a",), steps=m, num_per_prompt=1, device="cpu", student=student_run, out=tmp_path / "s.png"
    )
    (_, _, _, _, timesteps), _, _ = _sample_call(monkeypatch, args)
    assert len(timesteps) == m
    with pytest.raises(TLCMError, match=rf"--steps must be in 1\.\.{m} "):
        sample_main(replace(args, steps=m + 1))
