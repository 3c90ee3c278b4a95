"""Imports flow one way (docs/design.md, "Direction of imports"): no circle in the import graph of
the tlcm package, counting imports inside functions too (a late import hides a circle from Python,
not from the reader), and the recipe tree (tlcm.config) loads no model library and no loss."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import tlcm

ROOT = Path(tlcm.__file__).parent


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def import_graph(root: Path, package: str = "tlcm") -> dict[str, set[str]]:
    """Module -> the package's modules it imports (module level and inside functions; not under
    ``if TYPE_CHECKING:``). ``from a.b import c`` counts a.b.c when that is a module, else a.b; a
    name that is no module counts its nearest enclosing module."""
    modules = {}
    for file in root.rglob("*.py"):
        parts = (package, *file.relative_to(root).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file

    def nearest(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, file in modules.items():
        tree = ast.parse(file.read_text(), str(file))
        hidden = {id(n) for t in ast.walk(tree) if _type_checking(t) for n in ast.walk(t)}
        deps = set()
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            if isinstance(node, ast.Import):
                deps |= {nearest(a.name) for a in node.names if a.name.split(".")[0] == package}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, one level up per extra dot
                    anchor = name if file.name == "__init__.py" else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                if base.split(".")[0] == package:
                    deps |= {
                        f"{base}.{a.name}" if f"{base}.{a.name}" in modules else nearest(base)
                        for a in node.names
                    }
        graph[name] = deps - {name, ""}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def describe(graph: dict[str, set[str]], component: list[str]) -> str:
    """One circle's edges, ``a -> b`` for each import inside it."""
    inside = set(component)
    return ", ".join(f"{a} -> {b}" for a in component for b in sorted(graph[a] & inside))


def test_the_tlcm_import_graph_has_no_circles():
    graph = import_graph(ROOT)
    found = circles(graph)
    assert not found, "import circles (break each: docs/design.md, 'Direction of imports'):\n" + "\n".join(
        describe(graph, c) for c in found
    )


def test_the_circle_finder_sees_late_imports_and_skips_type_checking(tmp_path):
    """A function-level import closes a circle; one under ``if TYPE_CHECKING:`` does not."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import b  # noqa\n")
    (pkg / "a.py").write_text("from pkg.sub.b import thing\n")
    (pkg / "sub" / "b.py").write_text("def thing():\n    from pkg import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n")
    (pkg / "d.py").write_text("import pkg.c\n")
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.sub"] == {"pkg.sub.b"} and graph["pkg.c"] == set()
    assert circles(graph) == [["pkg.a", "pkg.sub.b"]]
    assert describe(graph, ["pkg.a", "pkg.sub.b"]) == "pkg.a -> pkg.sub.b, pkg.sub.b -> pkg.a"


CONFIG_CHECK = """
import sys
import tlcm.config
print(" ".join(sorted(sys.modules)))
"""


def test_the_recipe_tree_loads_no_model_library_and_no_loss():
    """``import tlcm.config`` (what --help and every recipe load) needs torch and the loss base
    class only: no model library, and of tlcm.losses just the base class and the registry (the
    built-in losses load with the recipe that uses them, or with ``tlcm.losses.LOSSES``)."""
    proc = subprocess.run([sys.executable, "-c", CONFIG_CHECK], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    libraries = {name.split(".")[0] for name in loaded} & {"timm", "diffusers", "peft", "transformers"}
    assert not libraries, f"import tlcm.config loads {sorted(libraries)}"
    losses = {name for name in loaded if name.startswith("tlcm.losses.")}
    assert losses <= {"tlcm.losses.base", "tlcm.losses.registry"}, (
        f"import tlcm.config loads {sorted(losses)}"
    )


def test_the_loss_registry_still_lists_every_built_in_loss():
    """``tlcm.losses.LOSSES`` / ``loss_config`` import the built-in losses on first use."""
    code = (
        "import json; from tlcm.losses import LOSSES, loss_config; "
        "print(json.dumps([sorted(LOSSES), type(loss_config('lcd')).__name__]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    names, config = json.loads(proc.stdout)
    assert {"dmd", "gan", "lcd", "mlcd", "preference"} <= set(names) and config == "LCDConfig"


BAD_FOLDER_CHECK = """
import sys
from tlcm.errors import run_cli
from {module} import cli
try:
    run_cli(lambda: cli({argv!r}))
except SystemExit as exit:
    loaded = {{name.split(".")[0] for name in sys.modules}} & {{"diffusers", "peft", "transformers", "timm"}}
    print(exit.code, " ".join(sorted(loaded)))
"""


@pytest.mark.parametrize(
    "module, argv",
    [
        ("tlcm.train", ["recipes:tlcm-full", "--recipes.model.path", "{missing}"]),
        ("tlcm.sample", ["--model", "{missing}", "--prompt", "a 3"]),
        ("tlcm.evaluate", ["generate", "--model", "{missing}", "--prompts", "x", "--out", "{missing}-o"]),
        ("tlcm.data.trajectories", ["--model", "{missing}", "--out", "{missing}-out"]),
        ("tlcm.evaluate", ["teacher-table", "--model", "{missing}"]),
    ],
)
def test_a_bad_model_folder_is_refused_before_a_model_library_loads(module, argv, tmp_path):
    """The CLIs that take a model folder check it (tlcm/models/folders.py: model_index.json, its
    component folders) before importing diffusers / peft / transformers (~5 s of a 7-8 s refusal):
    exit 2, and none of them in sys.modules."""
    argv = [a.format(missing=tmp_path / "missing") for a in argv]
    code = BAD_FOLDER_CHECK.format(module=module, argv=argv)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2"], proc.stdout
    assert "does not exist" in proc.stderr
