"""The GEMM model over (M, N, K): measured shapes reproduced, unseen ones between their measured
neighbours, monotone in work, never faster than the measured ceilings; provenance per M."""

import numpy as np
import pytest

from analytic.calibration import default_calibration
from analytic.efficiency import ceilings
from analytic.gemm_model import (CALIBRATED, DATASHEET, EXTRAPOLATED, INTERPOLATED, GemmPhysics, build_gemm_model,
                                 gemm_bytes, gemm_op_provenance, gemm_provenance)
from analytic.hardware import get_gpu
from analytic.ops import gemm

SMS = 132
PEAK_FLOPS, COPY_BW = 700e12, 3.0e12
MS = tuple(float(2 ** e) for e in range(0, 17, 2))
NS, KS = (1024, 4096, 16384), (512, 4096, 16384)


def synthetic_samples(ns=NS, ks=KS, ms=MS):
    """A grid timed by a known tile/wave physics: what a GPU would measure, without the noise."""
    truth = GemmPhysics(0.9 * PEAK_FLOPS, 0.9 * COPY_BW, SMS, 3e-6, 128.0, 4.0)
    return tuple((m, n, k, float(truth.time_s(m, n, k))) for n in ns for k in ks for m in ms)


@pytest.fixture(scope="module")
def synthetic():
    return build_gemm_model(synthetic_samples(), SMS, PEAK_FLOPS, COPY_BW)


@pytest.fixture(scope="module", params=["h100", "h200"])
def bundled(request):
    cal = default_calibration(request.param)
    return build_gemm_model(cal.gemm, SMS, cal.gemm_peak_flops, cal.copy_bandwidth_bytes_s)


def test_measured_shapes_reproduce_their_samples(synthetic):
    # Up to M = 256 none of these runs 4 waves: no sample is cleaned as steady (steady_gemm_times).
    for m, n, k, t in synthetic_samples(ms=tuple(m for m in MS if m <= 256)):
        assert synthetic.time_s(np.array([m]), n, k)[0] == pytest.approx(t, rel=1e-9)


def test_bundled_measured_shapes_reproduce_their_cleaned_tables(bundled):
    for (n, k), (log_m, log_t) in bundled.tables.items():
        assert np.allclose(np.log(bundled.time_s(np.exp(log_m), n, k)), log_t, atol=1e-9)


@pytest.mark.parametrize("n, k, below, above", [
    (2048, 4096, (1024, 4096), (4096, 4096)),  # between two measured N
    (4096, 1536, (4096, 512), (4096, 4096)),  # between two measured K
    (8192, 8192, (4096, 4096), (16384, 16384)),  # between in both
])
def test_a_shape_between_two_measured_ones_predicts_between_them(synthetic, n, k, below, above):
    m = np.array(MS)
    t = synthetic.time_s(m, n, k)
    assert (synthetic.time_s(m, *below) <= t).all() and (t <= synthetic.time_s(m, *above)).all()
    assert (synthetic.time_s(m, *below) < t).any() and (t < synthetic.time_s(m, *above)).any()


def test_interpolation_inside_the_grid_follows_the_physics(synthetic):
    """Between measured neighbours the physics interpolates: on a noise-free physics grid an unseen shape
    comes within a few per cent of the physics itself (a plain N x K scaling is off by up to 2x here)."""
    truth = GemmPhysics(0.9 * PEAK_FLOPS, 0.9 * COPY_BW, SMS, 3e-6, 128.0, 4.0)
    m = np.array(MS)
    for n, k in ((2048, 2048), (6144, 1024), (12288, 8192)):
        assert np.allclose(synthetic.time_s(m, n, k), truth.time_s(m, n, k), rtol=0.1)


def test_time_is_monotone_in_work_inside_the_measured_grid(bundled):
    ms = np.geomspace(1, 1 << 18, 37)
    ns = np.unique(np.round(np.geomspace(bundled.grid_n[0], bundled.grid_n[-1], 25)))
    ks = np.unique(np.round(np.geomspace(bundled.grid_k[0], bundled.grid_k[-1], 25)))
    log_t = np.log([[bundled.time_s(ms, n, k) for k in ks] for n in ns])  # N x K x M
    for axis in (0, 1, 2):
        assert (np.diff(log_t, axis=axis) >= -1e-12).all()  # rounding of the interpolation weights


