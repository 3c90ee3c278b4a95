"""Precision and memory outside the training step: TF32 switched on by every model load on CUDA
only; ``tlcm.sample`` / ``tlcm.evaluate`` load the frozen weights in ``--dtype`` (auto: bf16 on
CUDA) and sample under autocast to it, so a LoRA student's fp32 branch computes in bf16 too (sample
grids and evaluation as well); ``BaseModel.decode`` decodes in slices, checkpointed with gradients,
equal to the one-call decode."""

import pytest
import torch

import tlcm.eval.pipeline as pipeline_module
import tlcm.models.base as base_module
import tlcm.sample
from tlcm.config import StudentConfig
from tlcm.diffusion.milestones import StudentGrid
from tlcm.evaluate import cli as evaluate_cli
from tlcm.export import export_student
from tlcm.models.base import BaseModel, allow_tf32
from tlcm.models.student import Student
from tlcm.sample_grids import write_phase_grid
from tlcm.toy.metrics import ToyMetrics
from tlcm.toy.scores import student_scores


@pytest.fixture
def tf32_flags():
    """torch's TF32 switches, off for the test and restored after it."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_tf32_only_on_cuda_and_every_load_asks(tf32_flags, tiny_sd_dir, monkeypatch):
    allow_tf32("cpu")
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    allow_tf32(torch.device("cuda", 0))
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    asked = []
    monkeypatch.setattr(base_module, "allow_tf32", asked.append)
    BaseModel.load(tiny_sd_dir)  # train, sample, evaluate, export and the caches all load here
    assert asked == ["cpu"]


def _lora_dtypes(net: torch.nn.Module) -> list[torch.dtype]:
    """Record the dtype each LoRA branch computes in (lora_B's output) while sampling."""
    seen = []
    for module in net.modules():
        for lora_b in getattr(module, "lora_B", {}).values():
            lora_b.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    return seen


@pytest.fixture
def bf16_student(tiny_sd_dir):
    """A rank-4 LoRA student (fp32 adapter) on the tiny SD pipeline's bf16 frozen weights."""
    return Student(BaseModel.load(tiny_sd_dir, dtype=torch.bfloat16), StudentConfig(lora_rank=4))


def test_evaluation_runs_a_lora_student_on_bf16_weights_in_bf16(bf16_student):
    """evaluate_toy (teacher-table, evaluate student, the run's end-of-training scores) autocasts:
    without it peft computes the fp32 LoRA branch in fp32."""
    seen = _lora_dtypes(bf16_student.net)
    grid = StudentGrid(2, 1)
    rows = student_scores(bf16_student.base, bf16_student.denoiser(), (1,), 1, ToyMetrics(), grid)
    assert len(rows) == 1 and seen and set(seen) == {torch.bfloat16}


def test_phase_grid_runs_a_lora_student_on_bf16_weights_in_bf16(bf16_student, tmp_path):
    seen = _lora_dtypes(bf16_student.net)
    grid = write_phase_grid(bf16_student, ["a", "b"], (1,), StudentGrid(2, 1), tmp_path / "grid.png")
    assert grid.is_file()
    assert seen and set(seen) == {torch.bfloat16}


@pytest.mark.parametrize(("flag", "dtype"), [((), torch.float32), (("--dtype", "bf16"), torch.bfloat16)])
def test_sample_loads_in_dtype_and_autocasts_to_it(flag, dtype, tiny_sd_dir, tmp_path, monkeypatch):
    """--dtype auto is fp32 on CPU (no autocast: the miniature's results unchanged), bf16 on CUDA
    (frozen_dtype); bf16 weights sample under bf16 autocast."""
    seen, sample = [], tlcm.sample.sample_latents

    def spy(denoiser, *args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return sample(denoiser, *args, **kwargs)

    load = BaseModel.load
    loaded = []
    monkeypatch.setattr(tlcm.sample, "sample_latents", spy)
    monkeypatch.setattr(BaseModel, "load", lambda *a, **k: loaded.append(k["dtype"]) or load(*a, **k))
    out = tmp_path / "grid.png"
    args = ["--model", str(tiny_sd_dir), "--device", "cpu", "--steps", "1", "--num-per-prompt", "1"]
    tlcm.sample.cli([*args, "--out", str(out), *flag])
    assert out.is_file() and loaded == [dtype]
    assert seen == [(dtype == torch.bfloat16, torch.bfloat16)]


def test_generate_runs_a_lora_export_on_bf16_weights_in_bf16(tiny_sd_dir, tmp_path, monkeypatch):
    """evaluate generate (bf16 weights on CUDA): the diffusers pipeline call runs under autocast, so
    the LoRA computes in bf16 (and the bf16 latents reach the fp32 VAE: without autocast
    StableDiffusionPipeline fails there, "Input type (BFloat16) and bias type (float)")."""
    student = Student(BaseModel.load(tiny_sd_dir), StudentConfig(lora_rank=4))
    export_student(student, tmp_path / "run" / "student")
    seen, load = [], pipeline_module.load_pipeline

    def bf16_pipeline(*args):
        base = load(*args)
        assert base.net.dtype == torch.bfloat16
        seen.append(_lora_dtypes(base.net))  # hooks on the loaded LoRA, before any call
        return base

    monkeypatch.setattr(pipeline_module, "frozen_dtype", lambda *args, **kwargs: torch.bfloat16)
    monkeypatch.setattr(pipeline_module, "load_pipeline", bf16_pipeline)  # generate imports it late
    (tmp_path / "prompts.txt").write_text("a\n")
    args = ["--model", str(tiny_sd_dir), "--prompts", str(tmp_path / "prompts.txt"), "--device", "cpu"]
    args += ["--out", str(tmp_path / "images"), "--student", str(tmp_path / "run"), "--steps", "1"]
    assert evaluate_cli(["generate", *args]) == 1
    assert seen[0] and set(seen[0]) == {torch.bfloat16}


def test_evaluate_loads_in_dtype(tiny_sd_dir, tmp_path, monkeypatch):
    loaded, load = [], BaseModel.load
    monkeypatch.setattr(BaseModel, "load", lambda *a, **k: loaded.append(a[2]) or load(*a, **k))
    args = ["teacher-table", "--model", str(tiny_sd_dir), "--guidance-scales", "1", "--steps", "1"]
    args += ["--samples-per-digit", "1", "--out", str(tmp_path / "t.json"), "--dtype", "bf16"]
    rows = evaluate_cli(args)
    assert len(rows) == 1 and loaded == [torch.bfloat16]


def _vae_calls(base: BaseModel) -> list[int]:
    """Record the batch size of every VAE decoder call."""
    calls, decode = [], base.pipe.vae.decode
    base.pipe.vae.decode = lambda z, *a, **k: calls.append(len(z)) or decode(z, *a, **k)
    return calls


def test_decode_in_slices_equals_one_call_with_gradients(tiny_sd_dir, monkeypatch):
    """Two 32 px images per VAE call: 5 latents in slices 2, 2, 1; with gradients every slice is
    checkpointed (its decode runs again in the backward). Images and input gradients equal the
    one-call decode's to float rounding; a batch that fits one slice is one call."""
    base = BaseModel.load(tiny_sd_dir)
    calls = _vae_calls(base)
    monkeypatch.setattr(base_module, "DECODE_PIXELS", 2 * 32 * 32)
    z = torch.randn(5, *base.latent_shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
    weights = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    whole = base.family.decode(base.pipe, z)  # one call
    (expected,) = torch.autograd.grad((whole * weights).sum(), z)
    calls.clear()
    sliced = base.decode(z)
    assert calls == [2, 2, 1]
    (grad,) = torch.autograd.grad((sliced * weights).sum(), z)
    assert sorted(calls[3:]) == [1, 2, 2]  # each slice recomputed in the backward (last first)
    torch.testing.assert_close(sliced, whole)
    torch.testing.assert_close(grad, expected)
    calls.clear()
    with torch.no_grad():
        torch.testing.assert_close(base.decode(z), whole)
    assert calls == [2, 2, 1]
    calls.clear()
    assert torch.equal(base.decode(z[:2]), base.family.decode(base.pipe, z[:2])) and calls == [2, 2]


def test_teacher_table_samples_each_row_with_its_own_step_count(tiny_sd_dir, tmp_path, monkeypatch):
    """Each (w, steps) row of the teacher table is sampled on a grid of that many steps."""
    import tlcm.evaluate

    grids, sample = [], tlcm.evaluate.sample_latents
    monkeypatch.setattr(
        tlcm.evaluate, "sample_latents", lambda *a, **k: grids.append(list(a[4])) or sample(*a, **k)
    )
    args = ["teacher-table", "--model", str(tiny_sd_dir), "--guidance-scales", "1", "--steps", "1", "3"]
    rows = evaluate_cli([*args, "--samples-per-digit", "1", "--out", str(tmp_path / "t.json")])
    assert [r["steps"] for r in rows] == [1, 3] and [len(g) for g in grids] == [1, 3]
    assert grids[0][0] == grids[1][0] and len(set(grids[1])) == 3  # from the top, distinct steps


def test_evaluate_student_samples_with_the_gamma_asked_for(tiny_sd_dir, tmp_path, monkeypatch):
    """--gamma 0.5 alone: every move of the sampler (the first too) has gamma 0.5; the rows and the
    file name say so."""
    import tlcm.toy.scores
    from tlcm.checkpoint import TrainState, save_checkpoint

    student = Student(BaseModel.load(tiny_sd_dir), StudentConfig(lora_rank=4))
    save_checkpoint(tmp_path, TrainState(1, 0, 1), student.state_dict(), {}, {}, metadata=student.metadata())
    seen, sample = [], tlcm.toy.scores.sample_latents
    monkeypatch.setattr(
        tlcm.toy.scores,
        "sample_latents",
        lambda *a, **k: seen.append((a[5], k["first_gamma"])) or sample(*a, **k),
    )
    args = ["student", "--run", str(tmp_path), "--model", str(tiny_sd_dir), "--steps", "2"]
    rows = evaluate_cli([*args, "--samples-per-digit", "1", "--gamma", "0.5"])
    assert seen == [(0.5, None)]
    assert [(r["gamma"], r["first_gamma"]) for r in rows] == [(0.5, None)]
    assert (tmp_path / "eval-gamma0.5.json").is_file()
