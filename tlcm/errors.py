"""User-facing errors: one clear line (what was wrong, where, how to fix) and a non-zero exit."""

from __future__ import annotations

import sys
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


def run_cli(main: Callable[[], T]) -> T:
    """Run an entry point; a TLCMError becomes one red line on stderr and its exit code (2)."""
    try:
        return main()
    except TLCMError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
