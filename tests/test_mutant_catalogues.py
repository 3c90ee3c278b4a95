"""The mutation catalogues (tests/mutants/*.py) still apply to the source: each mutant's ``old``
text occurs exactly once in its file, the edit leaves valid Python, and every test it names exists
(the file, and for a node id its test function). The runner reports a catalogue that fell behind the
source only when the catalogue is run (hours); this finds it in the suite, in about a second. (One
mutant had fallen behind a source change this way for a session, unrun: redteam4's prompt line
numbers.)"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "mutants"))
from run import catalogues  # noqa: E402

MUTANTS = [(stem, m) for stem, mutants in catalogues([]).items() for m in mutants]


def test_mutant_names_are_unique_within_each_catalogue():
    names = [(stem, m.name) for stem, m in MUTANTS]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def _problems(mutant) -> list[str]:
    source = (ROOT / mutant.file).read_text()
    if source.count(mutant.old) != 1:
        return [f"`old` occurs {source.count(mutant.old)} times in {mutant.file}"]
    out = []
    if mutant.new == mutant.old:
        out.append("`new` equals `old`")
    elif mutant.file.endswith(".py"):
        try:
            ast.parse(source.replace(mutant.old, mutant.new))
        except SyntaxError as err:
            out.append(f"the edit is not valid Python (line {err.lineno})")
    args = list(mutant.tests)
    while "-k" in args:  # pytest's "-k EXPRESSION" selects within the files named
        i = args.index("-k")
        del args[i : i + 2]
    if not args:
        out.append("no test named")
    for test in args:
        file, *names = test.split("::")
        if not (ROOT / file).is_file():
            out.append(f"{test}: no file {file}")
        elif names:  # the function (last part; a class's method too), without its parameters
            name = re.sub(r"\[.*\]$", "", names[-1])
            if not re.search(rf"^\s*(async )?def {re.escape(name)}\(", (ROOT / file).read_text(), re.M):
                out.append(f"{test}: {file} has no test {name}")
    return out


def test_each_mutant_applies_once_and_names_existing_tests():
    problems = [f"{stem}:{m.name}: {p}" for stem, m in MUTANTS for p in _problems(m)]
    assert not problems, "\n".join(problems)
