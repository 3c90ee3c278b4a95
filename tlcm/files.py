"""What every file tlcm writes shares: the permissions of the user's umask, and one way to fail.

Permissions: ``open`` gives a new file ``0o666 & ~umask`` (0644 under the usual umask 022), but
safetensors' writer makes it 0600 (a private temporary file, renamed), and so does diffusers'
``save_pretrained`` for weights: a ComfyUI service or a colleague could not read the export, a
checkpoint or a cache. ``save_tensors`` writes safetensors files with the umask's mode;
``honour_umask`` gives it to a ``save_pretrained`` folder's files.

Failures: safetensors reports I/O errors as SafetensorError; ``save_tensors`` raises them as the
OSError they are (errno, file name), so one ``except OSError`` covers every writer, and
``write_failed`` turns it into a one-line TLCMError (what, where, how to fix).
"""

from __future__ import annotations

import os
import re
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
