"""Time of one operation: a roofline per op class, with ceilings from datasheet or calibration.

Every class is timed on the GPU as  t = kernels * t0 + max(bytes / bw, flops / rate)  where
  t0    the per-kernel floor: launch gap inside a CUDA graph plus the kernel's ramp-up/tail,
  bw    the bandwidth the class's kernels achieve on large inputs,
  rate  the arithmetic rate they achieve (tensor cores for GEMM/attention/SSD, FP32 otherwise).
Launched eagerly (prefill, eager decode), each kernel also costs `host_s` on the CPU; a sequence
of ops takes max(GPU sum, host sum), since the host runs ahead until the GPU starves it.
Datasheet mode uses the vendor peaks and a nominal launch gap for all classes: a plain roofline.
Calibrated mode takes t0, bw and rate per class from `perfbench calibrate`'s microbenchmarks, and
adds two class-specific physical terms:
  - GEMM: measured bf16 GEMM times over (M, N, K), interpolated between measured neighbours with a
    tile/wave physics model (analytic/gemm_model.py); without a table, the fitted roofline with
    tile (wave) quantization on 132 SMs.
  - attention decode: FlashAttention-2 streams the cache with B * KV-heads CTAs, times the split-KV
    count its heuristic picks (exactly, rounding included) when those are too few; each wave of CTAs
    streams at min(bw, CTAs * bw_per_cta), the busiest CTA's share sets the time, and a split call
    runs a second, latency-bound kernel that combines the splits (combine_s + splits * per split);
    each wave of CTAs also pays a fixed prologue/epilogue latency (wave_s: short split CTAs of one
    key block cannot hide loading q and writing their fp32 partials).
  - Mamba-1 selective scan: compute-bound at d_state 128; timed on its chunk-padded elements at
    a rate measured alone over sequence length and total tokens, per load path (even or uneven
    length): the length picks the thread configuration and how many chunks each block walks in
    turn; the token count sets how long the kernel runs, and long runs hold a power-capped clock.
    Interpolated log-log between measured lengths and token counts, clamped at the edges.
  - Mamba-2's SSD: the head-dim-tiled kernels' work grows as their tiles narrow, and the call slows
    once its fp32 chunk states outgrow a calibrated working set (analytic/families/ssd.py).
  - attention prefill: timed on the FLOPs of the 128x128 tiles actually computed (the causal
    diagonal costs full tiles), with wave quantization of its CTAs.
  - L2 write-back: a kernel's last stores are still dirty in L2 when it ends; a weight-streaming
    (memory-bound) GEMM after it writes them back to HBM while it streams, and takes longer
    (`step_op_times`: the state stored since the last GEMM, up to what L2 holds dirty, at a rate
    measured by `perfbench calibrate`: a store-only kernel, then a GEMV).
  - decode step: a CUDA-graph step adds its replay boundary and, for each further kernel, what it
    costs in a step beyond alone, more for kernels touching a tensor the weight stream evicted
    (`step_overhead_s`, measured by `perfbench calibrate` on chains of GEMVs and small kernels).
  - board power: a sequence of ops shares one power limit and one board clock; the kernels that hold
    the limit alone (compute-bound GEMMs, FlashAttention's prefill), calibrated back to back at it,
    run at the clock the whole sequence's power allows (`power_capped_s`, `clock_scales`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from analytic.calibration import Calibration
from analytic.families import attention_decode as flash_decode
from analytic.families import attention_prefill as flash_prefill
from analytic.families import ssd as ssd_family
from analytic.families.chunk_programs import (CHUNK_LATENCY, CTAS_PER_SM, PROGRAM_BUDGET, program_fill,
                                              sequence_program_time, sequence_programs)
from analytic.families.selective_scan import BLOCK_SLOTS, STATE_OVERHEAD, scan_work
from analytic.families.state_update import wave_latency_s
from analytic.gemm_model import GEMM_TILE_M, GEMM_TILE_N, GemmModel, build_gemm_model
from analytic.hardware import GPUSpec
from analytic.ops import (ATTN_DECODE, ATTN_PREFILL, ELEMENTWISE, FAMILIES, GEMM, OP_CLASSES, SELECTIVE_SCAN, SSD,
                          STATE_UPDATE, Op, cold_kernels, gemm, written_bytes)

TENSOR_CLASSES = (GEMM, ATTN_PREFILL, SSD)
# Bound codes (int8 arrays are far cheaper than strings over large grids); labels by index.
COMPUTE, MEMORY, LAUNCH = 0, 1, 2
BOUND_LABELS = ("compute", "memory", "launch")
EXTRA_PARAMS = ("bw_per_cta_bytes_s", "bw_nosplit_bytes_s", "ctas_per_sm", "combine_s", "combine_per_split_s", "wave_s", "flops_s_512", "flops_s_1024", "flops_s_2048",
                "flops_s_uneven", "rate_table", STATE_OVERHEAD, BLOCK_SLOTS, flash_prefill.SCORE_RATE,
                *ssd_family.PARAMS, flash_decode.CTA_SCORE_S, PROGRAM_BUDGET, CHUNK_LATENCY)


@dataclass(frozen=True)
class ClassCeiling:
    t0_s: float
    bw_bytes_s: float
    flops_s: float
    extra: dict = field(default_factory=dict)
    host_s: float = 10e-6  # host cost per kernel when launched eagerly (PyTorch dispatch, Triton launcher)


@dataclass(frozen=True)
class Ceilings:
    """Everything the timing needs for one GPU, resolved once per prediction."""

    gpu: GPUSpec
    calibrated: bool
    classes: dict
    gemm_table: dict  # (n, k) -> (log m array, log t array)
    graph_kernel_s: float
    eager_kernel_s: float
    copy_bw_bytes_s: float
    gemm_peak_flops: float
    graph_replay_s: float = 0.0  # once per CUDA-graph replay (a decode step): launch to first kernel
    graph_launch_period_s: float = 0.0  # shortest replay-to-replay period the host can launch
    layer_host_s: dict = field(default_factory=dict)  # "name/phase" -> host chain inside one call's window
    layer_host_wall_s: dict = field(default_factory=dict)  # "name/phase" -> whole host chain (wall clock)
    # (name: a layer's path, the models' add + norm, or a paper model timed whole; perfbench/calibration/host.py)
    power_idle_w: float = 0.0  # board power with nothing running (0: no power model)
    power_limit_w: float = 0.0  # the power a big GEMM holds back to back (the limit, as enforced)
    gemm_burst_speedup: float = 1.0  # a big GEMM between idle gaps vs back to back at the limit
    class_power_w: dict = field(default_factory=dict)  # op class -> board power run back to back
    writeback_dirty_bytes: float = 0.0  # stores L2 still holds dirty when a kernel ends (0: no write-back term)
    writeback_bw_bytes_s: float = 0.0  # rate at which a following weight-streaming GEMM pays them
    step_base_s: float = 0.0  # a GPU-bound decode graph's replay boundary (0: add graph_replay_s instead)
    step_kernel_s: float = 0.0  # each kernel past the first two, its inputs still in L2
    step_cold_kernel_s: float = 0.0  # each kernel past the first two that touches a tensor living across steps
    gemm_unaligned: dict = field(default_factory=dict)  # (n, k, layout, alignment bytes) -> (log m, log time / aligned)
    gemm_relu_input: dict = field(default_factory=dict)  # (n, k) -> (log m, log time on a ReLU's output / dense)
    sustained: tuple = ()  # (elapsed s, slowdown) arrays: compute-bound work the longer a point runs
    class_clock_ratio: dict = field(default_factory=dict)  # op class -> its SM clock alone / a GEMM's, both at the limit
    max_clock_ratio: float = 0.0  # the board's top SM clock / a GEMM's at the limit (0: gemm_burst_speedup)
    gemm_model: GemmModel | None = None  # the measured grid over (M, N, K) and its physics (analytic.gemm_model)
    l2_resident: tuple = ()  # (bytes, saving s when resident, resident fraction) arrays: l2_resident_saving_s


def ceilings(gpu: GPUSpec, calibration: Calibration | None) -> Ceilings:
    if calibration is None:
        classes = {c: ClassCeiling(gpu.graph_kernel_s, gpu.mem_bw_bytes_s,
                                   gpu.peak_bf16_flops if c in TENSOR_CLASSES or c == ATTN_DECODE
                                   else gpu.peak_fp32_flops, {}, gpu.eager_kernel_s)
                   for c in OP_CLASSES}
        return Ceilings(gpu, False, classes, {}, gpu.graph_kernel_s, gpu.eager_kernel_s,
                        gpu.mem_bw_bytes_s, gpu.peak_bf16_flops)
    cal = calibration
    classes = {}
    for c in OP_CLASSES + tuple(f for f in FAMILIES if f in cal.op_classes):
        fitted = cal.op_classes.get(c, {})
        default_rate = cal.gemm_peak_flops if c in TENSOR_CLASSES else gpu.peak_fp32_flops
        extra = {k: v for k, v in fitted.items() if k in EXTRA_PARAMS}
        classes[c] = ClassCeiling(float(fitted.get("t0_s", cal.launch["graph_kernel_s"])),
                                  float(fitted.get("bw_bytes_s", cal.copy_bandwidth_bytes_s)),
                                  float(fitted.get("flops_s", default_rate)), extra,
                                  float(fitted.get("host_s", cal.launch["eager_kernel_s"])))
    model = build_gemm_model(cal.gemm, gpu.sm_count, cal.gemm_peak_flops, cal.copy_bandwidth_bytes_s)
    table = model.tables if model is not None else {}
    power = cal.power or {}
    ceil = Ceilings(gpu, True, classes, table, cal.launch["graph_kernel_s"], cal.launch["eager_kernel_s"],
                    cal.copy_bandwidth_bytes_s, cal.gemm_peak_flops,
                    # The per-replay figure of a one-kernel graph (launch to kernel, events around each
                    # replay, host-bound): the step overhead of calibrations without a `step` section.
                    cal.launch.get("graph_replay_s", 0.0),
                    cal.launch.get("graph_launch_period_s", 0.0),
                    {k[len("host/"):]: v for k, v in cal.launch.items() if k.startswith("host/")},
                    {k[len("host_wall/"):]: v for k, v in cal.launch.items() if k.startswith("host_wall/")},
                    float(power.get("idle_w", 0.0)), float(power.get("gemm_w", power.get("limit_w", 0.0))),
                    max(1.0, float(power.get("gemm_burst_speedup", 1.0))),
                    {c: float(power[f"{c}_w"]) for c in OP_CLASSES + FAMILIES if c != GEMM and f"{c}_w" in power},
                    float(cal.writeback.get("dirty_bytes", 0.0)), float(cal.writeback.get("bw_bytes_s", 0.0)),
                    *(float(cal.step.get(key, 0.0)) for key in ("base_s", "kernel_s", "cold_kernel_s")))
    ceil = replace(ceil, gemm_model=model)
    if cal.sustained:
        ceil = replace(ceil, sustained=(np.array(cal.sustained["elapsed_s"]), np.array(cal.sustained["slowdown"])))
    gemm_clock = float(power.get("gemm_clock_hz", 0.0))
    if gemm_clock > 0:  # SM clocks read while each family ran back to back (perfbench.calibration.power)
        clocks = {c: float(power[f"{c}_clock_hz"]) for c in OP_CLASSES + FAMILIES if f"{c}_clock_hz" in power}
        ceil = replace(ceil, class_clock_ratio={c: hz / gemm_clock for c, hz in clocks.items() if c != GEMM},
                       max_clock_ratio=max(clocks.values()) / gemm_clock)
    if cal.l2_resident:
        ceil = replace(ceil, l2_resident=_l2_resident_curve(cal.l2_resident))
    if cal.gemm_relu_input:
        ceil = replace(ceil, gemm_relu_input=_relu_input_ratios(cal.gemm_relu_input))
    return replace(ceil, gemm_unaligned=_unaligned_ratios(cal.gemm_unaligned, ceil)) if cal.gemm_unaligned else ceil


def _relu_input_ratios(samples) -> dict:
    """Per (N, K): log M and the log of the time on a ReLU's output over the time on dense input, never
    above 0 (zeros cannot draw more power than random values; a sample above is the board's noise)."""
    out: dict = {}
    for m, n, k, dense_s, relu_s in sorted(samples):
        out.setdefault((n, k), ([], []))
        out[(n, k)][0].append(np.log(m))
        out[(n, k)][1].append(min(0.0, np.log(relu_s / dense_s)))
    return {key: (np.array(ms), np.array(rs)) for key, (ms, rs) in out.items()}


def relu_input_ratio(op: Op, code: np.ndarray, ceil: Ceilings) -> np.ndarray:
    """How much less time a GEMM fed a ReLU's output takes than on dense input, as it holds the power
    limit (burstable_gemm): the measured ratio of the nearest measured shape (nearest_gemm_shape),
    interpolated over log M and held at the ends. 1 for other GEMMs, weight-streaming ones (zeros save
    power, not bytes) and where unmeasured (perfbench/calibration/gemm_relu_input.py)."""
    ones = np.ones(np.shape(code))
    if not (ceil.gemm_relu_input and op.op_class == GEMM and op.shape.get("relu_input")):
        return ones
    log_m, log_r = ceil.gemm_relu_input[nearest_gemm_shape(op.shape["n"], op.shape["k"], ceil.gemm_relu_input)]
    r = np.exp(np.interp(np.log(np.maximum(op.shape["m"], 1.0)), log_m, log_r))
    return np.where(burstable_gemm(op, code), r, ones)


def _unaligned_ratios(samples, ceil: Ceilings) -> dict:
    """Measured time of GEMMs that lay the tokens out as a leading dimension not 16-byte aligned, over the
    same call aligned (the 16-byte sample of the nearest M, per token; else the aligned model's time):
    per (N, K, layout, alignment), log ratio over log M."""
    aligned = {}
    for m, n, k, layout, align, t in samples:
        if align == 16:
            aligned.setdefault((n, k, layout), []).append((m, t))
    out: dict = {}
    for m, n, k, layout, align, t in sorted(samples):
        if align == 16:
            continue
        same = aligned.get((n, k, layout))
        if same:
            m16, t16 = min(same, key=lambda s: abs(np.log(s[0] / m)))
            base = t16 * m / m16
        else:
            base = float(_gemm_time(gemm("_", np.array([m]), n, k), ceil)[0][0])
        out.setdefault((n, k, layout, align), ([], []))
        out[(n, k, layout, align)][0].append(np.log(m))
        out[(n, k, layout, align)][1].append(np.log(t / base))
    return {key: (np.array(ms), np.array(rs)) for key, (ms, rs) in out.items()}


def unaligned_ratio(m, n: int, k: int, layout: str, align, ceil: Ceilings) -> np.ndarray:
    """How much slower a GEMM runs when cuBLAS cannot use its 16-byte-aligned kernels: the measured ratio
    of the same layout and alignment at the same (N, K) (else the measured shape nearest in N x K),
    interpolated over log M and held at the ends. 1 where aligned or unmeasured."""
    align = np.broadcast_to(np.asarray(align), np.shape(m))
    ratio = np.ones(np.shape(m))
    for a in np.unique(align):
        keys = [key for key in ceil.gemm_unaligned if key[2] == layout and key[3] == a]
        if a >= 16 or not keys:
            continue
        near = min(keys, key=lambda key: (abs(np.log(key[0] * key[1] / (n * k))), key))
        log_m, log_r = ceil.gemm_unaligned[near]
        r = np.exp(np.interp(np.log(np.maximum(m, 1.0)), log_m, log_r))
        ratio = np.where(align == a, r, ratio)
    return ratio


def _roofline(op: Op, c: ClassCeiling, flops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mem_s = op.bytes_ / c.bw_bytes_s
    cmp_s = flops / c.flops_s
    return np.maximum(mem_s, cmp_s), np.where(cmp_s > mem_s, COMPUTE, MEMORY)


def nearest_gemm_shape(n: int, k: int, table: dict) -> tuple[int, int]:
    """The measured (N, K) closest to (n, k) in log space: the stand-in for a shape off the table."""
    return min(table, key=lambda nk: (abs(np.log(nk[0] / n)) + abs(np.log(nk[1] / k)), nk))


def _gemm_time(op: Op, ceil: Ceilings) -> tuple[np.ndarray, np.ndarray]:
    c = ceil.classes[GEMM]
    m, n, k = op.shape["m"], op.shape["n"], op.shape["k"]
    mem_s = op.bytes_ / c.bw_bytes_s
    if ceil.calibrated and ceil.gemm_table:
        t = ceil.gemm_model.time_s(m, n, k)  # measured neighbours in (M, N, K), with physics between
        if ceil.gemm_unaligned and "ld_alignment" in op.shape:
            t = t * unaligned_ratio(m, n, k, op.shape["ld_layout"], op.shape["ld_alignment"], ceil)
        cmp_s = op.flops / ceil.gemm_peak_flops
        code = np.where(cmp_s > mem_s, COMPUTE, MEMORY)
        return t * relu_input_ratio(op, code, ceil), code
    if ceil.calibrated:
        # Tile and wave quantization: a partly filled tile or wave costs a full one.
        tiles = np.ceil(m / GEMM_TILE_M) * np.ceil(n / GEMM_TILE_N)
        sms = ceil.gpu.sm_count
        padded = np.ceil(tiles / sms) * sms * GEMM_TILE_M * GEMM_TILE_N * 2.0 * k
        cmp_s = np.maximum(op.flops, padded) / c.flops_s
    else:
        cmp_s = op.flops / c.flops_s
    return c.t0_s * op.kernels + np.maximum(mem_s, cmp_s), np.where(cmp_s > mem_s, COMPUTE, MEMORY)


def _attention_prefill_time(op: Op, ceil: Ceilings) -> tuple[np.ndarray, np.ndarray]:
    c = ceil.classes[ATTN_PREFILL]
    if not ceil.calibrated:
        t, bound = _roofline(op, c, op.flops)
        return c.t0_s + t, bound
    cmp_s = attention_prefill_compute_s(op, prefill_slots(op, c.extra.get("ctas_per_sm", 1.0), ceil.gpu), c.flops_s,
                                        c.extra.get(flash_prefill.SCORE_RATE))
    mem_s = op.bytes_ / c.bw_bytes_s
    return c.t0_s + np.maximum(cmp_s, mem_s), np.where(cmp_s > mem_s, COMPUTE, MEMORY)


def prefill_slots(op: Op, ctas_per_sm: float, gpu: GPUSpec) -> np.ndarray:
    """FlashAttention prefill's CTA slots: the calibrated CTAs per SM, capped by the shared memory a
    CTA of this head dim holds (analytic.families.attention_prefill)."""
    if "head_dim" not in op.shape:
        return gpu.sm_count * ctas_per_sm
    return gpu.sm_count * flash_prefill.ctas_per_sm(op.shape["head_dim"], ctas_per_sm, gpu.smem_per_sm_bytes)


def attention_prefill_compute_s(op: Op, slots, flops_s: float, score_rate: float | None = None) -> np.ndarray:
    """Causal FlashAttention-2 prefill's compute time on `slots` CTA slots at aggregate `flops_s`
    (and, where calibrated over head dims, `score_rate` softmax score elements per second).

    One CTA per (sequence, head, 128-row block); row block i computes i + 1 tiles under the causal
    mask, so the kernel lasts as long as its busiest slot, not its average one."""
    n = op.shape["n_tiles"]
    return (causal_makespan_tiles(op.shape["ctas"] / n, n, slots) * slots
            * flash_prefill.tile_seconds(op, flops_s, score_rate))


def causal_makespan_tiles(groups: np.ndarray, n: np.ndarray, slots: float) -> np.ndarray:
    """Tiles computed by the busiest CTA slot in causal FlashAttention-2 prefill.

    `groups` (batch x heads) each launch `n` row-block CTAs of n, n-1, ..., 1 tiles, handed to
    `slots` CTA slots as they free up. With no more CTAs than slots the longest CTA sets the time;
    otherwise the average load plus half a longest CTA for the ragged finish (within 2 % of a
    list-scheduling simulation at median over 32-1024 groups x 1-128 blocks on 132 slots).
    """
    groups, n = np.asarray(groups, dtype=np.float64), np.asarray(n, dtype=np.float64)
    average = groups * n * (n + 1) / 2 / slots
    return np.where(groups * n <= slots, n, np.maximum(n, average + n / 2))


FLASH_MAX_SPLITS = 128  # flash_api.cpp's cap on split-KV partitions


def flash_num_splits(batch_heads_mblocks: np.ndarray, n_blocks: np.ndarray, sm_count: int) -> np.ndarray:
    """Split-KV count of a FlashAttention-2 forward call, exactly as its heuristic picks it
    (flash_api.cpp `num_splits_heuristic`, called with 2 x the SM count as slots): no split once
    batch x heads x query blocks fill 80 % of the slots; otherwise, among split counts that change
    the key blocks per split, the smallest whose wave efficiency reaches 85 % of the best one.

    The rounding matters: at 4K context 8 KV heads get 33 splits of one block each, while 32 heads
    get 7 at 3K and 33 at 4K, and the combine kernel's cost follows the split count. So predicted
    attention decode time is not monotone in batch or context, as measured (H100: 40 us at B=2,
    6K context, 36 us at B=3).
    """
    slots = 2.0 * sm_count
    bhm, nb = np.broadcast_arrays(np.asarray(batch_heads_mblocks, dtype=np.float64),
                                  np.maximum(np.ceil(np.asarray(n_blocks, dtype=np.float64)), 1.0))
    flat_bhm, flat_nb = bhm.ravel()[None, :], nb.ravel()[None, :]
    s = np.arange(1.0, FLASH_MAX_SPLITS + 1.0)[:, None]
    allowed = s <= np.minimum(min(FLASH_MAX_SPLITS, slots), flat_nb)
    # 64 blocks in 12 splits is 11 splits of 6 anyway: only counts that change blocks per split count.
    eligible = (s == 1.0) | (np.ceil(flat_nb / s) != np.ceil(flat_nb / np.maximum(s - 1.0, 1.0)))
    waves = (flat_bhm * s / slots).astype(np.float32)  # the heuristic computes in float
    eff = np.where(allowed & eligible, waves / np.ceil(waves), 0.0)
    pick = np.argmax(eff >= 0.85 * eff.max(axis=0), axis=0) + 1.0
    return np.where(bhm.ravel() >= 0.8 * slots, 1.0, pick).reshape(bhm.shape)


def attention_decode_plan(op: Op, sm_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(splits, CTAs, bytes the busiest CTA streams) of one attention decode call.

    One CTA per (sequence, KV head, query block, split); a split covers ceil(blocks / splits) key
    blocks of 256/128/64 keys (head dim <= 64 / 128 / more), the last one fewer."""
    ctas = np.asarray(op.shape["ctas"], dtype=np.float64)
    ctx = np.asarray(op.shape["seqlen"], dtype=np.float64)
    kv = np.asarray(op.shape.get("kv_bytes", op.bytes_), dtype=np.float64)
    if "head_dim" not in op.shape:
        return np.ones_like(ctas), ctas, kv / np.maximum(ctas, 1.0)
    block_n = 256 if op.shape["head_dim"] <= 64 else (128 if op.shape["head_dim"] <= 128 else 64)
    n_blocks = np.ceil(ctx / block_n)
    splits = flash_num_splits(ctas, n_blocks, sm_count)
    keys = np.minimum(np.ceil(n_blocks / splits) * block_n, ctx)
    return splits, ctas * splits, kv / np.maximum(ctas, 1.0) * keys / ctx


def attention_decode_stream_s(splits, n_ctas, per_cta_bytes, cap_split: float, cap_nosplit: float,
                              per_cta_bw: float | None, slots: float) -> np.ndarray:
    """Seconds the attention decode kernel streams its cache: waves of `slots` resident CTAs, each
    CTA moving `per_cta_bytes`; a wave streams at min(cap, its CTAs x per-CTA rate), so a partly
    filled last wave runs at a lower rate. The split-KV and plain kernels reach different caps."""
    cap = np.where(splits > 1, cap_split, cap_nosplit)
    if per_cta_bw is None:
        return n_ctas * per_cta_bytes / cap
    full = np.floor(n_ctas / slots)
    rem = n_ctas - full * slots
    return (full * per_cta_bytes * slots / np.minimum(cap, slots * per_cta_bw)
            + per_cta_bytes * rem / np.minimum(cap, np.maximum(rem, 1.0) * per_cta_bw))


def attention_decode_latency_counts(splits, n_ctas, slots: float) -> np.ndarray:
    """How many times each fixed latency of an attention decode call is paid, stacked on the last
    axis in the order of ATTN_DECODE_LATENCIES: once per call (launch floor), once per split call
    (the combine kernel), once per split of a split call, once per wave of resident CTAs."""
    split = (np.asarray(splits) > 1).astype(np.float64)
    return np.stack(np.broadcast_arrays(np.ones_like(split), split, split * splits, np.ceil(n_ctas / slots)),
                    axis=-1)


ATTN_DECODE_LATENCIES = ("t0_s", "combine_s", "combine_per_split_s", "wave_s")


def _attention_decode_time(op: Op, ceil: Ceilings) -> tuple[np.ndarray, np.ndarray]:
    c = ceil.classes[ATTN_DECODE]
    if not ceil.calibrated:  # datasheet: the plain roofline
        t, bound = _roofline(op, c, op.flops)
        return c.t0_s + t, bound
    splits, n_ctas, per_cta = attention_decode_plan(op, ceil.gpu.sm_count)
    slots = ceil.gpu.sm_count * c.extra.get("ctas_per_sm", 1.0)
    kv = op.shape.get("kv_bytes", op.bytes_)
    cap_nosplit = c.extra.get("bw_nosplit_bytes_s", c.bw_bytes_s)
    per_cta_bw = c.extra.get("bw_per_cta_bytes_s")
    if per_cta_bw and c.extra.get(flash_decode.CTA_SCORE_S, 0.0) > 0 and "head_dim" in op.shape:
        per_cta_bw = flash_decode.per_cta_rate(per_cta_bw, c.extra[flash_decode.CTA_SCORE_S], op.shape["head_dim"])
    kv_s = attention_decode_stream_s(splits, n_ctas, per_cta, c.bw_bytes_s, cap_nosplit, per_cta_bw, slots)
    latencies = np.array([c.t0_s] + [c.extra.get(k, 0.0) for k in ATTN_DECODE_LATENCIES[1:]])
    latency_s = attention_decode_latency_counts(splits, n_ctas, slots) @ latencies
    mem_s = kv_s + (op.bytes_ - kv) / c.bw_bytes_s  # the cache streams at the achieved rate; q and o are tiny
    cmp_s = op.flops / c.flops_s
    return latency_s + np.maximum(mem_s, cmp_s), np.where(cmp_s > mem_s, COMPUTE, MEMORY)


def ssd_time(op: Op, c: ClassCeiling, sm_count: int) -> tuple[np.ndarray, np.ndarray]:
    """A chunked-scan kernel (class SSD): its roofline on the work its head-dim tiles and causal row blocks
    run (analytic.families.ssd), stretched where its
    sequence-long programs leave SM slots idle (Mamba-3's chunk kernel, fla's state passing:
    analytic.families.chunk_programs), slowed once its fp32 chunk states outgrow the calibrated working
    set (analytic.families.ssd); without those terms, the plain roofline."""
    work = op.flops * ssd_family.work_factor(op, c.extra)
    roof, bound = _roofline(op, c, work)
    if PROGRAM_BUDGET in c.extra and sequence_programs(op):
        programs = sequence_program_time(op, work, c.flops_s, c.extra[PROGRAM_BUDGET],
                                         c.extra.get(CHUNK_LATENCY, 0.0), sm_count)
        memory = op.bytes_ / c.bw_bytes_s
        roof, bound = np.maximum(programs, memory), np.where(programs > memory, COMPUTE, MEMORY)
    else:
        roof = roof * program_fill(op, c.extra.get(CTAS_PER_SM, 1.0), sm_count)
    slow = ssd_family.working_set_factor(op, c.extra.get(ssd_family.WORKING_SET_BYTES, 0.0),
                                         c.extra.get(ssd_family.WORKING_SET_SLOWDOWN, 0.0))
    return (c.t0_s * op.kernels + roof) * slow, bound


def host_time(op: Op, ceil: Ceilings) -> float:
    """Host seconds to launch this op eagerly (the GPU waits on it when kernels are short)."""
    return op_ceiling(op, ceil).host_s * op.kernels


def table_rate(entry: dict, seqlen, tokens) -> np.ndarray:
    """Rate at (seqlen, tokens) from a measured table {"seqlen": [...], "tokens": [[...]], "rate": [[...]]}
    (one token list per length, both ascending): linear in log tokens at the two nearest measured
    lengths, then linear in log length between them; clamped to the measured range."""
    L, T = np.broadcast_arrays(np.asarray(seqlen, dtype=np.float64), np.asarray(tokens, dtype=np.float64))
    log_l = np.log(np.maximum(L, 1.0)).ravel()
    log_t = np.log(np.maximum(T, 1.0)).ravel()
    grid = np.log(np.asarray(entry["seqlen"], dtype=np.float64))
    per_length = np.stack([np.interp(log_t, np.log(np.asarray(ts, dtype=np.float64)), np.asarray(rs, dtype=np.float64))
                           for ts, rs in zip(entry["tokens"], entry["rate"])])
    if len(grid) == 1:
        return per_length[0].reshape(L.shape)
    i = np.clip(np.searchsorted(grid, log_l) - 1, 0, len(grid) - 2)
    w = np.clip((log_l - grid[i]) / (grid[i + 1] - grid[i]), 0.0, 1.0)
    cols = np.arange(log_l.size)
    return ((1.0 - w) * per_length[i, cols] + w * per_length[i + 1, cols]).reshape(L.shape)


def _selective_scan_time(op: Op, ceil: Ceilings) -> tuple[np.ndarray, np.ndarray]:
    c = ceil.classes[SELECTIVE_SCAN]
    if not ceil.calibrated or "padded_elements" not in op.shape:
        roof, bound = _roofline(op, c, op.flops)
        return c.t0_s + roof, bound
    chunk = op.shape["chunk"]
    even = op.shape.get("even", True)
    table = c.extra.get("rate_table")
    if table and "seqlen" in op.shape:
        L, T = op.shape["seqlen"], op.shape["tokens"]
        paths = {p: table_rate(table[p], L, T) for p in ("even", "uneven") if p in table}
        fallback = next(iter(paths.values()))
        rate = np.where(np.asarray(even, dtype=bool), paths.get("even", fallback), paths.get("uneven", fallback))
    else:  # older calibrations: one rate per thread configuration
        rate = np.select([~np.asarray(even, dtype=bool), chunk == 512, chunk == 1024],
                         [c.extra.get("flops_s_uneven", c.flops_s), c.extra.get("flops_s_512", c.flops_s),
                          c.extra.get("flops_s_1024", c.flops_s)],
                         c.extra.get("flops_s_2048", c.flops_s))
    cmp_s = scan_work(op, c.extra.get(STATE_OVERHEAD, 0.0), c.extra.get(BLOCK_SLOTS, 0.0)) / rate
    mem_s = op.bytes_ / c.bw_bytes_s
    return c.t0_s + np.maximum(cmp_s, mem_s), np.where(cmp_s > mem_s, COMPUTE, MEMORY)


def step_op_times(counted: list, ceil: Ceilings) -> list:
    """`op_time` of each op of a step, in execution order (`counted`: CountedOp-likes with .op and
    .group), with the L2 write-back a memory-bound GEMM pays for the state stored before it."""
    return l2_writeback(counted, [op_time(c.op, ceil) for c in counted], ceil)


def l2_writeback(counted: list, times: list, ceil: Ceilings) -> list:
    """`times` (each op's `op_time` alone, in execution order) with the L2 write-back a memory-bound
    GEMM pays for the state stored before it.

    L2 is write-back: the last stores of a kernel stay dirty in L2 after it ends, up to
    `writeback_dirty_bytes`. A GEMM that streams its weights from HBM (small M: every decode
    projection) evicts them, so the HBM writes of the kernels before it land inside its own time
    (`analytic.ops.written_bytes` says which stores count):
    measured on the H100, a 4096 x 8192 GEMV runs 7 us longer after a kernel that stored 32 MB or
    more, ~0.35 us per MB below that, and Mamba's out_proj runs 3.6-6.9 us longer in decode steps
    than alone, right after the SSM state update stored the state. A compute-bound GEMM has spare
    bandwidth and hides them; a GEMM's own weight stream leaves L2 clean, so the count restarts
    after it. Each layer kind's ops start clean."""
    if not (ceil.calibrated and ceil.writeback_dirty_bytes > 0 and ceil.writeback_bw_bytes_s > 0):
        return times
    out, dirty, group = [], 0.0, object()
    for c, (t, code) in zip(counted, times):
        if c.group != group:
            dirty, group = 0.0, c.group
        if c.op.op_class == GEMM:
            t = t + np.where(code == MEMORY, np.minimum(dirty, ceil.writeback_dirty_bytes) / ceil.writeback_bw_bytes_s, 0.0)
            dirty = 0.0  # its weight stream has evicted (written back) what was dirty
        else:
            dirty = np.minimum(dirty + written_bytes(c.op), ceil.writeback_dirty_bytes)
        out.append((t, code))
    return out


def graph_step_s(gpu_s, ops, ceil: Ceilings):
    """A decode step replayed as one CUDA graph: its ops' GPU time plus what the graph adds (`step_overhead_s`),
    and never shorter than the period at which the host can launch replays."""
    return np.maximum(gpu_s + step_overhead_s(ops, ceil), ceil.graph_launch_period_s)


def step_overhead_s(ops, ceil: Ceilings) -> float:
    """What one decode graph adds to its ops' calibrated times when the GPU is the bottleneck: the replay
    boundary, and for each kernel past the first two its cost in a step beyond its cost alone (more
    where it touches a tensor the weight stream evicted, `analytic.ops.cold_kernels`), as measured
    by `perfbench calibrate` on chains of GEMVs and small kernels (perfbench/calibration/step.py).
    A calibration without those chains adds the one-kernel replay figure once per step."""
    if not (ceil.calibrated and ceil.step_base_s > 0):
        return ceil.graph_replay_s
    kernels = sum(c.op.kernels * c.count for c in ops)
    cold = sum(cold_kernels(c.op) * c.count for c in ops)
    further = np.maximum(kernels - 2, 0)  # arrays where an op's kernel count varies over the grid
    cold = np.minimum(cold, further)
    overhead = ceil.step_base_s + ceil.step_kernel_s * (further - cold) + ceil.step_cold_kernel_s * cold
    return overhead - l2_resident_saving_s(ops, ceil, cold)


# Ops that stream a tensor living across decode steps (weights, the KV cache, an SSM state): the ones
# whose calibrated decode times were taken cold, on rotated copies.
STREAMING_CLASSES = (GEMM, ATTN_DECODE, STATE_UPDATE)


def l2_resident_saving_s(ops, ceil: Ceilings, cold_kernels_in_step: float = 0.0):
    """What a decode graph replayed back to back saves when its whole working set stays in L2 (a layer
    timed alone at small width; never a whole model, whose weights stream): each streaming op reads
    from L2 what its calibrated (cold) time read from HBM, saving what a GEMV of its bytes saved in the
    `l2_resident` samples, and its cold kernels run warm; all scaled by how resident a working set of
    the step's bytes stayed there. 0 without those samples. It is part of the step's overhead, so the
    CUDA-graph step row of `predict --breakdown` carries it (negative where it outweighs the replay's cost)."""
    if not ceil.l2_resident:
        return 0.0
    sizes, saving, resident = ceil.l2_resident
    step_bytes = sum(np.asarray(c.op.bytes_, dtype=np.float64) * c.count for c in ops)
    fraction = np.interp(step_bytes, sizes, resident)
    streaming = 0.0
    for c in ops:
        if c.op.op_class in STREAMING_CLASSES:
            b = np.asarray(c.op.bytes_, dtype=np.float64)
            per_op = np.interp(np.log(np.maximum(b, sizes[0])), np.log(sizes), saving) * np.minimum(b / sizes[0], 1.0)
            streaming = streaming + per_op * c.count
    warm_kernels = cold_kernels_in_step * max(ceil.step_cold_kernel_s - ceil.step_kernel_s, 0.0)
    return fraction * (streaming + warm_kernels)


def _l2_resident_curve(section: dict) -> tuple:
    """(bytes, saving when wholly resident, resident fraction) from the `l2_resident` samples: a sample's
    saving over its own resident fraction, where at least half resident (beyond, the largest such)."""
    samples, resident = section["samples"], np.asarray(section["resident"], dtype=np.float64)
    sizes = np.array([s["bytes"] for s in samples])
    saving = np.array([max(s["cold_s"] - s["warm_s"], 0.0) for s in samples])
    held = resident >= 0.5
    full = np.where(held, saving / np.maximum(resident, 0.5), np.nan)
    if held.any():
        full = np.where(held, full, np.interp(sizes, sizes[held], full[held]))
    else:
        full = np.zeros_like(sizes)
    return sizes, full, resident


def by_family(op: Op, table: dict, default):
    """An op's entry in a per-class table: its kernel family's where the table has one, else its
    class's, else `default` (ceilings, powers and clocks are all calibrated so)."""
    family = op.shape.get("family") if op.shape else None
    if family in table:
        return table[family]
    return table.get(op.op_class, default)


def op_power_w(op: Op, code: np.ndarray, ceil: Ceilings) -> np.ndarray:
    """Board power while this op runs at its calibrated speed: a compute-bound GEMM holds the limit,
    a weight-streaming one draws what memory-bound kernels draw, other ops their kernel family's
    measured power where it has one (MHA's RoPE, 14 strided eager kernels, is no plain copy), else
    their class's. Unmeasured: the limit (no headroom claimed)."""
    limit = ceil.power_limit_w
    if op.op_class == GEMM:
        return np.where(code == COMPUTE, limit, ceil.class_power_w.get(ELEMENTWISE, limit))
    return np.asarray(by_family(op, ceil.class_power_w, limit), dtype=np.float64)


def burstable_gemm(op: Op, code: np.ndarray) -> np.ndarray:
    """A compute-bound GEMM on cuBLAS's 16-byte-aligned kernels: it holds the board at its power limit,
    so it runs faster when the rest of a point leaves power to spare. One with an unaligned leading
    dimension runs sm80 CUTLASS align2 kernels 2-6x slower: its kernel holds it, not the power limit
    (given the burst speedup, Mamba-1's unaligned prefill points came out 4-7 % fast)."""
    code = np.asarray(code)
    if op.op_class != GEMM:
        return np.zeros(code.shape, dtype=bool)
    aligned = np.asarray(op.shape.get("ld_alignment", 16) if op.shape else 16) >= 16
    return (code == COMPUTE) & aligned


# Dynamic power over the clock: 2 makes energy per unit of work grow in proportion to the clock. 1
# (constant energy per unit of work) gives no FlashAttention slowdown beside GEMMs; 3 (voltage rising
# with the clock) gives the MLP's GEMMs less gain than torch.profiler shows (README, board power).
DYNAMIC_POWER_EXPONENT = 2.0
BISECTION_STEPS = 40  # the shared clock to 1.5 / 2^40 ~ 1e-12 of a GEMM's capped clock


def clock_ratio(op: Op, code: np.ndarray, ceil: Ceilings) -> np.ndarray:
    """A power-limited op's SM clock alone at the limit over a compute-bound GEMM's on dense input (1
    where unmeasured): FlashAttention's prefill draws less per cycle, so the limit lets it run faster
    (H100: 1785-1815 against 1410-1425 MHz; H200: 1890-1920 against 1500-1508 MHz), and so does a GEMM
    fed a ReLU's half-zero output, by the inverse of its time ratio (relu_input_ratio: same cycles)."""
    if op.op_class == GEMM:
        return 1.0 / relu_input_ratio(op, code, ceil)
    return np.full(np.shape(code), float(by_family(op, ceil.class_clock_ratio, 1.0)))


def power_measured(op: Op, ceil: Ceilings) -> bool:
    """Whether the calibration measured this op's kernel family (or class) drawing power back to back:
    only then is it known to hold the limit, rather than assumed to (op_power_w's default)."""
    return by_family(op, ceil.class_power_w, None) is not None


def clock_scales(counted: list, times: list, ceil: Ceilings) -> list:
    """Per op (`counted` has .op and .count each, `times` the matching op_time results): its time in
    the sequence over its calibrated time alone.

    The board has one SM clock, and the power limit holds it down while kernels that draw the limit
    run. Those kernels (power_limited) are calibrated back to back at the limit, each at the clock it
    gets alone: r times a GEMM's (clock_ratio). In a sequence they share one clock x (in units of the
    GEMM's), set so the sequence's average power is the limit. A power-limited op then takes r / x of
    its calibrated time (a GEMM's clock at most gemm_burst_speedup: its rate between idle gaps) and
    draws idle + (limit - idle) (x / r)^a (a = DYNAMIC_POWER_EXPONENT); the other ops keep their
    calibrated time and measured power (op_power_w). Energy balance:
        sum_c t_c(x) ((x / r_c)^a - 1) = sum_o t_o (limit - P_o) / (limit - idle),
    whose left side grows with x: bisection, x capped at the board's top clock. So GEMMs beside
    memory-bound work run faster than alone, and FlashAttention beside GEMMs slower (torch.profiler on
    the H100, attention at 16 x 2048: GEMMs 5-9 % faster, flash 10-17 % slower than each alone).
    Without power figures in the calibration: every op at its calibrated time."""
    ones = [np.ones(np.shape(t)) for t, _code in times]
    if not (ceil.calibrated and ceil.power_limit_w > ceil.power_idle_w > 0):
        return ones
    dynamic = ceil.power_limit_w - ceil.power_idle_w
    limited, ratios, spare = [], [], 0.0
    for c, (t, code) in zip(counted, times):
        on = power_limited(c.op, code, ceil) & (c.op.op_class == GEMM or power_measured(c.op, ceil))
        limited.append(on)
        ratios.append(clock_ratio(c.op, code, ceil))
        watts = np.minimum(op_power_w(c.op, code, ceil), ceil.power_limit_w)
        spare = spare + np.where(on, 0.0, t * c.count * (ceil.power_limit_w - watts) / dynamic)
    if not any(np.any(on) for on in limited):
        return ones
    burst = ceil.gemm_burst_speedup
    top = max(ceil.max_clock_ratio or burst, burst)
    shape = np.broadcast(*[t for t, _code in times]).shape
    # The power-limited ops stacked (op x point), so each bisection step is a few array operations.
    held = [i for i, on in enumerate(limited) if np.any(on)]
    seconds = np.stack([np.broadcast_to(np.where(limited[i], times[i][0] * counted[i].count, 0.0), shape) for i in held])
    ratio = np.stack([np.broadcast_to(ratios[i], shape) for i in held])
    is_gemm = np.array([counted[i].op.op_class == GEMM for i in held]).reshape((-1,) + (1,) * len(shape))

    def speed(x, r, gemm):  # an op's rate at clock x over its rate alone at the limit
        return np.where(gemm, np.minimum(x, burst), x) / r

    def excess(x):  # energy above the limit's share at clock x, in units of (limit - idle) seconds
        return (seconds / speed(x, ratio, is_gemm) * ((x / ratio) ** DYNAMIC_POWER_EXPONENT - 1.0)).sum(axis=0) - spare

    lo, hi = np.full(shape, 1e-3), np.full(shape, float(top))
    capped = excess(hi) > 0
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        high = excess(mid) > 0
        hi, lo = np.where(high, mid, hi), np.where(high, lo, mid)
    x = np.where(capped, 0.5 * (lo + hi), top)
    return [np.where(on, 1.0 / speed(x, r, c.op.op_class == GEMM), 1.0) for c, on, r in zip(counted, limited, ratios)]


def scaled_seconds(counted: list, times: list, scales: list) -> np.ndarray:
    """A sequence's seconds with each op's calibrated time scaled as clock_scales gives."""
    return sum(t * c.count * s for c, (t, _code), s in zip(counted, times, scales))


def power_capped_s(counted: list, times: list, ceil: Ceilings) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, GEMM speedup) of a sequence of ops at the shared clock (clock_scales): the sum of each
    op's time in the sequence, and how much faster than alone its compute-bound GEMMs run."""
    scales = clock_scales(counted, times, ceil)
    seconds = scaled_seconds(counted, times, scales)
    speedup = np.ones(np.shape(seconds))
    for c, s in zip(counted, scales):
        if c.op.op_class == GEMM:
            speedup = np.maximum(speedup, 1.0 / s)
    return seconds, speedup


# `perfbench run`'s defaults (perfbench/commands/run.py): the timing protocol a prediction stands for.
RUN_TARGET_S, RUN_WARMUP, RUN_MIN_REPEATS, RUN_MAX_REPEATS = 0.2, 2, 5, 200
POWER_LIMITED_FRACTION = 0.95  # an op drawing this share of the limit or more is held by it


def median_call_elapsed_s(call_s) -> np.ndarray:
    """Seconds from a point's first call to its median timed call under `perfbench run`'s defaults
    (perfbench.measure.timing.measure): the first call, one warm-up call and a second while they took under
    half the target, then enough repeats for the target, 5 to 200."""
    call_s = np.maximum(np.asarray(call_s, dtype=np.float64), 1e-9)
    warmups = np.where(call_s < RUN_TARGET_S / 2, RUN_WARMUP, 1)
    repeats = np.clip(np.ceil(RUN_TARGET_S / call_s), RUN_MIN_REPEATS, RUN_MAX_REPEATS)
    return call_s * (1 + warmups + repeats / 2)


def sustained_slowdown(call_s, ceil: Ceilings) -> np.ndarray:
    """How much slower compute-bound work runs at a point's median timed call than in the state the
    GEMM grid is timed in (perfbench/calibration/sustained.py): 1 before the curve's first window, its last
    value after its last one; 1 without the calibration's `sustained` curve."""
    if not ceil.sustained:
        return np.ones_like(np.asarray(call_s, dtype=np.float64))
    elapsed, slowdown = ceil.sustained
    return np.interp(median_call_elapsed_s(call_s), elapsed, slowdown, left=1.0, right=slowdown[-1])


def power_limited(op: Op, code: np.ndarray, ceil: Ceilings) -> np.ndarray:
    """Whether an op holds the board at its power limit: aligned compute-bound GEMMs (burstable_gemm)
    and other compute-bound kernels drawing POWER_LIMITED_FRACTION of it or more (FlashAttention's
    prefill); scans, convolutions and memory-bound kernels draw less, and a board that has heated
    under the limit leaves their clock alone."""
    if op.op_class == GEMM:
        return burstable_gemm(op, code)
    return (code == COMPUTE) & (op_power_w(op, code, ceil) >= POWER_LIMITED_FRACTION * ceil.power_limit_w)


def sustained_s(seconds, counted: list, times: list, ceil: Ceilings, call_s=None) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, slowdown): the kernels' time with its power-limited share slowed by sustained_slowdown
    at a point whose calls take `call_s` (default: `seconds`; a sharded call also waits on collectives)."""
    total = sum(t * c.count for c, (t, _code) in zip(counted, times))
    limited = sum(np.where(power_limited(c.op, code, ceil), t * c.count, 0.0) for c, (t, code) in zip(counted, times))
    share = np.asarray(limited, dtype=np.float64) / np.maximum(np.asarray(total, dtype=np.float64), 1e-30)
    slowdown = sustained_slowdown(seconds if call_s is None else call_s, ceil)
    return seconds * (1.0 + share * (slowdown - 1.0)), slowdown


def op_ceiling(op: Op, ceil: Ceilings) -> ClassCeiling:
    """The ceilings an op runs at: its kernel family's where calibrated, else its class's."""
    return by_family(op, ceil.classes, None)


def op_time(op: Op, ceil: Ceilings) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, bound code) arrays for one op over the grid; codes index BOUND_LABELS."""
    if op.op_class == SELECTIVE_SCAN:
        t, bound = _selective_scan_time(op, ceil)
    elif op.op_class == GEMM:
        t, bound = _gemm_time(op, ceil)
    elif op.op_class == ATTN_PREFILL:
        t, bound = _attention_prefill_time(op, ceil)
    elif op.op_class == ATTN_DECODE:
        t, bound = _attention_decode_time(op, ceil)
    elif op.op_class == SSD:
        t, bound = ssd_time(op, op_ceiling(op, ceil), ceil.gpu.sm_count)
    else:
        c = op_ceiling(op, ceil)
        roof, bound = _roofline(op, c, op.flops)
        t = c.t0_s * op.kernels + roof
        if op.op_class == STATE_UPDATE:  # each wave of programs waits on its loads (families.state_update)
            t = t + wave_latency_s(op, c.extra.get("ctas_per_sm", 1.0), c.extra.get("wave_s", 0.0), ceil.gpu.sm_count)
    launch_s = op_ceiling(op, ceil).t0_s * op.kernels
    bound = np.where(launch_s > t - launch_s, LAUNCH, bound)
    return np.broadcast_to(t, op.flops.shape).astype(np.float64), np.broadcast_to(bound, op.flops.shape)
