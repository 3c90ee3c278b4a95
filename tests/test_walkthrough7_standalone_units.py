"""The seventh walkthrough's own-loop fixes (tlcm/losses/base.py, auxiliary.py): a loss called on a
``StepContext.standalone`` context validates its config as the engine does (typos and out-of-range
values refused in one line, not an IndexError deep in the schedule), warns once when the loop
forgets ``aux_step`` / ``after_student_step`` (never on the engine's contexts), ``standalone``
refuses inputs that silently train the wrong thing, and a frozen fake score names DMD and the fix."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest
import torch
from test_dmd import ToyFake
from toy_context import SCHEDULE, toy_context

from tlcm.conditioning import Conditioning
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import StudentGrid
from tlcm.errors import TLCMError
from tlcm.losses.auxiliary import AuxOptimizer
from tlcm.losses.base import Loss, LossConfig, PhaseContext, StepContext
from tlcm.losses.dmd import DMD, DMDConfig
from tlcm.losses.mlcd import MLCD, MLCDConfig


def _student():
    scale = torch.nn.Parameter(torch.tensor(0.5))
    return lambda x, t, c: scale * x


def _ctx(step=0, **extra):
    """A standalone context on the 3-timestep toy schedule (T = 3), M = q = 1."""
    return toy_context(
        _student(), lambda x, t, c: torch.zeros_like(x), grid=StudentGrid(1, 1), step=step, **extra
    )


def _engine_ctx(step=0):
    """A context built the way the engine builds one (``Trainer.context``: ``StepContext(phase, ...)``)."""
    phase = PhaseContext(
        student=_student(),
        teacher=Guided(lambda x, t, c: torch.zeros_like(x), 1.0, Conditioning(torch.ones(1, 2, 3))),
        schedule=SCHEDULE,
        latent_shape=(2, 2, 2),
        grid=StudentGrid(1, 1),
    )
    return StepContext(
        phase, Conditioning(torch.zeros(2, 2, 3)), torch.Generator().manual_seed(step), step=step
    )


def _standalone(**changed):
    """``StepContext.standalone`` of legitimate toy fields with ``changed`` replaced."""
    plain = lambda x, t, c: torch.zeros_like(x)  # noqa: E731
    fields = dict(
        student=plain, teacher=Guided(plain), schedule=SCHEDULE, latent_shape=(2, 2, 2),
        cond=Conditioning(torch.zeros(2, 2, 3)), generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    return StepContext.standalone(**{**fields, **changed})


def _own_loop_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "in your own loop" in str(w.message)]


# ---- 1. configs are validated on the standalone path ----------------------------------------------


def test_a_standalone_loss_refuses_an_out_of_range_config_in_one_line():
    """t_max = 5000 on a T = 3 schedule: the config's own message as a TLCMError naming the loss, its
    config class and T, at the first call (not an IndexError inside the schedule)."""
    loss = DMD(DMDConfig(t_min=0, t_max=5000), ToyFake())
    with pytest.raises(
        TLCMError, match=r"^DMD: its DMDConfig is invalid: need 0 <= t_min < t_max < 3, got 0, 5000 "
    ):
        loss(_ctx())
    with pytest.raises(
        TLCMError, match=r"schedule, T = 3, and grid, M = 1, q = 1\): fix that DMDConfig field$"
    ):
        loss(_ctx())


def test_a_standalone_loss_refuses_a_misspelt_choice():
    """DMDConfig(fake_score="ful") is refused at the first call, with the choices."""
    loss = DMD(DMDConfig(t_min=0, t_max=2, fake_score="ful"), ToyFake())
    with pytest.raises(TLCMError, match=r'fake_score must be "lora" or "full", got \'ful\''):
        loss(_ctx())


@dataclass
class CountingConfig(LossConfig):
    """A new loss's config: ``validate`` counts its calls and refuses ``level`` >= T."""

    level: int = 0
    calls: list = None

    def validate(self, num_train_timesteps, grid):
        self.calls.append(num_train_timesteps)
        if self.level >= num_train_timesteps:
            raise ValueError(f"level must be in 0..{num_train_timesteps - 1}, got {self.level}")


class CountingLoss(Loss):
    """A loss outside tlcm: nothing but ``self.config`` and ``forward``."""

    def __init__(self, config):
        super().__init__()
        self.config = config

    def forward(self, ctx):
        return {"zero": torch.zeros(())}


def test_a_new_loss_is_validated_once_and_again_only_when_its_config_changes():
    """Generic in ``Loss``: a new loss gets the check for free, once (cheap), again when the config
    changes; the engine's contexts skip it (the engine validated every config before training)."""
    config = CountingConfig(calls=[])
    loss = CountingLoss(config)
    for step in range(3):
        loss(_ctx(step))
    assert config.calls == [3]
    config.level = 7
    with pytest.raises(
        TLCMError, match=r"^CountingLoss: its CountingConfig is invalid: level must be in 0\.\.2"
    ):
        loss(_ctx())
    engine_config = CountingConfig(level=7, calls=[])
    CountingLoss(engine_config)(_engine_ctx())
    assert engine_config.calls == []


