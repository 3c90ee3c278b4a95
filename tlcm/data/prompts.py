"""Prompt sources: the miniature pipeline's prompts, a .txt file (one per line), a .jsonl file."""

from __future__ import annotations

import json
from pathlib import Path

from tlcm.errors import TLCMError
from tlcm.toy.data import all_prompts


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), "null")


def load_prompts(path: Path | None, flag: str = "--recipes.data.prompts") -> list[str]:
    """All prompts of ``path`` (None: the miniature pipeline's 40 training prompts).

    .txt: one prompt per non-blank line. .jsonl: one JSON object per non-blank line with a
    non-empty string "prompt" field. A missing, unreadable, non-UTF-8, empty or malformed file
    raises a one-line TLCMError naming the file (and line) and ``flag``, the option that gave it.
    """
    if path is None:
        return all_prompts()
    path = Path(path)
    hint = f'pass a .txt (one prompt per line) or .jsonl (a "prompt" field) file to {flag}'
    if path.is_dir():
        raise TLCMError(f"prompt file {path} is a folder, not a file: {hint}")
    if not path.is_file():
        raise TLCMError(f"prompt file {path} does not exist: {hint}")
    if path.suffix not in (".txt", ".jsonl"):
        raise TLCMError(f"prompt file {path} must end in .txt or .jsonl: {hint}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TLCMError(
            f"cannot read prompt file {path} ({err.strerror or err}): check its permissions"
        ) from err
    try:
        text = data.decode("utf-8-sig")  # a leading byte-order mark is not part of the first prompt
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise TLCMError(
            f"prompt file {path}:{line} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
            f"{err.start}): re-save it as UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8 {path.name} > utf8{path.suffix})"
        ) from err
    lines = [(i + 1, line.strip()) for i, line in enumerate(text.splitlines()) if line.strip()]
    if path.suffix == ".jsonl":
        prompts = []
        for number, line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise TLCMError(
                    f"{path}:{number}: not JSON ({err}): "
                    'expected an object with a "prompt" field, one per line'
                ) from err
            prompt = record.get("prompt") if isinstance(record, dict) else None
            if not isinstance(prompt, str) or not prompt.strip():
                if not isinstance(record, dict):
                    found = f"a JSON {_json_type(record)}"
                elif "prompt" not in record:
                    found = f'no "prompt" field (keys: {", ".join(record) or "none"})'
                else:
                    found = f'"prompt": {json.dumps(prompt)[:60]}'
                raise TLCMError(
                    f'{path}:{number}: expected a JSON object with a non-empty string "prompt" field, '
                    f"found {found}"
                )
            prompts.append(prompt.strip())
    else:
        prompts = [line for _, line in lines]
    if not prompts:
        raise TLCMError(f"prompt file {path} holds no prompts: add at least one non-empty line")
    return prompts
