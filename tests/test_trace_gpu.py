"""On the GPU machine (marker gpu; `source .gpu/activate.sh` first so nsys is on PATH):
`perfbench trace` of one point yields a report whose NVTX range names are the harness's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from perfbench.measure.nvtx_ranges import range_name

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[1]
POINT = ("mlp", "decode", 8, 512)
QUICK = ["--run-arg=--max-repeats=10", "--run-arg=--target-ms=20"]


def _trace(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "traces"
    name, phase, batch, seqlen = POINT
    done = subprocess.run([sys.executable, "-m", "perfbench", "trace", "--layer", name, "--phase", phase,
                           "--batch", str(batch), "--seqlen", str(seqlen), *QUICK, *args, "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    (directory,) = list(out.iterdir())
    return directory


def _harness_ranges(directory: Path, results: Path | None = None) -> set[str]:
    from perfbench.measure.results import load_results

    frame = load_results(results or directory / "results")
    return set(frame.loc[frame["status"] == "ok", "nvtx_range"])


def test_nsys_report_ranges_are_the_harness_ranges(cuda, tmp_path):
    if shutil.which("nsys") is None:
        pytest.skip("nsys not on PATH (source .gpu/activate.sh)")
    from perfbench.traces.nsys_sqlite import range_names

    directory = _trace(tmp_path)
    expected = {range_name(*POINT)}
    assert _harness_ranges(directory) == expected
    (sqlite,) = list(directory.glob("*.sqlite"))
    assert set(range_names(sqlite)) == expected
    assert list(directory.glob("*.nsys-rep"))
    breakdown = pd.read_parquet(directory / "breakdown.parquet")
    assert set(breakdown["nvtx_range"]) == expected
    assert (breakdown["device"] == "cuda").all() and "gemm" in set(breakdown["op_class"])
    assert breakdown["share"].sum() == pytest.approx(1.0)


def test_torch_profiler_trace_ranges_are_the_harness_ranges(cuda, tmp_path):
    directory = _trace(tmp_path, "--torch-profiler")
    breakdown = pd.read_parquet(directory / "breakdown.parquet")
    assert set(breakdown["nvtx_range"]) == _harness_ranges(directory) == {range_name(*POINT)}
    assert (breakdown["device"] == "cuda").all() and "gemm" in set(breakdown["op_class"])


def test_ncu_counts_bytes_and_flops_for_the_point(cuda, tmp_path):
    if shutil.which("ncu") is None:
        pytest.skip("ncu not on PATH")
    directory = _trace(tmp_path, "--ncu", "--launch-count", "24")
    table = pd.read_parquet(directory / "ncu_vs_model.parquet")
    total = table.set_index("op_class").loc["total"]
    assert total["counted_bytes"] > 0 and total["counted_flops"] > 0
    assert set(table["nvtx_range"]) == {range_name(*POINT)}
