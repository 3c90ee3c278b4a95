"""What tlcm needs from a model family: the one interface the engine, losses, samplers, the
teacher-feature discriminator and the export speak through (docs/design.md, "Model families").

A family is stateless; ``BaseModel`` (tlcm/models/base.py) pairs one with a loaded diffusers
pipeline. Latents are always (B, C, h, w), as the VAE makes them (a family that packs tokens,
FLUX, packs inside ``forward``), so losses, solvers and discriminators see one shape convention.
Adding a family = a ``Family`` subclass in a module of your own, registered there with
``register_family(MyFamily())`` (families/__init__.py; it checks what a family must provide) and
imported with ``--import my_module`` by every command; no change to tlcm/. A family shipped with
tlcm is one file here, registered in families/__init__.py, with its tests (a tiny random pipeline,
the preset smoke train, the export).
The family is the model boundary: loading (precision per component), the fingerprint of every
component that determines the outputs, sizes from the resolution, decode, sharding and the names
the model card and the export use live here; nothing outside tlcm/models/families branches on the
family (tests/test_families.py lists what a family must provide).
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

from tlcm.conditioning import Conditioning
from tlcm.diffusion.schedule import Schedule, schedule_from_config
from tlcm.errors import TLCMError

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

FINGERPRINT_SAMPLE = 1 << 20
"""Bytes of each file's start and end that ``Family.fingerprint`` hashes (configs, tokenizers: whole)."""


WEIGHTS = re.compile(
    r"(?:diffusion_pytorch_model|pytorch_model|model)(?:\.(\w+))?(?:-\d{5}-of-\d{5})?\.(?:safetensors|bin)"
)
"""A component's weights file (diffusers / transformers names, older transformers' pytorch_model
too, sharded or not); group 1: its variant ("fp16" in ``diffusion_pytorch_model.fp16.safetensors``),
None for the plain file."""


def weights_variant(path: Path) -> str | None:
    """The variant to load the diffusers folder ``path`` with: None where every component folder
    holding weights has plain ones (``save_pretrained`` without ``variant``), else the one variant
    its weights files name ("fp16" for a hub repo's fp16 files, ``variant="fp16"``), which
    diffusers loads only when asked. Several variants and no plain weights: a one-line TLCMError."""
    plain, variants = True, set()
    for folder in (f for f in Path(path).iterdir() if f.is_dir()):
        names = [m[1] for f in folder.iterdir() if (m := WEIGHTS.fullmatch(f.name))]
        if names and None not in names:
            plain, variants = False, variants | set(names)
    if plain:
        return None
    if len(variants) > 1:
        raise TLCMError(
            f"{path} holds weights of the variants {', '.join(sorted(variants))} and no plain ones: keep "
            "one, or re-save the pipeline with pipe.save_pretrained(DIR) (no variant)"
        )
    return variants.pop()


