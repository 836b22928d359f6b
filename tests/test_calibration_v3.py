"""Calibration v3 pieces: Mamba-1's state update as its own kernel family, wave-quantized
attention-decode streaming, host figures pooled across leases, cold-L2 input rotation."""

from __future__ import annotations

import dataclasses
import numpy as np
import pytest

from analytic.calibration import bundled_path, load_calibration
from analytic.costs import layer_ops
from analytic.efficiency import ceilings, op_ceiling, op_time
from analytic.hardware import get_gpu
from analytic.ops import ATTN_DECODE, SSU_MAMBA1, STATE_UPDATE
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import ROTATE_BYTES, rotation
from perfbench.calibration.run import samples_by_family
from perfbench.calibration.host import host_figures, pooled_host_figures, with_host_samples, with_more_host_samples
from perfbench.errors import PerfbenchError


def _ssu(layer: str, batch: float):
    ops = layer_ops(BUILTIN_LAYERS[layer], "decode", np.array([batch]), np.array([1024.0]))
    return next(op for op in ops if op.name == "selective_state_update")


def test_mamba1_state_update_runs_at_its_family_ceilings():
    ceil = ceilings(get_gpu("h100"), load_calibration(bundled_path("h100")))
    assert _ssu("mamba", 8).shape["family"] == SSU_MAMBA1
    assert op_ceiling(_ssu("mamba", 8), ceil) is ceil.classes[SSU_MAMBA1]
    assert op_ceiling(_ssu("mamba2", 8), ceil) is ceil.classes[STATE_UPDATE]


def test_old_files_mamba1_samples_are_refit_as_the_family():
    sample = {"layer": "mamba", "phase": "decode", "batch": 3, "seqlen": 1024,
              "ops": ["selective_state_update"], "time_s": 1e-5}
    m2 = {**sample, "layer": "mamba2"}
    grouped = samples_by_family({STATE_UPDATE: [sample, m2], "elementwise": [{"class": "elementwise"}]})
    assert grouped[SSU_MAMBA1] == [sample]
    assert grouped[STATE_UPDATE] == [m2]
    assert grouped["elementwise"] == [{"class": "elementwise"}]


def _decode_attention(ceil, batch: float, seqlen: float) -> float:
    ops = layer_ops(BUILTIN_LAYERS["attention"], "decode", np.array([batch]), np.array([seqlen]))
    op = next(o for o in ops if o.op_class == ATTN_DECODE)
    return float(op_time(op, ceil)[0][0])


def test_a_partly_filled_last_wave_streams_slower_per_byte():
    ceil = ceilings(get_gpu("h100"), load_calibration(bundled_path("h100")))
    c = ceil.classes[ATTN_DECODE]
    slots = ceil.gpu.sm_count * c.extra["ctas_per_sm"]
    heads = BUILTIN_LAYERS["attention"].n_kv_heads
    full = 2 * slots / heads  # two whole waves of the plain kernel (past 80 % of 264 CTAs: no split)
    assert full * heads >= 0.8 * 2 * ceil.gpu.sm_count
    tail = np.ceil(0.5 * c.extra["bw_nosplit_bytes_s"] / c.extra["bw_per_cta_bytes_s"] / heads)  # half the cap
    per_byte = [(_decode_attention(ceil, b, 16384) - c.t0_s) / b for b in (full, full + tail, full * 2)]
    assert per_byte[1] > per_byte[0] * 1.05  # the last wave streams at a fraction of the cap
    assert per_byte[2] == pytest.approx(per_byte[0], rel=0.02)  # whole waves: the same rate


def test_a_split_call_pays_the_combine_kernel_per_split():
    ceil = ceilings(get_gpu("h100"), load_calibration(bundled_path("h100")))
    c = ceil.classes[ATTN_DECODE]
    assert c.extra["combine_per_split_s"] > 0
    no_combine = dataclasses.replace(c, extra={**c.extra, "combine_s": 0.0, "combine_per_split_s": 0.0})
    bare = dataclasses.replace(ceil, classes={**ceil.classes, ATTN_DECODE: no_combine})
    # B=1 at 4K: 33 splits; B=64: 512 CTAs, the plain kernel, no combine.
    extra_split = _decode_attention(ceil, 1, 4096) - _decode_attention(bare, 1, 4096)
    assert extra_split == pytest.approx(c.extra["combine_s"] + 33 * c.extra["combine_per_split_s"], rel=1e-6)
    assert _decode_attention(ceil, 64, 4096) == _decode_attention(bare, 64, 4096)


