"""One conditioning object for every model family (SD1.5, SDXL, SD3, FLUX).

Losses and solvers never look inside: they batch, index and concatenate it, and the model family
(tlcm/models/families) turns it into its network's inputs. SD1.5 fills ``prompt_embeds`` only;
SDXL adds the pooled embeddings and the six micro-conditioning time ids; SD3 and FLUX the pooled
embeddings; a guidance-distilled model (FLUX.1-dev) also takes the guidance scale as an input. A
family whose network masks the prompt's padding tokens (PixArt's T5: ``encoder_attention_mask``)
fills ``attention_mask``; the shipped families leave it None.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch


@dataclass(frozen=True)
class Conditioning:
    """Text conditioning of a batch of B samples.

    prompt_embeds: (B, L, D) token embeddings (cross-attention / joint-attention input).
    pooled_embeds: (B, P) pooled text embeddings (SDXL ``text_embeds``, SD3 / FLUX
        ``pooled_projections``), or None.
    time_ids: (B, 6) SDXL micro-conditioning (original size, crop, target size), or None.
    guidance: (B,) the guidance scale a guidance-distilled network takes as an input (FLUX.1-dev's
        guidance embedding), or None (classifier-free guidance families). the guided teacher (``Guided``) then
        makes one call with ``with_guidance(w)`` instead of a cond + uncond batch.
    attention_mask: (B, L) the prompt's tokens 1, padding 0 (integer or bool), for a network that
        masks padding (``encoder_attention_mask``), or None. ``to(dtype)`` keeps its dtype.
    """

    prompt_embeds: torch.Tensor
    pooled_embeds: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None
    guidance: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None

    def _map(self, fn) -> Conditioning:
        return replace(
            self,
            **{
                f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                for f in fields(self)
            },
        )

    def __len__(self) -> int:
        return self.prompt_embeds.shape[0]

    def __getitem__(self, index) -> Conditioning:
        """Select samples (int tensor, slice or bool mask along the batch dimension)."""
        return self._map(lambda t: t[index])

    def repeat(self, n: int) -> Conditioning:
        """(B, ...) -> (n * B, ...) by tiling the whole batch n times."""
        return self._map(lambda t: t.repeat(n, *([1] * (t.dim() - 1))))

    def expand_to(self, batch: int) -> Conditioning:
        """Broadcast a batch of one to ``batch`` samples (the unconditional embedding, say)."""
        if len(self) == batch:
            return self
        if len(self) != 1:
            raise ValueError(f"cannot expand a conditioning of {len(self)} samples to {batch}")
        return self._map(lambda t: t.expand(batch, *t.shape[1:]))

    def to(self, *args: Any, **kwargs: Any) -> Conditioning:
        """``Tensor.to`` on every floating-point field (device and/or dtype); an integer or bool
        field (``attention_mask``) only moves to the device asked for, if any."""
        device = torch._C._nn._parse_to(*args, **kwargs)[0]  # what nn.Module.to reads its arguments with
        return self._map(
            lambda t: t.to(*args, **kwargs) if t.is_floating_point() else t.to(device or t.device)
        )

    def cat(self, other: Conditioning) -> Conditioning:
        """Concatenate two conditionings along the batch dimension (e.g. cond + uncond for CFG)."""
        values = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if (a is None) != (b is None):
                raise ValueError(f"cannot concatenate conditionings: only one has {f.name}")
            values[f.name] = None if a is None else torch.cat([a, b])
        return Conditioning(**values)

    def with_guidance(self, scale: float | torch.Tensor) -> Conditioning:
        """This conditioning with the network's guidance input set to ``scale``: one value for every
        sample, or a (B,) tensor of per-sample values (embedded-guidance families only)."""
        if self.guidance is None:
            raise ValueError("with_guidance: this conditioning has no guidance input (a CFG model)")
        value = torch.as_tensor(scale, dtype=self.guidance.dtype, device=self.guidance.device)
        return replace(self, guidance=value.expand_as(self.guidance).clone())
