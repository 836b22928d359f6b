"""Memory footprint (weights, KV cache, SSM + conv state, activations) and the largest batch that fits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytic.hardware import GPUS, get_gpu
from analytic.memory import ALLOCATOR_HEADROOM, max_batch, memory_footprint
from models.registry import PAPER_MODELS, get_model

FAST = settings(max_examples=30, deadline=None)
COMPONENTS = ("weights_bytes", "kv_cache_bytes", "ssm_state_bytes", "activation_peak_bytes")


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_weights_are_bf16_parameters(name):
    spec = get_model(name)
    assert float(memory_footprint(spec, 1, 4096)["weights_bytes"]) == 2 * spec.params


def test_transformer_kv_cache_by_hand():
    # 32 layers x K and V x 32 heads x 128 x 2 bytes = 524,288 bytes per token; B=3, L=1000.
    mem = memory_footprint(get_model("transformer-8b"), 3, 1000)
    assert float(mem["kv_cache_bytes"]) == 3 * 1000 * 524_288


def test_hybrid_kv_cache_at_128k_is_2_gib_per_sequence():
    # 4 GQA layers x 2 x 8 heads x 128 x 2 bytes = 16,384 bytes per token; x 131,072 = 2 GiB.
    mem = memory_footprint(get_model("mamba2-hybrid-8b"), 1, 131072)
    assert float(mem["kv_cache_bytes"]) == 2 * 1024**3


@FAST
@given(b=st.integers(1, 256), L1=st.integers(1, 131072), L2=st.integers(1, 131072))
def test_ssm_state_does_not_depend_on_context(b, L1, L2):
    spec = get_model("mamba2-8b")
    s1 = float(memory_footprint(spec, b, L1)["ssm_state_bytes"])
    assert s1 == float(memory_footprint(spec, b, L2)["ssm_state_bytes"])
    assert s1 == b * spec.state_bytes_per_sequence()


@pytest.mark.parametrize("name", ["mamba-8b", "mamba2-8b"])
def test_pure_ssm_models_have_no_kv_cache(name):
    assert float(memory_footprint(get_model(name), 8, 131072)["kv_cache_bytes"]) == 0


@FAST
@given(b=st.integers(1, 256), L=st.integers(1, 131072), name=st.sampled_from(PAPER_MODELS),
       phase=st.sampled_from(["prefill", "decode"]))
def test_total_is_the_sum_of_the_components(b, L, name, phase):
    mem = memory_footprint(get_model(name), b, L, phase=phase)
    assert float(mem["total_bytes"]) == pytest.approx(sum(float(mem[k]) for k in COMPONENTS), rel=1e-12)
    assert all(float(mem[k]) >= 0 for k in COMPONENTS)


@FAST
@given(b=st.integers(1, 256), L=st.integers(2, 65536), name=st.sampled_from(PAPER_MODELS))
def test_prefill_activation_peak_grows_with_batch_and_exceeds_decode(b, L, name):
    spec = get_model(name)
    prefill = float(memory_footprint(spec, b, L, phase="prefill")["activation_peak_bytes"])
    assert float(memory_footprint(spec, 2 * b, L, phase="prefill")["activation_peak_bytes"]) > prefill
    assert prefill > float(memory_footprint(spec, b, L, phase="decode")["activation_peak_bytes"])


def test_footprint_broadcasts_over_arrays():
    mem = memory_footprint(get_model("transformer-8b"), np.array([[1], [2]]), np.array([[1024, 2048]]))
    assert np.shape(mem["total_bytes"]) == (2, 2)


# ---------------------------------------------------------------------------------------------
# max_batch


def _fits(spec, b, L, gpu, phase="decode") -> bool:
    return float(memory_footprint(spec, b, L, phase=phase)["total_bytes"]) <= gpu.mem_bytes * ALLOCATOR_HEADROOM


@pytest.mark.parametrize("gpu", sorted(GPUS))
@pytest.mark.parametrize("name", PAPER_MODELS)
@pytest.mark.parametrize("context", [1024, 16384, 131072])
def test_max_batch_is_the_largest_that_fits(name, gpu, context):
    spec, g = get_model(name), get_gpu(gpu)
    n = max_batch(spec, context, g)
    if n > 0:
        assert _fits(spec, n, context, g)
    assert not _fits(spec, n + 1, context, g)


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_max_batch_never_grows_with_context(name):
    spec, g = get_model(name), get_gpu("h100")
    batches = [max_batch(spec, L, g) for L in (1024, 4096, 16384, 32768, 131072)]
    assert batches == sorted(batches, reverse=True)


def test_pure_mamba2_max_decode_batch_does_not_depend_on_context():
    spec, g = get_model("mamba2-8b"), get_gpu("h100")
    assert max_batch(spec, 1024, g) == max_batch(spec, 131072, g) > 0


def test_transformer_at_128k_does_not_fit_one_sequence_on_80gb():
    # KV 131,072 x 524,288 bytes = 64 GiB, plus 17 GB of weights > 80 GB x headroom.
    assert max_batch(get_model("transformer-8b"), 131072, get_gpu("h100")) == 0


@pytest.mark.parametrize("context", [4096, 32768])
def test_hybrid_fits_more_sequences_than_transformer(context):
    g = get_gpu("h100")
    assert max_batch(get_model("mamba2-hybrid-8b"), context, g) > max_batch(get_model("transformer-8b"), context, g)


def test_more_memory_fits_at_least_as_many_sequences():
    spec = get_model("transformer-8b")
    assert max_batch(spec, 8192, get_gpu("h200")) > max_batch(spec, 8192, get_gpu("h100"))
