"""Deliberate breakages of the maths, and whether the tests catch each one (mutation testing).

Each catalogue in this folder (every ``*.py`` but this one) defines ``MUTANTS``: a list of
``Mutant``s, a one-place edit of the source (a flipped sign, a swapped pair, a dropped stop-grad,
the wrong adapter) and the test files or node ids that must fail under it. The runner copies the
working tree (what git tracks or would add) to a scratch folder, applies one mutant at a time
there and runs its tests with pytest; a mutant whose tests pass has survived: a hole in the
tests. The working tree is never edited.

    .venv/bin/python tests/mutants/run.py --jobs 2   # every catalogue: ~3 h of one core, in 2 copies at a time
    .venv/bin/python tests/mutants/run.py consistency -k mlcd  # one catalogue, names with "mlcd"

It prints every mutant's verdict, seconds and file, then the ones not caught. Exit status 1 if
any mutant survived, its edit no longer applies (the source moved on and the catalogue must
follow it) or its tests name nothing.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass(frozen=True)
class Mutant:
    """Replace ``old`` (exactly one occurrence in ``file``, relative to the repository root) by
    ``new``; ``tests``: pytest arguments (files or node ids) of which at least one must fail."""

    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str = ""


def catalogues(names: list[str]) -> dict[str, list[Mutant]]:
    """{catalogue name: its MUTANTS} of ``names`` (all of this folder's catalogues if empty)."""
    paths = sorted(p for p in HERE.glob("*.py") if p.stem not in ("run", "__init__"))
    known = {p.stem: p for p in paths}
    unknown = sorted(set(names) - set(known))
    if unknown:
        sys.exit(f"unknown catalogue(s) {unknown}; known: {sorted(known)}")
    out = {}
    for stem in names or sorted(known):
        spec = importlib.util.spec_from_file_location(f"mutants_{stem}", known[stem])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        out[stem] = module.MUTANTS
    return out


def scratch_copy() -> Path:
    """The working tree's files (tracked, and untracked but not ignored) in a new temporary
    folder, with this checkout's .venv linked in."""
    dest = Path(tempfile.mkdtemp(prefix="tlcm-mutants-"))
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


def run_mutant(repo: Path, mutant: Mutant, timeout: float) -> tuple[str, float]:
    """(verdict, seconds): "killed" (a test failed), "SURVIVED", "NOT APPLIED" (``old`` is not in
    the file exactly once, or the edit is not valid Python), "NO TESTS RAN" (a test id that names
    nothing) or "TIMEOUT" (counted as killed: a hang is caught, slowly)."""
    path = repo / mutant.file
    source = path.read_text()
    if source.count(mutant.old) != 1:
        return f"NOT APPLIED ({source.count(mutant.old)} matches)", 0.0
    mutated = source.replace(mutant.old, mutant.new)
    if path.suffix == ".py":
        try:  # a mutant that breaks the syntax would be "caught" by any test: not a test of the tests
            ast.parse(mutated)
        except SyntaxError as err:
            return f"NOT APPLIED (syntax error at line {err.lineno})", 0.0
    path.write_text(mutated)
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider", *mutant.tests]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, timeout=timeout)
        verdict = {0: "SURVIVED", 1: "killed"}.get(done.returncode)
        if done.returncode in (4, 5):  # usage error, no tests collected: the catalogue's fault
            verdict = f"NO TESTS RAN (pytest exit {done.returncode})"
        elif verdict is None:  # an import or collection error the mutant caused: say so
            verdict = f"killed (pytest exit {done.returncode})"
    except subprocess.TimeoutExpired:
        verdict = "TIMEOUT"
    finally:
        path.write_text(source)
    return verdict, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("catalogues", nargs="*", help="catalogues (tests/mutants/*.py); default all")
    parser.add_argument("-k", default="", help="only mutants whose name contains this")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant's tests")
    parser.add_argument("--jobs", type=int, default=1, help="mutants at a time, each in its own copy")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    chosen = [(c, m) for c, ms in catalogues(args.catalogues).items() for m in ms if args.k in m.name]
    repos = [scratch_copy() for _ in range(min(args.jobs, len(chosen)) or 1)]
    print(f"{len(chosen)} mutants, {len(repos)} at a time on copies of the working tree", flush=True)
    free, bad, done, lock = queue.Queue(), [], [0], threading.Lock()
    for repo in repos:
        free.put(repo)

    def one(item: tuple[str, Mutant]) -> None:
        cat, m = item
        repo = free.get()  # a copy no other mutant is editing
        try:
            verdict, seconds = run_mutant(repo, m, args.timeout)
        finally:
            free.put(repo)
        with lock:
            done[0] += 1
            print(
                f"[{done[0]}/{len(chosen)}] {verdict:<12} {seconds:6.1f} s  {cat}:{m.name}  ({m.file})",
                flush=True,
            )
            if verdict.startswith(("SURVIVED", "NOT APPLIED", "NO TESTS")):
                bad.append(f"{cat}:{m.name}: {verdict}")

    try:
        with ThreadPoolExecutor(len(repos)) as pool:
            list(pool.map(one, chosen))
    finally:
        for repo in repos:
            shutil.rmtree(repo)
    print(f"\n{len(chosen) - len(bad)} of {len(chosen)} mutants caught" + ("" if not bad else ":"))
    for line in sorted(bad):
        print(f"  {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