# ---- 2. a forgotten aux_step / after_student_step warns once, never under the engine --------------


def test_forgetting_dmds_aux_step_warns_once_naming_the_loss_and_the_call():
    loss = DMD(DMDConfig(t_min=0, t_max=2, fake_updates=1), ToyFake())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for step in range(6):
            loss(_ctx(step))
    got = _own_loop_warnings(record)
    assert len(got) == 1, got
    assert got[0].startswith("DMD ran 3 forwards in your own loop without DMD.aux_step(): ")
    assert "call loss.aux_step([ctx, ...]) after each optimizer step" in got[0]


def test_calling_aux_step_each_step_or_after_accumulated_micro_batches_does_not_warn():
    """aux_step after every step, or once per step after 4 micro-batches of one ``step`` (gradient
    accumulation); a DMD with fake_updates 0 (a frozen fake score) needs no aux_step at all."""
    loss = DMD(DMDConfig(t_min=0, t_max=2, fake_updates=1), ToyFake())
    frozen = DMD(DMDConfig(t_min=0, t_max=2, fake_updates=0), ToyFake())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for step in range(5):
            contexts = [_ctx(step) for _ in range(4)]
            for ctx in contexts:
                loss(ctx)["dmd"].backward()
                frozen(ctx)
            loss.aux_step(contexts)
    assert _own_loop_warnings(record) == []


class EmaLike(Loss):
    """A new loss with an EMA target: it overrides ``after_student_step``."""

    def forward(self, ctx):
        return {"zero": torch.zeros(())}

    def after_student_step(self):
        pass


def test_forgetting_after_student_step_warns_and_calling_it_does_not():
    """Generic: any loss overriding after_student_step, any loss owning an AuxOptimizer (GAN) needs
    aux_step; MLCD asks for after_student_step only with target "ema"."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        forgotten, kept = EmaLike(), EmaLike()
        for step in range(4):
            forgotten(_ctx(step))
            kept(_ctx(step))
            kept.after_student_step()
    got = _own_loop_warnings(record)
    assert len(got) == 1 and got[0].startswith("EmaLike ran 3 forwards in your own loop without "), got
    assert "EmaLike.after_student_step(): its EMA target never moves" in got[0]
    module = torch.nn.Linear(2, 2)
    owning = EmaLike()
    owning.opt = AuxOptimizer([torch.nn.Parameter(torch.zeros(()))], lr=0.1)  # a GAN's discriminator
    assert owning.own_loop_calls() == ("aux_step", "after_student_step")
    assert MLCD(MLCDConfig(target="ema"), module).own_loop_calls() == ("after_student_step",)
    assert MLCD(MLCDConfig(), module).own_loop_calls() == ()


def test_the_engines_contexts_never_warn():
    """The engine calls aux_step after every finite step and skips it after a non-finite one: its
    contexts (built as ``Trainer.context`` does) are never counted."""
    loss = DMD(DMDConfig(t_min=0, t_max=2, fake_updates=1), ToyFake())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for step in range(10):
            loss(_engine_ctx(step))
    assert _own_loop_warnings(record) == []


# ---- 3. StepContext.standalone refuses wrong inputs -----------------------------------------------


def test_standalone_refuses_a_teacher_without_guidance():
    plain = lambda x, t, c: torch.zeros_like(x)  # noqa: E731
    with pytest.raises(
        TLCMError, match=r"^StepContext\.standalone: teacher is a function, not a tlcm\.diffusion"
    ):
        _standalone(teacher=plain)
    _standalone(teacher=None)  # None: a loss that never calls the teacher (tests, students only)


def test_standalone_refuses_prompts_that_do_not_match_the_batch():
    with pytest.raises(TLCMError, match=r"prompts must be the batch's 2 prompt texts .* got 1 prompts"):
        _ctx(prompts=["the number 3"])
    with pytest.raises(TLCMError, match=r"got 'the number 3'"):
        _ctx(prompts="the number 3")
    assert _ctx(prompts=["a", "b"]).prompts == ["a", "b"] and _ctx().prompts == []


def test_standalone_refuses_a_latent_shape_that_is_not_c_h_w():
    for shape in [(4, 8), (1, 4, 8, 8)]:
        with pytest.raises(TLCMError, match=r"latent_shape must be \(C, h, w\) of one latent, got"):
            _standalone(latent_shape=shape)


def test_standalone_refuses_a_missing_generator():
    with pytest.raises(TLCMError, match=r"generator must be a torch\.Generator .* got None"):
        _standalone(generator=None)
    with pytest.raises(TLCMError, match=r"got 0 "):
        _standalone(generator=0)


# ---- 4. a frozen fake score names DMD and the fix -------------------------------------------------


def test_a_frozen_fake_score_names_dmd_and_requires_grad():
    fake = ToyFake().requires_grad_(False)
    with pytest.raises(
        ValueError, match=r"^DMD's fake score \(the FakeScore passed to DMD\) has no parameter"
    ):
        DMD(DMDConfig(), fake)
    with pytest.raises(ValueError, match=r"call \.requires_grad_\(True\) on it \(a copy of a frozen teacher"):
        DMD(DMDConfig(), fake)
