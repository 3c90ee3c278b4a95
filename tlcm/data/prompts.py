"""Prompt sources: the miniature pipeline's prompts, a .txt file (one per line), a .jsonl file."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tlcm.errors import TLCMError
from tlcm.toy.data import all_prompts

ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
"""Invisible characters that ``str.strip`` keeps (zero-width space, non-joiner and joiner, word
joiner, byte-order mark): stripped from a prompt's ends like whitespace."""
_ENDS = re.compile(f"^[\\s{ZERO_WIDTH}]+|[\\s{ZERO_WIDTH}]+$")
JSON_LINE_BREAKS = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}
"""Characters that ``str.splitlines`` breaks lines at but JSON allows raw inside a string (next
line, line and paragraph separators; ``json.dumps(..., ensure_ascii=False)`` writes them raw)."""


def json_lines(text: str) -> list[str]:
    """The lines of a JSON Lines file's ``text``, as ``str.splitlines`` gives them except that
    U+0085, U+2028 and U+2029 are text, not line breaks (JSON Lines breaks lines at \\n only): they
    become their JSON escapes, which decode to the same characters."""
    return text.translate(JSON_LINE_BREAKS).splitlines()


def clean_prompt(text: str) -> str:
    """``text`` without leading and trailing whitespace and zero-width characters ("": blank)."""
    return _ENDS.sub("", text)


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), "null")


def load_prompts(path: Path | None, flag: str = "--recipes.data.prompts") -> list[str]:
    """All prompts of ``path`` (None: the miniature pipeline's 40 training prompts).

    .txt: one prompt per non-blank line. .jsonl: one JSON object per non-blank line with a
    non-empty string "prompt" field. Prompts are stripped of whitespace and zero-width characters
    (``clean_prompt``); one left blank is no prompt. A missing, unreadable, non-UTF-8, empty or
    malformed file (a .jsonl "prompt" with a lone surrogate escape, say)
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
    split = json_lines if path.suffix == ".jsonl" else str.splitlines
    lines = [(i + 1, p) for i, line in enumerate(split(text)) if (p := clean_prompt(line))]
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
            if not isinstance(prompt, str) or not clean_prompt(prompt):
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
            if (bad := _lone_surrogate(prompt)) is not None:
                raise TLCMError(
                    f'{path}:{number}: the "prompt" holds a lone surrogate {json.dumps(prompt[bad])} '
                    f"(character {bad}), which is no text: write the character itself or its whole "
                    'surrogate pair (e.g. "\\ud83d\\ude00")'
                )
            prompts.append(clean_prompt(prompt))
    else:
        prompts = [line for _, line in lines]
    if not prompts:
        raise TLCMError(f"prompt file {path} holds no prompts: add at least one non-empty line")
    return prompts


def _lone_surrogate(text: str) -> int | None:
    """Index of the first lone UTF-16 surrogate in ``text`` (a JSON "\\ud800" escape decodes to one;
    no tokenizer takes it), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return err.start
    return None
