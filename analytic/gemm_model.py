"""bf16 GEMM time over (M, N, K): a tile-and-wave physics model scaled by the measured grid.

cuBLAS/CUTLASS on Hopper computes C[M, N] in output tiles of TILE_M x TILE_N (64 rows at M <= 64, the
smallest wgmma), one CTA per tile on the 132 SMs; a partly filled tile and a partly filled last wave cost a full one. When the tiles are fewer
than the SMs it splits K (split-K / stream-K) to fill them, and each work unit pays a fixed prologue
(pipeline fill) and epilogue (write-out) worth `k_overhead` of K. At small M the kernel streams its
weights (bytes = weights + activations + output); at large M it runs at the tensor-core rate; the two
meet through a smooth maximum (p-norm of sharpness p), and every call pays a floor `t0_s`:

    t_phys = t0 + (mem^p + cmp^p)^(1/p)
    mem    = 2 (MK + NK + MN) / bw
    cmp    = waves x TILE_M TILE_N 2 (K / split + k_overhead) / (rate / SMs)

The parameters (t0, k_overhead, p, bw, rate) are fitted to the calibration's GEMM grid (least median
log error; rate and bw never above the measured ceilings). What the physics misses for one measured
(N, K), its kernel choice, is its efficiency: measured time / t_phys, per M. An unseen shape takes
the physics at its own (M, N, K) times the efficiency interpolated from its measured neighbours in
(log N, log K) (inverse-distance, nearest NEIGHBOURS) at its M; so a measured shape reproduces its
samples, and a shape between measured ones follows the physics between them. Then two guards:
  - monotone in work: never below a measured shape it contains in every dimension (M, N, K all
    smaller or equal), never above one that contains it;
  - never above the measured ceilings: at least flops / peak rate and bytes / best bandwidth measured.
Where the calibration has no grid, `datasheet` provenance and the plain roofline (analytic.efficiency).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import product

import numpy as np

GEMM_TILE_M, GEMM_TILE_N = 128, 256  # cuBLAS's large bf16 Hopper tile (sm90 128x256x64 kernels)
SMALL_TILE_M = 64  # a wgmma's smallest M: the tile of cuBLAS's small-M (decode) kernels
STEADY_GEMM_WAVES = 4  # output tiles per SM from which a GEMM's rate stops depending on M
NEIGHBOURS = 4  # measured (N, K) shapes an unseen one interpolates between
DTYPE_BYTES = 2
LATTICE_LOG_M = np.linspace(0.0, 24 * np.log(2.0), 24 * 16 + 1)  # M = 1 to 16M tokens, 16 points an octave

# Candidate physics parameters searched by fit_physics (per calibration, once: a few ms).
T0_CANDIDATES_S = (1e-6, 2e-6, 3e-6, 4e-6, 5e-6)
K_OVERHEAD_CANDIDATES = (0.0, 64.0, 128.0, 256.0, 512.0)
SHARPNESS_CANDIDATES = (1.5, 2.0, 3.0, 4.0, 8.0)
BW_FRACTIONS = (0.8, 0.85, 0.9, 0.95, 1.0)
RATE_FRACTIONS = (0.85, 0.9, 0.95, 1.0)

CALIBRATED, INTERPOLATED, EXTRAPOLATED, DATASHEET = "calibrated", "interpolated", "extrapolated", "datasheet"
PROVENANCES = (CALIBRATED, INTERPOLATED, EXTRAPOLATED, DATASHEET)


@dataclass(frozen=True)
class GemmPhysics:
    """The fitted tile/wave roofline of one GPU's bf16 GEMMs (module docstring)."""

    rate_flops_s: float
    bw_bytes_s: float
    sm_count: int
    t0_s: float
    k_overhead: float
    sharpness: float
    waves: bool = True  # whole waves of tiles (a partial last wave costs a full one); False: stream-K

    def compute_s(self, m, n, k):
        m, n, k = (np.asarray(x, dtype=np.float64) for x in (m, n, k))
        tile_m = np.where(m <= SMALL_TILE_M, SMALL_TILE_M, GEMM_TILE_M)
        tiles = np.ceil(m / tile_m) * np.ceil(n / GEMM_TILE_N)
        per_sm = self.rate_flops_s / self.sm_count
        if not self.waves:  # stream-K: the tiles' K iterations dealt evenly over the SMs
            return tile_m * GEMM_TILE_N * 2.0 * (np.maximum(tiles / self.sm_count, 1.0 / k) * k + self.k_overhead) / per_sm
        split = np.maximum(np.floor(self.sm_count / tiles), 1.0)  # split-K fills the SMs a few tiles leave idle
        waves = np.ceil(tiles * split / self.sm_count)
        return waves * tile_m * GEMM_TILE_N * 2.0 * (k / split + self.k_overhead) / per_sm

    def memory_s(self, m, n, k):
        return gemm_bytes(m, n, k) / self.bw_bytes_s

    def time_s(self, m, n, k):
        p = self.sharpness
        mem, cmp = self.memory_s(m, n, k), self.compute_s(m, n, k)
        return self.t0_s + (mem ** p + cmp ** p) ** (1.0 / p)

    def growth_s(self, m, n, k):
        """How time grows past the largest measured M: the smooth roofline of the work itself, without
        the floor or tile padding (many waves of a persistent kernel: linear in M once compute-bound,
        flat while the weight stream dominates, as the LM head's)."""
        p = self.sharpness
        mem = self.memory_s(m, n, k)
        cmp = 2.0 * np.asarray(m, dtype=np.float64) * n * k / self.rate_flops_s
        return (mem ** p + cmp ** p) ** (1.0 / p)


