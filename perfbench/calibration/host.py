"""The host's side of eager work: each layer's Python launch chain, sampled as a distribution.

A small prefill (or an eager decode step) is host-bound: the GPU waits on PyTorch dispatch, Triton's
launchers and mamba_ssm's Python, so the point's time is the host's launch chain. The hosts these GPUs
come with are shared virtual machines (H100 lease of 2026-11-24, 2.1 GHz Xeon, 16 vCPUs): the same
Mamba-2 prefill chain read 1.14-2.39 ms over a minute (26 windows), whether the thread was pinned to
one CPU or not, garbage collection on or off, the rest before it a sleep or a spin. One short window
is one draw from that spread, and keeping the lowest draw across leases (as calibrations did until
2026-11-24) predicts the unloaded host that a point seldom sees. So each chain is sampled in
`HOST_SAMPLES` windows spread over the calibration, all of them are kept (`host_samples` in the file),
and the model reads their median.

A whole model also runs, before every block and once at its end, the fused residual add + norm
(`models.stack.AddNorm`: mamba_ssm's Triton `layer_norm_fn`), whose Python path costs the host far
more than its two kernels' launches: 0.26 ms a call on the H100 lease of 2026-11-24T16:02Z, 65 of them
17 ms of the Transformer 8B's 47 ms prefill chain. So it is sampled as one more chain (`ADD_NORM_CHAIN`).
"""

from __future__ import annotations

import statistics
import time

from analytic.host_chain import ADD_NORM_CHAIN, chain_of, is_host_figure
from models.registry import BUILTIN_LAYERS, BUILTIN_MODELS, PAPER_MODELS
from perfbench.calibration.bench import randn
from perfbench.calibration.pooling import add_pool_sources, pool_sources
from perfbench.errors import exception_line
from perfbench.measure.autotune import prime_autotuners
from perfbench.measure.host_probe import host_probe
from perfbench.measure.results import utc_now
from perfbench.measure.timing import TimingOptions, measure

HOST_TOKENS = 64  # a prompt so short that the GPU work hides under the host's launch chain
HOST_TIMING = TimingOptions(warmup=5, min_repeats=20, max_repeats=100, target_s=0.02, nvtx=False)
HOST_SAMPLES = 11  # windows per chain, in rounds over the layers
HOST_REST_S = 0.2  # idle before each window, so a chain's windows spread over the host's changing load
WALL_CALLS = 20
MODEL_HOST_TIMING = TimingOptions(warmup=2, min_repeats=5, max_repeats=5, target_s=0.0, nvtx=False)
MODEL_HOST_SAMPLES = 7  # a model's chain is 20-120 ms: 7 windows of 5 calls and 5 back to back
MODEL_WALL_CALLS = 5
HOST_POOLED_FROM = "host_figures_pooled_from"
HOST_PROVENANCE = ("host_figures_best_of", HOST_POOLED_FROM)  # which leases the figures came from
HOST_PROBES = "host_probes"  # one `perfbench.measure.host_probe` per lease whose windows the file holds


def measure_host_chains(torch, log, layers: list[str] | None = None) -> dict[str, list[float]]:
    """Every chain a calibration holds: the layers' and the add + norm's, then the paper models' whole;
    with `layers` (built-in layer names), those layers' chains alone."""
    if layers:
        return measure_layer_host(torch, log, names=layers)
    return {**measure_layer_host(torch, log), **measure_model_host(torch, log)}


def measure_layer_host(torch, log, samples: int = HOST_SAMPLES, names: list[str] | None = None) -> dict[str, list[float]]:
    """Each built-in layer's host chain and the models' add + norm's (`ADD_NORM_CHAIN`), `samples`
    windows each: `{"host/layer/phase": [s, ...], "host_wall/layer/phase": [s, ...]}`.

    Each layer runs at batch 1 on a 64-token prompt (prefill) and one eager decode step at context 64:
    at that size the GPU waits on the host, so the time per call is the host's launch chain, which does
    not depend on the size of the tensors. `host/` is timed as the harness times a point (CUDA events
    around each call: first launch to last kernel, what a layer timed alone shows); `host_wall/` is the
    whole chain over back-to-back calls (what each layer adds inside a model). Windows go round the
    layers so that each chain's samples spread over the host's changing load.
    """
    from models.torch_layers import build_layer, randomize_
    calls = {}
    for name, spec in BUILTIN_LAYERS.items():
        if names and name not in names:
            continue
        try:
            layer = build_layer(spec, device="cuda", dtype=torch.bfloat16).eval().requires_grad_(False)
            prime_autotuners([layer], torch)  # tuned on the harness's prompt, not on these 64 tokens
            x = randn(torch, 1, HOST_TOKENS, spec.d_model)
            step_x = randn(torch, 1, 1, spec.d_model)
            cache = layer.allocate_cache(1, HOST_TOKENS, dtype=torch.bfloat16)
            randomize_(cache)
            calls[f"{name}/prefill"] = (lambda layer=layer, x=x: layer(x))
            calls[f"{name}/decode"] = (lambda layer=layer, s=step_x, c=cache: layer.decode(s, c))
        except Exception as exc:  # one layer's failure must not lose the calibration
            log(f"host {name}: FAILED {exception_line(exc)}")
    try:
        if not names:
            calls.update(_add_norm_calls(torch))
    except Exception as exc:
        log(f"host {ADD_NORM_CHAIN}: FAILED {exception_line(exc)}")
    out = _sample_chains(torch, calls, samples, HOST_TIMING, WALL_CALLS, log)
    del calls
    torch.cuda.empty_cache()
    return out


