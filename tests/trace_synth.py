"""Synthetic trace files in the real tools' formats, for the trace parser tests.

The SQLite tables use the column names and order of an Nsight Systems export (its exporter's
schema reference; a real capture replaces these once tests/data/ holds one).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

NSYS_SCHEMA = """
CREATE TABLE StringIds (id INTEGER NOT NULL PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE NVTX_EVENTS (start INTEGER NOT NULL, end INTEGER, eventType INTEGER NOT NULL,
  rangeId INTEGER, category INTEGER, color INTEGER, text TEXT, globalTid INTEGER,
  endGlobalTid INTEGER, textId INTEGER REFERENCES StringIds(id), domainId INTEGER,
  uint64Value INTEGER, int64Value INTEGER, doubleValue REAL, uint32Value INTEGER,
  int32Value INTEGER, floatValue REAL, jsonTextId INTEGER, jsonText TEXT, binaryData TEXT);
CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INTEGER NOT NULL, end INTEGER NOT NULL,
  deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, greenContextId INTEGER,
  streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER,
  demangledName INTEGER NOT NULL REFERENCES StringIds(id),
  shortName INTEGER NOT NULL REFERENCES StringIds(id), mangledName INTEGER REFERENCES StringIds(id),
  launchType INTEGER, cacheConfig INTEGER, registersPerThread INTEGER NOT NULL,
  gridX INTEGER NOT NULL, gridY INTEGER NOT NULL, gridZ INTEGER NOT NULL,
  blockX INTEGER NOT NULL, blockY INTEGER NOT NULL, blockZ INTEGER NOT NULL,
  staticSharedMemory INTEGER NOT NULL, dynamicSharedMemory INTEGER NOT NULL,
  localMemoryPerThread INTEGER NOT NULL, localMemoryTotal INTEGER NOT NULL,
  gridId INTEGER NOT NULL, sharedMemoryExecuted INTEGER, graphNodeId INTEGER,
  sharedMemoryLimitConfig INTEGER);
CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (start INTEGER NOT NULL, end INTEGER NOT NULL,
  eventClass INTEGER NOT NULL, globalTid INTEGER, correlationId INTEGER,
  nameId INTEGER NOT NULL REFERENCES StringIds(id), returnValue INTEGER NOT NULL,
  callchainId INTEGER);
"""

PID = 4242
TID = 4242
GLOBAL_PID = PID << 24
GLOBAL_TID = GLOBAL_PID | TID


class NsysDB:
    """Builds an nsys-shaped SQLite export one event at a time."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path)
        self.db.executescript(NSYS_SCHEMA)
        self.strings: dict[str, int] = {}
        self.corr = 0

    def sid(self, value: str) -> int:
        if value not in self.strings:
            self.strings[value] = len(self.strings) + 1
            self.db.execute("INSERT INTO StringIds VALUES (?, ?)", (self.strings[value], value))
        return self.strings[value]

    def domain(self, name: str, domain_id: int) -> None:
        self.db.execute("INSERT INTO NVTX_EVENTS (start, eventType, text, globalTid, domainId) "
                        "VALUES (0, 75, ?, ?, ?)", (name, GLOBAL_TID, domain_id))

    def range(self, text: str, start: int, end: int, domain_id: int = 0, registered: bool = True,
              tid: int = GLOBAL_TID) -> None:
        if registered:  # the nvtx package registers its messages: text NULL, textId set
            self.db.execute("INSERT INTO NVTX_EVENTS (start, end, eventType, globalTid, textId, domainId) "
                            "VALUES (?, ?, 59, ?, ?, ?)", (start, end, tid, self.sid(text), domain_id))
        else:
            self.db.execute("INSERT INTO NVTX_EVENTS (start, end, eventType, text, globalTid, domainId) "
                            "VALUES (?, ?, 59, ?, ?, ?)", (start, end, text, tid, domain_id))

    def kernel(self, short: str, start: int, dur: int, launch: int, demangled: str | None = None,
               tid: int = GLOBAL_TID, api: str = "cudaLaunchKernel_v7000") -> int:
        self.corr += 1
        self.db.execute("INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (?, ?, 0, ?, ?, ?, 0, NULL)",
                        (launch, launch + 3000, tid, self.corr, self.sid(api)))
        self.db.execute(
            "INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL (start, end, deviceId, contextId, streamId, "
            "correlationId, globalPid, demangledName, shortName, mangledName, registersPerThread, gridX, "
            "gridY, gridZ, blockX, blockY, blockZ, staticSharedMemory, dynamicSharedMemory, "
            "localMemoryPerThread, localMemoryTotal, gridId) "
            "VALUES (?, ?, 0, 1, 7, ?, ?, ?, ?, NULL, 32, 1, 1, 1, 128, 1, 1, 0, 0, 0, 0, ?)",
            (start, start + dur, self.corr, tid & ~0xFFFFFF, self.sid(demangled or f"void {short}<1>(int)"),
             self.sid(short), self.corr))
        return self.corr

    def close(self) -> Path:
        self.db.commit()
        self.db.close()
        return self.path