def gemm_bytes(m, n, k):
    """bf16 operands and output, each moved once."""
    m, n, k = (np.asarray(x, dtype=np.float64) for x in (m, n, k))
    return DTYPE_BYTES * (m * k + n * k + m * n)


def steady_gemm_times(m: np.ndarray, nk: tuple[int, int], log_t: np.ndarray, sm_count: int,
                      ridge: float) -> np.ndarray:
    """Log times of one (N, K) over M, cleaned of the power controller's noise.

    Once a compute-bound GEMM fills every SM for several waves its rate no longer depends on M, so the measured
    rates of those shapes differ only by the board's power state while each was timed (+-5 %, seen
    as one M running 10 % slower than both neighbours). They share their median rate. Then more
    rows never take less time: a dip below a smaller M's time is noise too.
    """
    n, k = nk
    waves = np.ceil(m / GEMM_TILE_M) * np.ceil(n / GEMM_TILE_N) / sm_count
    flops = 2.0 * m * n * k
    intensity = flops / (2.0 * (m * k + n * k + m * n))  # bf16 operands and output, each moved once
    steady = (waves >= STEADY_GEMM_WAVES) & (intensity >= 2.0 * ridge)
    if steady.sum() >= 3:
        rate = np.median(flops[steady] / np.exp(log_t[steady]))
        log_t = np.where(steady, np.log(flops / rate), log_t)
    return np.maximum.accumulate(log_t)


def monotone_tables(tables: dict) -> dict:
    """Each measured shape's times raised to those of every measured shape it contains (N and K both <=)
    at the same M: a bigger problem holds a smaller one, so where cuBLAS's kernel choice for the smaller
    one was the slower (H200: 1024 x 1024 at M = 1 in 7.5 us, 2048 x 2048 in 6.3 us) the bigger one would
    take that kernel's time too. So predictions stay monotone in work across the measured shapes."""
    out = {}
    for nk in sorted(tables, key=lambda s: (s[0] * s[1], s)):
        log_m, log_t = tables[nk]
        for (sn, sk), (sm, st) in out.items():
            if sn <= nk[0] and sk <= nk[1]:
                inside = log_m <= sm[-1] + 1e-9
                log_t = np.where(inside & (log_m >= sm[0] - 1e-9), np.maximum(log_t, np.interp(log_m, sm, st)), log_t)
        out[nk] = (log_m, np.maximum.accumulate(log_t))
    return out


def fit_physics(m, n, k, t, sm_count: int, peak_flops: float, peak_bw: float) -> GemmPhysics:
    """The candidate parameters whose physics has the least median |log error| over the samples
    (ties: the first, i.e. the smaller floor and overhead). A grid search, not a gradient fit: the
    wave quantisation makes the error piecewise constant in k_overhead."""
    m, n, k, t = (np.asarray(x, dtype=np.float64) for x in (m, n, k, t))
    log_t = np.log(t)
    best, best_err = None, np.inf
    for rate_f, bw_f, waves in product(RATE_FRACTIONS, BW_FRACTIONS, (True, False)):
        for k0 in K_OVERHEAD_CANDIDATES:
            base = GemmPhysics(peak_flops * rate_f, peak_bw * bw_f, sm_count, 0.0, k0, 1.0, waves)
            mem, cmp = base.memory_s(m, n, k), base.compute_s(m, n, k)
            for p in SHARPNESS_CANDIDATES:
                smooth = (mem ** p + cmp ** p) ** (1.0 / p)
                for t0 in T0_CANDIDATES_S:
                    err = np.median(np.abs(np.log(t0 + smooth) - log_t))
                    if err < best_err - 1e-12:
                        best, best_err = GemmPhysics(base.rate_flops_s, base.bw_bytes_s, sm_count, t0, k0, p, waves), err
    return best


