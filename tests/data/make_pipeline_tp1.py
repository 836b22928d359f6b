"""Writes tests/data/pipeline_tp1.json.gz: one-GPU predictions and breakdowns pinned for the pipeline test.

Generated once with the code from before `analytic/pipeline.py` (commit 2c69337, where `predict`,
`breakdown`, `predict_tp` and `breakdown_tp` each ran the stages themselves), so
tests/test_pipeline.py can hold the one pipeline to the four copies' one-GPU values. Run from the
repository root: `PYTHONPATH=$PWD python3 tests/data/make_pipeline_tp1.py`. Running it again
rewrites the pin with today's code: do so only on purpose, when a cost formula changes. Gzipped
(mtime 0, so the same pin is the same bytes) to keep the tracked tree small (issue 27).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from analytic.predict import breakdown, predict

OUT = Path(__file__).with_name("pipeline_tp1.json.gz")
TARGETS = ["transformer-8b", "transformer-8b-128k", "mamba-8b", "mamba2-8b", "mamba2-hybrid-8b",
           "mamba", "mamba2", "attention", "attention-mha", "mlp"]
SETTINGS = [("h100", "default"), ("h200", "default"), ("h100", "none")]
MODES = [("prefill", False), ("decode", True), ("decode", False)]  # (phase, CUDA graphs)
BATCH, SEQLEN = [1, 3, 64], [300, 4096, 32768]
TIME_COLUMNS = ["time_ms", "bound"]
SIZE_COLUMNS = ["flops", "bytes", "n_kernels", "memory_bytes", "fits"]  # the same on every GPU: pinned once
BREAKDOWN_POINT = (4, 2048)


def pinned() -> dict:
    predictions, breakdowns = [], []
    for target in TARGETS:
        for gpu, calibration in SETTINGS:
            for phase, graphs in MODES:
                key = {"target": target, "gpu": gpu, "calibration": calibration, "phase": phase, "graphs": graphs}
                frame = predict(target, phase, BATCH, SEQLEN, gpu, calibration, 1, graphs)
                columns = TIME_COLUMNS + (SIZE_COLUMNS if (gpu, calibration) == SETTINGS[0] else [])
                predictions.append({**key, **{c: frame[c].tolist() for c in columns}})
                if calibration == "default":
                    rows = breakdown(target, phase, *BREAKDOWN_POINT, gpu, calibration, graphs=graphs)
                    breakdowns.append({**key, "batch": BREAKDOWN_POINT[0], "seqlen": BREAKDOWN_POINT[1],
                                       "op": rows["op"].tolist(), "group": rows["group"].tolist(),
                                       "time_ms": rows["time_ms"].tolist(), "bound": rows["bound"].tolist()})
    return {"batch": BATCH, "seqlen": SEQLEN, "predictions": predictions, "breakdowns": breakdowns}


if __name__ == "__main__":
    text = json.dumps(pinned(), separators=(",", ":")) + "\n"
    OUT.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
