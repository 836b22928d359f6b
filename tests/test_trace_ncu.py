"""Nsight Compute CSV -> per-launch bytes and FLOPs -> predicted vs counted per operation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from perfbench.errors import PerfbenchError
from perfbench.traces import ncu
from perfbench.traces.schema import COMPARISON_COLUMNS, NCU_KERNEL_COLUMNS
from perfbench.traces.trim import trim_ncu_csv
from trace_synth import ncu_raw_csv

DATA = Path(__file__).parent / "data"
RANGE = "mamba2/decode/B=64/L=4096"
FFMA = "smsp__sass_thread_inst_executed_op_ffma_pred_on.sum"
HADD = "smsp__sass_thread_inst_executed_op_hadd_pred_on.sum"

STEP = [
    ("nvjet_tst_64x8_64x16_4x1_v_bz_TNT", {ncu.DRAM_READ: 1_000_000, ncu.DRAM_WRITE: 1_000,
                                           ncu.TENSOR_FLOPS: 5_000_000, ncu.DURATION: 9_000}),
    ("void causal_conv1d_update_kernel<64, 4, true>(ConvParamsBase)",
     {ncu.DRAM_READ: 5_000, ncu.DRAM_WRITE: 500, FFMA: 1_000, ncu.DURATION: 2_000}),
    ("_selective_scan_update_kernel", {ncu.DRAM_READ: 300_000, ncu.DRAM_WRITE: 300_000, HADD: 7,
                                       ncu.DURATION: 4_000}),
    ("nvjet_tst_64x8_64x16_4x1_v_bz_TNT", {ncu.DRAM_READ: 500_000, ncu.DRAM_WRITE: 1_000,
                                           ncu.TENSOR_FLOPS: 2_500_000, ncu.DURATION: 6_000}),
]
PREDICTED = pd.DataFrame({
    "op": ["in_proj", "conv1d", "ssm_update", "out_proj"],
    "op_class": ["gemm", "conv1d", "state_update", "gemm"],
    "flops": [5.0e6, 2.0e3, 7.0, 2.5e6], "bytes": [1.0e6, 5.5e3, 3.0e5, 5.0e5],
    "time_ms": [0.01] * 4, "bound": ["memory"] * 4})


@pytest.fixture
def launches():
    return ncu.parse_ncu_csv(ncu_raw_csv(STEP * 3 + STEP[:2]))


@pytest.fixture
def counted(launches):
    return ncu.counted(launches, RANGE, trace_id="t")


def test_raw_csv_gives_one_row_per_launch_in_base_units(launches):
    assert launches["launch"].tolist() == list(range(14))
    assert launches.loc[0, ncu.DRAM_READ] == 1_000_000.0  # "1,000,000" with its thousands separators


def test_scaled_units_are_brought_back_to_bytes_and_nanoseconds():
    text = ncu_raw_csv(STEP[:1], units={ncu.DRAM_READ: "Mbyte", ncu.DURATION: "usecond"})
    launch = ncu.parse_ncu_csv(text).iloc[0]
    assert launch[ncu.DRAM_READ] == 1_000_000 * 1e6 and launch[ncu.DURATION] == 9_000 * 1e3


def test_the_long_details_form_parses_too():
    header = '"ID","Process ID","Process Name","Host Name","Kernel Name","Section Name","Metric Name","Metric Unit","Metric Value"'
    rows = [f'"0","1","python","h","k","Command line profiler metrics","{ncu.DRAM_READ}","Kbyte","2,000.00"',
            f'"0","1","python","h","k","Command line profiler metrics","{ncu.DURATION}","nsecond","1,500"']
    launch = ncu.parse_ncu_csv("\n".join([header, *rows])).iloc[0]
    assert (launch[ncu.DRAM_READ], launch[ncu.DURATION]) == (2_000_000.0, 1_500.0)


def test_a_csv_without_profiled_kernels_is_one_error():
    with pytest.raises(PerfbenchError, match="no header"):
        ncu.parse_ncu_csv("==PROF== Disconnected\n==WARNING== No kernels were profiled.\n")


def test_counted_frame_has_the_documented_columns(counted):
    assert list(counted.columns) == list(NCU_KERNEL_COLUMNS)


def test_launches_after_the_last_whole_step_are_set_aside(counted):
    assert counted["step"].tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [-1, -1]


def test_flops_weigh_fma_twice_and_add_the_tensor_pipe(counted):
    rows = counted.set_index("launch")
    assert rows.loc[1, "flops_fp32"] == 2_000 and rows.loc[1, "flops"] == 2_000
    assert rows.loc[0, "flops_tensor"] == 5_000_000 and rows.loc[2, "flops_fp16"] == 7
    assert rows.loc[2, "dram_bytes"] == 600_000


def test_kernels_are_named_and_classified(counted):
    conv = counted.set_index("launch").loc[1]
    assert (conv["kernel"], conv["op_class"]) == ("causal_conv1d_update_kernel", "conv1d")


def test_one_step_averages_each_position_over_the_whole_steps(counted):
    step = ncu.one_step(counted)
    assert step["kernel"].tolist() == [k for k, _ in [("nvjet_tst_64x8_64x16_4x1_v_bz_TNT", 0),
                                                      ("causal_conv1d_update_kernel", 0),
                                                      ("_selective_scan_update_kernel", 0),
                                                      ("nvjet_tst_64x8_64x16_4x1_v_bz_TNT", 0)]]
    assert step["dram_bytes"].tolist() == [1_001_000, 5_500, 600_000, 501_000]


def test_comparison_pairs_launches_with_operations_in_order(counted):
    table = ncu.compare_point(counted, PREDICTED)
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    gemm = table[table["op_class"] == "gemm"]
    assert gemm["ops"].tolist() == ["in_proj", "out_proj"]
    assert gemm["counted_flops"].tolist() == [5_000_000, 2_500_000]


def test_a_kernel_off_by_more_than_20_percent_is_named(counted):
    table = ncu.compare_point(counted, PREDICTED).set_index("ops")
    assert bool(table.loc["ssm_update", "mismatch"])  # 600 kB counted vs 300 kB predicted
    assert "_selective_scan_update_kernel" in table.loc["ssm_update", "note"]
    assert "bytes x2.00" in table.loc["ssm_update", "note"]
    assert not table.loc[["in_proj", "out_proj", "conv1d"], "mismatch"].any()


def test_tiny_absolute_differences_are_not_mismatches(counted):
    predicted = PREDICTED.assign(flops=[5.0e6, 2.0e3, 1.0, 2.5e6])  # 7 counted vs 1: noise
    table = ncu.compare_point(counted, predicted.assign(bytes=[1.0e6, 5.5e3, 6.0e5, 5.0e5])).set_index("ops")
    assert not bool(table.loc["ssm_update", "mismatch"])


def test_a_total_row_sums_the_step(counted):
    total = ncu.compare_point(counted, PREDICTED).set_index("op_class").loc["total"]
    assert total["counted_bytes"] == 1_001_000 + 5_500 + 600_000 + 501_000
    assert total["predicted_flops"] == pytest.approx(PREDICTED["flops"].sum())


def test_work_the_model_does_not_have_is_named(counted):
    predicted = PREDICTED[PREDICTED["op_class"] != "conv1d"]
    row = ncu.compare_point(counted, predicted).set_index("op_class").loc["conv1d"]
    assert "not in the model" in row["note"] or not row["mismatch"]
    assert row["kernels"] == "causal_conv1d_update_kernel"


def test_model_work_without_any_kernel_is_named(counted):
    predicted = pd.concat([PREDICTED, pd.DataFrame({"op": ["norm"], "op_class": ["elementwise"],
                                                    "flops": [1e6], "bytes": [4e5]})], ignore_index=True)
    row = ncu.compare_point(counted, predicted).set_index("op_class").loc["elementwise"]
    assert bool(row["mismatch"]) and "no kernel counted" in row["note"]


def test_ops_that_do_not_pair_one_to_one_compare_as_a_class(counted):
    predicted = pd.concat([PREDICTED, pd.DataFrame({"op": ["lm_head"], "op_class": ["gemm"],
                                                    "flops": [1.0], "bytes": [1.0]})], ignore_index=True)
    gemm = ncu.compare_point(counted, predicted).query("op_class == 'gemm'")
    assert gemm["ops"].tolist() == ["in_proj,out_proj,lm_head"]


def test_compare_with_model_asks_the_breakdown_for_each_point(counted):
    asked = []

    def breakdown(name, phase, batch, seqlen, gpu):
        asked.append((name, phase, batch, seqlen, gpu))
        return PREDICTED

    table = ncu.compare_with_model(counted, gpu="h100", breakdown=breakdown)
    assert asked == [("mamba2", "decode", 64, 4096, "h100")]
    assert set(table["nvtx_range"]) == {RANGE}


def test_the_analytic_model_supplies_bytes_and_flops_for_a_real_layer(counted):
    pytest.importorskip("analytic.predict")
    table = ncu.compare_with_model(counted, gpu="h100")
    total = table.set_index("op_class").loc["total"]
    assert total["predicted_bytes"] > 0 and total["predicted_flops"] > 0


def test_profile_command_filters_the_perfbench_domain_and_keeps_clocks():
    command = ncu.ncu_profile_command("ncu", Path("t/x"), ["python", "-m", "perfbench", "run"], launch_count=50)
    assert command[command.index("--nvtx-include") + 1] == "regex:perfbench@.+/"
    assert command[command.index("--clock-control") + 1] == "none"
    assert command[command.index("--metrics") + 1].split(",") == list(ncu.METRICS)
    assert command[command.index("--launch-count") + 1] == "50"
    assert "--nvtx" in command and command[-4:] == ["python", "-m", "perfbench", "run"]


def test_export_command_asks_for_raw_csv_in_base_units():
    command = ncu.ncu_export_command("ncu", Path("t/x.ncu-rep"))
    assert command[command.index("--page") + 1] == "raw" and "--csv" in command
    assert command[command.index("--print-units") + 1] == "base"


def test_trimming_a_csv_keeps_header_units_and_first_launches(tmp_path):
    source = tmp_path / "big.csv"
    source.write_text(ncu_raw_csv(STEP * 10))
    small = trim_ncu_csv(source, tmp_path / "small.csv", max_kernels=8)
    assert ncu.parse_ncu_csv(small)["launch"].tolist() == list(range(8))


REAL = sorted(DATA.glob("*.ncu.csv.gz"))


@pytest.mark.skipif(not REAL, reason="no real ncu capture in tests/data yet")
@pytest.mark.parametrize("packed", REAL, ids=[p.name for p in REAL])
def test_real_ncu_csv_has_dram_bytes_for_every_launch(packed, unpack):
    path = unpack(packed)
    launches = ncu.parse_ncu_csv(path)
    assert not launches.empty and (launches[ncu.DRAM_READ] >= 0).all()
    assert path.stat().st_size < 1 << 20


@pytest.mark.skipif(not (DATA / "ncu_mamba2_decode.ncu.csv.gz").exists(), reason="no real ncu capture yet")
def test_real_mamba2_decode_counts_tensor_flops_in_its_gemms_and_whole_steps(unpack):
    kernels = ncu.counted(ncu.parse_ncu_csv(unpack(DATA / "ncu_mamba2_decode.ncu.csv.gz")), RANGE)
    assert kernels["step"].max() >= 0  # at least one whole step in the window
    gemm = kernels[kernels["op_class"] == "gemm"]
    # cuBLAS's split-K GEMMs end in a reduction kernel that sums partial tiles without tensor cores.
    matmul = gemm[~gemm["kernel"].str.contains("splitKreduce")]
    assert not matmul.empty and (matmul["flops_tensor"] > 0).all()
    assert (gemm["kernel"].str.contains("splitKreduce") == (gemm["flops_tensor"] == 0)).all()
    assert "state_update" in set(kernels["op_class"])
