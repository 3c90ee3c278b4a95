"""DMD: the normalised gradient by hand, use with toy denoisers only, and the memory claim (the
default LoRA fake score shares the base UNet's weights)."""

import copy
import io

import pytest
import torch
from device_discipline import device_discipline  # noqa: F401  (every test runs under DeviceDiscipline)
from toy_context import SCHEDULE, toy_context

from tlcm.conditioning import Conditioning
from tlcm.config import StudentConfig
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.auxiliary import AuxOptimizer
from tlcm.losses.base import StepContext
from tlcm.losses.dmd import DMD, DMDConfig, denoising_loss, dmd_gradient
from tlcm.models.base import BaseModel
from tlcm.models.families import family_of
from tlcm.models.student import Student, TrainableCopy


def test_dmd_gradient_by_hand():
    """x0 = (1, 1), real = (0, 0): normaliser mean|x0 - real| = 1; fake = (0.5, -0.5) -> grad = fake.
    Doubling x0 - real doubles the normaliser and halves the gradient; a zero normaliser gives 0."""
    x0, real, fake = torch.ones(1, 2), torch.zeros(1, 2), torch.tensor([[0.5, -0.5]])
    torch.testing.assert_close(dmd_gradient(x0, real, fake), fake)
    torch.testing.assert_close(dmd_gradient(2 * x0, real, fake), fake / 2)
    torch.testing.assert_close(dmd_gradient(real, real, fake), torch.zeros(1, 2))


class ToyFake(torch.nn.Module):
    """Fake score x0_hat = b * x (a scalar b), initialised like the toy teacher (b = 0)."""

    def __init__(self):
        super().__init__()
        self.b = torch.nn.Parameter(torch.tensor(0.0))

    def denoiser(self):
        return lambda x, t, cond: self.b * x


def _toy_dmd(**config):
    scale = torch.nn.Parameter(torch.tensor(0.5))
    fake = ToyFake()
    loss = DMD(DMDConfig(t_min=0, t_max=2, **config), fake)
    return scale, fake, loss


def test_dmd_with_toy_denoisers_only():
    """Student x0_hat = scale * x, teacher x0 = 0, fake = b x with b = 0: the fake equals the real
    score, so the DMD gradient and loss are exactly 0. Moving b makes grad = b x_t / mean|x0_hat|,
    and the student's scale receives gradient; aux_step trains b and nothing else."""
    scale, fake, loss = _toy_dmd(fake_updates=3, fake_lr=0.1)
    teacher = lambda x, t, c: torch.zeros_like(x)  # noqa: E731
    ctx = toy_context(lambda x, t, c: scale * x, teacher, grid=StudentGrid(1, 1))
    assert loss(ctx)["dmd"].item() == pytest.approx(0.0, abs=1e-12)

    with torch.no_grad():
        fake.b.fill_(0.3)
    ctx = toy_context(lambda x, t, c: scale * x, teacher, grid=StudentGrid(1, 1))
    value = loss(ctx)["dmd"]
    assert value.item() > 0
    value.backward()
    assert scale.grad is not None and scale.grad.abs() > 0
    assert fake.b.grad is None  # the fake score is evaluated without gradients in the student's loss

    before = fake.b.item()
    metrics = loss.aux_step([ctx])
    assert fake.b.item() != before and set(metrics) == {"dmd/fake_loss"}
    assert metrics["dmd/fake_loss"].dim() == 0 and metrics["dmd/fake_loss"] > 0
    # the toy student's samples x0_hat = 0.5 x: the fake's denoising target pulls b towards them
    state = copy.deepcopy(loss.checkpoint_state())
    with torch.no_grad():
        fake.b.fill_(9.0)
    loss.load_checkpoint_state(state)
    assert fake.b.item() != 9.0


