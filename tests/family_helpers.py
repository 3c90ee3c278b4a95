"""A model family of a test's own: a tiny pipeline folder copied under the family's pipeline name,
with the family registered while it is used (tests/test_attention_mask.py, test_trajectories.py)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tlcm.models.families import FAMILIES, register_family
from tlcm.models.families.base import Family


@contextmanager
def registered_copy(source: Path, folder: Path, family: Family) -> Iterator[Path]:
    """``source`` (a diffusers folder) copied to ``folder`` with model_index.json's _class_name set
    to ``family.pipeline_name``; ``family`` registered inside the block (FAMILIES restored after)."""
    saved = dict(FAMILIES)
    register_family(family)
    shutil.copytree(source, folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": family.pipeline_name}))
    try:
        yield folder
    finally:
        FAMILIES.clear()
        FAMILIES.update(saved)
