"""A byte-level BPE CLIPTokenizer whose merges spell the miniature pipeline's prompt words.

Real CLIP has 49408 tokens; ours keeps CLIP's byte-level alphabet (so ANY text tokenizes, unknown
words fall back to bytes) plus merges that build each word of the prompt vocabulary into one
token. Saved with ``save_pretrained`` plus the classic vocab.json + merges.txt pair, so both
tokenizers-backed and slow CLIP tokenizers load it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _words(prompts: list[str]) -> list[str]:
    words = set()
    for p in prompts:
        words.update(re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", p.lower()))
    return sorted(words)


def build_clip_tokenizer(prompts: list[str], out_dir: Path) -> CLIPTokenizer:
    """Write vocab.json/merges.txt for ``prompts`` into ``out_dir`` and load them.

    Every word w = c1..cn of the prompts gets the merges (c1,c2), (c1c2,c3), ...,
    (c1..c(n-1), cn</w>), so it becomes the single token ``w</w>``.
    """
    alphabet = list(bytes_to_unicode().values())
    vocab = alphabet + [c + "</w>" for c in alphabet]
    merges: list[tuple[str, str]] = []
    for word in _words(prompts):
        if len(word) < 2:
            continue
        left = word[0]
        for i, c in enumerate(word[1:], start=1):
            right = c + ("</w>" if i == len(word) - 1 else "")
            if (left, right) not in merges:
                merges.append((left, right))
                vocab.append(left + right)
            left = left + right
    vocab += [BOS, EOS]
    out_dir.mkdir(parents=True, exist_ok=True)
    seen: dict[str, int] = {}
    for tok in vocab:
        seen.setdefault(tok, len(seen))
    (out_dir / "vocab.json").write_text(json.dumps(seen, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    tok = CLIPTokenizer(vocab=seen, merges=merges, model_max_length=77)
    tok.save_pretrained(out_dir)
    return tok
