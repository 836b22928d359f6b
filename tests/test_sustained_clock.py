"""The sustained-clock term: a long point's timed calls come seconds into it, when the board has
heated at its power limit; only power-limited work slows (analytic.efficiency.sustained_s)."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

from analytic.calibration import CalibrationError, bundled_path, from_dict, read_calibration_data
from analytic.efficiency import (RUN_MAX_REPEATS, RUN_MIN_REPEATS, RUN_TARGET_S, RUN_WARMUP, ceilings,
                                 median_call_elapsed_s, sustained_slowdown)
from analytic.hardware import get_gpu
from analytic.predict import breakdown, predict
from perfbench.calibration.sustained import fit_sustained

CURVE = {"elapsed_s": [0.45, 1.25, 3.25, 7.0], "slowdown": [1.0, 1.03, 1.05, 1.08]}


def _h100(sustained=CURVE):
    data = read_calibration_data(bundled_path("h100"))
    data = {k: v for k, v in data.items() if k != "sustained"}
    return from_dict({**data, **({"sustained": sustained} if sustained else {})}, "test")


def test_the_protocol_constants_are_perfbench_runs_defaults():
    from perfbench.commands.run import run_command

    # typer.Option defaults (the shared selection options are Annotated, their defaults plain None)
    defaults = {name: p.default.default for name, p in inspect.signature(run_command).parameters.items()
                if hasattr(p.default, "default")}
    assert defaults["target_ms"] / 1e3 == RUN_TARGET_S and defaults["warmup"] == RUN_WARMUP
    assert defaults["repeats"] == RUN_MIN_REPEATS and defaults["max_repeats"] == RUN_MAX_REPEATS


def test_the_median_call_comes_later_the_longer_a_call_is():
    """perfbench.measure.timing.measure: short calls fill the 0.2 s target, long ones run 1 + 1 warm-up + 5."""
    elapsed = median_call_elapsed_s(np.array([1e-3, 0.01, 0.05, 0.2, 1.0]))
    assert np.all(np.diff(elapsed) > 0)
    assert elapsed[0] == pytest.approx(1e-3 * (1 + 2 + 100))  # 200 repeats, the median at 100
    assert elapsed[-1] == pytest.approx(1.0 * (1 + 1 + 2.5))


def test_short_points_keep_the_calibrated_clock_and_long_ones_lose_up_to_the_curves_end():
    ceil = ceilings(get_gpu("h100"), _h100())
    slow = sustained_slowdown(np.array([1e-3, 0.02, 0.3, 1.0, 5.0]), ceil)
    assert slow[0] == slow[1] == 1.0
    assert np.all(np.diff(slow) >= 0) and slow[-1] == pytest.approx(1.08)
    assert np.all(sustained_slowdown(np.array([0.5, 5.0]), ceilings(get_gpu("h100"), _h100(None))) == 1.0)


def test_only_power_limited_work_slows():
    """A long MLP prefill (GEMMs at the limit) slows by nearly the curve's value at its median call; a
    long Mamba-1 prefill, mostly the selective scan below the limit, by much less; the per-op
    breakdown adds up to it."""
    with_curve, without = _h100(), _h100(None)
    big = dict(batch=[64], seqlen=[16384], gpu="h100")
    ratio, curve = {}, {}
    for layer in ("mlp", "mamba"):
        plain = predict(layer, "prefill", calibration=without, **big).time_ms.to_numpy() / 1e3
        ratio[layer] = float(predict(layer, "prefill", calibration=with_curve, **big).time_ms[0] / 1e3 / plain[0])
        curve[layer] = float(sustained_slowdown(plain, ceilings(get_gpu("h100"), with_curve))[0])
    assert curve["mlp"] > 1.02 and curve["mamba"] > 1.02  # both are long points
    assert 1 + 0.8 * (curve["mlp"] - 1) < ratio["mlp"] <= curve["mlp"]
    assert 1.0 < ratio["mamba"] < 1 + 0.5 * (curve["mamba"] - 1)
    parts = breakdown("mlp", "prefill", 64, 16384, gpu="h100", calibration=with_curve).time_ms.sum()
    assert parts == pytest.approx(float(predict("mlp", "prefill", calibration=with_curve, **big).time_ms[0]), rel=0.02)


def test_the_fit_is_relative_to_the_first_window_and_never_falls():
    elapsed = np.linspace(0.3, 7.9, 400)
    calls = 6e-3 * (1 + 0.01 * elapsed) + 2e-4 * np.sin(40 * elapsed)  # slower with time, plus noise
    fit = fit_sustained(list(elapsed), list(calls))
    assert fit["slowdown"][0] == 1.0 and np.all(np.diff(fit["slowdown"]) >= 0)
    assert fit["slowdown"][-1] == pytest.approx(1 + 0.01 * 7.0, abs=0.02)
    with pytest.raises(ValueError, match="fewer than two windows"):
        fit_sustained([0.4, 0.5], [1e-3, 1e-3])


@pytest.mark.parametrize("bad", [{"elapsed_s": [1.0], "slowdown": [1.0]},
                                 {"elapsed_s": [1.0, 0.5], "slowdown": [1.0, 1.1]},
                                 {"elapsed_s": [0.5, 1.0], "slowdown": [1.1, 1.0]},
                                 {"elapsed_s": [0.5, 1.0], "slowdown": [0.9, 1.0]},
                                 {"elapsed_s": [0.5, 1.0]}])
def test_a_bad_curve_is_a_one_line_error(bad):
    with pytest.raises(CalibrationError) as err:
        _h100(bad)
    assert "\n" not in str(err.value)


def test_the_curve_round_trips():
    cal = _h100()
    assert from_dict(cal.to_dict()).sustained == dataclasses.asdict(cal)["sustained"]