def test_aux_optimizer_step_averages_over_micro_batches():
    """loss_fn(c) = (b - c)^2 at b = 0 over contexts 1 and 3: the returned mean is (1 + 9) / 2 = 5
    (detached), and the update equals one step on that mean from a single context (gradient -4,
    clipped to norm 1; AdamW's first step with beta1 = 0 moves b by lr)."""
    b, single = torch.nn.Parameter(torch.tensor(0.0)), torch.nn.Parameter(torch.tensor(0.0))
    opt, ref = AuxOptimizer([b], lr=0.1), AuxOptimizer([single], lr=0.1)
    mean = opt.step(lambda c: (b - c).square(), [1.0, 3.0])
    assert mean.item() == pytest.approx(5.0) and not mean.requires_grad
    ref.step(lambda c: ((single - 1).square() + (single - 3).square()) / 2, [None])
    assert b.item() == pytest.approx(0.1, rel=1e-5) and b.item() == pytest.approx(single.item(), abs=1e-7)


def test_denoising_loss_by_hand():
    """Prediction type "sample": target = x0. x0 = 1, eps = 0, t = 1 -> x_t = 0.8; a denoiser
    returning 0.5 x_t = 0.4 has error (1 - 0.4)^2 = 0.36."""
    x0, eps, t = torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), torch.tensor([1])
    value = denoising_loss(lambda x, t, c: 0.5 * x, SCHEDULE, x0, eps, t, None)
    assert value.item() == pytest.approx(0.36)


def _unique_elements(modules) -> int:
    seen, total = set(), 0
    for m in modules:
        for p in m.parameters():
            if p.data_ptr() not in seen:
                seen.add(p.data_ptr())
                total += p.numel()
    return total


def test_lora_fake_score_holds_one_copy_of_the_base_unet(tiny_sd, tmp_path):
    """With fake_score="lora", every UNet weight in memory is the base's (plus two small LoRAs);
    fake_score="full" adds a second UNet."""
    tiny_sd.save_pretrained(tmp_path)
    base = BaseModel.load(tmp_path)
    base_elements = sum(p.numel() for p in base.net.parameters())
    student = Student(base, StudentConfig(lora_rank=4, lora_alpha=4.0))
    lora = sum(p.numel() for p in student.trainable_parameters().values())
    loss = DMDConfig().build(student)
    held = _unique_elements([student.net, loss])
    assert len(loss.fake.parameters()) == len(student.trainable_parameters())
    assert held == base_elements + 2 * lora  # the base UNet, student LoRA, fake LoRA: nothing else
    assert all(
        ".dmd_fake." in n for n, p in student.net.named_parameters() if p in set(loss.fake.parameters())
    )

    full = DMDConfig(fake_score="full").build(student)
    assert _unique_elements([student.net, full.fake.module]) == 2 * base_elements + 2 * lora


def test_fake_score_starts_at_the_teacher(tiny_sd, tmp_path):
    """LoRA B = 0 at init: the fake adapter's output equals the teacher's, the student's differs."""
    tiny_sd.save_pretrained(tmp_path)
    base = BaseModel.load(tmp_path)
    student = Student(base, StudentConfig(lora_rank=4, lora_alpha=4.0))
    for p in student.trainable_parameters().values():
        torch.nn.init.normal_(p, std=0.1)
    fake = DMDConfig().build(student).fake
    cond, _ = base.encode(["a", "b"])
    x, t = torch.randn(2, *base.latent_shape), torch.tensor([10, 500])
    with torch.no_grad():
        teacher, own, fake_out = (
            student.teacher()(x, t, cond),
            student.denoiser()(x, t, cond),
            fake.denoiser()(x, t, cond),
        )
    torch.testing.assert_close(fake_out, teacher)
    assert (own - teacher).abs().max() > 1e-4


@pytest.mark.parametrize(
    "field,value",
    [
        ("t_min", 990),
        ("fake_updates", -1),
        ("fake_t_max", 1000),
        ("fake_t_min", 980),
        ("fake_samples", "new"),
        ("fake_betas", (0.9, 1.0)),
        ("fake_weight_decay", -0.01),
        ("fake_max_grad_norm", -1.0),
    ],
)
def test_dmd_config_refuses_bad_values(field, value):
    DMDConfig().validate(1000, StudentGrid())
    with pytest.raises(ValueError, match=field.split("_")[0]):
        DMDConfig(**{field: value}).validate(1000, StudentGrid())


