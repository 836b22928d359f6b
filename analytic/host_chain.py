"""The host's launch chain of an eagerly launched step (prefill, decode without CUDA graphs).

The host runs ahead of the GPU until the GPU starves, so an eager step takes the longer of the two
(`analytic.pipeline`). The chain is each layer's calibrated Python path where `perfbench calibrate`
timed it (perfbench/host_chain.py), else per-kernel launch costs (`analytic.efficiency.host_time`).
"""

from __future__ import annotations

import dataclasses
import math
import statistics

from analytic.calibration import PROBE_TIMES, Calibration
from analytic.composition import CountedOp
from analytic.efficiency import Ceilings, host_time
from analytic.ops import ADD_NORM
from models.registry import BUILTIN_MODELS, PAPER_MODELS
from models.specs import ModelSpec, SpecError

# The key of the fused add + norm's host launch chain in a calibration (`host/add_norm/prefill`, ...),
# sampled beside the layers' chains (perfbench/calibration/host.py).
ADD_NORM_CHAIN = "add_norm"
# Launch figures that are the host's (not the GPU's): they scale with the host's speed and are pooled
# across leases with the layer chains (perfbench/calibration/host.py).
HOST_FIGURES = ("eager_kernel_s", "graph_replay_s", "graph_launch_period_s")


def is_host_figure(key: str) -> bool:
    """A `launch` figure the host's speed sets: a chain (host/..., host_wall/...) or a host launch cost."""
    return key in HOST_FIGURES or key.startswith(("host/", "host_wall/"))


def chain_of(key: str) -> str | None:
    """The chain a host figure belongs to ("mamba3/prefill" for host/mamba3/prefill and
    host_wall/mamba3/prefill); None for the launch costs every chain shares (HOST_FIGURES)."""
    prefix, _, chain = key.partition("/")
    return chain if prefix in ("host", "host_wall") and chain else None


def probes_of(calibration: Calibration, chain: str | None = None) -> list[dict]:
    """The probes of the leases that timed `chain`: a probe with a `chains` list timed only those (a
    new layer's chains added beside the file's others); one without timed every chain of its file.
    For `chain` None, the leases that timed everything."""
    return [p for p in calibration.host_probes
            if "chains" not in p or (chain is not None and chain in p["chains"])]


def host_speed(calibration: Calibration | None, probe: dict | None, chain: str | None = None) -> float:
    """How fast a host runs launch chains relative to the hosts that timed `chain` (every chain: None):
    the median of those leases' probes over `probe`, in the first probe time both have (2.0: chains
    take half the time). 1.0 where either side has no probe. The chains of one lease move together
    (H200 calibration, four leases: every chain 0.47-0.72x of the slowest lease's), so one factor
    scales all the chains one lease timed."""
    if calibration is None or not probe:
        return 1.0
    for key in PROBE_TIMES:
        ours = [p[key] for p in probes_of(calibration, chain) if p.get(key, 0) > 0]
        theirs = probe.get(key)
        if ours and theirs and theirs > 0:
            return statistics.median(ours) / float(theirs)
    return 1.0


def with_host_speed(calibration: Calibration | None, speed: float) -> Calibration | None:
    """The calibration as seen from a host `speed` times as fast as its own: every host figure (the
    chains, a kernel's eager launch cost, a graph's launch period) and host window divided by `speed`;
    the GPU's figures untouched."""
    if speed <= 0 or not math.isfinite(speed):
        raise SpecError(f"host speed must be a positive number, not {speed!r}")
    if calibration is None or speed == 1.0:
        return calibration
    return _scaled(calibration, lambda key: speed)


def with_probed_host(calibration: Calibration | None, probe: dict | None) -> Calibration | None:
    """The calibration as seen from the host that recorded `probe`: each chain scaled by its own leases'
    probes over `probe` (`host_speed` per chain), so chains timed on different leases each move by
    their own factor; a chain (or shared launch cost) whose lease recorded no probe stays as it is."""
    if calibration is None or not probe or not calibration.host_probes:
        return calibration
    factors: dict[str | None, float] = {}

    def speed_of(key: str) -> float:
        chain = chain_of(key)
        if chain not in factors:
            factors[chain] = host_speed(calibration, probe, chain)
        return factors[chain]

    return _scaled(calibration, speed_of)


