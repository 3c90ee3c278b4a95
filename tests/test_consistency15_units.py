"""Round-15 red-team tests of the consistency losses (tests/mutants/redteam15_consistency.py): the
ranges MLCD's and LCD's ``validate`` must take or refuse at their edges, states handed in by a
caller (``StepContext.states``), the EMA target network (its start, every weight, its checkpoint,
what ``build`` counts), and the draws of a step coming from the step's generator only.

Timesteps and coefficients are those of the toy schedules (tests/toy_context.py: (a, s) = (0.96,
0.28), (0.8, 0.6), (0.6, 0.8) at t = 0, 1, 2, outputs are x0 predictions; tests/objective_helpers.py
LONG: 12 steps).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from objective_helpers import LONG, context, prompt_scalar
from toy_context import toy_context

from tlcm.data.states import TrajectoryStates
from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.distances import get_distance
from tlcm.losses.lcd import LCD, LCDConfig
from tlcm.losses.mlcd import MLCD, MLCDConfig

FAMILY = SimpleNamespace(forward=lambda net, x, t, cond: net(x, t, cond))
"""A family that calls the network as a plain denoiser (functional_denoiser's ``family``)."""


class TwoWeights(torch.nn.Module):
    """x0 = c + b x: two trainable weights (c latent-shaped (2, 2, 2), b a scalar) and a frozen
    ``base`` weight (requires_grad False, like the frozen UNet under a LoRA) that it never reads."""

    def __init__(self, c: float = 0.3, b: float = 0.5) -> None:
        super().__init__()
        self.c = torch.nn.Parameter(torch.full((2, 2, 2), c))
        self.b = torch.nn.Parameter(torch.tensor(b))
        self.base = torch.nn.Parameter(torch.tensor(7.0), requires_grad=False)

    def forward(self, x, t, cond=None):
        return self.c + self.b * x


def _zero_teacher(x, t, cond):
    return torch.zeros_like(x)


def _prompted_teacher(x, t, cond):
    """x0 = 0.8 tanh(2 x) + 0.05 t + e, e the prompt scalar: CFG's w changes its output."""
    return 0.8 * torch.tanh(2 * x) + 0.05 * t.view(-1, 1, 1, 1) + prompt_scalar(cond, x)


# ---- validate: edges in, one past them out ------------------------------------------------------


def test_mlcd_validate_takes_the_edges_of_its_ranges_and_refuses_past_them():
    """ema_decay in [0, 1): 0 (the target is the last step's weights) passes, 1 (a target that never
    moves) does not; guidance_range 0 < lo <= hi: (3, 3) (one fixed per-sample w) passes, lo = 0
    (w = 0: the unconditional teacher) and lo > hi do not; segments in 0..T: T (one timestep per
    segment, skip 1) passes, T + 1 and -1 do not, each with its own message."""
    grid, states = StudentGrid(), "single_jump"
    MLCDConfig(ema_decay=0.0).validate(1000, grid)
    MLCDConfig(states=states, guidance_range=(3.0, 3.0)).validate(1000, grid)
    MLCDConfig(segments=1000, skip=1).validate(1000, grid)
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\), got 1"):
        MLCDConfig(ema_decay=1.0).validate(1000, grid)
    for bad in ((0.0, 2.0), (4.0, 2.0)):
        with pytest.raises(ValueError, match=r"guidance_range must be \(0, 0\) or 0 < lo <= hi"):
            MLCDConfig(states=states, guidance_range=bad).validate(1000, grid)
    for bad in (1001, -1):
        with pytest.raises(ValueError, match=rf"segments must be in 0\.\.1000 .*got {bad}"):
            MLCDConfig(segments=bad, skip=1).validate(1000, grid)


@pytest.mark.parametrize("config", [MLCDConfig, LCDConfig])
def test_an_unknown_distance_or_weights_for_a_plain_distance_are_refused_by_validate(config):
    """MLCD's and LCD's ``validate`` (run before any model loads) refuses a distance name that does
    not exist and a weights file for a distance that takes none (l2, huber): a typo must not cost
    the model load first, nor be silently dropped."""
    with pytest.raises(ValueError, match="unknown distance 'l3'; known: elementwise_huber, huber, l2"):
        config(distance="l3").validate(1000, StudentGrid())
    with pytest.raises(ValueError, match="distance 'huber' has no weights, but distance_weights is 'w.pt'"):
        config(distance="huber", distance_weights="w.pt").validate(1000, StudentGrid())
    with pytest.raises(ValueError, match="distance 'l2' has no weights"):
        get_distance("l2", "w.pt")


