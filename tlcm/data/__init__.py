"""Data-free training data: prompt sources, the teacher trajectory cache, text embeddings."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import get_args, get_origin


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 16 MiB blocks (cache shards, model files)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def check_fields(record: object, types: dict[str, type], what: str) -> None:
    """Raise ValueError naming the first field of ``record`` (parsed JSON, e.g. a cache manifest
    or one of its entries, called ``what``) that is missing or not of its type in ``types``
    (``list[int]`` checks the items too; a boolean is no int), so that a malformed manifest is
    refused in one line, not with a TypeError deep in the code that reads it."""
    if not isinstance(record, dict):
        raise ValueError(f"{what} is not a JSON object")
    for key, kind in types.items():
        if not _is(record.get(key), kind):
            found = json.dumps(record.get(key))[:60]
            raise ValueError(f"{what}: {key!r} must hold a JSON {_json_name(kind)}, found {found}")


_JSON_NAMES = {int: "integer", float: "number", str: "string", bool: "boolean", list: "array", dict: "object"}


def _json_name(kind: type) -> str:
    if get_origin(kind) is list:
        return f"array of {_JSON_NAMES[get_args(kind)[0]]}s"
    return _JSON_NAMES[kind]


def _is(value: object, kind: type) -> bool:
    if get_origin(kind) is list:
        return isinstance(value, list) and all(_is(v, get_args(kind)[0]) for v in value)
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
