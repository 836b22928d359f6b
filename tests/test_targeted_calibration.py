"""Targeted calibration (`perfbench calibrate --model NAME`) on a CPU: the GEMM shapes a model's ops use,
the M each is timed at, the kernel families asked for its configurations, and the file it writes; and
the default GEMM grid spanning the design space within its share of the calibration's time."""

from __future__ import annotations

import inspect
import json
from types import SimpleNamespace

import numpy as np
import pytest

from analytic.calibration import bundled_path, from_dict, read_calibration_data
from analytic.gemm_model import EXTRAPOLATED, build_gemm_model
from models.registry import Target
from perfbench.calibration import gemm as gemm_grid
from perfbench.calibration.targeted import (TARGET_DECODE_M, TARGET_PREFILL_M, kernel_configurations,
                                            measure_kernel_configurations, model_gemm_shapes, targeted_points,
                                            with_targeted_samples)
from perfbench.commands.selection import resolve_targets

GEMM_SHARE_S = 8 * 60  # the GEMM grid's share of a 20-minute H100 calibration


def hand_derived_shapes(model) -> set[tuple[int, int]]:
    """(N, K) of every projection, from the papers' layer definitions (weights K x N)."""
    d = model.d_model
    shapes = {(model.vocab_size, d)}  # LM head
    for layer in model.layers:
        if layer.kind == "mamba2":  # in_proj -> [z, x, B, C, dt]; out_proj from d_inner
            di = layer.expand * d
            shapes |= {(2 * di + 2 * layer.ngroups * layer.d_state + di // layer.headdim, d), (d, di)}
        elif layer.kind == "mamba":  # in_proj -> [x, z]; x_proj -> [dt, B, C]; dt_proj from dt_rank
            di = layer.expand * d
            shapes |= {(2 * di, d), (layer.dt_rank + 2 * layer.d_state, di), (di, layer.dt_rank), (d, di)}
        elif layer.kind == "attention":
            hd = layer.head_dim
            shapes |= {((layer.n_heads + 2 * layer.n_kv_heads) * hd, d), (d, layer.n_heads * hd)}
        elif layer.kind == "mlp":
            shapes |= {((2 if layer.gated else 1) * layer.ffn_hidden, d), (d, layer.ffn_hidden)}
    return shapes


@pytest.mark.parametrize("name, sets", [
    ("mamba2-hybrid-8b", []),
    ("mamba-8b", []),
    ("transformer-8b", []),
    ("mamba2-hybrid-8b", ["d_model=2560", "vocab_size=50280"]),
    ("mamba-8b", ["d_model=2048", "mamba.d_state=16"]),
    ("transformer-8b", ["d_model=3072", "mlp.ffn_hidden=8192", "mlp.gated=true", "attention.n_kv_heads=4"]),
])
def test_targeted_calibration_lists_exactly_the_shapes_a_models_ops_use(name, sets):
    targets = resolve_targets(model=name, sets=sets)
    listed = {(use.n, use.k) for use in model_gemm_shapes(targets)}
    assert listed == hand_derived_shapes(targets[0].spec)


def test_a_layer_target_lists_only_its_own_projections():
    targets = resolve_targets(layer="mlp")
    assert {(use.n, use.k) for use in model_gemm_shapes(targets)} == {(16384, 4096), (4096, 16384)}


def test_the_lm_head_is_timed_at_decode_rows_and_the_layers_over_both_phases():
    targets = resolve_targets(model="mamba2-8b")
    points = targeted_points(targets)
    head = {m for m, n, _k in points if n == 256000}
    layer = {m for m, n, k in points if (n, k) == (18560, 4096)}
    assert head == set(TARGET_DECODE_M)
    assert layer == set(TARGET_DECODE_M) | set(TARGET_PREFILL_M)


def test_targeted_gemms_of_an_8b_hybrid_fit_in_a_minute_of_the_three():
    """The estimate from the timing protocol (a rest and a capped stretch per compute-bound sample), at
    the times the bundled H100 calibration predicts: the GEMMs leave two minutes to the kernel families."""
    seconds = gemm_grid.estimated_section_seconds(targeted_points(resolve_targets(model="mamba2-hybrid-8b")), "h100")
    assert 0 < seconds < 60


def _family(kinds, takes_specs: bool, calls: list):
    def plan():
        return [{"spec": SimpleNamespace(kind=kind)} for kind in kinds]
    if takes_specs:
        def measure(bench, specs=None):
            calls.append(specs)
    else:
        def measure(bench):
            calls.append("all")
    return SimpleNamespace(plan=plan, measure=measure)


def test_each_kernel_family_is_asked_once_for_the_targets_configurations_of_its_kind():
    calls: list = []
    families = {"ssd_shapes": _family(["mamba2"], True, calls), "scan_shapes": _family(["mamba"], True, calls),
                "attention_shapes": _family(["attention"], False, calls), "rope": SimpleNamespace(measure=None)}
    targets = resolve_targets(model="mamba2-hybrid-8b")
    configurations = kernel_configurations(targets, families)
    assert set(configurations) == {"ssd_shapes", "attention_shapes"}  # no Mamba-1 layer, rope has no plan
    assert configurations["ssd_shapes"] == (targets[0].spec.mamba2,)
    skipped = measure_kernel_configurations(None, configurations, families, log=lambda *_: None)
    assert calls == [(targets[0].spec.mamba2,)]  # one call, with the model's spec
    assert skipped == ["attention_shapes"]  # its benchmark takes no configurations: named, not run


def test_a_targeted_file_is_the_bundled_one_plus_the_new_samples_and_round_trips(tmp_path):
    base = read_calibration_data(bundled_path("h100"))
    targets = resolve_targets(model="mamba2-8b")
    fresh = [{"m": 64, "n": 18560, "k": 4096, "time_s": 1e-5}, {"m": 3, "n": 2560, "k": 5120, "time_s": 2e-5}]
    data = with_targeted_samples(base, fresh, {"ssd_shapes": [{"time_s": 1.0}]}, targets, "2026-12-07T05:00:00Z")
    keys = [(g["m"], g["n"], g["k"]) for g in data["gemm"]]
    assert len(keys) == len(set(keys)) == len(base["gemm"]) + 1  # one replaced, one added
    assert {"m": 64, "n": 18560, "k": 4096, "time_s": 1e-5} in data["gemm"]
    assert data["samples"]["ssd_shapes"] == base["samples"].get("ssd_shapes", []) + [{"time_s": 1.0}]
    assert data["provenance"]["targeted"]["targets"] == ["mamba2-8b"]
    path = tmp_path / "h100-mamba2.json"
    path.write_text(json.dumps(data))
    cal = from_dict(read_calibration_data(path), str(path))
    assert (64.0, 18560, 4096, 1e-5) in cal.gemm
    assert cal.gemm_peak_flops == pytest.approx(gemm_grid.gemm_peak(data["gemm"]))


def test_the_design_grid_holds_every_gemm_of_models_across_the_design_space():
    """Models from d_model 1024 to 8192, FFN up to 6x, gated, SSM inner dims and vocabularies 32K-256K:
    each GEMM inside the grid's measured hull (interpolated, never extrapolated) over M 1-64K."""
    grid = [(m, n, k, 1e-5 * (1 + m * n * k / 1e12)) for m, n, k in gemm_grid.grid_points()]
    model = build_gemm_model(tuple(grid), 132, 7e14, 3e12)
    cases = [("mamba2-hybrid-8b", ["d_model=1024", "vocab_size=32000"]),
             ("mamba2-hybrid-8b", ["d_model=8192", "vocab_size=256000"]),
             ("mamba-8b", ["d_model=1024", "mamba.d_state=16"]),
             ("mamba-8b", ["d_model=8192", "mamba.d_state=256"]),
             ("transformer-8b", ["d_model=2560", "mlp.ffn_hidden=15360", "mlp.gated=true", "vocab_size=131072"]),
             ("transformer-8b", ["d_model=8192", "mlp.ffn_hidden=49152"])]
    for name, sets in cases:
        for use in model_gemm_shapes(resolve_targets(model=name, sets=sets)):
            ms = np.array(TARGET_DECODE_M if use.lm_head else TARGET_DECODE_M + TARGET_PREFILL_M, dtype=float)
            assert (model.provenance(ms, use.n, use.k) != EXTRAPOLATED).all(), (name, sets, use)


def test_the_default_gemm_grid_fits_its_share_of_a_twenty_minute_calibration():
    seconds = gemm_grid.estimated_section_seconds(gemm_grid.grid_points(), "h100")
    assert gemm_grid.estimated_section_seconds(gemm_grid.paper_grid(), "h100") < seconds < GEMM_SHARE_S


def test_the_default_grid_keeps_every_shape_calibrations_measured_before():
    assert set(gemm_grid.paper_grid()) <= set(gemm_grid.grid_points())
    base = read_calibration_data(bundled_path("h100"))
    assert {(int(g["m"]), g["n"], g["k"]) for g in base["gemm"]} <= set(gemm_grid.grid_points())


def test_targeted_calibration_runs_through_calibrate_with_its_targets():
    from perfbench.calibration.run import calibrate

    assert "targets" in inspect.signature(calibrate).parameters
    assert isinstance(resolve_targets(model="mamba2-hybrid-8b")[0], Target)


def test_calibrate_for_an_unknown_model_is_one_line_and_touches_no_gpu():
    from typer.testing import CliRunner

    from models.specs import SpecError
    from perfbench.cli import app

    result = CliRunner().invoke(app, ["calibrate", "--model", "no-such-model"])
    assert isinstance(result.exception, SpecError) and "\n" not in str(result.exception)


def test_every_shape_family_plans_exactly_the_configurations_it_is_given():
    from perfbench.calibration.kernels import FAMILIES
    from perfbench.calibration.targeted import takes_specs

    targets = resolve_targets(model="mamba2-hybrid-8b", sets=["d_model=2560", "mamba2.d_state=64"])
    configurations = kernel_configurations(targets, FAMILIES)
    assert set(configurations) == {"ssd_shapes", "state_update_shapes", "conv1d_shapes", "attention_prefill_shapes",
                                   "attention_decode_shapes"}
    for name, specs in configurations.items():
        assert takes_specs(FAMILIES[name])
        assert {stub["spec"] for stub in FAMILIES[name].plan(specs=specs)} == set(specs)


def test_a_targeted_hybrid_calibration_is_estimated_within_three_minutes_on_the_h100():
    from perfbench.calibration.kernels import FAMILIES
    from perfbench.calibration.targeted import estimated_seconds

    estimate = estimated_seconds(resolve_targets(model="mamba2-hybrid-8b"), "h100", FAMILIES)
    assert {"gemm", "ssd_shapes", "attention_decode_shapes"} <= set(estimate)
    assert 0 < estimate["total"] < 180
