"""`perfbench predict` and `perfbench models`: JSON fields, size parsing, and bad input.

Most tests run `perfbench.cli.main()` in-process (argv patched; it is what the console script
calls, including the one-line error handling); two run `python -m perfbench.cli` as a subprocess
to check the real entry point end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from analytic.calibration import Calibration
from models.registry import PAPER_MODELS, get_model
from perfbench.cli import main

PREDICT_FIELDS = {"phase", "batch", "seqlen", "gpu", "time_ms", "flops", "bytes", "bound"}
MODELS_FIELDS = {"name", "params", "layers", "kv_bytes_per_token", "state_bytes_per_sequence"}


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["perfbench", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(result) -> str:
    code, out, err = result
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


# ---------------------------------------------------------------------------------------------
# JSON output


def test_predict_model_json_has_the_promised_fields(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "predict", "--model", "mamba2-hybrid-8b", "--phase",
                           "decode", "--batch", "1,8,64", "--seqlen", "1k,4k", "--gpu", "h100",
                           "--calibration", "none", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 6
    for row in rows:
        assert PREDICT_FIELDS | {"model"} <= set(row)
        assert row["model"] == "mamba2-hybrid-8b" and row["phase"] == "decode" and row["gpu"] == "h100"
        assert row["time_ms"] > 0 and row["bound"] in {"compute", "memory", "launch", "host"}
    assert {(r["batch"], r["seqlen"]) for r in rows} == {(b, s) for b in (1, 8, 64) for s in (1024, 4096)}


def test_predict_layer_json_names_the_layer(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "predict", "--layer", "mamba2,attention", "--phase",
                           "prefill", "--batch", "2", "--seqlen", "4k", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert [r["layer"] for r in rows] == ["mamba2", "attention"]
    assert all(PREDICT_FIELDS <= set(r) for r in rows)


def test_predict_accepts_k_suffixed_sizes_in_either_case(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "predict", "--layer", "mlp", "--phase", "decode",
                           "--batch", "1", "--seqlen", "4k,128K", "--format", "json")
    assert code == 0
    assert [r["seqlen"] for r in json.loads(out)] == [4096, 131072]


def test_predict_both_phases_in_one_call(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "predict", "--model", "transformer-8b", "--phase",
                           "prefill,decode", "--batch", "1", "--seqlen", "2k", "--format", "json")
    assert code == 0
    assert sorted(r["phase"] for r in json.loads(out)) == ["decode", "prefill"]


@pytest.mark.parametrize("fmt", ["table", "csv", "markdown"])
def test_predict_other_formats_print_something(monkeypatch, capsys, fmt):
    code, out, _ = run_cli(monkeypatch, capsys, "predict", "--layer", "mamba", "--batch", "1,8",
                           "--seqlen", "1k", "--format", fmt)
    assert code == 0 and "mamba" in out


def test_predict_breakdown_lists_operations(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "predict", "--layer", "mamba2", "--phase", "decode",
                           "--batch", "4", "--seqlen", "1k", "--breakdown", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert {"selective_state_update", "in_proj", "out_proj"} <= {r["op"] for r in rows}
    assert all(r["batch"] == 4 and r["seqlen"] == 1024 and r["phase"] == "decode" for r in rows)


def test_models_json_has_the_promised_fields_and_paper_counts(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "models", "--format", "json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(PAPER_MODELS) <= set(rows)
    assert all(MODELS_FIELDS <= set(r) for r in rows.values())
    for name in PAPER_MODELS:
        spec = get_model(name)
        assert rows[name]["params"] == spec.params and rows[name]["layers"] == spec.pattern
    assert rows["mamba2-hybrid-8b"]["params"] == 8_654_517_248  # ../shared/paper-8b-configs.md
    assert rows["mamba2-8b"]["kv_bytes_per_token"] == 0
    assert rows["transformer-8b"]["state_bytes_per_sequence"] == 0
    assert rows["mamba2-hybrid-8b"]["kv_bytes_per_token"] > 0 and rows["mamba2-hybrid-8b"]["state_bytes_per_sequence"] > 0


def test_models_table_runs(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "models")
    assert code == 0 and "mamba2-hybrid-8b" in out


def test_user_models_file_adds_a_model(monkeypatch, capsys, tmp_path):
    path = tmp_path / "models.toml"
    path.write_text('[models.mini]\nvocab_size = 1000\npattern = "M*-"\n[models.mini.mamba2]\n'
                    '[models.mini.attention]\n[models.mini.mlp]\n')
    code, out, _ = run_cli(monkeypatch, capsys, "models", "--models-file", str(path), "--format", "json")
    assert code == 0
    assert any(r["name"] == "mini" and r["layers"] == "M*-" for r in json.loads(out))
    code, out, _ = run_cli(monkeypatch, capsys, "predict", "--model", "mini", "--models-file", str(path),
                           "--format", "json")
    assert code == 0 and json.loads(out)[0]["model"] == "mini"


# ---------------------------------------------------------------------------------------------
# Bad input: exit code 2, one line on stderr, no traceback


@pytest.mark.parametrize("args", [
    ["--model", "nope-8b"],
    ["--layer", "nope"],
    ["--layer", "mlp", "--gpu", "v100"],
    ["--layer", "mlp", "--batch", "0"],
    ["--layer", "mlp", "--batch", "-8"],
    ["--layer", "mlp", "--seqlen", "0k"],
    ["--layer", "mlp", "--seqlen", "-4k"],
    ["--layer", "mlp", "--seqlen", "4x"],
    ["--layer", "mlp", "--phase", "train"],
    ["--layer", "mlp", "--format", "xml"],
    ["--model", "mamba2-8b", "--layer", "mlp"],
    [],
], ids=["unknown-model", "unknown-layer", "unknown-gpu", "zero-batch", "negative-batch", "zero-seqlen",
        "negative-seqlen", "junk-seqlen", "unknown-phase", "unknown-format", "model-and-layer", "neither"])
def test_bad_predict_input_is_one_line_exit_2(monkeypatch, capsys, args):
    assert_user_error(run_cli(monkeypatch, capsys, "predict", *args))


def test_unknown_layer_error_lists_the_layers(monkeypatch, capsys):
    err = assert_user_error(run_cli(monkeypatch, capsys, "predict", "--layer", "nope"))
    assert "layer" in err and "mamba2" in err


def test_pattern_with_unknown_letters_in_models_file_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[models.bad]\nvocab_size = 1000\npattern = "M-X"\n[models.bad.mamba2]\n[models.bad.mlp]\n')
    err = assert_user_error(run_cli(monkeypatch, capsys, "predict", "--model", "bad", "--models-file", str(path)))
    assert "X" in err
    assert_user_error(run_cli(monkeypatch, capsys, "models", "--models-file", str(path)))


def test_missing_models_file_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    assert_user_error(run_cli(monkeypatch, capsys, "models", "--models-file", str(tmp_path / "absent.toml")))


@pytest.mark.parametrize("content", ["{corrupt", '{"format": "perfbench-calibration", "version": 1}'],
                         ids=["corrupt-json", "missing-fields"])
def test_bad_calibration_file_is_one_line_exit_2(monkeypatch, capsys, tmp_path, content):
    path = tmp_path / "cal.json"
    path.write_text(content)
    assert_user_error(run_cli(monkeypatch, capsys, "predict", "--layer", "mlp", "--calibration", str(path)))


def test_calibration_for_another_gpu_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    path = Calibration(gpu="h100", gpu_name="test", copy_bandwidth_bytes_s=3e12, gemm_peak_flops=7e14,
                       gemm=(), launch={"graph_kernel_s": 2e-6, "eager_kernel_s": 9e-6},
                       op_classes={}).save(tmp_path / "h100.json")
    code, out, _ = run_cli(monkeypatch, capsys, "predict", "--layer", "mlp", "--gpu", "h100",
                           "--calibration", str(path), "--format", "json")
    assert code == 0 and json.loads(out)[0]["calibrated"] is True
    err = assert_user_error(run_cli(monkeypatch, capsys, "predict", "--layer", "mlp", "--gpu", "a100",
                                    "--calibration", str(path)))
    assert "a100" in err


# ---------------------------------------------------------------------------------------------
# The real entry point


def _module(*args):
    return subprocess.run([sys.executable, "-m", "perfbench.cli", *args], capture_output=True, text=True)


def test_entry_point_prints_json_rows():
    proc = _module("predict", "--model", "mamba2-8b", "--phase", "decode", "--batch", "1,8",
                   "--seqlen", "4k", "--format", "json", "--calibration", "none")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 2 and all(PREDICT_FIELDS | {"model"} <= set(r) for r in rows)


def test_entry_point_bad_input_is_one_line_exit_2():
    proc = _module("predict", "--model", "transformer-8b", "--batch", "0")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
