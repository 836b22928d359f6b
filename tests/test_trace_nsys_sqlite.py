"""The nsys SQLite export -> per-point kernel breakdown (synthetic exports in the real schema,
plus the real capture under tests/data/ once it is committed)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from perfbench.errors import PerfbenchError
from perfbench.traces.nsys_sqlite import parse_nsys_sqlite, range_names
from perfbench.traces.schema import BREAKDOWN_COLUMNS
from perfbench.traces.trim import trim_sqlite
from trace_synth import GLOBAL_TID, NsysDB, nsys_two_points

DATA = Path(__file__).parent / "data"
DECODE = "mamba2/decode/B=64/L=4096"
PREFILL = "mlp/prefill/B=8/L=4096"


@pytest.fixture
def breakdown(tmp_path):
    return parse_nsys_sqlite(nsys_two_points(tmp_path / "t.sqlite", steps=3), trace_id="t1")


def _row(frame, rng, kernel):
    rows = frame[(frame["nvtx_range"] == rng) & (frame["kernel"] == kernel)]
    assert len(rows) == 1, f"{rng} {kernel}: {len(rows)} rows"
    return rows.iloc[0]


def test_breakdown_has_the_documented_columns(breakdown):
    assert list(breakdown.columns) == list(BREAKDOWN_COLUMNS)


def test_every_point_range_gets_its_kernels(breakdown):
    assert set(breakdown["nvtx_range"]) == {DECODE, PREFILL}


def test_counts_and_time_per_step_inside_one_range_around_all_steps(breakdown):
    gemm = _row(breakdown, DECODE, "nvjet_tst_64x8_64x16_4x1_v_bz_TNT")
    assert (gemm["count"], gemm["steps"], gemm["count_per_step"]) == (6, 3, 2.0)
    assert gemm["gpu_time_ms_per_step"] == pytest.approx(0.016)  # 10 us + 6 us


def test_one_range_per_step_counts_one_step_per_instance(breakdown):
    gemm = _row(breakdown, PREFILL, "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n")
    assert (gemm["range_instances"], gemm["steps"], gemm["count_per_step"]) == (2, 2, 2.0)


def test_kernels_running_after_their_range_closed_still_belong_to_it(breakdown):
    # the prefill ranges last 10 us on the CPU; their kernels run 50-720 us later on the GPU
    assert _row(breakdown, PREFILL, "vectorized_elementwise_kernel")["count"] == 4


def test_shares_of_each_range_sum_to_one(breakdown):
    assert breakdown.groupby("nvtx_range")["share"].sum().tolist() == pytest.approx([1.0, 1.0])


def test_kernels_launched_outside_every_range_are_left_out(breakdown):
    assert "stray_kernel" not in set(breakdown["kernel"])


def test_kernels_get_their_op_class_and_names(breakdown):
    update = _row(breakdown, DECODE, "_selective_scan_update_kernel")
    assert update["op_class"] == "state_update"
    assert update["kernel_full"].startswith("void _selective_scan_update_kernel")
    assert (update["name"], update["phase"], update["batch"], update["seqlen"]) == ("mamba2", "decode", 64, 4096)


def test_ranges_of_another_domain_do_not_count(tmp_path):
    db = NsysDB(tmp_path / "t.sqlite")
    db.domain("perfbench", 1)
    db.domain("other", 2)
    db.range("mlp/decode/B=1/L=512", 0, 100_000, domain_id=2)
    db.kernel("k", 1_000, 500, 500)
    assert parse_nsys_sqlite(db.close()).empty


def test_unregistered_range_text_is_read_too(tmp_path):
    db = NsysDB(tmp_path / "t.sqlite")
    db.domain("perfbench", 1)
    db.range("mlp/decode/B=1/L=512", 0, 100_000, domain_id=1, registered=False)
    db.kernel("k", 1_000, 500, 500)
    assert parse_nsys_sqlite(db.close())["nvtx_range"].tolist() == ["mlp/decode/B=1/L=512"]


def test_a_range_on_one_thread_does_not_take_kernels_launched_by_another(tmp_path):
    db = NsysDB(tmp_path / "t.sqlite")
    db.domain("perfbench", 1)
    db.range("mlp/decode/B=1/L=512", 0, 100_000, domain_id=1)
    db.kernel("mine", 1_000, 500, 500)
    db.kernel("theirs", 2_000, 500, 600, tid=GLOBAL_TID + 1)
    assert parse_nsys_sqlite(db.close())["kernel"].tolist() == ["mine"]


def test_thread_ids_beyond_float_precision_still_match(tmp_path):
    tid = (1 << 52) + 3  # float64 would round it to its neighbour
    db = NsysDB(tmp_path / "t.sqlite")
    db.domain("perfbench", 1)
    db.range("mlp/decode/B=1/L=512", 0, 100_000, domain_id=1, tid=tid)
    db.kernel("mine", 1_000, 500, 500, tid=tid)
    db.kernel("theirs", 2_000, 500, 600, tid=tid + 1)
    assert parse_nsys_sqlite(db.close())["kernel"].tolist() == ["mine"]


def test_range_names_lists_the_perfbench_ranges(tmp_path):
    assert range_names(nsys_two_points(tmp_path / "t.sqlite")) == [DECODE, PREFILL]


def test_an_export_without_kernels_gives_an_empty_breakdown(tmp_path):
    path = tmp_path / "t.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT)").connection.commit()
    assert parse_nsys_sqlite(path).empty


def test_a_file_that_is_not_sqlite_is_one_error(tmp_path):
    path = tmp_path / "t.sqlite"
    path.write_text("not a database")
    with pytest.raises(PerfbenchError, match="not an SQLite database"):
        parse_nsys_sqlite(path)


def test_a_missing_export_is_one_error(tmp_path):
    with pytest.raises(PerfbenchError, match="not found"):
        parse_nsys_sqlite(tmp_path / "missing.sqlite")


def test_trimming_keeps_whole_steps_and_the_per_step_numbers(tmp_path):
    full = nsys_two_points(tmp_path / "full.sqlite", steps=20)
    small = trim_sqlite(full, tmp_path / "small.sqlite", max_kernels=9)
    before, after = parse_nsys_sqlite(full), parse_nsys_sqlite(small)
    columns = ["nvtx_range", "kernel", "count_per_step", "gpu_time_ms_per_step", "share"]
    assert after[columns].to_dict("records") == before[columns].to_dict("records")
    assert after["count"].sum() < before["count"].sum()


REAL = sorted(DATA.glob("*.sqlite.gz"))


@pytest.mark.skipif(not REAL, reason="no real nsys capture in tests/data yet")
@pytest.mark.parametrize("packed", REAL, ids=[p.name for p in REAL])
def test_real_capture_parses_to_point_ranges_with_gpu_kernels(packed, unpack):
    path = unpack(packed)
    frame = parse_nsys_sqlite(path)
    assert not frame.empty
    assert (frame["device"] == "cuda").all() and (frame["gpu_time_ms"] > 0).all()
    assert frame.groupby("nvtx_range")["share"].sum().tolist() == pytest.approx([1.0] * frame["nvtx_range"].nunique())
    assert path.stat().st_size < 1 << 20
    for rng, group in frame.groupby("nvtx_range"):  # every layer type has projections
        assert "gemm" in set(group["op_class"]), rng
