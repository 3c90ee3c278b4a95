"""The text-embedding store (tlcm/data/embeddings.py): canonical chunks give the bits of up-front
encoding whatever the request order; the disk cache misses then hits, fills in partial caches,
re-encodes a corrupted chunk and refuses another text encoder, a malformed manifest or a failed
write in one line; the engine trains with it."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch
from device_discipline import DeviceDiscipline
from engine_helpers import shrink
from safetensors import SafetensorError
from safetensors.torch import load_file
from tiny_pipelines import tiny_sd_pipeline

import tlcm.files
from recipes import PRESETS
from tlcm.conditioning import Conditioning
from tlcm.data import embeddings
from tlcm.data.embeddings import EmbeddingStore
from tlcm.engine import Trainer
from tlcm.errors import TLCMError
from tlcm.models.base import BaseModel
from tlcm.toy.tiny import tiny_clip_tokenizer

PROMPTS = [
    f"a {c} digit {i}" for i, c in enumerate("red green blue black white gold pink gray teal sand".split())
]
C = 4  # chunks: prompts 0-3, 4-7, 8-9


@pytest.fixture(scope="module")
def sd(tiny_sd_dir) -> BaseModel:
    return BaseModel.load(tiny_sd_dir)


@pytest.fixture(scope="module")
def sdxl(tiny_sdxl_dir) -> BaseModel:
    return BaseModel.load(tiny_sdxl_dir)


def _equal(a: Conditioning, b: Conditioning) -> bool:
    pairs = [(a.prompt_embeds, b.prompt_embeds), (a.pooled_embeds, b.pooled_embeds), (a.time_ids, b.time_ids)]
    return all((x is None and y is None) or (x.dtype == y.dtype and torch.equal(x, y)) for x, y in pairs)


def _up_front(base: BaseModel, prompts: list[str], chunk: int) -> tuple[Conditioning, Conditioning]:
    """Today's encoding, chunk by chunk: (cond (N, ...), uncond (1, ...) of chunk 0)."""
    parts = [base.encode(prompts[i : i + chunk]) for i in range(0, len(prompts), chunk)]
    cond = parts[0][0]
    for part, _ in parts[1:]:
        cond = cond.cat(part)
    return cond, parts[0][1][:1]


@pytest.mark.parametrize("model", ["sd", "sdxl"])
@pytest.mark.parametrize("cached", [False, True])
def test_embeddings_are_the_bits_of_up_front_encoding_in_any_order(model, cached, request, tmp_path):
    base = request.getfixturevalue(model)
    cond, uncond = _up_front(base, PROMPTS, C)
    folder = tmp_path / "emb" if cached else None
    for _ in range(2):  # with a folder: the second store reads the files the first wrote
        store = EmbeddingStore(base, PROMPTS, folder, chunk_size=C)
        assert _equal(store.uncond, uncond)
        for order in ([9, 0, 5, 5, 2], [3], list(range(10))):
            assert _equal(store.get(torch.tensor(order)), cond[torch.tensor(order)]), order
    assert (store.get(torch.tensor([0])).pooled_embeds is not None) == (model == "sdxl")
    # one chunk holding every prompt (the miniature's 40 < 64) is exactly today's one encode call
    today, today_uncond = base.encode(PROMPTS)
    whole = EmbeddingStore(base, PROMPTS, folder and tmp_path / "whole")
    assert _equal(whole.get(torch.arange(10)), today) and _equal(whole.uncond, today_uncond[:1])


