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
from transformers.utils import logging as transformers_logging

from tlcm.conditioning import Conditioning
from tlcm.diffusion.schedule import Schedule, schedule_from_config
from tlcm.errors import TLCMError

SUPPORTED = {
    "StableDiffusionPipeline": StableDiffusionPipeline,
    "StableDiffusionXLPipeline": StableDiffusionXLPipeline,
}


def _check_folder(path: Path) -> str:
    """Validate a diffusers folder; return its pipeline class name or raise a one-line TLCMError."""
    if not path.is_dir():
        raise TLCMError(
            f"model folder {path} does not exist: pass a local diffusers folder (--model.path DIR)"
        )
    index = path / "model_index.json"
    if not index.is_file():
        raise TLCMError(
            f"{path} is not a diffusers pipeline folder (no model_index.json): "
            "save one with pipe.save_pretrained(DIR) or pass the folder that holds model_index.json"
        )
    try:
        spec = json.loads(index.read_text())
    except json.JSONDecodeError as err:
        raise TLCMError(f"{index} is not valid JSON ({err}): re-save the pipeline") from err
    name = spec.get("_class_name", "?")
    if name not in SUPPORTED:
        raise TLCMError(f"{path} holds a {name}; supported: {', '.join(SUPPORTED)}")
    missing = [
        c for c in ("unet", "vae", "scheduler", "text_encoder", "tokenizer") if not (path / c).is_dir()
    ]
    if missing:
        raise TLCMError(
            f"{path} lacks the component folder(s) {', '.join(missing)} that model_index.json lists"
        )
    return name


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
        cls, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> BaseModel:
        """Load ``path`` (a local folder; no hub access), freeze every component, move to device."""
        path = Path(path)
        name = _check_folder(path)
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
        try:
            pipe = SUPPORTED[name].from_pretrained(path, dtype=dtype, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise TLCMError(f"could not load the diffusers folder {path}: {err}") from err
        pipe.set_progress_bar_config(disable=True)
        pipe.to(device)
        for module in pipe.components.values():
            if isinstance(module, torch.nn.Module):
                module.requires_grad_(False).eval()
        return cls(pipe=pipe, schedule=schedule_from_config(pipe.scheduler.config).to(device), path=path)

    @property
    def unet(self) -> torch.nn.Module:
        return self.pipe.unet

    @property
    def device(self) -> torch.device:
        return self.pipe.unet.device

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
        """The callable ``(x (B,C,h,w), t (B,), cond) -> model output (B,C,h,w)`` of ``unet``
        (default: the base UNet, i.e. the teacher)."""
        net = self.pipe.unet if unet is None else unet

        def call(x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
            return net(x, t, **cond.unet_kwargs()).sample

        return call

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, h, w) (scaled, as the UNet sees them) -> images (B, 3, H, W) in [-1, 1]."""
        vae = self.pipe.vae
        return vae.decode(latents / vae.config.scaling_factor).sample.clamp(-1, 1)
