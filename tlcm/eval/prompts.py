"""Evaluation prompt sets, read from local files.

- COCO-2017 captions: ``captions_val2017.json`` (a dict with "images" and "annotations"); one
  caption per image, N images (default 5000 = all of val2017), both drawn with a fixed seed.
- PartiPrompts: ``PartiPrompts.tsv`` (tab-separated, a "Prompt" column).
- HPSv2 benchmark: a .json list of strings (``anime.json``, ``photo.json``, ...) or a folder of them
  (read in file-name order).
- .txt (one prompt per line) and .jsonl (a "prompt" field per line), as the training prompts.

Any set can be cut to N prompts with ``num``: a seeded subset that keeps the file's order.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from tlcm.data.prompts import load_prompts
from tlcm.errors import TLCMError

COCO_DEFAULT = 5000
"""Prompts drawn from COCO annotations when ``num`` is not given (MSCOCO-2017 5K)."""
SUFFIXES = (".json", ".tsv", ".txt", ".jsonl")


@dataclass(frozen=True)
class PromptRecord:
    """One prompt; ``image``: the COCO file name of the image it captions (None for other sets)."""

    prompt: str
    image: str | None = None


def _clean(text: str) -> str:
    return " ".join(text.split())


def _read_json(path: Path, flag: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise TLCMError(f"prompt file {path} ({flag}) is not readable JSON ({err}): re-download it") from err


def coco_captions(data: dict, path: Path, num: int, seed: int) -> list[PromptRecord]:
    """``num`` images of a COCO captions file (seeded sample, in image-id order), one seeded caption each."""
    if not isinstance(data.get("annotations"), list) or not isinstance(data.get("images"), list):
        raise TLCMError(f'{path} is not a COCO captions file (needs "images" and "annotations" lists)')
    captions: dict[int, list[tuple[int, str]]] = {}
    for ann in data["annotations"]:
        if isinstance(ann, dict) and isinstance(ann.get("caption"), str) and _clean(ann["caption"]):
            captions.setdefault(ann.get("image_id"), []).append((ann.get("id", 0), _clean(ann["caption"])))
    files = {im.get("id"): im.get("file_name") for im in data["images"] if isinstance(im, dict)}
    ids = sorted(i for i in captions if i in files)
    if num > len(ids):
        raise TLCMError(f"{path} has captions for {len(ids)} images, fewer than the {num} asked for")
    rng = random.Random(seed)
    chosen = sorted(rng.sample(ids, num))
    return [PromptRecord(rng.choice(sorted(captions[i]))[1], files[i]) for i in chosen]


def _string_list(data: object, path: Path) -> list[str]:
    if not isinstance(data, list) or not all(isinstance(p, str) for p in data):
        raise TLCMError(
            f"{path} is neither COCO captions nor an HPSv2 benchmark file (a JSON list of prompt strings)"
        )
    return [_clean(p) for p in data if _clean(p)]


def parti_prompts(path: Path) -> list[str]:
    """The "Prompt" column of a PartiPrompts .tsv file."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "Prompt" not in rows[0]:
        raise TLCMError(f'{path} is not a PartiPrompts .tsv file (tab-separated with a "Prompt" column)')
    return [_clean(r["Prompt"]) for r in rows if r.get("Prompt") and _clean(r["Prompt"])]


def load_prompt_set(
    path: Path, num: int | None = None, seed: int = 0, flag: str = "--prompts"
) -> list[PromptRecord]:
    """The prompt set in ``path`` (see the module docstring), cut to ``num`` prompts with ``seed``."""
    path = Path(path)
    hint = f"pass COCO captions / HPSv2 .json, PartiPrompts .tsv, .txt or .jsonl to {flag}"
    if not path.exists():
        raise TLCMError(f"prompt set {path} does not exist: {hint}")
    if num is not None and num < 1:
        raise TLCMError(f"--num-prompts must be >= 1, got {num}")
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise TLCMError(f"prompt folder {path} holds no .json files (HPSv2 benchmark lists): {hint}")
        prompts = [p for f in files for p in _string_list(_read_json(f, flag), f)]
    elif path.suffix == ".json":
        data = _read_json(path, flag)
        if isinstance(data, dict):
            return coco_captions(data, path, num or COCO_DEFAULT, seed)
        prompts = _string_list(data, path)
    elif path.suffix == ".tsv":
        prompts = parti_prompts(path)
    elif path.suffix in (".txt", ".jsonl"):
        prompts = load_prompts(path, flag)
    else:
        raise TLCMError(f"prompt set {path} must end in {', '.join(SUFFIXES)} or be a folder: {hint}")
    if not prompts:
        raise TLCMError(f"prompt set {path} holds no prompts")
    if num is not None:
        if num > len(prompts):
            raise TLCMError(f"{path} holds {len(prompts)} prompts, fewer than --num-prompts {num}")
        prompts = [prompts[i] for i in sorted(random.Random(seed).sample(range(len(prompts)), num))]
    return [PromptRecord(p) for p in prompts]
