"""The adapter switch (tlcm/models/adapters.py) and auxiliary adapters (Student.add_adapters /
auxiliary). That checkpointing keeps the selection through backward is the loss contract's
(tests/test_loss_contract.py: on = off bit for bit for every case)."""

from __future__ import annotations

import pytest
import torch
from loss_cases import case_recipe
from peft.tuners.tuners_utils import BaseTunerLayer

import tlcm.models.student
from tlcm.config import StudentConfig
from tlcm.engine import Trainer
from tlcm.errors import TLCMError
from tlcm.losses.dmd import FAKE_ADAPTER
from tlcm.losses.preference import PreferenceConfig
from tlcm.models.adapters import TEACHER
from tlcm.models.base import BaseModel
from tlcm.models.student import STUDENT_ADAPTER, Student, fresh_lora_state


@pytest.fixture
def student(tiny_sd_dir) -> Student:
    return Student(BaseModel.load(tiny_sd_dir), StudentConfig(lora_rank=2, lora_alpha=2.0))


def _inputs(student: Student):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((2, *student.base.latent_shape), generator=gen)
    cond, _ = student.base.encode(["a", "b"])
    return x, torch.tensor([900, 300]), cond


def test_use_selects_nests_and_restores(student):
    """Outside any ``use`` the student's adapter is live; ``use(TEACHER)`` switches every adapter
    off (the teacher's output), ``use(name)`` selects one (the student's too, inside a teacher
    block), and each restores what was live."""
    for p in student.trainable_parameters().values():  # a student that differs from the teacher
        torch.nn.init.normal_(p, std=0.1)
    fake = student.auxiliary("fake")
    switch, call = student.adapters, student.denoiser()
    x, t, cond = _inputs(student)
    with torch.no_grad():
        own, teacher = call(x, t, cond), student.teacher()(x, t, cond)
        with switch.use(TEACHER):
            assert switch.live is TEACHER
            assert torch.equal(call(x, t, cond), teacher)
            with switch.use("fake"):
                assert switch.live == "fake"
                assert torch.equal(call(x, t, cond), fake.denoiser()(x, t, cond))
            assert switch.live is TEACHER
            with switch.use(STUDENT_ADAPTER):  # back to the student inside a teacher block
                assert switch.live == STUDENT_ADAPTER and torch.equal(call(x, t, cond), own)
            with switch.use(TEACHER):  # the selection already live: kept, inside and after
                assert torch.equal(call(x, t, cond), teacher)
            assert switch.live is TEACHER
        assert switch.live == STUDENT_ADAPTER
        assert torch.equal(call(x, t, cond), own) and not torch.equal(own, teacher)
        assert torch.equal(fake.denoiser()(x, t, cond), teacher)  # B = 0: starts as the teacher


def test_auxiliary_gives_a_fresh_seeded_initialisation(student):
    """Re-building an adapter (a second phase) re-initialises it in place; the same global seed
    gives the same weights whether the adapter was just added or already there; B = 0 and A within
    peft's kaiming-uniform bound."""
    torch.manual_seed(3)
    first = student.auxiliary("fake").state_dict()
    for p in student.auxiliary("fake").parameters():
        torch.nn.init.normal_(p)  # trained
    torch.manual_seed(3)
    again = student.auxiliary("fake").state_dict()
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    for key, value in first.items():
        if "lora_B" in key:
            assert not value.any(), key
        else:  # U(-bound, bound): both signs, reaching near either end (A has >= 32 entries here)
            bound = value[0].numel() ** -0.5
            assert value.abs().max() <= bound and value.std() > bound / 4, key
            assert value.min() < -bound / 4 and value.max() > bound / 4, key
    torch.manual_seed(3)
    assert all(torch.equal(v, first[k]) for k, v in fresh_lora_state(student.net, "fake").items())