def read_config(file: Path) -> dict:
    """A JSON config file of a model folder as a dict, read without loading anything ({} when it is
    missing, unreadable or not a JSON object: loading the folder reports those)."""
    try:
        config = json.loads(Path(file).read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def absent_components(path: Path) -> list[str]:
    """Optional components a checked folder's model_index.json lists as [null, null] (an SD3 saved
    without T5): diffusers' from_pretrained wants them passed as None explicitly."""
    spec = json.loads((Path(path) / "model_index.json").read_text())
    return [k for k, v in spec.items() if isinstance(v, list) and len(v) == 2 and v == [None, None]]


class Family(ABC):
    """One model family (SD1.5, SDXL, SD3, FLUX.1): how to load, encode, denoise, decode and export.

    Class attributes: ``name`` (recipes, model cards), ``tag`` (the model card's Hugging Face tag),
    ``pipeline_name`` (the diffusers pipeline class's name: keys ``FAMILIES``; the class itself,
    ``pipeline``, is imported on first use, so checking a folder needs no diffusers), ``net`` (the denoiser's
    component: "unet" or "transformer", also the LoRA key prefix of diffusers' ``load_lora_weights``
    and the folder of a full fine-tune's export), ``components`` (folders a model folder must hold),
    ``optional_components`` (folders it may hold, e.g. SD3's T5; with ``components``: every folder
    that determines the outputs), ``lora_targets`` (default LoRA target modules), ``scheduler`` (the
    exported TLCM scheduler's class name), ``kohya`` (the kohya LoRA export's base-model tag, or
    None: not offered).
    """

    name: ClassVar[str]
    tag: ClassVar[str]
    pipeline_name: ClassVar[str]
    net: ClassVar[str] = "unet"
    components: ClassVar[tuple[str, ...]]
    optional_components: ClassVar[tuple[str, ...]] = ()
    lora_targets: ClassVar[tuple[str, ...]]
    scheduler: ClassVar[str] = "TLCMScheduler"
    kohya: ClassVar[str | None] = None

    @property
    def pipeline(self) -> type[DiffusionPipeline]:
        """The diffusers pipeline class named ``pipeline_name``."""
        import diffusers

        return getattr(diffusers, self.pipeline_name)

    def component_dtypes(self, path: Path, dtype: torch.dtype) -> dict[str, torch.dtype]:
        """Precision per component of the folder ``path`` for frozen weights of ``dtype`` (diffusers'
        ``from_pretrained(dtype=...)`` form): all in ``dtype`` but a VAE whose config asks to stay
        fp32 (``force_upcast``, diffusers' default True: SDXL's VAE overflows in fp16)."""
        upcast = bool(read_config(Path(path) / "vae" / "config.json").get("force_upcast", True))
        return {"default": dtype, **({"vae": torch.float32} if upcast else {})}

    def load(self, path: Path, dtype: torch.dtype) -> DiffusionPipeline:
        """The pipeline of the checked local folder ``path`` (no hub access), frozen weights in
        ``dtype`` per ``component_dtypes``; components model_index.json lists as [null, null] (an SD3
        without T5) are passed as None; a folder of only variant weights (``*.fp16.safetensors``)
        loads that variant. Raises what diffusers raises (OSError, ValueError, ...)."""
        absent = dict.fromkeys(absent_components(path))
        variant = weights_variant(path)
        return self.pipeline.from_pretrained(
            path, dtype=self.component_dtypes(path, dtype), local_files_only=True, variant=variant, **absent
        )

    def fingerprint(self, path: Path) -> str:
        """The fingerprint "<name>:<sha256>" of the model folder ``path``: sha256 over every component
        folder that determines the outputs (``components`` + ``optional_components``: the denoiser,
        the VAE, the text encoders and tokenizers, the scheduler config), each file's path, size,
        first and last MiB (configs whole, weights sampled: cheap, yet any retrained or swapped
        component changes it); an optional component the folder lacks counts as absent."""
        path, digest = Path(path), hashlib.sha256()
        for component in (*self.components, *self.optional_components):
            folder = path / component
            if not folder.is_dir():
                digest.update(f"{component}:absent\0".encode())
                continue
            for file in sorted(f for f in folder.rglob("*") if f.is_file()):
                size = file.stat().st_size
                with file.open("rb") as handle:
                    head = handle.read(FINGERPRINT_SAMPLE)
                    handle.seek(max(size - FINGERPRINT_SAMPLE, len(head)))
                    digest.update(
                        f"{file.relative_to(path).as_posix()}:{size}:".encode() + head + handle.read()
                    )
        return f"{self.name}:{digest.hexdigest()}"

    @abstractmethod
    def encode(
        self,
        pipe: DiffusionPipeline,
        prompts: list[str],
        device: torch.device,
        max_sequence_length: int | None,
        latent_shape: tuple[int, int, int],
    ) -> tuple[Conditioning, Conditioning]:
        """Prompts (B,) -> (conditional, unconditional) Conditioning, batch B each, with the
        pipeline's own ``encode_prompt`` (the unconditional input is what the pipeline uses for CFG:
        the empty prompt, or SDXL's zeroed negatives). ``max_sequence_length``: T5 tokens (None:
        the pipeline's default; families without T5 ignore it). ``latent_shape``: (C, h, w) of the
        latents the conditioning goes with (SDXL's size conditioning, ``encoded_sizes``)."""

    def encoded_sizes(self, pipe: DiffusionPipeline, latent_shape: tuple[int, int, int]) -> dict[str, object]:
        """What of the image size ``encode`` puts into the conditioning for latents of
        ``latent_shape`` (SDXL: its time ids), so that caches of encodings can tell sizes apart;
        {} where the conditioning holds no size."""
        return {}

    @abstractmethod
    def forward(
        self, net: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, cond: Conditioning
    ) -> torch.Tensor:
        """The network's raw output (B, C, h, w) at latents x (B, C, h, w) and timesteps t (B,) (the
        schedule's: long 0..T-1 for VP, float 0..T for flow), in the family's parameterisation
        (eps / v for UNets, the flow velocity for SD3 / FLUX). Inputs are in the net's dtype."""

    @abstractmethod
    def features(
        self, net: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, cond: Conditioning
    ) -> list[torch.Tensor]:
        """Intermediate features [(B, C_i, h_i, w_i), ...] of ``net`` at (x, t, cond), for the
        teacher-feature discriminator (its encoder half: UNet down + mid blocks, transformer blocks)."""

    def tapped_features(self, net, x, t, cond, blocks, pick) -> list[torch.Tensor]:
        """Features by forward hooks: ``pick(block output)`` of each of ``blocks`` during one full
        ``forward(net, x, t, cond)`` (the path that works on FSDP2-sharded networks too)."""
        feats: list[torch.Tensor] = []
        hooks = [b.register_forward_hook(lambda m, args, out: feats.append(pick(out, x))) for b in blocks]
        try:
            self.forward(net, x, t, cond)
        finally:
            for hook in hooks:
                hook.remove()
        return feats

    @abstractmethod
    def feature_channels(self, net: torch.nn.Module) -> list[int]:
        """C_i of each tensor ``features`` returns."""

    def shard_modules(self, net: torch.nn.Module) -> list[torch.nn.Module]:
        """The network's repeated blocks, each one FSDP2 unit (``--recipes.runtime.fsdp``)."""
        return [*net.down_blocks, net.mid_block, *net.up_blocks]

    def compile_modules(self, net: torch.nn.Module) -> list[torch.nn.Module]:
        """The blocks ``--recipes.runtime.compile`` compiles one by one (regional compilation): the
        classes diffusers' ``_repeated_blocks`` names (a UNet's ``BasicTransformerBlock``s; not its
        ResNet blocks, whose every level has other shapes: one graph each)."""
        names = set(getattr(net, "_repeated_blocks", ()))
        return [m for m in net.modules() if type(m).__name__ in names]

    def latent_shape(self, pipe: DiffusionPipeline, resolution: int | None = None) -> tuple[int, int, int]:
        """(C, h, w) of one latent at ``resolution`` pixels (square; None: the pipeline's default,
        the network's ``sample_size`` latents)."""
        net = getattr(pipe, self.net)
        size = net.config.sample_size if resolution is None else resolution // pipe.vae_scale_factor
        return (net.config.in_channels, size, size)

    def latent_multiple(self, net_config: dict) -> int:
        """What a latent's side must be a multiple of for the network of config ``net_config`` (its
        config.json as a dict): a UNet halves it once per down block but the last."""
        return 2 ** max(len(net_config.get("block_out_channels", ())) - 1, 0)

    def text_widths(self, pipe: DiffusionPipeline) -> tuple[int, int]:
        """(width of ``encode``'s prompt embeddings, width the network's text input takes), from the
        loaded components' configs: the text encoders' hidden sizes, concatenated (SDXL: two), and
        the UNet's cross-attention width."""
        encoders = [m for n, m in pipe.components.items() if n.startswith("text_encoder") and m is not None]
        return sum(e.config.hidden_size for e in encoders), getattr(pipe, self.net).config.cross_attention_dim

    def latent_affine(self, vae_config, like: torch.Tensor) -> tuple:
        """(scale, shift) between the VAE's latents z and the latents the network sees, as this
        family's diffusers pipeline applies them: ``latents = (z - shift) * scale``, decoded from
        ``z = latents / scale + shift``; here scaling_factor and shift_factor (0 where the VAE has
        none) of ``vae_config`` (``pipe.vae.config``). Floats, or tensors that broadcast over
        ``like`` (B, C, h, w)."""
        return vae_config.scaling_factor, getattr(vae_config, "shift_factor", None) or 0.0

    def decode(self, pipe: DiffusionPipeline, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, h, w) as the network sees them -> images (B, 3, H, W) in [-1, 1]:
        ``latents / scale + shift`` (``latent_affine``) through the VAE."""
        vae = pipe.vae
        scale, shift = self.latent_affine(vae.config, latents)
        z = latents / scale + shift
        return vae.decode(z.to(vae.dtype)).sample.float().clamp(-1, 1)

    def encoder_dtype(self, pipe: DiffusionPipeline) -> torch.dtype:
        """dtype of ``encode``'s embeddings (every text encoder has the frozen dtype)."""
        return pipe.text_encoder.dtype

    def schedule(self, pipe: DiffusionPipeline, latent_shape: tuple[int, int, int]) -> Schedule:
        """The schedule the losses speak in, from the pipeline's scheduler config (a family whose
        timestep shift depends on the resolution fixes it for ``latent_shape`` here)."""
        return schedule_from_config(pipe.scheduler.config)

    def pipeline_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, h, w) in the layout the pipeline's ``latents=`` argument takes."""
        return latents

    def sample_kwargs(self) -> dict[str, object]:
        """Extra keyword arguments of the pipeline's ``__call__`` for a TLCM student (model cards)."""
        return {"guidance_scale": 0.0}

    def scheduler_mu(self, pipe: DiffusionPipeline, schedule: Schedule) -> float | None:
        """The ``mu`` the exported scheduler's ``set_timesteps`` takes to sample at the training
        grid of ``schedule`` (a resolution-dependent shift), or None where it takes none."""
        return None

    def comfy_refusal(self, net: torch.nn.Module) -> str | None:
        """None when stock ComfyUI loads the base network ``net`` with the kohya LoRA (the model
        card then gives ComfyUI steps), else the card's text saying why not and what works."""
        return f"Not covered for {self.name}: use diffusers."
