"""Load a local diffusers folder (SD1.5, SDXL, SD3 / SD3.5, FLUX.1) as the frozen base model of a
distillation.

Everything goes through diffusers' own pipeline classes, so the miniature pipeline and a real
folder take exactly the same code path; the folder's pipeline class picks the model family
(tlcm/models/families), which encodes prompts with the pipeline's own ``encode_prompt``, calls
the denoising network and decodes latents.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from safetensors import SafetensorError
from torch.utils.checkpoint import checkpoint
from transformers.utils import logging as transformers_logging

from tlcm.checkpoint import nonfinite_paths
from tlcm.conditioning import Conditioning
from tlcm.diffusion.schedule import Schedule
from tlcm.errors import TLCMError
from tlcm.models.families import FAMILIES, Family
from tlcm.models.folders import check_model_folder
from tlcm.models.graphs import CallGraphs

DECODE_PIXELS = 1024 * 1024
"""Output pixels per VAE call of ``BaseModel.decode``: one 1024 px image (SDXL, SD3, FLUX), four at
512 px, a whole miniature batch (32 px) at once. SDXL's VAE decoder keeps ~12.6 GiB of activations
per 1024 px image for the backward under bf16 autocast (25 GiB in fp32): measured on the CPU at
256 px with a random-weight SDXL-config VAE (saved-tensor hooks), scaled by the pixel count."""

FROZEN_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def frozen_dtype(name: str, device: str | torch.device, autocast: bool) -> torch.dtype:
    """The dtype of the frozen weights for ModelConfig.frozen_dtype ``name``: "auto" is bf16 on CUDA
    when the step autocasts (``autocast``), fp32 otherwise (CPU, or mixed_precision "no")."""
    if name == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" and autocast else torch.float32
    return FROZEN_DTYPES[name]


def allow_tf32(device: str | torch.device) -> None:
    """On CUDA, let fp32 matmuls and cuDNN convolutions use TF32 tensor cores (PyTorch's default is
    full fp32 matmuls): what stays fp32 beside bf16 frozen weights (fp32 frozen weights, a VAE that
    asks for fp32, anything outside autocast) runs at the TF32 rate (H100 / H200: ~7x their fp32
    rate) with ~1e-3 relative rounding of the inputs. Every entry point (train, sample, evaluate,
    the trajectory cache, export) loads its model through ``BaseModel.load``, which calls this;
    CPU runs are untouched (their fp32 results stay bit-identical)."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def check_components(pipe: DiffusionPipeline, family: Family, path: Path) -> None:
    """Raise a one-line TLCMError when the loaded components of the folder ``path`` do not fit each
    other (each would fail only where first used, e.g. the phase-end sample grid after training):
    the VAE's latent channels vs the network's input, the prompt embeddings' width vs the width the
    network's text input takes."""
    net = family.net
    channels, takes = pipe.vae.config.latent_channels, family.latent_shape(pipe)[0]
    if channels != takes:
        raise TLCMError(
            f"{path}/vae makes {channels}-channel latents but {path}/{net} takes {takes}-channel ones: "
            f"put the VAE this {net} was trained with in {path}/vae"
        )
    width, attends = family.text_widths(pipe)
    if width != attends:
        raise TLCMError(
            f"{path}: the text encoder(s) make {width}-wide prompt embeddings but {path}/{net} attends "
            f"to {attends}-wide ones: put the text encoder(s) this {net} was trained with in {path}"
        )


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
    """A frozen diffusers pipeline, its model family and the schedule the losses speak in.

    pipe: the diffusers pipeline (its denoising network ``net`` is the teacher; students wrap it
        with adapters).
    schedule: VP or flow schedule built from the pipeline's scheduler config (by the family).
    family: how to encode, denoise, decode and export this pipeline (tlcm/models/families).
    latent_shape: (C, h, w) of one training latent (the resolution chosen at load).
    max_sequence_length: T5 tokens of the prompt encoding (None: the pipeline's default).
    """

    pipe: DiffusionPipeline
    schedule: Schedule
    path: Path
    family: Family
    latent_shape: tuple[int, int, int]
    max_sequence_length: int | None = None
    evaluations: int = 0
    """Denoiser evaluations so far, in samples: every call of a ``denoiser()`` callable adds its
    batch (a CFG call on 2B adds 2B), read from the shape on the host (no device sync). Teacher,
    student, auxiliary adapters and full copies all call through ``denoiser()``; the functional
    calls of EMA targets / DPO references add theirs (``functional_denoiser(counter=base)``). Not
    counted: the teacher-feature discriminator's partial passes (``family.features``: the encoder
    only), the VAE, rewards; gradient checkpointing's recompute in the backward (it re-runs blocks
    inside the network, not this call). The engine reports its training steps' share as
    ``denoiser_evals``."""
    graphs: CallGraphs | None = None
    """Set (``Student.use_graphs``): ``denoiser()`` calls without gradients are captured once per
    input shape and replayed (tlcm/models/graphs.py; ``--recipes.runtime.graphs``)."""

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        flag: str = "--recipes.model.path",
        resolution: int | None = None,
        max_sequence_length: int | None = None,
        net_on_cpu: bool = False,
    ) -> BaseModel:
        """Load ``path`` (a local folder; no hub access), freeze every component, move to device
        (``net_on_cpu``: all but the denoising network, for FSDP2 to shard it from the CPU).

        ``dtype``: the frozen weights' dtype (denoiser, text encoders, VAE); a VAE whose config says
        ``force_upcast`` stays fp32. Adapters added later are fp32 (Student). ``resolution``:
        pixels of the training images (None: the pipeline's default).

        A missing or malformed folder, a failed load, components that do not fit each other
        (``check_components``) or NaN/inf weights raise a one-line TLCMError;
        ``flag`` is the option that gave ``path`` ("--model" in the sample / evaluate CLIs).
        """
        path = Path(path)
        family = FAMILIES[check_model_folder(path, flag)]
        allow_tf32(device)
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
        try:
            pipe = family.load(path, dtype)  # precision per component: the family's
        except (OSError, ValueError, KeyError, SafetensorError) as err:
            detail = " ".join(str(err).split())
            raise TLCMError(
                f"could not load the diffusers folder {path} ({flag}): {detail} (re-download or re-save it)"
            ) from err
        pipe.set_progress_bar_config(disable=True)
        check_components(pipe, family, path)
        for name, module in pipe.components.items():
            if isinstance(module, torch.nn.Module) and not (net_on_cpu and name == family.net):
                module.to(device)
        check_finite_weights(pipe, path)
        for module in pipe.components.values():
            if isinstance(module, torch.nn.Module):
                module.requires_grad_(False).eval()
        shape = family.latent_shape(pipe, resolution)
        schedule = family.schedule(pipe, shape).to(device)
        return cls(pipe, schedule, path, family, shape, max_sequence_length)

    @property
    def net(self) -> torch.nn.Module:
        """The denoising network (UNet or transformer), shared by the teacher and LoRA students."""
        return getattr(self.pipe, self.family.net)

    @property
    def device(self) -> torch.device:
        """The network's device (its first parameter's: diffusers' ``.device`` walks every module,
        ~5 ms on SD's UNet, too slow for once per micro-batch)."""
        return next(self.net.parameters()).device

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[Conditioning, Conditioning]:
        """Prompts (B,) -> (conditional, unconditional) Conditioning of batch B each."""
        return self.family.encode(
            self.pipe, prompts, self.device, self.max_sequence_length, self.latent_shape
        )

    def denoiser(self, net: torch.nn.Module | None = None):
        """The callable ``(x (B,C,h,w), t (B,), cond) -> model output (B,C,h,w), fp32`` of ``net``
        (default: the base network, i.e. the teacher). Inputs are cast to the net's weight dtype
        (bf16 frozen weights run outside autocast too); the output is fp32, so the losses' maths is.
        Each call adds its batch to ``evaluations``; with ``graphs`` set, a call without gradients
        is replayed from its capture."""
        net = self.net if net is None else net
        dtype = next(net.parameters()).dtype  # the frozen weights' (the first layer); not a module walk
        family = self.family

        def forward(x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
            return family.forward(net, x.to(dtype), t, cond.to(dtype)).float()

        def call(x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
            self.evaluations += x.shape[0]  # a host int: no sync
            if self.graphs is not None and not torch.is_grad_enabled():
                return self.graphs(net, forward, x, t, cond)
            return forward(x, t, cond)

        return call

    def autocast(self) -> AbstractContextManager:
        """Autocast to the frozen weights' dtype on their device when it is bf16 / fp16 (the fp32
        LoRA branch, which peft would run in fp32, and a fp32 VAE then compute in it, as in the
        training step); with fp32 weights (CPU) nothing changes: no context, results bit-identical.
        Sampling, sample grids, evaluation and ``decode`` run under it."""
        dtype = next(self.net.parameters()).dtype  # the frozen weights' (the first layer)
        if dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, h, w) (as the network sees them) -> images (B, 3, H, W) in [-1, 1], under
        ``autocast``, in slices of at most ``DECODE_PIXELS`` output pixels per VAE call. With
        gradients each slice's decode is checkpointed: its activations are freed after its forward
        and recomputed in the backward, so those of one slice are alive at a time. A batch that fits
        one slice is one plain call (the miniature's batches: bit-identical to an unsliced decode)."""
        call = partial(self.family.decode, self.pipe)  # one VAE call
        f = self.pipe.vae_scale_factor
        size = max(1, DECODE_PIXELS // (latents.shape[-2] * latents.shape[-1] * f * f))
        with self.autocast():
            if len(latents) <= size:
                return call(latents)
            if torch.is_grad_enabled() and latents.requires_grad:
                call = partial(checkpoint, call, use_reentrant=False)
            return torch.cat([call(z) for z in latents.split(size)])
