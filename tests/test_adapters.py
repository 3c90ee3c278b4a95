"""The adapter switch (tlcm/models/adapters.py) and auxiliary adapters (Student.add_adapters /
auxiliary). That checkpointing keeps the selection through backward is the loss contract's
(tests/test_loss_contract.py: on = off bit for bit for every case)."""

from __future__ import annotations

import pytest
import torch
from loss_cases import case_recipe

import tlcm.models.student
from tlcm.config import StudentConfig
from tlcm.engine import Trainer
from tlcm.errors import TLCMError
from tlcm.losses.dmd import FAKE_ADAPTER
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
    off (the teacher's output), ``use(name)`` selects one, and each restores what was live."""
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
        else:
            bound = value[0].numel() ** -0.5
            assert value.abs().max() <= bound and value.std() > bound / 4, key
    torch.manual_seed(3)
    assert all(torch.equal(v, first[k]) for k, v in fresh_lora_state(student.net, "fake").items())


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
