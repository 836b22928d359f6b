"""Range names, kernel names and classes, step counting, and the breakdown readers."""

from __future__ import annotations

import pandas as pd
import pytest

from perfbench.errors import PerfbenchError
from perfbench.measure.nvtx_ranges import range_name
from perfbench.traces.kernels import classify_kernel, short_kernel_name, steps_in, whole_steps
from perfbench.traces.schema import (BREAKDOWN_COLUMNS, conform, load_breakdowns, parse_range_name,
                                     write_parquet)


def test_range_names_parse_back_to_the_point_the_harness_named():
    assert parse_range_name(range_name("mamba2", "decode", 64, 4096)) == {
        "name": "mamba2", "phase": "decode", "batch": 64, "seqlen": 4096}


def test_model_names_with_dashes_parse():
    assert parse_range_name("mamba2-hybrid-8b/prefill/B=1/L=32768")["name"] == "mamba2-hybrid-8b"


@pytest.mark.parametrize("text", ["forward", "mamba2/train/B=1/L=8", "mamba2/decode/B=x/L=8",
                                  "a/b/decode/B=1/L=8", "mamba2/decode/B=1"])
def test_other_ranges_are_not_points(text):
    assert parse_range_name(text) is None


@pytest.mark.parametrize("full, short", [
    ("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, "
     "std::array<char*, 1ul> >(int, at::native::FillFunctor<float>, std::array<char*, 1ul>)",
     "vectorized_elementwise_kernel"),
    ("void at::native::(anonymous namespace)::CatArrayBatchedCopy<float, unsigned int, 2>(float*)",
     "CatArrayBatchedCopy"),
    ("void selective_scan_fwd_kernel<Selective_Scan_fwd_kernel_traits<32, 16, true> >(SSMParamsBase)",
     "selective_scan_fwd_kernel"),
    ("nvjet_tst_128x256_64x4_1x2_h_bz_coopB_TNT", "nvjet_tst_128x256_64x4_1x2_h_bz_coopB_TNT"),
    ("_chunk_scan_fwd_kernel", "_chunk_scan_fwd_kernel"),
])
def test_short_kernel_names_drop_templates_arguments_and_scopes(full, short):
    assert short_kernel_name(full) == short


@pytest.mark.parametrize("kernel, phase, op_class", [
    ("nvjet_tst_64x8_64x16_4x1_v_bz_TNT", "decode", "gemm"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "prefill", "gemm"),
    ("gemv2T_kernel_val", "decode", "gemm"),
    ("_bmm_chunk_fwd_kernel", "prefill", "ssd"),
    ("_chunk_state_fwd_kernel", "prefill", "ssd"),
    ("_state_passing_fwd_kernel", "prefill", "ssd"),
    ("_selective_scan_update_kernel", "decode", "state_update"),
    ("selective_scan_fwd_kernel", "prefill", "selective_scan"),
    ("causal_conv1d_update_kernel", "decode", "conv1d"),
    ("causal_conv1d_fwd_kernel", "prefill", "conv1d"),
    ("flash_fwd_splitkv_kernel", "decode", "attention_decode"),
    ("fmha_cutlassF_bf16_aligned_64x128_rf_sm80", "prefill", "attention_prefill"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma", "prefill", "attention_prefill"),
    ("vectorized_elementwise_kernel", "prefill", "elementwise"),
    ("_layer_norm_fwd_1pass_kernel", "prefill", "elementwise"),
    ("linear", "prefill", "gemm"),  # aten::linear on a CPU trace
])
def test_kernels_count_toward_the_analytic_op_class(kernel, phase, op_class):
    assert classify_kernel(kernel, phase) == op_class


def test_steps_count_exact_repeats_of_the_sequence():
    assert steps_in(["g", "c", "u", "g"] * 5) == 5


def test_a_step_with_a_repeated_kernel_is_not_split():
    assert steps_in(["g", "e", "e", "g"] * 3) == 3


def test_a_step_whose_halves_hold_the_same_kernels_is_not_split():
    assert steps_in(["gemm", "relu", "square", "gemm"]) == 1


def test_an_irregular_sequence_is_one_step():
    assert steps_in(["a", "b", "a", "c"]) == 1


def test_whole_steps_of_a_window_cut_mid_step():
    assert whole_steps(["a", "b", "c"] * 3 + ["a", "b"]) == (3, 3)


def test_a_window_without_two_repeats_is_one_step():
    assert whole_steps(["a", "b", "c", "d"]) == (4, 1)


def _frame(trace_id: str) -> pd.DataFrame:
    return conform(pd.DataFrame({"trace_id": [trace_id], "nvtx_range": ["mlp/decode/B=1/L=512"],
                                 "kernel": ["k"], "count": [3], "steps": [3]}), BREAKDOWN_COLUMNS)


def test_load_breakdowns_reads_every_trace_under_a_directory(tmp_path):
    write_parquet(_frame("a"), tmp_path / "a" / "breakdown.parquet")
    write_parquet(_frame("b"), tmp_path / "b" / "breakdown.parquet")
    assert sorted(load_breakdowns(tmp_path)["trace_id"]) == ["a", "b"]


def test_a_store_copy_beside_its_original_is_read_once(tmp_path):
    write_parquet(_frame("a"), tmp_path / "a" / "breakdown.parquet")
    write_parquet(_frame("a"), tmp_path / "breakdown-a.parquet")
    assert len(load_breakdowns(tmp_path)) == 1


def test_load_breakdowns_of_an_empty_directory_has_the_schema(tmp_path):
    frame = load_breakdowns(tmp_path)
    assert frame.empty and list(frame.columns) == list(BREAKDOWN_COLUMNS)


def test_a_damaged_breakdown_file_is_one_error_naming_it(tmp_path):
    (tmp_path / "breakdown.parquet").write_bytes(b"not parquet")
    with pytest.raises(PerfbenchError, match="breakdown.parquet"):
        load_breakdowns(tmp_path)
