"""Model families behind one interface (tlcm/models/families): each loads from a local diffusers
folder, encodes with its pipeline, denoises (B, C, h, w) latents in its own parameterisation, taps
features for the discriminator, trains on the grid its exported scheduler samples, and its LoRA
export loads and samples in plain diffusers with the student's output. (Every preset smoke-trains
on every family in test_engine.py.)"""

import math

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from peft.tuners.tuners_utils import BaseTunerLayer

from tlcm.conditioning import Conditioning
from tlcm.config import StudentConfig
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import StudentGrid
from tlcm.errors import TLCMError
from tlcm.export import DIFFUSERS_FILE, export_student, tlcm_scheduler
from tlcm.models.base import BaseModel
from tlcm.models.families.flux import STUDENT_GUIDANCE, image_ids, pack, unpack
from tlcm.models.student import Student

TEXT = 16
"""T5 tokens in these tests (the pipelines' defaults, 256 / 512, only cost time)."""
FAMILIES = {  # kind -> (fixture, family name, resolution)
    "sd15": ("tiny_sd_dir", "sd15", None),
    "sdxl": ("tiny_sdxl_dir", "sdxl", None),
    "sd3": ("tiny_sd3_dir", "sd3", None),
    "sd3-t5": ("tiny_sd3_t5_dir", "sd3", None),
    "flux": ("tiny_flux_dir", "flux", 32),
}
FLOW = ["sd3", "sd3-t5", "flux"]


def _load(request, kind: str) -> BaseModel:
    fixture, _, resolution = FAMILIES[kind]
    folder = request.getfixturevalue(fixture)
    return BaseModel.load(folder, resolution=resolution, max_sequence_length=TEXT)


def _timesteps(base: BaseModel, batch: int) -> torch.Tensor:
    grid = StudentGrid().timesteps(8, base.schedule)
    return grid[torch.arange(batch) % len(grid)]


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_family_loads_encodes_denoises_taps_and_decodes(kind, request):
    base = _load(request, kind)
    assert base.family.name == FAMILIES[kind][1]
    cond, uncond = base.encode(["a handwritten digit seven", "a drawing of the digit two"])
    assert len(cond) == len(uncond) == 2 and cond.prompt_embeds.shape == uncond.prompt_embeds.shape
    if kind in FLOW:
        assert cond.pooled_embeds is not None and cond.prompt_embeds.shape[1] == 77 * (kind != "flux") + TEXT
    assert (cond.guidance is not None) == (kind == "flux")  # the tiny FLUX is guidance-distilled
    x = torch.randn(2, *base.latent_shape)
    t = _timesteps(base, 2)
    with torch.no_grad():
        out = base.denoiser()(x, t, cond)
        feats = base.family.features(base.net, x, t, cond)
        images = base.decode(x)
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert [f.shape[1] for f in feats] == base.family.feature_channels(base.net)
    assert all(f.shape[0] == 2 and f.dim() == 4 for f in feats)
    assert images.shape[:2] == (2, 3) and images.abs().max() <= 1


def _flux_pipelines_call(pipe, x, t, cond, guidance) -> torch.Tensor:
    """FluxPipeline's own transformer call on latents x (B, C, h, w): its packing into 2 x 2 patches,
    its image ids of the (h / 2, w / 2) grid, text ids of zeros, t / 1000, then its unpacking."""
    b, c, h, w = x.shape
    out = pipe.transformer(
        hidden_states=FluxPipeline._pack_latents(x, b, c, h, w),
        timestep=t / 1000,
        guidance=guidance,
        pooled_projections=cond.pooled_embeds,
        encoder_hidden_states=cond.prompt_embeds,
        txt_ids=torch.zeros(cond.prompt_embeds.shape[1], 3),
        img_ids=FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, "cpu", torch.float32),
        return_dict=False,
    )[0]
    factor = pipe.vae_scale_factor
    return FluxPipeline._unpack_latents(out, h * factor, w * factor, factor)


