"""The calibration package's shape: kernel families registered by name, and imports that run one way."""

from __future__ import annotations

import ast
from pathlib import Path

import perfbench.calibration.run as run
from perfbench.calibration.kernels import FAMILIES, KERNEL_FAMILIES

PACKAGE = Path(run.__file__).parent


class _FakeCuda:
    @staticmethod
    def synchronize():
        return None

    @staticmethod
    def empty_cache():
        return None


class _FakeTorch:
    cuda = _FakeCuda()


def _project_imports(path: Path) -> set[str]:
    """Modules of perfbench.calibration a file imports (at any depth)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("perfbench.calibration"):
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("perfbench.calibration")}
    return out


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_each_kernel_family_module_is_registered_under_its_own_name():
    assert all(module.NAME == name for name, module in FAMILIES.items())
    assert KERNEL_FAMILIES == tuple(FAMILIES)
    assert len({c for m in FAMILIES.values() for c in m.CLASSES}) == sum(len(m.CLASSES) for m in FAMILIES.values())


def test_measure_kernels_runs_only_the_named_families_and_records_a_failure_by_name(monkeypatch):
    ran = []

    def ok(bench):
        ran.append("elementwise")
        bench.keep("elementwise", {"time_s": 1.0})

    def boom(bench):
        raise RuntimeError("no kernel")
    monkeypatch.setattr(FAMILIES["elementwise"], "measure", ok)
    monkeypatch.setattr(FAMILIES["rope"], "measure", boom)
    out = run.measure_kernels(_FakeTorch(), None, lambda *_: None, only={"elementwise", "rope"})
    assert ran == ["elementwise"]
    assert out["samples"] == {"elementwise": [{"time_s": 1.0}]}
    assert list(out["failures"]) == ["rope"]


def test_no_calibration_module_imports_the_orchestrator_or_forms_a_circle():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: {m for m in _project_imports(p) if m in modules and m != name} for name, p in modules.items()}
    assert not [name for name, deps in graph.items() if "perfbench.calibration.run" in deps]
    visiting, done = set(), set()

    def visit(name, trail):
        assert name not in visiting, f"import circle: {' -> '.join(trail + [name])}"
        if name in done:
            return
        visiting.add(name)
        for dep in graph[name]:
            visit(dep, trail + [name])
        visiting.discard(name)
        done.add(name)
    for name in graph:
        visit(name, [])


def test_dry_run_prints_each_bundled_gpus_estimate_without_a_gpu():
    from typer.testing import CliRunner

    from perfbench.cli import app

    result = CliRunner().invoke(app, ["calibrate", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "estimated GPU time on h100" in result.output and "estimated GPU time on h200" in result.output
    assert result.output.count("total") == 2


def test_dry_run_of_a_remeasure_estimates_only_those_families():
    from typer.testing import CliRunner

    from analytic.calibration import bundled_path
    from perfbench.cli import app

    result = CliRunner().invoke(app, ["calibrate", "--dry-run", "--refit", str(bundled_path("h100")),
                                      "--remeasure", "ssd_shapes,elementwise"])
    assert result.exit_code == 0, result.output
    named = [line.split()[0] for line in result.output.splitlines()[1:]]
    assert sorted(named) == ["elementwise", "ssd_shapes", "total"]
