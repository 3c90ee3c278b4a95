"""The full-size random-weight models of the GPU benchmark (benchmarks/gpu_models.py), built on the
``meta`` device (shapes only, no memory, under a second each), against the released checkpoints:
parameter counts of every network, the dtype each is built in, the VAEs' latent scaling per family,
the text lengths and schedulers; the folder helpers (bytes through the linked T5 folder, parameter
counts from safetensors headers); the memory benchmark's inventory (weight copies, AdamW's two
moments); and the section order of benchmarks/gpu.py. The benchmark's first GPU run has minutes of
machine time: a wrong size there would make every number it reports wrong."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch

from benchmarks import gpu, gpu_models, memory
from tlcm.toy.tiny import tiny_sd_pipeline

PUBLISHED = {
    "sdxl": {
        "unet": 2_567_463_684,
        "text_encoder": 123_060_480,
        "text_encoder_2": 694_659_840,
        "vae": 83_653_863,
    },
    "sd15": {"unet": 859_520_964, "text_encoder": 123_060_480, "vae": 83_653_863},
    "sd3": {
        "transformer": 8_056_627_520,
        "text_encoder": 123_650_304,
        "text_encoder_2": 694_659_840,
        "text_encoder_3": 4_762_310_656,
        "vae": 83_819_683,
    },
    "flux": {
        "transformer": 11_901_408_320,
        "text_encoder": 123_060_480,
        "text_encoder_2": 4_762_310_656,
        "vae": 83_819_683,
    },
}
"""Parameters of the released checkpoints' components (stable-diffusion-xl-base-1.0,
stable-diffusion-v1-5, stable-diffusion-3.5-large, FLUX.1-dev): CLIP-L's text tower 123.06 M
(SD3 loads it with its 768 x 768 projection: + 589,824), OpenCLIP bigG's with projection 694.66 M,
the T5-v1.1-XXL encoder 4.762 B, the 4-channel SD VAE 83.65 M, the 16-channel one 83.82 M."""
LATENTS = {
    "sdxl": (4, 0.13025, None, 1024),
    "sd15": (4, 0.18215, None, 512),
    "sd3": (16, 1.5305, 0.0609, 1024),
    "flux": (16, 0.3611, 0.1159, 1024),
}
"""Each released VAE's config.json: latent channels, scaling_factor, shift_factor, sample_size."""


def _meta(kind: str):
    return gpu_models.full_pipeline(kind, "meta")


def _counts(pipe) -> dict:
    return {
        name: sum(p.numel() for p in module.parameters())
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }


@pytest.mark.parametrize("kind", list(PUBLISHED))
def test_the_full_size_models_have_the_released_parameter_counts(kind):
    """Every component of the full-size pipeline has exactly the released checkpoint's parameter
    count, and the denoiser is within 1 % of EXPECTED_NET_PARAMS (what the report prints as
    "published", rounded: SD3.5-Large 8.06 B against "8.1 B")."""
    counts = _counts(_meta(kind))
    assert counts == PUBLISHED[kind]
    net = counts.get("unet", counts.get("transformer"))
    assert net == pytest.approx(gpu_models.EXPECTED_NET_PARAMS[kind], rel=1e-2)


def test_the_flow_models_are_built_in_bf16_and_the_default_dtype_is_restored():
    """SD3 / FLUX (8 and 12 B parameters) are created in bf16 (fp32 would need twice the memory
    beside the bf16 copy they are saved as); SDXL / SD1.5 in fp32 (saved fp16). Building them
    leaves torch's default dtype as it was (fp32), so later models are not silently bf16."""
    assert torch.get_default_dtype() == torch.float32
    for kind in ("sd3", "flux", "sdxl"):
        pipe = _meta(kind)
        dtypes = {p.dtype for m in _modules(pipe) for p in m.parameters()}
        assert dtypes == {torch.bfloat16 if kind in ("sd3", "flux") else torch.float32}, kind
        assert torch.get_default_dtype() == torch.float32, kind


def _modules(pipe):
    return [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]


@pytest.mark.parametrize("kind", list(LATENTS))
def test_each_family_has_its_vae_scaling_text_lengths_and_scheduler(kind):
    """The VAE's latent channels, scaling and shift factors and sample size are the released
    VAE's (a swapped factor scales every latent the students train on wrongly); the CLIP text
    towers read 77 tokens (their position table); FLUX's scheduler shifts with the resolution
    (dynamic shifting, FLUX.1-dev's), SD3.5's by a fixed 3."""
    pipe = _meta(kind)
    channels, scaling, shift, size = LATENTS[kind]
    vae = pipe.vae.config
    assert (vae.latent_channels, vae.scaling_factor, vae.shift_factor, vae.sample_size) == (
        channels,
        scaling,
        shift,
        size,
    )
    clips = [m for m in _modules(pipe) if type(m).__name__.startswith("CLIPText")]
    assert clips and {m.config.max_position_embeddings for m in clips} == {77}
    if kind in ("sd3", "flux"):
        sched = pipe.scheduler.config
        assert (sched.shift, sched.use_dynamic_shifting) == (3.0, kind == "flux")


