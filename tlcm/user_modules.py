"""``--import MODULE``: a module of your own, imported by every command line before it parses its
flags (``python -m tlcm.train``, ``tlcm.sample``, ``tlcm.export``, ``tlcm.evaluate``,
``tlcm.data.trajectories``). Importing it registers what it defines: losses (``@register_loss``),
model families (``register_family``), presets (its ``PRESETS`` dict: tlcm.train adds them).

Only the standard library and tlcm.errors here: ``--help`` stays quick, and every CLI may import it.
"""

from __future__ import annotations

import importlib
import os
import shlex
import sys
from pathlib import Path

from tlcm.errors import TLCMError

IMPORTED: dict[str, int] = {}
"""The ``--import`` modules of this process -> how many presets each added (0: losses or families
only, or a module that forgot its PRESETS dict: tlcm.train's ``check_preset_names`` says so)."""

_GIVEN: dict[str, str] = {}
"""Module name -> the ``--import`` argument that named it (a .py path stays a path)."""


def import_flags(modules: tuple[str, ...] | list[str]) -> list[str]:
    """``--import NAME`` for each of ``modules``: the command line of a process that imports them
    too (``import_modules`` reads it)."""
    return [flag for name in modules for flag in ("--import", name)]


def module_name(arg: str) -> str:
    """The module an ``--import`` argument names: a .py file's stem, else the argument itself."""
    return Path(arg).stem if arg.endswith(".py") else arg


def _importable(arg: str) -> str:
    """``module_name(arg)``, made importable: a .py file's folder goes first on sys.path (a missing
    file is refused in one line)."""
    if arg.endswith(".py"):
        if not Path(arg).is_file():
            raise TLCMError(
                f"--import {arg}: no such file (from {os.getcwd()}): pass the path of your recipe "
                "file, or a module name (--import my_recipes with my_recipes.py on PYTHONPATH)"
            )
        sys.path.insert(0, str(Path(arg).resolve().parent))
    return module_name(arg)


def import_modules(argv: list[str]) -> tuple[list[str], list[str]]:
    """Import each ``--import MODULE`` of ``argv`` (repeatable, anywhere in it), recording it in
    ``IMPORTED``. MODULE is a module name (importable from the working directory or PYTHONPATH) or
    a path to a .py file (its folder is put first on sys.path). Returns ``argv`` without them and
    the imported modules' names."""
    rest, given, args = [], [], iter(argv)
    for arg in args:
        if arg == "--import":
            given.append(next(args, ""))
        elif arg.startswith("--import="):
            given.append(arg.removeprefix("--import="))
        else:
            rest.append(arg)
    names = []
    for arg in given:
        if not arg or arg.startswith("-"):
            raise TLCMError(
                "--import needs a module name: --import my_recipes (my_recipes.py in this folder)"
            )
        name = _importable(arg)
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not (name == err.name or name.startswith(f"{err.name}.")):
                raise  # the module itself imports something missing: its traceback says what
            raise TLCMError(
                f"--import {name}: no module named {err.name!r} (from {os.getcwd()}): run from the folder "
                f"that holds {name.replace('.', '/')}.py, or add its folder to PYTHONPATH"
            ) from None
        IMPORTED[name] = len(getattr(module, "PRESETS", {}))
        _GIVEN[name] = arg
        names.append(name)
    return rest, names


def imported_flags() -> str:
    """The ``--import`` flags of this process's modules as a command line takes them ("" without
    any): what a printed follow-up command (tlcm/summary.py's "Sample it:") needs to see them."""
    return "".join(f" --import {shlex.quote(_GIVEN.get(name, name))}" for name in IMPORTED)


def recorded_imports() -> list[str]:
    """This process's ``--import`` arguments as a run records them (``tlcm.resume.run_record``): a
    .py file's absolute path, else the module name. Reading the run later (sample, evaluate,
    export) needs them again; they are named in its refusals, never imported from the record (a run
    folder from someone else must not run code: the same rule as diffusers' trust_remote_code)."""
    return [str(Path(_GIVEN[n]).resolve()) if _GIVEN.get(n, "").endswith(".py") else n for n in IMPORTED]


def cli_args(args: list[str] | None) -> list[str]:
    """A CLI's ``args`` (default: sys.argv[1:]) with its ``--import`` modules imported and removed:
    the first line of every tlcm entry point's ``cli``."""
    return import_modules(sys.argv[1:] if args is None else list(args))[0]
