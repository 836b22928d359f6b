"""Mamba-3 and Gated DeltaNet real layers on the GPU against their pure-torch references.

Same weights; the reference in float64, the real layer in bf16. Tolerance: relative L2 error of the
output (and of each decode cache tensor) at most 3e-2, the bound the other layers' GPU tests use for
bf16 operands; Mamba-3's Triton kernels also use approximate tanh/sin/cos/sigmoid (`ops/triton/mamba3/
utils.py`), well inside it. Needs mamba_ssm 2.3.2 (Mamba-3) and fla-core (Gated DeltaNet).
"""

from __future__ import annotations

import pytest

from analytic.fit import spec_fields
from models.specs import GatedDeltaNetSpec, Mamba3Spec

pytestmark = pytest.mark.gpu

REL = 3e-2
SMALL = {
    "mamba3": Mamba3Spec(d_model=256, d_state=64, expand=2, headdim=64, ngroups=1, chunk_size=64),
    "gdn": GatedDeltaNetSpec(d_model=256, n_k_heads=2, n_v_heads=4, head_k_dim=64, head_v_dim=64),
}


def _rel(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _needs(kind):
    pytest.importorskip("mamba_ssm" if kind == "mamba3" else "fla")


def _pair(torch, kind):
    from models.reference import build_reference_layer
    from models.torch_layers import build_layer, weights_module

    spec = SMALL[kind]
    torch.manual_seed(0)
    real = build_layer(spec, device="cuda", dtype=torch.bfloat16).eval()
    ref = build_reference_layer(spec, device="cuda", dtype=torch.float64)
    ref.load_state_dict({k: v.double() for k, v in weights_module(real).state_dict().items()})
    return spec, real, ref


@pytest.mark.parametrize("kind", list(SMALL))
def test_real_prefill_matches_reference(cuda, kind):
    _needs(kind)
    spec, real, ref = _pair(cuda, kind)
    u = cuda.randn(2, 200, spec.d_model, device="cuda", dtype=cuda.bfloat16)
    with cuda.no_grad():
        assert _rel(real(u), ref(u.double())) < REL


@pytest.mark.parametrize("kind", list(SMALL))
def test_real_decode_matches_reference_from_the_same_cache(cuda, kind):
    _needs(kind)
    spec, real, ref = _pair(cuda, kind)
    cache = real.allocate_cache(3, 50)
    for t in cache:
        t.normal_(0.0, 0.5)
    ref_cache = [t.double().clone() for t in cache]
    u = cuda.randn(3, 1, spec.d_model, device="cuda", dtype=cuda.bfloat16)
    with cuda.no_grad():
        out, expected = real.decode(u, cache), ref.decode(u.double(), ref_cache)
    assert _rel(out, expected) < REL
    for got, want in zip(cache, ref_cache):
        assert _rel(got, want) < REL


@pytest.mark.parametrize("kind", list(SMALL))
def test_real_decode_continues_the_reference_prefill(cuda, kind):
    """The reference's cache after a prompt drives the real decode step to the reference's next output."""
    _needs(kind)
    spec, real, ref = _pair(cuda, kind)
    u = cuda.randn(2, 65, spec.d_model, device="cuda", dtype=cuda.float64)
    with cuda.no_grad():
        full = ref(u)
        _, ref_cache = ref.forward_with_cache(u[:, :64])
        cache = real.allocate_cache(2, 64)
        for mine, theirs in zip(cache, ref_cache):
            mine.copy_(theirs.reshape(mine.shape))
        out = real.decode(u[:, 64:].bfloat16(), cache)
    assert _rel(out, full[:, 64:]) < REL


@pytest.mark.parametrize("kind", list(SMALL))
def test_real_layer_records_its_step_kernel(cuda, kind):
    _needs(kind)
    from models.torch_layers import layer_kernels

    _, real, _ = _pair(cuda, kind)
    facts = layer_kernels(real)
    expected = ("cute mamba3_step_fn", "triton mamba3_siso_step") if kind == "mamba3" else (
        "fla fused_recurrent_gated_delta_rule",)
    assert facts["step_kernel"] in expected


def test_mamba3_mimo_builds_or_says_unavailable_in_one_line(cuda):
    """MIMO needs TileLang: either the layer builds and runs a prefill, or KernelUnavailable says why."""
    pytest.importorskip("mamba_ssm")
    from models.torch_layers import KernelUnavailable, build_layer

    spec = Mamba3Spec(d_model=256, d_state=64, headdim=64, mimo_rank=4, chunk_size=16)
    try:
        layer = build_layer(spec, device="cuda", dtype=cuda.bfloat16)
    except KernelUnavailable as exc:
        assert "\n" not in str(exc) and "MIMO" in str(exc)
        return
    out = layer(cuda.randn(1, 64, 256, device="cuda", dtype=cuda.bfloat16))
    assert out.shape == (1, 64, 256)


@pytest.mark.parametrize("name", ["mamba3-hybrid-8b", "gdn-hybrid-8b"])
def test_new_model_builds_with_the_spec_parameter_count(cuda, name):
    pytest.importorskip("mamba_ssm")
    pytest.importorskip("fla")
    from models.registry import get_model
    from models.stack import build_model, count_parameters

    spec = get_model(name)
    model = build_model(spec, device="cuda", dtype=cuda.bfloat16)
    assert count_parameters(model) == spec.params


@pytest.mark.parametrize("family", ["mamba3", "gdn"])
def test_calibration_family_measures_its_kernels(cuda, monkeypatch, family):
    """The family's benchmark, trimmed to two prefill sizes and two batches: no failure, one sample per
    planned point with a positive time, and the bundled model (the family at its class's ceilings)
    within a factor of 5 either way: a sanity bound, not accuracy."""
    _needs(family)
    from analytic.calibration import bundled_path, load_calibration
    from analytic.efficiency import ceilings, host_time, op_time
    from analytic.fit import sample_ops
    from analytic.hardware import get_gpu, gpu_key_from_name
    from perfbench.calibration.bench import Timer
    from perfbench.calibration.kernels import FAMILIES
    from perfbench.calibration.run import measure_kernels

    module = FAMILIES[family]
    monkeypatch.setattr(module, "PREFILL_SIZES", module.PREFILL_SIZES[:2])
    monkeypatch.setattr(module, "DECODE_BATCHES", module.DECODE_BATCHES[:2])
    kernels = measure_kernels(cuda, Timer(cuda), log=lambda *_: None, only={family})
    assert not kernels["failures"], kernels["failures"]
    samples = [s for key in module.CLASSES for s in kernels["samples"].get(key, [])]
    assert len(samples) == len(module.plan())
    assert all(s["time_s"] > 0 and sample_ops(s) for s in samples)
    gpu = gpu_key_from_name(cuda.cuda.get_device_properties(0).name)
    if gpu in ("h100", "h200"):
        ceil = ceilings(get_gpu(gpu), load_calibration(bundled_path(gpu), gpu))
        for s in samples:
            ops = sample_ops(s)
            predicted = sum(float(op_time(op, ceil)[0][0]) for op in ops)
            if s.get("mode") == "eager":  # timed eagerly, the GPU waits on the launches (H100 2026-12-07 15:29Z:
                predicted = max(predicted, sum(host_time(op, ceil) for op in ops))  # 113 us for 6.5 us of GPU)
            assert 0.2 < predicted / s["time_s"] < 5.0, s


@pytest.mark.parametrize("family", ["mamba3_shapes", "gdn_shapes"])
def test_shape_family_measures_what_it_plans(cuda, monkeypatch, family):
    """The spread trimmed to its first two specs (the 8B key and one more), one size and one batch: no
    failure, every planned sample taken with a positive time and the exact spec it ran."""
    _needs(family.split("_")[0])
    from analytic.fit import sample_ops
    from perfbench.calibration.bench import Timer
    from perfbench.calibration.kernels import FAMILIES
    from perfbench.calibration.run import measure_kernels

    module = FAMILIES[family]
    monkeypatch.setattr(module, "SPECS", module.SPECS[:2])
    monkeypatch.setattr(module, "SIZES", module.SIZES[:1])
    monkeypatch.setattr(module, "DECODE_BATCHES", module.DECODE_BATCHES[:1])
    kernels = measure_kernels(cuda, Timer(cuda), log=lambda *_: None, only={family})
    assert not kernels["failures"], kernels["failures"]
    samples = kernels["samples"][family]
    taken = sorted(repr((s["spec"], s["phase"], s["batch"], s["seqlen"])) for s in samples)
    assert taken == sorted(repr((spec_fields(p["spec"]), p["phase"], p["batch"], p["seqlen"])) for p in module.plan())
    assert all(s["time_s"] > 0 and sample_ops(s) for s in samples)
