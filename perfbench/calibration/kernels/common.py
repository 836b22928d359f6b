"""What every kernel family's microbenchmark shares: where its samples go and how they are labelled."""

from __future__ import annotations

from dataclasses import dataclass, field

from analytic.fit import spec_fields
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import Timer, rotation
from perfbench.measure.autotune import AUTOTUNE_PROMPT_TOKENS

# Off-grid sizes: token counts between the sweep's powers of two (conv1d takes the first five,
# attention prefill and RoPE the first seven).
PREFILL_SIZES = ((1, 384), (1, 1536), (3, 1024), (1, 6144), (3, 3072), (6, 6144), (1, 24576), (12, 1536))


@dataclass
class KernelBench:
    """One family's measurement: the CUDA torch, the shared timer, the log, and the samples it fills
    ({key: [sample, ...]}: an op class, a kernel family, or a family's spread over hyper-parameters)."""

    torch: object
    timer: Timer
    log: object
    samples: dict = field(default_factory=dict)

    def add(self, op_class: str, sample: dict) -> None:
        """Keep a sample with how it was timed and the exact spec it ran, for later refits."""
        sample["mode"] = self.timer.last_mode
        if "layer" in sample:
            sample["kind"] = BUILTIN_LAYERS[sample["layer"]].kind
            sample["spec"] = spec_fields(BUILTIN_LAYERS[sample["layer"]])
        self.keep(op_class, sample)

    def add_spec(self, key: str, spec, sample: dict) -> None:
        """Keep a sample of a kernel run at `spec`'s exact hyper-parameters (not a built-in layer's),
        with how it was timed."""
        self.keep(key, {**spec_sample(spec, sample), "mode": self.timer.last_mode})

    def keep(self, op_class: str, sample: dict) -> None:
        """Keep a sample as it is (no timing mode or spec: the conv1d samples, as calibrations hold them)."""
        self.samples.setdefault(op_class, []).append(sample)

    def count(self, op_class: str) -> int:
        return len(self.samples.get(op_class, []))


def time_decode_step(bench: KernelBench, op_class: str, layer: str, op: str, batch: int, make_call,
                     footprint_bytes: float) -> float:
    """One decode-step kernel at `batch`, on enough independent input sets (`make_call`) to span the
    rotation (a cold L2, as in a step), timed as a CUDA graph and eagerly: one sample each. The log line
    shows the eager time only (a log-recovered run has no graph samples: calibration/from_log.py)."""
    run_all, copies = rotation(make_call, footprint_bytes)
    for graph in (True, False):
        t = bench.timer(run_all, graph=graph) / copies
        bench.add(op_class, {"layer": layer, "phase": "decode", "batch": batch, "seqlen": 1024, "ops": [op],
                             "time_s": t})
    bench.log(f"  {op} b={batch}: {t * 1e6:.1f} us")
    return t


def spec_sample(spec, sample: dict) -> dict:
    """A sample that records every field of the spec its kernel ran, so a refit times exactly its ops."""
    return {"layer": spec.kind, "kind": spec.kind, "spec": spec_fields(spec), **sample}


@dataclass(frozen=True)
class ChunkAndStep:
    """A newer mixer's prefill chunk call and decode step, as a `*_shapes` spread times them: `chunk_call`
    and `step_call` build a no-argument call at (spec, batch[, length]); `state_bytes` is what one step
    streams (the rotation's footprint); `describe` labels a spec in the log."""

    chunk_name: str
    step_name: str
    chunk_ops: tuple
    step_ops: tuple
    chunk_call: object
    step_call: object
    state_bytes: object
    describe: object


def chunk_and_step_plan(kernels: ChunkAndStep, specs, sizes, batches) -> list[dict]:
    """Every sample `measure_chunk_and_step` takes, without its time, in the order it takes them (each
    spec's prefills, then its steps: a killed run's log pairs with it line by line, calibration/from_log.py)."""
    plan = []
    for s in specs:
        plan += [{"spec": s, "phase": "prefill", "batch": b, "seqlen": L, "ops": list(kernels.chunk_ops),
                  "mode": "eager"} for b, L in sizes]
        plan += [{"spec": s, "phase": "decode", "batch": b, "seqlen": 1024, "ops": list(kernels.step_ops),
                  "mode": "graph"} for b in batches]
    return plan


def measure_chunk_and_step(bench: KernelBench, key: str, kernels: ChunkAndStep, specs, sizes, batches) -> None:
    """Each spec's chunk call at each (batch, length), eagerly, and its step at each batch on rotated
    inputs (a cold L2, as in a decode step), replayed as a graph: samples under `key`, each with its spec."""
    torch, timer = bench.torch, bench.timer
    for spec in specs:
        kernels.chunk_call(torch, spec, 1, AUTOTUNE_PROMPT_TOKENS)()  # a new key tunes on the harness's prompt
        torch.cuda.synchronize()
        for b, L in sizes:
            t = timer(kernels.chunk_call(torch, spec, b, L), graph=False)
            bench.add_spec(key, spec, {"phase": "prefill", "batch": b, "seqlen": L, "ops": list(kernels.chunk_ops),
                                       "time_s": t})
            bench.log(f"  {kernels.chunk_name} {kernels.describe(spec)} b={b} L={L}: {t * 1e3:.3f} ms")
        for b in batches:
            run_all, copies = rotation(lambda b=b: kernels.step_call(torch, spec, b), kernels.state_bytes(spec, b))
            t = timer(run_all) / copies
            bench.add_spec(key, spec, {"phase": "decode", "batch": b, "seqlen": 1024, "ops": list(kernels.step_ops),
                                       "time_s": t})
            bench.log(f"  {kernels.step_name} {kernels.describe(spec)} b={b}: {t * 1e6:.1f} us")
