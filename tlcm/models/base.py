"""Load a local diffusers folder (SD1.5-style or SDXL) as the frozen base model of a distillation.

Everything goes through diffusers' own pipeline classes, so the miniature pipeline and a real
SD1.5/SDXL folder take exactly the same code path; prompt encoding is the pipeline's own
``encode_prompt`` (so SDXL's two encoders, pooled embeddings and zeroed negatives are right).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline
from diffusers.utils import logging as diffusers_logging
from safetensors import SafetensorError
from transformers.utils import logging as transformers_logging

from tlcm.checkpoint import nonfinite_paths
from tlcm.conditioning import Conditioning
from tlcm.diffusion.schedule import Schedule, schedule_from_config
from tlcm.errors import TLCMError

SUPPORTED = {
    "StableDiffusionPipeline": StableDiffusionPipeline,
    "StableDiffusionXLPipeline": StableDiffusionXLPipeline,
}

CLIP_VOCAB_FILES = ("tokenizer.json", "vocab.json")
"""A CLIP tokenizer folder holds one of these (transformers would silently build an empty one)."""


def check_model_folder(path: Path, flag: str = "--recipes.model.path") -> str:
    """Validate a diffusers folder without loading it; return its pipeline class name or raise a
    one-line TLCMError. ``flag``: the option that gave ``path`` (named in the fix; "--model" in the
    sample / evaluate / trajectory CLIs)."""
    path = Path(path)
    if not path.exists():
        raise TLCMError(f"model folder {path} does not exist: pass a local diffusers folder ({flag} DIR)")
    if not path.is_dir():
        raise TLCMError(
            f"model folder {path} is a file, not a folder: pass a local diffusers folder ({flag} DIR)"
        )
    index = path / "model_index.json"
    if not index.is_file():
        raise TLCMError(
            f"{path} is not a diffusers pipeline folder (no model_index.json): "
            "save one with pipe.save_pretrained(DIR) or pass the folder that holds model_index.json "
            f"to {flag}"
        )
    resave = "re-save the pipeline with pipe.save_pretrained(DIR)"
    try:
        spec = json.loads(index.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TLCMError(f"{index} is not valid JSON ({err}): {resave}") from err
    if not isinstance(spec, dict):
        kind = "an array" if isinstance(spec, list) else f"a {type(spec).__name__}"
        raise TLCMError(f'{index} holds {kind}, not a JSON object with "_class_name": {resave}')
    name = spec.get("_class_name")
    if not isinstance(name, str):
        raise TLCMError(
            f'{index}: "_class_name" must be a pipeline class name (a string), found {json.dumps(name)}: '
            f"{resave}"
        )
    if name not in SUPPORTED:
        raise TLCMError(f"{path} holds a {name}; supported: {', '.join(SUPPORTED)} (pass one to {flag})")
    listed = [k for k, v in spec.items() if isinstance(v, list) and len(v) == 2 and None not in v]
    components = dict.fromkeys(["unet", "vae", "scheduler", "text_encoder", "tokenizer", *listed])
    missing = [c for c in components if not (path / c).is_dir()]
    if missing:
        raise TLCMError(
            f"{path} lacks the component folder(s) {', '.join(missing)} that model_index.json lists: {resave}"
        )
    for c in components:
        if not any((path / c).iterdir()):
            raise TLCMError(f"component folder {path / c} is empty: {resave}")
        if c.startswith("tokenizer") and not any((path / c / f).is_file() for f in CLIP_VOCAB_FILES):
            raise TLCMError(
                f"{path / c} holds no vocabulary (none of {', '.join(CLIP_VOCAB_FILES)}): {resave}"
            )
    return name


_check_folder = check_model_folder  # the former private name

FROZEN_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def frozen_dtype(name: str, device: str | torch.device, autocast: bool) -> torch.dtype:
    """The dtype of the frozen weights for ModelConfig.frozen_dtype ``name``: "auto" is bf16 on CUDA
    when the step autocasts (``autocast``), fp32 otherwise (CPU, or mixed_precision "no")."""
    if name == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" and autocast else torch.float32
    return FROZEN_DTYPES[name]


def _vae_upcast(path: Path) -> bool:
    """Whether the VAE of the folder ``path`` asks to stay fp32 (``force_upcast``, diffusers'
    default True: SDXL's VAE overflows in fp16)."""
    try:
        config = json.loads((path / "vae" / "config.json").read_text())
    except (OSError, ValueError):
        return True
    return bool(config.get("force_upcast", True)) if isinstance(config, dict) else True


def scheduler_timesteps(path: Path) -> int:
    """T (training timesteps) of a checked diffusers folder's scheduler, read from its
    scheduler_config.json without loading anything (diffusers' default 1000)."""
    try:
        config = json.loads((Path(path) / "scheduler" / "scheduler_config.json").read_text())
    except (OSError, ValueError):
        return 1000  # the load reports the broken scheduler folder
    betas = config.get("trained_betas") if isinstance(config, dict) else None
    return len(betas) if betas else int(config.get("num_train_timesteps", 1000))


def _weights_file(folder: Path, tensor: str) -> Path:
    """The weights file of a component ``folder`` that holds ``tensor`` (the folder when unknown)."""
    for index in folder.glob("*.index.json"):  # sharded weights: the index maps tensors to files
        try:
            shard = json.loads(index.read_text()).get("weight_map", {}).get(tensor)
        except (OSError, ValueError, AttributeError):
            shard = None
        if shard:
            return folder / shard
    files = (
        sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")) if folder.is_dir() else []
    )
    return files[0] if len(files) == 1 else folder


def check_finite_weights(pipe: DiffusionPipeline, path: Path) -> None:
    """Raise a one-line TLCMError naming the component and file when a module of ``pipe`` (loaded
    from ``path``) holds NaN/inf weights: a corrupted download, not a training problem. One host
    sync for all tensors of a component."""
    for component, module in pipe.components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        named = {
            n: t
            for n, t in (*module.named_parameters(), *module.named_buffers())
            if t.is_floating_point() and t.numel()
        }
        bad = nonfinite_paths(named)
        if bad:
            where = _weights_file(path / component, bad[0])
            raise TLCMError(
                f"{where}: the {component} weights hold NaN/inf values in {len(bad)} of {len(named)} tensors "
                f"(first: {bad[0]}): the file is corrupted; re-download or re-save the pipeline"
            )


@dataclass
class BaseModel:
    """A frozen diffusers pipeline plus the schedule the losses speak in.

    pipe: the diffusers pipeline (its UNet is the teacher; students wrap it with adapters).
    schedule: VP or flow schedule built from the pipeline's scheduler config.
    """

    pipe: DiffusionPipeline
    schedule: Schedule
    path: Path

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        flag: str = "--recipes.model.path",
    ) -> BaseModel:
        """Load ``path`` (a local folder; no hub access), freeze every component, move to device.

        ``dtype``: the frozen weights' dtype (UNet, text encoders, VAE); a VAE whose config says
        ``force_upcast`` stays fp32. Adapters added later are fp32 (Student).

        A missing or malformed folder, a failed load or NaN/inf weights raise a one-line TLCMError;
        ``flag`` is the option that gave ``path`` ("--model" in the sample / evaluate CLIs).
        """
        path = Path(path)
        name = check_model_folder(path, flag)
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
        try:
            dtypes = {"default": dtype, **({"vae": torch.float32} if _vae_upcast(path) else {})}
            pipe = SUPPORTED[name].from_pretrained(path, dtype=dtypes, local_files_only=True)
        except (OSError, ValueError, KeyError, SafetensorError) as err:
            detail = " ".join(str(err).split())
            raise TLCMError(
                f"could not load the diffusers folder {path} ({flag}): {detail} (re-download or re-save it)"
            ) from err
        pipe.set_progress_bar_config(disable=True)
        pipe.to(device)
        check_finite_weights(pipe, path)
        for module in pipe.components.values():
            if isinstance(module, torch.nn.Module):
                module.requires_grad_(False).eval()
        return cls(pipe=pipe, schedule=schedule_from_config(pipe.scheduler.config).to(device), path=path)

    @property
    def unet(self) -> torch.nn.Module:
        return self.pipe.unet

    @property
    def device(self) -> torch.device:
        """The UNet's device (its first parameter's: diffusers' ``.device`` walks every module,
        ~5 ms on SD's UNet, too slow for once per micro-batch)."""
        return next(self.pipe.unet.parameters()).device

    @property
    def is_sdxl(self) -> bool:
        return isinstance(self.pipe, StableDiffusionXLPipeline)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one latent at the pipeline's default resolution."""
        size = self.pipe.unet.config.sample_size
        return (self.pipe.unet.config.in_channels, size, size)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[Conditioning, Conditioning]:
        """Prompts (B,) -> (conditional, unconditional) Conditioning of batch B each."""
        device = self.device
        if self.is_sdxl:
            emb, neg, pooled, neg_pooled = self.pipe.encode_prompt(
                prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=True
            )
            size = self.latent_shape[1] * self.pipe.vae_scale_factor
            ids = torch.tensor([[size, size, 0, 0, size, size]], device=device, dtype=emb.dtype)
            ids = ids.expand(len(prompts), 6)
            return Conditioning(emb, pooled, ids), Conditioning(neg, neg_pooled, ids)
        emb, neg = self.pipe.encode_prompt(
            prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=True
        )
        return Conditioning(emb), Conditioning(neg)

    def denoiser(self, unet: torch.nn.Module | None = None):
        """The callable ``(x (B,C,h,w), t (B,), cond) -> model output (B,C,h,w), fp32`` of ``unet``
        (default: the base UNet, i.e. the teacher). Inputs are cast to the UNet's weight dtype (bf16
        frozen weights run outside autocast too); the output is fp32, so the losses' maths is."""
        net = self.pipe.unet if unet is None else unet
        dtype = next(net.parameters()).dtype  # the frozen weights' (conv_in); not net.dtype: a module walk

        def call(x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
            return net(x.to(dtype), t, **cond.to(dtype).unet_kwargs()).sample.float()

        return call

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, h, w) (scaled, as the UNet sees them) -> images (B, 3, H, W) in [-1, 1]."""
        vae = self.pipe.vae
        return vae.decode((latents / vae.config.scaling_factor).to(vae.dtype)).sample.float().clamp(-1, 1)
