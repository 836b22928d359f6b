"""The tensor-parallel code path on CPU: 2 gloo ranks, reference layers, tiny sizes.

Every test that starts ranks uses a free port and short timeouts, and checks that no worker
outlives it.
"""

from __future__ import annotations

import json
import multiprocessing

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("needs torch.distributed with gloo", allow_module_level=True)

from models.specs import AttentionSpec, MLPSpec, SpecError  # noqa: E402
from perfbench.tp.distributed import (LaunchOptions, Ranks, check_devices, done_keys_tp, measure_allreduce,  # noqa: E402
                                   run_tp, summarize_topology, verify_sharded_layers)
from perfbench.errors import PerfbenchError  # noqa: E402
from perfbench.measure.harness import SweepOptions, Target  # noqa: E402
from perfbench.measure.results import COLUMNS, load_results  # noqa: E402
from perfbench.measure.timing import TimingOptions  # noqa: E402

FAST = TimingOptions(warmup=1, min_repeats=2, max_repeats=2, target_s=0.001, nvtx=False)


def _no_workers_left() -> bool:
    return not [p for p in multiprocessing.active_children() if p.name.startswith("perfbench-tp")]


@pytest.fixture
def biased_specs(tiny_specs) -> dict:
    """The tiny layers plus variants with biases (row-parallel bias on one rank) and a gated MLP."""
    return {**tiny_specs,
            "attention-bias": AttentionSpec(d_model=32, n_heads=4, n_kv_heads=2, head_dim=8,
                                            rotary_fraction=0.5, bias=True),
            "mlp-gated-bias": MLPSpec(d_model=16, ffn_hidden=24, gated=True, activation="silu", bias=True)}


def test_sharded_reference_layers_and_model_equal_the_unsharded_ones(biased_specs, tiny_model):
    errors = verify_sharded_layers(biased_specs, tp=2, model=tiny_model, init_timeout_s=60, idle_timeout_s=60)
    assert set(errors) == set(biased_specs) | {"model:tiny-hybrid"}
    for name, values in errors.items():
        for key, err in values.items():
            assert err < 1e-12, (name, key, err)
    assert _no_workers_left()


def test_sharded_real_attention_and_mlp_equal_the_unsharded_ones_on_cpu(tiny_specs):
    """models.torch_layers' Attention (SDPA math) and MLP, sharded as on the GPUs, in float64."""
    layers = {name: tiny_specs[name] for name in ("attention", "attention-mha", "mlp")}
    errors = verify_sharded_layers(layers, tp=2, reference=False, backend="gloo", dtype="float64",
                                   attn_backend="math", init_timeout_s=60, idle_timeout_s=60)
    assert set(errors) == set(layers)
    assert max(err for values in errors.values() for err in values.values()) < 1e-12


def test_a_dying_rank_is_one_line_and_keeps_the_finished_points(tmp_path, tiny_model, tiny_specs):
    targets = [Target("model", tiny_model.name, tiny_model), Target("layer", "attention", tiny_specs["attention"])]
    options = SweepOptions(device="cpu", dtype="float32", timing=FAST, reference=True)
    # Points in order: model prefill B=1,2; model decode B=1,2; attention prefill ..., decode ...
    with pytest.raises(PerfbenchError) as info:
        run_tp(targets, ["prefill", "decode"], [1, 2], [4], 2, options, tmp_path, crash_at=(1, 3),
               init_timeout_s=60, idle_timeout_s=60)
    message = str(info.value)
    assert "\n" not in message and "rank 1 died" in message and "3 finished point(s) kept" in message
    assert _no_workers_left()
    frame = load_results(tmp_path)
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == 3 and set(frame["status"]) == {"ok"} and set(frame["tp"]) == {2}
    assert (frame["time_ms"] > 0).all()
    assert list(frame["nvtx_range"]) == ["tiny-hybrid/prefill/B=1/L=4", "tiny-hybrid/prefill/B=2/L=4",
                                         "tiny-hybrid/decode/B=1/L=4"]
    extra = json.loads(frame["extra"].iloc[0])
    assert extra["tp"] == 2 and extra["backend"] == "gloo" and len(extra["rank_median_ms"]) == 2
    manifest = json.loads(next(tmp_path.glob("run-*.json")).read_text())
    assert manifest["status"] == "failed" and manifest["tp"] == 2 and manifest["n_points"] == 3

    # --resume: the kept points count as done at tp=2 (and only at tp=2); nothing left starts no rank.
    assert len(done_keys_tp(tmp_path, 2)) == 3 and done_keys_tp(tmp_path, 4) == set()
    report = run_tp(targets[:1], ["prefill"], [1, 2], [4], 2, options, tmp_path, resume=True)
    assert report.skipped_done == 2 and report.rows == [] and report.status == "complete"


def test_ranks_that_do_not_join_in_time_are_a_one_line_error_and_are_reaped():
    ranks = Ranks(_never_called, None, LaunchOptions(tp=2, backend="gloo", init_timeout_s=0.01, idle_timeout_s=5))
    try:
        with pytest.raises(PerfbenchError, match="did not join the process group"):
            for _ in ranks.messages():
                pass
    finally:
        ranks.close()
    assert all(not p.is_alive() for p in ranks.procs)


def _never_called(*args):  # pragma: no cover - the ranks are stopped before any job runs
    raise AssertionError("unreachable")


def test_allreduce_benchmark_reports_samples_and_a_fit():
    result = measure_allreduce([4096, 1 << 20], tp=2, backend="gloo", log=lambda *_: None, init_timeout_s=60,
                               idle_timeout_s=60)
    assert result["n_gpus"] == 2 and len(result["samples"]) == 2
    assert result["bus_bw_bytes_s"] > 0 and result["latency_s"] >= 0
    big = result["samples"][1]
    assert big["busbw_bytes_s"] == pytest.approx(big["algbw_bytes_s"] * 2 * (2 - 1) / 2)
    assert _no_workers_left()


def test_invalid_split_is_refused_before_any_rank_starts(tmp_path, tiny_specs):
    options = SweepOptions(device="cpu", dtype="float32", timing=FAST, reference=True)
    with pytest.raises(SpecError, match="not divisible by 3"):
        run_tp([Target("layer", "attention", tiny_specs["attention"])], ["decode"], [1], [4], 3, options, tmp_path)
    assert not list(tmp_path.iterdir())


def test_nccl_without_enough_gpus_is_one_line():
    if torch.cuda.device_count() >= 64:
        pytest.skip("a machine with 64 GPUs")
    with pytest.raises(PerfbenchError) as info:
        check_devices(64, "nccl")
    assert "\n" not in str(info.value)


def test_topology_summary_reads_the_nvidia_smi_matrix():
    text = ("\x1b[4m\tGPU0\tGPU1\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m\n"
            "GPU0\t X \tNV18\tSYS\t0-55\t0\t\tN/A\n"
            "GPU1\tNV18\t X \tSYS\t0-55\t0\t\tN/A\n")
    assert summarize_topology(text, 2) == "GPU0-GPU1:NV18"
    assert summarize_topology("", 2) == ""
