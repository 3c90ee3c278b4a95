"""Preference learning: the DPO objective and the reward hinge by hand, rewards on tiny random
CLIP folders made here, the digit reward, and the component with toy denoisers only."""

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from device_discipline import device_discipline  # noqa: F401  (every test runs under DeviceDiscipline)
from safetensors.torch import save_file
from tiny_pipelines import CLIP_PROMPTS as PROMPTS
from toy_context import toy_context

from recipes.zoo import feedback_phase, hyper_sd_tscd
from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.preference import Preference, PreferenceConfig, dpo_loss, reward_hinge
from tlcm.losses.shared import decoded_prediction, prediction_key, samples_key
from tlcm.rewards import Reward, RewardSpec, build_reward, shifted_prompts
from tlcm.rewards.clip import AestheticHead
from tlcm.rewards.digit import DigitReward, prompt_digit
from tlcm.toy.data import prompt_for


def test_dpo_loss_by_hand():
    """(e_w - e_l) - (r_w - r_l) = (1 - 2) - 0 = -1; beta = 2: -log sigmoid(1) = log(1 + e^-1).
    Model = reference: -log sigmoid(0) = log 2 whatever the errors."""
    t = torch.tensor
    assert dpo_loss(t([1.0]), t([2.0]), t([1.5]), t([1.5]), 2.0).item() == pytest.approx(
        math.log1p(math.exp(-1))
    )
    assert dpo_loss(t([3.0]), t([0.5]), t([3.0]), t([0.5]), 500.0).item() == pytest.approx(math.log(2))


def test_reward_hinge_by_hand():
    """s0 = 16: r = 10 -> 6; r_neg = 2 over s_neg = 0 with weight 0.5 -> 1; total 7.
    r = 20, r_neg = -1 -> 0."""
    t = torch.tensor
    assert reward_hinge(t([10.0]), t([2.0]), 16.0, 0.0, 0.5).item() == pytest.approx(7.0)
    assert reward_hinge(t([20.0]), t([-1.0]), 16.0).item() == 0.0


def test_shifted_prompts_avoid_the_same_text():
    g = torch.Generator().manual_seed(0)
    prompts = ["a", "a", "b", "c"]
    for _ in range(10):
        assert all(n != p for n, p in zip(shifted_prompts(prompts, g), prompts, strict=True))


def test_clip_and_pickscore_rewards_by_hand(tiny_clip_dir):
    """CLIP score = 100 cos(image, text) of the model's own projections of the normalised image;
    PickScore-style = exp(logit_scale) cos; both differentiable in the images."""
    images = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    clip = build_reward("clip", RewardSpec(clip_folder=str(tiny_clip_dir)))
    score = clip(images, PROMPTS)
    model = clip.clip.model
    x = torch.nn.functional.interpolate((images + 1) / 2, size=(32, 32), mode="bilinear", antialias=True)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    img = model.get_image_features(pixel_values=(x - mean) / std).pooler_output
    ids = clip.clip.tokenizer(PROMPTS, padding=True, return_tensors="pt")
    txt = model.get_text_features(**ids).pooler_output
    expected = 100 * torch.nn.functional.cosine_similarity(img, txt, dim=-1)
    torch.testing.assert_close(score, expected, rtol=1e-4, atol=1e-4)
    score.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0

    pick = build_reward("pickscore", RewardSpec(clip_folder=str(tiny_clip_dir)))
    torch.testing.assert_close(
        pick(images.detach(), PROMPTS),
        expected.detach() / 100 * model.logit_scale.exp(),
        rtol=1e-4,
        atol=1e-4,
    )


def test_aesthetic_reward_loads_heads_and_refuses_bad_files(tiny_clip_dir, tmp_path):
    head = AestheticHead(16)
    for p in head.parameters():
        torch.nn.init.zeros_(p)
    head.layers[7].bias.data.fill_(5.0)  # a constant score of 5
    save_file(head.state_dict(), tmp_path / "head.safetensors")
    reward = build_reward("aesthetic", RewardSpec(str(tiny_clip_dir), str(tmp_path / "head.safetensors")))
    torch.testing.assert_close(reward(torch.zeros(2, 3, 32, 32), PROMPTS), torch.full((2,), 5.0))

    torch.save({k: v for k, v in head.state_dict().items() if k != "layers.7.bias"}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="layers.7.bias"):
        build_reward("aesthetic", RewardSpec(str(tiny_clip_dir), str(tmp_path / "bad.pth")))
    wrong = AestheticHead(8).state_dict()
    save_file(wrong, tmp_path / "wrong.safetensors")
    with pytest.raises(ValueError, match=r"layers.0.weight.*\(1024, 8\).*\(1024, 16\)"):
        build_reward("aesthetic", RewardSpec(str(tiny_clip_dir), str(tmp_path / "wrong.safetensors")))
    with pytest.raises(ValueError, match="needs"):
        build_reward("clip", RewardSpec())
    with pytest.raises(ValueError, match="unknown reward"):
        build_reward("imagereward", RewardSpec())


