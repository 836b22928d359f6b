"""The project's import graph: one-way layers (models -> analytic -> perfbench -> dashboards), no circles,
and imports at the top of a file unless they keep an optional dependency out of the paths that need none.

Read with `ast` from the source (imports inside functions included, nothing imported), so a lazy
import cannot hide an arrow that runs back up or closes a loop.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
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


def in_function_imports() -> list[tuple[str, str, str]]:
    """(importing module, path:line, imported project module) of each import inside a function body."""
    known = _modules()
    found = set()
    for module, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    for target in _imported(node, module, path.name == "__init__.py", known):
                        if target in known:
                            found.add((module, f"{path.relative_to(ROOT)}:{node.lineno}", target))
    return sorted(found)


# The only reason to import a project module inside a function: importing it at import time pulls in
# one of these optional dependencies (extras in pyproject.toml, absent from a CPU-only install) that the
# importing module does not already pull, so a top-level import would load it -- or fail without it --
# on paths that never use it (`perfbench predict` on a laptop, `perfbench compare` without plotly, the
# CLI without streamlit).
OPTIONAL = ("torch", "triton", "mamba_ssm", "causal_conv1d", "flash_attn", "fla", "einops", "pynvml", "nvtx",
            "streamlit", "plotly")

# Imports each module in turn in one fresh interpreter with the optional packages blocked (each attempt
# recorded), after the core dependencies were loaded; project modules are dropped between modules so each
# one's own import-time imports are seen.
_PROBE = """
import importlib, importlib.abc, json, sys
import numpy, pandas, pyarrow, typer, rich  # core dependencies: always there
OPTIONAL = set(sys.argv[1].split(","))
PROJECT = ("models", "analytic", "perfbench", "dashboards")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in OPTIONAL:
            attempted.add(name.partition(".")[0])
            raise ModuleNotFoundError(f"blocked: {name}", name=name)
        return None

sys.meta_path.insert(0, Block())
pulls = {}
for module in sys.argv[2:]:
    for name in [m for m in sys.modules if m.partition(".")[0] in PROJECT]:
        del sys.modules[name]
    attempted = set()
    try:
        importlib.import_module(module)
    except ImportError:
        pass
    pulls[module] = sorted(attempted)
print(json.dumps(pulls))
"""


def optional_dependencies_at_import(modules: list[str]) -> dict[str, list[str]]:
    """module -> the optional packages importing it tries to import (directly or through other modules)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _PROBE, ",".join(OPTIONAL), *modules], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300, check=True)
    return json.loads(proc.stdout)


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


def test_a_project_module_is_imported_inside_a_function_only_to_keep_an_optional_dependency_out():
    lazy = in_function_imports()
    pulls = optional_dependencies_at_import(sorted({m for m, _, _ in lazy} | {t for _, _, t in lazy}))
    needless = [f"{where} imports {target}" for module, where, target in lazy
                if not set(pulls[target]) - set(pulls[module])]
    assert needless == []


def test_the_probe_tells_a_module_that_pulls_an_optional_dependency_from_one_that_does_not():
    pulls = optional_dependencies_at_import(["models.torch_layers", "models.specs", "dashboards.app"])
    assert "torch" in pulls["models.torch_layers"]
    assert pulls["models.specs"] == []
    assert "streamlit" in pulls["dashboards.app"]


@pytest.mark.parametrize("args", [
    ["--help"],
    ["predict", "--model", "mamba2-hybrid-8b", "--phase", "decode", "--batch", "1", "--seqlen", "4k"],
    ["compare"],
])
def test_cpu_only_commands_run_without_torch(args):
    code = ("import sys\nsys.modules['torch'] = None\nfrom perfbench.cli import app\n"
            f"app({args!r}, standalone_mode=False)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
