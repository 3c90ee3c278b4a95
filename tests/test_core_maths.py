"""Small behaviours of the core that no other test file owns: the auxiliary optimizer leaves frozen
parameters alone and its settings are checked at their documented edges; a .jsonl prompt is cleaned
like a .txt one."""

from __future__ import annotations

import json

import pytest
import torch

from tlcm.data.prompts import load_prompts
from tlcm.losses.auxiliary import AuxOptimizer, check_settings


def test_aux_optimizer_leaves_frozen_parameters_alone_under_weight_decay():
    """A fake score's or discriminator's frozen weights (requires_grad False: the shared base under
    a LoRA) are no parameters of the AuxOptimizer: after an update with weight decay 0.5 and lr 0.1
    the trainable one moves (decoupled decay 2 (1 - 0.05) = 1.9, plus the Adam step of its zero
    gradient, 0) while the frozen one keeps its value 2 exactly and gets no gradient."""
    trainable = torch.nn.Parameter(torch.tensor([2.0]))
    frozen = torch.nn.Parameter(torch.tensor([2.0]), requires_grad=False)
    opt = AuxOptimizer([trainable, frozen], lr=0.1, weight_decay=0.5)
    assert opt.params == [trainable]
    opt.step(lambda c: 0 * (trainable * frozen).sum(), [None])
    torch.testing.assert_close(trainable.detach(), torch.tensor([1.9]))
    assert frozen.item() == 2.0 and frozen.grad is None


def test_jsonl_prompts_are_cleaned_like_txt_lines(tmp_path):
    """The same prompts written as .txt lines and as .jsonl "prompt" fields, each with surrounding
    spaces, a tab and a zero-width space: both files load to the same stripped prompts (one prompt
    text, one embedding, whatever the file format)."""
    padded = ["  a red digit 3\t", "\u200ba blue digit 7 ", "a digit 1"]
    txt, jsonl = tmp_path / "p.txt", tmp_path / "p.jsonl"
    txt.write_text("".join(p + "\n" for p in padded), encoding="utf-8")
    jsonl.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in padded), encoding="utf-8")
    expected = ["a red digit 3", "a blue digit 7", "a digit 1"]
    assert load_prompts(txt) == expected
    assert load_prompts(jsonl) == expected


def test_aux_settings_accept_their_edges_and_refuse_past_them():
    """The fake score's / discriminator's AdamW settings: betas in [0, 1) (beta = 1 would freeze
    Adam's moment at its start, 0 for the second: a first update of g / eps), weight decay >= 0,
    max_grad_norm >= 0 where 0 means no clipping. The edges 0 pass; beta 1 and negatives do not."""
    check_settings("fake", (0.0, 0.99), 0.0, 0.0)
    check_settings("disc", (0.0, 0.0), 0.0, 1.0)
    for betas in [(0.0, 1.0), (1.0, 0.99), (-0.1, 0.99)]:
        with pytest.raises(ValueError, match=r"fake_betas must be two values in \[0, 1\)"):
            check_settings("fake", betas, 0.0, 1.0)
    for decay, clip in [(-0.01, 1.0), (0.0, -1.0)]:
        with pytest.raises(ValueError, match="need disc_weight_decay >= 0, disc_max_grad_norm >= 0"):
            check_settings("disc", (0.0, 0.99), decay, clip)