def test_an_auxiliary_adapter_runs_at_lora_scale_one(student):
    """An auxiliary adapter (DMD's fake score, the discriminator's trunk) has alpha = rank: LoRA
    scale alpha / r = 1, as the student's here (rank 2, alpha 2). Given the student's A and B it
    computes the student's output; at scale 1 / r it would move half as far from the teacher."""
    for p in student.trainable_parameters().values():
        torch.nn.init.normal_(p, std=0.1)
    fake = student.auxiliary("fake", rank=2)
    layers = [m for m in student.net.modules() if isinstance(m, BaseTunerLayer) and "fake" in m.lora_A]
    assert layers and all(m.scaling["fake"] == 1.0 for m in layers)
    with torch.no_grad():
        for m in layers:
            m.lora_A["fake"].weight.copy_(m.lora_A[STUDENT_ADAPTER].weight)
            m.lora_B["fake"].weight.copy_(m.lora_B[STUDENT_ADAPTER].weight)
        x, t, cond = _inputs(student)
        own, teacher = student.denoiser()(x, t, cond), student.teacher()(x, t, cond)
        torch.testing.assert_close(fake.denoiser()(x, t, cond), own)
        assert not torch.allclose(own, teacher)


def test_an_auxiliary_adapter_asked_again_with_another_rank_is_rebuilt(student):
    """A later phase may ask for an existing auxiliary adapter at another rank (its fake_rank or
    disc_rank): the adapter is rebuilt at that rank (kept, the new rank would be ignored)."""
    student.auxiliary("fake", rank=2)
    student.auxiliary("fake", rank=4)
    layers = [m for m in student.net.modules() if isinstance(m, BaseTunerLayer) and "fake" in m.lora_A]
    assert layers and all(m.r["fake"] == 4 for m in layers)
    assert all(m.lora_A["fake"].weight.shape[0] == 4 for m in layers)


def test_a_sharded_network_refuses_an_undeclared_adapter(student, monkeypatch):
    monkeypatch.setattr(tlcm.models.student, "is_sharded", lambda net: True)
    with pytest.raises(TLCMError, match="declare it in the loss config's adapters"):
        student.auxiliary("not_declared")


def test_the_trainer_adds_every_phase_adapter_before_its_phase(tiny_sd_dir, tmp_path):
    """mlcd -> dmd: the fake score's adapter exists (and is trainable) from the start, so FSDP2 can
    shard it with the rest; the student's optimizer never sees it."""
    trainer = Trainer(case_recipe("mlcd-then-dmd", tiny_sd_dir, tmp_path))
    student = trainer.student
    assert FAKE_ADAPTER in student.net.peft_config
    fake = student.adapter_parameters(FAKE_ADAPTER)
    assert fake and all(p.requires_grad for p in fake)
    assert not {id(p) for p in fake} & {id(p) for p in student.trainable_parameters().values()}
    assert student.adapters.live == STUDENT_ADAPTER


def test_lora_layer_is_base_plus_alpha_over_rank_times_ba(tiny_sd_dir):
    """A LoRA layer of the student (rank 2, alpha 6): W x + (alpha / r) B A x = W x + 3 B A x;
    under use(TEACHER) the base layer alone (LoRA, Hu et al. 2021, eq. 3 with peft's scaling)."""
    student = Student(BaseModel.load(tiny_sd_dir), StudentConfig(lora_rank=2, lora_alpha=6.0))
    layer = next(
        m
        for m in student.net.modules()
        if isinstance(m, BaseTunerLayer) and isinstance(m.get_base_layer(), torch.nn.Linear)
    )
    a, b = layer.lora_A[STUDENT_ADAPTER].weight, layer.lora_B[STUDENT_ADAPTER].weight
    with torch.no_grad():
        torch.nn.init.normal_(b, std=0.1)
        x = torch.randn(3, a.shape[1], generator=torch.Generator().manual_seed(0))
        w, bias = layer.get_base_layer().weight.double(), layer.get_base_layer().bias
        base = x.double() @ w.T + (0 if bias is None else bias.double())
        expected = base + 3.0 * x.double() @ a.double().T @ b.double().T
        torch.testing.assert_close(layer(x).double(), expected, rtol=1e-5, atol=1e-5)
        with student.adapters.use(TEACHER):
            torch.testing.assert_close(layer(x).double(), base, rtol=1e-5, atol=1e-5)