def test_flux_call_is_the_pipelines(request):
    """Our FLUX denoiser on (B, C, h, w) equals the transformer call FluxPipeline makes on its
    packed latents (its _pack_latents, image ids, timestep / 1000, guidance), unpacked by its own
    _unpack_latents: a wrong token order or a wrong timestep scale fails. The image ids are its
    _prepare_latent_image_ids', built once for both calls (not per call on the CPU)."""
    base = _load(request, "flux")
    image_ids.cache_clear()
    pipe, (c, h, w) = base.pipe, base.latent_shape
    cond, _ = base.encode(["a digit"] * 2)
    x, t = torch.randn(2, c, h, w), torch.tensor([700.0, 250.0])
    assert torch.equal(pack(x), FluxPipeline._pack_latents(x, 2, c, h, w))
    assert torch.equal(unpack(pack(x), h, w), x)
    guidance = torch.full((2,), 5.0)
    with torch.no_grad():
        ours = base.denoiser()(x, t, cond.with_guidance(5.0))
        theirs = _flux_pipelines_call(pipe, x, t, cond, guidance)
    torch.testing.assert_close(ours, theirs)
    with torch.no_grad():
        other = base.denoiser()(x, t, cond.with_guidance(1.0))
    assert (other - ours).abs().max() > 1e-4  # the guidance input reaches the network
    assert (image_ids.cache_info().misses, image_ids.cache_info().hits) == (1, 1)
    ids = FluxPipeline._prepare_latent_image_ids(2, h // 2, w // 2, "cpu", torch.bfloat16)
    assert torch.equal(image_ids(h // 2, w // 2, torch.device("cpu"), torch.bfloat16), ids)


@pytest.mark.parametrize("kind", ["sd15", "sdxl", "sd3"])
def test_guided_teacher_is_the_pipelines_cfg_prediction(kind, request):
    """The guided teacher (w = 5) equals the noise / velocity prediction the diffusers pipeline
    makes in a CFG step: its own encode_prompt (negative prompt: its default), the network on
    [negative; prompt] (SDXL: pooled embeddings and _get_add_time_ids; SD3: pooled projections)
    and uncond + w (cond - uncond). A conditioning field that does not reach the network, the
    prompt's pooled embedding in the unconditional half, or SD1.5's prompt and empty prompt
    swapped (guidance away from the prompt), fails."""
    base = _load(request, kind)
    pipe, w, prompts = base.pipe, 5.0, ["a handwritten digit seven", "a drawing of the digit two"]
    cond, uncond = base.encode(prompts)
    x, t = torch.randn(2, *base.latent_shape), torch.tensor([700.0, 250.0])
    with torch.no_grad():
        ours = Guided(base.denoiser(), w, uncond[:1])(x, t, cond)
        xx, tt = torch.cat([x, x]), torch.cat([t, t])
        if kind == "sd15":
            emb, neg = pipe.encode_prompt(prompts, "cpu", 1, True)
            out = pipe.unet(xx, tt, encoder_hidden_states=torch.cat([neg, emb])).sample
        elif kind == "sdxl":
            emb, neg, pooled, neg_pooled = pipe.encode_prompt(prompts, device="cpu")
            size = base.latent_shape[-1] * pipe.vae_scale_factor
            ids = pipe._get_add_time_ids(
                (size, size), (0, 0), (size, size), emb.dtype, pipe.text_encoder_2.config.projection_dim
            ).expand(4, 6)
            added = {"text_embeds": torch.cat([neg_pooled, pooled]), "time_ids": ids}
            out = pipe.unet(
                xx, tt, encoder_hidden_states=torch.cat([neg, emb]), added_cond_kwargs=added
            ).sample
        else:
            emb, neg, pooled, neg_pooled = pipe.encode_prompt(
                prompts, None, None, device="cpu", max_sequence_length=TEXT
            )
            out = pipe.transformer(
                hidden_states=xx,
                timestep=tt,
                encoder_hidden_states=torch.cat([neg, emb]),
                pooled_projections=torch.cat([neg_pooled, pooled]),
                return_dict=False,
            )[0]
    out_uncond, out_cond = out.chunk(2)
    assert (out_cond - out_uncond).abs().max() > 1e-4  # the prompt reaches the network
    torch.testing.assert_close(ours, out_uncond + w * (out_cond - out_uncond), rtol=1e-4, atol=1e-5)


def test_embedded_guidance_is_one_call_with_w_as_input():
    """The guided teacher on a guidance-distilled conditioning: ONE call of batch B whose guidance input
    is w (not a cond + uncond batch of 2B); CFG conditionings still make the 2B call."""
    calls = []

    def denoiser(x, t, cond):
        calls.append((len(x), None if cond.guidance is None else cond.guidance.tolist()))
        return x * (1 if cond.guidance is None else cond.guidance.view(-1, 1, 1, 1))

    x, t = torch.ones(3, 1, 2, 2), torch.zeros(3)
    distilled = Conditioning(torch.zeros(3, 4, 8), guidance=torch.full((3,), STUDENT_GUIDANCE))
    out = Guided(denoiser, 6.0, distilled[:1])(x, t, distilled)
    assert calls == [(3, [6.0] * 3)] and torch.equal(out, 6 * x)
    calls.clear()
    Guided(denoiser, 6.0, Conditioning(torch.zeros(1, 4, 8)))(x, t, Conditioning(torch.zeros(3, 4, 8)))
    assert calls == [(6, None)]


@pytest.mark.parametrize("kind", FLOW)
def test_training_grid_is_the_exported_schedulers(kind, request):
    """The student trains at the timesteps its exported TLCMFlowScheduler samples at (milestones
    T shift(k / M), top = T): SD3's static shift 3 and FLUX's resolution-dependent exp(mu), the mu
    FluxPipeline computes for the training resolution."""
    base = _load(request, kind)
    grid = StudentGrid(8, 4)
    scheduler = tlcm_scheduler(base, grid)
    config = scheduler.config
    mu = None
    if config.use_dynamic_shifting:
        tokens = (base.latent_shape[1] // 2) * (base.latent_shape[2] // 2)
        mu = calculate_shift(tokens, config.base_image_seq_len, config.max_image_seq_len, 0.5, 1.15)
        assert base.schedule.shift == pytest.approx(math.exp(mu))
    else:
        assert base.schedule.shift == config.shift == 3.0
    for n in (1, 2, 4, 8):
        scheduler.set_timesteps(n, mu=mu)
        torch.testing.assert_close(grid.timesteps(n, base.schedule), scheduler.timesteps)
    assert grid.timesteps(1, base.schedule).item() == 1000.0  # pure noise, not t_M - 1


@pytest.mark.parametrize("kind", FLOW)
def test_lora_export_loads_and_samples_in_plain_diffusers(kind, request, tmp_path):
    """Random LoRA B (so every module counts): the exported file loads with the family pipeline's
    load_lora_weights into every adapted module, its transformer then gives the student's output,
    and the exported TLCMFlowScheduler samples 2 steps in the plain pipeline."""
    base = _load(request, kind)
    torch.manual_seed(0)
    student = Student(base, StudentConfig(lora_rank=4, lora_alpha=8.0))
    with torch.no_grad():
        for name, param in student.net.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    with pytest.raises(TLCMError, match="kohya LoRA format is for SD1.5 / SDXL"):
        export_student(student, tmp_path / "k", ("kohya",))
    export_student(student, tmp_path, ("diffusers",))
    cond, _ = base.encode(["a digit"])
    x, t = torch.randn(1, *base.latent_shape), torch.tensor([600.0])
    with torch.no_grad():
        ours, teacher = student.denoiser()(x, t, cond), student.teacher()(x, t, cond)
    assert (ours - teacher).abs().max() > 0.05
    modules = [n for n, m in student.net.named_modules() if isinstance(m, BaseTunerLayer)]
    folder = request.getfixturevalue(FAMILIES[kind][0])
    pipeline = FluxPipeline if kind == "flux" else StableDiffusion3Pipeline
    absent = {"text_encoder_3": None, "tokenizer_3": None} if kind == "sd3" else {}
    pipe = pipeline.from_pretrained(folder, **absent)
    pipe.load_lora_weights(tmp_path, weight_name=DIFFUSERS_FILE)
    loaded = [n for n, m in pipe.transformer.named_modules() if isinstance(m, BaseTunerLayer)]
    assert loaded == modules
    with torch.no_grad():
        theirs = base.family.forward(pipe.transformer, x, t, cond)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-4)
    pipe.scheduler = type(tlcm_scheduler(base, student.config.grid)).from_pretrained(tmp_path / "scheduler")
    size = base.latent_shape[-1] * pipe.vae_scale_factor
    kwargs = {"max_sequence_length": TEXT, "height": size, "width": size, "output_type": "np"}
    images = pipe("a digit", num_inference_steps=2, **kwargs, **base.family.sample_kwargs()).images
    assert images.shape == (1, size, size, 3) and np.isfinite(images).all()


# The family owns the model boundary: what a family must provide, its registry, sizes from the
# resolution, and the fingerprint of every component that determines the outputs.

MUST_PROVIDE = {
    "attributes": {"name", "tag", "pipeline_name", "components", "lora_targets"},
    "methods": {"encode", "forward", "features", "feature_channels"},
}
"""What a family must define itself: ``Family``'s attributes without a default and its abstract
methods (the rest of the interface has defaults a family may override)."""


def test_every_registered_family_provides_what_a_family_must():
    """The interface's open slots are exactly MUST_PROVIDE (a new one must be listed here), every
    registry entry fills all of them under its pipeline's name, and every concrete Family subclass
    in tlcm/models/families is registered (adding a family = one file + one registry entry)."""
    import importlib
    import inspect
    import pkgutil

    from diffusers import DiffusionPipeline

    import tlcm.diffusion.scheduler
    import tlcm.models.families as package
    from tlcm.models.families import DEFAULT_FAMILY
    from tlcm.models.families import FAMILIES as REGISTRY
    from tlcm.models.families.base import Family

    open_attributes = {n for n in Family.__annotations__ if not hasattr(Family, n)}
    assert open_attributes == MUST_PROVIDE["attributes"]
    assert set(Family.__abstractmethods__) == MUST_PROVIDE["methods"]
    defined = set()
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        defined |= {
            c
            for c in vars(module).values()
            if inspect.isclass(c) and issubclass(c, Family) and not inspect.isabstract(c)
        }
    assert defined == {type(f) for f in REGISTRY.values()}, "a concrete Family subclass is not in FAMILIES"
    assert DEFAULT_FAMILY in REGISTRY.values()
    names, tags = set(), set()
    for key, family in REGISTRY.items():
        cls = type(family)
        assert not inspect.isabstract(cls), f"{key}: abstract methods left {sorted(cls.__abstractmethods__)}"
        for method in MUST_PROVIDE["methods"]:
            assert getattr(cls, method) is not getattr(Family, method), f"{key} lacks {method}"
        for attribute in MUST_PROVIDE["attributes"]:
            assert hasattr(cls, attribute), f"{key} lacks {attribute}"
        assert issubclass(family.pipeline, DiffusionPipeline) and family.pipeline.__name__ == key
        assert isinstance(family.name, str) and isinstance(family.tag, str) and family.name not in names
        names.add(family.name)
        tags.add(family.tag)
        assert family.lora_targets and all(isinstance(t, str) for t in family.lora_targets)
        folders = (*family.components, *family.optional_components)
        assert {family.net, "vae", "scheduler", "text_encoder", "tokenizer"} <= set(folders)
        assert len(set(folders)) == len(folders)
        assert isinstance(getattr(tlcm.diffusion.scheduler, family.scheduler), type)
        assert family.kohya is None or isinstance(family.kohya, str)
    assert len(tags) == len(REGISTRY)


def test_sdxl_time_ids_follow_the_configured_resolution(tiny_sdxl_dir):
    """SDXL's micro-conditioning at --recipes.model.resolution R is original = target size (R, R),
    crop (0, 0): what StableDiffusionXLPipeline itself passes at height = width = R (not the
    default size's ids); caches of encodings tell the sizes apart."""
    from tlcm.data.embeddings import encoder_fingerprint

    default, base = BaseModel.load(tiny_sdxl_dir), BaseModel.load(tiny_sdxl_dir, resolution=64)
    assert default.latent_shape[-1] * default.pipe.vae_scale_factor == 32 and base.latent_shape[-1] == 32
    cond, uncond = base.encode(["a digit", "another digit"])
    pipe = base.pipe
    theirs = pipe._get_add_time_ids(
        (64, 64), (0, 0), (64, 64), cond.prompt_embeds.dtype, pipe.text_encoder_2.config.projection_dim
    )
    assert cond.time_ids.tolist() == uncond.time_ids.tolist() == [[64, 64, 0, 0, 64, 64]] * 2
    torch.testing.assert_close(cond.time_ids, theirs.expand(2, 6))
    assert default.encode(["a digit"])[0].time_ids.tolist() == [[32, 32, 0, 0, 32, 32]]
    assert encoder_fingerprint(base) != encoder_fingerprint(default)
    explicit = BaseModel.load(tiny_sdxl_dir, resolution=32)  # the default size, asked for
    assert encoder_fingerprint(explicit) == encoder_fingerprint(default)


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_trajectory_fingerprint_sees_every_component(kind, request, tmp_path):
    """The teacher trajectory cache's fingerprint changes when a file of any component that
    determines the outputs changes (denoiser, VAE, every text encoder and tokenizer, the scheduler
    config; the last byte: inside what it samples), and only then (a copy of the folder elsewhere
    keeps it)."""
    import shutil

    from tlcm.data.trajectories import teacher_fingerprint
    from tlcm.models.families import FAMILIES as REGISTRY
    from tlcm.models.folders import check_model_folder

    folder = tmp_path / "model"
    shutil.copytree(request.getfixturevalue(FAMILIES[kind][0]), folder)
    family = REGISTRY[check_model_folder(folder)]
    before = teacher_fingerprint(folder)
    assert before.startswith(f"{family.name}:")
    shutil.copytree(folder, tmp_path / "moved")
    assert teacher_fingerprint(tmp_path / "moved") == before
    present = [c for c in (*family.components, *family.optional_components) if (folder / c).is_dir()]
    expected = {family.net, "vae", "scheduler", "text_encoder", "tokenizer"}
    expected |= {"text_encoder_2", "tokenizer_2"} if kind != "sd15" else set()
    expected |= {"text_encoder_3", "tokenizer_3"} if kind == "sd3-t5" else set()
    assert set(present) == expected
    for component in present:
        file = max(
            (f for f in (folder / component).rglob("*") if f.is_file()), key=lambda f: f.stat().st_size
        )
        data = file.read_bytes()
        file.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        assert teacher_fingerprint(folder) != before, f"a changed {file.relative_to(folder)} went unseen"
        file.write_bytes(data)
        assert teacher_fingerprint(folder) == before


# Red-team round 3 (tests/mutants/redteam3.py): the family boundary's less-travelled values.


def test_flux_encodes_the_empty_prompt_as_uncond_and_the_pipelines_default_guidance(request):
    """FLUX's unconditional input is FluxPipeline's encoding of the empty prompt (not a prompt of
    the batch); a guidance-distilled student is encoded, exported and sampled with
    FluxPipeline.__call__'s default guidance_scale (3.5), and the exported scheduler's mu is the
    one FluxPipeline computes for the training resolution (calculate_shift of its image tokens)."""
    import inspect

    base = _load(request, "flux")
    pipe = base.pipe
    default = inspect.signature(FluxPipeline.__call__).parameters["guidance_scale"].default
    assert default == 3.5
    cond, uncond = base.encode(["a handwritten digit seven", "a drawing of the digit two"])
    emb, pooled, _ = pipe.encode_prompt(prompt=[""], prompt_2=None, device="cpu", max_sequence_length=TEXT)
    torch.testing.assert_close(uncond.prompt_embeds, emb.expand(2, *emb.shape[1:]))
    torch.testing.assert_close(uncond.pooled_embeds, pooled.expand(2, *pooled.shape[1:]))
    assert (cond.prompt_embeds - uncond.prompt_embeds).abs().max() > 1e-4
    assert cond.guidance.tolist() == uncond.guidance.tolist() == [default, default]
    assert base.family.sample_kwargs() == {"guidance_scale": default}
    config = pipe.scheduler.config
    tokens = (32 // pipe.vae_scale_factor // 2) ** 2  # 32 px images, 2 x 2 patches
    mu = calculate_shift(tokens, config.base_image_seq_len, config.max_image_seq_len, 0.5, 1.15)
    assert base.family.scheduler_mu(pipe, base.schedule) == pytest.approx(mu)


def test_flux_latents_are_the_pipelines_size_at_the_resolution(request):
    """FLUX latents at resolution R are R / vae_scale_factor wide (what FluxPipeline.prepare_latents
    makes for height = width = R: (R / 16)^2 tokens of 4C channels on 2 x 2 patches)."""
    base = _load(request, "flux")
    pipe, f = base.pipe, base.pipe.vae_scale_factor
    channels = pipe.transformer.config.in_channels // 4
    assert base.latent_shape == (channels, 32 // f, 32 // f)
    packed, _ = pipe.prepare_latents(
        1, channels, 32, 32, torch.float32, "cpu", torch.Generator().manual_seed(0)
    )
    assert packed.shape == (1, (32 // f // 2) ** 2, 4 * channels)
    assert base.family.latent_shape(pipe, 64) == (channels, 64 // f, 64 // f)


def test_sdxl_features_are_the_unets_own_block_outputs(request):
    """SDXL's block-by-block discriminator features equal the down / mid block outputs of the
    UNet's own full forward (hooks): the time embedding plus the added text / time-id embedding,
    not one of them alone."""
    base = _load(request, "sdxl")
    net = base.net
    cond, _ = base.encode(["a handwritten digit seven", "a drawing of the digit two"])
    x, t = torch.randn(2, *base.latent_shape), torch.tensor([700, 250])
    with torch.no_grad():
        ours = base.family.features(net, x, t, cond)
        theirs = base.family.tapped_features(
            net,
            x,
            t,
            cond,
            [*net.down_blocks, net.mid_block],
            lambda out, x: out[0] if isinstance(out, tuple) else out,
        )
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_transformer_features_lay_the_image_tokens_row_major_on_the_grid(request):
    """A transformer family's feature map at (i, j) is image token i * w + j of the tapped block
    (its output's second element: image tokens (B, N, D)), channels = D."""
    base = _load(request, "sd3")
    net = base.net
    cond, _ = base.encode(["a handwritten digit seven", "a drawing of the digit two"])
    x, t = torch.randn(2, *base.latent_shape), torch.tensor([700.0, 250.0])
    tokens = []
    hook = net.transformer_blocks[0].register_forward_hook(lambda m, a, out: tokens.append(out[1]))
    try:
        with torch.no_grad():
            feats = base.family.features(net, x, t, cond)
    finally:
        hook.remove()
    first, tok = feats[0], tokens[0]
    h, w = first.shape[-2:]
    assert tok.shape == (2, h * w, first.shape[1]) and h * w > 1 and h == w
    for i, j in ((0, 1), (1, 0), (h - 1, w - 2)):
        torch.testing.assert_close(first[:, :, i, j], tok[:, i * w + j])


def test_latent_multiple_is_one_halving_per_down_block_but_the_last():
    """A UNet with L levels halves its latents L - 1 times (SD1.5 / SDXL: 4 / 3 levels -> multiples
    of 8 / 4); a transformer's is its patch size, FLUX's 2."""
    from tlcm.models.families import FAMILIES as REGISTRY

    sd, sd3, flux = (
        REGISTRY[k] for k in ("StableDiffusionPipeline", "StableDiffusion3Pipeline", "FluxPipeline")
    )
    assert sd.latent_multiple({"block_out_channels": [320, 640, 1280, 1280]}) == 8
    assert sd.latent_multiple({"block_out_channels": [320, 640, 1280]}) == 4
    assert sd.latent_multiple({"block_out_channels": [32]}) == 1
    assert sd3.latent_multiple({"patch_size": 2}) == 2 and flux.latent_multiple({}) == 2


def test_a_vae_config_without_force_upcast_stays_fp32(tmp_path):
    """diffusers' AutoencoderKL defaults force_upcast to True: a VAE config that does not say
    stays fp32 beside bf16 frozen weights; only an explicit false lets it go bf16."""
    from diffusers import AutoencoderKL

    from tlcm.models.families import DEFAULT_FAMILY

    assert AutoencoderKL().config.force_upcast is True
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text("{}")
    assert DEFAULT_FAMILY.component_dtypes(tmp_path, torch.bfloat16) == {
        "default": torch.bfloat16,
        "vae": torch.float32,
    }
    (tmp_path / "vae" / "config.json").write_text('{"force_upcast": false}')
    assert DEFAULT_FAMILY.component_dtypes(tmp_path, torch.bfloat16) == {"default": torch.bfloat16}


def test_sd3_text_width_is_t5s_when_it_has_one():
    """SD3's prompt embeddings are as wide as T5's hidden size (CLIP's are padded to it), so a T5
    of another width than the transformer's joint attention is reported; without T5 the
    pipeline makes zeros as wide as the transformer takes."""
    from types import SimpleNamespace

    from tlcm.models.families import FAMILIES as REGISTRY

    family = REGISTRY["StableDiffusion3Pipeline"]
    transformer = SimpleNamespace(config=SimpleNamespace(joint_attention_dim=32))
    t5 = SimpleNamespace(config=SimpleNamespace(hidden_size=48))
    assert family.text_widths(SimpleNamespace(transformer=transformer, text_encoder_3=t5)) == (48, 32)
    assert family.text_widths(SimpleNamespace(transformer=transformer, text_encoder_3=None)) == (32, 32)


# Red-team round 6 (tests/mutants/redteam6_models.py): the features' gradient and grid, the taps.


def test_unet_features_pass_the_gradient_to_the_latents(request):
    """The teacher-feature discriminator's generator loss reaches the student only through the
    features' gradient with respect to the latents: the block-by-block features give the input
    gradient of the UNet's own full forward (hooks) for a random weighting of every level; a
    feature path cut from x (a detach) gives none."""
    base = _load(request, "sd15")
    net = base.net
    cond, _ = base.encode(["a handwritten digit seven", "a drawing of the digit two"])
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, *base.latent_shape, generator=gen), torch.tensor([700, 250])

    def input_gradient(features) -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        feats = features(xg)
        weights = [
            torch.randn(f.shape, generator=torch.Generator().manual_seed(i)) for i, f in enumerate(feats)
        ]
        (grad,) = torch.autograd.grad(sum((f * w).sum() for f, w in zip(feats, weights, strict=True)), xg)
        return grad

    ours = input_gradient(lambda xg: base.family.features(net, xg, t, cond))
    theirs = input_gradient(
        lambda xg: base.family.tapped_features(
            net,
            xg,
            t,
            cond,
            [*net.down_blocks, net.mid_block],
            lambda out, x: out[0] if isinstance(out, tuple) else out,
        )
    )
    assert ours.abs().max() > 1e-4
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


def _first_features_and_image_tokens(base, x, t, cond) -> tuple[torch.Tensor, torch.Tensor]:
    """The family's first feature map (B, D, h, w) and the image tokens (B, N, D) that the first
    transformer block outputs (a forward hook), from one no-grad features call."""
    net, tokens = base.net, []
    hook = net.transformer_blocks[0].register_forward_hook(lambda m, a, out: tokens.append(out[1]))
    try:
        with torch.no_grad():
            first = base.family.features(net, x, t, cond)[0]
    finally:
        hook.remove()
    return first, tokens[0]


def test_transformer_features_keep_a_non_square_grid(request):
    """On non-square latents (h = 8, w = 16; patch 1) the MM-DiT features are (B, D, h, w) with the
    image token i * w + j at (i, j): the token grid is (rows, columns) = (h / p, w / p), not the
    transpose (a square grid cannot tell them apart)."""
    base = _load(request, "sd3")
    net = base.net
    c = base.latent_shape[0]
    cond, _ = base.encode(["a handwritten digit seven", "a drawing of the digit two"])
    x, t = torch.randn(2, c, 8, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([700.0, 250.0])
    first, tokens = _first_features_and_image_tokens(base, x, t, cond)
    assert first.shape == (2, base.family.feature_channels(net)[0], 8, 16)
    for i, j in ((0, 1), (1, 0), (2, 9), (7, 15)):
        torch.testing.assert_close(first[:, :, i, j], tokens[:, i * 16 + j])


@pytest.mark.parametrize(
    "blocks, taps",
    [(1, [0]), (2, [0, 1]), (4, [0, 1, 2, 3]), (7, [0, 2, 4, 6]), (10, [0, 3, 6, 9]), (19, [0, 6, 12, 18])],
)
def test_transformer_taps_are_evenly_spaced_from_the_first_block_to_the_last(blocks, taps):
    """FEATURE_TAPS (4) blocks, evenly spaced over the N transformer blocks, the first and the
    last among them: block round(i (N - 1) / 3), i = 0..3 (all of them when N <= 4). By hand: N = 10
    -> 0, 3, 6, 9; N = 7 -> 0, 2, 4, 6; N = 19 -> 0, 6, 12, 18. Without the last block the
    discriminator never sees the deepest features (FLUX.1: 19 double blocks)."""
    from types import SimpleNamespace

    from tlcm.models.families import FAMILIES as REGISTRY

    family = REGISTRY["StableDiffusion3Pipeline"]
    net = SimpleNamespace(transformer_blocks=list(range(blocks)))
    assert family._taps(net) == taps


def test_swapped_weight_calls_speak_the_networks_family(request):
    """EMA targets and DPO references call the network with swapped-in weights
    (``functional_denoiser``) through ITS family's forward: on SD3 (a transformer, not the default
    family's UNet) the call with the network's own weights but proj_out's bias + 0.5 is the
    teacher's output + 0.5 everywhere (proj_out is the last layer; patch 1), and the network
    keeps its weights."""
    from tlcm.models.functional import functional_denoiser

    base = _load(request, "sd3")
    net = base.net
    cond, _ = base.encode(["a handwritten digit seven", "a drawing of the digit two"])
    x, t = (
        torch.randn(2, *base.latent_shape, generator=torch.Generator().manual_seed(0)),
        torch.tensor([700.0, 250.0]),
    )
    params = {n: p.detach() for n, p in net.named_parameters()}
    params["proj_out.bias"] = params["proj_out.bias"] + 0.5
    with torch.no_grad():
        teacher = base.denoiser()(x, t, cond)
        swapped = functional_denoiser(net, params, base.family, counter=base)(x, t, cond)
        again = base.denoiser()(x, t, cond)
    torch.testing.assert_close(swapped, teacher + 0.5)
    assert torch.equal(again, teacher)


def test_flux_on_non_square_latents_is_the_pipelines_call_and_its_token_grid(request):
    """On non-square latents (h = 8, w = 16: a 4 x 8 grid of 2 x 2 patches) our FLUX denoiser equals
    FluxPipeline's transformer call with its image ids of the 4 x 8 grid (rows (0, i, j) for the
    token i * 8 + j), unpacked by its own _unpack_latents; and the features are laid out on that
    grid, (B, D, 4, 8), token i * 8 + j at (i, j). A square latent cannot tell a grid from its
    transpose (test_flux_call_is_the_pipelines)."""
    base = _load(request, "flux")
    pipe, net, c = base.pipe, base.net, base.latent_shape[0]
    cond, _ = base.encode(["a handwritten digit seven", "a drawing of the digit two"])
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, c, 8, 16, generator=gen), torch.tensor([700.0, 250.0])
    with torch.no_grad():
        ours = base.denoiser()(x, t, cond)
        theirs = _flux_pipelines_call(pipe, x, t, cond, cond.guidance)
    torch.testing.assert_close(ours, theirs)
    first, tokens = _first_features_and_image_tokens(base, x, t, cond)
    assert first.shape == (2, base.family.feature_channels(net)[0], 4, 8)
    for i, j in ((0, 1), (1, 0), (2, 5), (3, 7)):
        torch.testing.assert_close(first[:, :, i, j], tokens[:, i * 8 + j])
