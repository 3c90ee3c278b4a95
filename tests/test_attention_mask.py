"""``Conditioning.attention_mask`` (walkthrough 11: PixArt's T5 masks its prompt padding, and its
prediction was 0.53 off without the mask): a family that fills it gets it through every path, the
network's forward and its discriminator features, ``to(dtype)`` and the embedding cache keep its
integer dtype, and training passes it to every teacher and student call."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from contract_helpers import (
    BF16_TOLERANCE,
    TWO_PROCESS_BATCH,
    TWO_PROCESS_STEPS,
    assert_close_updates,
    assert_identical_runs,
    assert_same_run,
    assert_same_updates,
    gradients_of_every_update,
)
from counted_backend import COUNTED, graphs_called
from engine_helpers import interrupt_after, shrink
from family_helpers import registered_copy
from loss_cases import case_recipe, in_bf16
from masked_family import MASKED_CASES, MaskedSD

import tlcm.models.families.sd as sd
from recipes import PRESETS
from tlcm.conditioning import Conditioning
from tlcm.data.embeddings import EmbeddingStore
from tlcm.engine import Trainer, train
from tlcm.models.base import BaseModel
from tlcm.models.graphs import CallGraphs
from tlcm.toy import MINIATURE_SD

PROMPTS = ["a handwritten digit seven", "two"]


@pytest.fixture
def masked_dir(tiny_sd_dir, tmp_path):
    """The tiny SD pipeline as a ``MaskedSD`` family's folder (the family registered for the test)."""
    MaskedSD.seen = []
    with registered_copy(tiny_sd_dir, tmp_path / "masked", MaskedSD()) as folder:
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
    Trainer(recipe).run()
    assert len(MaskedSD.seen) > 2 and set(MaskedSD.seen) == {torch.int64}


MODES = {
    "checkpointing": {"gradient_checkpointing": True},
    "graphs": {"graphs": True},
    "compiled": {"compile": True, "compile_backend": COUNTED["aot_eager"], "gradient_checkpointing": True},
}
"""The RuntimeConfig fields of the modes whose gradients equal eager's bit for bit on the CPU (as in
tests/test_loss_contract.py)."""


@pytest.mark.parametrize("case", MASKED_CASES)
def test_a_masked_family_keeps_the_loss_contract_in_every_mode(case, masked_dir, tmp_path, monkeypatch):
    """The loss contract for a family that fills ``attention_mask``: gradient checkpointing, replayed
    no-grad calls and compiled blocks (aot_eager) give every gradient of every update of the eager
    run bit for bit, and a run interrupted mid-phase and resumed equals the uninterrupted one. The
    mask moves the prediction (test_the_mask_reaches_the_unet_and_its_features) and the prompts'
    lengths differ from step to step, so a mode that dropped the mask (a recomputed block called
    without it) or froze the first call's (a capture that kept it as a constant) gives other
    gradients."""
    replays = []
    replay = CallGraphs.__call__
    monkeypatch.setattr(CallGraphs, "__call__", lambda self, *a: replays.append(1) or replay(self, *a))
    eager = gradients_of_every_update(case_recipe(case, masked_dir, tmp_path / "eager"))
    for mode, runtime in MODES.items():
        recipe = case_recipe(case, masked_dir, tmp_path / mode)
        recipe = replace(recipe, runtime=replace(recipe.runtime, **runtime))
        on, graphs = graphs_called(lambda recipe=recipe: gradients_of_every_update(recipe))
        assert_same_updates(eager, on, f"{case}, {mode}")
        assert mode != "compiled" or graphs >= 2, (case, graphs)
    assert replays and set(MaskedSD.seen) == {torch.int64}, case
    first = Trainer(case_recipe(case, masked_dir, tmp_path / "resumed"))
    interrupt_after(first, 2)
    assert first.run().preempted
    train(case_recipe(case, masked_dir, tmp_path / "resumed"))
    assert_identical_runs(tmp_path / "eager", tmp_path / "resumed", case)


@pytest.fixture
def masked_miniature(tmp_path):
    """The UNet miniature as a ``MaskedSD`` family's folder (its text moves the output: DMD's fake -
    real is more than rounding, as in the contract's bf16 test)."""
    MaskedSD.seen = []
    with registered_copy(MINIATURE_SD, tmp_path / "masked-miniature", MaskedSD()) as folder:
        yield folder


@pytest.mark.parametrize("case", MASKED_CASES)
def test_a_masked_family_in_bf16_matches_fp32(case, masked_miniature, tmp_path):
    """Frozen weights bf16 with bf16 autocast (the CUDA default): the first update of every
    trainable set within the contract's ``BF16_TOLERANCE`` of fp32's, and every network call got
    the mask in its integer dtype."""
    firsts = {}
    for bf16 in (False, True):
        recipe = case_recipe(case, masked_miniature, tmp_path / str(bf16), steps=1)
        firsts[bf16] = gradients_of_every_update(in_bf16(recipe) if bf16 else recipe)
    assert set(MaskedSD.seen) == {torch.int64}, case  # bf16 frozen weights: the mask kept its dtype
    assert_close_updates(firsts[False], firsts[True], case, BF16_TOLERANCE)


@pytest.mark.slow
def test_a_masked_family_in_two_processes_equals_one(masked_dir, tmp_path):
    """torchrun 2 x 1 micro-batch (tests/dp_worker.py "masked": each process's prompts and their
    masks, through an embedding cache that rank 0 writes and rank 1 reads) against 1 process x 2
    accumulated micro-batches encoding in memory, for every masked case with DDP and for DMD under
    FSDP2 with gradient checkpointing: the logged terms to 1e-4 and the weights as the contract's
    two-process tests compare them (FSDP2: as a whole, to 1e-3)."""
    steps, batch = TWO_PROCESS_STEPS, TWO_PROCESS_BATCH
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    worker = Path(__file__).parent / "dp_worker.py"
    args = [torchrun, "--standalone", "--nproc_per_node", "2", str(worker), str(masked_dir)]
    args += [str(tmp_path / "two"), str(steps), str(batch), "masked"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for case in MASKED_CASES:
        one = tmp_path / "one" / case
        train(case_recipe(case, masked_dir, one, steps=steps, batch_size=batch, grad_accum=2))
        assert_same_run(one, tmp_path / "two" / case, case)
    one = tmp_path / "one" / "dmd"  # FSDP2 reduces in another order: the weights as a whole
    assert_same_run(one, tmp_path / "two" / "dmd-fsdp", "dmd under FSDP2", 1e-3, sharded=True)
