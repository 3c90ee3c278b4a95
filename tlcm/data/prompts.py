"""Prompt sources: the miniature pipeline's prompts, a .txt file (one per line), a .jsonl file."""

from __future__ import annotations

import json
from pathlib import Path

from tlcm.errors import TLCMError
from tlcm.toy.data import all_prompts


def load_prompts(path: Path | None) -> list[str]:
    """All prompts of ``path`` (None: the miniature pipeline's 40 training prompts).

    .txt: one prompt per non-blank line. .jsonl: one JSON object per line with a "prompt" field.
    An unreadable, empty or malformed file raises a TLCMError naming the file and line.
    """
    if path is None:
        return all_prompts()
    path = Path(path)
    if not path.is_file():
        raise TLCMError(
            f"prompt file {path} does not exist: pass a .txt or .jsonl file to --recipes.data.prompts"
        )
    lines = [(i + 1, line.strip()) for i, line in enumerate(path.read_text().splitlines()) if line.strip()]
    if path.suffix == ".jsonl":
        prompts = []
        for number, line in lines:
            try:
                record = json.loads(line)
                prompts.append(str(record["prompt"]).strip())
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise TLCMError(
                    f'{path}:{number}: expected a JSON object with a "prompt" field '
                    f"({type(err).__name__}: {err})"
                ) from err
    elif path.suffix == ".txt":
        prompts = [line for _, line in lines]
    else:
        raise TLCMError(
            f'prompt file {path} must end in .txt (one prompt per line) or .jsonl (a "prompt" field)'
        )
    prompts = [p for p in prompts if p]
    if not prompts:
        raise TLCMError(f"prompt file {path} holds no prompts: add at least one non-empty line")
    return prompts