def measure_model_host(torch, log, samples: int = MODEL_HOST_SAMPLES) -> dict[str, list[float]]:
    """Each paper model's whole host chain, prefill and eager decode at 64 tokens (keys
    `host/<model>/<phase>` beside the layers'): a model's Python runs 1.1-1.4x the sum of its pieces'
    chains timed alone (H100 2026-11-24T16:02Z: Transformer 8B 47 ms against 34, Mamba-2 8B 112 against
    101), so the built-in models are timed whole. One model is resident at a time (an 8B model is
    16 GB), so its windows are consecutive, fewer and shorter than the layers'."""
    from models.stack import build_model  # torch: keeps the module importable without it
    from models.torch_layers import randomize_

    out: dict[str, list[float]] = {}
    for name in PAPER_MODELS:  # the context-length variants run the same Python (analytic.host_chain.host_path)
        spec = BUILTIN_MODELS[name]
        try:
            model = build_model(spec).eval().requires_grad_(False)
            ids = torch.randint(0, spec.vocab_size, (1, HOST_TOKENS), device="cuda")
            step = torch.randint(0, spec.vocab_size, (1, 1), device="cuda")
            caches = model.allocate_cache(1, HOST_TOKENS)
            for part in caches:
                randomize_(part)
            calls = {f"{name}/prefill": lambda: model.prefill(ids), f"{name}/decode": lambda: model.decode(step, caches)}
            out.update(_sample_chains(torch, calls, samples, MODEL_HOST_TIMING, MODEL_WALL_CALLS, log))
        except Exception as exc:  # one model's failure (out of memory on a small GPU) keeps the rest
            log(f"host {name}: FAILED {exception_line(exc)}")
        model = ids = step = caches = calls = None
        torch.cuda.empty_cache()
    return out


def _sample_chains(torch, calls: dict, samples: int, timing: TimingOptions, wall_calls: int, log) -> dict:
    """`samples` windows of each call's chain, round the calls: `host/` as a point is timed (CUDA
    events around each call), `host_wall/` as back-to-back calls' wall clock."""
    out: dict[str, list[float]] = {}
    with torch.inference_mode():  # as the harness runs every point
        for _ in range(samples):
            for key, fn in list(calls.items()):
                try:
                    torch.cuda.synchronize()
                    time.sleep(HOST_REST_S)
                    out.setdefault(f"host/{key}", []).append(measure(fn, timing, cuda=True).median_ms / 1e3)
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                    for _ in range(wall_calls):
                        fn()
                    torch.cuda.synchronize()
                    out.setdefault(f"host_wall/{key}", []).append((time.perf_counter() - start) / wall_calls)
                except Exception as exc:
                    log(f"host {key}: FAILED {exception_line(exc)}")
                    calls.pop(key)
                    out.pop(f"host/{key}", None)
                    out.pop(f"host_wall/{key}", None)
    for key in calls:
        chain, wall = out[f"host/{key}"], out[f"host_wall/{key}"]
        log(f"host {key}: {statistics.median(chain) * 1e6:.0f} us median ({min(chain) * 1e6:.0f}-"
            f"{max(chain) * 1e6:.0f} over {len(chain)} windows), wall {statistics.median(wall) * 1e6:.0f} us")
    return out


def _add_norm_calls(torch) -> dict:
    """The models' add + norm as `models.stack` builds it (fused where mamba_ssm's Triton norm runs),
    on the built-in models' width, with a residual (every block but the first has one)."""
    from models.stack import AddNorm, fused_norm_available  # torch
    spec = BUILTIN_MODELS["mamba2-hybrid-8b"]
    device = torch.device("cuda")
    norm = AddNorm(spec.block_norm, device=device, dtype=torch.bfloat16, fused=fused_norm_available(device))
    norm.requires_grad_(False)
    x, r = randn(torch, 1, HOST_TOKENS, spec.d_model), randn(torch, 1, HOST_TOKENS, spec.d_model)
    step_x, step_r = randn(torch, 1, 1, spec.d_model), randn(torch, 1, 1, spec.d_model)
    return {f"{ADD_NORM_CHAIN}/prefill": lambda: norm(x, r), f"{ADD_NORM_CHAIN}/decode": lambda: norm(step_x, step_r)}


