"""Optional experiment trackers (``--recipes.runtime.trackers``): sinks the Reporter copies each
metrics.jsonl record to, on rank 0. metrics.jsonl stays the source of truth; a sink gets the same
numbers at the same global steps (non-finite values, null there, are left out) and, when opened,
the run's resolved recipe as its config.

A tracker's name is also its package's and its pyproject extra's (``pip install -e '.[wandb]'``);
validation refuses a tracker whose package is missing before the model loads.

- tensorboard: event files in RUN/tensorboard; the recipe as hparams (flattened, "phases.mlcd.lr");
  a resumed run purges the steps after its checkpoint, as metrics.jsonl is cut back.
- wandb: an offline run under RUN/wandb (``mode="offline"``: never a network call); upload it later
  with ``wandb sync RUN/wandb/offline-run-*``. Each start (and resume) is its own wandb run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from tlcm.config import Recipe, recipe_dict


class Sink(Protocol):
    """Where the Reporter copies each metrics record (a new tracker: ``log`` and ``close``)."""

    def log(self, values: dict[str, float], step: int) -> None:
        """Record ``values`` (name -> number) at global step ``step``."""

    def close(self, failed: bool = False) -> None:
        """Flush and finish (``failed``: the run ended with an exception)."""


def _flatten(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _flatten(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], tree


class TensorBoardSink:
    """Scalars (tag = metrics.jsonl key) and hparams in ``log_dir``; ``purge_step``: TensorBoard
    drops earlier event files' values from this step on (a resumed run)."""

    def __init__(self, log_dir: Path, config: dict[str, Any], purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
        flat = {k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in _flatten(config)}
        for summary in hparams(flat, {}):
            self.writer.file_writer.add_summary(summary)

    def log(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def close(self, failed: bool = False) -> None:
        self.writer.close()


class WandbSink:
    """An offline wandb run in ``out_dir``/wandb, the recipe as its config."""

    def __init__(self, out_dir: Path, config: dict[str, Any]) -> None:
        import wandb

        self.run = wandb.init(
            mode="offline",
            dir=str(out_dir),
            project="tlcm",
            name=out_dir.name,
            config=config,
            settings=wandb.Settings(console="off", silent=True),  # rich owns the terminal
        )

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


TRACKERS = ("tensorboard", "wandb")
"""Tracker names (each also the package it needs and its pyproject extra)."""


def open_sinks(
    names: tuple[str, ...], out_dir: Path, recipe: Recipe | None, purge_step: int | None
) -> list[Sink]:
    """Open the trackers ``names`` (each once) for the run in ``out_dir``, ``recipe`` (a Recipe or
    None) as their config."""
    config = recipe_dict(recipe) if recipe is not None else {}
    sinks: list[Sink] = []
    try:
        for name in dict.fromkeys(names):
            if name == "tensorboard":
                sinks.append(TensorBoardSink(out_dir / "tensorboard", config, purge_step))
            elif name == "wandb":
                sinks.append(WandbSink(out_dir, config))
            else:
                raise ValueError(f"unknown tracker {name!r}: use one of {', '.join(TRACKERS)}")
    except BaseException:
        for sink in sinks:
            sink.close(failed=True)
        raise
    return sinks