def test_digit_reward_is_the_classifiers_log_probability():
    """Of the images clamped to [-1, 1] (the classifier's range; these reach +-2); the unrelated
    prompts never ask for the prompt's own digit (300 draws: a 1-in-10 repeat would show)."""
    reward = DigitReward()
    images = torch.rand(3, 3, 32, 32) * 4 - 2
    prompts = [prompt_for(7, 0), prompt_for(3, 1), prompt_for(0, 3)]
    assert [prompt_digit(p) for p in prompts] == [7, 3, 0]
    logits = reward.classifier(images.clamp(-1, 1))
    expected = logits.log_softmax(1)[torch.arange(3), torch.tensor([7, 3, 0])]
    torch.testing.assert_close(reward(images, prompts), expected)
    many = prompts * 100
    negatives = reward.unrelated(many, torch.Generator().manual_seed(0))
    assert all(prompt_digit(n) != prompt_digit(p) for n, p in zip(negatives, many, strict=True))
    assert {prompt_digit(n) for n in negatives[::3]} == set(range(10)) - {7}  # every other digit
    with pytest.raises(ValueError, match="names no digit"):
        prompt_digit("a cat")


class LatentReward(Reward):
    """A toy reward on 'images' that are the latents themselves: r = -mean (x - 1)^2."""

    def score(self, features, prompts):
        return -(features - 1).square().flatten(1).mean(1)

    def unrelated(self, prompts, generator):
        return prompts


def test_dpo_component_with_toy_denoisers_only():
    """Reference = the student at the start: the loss is log 2 and its gradient prefers the winner.
    After one step along -grad the loss drops below log 2. aux_step reports the reward gap
    |r(x^a) - r(x^b)| of each micro-batch's two candidates, averaged over the micro-batches."""
    scale = torch.nn.Parameter(torch.tensor(0.5))
    frozen = scale.detach().clone()
    cfg = PreferenceConfig(mode="dpo", beta=50.0)
    loss = Preference(cfg, LatentReward(), reference=lambda x, t, c: frozen * x)

    def ctx(seed=3):
        return toy_context(
            lambda x, t, c: scale * x, None, batch=8, seed=seed, decode=lambda z: z, grid=StudentGrid(2, 2)
        )

    value = loss(ctx())["preference"]
    assert value.item() == pytest.approx(math.log(2), abs=1e-6)
    value.backward()
    with torch.no_grad():
        scale -= 0.05 * scale.grad.sign()
    assert loss(ctx())["preference"].item() < math.log(2)

    contexts = [ctx(3), ctx(4)]
    for c in contexts:
        loss(c)
    gaps = []
    for c in contexts:
        x_a, x_b = c.computed(samples_key(c, 0)), c.computed(samples_key(c, 1))
        gaps.append((LatentReward()(x_a, c.prompts) - LatentReward()(x_b, c.prompts)).abs().mean())
    metrics = loss.aux_step(contexts)
    assert set(metrics) == {"preference/reward_gap"} and metrics["preference/reward_gap"].dim() == 0
    assert metrics["preference/reward_gap"] > 0
    torch.testing.assert_close(metrics["preference/reward_gap"], torch.stack(gaps).mean())
    assert loss.aux_step([ctx()]) == {}  # no forward in that context: nothing to report


