"""Calibration v2 pieces: the selective-scan rate table, kernel families (RoPE), the replay terms,
and the microbenchmark grids (sizes the kernels can run)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytic.calibration import CalibrationError, bundled_path, from_dict, load_calibration, read_calibration_data
from analytic.costs import layer_ops
from analytic.costs.mamba import scan_chunk
from analytic.efficiency import ceilings, op_ceiling, op_time, table_rate
from analytic.families.selective_scan import BLOCK_SLOTS, STATE_OVERHEAD
from analytic.fit import scan_rate_table
from analytic.hardware import get_gpu
from analytic.ops import ELEMENTWISE, ROPE
from analytic.predict import predict
from models.registry import BUILTIN_LAYERS

TABLE = {"seqlen": [512, 2048, 8192],
         "tokens": [[4096, 65536], [4096, 65536, 262144], [8192, 262144]],
         "rate": [[10e12, 11e12], [9e12, 8.5e12, 7e12], [8e12, 6e12]]}


def test_table_rate_is_exact_at_measured_points():
    for L, tokens, rates in zip(TABLE["seqlen"], TABLE["tokens"], TABLE["rate"]):
        got = table_rate(TABLE, np.full(len(tokens), L), np.array(tokens, dtype=float))
        assert np.allclose(got, rates)


def test_table_rate_is_clamped_outside_the_measured_range():
    assert table_rate(TABLE, 64, 100) == pytest.approx(10e12)  # shortest length, fewest tokens
    assert table_rate(TABLE, 1 << 20, 1 << 30) == pytest.approx(6e12)  # longest length, most tokens


@settings(max_examples=60, deadline=None)
@given(L=st.integers(128, 65536), tokens=st.integers(256, 1 << 22))
def test_table_rate_stays_within_the_measured_rates(L, tokens):
    flat = [r for rs in TABLE["rate"] for r in rs]
    rate = float(table_rate(TABLE, L, tokens))
    assert min(flat) - 1 <= rate <= max(flat) + 1


def test_table_rate_moves_monotonically_between_two_lengths():
    # At 65536 tokens the rate falls from 11e12 (L=512) to 8.5e12 (L=2048): in between it only falls.
    lengths = np.geomspace(512, 2048, 9)
    rates = table_rate(TABLE, lengths, np.full(9, 65536.0))
    assert np.all(np.diff(rates) <= 1e-3)
    assert rates[0] == pytest.approx(11e12) and rates[-1] == pytest.approx(8.5e12)


def test_scan_chunk_follows_the_kernel_thread_configurations():
    L = np.array([64, 128, 200, 256, 500, 512, 1000, 1024, 1500, 2048, 5000])
    assert list(scan_chunk(L)) == [128, 128, 256, 256, 512, 512, 1024, 1024, 2048, 2048, 2048]


def _scan_op(batch, seqlen):
    ops = layer_ops(BUILTIN_LAYERS["mamba"], "prefill", np.array([float(batch)]), np.array([float(seqlen)]))
    return next(op for op in ops if op.name == "selective_scan")


def test_scan_time_uses_the_table_rate_on_padded_elements():
    cal = load_calibration(bundled_path("h100"), "h100")
    ceil = ceilings(get_gpu("h100"), cal)
    c = ceil.classes["selective_scan"]
    table = c.extra["rate_table"]
    op = _scan_op(4, 8192)
    rate = table_rate(table["even"], 8192, 4 * 8192)
    # 9 FLOPs a padded (token, channel, state), times the fitted per-channel share (n0 states over
    # d_state) and the idle slots of the last wave of blocks (analytic.families.selective_scan).
    n0, slots = c.extra.get(STATE_OVERHEAD, 0.0), c.extra.get(BLOCK_SLOTS, 0.0)
    blocks = max(float(np.ravel(op.shape["blocks"])[0]), 1.0) if slots else 1.0
    wave = np.ceil(blocks / slots) * slots / blocks if slots else 1.0
    expected = c.t0_s + 9.0 * op.shape["padded_elements"] * (op.shape["d_state"] + n0) / op.shape["d_state"] * wave / rate
    assert float(op_time(op, ceil)[0][0]) == pytest.approx(float(np.ravel(expected)[0]), rel=1e-9)


def test_an_uneven_length_takes_the_uneven_path():
    cal = load_calibration(bundled_path("h100"), "h100")
    ceil = ceilings(get_gpu("h100"), cal)
    even, uneven = _scan_op(1, 4096), _scan_op(1, 4095)
    # One token fewer, same padded work, but the slower uneven loads: never faster.
    assert float(op_time(uneven, ceil)[0][0]) >= float(op_time(even, ceil)[0][0])


def test_scan_rate_table_comes_from_samples_of_the_8b_spec_only():
    cal = read_calibration_data(bundled_path("h100"))
    samples = cal["samples"]["selective_scan"]
    table = scan_rate_table(samples, 1e-6)
    assert set(table) == {"even", "uneven"}
    assert sum(len(t) for entry in table.values() for t in entry["tokens"]) <= len(samples)
    other = [dict(s, spec={**s["spec"], "d_state": 16}) for s in samples]
    assert scan_rate_table(other, 1e-6) == {}


def test_rate_table_round_trips_and_bad_tables_are_one_line_errors(tmp_path):
    data = read_calibration_data(bundled_path("h100"))
    cal = from_dict(data, "bundled")
    assert cal.op_classes["selective_scan"]["rate_table"]["even"]["seqlen"][0] == 128
    broken = json.loads(json.dumps(data))
    broken["op_classes"]["selective_scan"]["rate_table"]["even"]["rate"][0] = [-1.0] * len(
        broken["op_classes"]["selective_scan"]["rate_table"]["even"]["tokens"][0])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(CalibrationError) as info:
        load_calibration(path)
    assert "\n" not in str(info.value) and "rate_table" in str(info.value)


def _rope_op():
    ops = layer_ops(BUILTIN_LAYERS["attention-mha"], "prefill", np.array([4.0]), np.array([4096.0]))
    return next(op for op in ops if op.name == "rope")


def test_rope_runs_at_its_own_calibrated_ceilings_else_its_class():
    op = _rope_op()
    assert op.op_class == ELEMENTWISE and op.shape["family"] == ROPE
    cal = load_calibration(bundled_path("h100"), "h100")
    ceil = ceilings(get_gpu("h100"), cal)
    assert op_ceiling(op, ceil) is ceil.classes[ROPE]
    without = replace(cal, op_classes={k: v for k, v in cal.op_classes.items() if k != ROPE})
    ceil_without = ceilings(get_gpu("h100"), without)
    assert op_ceiling(op, ceil_without) is ceil_without.classes[ELEMENTWISE]
    # The strided half-head slices reach less bandwidth than a plain copy: slower than its class.
    assert float(op_time(op, ceil)[0][0]) > float(op_time(op, ceil_without)[0][0])


def test_datasheet_has_no_families():
    ceil = ceilings(get_gpu("h100"), None)
    assert ROPE not in ceil.classes
    assert op_ceiling(_rope_op(), ceil) is ceil.classes[ELEMENTWISE]


def test_graph_decode_pays_the_replay_once_and_never_beats_the_host_launch_period():
    """Without the step chains (an older file) a graph step adds the one-kernel replay figure once."""
    cal = replace(load_calibration(bundled_path("h100"), "h100"), step={})
    ceil = ceilings(get_gpu("h100"), cal)
    graph = predict("mlp", "decode", [1], [1024], gpu="h100", calibration=cal)
    eager_free = predict("mlp", "decode", [1], [1024], gpu="h100",
                         calibration=replace(cal, launch={**cal.launch, "graph_replay_s": 0.0,
                                                          "graph_launch_period_s": 0.0}))
    step_s = graph["time_ms"].iloc[0] / 1e3
    assert step_s - eager_free["time_ms"].iloc[0] / 1e3 == pytest.approx(ceil.graph_replay_s, rel=1e-6)
    slow_host = replace(cal, launch={**cal.launch, "graph_launch_period_s": 1.0})
    assert predict("mlp", "decode", [1], [1024], gpu="h100", calibration=slow_host)["time_ms"].iloc[0] == \
        pytest.approx(1000.0)


def test_microbenchmark_sizes_stay_inside_the_kernels_limits():
    from perfbench.calibration.kernels.selective_scan import scan_sizes
    from perfbench.calibration.kernels.ssd import ssd_sizes
    from perfbench.measure.harness import kernel_limit

    mamba2 = BUILTIN_LAYERS["mamba2"]
    for b, L in ssd_sizes():
        assert kernel_limit("layer", mamba2, b, L) == "", (b, L)
    sizes = scan_sizes()
    assert all(b * L <= 300_000 for b, L in sizes)
    lengths = {L for _, L in sizes}
    assert {128, 256, 512, 1024, 2048, 32768} <= lengths  # every thread configuration, 1..16 chunks
    assert any(L % scan_chunk(np.array([L]))[0] for L in lengths)  # and the uneven path
