"""Mamba-3 and Gated DeltaNet on the CPU: specs, pattern letters, built-in models, reference layers
(parameter and state sizes on the meta device, decode continuing a prefill), and the analytic FLOPs
against torch's FLOP counter on the reference layers."""

from __future__ import annotations

import numpy as np
import pytest

from analytic.costs import gdn as gdn_costs
from analytic.costs import mamba3 as mamba3_costs
from analytic.costs import layer_ops
from analytic.ops import CONV1D, GEMM
from models.registry import BUILTIN_MODELS, get_layer, get_model, load_models_toml
from models.specs import GatedDeltaNetSpec, Mamba3Spec, ModelSpec, SpecError, parse_pattern

SMALL = {
    "mamba3": Mamba3Spec(d_model=32, d_state=16, headdim=8, ngroups=1, chunk_size=8),
    "mamba3-groups": Mamba3Spec(d_model=32, d_state=16, headdim=8, ngroups=2, rope_fraction=1.0),
    "gdn": GatedDeltaNetSpec(d_model=32, n_k_heads=2, n_v_heads=4, head_k_dim=8, head_v_dim=8),
    "gdn-nogate": GatedDeltaNetSpec(d_model=32, n_k_heads=2, n_v_heads=2, head_k_dim=8, head_v_dim=16,
                                    output_gate=False, conv_bias=True),
}


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch


def _ref(torch, spec, device=None, dtype=None):
    from models.reference import build_reference_layer

    return build_reference_layer(spec, device=device, dtype=dtype)


# ----------------------------------------------------------------------------- specs


@pytest.mark.parametrize("kwargs", [{"rope_fraction": 0.25}, {"headdim": 48}, {"ngroups": 3},
                                    {"mimo_rank": 0}, {"d_state": 2, "rope_fraction": 0.5}])
def test_mamba3_spec_rejects_impossible_shapes(kwargs):
    with pytest.raises(SpecError):
        Mamba3Spec(d_model=64, **kwargs)


@pytest.mark.parametrize("kwargs", [{"n_v_heads": 24, "n_k_heads": 16}, {"chunk_size": 128}, {"head_k_dim": 0}])
def test_gdn_spec_rejects_impossible_shapes(kwargs):
    with pytest.raises(SpecError):
        GatedDeltaNetSpec(d_model=64, **kwargs)


def test_mamba3_rope_angles_follow_mamba_ssm_rounding():
    # mamba_ssm Mamba3: split = int(d_state * rope_fraction), made even, halved.
    assert Mamba3Spec(d_model=64, d_state=128).num_rope_angles == 32
    assert Mamba3Spec(d_model=64, d_state=128, rope_fraction=1.0).num_rope_angles == 64
    assert Mamba3Spec(d_model=64, d_state=6, rope_fraction=0.5).num_rope_angles == 1


def test_pattern_letters_3_and_G_name_the_new_mixers():
    assert parse_pattern("3G*-M") == ("mamba3", "gdn", "attention", "mlp", "mamba2")


def test_pattern_letter_E_stays_unknown():
    with pytest.raises(SpecError, match="3 Mamba-3, G Gated DeltaNet"):
        parse_pattern("M-E")


def test_mamba3_hybrid_keeps_the_paper_hybrid_order():
    paper, new = get_model("mamba2-hybrid-8b"), get_model("mamba3-hybrid-8b")
    assert new.pattern.replace("3", "M") == paper.pattern
    assert new.layer_mix == {"mamba3": 24, "mlp": 28, "attention": 4}


def test_gdn_hybrid_is_three_to_one_with_an_mlp_after_each_mixer():
    spec = get_model("gdn-hybrid-8b")
    assert spec.layer_mix == {"gdn": 21, "attention": 7, "mlp": 28}
    assert spec.pattern[1::2] == "-" * 28


def test_new_models_have_context_variants():
    assert BUILTIN_MODELS["gdn-hybrid-8b-32k"].max_seqlen == 32768


