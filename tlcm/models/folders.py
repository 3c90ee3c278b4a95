"""Check a local diffusers folder without loading it (nor importing diffusers): what every entry
point (train, sample, evaluate, the trajectory cache) runs before it loads a model, so that a wrong
folder is refused in one line within the time it takes to import torch."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path

from tlcm.errors import TLCMError
from tlcm.models.families import FAMILIES
from tlcm.models.families.base import read_config

VOCAB_FILES = ("tokenizer.json", "vocab.json", "spiece.model")
"""A tokenizer folder holds one of these (transformers would silently build an empty one)."""


ADD_FAMILY = (
    "a family of your own: register_family(MyFamily()) in your module, then --import it "
    "(docs/design.md, 'Model families')"
)
"""How to add a model family, as the unsupported-pipeline refusal says it."""


def check_model_folder(
    path: Path, flag: str = "--recipes.model.path", run: Path | None = None, imports: Sequence[str] = ()
) -> str:
    """Validate a diffusers folder without loading it; return its pipeline class name or raise a
    one-line TLCMError. ``flag``: the option that gave ``path`` (named in the fix; "--model" in the
    sample / evaluate / trajectory CLIs); ``run``: the run folder whose recorded base model ``path``
    is, when no flag gave it; ``imports``: the ``--import`` modules that run was trained with
    (``tlcm.resume.trained_imports``), named in the refusal of a pipeline no family supports."""
    path = Path(path)
    if not path.exists():
        raise TLCMError(f"model folder {path} does not exist: pass a local diffusers folder ({flag} DIR)")
    if not path.is_dir():
        convert = (
            f" (a single-file checkpoint: convert it once with diffusers, e.g. StableDiffusionPipeline"
            f'.from_single_file("{path}").save_pretrained(DIR))'
            if path.suffix.lower() in (".safetensors", ".ckpt", ".pt", ".pth")
            else ""
        )
        raise TLCMError(
            f"model folder {path} is a file, not a folder: pass a local diffusers folder ({flag} DIR)"
            + convert
        )
    index = path / "model_index.json"
    if not index.is_file():
        raise TLCMError(
            f"{path} is not a diffusers pipeline folder (no model_index.json): "
            "save one with pipe.save_pretrained(DIR) or pass the folder that holds model_index.json "
            f"to {flag}"
        )
    resave = "re-save the pipeline with pipe.save_pretrained(DIR)"
    try:
        spec = json.loads(index.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TLCMError(f"{index} is not valid JSON ({err}): {resave}") from err
    if not isinstance(spec, dict):
        kind = "an array" if isinstance(spec, list) else f"a {type(spec).__name__}"
        raise TLCMError(f'{index} holds {kind}, not a JSON object with "_class_name": {resave}')
    name = spec.get("_class_name")
    if not isinstance(name, str):
        raise TLCMError(
            f'{index}: "_class_name" must be a pipeline class name (a string), found {json.dumps(name)}: '
            f"{resave}"
        )
    if name not in FAMILIES:
        flags = " ".join(f"--import {shlex.quote(m)}" for m in imports)
        fix = (
            f"{run} was trained with {flags}: pass the same to this command"
            if run is not None and imports
            else f"{run} was trained on it: pass the --import MODULE of that training run, or {ADD_FAMILY}"
            if run is not None
            else f"pass one to {flag}, or {ADD_FAMILY}"
        )
        raise TLCMError(f"{path} holds a {name}; supported: {', '.join(FAMILIES)} ({fix})")
    listed = [k for k, v in spec.items() if isinstance(v, list) and len(v) == 2 and None not in v]
    components = dict.fromkeys([*FAMILIES[name].components, *listed])
    missing = [c for c in components if not (path / c).is_dir()]
    if missing:
        raise TLCMError(
            f"{path} lacks the component folder(s) {', '.join(missing)} that model_index.json lists: {resave}"
        )
    for c in components:
        if not any((path / c).iterdir()):
            raise TLCMError(f"component folder {path / c} is empty: {resave}")
        if c.startswith("tokenizer") and not any((path / c / f).is_file() for f in VOCAB_FILES):
            raise TLCMError(f"{path / c} holds no vocabulary (none of {', '.join(VOCAB_FILES)}): {resave}")
    return name


def scheduler_timesteps(path: Path) -> int:
    """T (training timesteps) of a checked diffusers folder's scheduler, read from its
    scheduler_config.json without loading anything (diffusers' default 1000; a missing or broken
    file: 1000, the load reports it). A T that is not an integer >= 2 raises a one-line TLCMError."""
    file = Path(path) / "scheduler" / "scheduler_config.json"
    config = read_config(file)
    betas = config.get("trained_betas")
    value = len(betas) if isinstance(betas, list) and betas else config.get("num_train_timesteps", 1000)
    if type(value) is not int or value < 2:
        raise TLCMError(
            f"{file}: num_train_timesteps must be an integer >= 2, found {json.dumps(value)}: "
            "re-save the pipeline with pipe.save_pretrained(DIR)"
        )
    return value
