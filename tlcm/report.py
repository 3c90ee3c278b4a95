"""One way to report: ``Reporter.report(record, values)`` appends a line to metrics.jsonl and shows
the latest values in a rich progress display (main process only). NaN/inf values are written as
null and named in the record's "nonfinite" list, so every line is valid JSON. Each line's finite
numbers also go to the Reporter's sinks (tlcm/trackers.py: tensorboard, wandb; opened on entering
the Reporter, closed on leaving it, also on an exception), keyed by the line's global step."""

from __future__ import annotations

import json
import math
import time
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column

from tlcm.config import Recipe
from tlcm.files import write_failed
from tlcm.trackers import Sink, open_sinks

LOG_LINE_SECONDS = 30.0
"""Where the output is not a terminal (``> log``, nohup, SLURM), where rich draws no live bar: at
most one plain progress line per this many seconds, and each phase's last step."""


def _global_step(line: str) -> float:
    """A metrics line's global step (0 for lines without one; inf for a torn last line)."""
    try:
        return json.loads(line).get("global_step", 0)
    except json.JSONDecodeError:
        return math.inf


def progress_columns() -> tuple:
    """The progress display: phase, bar, step / steps, it/s and ETA, then the loss terms. In a narrow
    terminal (or an 80-column log) the bar shrinks and the terms wrap onto more lines; nothing is cut."""
    return (
        TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True)),
        BarColumn(bar_width=12),
        MofNCompleteColumn(table_column=Column(no_wrap=True)),
        TextColumn("{task.fields[speed]}", table_column=Column(no_wrap=True)),
        TimeRemainingColumn(table_column=Column(no_wrap=True)),
        TextColumn("{task.fields[terms]}", table_column=Column(overflow="fold")),
    )


class Reporter:
    """metrics.jsonl writer + rich progress (step, loss terms, it/s, ETA) for one run; ``trackers``
    (names, see tlcm/trackers.py) are opened with ``recipe`` as their config on entering, and join
    ``sinks`` (more may be appended before entering)."""

    def __init__(
        self,
        out_dir: Path,
        enabled: bool = True,
        trackers: tuple[str, ...] = (),
        recipe: Recipe | None = None,
    ) -> None:
        self.enabled = enabled
        self.out_dir, self.trackers, self.recipe = out_dir, trackers, recipe
        self.sinks: list[Sink] = []
        self._purge_step: int | None = None
        self.path = out_dir / "metrics.jsonl"
        self.console = Console(stderr=True)
        self.progress = Progress(*progress_columns(), console=self.console, disable=not enabled)
        self._task = None
        self._last = time.perf_counter()
        self._logged = -math.inf  # when the last plain progress line was printed (not a terminal)
        if enabled:
            out_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Reporter:
        if self.enabled:
            self.sinks += open_sinks(self.trackers, self.out_dir, self.recipe, self._purge_step)
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.progress.__exit__(*exc)
        finally:
            sinks, self.sinks = self.sinks, []
            for sink in sinks:
                sink.close(failed=exc[0] is not None)

    def start_phase(self, name: str, total: int, completed: int) -> None:
        """Begin a progress bar for phase ``name`` of ``total`` steps, ``completed`` done (resume)."""
        if self._task is not None:
            self.progress.stop_task(self._task)
        self._task = self.progress.add_task(name, total=total, completed=completed, terms="", speed="")
        self._last = time.perf_counter()
        self._phase_start = (self._last, completed)  # for the plain line's ETA

    def report(self, record: dict, show: dict[str, float]) -> None:
        """Append ``record`` to metrics.jsonl and show ``show`` (name -> value) on the bar; one
        step of progress."""
        if not self.enabled:
            return
        speed = self._speed()
        bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
        clean = {k: None if k in bad else v for k, v in record.items()}
        line = {**clean, **({"nonfinite": bad} if bad else {}), "it_per_s": speed}
        try:
            with self.path.open("a") as f:
                f.write(json.dumps(line) + "\n")
        except OSError as err:
            raise write_failed(f"the metrics to {self.path}", err) from err
        numbers = {k: v for k, v in line.items() if type(v) in (int, float) and k != "global_step"}
        for sink in self.sinks:
            sink.log(numbers, line.get("global_step", 0))
        if self._task is not None:
            terms = " ".join(f"{k}={v:.4g}" for k, v in show.items())  # one word each: wraps between terms
            self.progress.update(self._task, advance=1, terms=terms, speed=f"{speed:.2f} it/s")
            self._log_line(terms, speed)

    def _log_line(self, terms: str, speed: float) -> None:
        """Where the console is not a terminal: the progress as one plain line (phase, step / steps,
        it/s, the phase's ETA, the terms), at most every LOG_LINE_SECONDS and at each phase's last
        step. ETA h:mm:ss: the phase's steps left at its mean time per step since it (re)started."""
        task = self.progress.tasks[self._task]
        now = time.perf_counter()
        if self.console.is_terminal or (now - self._logged < LOG_LINE_SECONDS and not task.finished):
            return
        self._logged = now
        start, done = self._phase_start
        left = (task.total - task.completed) * (now - start) / max(task.completed - done, 1)
        self.console.print(
            f"{task.description} {task.completed:g}/{task.total:g} {speed:.2f} it/s "
            f"ETA {timedelta(seconds=round(left))} {terms}",
            highlight=False,
            soft_wrap=True,
        )

    def advance(self) -> None:
        """One step of progress without a metrics line (steps between ``log_every``)."""
        if self.enabled and self._task is not None:
            self.progress.update(self._task, advance=1, speed=f"{self._speed():.2f} it/s")

    def _speed(self) -> float:
        now = time.perf_counter()
        speed = 1.0 / max(now - self._last, 1e-9)
        self._last = now
        return round(speed, 3)

    def truncate(self, global_step: int) -> None:
        """Drop metrics.jsonl lines after ``global_step`` (a resumed run rewrites them, once); the
        trackers drop them too (tensorboard's purge step). A failed write (a full disk) raises a
        one-line TLCMError, metrics.jsonl left as it was."""
        self._purge_step = global_step + 1
        if not self.enabled or not self.path.is_file():
            return
        lines = self.path.read_text().splitlines()
        keep = [line for line in lines if _global_step(line) <= global_step]
        if len(keep) != len(lines):
            tmp = self.path.with_name(".metrics.jsonl.tmp")
            try:
                tmp.write_text("".join(f"{line}\n" for line in keep))
                tmp.replace(self.path)
            except OSError as err:
                tmp.unlink(missing_ok=True)
                raise write_failed(f"the metrics to {self.path}", err) from err

    def last(self, key: str) -> int:
        """``key`` of the last metrics.jsonl line that has it (0: none; a resumed run's running
        totals continue from it)."""
        if not self.enabled or not self.path.is_file():
            return 0
        for line in reversed(self.path.read_text().splitlines()):
            try:
                value = json.loads(line).get(key)
            except json.JSONDecodeError:
                continue
            if value is not None:
                return value
        return 0

    def end_display(self) -> None:
        """Show the progress bars' final state now (leaving the context then draws nothing more):
        a closing message printed after this comes below them, not above."""
        self.progress.stop()

    def print(self, message: str) -> None:
        """A line above the progress display (long paths wrap whole, not cut at the console width)."""
        if self.enabled:
            self.progress.console.print(message, soft_wrap=True)