def test_models_file_takes_mamba3_and_gdn_tables(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[models.x]\nd_model = 64\nvocab_size = 100\npattern = "3-G*"\n'
                    '[models.x.mamba3]\nd_state = 16\nheaddim = 16\n[models.x.gdn]\nn_k_heads = 2\n'
                    'n_v_heads = 4\nhead_k_dim = 16\nhead_v_dim = 16\n[models.x.attention]\nn_heads = 4\n'
                    'n_kv_heads = 2\nhead_dim = 16\n[models.x.mlp]\nffn_hidden = 128\n')
    spec = load_models_toml(path)["x"]
    assert spec.mamba3.d_state == 16 and spec.gdn.n_v_heads == 4


def test_state_bytes_count_fp32_recurrent_states():
    spec = get_layer("gdn")
    fp32_state = 4 * 32 * 128 * 128
    conv = 2 * spec.conv_dim * 4
    assert spec.decode_state_bytes(2) == fp32_state + conv


# ----------------------------------------------------------------------------- reference layers


@pytest.mark.parametrize("name", ["mamba3", "gdn"])
def test_8b_reference_layer_on_meta_has_the_spec_parameter_count(torch, name):
    spec = get_layer(name)
    layer = _ref(torch, spec, device="meta")
    assert sum(p.numel() for p in layer.parameters()) == spec.params


def test_mimo_reference_on_meta_has_the_spec_parameter_count(torch):
    spec = Mamba3Spec(d_model=4096, mimo_rank=4, chunk_size=16)
    assert sum(p.numel() for p in _ref(torch, spec, device="meta").parameters()) == spec.params


@pytest.mark.parametrize("name", ["mamba3", "gdn"])
def test_8b_reference_cache_on_meta_holds_the_spec_state_bytes(torch, name):
    """The reference allocates every state in one dtype; mamba_ssm and fla keep the recurrent state (and
    Mamba-3's angles) in fp32, which the spec counts: compare element counts by dtype."""
    spec = get_layer(name)
    cache = _ref(torch, spec, device="meta").allocate_cache(3, 100, dtype=torch.bfloat16)
    fp32_parts = (0, 1) if name == "mamba3" else (1,)
    total = sum(t.numel() * (4 if i in fp32_parts else 2) for i, t in enumerate(cache))
    assert total == 3 * spec.decode_state_bytes(2)


@pytest.mark.parametrize("name", list(SMALL))
def test_reference_decode_continues_its_prefill(torch, name):
    layer = _ref(torch, SMALL[name], dtype=torch.float64)
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.3)
    u = torch.randn(2, 9, 32, dtype=torch.float64)
    full = layer(u)
    _, cache = layer.forward_with_cache(u[:, :8])
    step = layer.decode(u[:, 8:9], cache)
    torch.testing.assert_close(step, full[:, 8:9], rtol=1e-9, atol=1e-11)


def test_mamba3_reference_output_depends_on_the_previous_token(torch):
    """The trapezoid mixes v_{t-1} k_{t-1}^T into step t: changing token 0 changes y_1 even with
    a decay of zero length (a sanity check that the reference carries k_prev and v_prev)."""
    layer = _ref(torch, SMALL["mamba3"], dtype=torch.float64)
    u = torch.randn(1, 2, 32, dtype=torch.float64)
    v = u.clone()
    v[:, 0] += 1.0
    assert not torch.allclose(layer(u)[:, 1], layer(v)[:, 1])


# ----------------------------------------------------------------------------- FLOPs


def _counted(torch, fn) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return {str(k).split(".")[1]: v for k, v in counter.get_flop_counts()["Global"].items()}


def _analytic(spec, phase, b, L, op_class=GEMM) -> float:
    ops = layer_ops(spec, phase, np.array([float(b)]), np.array([float(L)]))
    return float(sum(op.flops[0] for op in ops if op.op_class == op_class))