# ---- states handed in by the caller -------------------------------------------------------------


def test_mlcd_uses_the_states_a_caller_hands_in_without_a_cache_or_teacher_call():
    """``StepContext(states=...)`` (another project's loop with its own teacher trajectories; the
    field's doc) with states "cache" and no trajectory cache: MLCD trains on exactly those states,
    calling no teacher. x_tm = 1 at t_m = 2, x_tn = 0.75 at t_n = 1, edge t_s = 0, student x0 =
    0.5 x: g(x_tm) = 0.96 * 0.5 + 0.28 * (1 - 0.6 * 0.5) / 0.8 = 0.725, goal g(x_tn) = 0.96 *
    0.375 + 0.28 * (0.75 - 0.8 * 0.375) / 0.6 = 0.57, L = 0.155^2 = 0.024025."""
    calls = []

    def teacher(x, t, cond):
        calls.append(t)
        return torch.zeros_like(x)

    ones = torch.ones(2, 2, 2, 2)
    states = TrajectoryStates(
        ones, torch.tensor([2, 2]), torch.tensor([1, 1]), torch.tensor([0, 0]), 0.75 * ones
    )
    ctx = toy_context(lambda x, t, cond: 0.5 * x, teacher, states=states, grid=StudentGrid(1, 1))
    value = MLCD(MLCDConfig(states="cache", skip=1), torch.nn.Linear(1, 1))(ctx)["mlcd"]  # valid on T = 3
    torch.testing.assert_close(value, torch.tensor(0.024025))
    assert calls == []


# ---- the EMA target -----------------------------------------------------------------------------


def test_ema_target_starts_at_a_copy_of_every_trainable_weight_and_moves_each():
    """target "ema": the buffers start EQUAL to the student's trainable weights (c = 0.3, b = 0.5,
    not zeros) in storage of their own, one per trainable weight (the frozen base gets none: a
    LoRA student's EMA is the LoRA's size); after_student_step moves EACH of them 1 - decay = 0.25
    of the way to the live weights: c 0.3 -> 1.3 gives 0.55, b 0.5 -> -0.5 gives 0.25."""
    net = TwoWeights()
    loss = MLCD(MLCDConfig(target="ema", ema_decay=0.75), net, FAMILY)
    buffers = dict(loss.named_buffers())
    assert sorted(buffers) == ["ema_0", "ema_1"] and len(loss.ema_names) == 2
    ema = dict(zip(loss.ema_names, (loss.ema_0, loss.ema_1), strict=True))
    assert sorted(ema) == ["b", "c"]
    torch.testing.assert_close(ema["c"], torch.full((2, 2, 2), 0.3))
    torch.testing.assert_close(ema["b"], torch.tensor(0.5))
    with torch.no_grad():
        net.c += 1.0
        net.b -= 1.0
    torch.testing.assert_close(ema["c"], torch.full((2, 2, 2), 0.3))  # not the live storage
    loss.after_student_step()
    torch.testing.assert_close(ema["c"], torch.full((2, 2, 2), 0.55))
    torch.testing.assert_close(ema["b"], torch.tensor(0.25))


def test_ema_target_weights_are_in_the_checkpoint_and_come_back():
    """The EMA target is state a resume needs (docs of tlcm/losses/base.py: everything a loss needs
    to continue is in ``checkpoint_state``): the moved buffers are saved, and a fresh MLCD loaded
    from them has the moved values, not the student's current weights."""
    net = TwoWeights()
    loss = MLCD(MLCDConfig(target="ema", ema_decay=0.5), net, FAMILY)
    with torch.no_grad():
        net.c.fill_(1.3)
    loss.after_student_step()  # c: 0.3 -> 0.8
    state = loss.checkpoint_state()
    assert {"ema_0", "ema_1"} <= set(state)
    fresh = MLCD(MLCDConfig(target="ema", ema_decay=0.5), net, FAMILY)
    fresh.load_checkpoint_state(state)
    ema_c = getattr(fresh, f"ema_{fresh.ema_names.index('c')}")
    torch.testing.assert_close(ema_c, torch.full((2, 2, 2), 0.8))