def test_dpo_component_by_hand():
    """Eq. 14 from the recorded inputs of the student's training call: the winner is the candidate
    with the higher reward, winner and loser are noised with ONE t and ONE eps (x_t = a_t x0 + s_t
    eps on the toy schedule), the reference is the frozen function (0.3 x, the student 0.5 x), and
    the loss and its gradient by hand in float64:
    -log sigmoid(-beta / 2 ((e_w - e_l) - (e_ref_w - e_ref_l))), e = mean (out(x_t) - x0)^2."""
    scale, beta, b = torch.nn.Parameter(torch.tensor(0.5)), 50.0, 8
    seen, ref_seen = [], []

    def student(x, t, c):
        if x.shape[0] == 2 * b:  # the training call (sampling calls have b)
            seen.append((x.detach().clone(), t.clone()))
        return scale * x

    def reference(x, t, c):
        ref_seen.append(x.detach().clone())
        return 0.3 * x

    loss = Preference(PreferenceConfig(mode="dpo", beta=beta), LatentReward(), reference=reference)
    ctx = toy_context(student, None, batch=b, seed=3, decode=lambda z: z, grid=StudentGrid(2, 2))
    value = loss(ctx)["preference"]
    value.backward()
    [(x_t, t)] = seen
    assert len(ref_seen) == 1 and torch.equal(ref_seen[0], x_t)
    x_a, x_b = ctx.computed(samples_key(ctx, 0)), ctx.computed(samples_key(ctx, 1))
    r_a, r_b = LatentReward()(x_a, ctx.prompts), LatentReward()(x_b, ctx.prompts)
    assert (r_a != r_b).all() and (r_a > r_b).any() and (r_a < r_b).any()  # both orders occur
    a_wins = (r_a > r_b).view(-1, 1, 1, 1)
    x_w, x_l = torch.where(a_wins, x_a, x_b).double(), torch.where(a_wins, x_b, x_a).double()
    assert torch.equal(t[:b], t[b:])  # one t per pair
    acp = torch.tensor([0.9216, 0.64, 0.36], dtype=torch.float64)[t[:b]].view(-1, 1, 1, 1)
    a, s = acp.sqrt(), (1 - acp).sqrt()
    x_tw, x_tl = x_t[:b].double(), x_t[b:].double()
    eps_w, eps_l = (x_tw - a * x_w) / s, (x_tl - a * x_l) / s
    torch.testing.assert_close(eps_w, eps_l, rtol=0, atol=1e-5)  # one eps per pair

    k = scale.detach().double().requires_grad_(True)

    def err(out, x0):
        return (out - x0).square().flatten(1).mean(1)

    e_w, e_l = err(k * x_tw, x_w), err(k * x_tl, x_l)
    r_w, r_l = err(0.3 * x_tw, x_w), err(0.3 * x_tl, x_l)
    z = -beta / 2 * ((e_w - e_l) - (r_w - r_l))
    expected = torch.log1p(torch.exp(-z)).mean()  # -log sigmoid(z)
    expected.backward()
    assert 0.05 < expected.item() < 5 and abs(expected.item() - math.log(2)) > 0.01  # not saturated
    torch.testing.assert_close(value.detach().double(), expected.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scale.grad.double(), k.grad, rtol=1e-4, atol=1e-6)


def test_dpo_timesteps_are_uniform_over_every_integer_of_the_schedule():
    """Diffusion-DPO's t ~ U(0, T): on the 3-timestep toy schedule every t of 0, 1, 2 comes a third
    of 6000 pairs (rounding u (T - 1) would give the ends a quarter each), one t per pair."""
    seen = []

    def student(x, t, c):
        if x.shape[0] == 2 * 6000:  # the training call (sampling calls have b)
            seen.append(t.clone())
        return 0.5 * x

    loss = Preference(PreferenceConfig(mode="dpo"), LatentReward(), reference=lambda x, t, c: 0.3 * x)
    loss(toy_context(student, None, batch=6000, seed=0, decode=lambda z: z, grid=StudentGrid(2, 2)))
    [t] = seen
    assert torch.equal(t[:6000], t[6000:])
    for share in (torch.bincount(t[:6000], minlength=3).double() / 6000).tolist():
        assert abs(share - 1 / 3) < 0.03


