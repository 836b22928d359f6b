"""A decode step whose working set fits in L2: the `l2_resident` section and the saving it gives."""

from __future__ import annotations

import json

import pytest

from analytic.calibration import CalibrationError, bundled_path, default_calibration, from_dict, read_calibration_data
from analytic.pipeline import step_time
from models.overrides import override_layer
from models.registry import get_layer
from perfbench.calibration.l2_resident import fit_l2_resident

MB = 1 << 20


def _samples(resident_up_to_mb: float = 32) -> list[dict]:
    """GEMVs that save 40 % of their cold time while W fits, nothing once it does not (a test curve)."""
    out = []
    for mb in (2, 4, 8, 16, 24, 32, 48, 64, 96):
        cold = 2e-6 + mb * MB / 3e12
        out.append({"bytes": float(mb * MB), "cold_s": cold, "warm_s": cold * (0.6 if mb <= resident_up_to_mb else 1.0)})
    return out


def _with_section(cal, samples):
    section = {"samples": samples, **fit_l2_resident(samples)}
    data = {**cal.to_dict(), "l2_resident": section}
    return from_dict(json.loads(json.dumps(data)))


@pytest.fixture(scope="module")
def h100():
    """The bundled H100 calibration without its measured section: every step priced cold."""
    data = default_calibration("h100").to_dict()
    data.pop("l2_resident", None)
    return from_dict(json.loads(json.dumps(data)))


def test_the_fit_marks_working_sets_that_stay_resident_and_those_that_thrash():
    resident = fit_l2_resident(_samples())["resident"]
    assert resident[:6] == pytest.approx([1.0] * 6) and resident[6:] == [0.0, 0.0, 0.0]


def test_a_paper_layers_step_is_too_big_to_stay_in_l2(h100):
    fits = _with_section(h100, _samples(resident_up_to_mb=64))  # the 8B Mamba-2 layer's step: ~170 MB
    assert step_time("mamba2", "decode", [2], [1024], calibration=fits).total_s[0] == pytest.approx(
        step_time("mamba2", "decode", [2], [1024], calibration=h100).total_s[0])


def test_a_step_under_the_resident_size_saves_and_one_over_it_does_not(h100):
    narrow = override_layer(get_layer("mamba2"), [("d_model", "1024")])  # a ~25 MB step at B=2
    fits = _with_section(h100, _samples(resident_up_to_mb=64))
    thrash = _with_section(h100, _samples(resident_up_to_mb=1))
    saved = step_time(narrow, "decode", [2], [1024], calibration=fits).total_s[0]
    kept = step_time(narrow, "decode", [2], [1024], calibration=thrash).total_s[0]
    plain = step_time(narrow, "decode", [2], [1024], calibration=h100).total_s[0]
    assert saved < plain and kept == pytest.approx(plain)


def test_the_bundled_h100_section_saves_on_a_small_step_only(h100):
    bundled = default_calibration("h100")
    narrow = override_layer(get_layer("mamba2"), [("d_model", "1024")])
    assert bundled.l2_resident  # measured 2026-12-07T22:10Z
    assert step_time(narrow, "decode", [2], [1024], calibration=bundled).total_s[0] < \
        step_time(narrow, "decode", [2], [1024], calibration=h100).total_s[0]
    assert step_time("mamba2", "decode", [2], [1024], calibration=bundled).total_s[0] == pytest.approx(
        step_time("mamba2", "decode", [2], [1024], calibration=h100).total_s[0])


def test_a_whole_model_streams_its_weights_and_saves_nothing(h100):
    fits = _with_section(h100, _samples(resident_up_to_mb=64))
    assert step_time("mamba2-8b", "decode", [2], [1024], calibration=fits).total_s[0] == pytest.approx(
        step_time("mamba2-8b", "decode", [2], [1024], calibration=h100).total_s[0])


def test_the_section_round_trips_and_a_bad_one_is_refused():
    data = read_calibration_data(bundled_path("h100"))
    section = {"samples": _samples(), **fit_l2_resident(_samples())}
    cal = from_dict({**data, "l2_resident": section})
    assert from_dict(json.loads(json.dumps(cal.to_dict()))).l2_resident == cal.l2_resident
    with pytest.raises(CalibrationError, match="l2_resident"):
        from_dict({**data, "l2_resident": {**section, "resident": [2.0] * len(_samples())}})
