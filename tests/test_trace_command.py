"""`perfbench trace` end to end on CPU: a real torch.profiler child run, fake nsys / ncu on PATH
that answer with synthetic exports, and the one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from perfbench.cli import app
from perfbench.errors import PerfbenchError
from trace_synth import NsysDB, ncu_raw_csv, nsys_two_points

ROOT = Path(__file__).resolve().parents[1]

FAKE_NSYS = r'''#!{python}
import os, shutil, sys
args = sys.argv[1:]
open(os.environ["FAKE_LOG"], "a").write(" ".join(args) + "\n")
if args[:1] == ["--version"]:
    print("NVIDIA Nsight Systems version 2099.1 (fake)")
elif args[:1] == ["profile"]:
    base = next(a.split("=", 1)[1] for a in args if a.startswith("--output="))
    open(base + ".nsys-rep", "w").write("fake")
elif args[:1] == ["export"]:
    shutil.copy(os.environ["FAKE_SQLITE"], next(a.split("=", 1)[1] for a in args if a.startswith("--output=")))
'''

FAKE_NCU = r'''#!{python}
import os, sys
args = sys.argv[1:]
open(os.environ["FAKE_LOG"], "a").write(" ".join(args) + "\n")
if args[:1] == ["--version"]:
    print("NVIDIA (R) Nsight Compute Command Line Profiler 2099.1 (fake)")
elif "--import" in args:
    sys.stdout.write(open(os.environ["FAKE_CSV"]).read())
else:
    open(args[args.index("--export") + 1] + ".ncu-rep", "w").write("fake")
'''


def _tool(bin_dir: Path, name: str, text: str) -> None:
    path = bin_dir / name
    path.write_text(text.replace("{python}", sys.executable))
    path.chmod(0o755)


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _tool(bin_dir, "nsys", FAKE_NSYS)
    _tool(bin_dir, "ncu", FAKE_NCU)
    log = tmp_path / "tools.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_SQLITE", str(nsys_two_points(tmp_path / "export.sqlite")))
    return log


def _invoke(*args: str):
    result = CliRunner().invoke(app, ["trace", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _only_trace(out: Path) -> Path:
    (directory,) = list(out.iterdir())
    return directory


def test_nsys_trace_writes_report_export_breakdown_and_manifest(fake_tools, tmp_path):
    out, store = tmp_path / "traces", tmp_path / "store"
    result = _invoke("--layer", "mamba2,mlp", "--phase", "decode,prefill", "--batch", "8", "--seqlen", "4k",
                     "--out", str(out), "--store", str(store))
    assert result.exit_code == 0, result.output
    directory = _only_trace(out)
    assert {p.name for p in directory.iterdir()} >= {"trace.json", "breakdown.parquet",
                                                     "mamba2-mlp_decode-prefill.nsys-rep",
                                                     "mamba2-mlp_decode-prefill.sqlite"}
    breakdown = pd.read_parquet(directory / "breakdown.parquet")
    assert set(breakdown["trace_id"]) == {directory.name}
    assert (store / f"breakdown-{directory.name}.parquet").is_file()
    manifest = json.loads((directory / "trace.json").read_text())
    assert manifest["status"] == "ok" and "2099.1" in manifest["tool_version"]
    assert "mamba2/decode/B=64/L=4096" in result.output  # the printed per-point table


def test_nsys_runs_the_child_perfbench_run_with_the_same_point_selectors(fake_tools, tmp_path):
    _invoke("--layer", "mamba2", "--phase", "prefill", "--batch", "8", "--seqlen", "4096", "--eager",
            "--run-arg=--max-repeats=7", "--out", str(tmp_path / "traces"))
    profile = next(line for line in fake_tools.read_text().splitlines() if line.startswith("profile"))
    for flag in ("--trace=cuda,nvtx", "--sample=none", "--cpuctxsw=none", "--cuda-graph-trace=node"):
        assert flag in profile.split()
    child = profile.split(f"{sys.executable} ", 1)[1].split()
    assert child[:8] == ["-m", "perfbench", "run", "--layer", "mamba2", "--phase", "prefill", "--batch"]
    assert child[8:10] == ["8", "--seqlen"] and child[10] == "4096"
    assert "--eager" in child and child[-1] == "--max-repeats=7"


def test_an_export_without_point_ranges_is_one_error(fake_tools, tmp_path, monkeypatch):
    db = NsysDB(tmp_path / "empty.sqlite")
    db.kernel("k", 1_000, 10, 500)
    monkeypatch.setenv("FAKE_SQLITE", str(db.close()))
    with pytest.raises(PerfbenchError, match="no kernels inside perfbench NVTX ranges"):
        _invoke("--layer", "mlp", "--out", str(tmp_path / "traces"))


def test_ncu_trace_compares_counted_bytes_and_flops_with_the_model(fake_tools, tmp_path, monkeypatch):
    pytest.importorskip("analytic.predict")
    csv = tmp_path / "fake.csv"
    step = [("nvjet_tst_64x8", {"dram__bytes_read.sum": 5e8, "sm__ops_path_tensor_src_bf16_dst_fp32.sum": 1e9}),
            ("vectorized_elementwise_kernel", {"dram__bytes_read.sum": 1e6}),
            ("vectorized_elementwise_kernel", {"dram__bytes_read.sum": 1e6}),
            ("nvjet_tst_64x8", {"dram__bytes_read.sum": 5e8, "sm__ops_path_tensor_src_bf16_dst_fp32.sum": 1e9})]
    csv.write_text(ncu_raw_csv(step * 3))
    monkeypatch.setenv("FAKE_CSV", str(csv))
    out = tmp_path / "traces"
    result = _invoke("--ncu", "--layer", "mlp", "--phase", "decode", "--batch", "64", "--seqlen", "4096",
                     "--launch-count", "40", "--out", str(out))
    assert result.exit_code == 0, result.output
    directory = _only_trace(out)
    table = pd.read_parquet(directory / "ncu_vs_model.parquet")
    assert set(table["nvtx_range"]) == {"mlp/decode/B=64/L=4096"}
    assert "total" in set(table["op_class"])
    assert (directory / "mlp_decode_B_64_L_4096.ncu.csv").is_file()
    profile = next(line for line in fake_tools.read_text().splitlines() if "--nvtx-include" in line)
    assert "--launch-count 40" in profile and "--clock-control none" in profile


def _run_cli(args: list[str], path: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=path)
    return subprocess.run([sys.executable, "-m", "perfbench", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_without_nsys_one_line_suggests_torch_profiler_and_exits_2(tmp_path):
    done = _run_cli(["trace", "--layer", "mlp", "--out", str(tmp_path / "t")], str(tmp_path))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--torch-profiler" in done.stderr
    assert not (tmp_path / "t").exists()


def test_without_ncu_ncu_is_one_line_and_exits_2(tmp_path):
    done = _run_cli(["trace", "--ncu", "--layer", "mlp", "--out", str(tmp_path / "t")], str(tmp_path))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "ncu" in done.stderr


def test_ncu_and_torch_profiler_together_are_refused(tmp_path):
    done = _run_cli(["trace", "--ncu", "--torch-profiler", "--layer", "mlp"], str(tmp_path))
    assert done.returncode == 2 and "exclude" in done.stderr


TINY = """
[models.tiny-mlp]
d_model = 32
vocab_size = 50
pattern = "-"
[models.tiny-mlp.mlp]
ffn_hidden = 64
"""


def test_torch_profiler_trace_of_a_real_cpu_run_matches_the_harness_ranges(tmp_path):
    pytest.importorskip("torch")
    models = tmp_path / "models.toml"
    models.write_text(TINY)
    out = tmp_path / "traces"
    done = _run_cli(["trace", "--torch-profiler", "--model", "tiny-mlp", "--phase", "decode", "--batch", "2",
                     "--seqlen", "8", f"--models-file={models}", "--run-arg=--cpu-reference",
                     "--run-arg=--repeats=2", "--run-arg=--max-repeats=2", "--out", str(out)], os.environ["PATH"])
    assert done.returncode == 0, done.stderr[-2000:]
    directory = _only_trace(out)
    breakdown = pd.read_parquet(directory / "breakdown.parquet")
    from perfbench.measure.results import load_results

    results = load_results(directory / "results")
    assert set(breakdown["nvtx_range"]) == set(results["nvtx_range"]) == {"tiny-mlp/decode/B=2/L=8"}
    assert set(breakdown["results_run_id"]) == set(results["run_id"])
    assert (breakdown["steps"] == results["n_repeats"].iloc[0]).all()


def test_a_failing_child_run_is_one_line_with_its_error_and_the_log(tmp_path):
    pytest.importorskip("torch")
    done = _run_cli(["trace", "--torch-profiler", "--layer", "mlp", "--run-arg=--repeats=0",
                     "--out", str(tmp_path / "t")], os.environ["PATH"])
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "--repeats" in line and "trace.log" in line
    (manifest,) = (tmp_path / "t").glob("*/trace.json")
    assert json.loads(manifest.read_text())["status"] == "error"