def test_attention_decode_never_beats_the_hbm_peak():
    """Reading the cache alone may outrun a copy (which also writes: the bundled H100 decode samples
    stream up to ~3.3 TB/s against a 3.0 TB/s copy), never the HBM's datasheet peak."""
    ceil = ceilings(get_gpu("h100"), load_calibration(bundled_path("h100")))
    for b in (1, 3, 17, 48, 96, 200):
        for L in (512, 3000, 32768):
            ops = layer_ops(BUILTIN_LAYERS["attention"], "decode", np.array([float(b)]), np.array([float(L)]))
            op = next(o for o in ops if o.op_class == ATTN_DECODE)
            assert float(op_time(op, ceil)[0][0]) >= float(op.shape["kv_bytes"][0]) / ceil.gpu.mem_bw_bytes_s


def _cal(created: str, gpu: str = "h100", **launch) -> dict:
    base = {"graph_kernel_s": 1e-6, "eager_kernel_s": 7e-6, "graph_replay_s": 9e-6,
            "graph_replay_gap_s": 2e-6, "host/mamba2/prefill": 1.3e-3}
    return {"gpu": gpu, "created": created, "launch": {**base, **launch}, "provenance": {}}


def test_host_figures_pool_every_lease_sample_and_keep_device_figures():
    slow = _cal("b", eager_kernel_s=9e-6, graph_replay_gap_s=1.5e-6, **{"host/mamba2/prefill": 1.8e-3})
    slow["host_samples"] = {"host/mamba2/prefill": [1.6e-3, 1.8e-3, 2.4e-3, 2.0e-3]}
    out = pooled_host_figures(slow, {"a.json": _cal("a"), "c.json": _cal("c", eager_kernel_s=8e-6)})
    # the windows of b and a's and c's single figures: median of 1.3, 1.3, 1.6, 1.8, 2.0, 2.4 ms
    assert out["launch"]["host/mamba2/prefill"] == pytest.approx(1.7e-3)
    assert out["host_samples"]["host/mamba2/prefill"] == pytest.approx([1.6e-3, 1.8e-3, 2.4e-3, 2.0e-3, 1.3e-3, 1.3e-3])
    assert out["launch"]["eager_kernel_s"] == pytest.approx(8e-6)  # median of 9, 7, 8 us
    assert out["launch"]["graph_replay_gap_s"] == pytest.approx(1.5e-6)  # device-side: this lease's
    assert out["provenance"]["host_figures_pooled_from"] == ["b", "a", "c"]
    assert slow["launch"]["host/mamba2/prefill"] == pytest.approx(1.8e-3)  # the input is not changed
    with pytest.raises(PerfbenchError, match="h200"):
        pooled_host_figures(slow, {"x.json": _cal("x", gpu="h200")})


def test_host_figures_pooled_with_an_earlier_pool_name_all_its_leases_and_refuse_a_lease_twice():
    earlier = _cal("a")
    earlier["provenance"] = {"host_figures_pooled_from": ["a", "z"]}
    out = pooled_host_figures(_cal("b"), {"bundled.json": earlier})
    assert out["provenance"]["host_figures_pooled_from"] == ["b", "a", "z"]
    with pytest.raises(PerfbenchError, match="already in the pool"):
        pooled_host_figures(_cal("z"), {"bundled.json": earlier})


def test_a_remeasured_lease_replaces_the_host_chains_and_forgets_earlier_leases():
    old = _cal("a", **{"host_wall/mamba2/prefill": 1.2e-3})
    old["provenance"] = {"torch": "2.11", "host_figures_pooled_from": ["a", "z"]}
    windows = {"host/mamba2/prefill": [1.5e-3, 1.9e-3, 1.6e-3]}
    out = with_host_samples(old, windows)
    assert out["launch"]["host/mamba2/prefill"] == pytest.approx(1.6e-3)
    assert out["launch"]["host_wall/mamba2/prefill"] == pytest.approx(1.2e-3)  # not re-measured: kept
    assert out["launch"]["graph_replay_gap_s"] == old["launch"]["graph_replay_gap_s"]
    assert out["host_samples"] == windows and out["provenance"] == {"torch": "2.11"}
    assert old["launch"]["host/mamba2/prefill"] == pytest.approx(1.3e-3)  # the input is not changed


def test_host_figure_is_the_median_window_not_the_fastest():
    figures = host_figures({"host/mamba2/prefill": [1.2e-3, 2.3e-3, 1.7e-3], "host_wall/mlp/decode": []})
    assert figures == {"host/mamba2/prefill": pytest.approx(1.7e-3)}


def test_rotation_spans_the_target_bytes_with_independent_inputs():
    made = []

    def make():
        made.append(object())
        return lambda: None
    run_all, copies = rotation(make, 5e6)
    assert copies == len(made) == int(np.ceil(ROTATE_BYTES / 5e6))
    assert len({id(m) for m in made}) == copies
    _, one = rotation(make, 10 * ROTATE_BYTES)
    assert one == 1
    run_all()


