"""Model wrapping units (red-team round 15, area models): which LoRA adapter an auxiliary network
(DMD's fake score, the discriminator's trunk) reads, writes and trains on the one shared base
network; a full-copy auxiliary starting at the teacher; the adapters' ranks and targets; reloading
a run's student (old checkpoints' defaults, refused LoRAs); the checkpointing and compile switches;
TF32 on CUDA only; the FLUX shift exp(mu) by hand; model-folder edges. Each is a direct call on the
tiny SD pipeline or a synthetic config (tests/mutants/redteam15_models.py names the breakage each
one catches)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer

import tlcm.models.functional
import tlcm.models.student
from tlcm.config import StudentConfig
from tlcm.diffusion.milestones import StudentGrid
from tlcm.errors import TLCMError
from tlcm.models.base import BaseModel, allow_tf32
from tlcm.models.families import FAMILIES
from tlcm.models.folders import scheduler_timesteps
from tlcm.models.functional import functional_denoiser
from tlcm.models.student import STUDENT_ADAPTER, Student

FLUX = FAMILIES["FluxPipeline"]


@pytest.fixture
def student(tiny_sd_dir) -> Student:
    """A rank-2 LoRA student (alpha 2) whose adapter differs from the teacher (B != 0)."""
    torch.manual_seed(0)
    student = Student(BaseModel.load(tiny_sd_dir), StudentConfig(lora_rank=2, lora_alpha=2.0))
    with torch.no_grad():
        for p in student.trainable_parameters().values():
            torch.nn.init.normal_(p, std=0.1)
    return student


def _inputs(student: Student):
    """(x (2, 4, 16, 16), t (2,), cond) of the tiny SD pipeline."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((2, *student.base.latent_shape), generator=gen)
    cond, _ = student.base.encode(["a", "b"])
    return x, torch.tensor([800, 200]), cond


def _lora_layers(student: Student, adapter: str) -> list[BaseTunerLayer]:
    """The LoRA layers of the student's network that hold ``adapter``."""
    return [m for m in student.net.modules() if isinstance(m, BaseTunerLayer) and adapter in m.lora_A]


def _adapter_weights(student: Student, adapter: str) -> list[torch.Tensor]:
    """Every A and B matrix of ``adapter``, read from the LoRA layers themselves (peft's modules)."""
    layers = _lora_layers(student, adapter)
    return [w for m in layers for w in (m.lora_A[adapter].weight, m.lora_B[adapter].weight)]


# ---- an auxiliary adapter on the shared base: its own weights, never the student's ------------------


def test_an_auxiliary_adapters_state_dict_round_trips_through_its_own_adapter_only(student):
    """A resume writes a saved fake score into the fake adapter: its state dict then holds those
    values, the fake adapter's own A / B matrices hold them, and the student's LoRA (its weights and
    outputs) is untouched. peft's state-dict keys carry no adapter name, so nothing but the adapter
    argument keeps a fake score's weights out of the student's LoRA."""
    fake = student.auxiliary("fake")
    x, t, cond = _inputs(student)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    with torch.no_grad():
        own = student.denoiser()(x, t, cond)
    gen = torch.Generator().manual_seed(2)
    saved = {k: 0.1 * torch.randn(v.shape, generator=gen) for k, v in fake.state_dict().items()}
    assert saved.keys() == before.keys()  # the same keys: only the adapter name tells them apart
    fake.load_state_dict(saved)
    got = fake.state_dict()
    assert got.keys() == saved.keys() and all(torch.equal(got[k], saved[k]) for k in saved)
    values = sorted(round(v.sum().item(), 5) for v in saved.values())
    assert sorted(round(w.detach().sum().item(), 5) for w in _adapter_weights(student, "fake")) == values
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())
    with torch.no_grad():
        assert torch.equal(student.denoiser()(x, t, cond), own)
        assert not torch.allclose(fake.denoiser()(x, t, cond), student.teacher()(x, t, cond))


