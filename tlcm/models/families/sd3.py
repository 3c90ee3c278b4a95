"""Stable Diffusion 3 / 3.5: an SD3Transformer2DModel (MM-DiT), rectified flow, CFG."""

from __future__ import annotations

from tlcm.conditioning import Conditioning
from tlcm.models.families.transformer import TransformerFamily

SD3_MAX_SEQUENCE_LENGTH = 256
"""StableDiffusion3Pipeline's default T5 length (zeros when the folder has no T5)."""


class StableDiffusion3(TransformerFamily):
    """Two CLIP encoders (+ optional T5): joint-attention tokens and pooled projections; the
    transformer predicts the flow velocity v = eps - x0 at timestep sigma * T."""

    name = "sd3"
    tag = "sd3"
    pipeline_name = "StableDiffusion3Pipeline"
    components = (
        "transformer",
        "vae",
        "scheduler",
        "text_encoder",
        "tokenizer",
        "text_encoder_2",
        "tokenizer_2",
    )
    optional_components = ("text_encoder_3", "tokenizer_3")

    def encode(self, pipe, prompts, device, max_sequence_length, latent_shape):
        emb, neg, pooled, neg_pooled = pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            max_sequence_length=max_sequence_length or SD3_MAX_SEQUENCE_LENGTH,
        )
        return Conditioning(emb, pooled), Conditioning(neg, neg_pooled)

    def forward(self, net, x, t, cond):
        return net(
            hidden_states=x,
            encoder_hidden_states=cond.prompt_embeds,
            pooled_projections=cond.pooled_embeds,
            timestep=t,
            return_dict=False,
        )[0]

    def text_widths(self, pipe):
        """T5's width (CLIP's is padded to it; without T5: zeros as wide as the transformer takes)."""
        takes = pipe.transformer.config.joint_attention_dim
        t5 = pipe.text_encoder_3
        return (takes if t5 is None else t5.config.hidden_size), takes

    def token_grid(self, net, x):
        p = net.config.patch_size
        return x.shape[-2] // p, x.shape[-1] // p
