"""Stop signals: SIGTERM (a scheduler's pre-emption, or torchrun forwarding its own), SIGINT (Ctrl-C),
SIGHUP (the terminal closed) and SIGUSR1 / SIGUSR2 (what SLURM's ``--signal=USR1@120`` sends
before a time limit, the habit of Lightning and submitit users) ask the training loop to stop after
the current optimizer step,
save a checkpoint and exit 75, instead of killing the process and losing the work since the last
checkpoint (with the default ``checkpoint-every 0``: the whole phase).

``StopSignals`` records the first such signal (``received``: its name); a second Ctrl-C of a single
process raises KeyboardInterrupt at once (the user insists: the checkpoint being written, if any, is
dropped whole, the previous one stays; ``tlcm.errors.run_cli`` prints one line, exit 130). Under
torchrun a second SIGINT only repeats the request: the launcher forwards the terminal's Ctrl-C, so
every rank gets it twice.

``python -m tlcm.train`` installs one for the whole process (``install_for_process``, never
removed): a signal that arrives while the model loads is kept until the first step ends, and one
that arrives after the save (torchrun's agent sends SIGTERM to the ranks still running once one
rank has exited) cannot kill a rank that is about to exit 75. ``Trainer.run`` uses that one, or,
called as a library (tests, notebooks), installs its own for the run and restores the previous
handlers afterwards.

A stop whose save fails because another process died ends in one line naming the latest
checkpoint (``tlcm.distributed.stop_failures``), not in the collective's traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)
"""The signals that stop training with a checkpoint (SIGHUP, SIGUSR1 and SIGUSR2 do not exist on
Windows). SIGUSR1 / SIGUSR2 reach the ranks only when sent to them (SLURM's ``--signal=USR1`` without
``B:`` signals every process of the step): torchrun itself dies of SIGUSR1 and leaves its ranks
running (walkthrough 8), so send the launcher SIGTERM."""


class StopSignals:
    """The first stop signal received (``received``: its name, e.g. "SIGTERM"; None: none)."""

    def __init__(self) -> None:
        self.received: str | None = None

    def handle(self, signum: int, frame=None) -> None:
        """The signal handler: remember the first signal; a second SIGINT (one process) aborts."""
        single = os.environ.get("WORLD_SIZE", "1") in ("", "1")
        if self.received is not None and signum == signal.SIGINT and single:
            raise KeyboardInterrupt
        if self.received is None and os.environ.get("RANK", "0") in ("", "0"):
            again = " (Ctrl-C again: abort without saving)" if single and signum == signal.SIGINT else ""
            name = signal.Signals(signum).name
            # a terminal: replace the progress line (and the echoed ^C), which rich redraws below
            start = "\r\x1b[2K" if os.isatty(2) else "\n"
            with contextlib.suppress(OSError):  # no stderr: stop all the same
                os.write(2, f"{start}{name}: stopping after this step to save a checkpoint{again}\n".encode())
        self.received = self.received or signal.Signals(signum).name

    def install(self) -> dict[int, object]:
        """Handle every stop signal here; returns the previous handlers (for ``restore``)."""
        return {s: signal.signal(s, self.handle) for s in STOP_SIGNALS}

    @staticmethod
    def restore(previous: dict[int, object]) -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)


_process: StopSignals | None = None


def install_for_process() -> StopSignals:
    """Handle the stop signals for the rest of the process (the tlcm.train command line)."""
    global _process
    if _process is None:
        _process = StopSignals()
        _process.install()
    return _process


def process_signals() -> StopSignals | None:
    """The process-wide ``StopSignals`` (``install_for_process``), or None if not installed."""
    return _process


@contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """The process's ``StopSignals`` if installed; else one installed for the block (handlers
    restored after it). Outside the main thread (where Python cannot set handlers) one that is
    never signalled."""
    if _process is not None:
        yield _process
        return
    stop = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = stop.install()
    try:
        yield stop
    finally:
        stop.restore(previous)
