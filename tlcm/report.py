"""One way to report: ``Reporter.report(step, values)`` appends a line to metrics.jsonl and shows
the latest values in a rich progress display (main process only)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class Reporter:
    """metrics.jsonl writer + rich progress (step, loss terms, it/s, ETA) for one run."""

    def __init__(self, out_dir: Path, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[terms]}"),
            TextColumn("{task.fields[speed]}"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
        )
        self._task = None
        self._last = time.perf_counter()
        if enabled:
            out_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Reporter:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start_phase(self, name: str, total: int, completed: int) -> None:
        """Begin a progress bar for phase ``name`` of ``total`` steps, ``completed`` done (resume)."""
        if self._task is not None:
            self.progress.stop_task(self._task)
        self._task = self.progress.add_task(name, total=total, completed=completed, terms="", speed="")
        self._last = time.perf_counter()

    def report(self, record: dict, show: dict[str, float]) -> None:
        """Append ``record`` to metrics.jsonl and show ``show`` (name -> value) on the bar."""
        if not self.enabled:
            return
        now = time.perf_counter()
        speed = 1.0 / max(now - self._last, 1e-9)
        self._last = now
        with self.path.open("a") as f:
            f.write(json.dumps({**record, "it_per_s": round(speed, 3)}) + "\n")
        if self._task is not None:
            terms = " ".join(f"{k} {v:.4g}" for k, v in show.items())
            self.progress.update(self._task, advance=1, terms=terms, speed=f"{speed:.2f} it/s")

    def print(self, message: str) -> None:
        """A line above the progress display."""
        if self.enabled:
            self.progress.console.print(message)