def test_an_auxiliary_adapters_parameters_are_its_own_lora_matrices(student):
    """``Auxiliary.parameters()`` (what the fake score's optimizer steps) are exactly the fake
    adapter's A / B matrices, disjoint from the student's trainable parameters: a step on them moves
    the fake score's output and leaves the student's."""
    fake = student.auxiliary("fake")
    params = fake.parameters()
    assert {id(p) for p in params} == {id(w) for w in _adapter_weights(student, "fake")}
    assert not {id(p) for p in params} & {id(p) for p in student.trainable_parameters().values()}
    x, t, cond = _inputs(student)
    with torch.no_grad():
        own, start = student.denoiser()(x, t, cond), fake.denoiser()(x, t, cond)
        for p in params:
            p.add_(0.1)  # an optimizer step
        assert torch.equal(student.denoiser()(x, t, cond), own)
        assert not torch.allclose(fake.denoiser()(x, t, cond), start)


def test_a_full_copy_auxiliary_of_a_lora_student_starts_at_the_teacher(student):
    """``auxiliary(full_copy=True)`` beside a LoRA student (whose adapter differs from the teacher):
    a copy of the BASE network, without the student's LoRA layers: its output is the teacher's, and
    none of its trainable parameters is a LoRA matrix."""
    fake = student.auxiliary("fake", full_copy=True)
    names = [n for n, _ in fake.module.named_parameters()]
    assert names and not [n for n in names if "lora_" in n]
    x, t, cond = _inputs(student)
    with torch.no_grad():
        teacher = student.teacher()(x, t, cond)
        assert not torch.allclose(student.denoiser()(x, t, cond), teacher)
        torch.testing.assert_close(fake.denoiser()(x, t, cond), teacher)


def test_an_adapter_of_rank_0_or_no_rank_takes_the_students_rank(student):
    """``add_adapters({name: 0})`` and ``auxiliary(name)`` without a rank: the adapter has the
    student's rank (2 here; its A is (2, in), its B (out, 2)), trainable from the start."""
    student.add_adapters({"disc": 0})
    fake = student.auxiliary("fake")
    for name in ("disc", "fake"):
        layers = _lora_layers(student, name)
        assert layers and all(m.r[name] == 2 for m in layers), name
        assert all(m.lora_A[name].weight.shape[0] == 2 == m.lora_B[name].weight.shape[1] for m in layers)
    assert all(p.requires_grad for p in [*student.adapter_parameters("disc"), *fake.parameters()])