@pytest.mark.parametrize("name", ["mamba3", "gdn"])
def test_prefill_gemm_flops_match_flop_counter_on_reference(torch, name):
    spec = SMALL[name]
    layer = _ref(torch, spec)
    u = torch.randn(2, 5, spec.d_model)
    counted = _counted(torch, lambda: layer(u))
    assert counted["mm"] == pytest.approx(_analytic(spec, "prefill", 2, 5))


@pytest.mark.parametrize("name", ["mamba3", "gdn"])
def test_decode_gemm_flops_match_flop_counter_on_reference(torch, name):
    spec = SMALL[name]
    layer = _ref(torch, spec)
    cache = layer.allocate_cache(3, 10)
    counted = _counted(torch, lambda: layer.decode(torch.randn(3, 1, spec.d_model), cache))
    assert counted["mm"] == pytest.approx(_analytic(spec, "decode", 3, 10))


@pytest.mark.parametrize("name", ["mamba3", "gdn"])
def test_8b_gemm_flops_match_flop_counter_on_meta(torch, name):
    spec = get_layer(name)
    layer = _ref(torch, spec, device="meta")
    u = torch.randn(1, 3, spec.d_model, device="meta")
    counted = _counted(torch, lambda: layer(u))
    assert counted["mm"] == pytest.approx(_analytic(spec, "prefill", 1, 3))


def test_gdn_prefill_conv_flops_match_flop_counter(torch):
    spec = SMALL["gdn"]
    layer = _ref(torch, spec)
    counted = _counted(torch, lambda: layer(torch.randn(2, 6, spec.d_model)))
    assert counted["convolution"] == pytest.approx(_analytic(spec, "prefill", 2, 6, CONV1D))


@pytest.mark.parametrize("name,costs,step_op", [("gdn", gdn_costs, "gdn_fused_recurrent"),
                                                ("mamba3", mamba3_costs, "mamba3_siso_step")])
def test_decode_step_flops_are_the_reference_matvecs_plus_its_elementwise_update(torch, name, costs, step_op):
    spec = SMALL[name]
    layer = _ref(torch, spec)
    cache = layer.allocate_cache(3, 10)
    counted = _counted(torch, lambda: layer.decode(torch.randn(3, 1, spec.d_model), cache))
    state = 3 * (spec.n_v_heads * spec.head_k_dim * spec.head_v_dim if name == "gdn"
                 else spec.nheads * spec.headdim * spec.d_state)  # fp32 recurrent state elements
    step = next(op for op in layer_ops(spec, "decode", np.array([3.0]), np.array([10.0])) if op.name == step_op)
    assert counted["bmm"] == pytest.approx(costs.STEP_MATVEC_FLOPS * state)
    assert float(step.flops[0]) == pytest.approx(counted["bmm"] + costs.STEP_ELEMENTWISE_FLOPS * state)


@pytest.mark.parametrize("name", ["mamba3", "gdn"])
def test_chunk_flops_grow_with_the_chunk_size(name):
    spec = get_layer(name)
    smaller = type(spec)(**{**{f: getattr(spec, f) for f in ("d_model",)}, "chunk_size": 32})
    assert _analytic(smaller, "prefill", 1, 4096, "ssd") < _analytic(spec, "prefill", 1, 4096, "ssd")


def test_decode_costs_do_not_depend_on_context():
    for name in ("mamba3", "gdn"):
        a = _analytic(get_layer(name), "decode", 8, 100, "state_update")
        b = _analytic(get_layer(name), "decode", 8, 100_000, "state_update")
        assert a == b


def test_model_state_bytes_sum_the_state_layers():
    spec = get_model("gdn-hybrid-8b")
    assert spec.state_bytes_per_sequence() == 21 * get_layer("gdn").decode_state_bytes(2)


def test_model_without_new_specs_rejects_their_letters():
    with pytest.raises(SpecError, match="no gdn spec"):
        ModelSpec(name="x", d_model=64, vocab_size=10, pattern="GG")


