"""`perfbench run` and `perfbench env` from the command line (CPU reference path)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from perfbench.cli import app  # noqa: E402
from perfbench.measure.results import load_results  # noqa: E402

TINY_TOML = """
[models.tiny]
d_model = 32
vocab_size = 64
pattern = "*-"
[models.tiny.attention]
n_heads = 4
n_kv_heads = 2
head_dim = 8
[models.tiny.mlp]
ffn_hidden = 64
"""


def _run(args):
    return CliRunner().invoke(app, args)


def test_cpu_reference_run_writes_results_and_a_summary(tmp_path):
    models = tmp_path / "models.toml"
    models.write_text(TINY_TOML)
    out = tmp_path / "res"
    result = _run(["run", "--model", "tiny", "--models-file", str(models), "--cpu-reference",
                   "--phase", "prefill,decode", "--batch", "1,2", "--seqlen", "4", "--out", str(out),
                   "--repeats", "2", "--max-repeats", "2", "--warmup", "0"])
    assert result.exit_code == 0, result.output
    frame = load_results(out)
    assert len(frame) == 4 and set(frame["status"]) == {"ok"}
    assert all("rest_ms" not in json.loads(e) for e in frame["extra"])  # no power limiter to rest on a CPU
    assert set(frame["dtype"]) == {"float32"} and set(frame["device"]) == {"cpu"}
    assert "results:" in result.output
    manifest = json.loads(next(out.glob("run-*.json")).read_text())
    assert manifest["status"] == "complete" and manifest["sweep"]["batches"] == [1, 2]


def test_resume_measures_only_new_points(tmp_path):
    models = tmp_path / "models.toml"
    models.write_text(TINY_TOML)
    out = tmp_path / "res"
    base = ["run", "--model", "tiny", "--models-file", str(models), "--cpu-reference", "--phase", "decode",
            "--seqlen", "4", "--out", str(out), "--repeats", "2", "--max-repeats", "2", "--resume"]
    assert _run(base + ["--batch", "1"]).exit_code == 0
    assert _run(base + ["--batch", "1,2"]).exit_code == 0
    frame = load_results(out)
    assert sorted(frame["batch"]) == [1, 2] and frame["run_id"].nunique() == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_without_cuda_run_says_so_in_one_line_and_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "perfbench", "run", "--layer", "mlp", "--out",
                           str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no CUDA GPU" in proc.stderr and "--cpu-reference" in proc.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args,message", [
    (["--layer", "mlp", "--model", "transformer-8b"], "exactly one"),
    (["--layer", "nope"], "unknown layer"),
    (["--layer", "mlp", "--batch", "0"], "positive"),
    (["--layer", "mlp", "--attn-backend", "xformers"], "--attn-backend"),
    (["--layer", "mlp", "--rest-ms", "-1"], "--rest-ms >= 0"),
])
def test_bad_arguments_are_user_errors(tmp_path, args, message):
    from perfbench.errors import USER_ERRORS

    result = _run(["run", *args, "--cpu-reference", "--out", str(tmp_path)])
    assert isinstance(result.exception, USER_ERRORS)
    assert message in str(result.exception)


def test_env_json_reports_versions_and_kernels():
    result = _run(["env", "--json"])
    assert result.exit_code == 0
    info = json.loads(result.output)
    assert info["versions"]["torch_version"] == torch.__version__
    assert "attention" in info["kernels"]
    assert info["conv_backend"] in ("causal_conv1d", "torch")