def test_dmd_t_prime_range_must_stay_below_t():
    """t' in [t_min, t_max] indexes the schedule's T timesteps 0..T-1: t_max = T is refused by its
    own check even where the fake score's range is valid (fake_t_max = T - 1), so the run stops
    with a config error instead of indexing alphas_cumprod[T]; t_max = T - 1 is accepted."""
    DMDConfig(t_max=999, fake_t_max=999).validate(1000, StudentGrid())
    with pytest.raises(ValueError, match=r"need 0 <= t_min < t_max < 1000, got 20, 1000"):
        DMDConfig(t_max=1000, fake_t_max=999).validate(1000, StudentGrid())


def test_student_grid_refuses_an_unknown_backward_simulation():
    StudentGrid(backward_simulation="chain").check(1000)
    StudentGrid(backward_simulation="data").check(1000)
    with pytest.raises(ValueError, match='backward_simulation must be "sample", "chain" or "data"'):
        StudentGrid(backward_simulation="final").check(1000)


def test_student_grid_refuses_more_steps_than_milestones():
    """q = 9 steps on M = 8 milestones (what DMDConfig(student_steps=9) used to refuse)."""
    StudentGrid(8, 8).check(1000)
    with pytest.raises(ValueError, match=r"steps \(q\) must be in 1\.\.8 \(M\), got 9"):
        StudentGrid(8, 9).check(1000)
    with pytest.raises(ValueError, match=r"num_milestones \(M\) must be in 1\.\.1000, got 0"):
        StudentGrid(0, 1).check(1000)


# --------------------------------------------------------------------------------------------
# By hand on an epsilon-prediction schedule (float64): every output is converted to x0 by the loss.

EPS_AC = [0.9216, 0.64, 0.36]
"""(a, s) = (0.96, 0.28), (0.8, 0.6), (0.6, 0.8) at t = 0, 1, 2; outputs are eps predictions."""
E_C, E_U = 0.3, -0.4
"""The prompt scalar of every sample (cond) and of the unconditional prompt."""


def _eps_context(student, teacher, batch, seed, w=1.0):
    from tlcm.conditioning import Conditioning
    from tlcm.diffusion.denoiser import Guided
    from tlcm.diffusion.schedule import VPSchedule
    from tlcm.losses.base import StepContext

    return StepContext.standalone(
        student=student,
        teacher=Guided(teacher, w, Conditioning(torch.full((1, 2, 3), E_U))),
        schedule=VPSchedule(torch.tensor(EPS_AC), prediction_type="epsilon"),
        cond=Conditioning(torch.full((batch, 2, 3), E_C)),
        generator=torch.Generator().manual_seed(seed),
        latent_shape=(2, 2, 2),
        grid=StudentGrid(1, 1),
    )


def _as(t):
    a = torch.tensor([EPS_AC[int(i)] for i in t]).sqrt().view(-1, 1, 1, 1)
    return a, (1 - a.square()).sqrt()


