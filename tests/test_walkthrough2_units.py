"""A researcher extending tlcm (second walkthrough): a loss of one's own that builds or returns
the wrong thing gets one line naming it, a loss name taken twice names both classes, and
examples/own_loop.py's conditioning carries no text-encoder graph (DMD's aux_step backs through it
a second time)."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch

from tlcm.config import Phase
from tlcm.errors import TLCMError
from tlcm.losses.base import Loss, LossConfig


class _Fixed(Loss):
    """Returns ``value()`` as its one term."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, ctx):
        return {"term": self.value()}


def _objective(value):
    from tlcm.engine import Trainer

    phase = Phase(losses={"mine": LossConfig(weight=2.0)})
    trainer = SimpleNamespace(autocast=contextlib.nullcontext())
    return Trainer.objective(trainer, phase, {"mine": _Fixed(value)}, ctx=None)


def test_objective_sums_weighted_scalar_terms():
    x = torch.tensor(3.0, requires_grad=True)
    total, named = _objective(lambda: x * 1.0)
    assert total.item() == 6.0 and total.requires_grad and set(named) == {"mine/term"}


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (lambda: torch.ones(2, requires_grad=True) * 1.0, "a tensor of shape (2,)"),
        (lambda: 0.5, "a float"),
    ],
    ids=["vector", "float"],
)
def test_objective_refuses_a_term_that_is_not_a_scalar_tensor(value, said):
    with pytest.raises(TLCMError) as err:
        _objective(value)
    message = str(err.value)
    assert f"loss 'mine' ({__name__}._Fixed) returned {said} for its term 'term'" in message
    assert "{term: 0-dim tensor}" in message


def test_objective_refuses_terms_without_a_gradient():
    with pytest.raises(TLCMError, match="losses mine: no term carries a gradient to the student"):
        _objective(lambda: torch.tensor(1.0))
    with torch.no_grad():  # no backward follows (a probe): no refusal
        total, _ = _objective(lambda: torch.tensor(1.0))
    assert total.item() == 2.0


def test_a_taken_loss_name_names_both_classes_and_the_fix():
    from tlcm.losses.registry import LOSSES, register_loss

    class First(LossConfig):
        pass

    class Second(LossConfig):
        pass

    try:
        register_loss("walkthrough2-probe")(First)
        with pytest.raises(ValueError) as err:
            register_loss("walkthrough2-probe")(Second)
    finally:
        LOSSES.pop("walkthrough2-probe", None)
    where = f"{__name__}.test_a_taken_loss_name_names_both_classes_and_the_fix.<locals>"
    assert f"already registered ({where}.First); register {where}.Second under another name" in str(err.value)


def test_own_loop_conditioning_has_no_text_encoder_graph():
    from diffusers import StableDiffusionPipeline

    from examples import own_loop
    from tlcm.toy import MINIATURE_SD

    pipe = StableDiffusionPipeline.from_pretrained(MINIATURE_SD, safety_checker=None)
    cond = own_loop.encode(pipe, ["a handwritten digit seven", "handwritten three"])
    assert cond.prompt_embeds.shape[0] == 2 and not cond.prompt_embeds.requires_grad


def test_a_build_that_returns_no_loss_is_one_line_naming_the_config():
    from tlcm.losses.base import build_loss

    class Forgot(LossConfig):
        def build(self, student):
            _Fixed(lambda: torch.tensor(1.0))  # made, never returned

    with pytest.raises(TLCMError) as err:
        build_loss("mine", Forgot(), student=None)
    assert ".Forgot.build(student) returned a NoneType, not a tlcm.losses.Loss" in str(err.value)
    assert str(err.value).startswith("loss 'mine': ")
    loss = build_loss("mine", SimpleNamespace(build=lambda student: _Fixed(lambda: 1)), student=None)
    assert isinstance(loss, _Fixed)
