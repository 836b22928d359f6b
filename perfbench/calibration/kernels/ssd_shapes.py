"""Mamba-2's SSD prefill over its hyper-parameters: head dim, d_state, groups and chunk size, one at a
time around the 8B layer, and the public Mamba-2 370M and 2.7B shapes (d_model 1024 / 2560, one group,
chunk 256). Each new (chunk size, head dim, d_state) autotunes the Triton kernels on its first call,
inside the timer's warm-up."""

from __future__ import annotations

from models.specs import Mamba2Spec
from perfbench.calibration.bench import randn
from perfbench.calibration.kernels.common import KernelBench

NAME = "ssd_shapes"
CLASSES = (NAME,)
SPECS = (Mamba2Spec(d_model=4096, headdim=32), Mamba2Spec(d_model=4096, headdim=128),
         Mamba2Spec(d_model=4096, d_state=64), Mamba2Spec(d_model=4096, d_state=256),
         Mamba2Spec(d_model=4096, ngroups=1), Mamba2Spec(d_model=4096, ngroups=2),
         Mamba2Spec(d_model=4096, chunk_size=64), Mamba2Spec(d_model=4096, chunk_size=256),
         Mamba2Spec(d_model=2560, ngroups=1, chunk_size=256), Mamba2Spec(d_model=1024, ngroups=1, chunk_size=256))
SIZES = ((1, 1536), (3, 3072), (6, 6144), (2, 12288))  # under the kernels' 2**31 offsets at d_inner 8192
SETUP_S = 10.0 * len(SPECS)  # the Triton autotuning of each configuration (FIELD-NOTES: ~30 s a whole model)


def ops() -> list[str]:
    return ["ssd_chunk_cumsum", "ssd_chunk_state", "ssd_state_passing", "ssd_bmm_chunk", "ssd_chunk_scan"]


def measure(bench: KernelBench) -> None:
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

    torch, timer = bench.torch, bench.timer
    for spec in SPECS:
        H, P, G, N = spec.nheads, spec.headdim, spec.ngroups, spec.d_state
        A = -torch.rand(H, device="cuda", dtype=torch.float32) * 4 - 0.5
        D = torch.randn(H, device="cuda", dtype=torch.float32)
        dt_bias = torch.randn(H, device="cuda", dtype=torch.float32) * 0.1
        for b, L in SIZES:
            x, dtt = randn(torch, b, L, H, P), randn(torch, b, L, H, scale=0.5)
            B, C = randn(torch, b, L, G, N), randn(torch, b, L, G, N)
            t = timer(lambda: mamba_chunk_scan_combined(x, dtt, A, B, C, spec.chunk_size, D=D, dt_bias=dt_bias,
                                                        dt_softplus=True), graph=False)
            bench.add_spec(NAME, spec, {"phase": "prefill", "batch": b, "seqlen": L, "ops": ops(), "time_s": t})
            bench.log(f"  ssd headdim={P} d_state={N} groups={G} chunk={spec.chunk_size} heads={H} b={b} L={L}: "
                      f"{t * 1e3:.3f} ms")
            del x, dtt, B, C


def plan() -> list[dict]:
    """Every sample measure() takes, without its time."""
    return [{"spec": spec, "phase": "prefill", "batch": b, "seqlen": L, "ops": ops(), "mode": "eager"}
            for spec in SPECS for b, L in SIZES]
