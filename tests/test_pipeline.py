"""The one prediction pipeline (analytic.pipeline.step_time) and its views (predict, breakdown, TP)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from analytic.pipeline import STAGES, step_time
from analytic.predict import breakdown, predict
from models.registry import BUILTIN_LAYERS, BUILTIN_MODELS

PINNED = json.loads(gzip.decompress((Path(__file__).parent / "data" / "pipeline_tp1.json.gz").read_bytes()))
TARGETS = list(BUILTIN_MODELS) + list(BUILTIN_LAYERS)
MODES = [("prefill", False), ("decode", True), ("decode", False)]  # (phase, CUDA graphs)


def _key(entry: dict) -> str:
    mode = "graph" if entry["graphs"] and entry["phase"] == "decode" else "eager"
    return f"{entry['target']}-{entry['gpu']}-{entry['calibration']}-{entry['phase']}-{mode}"


@pytest.mark.parametrize("pinned", PINNED["predictions"], ids=_key)
def test_one_gpu_prediction_equals_the_four_copies_it_replaced(pinned):
    frame = predict(pinned["target"], pinned["phase"], PINNED["batch"], PINNED["seqlen"], pinned["gpu"],
                    pinned["calibration"], 1, pinned["graphs"])
    for column in ("time_ms", "bound", "flops", "bytes", "n_kernels", "memory_bytes", "fits"):
        if column in pinned:
            assert frame[column].tolist() == pinned[column], column


@pytest.mark.parametrize("pinned", PINNED["breakdowns"], ids=_key)
def test_one_gpu_breakdown_equals_the_rows_it_had(pinned):
    rows = breakdown(pinned["target"], pinned["phase"], pinned["batch"], pinned["seqlen"], pinned["gpu"],
                     pinned["calibration"], graphs=pinned["graphs"])
    assert rows["op"].tolist() == pinned["op"]
    assert rows["group"].tolist() == pinned["group"]
    assert rows["bound"].tolist() == pinned["bound"]
    np.testing.assert_allclose(rows["time_ms"], pinned["time_ms"], rtol=1e-12)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("tp", [1, 2, 4, 8])
@pytest.mark.parametrize("phase,graphs", MODES)
def test_breakdown_rows_add_up_to_the_prediction(target, tp, phase, graphs):
    for batch, seqlen in ((1, 512), (16, 4096)):
        predicted = predict(target, phase, [batch], [seqlen], "h200", tp=tp, graphs=graphs)["time_ms"].iloc[0]
        rows = breakdown(target, phase, batch, seqlen, "h200", graphs=graphs, tp=tp)
        assert rows["time_ms"].sum() == pytest.approx(predicted, rel=1e-12)


@pytest.mark.parametrize("target", ["transformer-8b", "mamba2-hybrid-8b", "mamba-8b", "attention", "mlp"])
@pytest.mark.parametrize("tp", [1, 4])
@pytest.mark.parametrize("phase,graphs", MODES)
def test_stage_contributions_add_up_to_the_total(target, tp, phase, graphs):
    record = step_time(target, phase, [1, 7, 64], [300, 8192], "h100", tp=tp, graphs=graphs)
    np.testing.assert_allclose(sum(record.stages().values()), record.total_s, rtol=1e-12)


@pytest.mark.parametrize("target", ["transformer-8b", "mamba2-hybrid-8b", "mamba-8b", "mamba2", "attention"])
@pytest.mark.parametrize("phase,graphs", MODES)
def test_every_stage_but_the_shared_clock_only_adds_time(target, phase, graphs):
    record = step_time(target, phase, [1, 7, 64], [300, 8192, 131072], "h100", tp=2, graphs=graphs)
    for stage, seconds in record.stages().items():
        if stage != "board_clock":
            assert (seconds >= 0).all(), stage


def test_the_shared_clock_stage_gives_time_back_where_gemms_burst_beside_memory_bound_work():
    record = step_time("mlp", "prefill", [8], [4096], "h100")
    assert record.board_clock_s[0] < 0
    assert record.total_s[0] > 0


@pytest.mark.parametrize("phase,graphs", MODES)
def test_the_time_after_each_stage_stays_positive(phase, graphs):
    record = step_time("mamba2-hybrid-8b", phase, [1, 64], [512, 32768], "h200", tp=2, graphs=graphs)
    running = np.zeros(record.total_s.shape)
    for seconds in record.stages().values():
        running = running + seconds
        assert (running > 0).all()


def test_op_times_add_up_to_the_gpu_stages():
    record = step_time("mamba2-hybrid-8b", "prefill", [1, 4], [1024, 8192], "h200", tp=2)
    gpu_stages = sum(seconds for stage, seconds in record.stages().items() if stage != "step")
    np.testing.assert_allclose(sum(o.seconds for o in record.ops), gpu_stages, rtol=1e-12)


@pytest.mark.parametrize("target", ["transformer-8b", "mamba2-hybrid-8b", "mamba-8b", "mamba2-8b"])
def test_op_names_are_unique_within_a_step(target):
    record = step_time(target, "decode", [1], [1024], "h100", tp=2)
    names = [o.name for o in record.ops]
    assert len(names) == len(set(names))


def test_stage_names_are_in_the_order_applied():
    assert tuple(step_time("mlp", "decode", [1], [1], "h100").stages()) == STAGES


def test_collectives_stage_is_the_allreduce_column():
    record = step_time("transformer-8b", "decode", [16], [4096], "h200", tp=2)
    frame = predict("transformer-8b", "decode", [16], [4096], "h200", tp=2)
    assert frame["allreduce_ms"].iloc[0] == record.collectives_s[0] * 1e3 > 0


def test_tp_breakdown_keeps_its_columns_and_gains_a_step_row():
    rows = breakdown("transformer-8b", "decode", 16, 4096, "h200", graphs=True, tp=2)
    assert list(rows.columns) == ["name", "tp", "group", "op", "op_class", "count", "kernels", "flops", "bytes",
                                  "message_bytes", "time_ms", "bound", "share", "time_lo_ms", "time_hi_ms", "provenance"]
    assert rows["group"].iloc[-1] == "step"


def test_one_gpu_breakdown_keeps_its_columns():
    rows = breakdown("mlp", "decode", 1, 4096, "h100", graphs=True)
    assert list(rows.columns) == ["name", "group", "op", "op_class", "count", "kernels", "flops", "bytes",
                                  "time_ms", "bound", "share", "time_lo_ms", "time_hi_ms", "provenance"]
