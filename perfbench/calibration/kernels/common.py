"""What every kernel family's microbenchmark shares: where its samples go and how they are labelled."""

from __future__ import annotations

from dataclasses import dataclass, field

from analytic.fit import spec_fields
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import Timer

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


def spec_sample(spec, sample: dict) -> dict:
    """A sample that records every field of the spec its kernel ran, so a refit times exactly its ops."""
    return {"layer": spec.kind, "kind": spec.kind, "spec": spec_fields(spec), **sample}