def test_time_never_falls_as_m_grows_for_any_shape(bundled):
    ms = np.geomspace(1, 1 << 22, 89)
    for n, k in ((16, 4096), (96, 2560), (4096, 16), (300000, 8192), (9216, 4096)):
        assert (np.diff(np.log(bundled.time_s(ms, n, k))) >= -1e-12).all()


def test_prediction_never_runs_faster_than_the_measured_ceilings(bundled):
    rng = np.random.default_rng(0)
    for _ in range(50):
        n, k = (int(x) for x in np.exp(rng.uniform(np.log(16), np.log(300000), 2)))
        m = np.exp(rng.uniform(0, np.log(1 << 20), 16))
        t = bundled.time_s(m, n, k)
        assert (2 * m * n * k / t <= bundled.peak_flops * (1 + 1e-9)).all()
        assert (gemm_bytes(m, n, k) / t <= bundled.peak_bw_bytes_s * (1 + 1e-9)).all()


def test_an_unseen_shape_lies_between_the_measured_shapes_it_contains_and_that_contain_it(bundled):
    m = np.geomspace(1, 65536, 17)
    lo, hi = bundled.dominance_bounds(m, 9216, 4096)
    t = bundled.time_s(m, 9216, 4096)
    assert (lo > 0).all() and np.isfinite(hi).all()
    assert (lo <= t * (1 + 1e-9)).all() and (t <= hi * (1 + 1e-9)).all()


def test_slower_kernel_of_a_smaller_measured_shape_raises_the_bigger_one():
    """Data not monotone in work (cuBLAS picked a slower kernel for the smaller problem): the bigger
    shape takes the smaller one's time, since it could have run that way."""
    samples = synthetic_samples(ns=(1024, 2048), ks=(1024,), ms=(1.0, 2.0))
    slow = tuple((m, n, k, 2 * t if n == 1024 else t) for m, n, k, t in samples)
    model = build_gemm_model(slow, SMS, PEAK_FLOPS, COPY_BW)
    assert (model.time_s(np.array([1.0, 2.0]), 2048, 1024) >= model.time_s(np.array([1.0, 2.0]), 1024, 1024)).all()


def test_provenance_says_where_a_gemm_stands_against_the_grid(synthetic):
    m = np.array([16.0, 100.0, 1 << 20])
    assert list(gemm_provenance(m, 4096, 4096, synthetic)) == [CALIBRATED, INTERPOLATED, EXTRAPOLATED]
    assert list(gemm_provenance(m[:2], 2048, 1024, synthetic)) == [INTERPOLATED, INTERPOLATED]
    assert gemm_provenance(np.array([4.0]), 65536, 4096, synthetic)[0] == EXTRAPOLATED  # wider than any measured
    assert gemm_provenance(np.array([4.0]), 4096, 64, synthetic)[0] == EXTRAPOLATED  # shorter K than any measured
    assert list(gemm_provenance(m, 4096, 4096, None)) == [DATASHEET] * 3


def test_a_calibration_without_a_grid_has_no_gemm_model():
    assert build_gemm_model(((1.0, 4096, 4096, 1e-5),), SMS, PEAK_FLOPS, COPY_BW) is None


def test_a_gemm_ops_provenance_follows_the_calibration_it_is_predicted_with():
    op = gemm("fc1", np.array([64.0, 100.0, 1 << 20]), 16384, 4096)
    calibrated = ceilings(get_gpu("h100"), default_calibration("h100"))
    assert list(gemm_op_provenance(op, calibrated.gemm_model)) == [CALIBRATED, INTERPOLATED, EXTRAPOLATED]
    assert list(gemm_op_provenance(op, ceilings(get_gpu("h100"), None).gemm_model)) == [DATASHEET] * 3
