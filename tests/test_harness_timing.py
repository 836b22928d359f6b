"""The timing loop: quantiles, adaptive repeats, warm-up outside the numbers."""

from __future__ import annotations

import numpy as np
import pytest

from perfbench.measure.timing import Timing, TimingOptions, choose_repeats, measure, quantile


def test_quantile_matches_numpy_linear():
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0]
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert quantile(values, q) == pytest.approx(np.quantile(values, q))


def test_timing_summary():
    timing = Timing(times_ms=(1.0, 2.0, 3.0, 4.0, 100.0), first_call_ms=50.0)
    assert timing.median_ms == 3.0 and timing.n == 5
    assert timing.p10_ms < timing.median_ms < timing.p90_ms
    assert timing.mean_ms == pytest.approx(22.0)


@pytest.mark.parametrize("estimate_s,expected", [(1.0, 5), (0.01, 20), (1e-6, 200), (0.0, 200)])
def test_repeats_adapt_to_the_time_budget(estimate_s, expected):
    options = TimingOptions(min_repeats=5, max_repeats=200, target_s=0.2)
    assert choose_repeats(estimate_s, options) == expected


def test_measure_makes_first_call_warmups_and_timed_calls():
    calls = []
    options = TimingOptions(warmup=2, min_repeats=4, max_repeats=4, target_s=10.0, nvtx=False)
    timing = measure(lambda: calls.append(1), options, cuda=False)
    assert timing.n == 4
    assert len(calls) == 1 + 2 + 4
    assert all(t >= 0 for t in timing.times_ms)


def test_warmup_stops_early_when_calls_are_slow():
    import time

    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.02)

    options = TimingOptions(warmup=10, min_repeats=2, max_repeats=2, target_s=0.03, nvtx=False)
    measure(slow, options, cuda=False)
    assert len(calls) < 1 + 10 + 2


def test_flush_runs_before_every_timed_call_when_asked():
    flushes = []
    options = TimingOptions(warmup=1, min_repeats=3, max_repeats=3, l2_flush=True, nvtx=False)
    measure(lambda: None, options, cuda=False, flush=lambda: flushes.append(1))
    assert len(flushes) == 3


def test_warmup_zero_uses_the_first_call_as_the_only_warmup():
    calls = []
    options = TimingOptions(warmup=0, min_repeats=3, max_repeats=3, nvtx=False)
    measure(lambda: calls.append(1), options, cuda=False)
    assert len(calls) == 1 + 3


def test_rest_comes_once_before_the_first_call(monkeypatch):
    """A point rests (so the power limiter forgets the point before) once, before any call of it."""
    import perfbench.measure.timing as timing_module

    events = []
    monkeypatch.setattr(timing_module.time, "sleep", lambda s: events.append(("sleep", s)))
    options = TimingOptions(warmup=1, min_repeats=2, max_repeats=2, nvtx=False, rest_s=0.3)
    measure(lambda: events.append(("call", None)), options, cuda=False)
    assert events[0] == ("sleep", 0.3)
    assert [e for e in events if e[0] == "sleep"] == [("sleep", 0.3)]
    assert len(events) == 1 + 1 + 1 + 2


def test_no_rest_by_default(monkeypatch):
    import perfbench.measure.timing as timing_module

    slept = []
    monkeypatch.setattr(timing_module.time, "sleep", lambda s: slept.append(s))
    measure(lambda: None, TimingOptions(warmup=0, min_repeats=1, max_repeats=1, nvtx=False), cuda=False)
    assert slept == []
