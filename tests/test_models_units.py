"""Model loading and wrapping units (red-team round 13, area models): the components check, the
NaN-weights error's file, the one-line load error, autocast for fp16 weights, decode slices, the
model folder's config reading and fingerprint, FSDP2's units, the discriminator's weight files, the
process-group helpers on a one-process gloo group. Each is a direct call on a tiny pipeline or a
synthetic folder (tests/mutants/redteam13_models.py names which breakage each one catches)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from tlcm.errors import TLCMError
from tlcm.models import base as base_module
from tlcm.models.base import BaseModel, check_components, check_finite_weights
from tlcm.models.families import FAMILIES
from tlcm.models.families.base import FINGERPRINT_SAMPLE, read_config

SD = FAMILIES["StableDiffusionPipeline"]


def test_a_text_encoder_narrower_than_the_cross_attention_is_refused(tiny_sd):
    """The tiny UNet attends to 32-wide prompt embeddings: a 16-wide CLIP text encoder is as wrong
    as a 48-wide one (the UNet's to_k would fail at the first prompt), and says so in one line."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(**{**tiny_sd.text_encoder.config.to_dict(), "hidden_size": 16})
    tiny_sd.text_encoder = CLIPTextModel(config)
    with pytest.raises(TLCMError, match="make 16-wide prompt embeddings but /m/unet attends to 32-wide"):
        check_components(tiny_sd, SD, Path("/m"))


def test_nan_weights_name_the_components_own_weights_file(tiny_sd, tmp_path):
    """A NaN in the UNet of a saved folder: the error names unet/diffusion_pytorch_model.safetensors
    (the file to re-download), not the model folder."""
    tiny_sd.save_pretrained(tmp_path)
    with torch.no_grad():
        tiny_sd.unet.conv_out.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(TLCMError) as err:
        check_finite_weights(tiny_sd, tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path}/unet/diffusion_pytorch_model.safetensors: the unet weights")
    assert "(first: conv_out.weight)" in message


def test_nan_weights_in_a_sharded_or_ambiguous_folder_name_the_right_file(tiny_sd, tmp_path):
    """Sharded weights: the shard the index maps the tensor to. Two weight files and no index
    (which one diffusers read is unknown): the component folder."""
    tiny_sd.save_pretrained(tmp_path)
    with torch.no_grad():
        tiny_sd.unet.conv_out.weight[0, 0, 0, 0] = float("inf")
    unet = tmp_path / "unet"
    (unet / "diffusion_pytorch_model.safetensors").rename(unet / "shard-2.safetensors")
    (unet / "shard-1.safetensors").write_bytes(b"")
    index = {
        "weight_map": {"conv_in.weight": "shard-1.safetensors", "conv_out.weight": "shard-2.safetensors"}
    }
    (unet / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(TLCMError, match=rf"^{tmp_path}/unet/shard-2\.safetensors: the unet weights"):
        check_finite_weights(tiny_sd, tmp_path)
    (unet / "diffusion_pytorch_model.safetensors.index.json").unlink()
    with pytest.raises(TLCMError, match=rf"^{tmp_path}/unet: the unet weights"):
        check_finite_weights(tiny_sd, tmp_path)


@pytest.mark.parametrize("error", [OSError("bad header\n  at byte 8\n"), SafetensorError("invalid header")])
def test_a_failed_load_is_one_line_naming_the_folder(error, tiny_sd_dir, monkeypatch):
    """Whatever diffusers / safetensors raise while loading (a multi-line OSError, a SafetensorError
    of a damaged header) becomes one line naming the folder and the flag."""

    def fail(path, dtype):
        raise error

    monkeypatch.setattr(SD, "load", fail)
    with pytest.raises(TLCMError) as err:
        BaseModel.load(tiny_sd_dir, flag="--model")
    message = str(err.value)
    assert "\n" not in message and message.startswith(
        f"could not load the diffusers folder {tiny_sd_dir} (--model)"
    )


def test_the_denoiser_of_another_network_calls_that_network(tiny_sd_dir):
    """``denoiser(net)`` calls ``net`` (a full-copy student), not the base network, and counts its
    batch: the copy with conv_out's bias + 1 (the last layer) gives the teacher's output + 1."""
    import copy

    base = BaseModel.load(tiny_sd_dir)
    other = copy.deepcopy(base.net)
    with torch.no_grad():
        other.conv_out.bias += 1.0
    cond = base.encode(["a digit", "a letter"])[0]
    x, t = (
        torch.randn(2, *base.latent_shape, generator=torch.Generator().manual_seed(0)),
        torch.tensor([10, 900]),
    )
    with torch.no_grad():
        teacher, copied = base.denoiser()(x, t, cond), base.denoiser(other)(x, t, cond)
    torch.testing.assert_close(copied, teacher + 1.0)
    assert base.evaluations == 4


def test_fp16_frozen_weights_autocast_to_fp16(tiny_sd_dir):
    """Frozen fp16 weights (ModelConfig.frozen_dtype fp16) autocast as bf16 ones do: an fp32 matmul
    under ``autocast()`` (the fp32 LoRA branch) computes in fp16; fp32 weights change nothing."""
    a = torch.randn(4, 4)
    with BaseModel.load(tiny_sd_dir, dtype=torch.float16).autocast():
        assert (a @ a).dtype == torch.float16
    with BaseModel.load(tiny_sd_dir).autocast():
        assert (a @ a).dtype == torch.float32


def test_decode_of_latents_larger_than_one_slice_goes_one_image_at_a_time(tiny_sd_dir, monkeypatch):
    """When one image alone is over DECODE_PIXELS (here 1 pixel) the slices hold one image each
    (never none), and the result is the whole batch's decode."""
    base = BaseModel.load(tiny_sd_dir)
    z = torch.randn(3, *base.latent_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = base.decode(z)
        monkeypatch.setattr(base_module, "DECODE_PIXELS", 1)
        sliced = base.decode(z)
    torch.testing.assert_close(sliced, whole)


@pytest.mark.parametrize("text", ["[1, 2]", '{"force_upcast": fal', ""])
def test_a_config_that_is_not_a_json_object_reads_as_empty(text, tmp_path):
    """A config.json holding a JSON list, malformed or empty JSON reads as {} (loading reports the
    folder): the VAE then gets diffusers' default force_upcast (True), i.e. stays fp32."""
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text(text)
    assert read_config(tmp_path / "vae" / "config.json") == {}
    assert SD.component_dtypes(tmp_path, torch.bfloat16) == {"default": torch.bfloat16, "vae": torch.float32}


def _weights(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return SD.fingerprint(path.parents[1])


def test_the_fingerprint_hashes_each_files_first_and_last_mib_and_its_size(tmp_path):
    """docs: each file's path, size, first and last MiB. A 1.5 MiB weights file is hashed whole (a
    byte at 800 KiB counts); a 3 MiB one whose middle grew by a byte (same first and last MiB)
    changes its size."""
    assert FINGERPRINT_SAMPLE == 1 << 20
    (tmp_path / "unet").mkdir()
    file = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(3 << 19)
    before = _weights(file, bytes(data))
    data[800 << 10] = 1
    assert _weights(file, bytes(data)) != before
    big = bytes(3 << 20)
    grown = big[: 3 << 19] + b"\0" + big[3 << 19 :]
    assert _weights(file, big) != _weights(file, grown)


def test_fsdp2_units_hold_every_unet_block_leaving_only_the_small_root_layers(tiny_sd):
    """FSDP2 shards each of ``shard_modules`` on its own and the rest with the root (gathered for
    the whole forward): every UNet parameter outside them is one of the root's small layers (input
    / output convolutions, the time embedding), never a down, mid or up block's."""
    net = tiny_sd.unet
    inside = {id(p) for block in SD.shard_modules(net) for p in block.parameters()}
    outside = {n.split(".")[0] for n, p in net.named_parameters() if id(p) not in inside}
    assert outside <= {"conv_in", "time_embedding", "conv_norm_out", "conv_out"}


def test_backbone_weights_nested_under_model_load(tmp_path):
    """A checkpoint that nests its weights under "model" (timm's / DeiT's training scripts) loads
    like a plain state dict."""
    import timm

    from tlcm.models.discriminator import load_weights

    source = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(1, 2))
    weights = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in source.state_dict().items()}
    torch.save({"model": weights, "epoch": 3}, tmp_path / "r18.pth")
    target = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(1, 2))
    load_weights(target, tmp_path / "r18.pth")
    torch.testing.assert_close(target.state_dict()["layer1.0.conv1.weight"], weights["layer1.0.conv1.weight"])


def test_checkpointed_dtensors_gather_in_tuples_and_optimizer_steps_stay_whole(cpu_mesh):
    """On a one-process gloo group: ``full_tensors`` gathers DTensors inside tuples too (a full
    tensor in the checkpoint), and after loading AdamW's full state ``reshard_optimizer_state``
    shards exp_avg / exp_avg_sq like the parameter but leaves the scalar step count a plain tensor."""
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor

    from tlcm.distributed import full_tensors, reshard_optimizer_state

    mesh = cpu_mesh
    p = torch.nn.Parameter(distribute_tensor(torch.ones(4, 3), mesh, [Shard(0)]))
    full = full_tensors({"pair": (p.detach(), 7)})
    assert type(full["pair"][0]) is torch.Tensor and full["pair"][1] == 7
    opt = torch.optim.AdamW([p], lr=0.1)
    p.grad = distribute_tensor(torch.full((4, 3), 2.0), mesh, [Shard(0)])
    opt.step()
    saved = full_tensors(opt.state_dict())
    fresh = torch.optim.AdamW([p], lr=0.1)
    fresh.load_state_dict(saved)
    reshard_optimizer_state(fresh)
    state = fresh.state[p]
    assert isinstance(state["exp_avg"], DTensor) and isinstance(state["exp_avg_sq"], DTensor)
    assert not isinstance(state["step"], DTensor) and float(state["step"]) == 1.0


@pytest.mark.parametrize("content", [torch.ones(3), [torch.ones(3)]])
def test_backbone_weights_without_names_are_one_clear_error(content, tmp_path):
    """A torch file holding a bare tensor or a list (no key names to load by) is refused with a
    TLCMError naming the file (it was an AttributeError traceback: ``state.get``)."""
    import timm

    from tlcm.models.discriminator import load_weights

    torch.save(content, tmp_path / "w.pt")
    model = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(1,))
    with pytest.raises(
        TLCMError, match=rf"backbone weights {tmp_path}/w.pt hold a (Tensor|list), not a dict"
    ):
        load_weights(model, tmp_path / "w.pt")


