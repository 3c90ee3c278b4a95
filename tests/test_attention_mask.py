"""``Conditioning.attention_mask`` (walkthrough 11: PixArt's T5 masks its prompt padding, and its
prediction was 0.53 off without the mask): a family that fills it gets it through every path, the
network's forward and its discriminator features, ``to(dtype)`` and the embedding cache keep its
integer dtype, and training passes it to every teacher and student call."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from diffusers import StableDiffusionPipeline
from engine_helpers import shrink
from family_helpers import registered_copy

import tlcm.models.families.sd as sd
from recipes import PRESETS
from tlcm.conditioning import Conditioning
from tlcm.data.embeddings import EmbeddingStore
from tlcm.models.base import BaseModel
from tlcm.models.families.sd import StableDiffusion

PROMPTS = ["a handwritten digit seven", "two"]


class _MaskedPipeline(StableDiffusionPipeline):
    pass


class _Masked(StableDiffusion):
    """SD whose conditioning carries the tokenizer's attention mask (padding 0), as a T5 family's
    would; ``seen`` records, for each network call, whether the mask came with it."""

    name = tag = "masked-sd"
    pipeline_name = "MaskedSDPipeline"
    seen: list[bool] = []

    @property
    def pipeline(self):
        return _MaskedPipeline

    def encode(self, pipe, prompts, device, max_sequence_length, latent_shape):
        cond, uncond = super().encode(pipe, prompts, device, max_sequence_length, latent_shape)

        def mask(texts: list[str]) -> torch.Tensor:
            length = pipe.tokenizer.model_max_length
            tokens = pipe.tokenizer(texts, padding="max_length", max_length=length, truncation=True)
            return torch.tensor(tokens.attention_mask, device=device)

        blank = [""] * len(prompts)
        return replace(cond, attention_mask=mask(prompts)), replace(uncond, attention_mask=mask(blank))

    def forward(self, net, x, t, cond):
        _Masked.seen.append(cond.attention_mask is not None)
        return super().forward(net, x, t, cond)


@pytest.fixture
def masked_dir(tiny_sd_dir, tmp_path):
    """The tiny SD pipeline as a ``_Masked`` family's folder (the family registered for the test)."""
    _Masked.seen = []
    with registered_copy(tiny_sd_dir, tmp_path / "masked", _Masked()) as folder:
        yield folder


def test_to_casts_the_embeddings_and_keeps_the_masks_dtype_and_batch_ops_carry_it():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    cond = Conditioning(torch.randn(2, 3, 4), attention_mask=mask)
    for half in (cond.to(torch.bfloat16), cond.to("cpu", torch.bfloat16), cond.to(dtype=torch.bfloat16)):
        assert half.prompt_embeds.dtype == torch.bfloat16 and half.attention_mask.dtype == torch.int64
        assert torch.equal(half.attention_mask, mask)
    both = cond.cat(cond[1:].expand_to(1).repeat(2))
    assert torch.equal(both.attention_mask, torch.cat([mask, mask[1:], mask[1:]]))
    with pytest.raises(ValueError, match="only one has attention_mask"):
        cond.cat(Conditioning(torch.randn(2, 3, 4)))


def test_the_mask_reaches_the_unet_and_its_features(masked_dir, monkeypatch):
    """Padding masked: another prediction than unmasked (an all-ones mask: the same as none); the
    block-by-block discriminator features equal the UNet's own forward's (hooks), mask included."""
    base = BaseModel.load(masked_dir)
    cond, _ = base.encode(PROMPTS)
    assert (
        cond.attention_mask.dtype == torch.int64
        and 0 < int(cond.attention_mask.sum()) < cond.attention_mask.numel()
    )
    x, t = (
        torch.randn(2, *base.latent_shape, generator=torch.Generator().manual_seed(0)),
        torch.tensor([700, 250]),
    )
    call, family, net = base.denoiser(), base.family, base.net
    with torch.no_grad():
        masked, plain = call(x, t, cond), call(x, t, replace(cond, attention_mask=None))
        ones = call(x, t, replace(cond, attention_mask=torch.ones_like(cond.attention_mask)))
        ours = family.features(net, x, t, cond)
        unmasked = family.features(net, x, t, replace(cond, attention_mask=None))
        monkeypatch.setattr(sd, "is_sharded", lambda net: True)  # the hooks' path: a full forward
        theirs = family.features(net, x, t, cond)
    assert (masked - plain).abs().max() > 1e-3
    torch.testing.assert_close(ones, plain)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)
    assert max((a - c).abs().max() for a, c in zip(ours, unmasked, strict=True)) > 1e-3


def test_the_embedding_cache_keeps_the_mask_in_its_dtype(masked_dir, tmp_path):
    """Stored in float16 (the embeddings rounded), read back from disk by a second store (no
    encode): the masks unchanged, int64, the unconditional one the empty prompt's."""
    base = BaseModel.load(masked_dir)
    cond, uncond = base.encode(PROMPTS)
    first = EmbeddingStore(base, PROMPTS, tmp_path / "emb", dtype="float16")
    again = EmbeddingStore(base, PROMPTS, tmp_path / "emb", dtype="float16")
    for store in (first, again):
        got = store.get(torch.tensor([1, 0]))
        assert got.attention_mask.dtype == torch.int64 and got.prompt_embeds.dtype == torch.float32
        assert torch.equal(got.attention_mask, cond.attention_mask[[1, 0]])
        assert torch.equal(store.uncond.attention_mask, uncond.attention_mask[:1])
    assert again.encode_calls == 0


def test_training_passes_the_mask_to_every_network_call(masked_dir, tmp_path):
    recipe = shrink(PRESETS["mlcd"], masked_dir, tmp_path / "run", steps=1)
    recipe = replace(recipe, data=replace(recipe.data, embedding_cache=tmp_path / "emb"))
    from tlcm.engine import Trainer

    Trainer(recipe).run()
    assert len(_Masked.seen) > 2 and all(_Masked.seen)