# ----------------------------------------------------------------------------- calibration


def test_new_family_ops_take_their_class_ceilings_until_calibrated():
    from analytic.calibration import resolve
    from analytic.efficiency import ceilings, op_ceiling
    from analytic.hardware import get_gpu
    from analytic.ops import SSD, STATE_UPDATE

    from dataclasses import replace

    from analytic.ops import NEW_MIXER_FAMILIES

    cal = resolve("default", "h100")
    cal = replace(cal, op_classes={k: v for k, v in cal.op_classes.items() if k not in NEW_MIXER_FAMILIES})
    ceil = ceilings(get_gpu("h100"), cal)
    for name, phase, op_name, op_class in (("mamba3", "prefill", "mamba3_siso_fwd", SSD),
                                           ("gdn", "decode", "gdn_fused_recurrent", STATE_UPDATE)):
        op = next(o for o in layer_ops(get_layer(name), phase, np.array([2.0]), np.array([512.0])) if o.name == op_name)
        assert op_ceiling(op, ceil) is ceil.classes[op_class]


def test_a_calibrated_family_sets_its_ops_ceilings():
    from dataclasses import replace

    from analytic.calibration import resolve
    from analytic.efficiency import ceilings, op_ceiling
    from analytic.hardware import get_gpu

    cal = resolve("default", "h100")
    cal = replace(cal, op_classes={**cal.op_classes, "gdn_step": {"t0_s": 3e-6, "bw_bytes_s": 2.5e12, "flops_s": 5e13}})
    op = next(o for o in layer_ops(get_layer("gdn"), "decode", np.array([2.0]), np.array([512.0]))
              if o.name == "gdn_fused_recurrent")
    assert op_ceiling(op, ceilings(get_gpu("h100"), cal)).bw_bytes_s == 2.5e12


def test_predict_title_names_the_uncalibrated_new_families():
    from analytic.predict import describe_calibration

    title = describe_calibration("h100", "default")  # MIMO never ran (no TileLang); the SISO families did
    assert "mamba3_mimo_chunk" in title and "gdn_step" not in title


@pytest.mark.parametrize("family,sample", [
    ("mamba3_step", {"layer": "mamba3", "phase": "decode", "batch": 3, "seqlen": 1024, "ops": ["mamba3_siso_step"]}),
    ("mamba3_chunk", {"layer": "mamba3", "phase": "prefill", "batch": 1, "seqlen": 384, "ops": ["mamba3_siso_fwd"]}),
    ("gdn_chunk", {"layer": "gdn", "phase": "prefill", "batch": 1, "seqlen": 384,
                   "ops": ["gdn_gate_cumsum", "gdn_chunk_intra", "gdn_chunk_h", "gdn_chunk_o"]}),
    ("gdn_step", {"layer": "gdn", "phase": "decode", "batch": 3, "seqlen": 1024, "ops": ["gdn_fused_recurrent"]}),
])
def test_new_family_samples_are_fitted_as_their_family(family, sample):
    from perfbench.calibration.run import samples_by_family

    assert list(samples_by_family({family: [dict(sample, time_s=1e-4)]})) == [family]


@pytest.mark.parametrize("family", ["mamba3", "gdn"])
def test_new_family_benchmarks_are_registered_for_remeasure(family):
    from perfbench.calibration.kernels import FAMILIES

    assert FAMILIES[family].NAME == family


@pytest.mark.parametrize("family", ["mamba3", "gdn"])
def test_new_family_plans_samples_whose_ops_name_the_family(family):
    from analytic.fit import sample_ops, spec_fields
    from perfbench.calibration.kernels import FAMILIES

    for stub in FAMILIES[family].plan():
        sample = {**stub, "layer": family, "spec": spec_fields(stub["spec"])}
        assert any((op.shape or {}).get("family", "").startswith(family) for op in sample_ops(sample))