class ScaleUNet(torch.nn.Module):
    """A UNet-shaped toy: output.sample = scale * x (what functional_denoiser calls)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x, t, encoder_hidden_states=None):
        return SimpleNamespace(sample=self.scale * x)


def test_dpo_reference_weights_are_a_frozen_checkpointed_copy():
    """with_reference_weights: the reference is the module called with the phase-start weights, so
    moving the student leaves it in place (loss log 2 at the start, below after a step); its weights
    are the checkpoint state and load back into the same tensors; foreign names are refused."""
    unet = ScaleUNet()
    weights = {"scale": unet.scale.detach().clone()}
    loss = Preference.with_reference_weights(PreferenceConfig(beta=50.0), LatentReward(), unet, weights)

    def ctx():
        student = lambda x, t, c: unet(x, t).sample  # noqa: E731
        return toy_context(student, None, batch=8, seed=3, decode=lambda z: z, grid=StudentGrid(2, 2))

    value = loss(ctx())["preference"]
    assert value.item() == pytest.approx(math.log(2), abs=1e-6)
    value.backward()
    with torch.no_grad():
        unet.scale -= 0.05 * unet.scale.grad.sign()
    assert weights["scale"].item() == 0.5 and loss(ctx())["preference"].item() < math.log(2)

    state = loss.checkpoint_state()
    assert set(state) == {"reference"} and state["reference"] is weights
    saved = {"scale": torch.tensor(0.25)}
    loss.load_checkpoint_state({"reference": saved})
    assert weights["scale"].item() == 0.25
    with pytest.raises(ValueError, match="does not match"):
        loss.load_checkpoint_state({"reference": {"other": torch.tensor(0.0)}})


def test_reward_feedback_component_pushes_reward_up():
    """The hinge with s0 above every reward: loss = mean(s0 - r) + 0; one gradient step raises r.
    aux_step reports the mean rewards of the prediction on its prompts and on unrelated ones."""
    scale = torch.nn.Parameter(torch.tensor(0.5))
    cfg = PreferenceConfig(mode="reward", s0=1.0, s_neg=10.0)
    loss = Preference(cfg, LatentReward())

    def ctx():
        return toy_context(
            lambda x, t, c: scale * x, None, batch=8, seed=1, decode=lambda z: z, grid=StudentGrid(1, 1)
        )

    c = ctx()
    first = loss(c)["preference"]
    first.backward()
    reward = LatentReward()(c.computed("student_prediction/1/1").x0.detach(), c.prompts).mean()
    metrics = loss.aux_step([c])
    assert set(metrics) == {"preference/reward", "preference/reward_neg"}
    torch.testing.assert_close(metrics["preference/reward"], reward)
    torch.testing.assert_close(first.detach(), 1.0 - reward)
    with torch.no_grad():
        scale -= 0.01 * scale.grad
    assert loss(ctx())["preference"].item() < first.item()


@pytest.mark.parametrize("name", ["clip", "aesthetic"])
def test_reward_feedback_runs_the_clip_image_tower_once(name, tiny_clip_dir, tmp_path):
    """The hinge scores the decoded prediction for its prompts and for unrelated ones from one
    image embedding: one image-tower call, the loss of two separate reward calls."""
    save_file(AestheticHead(16).state_dict(), tmp_path / "head.safetensors")
    reward = build_reward(name, RewardSpec(str(tiny_clip_dir), str(tmp_path / "head.safetensors")))
    reward.unrelated = lambda prompts, generator: prompts[::-1]
    tower, calls = reward.clip.model.get_image_features, []
    reward.clip.model.get_image_features = lambda **kw: calls.append(1) or tower(**kw)
    files = {"clip_folder": str(tiny_clip_dir), "head_file": str(tmp_path / "head.safetensors")}
    config = PreferenceConfig(
        mode="reward", reward=name, s0=100.0, s_neg=-100.0, negative_weight=0.5, **files
    )
    loss = Preference(config, reward)  # validated at its first call: the reward's files named
    scale = torch.nn.Parameter(torch.tensor(0.5))
    decode = lambda z: torch.tanh(z).repeat(1, 2, 16, 16)[:, :3]  # noqa: E731  (B, 3, 32, 32)
    ctx = toy_context(
        lambda x, t, c: scale * x, None, seed=2, decode=decode, grid=StudentGrid(1, 1), prompts=PROMPTS
    )
    value = loss(ctx)["preference"]
    assert len(calls) == 1
    value.backward()
    assert scale.grad != 0
    with torch.no_grad():
        images = decoded_prediction(ctx)
        r_pos, r_neg = reward(images, PROMPTS), reward(images, PROMPTS[::-1])
    weight = 0.5 if reward.reads_prompts else 0.0  # the aesthetic head reads no prompt: no second hinge
    torch.testing.assert_close(value.detach(), reward_hinge(r_pos, r_neg, 100.0, -100.0, weight).mean())


def test_reward_feedback_with_a_reward_of_the_image_alone_raises_it(tiny_clip_dir, tmp_path):
    """The aesthetic head scores the image alone: r(x, c_neg) = r(x, c), and with s_neg < r < s0
    the two hinges cancelled, L = s0 - s_neg with a zero gradient (walkthrough 9). Its unrelated
    hinge is dropped: L = relu(s0 - r), a descent step raises r, and no reward_neg is logged."""
    torch.manual_seed(0)  # the random head, whatever ran before
    save_file(AestheticHead(16).state_dict(), tmp_path / "head.safetensors")
    files = {"clip_folder": str(tiny_clip_dir), "head_file": str(tmp_path / "head.safetensors")}
    reward = build_reward("aesthetic", RewardSpec(**files))
    assert not reward.reads_prompts and build_reward("clip", RewardSpec(**files)).reads_prompts
    loss = Preference(PreferenceConfig(mode="reward", reward="aesthetic", s_neg=-10.0, **files), reward)
    scale = torch.nn.Parameter(torch.tensor(0.5))
    decode = lambda z: torch.tanh(z).repeat(1, 2, 16, 16)[:, :3]  # noqa: E731  (B, 3, 32, 32)

    def ctx():
        return toy_context(
            lambda x, t, c: scale * x, None, seed=2, decode=decode, grid=StudentGrid(1, 1), prompts=PROMPTS
        )

    with torch.no_grad():  # its own context: the shared store would keep this no-grad prediction
        r = reward(decoded_prediction(ctx()), PROMPTS)
    assert ((-10.0 < r) & (r < reward.s0)).all()  # between the thresholds: where the two cancelled
    c = ctx()
    value = loss(c)["preference"]
    torch.testing.assert_close(value.detach(), (reward.s0 - r).mean())
    value.backward()
    assert scale.grad.abs() > 0
    assert set(loss.aux_step([c])) == {"preference/reward"}
    with torch.no_grad():
        scale -= 0.01 * scale.grad.sign()  # a small step against the gradient
        assert reward(decoded_prediction(ctx()), PROMPTS).mean() > r.mean()


def test_preference_config_refuses_bad_values():
    grid = StudentGrid()
    with pytest.raises(ValueError, match="unknown reward"):
        PreferenceConfig(reward="nope").validate(1000, grid)
    with pytest.raises(ValueError, match="mode"):
        PreferenceConfig(mode="ppo").validate(1000, grid)
    with pytest.raises(ValueError, match="beta"):
        PreferenceConfig(beta=0).validate(1000, grid)


def test_hyper_sd_feedback_phase_is_refl_without_a_negative_term():
    """recipes.zoo's Hyper-SD feedback (ReFL): L = mean relu(s0 - r(x0_hat, c)), with no
    unrelated-prompt term even where one would be active (r_neg > s_neg), on the one-step prediction
    from the recipe grid's "chain" states (the student's own deterministic DDIM moves)."""
    grid = hyper_sd_tscd().student.grid
    assert (grid.backward_simulation, grid.training_gamma, grid.gamma) == ("chain", 0.0, 0.0)
    (config,) = feedback_phase().losses.values()
    loss = Preference(config, LatentReward())
    scale = torch.nn.Parameter(torch.tensor(0.5))
    grid = replace(grid, num_milestones=3, steps=3)  # the toy schedule has 3 timesteps
    ctx = toy_context(lambda x, t, c: scale * x, None, batch=8, seed=3, decode=lambda z: z, grid=grid)
    value = loss(ctx)["preference"]
    r = LatentReward()(ctx.computed(prediction_key(ctx)).x0.detach(), ctx.prompts)
    assert (r > config.s_neg).all() and (r < config.s0).all()  # both hinges would be active
    torch.testing.assert_close(value.detach(), torch.relu(config.s0 - r).mean())
    value.backward()
    assert scale.grad != 0


class TwoPromptReward(Reward):
    """A toy reward on latents: r = -mean (x - 1)^2 for the prompt "one", -mean (x + 1)^2 for any
    other; the unrelated prompt of every sample is "other"."""

    def score(self, features, prompts):
        target = torch.tensor([1.0 if p == "one" else -1.0 for p in prompts]).view(-1, 1, 1, 1)
        return -(features - target).square().flatten(1).mean(1)

    def unrelated(self, prompts, generator):
        return ["other"] * len(prompts)


def test_reward_feedback_logs_the_prompts_and_the_unrelated_rewards_apart():
    """preference/reward is the mean reward of the prediction x0_hat for its own prompts,
    preference/reward_neg for the unrelated ones: with r(x, "one") = -mean (x - 1)^2 and
    r(x, "other") = -mean (x + 1)^2 they differ by r_pos - r_neg = 4 mean(x0_hat) (x0_hat = 0.5 z, whose
    batch mean is not 0), each by hand from x0_hat."""
    scale = torch.nn.Parameter(torch.tensor(0.5))
    loss = Preference(PreferenceConfig(mode="reward", s0=1.0), TwoPromptReward())
    ctx = toy_context(
        lambda x, t, c: scale * x,
        None,
        batch=4,
        seed=5,
        decode=lambda z: z,
        grid=StudentGrid(1, 1),
        prompts=["one"] * 4,
    )
    loss(ctx)
    x0 = ctx.computed("student_prediction/1/1").x0.detach()
    pos, neg = -(x0 - 1).square().flatten(1).mean(1), -(x0 + 1).square().flatten(1).mean(1)
    assert (pos.mean() - neg.mean()).abs() > 1e-3
    metrics = loss.aux_step([ctx])
    torch.testing.assert_close(metrics["preference/reward"], pos.mean())
    torch.testing.assert_close(metrics["preference/reward_neg"], neg.mean())


def test_a_micro_batch_of_one_takes_its_unrelated_prompt_from_the_runs_prompts():
    """One prompt per micro-batch (8 processes x batch 8, or the memory plan's 1 x 8): the default
    unrelated prompt (another prompt of the micro-batch) was the prompt itself, so r_neg = r_pos
    and the hinge relu(s0 - r) + relu(r - s_neg) trained nothing (or lowered r). It is now drawn
    from the run's prompts; a micro-batch with two different prompts draws as before."""
    from tlcm.losses.preference import unrelated_prompts

    reward, pool = Reward(), ["a cat", "a dog", "a bird", "a fish"]
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        (other,) = unrelated_prompts(reward, ["a cat"], pool, gen)
        assert other in pool and other != "a cat"
    twice = unrelated_prompts(reward, ["a cat", "a cat"], pool, gen)
    assert all(p in pool and p != "a cat" for p in twice)
    alone = torch.Generator().set_state(gen.get_state())
    assert unrelated_prompts(reward, ["a cat", "a dog"], pool, gen) == ["a dog", "a cat"]
    assert reward.unrelated(["a cat", "a dog"], alone) == ["a dog", "a cat"]
    assert torch.equal(gen.get_state(), alone.get_state())  # the micro-batch's own draw: no pool draws
    assert unrelated_prompts(reward, ["a cat"], ["a cat"], gen) == ["a cat"]  # nothing else to draw


class _PromptReward(Reward):
    """r(x, c) = -mean (x - len(c))^2: the unrelated prompt's reward differs from the prompt's."""

    def score(self, features, prompts):
        target = torch.tensor([float(len(p)) for p in prompts]).view(-1, 1, 1, 1)
        return -(features - target).square().flatten(1).mean(1)


def test_the_hinge_at_micro_batch_one_scores_an_unrelated_prompt_and_trains():
    scale = torch.nn.Parameter(torch.tensor(0.5))
    loss = Preference(PreferenceConfig(mode="reward", s0=0.0, s_neg=-1e9), _PromptReward())
    ctx = toy_context(
        lambda x, t, c: scale * x, None, batch=1, seed=3, decode=lambda z: z, grid=StudentGrid(1, 1),
        prompts=["ab"], all_prompts=["ab", "abcdef"],
    )  # fmt: skip
    value = loss(ctx)["preference"]
    x0 = ctx.computed("student_prediction/1/1").x0.detach()
    r_pos, r_neg = -(x0 - 2).square().mean(), -(x0 - 6).square().mean()
    torch.testing.assert_close(value.detach(), (0.0 - r_pos) + (r_neg + 1e9))
    value.backward()
    assert scale.grad != 0


def test_the_engine_gives_losses_every_prompt_of_the_run(tiny_sd_dir, tmp_path):
    from engine_helpers import small_recipe

    from tlcm.engine import Trainer

    trainer = Trainer(small_recipe(tiny_sd_dir, tmp_path / "run", steps=1))
    assert list(trainer.phase_context.all_prompts) == trainer.prompts and len(trainer.prompts) == 40
