"""Shared fixtures: tiny specs of every layer kind and a tiny hybrid model, a CUDA guard, and a
synthetic H100 results directory for the dashboard tests, `unpack` for the gzipped captures
in tests/data (stored compressed to keep the tracked tree small; the parsers read the real bytes), and
the bundled H100 calibration with the ceilings a fit starts from."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

# Tests use tiny tensors: one CPU thread avoids OpenMP oversubscription on small shared machines
# (a 3-D nn.Linear took 15-30 ms instead of 0.01 ms with 2 threads under load). Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from analytic.calibration import bundled_path, from_dict, read_calibration_data
from analytic.efficiency import ceilings
from analytic.hardware import get_gpu
from models.specs import AttentionSpec, Mamba2Spec, MambaSpec, MLPSpec, ModelSpec


@pytest.fixture
def unpack(tmp_path):
    """`unpack(path.gz)` -> a temporary copy of the capture's original bytes, named without `.gz`."""

    def _unpack(path: Path) -> Path:
        out = tmp_path / path.name.removesuffix(".gz")
        out.write_bytes(gzip.decompress(path.read_bytes()))
        return out

    return _unpack


@pytest.fixture
def tiny_specs() -> dict:
    """One small spec per layer kind (GQA with partial RoPE; Mamba-2 with 2 groups, chunk 4)."""
    return {
        "mamba": MambaSpec(d_model=16, d_state=4, d_conv=4, expand=2, dt_rank=3),
        "mamba2": Mamba2Spec(d_model=32, d_state=8, d_conv=4, expand=2, headdim=8, ngroups=2, chunk_size=4),
        "attention": AttentionSpec(d_model=32, n_heads=4, n_kv_heads=2, head_dim=8, rotary_fraction=0.5),
        "attention-mha": AttentionSpec(d_model=32, n_heads=4, n_kv_heads=4, head_dim=8),
        "mlp": MLPSpec(d_model=16, ffn_hidden=24),
        # Dense-decoder extensions: Qwen2 q/k/v biases, Qwen3 q/k norm (both with full RoPE), SwiGLU.
        "attention-qkv-bias": AttentionSpec(d_model=32, n_heads=4, n_kv_heads=2, head_dim=8, rotary_fraction=1.0,
                                            rope_base=1e6, qkv_bias=True),
        "attention-qk-norm": AttentionSpec(d_model=32, n_heads=4, n_kv_heads=2, head_dim=16, rotary_fraction=1.0,
                                           rope_base=1e6, qk_norm=True),
        "mlp-swiglu": MLPSpec(d_model=32, ffn_hidden=48, activation="silu", gated=True),
    }


@pytest.fixture
def tiny_model() -> ModelSpec:
    """A five-block hybrid using every letter, vocabulary 50."""
    d = 32
    return ModelSpec(name="tiny-hybrid", d_model=d, vocab_size=50, pattern="M-*m-",
                     mamba=MambaSpec(d_model=d, d_state=4, dt_rank=4),
                     mamba2=Mamba2Spec(d_model=d, d_state=8, headdim=8, ngroups=2, chunk_size=4),
                     attention=AttentionSpec(d_model=d, n_heads=4, n_kv_heads=2, head_dim=8,
                                             rotary_fraction=0.5),
                     mlp=MLPSpec(d_model=d, ffn_hidden=64))


@pytest.fixture
def cuda():
    """Skip unless a CUDA GPU is present; returns the torch module."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return torch


@pytest.fixture(scope="module")
def synthetic_results_dir(tmp_path_factory):
    """A results directory holding one synthetic H100 sweep (tests/results_factory.py)."""
    from results_factory import synthetic_sweep, write_run

    path = tmp_path_factory.mktemp("results") / "h100"
    write_run(path, synthetic_sweep())
    return path


@pytest.fixture(scope="module")
def h100_data():
    """The bundled H100 calibration's raw dict."""
    return read_calibration_data(bundled_path("h100"))


@pytest.fixture(scope="module")
def base(h100_data):
    """The ceilings a fit starts from (no fitted classes), as fit_calibration builds them."""
    return ceilings(get_gpu("h100"), from_dict({**h100_data, "op_classes": {}}, "fit"))
