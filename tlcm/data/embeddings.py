"""Text embeddings of a prompt list, encoded on demand per micro-batch, optionally cached on disk.

Canonical chunks: prompt i lies in chunk k = i // C (C = ``CHUNK`` = 64), and chunk k =
prompts[k*C : (k+1)*C] is always encoded as ONE ``BaseModel.encode`` batch. An embedding is thus
bit-identical whatever asked for it (request order, resume point, process count), and for a list of
at most C prompts (the miniature's 40) equal to encoding the whole list up front. The unconditional
embedding is chunk 0's (row 0), as before.

Device memory: only a micro-batch's rows go to the device. Without a folder, encoded chunks stay on
the device in a small LRU (``resident_bytes``; the miniature's one chunk: encoded once). With a
folder, each chunk is written once to ``chunk-<sha256 of its prompts>.safetensors`` (prompt_embeds
(n, L, D), SDXL pooled_embeds (n, P), time_ids (1, 6), uncond_prompt_embeds (1, L, D), SDXL
uncond_pooled_embeds (1, P)) and read back row by row from the memory-mapped file; ``manifest.json``
(text encoder fingerprint, dtypes, per chunk file / rows / sha256) is written after each new chunk
via rename. Content-addressed: another prompt file reuses every chunk it shares, a changed one just
misses. A cache made with another text encoder, tokenizer or encoder dtype, a malformed manifest.json
and a folder that cannot be written (full, read-only) are refused (TLCMError, one line); a corrupted
or missing chunk file is re-encoded with a one-line warning.

Storage dtype: the encoder's output dtype (exact), or float16 / bfloat16 (half the bytes); fresh
encodings are rounded to it too, so a cached and a fresh embedding are always the same bits.
Only the writing process (rank 0) writes; the others read what the manifest lists and encode the rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from tlcm.conditioning import Conditioning
from tlcm.data import check_fields, sha256_file
from tlcm.errors import TLCMError
from tlcm.files import save_tensors
from tlcm.models.base import BaseModel

FORMAT, VERSION = "tlcm-embeddings", 1
CHUNK = 64
"""Prompts per canonical encode batch (and per cache file)."""
RESIDENT_BYTES = 256 << 20
"""Device bytes of encoded chunks kept without a disk cache (at least the chunks of one request)."""
OPEN_FILES = 256
"""Chunk files kept open (memory-mapped) at once; each is hashed once per process."""
STORAGE = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
FLAG = "--recipes.data.embedding-cache"
MANIFEST_FIELDS = {"format": str, "version": int, "fingerprint": dict, "dtype": str, "chunks": dict}
CHUNK_FIELDS = {"file": str, "rows": int, "sha256": str}
"""What manifest.json holds (beyond informative fields), and each entry of its "chunks"."""
CONDITIONING_FIELDS = tuple(f.name for f in dataclasses.fields(Conditioning))
SHARED_FIELDS = ("time_ids", "guidance")
"""Conditioning fields that are the same for every prompt of a model: stored once per chunk."""


def encoder_dtype(base: BaseModel) -> torch.dtype:
    """dtype of ``base.encode``'s embeddings (diffusers casts them to the last text encoder's)."""
    return base.family.encoder_dtype(base.pipe)


def encoder_fingerprint(base: BaseModel) -> dict[str, str]:
    """What the embeddings depend on: {"<folder>/<file>": "<size> bytes, sha256 <hex>"} for every file
    of the model's text_encoder*/ and tokenizer*/ folders, plus the pipeline class, the loaded
    dtype of each text encoder and what of the image size the conditioning holds (SDXL's time ids
    at the training resolution: ``Family.encoded_sizes``)."""
    path, out = Path(base.path), {"pipeline": type(base.pipe).__name__}
    out.update({k: str(v) for k, v in base.family.encoded_sizes(base.pipe, base.latent_shape).items()})
    for folder in sorted(p for p in path.iterdir() if p.name.startswith(("text_encoder", "tokenizer"))):
        for file in sorted(f for f in folder.rglob("*") if f.is_file()):
            out[str(file.relative_to(path))] = f"{file.stat().st_size} bytes, sha256 {sha256_file(file)}"
        module = getattr(base.pipe, folder.name, None)
        if isinstance(module, torch.nn.Module):
            out[f"{folder.name} dtype"] = str(module.dtype).removeprefix("torch.")
    return out


def _difference(cached: dict, ours: dict) -> str:
    """The first key where two fingerprints differ, in words."""
    for key in sorted(set(cached) | set(ours)):
        if cached.get(key) != ours.get(key):
            return f"{key}: {cached.get(key, 'absent')} in the cache, {ours.get(key, 'absent')} in this model"
    return "nothing"


class EmbeddingStore:
    """Conditioning of prompt indices, on the device, from canonical chunks (see the module doc).

    base: the loaded model (its ``encode`` and device); prompts: the run's prompt list (N,);
    folder: the disk cache (None: none); dtype: "encoder" or a key of ``STORAGE``; writable: whether
    this process writes the cache (rank 0). ``encode_calls`` counts ``base.encode`` batches.
    """

    def __init__(
        self,
        base: BaseModel,
        prompts: list[str],
        folder: Path | None = None,
        dtype: str = "encoder",
        writable: bool = True,
        chunk_size: int = CHUNK,
        resident_bytes: int = RESIDENT_BYTES,
    ) -> None:
        self.base, self.prompts, self.chunk_size = base, prompts, chunk_size
        self.folder, self.writable, self.resident_bytes = folder and Path(folder), writable, resident_bytes
        self.dtype = encoder_dtype(base)
        name = str(self.dtype).removeprefix("torch.") if dtype == "encoder" else dtype
        if name not in STORAGE:
            raise TLCMError(f"embedding dtype {dtype}: use encoder, {', '.join(STORAGE)}")
        self.storage, self.storage_name = STORAGE[name], name
        self.encode_calls = 0
        self._resident: OrderedDict[int, dict[str, torch.Tensor]] = OrderedDict()
        self._files: OrderedDict[int, dict[str, Any]] = OrderedDict()  # chunk -> file slices (LRU)
        self._verified: set[str] = set()  # sha256s of chunk files checked by this process
        self._entries: dict[str, dict] = {}
        self._manifest_mtime = None
        if self.folder is not None:
            self._fingerprint = encoder_fingerprint(base)
            self._read_manifest(strict=True)
        self.uncond = self._pick([(self._chunk(0), 0)], "uncond_")
        """(1, ...) unconditional Conditioning on the device (chunk 0's)."""

    def __len__(self) -> int:
        return len(self.prompts)

    def get(self, index: torch.Tensor) -> Conditioning:
        """``index`` (b,) int64 prompt indices on the host -> Conditioning (b, ...) on the device, in
        the encoder's dtype; encodes (and caches) the chunks not seen yet."""
        rows, c = index.tolist(), self.chunk_size
        chunks = {k: self._chunk(k) for k in dict.fromkeys(r // c for r in rows)}
        return self._pick([(chunks[r // c], r % c) for r in rows], "")

    def _pick(self, rows: list[tuple[dict[str, Any], int]], prefix: str) -> Conditioning:
        """(chunk tensors or file slices, row) pairs -> Conditioning (len(rows), ...) on the device."""
        device, source = self.base.device, rows[0][0]

        def take(name: str, rows: list[tuple[dict[str, Any], int]]) -> torch.Tensor | None:
            if name not in source:
                return None
            pieces = [chunk[name][r : r + 1].to(device, non_blocking=True) for chunk, r in rows]
            value = torch.cat(pieces)
            return value.to(self.dtype) if value.is_floating_point() else value  # a mask keeps its dtype

        values = {}
        for name in CONDITIONING_FIELDS:
            if name in SHARED_FIELDS:  # the same for every prompt: stored once, (1, ...)
                value = take(name, [(source, 0)])
                values[name] = None if value is None else value.expand(len(rows), *value.shape[1:])
            else:
                values[name] = take(prefix + name, rows)
        return Conditioning(**values)

    # -- chunks
    def _key(self, k: int) -> str:
        chunk = self.prompts[k * self.chunk_size : (k + 1) * self.chunk_size]
        return hashlib.sha256(json.dumps(chunk).encode()).hexdigest()

    def _chunk(self, k: int) -> dict[str, Any]:
        """Chunk k's tensors by name: resident (device), cached file slices, or freshly encoded."""
        if k in self._resident:
            self._resident.move_to_end(k)
            return self._resident[k]
        if k in self._files:
            self._files.move_to_end(k)
            return self._files[k]
        if self.folder is not None:
            if self._key(k) not in self._entries:
                self._read_manifest(strict=False)  # rank 0 may have written it meanwhile
            if (slices := self._open_file(k)) is not None:
                return slices
        tensors = self._encode(k)
        if self.folder is not None and self.writable:
            self._write(k, tensors)
            if (slices := self._open_file(k)) is not None:
                return slices
        self._resident[k] = tensors
        while len(self._resident) > 1 and self._resident_size() > self.resident_bytes:
            self._resident.popitem(last=False)
        return tensors

    def _resident_size(self) -> int:
        return sum(t.numel() * t.element_size() for ts in self._resident.values() for t in ts.values())

    @torch.no_grad()
    def _encode(self, k: int) -> dict[str, torch.Tensor]:
        """One canonical encode batch: chunk k's tensors in the storage dtype, on the device."""
        cond, uncond = self.base.encode(self.prompts[k * self.chunk_size : (k + 1) * self.chunk_size])
        self.encode_calls += 1
        self.dtype = cond.prompt_embeds.dtype
        out = {}
        for name in CONDITIONING_FIELDS:
            value = getattr(cond, name)
            if value is None:
                continue
            if name in SHARED_FIELDS:
                out[name] = value[:1]
            else:
                out |= {name: value, f"uncond_{name}": getattr(uncond, name)[:1]}
        return {
            name: (t.to(self.storage) if t.is_floating_point() else t).contiguous() for name, t in out.items()
        }

    # -- the disk cache
    def _refuse(self, what: str) -> TLCMError:
        return TLCMError(
            f"embedding cache {self.folder}: {what}; delete {self.folder} or pass another folder to {FLAG}"
        )

    def _read_manifest(self, strict: bool) -> None:
        """Load the manifest's chunk list; with ``strict``, refuse another model / dtype / format."""
        path = self.folder / "manifest.json"
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return
        if mtime == self._manifest_mtime:
            return
        try:
            manifest = json.loads(path.read_text())
            check_fields(manifest, MANIFEST_FIELDS, "manifest.json")
            for entry in manifest["chunks"].values():
                check_fields(entry, CHUNK_FIELDS, "a chunk of manifest.json")
            found, entries = (manifest["format"], manifest["version"]), manifest["chunks"]
        except (OSError, ValueError) as err:
            if strict:
                raise self._refuse(f"unreadable manifest.json ({type(err).__name__}: {err})") from err
            return
        if found != (FORMAT, VERSION):
            raise self._refuse(f"format {found} differs from {(FORMAT, VERSION)}")
        if manifest.get("fingerprint") != self._fingerprint:
            diff = _difference(manifest.get("fingerprint") or {}, self._fingerprint)
            raise self._refuse(f"made with another text encoder or tokenizer ({diff})")
        if manifest.get("dtype") != self.storage_name:
            raise self._refuse(f"stored in {manifest.get('dtype')}, this run asks {self.storage_name}")
        self._entries, self._manifest_mtime = entries, mtime

    def _open_file(self, k: int) -> dict[str, Any] | None:
        """Chunk k's file slices if the manifest lists it and it is intact; None if not cached. A
        missing or corrupted file is reported in one warning line (then re-encoded)."""
        entry = self._entries.get(self._key(k))
        if entry is None:
            return None
        file = self.folder / entry["file"]
        try:
            if entry["sha256"] not in self._verified and sha256_file(file) != entry["sha256"]:
                raise ValueError("sha256 differs from manifest.json")
            handle = safe_open(file, framework="pt")
            slices = {name: handle.get_slice(name) for name in handle.keys()}
            rows = slices["prompt_embeds"].get_shape()[0]
            if rows != entry["rows"] or "uncond_prompt_embeds" not in slices:
                raise ValueError(f"holds {rows} rows, manifest.json says {entry['rows']}")
        except (OSError, ValueError, KeyError, SafetensorError) as err:
            message = f"embedding cache {file}: corrupted or missing ({err}); re-encoding it"
            warnings.warn(message, stacklevel=1)
            self._entries.pop(self._key(k))
            return None
        self._verified.add(entry["sha256"])
        self._files[k] = slices
        if len(self._files) > OPEN_FILES:
            self._files.popitem(last=False)
        return slices

    def _write(self, k: int, tensors: dict[str, torch.Tensor]) -> None:
        """Write chunk k's file (temporary name, then rename), then the manifest the same way."""
        key = self._key(k)
        name, folder = f"chunk-{key[:32]}.safetensors", self.folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{name}.{os.getpid()}.tmp"
            save_tensors({n: t.cpu() for n, t in tensors.items()}, tmp)
            tmp.replace(folder / name)
            entry = {
                "file": name,
                "rows": len(tensors["prompt_embeds"]),
                "sha256": sha256_file(folder / name),
            }
            self._read_manifest(strict=False)  # keep what another writer added meanwhile
            self._entries[key] = entry
            self._verified.add(entry["sha256"])
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "model": str(self.base.path),
                "fingerprint": self._fingerprint,
                "dtype": self.storage_name,
                "chunk_size": self.chunk_size,
                "device": self.base.device.type,
                "chunks": self._entries,
            }
            (folder / "manifest.json.tmp").write_text(json.dumps(manifest, indent=1) + "\n")
            (folder / "manifest.json.tmp").replace(folder / "manifest.json")
            self._manifest_mtime = (folder / "manifest.json").stat().st_mtime_ns
        except OSError as err:  # nothing to delete where the folder could not be made
            raise TLCMError(
                f"embedding cache {self.folder}: cannot write ({type(err).__name__}: {err}); make it "
                f"writable or pass another folder to {FLAG}"
            ) from err
