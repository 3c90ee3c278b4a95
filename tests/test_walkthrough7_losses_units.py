"""The seventh walkthrough's fixes to tlcm's losses used in another project's training loop
(``StepContext.standalone``, /tmp/walk7/REPORT.md problems 2, 3, 5's schedule row, 8, 9, 10):

- ``GAN(GANConfig(disc_rank=8), ...)`` without a trunk adapter is refused (it trained a frozen trunk);
- reward feedback's s0 / s_neg default to the reward's own (the digit reward's log-probabilities),
  every shipped recipe keeping its thresholds;
- ``VPSchedule.from_config`` refuses a flow-matching scheduler config;
- GAN's ``aux_step`` may come before the student's backward (same gradients, same D update);
- reward feedback without one prompt per sample says to pass prompts=[...];
- latent LPIPS reports the caller's shapes and warns once when the miniature's weights meet
  latents of another size.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from device_discipline import device_discipline  # noqa: F401  (every test runs under DeviceDiscipline)
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler
from torch import nn
from toy_context import toy_context

from tlcm.diffusion.milestones import StudentGrid
from tlcm.diffusion.schedule import FlowSchedule, VPSchedule, schedule_from_config
from tlcm.errors import TLCMError
from tlcm.losses.gan import GAN, GANConfig
from tlcm.losses.latent_lpips import LatentLPIPS, latent_lpips_distance, save_latent_lpips
from tlcm.losses.preference import Preference, PreferenceConfig
from tlcm.models.discriminator import Discriminator
from tlcm.rewards import Reward
from tlcm.rewards.clip import ClipReward
from tlcm.rewards.digit import DIGIT_S0, DIGIT_S_NEG, DigitReward

SD_CONFIG = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


# ---- GAN: disc_rank needs a trunk (report 2) ------------------------------------------------------


class _LinearHeads(nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return (features[0] * self.w).flatten(1).sum(1)


class _LinearD(Discriminator):
    """D(z) = sum(w * z) per sample: the features are the input itself, the head is w (2, 2, 2)."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.heads = _LinearHeads(w)

    def features(self, x, t, cond):
        return [x]


W = torch.tensor([0.3, -0.2, 0.1, 0.4, -0.5, 0.2, 0.6, -0.1]).view(2, 2, 2)


def test_gan_with_disc_rank_and_no_trunk_is_refused():
    """disc_rank 8 built directly (no Student, so no trunk adapter) trained the frozen trunk
    bit for bit like disc_rank 0; it is now refused, saying how to get a trunk or what to set."""
    config = GANConfig(input="latent", backbone="teacher", disc_rank=8)
    with pytest.raises(TLCMError, match=r"disc_rank=8.*GANConfig\.build\(student\).*disc_rank=0") as err:
        GAN(config, discriminator=_LinearD(W))
    assert "\n" not in str(err.value)
    GAN(GANConfig(input="latent", backbone="teacher"), discriminator=_LinearD(W))  # disc_rank 0: fine


# ---- GAN: aux_step before the student's backward (report 8) ----------------------------------------


