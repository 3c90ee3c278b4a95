"""tlcm.preemption and tlcm.errors.run_cli in one process, without training: which signal is kept,
when a second Ctrl-C aborts, which handlers are installed and restored, and the exit codes and lines
run_cli gives (the end-to-end checks are in test_checkpoint.py and test_preemption.py)."""

from __future__ import annotations

import signal
import threading

import pytest

from tlcm import errors, preemption
from tlcm.errors import TLCMError, run_cli
from tlcm.preemption import StopSignals, stop_signals


@pytest.fixture
def one_process(monkeypatch):
    """No torchrun: neither WORLD_SIZE nor RANK set, no process-wide handler."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setattr(preemption, "_process", None)


def handle(stop: StopSignals, signum: int) -> None:
    """``stop.handle(signum)``, failing the test (not aborting pytest) if it raises KeyboardInterrupt."""
    try:
        stop.handle(signum)
    except KeyboardInterrupt:
        pytest.fail(
            f"{signal.Signals(signum).name} aborted (KeyboardInterrupt) where it should only ask to stop"
        )


def test_the_first_signal_is_kept_and_only_a_second_ctrl_c_of_one_process_aborts(one_process, monkeypatch):
    stop = StopSignals()
    handle(stop, signal.SIGINT)  # the first Ctrl-C: a request, not an abort
    assert stop.received == "SIGINT"
    with pytest.raises(KeyboardInterrupt):  # the second: abort at once (one process, no WORLD_SIZE)
        stop.handle(signal.SIGINT)
    stop = StopSignals()
    stop.handle(signal.SIGTERM)
    stop.handle(signal.SIGHUP)  # a later signal does not replace the one that stopped the run
    assert stop.received == "SIGTERM"
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun forwards the terminal's Ctrl-C: twice is one request
    stop = StopSignals()
    handle(stop, signal.SIGINT)
    handle(stop, signal.SIGINT)
    assert stop.received == "SIGINT"


def test_sigterm_sigint_sighup_and_sigusr_are_handled_in_the_block_and_restored_after(one_process):
    """SIGUSR1 / SIGUSR2 too: SLURM's --signal=USR1@120 before a time limit (walkthrough 8: it killed
    a rank without a checkpoint)."""

    def before(signum, frame):  # the caller's own handler (a notebook's, a test runner's)
        raise AssertionError("not expected to run")

    wanted = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
    previous = {s: signal.signal(s, before) for s in wanted}
    try:
        with stop_signals() as stop:
            assert {s: signal.getsignal(s) for s in wanted} == dict.fromkeys(wanted, stop.handle)
        assert {s: signal.getsignal(s) for s in wanted} == dict.fromkeys(wanted, before)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_outside_the_main_thread_nothing_is_installed(one_process):
    """Python sets handlers only in the main thread: elsewhere a StopSignals that is never signalled."""
    got = []

    def worker():
        with stop_signals() as stop:
            got.append((stop.received, signal.getsignal(signal.SIGTERM)))

    handler = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert got == [(None, handler)]


def test_run_cli_exits_with_the_errors_own_code_and_130_after_ctrl_c(one_process, capsys):
    class NonFinite(TLCMError):
        exit_code = 3

    def raise_(err):
        def main():
            raise err

        return main

    for err, code in ((TLCMError("bad flag"), 2), (NonFinite("loss is NaN"), 3), (KeyboardInterrupt(), 130)):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(raise_(err))
        assert exit_info.value.code == code
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "error: bad flag",
        "error: loss is NaN",
        "interrupted (Ctrl-C): stopped without saving; earlier checkpoints are intact",
    ]


def test_a_rank_with_an_unsignalled_handler_prints_its_own_error(one_process, monkeypatch, capsys):
    """Under torchrun the process-wide handler is always installed: a rank > 0 waits for a signal it
    RECEIVED, and prints its own error when none came within the grace time."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(errors, "RANK_GRACE_SECONDS", 0.2)
    monkeypatch.setattr(preemption, "_process", StopSignals())  # installed, nothing received

    def bad():
        raise TLCMError("only this rank's shard is missing")

    with pytest.raises(SystemExit) as exit_info:
        run_cli(bad)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "[rank 1] error: only this rank's shard is missing\n"


@pytest.mark.parametrize(
    "world, rank, signum, expected",
    [
        (None, None, signal.SIGTERM, "SIGTERM: stopping after this step to save a checkpoint\n"),
        (
            None,
            None,
            signal.SIGINT,
            "SIGINT: stopping after this step to save a checkpoint (Ctrl-C again: abort without saving)\n",
        ),
        ("2", "0", signal.SIGINT, "SIGINT: stopping after this step to save a checkpoint\n"),
        ("2", "1", signal.SIGINT, ""),
    ],
)
def test_the_stopping_line_is_printed_once_by_rank_0(world, rank, signum, expected, monkeypatch, capfd):
    """The first signal prints one line on stderr, from rank 0 only (under torchrun every rank gets
    the signal: one line, not one per rank); the Ctrl-C-again hint only where a second Ctrl-C does
    abort (one process); a repeated signal prints nothing more."""
    for name, value in (("WORLD_SIZE", world), ("RANK", rank)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    stop = StopSignals()
    handle(stop, signum)
    if world is not None:
        handle(stop, signum)  # torchrun: a second signal only repeats the request
    else:
        handle(stop, signal.SIGTERM)
    assert stop.received == signal.Signals(signum).name
    assert capfd.readouterr().err.lstrip("\n") == expected  # not a terminal: a newline first
