"""Conditioning: the one object that carries SD1.5 and SDXL text conditioning through losses."""

import pytest
import torch

from tlcm.conditioning import Conditioning
from tlcm.models.families.sd import unet_kwargs


def test_cat_index_expand_and_unet_kwargs():
    a = Conditioning(torch.ones(2, 3, 4), torch.ones(2, 5), torch.zeros(2, 6))
    null = Conditioning(torch.zeros(1, 3, 4), torch.zeros(1, 5), torch.ones(1, 6))
    both = a.cat(null.expand_to(2))
    assert len(both) == 4 and both.prompt_embeds[2:].abs().sum() == 0 and both.time_ids[:2].sum() == 0
    assert torch.equal(both[torch.tensor([0, 3])].pooled_embeds[:, 0], torch.tensor([1.0, 0.0]))
    kwargs = unet_kwargs(a)
    assert set(kwargs) == {"encoder_hidden_states", "added_cond_kwargs"}
    assert kwargs["added_cond_kwargs"]["time_ids"].shape == (2, 6)
    assert set(unet_kwargs(Conditioning(torch.ones(2, 3, 4)))) == {"encoder_hidden_states"}
    assert len(a.repeat(3)) == 6


def test_mismatched_conditionings_are_refused():
    with pytest.raises(ValueError, match="pooled_embeds"):
        Conditioning(torch.ones(1, 3, 4)).cat(
            Conditioning(torch.ones(1, 3, 4), torch.ones(1, 5), torch.ones(1, 6))
        )
    with pytest.raises(ValueError, match="expand"):
        Conditioning(torch.ones(2, 3, 4)).expand_to(3)


def test_repeat_tiles_the_whole_batch_in_order():
    """``repeat(2)`` of prompts (a, b) is (a, b, a, b), every field alike: DPO scores
    cat([x_w, x_l]) with ``cond.repeat(2)``, so row i and row B + i must be the same prompt
    (interleaved, (a, a, b, b), the losers would be paired with other prompts)."""
    rows = torch.arange(2.0)
    cond = Conditioning(rows.view(2, 1, 1).expand(2, 3, 4).clone(), pooled_embeds=rows.view(2, 1) * 10)
    tiled = cond.repeat(2)
    assert tiled.prompt_embeds[:, 0, 0].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert tiled.pooled_embeds[:, 0].tolist() == [0.0, 10.0, 0.0, 10.0]
    assert tiled.prompt_embeds.shape == (4, 3, 4)


@pytest.mark.parametrize("field", ["pooled_embeds", "time_ids", "guidance"])
def test_cat_refuses_an_optional_field_that_only_one_side_has_either_way(field):
    """Concatenating (cond; uncond) where only ONE side has an optional field (an SDXL prompt with
    an uncond encoded without pooled embeddings, say) is refused by name, whichever side lacks it;
    torch.cat would otherwise fail on None deep inside a loss (or a field would be dropped)."""
    extra = {"pooled_embeds": torch.ones(1, 5), "time_ids": torch.ones(1, 6), "guidance": torch.ones(1)}
    full = Conditioning(torch.ones(1, 3, 4), **{field: extra[field]})
    bare = Conditioning(torch.zeros(1, 3, 4))
    for a, b in ((full, bare), (bare, full)):
        with pytest.raises(ValueError, match=field):
            a.cat(b)
    assert len(full.cat(full)) == 2 and len(bare.cat(bare)) == 2