def test_cache_misses_then_hits_and_partial_caches_fill_in(sd, tmp_path, monkeypatch):
    monkeypatch.setattr(embeddings, "OPEN_FILES", 1)  # chunk files re-opened as the LRU turns over
    folder = tmp_path / "emb"
    first = EmbeddingStore(sd, PROMPTS, folder, chunk_size=C)  # chunk 0 (the unconditional embedding)
    first.get(torch.tensor([9, 1]))  # + chunk 2
    assert first.encode_calls == 2
    assert len(json.loads((folder / "manifest.json").read_text())["chunks"]) == 2
    second = EmbeddingStore(sd, PROMPTS, folder, chunk_size=C)
    everything = second.get(torch.arange(10))
    assert second.encode_calls == 1  # chunk 1 only
    third = EmbeddingStore(sd, PROMPTS, folder, chunk_size=C)
    assert _equal(third.get(torch.arange(10)), everything) and third.encode_calls == 0
    assert _equal(third.get(torch.tensor([9, 0, 5, 1])), everything[torch.tensor([9, 0, 5, 1])])
    # another prompt file reuses the chunks it shares (content-addressed): 0-3 and 4-7 hit, 8-10 miss
    more = EmbeddingStore(sd, [*PROMPTS[:8], "x", "y", "z"], folder, chunk_size=C)
    assert _equal(more.get(torch.arange(8)), everything[:8]) and more.encode_calls == 0
    more.get(torch.tensor([10]))
    assert more.encode_calls == 1
    # a process that does not write (rank > 0) reads the cache, encodes the rest in memory only
    reader = EmbeddingStore(sd, [*PROMPTS, "new"], folder, chunk_size=C, writable=False)
    reader.get(torch.tensor([10, 3]))
    assert reader.encode_calls == 1 and len(json.loads((folder / "manifest.json").read_text())["chunks"]) == 4


def test_another_text_encoder_is_refused_in_one_line(sd, tiny_sd_dir, tmp_path):
    folder = tmp_path / "emb"
    EmbeddingStore(sd, PROMPTS, folder, chunk_size=C)
    pipe = tiny_sd_pipeline()
    with torch.no_grad():
        pipe.text_encoder.final_layer_norm.bias.add_(1e-3)
    pipe.save_pretrained(tmp_path / "other")
    with pytest.raises(TLCMError) as err:
        EmbeddingStore(BaseModel.load(tmp_path / "other"), PROMPTS, folder, chunk_size=C)
    message = str(err.value)
    assert "\n" not in message and "made with another text encoder" in message
    assert "text_encoder/model.safetensors" in message and f"delete {folder}" in message
    with pytest.raises(TLCMError, match="stored in float32, this run asks float16"):
        EmbeddingStore(sd, PROMPTS, folder, "float16", chunk_size=C)
    (folder / "manifest.json").write_text("{")
    with pytest.raises(TLCMError, match="unreadable manifest.json"):
        EmbeddingStore(sd, PROMPTS, folder, chunk_size=C)


def test_a_malformed_manifest_or_a_failed_write_is_refused_in_one_line(sd, tmp_path, monkeypatch):
    folder = tmp_path / "emb"
    EmbeddingStore(sd, PROMPTS, folder, chunk_size=C)
    manifest = json.loads((folder / "manifest.json").read_text())
    chunk_names = {key: entry["file"] for key, entry in manifest["chunks"].items()}  # not {file, rows, ...}
    for change, message in [
        ({"chunks": chunk_names}, "a chunk of manifest.json is not a JSON object"),
        ({"fingerprint": "text_encoder"}, "'fingerprint' must hold a JSON object"),
    ]:
        (folder / "manifest.json").write_text(json.dumps({**manifest, **change}))
        with pytest.raises(TLCMError, match=f"unreadable manifest.json .*{message}") as err:
            EmbeddingStore(sd, PROMPTS, folder, chunk_size=C)
        assert "\n" not in str(err.value)

    def read_only(tensors, path, metadata=None):  # what safetensors' writer raises there
        raise SafetensorError("Error while serializing: I/O error: Read-only file system (os error 30)")

    monkeypatch.setattr(tlcm.files, "save_file", read_only)
    with pytest.raises(TLCMError, match=r"cannot write \(OSError: \[Errno 30\] Read-only file system"):
        EmbeddingStore(sd, PROMPTS, tmp_path / "other", chunk_size=C)


def test_a_corrupted_chunk_is_reencoded_with_one_warning_line(sd, tmp_path):
    folder = tmp_path / "emb"
    before = EmbeddingStore(sd, PROMPTS, folder, chunk_size=C).get(torch.arange(4))
    (file,) = folder.glob("chunk-*.safetensors")
    data = bytearray(file.read_bytes())
    data[-5] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="corrupted or missing .*sha256 differs.*re-encoding it") as caught:
        store = EmbeddingStore(sd, PROMPTS, folder, chunk_size=C)
    assert len(caught) == 1 and "\n" not in str(caught[0].message) and store.encode_calls == 1
    assert _equal(store.get(torch.arange(4)), before)
    rebuilt = EmbeddingStore(sd, PROMPTS, folder, chunk_size=C)
    assert rebuilt.encode_calls == 0 and _equal(rebuilt.get(torch.arange(4)), before)


