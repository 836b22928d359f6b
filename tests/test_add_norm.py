"""The models' fused residual add + norm as its own kernel family: calibrated cold at decode sizes."""

from __future__ import annotations

import numpy as np
import pytest

from analytic.calibration import bundled_path, load_calibration
from analytic.composition import step_ops
from analytic.efficiency import ceilings, op_ceiling, op_time
from analytic.fit import sample_ops
from analytic.hardware import get_gpu
from analytic.ops import ADD_NORM, ELEMENTWISE
from models.registry import get_model
from perfbench.calibration.kernels import KERNEL_FAMILIES
from perfbench.calibration.run import check_kernel_families


def _norms(model: str, batch: float):
    ops = step_ops("model", get_model(model), "decode", np.array([batch]), np.array([2000.0]))
    return [c for c in ops if c.op.name.startswith(("add_", "final_add_"))]


def test_every_block_norm_and_the_final_one_are_the_family():
    norms = _norms("mamba2-hybrid-8b", 1.0)
    assert sum(c.count for c in norms) == len(get_model("mamba2-hybrid-8b").pattern) + 1
    assert all(c.op.shape["family"] == ADD_NORM and c.op.op_class == ELEMENTWISE for c in norms)
    # calibrated with its inputs out of L2, so the step adds no cold-kernel cost on top
    assert all(not c.op.shape.get("cold_kernels") for c in norms)


@pytest.mark.parametrize("gpu", ["h100", "h200"])
def test_bundled_norm_is_latency_bound_at_decode_and_memory_bound_at_prefill(gpu):
    ceil = ceilings(get_gpu(gpu), load_calibration(bundled_path(gpu), gpu))
    norm = _norms("mamba-8b", 1.0)[0].op
    assert op_ceiling(norm, ceil) is ceil.classes[ADD_NORM]
    one = float(op_time(norm, ceil)[0][0])
    assert 2e-6 < one < 8e-6  # a few us for 8 KB: HBM latency, not bandwidth (H200 step trace: 4.4 us)
    copy = float(norm.bytes_[0]) / ceil.copy_bw_bytes_s
    assert one > 5 * copy
    rows = np.array([1.0, 64.0, 4096.0, 65536.0])
    big = step_ops("model", get_model("mamba-8b"), "prefill", np.ones(4), rows)
    t = op_time(next(c.op for c in big if c.op.name.startswith("add_")), ceil)[0]
    assert np.all(np.diff(t) > 0) and t[-1] < 4 * float(2 * 65536 * 4096 * 2 * 2) / ceil.copy_bw_bytes_s


def test_raw_samples_name_their_family_and_it_can_be_remeasured():
    sample = {"class": ELEMENTWISE, "family": ADD_NORM, "name": "add_rmsnorm", "flops": 1.0, "bytes": 16384.0,
              "kernels": 1, "time_s": 4e-6}
    assert sample_ops(sample)[0].shape == {"family": ADD_NORM}
    assert "add_norm" in KERNEL_FAMILIES
    check_kernel_families(["add_norm"])  # a known family: no error
