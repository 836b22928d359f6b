"""Kernel families carried between GPUs with the same SMs (perfbench/calibration/transfer.py)."""

from __future__ import annotations

import pytest

from analytic.calibration import bundled_path, from_dict, read_calibration_data
from analytic.ops import MAMBA3_CHUNK
from perfbench.calibration.run import fit_calibration
from perfbench.calibration.transfer import SECTION, transferred_classes, with_transferred
from perfbench.errors import PerfbenchError


@pytest.fixture(scope="module")
def h100():
    return read_calibration_data(bundled_path("h100"))


def _without_new_mixers(data: dict) -> dict:
    samples = {k: v for k, v in data["samples"].items() if not k.startswith(("mamba3", "gdn"))}
    return {**data, "samples": samples}


def test_a_family_measured_on_one_gpu_carries_its_sm_terms_and_scales_its_bytes(h100):
    h200 = _without_new_mixers(read_calibration_data(bundled_path("h200")))
    out = transferred_classes(h200, h100, "h100.json.gz")
    there, here = h100["op_classes"][MAMBA3_CHUNK], out[SECTION][MAMBA3_CHUNK]
    ratio = h200["copy_bandwidth_bytes_s"] / h100["copy_bandwidth_bytes_s"]
    assert here["bw_bytes_s"] == pytest.approx(there["bw_bytes_s"] * ratio) and ratio > 1.2
    assert {k: v for k, v in here.items() if k != "bw_bytes_s"} == {k: v for k, v in there.items() if k != "bw_bytes_s"}
    assert out["provenance"][SECTION]["gpu"] == "h100"


def test_a_family_measured_here_wins_over_a_carried_one():
    classes = with_transferred({MAMBA3_CHUNK: {"t0_s": 1.0}}, {SECTION: {MAMBA3_CHUNK: {"t0_s": 2.0}, "x": {"t0_s": 3.0}}})
    assert classes == {MAMBA3_CHUNK: {"t0_s": 1.0}, "x": {"t0_s": 3.0}}


def test_carried_families_survive_a_refit_and_validate(h100):
    h200 = _without_new_mixers(read_calibration_data(bundled_path("h200")))
    refit = fit_calibration(transferred_classes(h200, h100, "h100.json.gz"), log=lambda *_: None)
    cal = from_dict(refit, "h200")
    assert cal.op_classes[MAMBA3_CHUNK]["flops_s"] == pytest.approx(h100["op_classes"][MAMBA3_CHUNK]["flops_s"])


def test_gpus_with_other_sms_refuse_to_share_families(h100):
    a100 = {**h100, "gpu": "a100"}
    with pytest.raises(PerfbenchError, match="other SMs"):
        transferred_classes(a100, h100, "h100.json.gz")