def test_half_storage_rounds_cached_and_fresh_embeddings_alike(sdxl, tmp_path):
    full = EmbeddingStore(sdxl, PROMPTS, tmp_path / "f32", chunk_size=C).get(torch.arange(10))
    fresh = EmbeddingStore(sdxl, PROMPTS, tmp_path / "f16", "float16", chunk_size=C)
    cached = EmbeddingStore(sdxl, PROMPTS, tmp_path / "f16", "float16", chunk_size=C)
    a, b = fresh.get(torch.arange(10)), cached.get(torch.arange(10))
    assert cached.encode_calls == 0 and _equal(a, b) and a.prompt_embeds.dtype == torch.float32
    torch.testing.assert_close(a.prompt_embeds, full.prompt_embeds, rtol=1e-3, atol=1e-3)
    sizes = {d: sum(f.stat().st_size for f in (tmp_path / d).glob("chunk-*")) for d in ("f32", "f16")}
    assert sizes["f16"] < 0.55 * sizes["f32"]


@pytest.mark.parametrize("model", ["sd", "sdxl"])
def test_the_engine_trains_the_same_bits_with_the_cache(model, tiny_sd_dir, tiny_sdxl_dir, tmp_path):
    path = tiny_sd_dir if model == "sd" else tiny_sdxl_dir
    recipe = shrink(PRESETS["mlcd"], path, tmp_path / "plain")
    runs = {}
    for name, cache in (("plain", None), ("fill", tmp_path / "emb"), ("hit", tmp_path / "emb")):
        r = replace(recipe, data=replace(recipe.data, embedding_cache=cache))
        trainer = Trainer(replace(r, runtime=replace(r.runtime, out_dir=tmp_path / name)))
        with DeviceDiscipline():  # in-step tensors state their device
            trainer.run()
        runs[name] = (
            trainer.embeddings.encode_calls,
            load_file(tmp_path / name / "student" / "pytorch_lora_weights.safetensors"),
        )
    assert [calls for calls, _ in runs.values()] == [1, 1, 0]  # the miniature's 40 prompts: one chunk
    weights = [w for _, w in runs.values()]
    assert all(
        w.keys() == weights[0].keys() and all(torch.equal(w[k], weights[0][k]) for k in w) for w in weights
    )


def test_a_changed_last_prompt_of_a_chunk_misses_the_cache(sd, tmp_path):
    """The cache is addressed by every prompt of a chunk: editing the last prompt of chunk 0 misses
    (re-encodes) and gives the new prompt's embedding, the bits of encoding the edited chunk."""
    folder = tmp_path / "emb"
    EmbeddingStore(sd, PROMPTS, folder, chunk_size=C).get(torch.arange(C))
    edited = [*PROMPTS[: C - 1], "a completely different prompt", *PROMPTS[C:]]
    store = EmbeddingStore(sd, edited, folder, chunk_size=C)
    assert store.encode_calls == 1  # chunk 0 is a new chunk
    fresh, _ = sd.encode(edited[:C])
    assert _equal(store.get(torch.tensor([C - 1])), fresh[C - 1 : C])
    assert not torch.equal(fresh.prompt_embeds[C - 1], _up_front(sd, PROMPTS[:C], C)[0].prompt_embeds[C - 1])


def test_a_chunk_over_the_resident_budget_stays_until_the_next_one(sd):
    """Without a disk cache at least the newest chunk stays resident whatever ``resident_bytes``:
    asking again for the prompts of the chunk just encoded encodes nothing."""
    store = EmbeddingStore(sd, PROMPTS, chunk_size=C, resident_bytes=1)
    assert store.encode_calls == 1  # chunk 0: the unconditional embedding
    store.get(torch.tensor([0, 3]))
    assert store.encode_calls == 1
    store.get(torch.tensor([5]))
    store.get(torch.tensor([6, 4]))
    assert store.encode_calls == 2


