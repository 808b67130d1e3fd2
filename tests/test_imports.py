"""Imports run one way: no circle among the modules of ``benchmark`` (with ``methods/`` and
``tasks/``, installed as ``benchmark.methods`` and ``benchmark.tasks``), and no module imports another module's private (``_x``) name.

Read from the source with ``ast``, nothing imported. Every ``import`` statement counts,
at module level or inside a function: a lazy import that only hides a circle from
Python's import order still makes the two modules depend on each other. An edge goes
to the module an import names (``from a.b import c`` -> ``a.b.c`` when that is a
module, else ``a.b``); the parent packages Python runs first are not edges of their
own (a package that re-exports its submodules would otherwise close a circle with
every one of them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> the package it installs as (methods/ and tasks/ are mapped inside benchmark)
PACKAGES = {"benchmark": "benchmark", "methods": "benchmark.methods", "tasks": "benchmark.tasks"}


def module_files(root: Path = ROOT, packages: dict[str, str] = PACKAGES) -> dict[str, Path]:
    """Module name -> source file, for every ``.py`` under the packages' folders."""
    found = {}
    for folder, package in packages.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = [*package.split("."), *path.relative_to(root / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is one of ours (None: a third-party name)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def import_graph(modules: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """(module -> the modules of ours it imports, private-name imports as 'importer: from X import _y')."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if target := _owner(alias.name, modules):
                        graph[module].add(target)
            elif isinstance(node, ast.ImportFrom):
                base = _base(module, path, node)
                for alias in node.names:
                    if f"{base}.{alias.name}" in modules:  # a submodule
                        graph[module].add(f"{base}.{alias.name}")
                        continue
                    if (target := _owner(base, modules)) is None:
                        continue
                    graph[module].add(target)
                    name = alias.name
                    if name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and target != module:
                        private.append(f"{module}: from {base} import {name}")
    for module in graph:
        graph[module].discard(module)
    return graph, private


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle as [a, b, ..., a], or None (depth-first search, colouring the modules)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_sees_lazy_and_relative_imports(tmp_path):
    """The checker itself: a circle closed by a function-level import is found, and a
    private name read through a relative import is caught."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from pkg.sub.c import g\n")
    (pkg / "sub" / "c.py").write_text("def g():\n    import pkg.a\n")
    (pkg / "d.py").write_text("from .sub.c import _hidden, g\nimport json\n")
    modules = module_files(tmp_path, {"pkg": "pkg"})
    graph, private = import_graph(modules)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.d"] == {"pkg.sub.c"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]
    assert private == ["pkg.d: from pkg.sub.c import _hidden"]
    graph["pkg.sub.c"].clear()
    assert find_cycle(graph) is None


@pytest.fixture(scope="module")
def graph():
    return import_graph(module_files())


def test_no_import_circle(graph):
    cycle = find_cycle(graph[0])
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_no_module_imports_another_modules_private_names(graph):
    assert graph[1] == [], "private names imported across modules:\n" + "\n".join(graph[1])


def test_no_module_imports_the_folders_by_their_checkout_names():
    """``methods/`` and ``tasks/`` install as ``benchmark.methods`` / ``benchmark.tasks``: an
    ``import methods`` still works from the checkout (its folder is on sys.path) but not from a
    wheel, and would load every method module twice (tests and tools included)."""
    stale = []
    for path in sorted([*ROOT.glob("*/**/*.py")]):
        if ".venv" in path.parts or "build" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            stale += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ("methods", "tasks")]
    assert stale == []


#: the layers, lowest first (docs/ARCHITECTURE.md draws them): a module may import its own layer
#: and the ones below, never one above; a module belongs to the longest prefix that names it
LAYERS = [
    ("foundation", ["benchmark.errors", "benchmark.registry", "benchmark.version", "benchmark.paths",
                    "benchmark.yamlfile", "benchmark.config", "benchmark.safe_load", "benchmark.stats",
                    "benchmark.progress", "benchmark.device", "benchmark.loggers", "benchmark.hubfolder",
                    "benchmark.distributed", "benchmark.raycluster"]),
    ("data", ["benchmark.data"]),
    ("models", ["benchmark.models"]),
    ("methods and tasks", ["benchmark.methods", "benchmark.tasks"]),
    ("training and storage", ["benchmark.pretraining", "benchmark.ddp", "benchmark.export", "benchmark.store",
                              "benchmark.legacy_hashes"]),
    ("factory", ["benchmark.factory"]),
    ("runner", ["benchmark.runner"]),
    ("orchestration and reports", ["benchmark.orchestrate", "benchmark.report", "benchmark.speed",
                                   "benchmark.speed_naive", "benchmark.experiments", "benchmark.doctor", "benchmark.caches"]),
    ("api", ["benchmark.api"]),
    ("cli", ["benchmark.commands", "benchmark.cli", "benchmark.__main__", "benchmark"]),
]
#: rooms of one layer that must not import each other
PEERS = [("benchmark.methods", "benchmark.tasks")]


def layer_of(module: str, layers=LAYERS) -> int | None:
    best = None
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def layer_violations(graph: dict[str, set[str]], layers=LAYERS, peers=PEERS) -> list[str]:
    """Every module without a layer, every import of a higher layer, every import between peer rooms."""
    out = [f"{m}: in no layer" for m in sorted(graph) if layer_of(m, layers) is None]
    for a in sorted(graph):
        for b in sorted(graph[a]):
            la, lb = layer_of(a, layers), layer_of(b, layers)
            if la is not None and lb is not None and lb > la:
                out.append(f"{a} ({layers[la][0]}) imports {b} ({layers[lb][0]})")
            for x, y in peers:
                if (a.startswith(x + ".") and b.startswith(y + ".")) or (a.startswith(y + ".") and b.startswith(x + ".")):
                    out.append(f"{a} imports its peer {b}")
    return out


def test_the_layer_check_sees_an_upward_import_and_a_peer():
    layers = [("low", ["p.low"]), ("mid", ["p.a", "p.b"]), ("high", ["p.high"])]
    graph = {"p.low.x": {"p.high.y"}, "p.a.m": {"p.b.n", "p.low.x"}, "p.b.n": set(), "p.high.y": {"p.low.x"},
             "p.stray": set()}
    assert layer_violations(graph, layers, [("p.a", "p.b")]) == [
        "p.stray: in no layer", "p.a.m imports its peer p.b.n", "p.low.x (low) imports p.high.y (high)"]


def test_imports_run_down_the_layers(graph):
    assert layer_violations(graph[0]) == []
