"""DMD: the normalised gradient by hand, use with toy denoisers only, and the memory claim (the
default LoRA fake score shares the base UNet's weights)."""

import copy

import pytest
import torch
from device_discipline import device_discipline  # noqa: F401  (every test runs under DeviceDiscipline)
from toy_context import SCHEDULE, toy_context

from tlcm.config import StudentConfig
from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.auxiliary import AuxOptimizer
from tlcm.losses.dmd import DMD, DMDConfig, denoising_loss, dmd_gradient
from tlcm.models.base import BaseModel
from tlcm.models.student import Student


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
