"""User-facing errors: one clear line (what was wrong, where, how to fix) and a non-zero exit."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from rich.console import Console
from rich.markup import escape

T = TypeVar("T")


class TLCMError(Exception):
    """An error caused by the user's input (model folder, prompt file, recipe, flag values).

    Its message is the whole story in one line; entry points print it without a traceback and
    exit with ``exit_code`` (2; subclasses may differ, e.g. a non-finite loss exits with 3).
    """

    exit_code: int = 2


INTERRUPTED_EXIT_CODE = 130
"""Exit code after Ctrl-C that did not end in a saved checkpoint (128 + SIGINT, as shells report)."""


RANK_GRACE_SECONDS = 60.0
"""Under torchrun, how long a rank > 0 with an error waits for torchrun to stop it (which it does
once rank 0 exits with the same error) before printing the error itself (one of its own)."""


def run_cli(main: Callable[[], T]) -> T:
    """Run an entry point; a TLCMError becomes one red line on stderr and its exit code (2), a
    KeyboardInterrupt (Ctrl-C outside training, or twice in it) one line and 130. Under torchrun
    the line comes once, from rank 0: every rank checks the same input and fails alike, and a
    rank > 0 that exited first would make torchrun kill rank 0 before it printed; so a rank > 0
    waits (up to RANK_GRACE_SECONDS) to be stopped, and prints the line, prefixed with its rank,
    only if it is not. Every rank exits with the code."""
    try:
        return main()
    except TLCMError as err:
        _say(f"[bold red]error:[/] {escape(str(err))}")
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        _say("[bold red]interrupted[/] (Ctrl-C): stopped without saving; earlier checkpoints are intact")
        sys.exit(INTERRUPTED_EXIT_CODE)


def note(line: str) -> None:
    """A notice for the user: one plain line on stderr (no markup read from it)."""
    Console(stderr=True).print(escape(line), highlight=False, soft_wrap=True)


def _say(line: str) -> None:
    """One line on stderr: from rank 0 at once, from another rank (RANK, set by torchrun) only if
    torchrun has not stopped it within RANK_GRACE_SECONDS."""
    rank = os.environ.get("RANK", "0")
    if rank not in ("", "0"):
        if _stopped_within(RANK_GRACE_SECONDS):
            return
        line = f"{escape(f'[rank {rank}]')} {line}"
    Console(stderr=True).print(line, highlight=False, soft_wrap=True)


def _stopped_within(seconds: float) -> bool:
    """Whether a stop signal arrives within ``seconds`` (seen by tlcm.preemption's process-wide
    handler; without it, the signal ends the process as usual)."""
    from tlcm import preemption

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        signals = preemption.process_signals()
        if signals is not None and signals.received:
            return True
        time.sleep(0.05)
    return False
