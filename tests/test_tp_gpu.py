"""Tensor parallelism on two GPUs (NCCL): sharded real layers match one GPU; a TP sweep runs in graphs.

Skipped without two CUDA devices. Sizes are real enough for the kernels' tiling (Mamba-2 with
8 groups and headdim 64, GQA attention) and small enough to run in seconds.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from models.specs import AttentionSpec, Mamba2Spec, MambaSpec, MLPSpec, ModelSpec  # noqa: E402

pytestmark = pytest.mark.gpu

D = 1024
LAYERS = {
    "mamba2": Mamba2Spec(d_model=D, d_state=128, headdim=64, ngroups=8, chunk_size=128),
    "attention": AttentionSpec(d_model=D, n_heads=16, n_kv_heads=8, head_dim=64),
    "attention-mha": AttentionSpec(d_model=D, n_heads=16, n_kv_heads=16, head_dim=64, rotary_fraction=0.5),
    "mlp": MLPSpec(d_model=D, ffn_hidden=4096),
}
BF16_TOLERANCE = 3e-2  # two bf16 GEMM reductions in another order; a wrong split is O(1)


@pytest.fixture
def two_gpus():
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA GPUs")
    if not torch.distributed.is_nccl_available():
        pytest.skip("needs NCCL")


@pytest.fixture
def mamba_ssm():
    return pytest.importorskip("mamba_ssm")


def _hybrid() -> ModelSpec:
    return ModelSpec(name="small-hybrid", d_model=D, vocab_size=32000, pattern="M-*-M-", mamba2=LAYERS["mamba2"],
                     attention=LAYERS["attention"], mlp=LAYERS["mlp"])


def test_sharded_real_layers_match_one_gpu(two_gpus, mamba_ssm):
    from perfbench.tp.distributed import verify_sharded_layers

    errors = verify_sharded_layers(LAYERS, tp=2, reference=False, dtype="bfloat16", batch=2, seqlen=256)
    assert set(errors) == set(LAYERS)
    for name, values in errors.items():
        for key, err in values.items():
            assert err < BF16_TOLERANCE, (name, key, err)


def test_sharded_real_model_matches_one_gpu(two_gpus, mamba_ssm):
    from perfbench.tp.distributed import verify_sharded_layers

    errors = verify_sharded_layers({}, tp=2, model=_hybrid(), reference=False, dtype="bfloat16", batch=2,
                                   seqlen=256)
    for key, err in errors["model:small-hybrid"].items():
        assert err < BF16_TOLERANCE, (key, err)


def test_tp_sweep_on_two_gpus_records_graph_decode_nccl_and_topology(two_gpus, mamba_ssm, tmp_path):
    from perfbench.tp.distributed import run_tp
    from perfbench.measure.harness import SweepOptions, Target
    from perfbench.measure.results import load_results
    from perfbench.measure.timing import TimingOptions

    targets = [Target("model", "small-hybrid", _hybrid()), Target("layer", "mamba", MambaSpec(d_model=D))]
    options = SweepOptions(device="cuda", dtype="bfloat16", graphs=True,
                           timing=TimingOptions(warmup=1, min_repeats=3, max_repeats=10, target_s=0.01))
    report = run_tp(targets, ["prefill", "decode"], [2], [512], 2, options, tmp_path)
    frame = load_results(tmp_path)
    assert report.status == "complete" and len(frame) == 4 and set(frame["tp"]) == {2}
    model = frame[frame["name"] == "small-hybrid"]
    assert set(model["status"]) == {"ok"}
    assert model.loc[model["phase"] == "decode", "mode"].iloc[0] == "graph"
    extra = json.loads(model["extra"].iloc[0])
    assert extra["nccl_version"] and extra["backend"] == "nccl" and "GPU0-GPU1" in extra["topology"]
    mamba1 = frame[frame["name"] == "mamba"]
    assert set(mamba1["status"]) == {"skipped"}  # no tensor-parallel Mamba-1 in mamba_ssm
