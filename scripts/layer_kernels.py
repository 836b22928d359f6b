"""Per-kernel GPU time of one built-in layer's prefill (torch.profiler), beside the cost model's ops.

    python scripts/layer_kernels.py gdn --batch 1 --seqlen 32768 [--calls 3]

For finding where a layer's measured time and the model part (GDN's prefill runs 3-7 % over the model at
every size): no NVTX ranges, no nsys and no trace file, so it runs with the lean kit and its output is a
few lines. Each process primes the layer's autotuners first (`perfbench.measure.autotune`), as
`perfbench run` does, then times `--calls` calls with CUDA events and profiles as many more."""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytic.predict import breakdown  # noqa: E402
from models.registry import BUILTIN_LAYERS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layer", choices=sorted(BUILTIN_LAYERS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seqlen", type=int, default=32768)
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args()
    spec = BUILTIN_LAYERS[args.layer]
    ops = breakdown(spec, "prefill", args.batch, args.seqlen)
    print(f"model: {ops['time_ms'].sum():.3f} ms (GPU ops alone)")
    for row in ops.itertuples():
        print(f"  {row.time_ms:8.3f} ms {row.kernels:3d} kernels  {row.op} ({row.op_class})")

    import torch  # the GPU side only: the listing above runs anywhere
    from torch.profiler import ProfilerActivity, profile

    from models.torch_layers import build_layer
    from perfbench.measure.autotune import prime_autotuners
    if not torch.cuda.is_available():
        print("layer_kernels: the measured side needs a CUDA GPU; none is visible", file=sys.stderr)
        sys.exit(2)
    layer = build_layer(spec, device="cuda")
    prime_autotuners([layer], torch)
    x = torch.randn(args.batch, args.seqlen, spec.d_model, device="cuda", dtype=torch.bfloat16)
    with torch.inference_mode():
        for _ in range(2):
            layer(x)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(args.calls):
            layer(x)
        end.record()
        torch.cuda.synchronize()
        print(f"measured: {start.elapsed_time(end) / args.calls:.3f} ms a call (CUDA events, {args.calls} calls)")
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(args.calls):
                layer(x)
            torch.cuda.synchronize()
    kernels: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])
    for event in prof.events():
        if event.device_type.name == "CUDA":
            entry = kernels[event.name[:100]]
            entry[0] += 1
            entry[1] += event.device_time_total
    total = sum(t for _, t in kernels.values()) / 1e3 / args.calls
    print(f"kernels: {total:.3f} ms a call (profiler, GPU time summed)")
    for name, (count, us) in sorted(kernels.items(), key=lambda item: -item[1][1]):
        print(f"  {us / 1e3 / args.calls:8.3f} ms {count // args.calls:3d}x  {name}")


if __name__ == "__main__":
    main()
