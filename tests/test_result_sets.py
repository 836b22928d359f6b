"""results/index.toml and the packed result sets: every set resolves, loads and is selectable."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from perfbench.errors import PerfbenchError
from perfbench.measure.result_sets import bundled_root, find_set, named_set, read_index, resolve_results_path
from perfbench.measure.results import load_results, results_exist, run_manifests
from results_factory import row, write_run

ROOT = Path(__file__).resolve().parents[1]


def test_index_lists_every_set_in_the_packed_files_once():
    sets = read_index(bundled_root())
    packed = set()
    for file in {s.file for s in sets}:
        packed |= set(pq.read_table(bundled_root() / file, columns=["set"]).column("set").to_pylist())
    assert sorted(s.name for s in sets) == sorted(packed) and len({s.name for s in sets}) == len(sets)


def test_every_set_has_a_purpose_dates_and_its_gpu_in_its_rows():
    for result_set in read_index(bundled_root()):
        frame = load_results(result_set.path)
        assert result_set.purpose and result_set.start <= result_set.end
        assert set(frame["gpu"]) == {result_set.gpu}, result_set.name


def test_a_set_path_loads_its_rows_and_its_manifests():
    frame = load_results(ROOT / "results" / "h100-holdout19")
    manifests = run_manifests(ROOT / "results" / "h100-holdout19")
    assert len(frame) and set(frame["run_id"]) == {m["run_id"] for m in manifests}
    assert "set" not in frame.columns


def test_new_runs_in_a_set_directory_are_read_beside_its_packed_rows(tmp_path):
    root = tmp_path / "results"
    root.mkdir()
    (root / "index.toml").write_text((bundled_root() / "index.toml").read_text())
    for name in ("h100.parquet", "h200.parquet", "h200-tp.parquet"):
        (root / name).symlink_to(bundled_root() / name)
    packed = len(load_results(root / "h100-holdout19"))
    write_run(root / "h100-holdout19", [row("mlp", "decode", 3, 777, 1.0)])
    assert len(load_results(root / "h100-holdout19")) == packed + 1


def test_an_unindexed_missing_path_does_not_exist(tmp_path):
    assert not results_exist(tmp_path / "h100") and find_set(tmp_path / "h100") is None


def test_result_set_option_resolves_a_name_in_the_bundled_index():
    assert resolve_results_path(None, "h200", ROOT / "results" / "h100") == bundled_root() / "h200"


def test_unknown_result_set_is_a_one_line_error_naming_the_known_ones():
    with pytest.raises(PerfbenchError, match="unknown result set 'nope'.*h100-holdout19"):
        named_set("nope")


def test_compare_cli_takes_a_result_set_by_name(monkeypatch, capsys):
    from perfbench import cli

    monkeypatch.setattr(sys, "argv", ["perfbench", "compare", "--result-set", "h100-holdout18", "--format", "csv"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out, err = capsys.readouterr()
    assert exit_info.value.code in (0, None)
    assert "results/h100-holdout18" in err and "attention-mha" in out and "mamba2" not in out


def _packed_root(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    root.mkdir()
    for name in ("index.toml", "manifests.json.gz", "h100.parquet", "h200.parquet", "h200-tp.parquet"):
        (root / name).symlink_to(bundled_root() / name)
    return root


def test_run_with_a_result_set_writes_its_run_into_the_set_and_resumes_past_a_damaged_file(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from perfbench import cli

    root = _packed_root(tmp_path)
    argv = ["perfbench", "run", "--cpu-reference", "--layer", "mlp", "--phase", "decode", "--batch", "1",
            "--seqlen", "16", "--out", str(root), "--result-set", "h100-holdout19", "--resume"]
    for _ in range(2):
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        assert exit_info.value.code in (0, None)
        (root / "h100-holdout19" / "run-damaged.parquet").write_bytes(b"PAR1 cut short")
    out, err = capsys.readouterr()
    assert "already recorded" in out and "warning: skipped damaged results file" in err
    frame = load_results(root / "h100-holdout19")
    assert (frame["gpu"] == "cpu").sum() == 1 and (frame["gpu"] == "h100").sum() > 1


def test_a_damaged_manifest_is_reported_beside_the_readable_ones(tmp_path):
    write_run(tmp_path, [row("mlp", "decode", 1, 64, 1.0)])
    (tmp_path / "run-20990101T000000Z-dead.json").write_text("{not json")
    manifests = run_manifests(tmp_path)
    broken = [m for m in manifests if "error" in m]
    assert len(manifests) == 2 and len(broken) == 1 and broken[0]["run_id"] == "20990101T000000Z-dead"