def test_a_built_ema_target_adds_its_calls_to_the_models_evaluations():
    """``MLCDConfig.build(student)`` wires the EMA target's calls to the base model's evaluation
    count (student.base, the engine's ``denoiser_evals``): one target call of the batch, B = 4, on
    top of the calls the engine's own denoisers count."""
    student = SimpleNamespace(net=TwoWeights(), base=SimpleNamespace(family=FAMILY, evaluations=0))
    loss = MLCDConfig(target="ema", skip=2, states="single_jump").build(student)
    ctx = context(student.net, _zero_teacher, schedule=LONG, cond=[0.0] * 4, seed=1, latent_shape=(2, 2, 2))
    loss(ctx)
    assert student.base.evaluations == 4


# ---- a step's draws come from its generator -----------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        MLCDConfig(skip=2, states="single_jump", guidance_range=(2.0, 4.0)),
        MLCDConfig(skip=2, states="single_jump", target_time="random"),
        LCDConfig(full_range=True, teacher_substeps=1),
    ],
    ids=["mlcd-per-sample-w", "mlcd-random-target-time", "lcd-full-range"],
)
def test_the_same_step_seed_gives_the_same_loss_whatever_the_global_rng(config):
    """Every draw of a step (the per-sample teacher w ~ U[lo, hi], TCD's target time s, LCD's
    full-range t_m) comes from the step's generator (``ctx.rand``), so a step is a function of its
    seed: exact resume and process-count independence (docs of tlcm/losses/base.py) rest on it.
    The same ctx seed after two different global seeds gives the same loss; another ctx seed
    gives another."""

    def value(global_seed: int, seed: int) -> torch.Tensor:
        torch.manual_seed(global_seed)
        ctx = context(
            TwoWeights(),
            _prompted_teacher,
            schedule=LONG,
            cond=[0.4] * 16,
            uncond=[-0.1],
            w=3.0,
            seed=seed,
            latent_shape=(2, 2, 2),
            grid=(4, 1),
        )
        loss = config.build(SimpleNamespace(net=TwoWeights(), base=SimpleNamespace(family=FAMILY)))
        return next(iter(loss(ctx).values())).detach()

    first = value(0, seed=3)
    torch.testing.assert_close(value(1234, seed=3), first, rtol=0, atol=0)
    assert value(0, seed=4) != first