@pytest.mark.parametrize("pipe", ["tiny_sd", "tiny_sdxl"])
def test_unet_feature_channels_are_those_of_the_features_and_fit_the_heads(pipe, request):
    """``feature_channels`` lists C_i of each tensor ``features`` returns (down blocks, then the mid
    block, which keeps the last block's width): the teacher-feature discriminator's heads are built
    from it, and its logits come out (B,) for the tiny UNets' (32, 64) blocks."""
    from tlcm.models.discriminator import TeacherFeatureDiscriminator, make_heads

    pipe = request.getfixturevalue(pipe)
    family = next(f for f in FAMILIES.values() if isinstance(pipe, f.pipeline))
    base = BaseModel(pipe, None, Path("/m"), family, family.latent_shape(pipe))
    cond = base.encode(["a digit", "a letter"])[0]
    x, t = torch.randn(2, *base.latent_shape), torch.tensor([5, 500])
    with torch.no_grad():
        feats = family.features(pipe.unet, x, t, cond)
        assert [f.shape[1] for f in feats] == family.feature_channels(pipe.unet) == [32, 64, 64]
        disc = TeacherFeatureDiscriminator(family, pipe.unet, make_heads("pooled", hidden=8))
        assert disc(x, t, cond).shape == (2,)


def test_sharded_unet_features_by_hooks_are_the_block_by_block_ones(tiny_sdxl, monkeypatch):
    """An FSDP2-sharded UNet's features come from forward hooks in one full forward (its root
    weights are gathered only by the root's forward): the same tensors as the block-by-block run
    (down blocks, then the mid block), and no hook stays on the network afterwards."""
    from tlcm.models.families import sd as sd_module

    pipe, family = tiny_sdxl, FAMILIES["StableDiffusionXLPipeline"]
    base = BaseModel(pipe, None, Path("/m"), family, family.latent_shape(pipe))
    cond = base.encode(["a digit", "a letter"])[0]
    x, t = torch.randn(2, *base.latent_shape), torch.tensor([5, 500])
    net = pipe.unet
    with torch.no_grad():
        direct = family.features(net, x, t, cond)
        monkeypatch.setattr(sd_module, "is_sharded", lambda module: True)
        hooked = family.features(net, x, t, cond)
    assert len(hooked) == len(direct) == 3
    for a, b in zip(hooked, direct, strict=True):
        torch.testing.assert_close(a, b)
    assert not any(m._forward_hooks for m in net.modules())