def host_figures(samples: dict[str, list[float]]) -> dict[str, float]:
    """The model's figure for each chain: the median of its samples."""
    return {key: statistics.median(values) for key, values in samples.items() if values}


def lease_probe(torch) -> dict:
    """This lease's host speed, taken beside its chains (`perfbench.measure.host_probe`)."""
    return host_probe(torch, "cuda", when=utc_now())


def with_host_samples(data: dict, samples: dict[str, list[float]], probe: dict | None = None) -> dict:
    """`data` with its layer host chains replaced by this lease's windows (`launch` gets their medians),
    this lease's host `probe` as its only one, and no record of earlier leases' host figures."""
    provenance = {k: v for k, v in data.get("provenance", {}).items() if k not in HOST_PROVENANCE}
    out = {**data, "launch": {**data["launch"], **host_figures(samples)}, "host_samples": samples,
           "provenance": provenance}
    out.pop(HOST_PROBES, None)
    return {**out, HOST_PROBES: [probe]} if probe else out


def with_more_host_samples(data: dict, samples: dict[str, list[float]], probe: dict | None = None) -> dict:
    """`data` with this lease's windows of some chains (a new layer's) beside its others: those chains'
    samples and figures replaced, the rest kept, this lease's `probe` added to the file's probes with
    the chains it timed (`chains`: a later run's host speed for those chains is read against it alone,
    analytic.host_chain.with_probed_host)."""
    out = {**data, "launch": {**data["launch"], **host_figures(samples)},
           "host_samples": {**data.get("host_samples", {}), **samples}}
    if not probe:
        return out
    chains = sorted({chain for chain in map(chain_of, samples) if chain})
    return {**out, HOST_PROBES: [*data.get(HOST_PROBES, []), {**probe, "chains": chains}]}


def pooled_host_figures(data: dict, others: dict[str, dict]) -> dict:
    """`data` with each host figure (layer launch chains, eager launch cost, graph launch latency) the
    median over the samples of `data` and of the `others` calibrations of the same GPU kind: a file
    with `host_samples` gives all its windows, an older one its single figure. Device-side figures
    stay this lease's own."""
    launch = dict(data["launch"])
    pooled = {key: _samples_of(data, key) for key in launch if is_host_figure(key)}
    leases = pool_sources(data, "host", HOST_POOLED_FROM)
    for name, other in others.items():
        add_pool_sources(name, data, other, "host", HOST_POOLED_FROM, leases)  # an earlier pool's leases too
        for key in pooled:
            pooled[key].extend(_samples_of(other, key))
    launch.update(host_figures(pooled))
    samples = {key: values for key, values in pooled.items() if key.startswith(("host/", "host_wall/"))}
    provenance = {**{k: v for k, v in data.get("provenance", {}).items() if k not in HOST_PROVENANCE},
                  HOST_POOLED_FROM: leases}
    probes = [p for source in (data, *others.values()) for p in source.get(HOST_PROBES, [])]
    return {**data, "launch": launch, "host_samples": samples, "provenance": provenance,
            **({HOST_PROBES: probes} if probes else {})}


def _samples_of(data: dict, key: str) -> list[float]:
    stored = data.get("host_samples", {}).get(key)
    if stored:
        return [float(v) for v in stored]
    value = data.get("launch", {}).get(key)
    return [] if value is None else [float(value)]


def _window_s(chain_s: float, timing: TimingOptions, wall_calls: int) -> float:
    """One window of a chain: the rest, the harness's timed calls, then the back-to-back calls."""
    repeats = min(timing.max_repeats, max(timing.min_repeats, timing.target_s / max(chain_s, 1e-6)))
    return HOST_REST_S + (timing.warmup + repeats + wall_calls) * chain_s


def estimate_s(data: dict, ceil, ridge: float) -> float:
    """GPU seconds of sampling the chains `data` holds (its `launch` medians): the layers' and the add +
    norm's HOST_SAMPLES windows each, the models' MODEL_HOST_SAMPLES (plus building each 8B model, ~20 s)."""
    total = 0.0
    for key, chain_s in data.get("launch", {}).items():
        if not key.startswith("host/"):
            continue
        if key.split("/")[1] in PAPER_MODELS:
            total += MODEL_HOST_SAMPLES * _window_s(chain_s, MODEL_HOST_TIMING, MODEL_WALL_CALLS)
        else:
            total += HOST_SAMPLES * _window_s(chain_s, HOST_TIMING, WALL_CALLS)
    return total + 20.0 * len(PAPER_MODELS)