class EpsFake(torch.nn.Module):
    """Fake score eps_hat = b x + 0.1; counts its calls."""

    def __init__(self, b=0.7):
        super().__init__()
        self.b = torch.nn.Parameter(torch.tensor(b))
        self.calls = 0

    def denoiser(self):
        def run(x, t, cond):
            self.calls += 1
            return self.b * x + 0.1

        return run


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("real_scale", [0.0, 3.0])
def test_dmd_loss_and_gradient_by_hand_on_eps_outputs(real_scale):
    """Student eps = scale x (x0 = (z - s_2 scale z) / a_2 from pure noise z at t = 2), teacher eps =
    0.2 x + e (CFG: e_u + w (e_c - e_u), w the recipe's 2 or real_guidance_scale 3), fake eps =
    b x + 0.1 (its own network, not the student's). The step's draws replayed: k, z, u of t' =
    floor(3 u), eps. x_t' = a' sg(x0) + s' eps; real / fake x0 = (x_t' - s' eps_hat) / a';
    g = (fake - real) / mean_{c,h,w} |x0 - real|; L = mean_b 1/2 mean_i g^2 and d L / d x0 = g / (B D)
    exactly (the stop-gradient); the fake's parameter gets no gradient."""
    batch, seed, w = 16, 1, 2.0
    scale = torch.nn.Parameter(torch.tensor(0.3))
    fake = EpsFake()
    loss = DMD(DMDConfig(t_min=0, t_max=2, real_guidance_scale=real_scale), fake)
    teacher = lambda x, t, c: 0.2 * x + c.prompt_embeds[:, 0, 0].view(-1, 1, 1, 1)  # noqa: E731
    ctx = _eps_context(lambda x, t, c: scale * x, teacher, batch, seed, w=w)
    value = loss(ctx)["dmd"]
    x0 = ctx.computed("student_prediction/1/1").x0
    x0.retain_grad()
    value.backward()

    gen = torch.Generator().manual_seed(seed)
    torch.randint(1, (batch,), generator=gen)
    z = torch.randn((batch, 2, 2, 2), generator=gen)
    t = (3 * torch.rand(batch, generator=gen, dtype=torch.float64)).floor().long()  # each of 0..2: 1/3
    eps = torch.randn((batch, 2, 2, 2), generator=gen)
    assert set(t.tolist()) == {0, 1, 2}
    (a2,), (s2,) = (v.view(1) for v in _as([2]))
    hand_x0 = (z - s2 * 0.3 * z) / a2
    a, s = _as(t)
    x_t = a * hand_x0 + s * eps
    e = E_U + (real_scale or w) * (E_C - E_U)
    real = (x_t - s * (0.2 * x_t + e)) / a
    fake_x0 = (x_t - s * (0.7 * x_t + 0.1)) / a
    g = (fake_x0 - real) / (hand_x0 - real).abs().mean((1, 2, 3), keepdim=True)
    tol = {"atol": 1e-6, "rtol": 1e-6}  # the schedule's a_t, s_t are float32
    torch.testing.assert_close(x0.detach(), hand_x0, **tol)
    torch.testing.assert_close(value.detach(), 0.5 * g.square().mean(), **tol)
    torch.testing.assert_close(x0.grad, g / (batch * 8), **tol)
    torch.testing.assert_close(scale.grad, (g * -s2 * z / a2).mean(), **tol)
    assert fake.b.grad is None and fake.calls == 1


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("updates", [0, 1, 3])
def test_aux_step_makes_exactly_fake_updates_denoising_updates(updates):
    """fake_updates n: n calls of the fake score (one per update, one micro-batch) and n moves of
    its parameter; none: no call, no metric. The student gets no gradient from the fake's loss."""
    scale = torch.nn.Parameter(torch.tensor(0.3))
    fake = EpsFake()
    loss = DMD(DMDConfig(t_min=0, t_max=2, fake_updates=updates, fake_lr=0.1), fake)
    ctx = _eps_context(lambda x, t, c: scale * x, lambda x, t, c: 0.2 * x, 4, 0)
    loss(ctx)["dmd"].backward()
    grad, calls, seen = scale.grad.clone(), fake.calls, []
    loss.opt.opt.register_step_post_hook(lambda *args: seen.append(fake.b.item()))
    metrics = loss.aux_step([ctx])
    assert fake.calls - calls == updates and len(seen) == updates
    assert len(set([0.7, *seen])) == updates + 1  # every update moved b
    assert set(metrics) == ({"dmd/fake_loss"} if updates else set())
    assert torch.equal(scale.grad, grad)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize(
    "prediction_type, target",
    [("epsilon", 0.5), ("v_prediction", 0.6 * 0.5 - 0.8 * 1.0), ("sample", 1.0)],
)
def test_denoising_loss_targets_the_prediction_type(prediction_type, target):
    """The fake score learns the network's own output: x0 = 1, eps = 0.5 at t = 0 of a one-step
    schedule (a, s) = (0.6, 0.8): x_t = 1; a denoiser returning 0.3 x_t = 0.3 is scored against eps
    (0.5), v = a eps - s x0 (-0.5) or x0 (1); on a flow schedule against v = eps - x0."""
    from tlcm.diffusion.schedule import FlowSchedule, VPSchedule

    x0, eps, t = torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), 0.5), torch.tensor([0])
    schedule = VPSchedule(torch.tensor([0.36]), prediction_type=prediction_type)
    value = denoising_loss(lambda x, t, c: 0.3 * x, schedule, x0, eps, t, None)
    assert value.item() == pytest.approx((0.3 - target) ** 2)
    flow, tf = FlowSchedule(1000), torch.tensor([250.0])  # sigma 0.25: x_t = 0.75 + 0.125
    value = denoising_loss(lambda x, t, c: 0.3 * x, flow, x0, eps, tf, None)
    assert value.item() == pytest.approx((0.3 * 0.875 - (0.5 - 1.0)) ** 2, rel=1e-6)


