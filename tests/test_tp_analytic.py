"""Tensor parallelism in the analytic model: sharding, communication, memory per GPU, TP=1 identity."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from analytic.calibration import Calibration
from analytic.collectives import fit_allreduce, interconnect
from analytic.composition import rank_ops
from analytic.hardware import get_gpu
from analytic.memory import ALLOCATOR_HEADROOM, largest_batch, max_batch, memory_footprint, memory_per_gpu
from analytic.ops import ALLGATHER, ALLREDUCE
from analytic.predict import COLUMNS, breakdown_tp, predict, predict_tp, tp_scaling
from models.registry import BUILTIN_LAYERS, PAPER_MODELS, get_layer, get_model
from models.sharding import Mamba2Shard, MambaShard, shard_layer
from models.specs import SpecError

GRID = dict(batch=[1, 16, 64], seqlen=[4096, 32768])


@pytest.mark.parametrize("target", list(PAPER_MODELS) + list(BUILTIN_LAYERS))
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_tp1_equals_the_single_gpu_prediction_exactly(target, phase):
    single = predict(target, phase, gpu="h200", **GRID)
    sharded = predict_tp(target, phase, gpu="h200", tp=1, **GRID)
    pd.testing.assert_frame_equal(sharded[COLUMNS], single)
    assert (sharded["allreduce_ms"] == 0).all()


def test_predict_with_tp_delegates_and_adds_the_communication_columns():
    frame = predict("mamba2-hybrid-8b", "decode", [1, 64], [4096], gpu="h200", tp=2)
    assert list(frame.columns) == COLUMNS + ["allreduce_ms", "allreduce_share"]
    assert (frame["tp"] == 2).all()
    assert ((frame["allreduce_share"] > 0) & (frame["allreduce_share"] < 1)).all()


@pytest.mark.parametrize("name", PAPER_MODELS)
@pytest.mark.parametrize("tp", [2, 4, 8])
def test_weights_per_gpu_shrink_by_n_except_the_replicated_norms(name, tp):
    spec = get_model(name)
    one = memory_per_gpu(spec, 1, 4096, 1)["weights_bytes"]
    many = memory_per_gpu(spec, 1, 4096, tp)["weights_bytes"]
    norms = 2 * spec.block_norm.params * (len(spec.pattern) + 1)
    assert float(many) * tp == pytest.approx(float(one) + (tp - 1) * norms, rel=1e-12)


@pytest.mark.parametrize("name", ["transformer-8b", "mamba2-hybrid-8b", "mamba-8b"])
def test_kv_cache_and_ssm_state_per_gpu_shrink_by_exactly_n(name):
    spec = get_model(name)
    one = memory_per_gpu(spec, 16, 32768, 1, phase="decode")
    two = memory_per_gpu(spec, 16, 32768, 2, phase="decode")
    assert float(two["kv_cache_bytes"]) * 2 == float(one["kv_cache_bytes"])
    assert float(two["ssm_state_bytes"]) * 2 == float(one["ssm_state_bytes"])


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_memory_per_gpu_at_tp1_is_the_single_gpu_footprint(name):
    spec = get_model(name)
    mine = memory_per_gpu(spec, [1, 8], 8192, 1, phase="decode")
    theirs = memory_footprint(spec, [1, 8], 8192, phase="decode")
    for key, value in theirs.items():
        np.testing.assert_array_equal(mine[key], value)


def test_largest_batch_grows_with_tp_and_matches_the_single_gpu_search_at_tp1():
    spec = get_model("transformer-8b")
    gpu = get_gpu("h200")
    sizes = [max_batch(spec, 32768, gpu, tp=tp) for tp in (1, 2, 4, 8)]
    budget = gpu.mem_bytes * ALLOCATOR_HEADROOM
    assert sizes[0] == largest_batch(lambda b: float(memory_footprint(spec, b, 32768, phase="decode")["total_bytes"])
                                     <= budget)
    assert sizes == sorted(sizes) and sizes[-1] > 4 * max(sizes[0], 1)


@pytest.mark.parametrize("target", ["transformer-8b", "mamba2-hybrid-8b", "mamba-8b", "mlp", "mamba2"])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_communication_grows_with_n(target, phase):
    times = [float(predict_tp(target, phase, [16], [4096], gpu="h100", tp=tp)["allreduce_ms"].iloc[0])
             for tp in (2, 4, 8)]
    assert 0 < times[0] < times[1] < times[2]


# Mamba-3 computes its shared RoPE angles (and B/C unless N divides the groups) on every rank: below.
@pytest.mark.parametrize("name", [name for name in BUILTIN_LAYERS if name != "mamba3"])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_the_ranks_together_do_the_single_gpu_layers_flops(name, phase):
    spec = get_layer(name)
    b, L = np.array([4.0]), np.array([1024.0])
    single = sum(c.op.flops for c in rank_ops("layer", spec, phase, b, L, 1)[0])
    per_rank = sum(c.op.flops for c in rank_ops("layer", spec, phase, b, L, 4)[0])
    assert float(per_rank[0]) * 4 == pytest.approx(float(single[0]), rel=1e-12)


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_mamba3_ranks_together_add_only_the_replicated_angle_projection(phase):
    spec = replace(get_layer("mamba3"), ngroups=4)
    b, L = np.array([4.0]), np.array([1024.0])
    single = sum(c.op.flops for c in rank_ops("layer", spec, phase, b, L, 1)[0])
    per_rank = sum(c.op.flops for c in rank_ops("layer", spec, phase, b, L, 4)[0])
    tokens = 4 * (1024 if phase == "prefill" else 1)
    replicated = 2.0 * tokens * spec.d_model * spec.num_rope_angles
    assert float(per_rank[0]) * 4 - float(single[0]) == pytest.approx(3 * replicated, rel=1e-9)


def test_mamba3_single_group_is_replicated_on_every_rank():
    spec = get_layer("mamba3")
    shard = shard_layer(spec, 4)
    assert (shard.ngroups, shard.bc_dim, shard.nheads) == (1, spec.bc_dim, spec.nheads // 4)


def test_gdn_shard_keeps_whole_states_per_value_head():
    shard = shard_layer(get_layer("gdn"), 4)
    assert (shard.n_k_heads, shard.n_v_heads, shard.head_k_dim) == (4, 8, 128)


def test_per_rank_gemms_come_from_the_per_rank_spec():
    spec = get_layer("attention")
    rows = breakdown_tp("attention", "decode", 8, 4096, gpu="h100", tp=2).set_index("op")
    full = breakdown_tp("attention", "decode", 8, 4096, gpu="h100", tp=1).set_index("op")
    assert rows.loc["qkv_proj", "flops"] * 2 == full.loc["qkv_proj", "flops"]
    assert rows.loc["out_allreduce", "message_bytes"] == 8 * spec.d_model * 2
    assert "out_allreduce" not in full.index


@pytest.mark.parametrize("name,per_block", [("transformer-8b", 1), ("mamba2-hybrid-8b", 1), ("mamba-8b", 2)])
def test_one_all_reduce_per_row_parallel_output_plus_embedding_and_logits_gather(name, per_block):
    spec = get_model(name)
    frame = breakdown_tp(name, "decode", 4, 4096, gpu="h100", tp=2)
    counts = frame.groupby("op_class")["count"].sum()
    assert counts[ALLREDUCE] == per_block * len(spec.pattern) + 1
    assert counts[ALLGATHER] == 1


def test_mamba1_rank_all_reduces_x_proj_output_before_out_proj():
    spec = get_layer("mamba")
    _compute, comm = rank_ops("layer", spec, "prefill", np.array([4.0]), np.array([512.0]), 2)
    assert [c.op.name for c in comm] == ["x_proj_allreduce", "out_allreduce"]
    widths = [float(c.op.shape["message_bytes"][0]) / (4 * 512 * 2) for c in comm]
    assert widths == [spec.dt_rank + 2 * spec.d_state, spec.d_model]


def test_collective_time_is_ring_all_reduce_with_the_calibrated_bus_bandwidth():
    cal = Calibration(gpu="h100", gpu_name="test", copy_bandwidth_bytes_s=3e12, gemm_peak_flops=7e14, gemm=(),
                      launch={"graph_kernel_s": 2e-6, "eager_kernel_s": 1e-5}, op_classes={},
                      allreduce={"bus_bw_bytes_s": 1e11, "latency_s": 2e-5, "n_gpus": 2})
    link = interconnect(get_gpu("h100"), cal)
    assert (link.bus_bw_bytes_s, link.latency_s, link.source) == (1e11, 2e-5, "calibration")
    frame = predict_tp("mlp", "decode", [64], [4096], gpu="h100", calibration=cal, tp=4)
    message = 64 * get_layer("mlp").d_model * 2
    expected = 2e-5 + 2 * 3 / 4 * message / 1e11
    assert frame["allreduce_ms"].iloc[0] == pytest.approx(expected * 1e3)


def test_datasheet_interconnect_without_calibration():
    gpu = get_gpu("h200")
    link = interconnect(gpu, None)
    assert (link.bus_bw_bytes_s, link.latency_s, link.source) == (gpu.nvlink_bw_bytes_s,
                                                                  gpu.allreduce_latency_s, "datasheet")


@pytest.mark.parametrize("target,tp,needle", [
    ("transformer-8b", 3, "query heads"),
    ("mamba2-hybrid-8b", 16, "groups"),
    ("mamba2-hybrid-8b", 3, "heads"),
    ("mlp", 5, "ffn_hidden"),
    ("mamba", 3, "d_inner"),
])
def test_invalid_split_is_a_one_line_spec_error(target, tp, needle):
    with pytest.raises(SpecError) as info:
        predict(target, "decode", [1], [4096], tp=tp)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_mamba2_groups_not_divisible_is_a_spec_error():
    spec = replace(get_layer("mamba2"), ngroups=1)
    with pytest.raises(SpecError, match="groups"):
        shard_layer(spec, 2)


@pytest.mark.parametrize("tp", [0, -2, 1.5, True])
def test_tp_must_be_a_positive_integer(tp):
    with pytest.raises(SpecError):
        predict_tp("mlp", "decode", [1], [1], tp=tp)


@pytest.mark.parametrize("name,shard_type", [("mamba2", Mamba2Shard), ("mamba", MambaShard)])
def test_mamba_shards_hold_a_quarter_of_the_parameters_and_state(name, shard_type):
    spec = get_layer(name)
    shard = shard_layer(spec, 4)
    assert isinstance(shard, shard_type)
    assert shard.params * 4 == spec.params
    assert shard.state_bytes_per_sequence() * 4 == spec.state_bytes_per_sequence()


def test_mamba2_shard_keeps_heads_per_group_and_chunk():
    spec = get_layer("mamba2")
    shard = shard_layer(spec, 8)
    assert (shard.nheads, shard.ngroups, shard.d_inner) == (spec.nheads // 8, spec.ngroups // 8, spec.d_inner // 8)
    assert shard.nheads // shard.ngroups == spec.nheads // spec.ngroups
    assert (shard.headdim, shard.d_state, shard.chunk_size) == (spec.headdim, spec.d_state, spec.chunk_size)


def test_tp_scaling_frame_for_the_dashboard():
    frame = tp_scaling("mamba2-hybrid-8b", "decode", 64, 32768, gpu="h200", tps=(1, 2, 4, 8, 16))
    assert list(frame["tp"]) == [1, 2, 4, 8, 16]
    valid = frame[frame["reason"] == ""]
    assert list(valid["tp"]) == [1, 2, 4, 8]
    assert valid["speedup"].iloc[0] == 1.0
    assert valid["memory_per_gpu_bytes"].is_monotonic_decreasing
    assert valid["max_batch"].is_monotonic_increasing
    assert frame.loc[frame["tp"] == 16, "time_ms"].isna().all()
    assert "groups" in frame.loc[frame["tp"] == 16, "reason"].iloc[0]


def test_fit_allreduce_recovers_bandwidth_and_latency():
    bw, lat, n = 3.6e11, 1.2e-5, 2
    samples = [{"bytes": s, "time_s": lat + 2 * (n - 1) / n * s / bw} for s in (8 << 10, 1 << 20, 64 << 20, 256 << 20)]
    fit = fit_allreduce(samples, n)
    assert fit["bus_bw_bytes_s"] == pytest.approx(bw, rel=1e-6)
    assert fit["latency_s"] == pytest.approx(lat, rel=1e-6)
    assert fit["n_gpus"] == n


def test_calls_timed_between_gemvs_set_the_latency_and_back_to_back_ones_the_bandwidth():
    bw, lat, n = 2.5e11, 2.0e-5, 2
    back = [{"bytes": s, "time_s": lat + 2 * (n - 1) / n * s / bw, "mode": "graph"}
            for s in (8 << 10, 1 << 20, 64 << 20, 256 << 20)]
    between = [{"bytes": s, "time_s": 1.0e-5 + 2 * (n - 1) / n * s / bw, "mode": "between"}
               for s in (8 << 10, 64 << 10, 256 << 10)]
    fit = fit_allreduce(back + between, n)
    assert fit["bus_bw_bytes_s"] == pytest.approx(bw, rel=1e-6)
    assert fit["latency_s"] == pytest.approx(1.0e-5, rel=1e-6)
    assert fit["latency_back_to_back_s"] == pytest.approx(lat, rel=1e-6)
    assert "latency_back_to_back_s" not in fit_allreduce(back, n)


def test_bundled_h200_carries_the_measured_two_gpu_allreduce():
    from analytic.calibration import bundled_path, load_calibration

    ar = load_calibration(bundled_path("h200"), "h200").allreduce
    assert ar["n_gpus"] == 2 and ar["backend"] == "nccl"
    assert {"graph", "between"} <= {s["mode"] for s in ar["samples"]}
    assert 0 < ar["latency_s"] < ar["latency_back_to_back_s"]
    assert ar == {**ar, **fit_allreduce(ar["samples"], 2)}  # the stored fit is its samples'


@pytest.mark.parametrize("name", ["mamba2", "mamba"])
def test_a_mamba_shard_is_the_spec_with_only_the_split_fields_changed(name):
    spec = get_layer(name)
    shard = shard_layer(spec, 4)
    assert isinstance(shard, type(spec))
    changed = {f for f in ("d_model", "d_state", "d_conv", "expand", "headdim", "ngroups", "chunk_size", "dt_rank",
                           "conv_bias", "bias", "rmsnorm") if hasattr(spec, f) and getattr(shard, f) != getattr(spec, f)}
    assert changed == ({"ngroups"} if name == "mamba2" else set())
    assert shard.d_inner * 4 == spec.d_inner
