"""What every file tlcm writes shares: the permissions of the user's umask, and one way to fail.

Permissions: ``open`` gives a new file ``0o666 & ~umask`` (0644 under the usual umask 022), but
safetensors' writer makes it 0600 (a private temporary file, renamed), and so does diffusers'
``save_pretrained`` for weights: a ComfyUI service or a colleague could not read the export, a
checkpoint or a cache. ``save_tensors`` writes safetensors files with the umask's mode;
``honour_umask`` gives it to a ``save_pretrained`` folder's files.

Failures: safetensors reports I/O errors as SafetensorError; ``save_tensors`` raises them as the
OSError they are (errno, file name), so one ``except OSError`` covers every writer, and
``write_failed`` turns it into a one-line TLCMError (what, where, how to fix).

One training per run folder: ``lock_run`` takes an exclusive ``flock`` on ``RUN/.lock`` (the
training's rank 0, for the whole run); reading a run (sample, evaluate, export) takes no lock.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import re
import socket
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from tlcm.errors import TLCMError


def umask_mode() -> int:
    """The mode ``open`` gives a new file: 0o666 less the process's umask (read by setting it)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return 0o666 & ~mask


def honour_umask(path: Path) -> Path:
    """Give the file ``path``, or every file under the folder ``path``, the umask's mode."""
    path, mode = Path(path), umask_mode()
    for file in (f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]:
        file.chmod(mode)
    return path


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> Path:
    """``safetensors.torch.save_file`` with the umask's mode; an I/O failure (a full disk, a
    read-only folder) raises OSError with its errno and the file name."""
    try:
        save_file(tensors, path, metadata)
    except SafetensorError as err:
        code = re.search(r"os error (\d+)", str(err))
        if code is None:
            raise
        raise OSError(int(code[1]), os.strerror(int(code[1])), str(path)) from err
    return honour_umask(path)


def write_failed(what: str, err: OSError) -> TLCMError:
    """The one-line TLCMError for ``err`` raised while writing ``what`` (e.g. "the student to DIR")."""
    where = f" ({err.filename})" if err.filename else ""
    return TLCMError(
        f"cannot write {what}: {err.strerror or err}{where}: free space there (or make it writable), "
        "then run the same command again"
    )


LOCK_FILE = ".lock"
"""The run folder's lock file (``lock_run``): locked while a training writes the folder; its text
(pid, host, start time) names the holder. Left behind after a kill -9 (the kernel releases the
lock itself): an unlocked file refuses nothing."""

_HELD: dict[str, list] = {}
"""This process's run locks: lock file -> [fd, holders] (a second Trainer of the same folder in
one process, e.g. a test's, shares the lock instead of refusing itself)."""


class RunLock:
    """One holder of a run folder's lock (``lock_run``); ``release`` (or garbage collection) drops
    it, and the last holder of the process removes the file and unlocks it."""

    def __init__(self, path: Path) -> None:
        self.path, self.held = path, True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        entry = _HELD.get(str(self.path))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[str(self.path)]
            with contextlib.suppress(OSError):  # removed while locked: an opener checks the inode
                os.unlink(self.path)
            os.close(entry[0])

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # at interpreter exit (module globals gone): the kernel unlocks anyway
            pass


def _holder(fd: int) -> str:
    """Who holds the lock, from the lock file's text (written by ``lock_run``)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
        return f"pid {info['pid']} on host {info['host']} (started {info['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def lock_run(folder: Path) -> RunLock:
    """Take the exclusive lock of the run folder ``folder`` (``fcntl.flock`` on ``folder/.lock``,
    which gets this process's pid, host and start time), or refuse in one line (TLCMError, exit 2)
    when another process holds it; nothing is written then. The kernel releases a dead process's
    lock (the file may remain: it is taken over). Where flock is unsupported (some network file
    systems, Windows) the run goes on unlocked."""
    path = Path(folder).resolve() / LOCK_FILE
    if str(path) in _HELD:
        _HELD[str(path)][1] += 1
        return RunLock(path)
    try:
        import fcntl
    except ImportError:  # Windows: no flock
        return RunLock(path)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                break  # flock unsupported here (ENOLCK, EOPNOTSUPP): unlocked, the holder noted
            holder = _holder(fd)
            os.close(fd)
            raise TLCMError(
                f"{folder} is in use by {holder}: another training writes there; wait for it to end, "
                "or pass another --recipes.runtime.out-dir"
            ) from None
        try:  # locked: still the file at `path` (not one its holder removed as we opened it)?
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    _HELD[str(path)] = [fd, 1]
    return RunLock(path)