def test_dpo_reference_is_the_phase_start_student(student):
    """PreferenceConfig(mode="dpo").build: the reference is the student's output at build time,
    called with a copy of its weights: an optimizer's in-place update moves the student, not the
    reference, and calling the reference leaves the student's (updated) weights in place."""
    for p in student.trainable_parameters().values():
        torch.nn.init.normal_(p, std=0.1)
    loss = PreferenceConfig(mode="dpo").build(student)
    assert loss.reference_weights.keys() == student.trainable_parameters().keys()
    call, x = student.denoiser(), _inputs(student)
    with torch.no_grad():
        start, teacher = call(*x), student.teacher()(*x)
        assert not torch.allclose(start, teacher)  # the student differs from the teacher
        torch.testing.assert_close(loss.reference(*x), start)
        for p in student.trainable_parameters().values():
            p.add_(0.05 * torch.randn_like(p))  # an optimizer step
        moved = call(*x)
        assert not torch.allclose(moved, start)
        torch.testing.assert_close(loss.reference(*x), start)  # the phase-start student still
        torch.testing.assert_close(call(*x), moved)  # the reference's weights did not leak in


def test_checkpointed_blocks_recompute_under_the_adapter_of_their_forward(student):
    """With gradient checkpointing, an auxiliary adapter's forward (inside ``use``) and its backward
    (after the block restored the student's adapter) give the gradients of the uncheckpointed
    forward: each block recomputes under the selection of its forward, and the LoRA weights get
    gradients though the blocks' inputs need none."""
    for p in student.trainable_parameters().values():
        torch.nn.init.normal_(p, std=0.1)
    fake = student.auxiliary("fake")
    params = fake.parameters()
    for p in params:
        torch.nn.init.normal_(p, std=0.1)
    x, t, cond = _inputs(student)

    def grads(checkpointing: bool) -> list[torch.Tensor]:
        student.set_gradient_checkpointing(checkpointing)
        for p in params:
            p.grad = None
        out = fake.denoiser()(x, t, cond)
        assert student.adapters.live == STUDENT_ADAPTER  # the backward runs after the switch back
        out.square().mean().backward()
        return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]

    plain, checkpointed = grads(False), grads(True)
    student.set_gradient_checkpointing(False)
    assert any(g.abs().sum() > 0 for g in plain)
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


# Red-team round 6 (tests/mutants/redteam6_models.py): full copies, weight snapshots, the init.


def test_a_full_finetune_student_and_a_full_copy_auxiliary_run_their_own_weights(tiny_sd_dir):
    """A full fine-tune: the student's denoiser runs its trainable copy, the teacher the frozen
    base, a full-copy auxiliary (DMD's fake score) its own copy. All three start equal (copies of
    the base); moving the student's copy moves the student only, then moving the auxiliary's
    moves it only: each call reads the weights its optimizer updates."""
    student = Student(BaseModel.load(tiny_sd_dir), StudentConfig(full_finetune=True))
    fake = student.auxiliary("fake")
    x, t, cond = _inputs(student)
    calls = {"student": student.denoiser(), "teacher": student.teacher(), "fake": fake.denoiser()}
    with torch.no_grad():
        start = {k: call(x, t, cond) for k, call in calls.items()}
        assert torch.equal(start["student"], start["teacher"]) and torch.equal(
            start["fake"], start["teacher"]
        )
        student.net.conv_out.bias.add_(0.5)
        moved = {k: call(x, t, cond) for k, call in calls.items()}
        torch.testing.assert_close(moved["student"], start["student"] + 0.5)
        assert torch.equal(moved["teacher"], start["teacher"]) and torch.equal(moved["fake"], start["fake"])
        fake.module.conv_out.bias.sub_(0.25)
        torch.testing.assert_close(calls["fake"](x, t, cond), start["fake"] - 0.25)
        assert torch.equal(calls["student"](x, t, cond), moved["student"])
        assert torch.equal(calls["teacher"](x, t, cond), start["teacher"])


