"""The results store: schema, append-only runs with manifests, load_results, resume keys."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from perfbench.errors import PerfbenchError
from perfbench.measure.results import (COLUMNS, SCHEMA, DamagedResultsWarning, RunWriter, done_keys, load_results, new_run_id,
                               point_key)

CONTRACT_COLUMNS = (
    "run_id timestamp target_kind name phase batch seqlen dtype mode status reason time_ms p10_ms p90_ms "
    "mean_ms std_ms n_repeats peak_mem_bytes tokens_per_s tp device gpu gpu_name driver "
    "sm_clock_mhz_before sm_clock_mhz_after mem_clock_mhz_before mem_clock_mhz_after power_w "
    "temperature_c throttle_reasons torch_version cuda_version mamba_ssm_version causal_conv1d_version "
    "flash_attn_version attn_backend conv_backend nvtx l2_flush nvtx_range extra").split()


def _row(**kw):
    from results_factory import row

    out = row("mamba2", "decode", 8, 4096, 0.5)
    out.update(kw)
    return out


def test_schema_has_exactly_the_contract_columns_in_order():
    assert list(COLUMNS) == CONTRACT_COLUMNS


def test_rows_round_trip_with_types(tmp_path):
    writer = RunWriter(tmp_path, {"command": "perfbench run --layer mamba2"})
    writer.append(_row())
    writer.append(_row(batch=16, status="oom", reason="out of memory", time_ms=float("nan")))
    writer.close()
    frame = load_results(tmp_path)
    assert list(frame.columns) == CONTRACT_COLUMNS
    assert len(frame) == 2 and set(frame["run_id"]) == {writer.run_id}
    assert frame["batch"].dtype == "int64" and frame["nvtx"].dtype == bool
    assert frame["time_ms"].iloc[0] == 0.5 and pd.isna(frame["time_ms"].iloc[1])


def test_each_run_gets_its_own_file_and_manifest(tmp_path):
    first = RunWriter(tmp_path, {"command": "a"}, run_id="20261123T000000Z-aaaa")
    first.append(_row())
    first.close()
    second = RunWriter(tmp_path, {"command": "b"}, run_id="20261123T000001Z-bbbb")
    second.append(_row(batch=1))
    second.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["run-20261123T000000Z-aaaa.json", "run-20261123T000000Z-aaaa.parquet",
                     "run-20261123T000001Z-bbbb.json", "run-20261123T000001Z-bbbb.parquet"]
    assert len(load_results(tmp_path)) == 2


def test_manifest_tracks_points_and_status(tmp_path):
    writer = RunWriter(tmp_path, {"command": "c", "sweep": {"batches": [1]}})
    manifest = json.loads(writer.manifest_path.read_text())
    assert manifest["status"] == "running" and manifest["n_points"] == 0
    writer.append(_row())
    writer.close("complete")
    manifest = json.loads(writer.manifest_path.read_text())
    assert manifest["status"] == "complete" and manifest["n_points"] == 1 and manifest["n_ok"] == 1
    assert manifest["sweep"] == {"batches": [1]} and manifest["end"]


def test_a_row_missing_a_column_is_refused(tmp_path):
    writer = RunWriter(tmp_path, {})
    bad = _row()
    del bad["gpu"]
    with pytest.raises(ValueError, match="gpu"):
        writer.append(bad)


def test_load_results_reads_nested_directories(tmp_path):
    for sub in ("h100", "h200"):
        writer = RunWriter(tmp_path / sub, {})
        writer.append(_row(gpu=sub))
    assert sorted(load_results(tmp_path)["gpu"]) == ["h100", "h200"]


def test_empty_directory_gives_an_empty_frame_with_the_columns(tmp_path):
    frame = load_results(tmp_path)
    assert frame.empty and list(frame.columns) == CONTRACT_COLUMNS


def test_a_damaged_file_is_skipped_with_one_warning_naming_it(tmp_path):
    RunWriter(tmp_path, {}).append(_row())
    (tmp_path / "run-x.parquet").write_bytes(b"not parquet at all")
    with pytest.warns(DamagedResultsWarning, match="run-x.parquet") as caught:
        frame = load_results(tmp_path)
    assert len(caught) == 1 and len(frame) == 1
    assert frame.attrs["skipped"] == [str(tmp_path / "run-x.parquet")]


def test_resume_keys_come_from_the_healthy_runs_beside_a_damaged_one(tmp_path):
    RunWriter(tmp_path, {}).append(_row())
    (tmp_path / "run-x.parquet").write_bytes(b"PAR1 truncated")
    with pytest.warns(DamagedResultsWarning):
        assert done_keys(tmp_path) == {point_key(_row())}


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(PerfbenchError):
        load_results(tmp_path / "nowhere")


def test_no_temporary_files_are_left_behind(tmp_path):
    writer = RunWriter(tmp_path, {})
    for batch in (1, 2, 3):
        writer.append(_row(batch=batch))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_done_keys_hold_final_points_but_not_errors(tmp_path):
    writer = RunWriter(tmp_path, {})
    writer.append(_row(batch=1))
    writer.append(_row(batch=2, status="error", reason="boom"))
    writer.append(_row(batch=4, status="skipped", reason="does not fit"))
    keys = done_keys(tmp_path)
    assert point_key(_row(batch=1)) in keys and point_key(_row(batch=4)) in keys
    assert point_key(_row(batch=2)) not in keys
    assert point_key(_row(batch=1, mode="eager")) not in keys


def test_run_ids_are_time_ordered_and_distinct():
    a, b = new_run_id(), new_run_id()
    assert a != b and len(a) == len("20261123T211500Z-ab12") and a[8] == "T"


def test_schema_types_are_parquet_friendly():
    assert str(SCHEMA.field("extra").type) == "string"
    assert str(SCHEMA.field("peak_mem_bytes").type) == "int64"
