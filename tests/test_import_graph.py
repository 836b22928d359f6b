"""The project's import graph: one-way layers (models -> analytic -> perfbench -> dashboards), no circles.

Read with `ast` from the source (imports inside functions included, nothing imported), so a lazy
import cannot hide an arrow that runs back up or closes a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "analytic", "perfbench", "dashboards")
# What each package may import from the project besides itself.
ALLOWED = {"models": set(), "analytic": {"models"}, "perfbench": {"analytic", "models"},
           "dashboards": {"perfbench", "analytic", "models"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _imported(node: ast.AST, module: str, is_package: bool, known: dict) -> list[str]:
    """Project modules one import statement names: a submodule where `from X import Y` names one, else X."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: resolve against this module's package
        base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module
    return [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its source."""
    known = _modules()
    graph = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets |= {t for t in _imported(node, module, path.name == "__init__.py", known) if t in known}
        graph[module] = targets - {module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_graph_reads_every_package(graph):
    assert {m.split(".")[0] for m in graph} == set(PACKAGES)
    assert "analytic.predict" in graph["perfbench.commands.predict"]


def test_no_import_circles_between_modules(graph):
    assert circles(graph) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_the_layers_below_it(package, graph):
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() if m.split(".")[0] == package
                    for t in targets if t.split(".")[0] not in ALLOWED[package] | {package})
    assert upward == []


def test_circles_finds_a_loop_of_three():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
