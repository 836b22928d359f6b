"""Recovering a killed calibration's kernel-family samples from its log (perfbench/calibration/from_log.py)."""

import pytest

from analytic.ops import MAMBA3_CHUNK, MAMBA3_STEP
from perfbench.calibration.from_log import recover_samples, with_recovered
from perfbench.errors import PerfbenchError

MAMBA3_LINES = """== families 12:52:41Z
kernels: mamba3
  mamba3_siso_fwd b=1 L=384: 0.256 ms
  mamba3_siso_fwd b=1 L=1536: 0.345 ms
  mamba3_siso_fwd b=3 L=1024: 0.690 ms
  mamba3_siso_fwd b=1 L=6144: 1.296 ms
  mamba3_siso_fwd b=3 L=3072: 1.971 ms
  mamba3_siso_fwd b=6 L=6144: 7.743 ms
  mamba3_siso_fwd b=1 L=24576: 5.125 ms
  mamba3_siso_fwd b=12 L=1536: 3.911 ms
  mamba3_siso_step b=1: 130.0 us
  mamba3_siso_step b=3: 127.2 us""".splitlines()

GDN_SHAPES_LINES = """kernels: gdn_shapes
  chunk_gated_delta_rule k_heads=16 v_heads=32 dk=128 dv=128 b=1 L=1536: 0.434 ms
  chunk_gated_delta_rule k_heads=16 v_heads=32 dk=128 dv=128 b=3 L=3072: 0.668 ms
  chunk_gated_delta_rule k_heads=16 v_heads=32 dk=128 dv=128 b=8 L=2048: 1.152 ms
  fused_recurrent_gated_delta_rule k_heads=16 v_heads=32 dk=128 dv=128 b=2: 5.8 us""".splitlines()


def test_prefill_lines_become_chunk_samples_with_their_times():
    (r,) = recover_samples(MAMBA3_LINES)
    chunk = r.samples[MAMBA3_CHUNK]
    assert [(s["batch"], s["seqlen"]) for s in chunk][:2] == [(1, 384), (1, 1536)]
    assert chunk[5]["time_s"] == pytest.approx(7.743e-3)
    assert chunk[0]["spec"]["d_model"] == 4096 and chunk[0]["phase"] == "prefill"


def test_decode_line_is_the_eager_sample_and_its_graph_twin_is_dropped():
    (r,) = recover_samples(MAMBA3_LINES)
    steps = r.samples[MAMBA3_STEP]
    assert [(s["batch"], s["mode"], s["time_s"]) for s in steps] == [(1, "eager", pytest.approx(130e-6)),
                                                                   (3, "eager", pytest.approx(127.2e-6))]
    assert r.dropped == 5 and r.missing == 3  # 5 graph twins; batches 12, 48, 96 never logged


def test_shapes_family_lines_pair_with_their_spec_in_measure_order():
    (r,) = recover_samples(GDN_SHAPES_LINES)
    samples = r.samples["gdn_shapes"]
    assert [s["phase"] for s in samples] == ["prefill"] * 3 + ["decode"]
    assert samples[3]["spec"]["n_v_heads"] == 32 and samples[3]["mode"] == "graph"


def test_a_line_unlike_its_plan_entry_is_refused():
    lines = [line.replace("b=3 L=1024", "b=4 L=1024") for line in MAMBA3_LINES]
    with pytest.raises(PerfbenchError, match="does not match its plan entry"):
        recover_samples(lines)


def test_a_line_with_other_hyper_parameters_is_refused():
    lines = [line.replace("v_heads=32", "v_heads=16") for line in GDN_SHAPES_LINES]
    with pytest.raises(PerfbenchError, match="does not match"):
        recover_samples(lines)


def test_recovered_samples_replace_the_files_and_say_where_they_came_from():
    recovered = recover_samples(MAMBA3_LINES)
    data = {"samples": {MAMBA3_CHUNK: [{"old": True}], "ssd": [{"kept": True}]}, "provenance": {}}
    out = with_recovered(data, recovered, "2026-12-07T12:52:41Z", "run.log")
    assert len(out["samples"][MAMBA3_CHUNK]) == 8 and out["samples"]["ssd"] == [{"kept": True}]
    assert out["provenance"]["remeasured"]["mamba3"]["recovered_from_log"] == "run.log"
    assert data["samples"][MAMBA3_CHUNK] == [{"old": True}]