def test_folder_bytes_follow_the_linked_t5_folder_and_the_index_names_its_classes(tmp_path):
    """_link_t5 points SD3's text_encoder_3 / tokenizer_3 at the shared T5 folder's text_encoder /
    tokenizer and records transformers' classes in model_index.json (so diffusers loads them);
    folder_bytes counts the files behind the links (the 9.5 GB T5 is part of the model)."""
    folder, t5 = tmp_path / "sd3", tmp_path / "t5"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    for part, size in (("text_encoder", 100), ("tokenizer", 10)):
        (t5 / part).mkdir(parents=True)
        (t5 / part / "f.bin").write_bytes(b"x" * size)
    gpu_models._link_t5(folder, gpu_models.T5_SLOTS["sd3"], t5)
    index = json.loads((folder / "model_index.json").read_text())
    assert index == {
        "text_encoder_3": ["transformers", "T5EncoderModel"],
        "tokenizer_3": ["transformers", "T5TokenizerFast"],
    }
    assert (folder / "text_encoder_3" / "f.bin").stat().st_size == 100
    assert (folder / "tokenizer_3" / "f.bin").stat().st_size == 10
    index_bytes = (folder / "model_index.json").stat().st_size
    assert gpu_models.folder_bytes(folder) == index_bytes + 110


def test_saved_parameter_counts_are_millions_read_from_the_safetensors_headers(tmp_path):
    """Two files holding 3 x 4 + 5 and 7 parameters: 24 parameters, 24e-6 millions."""
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5)}, tmp_path / "one.safetensors")
    save_file({"c": torch.zeros(7, dtype=torch.bfloat16)}, tmp_path / "two.safetensors")
    assert gpu_models._saved_params(tmp_path) == pytest.approx(24e-6)


def _tiny_unet():
    """The tiny SD pipeline's UNet (tlcm/toy/tiny.py; seeded): (32, 64) channels, cross-attention 32."""
    return tiny_sd_pipeline().unet


def _inventory(monkeypatch, objects: list) -> dict:
    """memory.inventory over exactly ``objects`` (not whatever else the test process holds)."""
    monkeypatch.setattr(memory, "gc", SimpleNamespace(get_objects=lambda: objects))
    return memory.inventory()


def test_the_inventory_counts_weight_copies_and_adamws_two_moments(monkeypatch):
    """Full fine-tune: a trained deep copy beside the frozen base UNet is 2 copies of the base
    weights, and "one base UNet" is one UNet's bytes (not both); after one AdamW step its state is
    exactly 2 x the trainable bytes (exp_avg and exp_avg_sq; the 0-dim step counters are not
    state memory worth counting) and the gradients 1 x. LoRA: the adapters' weights are not base
    weights, so one UNet with adapters is 1 copy and the trainable bytes are the adapters'."""
    base = _tiny_unet().requires_grad_(False)
    student = copy.deepcopy(base).requires_grad_(True)
    optimizer = torch.optim.AdamW(student.parameters())
    out = student(torch.randn(1, 4, 16, 16), 1, encoder_hidden_states=torch.randn(1, 3, 32)).sample
    out.square().mean().backward()
    optimizer.step()
    one = sum(p.numel() * p.element_size() for p in base.parameters()) / memory.MIB
    found = _inventory(monkeypatch, [optimizer, *base.modules(), *student.modules()])
    assert (found["unet_modules_alive"], found["base_unet_copies"]) == (2, 2)
    assert found["one_base_unet_mib"] == pytest.approx(one)
    assert found["trainable_mib"] == pytest.approx(one) and found["grads_mib"] == pytest.approx(one)
    assert found["optimizer_state_mib"] == pytest.approx(2 * one, rel=1e-9)

    from peft import LoraConfig

    lora = _tiny_unet().requires_grad_(False)
    lora.add_adapter(LoraConfig(r=2, target_modules=["to_q", "to_k", "to_v"]))
    adapters = sum(p.numel() * 4 for n, p in lora.named_parameters() if "lora_" in n) / memory.MIB
    found = _inventory(monkeypatch, list(lora.modules()))
    assert (found["unet_modules_alive"], found["base_unet_copies"]) == (1, 1)
    assert found["one_base_unet_mib"] == pytest.approx(one)
    assert found["trainable_mib"] == pytest.approx(adapters)


def test_sections_run_in_the_benchmarks_order_whatever_order_they_are_asked_in():
    """A time limit drops the last sections, so the most wanted run first: "sd15,build,sdxl" runs
    build, sdxl, sd15; the CPU means the tiny mode (1 timed step); a GPU 2 timed steps."""
    args = gpu.parse(["--sections", "sd15,build,sdxl", "--device", "cpu"])
    assert (args.sections, args.tiny, args.steps, args.repeats) == (["build", "sdxl", "sd15"], True, 1, 1)
    args = gpu.parse(["--device", "cuda"])
    assert (args.tiny, args.steps, args.repeats, args.sections) == (False, 2, 3, list(gpu.SECTIONS))
