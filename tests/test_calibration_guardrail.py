"""Guardrail: each bundled calibration file equals its own refit from the raw samples it stores.

A change to a fitting formula (analytic/fit.py, the attention, write-back or step fits) that is not
followed by `perfbench calibrate --refit` of the bundled files fails here, so the files never hold
fits that the code would no longer produce.
"""

from __future__ import annotations

import math

import pytest

from analytic.calibration import bundled_path, read_calibration_data

from perfbench.calibration.run import fit_calibration


def _differences(stored, refit, path="") -> list[str]:
    """Leaves that differ beyond 1e-9 relative (numbers) or at all (anything else)."""
    if isinstance(stored, dict) and isinstance(refit, dict):
        out = [f"{path}/{k}: only in one" for k in sorted(set(stored) ^ set(refit), key=str)]
        for key in sorted(set(stored) & set(refit), key=str):
            out += _differences(stored[key], refit[key], f"{path}/{key}")
        return out
    if isinstance(stored, list) and isinstance(refit, list):
        if len(stored) != len(refit):
            return [f"{path}: {len(stored)} vs {len(refit)} items"]
        return [d for i, (a, b) in enumerate(zip(stored, refit)) for d in _differences(a, b, f"{path}[{i}]")]
    if isinstance(stored, (int, float)) and isinstance(refit, (int, float)) \
            and not isinstance(stored, bool) and not isinstance(refit, bool):
        same = math.isclose(stored, refit, rel_tol=1e-9, abs_tol=1e-15) or (math.isnan(stored) and math.isnan(refit))
        return [] if same else [f"{path}: stored {stored!r}, refit {refit!r}"]
    return [] if stored == refit else [f"{path}: stored {stored!r}, refit {refit!r}"]


@pytest.mark.parametrize("gpu", ["h100", "h200"])
def test_bundled_calibration_equals_its_refit_from_its_samples(gpu):
    stored = read_calibration_data(bundled_path(gpu))
    refit = fit_calibration(stored, log=lambda *args: None)
    differences = _differences(stored, refit)
    assert not differences, f"{gpu}: run `perfbench calibrate --refit` on the bundled file:\n" + "\n".join(differences[:20])


def test_the_comparison_sees_a_changed_fit():
    assert _differences({"op_classes": {"gemm": {"bw": 1.0}}}, {"op_classes": {"gemm": {"bw": 1.01}}})