def _scaled(calibration: Calibration, speed_of) -> Calibration:
    launch = {k: (v / speed_of(k) if is_host_figure(k) else v) for k, v in calibration.launch.items()}
    samples = {k: tuple(v / speed_of(k) for v in values) for k, values in calibration.host_samples.items()}
    return dataclasses.replace(calibration, launch=launch, host_samples=samples)


def host_spread(calibration: Calibration | None) -> tuple[float, float] | None:
    """(q10, q90) of log(window / its chain's median) over every window of every chain the calibration
    timed (`host/` keys): how far one timing of a chain lands from the figure the model uses, within
    and across the leases pooled in the file. None without windows."""
    if calibration is None:
        return None
    logs = sorted(math.log(v / statistics.median(values)) for key, values in calibration.host_samples.items()
                  if key.startswith("host/") and len(values) >= 3 for v in values)
    if len(logs) < 10:
        return None
    deciles = statistics.quantiles(logs, n=10, method="inclusive")
    return deciles[0], deciles[-1]


def host_key(layer_spec) -> str:
    """Which calibrated host path a layer takes: its kind; attention with RoPE runs more ops."""
    if layer_spec.kind == "attention" and layer_spec.rotary_fraction > 0:
        return "attention-mha"
    return layer_spec.kind


def host_path(model: ModelSpec) -> tuple:
    """What a model's host launch chain depends on: which layer paths run, in which order (not the
    tensors' sizes): the context-length variants and a re-sized model share the paper model's."""
    return model.pattern, tuple(host_key(layer) for layer in model.layers)


def host_seconds(kind: str, spec, phase: str, ops: list[CountedOp], ceil: Ceilings) -> float:
    """Host launch chain of an eager step: each layer's calibrated Python path where measured
    (`perfbench calibrate` times each layer's host chain alone), else per-kernel launch costs.

    A layer timed alone (CUDA events around the call) shows only the host work between its first
    and last kernel; inside a model every layer's whole chain (wall clock) falls between the
    model's first and last kernel. So layers use the first figure and models the second. A built-in
    model timed whole in the calibration (and any model on its Python path, `host_path`) takes that
    chain, as a point is timed: its pieces' chains add up to only 0.7-0.9 of it.
    """
    layers = [spec] if kind == "layer" else list(spec.layers)
    primary, other = ((ceil.layer_host_s, ceil.layer_host_wall_s) if kind == "layer"
                      else (ceil.layer_host_wall_s, ceil.layer_host_s))
    if kind == "model":  # a model with a calibrated whole chain on the same Python path takes it
        path = host_path(spec)
        for name in PAPER_MODELS:
            whole = ceil.layer_host_s.get(f"{name}/{phase}", ceil.layer_host_wall_s.get(f"{name}/{phase}"))
            if whole is not None and host_path(BUILTIN_MODELS[name]) == path:
                return whole
    measured = {}
    for layer in layers:
        key = f"{host_key(layer)}/{phase}"
        value = primary.get(key, other.get(key))
        if value is not None:
            measured[layer.kind] = measured.get(layer.kind, 0.0) + value
    # A model's fused add + norm (before each block and at the end): its own calibrated chain.
    norm_key = f"{ADD_NORM_CHAIN}/{phase}"
    add_norm_s = primary.get(norm_key, other.get(norm_key))
    is_norm = [add_norm_s is not None and c.op.shape.get("family") == ADD_NORM for c in ops]
    norms = sum(c.count for c, norm in zip(ops, is_norm) if norm) * (add_norm_s or 0.0)
    # Ops a layer's calibrated chain does not run (q/k norms of a Qwen3-style attention) add their launches.
    unmeasured = sum(host_time(c.op, ceil) * c.count for c, norm in zip(ops, is_norm)
                     if (c.group not in measured or (c.op.shape or {}).get("beyond_host_chain")) and not norm)
    return sum(measured.values()) + norms + unmeasured