@pytest.mark.usefixtures("float64")
def test_the_fake_scores_update_sends_nothing_to_the_student():
    """The fake score trains on the student's prediction DETACHED: its updates, even run before
    the student's backward, leave the student without a gradient and its graph intact, and the
    student's gradient is then the one it gets without them (DMD eq. 6 is the fake's loss only)."""

    def run(aux_first: bool) -> torch.Tensor:
        scale = torch.nn.Parameter(torch.tensor(0.3))
        loss = DMD(DMDConfig(t_min=0, t_max=2, fake_updates=1, fake_lr=0.1), EpsFake())
        ctx = _eps_context(lambda x, t, c: scale * x, lambda x, t, c: 0.2 * x, 4, 0)
        value = loss(ctx)["dmd"]
        if aux_first:  # one update: a leak would reach the student without a second-backward error
            loss.aux_step([ctx])
            assert scale.grad is None
        value.backward()
        return scale.grad

    torch.testing.assert_close(run(aux_first=True), run(aux_first=False), rtol=0, atol=0)


@pytest.mark.usefixtures("float64")
def test_resume_restores_the_fake_scores_optimizer():
    """A DMD loss restored from another's checkpoint (fake score AND its AdamW state) makes the same
    next fake update as the original: after two updates AdamW's second moments are not those of a
    fresh optimizer (whose first step moves b by lr sign(g)), so dropping them shows."""

    def build():
        return DMD(DMDConfig(t_min=0, t_max=2, fake_updates=1, fake_lr=0.1), EpsFake())

    def ctx(seed):
        return _eps_context(lambda x, t, c: 0.3 * x, lambda x, t, c: 0.2 * x, 4, seed)

    a, b = build(), build()
    for seed in (0, 1):
        c = ctx(seed)
        a(c)
        a.aux_step([c])
    b.load_checkpoint_state(copy.deepcopy(a.checkpoint_state()))
    assert b.fake.b.item() == a.fake.b.item()
    for loss in (a, b):
        c = ctx(2)
        loss(c)
        loss.aux_step([c])
    assert b.fake.b.item() == a.fake.b.item()


def _shares(t: torch.Tensor, n: int) -> list[float]:
    """How often each integer 0..n-1 occurs in t."""
    return (torch.bincount(t.flatten().long(), minlength=n).double() / t.numel()).tolist()


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("side", ["real_and_fake_scores", "fake_score_training"])
def test_dmd_timesteps_are_uniform_over_every_integer_of_their_range(side):
    """DMD Sec. 3.2: t' ~ U(T_min, T_max) for the real and fake scores, and the fake score's own
    denoising loss on U(fake_t_min, fake_t_max): every integer of the range equally likely, both
    ends included. On the 3-timestep schedule with [0, 2], 0, 1 and 2 each come a third of 6000
    draws (rounding u (hi - lo) would give the ends a quarter each, the middle a half); the fake's
    training range [0, 2] differs from t' = [1, 2] there, so each draw is checked apart."""
    seen = []

    class RecordingFake(EpsFake):
        def denoiser(self):
            return lambda x, t, cond: seen.append(t.clone()) or self.b * x + 0.1

    fake = RecordingFake()
    if side == "real_and_fake_scores":
        loss = DMD(DMDConfig(t_min=0, t_max=2), fake)
        ctx = _eps_context(
            lambda x, t, c: 0.3 * x, lambda x, t, c: seen.append(t.clone()) or 0.2 * x, 6000, 0
        )
        loss(ctx)
        assert len(seen) == 2 and torch.equal(seen[0], seen[1])  # one t' for both scores
    else:
        loss = DMD(DMDConfig(t_min=1, t_max=2, fake_t_min=0, fake_t_max=2, fake_updates=1), fake)
        ctx = _eps_context(lambda x, t, c: 0.3 * x, lambda x, t, c: 0.2 * x, 6000, 0)
        loss(ctx)
        assert set(seen.pop().tolist()) == {1, 2}
        loss.aux_step([ctx])
    for share in _shares(seen[-1], 3):
        assert abs(share - 1 / 3) < 0.03