def test_state_dicts_are_snapshots_not_views_of_the_live_weights(student):
    """``state_dict`` of the student and of an auxiliary adapter are copies ("full-tensor copies"):
    an optimizer's in-place update after the call leaves them as they were (a view would follow
    the live weights: a kept snapshot, such as a best-so-far or asynchronously written checkpoint,
    would silently hold the current weights)."""
    fake = student.auxiliary("fake")
    snapshots = {"student": student.state_dict(), "fake": fake.state_dict()}
    before = {k: {n: v.clone() for n, v in s.items()} for k, s in snapshots.items()}
    with torch.no_grad():
        for p in [*student.trainable_parameters().values(), *fake.parameters()]:
            p.add_(1.0)  # an optimizer step
    for k, snapshot in snapshots.items():
        assert snapshot.keys() == before[k].keys() and snapshot
        assert all(torch.equal(v, before[k][n]) for n, v in snapshot.items()), k
    assert not torch.equal(next(iter(student.state_dict().values())), next(iter(before["student"].values())))


def test_the_student_lora_starts_with_diffusers_lcm_lora_init(tiny_sd_dir):
    """The student's LoRA is initialised as diffusers' LCM-LoRA scripts do (peft's
    ``init_lora_weights="gaussian"``): B = 0 (the student starts as the teacher) and A ~ N(0, 1/r),
    here r = 4: std 0.25 over all A entries (peft's default kaiming-uniform would give
    std 1/sqrt(3 fan_in) per layer, 0.02-0.11 on this UNet, 0.04 over all)."""
    torch.manual_seed(0)
    student = Student(BaseModel.load(tiny_sd_dir), StudentConfig(lora_rank=4, lora_alpha=4.0))
    params = student.trainable_parameters()
    a = torch.cat([p.flatten() for n, p in params.items() if "lora_A" in n])
    assert all(not p.any() for n, p in params.items() if "lora_B" in n)
    assert a.numel() > 5000 and abs(a.std().item() - 0.25) < 0.01 and abs(a.mean().item()) < 0.01


def test_a_resume_keeps_the_grid_and_a_next_stage_may_change_it(student):
    """``load_checkpoint`` refuses a checkpoint of another LoRA rank always, one of another student
    grid (milestones, steps) only for a resume (``same_grid``): a next stage (init_from) may
    change the grid, and then loads the weights."""
    from types import SimpleNamespace

    weights = {k: torch.full_like(v, 0.5) for k, v in student.state_dict().items()}
    grid = {**student.metadata(), "num_milestones": "16", "student_steps": "2"}
    other_grid = SimpleNamespace(metadata=grid, student=weights)
    with pytest.raises(TLCMError, match="num_milestones 16 != 8; student_steps 2 != 4"):
        student.load_checkpoint(other_grid, "the checkpoint")
    student.load_checkpoint(other_grid, "--recipes.student.init-from", same_grid=False)
    assert all(torch.equal(v, weights[k]) for k, v in student.state_dict().items())
    other_rank = SimpleNamespace(metadata={**student.metadata(), "lora_rank": "8"}, student=weights)
    for same_grid in (True, False):
        with pytest.raises(TLCMError, match="lora_rank 8 != 2"):
            student.load_checkpoint(other_rank, "the checkpoint", same_grid=same_grid)


def test_a_lora_student_on_a_network_without_diffusers_lora_hooks_says_what_to_do(tiny_sd_dir):
    """Walkthrough 11: PixArt's transformer (diffusers 0.42) lacks PeftAdapterMixin; the LoRA student
    failed with a raw AttributeError after the model loaded. Now one line names the class and the
    way out (full fine-tune), and a full fine-tune of the same network works."""
    base = BaseModel.load(tiny_sd_dir)

    class NoHooks(type(base.net)):  # the same network without diffusers' LoRA methods
        def __getattribute__(self, name):
            if name == "add_adapter":
                raise AttributeError(name)
            return super().__getattribute__(name)

    base.net.__class__ = NoHooks
    with pytest.raises(TLCMError, match=r"NoHooks of .* has none: .*--recipes\.student\.full-finetune"):
        Student(base, StudentConfig(lora_rank=2, lora_alpha=2.0))
    assert Student(base, StudentConfig(full_finetune=True)).net is not base.net
