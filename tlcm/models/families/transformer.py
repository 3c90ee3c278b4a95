"""What the transformer families (SD3, FLUX) share: LoRA targets and block-output features."""

from __future__ import annotations

from abc import abstractmethod

import torch

from tlcm.models.families.base import Family

TRANSFORMER_LORA_TARGETS = (
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "add_q_proj",
    "add_k_proj",
    "add_v_proj",
    "to_add_out",
    "ff.net.0.proj",
    "ff.net.2",
    "ff_context.net.0.proj",
    "ff_context.net.2",
)
"""Attention (image and text streams) and MLP projections: the default targets of diffusers'
SD3 / FLUX DreamBooth-LoRA scripts."""
FEATURE_TAPS = 4
"""Blocks whose image-stream output feeds the teacher-feature discriminator (evenly spaced)."""


class TransformerFamily(Family):
    """A joint-attention transformer (MM-DiT): features are the image tokens after a few blocks of
    ``net.transformer_blocks`` (each returns (text tokens, image tokens)), laid back on the grid."""

    net = "transformer"
    lora_targets = TRANSFORMER_LORA_TARGETS
    scheduler = "TLCMFlowScheduler"

    def shard_modules(self, net):
        return [*net.transformer_blocks, *getattr(net, "single_transformer_blocks", [])]

    def compile_modules(self, net):
        """The transformer blocks (diffusers gives SD3 no ``_repeated_blocks``; FLUX's are these)."""
        return self.shard_modules(net)

    def latent_multiple(self, net_config):
        """The patch size: each token covers p x p latent pixels."""
        return int(net_config.get("patch_size", 1))

    @abstractmethod
    def token_grid(self, net: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
        """(h', w') of ``net``'s image tokens for latents x (B, C, h, w), row-major."""

    def _taps(self, net: torch.nn.Module) -> list[torch.nn.Module]:
        blocks = list(net.transformer_blocks)
        count = min(FEATURE_TAPS, len(blocks))
        return [blocks[round(i * (len(blocks) - 1) / max(count - 1, 1))] for i in range(count)]

    def feature_channels(self, net):
        return [net.config.num_attention_heads * net.config.attention_head_dim] * len(self._taps(net))

    def features(self, net, x, t, cond):
        """Image tokens (B, N, D) after each tapped block -> (B, D, h', w'); one full forward."""
        h, w = self.token_grid(net, x)

        def grid(output, x):
            tokens = output[1]
            return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)

        return self.tapped_features(net, x, t, cond, self._taps(net), grid)