# ---- TrainableCopy: DMD's fake score for a plain network (an own loop) ---------------------------


@pytest.mark.parametrize("folder", ["tiny_sd_dir", "tiny_sd3_dir"])
def test_a_trainable_copy_trains_as_dmds_fake_score_and_leaves_the_teacher(folder, request):
    """``TrainableCopy(net, family)`` of a UNet (SD) and of a flow transformer (SD3), the network
    holding a student LoRA: it starts as the teacher (the student's adapter left out of the copy);
    one DMD step with a fake update moves the copy's weights and none of the network's; its
    checkpoint_state round trip (through torch.save) restores the copy and its optimizer, so both
    losses take the same next update."""
    base = BaseModel.load(request.getfixturevalue(folder))
    student = Student(base, StudentConfig(lora_rank=2, lora_alpha=2.0))
    for p in student.trainable_parameters().values():
        torch.nn.init.normal_(p, std=0.1)
    network = {n: p.detach().clone() for n, p in base.net.named_parameters()}
    config = DMDConfig(fake_updates=1, fake_lr=1e-2)

    def build() -> DMD:
        return DMD(config, TrainableCopy(base.net, base.family))

    loss = build()
    cond, uncond = base.encode(["a", "b"])
    x = torch.randn(2, *base.latent_shape)
    t = base.schedule.uniform_timesteps(torch.tensor([0.1, 0.7]), 20, 980)
    with torch.no_grad():
        torch.testing.assert_close(loss.fake.denoiser()(x, t, cond), student.teacher()(x, t, cond))

    def context(seed: int) -> StepContext:
        return StepContext.standalone(
            student=student.denoiser(),
            teacher=Guided(student.teacher(), 2.0, uncond[:1]),
            schedule=base.schedule,
            cond=cond,
            generator=torch.Generator().manual_seed(seed),
            latent_shape=base.latent_shape,
            grid=StudentGrid(num_milestones=4, steps=1),
        )

    start = loss.fake.state_dict()
    ctx = context(0)
    loss(ctx)["dmd"].backward()
    loss.aux_step([ctx])
    moved = loss.fake.state_dict()
    assert any(not torch.equal(moved[k], v) for k, v in start.items())
    assert all(torch.equal(p, network[n]) for n, p in base.net.named_parameters())

    saved = io.BytesIO()
    torch.save(loss.checkpoint_state(), saved)
    saved.seek(0)
    resumed = build()
    resumed.load_checkpoint_state(torch.load(saved, weights_only=True))
    assert all(torch.equal(v, moved[k]) for k, v in resumed.fake.state_dict().items())
    for each in (loss, resumed):
        each.aux_step([context(1)])
    after, again = loss.fake.state_dict(), resumed.fake.state_dict()
    assert all(torch.equal(again[k], v) for k, v in after.items())


def test_a_trainable_copy_of_a_bf16_teacher_is_fp32_and_trainable(tiny_sd):
    """A bf16 frozen teacher gives an fp32 trainable copy (its values the teacher's, exactly); the
    teacher stays bf16 and frozen. The copy's denoiser returns fp32."""
    teacher = tiny_sd.unet.to(torch.bfloat16).requires_grad_(False)
    fake = TrainableCopy(teacher, family_of(tiny_sd))
    pairs = list(zip(fake.module.parameters(), teacher.parameters(), strict=True))
    assert all(p.dtype == torch.float32 and p.requires_grad and torch.equal(p, q.float()) for p, q in pairs)
    assert all(q.dtype == torch.bfloat16 and not q.requires_grad for q in teacher.parameters())
    assert fake.module.training and len(fake.parameters()) == len(pairs)
    cond = Conditioning(torch.randn(1, 77, teacher.config.cross_attention_dim, dtype=torch.bfloat16))
    out = fake.denoiser()(torch.randn(1, 4, 16, 16), torch.tensor([500]), cond)
    assert out.dtype == torch.float32 and out.shape == (1, 4, 16, 16)