def test_prompt_lists_that_concatenate_alike_are_different_chunks(sd, tmp_path):
    """The cache key holds each prompt of a chunk, not their concatenation: ["a red digit", "3 on
    white"] and ["a red digit3 on whit", "e"] read alike run together, yet the second list, on the
    folder the first one wrote, misses (one encode) and gets its own prompts' embeddings."""
    folder, first = tmp_path / "emb", ["a red digit", "3 on white"]
    second = ["a red digit3 on whit", "e"]
    assert "".join(first) == "".join(second)
    EmbeddingStore(sd, first, folder, chunk_size=2).get(torch.arange(2))
    store = EmbeddingStore(sd, second, folder, chunk_size=2)
    assert store.encode_calls == 1
    fresh, _ = sd.encode(second)
    assert _equal(store.get(torch.arange(2)), fresh)


# ---- the disk cache's checks and the resident chunks (red-team round 11) ----------------------


def test_a_chunk_file_holding_other_rows_than_its_manifest_entry_is_reencoded(sd, tmp_path):
    """manifest.json lists chunk 0 (4 prompts) with 3 rows: the file does not match its entry, so
    it is re-encoded with one warning line (the right embeddings), not read as it is."""
    folder = tmp_path / "emb"
    before = EmbeddingStore(sd, PROMPTS, folder, chunk_size=C).get(torch.arange(C))
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["chunks"].values():
        entry["rows"] = 3
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="holds 4 rows, manifest.json says 3"):
        store = EmbeddingStore(sd, PROMPTS, folder, chunk_size=C)
    assert store.encode_calls == 1
    assert torch.equal(store.get(torch.arange(C)).prompt_embeds, before.prompt_embeds)


def test_a_cache_made_with_another_tokenizer_is_refused(sd, tiny_sd_dir, tmp_path):
    """The same text encoder with a tokenizer of another maximum length (16 tokens, not 77) gives
    other embeddings ((n, 16, D)): the cache the 77-token tokenizer made is refused, naming it."""
    folder = tmp_path / "emb"
    EmbeddingStore(sd, PROMPTS, folder, chunk_size=C)
    other = tmp_path / "other"
    shutil.copytree(tiny_sd_dir, other)
    shutil.rmtree(other / "tokenizer")
    tokenizer = tiny_clip_tokenizer()
    tokenizer.model_max_length = 16
    tokenizer.save_pretrained(other / "tokenizer")
    base = BaseModel.load(other)
    assert base.encode(PROMPTS[:1])[0].prompt_embeds.shape[1] == 16  # really other embeddings
    with pytest.raises(TLCMError, match=r"made with another text encoder or tokenizer \(tokenizer/"):
        EmbeddingStore(base, PROMPTS, folder, chunk_size=C)


def test_a_cache_made_by_fp32_encoders_is_refused_to_bf16_encoders(sd, tiny_sd_dir, tmp_path):
    """Both store float16, but bf16 text encoders give other embeddings than fp32 ones: the
    fingerprint holds each encoder's dtype, and the cache is refused."""
    folder = tmp_path / "emb"
    EmbeddingStore(sd, PROMPTS, folder, "float16", chunk_size=C)
    bf16 = BaseModel.load(tiny_sd_dir, dtype=torch.bfloat16)
    with pytest.raises(TLCMError, match="text_encoder dtype: float32 in the cache, bfloat16 in this model"):
        EmbeddingStore(bf16, PROMPTS, folder, "float16", chunk_size=C)


def test_resident_chunks_are_evicted_least_recently_used(sd):
    """A budget of two 4-prompt chunks: chunk 0 (asked again after chunk 1) stays when chunk 2
    comes in, chunk 1 (the least recently used) goes."""
    store = EmbeddingStore(sd, PROMPTS, chunk_size=C)  # chunk 0
    store.resident_bytes = 2 * store._resident_size()
    store.get(torch.tensor([4]))  # chunk 1
    store.get(torch.tensor([0]))  # chunk 0 used again
    store.get(torch.tensor([8]))  # chunk 2: over the budget, one chunk goes
    assert store.encode_calls == 3
    store.get(torch.tensor([1, 2]))
    assert store.encode_calls == 3  # chunk 0 stayed
    store.get(torch.tensor([5]))
    assert store.encode_calls == 4  # chunk 1 went