def test_aux_optimizer_defaults_are_the_owning_losses_config_defaults():
    """AuxOptimizer's documented defaults (betas (0, 0.99): no first moment, the adversarial
    setting of DMD2 / ADD; gradient clipping at norm 1; no weight decay) are those of DMD's fake
    score and the GAN's discriminator configs, so a loss built from defaults and a direct
    AuxOptimizer(params, lr) train alike."""
    from tlcm.losses.auxiliary import AuxOptimizer
    from tlcm.losses.dmd import DMDConfig
    from tlcm.losses.gan import GANConfig

    opt = AuxOptimizer([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    group = opt.opt.param_groups[0]
    dmd, gan = DMDConfig(), GANConfig()
    assert group["betas"] == dmd.fake_betas == gan.disc_betas == (0.0, 0.99)
    assert opt.max_grad_norm == dmd.fake_max_grad_norm == gan.disc_max_grad_norm == 1.0
    assert group["weight_decay"] == dmd.fake_weight_decay == gan.disc_weight_decay == 0.0


def test_lcd_full_range_draws_integer_t_m_uniform_over_the_range_above_the_first_segment():
    """LCD(full_range=True) on the 12-step VP schedule with M = 4 (milestones 0, 3, ..., 12; the
    paper's ablation, Table 2): t_m = 3 + 8 u rounded onto the grid, so every integer 4..10 is drawn
    about 1/8 of the time and the top timestep 11 about 1/16 (not the clamp of an overshoot past T,
    1/3 of the batch); t_m is an integer timestep of the VP table (long) and t_n = t_m - 3."""
    calls = []

    def student(x, t, cond):
        calls.append((t.clone(), torch.is_grad_enabled()))
        return 0.5 * x

    batch = 512
    ctx = context(student, _zero_teacher, schedule=LONG, cond=[0.0] * batch, seed=7, grid=(4, 1))
    LCD(LCDConfig(full_range=True, teacher_substeps=1))(ctx)
    (t_n, grad_n), (t_m, grad_m) = calls[-2:]
    assert grad_m and not grad_n
    assert t_m.dtype == torch.long and torch.equal(t_n, t_m - 3)
    counts = torch.bincount(t_m, minlength=12).double() / batch
    assert counts[:3].sum() == 0 and counts[11] < 0.12
    assert (counts[4:11] > 0.07).all() and (counts[4:11] < 0.19).all()


def test_aux_settings_refuse_betas_that_are_not_a_pair():
    """``{prefix}_betas`` is AdamW's (beta1, beta2): one value or three (a typo in a recipe, a
    list from a YAML file) is refused by the config check in one line, not by AdamW's unpacking
    deep in the first aux step."""
    from tlcm.losses.auxiliary import check_settings

    for betas in ((0.0, 0.9, 0.99), (0.9,)):
        with pytest.raises(ValueError, match=r"disc_betas must be two values in \[0, 1\)"):
            check_settings("disc", betas, 0.0, 1.0)


def test_every_registered_loss_weighs_one_unless_told():
    """``LossConfig.weight`` multiplies a loss's terms in the student's objective (docs/design.md:
    the engine sums weight * term); a phase that lists a loss without a weight takes it unscaled,
    weight 1, whichever loss it is (the presets' weights are set where they differ)."""
    from tlcm.losses import LOSSES

    assert {"mlcd", "lcd", "dmd", "gan", "preference"} <= set(LOSSES)
    assert {name: cls().weight for name, cls in LOSSES.items()} == dict.fromkeys(LOSSES, 1.0)


def test_mlcd_names_the_data_each_states_option_reads():
    """``data_needs`` is checked before anything loads (tlcm/checks.py): states "cache" reads the
    teacher trajectory cache (data.trajectory_cache), "data" real images (data.images), the
    data-free "mds" and "single_jump" nothing; each says what to use instead (states mds)."""
    assert MLCDConfig(states="cache").data_needs() == {
        "trajectory_cache": ('states "cache"', "use states mds")
    }
    assert MLCDConfig(states="data").data_needs() == {"images": ('states "data"', "use states mds")}
    assert MLCDConfig(states="mds").data_needs() == MLCDConfig(states="single_jump").data_needs() == {}


def test_lcd_states_are_the_steps_shared_student_samples():
    """LCD's x0_q (Eq. (9)) is the step's ONE q-step student sample (``student_samples(ctx)``, draw
    0: the GAN's "student" real side and the preference candidates read the same tensor), not a
    draw of its own. With that sample already made this step (x0 = 3 everywhere), LCD calls the
    student twice only (the target at t_n without gradients, the prediction at t_m with) and
    x_tm = a_tm 3 + s_tm eps re-noises exactly it: (x_tm - 3 a_tm) / s_tm is standard normal.
    LONG: alphas_cumprod 0.99 - 0.08 t."""
    from tlcm.losses.shared import samples_key

    calls = []

    def student(x, t, cond):
        calls.append((x.detach().clone(), t.clone(), torch.is_grad_enabled()))
        return 0.5 * x

    batch = 256
    ctx = context(student, _zero_teacher, schedule=LONG, cond=[0.0] * batch, seed=2, grid=(4, 2))
    ctx.shared(samples_key(ctx), lambda: torch.full((batch, 1, 2, 2), 3.0))
    LCD(LCDConfig(teacher_substeps=1))(ctx)
    assert [grad for _, _, grad in calls] == [False, True]
    x_tm, t_m, _ = calls[1]
    ac = (0.99 - 0.08 * t_m.double()).view(-1, 1, 1, 1)
    eps = (x_tm - 3 * ac.sqrt()) / (1 - ac).sqrt()
    assert abs(float(eps.mean())) < 0.1 and abs(float(eps.std()) - 1) < 0.1
