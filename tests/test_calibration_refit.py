"""The bundled calibration files are their own refit: every fitted figure follows from the stored samples,
so a change to a cost formula or a fit that moves them shows here (refit the files with
`perfbench calibrate --refit FILE --out FILE`)."""

from __future__ import annotations

import math

import pytest

from analytic.calibration import bundled_path, read_calibration_data
from perfbench.calibration.run import fit_calibration

FITTED_SECTIONS = ("op_classes", "writeback", "step")


def _close(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)
    return a == b


@pytest.fixture(scope="module", params=["h100", "h200"])
def bundled_and_refit(request):
    data = read_calibration_data(bundled_path(request.param))
    return data, fit_calibration(data, log=lambda *_: None)


@pytest.mark.parametrize("section", FITTED_SECTIONS)
def test_a_bundled_files_fitted_section_equals_its_refit(bundled_and_refit, section):
    data, refit = bundled_and_refit
    assert _close(refit.get(section), data.get(section)), section