def test_a_timm_discriminator_of_input_size_0_keeps_the_inputs_size():
    """``input_size`` 0: no resizing (the features of a 16 x 16 latent are those of the backbone
    on it as it is); any other size is bilinear to input_size x input_size first."""
    import torch.nn.functional as F

    from tlcm.models.discriminator import TimmDiscriminator, make_heads

    torch.manual_seed(0)
    disc = TimmDiscriminator("resnet18", 4, False, (1, 2), 0, make_heads("pooled", hidden=8))
    x = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        for got, expected in zip(disc.features(x, None, None), disc.backbone(x), strict=True):
            torch.testing.assert_close(got, expected)
        disc.input_size = 32
        big = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        torch.testing.assert_close(disc.features(x, None, None)[0], disc.backbone(big)[0])


def test_sdxl_latents_use_the_vaes_per_channel_mean_and_std_as_diffusers_does(tiny_sdxl_dir, tiny_sd_dir):
    """A VAE config with latents_mean / latents_std (SDXL-architecture models such as Playground
    v2.5): StableDiffusionXLPipeline decodes ``latents * latents_std / scaling_factor +
    latents_mean`` and its img2img encodes ``(z - latents_mean) * scaling_factor / latents_std``;
    decode ignored them, and real-image latents were scaled by scaling_factor only.
    StableDiffusionPipeline never reads them: SD1.5 unchanged."""
    from tlcm.data.images import encode_images

    mean, std = [0.5, -0.25, 0.125, 1.0], [2.0, 0.5, 1.5, 4.0]
    m, s = torch.tensor(mean).view(1, 4, 1, 1), torch.tensor(std).view(1, 4, 1, 1)
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for folder, applies in ((tiny_sdxl_dir, True), (tiny_sd_dir, False)):
        base = BaseModel.load(folder)
        vae, seen = base.pipe.vae, []
        sf = vae.config.scaling_factor
        mode = vae.encode(images).latent_dist.mode()
        vae.register_to_config(latents_mean=mean, latents_std=std)
        decode = vae.decode
        vae.decode = lambda z, *a, **k: (seen.append(z), decode(z, *a, **k))[1]  # noqa: B023
        base.decode(latents)
        torch.testing.assert_close(seen[0], latents * s / sf + m if applies else latents / sf)
        encoded = encode_images(base, images, sample=False)
        torch.testing.assert_close(
            encoded, (mode - m) * sf / s if applies else mode * sf, rtol=1e-4, atol=1e-5
        )