@dataclass(frozen=True, eq=False)
class GemmModel:
    """Measured GEMM shapes of one calibration and the physics that interpolates between them.

    `log_grid` completes the measured shapes to the product of every measured N and every measured K
    (an unmeasured cell estimated by `scattered_time_s`), over every measured M, held non-decreasing
    along N, K and M. A query interpolates its cell's four corners bilinearly in log time, at the
    position the physics gives it between the cell's N (and K) edges at each M; since the corners grow
    with N and K and each position grows with its own dimension only, the time grows with N and K; it
    is held non-decreasing over a fixed log-M lattice, so it grows with M."""

    physics: GemmPhysics
    tables: dict  # (n, k) -> (log m array, cleaned log time array): each measured shape over M
    peak_flops: float  # the measured ceilings: no prediction runs faster than either
    peak_bw_bytes_s: float
    grid_n: np.ndarray = None  # measured N values, ascending
    grid_k: np.ndarray = None
    grid_log_m: np.ndarray = None  # every measured log M, ascending
    log_grid: np.ndarray = None  # (N, K, M) log seconds
    lattice_log_m: np.ndarray = None  # LATTICE_LOG_M and every measured log M

    def shapes(self) -> np.ndarray:
        return np.array(list(self.tables), dtype=np.float64).reshape(-1, 2)

    def _log_efficiency(self, nk, lm: np.ndarray) -> np.ndarray:
        log_m, log_t = self.tables[nk]
        phys = np.log(self.physics.time_s(np.exp(log_m), *nk))
        return np.interp(lm, log_m, log_t - phys)  # held at the ends

    def _table_time(self, nk, m: np.ndarray) -> np.ndarray:
        log_m, log_t = self.tables[nk]
        return np.exp(np.interp(np.log(m), log_m, log_t))

    def table_log_time(self, nk, lm: np.ndarray) -> np.ndarray:
        """A measured shape's cleaned log time at log M `lm`: interpolated between its samples; past the
        largest, its work's roofline carries on from the last one (physics.growth_s)."""
        log_m, log_t = self.tables[nk]
        past = log_t[-1] + np.log(self.physics.growth_s(np.exp(lm), *nk) / self.physics.growth_s(np.exp(log_m[-1]), *nk))
        return np.where(lm > log_m[-1], past, np.interp(lm, log_m, log_t))

    def scattered_time_s(self, m: np.ndarray, n: int, k: int) -> np.ndarray:
        """An unmeasured (N, K): the physics at its own shape times the efficiency (measured / physics)
        of the nearest measured shapes in (log N, log K), inverse-distance weighted, between the measured
        shapes it contains and those containing it (dominance_bounds)."""
        shapes = self.shapes()
        dist = np.maximum(np.hypot(np.log(shapes[:, 0] / n), np.log(shapes[:, 1] / k)), 1e-12)
        near = np.argsort(dist, kind="stable")[:NEIGHBOURS]
        weights = 1.0 / dist[near] ** 2
        weights = weights / weights.sum()
        lm = np.log(m)
        log_eff = sum(w * self._log_efficiency(tuple(int(x) for x in shapes[i]), lm) for w, i in zip(weights, near))
        t = self.physics.time_s(m, n, k) * np.exp(log_eff)
        lo, hi = self.dominance_bounds(m, n, k)
        return np.clip(t, lo, np.maximum(hi, lo))

    def _position(self, lm: np.ndarray, x: float, lo: float, hi: float, axis: int) -> np.ndarray:
        """Where x lies between a cell's edges lo and hi (0 to 1), as the physics times them at each M:
        along N at the median measured K, along K at the median measured N (so each position depends on
        its own dimension only). A partial tile costs what the physics says, not its share of N."""
        if hi <= lo:
            return np.zeros_like(lm)
        ref = (float(np.median(self.grid_k)) if axis == 0 else float(np.median(self.grid_n)))
        m = np.exp(lm)

        def log_p(v):
            return np.log(self.physics.time_s(m, v, ref) if axis == 0 else self.physics.time_s(m, ref, v))
        span = log_p(hi) - log_p(lo)
        geometric = np.log(x / lo) / np.log(hi / lo)
        pos = np.where(span > 1e-12, (log_p(x) - log_p(lo)) / np.where(span > 1e-12, span, 1.0), geometric)
        return np.clip(pos, 0.0, 1.0)

    def _corner(self, i: int, j: int, lm: np.ndarray) -> np.ndarray:
        row = self.log_grid[i, j]
        n, k = float(self.grid_n[i]), float(self.grid_k[j])
        past = row[-1] + np.log(self.physics.growth_s(np.exp(lm), n, k) / self.physics.growth_s(np.exp(self.grid_log_m[-1]), n, k))
        return np.where(lm > self.grid_log_m[-1], past, np.interp(lm, self.grid_log_m, row))

    def _log_curve(self, n: float, k: float) -> np.ndarray:
        """log seconds of (n, k) at every lattice M, non-decreasing."""
        lm = self.lattice_log_m
        gn, gk = self.grid_n, self.grid_k
        nc, kc = float(np.clip(n, gn[0], gn[-1])), float(np.clip(k, gk[0], gk[-1]))
        i = int(np.clip(np.searchsorted(gn, nc, side="right") - 1, 0, max(len(gn) - 2, 0)))
        j = int(np.clip(np.searchsorted(gk, kc, side="right") - 1, 0, max(len(gk) - 2, 0)))
        i1, j1 = min(i + 1, len(gn) - 1), min(j + 1, len(gk) - 1)
        u = self._position(lm, nc, float(gn[i]), float(gn[i1]), 0)
        v = self._position(lm, kc, float(gk[j]), float(gk[j1]), 1)
        a, b, c, d = self._corner(i, j, lm), self._corner(i1, j, lm), self._corner(i, j1, lm), self._corner(i1, j1, lm)
        f = (1 - u) * (1 - v) * a + u * (1 - v) * b + (1 - u) * v * c + u * v * d
        if (nc, kc) != (n, k):  # outside the measured N or K: the physics carries on from the edge
            m = np.exp(lm)
            f = f + np.log(self.physics.time_s(m, n, k) / self.physics.time_s(m, nc, kc))
        return np.maximum.accumulate(f)

    def time_s(self, m, n: int, k: int) -> np.ndarray:
        """Seconds of one bf16 GEMM C[m, n] = A[m, k] W[k, n] (vectorised over m)."""
        m = np.maximum(np.asarray(m, dtype=np.float64), 1.0)
        lm, lat = np.log(m), self.lattice_log_m
        curve = self._log_curve(float(n), float(k))
        past = curve[-1] + np.log(self.physics.growth_s(m, n, k) / self.physics.growth_s(np.exp(lat[-1]), n, k))
        t = np.exp(np.where(lm > lat[-1], past, np.interp(lm, lat, curve)))
        return np.maximum(t, np.maximum(2.0 * m * n * k / self.peak_flops, gemm_bytes(m, n, k) / self.peak_bw_bytes_s))

    def dominance_bounds(self, m: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The slowest measured shape the GEMM contains (every dimension <=) and the fastest that contains
        it: a bigger problem holds a smaller one, so its time lies between theirs."""
        lo, hi = np.zeros_like(m), np.full_like(m, np.inf)
        for (sn, sk), (log_m, _log_t) in self.tables.items():
            m_min, m_max = np.exp(log_m[0]) * (1 - 1e-9), np.exp(log_m[-1]) * (1 + 1e-9)
            if sn <= n and sk <= k:
                lo = np.where(m >= m_min, np.maximum(lo, self._table_time((sn, sk), np.minimum(m, m_max))), lo)
            if sn >= n and sk >= k:
                hi = np.where(m <= m_max, np.minimum(hi, self._table_time((sn, sk), np.maximum(m, m_min))), hi)
        return lo, hi

    def provenance(self, m, n: int, k: int) -> np.ndarray:
        """Per m: `calibrated` on a measured (M, N, K), `interpolated` where measured shapes bracket it in
        every dimension (one it contains, one containing it), else `extrapolated`."""
        m = np.maximum(np.asarray(m, dtype=np.float64), 1.0)
        below, above = np.zeros(m.shape, dtype=bool), np.zeros(m.shape, dtype=bool)
        for (sn, sk), (log_m, _log_t) in self.tables.items():
            if sn <= n and sk <= k:
                below |= m >= np.exp(log_m[0]) * (1 - 1e-9)
            if sn >= n and sk >= k:
                above |= m <= np.exp(log_m[-1]) * (1 + 1e-9)
        out = np.where(below & above, INTERPOLATED, EXTRAPOLATED).astype(object)
        if (n, k) in self.tables:
            on = np.isclose(np.log(m)[..., None], self.tables[(n, k)][0], rtol=0, atol=1e-9).any(axis=-1)
            out = np.where(on, CALIBRATED, out)
        return out


def complete_grid(model: GemmModel) -> GemmModel:
    """The model with its product grid (GemmModel docstring): measured cells from their tables, the
    others from scattered_time_s, then held non-decreasing along N, K and M. A measured cell keeps its
    time: every cell it contains lies at or below it (the dominance bounds), so the running maxima
    leave it alone."""
    grid_n = np.array(sorted({nk[0] for nk in model.tables}), dtype=np.float64)
    grid_k = np.array(sorted({nk[1] for nk in model.tables}), dtype=np.float64)
    grid_log_m = np.unique(np.concatenate([log_m for log_m, _ in model.tables.values()]))
    log_grid = np.empty((len(grid_n), len(grid_k), len(grid_log_m)))
    for i, n in enumerate(grid_n):
        for j, k in enumerate(grid_k):
            nk = (int(n), int(k))
            log_grid[i, j] = (model.table_log_time(nk, grid_log_m) if nk in model.tables
                              else np.log(model.scattered_time_s(np.exp(grid_log_m), nk[0], nk[1])))
    for axis in (0, 1, 2):
        log_grid = np.maximum.accumulate(log_grid, axis=axis)
    lattice = np.unique(np.concatenate([LATTICE_LOG_M, grid_log_m]))
    return replace(model, grid_n=grid_n, grid_k=grid_k, grid_log_m=grid_log_m, log_grid=log_grid, lattice_log_m=lattice)


def gemm_provenance(m, n: int, k: int, model: GemmModel | None) -> np.ndarray:
    """`calibrated`, `interpolated`, `extrapolated` (GemmModel.provenance) or, without a measured grid,
    `datasheet`, per m."""
    if model is None:
        return np.full(np.shape(np.asarray(m)), DATASHEET, dtype=object)
    return model.provenance(m, n, k)


def gemm_op_provenance(op, model: GemmModel | None) -> np.ndarray:
    """gemm_provenance of a GEMM op (analytic.ops.gemm: shape m, n, k) against a calibration's model
    (`Ceilings.gemm_model`), per point of its grid."""
    return gemm_provenance(op.shape["m"], int(op.shape["n"]), int(op.shape["k"]), model)


def build_gemm_model(samples: tuple, sm_count: int, peak_flops: float, copy_bw_bytes_s: float) -> GemmModel | None:
    """The GEMM model of a calibration's `gemm` samples ((m, n, k, time_s) each); None without a shape
    measured at two M or more. Cached: a grid of predictions builds it once per calibration."""
    return _build(tuple(samples), int(sm_count), float(peak_flops), float(copy_bw_bytes_s))


@lru_cache(maxsize=8)
def _build(samples: tuple, sm_count: int, peak_flops: float, copy_bw_bytes_s: float) -> GemmModel | None:
    grouped: dict = {}
    for m, n, k, t in sorted(samples):
        grouped.setdefault((int(n), int(k)), ([], []))
        grouped[(int(n), int(k))][0].append(np.log(m))
        grouped[(int(n), int(k))][1].append(np.log(t))
    ridge = peak_flops / copy_bw_bytes_s  # FLOP per byte where compute takes over
    tables = {nk: (np.array(ms), steady_gemm_times(np.exp(np.array(ms)), nk, np.array(ts), sm_count, ridge))
              for nk, (ms, ts) in grouped.items() if len(ms) >= 2}
    if not tables:
        return None
    tables = monotone_tables(tables)
    m, n, k, t = (np.array(x, dtype=np.float64) for x in zip(*samples))
    peak_bw = max(copy_bw_bytes_s, float(np.max(gemm_bytes(m, n, k) / t)))
    physics = fit_physics(m, n, k, t, sm_count, peak_flops, peak_bw)
    return complete_grid(GemmModel(physics, tables, peak_flops, peak_bw))