def test_attention_decode_fit_recovers_a_known_kernel():
    """Samples timed by a known model (splits, waves and combine) are fitted back within a few %,
    the combine's per-split cost included; a point off the samples is then predicted as well."""
    from analytic.fit import fit_attention_decode, sample_ops

    cal = load_calibration(bundled_path("h100"))
    base = ceilings(get_gpu("h100"), cal)
    truth = dataclasses.replace(base.classes[ATTN_DECODE], t0_s=4e-6, bw_bytes_s=2.9e12, extra={
        "bw_nosplit_bytes_s": 2.4e12, "bw_per_cta_bytes_s": 4e10, "ctas_per_sm": 2.0,
        "combine_s": 2e-6, "combine_per_split_s": 3e-7, "wave_s": 5e-7})
    known = dataclasses.replace(base, classes={**base.classes, ATTN_DECODE: truth})
    samples = [dict(s, time_s=float(op_time(next(o for o in sample_ops(s) if o.op_class == ATTN_DECODE),
                                            known)[0][0]))
               for s in cal.samples[ATTN_DECODE]]
    fitted = fit_attention_decode(samples, base)
    assert fitted["fit_median_abs_err"] < 0.03
    assert fitted["combine_per_split_s"] == pytest.approx(3e-7, rel=0.35)
    extra = {k: fitted[k] for k in ("bw_nosplit_bytes_s", "bw_per_cta_bytes_s", "ctas_per_sm", "combine_s",
                                    "combine_per_split_s", "wave_s")}
    got = dataclasses.replace(truth, t0_s=fitted["t0_s"], bw_bytes_s=fitted["bw_bytes_s"], extra=extra)
    fitted_ceil = dataclasses.replace(base, classes={**base.classes, ATTN_DECODE: got})
    for b, L in ((5, 5000), (40, 2500), (1, 20000)):
        assert _decode_attention(fitted_ceil, b, L) == pytest.approx(_decode_attention(known, b, L), rel=0.06)


def test_a_calibration_holds_the_layer_and_the_whole_model_chains(monkeypatch):
    import perfbench.calibration.host as host_chain

    monkeypatch.setattr(host_chain, "measure_layer_host", lambda torch, log: {"host/mlp/prefill": [1e-4]})
    monkeypatch.setattr(host_chain, "measure_model_host", lambda torch, log: {"host/mamba2-8b/prefill": [0.1]})
    assert host_chain.measure_host_chains(None, print) == {"host/mlp/prefill": [1e-4],
                                                           "host/mamba2-8b/prefill": [0.1]}


def test_a_new_layers_host_chains_join_the_file_beside_the_others():
    old = {**_cal("a"), "host_samples": {"host/mamba2/prefill": [1.3e-3]}, "host_probes": [{"launch_s": 3e-6}]}
    out = with_more_host_samples(old, {"host/mamba3/prefill": [1.0e-3, 1.4e-3, 1.1e-3]}, {"launch_s": 4e-6})
    assert out["launch"]["host/mamba3/prefill"] == pytest.approx(1.1e-3)
    assert out["launch"]["host/mamba2/prefill"] == old["launch"]["host/mamba2/prefill"]  # kept
    assert set(out["host_samples"]) == {"host/mamba2/prefill", "host/mamba3/prefill"}
    assert out["host_probes"] == [{"launch_s": 3e-6}, {"launch_s": 4e-6, "chains": ["mamba3/prefill"]}]


def test_only_the_named_layers_host_chains_are_timed(monkeypatch):
    import perfbench.calibration.host as host_chain

    seen = {}
    monkeypatch.setattr(host_chain, "measure_layer_host", lambda torch, log, names=None: seen.setdefault("names", names) and {})
    monkeypatch.setattr(host_chain, "measure_model_host", lambda torch, log: seen.setdefault("models", True) and {})
    host_chain.measure_host_chains(None, print, layers=["mamba3"])
    assert seen == {"names": ["mamba3"]}


@pytest.mark.parametrize("args, says", [
    (["--layer", "mamba3,nope"], "unknown layer"),
    (["--model", "mamba2-8b"], "--remeasure host --layer"),
])
def test_host_chains_of_some_layers_take_built_in_layers_only(args, says):
    from typer.testing import CliRunner
    from perfbench.cli import app

    from models.specs import SpecError

    result = CliRunner().invoke(app, ["calibrate", "--refit", str(bundled_path("h100")), "--remeasure", "host", *args])
    # perfbench.cli.main prints either as one "error:" line and exits 2
    assert isinstance(result.exception, (PerfbenchError, SpecError)) and says in str(result.exception)
