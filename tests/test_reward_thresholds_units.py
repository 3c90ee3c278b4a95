"""``python -m tlcm.evaluate reward-thresholds`` (tlcm/eval/reward_thresholds.py): the reward of
the teacher's samples with their own and with unrelated prompts, and the share of samples on which
each hinge of Eq. (11) is active (a reviewer found the SDXL preset's s0 = 16, the paper's MPS
value, above PickScore's range, where that term would rarely train)."""

from __future__ import annotations

import json

import pytest
import torch

from tlcm.errors import TLCMError
from tlcm.eval.reward_thresholds import hinge_shares, quantiles, reward_thresholds
from tlcm.rewards import REWARDS, Reward, register_reward


def test_a_hinge_is_active_where_it_has_a_gradient():
    """relu(s0 - r) has a gradient where r < s0 (not at r = s0); relu(r_neg - s_neg) where r_neg > s_neg."""
    matched = torch.tensor([1.0, 2.0, 2.5, 4.0])
    unrelated = torch.tensor([-1.0, 0.0, 0.5, 3.0])
    shares = hinge_shares(matched, unrelated, s0=2.5, s_neg=0.0)
    assert shares == {"s0": 2.5, "s_neg": 0.0, "positive_active": 0.5, "negative_active": 0.5}
    r = torch.tensor([2.5], requires_grad=True)
    torch.relu(2.5 - r).sum().backward()
    assert r.grad.item() == 0.0  # the boundary trains nothing: not counted active


def test_quantiles_are_named_by_percent():
    q = quantiles(torch.arange(11.0))
    assert q == {"q0": 0.0, "q10": 1.0, "q25": 2.5, "q50": 5.0, "q75": 7.5, "q90": 9.0, "q100": 10.0}


class _Lengths(Reward):
    """The reward is the prompt's length; records every prompt list it scores."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def score(self, features, prompts):
        assert features.shape[0] == len(prompts) and features.shape[1] == 3  # decoded images
        self.calls.append(list(prompts))
        return torch.tensor([float(len(p)) for p in prompts])


@pytest.fixture
def lengths():
    probe = _Lengths()
    register_reward("test-lengths")(lambda spec, device: probe)
    yield probe
    REWARDS.pop("test-lengths", None)


def test_each_image_is_scored_with_its_prompt_then_an_unrelated_one(tiny_sd_dir, tmp_path, lengths):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a\nbb\ncccc\n")
    out = tmp_path / "t.json"
    result = reward_thresholds(
        "test-lengths", s0=1.5, s_neg=3.0, model=tiny_sd_dir, prompts=prompts, samples=6, steps=2,
        batch_size=3, out=out,
    )  # fmt: skip
    assert lengths.calls[0] == ["a", "bb", "cccc"] and lengths.calls[2] == ["a", "bb", "cccc"]
    for unrelated in (lengths.calls[1], lengths.calls[3]):  # another prompt of the batch, each
        assert sorted(unrelated) == ["a", "bb", "cccc"] and all(
            u != m for u, m in zip(unrelated, lengths.calls[0], strict=True)
        )
    assert result["matched"]["q0"] == 1.0 and result["matched"]["q100"] == 4.0
    assert result["positive_active"] == pytest.approx(1 / 3)  # "a": 1 < 1.5
    assert result["negative_active"] == pytest.approx(1 / 3)  # one partner is "cccc": 4 > 3
    assert json.loads(out.read_text()) == result


def test_an_unknown_reward_and_bad_counts_are_refused_before_loading(tmp_path):
    with pytest.raises(TLCMError, match="--reward 'mps' is not a reward: use one of .*pickscore"):
        reward_thresholds("mps", model=tmp_path / "absent")
    with pytest.raises(TLCMError, match="--samples must be >= 1, got 0"):
        reward_thresholds(samples=0, model=tmp_path / "absent")


def test_reward_weights_are_checked_before_the_teacher_loads(tmp_path):
    """A PickScore run without its folder, or with a folder that is no CLIP folder: one line naming
    the flag, before any model loads (the model path here does not exist)."""
    with pytest.raises(TLCMError, match="--clip-folder is unset: the 'pickscore' reward needs a local path"):
        reward_thresholds("pickscore", model=tmp_path / "absent")
    with pytest.raises(TLCMError, match=r"--clip-folder \S+nope: no config.json there"):
        reward_thresholds("pickscore", clip_folder=str(tmp_path / "nope"), model=tmp_path / "absent")


def test_thresholds_left_unset_are_the_rewards_own(tiny_sd_dir, tmp_path, lengths):
    """--s0 / --s-neg unset check what PreferenceConfig's None trains with: the reward's own
    thresholds (``Reward.s0`` / ``s_neg``), not the paper's MPS values."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a\nbb\ncccc\n")
    lengths.s0, lengths.s_neg = 2.5, 3.0
    result = reward_thresholds(
        "test-lengths", model=tiny_sd_dir, prompts=prompts, samples=3, steps=2, batch_size=3
    )
    assert (result["s0"], result["s_neg"]) == (2.5, 3.0)
    assert result["positive_active"] == pytest.approx(2 / 3)  # "a", "bb" under 2.5