def test_adding_an_adapter_keeps_the_earlier_auxiliaries_trainable(student):
    """A discriminator trunk built first, then a fake score added (or rebuilt at another rank, as a
    later phase's fake_rank does): peft's set_adapter froze every adapter but the live one, and the
    trunk, frozen, got no gradients: its optimizer silently never moved it. Every adapter stays
    trainable, and a backward through the trunk reaches its B matrices (A's gradient is 0 at B = 0)."""
    disc = student.auxiliary("disc")
    student.auxiliary("fake", rank=4)
    student.auxiliary("fake", rank=2)  # rebuilt
    assert disc.parameters() and all(p.requires_grad for p in disc.parameters())
    x, t, cond = _inputs(student)
    disc.denoiser()(x, t, cond).square().mean().backward()
    grads = [p.grad for p in disc.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_the_users_lora_targets_replace_the_familys(tiny_sd_dir):
    """``StudentConfig.target_modules`` ("to_q" only): every LoRA layer is a ``to_q``; empty: the
    family's defaults (more module kinds: to_k, conv1, ...)."""
    base = BaseModel.load(tiny_sd_dir)
    student = Student(base, StudentConfig(lora_rank=2, lora_alpha=2.0, target_modules=("to_q",)))
    names = [n for n, m in student.net.named_modules() if isinstance(m, BaseTunerLayer)]
    assert names and all(n.endswith("to_q") for n in names)
    assert student.config.target_modules == ("to_q",)


# ---- reloading a student: old checkpoints, refused LoRAs ----------------------------------------


def test_from_run_of_a_checkpoint_without_metadata_is_rank_alpha_and_the_default_grid(
    student, tiny_sd_dir, monkeypatch
):
    """A checkpoint written before the LoRA config and grid were stored (0.1: no metadata): the
    student is rebuilt with alpha = rank (what 0.1 trained with: LoRA scale 1) and the default
    grid (8 milestones, 4 steps, gamma 1), and holds the saved LoRA weights."""
    saved = {k: torch.full_like(v, 0.25) for k, v in student.state_dict().items()}
    latest = SimpleNamespace(student=saved, metadata={}, folder=Path("run/checkpoints/step-1"))
    monkeypatch.setattr(tlcm.models.student, "load_latest", lambda run_dir, device: latest)
    reloaded = Student.from_run(BaseModel.load(tiny_sd_dir), Path("run"))
    assert reloaded.config.lora_rank == 2 and reloaded.config.lora_alpha == 2.0
    assert reloaded.config.grid == StudentGrid(8, 4, 1.0)
    got = reloaded.state_dict()
    assert got.keys() == saved.keys() and all(torch.equal(got[k], saved[k]) for k in saved)
    layers = _lora_layers(reloaded, STUDENT_ADAPTER)
    assert layers and all(m.scaling[STUDENT_ADAPTER] == 1.0 for m in layers)


def test_a_checkpoint_of_another_lora_alpha_is_refused(student):
    """Same rank, other alpha (another LoRA scale alpha / r): the weights would compute another
    network, so a resume refuses it in one line naming both values."""
    weights = student.state_dict()
    other = SimpleNamespace(metadata={**student.metadata(), "lora_alpha": "8.0"}, student=weights)
    with pytest.raises(TLCMError, match=r"lora_alpha 8\.0 != 2\.0"):
        student.load_checkpoint(other, "the checkpoint")


def test_a_lora_of_more_modules_or_another_rank_is_refused_in_one_line(student):
    """A saved LoRA with a key this student lacks (trained on more target modules) or the same keys
    at rank 4: one TLCMError naming the first mismatch, and the student's weights are unchanged."""
    own = student.state_dict()
    key = next(iter(own))
    extra = {**own, f"extra.{key}": own[key].clone()}
    assert len(extra) == len(own) + 1
    with pytest.raises(TLCMError, match="does not fit this base model / LoRA config"):
        student.load_state_dict(extra)
    wider = {  # A (r, in, ...) -> (4, in, ...), B (out, r, ...) -> (out, 4, ...)
        k: torch.zeros(4, *v.shape[1:]) if "lora_A" in k else torch.zeros(v.shape[0], 4, *v.shape[2:])
        for k, v in own.items()
    }
    with pytest.raises(TLCMError, match="does not fit this base model / LoRA config"):
        student.load_state_dict(wider)
    assert all(torch.equal(v, own[k]) for k, v in student.state_dict().items())


# ---- switches: gradient checkpointing, compile, TF32 ---------------------------------------------


def test_gradient_checkpointing_is_on_when_asked_and_off_when_not(student):
    """``set_gradient_checkpointing(True)`` turns diffusers' per-block checkpointing on, False off."""
    student.set_gradient_checkpointing(True)
    assert student.net.is_gradient_checkpointing
    student.set_gradient_checkpointing(False)
    assert not student.net.is_gradient_checkpointing


def test_compile_raises_dynamos_recompile_limit_and_never_lowers_it(tiny_sd_dir, monkeypatch):
    """``Student.compile`` lifts dynamo's recompile limit from torch's 8 to at least 64 (SDXL's
    2 widths x 3 adapter selections x grad modes), keeps a higher one, and for a full fine-tune
    compiles the teacher's (the base network's) blocks too. Nothing is compiled until a call."""
    import torch._dynamo

    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    student = Student(BaseModel.load(tiny_sd_dir), StudentConfig(full_finetune=True))
    monkeypatch.setattr(config, limit, 8)
    student.compile(backend="eager")
    assert getattr(config, limit) == 64
    monkeypatch.setattr(config, limit, 100)
    student.compile(backend="eager")
    assert getattr(config, limit) == 100
    for net in (student.net, student.base.net):
        blocks = student.base.family.compile_modules(net)
        assert blocks and all("forward" in vars(block) for block in blocks)  # its own compiled forward


def test_tf32_is_allowed_for_cuda_matmuls_and_convolutions_only():
    """``allow_tf32``: a CUDA device turns on TF32 for matmuls and cuDNN convolutions; a CPU device
    leaves both flags as they were (CPU results stay bit-identical). The flags are process-wide:
    restored afterwards."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    try:
        matmul.allow_tf32 = cudnn.allow_tf32 = False
        allow_tf32("cpu")
        assert not matmul.allow_tf32 and not cudnn.allow_tf32
        allow_tf32(torch.device("cuda", 0))
        assert matmul.allow_tf32 and cudnn.allow_tf32
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def test_swapped_weight_calls_on_a_sharded_network_are_refused(student, monkeypatch):
    """``functional_denoiser`` on an FSDP2 network (functional_call would silently run the live
    weights): one TLCMError before any call."""
    monkeypatch.setattr(tlcm.models.functional, "is_sharded", lambda net: True)
    with pytest.raises(TLCMError, match="FSDP2 does not support"):
        functional_denoiser(student.net, dict(student.trainable_parameters()))


# ---- families and folders ---------------------------------------------------------------------------


def test_the_t5_length_given_at_load_is_the_encodings(tiny_sd3_dir):
    """``BaseModel.load(max_sequence_length=8)``: SD3's prompt embeddings are CLIP's tokens then 8 T5
    positions (zeros without T5), as the pipeline's ``encode_prompt(max_sequence_length=8)`` makes
    them, not its default 256."""
    base = BaseModel.load(tiny_sd3_dir, max_sequence_length=8)
    cond, _ = base.encode(["a"])
    emb, *_ = base.pipe.encode_prompt("a", None, None, device="cpu", max_sequence_length=8)
    assert cond.prompt_embeds.shape == emb.shape and emb.shape[1] < 256
    torch.testing.assert_close(cond.prompt_embeds, emb)


def _flux_pipe(**config) -> SimpleNamespace:
    """A stand-in FLUX pipeline: only what ``Flux.schedule`` and ``text_widths`` read."""
    scheduler = {"use_dynamic_shifting": True, "num_train_timesteps": 1000, **config}
    return SimpleNamespace(
        scheduler=SimpleNamespace(config=scheduler),
        text_encoder=SimpleNamespace(config=SimpleNamespace(hidden_size=768)),
        text_encoder_2=SimpleNamespace(config=SimpleNamespace(hidden_size=4096)),
        transformer=SimpleNamespace(config=SimpleNamespace(joint_attention_dim=4096)),
    )


@pytest.mark.parametrize(("side", "mu"), [(32, 0.5), (64, 0.5 + 0.65 * 768 / 3840), (128, 1.15)])
def test_flux_shift_is_exp_mu_linear_in_the_token_count(side, mu):
    """FLUX.1's resolution-dependent shift (FluxPipeline's calculate_shift with the scheduler's
    defaults): mu rises linearly from base_shift 0.5 at 256 image tokens to max_shift 1.15 at 4096,
    tokens = (h / 2) (w / 2) of the packed latents; the schedule's shift is exp(mu). Latents of
    side 32 / 64 / 128: 256 / 1024 / 4096 tokens. A config saved before diffusers had
    ``time_shift_type`` is exponential; a linear one is refused."""
    schedule = FLUX.schedule(_flux_pipe(), (16, side, side))
    assert schedule.shift == pytest.approx(math.exp(mu), rel=1e-9)
    assert schedule.num_train_timesteps == 1000
    with pytest.raises(ValueError, match="linear time shift"):
        FLUX.schedule(_flux_pipe(time_shift_type="linear"), (16, side, side))


def test_flux_text_width_is_t5s_not_clips():
    """FLUX.1: CLIP (768) gives only the pooled embedding, T5 (4096) the tokens the transformer's
    joint attention (4096) takes: the widths compared are T5's and the transformer's."""
    assert FLUX.text_widths(_flux_pipe()) == (4096, 4096)


def test_a_student_of_each_family_samples_without_classifier_free_guidance():
    """The model card's pipeline call: guidance_scale 0 for the CFG families (a TLCM student is
    distilled with the guidance inside; diffusers runs CFG only for guidance_scale > 1), FLUX's
    guidance input for a guidance-distilled FLUX."""
    for name, family in FAMILIES.items():
        scale = family.sample_kwargs()["guidance_scale"]
        assert scale == (3.5 if name == "FluxPipeline" else 0.0), name


@pytest.mark.parametrize(("count", "ok"), [(1, False), (2, True), (1000, True)])
def test_a_scheduler_needs_at_least_two_training_timesteps(count, ok, tmp_path):
    """``scheduler_timesteps``: T = num_train_timesteps, an integer >= 2 (T = 1 leaves no timestep
    below the top one); 1 is one line naming the file."""
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps({"num_train_timesteps": count}))
    if ok:
        assert scheduler_timesteps(tmp_path) == count
    else:
        with pytest.raises(TLCMError, match="num_train_timesteps must be an integer >= 2, found 1"):
            scheduler_timesteps(tmp_path)