def _gan_step(aux_first: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """One GAN step on the toy context (student x0 = scale x, 1-step grid): the student's gradient,
    D's head after its update and the logged metrics, with aux_step before or after the backward."""
    scale = nn.Parameter(torch.tensor(0.5))
    gan = GAN(GANConfig(input="latent", disc_lr=0.1), discriminator=_LinearD(W))
    ctx = toy_context(lambda x, t, c: scale * x, None, batch=3, seed=4, grid=StudentGrid(1, 1))
    loss = gan(ctx)["gan"]
    if aux_first:
        metrics = gan.aux_step([ctx])
        loss.backward()
    else:
        loss.backward()
        metrics = gan.aux_step([ctx])
    return scale.grad.clone(), gan.discriminator.heads.w.detach().clone(), metrics


def test_gan_aux_step_may_come_before_the_students_backward():
    """The frozen heads of the generator loss were views of D's parameters, which AdamW then
    updated in place: backward after aux_step failed with an in-place autograd error. Either order
    now gives the same student gradient (D as it was in the forward) and the same D update."""
    grad_after, w_after, metrics_after = _gan_step(aux_first=False)
    grad_first, w_first, metrics_first = _gan_step(aux_first=True)
    assert grad_after.abs() > 0 and not torch.equal(w_after, W)
    torch.testing.assert_close(grad_first, grad_after, rtol=0, atol=0)
    torch.testing.assert_close(w_first, w_after, rtol=0, atol=0)
    assert metrics_first.keys() == metrics_after.keys()


# ---- reward feedback: the reward's own thresholds (report 3) ---------------------------------------


class _ScaledReward(Reward):
    """r(x, c) = -mean (x - 1)^2 for every prompt, with its own thresholds s0 = -0.5, s_neg = -3."""

    s0, s_neg = -0.5, -3.0

    def score(self, features, prompts):
        return -(features - 1).square().flatten(1).mean(1)


def test_reward_feedback_thresholds_default_to_the_rewards_own():
    """s0 / s_neg None mean the reward's: the digit reward's log-probabilities (log 0.99, log 0.01,
    rounded), the paper's 16 / 0 for the CLIP-family rewards and the base; a set value wins."""
    assert (PreferenceConfig().s0, PreferenceConfig().s_neg) == (None, None)
    assert (DigitReward.s0, DigitReward.s_neg) == (DIGIT_S0, DIGIT_S_NEG) == (-0.01, -4.6)
    assert (Reward.s0, Reward.s_neg) == (ClipReward.s0, ClipReward.s_neg) == (16.0, 0.0)
    digit = Preference(PreferenceConfig(mode="reward"), DigitReward())
    assert digit.thresholds() == (-0.01, -4.6)
    assert Preference(PreferenceConfig(mode="reward"), Reward()).thresholds() == (16.0, 0.0)
    assert Preference(PreferenceConfig(mode="reward", s0=2.0, s_neg=-1.0), DigitReward()).thresholds() == (
        2.0,
        -1.0,
    )


def test_the_hinge_uses_the_rewards_thresholds_when_the_config_leaves_them_unset():
    """L = relu(s0 - r(x0_hat, c)) + relu(r(x0_hat, c_neg) - s_neg) with the reward's s0 = -0.5 and
    s_neg = -3 (r the same for both prompts here), by hand from x0_hat."""
    scale = nn.Parameter(torch.tensor(0.5))
    loss = Preference(PreferenceConfig(mode="reward"), _ScaledReward())
    ctx = toy_context(
        lambda x, t, c: scale * x, None, batch=2, seed=2, decode=lambda z: z, grid=StudentGrid(1, 1),
        prompts=["a", "b"],
    )  # fmt: skip
    value = loss(ctx)["preference"]
    x0 = ctx.computed("student_prediction/1/1").x0.detach()
    r = -(x0 - 1).square().flatten(1).mean(1)
    torch.testing.assert_close(value.detach(), (torch.relu(-0.5 - r) + torch.relu(r + 3.0)).mean())


EXPECTED_THRESHOLDS = {
    ("tlcm-paper", "preference"): (-0.01, -4.6),
    ("tlcm-full-sdxl", "preference"): (16.0, 0.0),
    ("tlcm-full-sd3", "preference"): (16.0, 0.0),
    ("tlcm-full-flux", "preference"): (16.0, 0.0),
    ("hyper-sd-tscd", "feedback"): (-0.01, -4.6),
}
"""Every shipped recipe's reward-feedback thresholds before the reward's own defaults came in."""


def test_every_shipped_recipe_keeps_its_reward_thresholds():
    """The effective (s0, s_neg) of each preset's preference loss (its config's, or its reward's
    where None) are exactly those the presets trained with before the defaults moved."""
    from recipes import PRESETS

    classes = {"digit": DigitReward, "clip": ClipReward, "pickscore": ClipReward, "aesthetic": ClipReward}
    found = {}
    for name, recipe in PRESETS.items():
        for phase, spec in recipe.phases.items():
            cfg = spec.losses.get("preference")
            if cfg is not None:
                reward = classes[cfg.reward]
                found[name, phase] = (
                    reward.s0 if cfg.s0 is None else cfg.s0,
                    reward.s_neg if cfg.s_neg is None else cfg.s_neg,
                )
    assert found == EXPECTED_THRESHOLDS


def test_the_train_help_still_shows_the_thresholds(capsys):
    """tyro still takes s0 / s_neg (now float | None) as flags of the preset."""
    from tlcm.train import cli

    with pytest.raises(SystemExit) as done:
        cli(["recipes:tlcm-paper", "--help"])
    out = capsys.readouterr().out
    assert done.value.code in (0, None)
    assert "losses.preference.s0" in out and "losses.preference.s-neg" in out


# ---- reward feedback without prompts (report 9) ---------------------------------------------------


class _TextReward(Reward):
    """r(x, c) = len(c) mean(x) per sample: reads its prompt's text, as the digit reward does."""

    def score(self, features, prompts):
        return torch.stack([features[i].mean() * len(p) for i, p in enumerate(prompts)])


@pytest.mark.parametrize("mode", ["reward", "dpo"])
def test_reward_feedback_without_prompts_says_to_pass_prompts(mode):
    """prompts left out of StepContext.standalone (optional there: most losses read no text) made
    a text-reading reward fail with 'stack expects a non-empty TensorList'; that is now one line
    naming prompts=[...]. A reward that reads no text still runs without prompts."""
    scale = nn.Parameter(torch.tensor(0.5))
    student = lambda x, t, c: scale * x  # noqa: E731

    def run(reward: Reward, **extra):
        loss = Preference(PreferenceConfig(mode=mode), reward, reference=student)
        return loss(toy_context(student, None, batch=2, decode=lambda z: z, grid=StudentGrid(1, 1), **extra))

    with pytest.raises(TLCMError, match=r"with 0 prompts for a batch of 2.*prompts=\[\.\.\.\]") as err:
        run(_TextReward())
    assert "StepContext.standalone" in str(err.value) and "\n" not in str(err.value)
    run(_TextReward(), prompts=["a", "bb"])
    run(_ScaledReward())  # reads no text: no prompts needed


class _FailingReward(Reward):
    """A reward whose score raises ``error`` (what its reading of the prompts raises on none)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def score(self, features, prompts):
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        IndexError("list index out of range"),  # prompts[i]
        ValueError("zip() argument 2 is shorter than argument 1"),  # zip(strict=True), a tokenizer
        ZeroDivisionError("division by zero"),  # a mean over len(prompts)
    ],
)
def test_each_error_that_missing_prompts_cause_says_to_pass_prompts(error):
    """The narrowed except (RuntimeError: the stack above) still names prompts=[...] for the other
    errors that code reading no prompts raises, with the reward's own message."""
    scale = nn.Parameter(torch.tensor(0.5))
    loss = Preference(PreferenceConfig(mode="reward"), _FailingReward(error))
    ctx = toy_context(lambda x, t, c: scale * x, None, batch=2, decode=lambda z: z, grid=StudentGrid(1, 1))
    with pytest.raises(TLCMError, match=r"with 0 prompts for a batch of 2.*prompts=\[\.\.\.\]") as err:
        loss(ctx)
    assert f"({type(error).__name__}: {error})" in str(err.value) and err.value.__cause__ is error


@pytest.mark.parametrize(
    "error", [OSError("reward weights unreadable"), torch.OutOfMemoryError("out of memory")]
)
def test_a_failure_that_missing_prompts_do_not_cause_is_not_blamed_on_them(error):
    """An error that no missing prompt causes (a file, memory) propagates as it is, not as a
    TLCMError saying to pass prompts."""
    scale = nn.Parameter(torch.tensor(0.5))
    loss = Preference(PreferenceConfig(mode="reward"), _FailingReward(error))
    ctx = toy_context(lambda x, t, c: scale * x, None, batch=2, decode=lambda z: z, grid=StudentGrid(1, 1))
    with pytest.raises(type(error)) as err:
        loss(ctx)
    assert err.value is error


# ---- VPSchedule.from_config of a flow scheduler (report 5) -----------------------------------------


def test_vp_schedule_refuses_a_flow_matching_config():
    """The SD3 miniature's FlowMatchEulerDiscreteScheduler config gave a DDPM schedule with eps
    prediction; it is refused naming FlowSchedule.from_config, as is any config with a shift and no
    betas or dynamic shifting. schedule_from_config still picks flow for them, VP for SD's."""
    flow = FlowMatchEulerDiscreteScheduler(shift=3.0).config
    for config in (flow, {"shift": 3.0}, {**SD_CONFIG, "use_dynamic_shifting": True}):
        with pytest.raises(TLCMError, match="FlowSchedule.from_config") as err:
            VPSchedule.from_config(config)
        assert "\n" not in str(err.value)
        assert isinstance(schedule_from_config(config), FlowSchedule)
    assert isinstance(VPSchedule.from_config(DDIMScheduler(**SD_CONFIG).config), VPSchedule)


def test_the_flow_miniatures_schedule_is_still_flow():
    """The bundled flow miniature's scheduler config (what its family's schedule reads) -> flow."""
    from tlcm.toy import MINIATURE_SD3

    config = json.loads((Path(MINIATURE_SD3) / "scheduler" / "scheduler_config.json").read_text())
    assert isinstance(schedule_from_config(config), FlowSchedule)
    with pytest.raises(TLCMError, match="FlowSchedule.from_config"):
        VPSchedule.from_config(config)


# ---- latent LPIPS: shapes and the miniature's weights (report 10) ---------------------------------


def _net() -> LatentLPIPS:
    torch.manual_seed(0)
    return LatentLPIPS(4, (4, 4, 4, 4, 4))


@pytest.mark.parametrize(
    "pred, target, message",
    [
        ((2, 3, 32, 32), (2, 3, 32, 32), r"got pred of shape \(2, 3, 32, 32\): it compares VAE latents"),
        ((4, 8, 8), (4, 8, 8), r"got pred of shape \(4, 8, 8\) \(add the batch dimension"),
        ((2, 4, 8, 8), (2, 4, 8), r"got target of shape \(2, 4, 8\)"),
        ((2, 4, 8, 8), (3, 4, 8, 8), r"pred \(2, 4, 8, 8\) and target \(3, 4, 8, 8\)"),
        ((2, 4, 8, 8), (2, 4, 4, 4), r"pred \(2, 4, 8, 8\) and target \(2, 4, 4, 4\)"),
        ((2, 4, 1, 1), (2, 4, 1, 1), r"at least 2 x 2.*got \(1, 1\)"),
        ((2, 4, 8, 1), (2, 4, 8, 1), r"at least 2 x 2.*got \(8, 1\)"),
    ],
)
def test_latent_lpips_reports_the_callers_shapes(pred, target, message):
    """Each wrong input is refused in one line with the caller's shape (not the concatenated 2B
    batch), before torch's own size errors."""
    with pytest.raises(ValueError, match=message) as err:
        _net()(torch.zeros(pred), torch.zeros(target))
    assert "\n" not in str(err.value)


def test_the_default_weights_warn_once_on_another_vaes_latent_size(tmp_path):
    """The shipped weights are the miniature VAE's (8 x 8 latents): 64 x 64 latents (SD1.5's) warn
    once per distance, naming the trainer; 8 x 8 latents and a weights file of one's own do not."""
    x, y = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        latent_lpips_distance()(torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8))
        own = tmp_path / "own.safetensors"
        save_latent_lpips(_net(), own)
        latent_lpips_distance(own)(x, y)
    assert not caught
    distance = latent_lpips_distance()
    with pytest.warns(UserWarning, match=r"miniature VAE's 8x8 latents.*python -m tlcm\.latent_lpips\.train"):
        first = distance(x, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = distance(x, y)
    assert not caught and torch.equal(first, second)
