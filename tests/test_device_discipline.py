"""The device-discipline checker (tests/device_discipline.py) catches on CPU what crashes on CUDA:
generator draws that fall back to the default device, in-step tensor factories without a device;
and it counts host syncs by call site."""

from pathlib import Path

import pytest
import torch
from device_discipline import DeviceDiscipline
from torch import nn

from tlcm.losses.base import Loss
from tlcm.rewards import shifted_prompts
from tlcm.rewards.digit import DigitReward

HERE = (str(Path(__file__).resolve()),)  # police this file's code too, as if it were tlcm's


def _old_shifted_prompts(prompts: list[str], generator: torch.Generator) -> list[str]:
    """tlcm.rewards.shifted_prompts before the fix: it crashed recipes:tlcm-full on an H200 with
    "Expected a 'cpu' device type for generator but found 'cuda'"."""
    n = len(prompts)
    shift = int(torch.randint(1, n, (1,), generator=generator))
    return [prompts[(i + shift) % n] for i in range(n)]


# pytest.raises goes outside the mode: a violation that does not propagate out of the mode fails it
def test_a_draw_without_its_device_is_rejected_and_one_with_it_passes():
    g = torch.Generator().manual_seed(0)
    site = r"torch\.randint at tests/test_device_discipline\.py:\d+ draws with a generator on cpu and no"
    with pytest.raises(AssertionError, match=site), DeviceDiscipline(roots=HERE):
        torch.randint(1, 5, (1,), generator=g)
    with DeviceDiscipline(roots=HERE) as mode:
        torch.randint(1, 5, (1,), generator=g, device=g.device)
        torch.randn(2, 3, generator=g, device="cpu")
        torch.empty(3).normal_(generator=g)  # in-place: the tensor's device, which is the generator's
        torch.randn_like(torch.zeros(2), generator=g)
        torch.multinomial(torch.ones(4), 2, generator=g)
        nn.init.uniform_(torch.empty(3), generator=g)
    assert mode.violations == []
    mismatch = "generator on cpu and device=meta"
    with pytest.raises(AssertionError, match=mismatch), DeviceDiscipline(roots=HERE):
        torch.rand(2, generator=g, device="meta")


def test_the_original_rewards_bug_is_caught_and_the_fixed_rewards_pass():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(AssertionError, match=r"torch\.randint at .*falls back"), DeviceDiscipline(roots=HERE):
        _old_shifted_prompts(["a", "b", "c"], g)
    with DeviceDiscipline() as mode:  # the fixed tlcm code, policed as in training
        assert sorted(shifted_prompts(["a", "b", "c"], g)) == ["a", "b", "c"]
        assert len(DigitReward.unrelated(None, ["a three", "a 7"], g)) == 2
    assert mode.violations == []


def test_a_swallowed_violation_still_fails_on_exit():
    g = torch.Generator()
    with pytest.raises(AssertionError, match="device discipline"), DeviceDiscipline(roots=HERE):
        try:
            torch.randperm(4, generator=g)
        except Exception:  # noqa: S110 - what a broad except in the code under test would do
            pass


class _FactoryLoss(Loss):
    def __init__(self, device: str | None) -> None:
        super().__init__()
        self.device = device

    def forward(self, ctx=None):
        scalar = torch.tensor(2.0)  # 0-dim: mixes with CUDA tensors as a scalar, allowed
        kwargs = {} if self.device is None else {"device": self.device}
        return {"x": (torch.arange(3, dtype=torch.float32, **kwargs) * scalar).sum()}


def test_in_step_factories_need_a_device_and_scalars_or_code_outside_steps_do_not():
    unstated = r"torch\.arange at .* makes a \(3,\) tensor inside a training step with no device="
    with pytest.raises(AssertionError, match=unstated), DeviceDiscipline(roots=HERE):
        _FactoryLoss(None)()
    with DeviceDiscipline(roots=HERE) as mode:
        _FactoryLoss("cpu")()
        torch.arange(3)  # not inside a training step
    assert mode.violations == []


def test_host_syncs_are_counted_by_call_site():
    def step_like():
        x = torch.arange(4.0, device="cpu")
        value = x.sum().item()
        kept = x[x > 1]
        moved = x.to(torch.device("cpu"))
        return value, kept, moved, bool(x.any()), float(x[0])

    with DeviceDiscipline(roots=HERE, count_syncs=True) as mode:
        step_like()
    ops = sorted(op for (_, site, op, _), n in mode.syncs.items() if site.startswith("tests/"))
    assert ops == ["__bool__", "__float__", "item", "to(device)", "x[bool mask]"]
