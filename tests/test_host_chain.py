"""Eager timing: host launch chains from a calibration, and FlashAttention-2's split-KV count."""

import dataclasses

import numpy as np
import pytest

from analytic.calibration import default_calibration
from analytic.efficiency import flash_num_splits
from analytic.predict import predict


def _with_hosts(layer_host: dict, wall_host: dict):
    cal = default_calibration("h100")
    launch = {k: v for k, v in cal.launch.items() if not k.startswith(("host/", "host_wall/"))}
    launch.update({f"host/{k}": v for k, v in layer_host.items()})
    launch.update({f"host_wall/{k}": v for k, v in wall_host.items()})
    return dataclasses.replace(cal, launch=launch)


def test_a_host_bound_layer_prefill_takes_its_calibrated_window_chain():
    cal = _with_hosts({"mlp/prefill": 5e-3}, {"mlp/prefill": 9e-3})
    # One token: the GPU work is microseconds, so the 5 ms host chain inside the call decides.
    assert predict("mlp", "prefill", [1], [1], calibration=cal).time_ms[0] == pytest.approx(5.0)


def test_a_model_counts_each_layers_whole_host_chain():
    slow = _with_hosts({"mlp/prefill": 1e-3}, {"mlp/prefill": 4e-3})
    fast = _with_hosts({"mlp/prefill": 1e-3}, {"mlp/prefill": 1e-3})
    t_slow = predict("mamba2-hybrid-8b", "prefill", [1], [1], calibration=slow).time_ms[0]
    t_fast = predict("mamba2-hybrid-8b", "prefill", [1], [1], calibration=fast).time_ms[0]
    # 28 MLP blocks, 3 ms more host each, and the step is host-bound at one token.
    assert t_slow - t_fast == pytest.approx(28 * 3.0, rel=0.02)


def test_a_model_counts_its_add_norm_chain_once_per_block_and_once_at_the_end():
    base = {"mamba2/prefill": 1e-3, "attention-mha/prefill": 1e-3, "attention/prefill": 1e-3, "mlp/prefill": 1e-3}
    slow = _with_hosts(base, {**base, "add_norm/prefill": 3e-3})
    fast = _with_hosts(base, {**base, "add_norm/prefill": 1e-3})
    t_slow = predict("mamba2-hybrid-8b", "prefill", [1], [1], calibration=slow).time_ms[0]
    t_fast = predict("mamba2-hybrid-8b", "prefill", [1], [1], calibration=fast).time_ms[0]
    # 56 blocks and the final norm, 2 ms more host each, and the step is host-bound at one token.
    assert t_slow - t_fast == pytest.approx(57 * 2.0, rel=0.02)
    # A layer alone runs no add + norm.
    assert (predict("mlp", "prefill", [1], [1], calibration=slow).time_ms[0]
            == predict("mlp", "prefill", [1], [1], calibration=fast).time_ms[0])


def test_without_an_add_norm_chain_a_model_charges_its_kernels_launches():
    base = {"mamba2/prefill": 1e-3, "attention-mha/prefill": 1e-3, "attention/prefill": 1e-3, "mlp/prefill": 1e-3}
    without = predict("mamba2-hybrid-8b", "prefill", [1], [1], calibration=_with_hosts(base, base)).time_ms[0]
    tiny = predict("mamba2-hybrid-8b", "prefill", [1], [1],
                   calibration=_with_hosts(base, {**base, "add_norm/prefill": 1e-9})).time_ms[0]
    assert without > tiny  # the per-kernel launch cost, replaced by the (tiny) measured chain


def test_a_built_in_model_timed_whole_takes_its_own_chain():
    base = {"mamba2/prefill": 1e-3, "attention-mha/prefill": 1e-3, "attention/prefill": 1e-3, "mlp/prefill": 1e-3,
            "add_norm/prefill": 1e-3}
    cal = _with_hosts({"mamba2-8b/prefill": 0.25}, {**base, "mamba2-8b/prefill": 0.3})
    # One token: host-bound, and the whole-model window (as a point is timed) is the chain.
    assert predict("mamba2-8b", "prefill", [1], [1], calibration=cal).time_ms[0] == pytest.approx(250.0)
    # Another model keeps the sum of its pieces: 56 blocks + the final norm here.
    hybrid = predict("mamba2-hybrid-8b", "prefill", [1], [1], calibration=cal).time_ms[0]
    assert hybrid == pytest.approx((56 + 57) * 1.0, rel=0.02)


def test_a_model_on_another_python_path_does_not_borrow_a_built_in_chain():
    from models.registry import BUILTIN_MODELS

    base = {"mamba2/prefill": 1e-3, "add_norm/prefill": 1e-3}
    cal = _with_hosts({"mamba2-8b/prefill": 0.25}, {**base, "mamba2-8b/prefill": 0.3})
    shallow = dataclasses.replace(BUILTIN_MODELS["mamba2-8b"], pattern="M" * 8)  # same name, 8 blocks
    t = predict(shallow, "prefill", [1], [1], calibration=cal).time_ms[0]
    assert t == pytest.approx((8 + 9) * 1.0, rel=0.02)
    # A context-length variant runs the paper model's Python: it takes the calibrated chain.
    assert predict("mamba2-8b-32k", "prefill", [1], [1], calibration=cal).time_ms[0] == pytest.approx(250.0)


def test_graph_decode_ignores_the_host_chain():
    a = predict("mlp", "decode", [1], [512], calibration=_with_hosts({"mlp/decode": 5e-3}, {}))
    b = predict("mlp", "decode", [1], [512], calibration=_with_hosts({"mlp/decode": 1e-6}, {}))
    assert a.time_ms[0] == b.time_ms[0]


def test_flash_splits_stop_once_batch_times_heads_fills_the_slots():
    # 132 SMs -> 264 slots; 0.8 of that is 211 CTAs.
    assert flash_num_splits(np.array([212.0]), np.array([64.0]), 132)[0] == 1
    assert flash_num_splits(np.array([211.0]), np.array([64.0]), 132)[0] > 1


@pytest.mark.parametrize("ctas, blocks, expected", [
    (8, 33, 33),    # GQA B=1 at 4K: 33 splits of one 128-key block (traced: 264 CTAs, then a combine)
    (32, 33, 33),   # MHA B=1 at 4K
    (32, 25, 7),    # MHA B=1 at 3K: 6 splits would reach the efficiency bar but keep 5 blocks per split
    (8, 257, 29),   # GQA B=1 at 32K
    (32, 257, 8),   # MHA B=1 at 32K
    (128, 257, 2),  # MHA B=4 at 32K
    (8, 3, 3),
])
def test_flash_splits_follow_the_flash_attention_heuristic(ctas, blocks, expected):
    """Worked by hand from flash_api.cpp's num_splits_heuristic (85 % of the best wave efficiency,
    only split counts that change the blocks per split)."""
    assert flash_num_splits(np.array([float(ctas)]), np.array([float(blocks)]), 132)[0] == expected


def test_flash_splits_never_exceed_the_key_blocks():
    blocks = np.array([0.5, 1.0, 2.0, 3.0, 100.0, 5000.0])
    splits = flash_num_splits(np.full(6, 8.0), blocks, 132)
    assert (splits <= np.maximum(np.ceil(blocks), 1.0)).all()
    assert (splits <= np.maximum(blocks, 1.0)).all()
    assert (splits <= 128).all()
    assert (np.diff(splits) >= 0).all()