def nsys_two_points(path: Path, steps: int = 3) -> Path:
    """A decode point (one range around `steps` steps) and a prefill point (one range per step)."""
    db = NsysDB(path)
    db.domain("perfbench", 1)
    db.domain("other", 2)
    t = 1_000_000
    # decode: gemm 10us, conv 2us, update 4us, gemm 6us per step, launched 1us apart
    db.range("mamba2/decode/B=64/L=4096", t, t + steps * 100_000, domain_id=1)
    for step in range(steps):
        base = t + step * 100_000
        for i, (name, dur) in enumerate([("nvjet_tst_64x8_64x16_4x1_v_bz_TNT", 10_000),
                                         ("causal_conv1d_update_kernel", 2_000),
                                         ("_selective_scan_update_kernel", 4_000),
                                         ("nvjet_tst_64x8_64x16_4x1_v_bz_TNT", 6_000)]):
            db.kernel(name, base + 50_000 + i * 20_000, dur, base + 1_000 * (i + 1))
    # a range of another domain around the same kernels must not count
    db.range("mamba2/decode/B=64/L=4096", t, t + 10, domain_id=2, registered=False)
    # prefill: one range per step; the GPU runs after the range closes (asynchronous)
    t = 5_000_000
    for step in range(2):
        start = t + step * 1_000_000
        db.range("mlp/prefill/B=8/L=4096", start, start + 10_000, domain_id=1)
        db.kernel("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n", start + 50_000, 300_000, start + 1_000)
        db.kernel("vectorized_elementwise_kernel", start + 360_000, 20_000, start + 2_000,
                  demangled="void at::native::vectorized_elementwise_kernel<4, at::native::F<float> >(int)")
        db.kernel("vectorized_elementwise_kernel", start + 390_000, 20_000, start + 3_000,
                  demangled="void at::native::vectorized_elementwise_kernel<4, at::native::F<float> >(int)")
        db.kernel("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n", start + 420_000, 300_000, start + 4_000)
    # a kernel launched outside every range
    db.kernel("stray_kernel", 9_000_000, 1_000, 8_999_000)
    return db.close()


NCU_RAW_HEADER = ["ID", "Process ID", "Process Name", "Host Name", "Kernel Name", "Context", "Stream",
                  "Block Size", "Grid Size", "Device", "CC"]


def ncu_raw_csv(launches: list[tuple[str, dict]], units: dict[str, str] | None = None,
                preamble: str = "==PROF== Connected to process 4242 (/usr/bin/python3.12)\n") -> str:
    """`ncu --import R --csv --page raw` text: header, a units row, one row per launch.

    `launches` is [(kernel name, {metric: value})]; values are written with thousands
    separators, as ncu prints them.
    """
    import csv
    import io

    from perfbench.traces.ncu import METRICS

    units = units or {}
    out = io.StringIO()
    out.write(preamble)
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(NCU_RAW_HEADER + list(METRICS))
    writer.writerow([""] * len(NCU_RAW_HEADER) + [units.get(m, "byte" if "bytes" in m else
                                                            "nsecond" if "duration" in m else "inst")
                                                  for m in METRICS])
    for i, (kernel, values) in enumerate(launches):
        writer.writerow([str(i), "4242", "python3.12", "127.0.0.1", kernel, "1", "7", "(128, 1, 1)",
                         "(64, 1, 1)", "0", "9.0"] + [f"{values.get(m, 0):,}" for m in METRICS])
    return out.getvalue()
